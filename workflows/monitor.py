"""The always-on monitor of one cluster: watch from every vantage point, decide, fail over.

One workflow per cluster, id `monitor-<cluster>`. Each vantage point (a task queue a
probe worker polls) runs a long `watch_cluster` activity that reports only changes, so a
healthy cluster adds almost nothing to history. Every change is judged by one pure
function, `decisions.monitor_decision`; its reason is recorded and logged. The monitor
never fails back by itself, holds still during the cooldown after a failover, and can be
paused. It continues as new before its history grows large, carrying its state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.control import FailoverControlActivities
    from activities.watch import ClusterWatchActivities
    from failover import decisions, names
    from failover.config import ClusterConfig
    from failover.models import (
        AlarmNotice,
        ClusterWatch,
        DataRecord,
        FailoverRecord,
        FailoverRequest,
        FailoverResult,
        FailoverStatus,
        MonitorConfirmation,
        MonitorDecision,
        MonitorEvent,
        MonitorInput,
        MonitorState,
        MonitorStatus,
        Outcome,
        PauseRequest,
        StartFailoverInput,
        WatchInput,
        other_side,
    )
    from failover.names import WORKFLOW_TASK_TIMEOUT

from workflows.steps import AWS_RETRY, HEARTBEAT_TIMEOUT, StepFailed, StepRecorder, failure_reason
from workflows.switchers import make_switcher

# A watch reports changes only; after this long it returns anyway and is started again.
WATCH_MAX = timedelta(hours=1)
# Longer than the failover's 2 s: a watch that misses its heartbeat is re-run after a backoff
# in which the cluster goes unwatched, so a busy event loop must not cost it; a crashed
# vantage worker is still noticed within 10 s. Fewer heartbeat writes, too.
WATCH_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# A vantage worker that takes no watch for this long counts as unreachable (and is retried).
VANTAGE_ABSENT_AFTER = timedelta(seconds=60)
WATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# After a failover that changed nothing (not confirmed, aborted) the monitor waits this
# long before trying again on the same evidence, so a side that stays down cannot start a
# run every second. Runs from before the `hold-off-evidence` patch keep exactly this; since
# it, decisions.hold_off_after doubles it for attempts in a row, and decisions.hold_off
# lets a down streak that began after the attempt ended through (the first time).
HOLD_AFTER_REFUSAL = timedelta(seconds=60)
FAILOVER_AWAIT_TIMEOUT = timedelta(hours=2)
KEEP_EVENTS = 50
KEEP_FAILOVERS = 10
SWITCHED = frozenset(
    {Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS, Outcome.ROLLED_BACK, Outcome.FAILED}
)


@workflow.defn(name=names.MONITOR_WORKFLOW)
class MonitorWorkflow:
    @workflow.init
    def __init__(self, request: MonitorInput) -> None:
        self._cluster: ClusterConfig = request.cluster
        self._task_queue = request.task_queue
        self._max_events = request.max_history_events
        self._state = (
            request.state.model_copy(deep=True)
            if request.state is not None
            else MonitorState(cluster=request.cluster.name)
        )
        self._phase: str = "starting"
        self._dirty = True
        self._reconfigured = False
        self._reread = False
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._alarm: AlarmNotice | None = None

    @workflow.run
    async def run(self, request: MonitorInput) -> None:
        if request.state is None:
            self._event("started", f"watching from {', '.join(self._vantages)}")
        else:
            self._event("continued", f"generation {self._state.generation}, state carried over")
        await self._read_active_side()
        self._start_watchers()
        self._phase = "watching"
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._dirty or self._reconfigured or self._history_full(),
                    timeout=self._until_next_wake(),
                )
            except TimeoutError:
                await self._read_active_side()
            if self._history_full():
                await self._continue_as_new()
            if self._reconfigured:
                await self._apply_new_config()
            if self._reread:
                self._reread = False
                await self._read_active_side()
            self._dirty = False
            decision = self._decide()
            alarm, self._alarm = self._alarm, None
            if decision.action != "none" or alarm is not None:
                # Someone may have moved traffic since the last read (a manual trigger):
                # read the switch again, and alert or act only if the decision still stands.
                await self._read_active_side()
                decision = self._decide()
            if alarm is not None and decision.action != "failover":
                decision = self._decide_on_alarm(alarm)
            self._record(decision)
            if decision.action == "failover":
                await self._fail_over(decision, alarm)

    # --- the runbook -------------------------------------------------------------------------

    @property
    def _vantages(self) -> list[str]:
        return self._cluster.monitor.vantages(self._task_queue)

    @property
    def _quorum(self) -> int:
        return self._cluster.monitor.quorum_of(len(self._vantages))

    def _decide(self) -> MonitorDecision:
        state = self._state
        return decisions.monitor_decision(
            active=state.active,
            active_problem=state.active_problem,
            views=self._answering(),
            vantage_count=len(self._vantages),
            quorum=self._quorum,
            guards=self._guards(),
        )

    def _decide_on_alarm(self, alarm: AlarmNotice) -> MonitorDecision:
        state = self._state
        return decisions.alarm_decision(
            alarm=f"{alarm.source} alarm {alarm.name!r}",
            active=state.active,
            active_problem=state.active_problem,
            views=self._answering(),
            quorum=self._quorum,
            guards=self._guards(),
        )

    def _answering(self) -> list[ClusterWatch]:
        """Only vantage points that have probed count; one that has not reported yet, or
        stopped answering, sees neither side down nor the standby healthy."""
        state = self._state
        return [
            state.views[v]
            for v in self._vantages
            if v in state.views and v not in state.unreachable_vantages
        ]

    def _guards(self) -> decisions.Guards:
        state = self._state
        return decisions.Guards(
            now=workflow.now(),
            paused=state.paused,
            paused_reason=state.paused_reason,
            cooldown_until=state.cooldown_until,
            hold_until=state.hold_until,
            refused_at=state.refused_at,
            refusals=state.refusals,
            auto_failover=self._cluster.monitor.auto_failover,
            auto_failback=self._cluster.monitor.auto_failback,
        )

    async def _fail_over(self, decision: MonitorDecision, alarm: AlarmNotice | None = None) -> None:
        """Starts (or joins) `failover-<cluster>` and waits for its result.

        On the monitor's own evidence the run re-checks it once; on an alarm it has no
        evidence of its own, so the run does all its confirmation rounds.
        """
        state = self._state
        assert state.active is not None
        self._phase = "failing_over"
        down = [
            v
            for v in self._vantages
            if v not in state.unreachable_vantages
            and v in state.views
            and state.views[v].side(state.active).state == "down"
        ]
        request = FailoverRequest(
            cluster=self._cluster,
            reason=decision.reason,
            trigger="monitor" if alarm is None else "alarm",
            confirmation=None
            if alarm is not None
            else MonitorConfirmation(
                vantages_down=down,
                vantage_count=len(self._vantages),
                quorum=self._quorum,
                reason=decision.reason,
            ),
        )
        try:
            started = await workflow.execute_activity_method(
                FailoverControlActivities.start_failover,
                StartFailoverInput(request=request, task_queue=self._task_queue),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=AWS_RETRY,
                summary=f"start failover-{self._cluster.name}",
            )
        except ActivityError as err:
            self._alert(f"failover not started: {failure_reason(err)}")
            self._hold_off()
            self._phase = "watching"
            return
        record = FailoverRecord(
            workflow_id=started.workflow_id,
            run_id=started.run_id,
            started_at=workflow.now(),
            reason=decision.reason,
            from_side=state.active,
            to_side=other_side(state.active),
        )
        state.failovers = [*state.failovers, record][-KEEP_FAILOVERS:]
        self._event("failover_started", f"{started.workflow_id} run {started.run_id}")
        try:
            result = await workflow.execute_activity_method(
                FailoverControlActivities.await_failover,
                started,
                start_to_close_timeout=FAILOVER_AWAIT_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=WATCH_RETRY,
                summary=f"await failover-{self._cluster.name}",
            )
        except ActivityError as err:
            # The run may still be going (or was terminated): hold still for a cooldown
            # rather than start another one on top of it.
            self._alert(f"lost track of {started.workflow_id}: {failure_reason(err)}")
            state.cooldown_until = workflow.now() + timedelta(
                seconds=self._cluster.monitor.cooldown_seconds
            )
            await self._read_active_side()
            self._phase = "watching"
            return
        now = workflow.now()
        record.result, record.result_reason, record.finished_at = result.result, result.reason, now
        self._event("failover_finished", f"{result.result.value}: {result.reason}")
        if result.result in SWITCHED:
            state.cooldown_until = now + timedelta(seconds=self._cluster.monitor.cooldown_seconds)
            if workflow.patched("hold-off-evidence"):
                # Traffic moved: the attempts that changed nothing are history.
                state.hold_until, state.refused_at, state.refusals = None, None, 0
        else:
            self._hold_off()
        await self._read_active_side()
        self._phase = "watching"
        self._dirty = True

    def _hold_off(self) -> None:
        """After an attempt that changed nothing (or did not start): hold off its evidence."""
        state = self._state
        now = workflow.now()
        if not workflow.patched("hold-off-evidence"):
            state.hold_until = now + HOLD_AFTER_REFUSAL
            return
        state.refusals, state.hold_until, why = decisions.hold_off_after(
            refusals=state.refusals, refused_at=state.refused_at, now=now
        )
        state.refused_at = now
        self._event("hold_off", why)

    async def _read_active_side(self) -> None:
        """Which side takes traffic, read from AWS (the record or the registered targets)."""
        switcher = make_switcher(
            self._cluster,
            StepRecorder(FailoverStatus(cluster=self._cluster.name, phase="monitor", reason="")),
        )
        state = self._state
        try:
            snapshot = await switcher.snapshot()
        except StepFailed as failed:
            state.active, state.active_problem = None, f"cannot read the switch: {failed}"
        else:
            state.active, state.active_problem = switcher.active_side(snapshot)
        state.active_read_at = workflow.now()
        self._dirty = True

    # --- watchers ------------------------------------------------------------------------

    def _start_watchers(self) -> None:
        for vantage in self._vantages:
            self._watchers[vantage] = asyncio.create_task(self._watch(vantage))

    async def _stop_watchers(self) -> None:
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()

    async def _watch(self, vantage: str) -> None:
        """Keeps one watch running on `vantage`; folds each change it reports into state."""
        state = self._state
        failures = 0
        while True:
            try:
                view = await workflow.execute_activity_method(
                    ClusterWatchActivities.watch_cluster,
                    WatchInput(
                        cluster=self._cluster,
                        vantage=vantage,
                        last=state.views.get(vantage),
                        max_seconds=WATCH_MAX.total_seconds(),
                        # One vantage point reads the indices: the data does not depend
                        # on where it is read from, and the others stay cheap.
                        read_data=self._cluster.magento is not None
                        and vantage == self._vantages[0],
                    ),
                    task_queue=vantage,
                    start_to_close_timeout=WATCH_MAX + timedelta(minutes=1),
                    schedule_to_start_timeout=VANTAGE_ABSENT_AFTER,
                    heartbeat_timeout=WATCH_HEARTBEAT_TIMEOUT,
                    retry_policy=WATCH_RETRY,
                    summary=f"watch {self._cluster.name} from {vantage}",
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise  # stopped for continue-as-new or a new config
                failures += 1
                reason = failure_reason(err)
                if state.unreachable_vantages.get(vantage) != reason:
                    state.unreachable_vantages[vantage] = reason
                    self._alert(f"vantage point {vantage} not answering: {reason}")
                    self._dirty = True
                await workflow.sleep(timedelta(seconds=min(60, 2**failures)))
                continue
            failures = 0
            if state.unreachable_vantages.pop(vantage, None) is not None:
                self._event("vantage_back", f"vantage point {vantage} answers again")
                self._dirty = True
            previous = state.views.get(vantage) or ClusterWatch(vantage=vantage)
            # On the monitor's clock: when its streaks began is judged against it (hold-off).
            view.received_at = workflow.now()
            state.views[vantage] = view
            if previous.states() != view.states():
                self._event("observed", _describe_view(view))
                self._dirty = True
            if view.data is not None:
                if decisions.data_key(state.data) != decisions.data_key(view.data):
                    self._event("data", _describe_data(view.data))
                state.data = view.data

    # --- config, continue-as-new, timing --------------------------------------------------

    async def _apply_new_config(self) -> None:
        self._reconfigured = False
        await self._stop_watchers()
        self._state.views = {v: w for v, w in self._state.views.items() if v in self._vantages}
        self._state.unreachable_vantages.clear()
        await self._read_active_side()
        self._start_watchers()

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._max_events
        )

    async def _continue_as_new(self) -> None:
        await self._stop_watchers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.generation += 1
        # Given, not inherited: a monitor started before the timeout was set (Temporal's
        # 10 s) gets it at its next continue-as-new.
        workflow.continue_as_new(
            MonitorInput(
                cluster=self._cluster,
                task_queue=self._task_queue,
                state=self._state,
                max_history_events=self._max_events,
            ),
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )

    def _until_next_wake(self) -> timedelta | None:
        """Time to the next refresh of the active side, or to a cooldown or hold-off ending."""
        state = self._state
        now = workflow.now()
        due: list[datetime] = []
        if state.active_read_at is not None:
            due.append(
                state.active_read_at + timedelta(seconds=self._cluster.monitor.refresh_seconds)
            )
        due += [t for t in (state.cooldown_until, state.hold_until) if t is not None and t > now]
        if not due:
            return None
        return max(min(due) - now, timedelta(milliseconds=100))

    # --- records ---------------------------------------------------------------------------

    def _event(self, kind: str, reason: str, *, level: int = logging.INFO) -> None:
        event = MonitorEvent(at=workflow.now(), kind=kind, reason=reason)
        self._state.events = [*self._state.events, event][-KEEP_EVENTS:]
        workflow.logger.log(level, "monitor %s %s: %s", self._cluster.name, kind, reason)

    def _alert(self, reason: str) -> None:
        # Notifications to SNS and chat hooks come with the operators' view; until then an
        # alert is a warning log line and an event in the monitor's status.
        self._event("alert", reason, level=logging.WARNING)

    def _record(self, decision: MonitorDecision) -> None:
        """Every new decision is kept; a repeat of the last one is not (no alert storms)."""
        if self._state.last_decision == decision:
            return
        self._state.last_decision = decision
        if decision.action == "alert":
            self._alert(decision.reason)
        else:
            self._event(f"decision_{decision.action}", decision.reason)

    # --- operators -------------------------------------------------------------------------

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> MonitorStatus:
        return MonitorStatus(
            phase=self._phase,  # type: ignore[arg-type]
            vantages=self._vantages,
            quorum=self._quorum,
            history_length=workflow.info().get_current_history_length(),
            state=self._state,
        )

    @workflow.update(name=names.PAUSE_UPDATE)
    async def pause(self, request: PauseRequest) -> MonitorStatus:
        state = self._state
        state.paused, state.paused_reason = True, request.reason or None
        state.paused_by = request.identity or None
        self._event("paused", request.by())
        self._dirty = True
        return self.status()

    @pause.validator
    def _pause_allowed(self, request: PauseRequest) -> None:
        if self._state.paused:
            raise ApplicationError(
                f"already paused by {self._state.paused_by or 'unknown'}"
                f" ({self._state.paused_reason or 'no reason given'})"
            )

    @workflow.update(name=names.RESUME_UPDATE)
    async def resume(self, request: PauseRequest) -> MonitorStatus:
        state = self._state
        state.paused, state.paused_reason, state.paused_by = False, None, None
        self._event("resumed", request.by())
        self._dirty = True
        return self.status()

    @resume.validator
    def _resume_allowed(self, request: PauseRequest) -> None:
        if not self._state.paused:
            raise ApplicationError("not paused")

    @workflow.signal(name=names.FAILOVER_FINISHED_SIGNAL)
    def failover_finished(self, result: FailoverResult) -> None:
        """Every failover run reports here, whoever started it: traffic may have moved."""
        # A run this monitor started (on its evidence or an alarm's) is handled where it
        # is awaited; the others were started by hand.
        if result.trigger != "monitor" and self._phase != "failing_over":
            self._event(
                "failover_elsewhere",
                f"{result.trigger} failover {result.result.value}: {result.reason}",
            )
            # A drill or a failback was planned and verified: no reason to hold still.
            if result.result in SWITCHED and result.trigger not in decisions.NO_COOLDOWN_TRIGGERS:
                state = self._state
                cooldown = timedelta(seconds=self._cluster.monitor.cooldown_seconds)
                state.cooldown_until = result.finished_at + cooldown
        self._reread = True
        self._dirty = True

    @workflow.signal(name=names.ALARM_SIGNAL)
    def alarm(self, notice: AlarmNotice) -> None:
        """A verified alarm from the receiver. A resolved one is only recorded (never a
        failback); a firing one is judged by `alarm_decision`, unless a failover is already
        running, which answers it. A storm of repeats is counted, not logged one by one."""
        state = self._state
        state.alarms_received += 1
        last = state.last_alarm
        repeat = last is not None and (last.source, last.name, last.state) == (
            notice.source,
            notice.name,
            notice.state,
        )
        state.last_alarm = notice
        if not repeat:
            self._event(f"alarm_{notice.state}", notice.describe())
        if notice.state == "firing" and self._phase != "failing_over":
            self._alarm = notice
            self._dirty = True

    @workflow.signal(name=names.CONFIGURE_SIGNAL)
    def configure(self, cluster: ClusterConfig) -> None:
        """The worker hands over the config on disk at every start (signal-with-start)."""
        if cluster.name != self._cluster.name:
            workflow.logger.warning(
                "monitor %s: ignoring config for cluster %s", self._cluster.name, cluster.name
            )
            return
        if cluster != self._cluster:
            self._cluster = cluster
            self._reconfigured = True
            self._event("configured", "new config received; watches restart with it")


def _describe_view(view: ClusterWatch) -> str:
    parts = [f"{view.vantage} sees primary {view.primary.state}, standby {view.standby.state}"]
    for side in ("primary", "standby"):
        reason = view.side(side).reason  # type: ignore[arg-type]
        if reason:
            parts.append(f"{side}: {reason}")
    return "; ".join(parts)


def _describe_data(record: DataRecord) -> str:
    """The storefront's aliases and replication of both sides, for the monitor's events."""
    parts: list[str] = []
    for snapshot in (record.primary, record.standby):
        if snapshot is None:
            continue
        aliases = ", ".join(
            f"{a.alias} → {'/'.join(a.indices) or 'missing'}" for a in snapshot.aliases
        )
        followers = ", ".join(
            f"{f.index} {f.status}" + (" (beyond the limits)" if f.stale_since else "")
            for f in snapshot.followers
            if f.status != "not_following"
        )
        parts.append(
            f"{snapshot.side}: {aliases}"
            + (f"; {followers}" if followers else "")
            + (f"; cluster {snapshot.cluster_status}" if snapshot.cluster_status else "")
        )
    return "; ".join(parts)
