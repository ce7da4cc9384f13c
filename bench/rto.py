"""RTO on the sandbox, side by side with a Route 53 health check's cadence.

For each mode (`dns`: the Route 53 record moves; `nlb`: the target group's targets do) one
sandbox, started as `failover demo` starts it (replication on, the record's TTL 1 s), runs
`--runs` failovers at the sandbox's probe cadence (a round every 1 s, a side down after 3
failing rounds) and as many at a Route 53 fast health check's (every 10 s, 3 failures),
interleaved (ours, baseline, ours, …) so that both see the same machine. Each run is
`failover demo`'s (`sandbox.demo.run_demo`): every primary node killed, the monitor detects
it and fails over by itself, the storefront is searched through Varnish until products come
back. Between runs the primary is healed, re-seeded and failed back (the project's own
failback), the monitor is handed the next run's cadence (its configure signal: the watches
restart with it), and the next run waits until every vantage point watches again and the
monitor's record shows the standby fed. The monitor's cooldown is 0 here, or it would not
act again for 10 minutes after a failover; the baseline runs without the demo's fast
confirmation (a Route 53 health check has none); nothing else differs from the demo's config.

    .venv/bin/python bench/rto.py [--runs 5] [--modes dns,nlb] [--quick]

`--quick` is 2 runs of each cadence, dns only. Prints one line per run, then per (mode,
cadence) the p50 and p95 of detection (fault → failover started), RTO (fault → verified
switch) and storefront recovery (fault → first products), the ratio baseline/ours, and
each step's median as a share of the RTO p50. Percentiles interpolate between ranks (p50
is the median). Ends with `rto_p50_seconds=` (ours), `baseline_rto_p50_seconds=` and
`ratio=` (baseline / ours) lines, for dns (the first mode run without dns).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from failover import names
from failover.client.operations import ensure_monitor, monitor_status, start_failback, start_reseed
from failover.config import ClusterConfig, MonitorSettings, ProbeSettings
from failover.models import MonitorStatus, Outcome, WatchProgress
from failover.process import exit_now

if TYPE_CHECKING:
    from sandbox.stack import Sandbox

MODES = ("dns", "nlb")
SWITCHED = (Outcome.FAILED_OVER.value, Outcome.FAILED_OVER_WITH_WARNINGS.value)
# The checks before customers count (decisions.verified_at): the RTO ends with the last.
VERIFY_STEPS = ("verify", "verify_indices", "verify_storefront")
# Watching again: every vantage point's watch probed this many rounds at the new cadence.
STEADY_ROUNDS = 2
# How long the monitor may take to watch again: a margin, and rounds at the cadence (the
# watches' heartbeats, which carry their rounds, reach Temporal up to 8 s late).
STEADY_MARGIN_SECONDS = 60.0
STEADY_ROUNDS_OF_INTERVAL = 4
STEADY_ASK_EVERY_SECONDS = 0.5
# A run (fault to storefront back, at the baseline's cadence about a minute) and a restore
# (re-seed and failback) that take longer than this are stuck: the bench stops, saying so.
RUN_DEADLINE_SECONDS = 300.0
RESTORE_DEADLINE_SECONDS = 180.0


@dataclass(frozen=True)
class Cadence:
    """How often the monitor probes and how many failing rounds make a side down."""

    name: str
    interval_seconds: float
    failure_threshold: int
    # The config's fast confirmation (probe.fast_confirm_interval_seconds and
    # probe.min_outage_seconds) kept as it is, or off: a Route 53 health check has none.
    fast_confirm: bool = True

    @property
    def label(self) -> str:
        return f"{self.name} ({self.interval_seconds:g} s x {self.failure_threshold})"


OURS = Cadence("ours", 1.0, 3)
# Route 53's fast health check: every 10 s, unhealthy after 3 failures in a row.
BASELINE = Cadence("baseline", 10.0, 3, fast_confirm=False)


@dataclass(frozen=True)
class RunFigures:
    """One measured failover: seconds after the fault, and its steps in order."""

    mode: str
    cadence: str
    result: str
    detection: float | None
    rto: float | None
    storefront: float | None
    steps: tuple[tuple[str, float], ...]

    @property
    def measured(self) -> bool:
        """Switched and verified: only such runs have an RTO."""
        return self.result in SWITCHED and self.rto is not None


def figures_of(report: dict[str, Any], mode: str, cadence: str) -> RunFigures:
    """The figures of one `run_demo` report."""
    return RunFigures(
        mode=mode,
        cadence=cadence,
        result=report["result"],
        detection=report["detection_seconds"],
        rto=report["rto_seconds"],
        storefront=report["storefront_recovered_seconds"],
        steps=tuple((s["name"], float(s["seconds"])) for s in report["steps"]),
    )


def percentile(values: Sequence[float], share: float) -> float:
    """Linear interpolation between closest ranks (p50 is the median); nan for none."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be between 0 and 1, not {share}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(baseline: float, ours: float) -> float:
    """baseline / ours; nan when either is unknown or ours is 0."""
    if math.isnan(baseline) or math.isnan(ours) or ours == 0:
        return math.nan
    return baseline / ours


