"""Client-side operations shared by the CLI, the demo and the tests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from failover import names, visibility
from failover.codec import encrypts
from failover.config import AppConfig, ClusterConfig
from failover.models import (
    AbortRequest,
    AlarmNotice,
    DataRecord,
    DrillReport,
    DrillRequest,
    FailoverRequest,
    FailoverResult,
    FailoverStatus,
    MonitorConfirmation,
    MonitorInput,
    MonitorStatus,
    OperatorRequest,
    PauseRequest,
    ReseedRequest,
    ReseedResult,
    Trigger,
    WatchProgress,
)
from failover.names import (
    DRILL_WORKFLOW,
    FAILOVER_WORKFLOW,
    MONITOR_WORKFLOW,
    WORKFLOW_TASK_TIMEOUT,
    drill_schedule_id,
    drill_workflow_id,
    failover_workflow_id,
    monitor_workflow_id,
)

T = TypeVar("T")


async def start_or_attach_failover(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    reason: str,
    trigger: Trigger = "manual",
    confirmation: MonitorConfirmation | None = None,
    rpc_timeout: timedelta | None = None,
    accept_stale: OperatorRequest | None = None,
) -> WorkflowHandle[Any, FailoverResult]:
    """Starts `failover-<cluster>`, or returns the run already in progress.

    The fixed id plus USE_EXISTING is what makes a storm of triggers one failover;
    ALLOW_DUPLICATE lets a later trigger start a new run (a move back) once one ended.
    """
    request = FailoverRequest(
        cluster=cluster,
        reason=reason,
        trigger=trigger,
        confirmation=confirmation,
        accept_stale=accept_stale,
    )
    return await _start_failover_run(
        client,
        request,
        task_queue=task_queue,
        conflict=WorkflowIDConflictPolicy.USE_EXISTING,
        rpc_timeout=rpc_timeout,
    )


async def _start_failover_run(
    client: Client,
    request: FailoverRequest,
    *,
    task_queue: str,
    conflict: WorkflowIDConflictPolicy,
    rpc_timeout: timedelta | None = None,
) -> WorkflowHandle[Any, FailoverResult]:
    """`failover-<cluster>`, with its summary, plan and search attributes."""
    summary = failover_summary(request)
    # Search attributes stay in the clear when payloads are encrypted, and a reason may
    # quote node URLs (a monitor's) or an alarm's text: the listed summary then has none.
    listed = failover_summary(request, with_reason=not encrypts(client.data_converter))
    return await visibility.start_with_fallback(
        lambda attributes: client.start_workflow(
            FAILOVER_WORKFLOW,
            request,
            id=failover_workflow_id(request.cluster.name),
            task_queue=task_queue,
            result_type=FailoverResult,
            id_conflict_policy=conflict,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=summary,
            static_details=failover_details(request),
            search_attributes=attributes,
            rpc_timeout=rpc_timeout,
        ),
        visibility.attributes(request.cluster.name, trigger=request.trigger, summary=listed),
    )


def failover_summary(request: FailoverRequest, *, with_reason: bool = True) -> str:
    """One line for the Web UI's list: which cluster, which way, why."""
    direction = f"→ {request.to_side}" if request.to_side else "primary ⇄ standby"
    why = f"{request.trigger}: {request.reason}" if with_reason else request.trigger
    return f"{request.cluster.name}: {direction} ({why})"[:200]


def failover_details(request: FailoverRequest) -> str:
    """The run's plan in Markdown, shown under the summary in the Web UI."""
    cluster = request.cluster
    switch = cluster.switch
    if switch.type == "route53":
        values = f"`{switch.primary_value}` ⇄ `{switch.standby_value}`"
        move = f"UPSERT `{switch.record_name}` {switch.record_type}: {values}"
    else:
        group = switch.target_group_arn.rsplit(":", 1)[-1]
        move = f"register/deregister targets of `{group}`"
    confirm = (
        "skipped (planned switch)"
        if request.skip_confirmation
        else f"{cluster.probe.failure_threshold} probe rounds"
        if request.confirmation is None
        else "1 fresh round (the monitor confirmed from a quorum)"
    )
    lines = [
        f"**{cluster.name}**, trigger `{request.trigger}`: {request.reason}",
        "",
        f"1. confirm: {confirm}",
        "2. preflight of the target side"
        + (", then operator approval" if cluster.require_approval else ""),
        f"3. switch: {move}",
        f"4. flush: {', '.join(f'{c.type} {c.name}' for c in cluster.caches) or 'no caches'}",
        "5. verify; roll back if it fails",
    ]
    if request.dry_run:
        lines.insert(0, "_dry run: nothing changes_")
    return "\n".join(lines)


