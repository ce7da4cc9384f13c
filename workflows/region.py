"""A Magento storefront's Region switch as a durable workflow: one line a step.

snapshot → confirm → preflight → (approval) → scale → database → caches → search → verify
the DR Region → traffic → flush → verify through www.

Everything before the database step is undone when a later check fails (the DR tier is
scaled back, www and search moved back). Once the database writer has moved there is no
automatic way back: the run stops as `failed_after_database_switch`, notifies, and says
what a person must decide. Decisions are pure functions in failover.decisions.region.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.region import RegionActivities
    from activities.verify import VerifyActivities
    from failover import decisions, metrics, names, visibility
    from failover.config import (
        ClusterConfig,
        RegionConfirmation,
        RegionSite,
        StorefrontCheck,
        StorefrontConfig,
    )
    from failover.models import (
        AbortRequest,
        AppHealthRequest,
        ApproveRequest,
        AppTierRequest,
        AppTierState,
        CacheDatastoreRequest,
        CacheDatastoreState,
        CartRequest,
        CheckResult,
        DatabaseMode,
        DatabaseRequest,
        DatabaseState,
        FailoverCacheRequest,
        FailoverRequest,
        FailoverResult,
        FlushResult,
        Outcome,
        PauseRequest,
        RecordSnapshot,
        RegionDrillRequest,
        RegionDrillResult,
        RegionRole,
        RegionSnapshot,
        RegionSwitchRequest,
        RegionSwitchResult,
        RegionSwitchStatus,
        ScaleRequest,
        ScaleResult,
        Side,
        StorefrontRequest,
        SwitchDatabaseRequest,
        SwitchDatabaseResult,
        WaitCacheRequest,
        WaitCacheResult,
        WaitCapacityRequest,
        WaitCapacityResult,
        WaitDatabaseRequest,
        WaitDatabaseResult,
        other_region,
    )
    from failover.names import WORKFLOW_TASK_TIMEOUT

from workflows.failover import FailoverWorkflow
from workflows.steps import (
    AWS_CALL_TIMEOUT,
    AWS_RETRY,
    AWS_STEP_DEADLINE,
    HEARTBEAT_TIMEOUT,
    PROBE_RETRY,
    Notifier,
    StepFailed,
    StepRecorder,
    aws_activity,
    failure_reason,
    fit_to_take_traffic,
    flush_stages,
)
from workflows.switchers import DnsSwitcher

SEARCH_TIMEOUT = timedelta(hours=2)
# A search failover already running (its monitor saw the Region's search cluster die) holds
# the cluster's workflow id; the switch waits for it this long, then looks again.
SEARCH_BUSY_RETRY = timedelta(seconds=1)
SEARCH_BUSY_ATTEMPTS = 600


class _Stranded(Exception):
    """A step after the database switch failed: the run stops, no automatic way back."""


@workflow.defn(name=names.REGION_SWITCH_WORKFLOW)
class RegionSwitchWorkflow:
    @workflow.init
    def __init__(self, request: RegionSwitchRequest) -> None:
        self._request = request
        self._started = workflow.now()
        self._status = RegionSwitchStatus(
            storefront=request.storefront.name, phase="starting", reason=request.reason
        )
        self._steps = StepRecorder(self._status, on_phase=self._phase_changed)  # type: ignore[arg-type]
        self._visible = False
        self._paused_by: str | None = None
        self._changing = False
        self._abort_reason: str | None = None
        self._approved_by: str | None = None
        self._finished = False
        self._database_started = False
        self._database_switched = False
        self._data_loss: float | None = None
        self._scaled_from: dict[str, int] | None = None
        self._www: DnsSwitcher | None = None
        self._www_snapshot: RecordSnapshot | None = None
        self._www_moved = False
        self._search: FailoverResult | None = None
        self._search_from: Side | None = None
        self._flushed: list[FlushResult] = []
        self._warnings: list[str] = []
        self._plan: list[str] = []
        self._notifier = Notifier(request.storefront.name, request.storefront.notify)

    @workflow.run
    async def run(self, request: RegionSwitchRequest) -> RegionSwitchResult:
        # Runs started on a server without the attributes go on without them.
        self._visible = workflow.info().typed_search_attributes.get(visibility.CLUSTER) is not None
        try:
            result = await self._runbook(request)
        except _Stranded as stranded:
            result = await self._stranded(str(stranded))
        except StepFailed as failed:
            if self._database_started:
                result = await self._stranded(str(failed))
            else:
                result = await self._roll_back(Outcome.ROLLED_BACK, f"rolled back: {failed}")
        self._finished = True
        self._notify("result", f"{result.result.value}: {result.reason}")
        result.notifications_failed = await self._notifier.failed()
        workflow.metric_meter().create_counter(
            metrics.REGION_SWITCH_RESULTS, "Region switches by result"
        ).add(1, {"storefront": result.storefront, "result": result.result.value})
        if self._visible:
            workflow.upsert_search_attributes(
                [
                    visibility.PHASE.value_set("done"),
                    visibility.RESULT.value_set(result.result.value),
                ]
            )
        workflow.set_current_details(f"**{result.result.value}**: {result.reason}")
        return result

    def _phase_changed(self, phase: str) -> None:
        """The live phase: a search attribute to filter on, and the run's current details."""
        status = self._status
        if self._visible:
            workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])
        direction = (
            f"{status.from_region} → {status.to_region}" if status.from_region else "not read yet"
        )
        workflow.set_current_details(
            f"**{phase}** ({direction}), {len(status.steps)} step(s) done; {status.reason}"
        )

    # --- the runbook ---------------------------------------------------------------------

    async def _runbook(self, request: RegionSwitchRequest) -> RegionSwitchResult:
        storefront = request.storefront
        async with self._steps.step("snapshot"):
            snapshot = await self._snapshot(storefront)
        serving, unknown = decisions.serving_region(snapshot.www_values, storefront)
        if serving is None:
            return self._refuse("snapshot", Outcome.ABORTED, f"aborted: {unknown}")
        refusal = decisions.planned_region_refusal(serving, request.to_region)
        if refusal is not None:
            return self._refuse("snapshot", Outcome.ABORTED, f"aborted: {refusal}")
        target = other_region(serving)
        mode = decisions.database_mode(request.mode, planned=request.planned)
        status = self._status
        status.from_region, status.to_region, status.mode = serving, target, mode

        if request.planned:
            self._steps.skipped("confirm", "skipped: a planned switch")
        elif not request.dry_run:
            async with self._steps.step("confirm"):
                refusal = await self._confirm(storefront.site(serving), storefront)
            if refusal is not None:
                return self._refuse("confirm", Outcome.NOT_CONFIRMED, refusal)

        if (aborted := await self._checkpoint("preflight")) is not None:
            return aborted
        async with self._steps.step("preflight") as preflight:
            refusal = await self._preflight(request, snapshot, target, mode)
            if refusal is not None:
                preflight.end("refused", f"aborted: {refusal}")
        if request.dry_run:
            self._plan.append(f"preflight would refuse: {refusal}" if refusal else "preflight: ok")
            return self._finish(Outcome.PLANNED, "dry run: nothing changed")
        if refusal is not None:
            return self._finish(Outcome.ABORTED, f"aborted: {refusal}")

        why = decisions.approval_reason(
            mode=mode,
            planned=request.planned,
            allow_data_loss=storefront.database.allow_data_loss,
            require_approval=storefront.require_approval,
        )
        if why is not None:
            refusal = await self._await_approval(storefront, why)
            if refusal is not None:
                return self._refuse("awaiting_approval", Outcome.ABORTED, refusal)
        if (aborted := await self._checkpoint("scale")) is not None:
            return aborted
        self._changing = True

        self._notify("switching", f"moving the storefront {serving} → {target}: {request.reason}")
        problem = await self._scale(storefront.site(target), snapshot.tiers[target])
        if problem is not None:
            return await self._roll_back(Outcome.ROLLED_BACK, f"rolled back: {problem}")
        if self._abort_reason is not None:
            return await self._roll_back(
                Outcome.ABORTED, f"aborted before database {self._abort_reason}"
            )
        problem = await self._database(storefront, snapshot, target, mode)
        if problem is not None:
            return await self._roll_back(Outcome.ROLLED_BACK, f"rolled back: {problem}")
        await self._caches(storefront, target)
        await self._switch_search(request, target)
        await self._checked("verify_dr", self._verify_region(storefront, target))
        await self._move_www(storefront, target)
        await self._flush(storefront.site(target))
        await self._checked("verify", self._verify_www(storefront))
        outcome = Outcome.FAILED_OVER_WITH_WARNINGS if self._warnings else Outcome.FAILED_OVER
        return self._finish(outcome, request.reason)

    async def _checked(self, step: str, check: Awaitable[str | None]) -> None:
        """A check after a change: a problem rolls back, or strands the run after the
        database switch."""
        async with self._steps.step(step) as end:
            problem = await check
            if problem is not None:
                end.end("failed", problem)
        if problem is None:
            return
        if self._database_switched:
            raise _Stranded(problem)
        raise StepFailed(problem)

    # --- snapshot and confirmation ---------------------------------------------------------

    async def _snapshot(self, storefront: StorefrontConfig) -> RegionSnapshot:
        self._www = DnsSwitcher(storefront.www, self._steps)
        www, database, primary, dr = await asyncio.gather(
            self._www.snapshot(),
            self._read_database(storefront, storefront.dr),
            self._read_tier(storefront.primary, required=False),
            self._read_tier(storefront.dr, required=True),
        )
        assert isinstance(www, RecordSnapshot)
        self._www_snapshot = www
        serving, _ = decisions.serving_region(www.values, storefront)
        return RegionSnapshot(
            www_values=www.values,
            serving=serving,
            writer=database.writer,
            writer_role=decisions.writer_region(database, storefront),
            tiers={"primary": primary, "dr": dr},
        )

    async def _confirm(self, site: RegionSite, storefront: StorefrontConfig) -> str | None:
        """The serving Region's ALB and health check, from every vantage point, `rounds`
        times; a round in which a quorum sees it healthy ends it."""
        confirm = storefront.confirm
        queues = confirm.vantage_points or [workflow.info().task_queue]
        rounds: list[list[str | None]] = []
        for number in range(1, confirm.rounds + 1):
            seen = await asyncio.gather(*(self._health(site, confirm, q) for q in queues))
            rounds.append([r.problem for r in seen])
            refusal = decisions.region_down_refusal(
                rounds, rounds_needed=len(rounds), quorum=confirm.needed()
            )
            if refusal is not None:
                return refusal
            if number < confirm.rounds:
                await workflow.sleep(timedelta(seconds=confirm.interval_seconds))
        self._status.reason = (
            f"{self._request.reason}; {decisions.region_down_reason(rounds, confirm.rounds)}"
        )
        return None

    async def _health(
        self, site: RegionSite, confirm: RegionConfirmation, queue: str
    ) -> CheckResult:
        try:
            return await workflow.execute_activity_method(
                VerifyActivities.check_app_health,
                AppHealthRequest(
                    url=str(site.url).rstrip("/"),
                    path=confirm.health_path,
                    timeout_seconds=confirm.timeout_seconds,
                    host_header=_www_host(self._request.storefront),
                ),
                task_queue=queue,
                start_to_close_timeout=timedelta(seconds=confirm.timeout_seconds * 2 + 5),
                # A vantage point whose worker is gone must not hold the confirmation.
                schedule_to_close_timeout=timedelta(seconds=confirm.timeout_seconds * 3 + 10),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=PROBE_RETRY,
                summary=f"health of {site.region} via {queue}",
            )
        except ActivityError as err:
            # A vantage point that cannot probe is no evidence either way: not a failure.
            workflow.logger.warning("vantage point %s did not probe: %s", queue, err)
            return CheckResult(name="app_health", problem=None, detail="no answer")

    # --- preflight -----------------------------------------------------------------------

    async def _preflight(
        self,
        request: RegionSwitchRequest,
        snapshot: RegionSnapshot,
        target: RegionRole,
        mode: DatabaseMode,
    ) -> str | None:
        """The DR Region, read now, each refusal a stable reason; nothing changes here."""
        storefront = request.storefront
        site = storefront.site(target)
        tier = snapshot.tiers[target]
        database, cache, search = await asyncio.gather(
            self._read_database(storefront, site),
            self._read_cache(storefront, site),
            self._search_readiness(request, target),
        )
        self._plan += self._plan_lines(storefront, snapshot, target, mode, database, tier)
        refusals = [
            decisions.app_tier_refusal(tier, capacity=site.capacity),
            decisions.database_refusal(
                database,
                target_arn=site.database_cluster_arn,
                max_lag_seconds=storefront.database.max_lag_seconds,
                mode=mode,
            ),
            decisions.cache_refusal(cache, region=site.region, group=site.cache_replication_group)
            if cache is not None and site.cache_replication_group is not None
            else None,
            search,
        ]
        self._data_loss = decisions.data_loss_window(database, site.database_cluster_arn, mode)
        found = [r for r in refusals if r is not None]
        return "; ".join(found) if found else None

    def _plan_lines(
        self,
        storefront: StorefrontConfig,
        snapshot: RegionSnapshot,
        target: RegionRole,
        mode: DatabaseMode,
        database: DatabaseState,
        tier: AppTierState,
    ) -> list[str]:
        site = storefront.site(target)
        member = database.member(site.database_cluster_arn)
        lag = f"{member.lag_seconds:g}s" if member and member.lag_seconds is not None else "?"
        call = "SwitchoverGlobalCluster" if mode == "graceful" else "FailoverGlobalCluster"
        lines = [
            f"{storefront.name}: {other_region(target)} → {target} ({site.region}), {mode}",
            f"scale: {site.auto_scaling_group} {tier.desired_capacity} → "
            f"{max(site.capacity, tier.desired_capacity)} (capacity {site.capacity})",
            f"database: {call} of {storefront.database.global_cluster_id} to "
            f"{site.database_cluster_arn} (writer now {snapshot.writer}, lag {lag})",
        ]
        if storefront.cache_datastore is not None:
            lines.append(
                f"caches: FailoverGlobalReplicationGroup "
                f"{storefront.cache_datastore.global_replication_group_id} to {site.region}"
            )
        if storefront.search_cluster is not None:
            lines.append(f"search: fail {storefront.search_cluster} over to the {site.search_side}")
        www = storefront.www
        to_value = www.primary_value if target == "primary" else www.standby_value
        lines.append(f"traffic: UPSERT {www.record_name} → {to_value} (TTL {www.ttl})")
        lines.append(f"flush: {', '.join(c.name for c in site.caches) or 'nothing'}")
        return lines

    async def _search_readiness(
        self, request: RegionSwitchRequest, target: RegionRole
    ) -> str | None:
        """The search cluster's own preflight, as a dry run toward the DR Region's side:
        its nodes, and its storefront indices and replication (issue: standby data)."""
        cluster, side = request.search, request.storefront.site(target).search_side
        if cluster is None or side is None:
            return None
        down = await fit_to_take_traffic(cluster, side, attempts=cluster.probe.verify_attempts)
        if down is not None:
            return f"{decisions.SEARCH_NOT_READY}: {down}"
        return decisions.search_refusal(
            await self._search_child(request, cluster, side, dry_run=True)
        )

    # --- the changes ---------------------------------------------------------------------

    async def _scale(self, site: RegionSite, tier: AppTierState) -> str | None:
        """Scale the DR app tier up to its capacity and wait until it takes traffic."""
        ref = _tier(site)
        if tier.desired_capacity < site.capacity or tier.min_size < site.capacity:
            # Before the call: a call that changed the group and then failed is undone too.
            self._scaled_from = {"desired": tier.desired_capacity, "min": tier.min_size}
            async with self._steps.step("scale"):
                result: ScaleResult = await aws_activity(
                    RegionActivities.scale_app_tier,
                    ScaleRequest(
                        tier=ref,
                        desired_capacity=max(site.capacity, tier.desired_capacity),
                        min_size=max(site.capacity, tier.min_size),
                    ),
                    summary=f"scale {site.auto_scaling_group} to {site.capacity}",
                )
            if not result.changed:
                self._steps.mark_last("scale", "ok", "already at capacity")
        else:
            self._steps.skipped("scale", f"already at {tier.desired_capacity} ≥ {site.capacity}")
        timeout = self._request.storefront.scale_timeout_seconds
        async with self._steps.step("wait_capacity") as end:
            waited: WaitCapacityResult = await aws_activity(
                RegionActivities.wait_capacity,
                WaitCapacityRequest(
                    tier=ref,
                    capacity=site.capacity,
                    timeout_seconds=timeout,
                    poll_seconds=self._request.storefront.scale_poll_seconds,
                ),
                summary=f"wait for {site.capacity} healthy in {site.auto_scaling_group}",
                long_running=timedelta(seconds=timeout + 60),
            )
            problem = decisions.capacity_problem(waited, capacity=site.capacity, timeout_s=timeout)
            if problem is not None:
                end.end("failed", problem)
        return problem

    async def _database(
        self,
        storefront: StorefrontConfig,
        snapshot: RegionSnapshot,
        target: RegionRole,
        mode: DatabaseMode,
    ) -> str | None:
        """Move the writer; a refused switch changed nothing (None: it moved, or was there)."""
        site = storefront.site(target)
        settings = storefront.database
        if snapshot.writer_role == target:
            self._steps.skipped("database", f"{site.database_cluster_arn} already writes")
            return None
        self._database_started = True
        async with self._steps.step("database") as end:
            try:
                started: SwitchDatabaseResult = await workflow.execute_activity_method(
                    RegionActivities.switch_database,
                    SwitchDatabaseRequest(
                        global_cluster_id=settings.global_cluster_id,
                        region=site.region,
                        target_arn=site.database_cluster_arn,
                        mode=mode,
                    ),
                    start_to_close_timeout=AWS_CALL_TIMEOUT,
                    schedule_to_close_timeout=AWS_STEP_DEADLINE,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=AWS_RETRY,
                    summary=f"{mode} switch of {settings.global_cluster_id} to {site.region}",
                )
            except ActivityError as err:
                why = failure_reason(err)
                if decisions.switch_refused(_error_type(err)):
                    self._database_started = False
                    end.end("refused", why)
                    return f"the database switch was refused, nothing moved: {why}"
                raise StepFailed(why) from None
            if mode == "ungraceful" and not started.already:
                member = started.state.member(site.database_cluster_arn)
                if member is not None and member.lag_seconds is not None:
                    self._data_loss = member.lag_seconds
        async with self._steps.step("wait_database") as end:
            waited: WaitDatabaseResult = await aws_activity(
                RegionActivities.wait_database_writer,
                WaitDatabaseRequest(
                    global_cluster_id=settings.global_cluster_id,
                    region=site.region,
                    target_arn=site.database_cluster_arn,
                    timeout_seconds=settings.switch_timeout_seconds,
                    poll_seconds=settings.poll_seconds,
                ),
                summary=f"wait for {site.region} to write",
                long_running=timedelta(seconds=settings.switch_timeout_seconds + 60),
            )
            if not waited.done:
                problem = (
                    f"the writer did not move to {site.database_cluster_arn} within "
                    f"{settings.switch_timeout_seconds:g}s (writer {waited.state.writer}, "
                    f"FailoverState {waited.state.failover_status})"
                )
                end.end("failed", problem)
                raise _Stranded(problem)
        self._database_switched = True
        return None

    async def _caches(self, storefront: StorefrontConfig, target: RegionRole) -> None:
        datastore, site = storefront.cache_datastore, storefront.site(target)
        if datastore is None or site.cache_replication_group is None:
            return
        try:
            async with self._steps.step("caches"):
                await aws_activity(
                    RegionActivities.failover_cache_datastore,
                    FailoverCacheRequest(
                        global_replication_group_id=datastore.global_replication_group_id,
                        region=site.region,
                        primary_region=site.region,
                        primary_group=site.cache_replication_group,
                    ),
                    summary=f"fail {datastore.global_replication_group_id} over to {site.region}",
                )
            async with self._steps.step("wait_caches") as end:
                waited: WaitCacheResult = await aws_activity(
                    RegionActivities.wait_cache_datastore,
                    WaitCacheRequest(
                        global_replication_group_id=datastore.global_replication_group_id,
                        region=site.region,
                        primary_region=site.region,
                        timeout_seconds=datastore.switch_timeout_seconds,
                        poll_seconds=datastore.poll_seconds,
                    ),
                    summary=f"wait for {site.region} to hold the cache primary",
                    long_running=timedelta(seconds=datastore.switch_timeout_seconds + 60),
                )
                if not waited.done:
                    end.end("failed", f"cache primary still in {waited.state.primary_region}")
                    raise StepFailed(
                        f"the cache datastore's primary did not move to {site.region} within "
                        f"{datastore.switch_timeout_seconds:g}s (status {waited.state.status})"
                    )
        except StepFailed as failed:
            if self._database_switched:
                raise _Stranded(str(failed)) from None
            raise

    async def _switch_search(self, request: RegionSwitchRequest, target: RegionRole) -> None:
        cluster, side = request.search, request.storefront.site(target).search_side
        if cluster is None or side is None:
            return
        async with self._steps.step("search") as end:
            result = await self._search_child(request, cluster, side, dry_run=False)
            self._search = result
            if result.result in (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS):
                self._search_from = result.from_side
                return
            if result.result == Outcome.ABORTED and decisions.ALREADY_ACTIVE in result.reason:
                end.end("ok", f"the {side} already served search")
                return
            problem = f"search failover {result.result.value}: {result.reason}"
            end.end("failed", problem)
        if self._database_switched:
            raise _Stranded(problem)
        raise StepFailed(problem)

    async def _search_child(
        self, request: RegionSwitchRequest, cluster: ClusterConfig, side: Side, *, dry_run: bool
    ) -> FailoverResult:
        """The search cluster's own failover workflow, under its own id (the lock): a
        failover of it already running is waited for, not raced."""
        planned_back = request.trigger == "drill" and side == "primary"
        child = FailoverRequest(
            cluster=cluster,
            reason=f"region switch {workflow.info().workflow_id}: {request.reason}",
            trigger="failback" if planned_back else "region",
            to_side=side,
            skip_confirmation=True,
            dry_run=dry_run,
        )
        workflow_id = (
            names.plan_workflow_id(cluster.name, f"region-{workflow.uuid4().hex[:8]}")
            if dry_run
            else names.failover_workflow_id(cluster.name)
        )
        for _ in range(SEARCH_BUSY_ATTEMPTS):
            try:
                return await workflow.execute_child_workflow(
                    FailoverWorkflow.run,
                    child,
                    id=workflow_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    execution_timeout=SEARCH_TIMEOUT,
                    task_timeout=WORKFLOW_TASK_TIMEOUT,
                    static_summary=f"{cluster.name}: search for the Region switch",
                )
            except WorkflowAlreadyStartedError:
                await workflow.sleep(SEARCH_BUSY_RETRY)
            except ChildWorkflowError as err:
                raise StepFailed(f"search failover failed: {failure_reason(err)}") from None
        raise StepFailed(f"a failover of {cluster.name} was still running; gave up waiting")

    async def _verify_region(self, storefront: StorefrontConfig, target: RegionRole) -> str | None:
        """Search and a cart through the DR ALB itself, before any customer is sent there."""
        site = storefront.site(target)
        check = storefront.checks.model_copy(
            update={"url": site.url, "nameserver": None, "host_header": _www_host(storefront)}
        )
        return await self._attempts(lambda: self._storefront_and_cart(check))

    async def _verify_www(self, storefront: StorefrontConfig) -> str | None:
        """Through www as customers reach it: search, the broken pages gone, a cart."""
        problem = await self._www_record_problem(storefront)
        if problem is not None:
            return problem
        return await self._attempts(lambda: self._storefront_and_cart(storefront.checks))

    async def _www_record_problem(self, storefront: StorefrontConfig) -> str | None:
        assert self._www is not None and self._status.to_region is not None
        return await self._www.control_plane_problem(
            decisions.www_side(self._status.to_region)  # type: ignore[arg-type]
        )

    async def _storefront_and_cart(self, check: StorefrontCheck) -> str | None:
        search, cart = await asyncio.gather(
            self._check(VerifyActivities.check_storefront, StorefrontRequest(check=check)),
            self._check(VerifyActivities.check_cart, CartRequest(check=check)),
        )
        problems = [r.problem for r in (search, cart) if r.problem is not None]
        return "; ".join(problems) if problems else None

    async def _check(
        self, activity: Callable[[VerifyActivities, Any], Awaitable[CheckResult]], request: Any
    ) -> CheckResult:
        timeout = request.check.timeout_seconds
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=timedelta(seconds=timeout * 3 + 5),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=PROBE_RETRY,
            summary=f"{activity.__name__} via {request.check.url}",
        )

    async def _attempts(self, check: Callable[[], Awaitable[str | None]]) -> str | None:
        storefront = self._request.storefront
        problem: str | None = None
        for attempt in range(1, storefront.verify_attempts + 1):
            problem = await check()
            if problem is None:
                return None
            workflow.logger.warning(
                "verify attempt %d of %d: %s", attempt, storefront.verify_attempts, problem
            )
            if attempt < storefront.verify_attempts:
                await workflow.sleep(timedelta(seconds=storefront.verify_interval_seconds))
        return problem

    async def _move_www(self, storefront: StorefrontConfig, target: RegionRole) -> None:
        assert self._www is not None and self._status.from_region is not None
        self._www_moved = True
        try:
            await self._www.switch(
                decisions.www_side(self._status.from_region),  # type: ignore[arg-type]
                decisions.www_side(target),  # type: ignore[arg-type]
            )
        except StepFailed as failed:
            if self._database_switched:
                raise _Stranded(str(failed)) from None
            raise

    async def _flush(self, site: RegionSite) -> None:
        """The DR Region's caches: the app's backends, then Varnish. A failed flush is a
        warning: the verification after it says whether customers see broken pages."""
        if not site.caches:
            return
        async with self._steps.step("flush"):
            results = await flush_stages(
                self._request.storefront.name, site.flush_stages(), site.region
            )
        self._flushed += [r for r in results if isinstance(r, FlushResult)]
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            self._warnings += failed
            self._steps.mark_last("flush", "warning", "; ".join(failed))

    # --- reading AWS ---------------------------------------------------------------------

    async def _read_tier(self, site: RegionSite, *, required: bool) -> AppTierState:
        try:
            return await aws_activity(
                RegionActivities.read_app_tier,
                _tier(site),
                summary=f"read the app tier in {site.region}",
            )
        except StepFailed as failed:
            if required:
                raise
            # The Region being left may not answer at all: nothing there is changed.
            self._warnings.append(f"could not read the {site.region} app tier: {failed}")
            return AppTierState(region=site.region, load_balancer_state=None, group_found=False)

    async def _read_database(self, storefront: StorefrontConfig, site: RegionSite) -> DatabaseState:
        return await aws_activity(
            RegionActivities.read_database,
            DatabaseRequest(
                global_cluster_id=storefront.database.global_cluster_id, region=site.region
            ),
            summary=f"read {storefront.database.global_cluster_id} in {site.region}",
        )

    async def _read_cache(
        self, storefront: StorefrontConfig, site: RegionSite
    ) -> CacheDatastoreState | None:
        if storefront.cache_datastore is None:
            return None
        return await aws_activity(
            RegionActivities.read_cache_datastore,
            CacheDatastoreRequest(
                global_replication_group_id=storefront.cache_datastore.global_replication_group_id,
                region=site.region,
            ),
            summary=f"read the cache datastore in {site.region}",
        )

    # --- rollback and the stranded end ---------------------------------------------------

    async def _roll_back(self, outcome: Outcome, reason: str) -> RegionSwitchResult:
        """Undo, newest first, what this run changed before the database moved."""
        storefront = self._request.storefront
        assert self._status.from_region is not None and self._status.to_region is not None
        serving, target = self._status.from_region, self._status.to_region
        undo: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self._www_moved and self._www is not None and self._www_snapshot is not None:
            www, snapshot = self._www, self._www_snapshot
            undo.append(("www back", lambda: www.restore(snapshot)))
        if self._search_from is not None and self._request.search is not None:
            undo.append(("search back", lambda: self._search_back(self._search_from)))
        if self._scaled_from is not None:
            undo.append(("scale back", lambda: self._scale_back(storefront.site(target))))
        if undo:
            async with self._steps.step("rollback") as end:
                failed = []
                for what, action in undo:
                    try:
                        await action()
                    except (StepFailed, ApplicationError) as err:
                        failed.append(f"{what} failed: {err}")
                if failed:
                    self._warnings += failed
                    end.end("warning", "; ".join(failed))
        workflow.logger.info("the %s Region keeps the storefront", serving)
        return self._finish(outcome, reason)

    async def _scale_back(self, site: RegionSite) -> None:
        assert self._scaled_from is not None
        await aws_activity(
            RegionActivities.scale_app_tier,
            ScaleRequest(
                tier=_tier(site),
                desired_capacity=self._scaled_from["desired"],
                min_size=self._scaled_from["min"],
            ),
            summary=f"scale {site.auto_scaling_group} back to {self._scaled_from['desired']}",
        )

    async def _search_back(self, side: Side | None) -> None:
        assert side is not None and self._request.search is not None
        result = await self._search_child(
            self._request.model_copy(update={"trigger": "drill"}),
            self._request.search,
            side,
            dry_run=False,
        )
        if result.result not in (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS):
            raise StepFailed(f"search {result.result.value}: {result.reason}")

    async def _stranded(self, problem: str) -> RegionSwitchResult:
        storefront = self._request.storefront
        from_role, to_role = self._status.from_region, self._status.to_region
        assert from_role is not None and to_role is not None
        to_site, from_site = storefront.site(to_role), storefront.site(from_role)
        www_now = "the DR value" if self._www_moved else f"the {from_role} Region still"
        reason = (
            f"failed_after_database_switch: {problem}. The database writer is in "
            f"{to_site.region} ({to_site.database_cluster_arn}); www points at {www_now}. "
            f"Nothing was rolled back automatically. Decide: repair {to_site.region} and run "
            f"the switch again (it skips what is done), or switch back to {from_site.region} "
            f"with a planned graceful switch once that Region is healthy."
        )
        self._notify("stranded", reason)
        return self._finish(Outcome.FAILED_AFTER_DATABASE_SWITCH, reason)

    # --- operators -----------------------------------------------------------------------

    async def _checkpoint(self, before: str) -> RegionSwitchResult | None:
        """Before each step up to the first change: wait while paused; end if aborted."""
        await workflow.wait_condition(
            lambda: self._paused_by is None or self._abort_reason is not None
        )
        if self._abort_reason is None:
            return None
        return self._finish(Outcome.ABORTED, f"aborted before {before} {self._abort_reason}")

    @workflow.update(name=names.PAUSE_UPDATE)
    async def pause(self, request: PauseRequest) -> RegionSwitchStatus:
        self._paused_by = request.who_and_why()
        self._status.paused_by = self._paused_by
        return self.status()

    @pause.validator
    def _pause_allowed(self, request: PauseRequest) -> None:
        if self._finished or self._changing:
            raise ApplicationError("too late to pause: the switch is changing things")
        if self._paused_by is not None:
            raise ApplicationError(f"already paused by {self._paused_by}")

    @workflow.update(name=names.RESUME_UPDATE)
    async def resume(self, request: PauseRequest) -> RegionSwitchStatus:
        self._paused_by = None
        self._status.paused_by = None
        return self.status()

    @resume.validator
    def _resume_allowed(self, request: PauseRequest) -> None:
        if self._paused_by is None:
            raise ApplicationError("not paused")

    async def _await_approval(self, storefront: StorefrontConfig, why: str) -> str | None:
        self._status.awaiting = why
        self._notify(
            "awaiting approval",
            f"{why}; waiting up to {storefront.approval_timeout_seconds:g} s: "
            f"`failover region approve {storefront.name}`",
        )
        async with self._steps.step("awaiting_approval"):
            try:
                await workflow.wait_condition(
                    lambda: self._approved_by is not None or self._abort_reason is not None,
                    timeout=timedelta(seconds=storefront.approval_timeout_seconds),
                )
            except TimeoutError:
                return f"aborted: no approval within {storefront.approval_timeout_seconds:g} s"
            finally:
                self._status.awaiting = None
        if self._abort_reason is not None:
            return f"aborted {self._abort_reason}"
        self._status.approved_by = self._approved_by
        return None

    @workflow.update(name=names.APPROVE_UPDATE)
    async def approve(self, request: ApproveRequest) -> RegionSwitchStatus:
        self._approved_by = request.who
        return self.status()

    @approve.validator
    def _approve_allowed(self, request: ApproveRequest) -> None:
        if self._status.phase != "awaiting_approval":
            raise ApplicationError(f"not awaiting approval (phase {self._status.phase})")

    @workflow.update(name=names.ABORT_UPDATE)
    async def abort(self, request: AbortRequest) -> RegionSwitchStatus:
        self._abort_reason = request.by()
        return self.status()

    @abort.validator
    def _abort_allowed(self, request: AbortRequest) -> None:
        if self._finished:
            raise ApplicationError("the Region switch has finished")
        if self._database_started:
            raise ApplicationError(
                "too late to abort: the database writer is moving; the run finishes, or "
                "stops as failed_after_database_switch, by itself"
            )
        if self._abort_reason is not None:
            raise ApplicationError(f"already aborted {self._abort_reason}")

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> RegionSwitchStatus:
        return self._status

    # --- bookkeeping ---------------------------------------------------------------------

    def _notify(self, event: str, text: str) -> None:
        self._notifier.send(event, text)

    def _refuse(self, step: str, outcome: Outcome, reason: str) -> RegionSwitchResult:
        self._steps.mark_last(step, "refused", reason)
        return self._finish(outcome, reason)

    def _finish(self, outcome: Outcome, reason: str) -> RegionSwitchResult:
        status = self._status
        status.phase = "done"
        workflow.logger.info("region switch %s: %s", outcome.value, reason)
        return RegionSwitchResult(
            result=outcome,
            storefront=self._request.storefront.name,
            reason=reason,
            trigger=self._request.trigger,
            from_region=status.from_region,
            to_region=status.to_region,
            mode=status.mode,
            started_at=self._started,
            finished_at=workflow.now(),
            steps=list(status.steps),
            data_loss_window_seconds=self._data_loss if self._database_switched else None,
            database_switched=self._database_switched,
            scaled_from=self._scaled_from,
            search=self._search,
            flushed=self._flushed,
            plan=self._plan,
            warnings=self._warnings,
            approved_by=self._approved_by,
        )


