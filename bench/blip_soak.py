"""Blip soak: hundreds of short primary outages on the sandbox, and not one failover.

One sandbox (replication on, three vantage points, quorum 2) with fast confirmation on: a
round every 1 s, fast rounds every 0.2 s while every node refuses, a side refused for 1 s
down, otherwise 3 failing rounds (the probe's timeout is 1 s). The monitor is handed these
settings by its configure signal, with no cooldown between failovers. Then `--count`
short outages of the primary, drawn from a seeded RNG, one at a time:

- `refused`: every node refuses connections (`FaultMode.DOWN`) for 0.3-0.9 s: shorter than
  `min_outage_seconds`, so never down;
- `hang`: every node accepts and never answers (`FaultMode.HANG`) for 1-2 s: probes time
  out, ambiguous evidence, and a round that times out skips the next slot, so at most 2
  failing rounds, never the 3 the threshold needs;
- `node_restart`: one node down for 1-3 s: the side is degraded, never failing;
- `rolling_restart`: each node down about 1 s, one after the other.

After each, the bench waits (with a deadline) until every vantage point's view, in the
monitor, sees the primary healthy again, at least a randomised gap after the fault ended
(longer after a hang, whose last timed-out round reports up to the probe's timeout
late). What the vantage points saw is read from the monitor's `observed` events; a
failover during the blips stops the soak with the monitor's last decision and events.

Then the control cases, real outages that must still fail over: every node refused, and
every node hanging, each held until the failover run ends (at least 3 s and 5 s); after
each the primary is healed, re-seeded from the standby and failed back to.

    .venv/bin/python bench/blip_soak.py [--count 200] [--seed 1] [--quick]

`--quick` is 40 blips. Prints a line per blip that any vantage point saw failing, a table
per kind, then `blips=`, `failovers=`, `suspect_rounds=` (failing rounds the vantage points
counted, from their `recovered after N failing round(s)` reasons) and
`real_outages_confirmed=`. Exits 1 when a blip failed over or a real outage was not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from failover.config import ClusterConfig, MonitorSettings, ProbeSettings
from failover.models import MonitorEvent, MonitorStatus, Outcome
from failover.process import exit_now

if TYPE_CHECKING:
    from sandbox.stack import Sandbox

# The cadence under test: fast confirmation on, the threshold as the sandbox's.
INTERVAL_SECONDS = 1.0
FAST_CONFIRM_INTERVAL_SECONDS = 0.2
MIN_OUTAGE_SECONDS = 1.0
FAILURE_THRESHOLD = 3
PROBE_TIMEOUT_SECONDS = 1.0  # the sandbox's: a hang longer than this is a timed-out round
NODE_COUNT = 3  # the sandbox's primary


class Kind(StrEnum):
    REFUSED = "refused"
    HANG = "hang"
    NODE_RESTART = "node_restart"
    ROLLING_RESTART = "rolling_restart"


# Seconds each kind's fault lasts (for a rolling restart: each node's turn).
BOUNDS: dict[Kind, tuple[float, float]] = {
    Kind.REFUSED: (0.3, 0.9),
    Kind.HANG: (1.0, 2.0),
    Kind.NODE_RESTART: (1.0, 3.0),
    Kind.ROLLING_RESTART: (0.8, 1.2),
}
# How often each kind is drawn; every kind appears at least once when count allows.
WEIGHTS: dict[Kind, float] = {
    Kind.REFUSED: 0.4,
    Kind.HANG: 0.3,
    Kind.NODE_RESTART: 0.2,
    Kind.ROLLING_RESTART: 0.1,
}
# The healthy gap after a blip: at least this long after the fault ended (a hang's last
# timed-out round reports up to the probe's timeout after it), plus up to GAP_EXTRA more.
GAP_BASE_SECONDS: dict[Kind, float] = {
    Kind.REFUSED: 0.5,
    Kind.HANG: PROBE_TIMEOUT_SECONDS + 0.3,
    Kind.NODE_RESTART: 0.5,
    Kind.ROLLING_RESTART: 0.5,
}
GAP_EXTRA_SECONDS = 0.8
QUICK_COUNT = 40
DEFAULT_COUNT = 200

HEALTHY_DEADLINE_SECONDS = 30.0  # after a blip, every vantage point sees it healthy by then
ASK_EVERY_SECONDS = 0.25  # a status is a query, a task on the busy worker
DETECTION_DEADLINE_SECONDS = 30.0  # a real outage not failed over by then was not confirmed
RUN_DEADLINE_SECONDS = 180.0
RESTORE_DEADLINE_SECONDS = 180.0
STEADY_DEADLINE_SECONDS = 90.0
SWITCHED = (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS)

# "<vantage> sees primary <state>, standby <state>[; primary: <reason>]…" (the monitor's
# `observed` events), and a recovery's count of failing rounds.
OBSERVED = re.compile(r"^(?P<vantage>\S+) sees primary (?P<state>\w+), standby (?P<standby>\w+)")
RECOVERED_ROUNDS = re.compile(r"primary: recovered after (?P<rounds>\d+) failing round")


@dataclass(frozen=True)
class Blip:
    """One short outage: what, how long (a rolling restart: each node's turn), which node
    (a single-node restart), and the least healthy gap after it."""

    number: int
    kind: Kind
    seconds: float
    node: int | None
    gap_seconds: float


def schedule(count: int, seed: int, *, node_count: int = NODE_COUNT) -> list[Blip]:
    """`count` blips drawn from `seed`: every kind at least once (count allowing), the rest
    by WEIGHTS, shuffled; durations uniform within BOUNDS."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    rng = random.Random(seed)
    kinds = list(Kind)[:count]
    kinds += rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=count - len(kinds))
    rng.shuffle(kinds)
    blips: list[Blip] = []
    for number, kind in enumerate(kinds, start=1):
        low, high = BOUNDS[kind]
        node = rng.randrange(node_count) if kind is Kind.NODE_RESTART else None
        blips.append(
            Blip(
                number=number,
                kind=kind,
                seconds=round(rng.uniform(low, high), 3),
                node=node,
                gap_seconds=round(GAP_BASE_SECONDS[kind] + rng.uniform(0, GAP_EXTRA_SECONDS), 3),
            )
        )
    return blips