def within_rto(steps: Sequence[tuple[str, float]]) -> int:
    """How many of the steps (in order) end by the verified switch: up to the last verify
    step; the promotion and its write check come after it."""
    last = max((i for i, (name, _) in enumerate(steps) if name in VERIFY_STEPS), default=-1)
    return last + 1


@dataclass(frozen=True)
class Summary:
    """One (mode, cadence): p50 and p95 of each figure over its measured runs."""

    mode: str
    cadence: str
    runs: int
    measured: int
    detection: tuple[float, float]
    rto: tuple[float, float]
    storefront: tuple[float, float]


def summarize(runs: Sequence[RunFigures], mode: str, cadence: str) -> Summary:
    mine = [r for r in runs if r.mode == mode and r.cadence == cadence]
    good = [r for r in mine if r.measured]

    def p50_p95(values: list[float]) -> tuple[float, float]:
        return percentile(values, 0.5), percentile(values, 0.95)

    return Summary(
        mode=mode,
        cadence=cadence,
        runs=len(mine),
        measured=len(good),
        detection=p50_p95([r.detection for r in good if r.detection is not None]),
        rto=p50_p95([r.rto for r in good if r.rto is not None]),
        storefront=p50_p95([r.storefront for r in good if r.storefront is not None]),
    )


@dataclass(frozen=True)
class Share:
    """A part of the RTO: its median seconds, and that as a share of the RTO p50 (None for
    a step after the verified switch, which the RTO does not include)."""

    name: str
    seconds: float
    share: float | None


def step_shares(runs: Sequence[RunFigures], rto_p50: float) -> list[Share]:
    """Detection, then each step in the order the runs took them, as medians over the
    measured runs (a step a run did not take counts 0 s there, one taken twice its sum);
    `rest` is what the medians leave of the RTO p50 (time between steps)."""
    good = [r for r in runs if r.measured]
    if not good:
        return []
    order: list[str] = []
    inside: set[str] = set()
    for run in good:
        count = within_rto(run.steps)
        for index, (name, _) in enumerate(run.steps):
            if name not in order:
                order.append(name)
            if index < count:
                inside.add(name)

    def share(seconds: float) -> float:
        return math.nan if math.isnan(rto_p50) or rto_p50 == 0 else seconds / rto_p50

    detection = statistics.median(r.detection or 0.0 for r in good)
    shares = [Share("detection", detection, share(detection))]
    for name in order:
        seconds = statistics.median(sum(s for n, s in r.steps if n == name) for r in good)
        shares.append(Share(name, seconds, share(seconds) if name in inside else None))
    counted = sum(s.seconds for s in shares if s.share is not None)
    shares.append(Share("rest", rto_p50 - counted, share(rto_p50 - counted)))
    return shares


def _pair(values: tuple[float, float]) -> str:
    return " / ".join("n/a" if math.isnan(v) else f"{v:.2f}" for v in values)


def _times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}x"


