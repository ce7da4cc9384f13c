"""The failover runbook as a durable workflow: one line a step.

snapshot → confirm → preflight → switch → wait for INSYNC → verify → (rollback).
All I/O lives in activities; every decision is a pure function from failover.decisions.
The direction is read from the record, not from config labels, so a second failover
after the first one is a move back, with the same confirmation and preflight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from failover import decisions
    from failover.config import ClusterConfig
    from failover.models import (
        ChangeRef,
        FailoverRequest,
        FailoverResult,
        FailoverStatus,
        Outcome,
        ProbeSideInput,
        RecordRef,
        RecordSnapshot,
        Side,
        SideProbe,
        StepTiming,
        UpsertRecordInput,
        WaitChangeInput,
        WaitChangeResult,
        other_side,
    )

# Transient AWS trouble (throttling, 5xx) is retried with backoff for a few minutes;
# permanent errors are raised non-retryable by the activities and end the run at once.
AWS_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
)
AWS_CALL_TIMEOUT = timedelta(seconds=30)
AWS_STEP_DEADLINE = timedelta(minutes=5)
PROBE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
HEARTBEAT_TIMEOUT = timedelta(seconds=10)

T = TypeVar("T")


class StepFailed(Exception):
    """A step's activity failed for good; carries the reason for the result."""


def _failure_reason(err: ActivityError) -> str:
    cause = err.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)


