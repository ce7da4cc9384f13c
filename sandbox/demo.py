"""The demos: a real failover on the local stack, start to finish, with its timeline.

`run_demo` (the search cluster): it starts the sandbox, waits until the cluster's monitor
is watching from every vantage point and the storefront works, kills every node of the
primary cluster, lets a customer's visit cache a broken category page (as Magento does), and
then does nothing: the monitor detects the outage and starts the failover by itself. The
demo watches the storefront through Varnish until searches return products again. The
record or targets are read back from moto itself, not taken from the result.

`run_region_demo` (the whole storefront): customers use www, a dry run of the switch finds
the DR Region ready, the primary Region dies (app, search, database writer), an unplanned
Region switch confirms it, waits for an operator's approval of the ungraceful database
failover (the demo gives it) and moves the storefront to the DR Region. www, the writer and
a cart are read back from outside; the customers' own count of failed requests is the
outage they saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from failover import decisions, names, visibility
from failover.client.operations import UpdateRefused, send_update, watch_progress
from failover.client.region import region_status, region_switch_request, start_region_switch
from failover.models import FailoverResult, OperatorRequest, Outcome, RegionSwitchResult
from failover.names import failover_workflow_id
from sandbox.regions import GLOBAL_CLUSTER_ID, PRIMARY_REGION, STOREFRONT_NAME, TwoRegions
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, Sandbox
from sandbox.storefront import MASKED_CART_ID_LENGTH, REGION_HEADER
from sandbox.waiting import wait_for

log = logging.getLogger(__name__)

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
    client: Client, cluster: str, since: datetime | None = None
) -> WorkflowHandle[object, FailoverResult]:
    """The failover run the monitor starts, once it exists. With `since` (the fault), only
    a run started after it: on a sandbox that failed over and back before, the cluster's
    last run is the failback. The handle is pinned to that run."""
    workflow_id = failover_workflow_id(cluster)
    handle = client.get_workflow_handle(workflow_id, result_type=FailoverResult)
    run_ids: list[str] = []

    async def exists() -> bool:
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        if since is not None and description.start_time < since:
            return False
        run_ids.append(description.run_id)
        return True

    await wait_for(
        exists, what="the monitor to start the failover", timeout_s=DETECTION_DEADLINE_SECONDS
    )
    return client.get_workflow_handle(workflow_id, run_id=run_ids[-1], result_type=FailoverResult)


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

        handle = await failover_started_by_monitor(sandbox.client, cluster.name, fault_at)
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
            {
                "name": s.name,
                "seconds": round(s.seconds, 3),
                "outcome": s.outcome,
                "detail": s.detail,
            }
            for s in result.steps
        ],
        "standby_data": _standby_data(result),
        "workflow_id": workflow_id,
        "search_attributes": attributes,
        "run_id": result_run_id,
        "ui_url": sandbox.info.temporal.workflow_url(workflow_id, result_run_id),
        "state_dir": str(sandbox.directory),
    }


def _standby_data(result: FailoverResult) -> dict[str, Any]:
    """What preflight found of the standby's indices (aliases, lag) and what promotion did."""
    preflight = next((s for s in result.steps if s.name == "preflight"), None)
    promote = next((s for s in result.steps if s.name == "promote"), None)
    return {
        "readiness": result.readiness,
        "preflight": preflight.outcome if preflight else None,
        "accepted_stale": result.accepted_stale,
        "promoted": result.promotion.promoted if result.promotion else [],
        "promote_seconds": round(promote.seconds, 3) if promote else None,
        "write_problem": result.promotion.write_problem if result.promotion else None,
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


# --------------------------------------------------------------------------- Region demo

CART_MUTATION = "mutation { createEmptyCart }"
CUSTOMER_TIMEOUT_SECONDS = 2.0
CUSTOMER_DNS_LIFETIME_SECONDS = 2.0
SERVED_DEADLINE_SECONDS = 15.0
STEADY_ROUNDS = 3  # good customer rounds before the fault: the storefront serves as usual
SERVING_ROUNDS = 5  # good rounds in a row after the result: customers are served again
APPROVAL_DEADLINE_SECONDS = 60.0
STATUS_EVERY_SECONDS = 0.25
REGION_RESULT_DEADLINE_SECONDS = 120.0
DEMO_IDENTITY = "demo"
APPROVAL_REASON = (
    "failover demo --region: the primary Region is down from every vantage point and the DR "
    "Region passed its preflight; a small data-loss window beats a longer outage"
)


@dataclass(frozen=True)
class Visit:
    """One customer request: when it was sent (monotonic), and what went wrong, if anything."""

    at: float
    kind: str  # search or cart
    problem: str | None
    region: str | None  # the Region whose app server answered


@dataclass
class WwwCustomers:
    """Customers on www during the switch: every 0.1 s one searches and creates a cart, at
    the address www resolves to through the sandbox's DNS server, cached as a customer's
    resolver caches it: for the answer's TTL (1 s for www), not a moment longer."""

    www_url: str
    nameserver: str
    rounds: list[list[Visit]] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    resolver: dns.asyncresolver.Resolver = field(init=False)

    def __post_init__(self) -> None:
        host, _, port = self.nameserver.rpartition(":")
        self.resolver = dns.asyncresolver.Resolver(configure=False)
        self.resolver.nameservers, self.resolver.port = [host], int(port)
        self.resolver.lifetime = CUSTOMER_DNS_LIFETIME_SECONDS
        self.resolver.cache = dns.resolver.Cache()

    async def run(self, http: httpx.AsyncClient) -> None:
        """A round every 0.1 s, or as soon as the last one ended if it took longer."""
        while not self.stopped.is_set():
            started = time.monotonic()
            self.rounds.append(await self.visit(http))
            pause = PROBE_EVERY_SECONDS - (time.monotonic() - started)
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopped.wait(), pause)

    async def visit(self, http: httpx.AsyncClient) -> list[Visit]:
        """One customer's search and cart, both to the address www resolves to now."""
        www = httpx.URL(self.www_url)
        at = time.monotonic()
        try:
            answer = await self.resolver.resolve(www.host, "A", search=False)
        except dns.exception.DNSException as exc:
            problem = f"dns: {type(exc).__name__}"
            return [Visit(at, kind, problem, None) for kind in ("search", "cart")]
        base = f"http://{answer[0].address}:{www.port}"
        headers = {"Host": www.netloc.decode()}
        return list(
            await asyncio.gather(
                _customer_request(http, base, headers, "search", at),
                _customer_request(http, base, headers, "cart", at),
            )
        )

    def good_rounds_since(self, since: float) -> int:
        """Good rounds in a row at the end, counting only those sent after `since`."""
        count = 0
        for visits in reversed(self.rounds):
            if visits[0].at < since or any(v.problem for v in visits):
                break
            count += 1
        return count

    def summary(self, fault_at: float) -> dict[str, Any]:
        """What customers saw from the fault on; times in seconds after the fault."""
        rounds = [r for r in self.rounds if r[0].at >= fault_at]
        visits = [v for r in rounds for v in r]
        failed = [v for v in visits if v.problem]
        first = min((v.at for v in failed), default=None)
        last = max((v.at for v in failed), default=None)
        if last is None:
            serving_at: float | None = fault_at if rounds else None
        else:
            serving_at = next(
                (r[0].at for r in rounds if r[0].at > last and not any(v.problem for v in r)),
                None,
            )
        problems: dict[str, int] = {}
        for visit in failed:
            key = f"{visit.kind}: {visit.problem}"
            problems[key] = problems.get(key, 0) + 1
        served: dict[str, int] = {}
        for visit in visits:
            if visit.problem is None and visit.region:
                served[visit.region] = served.get(visit.region, 0) + 1

        def after_fault(moment: float | None) -> float | None:
            return None if moment is None else round(moment - fault_at, 3)

        outage = None if first is None or serving_at is None else round(serving_at - first, 3)
        spread = rounds[-1][0].at - rounds[0][0].at if len(rounds) > 1 else 0.0
        return {
            "rounds": len(rounds),
            "mean_round_seconds": round(spread / (len(rounds) - 1), 3) if spread else None,
            "total": len(visits),
            "failed": len(failed),
            "failed_searches": sum(1 for v in failed if v.kind == "search"),
            "failed_carts": sum(1 for v in failed if v.kind == "cart"),
            "first_failure_seconds": after_fault(first),
            "last_failure_seconds": after_fault(last),
            "serving_again_seconds": after_fault(serving_at),
            "outage_seen_seconds": outage if failed else 0.0,
            "failures": dict(sorted(problems.items(), key=lambda kv: -kv[1])),
            "served_by_region": served,
        }


