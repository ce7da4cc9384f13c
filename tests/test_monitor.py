"""Monitor scenarios on the real dev server and the cluster simulator, three vantage points.

Each test injects one fault and asserts what the monitor decided and why, by the stable
reason prefixes of failover.decisions. A test that expects no failover first waits until
every vantage point has probed the fault for several rounds (read from the watches'
heartbeat details), so "nothing happened" is observed, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from failover import decisions
from failover.client.operations import (
    UpdateRefused,
    ensure_monitor,
    monitor_status,
    pause_monitor,
    start_or_attach_failover,
    watch_progress,
)
from failover.config import ClusterConfig
from failover.decisions.monitor import REFUSED_BY_ALL, confirmed_by_refusal
from failover.models import (
    FailoverRecord,
    FailoverResult,
    MonitorEvent,
    MonitorStatus,
    Outcome,
    WatchProgress,
)
from failover.names import failover_workflow_id, monitor_workflow_id
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, STANDBY_SIM, STANDBY_VALUE
from sandbox.waiting import wait_for
from tests.conftest import VANTAGE_SOURCES, Stack
from tests.test_replay import make_replayer
from worker import GRACEFUL_SHUTDOWN, build_vantage_worker

DEADLINE_S = 20.0
# Beyond threshold times interval: reports, a re-read of the switch, and the run's start, on a
# busy 2-core machine.
DETECTION_SLACK_S = 4.0


def tuned(
    cluster: ClusterConfig, *, probe: dict[str, Any] | None = None, **monitor: Any
) -> ClusterConfig:
    """The stack's cluster with some probe or monitor settings changed, validated again."""
    data = cluster.model_dump(mode="json")
    data["probe"].update(probe or {})
    data["monitor"].update(monitor)
    return ClusterConfig.model_validate(data)


