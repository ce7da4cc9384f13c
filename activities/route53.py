"""Route 53 side effects: read the record, UPSERT it, wait for the change to be INSYNC.

Each activity is idempotent, so Temporal may run it again after a crash: the UPSERT
reads the record first and does nothing when it already holds the value. AWS errors
are sorted by activities.aws.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.aws import AwsCaller
from failover.config import normalise_record_value
from failover.models import (
    ChangeRef,
    RecordRef,
    RecordSnapshot,
    UpsertRecordInput,
    WaitChangeInput,
    WaitChangeResult,
)


class Route53Activities(AwsCaller):
    """Route 53 activities; `client_factory` returns a boto3 route53 client (tests pass theirs)."""

    async def _read(self, ref: RecordRef) -> RecordSnapshot:
        answer = await self.call(
            "ListResourceRecordSets",
            HostedZoneId=ref.zone_id,
            StartRecordName=ref.record_name,
            StartRecordType=ref.record_type,
            MaxItems="1",
        )
        for record in answer.get("ResourceRecordSets", []):
            if (
                normalise_record_value(record["Name"]) == normalise_record_value(ref.record_name)
                and record["Type"] == ref.record_type
            ):
                values = [r["Value"] for r in record.get("ResourceRecords", [])]
                return RecordSnapshot(ref=ref, exists=True, values=values, ttl=record.get("TTL"))
        return RecordSnapshot(ref=ref, exists=False)

    @activity.defn(name="read_record")
    async def read_record(self, ref: RecordRef) -> RecordSnapshot:
        return await self._read(ref)

    @activity.defn(name="upsert_record")
    async def upsert_record(self, request: UpsertRecordInput) -> ChangeRef:
        current = await self._read(request.ref)
        already_set = [normalise_record_value(v) for v in current.values] == [
            normalise_record_value(request.value)
        ] and current.ttl == request.ttl
        if already_set and activity.info().attempt == 1:
            activity.logger.info("record already holds %s; no change", request.value)
            return ChangeRef(change_id=None, already_set=True)
        # On a retry the record may hold our value because our own UPSERT went through just
        # before a crash, and its change id was lost with the worker. An identical UPSERT
        # gives a change to wait for: Route 53 applies a zone's changes in order, so once it
        # is INSYNC ours is too.
        answer = await self.call(
            "ChangeResourceRecordSets",
            HostedZoneId=request.ref.zone_id,
            ChangeBatch={
                "Comment": f"search-failover: {request.ref.record_name} -> {request.value}",
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": request.ref.record_name,
                            "Type": request.ref.record_type,
                            "TTL": request.ttl,
                            "ResourceRecords": [{"Value": request.value}],
                        },
                    }
                ],
            },
        )
        return ChangeRef(change_id=answer["ChangeInfo"]["Id"], already_set=already_set)

    @activity.defn(name="wait_insync")
    async def wait_insync(self, request: WaitChangeInput) -> WaitChangeResult:
        """Polls GetChange until INSYNC, heartbeating so a dead worker is noticed in seconds."""
        polls = 0
        while True:
            answer = await self.call("GetChange", Id=request.change_id)
            polls += 1
            status = answer["ChangeInfo"]["Status"]
            activity.heartbeat({"polls": polls, "status": status})
            if status == "INSYNC":
                return WaitChangeResult(change_id=request.change_id, status=status, polls=polls)
            await asyncio.sleep(request.poll_seconds)
