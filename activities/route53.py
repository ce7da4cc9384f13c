"""Route 53 side effects: read the record, UPSERT it, wait for the change to be INSYNC.

Each activity is idempotent, so Temporal may run it again after a crash: the UPSERT
reads the record first and does nothing when it already holds the value. AWS errors
are sorted into permanent (fail fast, non-retryable) and transient (retried by the
workflow's retry policy with backoff); botocore's own retries are turned off so every
attempt is visible in history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError

from failover.decisions import normalise_record_value
from failover.models import (
    ChangeRef,
    RecordRef,
    RecordSnapshot,
    UpsertRecordInput,
    WaitChangeInput,
    WaitChangeResult,
)

# Errors that no retry will fix: wrong rights, wrong zone, a change AWS will never accept.
PERMANENT_AWS_ERRORS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "NoSuchHostedZone",
        "InvalidChangeBatch",
        "InvalidInput",
        "InvalidDomainName",
        "NoSuchChange",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ValidationError",
    }
)


def aws_failure(operation: str, exc: Exception) -> ApplicationError:
    """Turns a boto error into an ApplicationError whose type is the AWS error code."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ApplicationError(
            f"{operation}: {code}: {message}" + (f" (HTTP {status})" if status else ""),
            type=code,
            non_retryable=code in PERMANENT_AWS_ERRORS,
        )
    if isinstance(exc, NoCredentialsError):
        return ApplicationError(
            f"{operation}: no AWS credentials found", type="NoCredentials", non_retryable=True
        )
    if isinstance(exc, EndpointConnectionError):
        return ApplicationError(f"{operation}: {exc}", type="EndpointConnectionError")
    return ApplicationError(f"{operation}: {type(exc).__name__}: {exc}", type=type(exc).__name__)


class Route53Activities:
    """Route 53 activities; `client_factory` returns a boto3 route53 client (tests pass theirs)."""

    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._client_factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(operation, exc) from exc

    async def _read(self, ref: RecordRef) -> RecordSnapshot:
        answer = await self._call(
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
        if [normalise_record_value(v) for v in current.values] == [
            normalise_record_value(request.value)
        ] and current.ttl == request.ttl:
            activity.logger.info("record already holds %s; no change", request.value)
            return ChangeRef(change_id=None, already_set=True)
        answer = await self._call(
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
        return ChangeRef(change_id=answer["ChangeInfo"]["Id"], already_set=False)

    @activity.defn(name="wait_insync")
    async def wait_insync(self, request: WaitChangeInput) -> WaitChangeResult:
        """Polls GetChange until INSYNC, heartbeating so a dead worker is noticed in seconds."""
        polls = 0
        while True:
            answer = await self._call("GetChange", Id=request.change_id)
            polls += 1
            status = answer["ChangeInfo"]["Status"]
            activity.heartbeat({"polls": polls, "status": status})
            if status == "INSYNC":
                return WaitChangeResult(change_id=request.change_id, status=status, polls=polls)
            await asyncio.sleep(request.poll_seconds)


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