async def _customer_request(
    http: httpx.AsyncClient, base: str, headers: dict[str, str], kind: str, at: float
) -> Visit:
    query = SEARCH_QUERY if kind == "search" else CART_MUTATION
    try:
        response = await http.post(f"{base}/graphql", json={"query": query}, headers=headers)
    except httpx.TimeoutException:
        return Visit(at, kind, "timeout", None)
    except httpx.HTTPError as exc:
        return Visit(at, kind, type(exc).__name__, None)
    region = response.headers.get(REGION_HEADER)
    return Visit(at, kind, _answer_problem(kind, response), region)


def _answer_problem(kind: str, response: httpx.Response) -> str | None:
    """None when the customer got what they asked for: products, or a new cart's id."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    if body.get("errors"):
        return f"error: {str(body['errors'][0].get('message', ''))[:80]}"
    data = body.get("data") or {}
    if kind == "search":
        return None if (data.get("products") or {}).get("total_count") else "no products"
    cart = data.get("createEmptyCart")
    return None if isinstance(cart, str) and len(cart) == MASKED_CART_ID_LENGTH else "no cart id"


async def _served_in(regions: TwoRegions, http: httpx.AsyncClient, region: str) -> dict[str, Any]:
    """New customers (nothing cached) until one's search and cart through www are answered
    by `region`, or the deadline: the steady-state and after-switch checks. Returns the
    last customer's visit and how many it took."""
    last: dict[str, Any] = {"attempts": 0}

    async def served() -> bool:
        visits = await WwwCustomers(regions.www_url, regions.nameserver).visit(http)
        last.update(
            ok=not any(v.problem for v in visits),
            regions=sorted({v.region for v in visits if v.region}),
            problems=[f"{v.kind}: {v.problem}" for v in visits if v.problem],
            attempts=last["attempts"] + 1,
        )
        return bool(last["ok"]) and last["regions"] == [region]

    with contextlib.suppress(AssertionError):
        await wait_for(
            served, what=f"a customer served by {region}", timeout_s=SERVED_DEADLINE_SECONDS
        )
    return last


