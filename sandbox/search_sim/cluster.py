"""One simulated cluster: a real aiohttp server per node, shard allocation from every
node's fault, the routing of requests to the index and replication APIs, and the answers
ES 8.x / OpenSearch 2.x give."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from sandbox.search_sim import index_api
from sandbox.search_sim.cat import render as render_cat
from sandbox.search_sim.catalogue import new_cluster_uuid, version_info, version_tuple
from sandbox.search_sim.errors import ApiError, BadRequest, Dropped, IndexNotFound
from sandbox.search_sim.faults import FaultMode, NodeFault
from sandbox.search_sim.indices import (
    STATUS_RANK,
    HealthOverride,
    Index,
    IndexModel,
    Shards,
)
from sandbox.search_sim.replication import FaultKind, Replication
from sandbox.search_sim.routes import NAME, Ctx, Reply, Route, find, flag

Distribution = Literal["elasticsearch", "opensearch"]

DEFAULT_VERSIONS: dict[str, str] = {"elasticsearch": "8.15.0", "opensearch": "2.17.0"}
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=UTF-8"
ES_BASIC_CHALLENGE = 'Basic realm="security" charset="UTF-8"'
OS_BASIC_CHALLENGE = 'Basic realm="OpenSearch Security"'
# Hung handlers are released at stop(); this only bounds a handler that misbehaves anyway.
SHUTDOWN_TIMEOUT_S = 2.0
_HEALTH_POLL_S = 0.05


# --------------------------------------------------------------------------- shard model


def _allocate(node_count: int, present: set[int], forced: FaultMode | None) -> Shards:
    """Where shard copies live and which are lost, given the present nodes.

    Shard s has its primary on node s and its replica on node s+1, so losing a node
    unassigns two copies (yellow) and losing two neighbours loses a whole shard (red).
    A RED or YELLOW fault makes the answer at least that bad.
    """
    replicas = 1 if node_count > 1 else 0
    copies = [replicas + 1] * node_count
    assigned: list[int] = []
    delayed: list[int] = []
    for shard in range(node_count):
        holders = {(shard + j) % node_count for j in range(replicas + 1)}
        live = len(holders & present)
        assigned.append(live)
        # Replicas unassigned because their node left wait for the node to come back.
        delayed.append(len(holders) - live if live else 0)
    if forced is FaultMode.RED and all(assigned):
        assigned[0] = delayed[0] = 0
    elif forced is FaultMode.YELLOW and assigned == copies:
        if copies[0] > 1:
            assigned[0] -= 1
        else:
            copies[0] += 1  # a single-node cluster asked for a replica it cannot place
    return Shards(tuple(copies), tuple(assigned), tuple(delayed))


# --------------------------------------------------------------------------- parameters


_TIME_UNITS = {
    "nanos": 1e-9,
    "micros": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def _time_param(query: Mapping[str, str], name: str, default: float) -> float:
    """Parse an ES time value ("30s", "500ms", "0", "-1") into seconds."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw in ("0", "-1"):
        return max(0.0, float(raw))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)", raw.strip().lower())
    if not match:
        raise BadRequest(
            "illegal_argument_exception",
            f"failed to parse setting [{name}] with value [{raw}] as a time value: "
            "unit is missing or unrecognized",
        )
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


