"""Verification through the user's own path: the switched name or load balancer, then the
storefront itself. A failover that AWS accepted but customers cannot see is not done.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dns.asyncresolver
import dns.exception
import httpx
from temporalio import activity

from activities.search_probe import http_auth, probe_node, tls_verify
from failover import decisions, names
from failover.config import StorefrontCheck
from failover.models import (
    AppHealthRequest,
    CartRequest,
    CheckResult,
    ResolvedProbe,
    SearchPathRequest,
    StorefrontLoopInput,
    StorefrontRequest,
    StorefrontTally,
    SwitchEndpoint,
    SwitchTargetProbe,
    SwitchTargetRequest,
)

STOREFRONT_QUERY = "{ products(search: %s, pageSize: 1) { total_count items { sku } } }"
# A guest cart: the cheapest write a shopper makes, and one a read-only database refuses.
CART_MUTATION = "mutation { createEmptyCart }"


async def resolve_all(host: str, nameserver: str | None, timeout_s: float) -> list[str]:
    """Every address Magento could connect to, following CNAMEs through the given server;
    an address is its own answer."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    resolver = dns.asyncresolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        ns_host, _, ns_port = nameserver.rpartition(":")
        resolver.nameservers = [ns_host]
        resolver.port = int(ns_port)
    resolver.lifetime = timeout_s
    answer = await resolver.resolve(host, "A")
    return [str(rdata) for rdata in answer]