@dataclass
class Seen:
    """What the vantage points reported during one blip."""

    worst: dict[str, str] = field(default_factory=dict)  # vantage -> suspect, down, degraded
    failing_rounds: int = 0
    most_rounds: int = 0  # the most one vantage point counted: how near the threshold
    failovers: int = 0
    events: list[MonitorEvent] = field(default_factory=list)


SEVERITY = {"healthy": 0, "degraded": 1, "suspect": 2, "down": 3}


def seen_in(events: Sequence[MonitorEvent]) -> Seen:
    """The worst state each vantage point reported of the primary, the failing rounds its
    recoveries counted, and failovers started, from the monitor's events."""
    seen = Seen(events=list(events))
    for event in events:
        if event.kind == "failover_started":
            seen.failovers += 1
        if event.kind != "observed":
            continue
        match = OBSERVED.match(event.reason)
        if match is None:
            continue
        vantage, state = match["vantage"], match["state"]
        if SEVERITY.get(state, 0) > SEVERITY.get(seen.worst.get(vantage, "healthy"), 0):
            seen.worst[vantage] = state
        rounds = RECOVERED_ROUNDS.search(event.reason)
        if rounds is not None:
            seen.failing_rounds += int(rounds["rounds"])
            seen.most_rounds = max(seen.most_rounds, int(rounds["rounds"]))
    return seen


@dataclass
class KindTally:
    injected: int = 0
    fault_seconds: list[float] = field(default_factory=list)  # as held, measured
    suspect: Counter[str] = field(default_factory=Counter)  # vantage -> blips seen suspect
    down: Counter[str] = field(default_factory=Counter)
    degraded: Counter[str] = field(default_factory=Counter)
    failing_rounds: int = 0
    most_rounds: int = 0
    failovers: int = 0

    def add(self, held_seconds: float, seen: Seen) -> None:
        self.injected += 1
        self.fault_seconds.append(held_seconds)
        for vantage, state in seen.worst.items():
            counter = {"suspect": self.suspect, "down": self.down, "degraded": self.degraded}
            if state in counter:
                counter[state][vantage] += 1
        self.failing_rounds += seen.failing_rounds
        self.most_rounds = max(self.most_rounds, seen.most_rounds)
        self.failovers += seen.failovers