class Monitor:
    """The monitor under test, and ways to wait on what it sees and decides."""

    def __init__(self, stack: Stack, cluster: ClusterConfig) -> None:
        self.stack = stack
        self.cluster = cluster
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def start(self, *, max_history_events: int = 10_000) -> Monitor:
        self.handle = await ensure_monitor(
            self.stack.client,
            self.cluster,
            task_queue=self.stack.task_queue,
            max_history_events=max_history_events,
        )
        await self.wait_rounds(2)
        return self

    async def stop(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(RPCError):
                await self.handle.terminate("test over")

    async def status(self) -> MonitorStatus:
        return await monitor_status(self.stack.client, self.cluster.name)

    async def progress(self) -> dict[str, WatchProgress]:
        """Each running watch's last heartbeat: rounds probed and what it sees now."""
        return await watch_progress(self.stack.client, self.cluster.name)

    async def wait_rounds(self, rounds: int, *, since: dict[str, int] | None = None) -> None:
        """Until every vantage point's watch has probed `rounds` more rounds."""
        base = since or {}

        async def enough() -> bool:
            progress = await self.progress()
            vantages = self.cluster.monitor.vantages(self.stack.task_queue)
            return all(
                v in progress and progress[v].rounds >= base.get(v, 0) + rounds for v in vantages
            )

        await wait_for(
            enough, what=f"{rounds} probe rounds from every vantage", timeout_s=DEADLINE_S
        )

    async def rounds_now(self) -> dict[str, int]:
        return {v: p.rounds for v, p in (await self.progress()).items()}

    async def wait_event(self, match: Callable[[MonitorEvent], bool], what: str) -> MonitorEvent:
        found: list[MonitorEvent] = []

        async def seen() -> bool:
            events = (await self.status()).state.events
            found[:] = [e for e in events if match(e)]
            return bool(found)

        await wait_for(seen, what=what, timeout_s=DEADLINE_S)
        return found[0]

    async def wait_decision(self, prefix: str) -> MonitorEvent:
        return await self.wait_event(
            lambda e: (
                e.kind in ("alert", "decision_none", "decision_failover")
                and e.reason.startswith(prefix)
            ),
            f"a decision starting {prefix!r}",
        )

    async def failover_result(self) -> FailoverResult:
        await self.wait_event(lambda e: e.kind == "failover_finished", "the failover to finish")
        handle = self.stack.client.get_workflow_handle(
            failover_workflow_id(self.cluster.name), result_type=FailoverResult
        )
        return await handle.result()

    async def failover_runs(self) -> int:
        query = f"WorkflowId = '{failover_workflow_id(self.cluster.name)}'"
        return len([w async for w in self.stack.client.list_workflows(query)])

    async def assert_no_failover(self) -> None:
        assert not [e for e in (await self.status()).state.events if e.kind == "failover_started"]
        try:
            await self.stack.client.get_workflow_handle(
                failover_workflow_id(self.cluster.name)
            ).describe()
        except RPCError:
            return
        raise AssertionError("a failover workflow exists")


MonitorFactory = Callable[..., Awaitable["Monitor"]]


@pytest.fixture
async def monitor_of(monitor_stack: Stack) -> AsyncIterator[MonitorFactory]:
    started: list[Monitor] = []

    async def start(cluster: ClusterConfig | None = None, **kwargs: Any) -> Monitor:
        monitor = Monitor(monitor_stack, cluster or monitor_stack.cluster)
        started.append(monitor)
        return await monitor.start(**kwargs)

    yield start
    for monitor in started:
        await monitor.stop()


async def fault_all(stack: Stack, sim: str, fault: NodeFault) -> None:
    stack.fleet.set_fault(sim, None, fault)
    await stack.fleet.clusters[sim].settle()


# --- failing: the monitor fails over by itself ------------------------------------------


async def test_all_nodes_down_fails_over(monitor_stack: Stack, monitor_of: MonitorFactory) -> None:
    monitor = await monitor_of()
    faulted_at = time.monotonic()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    decision = await monitor.wait_decision(decisions.FAILING_OVER)
    assert re.search(r"primary down from [23] of 3 vantage points \(quorum 2\)", decision.reason)
    assert decisions.UNREACHABLE in decision.reason
    result = await monitor.failover_result()
    print(f"detected and switched in {time.monotonic() - faulted_at:.2f}s")
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.trigger == "monitor"
    assert (result.from_side, result.to_side) == ("primary", "standby")
    assert monitor_stack.record_values() == [STANDBY_VALUE]

    async def standby_active() -> bool:
        return (await monitor.status()).state.active == "standby"

    await wait_for(standby_active, what="the monitor to read the standby as active")
    assert (await monitor.status()).state.cooldown_until is not None
    assert await monitor.failover_runs() == 1


async def expect_failover(stack: Stack, monitor: Monitor, reason_part: str) -> None:
    decision = await monitor.wait_decision(decisions.FAILING_OVER)
    assert reason_part in decision.reason, decision.reason
    result = await monitor.failover_result()
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.trigger == "monitor"
    assert stack.record_values() == [STANDBY_VALUE]
    # The run re-checked once: the monitor's rounds were its confirmation.
    confirm = [s for s in result.steps if s.name == "confirm"]
    assert confirm and confirm[0].outcome == "ok"


async def test_majority_of_nodes_down_no_master_fails_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """Two of three nodes gone: the survivor has no master and answers 503 to health."""
    monitor = await monitor_of()
    for node in (0, 1):
        monitor_stack.fleet.set_fault(PRIMARY_SIM, node, NodeFault(FaultMode.DOWN))
    await monitor_stack.fleet.clusters[PRIMARY_SIM].settle()
    await expect_failover(monitor_stack, monitor, "HTTP 503 master_not_discovered_exception")


async def test_connection_refused_fails_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    await expect_failover(monitor_stack, monitor, "unreachable: connection failed")


async def test_hang_fails_over_on_timeouts(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HANG))
    # Per request 0.5 s; on a loaded machine the probe's own guard (twice that) may end first.
    await expect_failover(monitor_stack, monitor, "unreachable: timeout after ")


