"""NLB target group side effects: read, register, deregister, and wait for target states.

Register and deregister are idempotent in ELBv2 itself, so a retry after a crash is
harmless. The waits poll DescribeTargetHealth and heartbeat, so a dead worker is noticed
within the heartbeat timeout rather than after the whole wait.
"""

from __future__ import annotations

import asyncio
import time

from temporalio import activity

from activities.aws import AwsCaller
from failover.models import (
    TargetGroupSnapshot,
    TargetsChange,
    TargetState,
    WaitTargetsInput,
    WaitTargetsResult,
)

DEFAULT_DEREGISTRATION_DELAY = 300


class NlbActivities(AwsCaller):
    """ELBv2 activities; `client_factory` returns a boto3 elbv2 client (tests pass theirs)."""

    async def _states(self, arn: str) -> list[TargetState]:
        answer = await self.call("DescribeTargetHealth", TargetGroupArn=arn)
        return [
            TargetState(
                id=d["Target"]["Id"],
                port=d["Target"]["Port"],
                state=d["TargetHealth"]["State"],
                reason=d["TargetHealth"].get("Reason"),
            )
            for d in answer["TargetHealthDescriptions"]
        ]

    @activity.defn(name="describe_targets")
    async def describe_targets(self, target_group_arn: str) -> TargetGroupSnapshot:
        states = await self._states(target_group_arn)
        attributes = await self.call(
            "DescribeTargetGroupAttributes", TargetGroupArn=target_group_arn
        )
        delay = DEFAULT_DEREGISTRATION_DELAY
        for attribute in attributes.get("Attributes", []):
            if attribute["Key"] == "deregistration_delay.timeout_seconds":
                delay = int(attribute["Value"])
        return TargetGroupSnapshot(
            target_group_arn=target_group_arn, targets=states, deregistration_delay_seconds=delay
        )

    @activity.defn(name="register_targets")
    async def register_targets(self, change: TargetsChange) -> None:
        await self.call(
            "RegisterTargets",
            TargetGroupArn=change.target_group_arn,
            Targets=[{"Id": t.id, "Port": t.port} for t in change.targets],
        )

    @activity.defn(name="deregister_targets")
    async def deregister_targets(self, change: TargetsChange) -> None:
        """Deregisters those of the targets still registered: ELBv2 refuses a target that is
        not (InvalidTarget), which a retry after a crash would otherwise hit."""
        registered = {
            (s.id, s.port)
            for s in await self._states(change.target_group_arn)
            if s.state not in ("unused", "draining")
        }
        targets = [t for t in change.targets if t.key() in registered]
        if not targets:
            activity.logger.info("targets already deregistered; no change")
            return
        await self.call(
            "DeregisterTargets",
            TargetGroupArn=change.target_group_arn,
            Targets=[{"Id": t.id, "Port": t.port} for t in targets],
        )

    @activity.defn(name="wait_targets")
    async def wait_targets(self, request: WaitTargetsInput) -> WaitTargetsResult:
        """Waits until every target is healthy (or gone); reports, rather than raises, a timeout."""
        wanted = {t.key() for t in request.targets}
        deadline = time.monotonic() + request.timeout_seconds
        polls = 0
        while True:
            states = await self._states(request.target_group_arn)
            polls += 1
            mine = [s for s in states if (s.id, s.port) in wanted]
            if request.want == "healthy":
                reached = len(mine) == len(wanted) and all(s.state == "healthy" for s in mine)
            else:
                reached = all(s.state == "unused" for s in mine)
            activity.heartbeat({"polls": polls, "states": [s.state for s in mine]})
            if reached or time.monotonic() >= deadline:
                return WaitTargetsResult(reached=reached, polls=polls, states=mine)
            await asyncio.sleep(request.poll_seconds)