@dataclass
class Approval:
    """The operator's side of the ungraceful failover: what the run asked, and when."""

    awaiting: str | None = None
    seen_at: float | None = None  # monotonic: the status first said awaiting_approval
    approved_at: float | None = None
    refused: str | None = None


async def approve_when_asked(
    client: Client, handle: WorkflowHandle[Any, RegionSwitchResult], approval: Approval
) -> None:
    """Wait for the run to ask, then approve it as an operator would (or see it end first).
    Its status is asked every quarter second: each query is a task on the busy worker."""
    last_asked = 0.0

    async def asked_or_done() -> bool:
        nonlocal last_asked
        if time.monotonic() - last_asked < STATUS_EVERY_SECONDS:
            return False
        last_asked = time.monotonic()
        try:
            status = await region_status(client, STOREFRONT_NAME)
        except (RPCError, WorkflowQueryFailedError):  # its first task has not run yet
            return False
        if status.phase == "awaiting_approval":
            approval.awaiting = status.awaiting
            approval.seen_at = time.monotonic()
            return True
        return status.phase == "done"

    await wait_for(
        asked_or_done, what="the switch to ask for approval", timeout_s=APPROVAL_DEADLINE_SECONDS
    )
    if approval.seen_at is None:
        return
    try:
        await send_update(
            handle,
            names.APPROVE_UPDATE,
            OperatorRequest(identity=DEMO_IDENTITY, reason=APPROVAL_REASON),
        )
    except UpdateRefused as refused:
        approval.refused = str(refused)
        return
    approval.approved_at = time.monotonic()


async def run_region_demo(sandbox: Sandbox) -> dict[str, Any]:
    """Kills the primary Region of a started two-Region sandbox, switches the storefront to
    the DR Region with an approved ungraceful failover, and reports what customers saw.
    The primary Region is restored at the end, whatever happened (www stays on DR)."""
    regions = sandbox.regions
    assert regions is not None, "the Region demo needs Sandbox(regions=True)"
    try:
        report = await _region_switch(sandbox, regions)
    finally:
        restored = await _restore(regions)
    report["primary_region_restored"] = restored
    return report