async def test_http_500_fails_over(monitor_stack: Stack, monitor_of: MonitorFactory) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HTTP_500))
    await expect_failover(monitor_stack, monitor, "http error: HTTP 500")


async def test_red_fails_over(monitor_stack: Stack, monitor_of: MonitorFactory) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.RED))
    await expect_failover(monitor_stack, monitor, decisions.STATUS_RED)


async def test_wrong_cluster_fails_over(monitor_stack: Stack, monitor_of: MonitorFactory) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.WRONG_CLUSTER))
    await expect_failover(monitor_stack, monitor, decisions.WRONG_CLUSTER)


async def test_wrong_cluster_uuid_is_failing(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """Same cluster_name, different cluster_uuid: a rebuilt cluster is not ours."""
    data = monitor_stack.cluster.model_dump(mode="json")
    data["primary"]["expected_cluster_uuid"] = "not-the-primary-uuid"
    monitor = await monitor_of(ClusterConfig.model_validate(data))
    await expect_failover(monitor_stack, monitor, "expected cluster_uuid 'not-the-primary-uuid'")


# --- not failing: the monitor holds still, and says why -----------------------------------


async def observe_quietly(monitor: Monitor, rounds: int = 8) -> None:
    """Lets every vantage point probe `rounds` more rounds, then checks nothing was started."""
    await monitor.wait_rounds(rounds, since=await monitor.rounds_now())
    await monitor.assert_no_failover()


async def test_one_node_down_is_degraded_not_down(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    monitor_stack.fleet.set_fault(PRIMARY_SIM, 0, NodeFault(FaultMode.DOWN))
    await monitor_stack.fleet.clusters[PRIMARY_SIM].settle()
    seen = await monitor.wait_event(
        lambda e: e.kind == "observed" and "primary degraded" in e.reason, "primary degraded"
    )
    assert "degraded: 1 of 3 nodes failing" in seen.reason
    assert decisions.UNREACHABLE in seen.reason
    await observe_quietly(monitor)
    decision = (await monitor.status()).state.last_decision
    assert decision is not None and decision.action == "none"
    assert decision.reason == (
        f"{decisions.NOT_CONFIRMED}: primary down from 0 of 3 vantage points (quorum 2)"
    )


async def test_slow_under_timeout_stays_healthy(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.SLOW, slow_ms=100))
    await observe_quietly(monitor)
    status = await monitor.status()
    # A round may time out on a starved machine (suspect), but never three in a row.
    assert not [
        e for e in status.state.events if e.kind == "observed" and "primary down" in e.reason
    ]
    assert all(p.primary == "healthy" for p in (await monitor.progress()).values())
    assert status.state.last_decision is not None
    assert status.state.last_decision.reason.startswith(decisions.NOT_CONFIRMED)


async def test_yellow_is_degraded_never_a_failover(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.YELLOW))
    seen = await monitor.wait_event(
        lambda e: e.kind == "observed" and "primary degraded" in e.reason, "primary degraded"
    )
    assert decisions.STATUS_YELLOW in seen.reason
    await observe_quietly(monitor)
    decision = (await monitor.status()).state.last_decision
    assert decision is not None and decision.reason.startswith(decisions.NOT_CONFIRMED)


async def test_flapping_every_2s_never_confirms(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """Up 2 s, down 2 s: at a 1.5 s interval no 3 failing rounds ever come in a row.

    (At 1 s a round can land on both edges of a 2 s outage. At 1.25 s a round started 0.5 s
    late on a busy machine can too; 1.5 s allows a second of lateness.)
    """
    cluster = tuned(monitor_stack.cluster, probe={"interval_seconds": 1.5})
    monitor = await monitor_of(cluster)
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.FLAPPING, flap_period_s=2.0))

    async def recoveries() -> int:
        events = (await monitor.status()).state.events
        return len([e for e in events if e.kind == "observed" and decisions.RECOVERED in e.reason])

    async def two_cycles_seen() -> bool:
        return await recoveries() >= 2 * 3  # every vantage point, twice

    await wait_for(two_cycles_seen, what="two flap cycles from every vantage", timeout_s=30)
    await monitor.assert_no_failover()
    events = (await monitor.status()).state.events
    assert any(e.kind == "observed" and "primary suspect" in e.reason for e in events)
    assert not any(e.kind == "observed" and "primary down" in e.reason for e in events)


