"""Standby data: what the monitor's record of the indices costs, and what promotion adds.

On the sandbox with replication (both clusters OpenSearch, the standby's two store indices
following the primary's), while a writer updates the primary's catalogue as a shop's
indexer would (`--writes-per-second`):

1. quiet phase (`--window` seconds): the replication lag in operations the monitor's record
   shows, sampled from the running watch's heartbeat, and the monitor's history growth,
   as events per cluster-hour;
2. `--runs` failovers (primary killed, triggered by hand; the primary re-seeded and failed
   back between runs): how long preflight (with the data checks), promotion and the write
   check through the switched name take, and the RTO (fault → verified switch).

    .venv/bin/python bench/standby_data.py [--window 120] [--runs 3] [--writes-per-second 10]

Ends with `history_events_per_cluster_hour=`, `lag_operations_p50=`, `lag_operations_max=`,
`preflight_seconds_p50=`, `promote_seconds_p50=` and `rto_seconds_p50=` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from failover import decisions
from failover.client.operations import (
    known_data,
    monitor_status,
    pause_monitor,
    start_failback,
    start_or_attach_failover,
    start_reseed,
)
from failover.models import FailoverResult, Outcome
from failover.process import exit_now
from sandbox.demo import monitor_watching
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, Sandbox


def step_seconds(result: FailoverResult, name: str) -> float:
    return sum(s.seconds for s in result.steps if s.name == name)


async def writer(sandbox: Sandbox, per_second: float, stop: asyncio.Event) -> int:
    """Catalogue updates on whichever cluster is the leader now, like Magento's indexer."""
    assert sandbox.fleet is not None
    primary = sandbox.fleet.clusters[PRIMARY_SIM]
    written = 0
    while not stop.is_set():
        for store in (1, 2):
            with contextlib.suppress(ValueError):
                primary.write_documents(f"magento2_product_{store}", 1)
                written += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2 / per_second)
    return written


async def quiet_phase(sandbox: Sandbox, window: float, per_second: float) -> dict[str, float]:
    assert sandbox.client is not None and sandbox.config is not None
    name = sandbox.config.clusters[0].name
    start_events = (await monitor_status(sandbox.client, name)).history_length
    started = time.monotonic()
    stop = asyncio.Event()
    writing = asyncio.create_task(writer(sandbox, per_second, stop))
    lags: list[int] = []
    while time.monotonic() - started < window:
        record = await known_data(sandbox.client, name)
        if record.standby is not None:
            lags += [f.lag_operations or 0 for f in record.standby.followers]
        await asyncio.sleep(0.5)
    stop.set()
    written = await writing
    elapsed = time.monotonic() - started
    events = (await monitor_status(sandbox.client, name)).history_length - start_events
    per_hour = events * 3600 / elapsed
    print(
        f"quiet: {written} catalogue writes in {elapsed:.0f} s; the monitor's record showed "
        f"the standby {statistics.median(lags):g} operations behind at p50, {max(lags)} at most "
        f"({len(lags)} samples); history grew by {events} events ({per_hour:.1f} per hour)"
    )
    return {"per_hour": per_hour, "lag_p50": statistics.median(lags), "lag_max": max(lags)}


async def one_failover(sandbox: Sandbox) -> tuple[FailoverResult, float]:
    """One failover of a dead primary, and its RTO; then back to the primary."""
    assert sandbox.client is not None and sandbox.config is not None and sandbox.fleet
    cluster = sandbox.config.clusters[0]
    primary = sandbox.fleet.clusters[PRIMARY_SIM]
    fault_at = datetime.now(UTC)
    primary.set_fault(None, NodeFault(FaultMode.DOWN))
    await primary.settle()
    handle = await start_or_attach_failover(
        sandbox.client, cluster, task_queue=sandbox.config.task_queue, reason="bench"
    )
    result = await handle.result()
    verified = decisions.verified_at(result)
    rto = (verified - fault_at).total_seconds() if verified else float("nan")
    print(
        f"failover: {result.result.value}; preflight {step_seconds(result, 'preflight'):.3f} s, "
        f"promote {step_seconds(result, 'promote'):.3f} s, verify_writes "
        f"{step_seconds(result, 'verify_writes'):.3f} s, RTO {rto:.3f} s"
    )
    # Back: the primary re-seeded from the promoted standby, then failed back.
    primary.set_fault(None, NodeFault(FaultMode.HEALTHY))
    await primary.settle()
    reseed = await start_reseed(
        sandbox.client, cluster, task_queue=sandbox.config.task_queue, reason="bench", identity=""
    )
    assert (await reseed.result()).result == "reseeded"
    back = await start_failback(
        sandbox.client, cluster, task_queue=sandbox.config.task_queue, reason="bench"
    )
    back_result = await back.result()
    assert back_result.result == Outcome.FAILED_OVER, back_result.reason
    return result, rto


async def main(window: float, runs: int, per_second: float) -> None:
    sandbox = Sandbox(
        Path(tempfile.mkdtemp(prefix="bench-standby-data-")), probe_interval=1.0, replication=True
    )
    await sandbox.start()
    try:
        assert sandbox.client is not None and sandbox.config is not None
        cluster = sandbox.config.clusters[0]
        await monitor_watching(
            sandbox.client, cluster.name, cluster.monitor.vantages(sandbox.config.task_queue)
        )
        quiet = await quiet_phase(sandbox, window, per_second)
        await pause_monitor(sandbox.client, cluster.name, reason="bench", identity="bench")
        runs_done = [await one_failover(sandbox) for _ in range(runs)]
    finally:
        await sandbox.stop()
    results = [result for result, _ in runs_done]
    preflight = statistics.median(step_seconds(r, "preflight") for r in results)
    promote = statistics.median(step_seconds(r, "promote") for r in results)
    writes = statistics.median(step_seconds(r, "verify_writes") for r in results)
    rto = statistics.median(seconds for _, seconds in runs_done)
    print(f"history_events_per_cluster_hour={quiet['per_hour']:.1f}")
    print(f"lag_operations_p50={quiet['lag_p50']:g}")
    print(f"lag_operations_max={quiet['lag_max']:g}")
    print(f"preflight_seconds_p50={preflight:.3f}")
    print(f"promote_seconds_p50={promote:.3f}")
    print(f"verify_writes_seconds_p50={writes:.3f}")
    print(f"rto_seconds_p50={rto:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writes-per-second", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.window, args.runs, args.writes_per_second))
    exit_now(0)