async def _released_within(event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if the node was stopped or went down meanwhile."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """Cut the TCP connection with no HTTP answer, as a crashed or killed node does."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Never reaches the client: writing to the aborted socket fails and aiohttp drops it.
    return web.Response(status=503)


# --------------------------------------------------------------------------- nodes


@dataclass
class _Node:
    """One node's runtime state: its fault, its server and its listening socket."""

    index: int
    name: str
    host: str
    port: int
    fault: NodeFault = field(default_factory=NodeFault)
    fault_since: float = field(default_factory=time.monotonic)
    runner: web.AppRunner | None = None
    site: web.TCPSite | None = None
    # Set when the node goes down or the cluster stops: wakes hung and sleeping handlers.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def mode_now(self) -> FaultMode:
        """The mode in force right now; FLAPPING resolves to HEALTHY or HTTP_503 by phase."""
        fault = self.fault
        if fault.mode is not FaultMode.FLAPPING:
            return fault.mode
        phase = int((time.monotonic() - self.fault_since) // fault.flap_period_s)
        return FaultMode.HEALTHY if phase % 2 == 0 else FaultMode.HTTP_503

    @property
    def absent(self) -> bool:
        """A node the rest of the cluster cannot see (it left the cluster)."""
        return self.fault.mode in (FaultMode.DOWN, FaultMode.HANG)


@dataclass(frozen=True)
class _View:
    """The cluster as the answering node describes it."""

    cluster_name: str
    cluster_uuid: str
    node_names: tuple[str, ...]
    present: tuple[int, ...]
    master: int | None
    shards: Shards
    forced: FaultMode | None

    @property
    def quorum(self) -> bool:
        return self.master is not None


class SimulatedCluster:
    """One ES/OpenSearch cluster: a real HTTP server per node, with per-node faults, the
    indices it holds (`data`) and its side of cross-cluster replication (`replication`)."""

    def __init__(
        self,
        cluster_name: str,
        *,
        node_count: int = 3,
        host: str = "127.0.0.1",
        hosts: list[str] | None = None,
        ports: list[int] | None = None,
        distribution: Distribution = "elasticsearch",
        version: str | None = None,
        stores: Sequence[int] = (1, 2),
        index_prefix: str = "magento2",
        follower_read_interval_s: float = 0.0,
    ) -> None:
        """`hosts` gives each node its own address (DNS can list IPs, not ports); else `host`.

        Every cluster starts with Magento's layout for `stores`: the index
        `<index_prefix>_product_<store>_v1` behind the alias `<index_prefix>_product_<store>`.
        `follower_read_interval_s`: its followers read from their leader at most this often,
        as real ones poll, so writes on the leader show as lag until the next read (0: a
        follower is up to date whenever it is asked).
        """
        if follower_read_interval_s < 0:
            raise ValueError(
                f"follower_read_interval_s must be 0 or more, got {follower_read_interval_s}"
            )
        self.follower_read_interval_s = follower_read_interval_s
        if node_count < 1:
            raise ValueError(f"node_count must be at least 1, got {node_count}")
        if distribution not in DEFAULT_VERSIONS:
            raise ValueError(
                f"unknown distribution {distribution!r}; expected elasticsearch or opensearch"
            )
        if ports is not None and len(ports) != node_count:
            raise ValueError(f"got {len(ports)} ports for {node_count} nodes")
        if hosts is not None and len(hosts) != node_count:
            raise ValueError(f"got {len(hosts)} hosts for {node_count} nodes")
        node_hosts = list(hosts) if hosts is not None else [host] * node_count
        node_ports = list(ports) if ports is not None else [0] * node_count
        pinned = [(h, p) for h, p in zip(node_hosts, node_ports, strict=True) if p]
        clashes = sorted({f"{h}:{p}" for h, p in pinned if pinned.count((h, p)) > 1})
        if clashes:
            raise ValueError(
                f"nodes would share the address(es) {', '.join(clashes)}; give each node its own "
                "port or its own host (hosts=[...])"
            )
        self.name = cluster_name
        self.host = host
        self.distribution: Distribution = distribution
        self.version = version or DEFAULT_VERSIONS[distribution]
        self.cluster_uuid = new_cluster_uuid()
        self.impostor_uuid = new_cluster_uuid()
        self.request_count = 0
        # Requests being handled right now (hung or slow ones included): lets tests wait for
        # "the request has reached the node" instead of sleeping.
        self.in_flight = 0
        self._version_info = version_info(distribution, self.version)
        self._version_tuple = version_tuple(self.version)
        self.stores: tuple[int, ...] = tuple(stores)
        self.index_prefix = index_prefix
        self.data = IndexModel.magento_layout(self.stores, index_prefix)
        self.replication = Replication(self)
        self._routes = self._build_routes()
        self._nodes = [
            _Node(
                index=i, name=f"{cluster_name}-node-{i + 1}", host=node_hosts[i], port=node_ports[i]
            )
            for i in range(node_count)
        ]
        self._lock = asyncio.Lock()
        # Client addresses cut off from every node, as a network partition between one
        # vantage point and the cluster: their packets go unanswered until healed.
        self.partitioned_from: frozenset[str] = frozenset()
        self._partition_healed = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self._errors: list[Exception] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SimulatedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    @property
    def node_urls(self) -> list[str]:
        """One URL per node; stable across DOWN/up because the port is reused."""
        if any(node.port == 0 for node in self._nodes):
            raise RuntimeError(f"cluster {self.name!r}: node_urls are known after start()")
        return [self._url(node) for node in self._nodes]

    @property
    def node_hosts(self) -> list[str]:
        """The address each node listens on (and reports as its `ip`)."""
        return [node.host for node in self._nodes]

    @staticmethod
    def _url(node: _Node) -> str:
        host = f"[{node.host}]" if ":" in node.host else node.host
        return f"http://{host}:{node.port}"

    async def start(self) -> None:
        """Bind every node (free ports unless given), then apply faults set beforehand."""
        if self._started:
            raise RuntimeError(f"cluster {self.name!r} is already started")
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        try:
            for node in self._nodes:
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._handler_for(node))
                node.runner = web.AppRunner(
                    app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
                )
                await node.runner.setup()
                await self._open(node)
        except BaseException:
            await self._teardown()
            raise
        self._started = True
        await self.apply_faults()

    async def stop(self) -> None:
        """Close every node promptly, releasing requests that hang on purpose."""
        if not self._started:
            return
        self._started = False
        async with self._lock:
            await self._teardown()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        self._errors.clear()

    async def _teardown(self) -> None:
        for node in self._nodes:
            node.released.set()
        runners = [node.runner for node in self._nodes if node.runner is not None]
        for node in self._nodes:
            node.runner = node.site = None
        results = await asyncio.gather(*(r.cleanup() for r in runners), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # ------------------------------------------------------------------ faults

    def set_fault(self, node: int | None, fault: NodeFault) -> None:
        """Inject `fault` into one node (None = all). DOWN/up transitions run as a task."""
        targets = self._targets(node)
        now = time.monotonic()
        for target in targets:
            target.fault = dataclasses.replace(fault)
            target.fault_since = now
        self._schedule_transitions()

    def partition(self, sources: list[str]) -> None:
        """Cut these client addresses off: their requests hang until `heal()`."""
        self._partition_healed = asyncio.Event()
        self.partitioned_from = frozenset(sources)

    def heal(self) -> None:
        self.partitioned_from = frozenset()
        self._partition_healed.set()

    def faults(self) -> list[NodeFault]:
        """Copies of the current per-node faults."""
        return [dataclasses.replace(node.fault) for node in self._nodes]

    async def apply_faults(self) -> None:
        """Open/close listening sockets to match the faults now, and wait for it."""
        if self._started:
            self._spawn_transition()
        await self.settle()

    async def settle(self) -> None:
        """Wait until every requested DOWN/up transition is done; re-raise any failure."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._errors:
            errors, self._errors = self._errors, []
            raise RuntimeError(
                f"cluster {self.name!r}: {len(errors)} fault transition(s) failed: {errors[0]}"
            ) from errors[0]

    def describe(self) -> dict[str, Any]:
        """The control-API view of this cluster."""
        nodes = []
        for node in self._nodes:
            nodes.append(
                {
                    "index": node.index,
                    "name": node.name,
                    "url": self._url(node) if node.port else None,
                    "listening": node.site is not None,
                    **node.fault.to_dict(),
                    "effective_mode": str(node.mode_now()),
                }
            )
        return {
            "cluster_name": self.name,
            "cluster_uuid": self.cluster_uuid,
            "distribution": self.distribution,
            "version": self.version,
            "nodes": nodes,
        }

    # ------------------------------------------------------------------ data and replication

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return self._version_tuple

    def serves_followers(self) -> bool:
        """Whether a follower's read reaches this cluster as a leader: it is running and
        has a master (a majority of its nodes neither down nor hung)."""
        if not self._started:
            return False
        present = sum(1 for node in self._nodes if not node.absent)
        return 2 * present > len(self._nodes)

    def connect_remote(self, name: str, leader: SimulatedCluster) -> None:
        """Know `leader` by the connection name followers use (real clusters configure
        `cluster.remote.<name>.seeds`)."""
        self.replication.connect(name, leader)

    def follow_all(self, connection: str) -> list[str]:
        """Make every store's versioned index (the indices the store aliases point at on the
        leader, same names) and its alias a follower of the leader's, as if `_start` /
        `_ccr/follow` had been called; this cluster's own copies are deleted first."""
        return self.replication.follow_all(connection)

    def replication_fault(
        self, kind: FaultKind, index: str | None = None, operations: int = 0
    ) -> list[str]:
        """pause / fail / resume a follower (None: all); `lag` holds it `operations` behind
        its leader's checkpoint from now on; `sync` clears the lag. Returns the indices."""
        return self.replication.fault(kind, index, operations)

    def write_documents(self, index_or_alias: str, count: int) -> int:
        """`count` catalogue updates (price changes) on a leader index; its new checkpoint."""
        return self.data.write_documents(index_or_alias, count)

    def reindex_store(self, store: int) -> str:
        """Magento's full reindex of one store: `<prefix>_product_<store>_v<N+1>` is built,
        the alias moved to it, the old index deleted. Returns the new index's name."""
        if isinstance(store, bool) or not isinstance(store, int):
            raise ValueError(f"invalid store {store!r}: expected a store id (integer)")
        return self.data.reindex_store(self.index_prefix, store)

    def drop_alias(self, alias: str) -> None:
        self.data.drop_alias(alias)

    def point_alias(self, alias: str, index: str) -> None:
        self.data.point_alias(alias, index)

    def set_index_health(self, index: str, status: HealthOverride | None) -> None:
        """Make an index (or the indices behind an alias) at least red or yellow; None heals."""
        self.data.set_health(index, status)

    def data_state(self) -> dict[str, Any]:
        """Indices (documents, checkpoint, follower state) and aliases, as followers see them
        now: reading the state syncs them, as any request would."""
        self.replication.refresh()
        placement = _allocate(
            len(self._nodes), {n.index for n in self._nodes if not n.absent}, None
        )
        indices = {}
        for name, index in sorted(self.data.indices.items()):
            indices[name] = {
                "uuid": index.uuid,
                "status": "open" if index.is_open else "close",
                "health": index.shards(placement).status,
                "docs_count": len(index.docs),
                "checkpoint": index.checkpoint,
                "aliases": sorted(index.aliases),
                "write_block": index.write_block,
                "health_override": index.health_override,
                "follower": self.replication.describe(index),
            }
        return {
            "cluster_name": self.name,
            "distribution": self.distribution,
            "remotes": sorted(self.replication.remotes),
            "indices": indices,
            "aliases": self.data.alias_map(),
            "promotions": dict(sorted(self.replication.promotions.items())),
            "autofollow": [
                {"leader_alias": r.connection, "name": r.name, "pattern": r.pattern}
                for r in self.replication.rules.values()
            ],
        }

    def _targets(self, node: int | None) -> list[_Node]:
        if node is None:
            return list(self._nodes)
        if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < len(self._nodes):
            raise ValueError(
                f"cluster {self.name!r} has no node {node!r}; "
                f"valid indexes are 0..{len(self._nodes) - 1} (or None for all nodes)"
            )
        return [self._nodes[node]]

    def _schedule_transitions(self) -> None:
        loop = self._loop
        if loop is None or not self._started:
            return  # start() applies the faults
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn_transition()
        else:
            loop.call_soon_threadsafe(self._spawn_transition)

    def _spawn_transition(self) -> None:
        task = asyncio.get_running_loop().create_task(self._transition())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _transition(self) -> None:
        """Make each node's socket match its fault; the lock keeps transitions ordered."""
        async with self._lock:
            if not self._started:
                return
            for node in self._nodes:
                want_up = node.fault.mode is not FaultMode.DOWN
                try:
                    if want_up and node.site is None:
                        await self._open(node)
                    elif not want_up and node.site is not None:
                        await self._close(node)
                except Exception as exc:
                    self._errors.append(exc)

    async def _open(self, node: _Node) -> None:
        assert node.runner is not None
        node.released = asyncio.Event()
        site = web.TCPSite(node.runner, node.host, node.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {node.host}:{node.port} for {node.name}: {exc}"
            ) from exc
        if node.port == 0:
            node.port = int(node.runner.addresses[0][1])
        node.site = site

    async def _close(self, node: _Node) -> None:
        """Stop listening and drop open connections, so clients see a dead node."""
        site, node.site = node.site, None
        if site is not None:
            await site.stop()
        server = node.runner.server if node.runner is not None else None
        if server is not None:
            for connection in server.connections:
                connection.force_close()  # idle keep-alive sockets would still answer
        node.released.set()

    # ------------------------------------------------------------------ request handling

    def _handler_for(self, node: _Node) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(node, request)

        return handler

    async def _handle(self, node: _Node, request: web.Request) -> web.StreamResponse:
        released = node.released
        self.in_flight += 1
        try:
            if request.remote in self.partitioned_from:
                await _first_of(released, self._partition_healed)
                raise Dropped
            mode = node.mode_now()
            if mode is FaultMode.SLOW and await _released_within(
                released, node.fault.slow_ms / 1000
            ):
                raise Dropped
            response = await self._respond(node, request, released)
        except Dropped:
            return _drop(request)
        finally:
            self.in_flight -= 1
        self.request_count += 1
        return response

    async def _respond(
        self, node: _Node, request: web.Request, released: asyncio.Event
    ) -> web.Response:
        mode = node.mode_now()
        if mode is FaultMode.DOWN:
            raise Dropped  # the socket is about to close; a request slipped in
        if mode is FaultMode.HANG:
            await released.wait()
            raise Dropped
        if mode is FaultMode.HTTP_500:
            return self._error(
                request,
                500,
                "null_pointer_exception",
                'Cannot invoke "org.elasticsearch.cluster.node.DiscoveryNode.getId()" '
                'because "localNode" is null',
            )
        if mode is FaultMode.HTTP_503:
            return self._master_not_discovered(request)
        if mode is FaultMode.UNAUTHORIZED:
            return self._unauthorized(request)
        try:
            return await self._dispatch(node, request, mode, released)
        except ApiError as exc:
            return self._error(
                request,
                exc.status,
                exc.err_type,
                exc.reason,
                root_cause=exc.root_cause,
                security=False,
                **exc.extra,
            )
        except IndexNotFound as exc:
            return self._index_not_found(request, exc.index)

    def _build_routes(self) -> list[Route]:
        get = ("GET",)
        own = [
            Route(("HEAD", "GET"), (), self._root_route, needs_quorum=False),
            Route(get, ("_cluster", "health"), self._health_route),
            Route(get, ("_cluster", "health", NAME), self._health_route),
            Route(get, ("_cat", "nodes"), self._cat_nodes_route),
        ]
        return own + index_api.routes() + self.replication.routes()

    async def _dispatch(
        self, node: _Node, request: web.Request, mode: FaultMode, released: asyncio.Event
    ) -> web.Response:
        parts = [p for p in request.path.split("/") if p]
        route, args, allowed = find(self._routes, parts, request.method, self.distribution)
        if not allowed:
            return self._json(
                request,
                {
                    "error": f"no handler found for uri [{request.path_qs}] and method "
                    f"[{request.method}]"
                },
                400,
            )
        if route is None:
            return self._json(
                request,
                {
                    "error": f"Incorrect HTTP method for uri [{request.path_qs}] and method "
                    f"[{request.method}], allowed: [{', '.join(allowed)}]",
                    "status": 405,
                },
                405,
                headers={"Allow": ",".join(allowed)},
            )
        view = self._view(node, mode)
        if route.needs_quorum:
            if not view.quorum:
                return self._master_not_discovered(request)
            self.replication.refresh()
        answer = await route.handler(Ctx(self, node, request, view, released, args))
        if isinstance(answer, web.Response):
            return answer
        return self._reply(request, answer)

    def _reply(self, request: web.BaseRequest, reply: Reply) -> web.Response:
        if reply.text is not None:
            response = web.Response(
                body=reply.text.encode(),
                status=reply.status,
                content_type="text/plain",
                charset="UTF-8",
                headers=reply.headers,
            )
            return self._decorate(request, response)
        if reply.body is None:
            response = web.Response(status=reply.status, headers=reply.headers)
            return self._decorate(request, response)
        return self._json(request, reply.body, reply.status, headers=reply.headers)

    async def _root_route(self, ctx: Ctx) -> web.Response:
        return self._json(ctx.request, self._root_body(ctx.node, ctx.view))

    async def _health_route(self, ctx: Ctx) -> web.Response:
        return await self._health(ctx.node, ctx.request, ctx.released, ctx.arg("name"))

    async def _cat_nodes_route(self, ctx: Ctx) -> Reply:
        return self._cat_nodes(ctx.request, ctx.view)

    def _view(self, node: _Node, mode: FaultMode) -> _View:
        """The cluster as seen from `node`, derived from every node's fault."""
        count = len(self._nodes)
        if mode is FaultMode.WRONG_CLUSTER:
            name = f"{self.name}-impostor"
            present: tuple[int, ...] = tuple(range(count))
            return _View(
                name,
                self.impostor_uuid,
                tuple(f"{name}-node-{i + 1}" for i in range(count)),
                present,
                0,
                _allocate(count, set(present), None),
                None,
            )
        present = tuple(n.index for n in self._nodes if not n.absent)
        # A master needs votes from a strict majority of the master-eligible nodes.
        master = present[0] if 2 * len(present) > count else None
        forced = mode if mode in (FaultMode.RED, FaultMode.YELLOW) else None
        return _View(
            self.name,
            self.cluster_uuid,
            tuple(n.name for n in self._nodes),
            present,
            master,
            _allocate(count, set(present), forced),
            forced,
        )

    # ------------------------------------------------------------------ responses

    def _json(
        self,
        request: web.BaseRequest,
        data: Any,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        security: bool | None = None,
    ) -> web.Response:
        if flag(request.query, "pretty"):
            text = json.dumps(data, indent=2) + "\n"
        else:
            text = json.dumps(data, separators=(",", ":"))
        response = web.Response(
            body=text.encode(), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
        )
        return self._decorate(request, response, security=security)

    def _decorate(
        self, request: web.BaseRequest, response: web.Response, *, security: bool | None = None
    ) -> web.Response:
        """ES >= 7.14 marks its answers so clients can refuse impostors; not the security
        layer's refusals (401, 403 by default; a 403 from a block or follower is marked)."""
        if security is None:
            security = response.status in (401, 403)
        if self.distribution == "elasticsearch" and self._version_tuple >= (7, 14) and not security:
            response.headers["X-elastic-product"] = "Elasticsearch"
        opaque_id = request.headers.get("X-Opaque-Id")
        if opaque_id:
            response.headers["X-Opaque-Id"] = opaque_id
        return response

    def _error(
        self,
        request: web.BaseRequest,
        status: int,
        err_type: str,
        reason: str | None,
        *,
        root_cause: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        security: bool | None = None,
        **extra: Any,
    ) -> web.Response:
        """An error in the exact envelope ES uses: error.root_cause[], error.type, status."""
        cause = {"type": err_type, "reason": reason, **extra}
        body = {"error": {"root_cause": [cause] if root_cause is None else root_cause, **cause}}
        body["status"] = status
        return self._json(request, body, status, headers=headers, security=security)

    def _master_not_discovered(self, request: web.BaseRequest) -> web.Response:
        err_type = (
            "cluster_manager_not_discovered_exception"
            if self.distribution == "opensearch" and self._version_tuple >= (2,)
            else "master_not_discovered_exception"
        )
        return self._error(request, 503, err_type, None)

    def _unauthorized(self, request: web.BaseRequest) -> web.Response:
        if self.distribution == "opensearch":
            # The OpenSearch security plugin answers a bare text body, not an ES error.
            response = web.Response(
                text="Unauthorized",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": OS_BASIC_CHALLENGE},
            )
            return self._decorate(request, response)
        return self._error(
            request,
            401,
            "security_exception",
            f"missing authentication credentials for REST request [{request.path_qs}]",
            header={"WWW-Authenticate": [ES_BASIC_CHALLENGE]},
            headers={"WWW-Authenticate": ES_BASIC_CHALLENGE},
        )

    def _index_not_found(self, request: web.BaseRequest, index: str) -> web.Response:
        return self._error(
            request,
            404,
            "index_not_found_exception",
            f"no such index [{index}]",
            **{"resource.type": "index_or_alias", "resource.id": index},
            index_uuid="_na_",
            index=index,
        )

    def _root_body(self, node: _Node, view: _View) -> dict[str, Any]:
        opensearch = self.distribution == "opensearch"
        return {
            "name": view.node_names[node.index],
            "cluster_name": view.cluster_name,
            "cluster_uuid": view.cluster_uuid,
            "version": dict(self._version_info),
            "tagline": (
                "The OpenSearch Project: https://opensearch.org/"
                if opensearch
                else "You Know, for Search"
            ),
        }

    def _health_body(self, view: _View, shards: Shards, *, timed_out: bool) -> dict[str, Any]:
        nodes = len(view.present)
        body: dict[str, Any] = {
            "cluster_name": view.cluster_name,
            "status": shards.status,
            "timed_out": timed_out,
            "number_of_nodes": nodes,
            "number_of_data_nodes": nodes,
        }
        if self.distribution == "opensearch":
            body["discovered_master"] = True
            body["discovered_cluster_manager"] = True
        body.update(self._shard_counts(shards))
        body.update(
            delayed_unassigned_shards=sum(shards.delayed),
            number_of_pending_tasks=0,
            number_of_in_flight_fetch=0,
            task_max_waiting_in_queue_millis=0,
            active_shards_percent_as_number=shards.percent,
        )
        return body

    def _shard_counts(self, shards: Shards) -> dict[str, int]:
        counts = {
            "active_primary_shards": shards.active_primary,
            "active_shards": shards.active,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": shards.unassigned,
        }
        if self.distribution == "elasticsearch" and self._version_tuple >= (8, 16):
            counts["unassigned_primary_shards"] = len(shards.lost)
        return counts

    def _health_targets(self, expression: str | None) -> tuple[list[Index], bool]:
        """The indices a health request covers, and whether it named one that is missing
        (a concrete name or alias; a wildcard matching nothing is fine)."""
        if expression is None:
            return self.data.resolve(None, include_closed=True), False
        found: dict[str, Index] = {}
        missing = False
        for part in (p for p in expression.split(",") if p):
            try:
                for index in self.data.resolve(part, include_closed=True):
                    found.setdefault(index.name, index)
            except IndexNotFound:
                missing = True
        return list(found.values()), missing

    def _index_health(self, shards: Shards) -> dict[str, Any]:
        return {
            "status": shards.status,
            "number_of_shards": shards.primaries,
            "number_of_replicas": max(shards.copies, default=1) - 1,
            **self._shard_counts(shards),
        }

    async def _health(
        self, node: _Node, request: web.Request, released: asyncio.Event, index: str | None
    ) -> web.Response:
        """`GET /_cluster/health[/<indices>]`: wait_for_status is re-checked until `timeout`
        expires; a missing index or alias never turns up, so that request times out red."""
        query = request.query
        flag(query, "local")  # accepted; the simulated state is the same on every node
        wanted = query.get("wait_for_status")
        if wanted is not None and wanted not in STATUS_RANK:
            raise BadRequest(
                "illegal_argument_exception", f"No cluster health status for value [{wanted}]"
            )
        level = query.get("level", "cluster")
        if level not in ("cluster", "indices", "shards"):
            raise BadRequest("illegal_argument_exception", f"No Level found for value [{level}]")
        # Real ES waits 30s by default; the simulator only waits when told how long.
        timeout_s = _time_param(query, "timeout", 0.0)
        _time_param(query, "master_timeout", 30.0)
        deadline = time.monotonic() + timeout_s
        while True:
            view = self._view(node, node.mode_now())
            if not view.quorum:
                return self._master_not_discovered(request)
            targets, missing = self._health_targets(index)
            per_index = {i.name: i.shards(view.shards) for i in targets}
            shards = Shards.combine(per_index.values())
            status = "red" if missing else shards.status
            met = not missing and (wanted is None or STATUS_RANK[status] <= STATUS_RANK[wanted])
            remaining = deadline - time.monotonic()
            if met or remaining <= 0:
                break
            if await _released_within(released, min(_HEALTH_POLL_S, remaining)):
                raise Dropped
        body = self._health_body(view, shards, timed_out=not met)
        body["status"] = status
        if level != "cluster":
            body["indices"] = {
                name: self._index_health(part) for name, part in sorted(per_index.items())
            }
        return self._json(request, body, 200 if met else 408)

    def _cat_nodes(self, request: web.Request, view: _View) -> Reply:
        """`GET /_cat/nodes`: the JSON list (values are strings) or the aligned text table."""
        opensearch = self.distribution == "opensearch"
        rows: list[dict[str, str | None]] = []
        for i in view.present:
            is_master = "*" if i == view.master else "-"
            row: dict[str, str | None] = {
                "ip": self._nodes[i].host,
                "heap.percent": str(18 + (i * 17) % 47),
                "ram.percent": str(62 + (i * 13) % 31),
                "cpu": str(2 + (i * 5) % 9),
                "load_1m": f"{0.12 + 0.21 * i:.2f}",
                "load_5m": f"{0.18 + 0.15 * i:.2f}",
                "load_15m": f"{0.21 + 0.11 * i:.2f}",
            }
            if opensearch:
                row["node.role"] = "dimr"
                row["node.roles"] = "cluster_manager,data,ingest,remote_cluster_client"
                row["cluster_manager"] = is_master
            else:
                row["node.role"] = "cdfhilmrstw"
                row["master"] = is_master
            row["name"] = view.node_names[i]
            rows.append(row)
        short = {"i": "ip", "hp": "heap.percent", "rp": "ram.percent", "r": "node.role"}
        short |= {"m": "master", "n": "name", "role": "node.role", "cm": "cluster_manager"}
        columns = list(rows[0]) if rows else []
        numeric = {"heap.percent", "ram.percent", "cpu", "load_1m", "load_5m", "load_15m"}
        return render_cat(request.query, rows, columns, known=columns, short=short, numeric=numeric)
