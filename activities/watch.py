"""The monitor's eyes: a long-running activity that probes a cluster round after round.

It follows Temporal's "frequent polling" pattern: the loop runs inside one activity that
heartbeats its progress, and it returns to the workflow only when what this vantage point
sees changes (healthy → suspect → down, or back). A healthy cluster therefore costs its
monitor a handful of history events an hour, whatever the probe interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
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
from failover import decisions, metrics, names
from failover.config import BasicAuth, ClusterConfig, ClusterSide, MagentoIndices, SigV4Auth
from failover.decisions.monitor import next_side_watch_confirming
from failover.decisions.probe import all_refused, connection_failure
from failover.models import (
    ClusterWatch,
    DataRecord,
    Side,
    WatchInput,
    WatchProgress,
    other_side,
)

log = logging.getLogger(__name__)
BEAT_EVERY_SECONDS = 1.0
# `GET /` (the cluster_uuid) is asked of a node when first reached (or reached again after
# failing) and every this many rounds; the other rounds ask only _cluster/health, which
# names the cluster too, and reuse the uuid last seen.
IDENTITY_EVERY_ROUNDS = 10
SIDES: tuple[Side, Side] = ("primary", "standby")


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
            # Named when the OS refused or had no route: the monitors' unambiguous evidence.
            os_errno = getattr(exc.os_error, "errno", None)
            raise NodeUnreachable(connection_failure(os_errno, str(exc.os_error or exc))) from None
        except aiohttp.ClientError as exc:
            raise NodeUnreachable(f"{type(exc).__name__}: {exc}") from None


Clients = dict[Side, NodeFetcher]

# Every this many seconds, while watches run, the young generations are collected and the
# heap frozen: full passes then walk only what came since (a watch's state, its monitor's,
# the rounds in flight), never the hundreds of thousands of objects that stay.
FREEZE_EVERY_SECONDS = 2.0
# Frozen watches that ended before the whole heap is collected: each leaves a few reference
# cycles (its closed connections, some 4 KB) that only a full collection frees...
RECLAIM_AFTER_ENDED_WATCHES = 1000
# ... or this long after the last such collection, if any frozen watch ended since, or once
# the frozen heap has doubled since (what else it let go, workflows say, is not counted; the
# heap is, every RECLAIM_CHECK_FREEZES freezes: counting walks it, some 5 ms).
RECLAIM_AFTER_SECONDS = 6 * 3600.0
RECLAIM_AFTER_GROWTH = 2.0
RECLAIM_CHECK_FREEZES = 30


def heap_action(
    *, since_freeze: float, ended_frozen: int, since_reclaim: float, frozen_growth: float
) -> str | None:
    """What the collector should do now, and why: `reclaim: …` (collect everything, frozen
    part too, and freeze again), `freeze: …` (collect the young, freeze), or None.
    `ended_frozen`: frozen watches that ended since the last reclaim, `since_reclaim`
    seconds ago; `frozen_growth`: the frozen heap, last counted, against its size then."""
    if ended_frozen >= RECLAIM_AFTER_ENDED_WATCHES:
        return f"reclaim: {ended_frozen} frozen watches ended"
    if ended_frozen and since_reclaim >= RECLAIM_AFTER_SECONDS:
        return f"reclaim: {since_reclaim / 3600:.1f} h since the last, {ended_frozen} ended"
    if frozen_growth >= RECLAIM_AFTER_GROWTH:
        return f"reclaim: the frozen heap grew {frozen_growth:.1f} times"
    if since_freeze >= FREEZE_EVERY_SECONDS:
        return f"freeze: {since_freeze:.1f} s since the last"
    return None


class HeapFreezer:
    """Keeps the long-lived heap out of the garbage collector's full passes.

    A full collection walks every tracked object that is not frozen (`gc.freeze`): with
    hundreds of watches (their sessions and connections, their inputs, the SDK's and the
    monitors' state) it stops the event loop, and every probe round, for hundreds of
    milliseconds. So while watches run, the heap is frozen every FREEZE_EVERY_SECONDS,
    after a young collection (a pass over the newest objects only), so that little
    garbage is frozen with it. Frozen objects are still freed when their last reference
    goes (the rounds' objects, all of them); only reference cycles among frozen objects
    wait for the reclaim, which unfreezes, collects everything and freezes again: one long
    pause in hours (`heap_action`). Each watch reports its rounds and its end.
    """

    def __init__(self) -> None:
        self.freezes = 0  # a watch's token: the freezes before it started
        self.reclaims = 0
        self.last_reclaim_ms = 0.0
        self._frozen_at = time.monotonic()
        self._ended_frozen = 0
        self._reclaimed_at = time.monotonic()
        self._frozen_after_reclaim = 0  # objects, counted at start-up and at each reclaim
        self._frozen_growth = 1.0

    def freeze(self, *, collect: int = 1) -> None:
        """Collects the generations up to `collect` (2: a full pass, as at start-up; -1:
        none), then freezes every tracked object."""
        if collect >= 0:
            gc.collect(collect)
        gc.freeze()
        self.freezes += 1
        self._frozen_at = time.monotonic()
        if collect == 2 or not self._frozen_after_reclaim:
            self._frozen_after_reclaim = gc.get_freeze_count()
        elif self.freezes % RECLAIM_CHECK_FREEZES == 0:
            self._frozen_growth = gc.get_freeze_count() / self._frozen_after_reclaim

    def reclaim(self) -> None:
        """Collects the whole heap, frozen part too, and freezes it again (a long pause)."""
        started = time.perf_counter()
        gc.unfreeze()
        self.freeze(collect=2)
        self.last_reclaim_ms = (time.perf_counter() - started) * 1000
        self.reclaims += 1
        self._ended_frozen = 0
        self._frozen_growth = 1.0
        self._reclaimed_at = time.monotonic()

    def started(self) -> int:
        """A watch started: its token for `ended`."""
        return self.freezes

    def ended(self, token: int) -> None:
        """A watch ended; if it was frozen, its cycles wait for the reclaim."""
        if token != self.freezes:
            self._ended_frozen += 1

    def after_round(self, now: float) -> None:
        """Called by every watch after each round (`now`: time.monotonic()); cheap."""
        if now - self._frozen_at < FREEZE_EVERY_SECONDS:
            return
        action = heap_action(
            since_freeze=now - self._frozen_at,
            ended_frozen=self._ended_frozen,
            since_reclaim=now - self._reclaimed_at,
            frozen_growth=self._frozen_growth,
        )
        if action is None:
            return
        if action.startswith("reclaim"):
            self.reclaim()
            log.info("%s; collecting the whole heap took %.0f ms", action, self.last_reclaim_ms)
        else:
            self.freeze()


class ClusterWatchActivities:
    """`local_address` pins the probes' source address: in the sandbox each vantage worker
    gets its own, so a partition can be injected for one vantage point alone. `heap`
    freezes the watches' long-lived state (HeapFreezer); a worker process sets it."""

    def __init__(
        self, *, local_address: str | None = None, heap: HeapFreezer | None = None
    ) -> None:
        self.local_address = local_address
        self.heap = heap
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
        instruments = metrics.watch_instruments(
            activity.metric_meter(), cluster.name, request.vantage
        )
        async with (
            _frozen_when_settled(self.heap),
            self._clients(cluster) as clients,
            _beating(progress),
            _worker_shutdown() as shutdown,
        ):
            # Keep the cadence across watches: a watch that just returned a change must not
            # probe again at once, or a short outage would count one extra failing round.
            # `next_at` is the next regular round (both sides, counted by the threshold);
            # `fast_at` the next fast round, while a side's every node refuses (fast
            # confirmation on): only that side, between the regular rounds.
            fast = cluster.probe.fast_confirm_interval_seconds
            next_at = time.monotonic()
            fast_at: float | None = None
            if reported.observed_at is not None:
                since = time.time() - reported.observed_at
                next_at += max(0.0, interval - since)
                fast_at = _fast_round_at(view, fast, time.monotonic() - since, next_at)
                wake = next_at if fast_at is None else fast_at
                if await _until_shutdown(shutdown, wake - time.monotonic()):
                    return view
            last_round_end = 0.0
            while True:
                regular = fast_at is None
                started = time.monotonic()
                if regular:
                    # Late against its slot, or against a fast round that ran over it: the
                    # watch's own probes are not lateness.
                    lateness = (started - max(next_at, last_round_end)) * 1000
                    self.round_lateness_ms.append(lateness)
                    if magento is not None and time.monotonic() >= data_next_at:
                        view.data = await _read_data(cluster, magento, clients, view)
                        data_next_at = time.monotonic() + magento.check_every_seconds
                    view = await self._round(cluster, clients, view, identities, instruments)
                    progress.rounds += 1
                    progress.max_lateness_ms = max(progress.max_lateness_ms, lateness)
                else:
                    sides = _fast_sides(view)
                    view = await self._round(
                        cluster, clients, view, identities, instruments, sides, counted=False
                    )
                last_round_end = time.monotonic()
                if self.heap is not None:
                    self.heap.after_round(last_round_end)
                progress.last_round_at = view.observed_at or 0.0
                progress.primary, progress.standby = view.primary.state, view.standby.state
                progress.view = view
                # A first watch reports its first round, so the monitor counts only
                # vantage points that have really probed; after that, only changes.
                if (
                    request.last is None
                    or reported.states() != view.states()
                    or decisions.data_key(reported.data) != decisions.data_key(view.data)
                ):
                    return view
                now = time.monotonic()
                if regular:
                    next_at += interval
                    if next_at < now:  # a slow round (timeouts): skip the slots it overran
                        next_at += ((now - next_at) // interval + 1) * interval
                fast_at = _fast_round_at(view, fast, started, next_at)
                wake = next_at if fast_at is None else fast_at
                if wake >= deadline:
                    return view
                if await _until_shutdown(shutdown, wake - now):
                    return view

    async def _round(
        self,
        cluster: ClusterConfig,
        clients: Clients,
        view: ClusterWatch,
        identities: dict[str, str | None],
        instruments: dict[Side, metrics.SideInstruments],
        sides: tuple[Side, ...] = SIDES,
        *,
        counted: bool = True,
    ) -> ClusterWatch:
        """One round of `sides`: a regular round probes both and counts for the threshold;
        a fast round (not `counted`) probes only the sides being confirmed refused."""
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
                    instruments[side],
                )
                for side in sides
            )
        )
        now = time.time()
        probe = cluster.probe
        after = view.model_copy()
        for side, (health, reason, refused_nodes) in zip(sides, results, strict=True):
            folded = next_side_watch_confirming(
                view.side(side),
                health,
                reason,
                now,
                threshold=probe.failure_threshold,
                window_seconds=probe.window_seconds,
                refused_nodes=refused_nodes,
                min_outage_seconds=probe.min_outage_seconds if probe.fast_confirm else None,
                counted=counted,
            )
            setattr(after, side, folded)
            instruments[side].judged(health, folded.state)
        after.rounds = view.rounds + 1 if counted else view.rounds
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
        instruments: metrics.SideInstruments,
    ) -> tuple[decisions.SideHealth, str | None, int]:
        """The side's health this round, why, and its node count if every node refused."""
        settings = cluster.side(side)
        timeout = cluster.probe.timeout_seconds
        urls = [str(n) for n in settings.nodes]
        ask = {
            url: round_number % IDENTITY_EVERY_ROUNDS == 0 or url not in identities for url in urls
        }
        health_path = health_path_of(cluster)
        started = time.monotonic()
        probes = await asyncio.gather(
            *(
                probe_node_via(
                    client.fetch, url, timeout, identity=ask[url], health_path=health_path
                )
                for url in urls
            )
        )
        instruments.probed(time.monotonic() - started)
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
            return "degraded", f"{decisions.DEGRADED}: {cluster_note}", 0
        return health, reason, len(problems) if all_refused(problems) else 0

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


def _fast_round_at(
    view: ClusterWatch, fast: float | None, last_round: float, next_at: float
) -> float | None:
    """When the next fast round is due (`fast` seconds after the `last_round` began), or None
    when none is: fast confirmation off, no side being confirmed refused, or the regular
    round (`next_at`) comes about as soon."""
    if fast is None or not _fast_sides(view):
        return None
    due = last_round + fast
    return None if due > next_at - fast / 2 else due


def _fast_sides(view: ClusterWatch) -> tuple[Side, ...]:
    """The sides every node of which has refused since the last answer, not yet down: they
    are probed every fast_confirm_interval_seconds until confirmed or answering."""
    return tuple(
        side
        for side in SIDES
        if view.side(side).refused_since is not None and view.side(side).state != "down"
    )


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
async def _frozen_when_settled(heap: HeapFreezer | None) -> AsyncIterator[None]:
    """Tells `heap` (if any) that a watch runs, and when it ends."""
    if heap is None:
        yield
        return
    token = heap.started()
    try:
        yield
    finally:
        heap.ended(token)


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