def table(tallies: dict[Kind, KindTally], vantages: Sequence[str]) -> str:
    """Per kind: blips, the fault as held, and per vantage point how many it saw suspect
    (and down, degraded), the failing rounds counted (all, and the most one vantage point
    counted in one blip), failovers started."""
    labels = [f"v{i}" for i in range(1, len(vantages) + 1)]
    per_vantage = " ".join(f"{label:>4}" for label in labels)
    lines = [
        "per kind: blips seen suspect / down / degraded by each vantage point",
        "  " + ", ".join(f"{label} = {v}" for label, v in zip(labels, vantages, strict=True)),
        f"{'kind':<16} {'blips':>5} {'held s (min-max)':>17}  suspect {per_vantage}  "
        f"down {per_vantage}  degraded {per_vantage}  {'rounds':>6} {'max':>3} {'failovers':>9}",
    ]
    for kind in Kind:
        tally = tallies.get(kind, KindTally())
        held = (
            f"{min(tally.fault_seconds):.2f}-{max(tally.fault_seconds):.2f}"
            if tally.fault_seconds
            else "-"
        )

        def counts(counter: Counter[str]) -> str:
            return " ".join(f"{counter[v]:>4}" for v in vantages)

        lines.append(
            f"{kind.value:<16} {tally.injected:>5} {held:>17}  suspect {counts(tally.suspect)}  "
            f"down {counts(tally.down)}  degraded {counts(tally.degraded)}  "
            f"{tally.failing_rounds:>6} {tally.most_rounds:>3} {tally.failovers:>9}"
        )
    return "\n".join(lines)


def final_lines(
    blips: int, failovers: int, suspect_rounds: int, confirmed: int, real_outages: int
) -> list[str]:
    """The lines a script reads."""
    return [
        f"blips={blips}",
        f"failovers={failovers}",
        f"suspect_rounds={suspect_rounds}",
        f"real_outages_confirmed={confirmed}/{real_outages}",
    ]


def succeeded(failovers: int, confirmed: int, real_outages: int) -> bool:
    """No blip failed over and every real outage did."""
    return failovers == 0 and confirmed == real_outages


def blip_line(blip: Blip, held: float, seen: Seen) -> str:
    where = f" node {blip.node}" if blip.node is not None else ""
    views = ", ".join(f"{v} {s}" for v, s in sorted(seen.worst.items())) or "nothing"
    return (
        f"blip {blip.number} {blip.kind.value}{where} {blip.seconds:.2f} s (held {held:.2f} s): "
        f"{views}; {seen.failing_rounds} failing round(s)"
    )


def tuned(cluster: ClusterConfig) -> ClusterConfig:
    """The cluster at the cadence under test, with no cooldown after a failover (the
    control cases follow each other), validated as a config file's would be."""
    probe = ProbeSettings.model_validate(
        cluster.probe.model_dump()
        | {
            "interval_seconds": INTERVAL_SECONDS,
            "failure_threshold": FAILURE_THRESHOLD,
            "fast_confirm_interval_seconds": FAST_CONFIRM_INTERVAL_SECONDS,
            "min_outage_seconds": MIN_OUTAGE_SECONDS,
        }
    )
    if probe.timeout_seconds != PROBE_TIMEOUT_SECONDS:
        raise ValueError(
            f"the sandbox's probe timeout is {probe.timeout_seconds:g} s, the hangs are drawn "
            f"for {PROBE_TIMEOUT_SECONDS:g} s"
        )
    monitor = MonitorSettings.model_validate(cluster.monitor.model_dump() | {"cooldown_seconds": 0})
    return cluster.model_copy(update={"probe": probe, "monitor": monitor})


# --- the sandbox ------------------------------------------------------------------------------