def _tier(site: RegionSite) -> AppTierRequest:
    return AppTierRequest(
        region=site.region,
        load_balancer_arn=site.load_balancer_arn,
        target_group_arn=site.target_group_arn,
        auto_scaling_group=site.auto_scaling_group,
    )


def _www_host(storefront: StorefrontConfig) -> str:
    """The Host customers send: the www check's own host (a Region's ALB serves it as such)."""
    url = storefront.checks.url
    return f"{url.host}:{url.port}" if url.port else str(url.host)


def _error_type(err: ActivityError) -> str | None:
    cause: BaseException | None = err.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


@workflow.defn(name=names.REGION_DRILL_WORKFLOW)
class RegionDrillWorkflow:
    """Switch to the DR Region (planned, graceful), hold, switch back, scale the DR tier
    back to its size before the drill. Each switch is the real `region-<storefront>` run,
    as a child, so no Region switch can run beside a drill."""

    @workflow.run
    async def run(self, request: RegionDrillRequest) -> RegionDrillResult:
        started = workflow.now()
        name = request.storefront.name
        forward = await self._switch(request, "dr")
        if forward.result not in SWITCHED:
            return self._result(request, started, "fail", f"forward: {forward.reason}", forward)
        await workflow.sleep(timedelta(seconds=request.hold_seconds))
        back = await self._switch(request, "primary")
        if back.result not in SWITCHED:
            reason = f"back: {back.reason}"
            return self._result(request, started, "fail", reason, forward, back)
        scaled_back = None
        if forward.scaled_from is not None:
            site = request.storefront.dr
            await aws_activity(
                RegionActivities.scale_app_tier,
                ScaleRequest(
                    tier=_tier(site),
                    desired_capacity=forward.scaled_from["desired"],
                    min_size=forward.scaled_from["min"],
                ),
                summary=f"scale {site.auto_scaling_group} back to its size before the drill",
            )
            scaled_back = forward.scaled_from
        reason = f"{name}: to the DR Region and back, verified both ways"
        return self._result(request, started, "pass", reason, forward, back, scaled_back)

    async def _switch(self, request: RegionDrillRequest, to: RegionRole) -> RegionSwitchResult:
        child = RegionSwitchRequest(
            storefront=request.storefront,
            search=request.search,
            reason=f"{request.reason}: planned switch to the {to} Region",
            trigger="drill",
            planned=True,
            mode="graceful",
            to_region=to,
        )
        try:
            return await workflow.execute_child_workflow(
                RegionSwitchWorkflow.run,
                child,
                id=names.region_switch_workflow_id(request.storefront.name),
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                execution_timeout=SEARCH_TIMEOUT,
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                static_summary=f"{request.storefront.name}: drill switch to the {to} Region",
            )
        except ChildWorkflowError as err:
            raise ApplicationError(
                f"the drill's switch to the {to} Region failed: {failure_reason(err)}"
            ) from None

    def _result(
        self,
        request: RegionDrillRequest,
        started: datetime,
        verdict: Literal["pass", "fail"],
        reason: str,
        forward: RegionSwitchResult,
        back: RegionSwitchResult | None = None,
        scaled_back: dict[str, int] | None = None,
    ) -> RegionDrillResult:
        return RegionDrillResult(
            verdict=verdict,
            storefront=request.storefront.name,
            reason=reason,
            forward=forward,
            back=back,
            scaled_back=scaled_back,
            started_at=started,
            finished_at=workflow.now(),
        )


SWITCHED = (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS)