def table(runs: Sequence[RunFigures], modes: Sequence[str], cadences: Sequence[Cadence]) -> str:
    """The figures per (mode, cadence), the ratios baseline/ours, and the RTO's parts."""
    labels = {c.name: c.label for c in cadences}
    header = f"{'mode':<5} {'cadence':<20} {'runs':>5}  {'detection s':>15}  {'RTO s':>15}"
    lines = [
        "p50 / p95 seconds after the fault (runs: measured/run)",
        f"{header}  {'storefront s':>15}",
    ]
    shares: list[str] = []
    for mode in modes:
        summaries = {c.name: summarize(runs, mode, c.name) for c in cadences}
        for cadence in cadences:
            s = summaries[cadence.name]
            lines.append(
                f"{mode:<5} {labels[cadence.name]:<20} {f'{s.measured}/{s.runs}':>5}  "
                f"{_pair(s.detection):>15}  {_pair(s.rto):>15}  {_pair(s.storefront):>15}"
            )
            mine = [r for r in runs if r.mode == mode and r.cadence == cadence.name]
            shares.append(
                f"{mode} {labels[cadence.name]}: share of the RTO p50 ({_pair(s.rto[:1])} s), "
                "medians"
            )
            for part in step_shares(mine, s.rto[0]):
                share = (
                    "after the RTO"
                    if part.share is None
                    else "n/a"
                    if math.isnan(part.share)
                    else f"{100 * part.share:5.1f}%"
                )
                shares.append(f"  {part.name:<20} {part.seconds:7.2f} s  {share}")
        if OURS.name in summaries and BASELINE.name in summaries:
            ours, base = summaries[OURS.name], summaries[BASELINE.name]
            ratios = [
                _times(ratio(base.detection[0], ours.detection[0])),
                _times(ratio(base.rto[0], ours.rto[0])),
                _times(ratio(base.storefront[0], ours.storefront[0])),
            ]
            lines.append(
                f"{mode:<5} {'baseline/ours p50':<20} {'':>5}  {ratios[0]:>15}  "
                f"{ratios[1]:>15}  {ratios[2]:>15}"
            )
    return "\n".join([*lines, "", *shares])


def final_lines(runs: Sequence[RunFigures], modes: Sequence[str]) -> list[str]:
    """The lines a script reads: the RTO p50 of both cadences and their ratio, for dns (or
    the first mode measured without it)."""
    mode = "dns" if "dns" in modes else modes[0]
    ours = summarize(runs, mode, OURS.name).rto[0]
    baseline = summarize(runs, mode, BASELINE.name).rto[0]
    return [
        f"rto_p50_seconds={ours:.3f}",
        f"baseline_rto_p50_seconds={baseline:.3f}",
        f"ratio={ratio(baseline, ours):.2f}",
    ]


def run_line(run: RunFigures, number: int, of: int) -> str:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    steps = " ".join(f"{name}={s:.2f}" for name, s in run.steps)
    return (
        f"{run.mode} {run.cadence} {number}/{of}: {run.result}; detection "
        f"{seconds(run.detection)}, RTO {seconds(run.rto)}, storefront "
        f"{seconds(run.storefront)}; {steps}"
    )


# --- the sandbox ------------------------------------------------------------------------------


def tuned(cluster: ClusterConfig, cadence: Cadence) -> ClusterConfig:
    """The cluster's config at `cadence`, without the cooldown between failovers (each run
    follows the last within seconds); both validated as a config file's would be."""
    probe = ProbeSettings.model_validate(
        cluster.probe.model_dump()
        | {
            "interval_seconds": cadence.interval_seconds,
            "failure_threshold": cadence.failure_threshold,
        }
        | (
            {}
            if cadence.fast_confirm
            else {"fast_confirm_interval_seconds": None, "min_outage_seconds": None}
        )
    )
    monitor = MonitorSettings.model_validate(cluster.monitor.model_dump() | {"cooldown_seconds": 0})
    return cluster.model_copy(update={"probe": probe, "monitor": monitor})