async def _restore(regions: TwoRegions) -> bool:
    """Best effort: a Region that will not come back is reported, and must not hide the
    report (or the error) of the switch itself."""
    try:
        await regions.restore_primary_region()
    except Exception as exc:
        log.warning("could not restore %s: %s", PRIMARY_REGION, exc)
        return False
    return True


async def _region_switch(sandbox: Sandbox, regions: TwoRegions) -> dict[str, Any]:
    assert sandbox.config and sandbox.client and sandbox.info
    config, client = sandbox.config, sandbox.client
    shop = config.storefront(STOREFRONT_NAME)
    www_name = shop.www.record_name
    if sandbox.monitors and sandbox.with_worker:
        cluster = config.clusters[0]
        await monitor_watching(client, cluster.name, cluster.monitor.vantages(config.task_queue))

    # 1. Steady state, each part read from outside: the record in moto, the writer in the
    # simulated Aurora, a search and a cart as a customer makes them.
    www_before = await asyncio.to_thread(sandbox.read_record_values, www_name)
    writer_before = await regions.dr.writer(GLOBAL_CLUSTER_ID)
    customers = WwwCustomers(regions.www_url, regions.nameserver)
    async with httpx.AsyncClient(timeout=CUSTOMER_TIMEOUT_SECONDS, trust_env=False) as http:
        customer_before = await _served_in(regions, http, PRIMARY_REGION)
        problems = []
        if www_before != [shop.www.primary_value]:
            problems.append(f"www is {www_before}, not {shop.www.primary_value}")
        if writer_before != shop.primary.database_cluster_arn:
            problems.append(f"the writer is {writer_before}, not the primary Region's")
        if not customer_before["ok"] or customer_before["regions"] != [PRIMARY_REGION]:
            problems.append(f"a search and a cart through www: {customer_before}")
        if problems:
            raise RuntimeError(f"steady state not met: {'; '.join(problems)}")
        # The operator's check before anything happens, which also leaves the worker's AWS
        # clients made, as in a worker that has been running for a while.
        plan = await _dry_run(sandbox)
        if plan.result != Outcome.PLANNED or plan.plan[-1:] != ["preflight: ok"]:
            raise RuntimeError(f"steady state not met: the dry run says {plan.reason}: {plan.plan}")

        # 2. Customers keep coming through www for the whole switch.
        probing = asyncio.create_task(customers.run(http))
        try:
            started = time.monotonic()
            await wait_for(
                _async(lambda: customers.good_rounds_since(started) >= STEADY_ROUNDS),
                what="customers to be served before the fault",
                timeout_s=SERVED_DEADLINE_SECONDS,
            )
            lag_at_fault = regions.dr.replication_lag(shop.dr.database_cluster_arn)

            # 3. The fault.
            fault_at, fault_mono = datetime.now(UTC), time.monotonic()
            await regions.impair_primary_region()

            # 4. The unplanned switch: it confirms the outage, preflights the DR Region and
            # asks for approval of the ungraceful database failover.
            request = region_switch_request(
                config, STOREFRONT_NAME, reason=f"{PRIMARY_REGION} is down (failover demo)"
            )
            handle = await start_region_switch(client, request, task_queue=config.task_queue)
            approval = Approval()
            async with asyncio.timeout(REGION_RESULT_DEADLINE_SECONDS):
                await approve_when_asked(client, handle, approval)
                result = await handle.result()
            result_seen = time.monotonic()
            await _wait_served(customers, result_seen)
        finally:
            customers.stopped.set()
            await probing

        # 5. Read back from outside, not from the result.
        www_after = await asyncio.to_thread(sandbox.read_record_values, www_name)
        writer_after = await regions.dr.writer(GLOBAL_CLUSTER_ID)
        search_after = await asyncio.to_thread(sandbox.read_record_values)
        customer_after = await _served_in(regions, http, shop.dr.region)

    description = await handle.describe()
    workflow_id, run_id = handle.id, description.run_id
    waited = next((s.seconds for s in result.steps if s.name == "awaiting_approval"), 0.0)
    rto = round((result.finished_at - fault_at).total_seconds(), 3)
    seen = customers.summary(fault_mono)

    def after_fault(moment: float | None) -> float | None:
        return None if moment is None else round(moment - fault_mono, 3)

    return {
        "demo": "region",
        "result": result.result.value,
        "storefront": result.storefront,
        "reason": result.reason,
        "trigger": result.trigger,
        "mode": result.mode,
        "from_region": result.from_region,
        "to_region": result.to_region,
        "regions": {"primary": shop.primary.region, "dr": shop.dr.region},
        "fault": (
            f"{PRIMARY_REGION} impaired: app servers refuse connections, targets unhealthy, "
            f"search cluster {regions.primary.search_cluster} down, Aurora writer unreachable"
        ),
        "fault_injected_at": fault_at.isoformat(),
        "switch_started_seconds": round((description.start_time - fault_at).total_seconds(), 3),
        "rto_seconds": rto,
        "rto_without_approval_seconds": round(rto - waited, 3),
        "storefront_serving_again_seconds": seen["serving_again_seconds"],
        "result_seen_seconds": after_fault(result_seen),
        "approval": {
            "asked": approval.awaiting,
            "seen_waiting_seconds": after_fault(approval.seen_at),
            "approved_seconds": after_fault(approval.approved_at),
            "refused": approval.refused,
            "identity": DEMO_IDENTITY,
            "reason": APPROVAL_REASON,
            "approved_by": result.approved_by,
            "run_waited_seconds": round(waited, 3),
        },
        "data_loss_window_seconds": result.data_loss_window_seconds,
        "replication_lag_at_fault_seconds": lag_at_fault,
        "database_switched": result.database_switched,
        "workflow_seconds": round(result.rto_seconds, 3),
        "steps": [
            {
                "name": s.name,
                "at_seconds": round((s.started_at - fault_at).total_seconds(), 3),
                "seconds": round(s.seconds, 3),
                "outcome": s.outcome,
                "detail": s.detail,
            }
            for s in result.steps
        ],
        "steps_seconds_total": round(sum(s.seconds for s in result.steps), 3),
        "search": None
        if result.search is None
        else {
            "result": result.search.result.value,
            "trigger": result.search.trigger,
            "from": result.search.from_side,
            "to": result.search.to_side,
            "reason": result.search.reason,
            "steps": [s.name for s in result.search.steps],
        },
        "plan": plan.plan,
        "before": {
            "www": www_before,
            "writer": writer_before,
            "customer": customer_before,
        },
        "after": {
            "www": www_after,
            "writer": writer_after,
            "search_record": search_after,
            "customer": customer_after,
        },
        "dr_alb_name": shop.www.standby_value,
        "dr_database_cluster_arn": shop.dr.database_cluster_arn,
        "storefront_requests": seen,
        "flushed": [f.model_dump() for f in result.flushed],
        "warnings": result.warnings,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "ui_url": sandbox.info.temporal.workflow_url(workflow_id, run_id),
        "state_dir": str(sandbox.directory),
    }


