"""How traffic moves: a Route 53 record or the targets of an NLB target group.

Both switchers offer the same four moves to the runbook: snapshot, active side, switch,
restore; plus the control-plane half of verify. The active side is read from AWS, never
taken from config labels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.nlb import NlbActivities
    from activities.route53 import Route53Activities
    from failover import decisions
    from failover.config import ClusterConfig, NlbSwitch, Route53Switch, Target
    from failover.models import (
        ChangeRef,
        RecordRef,
        RecordSnapshot,
        Side,
        TargetGroupSnapshot,
        TargetsChange,
        UpsertRecordInput,
        WaitChangeInput,
        WaitTargetsInput,
        WaitTargetsResult,
    )

from workflows.steps import StepFailed, StepRecorder, aws_activity

Snapshot = RecordSnapshot | TargetGroupSnapshot


class Switcher(Protocol):
    async def snapshot(self) -> Snapshot: ...

    def active_side(self, snapshot: Snapshot) -> tuple[Side | None, str | None]: ...

    async def switch(self, active: Side, target: Side) -> str | None:
        """Moves traffic; returns a refusal (nothing left changed) or None when switched."""
        ...

    async def control_plane_problem(self, target: Side) -> str | None: ...

    async def restore(self, snapshot: Snapshot) -> None: ...

    def describe(self, side: Side) -> str: ...


def make_switcher(cluster: ClusterConfig, steps: StepRecorder) -> Switcher:
    if isinstance(cluster.switch, NlbSwitch):
        return NlbSwitcher(cluster.switch, steps)
    return DnsSwitcher(cluster.switch, steps)


class DnsSwitcher:
    def __init__(self, switch: Route53Switch, steps: StepRecorder) -> None:
        self.config = switch
        self.steps = steps
        self.ref = RecordRef(
            zone_id=switch.zone_id, record_name=switch.record_name, record_type=switch.record_type
        )
        self._snapshot: RecordSnapshot | None = None

    def describe(self, side: Side) -> str:
        return self.config.primary_value if side == "primary" else self.config.standby_value

    async def _read(self) -> RecordSnapshot:
        return await aws_activity(
            Route53Activities.read_record,
            self.ref,
            summary=f"read {self.ref.record_name} {self.ref.record_type}",
        )

    async def snapshot(self) -> Snapshot:
        self._snapshot = await self._read()
        return self._snapshot

    def active_side(self, snapshot: Snapshot) -> tuple[Side | None, str | None]:
        assert isinstance(snapshot, RecordSnapshot)
        return decisions.active_side(snapshot.values, self.config)

    async def _upsert(self, value: str, ttl: int) -> ChangeRef:
        return await aws_activity(
            Route53Activities.upsert_record,
            UpsertRecordInput(ref=self.ref, value=value, ttl=ttl),
            summary=f"UPSERT {self.ref.record_name} {self.ref.record_type} → {value}",
        )

    async def _wait_insync(self, change_id: str) -> None:
        await aws_activity(
            Route53Activities.wait_insync,
            WaitChangeInput(change_id=change_id, poll_seconds=self.config.insync_poll_seconds),
            summary=f"wait for {change_id} INSYNC",
            long_running=timedelta(seconds=self.config.insync_timeout_seconds),
        )

    async def switch(self, active: Side, target: Side) -> str | None:
        async with self.steps.step("switch"):
            change = await self._upsert(self.describe(target), self.config.ttl)
        if change.change_id is not None:
            async with self.steps.step("wait"):
                try:
                    await self._wait_insync(change.change_id)
                except StepFailed as failed:
                    raise StepFailed(
                        f"record already switched to {self.describe(target)} (change "
                        f"{change.change_id}), but waiting for INSYNC failed: {failed}; "
                        f"caches not flushed"
                    ) from None
        async with self.steps.step("ttl_wait"):
            await self._outlive_cached_answers()
        return None

    async def _outlive_cached_answers(self) -> None:
        """Resolvers may serve the old answer for its TTL after INSYNC: pages rendered in
        that window are still broken, so a cache flush before it ends would be undone."""
        old_ttl = self._snapshot.ttl if self._snapshot and self._snapshot.ttl else self.config.ttl
        await workflow.sleep(timedelta(seconds=old_ttl))

    async def control_plane_problem(self, target: Side) -> str | None:
        record = await self._read()
        return decisions.record_problem(record.values, self.describe(target))

    async def restore(self, snapshot: Snapshot) -> None:
        assert isinstance(snapshot, RecordSnapshot)
        change = await self._upsert(snapshot.values[0], snapshot.ttl or self.config.ttl)
        if change.change_id is not None:
            await self._wait_insync(change.change_id)
        await workflow.sleep(timedelta(seconds=self.config.ttl))


class NlbSwitcher:
    def __init__(self, switch: NlbSwitch, steps: StepRecorder) -> None:
        self.config = switch
        self.steps = steps
        self.arn = switch.target_group_arn

    def targets(self, side: Side) -> list[Target]:
        return self.config.primary_targets if side == "primary" else self.config.standby_targets

    def describe(self, side: Side) -> str:
        return ",".join(f"{t.id}:{t.port}" for t in self.targets(side))

    async def snapshot(self) -> Snapshot:
        return await aws_activity(
            NlbActivities.describe_targets,
            self.arn,
            summary=f"describe targets of {self._short}",
        )

    @property
    def _short(self) -> str:
        return self.arn.rsplit(":", 1)[-1]

    def active_side(self, snapshot: Snapshot) -> tuple[Side | None, str | None]:
        assert isinstance(snapshot, TargetGroupSnapshot)
        return decisions.active_target_side(
            snapshot.targets, self.config.primary_targets, self.config.standby_targets
        )

    async def _change(
        self, activity: Callable[[NlbActivities, TargetsChange], Awaitable[None]], side: Side
    ) -> None:
        verb = "register" if activity is NlbActivities.register_targets else "deregister"
        await aws_activity(
            activity,
            TargetsChange(target_group_arn=self.arn, targets=self.targets(side)),
            summary=f"{verb} {side} {self.describe(side)} in {self._short}",
        )

    async def _wait(self, side: Side, want: str, timeout_seconds: float) -> WaitTargetsResult:
        return await aws_activity(
            NlbActivities.wait_targets,
            WaitTargetsInput(
                target_group_arn=self.arn,
                targets=self.targets(side),
                want=want,
                timeout_seconds=timeout_seconds,
                poll_seconds=self.config.poll_seconds,
            ),
            summary=f"wait for {side} targets {want}",
            long_running=timedelta(seconds=timeout_seconds + 60),
        )

    async def _drain_timeout(self) -> float:
        if self.config.drain_timeout_seconds is not None:
            return self.config.drain_timeout_seconds
        snapshot = await self.snapshot()
        assert isinstance(snapshot, TargetGroupSnapshot)
        return snapshot.deregistration_delay_seconds + 30

    async def switch(self, active: Side, target: Side) -> str | None:
        """Register the new side, and only once it is healthy deregister the old one."""
        async with self.steps.step("register"):
            await self._change(NlbActivities.register_targets, target)
        async with self.steps.step("wait_healthy"):
            healthy = await self._wait(target, "healthy", self.config.healthy_timeout_seconds)
        if not healthy.reached:
            states = ", ".join(f"{s.id}:{s.port} {s.state}" for s in healthy.states)
            async with self.steps.step("unregister_new"):
                await self._change(NlbActivities.deregister_targets, target)
            return (
                f"{target} targets never became healthy within "
                f"{self.config.healthy_timeout_seconds:g}s ({states}); they were deregistered "
                f"again and {active} keeps the traffic"
            )
        async with self.steps.step("deregister"):
            try:
                await self._change(NlbActivities.deregister_targets, active)
            except StepFailed as failed:
                raise StepFailed(
                    f"{target} targets registered and healthy, but deregistering {active} "
                    f"failed, so both sides take traffic: {failed}"
                ) from None
        async with self.steps.step("drain"):
            await self._wait(active, "gone", await self._drain_timeout())
        return None

    async def control_plane_problem(self, target: Side) -> str | None:
        snapshot = await self.snapshot()
        assert isinstance(snapshot, TargetGroupSnapshot)
        return decisions.targets_problem(snapshot.targets, self.targets(target))

    async def restore(self, snapshot: Snapshot) -> None:
        """Put back exactly the registrations of the snapshot: old side in, new side out.

        No wait for the old side to turn healthy: it is the side that failed, and waiting
        for it would hold the rollback for the whole healthy timeout.
        """
        assert isinstance(snapshot, TargetGroupSnapshot)
        side, _ = self.active_side(snapshot)
        assert side is not None, "a snapshot the switch started from has an active side"
        other: Side = "standby" if side == "primary" else "primary"
        await self._change(NlbActivities.register_targets, side)
        await self._change(NlbActivities.deregister_targets, other)
        await self._wait(other, "gone", await self._drain_timeout())