class VerifyActivities:
    """Checks that search answers through the switched path and the storefront recovered."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport

    @activity.defn(name="check_search_path")
    async def check_search_path(self, request: SearchPathRequest) -> CheckResult:
        check = request.check
        url = httpx.URL(str(check.url))
        address = url.host
        if check.nameserver is not None:
            try:
                resolved = await resolve_all(url.host, check.nameserver, check.timeout_seconds)
                address = resolved[0]  # the one Magento's client would take first
            except (dns.exception.DNSException, OSError) as exc:
                return CheckResult(
                    name="search_path",
                    problem=f"search path failed: cannot resolve {url.host}: {exc}",
                )
        target = url.copy_with(host=address)
        async with httpx.AsyncClient(
            auth=http_auth(request.side),
            verify=tls_verify(request.side.tls),
            timeout=check.timeout_seconds,
            transport=self.transport,
            headers={"host": url.netloc.decode()},
        ) as client:
            probe = await probe_node(client, str(target), check.timeout_seconds)
        problem = decisions.node_problem(
            probe,
            expected_cluster_name=request.side.expected_cluster_name,
            expected_cluster_uuid=request.side.expected_cluster_uuid,
            yellow_policy=request.yellow_policy,
        )
        return CheckResult(
            name="search_path",
            problem=f"search path failed: {url.host} ({address}) {problem}" if problem else None,
            detail=f"{url.host} → {address}: cluster_name {probe.cluster_name}, "
            f"status {probe.health_status}",
        )

    @activity.defn(name="probe_switch_target")
    async def probe_switch_target(self, request: SwitchTargetRequest) -> SwitchTargetProbe:
        """Before the switch: resolve what it will point at and ask who answers there.

        The node URLs in the config may be fine while the name traffic follows resolves
        elsewhere (a DNS mix-up, a restored staging cluster). A name that cannot be resolved
        is data, not an error: the workflow's decision refuses the switch.
        """
        async with httpx.AsyncClient(
            auth=http_auth(request.side),
            verify=tls_verify(request.side.tls),
            timeout=request.timeout_seconds,
            transport=self.transport,
            headers={"host": request.host_header} if request.host_header else None,
        ) as client:
            targets = await asyncio.gather(
                *(self._probe_endpoint(client, request, e) for e in request.endpoints)
            )
        return SwitchTargetProbe(targets=list(targets))

    async def _probe_endpoint(
        self, client: httpx.AsyncClient, request: SwitchTargetRequest, endpoint: SwitchEndpoint
    ) -> ResolvedProbe:
        name, timeout = endpoint.name, request.timeout_seconds
        try:
            addresses = await resolve_all(name, request.nameserver, timeout)
        except (dns.exception.DNSException, OSError) as exc:
            return ResolvedProbe(name=name, error=f"{type(exc).__name__}: {exc}")
        nodes = await asyncio.gather(
            *(
                probe_node(client, _url(request.scheme, address, endpoint.port), timeout)
                for address in addresses
            )
        )
        return ResolvedProbe(name=name, addresses=addresses, nodes=list(nodes))

    @activity.defn(name="check_storefront")
    async def check_storefront(self, request: StorefrontRequest) -> CheckResult:
        check = request.check
        query = STOREFRONT_QUERY % json.dumps(check.search_term)
        target = await _storefront_target(check)
        if target.problem is not None:
            return CheckResult(name="storefront", problem=f"storefront failed: {target.problem}")
        base = target.base
        async with httpx.AsyncClient(
            timeout=check.timeout_seconds, transport=self.transport, headers=target.headers
        ) as client:
            try:
                search, category = await asyncio.gather(
                    client.post(
                        base + check.graphql_path,
                        json={"query": query},
                        extensions=target.extensions,
                    ),
                    client.get(base + check.category_path, extensions=target.extensions)
                    if check.category_path
                    else _none(),
                )
            except httpx.HTTPError as exc:
                return CheckResult(
                    name="storefront",
                    problem=f"storefront failed: {target.shown} unreachable: "
                    f"{type(exc).__name__}: {exc}",
                )
        problem = decisions.storefront_problem(
            search_status=search.status_code,
            search_body=_json(search),
            category_status=category.status_code if category is not None else None,
            category_body=category.text if category is not None else None,
            broken_marker=check.broken_marker,
        )
        return CheckResult(
            name="storefront",
            problem=problem,
            detail=f"search {check.search_term!r}: HTTP {search.status_code}{target.via}",
        )

    @activity.defn(name="check_app_health")
    async def check_app_health(self, request: AppHealthRequest) -> CheckResult:
        """Magento's health check through one Region's load balancer, before www moves there."""
        url = request.url.rstrip("/") + request.path
        headers = {"host": request.host_header} if request.host_header else None
        async with httpx.AsyncClient(
            timeout=request.timeout_seconds, transport=self.transport, headers=headers
        ) as client:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                problem = decisions.app_health_problem(
                    url=url, status=None, error=f"{type(exc).__name__}: {exc}"
                )
                return CheckResult(name="app_health", problem=problem)
        return CheckResult(
            name="app_health",
            problem=decisions.app_health_problem(url=url, status=response.status_code),
            detail=f"{url}: HTTP {response.status_code}",
        )

    @activity.defn(name="check_cart")
    async def check_cart(self, request: CartRequest) -> CheckResult:
        """A guest cart through the storefront: proof that its database takes writes here."""
        check = request.check
        target = await _storefront_target(check)
        if target.problem is not None:
            return CheckResult(name="cart", problem=f"{decisions.CART_FAILED}: {target.problem}")
        async with httpx.AsyncClient(
            timeout=check.timeout_seconds, transport=self.transport, headers=target.headers
        ) as client:
            try:
                response = await client.post(
                    target.base + check.graphql_path,
                    json={"query": CART_MUTATION},
                    extensions=target.extensions,
                )
            except httpx.HTTPError as exc:
                return CheckResult(
                    name="cart",
                    problem=f"{decisions.CART_FAILED}: {target.shown} unreachable: "
                    f"{type(exc).__name__}: {exc}",
                )
        body = _json(response)
        cart = decisions.created_cart(body)
        return CheckResult(
            name="cart",
            problem=decisions.cart_problem(status=response.status_code, body=body),
            detail=f"cart {cart}{target.via}" if cart else f"HTTP {response.status_code}",
        )

    @activity.defn(name=names.STOREFRONT_PROBE_LOOP_ACTIVITY)
    async def storefront_probe_loop(self, request: StorefrontLoopInput) -> StorefrontTally:
        """Searches the storefront every interval until cancelled, then returns the counts.

        A drill runs it from its switch to its failback: the failed requests are what
        shoppers would have seen. The counts ride on every heartbeat, so a retry after a
        worker crash goes on counting from them.
        """
        details = activity.info().heartbeat_details
        tally = StorefrontTally.model_validate(details[0]) if details else StorefrontTally()
        check = StorefrontRequest(check=request.check)
        try:
            while True:
                result = await self.check_storefront(check)
                tally.total += 1
                if result.problem is not None:
                    now = datetime.now(UTC)
                    tally.failed += 1
                    tally.first_failure_at = tally.first_failure_at or now
                    tally.last_failure_at = now
                    tally.problems = [*tally.problems, result.problem][-5:]
                activity.heartbeat(tally.model_dump(mode="json"))
                await asyncio.sleep(request.interval_seconds)
        except asyncio.CancelledError:
            return tally


@dataclass(frozen=True)
class _Target:
    """Where a storefront check connects, and what it tells the server it asked for."""

    base: str  # scheme://address:port, no trailing slash
    shown: str  # the url as configured, for messages
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    via: str = ""  # " (www.example.com → 10.0.0.1)" when resolved
    problem: str | None = None


async def _storefront_target(check: StorefrontCheck) -> _Target:
    """The url's host resolved through `nameserver` as customers would resolve it (connecting
    to the first address, the original host as Host and TLS name); `host_header` sent as Host."""
    url = httpx.URL(str(check.url))
    shown = str(url).rstrip("/")
    headers = {"host": check.host_header} if check.host_header else {}
    if check.nameserver is None:
        return _Target(base=shown, shown=shown, headers=headers)
    try:
        addresses = await resolve_all(url.host, check.nameserver, check.timeout_seconds)
    except (dns.exception.DNSException, OSError) as exc:
        return _Target(
            base=shown,
            shown=shown,
            problem=f"cannot resolve {url.host} through {check.nameserver}: {exc}",
        )
    address = addresses[0]
    headers.setdefault("host", url.netloc.decode())
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return _Target(
        base=str(url.copy_with(host=address)).rstrip("/"),
        shown=shown,
        headers=headers,
        extensions=extensions,
        via=f" ({url.host} → {address})",
    )


def _url(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}/"


async def _none() -> None:
    return None


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
