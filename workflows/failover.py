"""The failover runbook as a durable workflow: one line a step.

snapshot → confirm → preflight → switch → flush caches → verify → (rollback → flush).
All I/O lives in activities; every decision is a pure function from failover.decisions.
The direction is read from AWS (the record, or the registered targets), not from config
labels, so a second failover after the first one is a move back, with the same checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.caches import CacheActivities
    from activities.notify import NotifyActivities
    from activities.verify import VerifyActivities
    from failover import decisions, metrics, names, visibility
    from failover.config import ClusterConfig, SsmCache
    from failover.models import (
        AbortRequest,
        ApproveRequest,
        CheckResult,
        FailoverPlan,
        FailoverRequest,
        FailoverResult,
        FailoverStatus,
        FlushRequest,
        FlushResult,
        Notification,
        NotificationSent,
        Outcome,
        PauseRequest,
        RecordSnapshot,
        SearchPathRequest,
        Side,
        StorefrontRequest,
        other_side,
    )

from workflows.steps import (
    HEARTBEAT_TIMEOUT,
    PROBE_RETRY,
    StepFailed,
    StepRecorder,
    failure_reason,
    probe_side,
)
from workflows.switchers import Snapshot, Switcher, make_switcher

NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
FLUSH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=4
)


@workflow.defn(name=names.FAILOVER_WORKFLOW)
class FailoverWorkflow:
    @workflow.init
    def __init__(self, request: FailoverRequest) -> None:
        """Before the first step: the status query and the updates always have a status."""
        self._request = request
        self._started = workflow.now()
        self._status = FailoverStatus(
            cluster=request.cluster.name, phase="starting", reason=request.reason
        )
        self._steps = StepRecorder(self._status, on_phase=self._phase_changed)
        self._flushed: list[FlushResult] = []
        self._warnings: list[str] = []
        self._switcher: Switcher | None = None
        self._abort_reason: str | None = None
        self._paused_by: str | None = None
        self._approved_by: str | None = None
        self._switch_started = False
        self._finished = False
        self._visible = False
        self._notifying: bool | None = None
        self._notifications: list[asyncio.Future[NotificationSent]] = []

    @workflow.run
    async def run(self, request: FailoverRequest) -> FailoverResult:
        # Runs started before search attributes existed replay without them; new runs
        # update those they were started with (a server without them gets none).
        self._visible = workflow.patched("visibility") and (
            workflow.info().typed_search_attributes.get(visibility.CLUSTER) is not None
        )
        try:
            result = await self._runbook(request.cluster)
        except StepFailed as failed:
            result = self._finish(Outcome.FAILED, str(failed))
        self._finished = True
        self._notify("result", f"{result.result.value}: {result.reason}")
        result.notifications_failed = await self._notifications_failed()
        meter = workflow.metric_meter()
        labels = {"cluster": result.cluster, "trigger": result.trigger}
        meter.create_counter(metrics.FAILOVER_RESULTS, "failover runs by result").add(
            1, labels | {"result": result.result.value}
        )
        if result.notifications_failed:
            meter.create_counter(
                metrics.NOTIFICATIONS_FAILED, "notifications that failed for good"
            ).add(result.notifications_failed, labels)
        if self._visible:
            workflow.upsert_search_attributes(
                [
                    visibility.PHASE.value_set("done"),
                    visibility.RESULT.value_set(result.result.value),
                ]
            )
        workflow.set_current_details(f"**{result.result.value}**: {result.reason}")
        if workflow.patched("tell-monitor"):
            await self._tell_monitor(result)
        return result

    def _phase_changed(self, phase: str) -> None:
        """The live phase: a search attribute to filter on, and the run's current details."""
        status = self._status
        if self._visible:
            workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])
        direction = (
            f"{status.from_side} → {status.to_side}"
            if status.from_side
            else "direction not read yet"
        )
        workflow.set_current_details(
            f"**{phase}** ({direction}), {len(status.steps)} step(s) done; {status.reason}"
        )

    async def _tell_monitor(self, result: FailoverResult) -> None:
        """Lets the cluster's monitor know at once (it re-reads the switch, starts its
        cooldown); a cluster without a monitor is fine."""
        monitor = workflow.get_external_workflow_handle(names.monitor_workflow_id(result.cluster))
        try:
            await monitor.signal(names.FAILOVER_FINISHED_SIGNAL, result)
        except FailureError as err:
            workflow.logger.info("no monitor told about the result: %s", err)

    async def _runbook(self, cluster: ClusterConfig) -> FailoverResult:
        switcher = make_switcher(cluster, self._steps)

        async with self._steps.step("snapshot"):
            snapshot = await switcher.snapshot()
        active, unknown = switcher.active_side(snapshot)
        request = self._request
        if request.dry_run and request.assume_active is not None:
            active, unknown = request.assume_active, None
        if active is None:
            return self._refuse("snapshot", Outcome.ABORTED, f"aborted: {unknown}")
        target = other_side(active)
        self._status.from_side, self._status.to_side = active, target
        self._switcher = switcher
        refusal = decisions.planned_switch_refusal(active, request.to_side)
        if refusal is not None:
            return self._refuse("snapshot", Outcome.ABORTED, f"aborted: {refusal}")
        if request.dry_run:
            return self._plan(cluster, active, snapshot)

        if (aborted := await self._checkpoint("confirm")) is not None:
            return aborted
        if request.skip_confirmation:
            refusal = decisions.skip_confirmation_refusal(request.trigger)
            if refusal is not None:
                return self._refuse("snapshot", Outcome.NOT_CONFIRMED, refusal)
            self._steps.skipped("confirm", f"skipped: a planned switch ({request.trigger})")
        else:
            async with self._steps.step("confirm"):
                refusal = await self._confirm(cluster, active)
            if refusal is not None:
                return self._refuse("confirm", Outcome.NOT_CONFIRMED, refusal)

        if (aborted := await self._checkpoint("preflight")) is not None:
            return aborted
        async with self._steps.step("preflight") as preflight:
            refusal = decisions.preflight_refusal(await self._probe(cluster, target), target)
            if refusal is None and workflow.patched("preflight-switch-target"):
                refusal = await self._check_switch_target(cluster, target)
            if refusal is not None:
                preflight.end("refused", f"aborted: {refusal}")
        if refusal is not None:
            return self._refuse("preflight", Outcome.ABORTED, f"aborted: {refusal}")

        if cluster.require_approval and request.trigger not in decisions.PLANNED_TRIGGERS:
            refusal = await self._await_approval(cluster)
            if refusal is not None:
                return self._refuse("awaiting_approval", Outcome.ABORTED, refusal)
        if (aborted := await self._checkpoint("switch")) is not None:
            return aborted
        self._switch_started = True
        self._notify("switching", f"moving traffic {active} → {target}: {request.reason}")
        refusal = await switcher.switch(active, target)
        if refusal is not None:
            return self._finish(Outcome.ABORTED, f"aborted: {refusal}")

        await self._flush_caches(cluster, "flush")

        async with self._steps.step("verify") as verify:
            problem = await self._verify(
                lambda: self._check_switched_path(cluster, switcher, target), cluster
            )
            if problem is not None:
                verify.end("failed", problem)
        if problem is None and cluster.verify.storefront is not None:
            async with self._steps.step("verify_storefront") as verify:
                problem = await self._verify(lambda: self._check_storefront(cluster), cluster)
                if problem is not None:
                    verify.end("failed", problem)
        if problem is None:
            outcome = Outcome.FAILED_OVER_WITH_WARNINGS if self._warnings else Outcome.FAILED_OVER
            return self._finish(outcome, self._request.reason)

        async with self._steps.step("rollback"):
            await self._rollback(switcher, snapshot, problem)
        await self._flush_caches(cluster, "flush_after_rollback")
        return self._finish(Outcome.ROLLED_BACK, f"rolled back: {problem}")

    # --- notifications -----------------------------------------------------------------------

    def _notify(self, event: str, text: str) -> None:
        """Sends in the background; the run never waits for, or fails on, a notification."""
        request = self._request
        channels = request.cluster.notify
        if channels.sns_topic_arn is None and channels.webhook_url_env is None:
            return
        if self._notifying is None:
            # Asked only where notifications are configured: older runs never had any.
            self._notifying = workflow.patched("notify")
        if not self._notifying:
            return
        self._notifications.append(
            workflow.start_activity_method(
                NotifyActivities.notify,
                Notification(
                    cluster=request.cluster.name,
                    event=event,
                    text=f"{request.cluster.name}: {text}",
                    sns_topic_arn=channels.sns_topic_arn,
                    webhook_url_env=channels.webhook_url_env,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {event}",
            )
        )

    async def _notifications_failed(self) -> int:
        failed = 0
        for outcome in await asyncio.gather(*self._notifications, return_exceptions=True):
            if isinstance(outcome, BaseException):
                failed += 1
                why = failure_reason(outcome) if isinstance(outcome, ActivityError) else outcome
                workflow.logger.warning("notification failed: %s", why)
        return failed

    # --- operators -------------------------------------------------------------------------

    async def _checkpoint(self, before: str) -> FailoverResult | None:
        """Before each step up to the switch: wait while paused; end the run if aborted."""
        await workflow.wait_condition(
            lambda: self._paused_by is None or self._abort_reason is not None
        )
        if self._abort_reason is None:
            return None
        return self._finish(Outcome.ABORTED, f"aborted before {before} {self._abort_reason}")

    async def _await_approval(self, cluster: ClusterConfig) -> str | None:
        """Waits for `approve` (or `abort`); on timeout, proceeds or aborts as configured."""
        self._notify(
            "awaiting approval",
            f"waiting for approval up to {cluster.approval_timeout_seconds:g} s "
            f"(then {cluster.approval_on_timeout}): `failover approve {cluster.name}`",
        )
        async with self._steps.step("awaiting_approval"):
            try:
                await workflow.wait_condition(
                    lambda: self._approved_by is not None or self._abort_reason is not None,
                    timeout=timedelta(seconds=cluster.approval_timeout_seconds),
                )
            except TimeoutError:
                waited = f"no approval within {cluster.approval_timeout_seconds:g} s"
                if cluster.approval_on_timeout == "abort":
                    return f"aborted: {waited} (approval_on_timeout: abort)"
                self._approved_by = f"timeout ({waited}; approval_on_timeout: proceed)"
        if self._abort_reason is not None:
            return f"aborted {self._abort_reason}"
        self._status.approved_by = self._approved_by
        return None

    @workflow.update(name=names.APPROVE_UPDATE)
    async def approve(self, request: ApproveRequest) -> FailoverStatus:
        self._approved_by = request.who
        return self.status()

    @approve.validator
    def _approve_allowed(self, request: ApproveRequest) -> None:
        phase = self._status.phase
        if phase != "awaiting_approval":
            raise ApplicationError(f"not awaiting approval (phase {phase})")

    @workflow.update(name=names.ABORT_UPDATE)
    async def abort(self, request: AbortRequest) -> FailoverStatus:
        self._abort_reason = request.by()
        return self.status()

    @abort.validator
    def _abort_allowed(self, request: AbortRequest) -> None:
        if self._finished:
            raise ApplicationError("the failover has finished")
        if self._switch_started:
            raise ApplicationError(
                "abort after switch: use failback (the run finishes, or rolls back, by itself)"
            )
        if self._abort_reason is not None:
            raise ApplicationError(f"already aborted {self._abort_reason}")

    @workflow.update(name=names.PAUSE_UPDATE)
    async def pause(self, request: PauseRequest) -> FailoverStatus:
        self._paused_by = request.who_and_why()
        self._status.paused_by = self._paused_by
        return self.status()

    @pause.validator
    def _pause_allowed(self, request: PauseRequest) -> None:
        if self._finished or self._switch_started:
            raise ApplicationError("too late to pause: traffic is already moving")
        if self._paused_by is not None:
            raise ApplicationError(f"already paused by {self._paused_by}")

    @workflow.update(name=names.RESUME_UPDATE)
    async def resume(self, request: PauseRequest) -> FailoverStatus:
        self._paused_by = None
        self._status.paused_by = None
        return self.status()

    @resume.validator
    def _resume_allowed(self, request: PauseRequest) -> None:
        if self._paused_by is None:
            raise ApplicationError("not paused")

    # --- steps -----------------------------------------------------------------------------

    async def _confirm(self, cluster: ClusterConfig, active: Side) -> str | None:
        """Probes the active side `failure_threshold` times; any healthy round ends it.

        When the monitor started the run it has already seen those rounds from a quorum
        of vantage points: one fresh round guards against a recovery since then.
        """
        probe = cluster.probe
        threshold = 1 if self._request.confirmation is not None else probe.failure_threshold
        rounds: list[dict[str, str | None]] = []
        for round_number in range(1, threshold + 1):
            problems = await self._probe(cluster, active)
            rounds.append(problems)
            if decisions.side_down_reason(problems, probe.down_share) is None:
                break
            if round_number < threshold:
                await workflow.sleep(timedelta(seconds=probe.interval_seconds))
        return decisions.confirmation_refusal(rounds, threshold, probe.down_share)

    async def _flush_caches(self, cluster: ClusterConfig, step: str) -> None:
        """Flushes the app caches, then Varnish (`flush_stages`); a failed flush is a
        warning, never a rollback."""
        if not cluster.caches:
            return
        results: list[FlushResult | str] = []
        async with self._steps.step(step):
            for stage in cluster.flush_stages():
                results += await asyncio.gather(*(self._flush(cluster, cache) for cache in stage))
        for result in results:
            if isinstance(result, FlushResult):
                self._flushed.append(result)
            else:
                self._warnings.append(result)
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            self._steps.mark_last(step, "warning", "; ".join(failed))

    async def _flush(self, cluster: ClusterConfig, cache: object) -> FlushResult | str:
        is_ssm = isinstance(cache, SsmCache)
        timeout = timedelta(seconds=cache.timeout_seconds + 30) if is_ssm else timedelta(seconds=30)
        try:
            return await workflow.execute_activity_method(
                CacheActivities.flush_cache,
                FlushRequest(cluster=cluster.name, cache=cache),
                start_to_close_timeout=timeout,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=FLUSH_RETRY,
                summary=f"flush {cache.type} {cache.name}",
            )
        except ActivityError as err:
            return f"cache flush failed: {cache.name}: {failure_reason(err)}"

    async def _verify(
        self, check: Callable[[], Awaitable[str | None]], cluster: ClusterConfig
    ) -> str | None:
        """Runs one verification check up to verify_attempts times; None once it passes."""
        problem: str | None = None
        attempts = cluster.probe.verify_attempts
        for attempt in range(1, attempts + 1):
            problem = await check()
            if problem is None:
                return None
            workflow.logger.warning("verify attempt %d of %d: %s", attempt, attempts, problem)
            if attempt < attempts:
                await workflow.sleep(timedelta(seconds=cluster.probe.interval_seconds))
        return problem

    async def _check_switched_path(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> str | None:
        """The control plane, the new side's nodes, then search through the switched path."""
        problem = await switcher.control_plane_problem(target)
        if problem is not None:
            return problem
        down = decisions.side_down_reason(await self._probe(cluster, target))
        if down is not None:
            return f"verify failed: new side not serving: {down}"
        if cluster.verify.search_path is not None:
            check = cluster.verify.search_path
            side = cluster.side(target)
            result = await self._check(
                VerifyActivities.check_search_path,
                SearchPathRequest(
                    check=check, side=side, yellow_policy=cluster.probe.yellow_policy
                ),
                check.timeout_seconds,
                f"search via {check.url}",
            )
            if result.problem is not None:
                return f"verify failed: {result.problem}"
        return None

    async def _check_switch_target(self, cluster: ClusterConfig, target: Side) -> str | None:
        """Who answers where the switch will point: the record's value as resolved, or the
        NLB's target addresses. The nodes in the config can be right while that is not."""
        request = decisions.switch_target_request(cluster, target)
        if request is None:
            return None
        probe = await workflow.execute_activity_method(
            VerifyActivities.probe_switch_target,
            request,
            start_to_close_timeout=timedelta(seconds=request.timeout_seconds * 3 + 5),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROBE_RETRY,
            summary="probe " + ", ".join(e.name for e in request.endpoints),
        )
        return decisions.switch_target_refusal(
            probe,
            target,
            expected_cluster_name=request.side.expected_cluster_name,
            expected_cluster_uuid=request.side.expected_cluster_uuid,
            yellow_policy=cluster.probe.yellow_policy,
        )

    async def _check_storefront(self, cluster: ClusterConfig) -> str | None:
        check = cluster.verify.storefront
        assert check is not None
        result = await self._check(
            VerifyActivities.check_storefront,
            StorefrontRequest(check=check),
            check.timeout_seconds,
            f"storefront search {check.search_term!r}",
        )
        return f"verify failed: {result.problem}" if result.problem is not None else None

    async def _rollback(self, switcher: Switcher, snapshot: Snapshot, problem: str) -> None:
        try:
            await switcher.restore(snapshot)
        except StepFailed as failed:
            raise StepFailed(f"{problem}; rollback failed too: {failed}") from None

    # --- activity calls --------------------------------------------------------------------

    async def _probe(self, cluster: ClusterConfig, side: Side) -> dict[str, str | None]:
        return await probe_side(cluster, side)

    async def _check(
        self,
        activity: Callable[[VerifyActivities, Any], Awaitable[CheckResult]],
        request: object,
        timeout_seconds: float,
        summary: str,
    ) -> CheckResult:
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=timedelta(seconds=timeout_seconds * 3 + 5),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROBE_RETRY,
            summary=summary,
        )

    def _plan(self, cluster: ClusterConfig, active: Side, snapshot: Snapshot) -> FailoverResult:
        """A dry run: what this failover would change and check, from what AWS says now."""
        request = self._request
        plan = decisions.failover_plan(
            cluster,
            active=active,
            record_values=snapshot.values if isinstance(snapshot, RecordSnapshot) else (),
            skip_confirmation=request.skip_confirmation,
            monitor_confirmed=request.confirmation is not None,
        )
        return self._finish(Outcome.PLANNED, "dry run: nothing changed", plan=plan)

    # --- bookkeeping -----------------------------------------------------------------------

    def _refuse(self, step: str, outcome: Outcome, reason: str) -> FailoverResult:
        self._steps.mark_last(step, "refused", reason)
        return self._finish(outcome, reason)

    def _finish(
        self, outcome: Outcome, reason: str, plan: FailoverPlan | None = None
    ) -> FailoverResult:
        status = self._status
        status.phase = "done"
        switcher = self._switcher
        workflow.logger.info("failover %s: %s", outcome.value, reason)
        return FailoverResult(
            result=outcome,
            cluster=self._request.cluster.name,
            from_side=status.from_side,
            to_side=status.to_side,
            from_value=switcher.describe(status.from_side)
            if switcher and status.from_side
            else None,
            to_value=switcher.describe(status.to_side) if switcher and status.to_side else None,
            reason=reason,
            trigger=self._request.trigger,
            started_at=self._started,
            finished_at=workflow.now(),
            steps=list(status.steps),
            flushed=self._flushed,
            warnings=self._warnings,
            plan=plan,
            approved_by=self._approved_by,
        )

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> FailoverStatus:
        return self._status