async def failover_state(client: Client, cluster: str) -> dict[str, Any]:
    """The current run's live status, or the last run's result, as plain JSON-able data."""
    handle = client.get_workflow_handle(failover_workflow_id(cluster), result_type=FailoverResult)
    description = await handle.describe()
    state: dict[str, Any] = {
        "cluster": cluster,
        "workflow_id": description.id,
        "run_id": description.run_id,
        "workflow_status": description.status.name if description.status else None,
    }
    if description.status == WorkflowExecutionStatus.RUNNING:
        status = await handle.query(names.STATUS_QUERY, result_type=FailoverStatus)
        state["status"] = status.model_dump(mode="json")
    elif description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        state["result"] = result.model_dump(mode="json")
    return state


async def list_failover_clusters(client: Client) -> list[str]:
    """Clusters that have had a failover workflow, newest first, each once."""
    seen: list[str] = []
    async for execution in client.list_workflows(f"WorkflowType = '{FAILOVER_WORKFLOW}'"):
        cluster = names.cluster_of_failover(execution.id)
        if cluster not in seen:
            seen.append(cluster)
    return seen


# --- monitors --------------------------------------------------------------------------------


async def ensure_monitor(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    max_history_events: int = 10_000,
    signal: str = names.CONFIGURE_SIGNAL,
    signal_arg: Any = None,
    rpc_timeout: timedelta | None = None,
) -> WorkflowHandle[Any, None]:
    """Starts `monitor-<cluster>`, or hands the running one the current config.

    Signal-with-start does both in one call, so every worker start (and `monitor start`)
    leaves exactly one monitor per cluster, watching with the config on disk. Another
    signal (an alarm) may be sent the same way: it reaches the monitor, started if need be.
    """
    summary = f"{cluster.name}: monitor"
    return await visibility.start_with_fallback(
        lambda attributes: client.start_workflow(
            MONITOR_WORKFLOW,
            MonitorInput(
                cluster=cluster, task_queue=task_queue, max_history_events=max_history_events
            ),
            id=monitor_workflow_id(cluster.name),
            task_queue=task_queue,
            start_signal=signal,
            start_signal_args=[cluster if signal_arg is None else signal_arg],
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=summary,
            search_attributes=attributes,
            rpc_timeout=rpc_timeout,
        ),
        visibility.attributes(cluster.name, phase="watching", summary=summary),
    )


async def ensure_monitors(client: Client, config: AppConfig) -> list[str]:
    """One running monitor per cluster with monitoring enabled; returns their workflow ids."""
    started = []
    for cluster in config.clusters:
        if cluster.monitor.enabled:
            handle = await ensure_monitor(client, cluster, task_queue=config.task_queue)
            started.append(handle.id)
    return started


async def monitor_status(client: Client, cluster: str) -> MonitorStatus:
    handle = client.get_workflow_handle(monitor_workflow_id(cluster))
    return await handle.query(names.STATUS_QUERY, result_type=MonitorStatus)


async def watch_progress(client: Client, cluster: str) -> dict[str, WatchProgress]:
    """Each running watch's last heartbeat, by vantage point: rounds probed, what it sees."""
    handle = client.get_workflow_handle(monitor_workflow_id(cluster))
    description = await handle.describe()
    found: dict[str, WatchProgress] = {}
    for pending in description.raw_description.pending_activities:
        payloads = pending.heartbeat_details.payloads
        if pending.activity_type.name != names.WATCH_CLUSTER_ACTIVITY or not payloads:
            continue
        progress = (await client.data_converter.decode(payloads[:1], [WatchProgress]))[0]
        if progress.view is not None:
            found[progress.view.vantage] = progress
    return found


async def known_data(client: Client, cluster: str) -> DataRecord:
    """The monitor's record of both sides' storefront indices: the running watch's last
    heartbeat when it has one (fresher than its last report), else the monitor's state."""
    for progress in (await watch_progress(client, cluster)).values():
        if progress.view is not None and progress.view.data is not None:
            return progress.view.data
    return (await monitor_status(client, cluster)).state.data


