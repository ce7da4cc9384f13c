"""The demo: a real failover on the local stack, start to finish, with its timeline.

It starts the sandbox, waits until the cluster's monitor is watching from every vantage
point and the storefront works, kills every node of the primary cluster, lets a
customer's visit cache a broken category page (as Magento does), and then does nothing:
the monitor detects the outage and starts the failover by itself. The demo watches the
storefront through Varnish until searches return products again. The record or targets
are read back from moto itself, not taken from the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from failover import decisions, visibility
from failover.client.operations import watch_progress
from failover.models import FailoverResult, Outcome
from failover.names import failover_workflow_id
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, Sandbox
from sandbox.waiting import wait_for

SEARCH_QUERY = '{ products(search: "bag", pageSize: 1) { total_count items { sku } } }'
BROKEN_MARKER = "We can't find products matching the selection."
PROBE_EVERY_SECONDS = 0.1
PROBE_DEADLINE_SECONDS = 120.0
RECOVERY_GRACE_SECONDS = 30.0  # after the failover ends, how long to wait for the storefront
DETECTION_DEADLINE_SECONDS = 60.0


async def monitor_watching(client: Client, cluster: str, vantages: list[str]) -> None:
    """Steady state: every vantage point has probed a few rounds and sees the primary up."""

    async def watching() -> bool:
        try:
            progress = await watch_progress(client, cluster)
        except RPCError:
            return False
        return all(
            v in progress and progress[v].rounds >= 2 and progress[v].primary == "healthy"
            for v in vantages
        )

    await wait_for(watching, what="the monitor to watch from every vantage point", timeout_s=30)


async def failover_started_by_monitor(
    client: Client, cluster: str
) -> WorkflowHandle[object, FailoverResult]:
    """The failover run the monitor starts, once it exists."""
    handle = client.get_workflow_handle(failover_workflow_id(cluster), result_type=FailoverResult)

    async def exists() -> bool:
        try:
            await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    await wait_for(
        exists, what="the monitor to start the failover", timeout_s=DETECTION_DEADLINE_SECONDS
    )
    return handle


def rto_seconds(fault_at: datetime, result: FailoverResult) -> float | None:
    """Fault to verified switch; None for a run that did not verify (rolled back, …)."""
    verified = decisions.verified_at(result)
    if verified is None:
        return None
    return round((verified - fault_at).total_seconds(), 3)


async def storefront_search_works(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.post(f"{url}/graphql", json={"query": SEARCH_QUERY})
        products = (response.json().get("data") or {}).get("products") or {}
    except (httpx.HTTPError, ValueError):
        return False
    return response.status_code == 200 and bool(products.get("total_count"))


@dataclass
class StorefrontWatch:
    """A light loop of storefront searches, as customers would make during the outage."""

    url: str
    ok: int = 0
    failed: int = 0
    first_success_after_fault: float | None = None
    recovered: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, client: httpx.AsyncClient, fault_at_monotonic: float) -> None:
        deadline = time.monotonic() + PROBE_DEADLINE_SECONDS
        while time.monotonic() < deadline and not self.recovered.is_set():
            if await storefront_search_works(client, self.url):
                self.ok += 1
                self.first_success_after_fault = time.monotonic() - fault_at_monotonic
                self.recovered.set()
            else:
                self.failed += 1
            await asyncio.sleep(PROBE_EVERY_SECONDS)


async def run_demo(sandbox: Sandbox) -> dict[str, Any]:
    """Kills the primary of a started sandbox, fails over, and reports the timeline."""
    assert sandbox.fleet and sandbox.config and sandbox.client and sandbox.info
    cluster = sandbox.config.clusters[0]
    url = sandbox.storefront_url
    vantages = cluster.monitor.vantages(sandbox.config.task_queue)
    await monitor_watching(sandbox.client, cluster.name, vantages)
    async with httpx.AsyncClient(timeout=5) as http:
        if not await storefront_search_works(http, url):
            raise RuntimeError("steady state not met: the storefront search fails before the fault")

        fault_at = datetime.now(UTC)
        fault_at_monotonic = time.monotonic()
        sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
        await sandbox.fleet.clusters[PRIMARY_SIM].settle()

        # Customers open the category page during the outage: Magento renders it without
        # products and caches it, and Varnish serves that copy to the next one.
        first = await http.get(f"{url}/women.html")
        second = await http.get(f"{url}/women.html")
        poisoned = BROKEN_MARKER in first.text and BROKEN_MARKER in second.text
        poisoned_hit = second.headers.get("X-Magento-Cache-Debug") == "HIT"
        watch = StorefrontWatch(url)
        watching = asyncio.create_task(watch.run(http, fault_at_monotonic))

        handle = await failover_started_by_monitor(sandbox.client, cluster.name)
        result = await handle.result()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.recovered.wait(), RECOVERY_GRACE_SECONDS)
        watching.cancel()
        category_after = await http.get(f"{url}/women.html")

    workflow_id = failover_workflow_id(cluster.name)
    description = await handle.describe()
    ours = {key.name for key in visibility.KEYS}
    attributes = {
        pair.key.name: pair.value
        for pair in description.typed_search_attributes.search_attributes
        if pair.key.name in ours
    }
    started_at, result_run_id = description.start_time, description.run_id
    if sandbox.mode == "nlb":
        after = await asyncio.to_thread(sandbox.registered_targets)
    else:
        after = await asyncio.to_thread(sandbox.read_record_values)
    recovered = watch.first_success_after_fault
    return {
        "result": result.result.value,
        "mode": sandbox.mode,
        "cluster": result.cluster,
        "from": result.from_side,
        "to": result.to_side,
        "from_value": result.from_value,
        "to_value": result.to_value,
        "switched_after": after,
        "reason": result.reason,
        "trigger": result.trigger,
        "fault_injected_at": fault_at.isoformat(),
        "detection_seconds": round(started_at.timestamp() - fault_at.timestamp(), 3),
        "vantage_points": vantages,
        "rto_seconds": rto_seconds(fault_at, result),
        "storefront_recovered_seconds": round(recovered, 3) if recovered is not None else None,
        "storefront_requests": {"ok": watch.ok, "failed": watch.failed},
        "poisoned_page_cached_during_outage": poisoned,
        "poisoned_page_served_by_varnish": poisoned and poisoned_hit,
        "category_page_fixed_after": BROKEN_MARKER not in category_after.text,
        "flushed": [f.model_dump() for f in result.flushed],
        "warnings": result.warnings,
        "workflow_seconds": round(result.seconds, 3),
        "steps": [
            {"name": s.name, "seconds": round(s.seconds, 3), "outcome": s.outcome}
            for s in result.steps
        ],
        "workflow_id": workflow_id,
        "search_attributes": attributes,
        "run_id": result_run_id,
        "ui_url": sandbox.info.temporal.workflow_url(workflow_id, result_run_id),
        "state_dir": str(sandbox.directory),
    }


def demo_succeeded(report: dict[str, Any]) -> bool:
    return (
        report["result"] == Outcome.FAILED_OVER.value
        and report["trigger"] == "monitor"
        and report["storefront_recovered_seconds"] is not None
        and report["category_page_fixed_after"]
    )


DRILL_HOLD_SECONDS = 3.0


async def run_drill_demo(sandbox: Sandbox) -> dict[str, Any]:
    """One whole drill on a started sandbox: switch to the standby, hold, fail back."""
    from failover.client.operations import start_drill

    assert sandbox.config and sandbox.client and sandbox.info
    cluster = sandbox.config.clusters[0]
    await monitor_watching(
        sandbox.client, cluster.name, cluster.monitor.vantages(sandbox.config.task_queue)
    )
    handle = await start_drill(
        sandbox.client,
        cluster,
        task_queue=sandbox.config.task_queue,
        hold_seconds=DRILL_HOLD_SECONDS,
        reason="failover demo --drill",
    )
    report = await handle.result()
    return {
        **report.model_dump(mode="json"),
        "record_after": await asyncio.to_thread(sandbox.read_record_values)
        if sandbox.mode == "dns"
        else await asyncio.to_thread(sandbox.registered_targets),
        "ui_url": sandbox.info.temporal.workflow_url(handle.id),
        "state_dir": str(sandbox.directory),
    }