def steady_state_problem(
    status: MonitorStatus,
    progress: dict[str, WatchProgress],
    vantages: Sequence[str],
    *,
    replication: bool,
) -> str | None:
    """What keeps a run from starting as the first one did (None: nothing): the monitor
    watching the primary, each vantage point's watch at the new cadence a few rounds in
    and seeing both sides healthy, and the monitor's record of the standby fed."""
    state = status.state
    if status.phase != "watching":
        return f"the monitor is {status.phase}"
    if state.active != "primary":
        return f"the monitor reads {state.active or 'no side'} as active ({state.active_problem})"
    if state.unreachable_vantages:
        return f"vantage points not answering: {', '.join(sorted(state.unreachable_vantages))}"
    for vantage in vantages:
        watch = progress.get(vantage)
        if watch is None:
            return f"no watch from {vantage} at the new cadence yet"
        if watch.rounds < STEADY_ROUNDS:
            return f"{vantage} has probed {watch.rounds} rounds"
        if (watch.primary, watch.standby) != ("healthy", "healthy"):
            return f"{vantage} sees the primary {watch.primary}, the standby {watch.standby}"
    if replication:
        standby = state.data.standby
        if standby is None or not standby.followers:
            return "the monitor has no reading of the standby's followers"
        for follower in standby.followers:
            if follower.status != "syncing" or follower.stale_since is not None:
                stale = " (beyond the limits)" if follower.stale_since is not None else ""
                return f"the standby's {follower.index} is {follower.status}{stale}"
    return None


async def watches_since(sandbox: Sandbox, since: datetime | None) -> dict[str, WatchProgress]:
    """Each vantage point's running watch (scheduled after `since`), from its heartbeat."""
    assert sandbox.client is not None and sandbox.config is not None
    client = sandbox.client
    handle = client.get_workflow_handle(names.monitor_workflow_id(sandbox.config.clusters[0].name))
    found: dict[str, WatchProgress] = {}
    for pending in (await handle.describe()).raw_description.pending_activities:
        payloads = pending.heartbeat_details.payloads
        if pending.activity_type.name != names.WATCH_CLUSTER_ACTIVITY or not payloads:
            continue
        if since is not None and pending.scheduled_time.ToDatetime(UTC) < since:
            continue
        [progress] = await client.data_converter.decode(payloads[:1], [WatchProgress])
        if progress.view is not None:
            found[progress.view.vantage] = progress
    return found


async def hand_cadence(sandbox: Sandbox, cadence: Cadence, current: Cadence | None) -> None:
    """The monitor at `cadence` (its configure signal, when it is not there already), and
    back to the steady state a run starts from."""
    from sandbox.waiting import wait_for

    assert sandbox.client is not None and sandbox.config is not None
    cluster = sandbox.config.clusters[0]
    since = None
    if cadence != current:
        since = datetime.now(UTC)
        await ensure_monitor(
            sandbox.client, tuned(cluster, cadence), task_queue=sandbox.config.task_queue
        )
    client, vantages = sandbox.client, cluster.monitor.vantages(sandbox.config.task_queue)
    last: list[str] = []
    asked_at = 0.0

    async def steady() -> bool:
        # Each status is a query, a task on the busy worker: asked twice a second at most.
        nonlocal asked_at
        if time.monotonic() - asked_at < STEADY_ASK_EVERY_SECONDS:
            return False
        asked_at = time.monotonic()
        try:
            status = await monitor_status(client, cluster.name)
            progress = await watches_since(sandbox, since)
        except (RPCError, WorkflowQueryFailedError) as exc:  # a busy worker: ask again
            last[:] = [f"the monitor did not answer: {exc}"]
            return False
        problem = steady_state_problem(
            status, progress, vantages, replication=cluster.replication is not None
        )
        last[:] = [problem or ""]
        return problem is None

    timeout = STEADY_MARGIN_SECONDS + STEADY_ROUNDS_OF_INTERVAL * cadence.interval_seconds
    try:
        await wait_for(steady, what=f"the monitor to watch at {cadence.label}", timeout_s=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last[0] if last else 'never asked'}") from None