class Soak:
    """The sandbox under soak, and what the monitor reported so far."""

    def __init__(self, sandbox: Sandbox) -> None:
        assert sandbox.config is not None and sandbox.client is not None
        self.sandbox = sandbox
        self.client = sandbox.client
        self.cluster = tuned(sandbox.config.clusters[0])
        self.queue = sandbox.config.task_queue
        self.vantages = self.cluster.monitor.vantages(self.queue)
        self.seen_keys: set[tuple[datetime, str, str]] = set()
        self.missed_events = False
        self.failovers_before = 0  # the monitor's failover records when the soak began
        self._asked_at = 0.0

    async def status(self) -> MonitorStatus | None:
        """The monitor's status, at most every ASK_EVERY_SECONDS; None when too soon or
        the busy worker did not answer."""
        from temporalio.client import WorkflowQueryFailedError
        from temporalio.service import RPCError

        from failover.client.operations import monitor_status

        wait = ASK_EVERY_SECONDS - (time.monotonic() - self._asked_at)
        if wait > 0:
            await asyncio.sleep(wait)
        self._asked_at = time.monotonic()
        try:
            return await monitor_status(self.client, self.cluster.name)
        except (RPCError, WorkflowQueryFailedError):
            return None

    def new_events(self, status: MonitorStatus) -> list[MonitorEvent]:
        """Events not seen before (the monitor keeps its last 50)."""
        events = status.state.events
        keys = [(e.at, e.kind, e.reason) for e in events]
        fresh = [e for e, key in zip(events, keys, strict=True) if key not in self.seen_keys]
        if self.seen_keys and events and len(fresh) == len(events):
            self.missed_events = True  # none of the kept events was seen: some fell off
        self.seen_keys.update(keys)
        return fresh

    async def wait_for(
        self, problem_of: Callable[[MonitorStatus], str | None], what: str, deadline_s: float
    ) -> MonitorStatus:
        """The first status for which `problem_of` says nothing is wrong (None)."""
        deadline = time.monotonic() + deadline_s
        last = "never asked"
        while time.monotonic() < deadline:
            status = await self.status()
            if status is None:
                last = "the monitor did not answer"
                continue
            problem = problem_of(status)
            if problem is None:
                return status
            last = problem
        raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}: {last}")

    def failed_over(self, status: MonitorStatus) -> bool:
        """Whether the monitor started a failover since the soak began."""
        return status.phase == "failing_over" or len(status.state.failovers) > self.failovers_before

    def blip_over(self, status: MonitorStatus) -> str | None:
        """As `primary_not_healthy`, but a failover ends the wait too: the soak stops."""
        return None if self.failed_over(status) else self.primary_not_healthy(status)

    def primary_not_healthy(self, status: MonitorStatus) -> str | None:
        """What keeps the next blip from starting: a vantage point not watching or not
        seeing the primary healthy, or the monitor not watching the primary."""
        state = status.state
        if status.phase != "watching":
            return f"the monitor is {status.phase}"
        if state.active != "primary":
            return f"the monitor reads {state.active or 'no side'} as active"
        for vantage in self.vantages:
            view = state.views.get(vantage)
            if view is None:
                return f"no view from {vantage}"
            if view.primary.state != "healthy":
                return f"{vantage} sees the primary {view.primary.state}: {view.primary.reason}"
        return None

    def standby_not_fed(self, status: MonitorStatus) -> str | None:
        """Before a real outage: as a blip, and the standby's followers syncing."""
        problem = self.primary_not_healthy(status)
        if problem is not None or self.cluster.replication is None:
            return problem
        standby = status.state.data.standby
        if standby is None or not standby.followers:
            return "the monitor has no reading of the standby's followers"
        for follower in standby.followers:
            if follower.status != "syncing" or follower.stale_since is not None:
                return f"the standby's {follower.index} is {follower.status}"
        return None

    async def configure(self) -> None:
        """The monitor at the cadence under test (its configure signal), every vantage
        point's new watch a few rounds in and seeing the primary healthy."""
        from failover.client.operations import ensure_monitor
        from sandbox.waiting import wait_for

        since = datetime.now(UTC)
        await ensure_monitor(self.client, self.cluster, task_queue=self.queue)
        watches = _rto_bench().watches_since

        async def watching() -> bool:
            from temporalio.service import RPCError

            try:
                progress = await watches(self.sandbox, since)
            except RPCError:
                return False
            return all(
                v in progress and progress[v].rounds >= 2 and progress[v].primary == "healthy"
                for v in self.vantages
            )

        await wait_for(watching, what="the new watches from every vantage point", timeout_s=90)
        status = await self.wait_for(self.primary_not_healthy, "steady state", 60)
        self.new_events(status)  # the soak counts from here
        self.failovers_before = len(status.state.failovers)

    async def inject(self, blip: Blip) -> float:
        """The blip's fault, held its time; returns the seconds it was held (from the
        fault in place to the side healed)."""
        from sandbox.search_sim import FaultMode, NodeFault
        from sandbox.stack import PRIMARY_SIM

        fleet = self.sandbox.fleet
        assert fleet is not None
        cluster = fleet.clusters[PRIMARY_SIM]

        async def hold(node: int | None, mode: FaultMode, seconds: float) -> float:
            fleet.set_fault(PRIMARY_SIM, node, NodeFault(mode))
            await cluster.settle()
            began = time.monotonic()
            await asyncio.sleep(seconds)  # the outage itself, not a wait on a condition
            fleet.set_fault(PRIMARY_SIM, node, NodeFault(FaultMode.HEALTHY))
            await cluster.settle()
            return time.monotonic() - began

        if blip.kind is Kind.REFUSED:
            return await hold(None, FaultMode.DOWN, blip.seconds)
        if blip.kind is Kind.HANG:
            return await hold(None, FaultMode.HANG, blip.seconds)
        if blip.kind is Kind.NODE_RESTART:
            return await hold(blip.node, FaultMode.DOWN, blip.seconds)
        held = 0.0
        for node in range(cluster.node_count):
            held += await hold(node, FaultMode.DOWN, blip.seconds)
        return held

    async def blip(self, blip: Blip) -> tuple[float, Seen, MonitorStatus]:
        """One blip, then the healthy gap: what the vantage points saw of it."""
        held = await self.inject(blip)
        healed = time.monotonic()
        events: list[MonitorEvent] = []
        status = await self.wait_for(
            self.blip_over, f"blip {blip.number} seen healthy", HEALTHY_DEADLINE_SECONDS
        )
        while time.monotonic() - healed < blip.gap_seconds and not self.failed_over(status):
            events += self.new_events(status)
            status = await self.status() or status
        # Asked again after the gap: reports in flight at the first healthy status count.
        status = await self.wait_for(
            self.blip_over, f"blip {blip.number} seen healthy", HEALTHY_DEADLINE_SECONDS
        )
        events += self.new_events(status)
        return held, seen_in(events), status

    async def real_outage(self, name: str, mode: str, at_least: float) -> bool:
        """Every primary node in `mode` until the failover run ends (at least `at_least`
        seconds): True when the monitor started a run that switched."""
        from sandbox.demo import failover_started_by_monitor
        from sandbox.search_sim import FaultMode, NodeFault
        from sandbox.stack import PRIMARY_SIM

        fleet = self.sandbox.fleet
        assert fleet is not None
        await self.wait_for(self.standby_not_fed, "steady state", STEADY_DEADLINE_SECONDS)
        fault_at = datetime.now(UTC)
        began = time.monotonic()
        fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode(mode)))
        await fleet.clusters[PRIMARY_SIM].settle()
        confirmed, switched = False, False
        try:
            handle = await asyncio.wait_for(
                failover_started_by_monitor(self.client, self.cluster.name, fault_at),
                DETECTION_DEADLINE_SECONDS,
            )
            confirmed = True
            detection = (await handle.describe()).start_time - fault_at
            async with asyncio.timeout(RUN_DEADLINE_SECONDS):
                result = await handle.result()
            switched = result.result in SWITCHED
            print(
                f"real outage {name}: failover started {detection.total_seconds():.2f} s after "
                f"the fault; {result.result.value}: {result.reason}",
                flush=True,
            )
        except (AssertionError, TimeoutError) as exc:
            print(f"real outage {name}: not failed over: {exc}", flush=True)
        status = await self.status()
        if status is not None:
            record = status.state.failovers[-1] if status.state.failovers else None
            if record is not None and record.started_at >= fault_at and not switched:
                print(f"  the monitor's reason: {record.reason}", flush=True)
            self.new_events(status)
        remaining = at_least - (time.monotonic() - began)
        if remaining > 0:
            await asyncio.sleep(remaining)  # the outage lasts at least its stated length
        await self.restore(switched)
        return confirmed and switched

    async def restore(self, switched: bool) -> None:
        """The primary healed; after a switch re-seeded from the standby and failed back
        to, with the project's own workflows, as an operator would."""
        from failover.client.operations import start_failback, start_reseed
        from sandbox.search_sim import FaultMode, NodeFault
        from sandbox.stack import PRIMARY_SIM

        fleet = self.sandbox.fleet
        assert fleet is not None
        fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.HEALTHY))
        await fleet.clusters[PRIMARY_SIM].settle()
        if switched:
            reason = "bench: blip soak"
            async with asyncio.timeout(RESTORE_DEADLINE_SECONDS):
                if self.cluster.replication is not None:
                    reseed = await start_reseed(
                        self.client,
                        self.cluster,
                        task_queue=self.queue,
                        reason=reason,
                        identity="bench",
                    )
                    reseeded = await reseed.result()
                    if reseeded.result != "reseeded":
                        raise RuntimeError(f"the primary was not re-seeded: {reseeded}")
                back = await start_failback(
                    self.client, self.cluster, task_queue=self.queue, reason=reason
                )
                result = await back.result()
            if result.result not in SWITCHED:
                raise RuntimeError(f"the failback did not switch: {result.result}: {result.reason}")
        status = await self.wait_for(
            self.primary_not_healthy, "the primary back and healthy", STEADY_DEADLINE_SECONDS
        )
        self.new_events(status)


