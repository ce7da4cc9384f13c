"""The Region switch on the two-Region sandbox: its RTO, step by step.

Alternates `--runs` planned graceful switches (primary → DR, DR → primary; the Region left
is scaled back to its pilot light before the next run, so every run scales), then one
outage: the primary Region impaired, the ungraceful failover approved as soon as it asks.
Prints each run's steps and, per kind, the p50 of each step and of the RTO (start → result;
for the outage, fault → result, with the approval wait shown apart).

    .venv/bin/python bench/region_switch.py [--runs 4]

Ends with `planned_rto_seconds_p50=`, `outage_rto_seconds=`, `outage_approval_wait_seconds=`
and `outage_data_loss_window_seconds=` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from failover import names
from failover.client.operations import UpdateRefused, send_update
from failover.client.region import region_switch_request, start_region_switch
from failover.config import AppConfig, RegionSite
from failover.models import OperatorRequest, Outcome, RegionSwitchResult
from failover.process import exit_now
from sandbox.stack import Sandbox
from sandbox.waiting import wait_for


async def pilot_light(sandbox: Sandbox, site: RegionSite) -> None:
    """The Region left behind goes back to one instance, as a pilot light would."""
    assert sandbox.regions is not None
    client = sandbox.regions.aws("autoscaling", site.region)
    await asyncio.to_thread(
        client.update_auto_scaling_group,
        AutoScalingGroupName=site.auto_scaling_group,
        DesiredCapacity=1,
        MinSize=1,
    )


async def switch(sandbox: Sandbox, config: AppConfig, **fields: object) -> RegionSwitchResult:
    assert sandbox.client is not None
    request = region_switch_request(config, "shop", **fields)  # type: ignore[arg-type]
    handle = await start_region_switch(sandbox.client, request, task_queue=config.task_queue)
    return await handle.result()


def show(label: str, result: RegionSwitchResult, seconds: float) -> None:
    steps = " ".join(f"{s.name}={s.seconds:.2f}" for s in result.steps)
    print(f"{label}: {result.result.value} {seconds:.2f}s; {steps}", flush=True)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-region-") as tmp:
        sandbox = Sandbox(Path(tmp), regions=True, monitors=False)
        await sandbox.start()
        try:
            await bench(sandbox, runs)
        finally:
            await sandbox.stop()


async def bench(sandbox: Sandbox, runs: int) -> None:
    assert sandbox.config is not None and sandbox.regions is not None and sandbox.client
    config, regions = sandbox.config, sandbox.regions
    shop = config.storefront("shop")
    steps: dict[str, list[float]] = defaultdict(list)
    rtos: list[float] = []
    for run in range(runs):
        to = "dr" if run % 2 == 0 else "primary"
        started = time.monotonic()
        result = await switch(sandbox, config, planned=True, to_region=to, reason="bench")
        seconds = time.monotonic() - started
        show(f"planned {run + 1} → {to}", result, seconds)
        if result.result != Outcome.FAILED_OVER:
            raise SystemExit(f"planned run {run + 1}: {result.reason}")
        rtos.append(result.rto_seconds)
        for step in result.steps:
            steps[step.name].append(step.seconds)
        await pilot_light(sandbox, shop.site("primary" if to == "dr" else "dr"))
    if runs % 2:  # back to the primary before the outage
        back = await switch(sandbox, config, planned=True, to_region="primary", reason="bench")
        assert back.result == Outcome.FAILED_OVER, back.reason
        await pilot_light(sandbox, shop.dr)
    print("planned switch, p50 per step:")
    for name, values in steps.items():
        print(f"  {name:<16} {statistics.median(values):6.2f}s  (n={len(values)})")

    await regions.impair_primary_region()
    fault_at = time.monotonic()
    request = region_switch_request(config, "shop", reason="bench: us-east-1 impaired")
    handle = await start_region_switch(sandbox.client, request, task_queue=config.task_queue)
    asked_at: list[float] = []

    async def approve() -> bool:
        try:
            await send_update(handle, names.APPROVE_UPDATE, OperatorRequest(identity="bench"))
        except UpdateRefused:
            return False
        asked_at.append(time.monotonic())
        return True

    await wait_for(approve, what="the approval to be asked for", timeout_s=60)
    outage = await handle.result()
    outage_rto = time.monotonic() - fault_at
    show("outage (ungraceful)", outage, outage_rto)
    await regions.restore_primary_region()
    if outage.result != Outcome.FAILED_OVER:
        raise SystemExit(f"outage run: {outage.reason}")
    waited = next(s.seconds for s in outage.steps if s.name == "awaiting_approval")
    print(f"planned_rto_seconds_p50={statistics.median(rtos):.2f}")
    print(f"outage_rto_seconds={outage_rto:.2f}")
    print(f"outage_approval_wait_seconds={waited:.2f}")
    print(f"outage_data_loss_window_seconds={outage.data_loss_window_seconds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="planned switches (alternating)")
    args = parser.parse_args()
    asyncio.run(main(args.runs))
    exit_now(0)