async def test_401_alerts_and_never_fails_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.UNAUTHORIZED))
    alert = await monitor.wait_decision(decisions.CONFIG_ERROR)
    assert alert.kind == "alert"
    assert "auth rejected: HTTP 401" in alert.reason
    await observe_quietly(monitor)


async def test_partition_seen_by_one_vantage_does_not_fail_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    cut_off = monitor.cluster.monitor.vantage_points[1]
    monitor_stack.fleet.clusters[PRIMARY_SIM].partition([VANTAGE_SOURCES[0]])
    seen = await monitor.wait_event(
        lambda e: e.kind == "observed" and e.reason.startswith(f"{cut_off} sees primary down"),
        "the cut-off vantage point to see the primary down",
    )
    assert "timeout" in seen.reason
    decision = await monitor.wait_decision(
        f"{decisions.NOT_CONFIRMED}: primary down from 1 of 3 vantage points (quorum 2)"
    )
    assert decision.kind == "decision_none"
    await observe_quietly(monitor)
    other = {v: p.primary for v, p in (await monitor.progress()).items() if v != cut_off}
    assert set(other.values()) == {"healthy"}, other


async def test_standby_also_down_alerts_and_does_not_switch(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    await fault_all(monitor_stack, STANDBY_SIM, NodeFault(FaultMode.DOWN))
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    alert = await monitor.wait_decision(decisions.BOTH_DOWN)
    assert alert.kind == "alert"
    assert "standby is not healthy either" in alert.reason
    await observe_quietly(monitor)
    assert monitor_stack.record_values() != [STANDBY_VALUE]


async def test_primary_recovering_during_confirmation_is_not_failed_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    cluster = tuned(monitor_stack.cluster, probe={"interval_seconds": 0.5})
    monitor = await monitor_of(cluster)
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    await monitor.wait_event(
        lambda e: e.kind == "observed" and "primary suspect" in e.reason, "primary suspect"
    )
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HEALTHY))
    recovered = await monitor.wait_event(
        lambda e: e.kind == "observed" and decisions.RECOVERED in e.reason, "recovery"
    )
    assert "primary healthy" in recovered.reason
    await observe_quietly(monitor, rounds=4)
    decision = (await monitor.status()).state.last_decision
    assert decision is not None and decision.reason.startswith(decisions.NOT_CONFIRMED)


async def test_a_worker_shutting_down_hands_its_watch_on_at_once(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """A deploy stops a vantage point's worker while its watch runs: the watch returns its
    view at once, not after the graceful shutdown timeout, and the next watch runs on the
    worker that takes the queue over. Nothing fails, times out or is cancelled."""
    queue = f"{monitor_stack.task_queue}-vantage-d"
    vantages = [*monitor_stack.cluster.monitor.vantage_points, queue]
    leaving = build_vantage_worker(monitor_stack.client, task_queue=queue)
    running = asyncio.create_task(leaving.run())
    monitor = await monitor_of(tuned(monitor_stack.cluster, vantage_points=vantages))
    started = time.monotonic()
    await leaving.shutdown()
    took = time.monotonic() - started
    await running
    assert took < GRACEFUL_SHUTDOWN.total_seconds(), f"the shutdown took {took:.2f}s"

    staying = build_vantage_worker(monitor_stack.client, task_queue=queue)
    async with staying:
        await monitor.wait_rounds(2)  # the queue has only this worker now
    assert monitor.handle is not None
    history = await monitor.handle.fetch_history()
    ended_badly = {
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
    }
    assert [e.event_type for e in history.events if e.event_type in ended_badly] == []
    print(f"\nworker with a running watch shut down in {took:.2f}s")


# --- anti-flapping and operators --------------------------------------------------------


async def test_cooldown_blocks_a_second_failover(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """Even with automatic failback allowed, nothing moves again within the cooldown."""
    monitor = await monitor_of(tuned(monitor_stack.cluster, auto_failback=True))
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    await expect_failover(monitor_stack, monitor, "unreachable")
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HEALTHY))
    await fault_all(monitor_stack, STANDBY_SIM, NodeFault(FaultMode.DOWN))
    alert = await monitor.wait_decision(decisions.COOLDOWN)
    assert "standby down from" in alert.reason
    await observe_quietly_after_failover(monitor)


