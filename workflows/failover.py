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
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.control import FailoverControlActivities
    from activities.search_data import SearchDataActivities
    from activities.verify import VerifyActivities
    from failover import decisions, metrics, names, visibility
    from failover.config import ClusterConfig
    from failover.decisions.rto import predict_rto
    from failover.models import (
        AbortRequest,
        ApproveRequest,
        CheckResult,
        DataSnapshot,
        FailoverPlan,
        FailoverRequest,
        FailoverResult,
        FailoverStatus,
        FlushResult,
        OperatorRequest,
        Outcome,
        PauseRequest,
        PromoteResult,
        RecordSnapshot,
        SearchPathRequest,
        Side,
        StorefrontRequest,
        SwitchTargetRequest,
        WriteCheckInput,
        other_side,
    )

from workflows.replication import CLUSTER_CHANGE_RETRY, indices_input, read_data, reseed
from workflows.steps import (
    HEARTBEAT_TIMEOUT,
    PROBE_RETRY,
    Notifier,
    StepFailed,
    StepRecorder,
    failure_reason,
    first_fit_round,
    fit_to_take_traffic,
    flush_stages,
    probe_side,
)
from workflows.switchers import Snapshot, Switcher, make_switcher


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
        self._notifier = Notifier(request.cluster.name, request.cluster.notify, patch="notify")
        self._accept_stale: OperatorRequest | None = request.accept_stale
        self._accepted: str | None = None
        self._readiness: list[str] = []
        self._preflight_done = False
        self._promotion: PromoteResult | None = None
        self._target_data: DataSnapshot | None = None
        self._accepted_missing: set[str] = set()
        self._data_refusal: str | None = None
        self._ever_paused = False
        self._early_rounds: dict[Side, asyncio.Task[dict[str, str | None]]] = {}

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
        result.notifications_failed = await self._notifier.failed()
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

        self._start_early_rounds(cluster)
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
            data = await self._plan_data(cluster, active, target) if cluster.magento else []
            return self._plan(cluster, active, snapshot, data)

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
            first = self._early_round(target)
            problems = await (first if first is not None else self._probe(cluster, target))
            if cluster.magento is not None:  # a missing alias is for the data checks to name
                problems = decisions.defer_to_data(problems)
            refusal = decisions.preflight_refusal(problems, target)
            if refusal is not None and workflow.patched("preflight-retry"):
                # Runs recorded before this patch refused on the first round.
                refusal = await fit_to_take_traffic(
                    cluster, target, attempts=cluster.probe.verify_attempts
                )
            if refusal is None and workflow.patched("preflight-switch-target"):
                refusal = await self._check_switch_target(cluster, target)
            if refusal is None and cluster.magento is not None:
                refusal = await self._check_data(cluster, active, target)
            self._preflight_done = True
            if refusal is not None:
                preflight.end("refused", f"aborted: {refusal}")
            elif self._readiness:
                preflight.end("ok", "; ".join(self._readiness))
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

        if workflow.patched("verify-side-by-side"):
            problem = await self._verify_side_by_side(cluster, switcher, target)
        else:
            problem = await self._verify_one_by_one(cluster, switcher, target)
        if problem is None:
            await self._promote(cluster, target)
            if request.trigger == "failback" and cluster.promotes:
                await self._restore_replication(cluster, active)
            outcome = Outcome.FAILED_OVER_WITH_WARNINGS if self._warnings else Outcome.FAILED_OVER
            return self._finish(outcome, self._request.reason)

        async with self._steps.step("rollback"):
            await self._rollback(switcher, snapshot, problem)
        await self._flush_caches(cluster, "flush_after_rollback")
        return self._finish(Outcome.ROLLED_BACK, f"rolled back: {problem}")

    def _verify_checks(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> list[tuple[str, Callable[[], Awaitable[str | None]]]]:
        """The checks of a switch, in the order their problems are reported."""
        checks: list[tuple[str, Callable[[], Awaitable[str | None]]]] = [
            ("verify", lambda: self._check_switched_path_together(cluster, switcher, target))
        ]
        if cluster.magento is not None and cluster.verify.search_path:
            checks.append(("verify_indices", lambda: self._check_indices(cluster, target)))
        if cluster.verify.storefront is not None:
            checks.append(("verify_storefront", lambda: self._check_storefront(cluster)))
        return checks

    async def _verify_side_by_side(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> str | None:
        """The checks together: each reads on its own (the switched path, the aliases
        through it, the storefront through Varnish, every cache already flushed), so the
        switch is verified when the slowest passes, not after the sum of all three (and
        `verify`'s own three reads are made together too). Once
        one has failed for good the others make no further attempt: the rollback waits
        for none. The first problem in check order is the one reported."""
        checks = self._verify_checks(cluster, switcher, target)
        failed: list[str] = []

        async def run(name: str, check: Callable[[], Awaitable[str | None]]) -> str | None:
            async with self._steps.step(name) as verify:
                problem = await self._verify(check, cluster, stop=lambda: bool(failed))
                if problem is not None:
                    failed.append(name)
                    verify.end("failed", problem)
            return problem

        since = len(self._status.steps)
        problems = await asyncio.gather(*(run(name, check) for name, check in checks))
        self._steps.in_order(since, [name for name, _ in checks])
        return next((p for p in problems if p is not None), None)

    async def _verify_one_by_one(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> str | None:
        """Runs recorded before `verify-side-by-side`: each check after the last passed."""
        async with self._steps.step("verify") as verify:
            problem = await self._verify(
                lambda: self._check_switched_path(cluster, switcher, target), cluster
            )
            if problem is not None:
                verify.end("failed", problem)
        if problem is None and cluster.magento is not None and cluster.verify.search_path:
            async with self._steps.step("verify_indices") as verify:
                problem = await self._verify(lambda: self._check_indices(cluster, target), cluster)
                if problem is not None:
                    verify.end("failed", problem)
        if problem is None and cluster.verify.storefront is not None:
            async with self._steps.step("verify_storefront") as verify:
                problem = await self._verify(lambda: self._check_storefront(cluster), cluster)
                if problem is not None:
                    verify.end("failed", problem)
        return problem

    # --- notifications -----------------------------------------------------------------------

    def _notify(self, event: str, text: str) -> None:
        self._notifier.send(event, text)

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
        self._ever_paused = True
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

    @workflow.update(name=names.ACCEPT_STALE_UPDATE)
    async def accept_stale(self, request: OperatorRequest) -> FailoverStatus:
        """An operator accepts the standby's data as it is (stale, lagging, missing an
        alias) for this run; preflight then records the refusals it overrode."""
        self._accept_stale = request
        return self.status()

    @accept_stale.validator
    def _accept_stale_allowed(self, request: OperatorRequest) -> None:
        if self._finished or self._preflight_done:
            raise ApplicationError("too late: preflight has already judged the standby")
        if not request.reason.strip():
            raise ApplicationError("say why the standby's data is good enough (a reason)")

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
            first = self._early_round(active) if round_number == 1 else None
            problems = await (first if first is not None else self._probe(cluster, active))
            rounds.append(problems)
            if decisions.side_down_reason(problems, probe.down_share) is None:
                break
            if round_number < threshold:
                await workflow.sleep(timedelta(seconds=probe.interval_seconds))
        return decisions.confirmation_refusal(rounds, threshold, probe.down_share)

    def _start_early_rounds(self, cluster: ClusterConfig) -> None:
        """When the monitor started the run (its vantage points already saw the outage),
        one probe round of each side starts with the snapshot instead of after it: the
        active side's is confirm's fresh round, the other's is preflight's first. They are
        as fresh as rounds started after the snapshot's read (one call earlier); a pause in
        between makes them stale, and confirm and preflight then probe again."""
        request = self._request
        if request.confirmation is None or request.dry_run or request.skip_confirmation:
            return
        if not workflow.patched("probe-with-snapshot"):  # runs recorded before probed after
            return
        sides: tuple[Side, Side] = ("primary", "standby")
        for side in sides:
            task = asyncio.ensure_future(self._probe(cluster, side))
            # An unused round's failure is nobody's: confirm and preflight probe again.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._early_rounds[side] = task

    def _early_round(self, side: Side) -> asyncio.Task[dict[str, str | None]] | None:
        """The round started with the snapshot for `side`, once, unless a pause made it
        stale (an operator may hold the run for minutes)."""
        task = self._early_rounds.pop(side, None)
        return None if self._ever_paused else task

    async def _flush_caches(self, cluster: ClusterConfig, step: str) -> None:
        """Flushes the app caches, then Varnish (`flush_stages`); a failed flush is a
        warning, never a rollback."""
        if not cluster.caches:
            return
        async with self._steps.step(step):
            results = await flush_stages(cluster.name, cluster.flush_stages())
        for result in results:
            if isinstance(result, FlushResult):
                self._flushed.append(result)
            else:
                self._warnings.append(result)
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            self._steps.mark_last(step, "warning", "; ".join(failed))

    async def _verify(
        self,
        check: Callable[[], Awaitable[str | None]],
        cluster: ClusterConfig,
        stop: Callable[[], bool] | None = None,
    ) -> str | None:
        """Runs one verification check up to verify_attempts times; None once it passes.
        `stop`: true once another check has failed for good; no attempt is made after."""
        problem: str | None = None
        attempts = cluster.probe.verify_attempts
        for attempt in range(1, attempts + 1):
            problem = await check()
            if problem is None:
                return None
            workflow.logger.warning("verify attempt %d of %d: %s", attempt, attempts, problem)
            if attempt < attempts:
                await workflow.sleep(timedelta(seconds=cluster.probe.interval_seconds))
                if stop is not None and stop():
                    break
        return problem

    async def _check_switched_path(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> str | None:
        """The control plane, the new side's nodes, then search through the switched path."""
        problem = await switcher.control_plane_problem(target)
        if problem is not None:
            return problem
        down = decisions.side_down_reason(await self._probe_target(cluster, target))
        if down is not None:
            return f"verify failed: new side not serving: {down}"
        return await self._search_path_problem(cluster, target)

    async def _check_switched_path_together(
        self, cluster: ClusterConfig, switcher: Switcher, target: Side
    ) -> str | None:
        """The three reads of `_check_switched_path` side by side (none needs another's
        answer); the first problem in its order is the one reported."""
        control, nodes, path = await asyncio.gather(
            switcher.control_plane_problem(target),
            self._probe_target(cluster, target),
            self._search_path_problem(cluster, target),
        )
        if control is not None:
            return control
        down = decisions.side_down_reason(nodes)
        if down is not None:
            return f"verify failed: new side not serving: {down}"
        return path

    async def _search_path_problem(self, cluster: ClusterConfig, target: Side) -> str | None:
        """Search through the switched path, as Magento reaches it (if configured)."""
        check = cluster.verify.search_path
        if check is None:
            return None
        result = await self._check(
            VerifyActivities.check_search_path,
            SearchPathRequest(
                check=check, side=cluster.side(target), yellow_policy=cluster.probe.yellow_policy
            ),
            check.timeout_seconds,
            f"search via {check.url}",
        )
        return None if result.problem is None else f"verify failed: {result.problem}"

    async def _check_switch_target(self, cluster: ClusterConfig, target: Side) -> str | None:
        """Who answers where the switch will point: the record's value as resolved, or the
        NLB's target addresses. The nodes in the config can be right while that is not."""
        request = decisions.switch_target_request(cluster, target)
        if request is None:
            return None
        return await first_fit_round(
            lambda: self._switch_target_round(cluster, request, target),
            attempts=cluster.probe.verify_attempts,
            interval_seconds=cluster.probe.interval_seconds,
            what="switch target",
            patch="switch-target-retry",
        )

    async def _switch_target_round(
        self, cluster: ClusterConfig, request: SwitchTargetRequest, target: Side
    ) -> str | None:
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

    async def _check_data(self, cluster: ClusterConfig, active: Side, target: Side) -> str | None:
        """The target's storefront indices against the active side's: read now when the
        switch is planned (both answer), else as the monitor last saw them."""
        assert cluster.magento is not None
        recording = workflow.start_activity_method(
            FailoverControlActivities.monitor_data_record,
            cluster.name,
            start_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROBE_RETRY,
            summary="the monitor's record of the indices",
        )
        planned = self._request.skip_confirmation
        reads = [read_data(cluster, target)] + ([read_data(cluster, active)] if planned else [])
        live = await asyncio.gather(*reads)
        record = await recording
        reference = decisions.reference_for(target, live[1] if planned else None, record)
        refusals = decisions.readiness_refusals(
            live[0],
            reference,
            record.side(target),
            cluster.magento,
            cluster.replication,
            workflow.now().timestamp(),
        )
        self._target_data = live[0]
        self._readiness = decisions.readiness_lines(live[0], cluster.magento) + refusals
        accept = self._accept_stale
        refusal = decisions.data_refusal(refusals, accepted=accept is not None)
        if refusal is None and refusals and accept is not None:
            self._accepted = f"accepted {accept.by()}: {'; '.join(refusals)}"
            self._accepted_missing = {a.alias for a in live[0].aliases if not a.indices}
            self._warnings.append(f"standby's data accepted as it is: {self._accepted}")
        return refusal

    async def _check_indices(self, cluster: ClusterConfig, target: Side) -> str | None:
        result = await self._check(
            SearchDataActivities.check_indices,
            self._path_input(cluster, target),
            cluster.probe.timeout_seconds,
            "storefront aliases via the switched path",
        )
        return f"verify failed: {result.problem}" if result.problem is not None else None

    def _path_input(self, cluster: ClusterConfig, target: Side) -> WriteCheckInput:
        path = cluster.verify.search_path
        assert path is not None and cluster.magento is not None
        return WriteCheckInput(
            url=str(path.url),
            nameserver=path.nameserver,
            side=cluster.side(target),
            # An alias an operator accepted as missing is not looked for.
            aliases=[a for a in cluster.magento.alias_names() if a not in self._accepted_missing],
            timeout_seconds=path.timeout_seconds,
        )

    async def _promote(self, cluster: ClusterConfig, target: Side) -> None:
        """After a verified switch: stop replication on the new side so Magento can write,
        then write through the switched name. It cannot be undone, so it never runs in a
        drill; a failure is a warning (traffic has moved and serves search)."""
        if not cluster.replication.enabled or cluster.magento is None:
            return
        request = self._request
        why_not = decisions.promotion_refusal(
            trigger=request.trigger, dry_run=request.dry_run, promote=cluster.promotes
        )
        if why_not is not None:
            self._steps.skipped("promote", why_not)
            return
        async with self._steps.step("promote") as promote:
            try:
                self._promotion = await workflow.execute_activity_method(
                    SearchDataActivities.promote,
                    indices_input(cluster, target),
                    start_to_close_timeout=timedelta(minutes=5),
                    schedule_to_close_timeout=timedelta(minutes=15),
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=CLUSTER_CHANGE_RETRY,
                    summary=f"promote the {target}'s follower indices",
                )
            except ActivityError as err:
                problem = f"promotion failed: {failure_reason(err)}"
                self._warnings.append(problem)
                promote.end("warning", problem)
                return
            done = self._promotion
            detail = f"promoted {', '.join(done.promoted) or '-'}" + (
                f"; already promoted {', '.join(done.already)}" if done.already else ""
            )
            if done.write_problem is not None:
                self._warnings.append(done.write_problem)
                promote.end("warning", f"{detail}; {done.write_problem}")
            else:
                promote.end("ok", detail)
        if cluster.verify.search_path is not None:
            async with self._steps.step("verify_writes") as verify:
                result = await self._check(
                    SearchDataActivities.check_writes,
                    self._path_input(cluster, target),
                    cluster.probe.timeout_seconds,
                    "a write via the switched path",
                )
                if result.problem is not None:
                    self._warnings.append(result.problem)
                    verify.end("warning", result.problem)

    async def _restore_replication(self, cluster: ClusterConfig, left: Side) -> None:
        """After a failback: the side left behind follows the active one again."""
        try:
            result = await reseed(cluster, left, self._steps)
        except StepFailed as failed:
            self._warnings.append(f"replication not restored: {failed}")
            return
        if result.sync is not None and not result.sync.synced:
            self._warnings.append(f"replication not restored: {result.sync.problem}")

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

    async def _probe_target(self, cluster: ClusterConfig, side: Side) -> dict[str, str | None]:
        """The side traffic moves to: a missing alias is for the data checks to name."""
        problems = await probe_side(cluster, side)
        return decisions.defer_to_data(problems) if cluster.magento is not None else problems

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

    async def _plan_data(self, cluster: ClusterConfig, active: Side, target: Side) -> list[str]:
        """What preflight would find of the target's data now, and the promotion after."""
        refusal = await self._check_data(cluster, active, target)
        self._data_refusal = refusal
        lines = list(self._readiness)
        lines.append(f"preflight would refuse: {refusal}" if refusal else "preflight: data ready")
        why_not = decisions.promotion_refusal(
            trigger=self._request.trigger, dry_run=False, promote=cluster.promotes
        )
        if cluster.replication.enabled:
            live = self._target_data
            followers = [f for f in live.followers if f.status != "not_following"] if live else []
            lines.append(
                f"promote: {why_not}"
                if why_not
                else f"promote: stop replication on the {target}'s follower indices after a "
                f"verified switch ({len(followers)} now following), then write through each alias"
            )
        return lines

    def _plan(
        self, cluster: ClusterConfig, active: Side, snapshot: Snapshot, data: list[str]
    ) -> FailoverResult:
        """A dry run: what this failover would change and check, from what AWS says now."""
        request = self._request
        plan = decisions.failover_plan(
            cluster,
            active=active,
            record_values=snapshot.values if isinstance(snapshot, RecordSnapshot) else (),
            skip_confirmation=request.skip_confirmation,
            monitor_confirmed=request.confirmation is not None,
        )
        plan.data = data
        plan.data_refusal = self._data_refusal
        if workflow.patched("rto-prediction"):  # dry runs recorded before it had none
            plan.rto = predict_rto(cluster, live=snapshot)
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
            readiness=self._readiness,
            accepted_stale=self._accepted,
            promotion=self._promotion,
        )

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> FailoverStatus:
        return self._status
