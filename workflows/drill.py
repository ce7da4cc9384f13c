"""A failover drill: practise the real failover on a healthy system, measure it, fail back.

steady state before → guardrails → failover to the standby (the incident's own workflow,
as a child) → hold → failback (the same workflow, the other way) → steady state after →
report. A drill never runs on a sick system, in a blackout window, beside another
failover or drill, or while the cluster's monitor is paused; it says why it skipped.
Only a drill may skip the failure confirmation (it switches a healthy primary on purpose),
and its report says so. `abort` stops it at any point; if traffic already moved, it fails
back first. The storefront is probed throughout by a light loop that counts failures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.control import FailoverControlActivities
    from activities.reports import ReportActivities
    from activities.verify import VerifyActivities
    from failover import decisions, names, visibility
    from failover.config import ClusterConfig
    from failover.decisions.rto import predict_rto
    from failover.models import (
        AbortRequest,
        CheckResult,
        DrillReport,
        DrillRequest,
        FailoverRequest,
        FailoverResult,
        FailoverStatus,
        GuardrailFacts,
        GuardrailRequest,
        Outcome,
        ReportFiles,
        Side,
        StorefrontLoopInput,
        StorefrontRequest,
        StorefrontTally,
        WriteReportInput,
    )
    from failover.names import WORKFLOW_TASK_TIMEOUT

from workflows.failover import FailoverWorkflow
from workflows.steps import (
    HEARTBEAT_TIMEOUT,
    PROBE_RETRY,
    StepRecorder,
    failure_reason,
    first_fit_round,
    probe_side,
)

SWITCHED_OVER = (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS)
FAILOVER_TIMEOUT = timedelta(hours=2)


@workflow.defn(name=names.DRILL_WORKFLOW)
class DrillWorkflow:
    @workflow.init
    def __init__(self, request: DrillRequest) -> None:
        self._request = request
        self._status = FailoverStatus(
            cluster=request.cluster.name, phase="starting", reason=request.reason
        )
        self._steps = StepRecorder(self._status, on_phase=self._phase_changed)
        self._abort_reason: str | None = None
        self._failover: FailoverResult | None = None
        self._failback: FailoverResult | None = None
        self._tally = StorefrontTally()
        self._plan: list[FailoverResult] = []
        self._switch_started: datetime | None = None
        self._finished = False

    @property
    def _visible(self) -> bool:
        return workflow.info().typed_search_attributes.get(visibility.CLUSTER) is not None

    def _child_attributes(self, cluster: str, summary: str) -> TypedSearchAttributes | None:
        """The drill's own start tells what the namespace has: no summary attribute for
        the child where the drill has none (a server that lacks it)."""
        if not self._visible:
            return None
        has_summary = workflow.info().typed_search_attributes.get(visibility.SUMMARY) is not None
        return visibility.attributes(
            cluster, trigger="drill", summary=summary if has_summary else None
        )

    def _phase_changed(self, phase: str) -> None:
        if self._visible:
            workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])
        workflow.set_current_details(f"**{phase}**: {self._request.reason}")

    @workflow.run
    async def run(self, request: DrillRequest) -> DrillReport:
        report = await self._drill(request.cluster)
        self._finished = True
        async with self._steps.step("report"):
            report.files = await self._write(report, request.cluster)
        self._steps.phase("done")
        if self._visible:
            workflow.upsert_search_attributes([visibility.RESULT.value_set(report.verdict)])
        workflow.set_current_details(f"**{report.verdict}**: {report.reason}")
        return report

    async def _write(self, report: DrillReport, cluster: ClusterConfig) -> ReportFiles | None:
        """Markdown and HTML beside the worker; the result keeps the report either way."""
        try:
            return await workflow.execute_activity_method(
                ReportActivities.write_drill_report,
                WriteReportInput(report=report, directory=cluster.drill.report_dir),
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=PROBE_RETRY,
                summary=f"write the report of {report.workflow_id}",
            )
        except ActivityError as err:
            workflow.logger.warning("drill report not written: %s", failure_reason(err))
            return None

    async def _drill(self, cluster: ClusterConfig) -> DrillReport:
        async with self._steps.step("steady_state_before"):
            sick = await self._steady_state(cluster)
        if sick is not None:
            return self._skip("steady_state_before", sick)

        async with self._steps.step("guardrails"):
            facts = await self._guardrail_facts(cluster)
            refusal = decisions.drill_refusal(
                now=workflow.now(),
                settings=cluster.drill,
                running=facts.running,
                monitor_paused=facts.monitor_paused,
                monitor_paused_reason=facts.monitor_paused_reason,
            )
        if refusal is not None:
            return self._skip("guardrails", refusal)
        if self._abort_reason is not None:
            return self._report("aborted", f"aborted before the switch: {self._abort_reason}")

        if self._request.dry_run:
            async with self._steps.step("plan"):
                self._plan = [
                    await self._switch(cluster, "standby", dry_run=True),
                    await self._switch(cluster, "primary", dry_run=True, assume_active="standby"),
                ]
            return self._report("skipped", "dry run: the plan of both switches, nothing changed")

        loop = self._start_storefront_loop(cluster)
        self._switch_started = workflow.now()
        async with self._steps.step("failover"):
            self._failover = await self._switch(cluster, "standby")
        switched = self._failover.result in SWITCHED_OVER
        if not switched:
            self._steps.mark_last("failover", "failed", self._failover.reason)

        if switched and self._abort_reason is None:
            async with self._steps.step("hold"):
                await self._hold(cluster)

        if switched or self._failover.result == Outcome.FAILED:
            # FAILED may have left traffic anywhere: the failback reads the switch and
            # refuses by itself if the primary is already active.
            async with self._steps.step("failback"):
                self._failback = await self._switch(cluster, "primary")
            if self._failback.result not in SWITCHED_OVER:
                self._steps.mark_last("failback", "failed", self._failback.reason)

        self._tally = await self._stop_storefront_loop(loop)
        async with self._steps.step("steady_state_after"):
            after = await self._steady_state(cluster)
        if after is not None:
            self._steps.mark_last("steady_state_after", "failed", after)
        verdict, reason = decisions.drill_verdict(
            failover=self._failover.result,
            failover_reason=self._failover.reason,
            failback=self._failback.result if self._failback else None,
            failback_reason=self._failback.reason if self._failback else None,
            steady_after=after,
            rto_seconds=self._rto_seconds(),
            rto_target_seconds=cluster.drill.rto_target_seconds,
            aborted=self._abort_reason,
        )
        return self._report(verdict, reason)

    # --- phases ------------------------------------------------------------------------------

    async def _steady_state(self, cluster: ClusterConfig) -> str | None:
        """Both sides and the storefront well, in up to `verify_attempts` rounds: a drill
        skipped for one slow answer from a busy shop would be noise."""
        return await first_fit_round(
            lambda: self._steady_round(cluster),
            attempts=cluster.probe.verify_attempts,
            interval_seconds=cluster.probe.interval_seconds,
            what="steady state",
            patch="steady-retry",
        )

    async def _steady_round(self, cluster: ClusterConfig) -> str | None:
        primary = await self._probe(cluster, "primary")
        standby = await self._probe(cluster, "standby")
        storefront: CheckResult | None = None
        if cluster.verify.storefront is not None:
            check = cluster.verify.storefront
            storefront = await workflow.execute_activity_method(
                VerifyActivities.check_storefront,
                StorefrontRequest(check=check),
                start_to_close_timeout=timedelta(seconds=check.timeout_seconds * 3 + 5),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=PROBE_RETRY,
                summary=f"storefront search {check.search_term!r}",
            )
        return decisions.steady_state_problem(
            primary=primary,
            standby=standby,
            storefront=storefront.problem if storefront else None,
        )

    async def _hold(self, cluster: ClusterConfig) -> None:
        """Stays on the standby for the configured time; an abort ends the wait early."""
        hold = self._request.hold_seconds
        seconds = cluster.drill.hold_seconds if hold is None else hold
        try:
            await workflow.wait_condition(
                lambda: self._abort_reason is not None, timeout=timedelta(seconds=seconds)
            )
        except TimeoutError:
            return

    async def _switch(
        self,
        cluster: ClusterConfig,
        to_side: Side,
        *,
        dry_run: bool = False,
        assume_active: Side | None = None,
    ) -> FailoverResult:
        """The incident's own failover workflow, as a child with the incident's id, so no
        real failover can run beside it; it outlives the drill if the drill is ended."""
        request = FailoverRequest(
            cluster=cluster,
            reason=f"drill {workflow.info().workflow_id}: planned switch to the {to_side}",
            trigger="drill",
            to_side=to_side,
            skip_confirmation=True,
            dry_run=dry_run,
            assume_active=assume_active,
        )
        summary = f"{cluster.name}: drill switch to the {to_side}"
        workflow_id = (
            names.plan_workflow_id(cluster.name, f"{to_side}-{workflow.uuid4().hex[:8]}")
            if dry_run
            else names.failover_workflow_id(cluster.name)
        )
        try:
            return await workflow.execute_child_workflow(
                FailoverWorkflow.run,
                request,
                id=workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                execution_timeout=FAILOVER_TIMEOUT,
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                static_summary=summary,
                search_attributes=self._child_attributes(cluster.name, summary),
            )
        except ChildWorkflowError as err:
            raise ApplicationError(
                f"the drill's switch to the {to_side} failed: {failure_reason(err)}"
            ) from None

    def _start_storefront_loop(self, cluster: ClusterConfig) -> workflow.ActivityHandle | None:
        check = cluster.verify.storefront
        if check is None:
            return None
        return workflow.start_activity_method(
            VerifyActivities.storefront_probe_loop,
            StorefrontLoopInput(
                check=check, interval_seconds=cluster.drill.storefront_interval_seconds
            ),
            start_to_close_timeout=FAILOVER_TIMEOUT * 2,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            # It returns its counts when cancelled: wait for them.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"storefront probe loop every {cluster.drill.storefront_interval_seconds:g} s",
        )

    async def _stop_storefront_loop(self, loop: workflow.ActivityHandle | None) -> StorefrontTally:
        if loop is None:
            return StorefrontTally()
        loop.cancel()
        try:
            return await loop
        except ActivityError as err:
            workflow.logger.warning("storefront loop lost: %s", failure_reason(err))
            return StorefrontTally(lost=True)

    async def _guardrail_facts(self, cluster: ClusterConfig) -> GuardrailFacts:
        return await workflow.execute_activity_method(
            FailoverControlActivities.drill_guardrail_facts,
            GuardrailRequest(cluster=cluster.name, own_workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROBE_RETRY,
            summary=f"running failovers and drills of {cluster.name}, monitor pause",
        )

    async def _probe(self, cluster: ClusterConfig, side: Side) -> dict[str, str | None]:
        return await probe_side(cluster, side)

    # --- the report --------------------------------------------------------------------------

    def _rto_seconds(self) -> float | None:
        return decisions.verified_switch_seconds(self._switch_started, self._failover)

    def _skip(self, phase: str, reason: str) -> DrillReport:
        self._steps.mark_last(phase, "refused", reason)
        return self._report("skipped", reason)

    def _report(self, verdict: str, reason: str) -> DrillReport:
        cluster = self._request.cluster
        tally = self._tally
        recovery = None
        if self._switch_started is not None and tally.last_failure_at is not None:
            recovery = (tally.last_failure_at - self._switch_started).total_seconds()
        elif self._switch_started is not None and tally.total:
            recovery = 0.0
        workflow.logger.info("drill %s %s: %s", cluster.name, verdict, reason)
        return DrillReport(
            cluster=cluster.name,
            workflow_id=workflow.info().workflow_id,
            verdict=verdict,  # type: ignore[arg-type]
            reason=reason,
            started_at=workflow.info().start_time,
            finished_at=workflow.now(),
            rto_seconds=self._rto_seconds(),
            rto_target_seconds=cluster.drill.rto_target_seconds,
            storefront_recovery_seconds=recovery,
            storefront_failed_requests=tally.failed,
            storefront_total_requests=tally.total,
            storefront_problems=tally.problems,
            confirmation_skipped=self._failover is not None,
            phases=list(self._status.steps),
            failover=self._failover,
            failback=self._failback,
            plans=self._plan,
            dry_run=self._request.dry_run,
            # From config: the drill reads the switch only inside its failover runs.
            rto_predicted=predict_rto(cluster) if workflow.patched("rto-prediction") else None,
        )

    # --- operators ---------------------------------------------------------------------------

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> FailoverStatus:
        return self._status

    @workflow.update(name=names.ABORT_UPDATE)
    async def abort(self, request: AbortRequest) -> FailoverStatus:
        self._abort_reason = request.by()
        workflow.logger.warning("drill %s abort %s", self._request.cluster.name, self._abort_reason)
        return self._status

    @abort.validator
    def _abort_allowed(self, request: AbortRequest) -> None:
        if self._finished:
            raise ApplicationError("the drill has finished")
        if self._abort_reason is not None:
            raise ApplicationError(f"already aborted {self._abort_reason}")
        if self._status.phase in ("failback", "steady_state_after"):
            raise ApplicationError(
                "the drill is already failing back or done with traffic; let it finish"
            )