async def pause_monitor(
    client: Client, cluster: str, *, reason: str, identity: str, paused: bool = True
) -> MonitorStatus:
    """Pauses (or resumes) automatic action; the monitor keeps probing and alerting."""
    handle = client.get_workflow_handle(monitor_workflow_id(cluster))
    return await send_update(
        handle,
        names.PAUSE_UPDATE if paused else names.RESUME_UPDATE,
        PauseRequest(reason=reason, identity=identity),
        result_type=MonitorStatus,
    )


class UpdateRefused(Exception):
    """A workflow refused an operator's update (its validator said no); the message says
    why."""


async def send_update(
    handle: WorkflowHandle[Any, Any],
    update: str,
    request: OperatorRequest,
    result_type: type[T] | None = None,
) -> T:
    """An operator's update to a failover, monitor or drill; a refusal is UpdateRefused."""
    try:
        return await handle.execute_update(update, request, result_type=result_type)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise UpdateRefused(getattr(cause, "message", None) or str(cause)) from None


# --- alarms ----------------------------------------------------------------------------------


async def deliver_alarm(
    client: Client,
    config: AppConfig,
    cluster: ClusterConfig,
    notice: AlarmNotice,
    *,
    rpc_timeout: timedelta | None = None,
) -> str:
    """Hands a verified alarm to Temporal; returns what was done, for the log and the answer.

    A firing alarm goes to the cluster's monitor (signal-with-start: one monitor, whatever
    the storm), which starts a failover that confirms the fault before acting. Without a
    monitor it starts or joins `failover-<cluster>` directly, which confirms it the same
    way. A resolved alarm is only recorded: it never moves traffic back.
    """
    if cluster.monitor.enabled:
        if notice.state == "firing":
            handle = await ensure_monitor(
                client,
                cluster,
                task_queue=config.task_queue,
                signal=names.ALARM_SIGNAL,
                signal_arg=notice,
                rpc_timeout=rpc_timeout,
            )
            return f"{handle.id} signalled"
        handle = client.get_workflow_handle(monitor_workflow_id(cluster.name))
        try:
            await handle.signal(names.ALARM_SIGNAL, notice, rpc_timeout=rpc_timeout)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return f"recorded here only: {handle.id} is not running"
        return f"recorded by {handle.id}"
    if notice.state == "firing":
        failover = await start_or_attach_failover(
            client,
            cluster,
            task_queue=config.task_queue,
            reason=notice.describe()[:500],
            trigger="alarm",
            rpc_timeout=rpc_timeout,
        )
        return f"{failover.id} run {failover.run_id} started or joined"
    return "recorded here only: no monitor for this cluster"


# --- failback, plans, drills -----------------------------------------------------------------


async def start_reseed(
    client: Client, cluster: ClusterConfig, *, task_queue: str, reason: str, identity: str
) -> WorkflowHandle[Any, ReseedResult]:
    """`reseed-<cluster>`: the side without traffic follows the active one again, so a
    failback (or the next failover) has fresh data to move to."""
    return await client.start_workflow(
        names.RESEED_WORKFLOW,
        ReseedRequest(cluster=cluster, reason=reason, identity=identity),
        id=names.reseed_workflow_id(cluster.name),
        task_queue=task_queue,
        result_type=ReseedResult,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        static_summary=f"{cluster.name}: re-seed the side without traffic ({reason})"[:200],
    )


async def reseed_progress(client: Client, workflow_id: str) -> str | None:
    """What a running re-seed waits for now (from its wait's last heartbeat), or None."""
    description = await client.get_workflow_handle(workflow_id).describe()
    for pending in description.raw_description.pending_activities:
        payloads = pending.heartbeat_details.payloads
        if pending.activity_type.name == names.WAIT_FOLLOWERS_SYNCED_ACTIVITY and payloads:
            [details] = await client.data_converter.decode(payloads[:1])
            if isinstance(details, dict) and details.get("problem"):
                return f"poll {details.get('polls')}: {details['problem']}"
    return None


async def accept_stale(
    client: Client, cluster: str, *, reason: str, identity: str
) -> FailoverStatus:
    """Tells the running failover to accept the standby's data as it is, for this run."""
    handle = client.get_workflow_handle(failover_workflow_id(cluster))
    return await send_update(
        handle,
        names.ACCEPT_STALE_UPDATE,
        OperatorRequest(reason=reason, identity=identity),
        result_type=FailoverStatus,
    )