@workflow.defn(name="FailoverWorkflow")
class FailoverWorkflow:
    def __init__(self) -> None:
        self._status: FailoverStatus | None = None

    @workflow.run
    async def run(self, request: FailoverRequest) -> FailoverResult:
        cluster = request.cluster
        self._status = FailoverStatus(cluster=cluster.name, phase="starting", reason=request.reason)
        self._started = workflow.now()
        self._request = request
        self._snapshot: RecordSnapshot | None = None
        try:
            return await self._run_steps(cluster)
        except StepFailed as failed:
            return await self._finish(Outcome.FAILED, str(failed))

    async def _run_steps(self, cluster: ClusterConfig) -> FailoverResult:
        switch = cluster.switch
        ref = RecordRef(
            zone_id=switch.zone_id, record_name=switch.record_name, record_type=switch.record_type
        )

        async with self._step("snapshot"):
            self._snapshot = await self._aws("read_record", ref, RecordSnapshot)
        active, unknown = decisions.active_side(self._snapshot.values, switch)
        if active is None:
            return await self._finish(
                Outcome.ABORTED, f"aborted: {unknown}", refused_step="snapshot"
            )
        target = other_side(active)
        self._status.from_side, self._status.to_side = active, target

        async with self._step("confirm"):
            refusal = await self._confirm(cluster, active)
        if refusal is not None:
            return await self._finish(Outcome.NOT_CONFIRMED, refusal, refused_step="confirm")

        async with self._step("preflight"):
            target_problems = await self._probe(cluster, target)
            refusal = decisions.preflight_refusal(target_problems, target)
        if refusal is not None:
            return await self._finish(
                Outcome.ABORTED, f"aborted: {refusal}", refused_step="preflight"
            )

        target_value = _side_value(cluster, target)
        async with self._step("switch"):
            change = await self._aws(
                "upsert_record",
                UpsertRecordInput(ref=ref, value=target_value, ttl=switch.ttl),
                ChangeRef,
            )
        if change.change_id is not None:
            async with self._step("wait"):
                await self._wait_insync(cluster, change.change_id)

        async with self._step("verify"):
            problem = await self._verify(cluster, ref, target, target_value)
        if problem is None:
            return await self._finish(Outcome.FAILED_OVER, self._request.reason)

        async with self._step("rollback"):
            await self._rollback(cluster, ref, problem)
        return await self._finish(Outcome.ROLLED_BACK, f"rolled back: {problem}")

    # --- steps -----------------------------------------------------------------------------

    async def _confirm(self, cluster: ClusterConfig, active: Side) -> str | None:
        """Probes the active side `failure_threshold` times; any healthy round ends it."""
        probe = cluster.probe
        rounds: list[dict[str, str | None]] = []
        for round_number in range(1, probe.failure_threshold + 1):
            problems = await self._probe(cluster, active)
            rounds.append(problems)
            if (
                decisions.side_down_reason(problems) is None
                or round_number == probe.failure_threshold
            ):
                break
            await workflow.sleep(timedelta(seconds=probe.interval_seconds))
        return decisions.confirmation_refusal(rounds, probe.failure_threshold)

    async def _verify(
        self, cluster: ClusterConfig, ref: RecordRef, target: Side, value: str
    ) -> str | None:
        problem: str | None = None
        for attempt in range(1, cluster.probe.verify_attempts + 1):
            record = await self._aws("read_record", ref, RecordSnapshot)
            problems = await self._probe(cluster, target)
            problem = decisions.verify_problem(record.values, value, problems)
            if problem is None:
                return None
            workflow.logger.warning("verify attempt %d: %s", attempt, problem)
            if attempt < cluster.probe.verify_attempts:
                await workflow.sleep(timedelta(seconds=cluster.probe.interval_seconds))
        return problem

    async def _rollback(self, cluster: ClusterConfig, ref: RecordRef, problem: str) -> None:
        assert self._snapshot is not None
        previous = self._snapshot.values[0]
        try:
            change = await self._aws(
                "upsert_record",
                UpsertRecordInput(
                    ref=ref, value=previous, ttl=self._snapshot.ttl or cluster.switch.ttl
                ),
                ChangeRef,
            )
            if change.change_id is not None:
                await self._wait_insync(cluster, change.change_id)
        except StepFailed as failed:
            raise StepFailed(f"{problem}; rollback to {previous!r} failed too: {failed}") from None

    # --- activity calls --------------------------------------------------------------------

    async def _probe(self, cluster: ClusterConfig, side: Side) -> dict[str, str | None]:
        settings = cluster.primary if side == "primary" else cluster.standby
        timeout = cluster.probe.timeout_seconds
        probe: SideProbe = await workflow.execute_activity(
            "probe_side",
            ProbeSideInput(
                cluster=cluster.name, side=side, settings=settings, timeout_seconds=timeout
            ),
            result_type=SideProbe,
            start_to_close_timeout=timedelta(seconds=timeout * 2 + 5),
            retry_policy=PROBE_RETRY,
            summary=f"probe {side} {cluster.name}",
        )
        return decisions.node_problems(
            probe.nodes,
            expected_cluster_name=settings.expected_cluster_name,
            yellow_policy=cluster.probe.yellow_policy,
        )

    async def _aws(self, activity: str, arg: object, result_type: type[T]) -> T:
        try:
            return await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=AWS_CALL_TIMEOUT,
                schedule_to_close_timeout=AWS_STEP_DEADLINE,
                retry_policy=AWS_RETRY,
                summary=_summary(activity, arg),
            )
        except ActivityError as err:
            raise StepFailed(_failure_reason(err)) from None

    async def _wait_insync(self, cluster: ClusterConfig, change_id: str) -> WaitChangeResult:
        switch = cluster.switch
        try:
            return await workflow.execute_activity(
                "wait_insync",
                WaitChangeInput(change_id=change_id, poll_seconds=switch.insync_poll_seconds),
                result_type=WaitChangeResult,
                start_to_close_timeout=timedelta(seconds=switch.insync_timeout_seconds),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=AWS_RETRY,
                summary=f"wait for {change_id} INSYNC",
            )
        except ActivityError as err:
            raise StepFailed(f"waiting for {change_id}: {_failure_reason(err)}") from None

    # --- bookkeeping -----------------------------------------------------------------------

    @asynccontextmanager
    async def _step(self, name: str) -> AsyncIterator[None]:
        assert self._status is not None
        self._status.phase = name
        started = workflow.now()
        outcome = "failed"
        detail: str | None = None
        try:
            yield
            outcome = "ok"
        except StepFailed as failed:
            detail = str(failed)
            raise
        finally:
            seconds = (workflow.now() - started).total_seconds()
            self._status.steps.append(
                StepTiming(
                    name=name, started_at=started, seconds=seconds, outcome=outcome, detail=detail
                )
            )

    async def _finish(
        self, outcome: Outcome, reason: str, *, refused_step: str | None = None
    ) -> FailoverResult:
        assert self._status is not None
        status = self._status
        if refused_step is not None and status.steps and status.steps[-1].name == refused_step:
            status.steps[-1].outcome = "refused"
            status.steps[-1].detail = reason
        status.phase = "done"
        cluster = self._request.cluster
        from_value = _side_value(cluster, status.from_side) if status.from_side else None
        to_value = _side_value(cluster, status.to_side) if status.to_side else None
        workflow.logger.info("failover %s: %s", outcome.value, reason)
        return FailoverResult(
            result=outcome,
            cluster=cluster.name,
            from_side=status.from_side,
            to_side=status.to_side,
            from_value=from_value,
            to_value=to_value,
            reason=reason,
            trigger=self._request.trigger,
            started_at=self._started,
            finished_at=workflow.now(),
            steps=list(status.steps),
        )

    @workflow.query(name="status")
    def status(self) -> FailoverStatus:
        if self._status is None:
            raise ApplicationError("workflow has not started its first step yet")
        return self._status


def _side_value(cluster: ClusterConfig, side: Side) -> str:
    return cluster.switch.primary_value if side == "primary" else cluster.switch.standby_value


def _summary(activity: str, arg: object) -> str:
    if isinstance(arg, UpsertRecordInput):
        return f"UPSERT {arg.ref.record_name} {arg.ref.record_type} → {arg.value}"
    if isinstance(arg, RecordRef):
        return f"read {arg.record_name} {arg.record_type}"
    return activity