def _rto_bench() -> ModuleType:
    """bench/rto.py, for its reading of the running watches' heartbeats."""
    import importlib.util

    path = Path(__file__).with_name("rto.py")
    spec = importlib.util.spec_from_file_location("bench_rto", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def report_failover(blip: Blip, seen: Seen, status: MonitorStatus) -> None:
    """A blip that failed over: what the monitor decided, and why, and its events."""
    decision = status.state.last_decision
    print(f"blip {blip.number} ({blip.kind.value}, {blip.seconds:.2f} s) FAILED OVER", flush=True)
    if decision is not None:
        print(f"  last decision: {decision.action}: {decision.reason}")
    for record in status.state.failovers[-seen.failovers :]:
        print(f"  failover {record.workflow_id} at {record.started_at}: {record.reason}")
        print(f"    result: {record.result}: {record.result_reason}")
    for event in seen.events:
        print(f"  {event.at.isoformat()} {event.kind}: {event.reason}")


async def soak(count: int, seed: int) -> bool:
    from sandbox.stack import Sandbox

    directory = Path(tempfile.mkdtemp(prefix="bench-blip-soak-"))
    sandbox = Sandbox(directory, probe_interval=INTERVAL_SECONDS, replication=True)
    started = time.monotonic()
    await sandbox.start()
    tallies = {kind: KindTally() for kind in Kind}
    failovers = 0
    confirmed = 0
    real = [("refused", "down", 3.0), ("hanging", "hang", 5.0)]
    ran_real = 0
    try:
        runner = Soak(sandbox)
        await runner.configure()
        print(
            f"sandbox up and configured in {time.monotonic() - started:.0f} s; {count} blips, "
            f"seed {seed}",
            flush=True,
        )
        soak_started = time.monotonic()
        for blip in schedule(count, seed):
            held, seen, status = await runner.blip(blip)
            tallies[blip.kind].add(held, seen)
            if seen.worst and any(s != "degraded" for s in seen.worst.values()):
                print(blip_line(blip, held, seen), flush=True)
            if seen.failovers or runner.failed_over(status):
                failovers += max(seen.failovers, 1)
                report_failover(blip, seen, status)
                break
        soak_seconds = time.monotonic() - soak_started
        done = sum(t.injected for t in tallies.values())
        print(f"\n{done} blips in {soak_seconds:.0f} s")
        if runner.missed_events:
            print("warning: some of the monitor's events fell off its list between readings")
        print(table(tallies, runner.vantages))
        print()
        if failovers == 0:
            for name, mode, at_least in real:
                ran_real += 1
                confirmed += await runner.real_outage(name, mode, at_least)
    finally:
        await sandbox.stop()
    ok = succeeded(failovers, confirmed, len(real)) and ran_real == len(real)
    if ok:
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
    else:
        print(f"state kept in {directory}")
    print(f"wall time {time.monotonic() - started:.0f} s\n")
    suspect_rounds = sum(t.failing_rounds for t in tallies.values())
    done = sum(t.injected for t in tallies.values())
    for line in final_lines(done, failovers, suspect_rounds, confirmed, len(real)):
        print(line)
    return ok


def _core_logs_to_stderr() -> None:
    """The SDK core's warnings go through logging (stderr): stdout ends with the figures."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

    config = dataclasses.replace(
        LoggingConfig.default,
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=config)))


async def main(count: int, seed: int) -> bool:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    _core_logs_to_stderr()
    logging.getLogger("sandbox.nlb").setLevel(logging.ERROR)
    return await soak(count, seed)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, help="blips")
    parser.add_argument("--seed", type=int, default=1, help="the schedule's random seed")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT} blips")
    args = parser.parse_args()
    try:
        ok = asyncio.run(main(QUICK_COUNT if args.quick else args.count, args.seed))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("stopped before the end; the sandbox was stopped", file=sys.stderr)
        exit_now(130)
    exit_now(0 if ok else 1)