async def _dry_run(sandbox: Sandbox) -> RegionSwitchResult:
    """The switch as a dry run: snapshot and preflight of the DR Region, nothing changed."""
    assert sandbox.config and sandbox.client
    request = region_switch_request(
        sandbox.config, STOREFRONT_NAME, reason="failover demo --region: plan", dry_run=True
    )
    handle = await start_region_switch(
        sandbox.client, request, task_queue=sandbox.config.task_queue
    )
    async with asyncio.timeout(REGION_RESULT_DEADLINE_SECONDS):
        return await handle.result()


async def _wait_served(customers: WwwCustomers, since: float) -> None:
    """Until customers are served a few rounds in a row after the result, or the grace ends
    (the report then shows what they saw)."""
    with contextlib.suppress(AssertionError):
        await wait_for(
            _async(lambda: customers.good_rounds_since(since) >= SERVING_ROUNDS),
            what="customers to be served after the switch",
            timeout_s=RECOVERY_GRACE_SECONDS,
        )


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked


def region_demo_succeeded(report: dict[str, Any]) -> bool:
    """Switched and verified, and each of it seen from outside: www on the DR ALB in moto,
    the DR cluster writing, customers served there again."""
    after = report["after"]
    return (
        report["result"] == Outcome.FAILED_OVER.value
        and report["approval"]["approved_by"] == DEMO_IDENTITY
        and after["www"] == [report["dr_alb_name"]]
        and after["writer"] == report["dr_database_cluster_arn"]
        and after["customer"]["ok"]
        and after["customer"]["regions"] == [report["regions"]["dr"]]
        and report["storefront_serving_again_seconds"] is not None
        and report["data_loss_window_seconds"] is not None
        and report["primary_region_restored"]
    )