async def flap_seen_by_the_quorum(stack: Stack, monitor: Monitor) -> None:
    """One flap of the primary as the quorum sees it: cut off from both probe workers'
    addresses until the monitor holds both their "down" reports and has acted on them
    (started a run, or held off), then healed until it holds their recoveries. The
    failover worker's own address is never cut off: a run started on the flap probes the
    primary up and ends `not_confirmed`, the way a flap between probes would."""
    sim = stack.fleet.clusters[PRIMARY_SIM]
    cut_off = monitor.cluster.monitor.vantage_points[1:]
    runs = len((await monitor.status()).state.failovers)

    async def seen(state: str) -> bool:
        status = await monitor.status()
        views = status.state.views
        return status.phase == "watching" and all(
            v in views and views[v].primary.state == state for v in cut_off
        )

    async def acted_on() -> bool:
        status = await monitor.status()
        decision = status.state.last_decision
        return len(status.state.failovers) > runs or (
            await seen("down")
            and decision is not None
            and decision.reason.startswith(decisions.HOLDING_OFF)
        )

    sim.partition(list(VANTAGE_SOURCES))
    await wait_for(acted_on, what="the monitor to act on the flap", timeout_s=DEADLINE_S)
    sim.heal()
    await wait_for(lambda: seen("healthy"), what="the recovery", timeout_s=DEADLINE_S)


async def finished_runs(monitor: Monitor) -> list[FailoverRecord]:
    async def all_finished() -> bool:
        status = await monitor.status()
        return status.phase == "watching" and all(
            f.result is not None for f in status.state.failovers
        )

    await wait_for(all_finished, what="every run to finish")
    return (await monitor.status()).state.failovers


