"""The monitor's eyes: a long-running activity that probes a cluster round after round.

It follows Temporal's "frequent polling" pattern: the loop runs inside one activity that
heartbeats its progress, and it returns to the workflow only when what this vantage point
sees changes (healthy → suspect → down, or back). A healthy cluster therefore costs its
monitor a handful of history events an hour, whatever the probe interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

import aiohttp
from botocore.session import Session as BotocoreSession
from temporalio import activity

from activities.search_data import read_side_data
from activities.search_probe import (
    USER_AGENT,
    NodeUnreachable,
    basic_password,
    health_path_of,
    probe_node_via,
    sigv4_headers,
    tls_verify,
)
from failover import decisions, names
from failover.config import BasicAuth, ClusterConfig, ClusterSide, MagentoIndices, SigV4Auth
from failover.models import (
    ClusterWatch,
    DataRecord,
    Side,
    WatchInput,
    WatchProgress,
    other_side,
)

BEAT_EVERY_SECONDS = 1.0
# `GET /` (the cluster_uuid) is asked of a node when first reached (or reached again after
# failing) and every this many rounds; the other rounds ask only _cluster/health, which
# names the cluster too, and reuse the uuid last seen.
IDENTITY_EVERY_ROUNDS = 10


class NodeFetcher:
    """GETs for one side's nodes over one keep-alive aiohttp session.

    The monitors' hot path: aiohttp costs about a fifth of the CPU per request that httpx
    does, and one worker probes hundreds of nodes a second. The answers are read by the
    same code as the failover's own probes (`probe_node_via`).
    """

    def __init__(
        self, side: ClusterSide, timeout_s: float, keepalive_s: float, local_address: str | None
    ) -> None:
        self.side = side
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.local_address = local_address
        self._session: aiohttp.ClientSession | None = None
        self._botocore = BotocoreSession() if isinstance(side.auth, SigV4Auth) else None

    async def __aenter__(self) -> NodeFetcher:
        auth = self.side.auth
        connector = aiohttp.TCPConnector(
            limit=0,
            ssl=tls_verify(self.side.tls),
            keepalive_timeout=self.keepalive_s,
            local_addr=(self.local_address, 0) if self.local_address else None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            auth=aiohttp.BasicAuth(auth.username, basic_password(auth))
            if isinstance(auth, BasicAuth)
            else None,
            headers={"user-agent": USER_AGENT},
            skip_auto_headers=("accept-encoding",),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str) -> tuple[int, bytes]:
        assert self._session is not None
        auth = self.side.auth
        headers = None
        if isinstance(auth, SigV4Auth) and self._botocore is not None:
            headers = sigv4_headers(self._botocore, auth.region, auth.service, "GET", url)
        try:
            async with self._session.get(url, headers=headers) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise NodeUnreachable(f"timeout after {self.timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise NodeUnreachable(f"connection failed: {exc.os_error or exc}") from None
        except aiohttp.ClientError as exc:
            raise NodeUnreachable(f"{type(exc).__name__}: {exc}") from None


Clients = dict[Side, NodeFetcher]


class ClusterWatchActivities:
    """`local_address` pins the probes' source address: in the sandbox each vantage worker
    gets its own, so a partition can be injected for one vantage point alone."""

    def __init__(self, *, local_address: str | None = None) -> None:
        self.local_address = local_address
        # How late each round started against its schedule (ms): the scale bench reads it.
        self.round_lateness_ms: deque[float] = deque(maxlen=200_000)
        self.node_probes = 0

    @activity.defn(name=names.WATCH_CLUSTER_ACTIVITY)
    async def watch_cluster(self, request: WatchInput) -> ClusterWatch:
        cluster = request.cluster
        reported = request.last or ClusterWatch(vantage=request.vantage)
        view = _resumed_view(reported)
        view.vantage = request.vantage
        interval = cluster.probe.interval_seconds
        deadline = time.monotonic() + request.max_seconds
        progress = WatchProgress(
            rounds=0,
            last_round_at=0.0,
            primary=view.primary.state,
            standby=view.standby.state,
            max_lateness_ms=0.0,
            view=view,
        )
        identities: dict[str, str | None] = {}
        magento = cluster.magento if request.read_data else None
        data_next_at = time.monotonic()
        async with (
            self._clients(cluster) as clients,
            _beating(progress),
            _worker_shutdown() as shutdown,
        ):
            # Keep the cadence across watches: a watch that just returned a change must not
            # probe again at once, or a short outage would count one extra failing round.
            next_at = time.monotonic()
            if reported.observed_at is not None:
                next_at += max(0.0, reported.observed_at + interval - time.time())
                if await _until_shutdown(shutdown, next_at - time.monotonic()):
                    return view
            while True:
                lateness = (time.monotonic() - next_at) * 1000
                self.round_lateness_ms.append(lateness)
                if magento is not None and time.monotonic() >= data_next_at:
                    view.data = await _read_data(cluster, magento, clients, view)
                    data_next_at = time.monotonic() + magento.check_every_seconds
                view = await self._round(cluster, clients, view, identities)
                progress.rounds += 1
                progress.last_round_at = view.observed_at or 0.0
                progress.primary, progress.standby = view.primary.state, view.standby.state
                progress.max_lateness_ms = max(progress.max_lateness_ms, lateness)
                progress.view = view
                # A first watch reports its first round, so the monitor counts only
                # vantage points that have really probed; after that, only changes.
                if (
                    request.last is None
                    or reported.states() != view.states()
                    or decisions.data_key(reported.data) != decisions.data_key(view.data)
                ):
                    return view
                next_at += interval
                now = time.monotonic()
                if next_at < now:  # a slow round (timeouts): skip the slots it overran
                    next_at += ((now - next_at) // interval + 1) * interval
                if next_at >= deadline:
                    return view
                if await _until_shutdown(shutdown, next_at - now):
                    return view

    async def _round(
        self,
        cluster: ClusterConfig,
        clients: Clients,
        view: ClusterWatch,
        identities: dict[str, str | None],
    ) -> ClusterWatch:
        sides: tuple[Side, Side] = ("primary", "standby")
        record = view.data
        results = await asyncio.gather(
            *(
                self._side_health(
                    cluster,
                    side,
                    clients[side],
                    identities,
                    view.rounds,
                    decisions.cluster_status_note(record.side(side) if record else None),
                )
                for side in sides
            )
        )
        now = time.time()
        probe = cluster.probe
        after = view.model_copy()
        for side, (health, reason) in zip(sides, results, strict=True):
            folded = decisions.next_side_watch(
                view.side(side),
                health,
                reason,
                now,
                threshold=probe.failure_threshold,
                window_seconds=probe.window_seconds,
            )
            setattr(after, side, folded)
        after.rounds = view.rounds + 1
        after.observed_at = now
        return after

    async def _side_health(
        self,
        cluster: ClusterConfig,
        side: Side,
        client: NodeFetcher,
        identities: dict[str, str | None],
        round_number: int,
        cluster_note: str | None,
    ) -> tuple[decisions.SideHealth, str | None]:
        settings = cluster.side(side)
        timeout = cluster.probe.timeout_seconds
        urls = [str(n) for n in settings.nodes]
        ask = {
            url: round_number % IDENTITY_EVERY_ROUNDS == 0 or url not in identities for url in urls
        }
        health_path = health_path_of(cluster)
        probes = await asyncio.gather(
            *(
                probe_node_via(
                    client.fetch, url, timeout, identity=ask[url], health_path=health_path
                )
                for url in urls
            )
        )
        self.node_probes += len(probes)
        for probe in probes:
            # A scoped health's 408 (an alias missing) is an answer: the node is there.
            answered = probe.error is None and (
                (probe.http_status or 200) < 400
                or (probe.http_status == 408 and probe.health_scope is not None)
            )
            if not answered:
                identities.pop(probe.url, None)  # ask again once it answers
            elif ask[probe.url]:
                identities[probe.url] = probe.cluster_uuid
            else:
                probe.cluster_uuid = identities.get(probe.url)
        problems = decisions.node_problems(
            probes,
            expected_cluster_name=settings.expected_cluster_name,
            expected_cluster_uuid=settings.expected_cluster_uuid,
            yellow_policy=cluster.probe.yellow_policy,
        )
        notes = {p.url: decisions.node_degraded(p) for p in probes}
        health, reason = decisions.side_health(problems, notes, down_share=cluster.probe.down_share)
        if health == "healthy" and cluster_note is not None:
            return "degraded", f"{decisions.DEGRADED}: {cluster_note}"
        return health, reason

    @contextlib.asynccontextmanager
    async def _clients(self, cluster: ClusterConfig) -> AsyncIterator[Clients]:
        """One keep-alive session per side for the whole watch, not one per round."""
        probe = cluster.probe
        # Idle connections must outlive the gap between rounds, or every probe reconnects.
        keepalive = 2 * probe.interval_seconds + probe.timeout_seconds
        sides: dict[Side, ClusterSide] = {"primary": cluster.primary, "standby": cluster.standby}
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                side: await stack.enter_async_context(
                    NodeFetcher(settings, probe.timeout_seconds, keepalive, self.local_address)
                )
                for side, settings in sides.items()
            }
            yield clients


async def _read_data(
    cluster: ClusterConfig, magento: MagentoIndices, clients: Clients, view: ClusterWatch
) -> DataRecord:
    """Both sides' storefront indices, folded into what the monitor keeps of each: a side
    that does not answer keeps its last good reading."""
    sides: tuple[Side, Side] = ("primary", "standby")
    readings = await asyncio.gather(
        *(
            read_side_data(
                clients[side].fetch,
                [str(n) for n in cluster.side(side).nodes],
                side,
                magento,
                cluster.replication.kind,
            )
            for side in sides
        )
    )
    before = view.data or DataRecord()
    folded = {
        side: decisions.fold_data(
            before.side(side),
            reading,
            cluster.replication,
            leader_healthy=view.side(other_side(side)).state in ("healthy", "degraded"),
        )
        for side, reading in zip(sides, readings, strict=True)
    }
    return DataRecord(primary=folded["primary"], standby=folded["standby"])


def _resumed_view(reported: ClusterWatch) -> ClusterWatch:
    """After a worker crash, carry on from the last heartbeat rather than the last report."""
    details = activity.info().heartbeat_details
    if activity.info().attempt > 1 and details:
        # The SDK hands heartbeat details over converted without a type: a plain dict.
        with contextlib.suppress(ValueError):
            resumed = WatchProgress.model_validate(details[0])
            if resumed.view is not None:
                return resumed.view
    return reported.model_copy(deep=True)


@contextlib.asynccontextmanager
async def _beating(progress: WatchProgress) -> AsyncIterator[None]:
    """Heartbeats the progress (with the view, to resume from) every half second."""

    async def beat() -> None:
        while True:
            activity.heartbeat(progress.model_copy())
            await asyncio.sleep(BEAT_EVERY_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _worker_shutdown() -> AsyncIterator[asyncio.Future[None]]:
    """Done when this worker starts shutting down (a deploy, a scale-in, Ctrl-C)."""
    shutdown = asyncio.ensure_future(activity.wait_for_worker_shutdown())
    try:
        yield shutdown
    finally:
        shutdown.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shutdown


async def _until_shutdown(shutdown: asyncio.Future[None], seconds: float) -> bool:
    """Waits `seconds` between rounds, or less if the worker starts shutting down: True then.
    The watch then returns its view at once, and the monitor's next watch runs on a live
    worker, instead of this one holding the shutdown for its whole graceful timeout."""
    done, _ = await asyncio.wait((shutdown,), timeout=max(0.0, seconds))
    return bool(done)