async def restore_primary(sandbox: Sandbox, switched: bool) -> None:
    """The primary healed; after a switch, re-seeded from the standby and failed back to,
    with the project's own workflows, as an operator would."""
    from sandbox.search_sim import FaultMode, NodeFault
    from sandbox.stack import PRIMARY_SIM

    assert sandbox.client is not None and sandbox.config is not None and sandbox.fleet
    cluster, queue = sandbox.config.clusters[0], sandbox.config.task_queue
    sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.HEALTHY))
    await sandbox.fleet.clusters[PRIMARY_SIM].settle()
    if not switched:
        return
    async with asyncio.timeout(RESTORE_DEADLINE_SECONDS):
        if cluster.replication is not None:
            reseed = await start_reseed(
                sandbox.client, cluster, task_queue=queue, reason="bench: rto", identity="bench"
            )
            reseeded = await reseed.result()
            if reseeded.result != "reseeded":
                raise RuntimeError(f"the primary was not re-seeded: {reseeded}")
        back = await start_failback(sandbox.client, cluster, task_queue=queue, reason="bench: rto")
        result = await back.result()
    if result.result.value not in SWITCHED:
        raise RuntimeError(f"the failback did not switch: {result.result.value}: {result.reason}")


async def measure_mode(
    mode: str, runs: int, cadences: Sequence[Cadence], directory: Path
) -> list[RunFigures]:
    """`runs` failovers at each cadence, interleaved, on one sandbox in `mode`."""
    # The stack and the demo (moto, aiohttp, graphql: seconds of imports) load only here, so
    # the table's code (and its tests) load fast.
    from sandbox.demo import run_demo
    from sandbox.stack import Sandbox

    sandbox = Sandbox(
        directory / mode,
        mode=mode,  # type: ignore[arg-type]
        probe_interval=cadences[0].interval_seconds,
        replication=True,
    )
    await sandbox.start()
    figures: list[RunFigures] = []
    current: Cadence | None = None
    try:
        for number in range(1, runs + 1):
            for cadence in cadences:
                await hand_cadence(sandbox, cadence, current)
                current = cadence
                async with asyncio.timeout(RUN_DEADLINE_SECONDS):
                    report = await run_demo(sandbox)
                run = figures_of(report, mode, cadence.name)
                figures.append(run)
                print(run_line(run, number, runs), flush=True)
                await restore_primary(sandbox, switched=run.result in SWITCHED)
    finally:
        await sandbox.stop()
    return figures


def _core_logs_to_stderr() -> None:
    """The SDK core's warnings go through logging (stderr): stdout ends with the figures."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

    config = dataclasses.replace(
        LoggingConfig.default,
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=config)))


async def main(runs: int, modes: list[str], cadences: list[Cadence]) -> bool:
    # SIGTERM ends the run as Ctrl-C does: the sandbox (Varnish, Redis, Temporal) stopped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    _core_logs_to_stderr()
    # The NLB stand-in logs every connection it cannot place while the primary is down.
    logging.getLogger("sandbox.nlb").setLevel(logging.ERROR)
    directory = Path(tempfile.mkdtemp(prefix="bench-rto-"))
    figures: list[RunFigures] = []
    for mode in modes:
        figures += await measure_mode(mode, runs, cadences, directory)
    print()
    print(table(figures, modes, cadences))
    ok = all(r.measured for r in figures)
    if ok:  # a failed run keeps its sandbox's logs and history for a look
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
    else:
        print(f"some runs did not verify a switch; state kept in {directory}")
    print()
    for line in final_lines(figures, modes):
        print(line)
    return ok


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"modes must be a comma-separated list of {', '.join(MODES)}, not {text!r}"
        )
    return list(dict.fromkeys(modes))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=positive_int, default=5, help="failovers per cadence")
    parser.add_argument("--modes", type=parse_modes, default=list(MODES), help="dns,nlb")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 runs, dns only")
    args = parser.parse_args()
    runs, modes = (2, ["dns"]) if args.quick else (args.runs, args.modes)
    try:
        succeeded = asyncio.run(main(runs, modes, [OURS, BASELINE]))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("stopped before the end; the sandbox was stopped", file=sys.stderr)
        exit_now(130)
    exit_now(0 if succeeded else 1)