async def start_failback(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    reason: str,
    accept_stale: OperatorRequest | None = None,
) -> WorkflowHandle[Any, FailoverResult]:
    """Moves traffic back to the primary, with the failover's own checks: preflight of the
    primary, switch, flush, verify, rollback. It runs as `failover-<cluster>` so it can
    never run beside a failover; one that is running makes this fail at once."""
    request = FailoverRequest(
        cluster=cluster,
        reason=reason,
        trigger="failback",
        to_side="primary",
        skip_confirmation=True,
        accept_stale=accept_stale,
    )
    return await _start_failover_run(
        client, request, task_queue=task_queue, conflict=WorkflowIDConflictPolicy.FAIL
    )


async def plan_failover(
    client: Client, cluster: ClusterConfig, *, task_queue: str
) -> FailoverResult:
    """A dry run of the failover: reads the switch, returns the plan, changes nothing."""
    request = FailoverRequest(cluster=cluster, reason="dry run", trigger="manual", dry_run=True)
    summary = f"{cluster.name}: failover plan (dry run)"
    handle = await visibility.start_with_fallback(
        lambda attributes: client.start_workflow(
            FAILOVER_WORKFLOW,
            request,
            id=names.plan_workflow_id(cluster.name, uuid.uuid4().hex[:8]),
            task_queue=task_queue,
            result_type=FailoverResult,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=summary,
            static_details=failover_details(request),
            search_attributes=attributes,
        ),
        visibility.attributes(cluster.name, trigger="manual", summary=summary),
    )
    return await handle.result()


async def start_drill(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    dry_run: bool = False,
    hold_seconds: float | None = None,
    reason: str = "drill run by hand",
) -> WorkflowHandle[Any, DrillReport]:
    summary = f"{cluster.name}: failover drill" + (" (dry run)" if dry_run else "")
    return await visibility.start_with_fallback(
        lambda attributes: client.start_workflow(
            DRILL_WORKFLOW,
            DrillRequest(
                cluster=cluster, reason=reason, dry_run=dry_run, hold_seconds=hold_seconds
            ),
            id=drill_workflow_id(cluster.name),
            task_queue=task_queue,
            result_type=DrillReport,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=summary,
            search_attributes=attributes,
        ),
        visibility.attributes(cluster.name, trigger="drill", summary=summary),
    )


async def abort_drill(client: Client, workflow_id: str, *, reason: str, identity: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    await send_update(handle, names.ABORT_UPDATE, AbortRequest(reason=reason, identity=identity))


def _drill_schedule(
    cluster: ClusterConfig,
    *,
    task_queue: str,
    cron: str | None,
    every: timedelta | None,
    paused: bool,
    hold_seconds: float | None,
    attributes: TypedSearchAttributes | None,
) -> Schedule:
    if (cron is None) == (every is None):
        raise ValueError("give exactly one of a cron expression or an interval")
    spec = (
        ScheduleSpec(cron_expressions=[cron])
        if cron is not None
        else ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])  # type: ignore[arg-type]
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DRILL_WORKFLOW,
            DrillRequest(cluster=cluster, reason="scheduled drill", hold_seconds=hold_seconds),
            # Temporal adds the scheduled time: drill-<cluster>-<time>.
            id=drill_schedule_id(cluster.name),
            task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=scheduled_drill_summary(cluster.name),
            typed_search_attributes=attributes or TypedSearchAttributes.empty,
        ),
        spec=spec,
        # A drill still running when the next one is due: the next one is skipped.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=paused, note="created paused" if paused else "drills of " + cluster.name
        ),
    )


async def schedule_drill(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    cron: str | None = None,
    every: timedelta | None = None,
    paused: bool = False,
    hold_seconds: float | None = None,
) -> ScheduleHandle:
    """Creates `drill-<cluster>`, or replaces its spec and action if it exists."""
    schedule_id = drill_schedule_id(cluster.name)

    async def create(attributes: TypedSearchAttributes | None) -> ScheduleHandle:
        schedule = _drill_schedule(
            cluster,
            task_queue=task_queue,
            cron=cron,
            every=every,
            paused=paused,
            hold_seconds=hold_seconds,
            attributes=attributes,
        )
        try:
            return await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(schedule_id)

            def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await handle.update(replace)
            return handle

    return await visibility.start_with_fallback(
        create,
        visibility.attributes(
            cluster.name, trigger="drill", summary=scheduled_drill_summary(cluster.name)
        ),
    )


def scheduled_drill_summary(cluster: str) -> str:
    return f"{cluster}: scheduled failover drill"