async def test_flapping_primary_backs_off_without_a_switch_or_a_storm(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """Five flaps, each a confirmation from the quorum that the run it starts refutes: the
    first flap's run, then (a down streak that began after it ended is new evidence) the
    second's; after two attempts in a row that changed nothing every flap is held off."""
    monitor = await monitor_of()
    started = time.monotonic()
    # Only the last events are kept: collect what each flap left as it goes.
    events: dict[tuple[str, str, str], MonitorEvent] = {}
    for _ in range(5):
        await flap_seen_by_the_quorum(monitor_stack, monitor)
        events |= {(e.at.isoformat(), e.kind, e.reason): e for e in await monitor_events(monitor)}
    runs = await finished_runs(monitor)
    elapsed = time.monotonic() - started
    print(f"flapping: {len(runs)} runs in {elapsed:.1f}s of 5 flaps")
    assert [r.result for r in runs] == [Outcome.NOT_CONFIRMED] * 2, runs
    assert monitor_stack.record_values() != [STANDBY_VALUE]
    status = await monitor.status()
    assert status.state.active == "primary"
    assert status.state.refusals == 2
    seen = sorted(events.values(), key=lambda e: e.at)
    backed_off = [
        e
        for e in seen
        if e.kind == "decision_none"
        and e.reason.startswith(decisions.HOLDING_OFF)
        and "2 attempts in a row changed nothing, backing off until" in e.reason
    ]
    assert len(backed_off) >= 3, "flaps 3 to 5 held off"  # one per flap: repeats are not kept
    assert [e.reason for e in seen if e.kind == "hold_off"] == [
        f"{decisions.HOLDING_OFF} 60s: 1 attempt(s) in a row changed nothing; "
        "a new down streak is still acted on at once",
        f"{decisions.HOLDING_OFF} 120s: 2 attempt(s) in a row changed nothing; "
        "backing off, new down streaks too",
    ]


async def monitor_events(monitor: Monitor) -> list[MonitorEvent]:
    return (await monitor.status()).state.events


async def test_an_outage_just_after_a_refuted_flap_fails_over_in_detection_time(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """The primary flaps (one run, `not_confirmed`), then really dies 10 s after that run
    ended: a new down streak, not the evidence the run refuted, so no 60 s hold-off."""
    monitor = await monitor_of()
    await flap_seen_by_the_quorum(monitor_stack, monitor)
    [refuted] = await finished_runs(monitor)
    assert refuted.result == Outcome.NOT_CONFIRMED, refuted
    assert refuted.finished_at is not None
    outage_at = refuted.finished_at.timestamp() + 10.0

    async def ten_seconds_after_the_run() -> bool:
        assert len((await monitor.status()).state.failovers) == 1, "a run on the old evidence"
        return time.time() >= outage_at

    await wait_for(ten_seconds_after_the_run, what="10 s after the run", timeout_s=DEADLINE_S)
    faulted_at = time.time()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    probe = monitor.cluster.probe
    detection_s = probe.failure_threshold * probe.interval_seconds + DETECTION_SLACK_S

    async def failover_started() -> bool:
        return len((await monitor.status()).state.failovers) == 2

    await wait_for(failover_started, what="a failover on the outage", timeout_s=detection_s)
    runs = (await monitor.status()).state.failovers
    detected = runs[-1].started_at.timestamp() - faulted_at
    print(
        f"outage {faulted_at - refuted.finished_at.timestamp():.1f}s after a refuted run: "
        f"failover started {detected:.2f}s after the fault (limit {detection_s:.1f}s)"
    )
    assert runs[-1].reason.startswith(decisions.FAILING_OVER), runs[-1].reason
    [_, outage] = await finished_runs(monitor)
    assert outage.result == Outcome.FAILED_OVER, outage.result_reason
    assert monitor_stack.record_values() == [STANDBY_VALUE]
    # The patched path (`hold-off-evidence`) replays as it ran.
    assert monitor.handle is not None
    history = await monitor.handle.fetch_history()
    assert (await make_replayer().replay_workflow(history)).replay_failure is None


async def observe_quietly_after_failover(monitor: Monitor) -> None:
    await monitor.wait_rounds(8, since=await monitor.rounds_now())
    assert await monitor.failover_runs() == 1
    assert monitor.stack.record_values() == [STANDBY_VALUE]


async def test_failback_is_never_automatic_by_default(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of(tuned(monitor_stack.cluster, cooldown_seconds=0))
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    await expect_failover(monitor_stack, monitor, "unreachable")
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HEALTHY))
    await fault_all(monitor_stack, STANDBY_SIM, NodeFault(FaultMode.DOWN))
    alert = await monitor.wait_decision(decisions.MANUAL_FAILBACK)
    assert "standby down from" in alert.reason
    await observe_quietly_after_failover(monitor)


async def test_pause_blocks_action_but_not_probing(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    client, name = monitor_stack.client, monitor.cluster.name
    status = await pause_monitor(client, name, reason="search upgrade", identity="ops@example")
    assert status.state.paused and status.state.paused_by == "ops@example"
    with pytest.raises(UpdateRefused, match=r"already paused by ops@example \(search upgrade\)"):
        await pause_monitor(client, name, reason="again", identity="someone")
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    alert = await monitor.wait_decision(decisions.PAUSED)
    assert alert.reason.endswith("automatic action is paused (search upgrade)")
    await observe_quietly(monitor)
    await pause_monitor(client, name, reason="upgrade done", identity="ops@example", paused=False)
    await expect_failover(monitor_stack, monitor, "unreachable")


async def test_continue_as_new_keeps_state(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of(max_history_events=60)
    client, name = monitor_stack.client, monitor.cluster.name
    first_run = (await client.get_workflow_handle(monitor_workflow_id(name)).describe()).run_id
    await pause_monitor(client, name, reason="maintenance", identity="ops@example")
    sim = monitor_stack.fleet.clusters[PRIMARY_SIM]

    cut_off = monitor.cluster.monitor.vantage_points[1]

    async def sees(state: str) -> bool:
        progress = (await monitor.progress()).get(cut_off)
        return progress is not None and progress.primary == state

    async def continued() -> bool:
        # Each partition and heal is a change one watch reports: history grows.
        sim.partition([VANTAGE_SOURCES[0]])
        await wait_for(lambda: sees("down"), what="the cut-off vantage to see down")
        sim.heal()
        await wait_for(lambda: sees("healthy"), what="the vantage to see healthy again")
        return (await monitor.status()).state.generation > 1

    await wait_for(continued, what="the monitor to continue as new", timeout_s=60)
    description = await client.get_workflow_handle(monitor_workflow_id(name)).describe()
    assert description.run_id != first_run
    assert description.status == WorkflowExecutionStatus.RUNNING
    status = await monitor.status()
    assert status.state.paused and status.state.paused_reason == "maintenance"
    assert any(e.kind == "paused" for e in status.state.events)
    assert any(e.kind == "continued" for e in status.state.events)
    # The record of the storefront's indices came along: preflight's reference.
    primary = status.state.data.primary
    assert primary is not None and primary.error is None
    alias = primary.alias("magento2_product_1")
    assert alias is not None and alias.indices == ["magento2_product_1_v1"]
    # Still watching and still paused in the new run.
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    await monitor.wait_decision(decisions.PAUSED)
    await monitor.assert_no_failover()


async def test_a_manual_failover_is_seen_and_starts_the_cooldown(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of()
    client, name = monitor_stack.client, monitor.cluster.name
    await pause_monitor(client, name, reason="by hand today", identity="ops@example")
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
    handle = await start_or_attach_failover(
        client, monitor.cluster, task_queue=monitor_stack.task_queue, reason="by hand"
    )
    assert (await handle.result()).result == Outcome.FAILED_OVER
    seen = await monitor.wait_event(lambda e: e.kind == "failover_elsewhere", "the news")
    assert seen.reason.startswith("manual failover failed_over: by hand")

    async def standby_active() -> bool:
        return (await monitor.status()).state.active == "standby"

    await wait_for(standby_active, what="the monitor to re-read the switch")
    status = await monitor.status()
    assert status.state.cooldown_until is not None
    assert not [e for e in status.state.events if e.kind == "failover_started"]


# --- fast confirmation: every node refusing is confirmed by the outage's length ----------

FAST_PROBE = {
    "interval_seconds": 1.0,
    "fast_confirm_interval_seconds": 0.2,
    "min_outage_seconds": 1.0,
}
# Beyond min_outage plus one interval, for the vantage point's own rounds on a busy machine.
FAST_SLACK_S = 0.5


async def test_refused_by_all_is_confirmed_within_min_outage_and_an_interval(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    monitor = await monitor_of(tuned(monitor_stack.cluster, probe=FAST_PROBE))
    probe = monitor.cluster.probe
    assert probe.min_outage_seconds is not None
    limit_s = probe.min_outage_seconds + probe.interval_seconds
    faulted_at = time.time()
    await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))

    async def failover_started() -> bool:
        return bool((await monitor.status()).state.failovers)

    # The threshold rule alone needs three rounds (2 to 3 s here), plus the run's start.
    await wait_for(
        failover_started, what="a failover on the refusals", timeout_s=limit_s + DETECTION_SLACK_S
    )
    status = await monitor.status()
    [run] = status.state.failovers
    down = [view.primary for view in status.state.views.values() if view.primary.state == "down"]
    assert len(down) >= 2, status.state.views
    assert all(confirmed_by_refusal(side) for side in down), down
    assert all(side.failing_rounds < probe.failure_threshold for side in down), down
    # When the quorum's (second) vantage point saw it down, on the vantage points' clock.
    down_at = sorted(side.changed_at for side in down if side.changed_at is not None)
    quorum_down_s = down_at[1] - faulted_at
    started_s = run.started_at.timestamp() - faulted_at
    print(
        f"refused by all: quorum down {quorum_down_s:.2f}s, failover started {started_s:.2f}s "
        f"after the fault (limit {limit_s:.1f}s + {FAST_SLACK_S}s)"
    )
    assert quorum_down_s <= limit_s + FAST_SLACK_S
    assert re.search(
        r"^failing over: primary down from [23] of 3 vantage points \(quorum 2\): "
        r"down: refused by all nodes from [23] of 3 vantage points for 1\.\d s$",
        run.reason,
    ), run.reason
    result = await monitor.failover_result()
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert monitor_stack.record_values() == [STANDBY_VALUE]


async def test_a_half_second_refusal_blip_is_not_failed_over(
    monitor_stack: Stack, monitor_of: MonitorFactory
) -> None:
    """All nodes refuse for 0.5 s, then answer: a vantage point that probed the blip goes
    suspect on it and recovers in its fast rounds; none sees the primary down."""
    monitor = await monitor_of(tuned(monitor_stack.cluster, probe=FAST_PROBE))
    blip_s = 0.5

    def observed(events: list[MonitorEvent], what: str) -> set[str]:
        return {
            e.reason.split(" sees ", 1)[0]
            for e in events
            if e.kind == "observed" and what in e.reason
        }

    async def probed_healthy_since(healed_at: float) -> bool:
        """Every vantage point has probed the primary since the heal, and the monitor holds
        their views of it healthy: each blip is over everywhere before the next."""
        progress = await monitor.progress()
        views = (await monitor.status()).state.views
        return (
            len(progress) == 3
            and all(
                p.last_round_at > healed_at and p.primary == "healthy" for p in progress.values()
            )
            and len(views) == 3
            and all(v.primary.state == "healthy" for v in views.values())
        )

    async def blip_over_a_round() -> float:
        """Starts the blip a quarter second before a vantage point's next regular round (the
        watches probe in step, so a blip at a random moment would often fall between
        rounds), and ends it 0.5 s later; the time it ended."""
        progress = await monitor.progress()
        last = progress[monitor.cluster.monitor.vantage_points[0]].last_round_at
        interval = monitor.cluster.probe.interval_seconds
        now = time.time()
        next_round = last + math.ceil((now + 0.5 - last) / interval) * interval
        await asyncio.sleep(next_round - 0.25 - now)  # to the schedule, not a condition
        await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.DOWN))
        await asyncio.sleep(blip_s)  # the blip's length
        await fault_all(monitor_stack, PRIMARY_SIM, NodeFault(FaultMode.HEALTHY))
        return time.time()

    saw: set[str] = set()
    for _ in range(3):  # a round late by more than a quarter second misses the blip
        healed_at = await blip_over_a_round()
        await wait_for(
            lambda: probed_healthy_since(healed_at),  # noqa: B023 - awaited in this iteration
            what="every vantage point to probe the primary healthy after the blip",
        )
        events = (await monitor.status()).state.events
        suspect = observed(events, f"primary: suspect: {REFUSED_BY_ALL}")
        saw = suspect & observed(events, f"primary: {decisions.RECOVERED} after")
        if saw:
            break
    assert saw, [e.reason for e in events if e.kind == "observed"]
    await observe_quietly(monitor, rounds=3)
    events = (await monitor.status()).state.events
    assert not observed(events, "primary down"), [e.reason for e in events]
    decision = (await monitor.status()).state.last_decision
    assert decision is not None and decision.reason.startswith(decisions.NOT_CONFIRMED)
    print(f"0.5 s blip probed by {sorted(saw)}: suspect, recovered, no failover")
