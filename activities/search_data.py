"""The storefront's indices on a search cluster: read them, promote a follower, re-seed.

Reads are GETs through the same `Fetch` as the node probes, so the monitor's watch (aiohttp)
and these activities (httpx) share one reader. Promotion and re-seeding change the
clusters: each is idempotent per index (it reads the replication state first and does only
what is left), so a retry after a worker crash finishes the job without doing any index
twice. Secrets are resolved here, from the side's auth, never passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import dns.exception
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.search_probe import Fetch, NodeUnreachable, httpx_fetch, probe_client
from activities.verify import resolve_all
from failover import names
from failover.config import MagentoIndices
from failover.models import (
    AliasState,
    CheckResult,
    DataSnapshot,
    FollowerState,
    FollowInput,
    FollowResult,
    FollowStatus,
    PromoteResult,
    ReplicationKind,
    Side,
    SideIndicesInput,
    SyncResult,
    WriteCheckInput,
)

BEAT_EVERY_SECONDS = 0.5
# A document written through each alias and deleted again: proof that Magento's indexer
# can write there. It has no fields a storefront search matches.
WRITE_CHECK_ID = "search-failover-write-check"

_OPENSEARCH_STATUS: dict[str, FollowStatus] = {
    "SYNCING": "syncing",
    "BOOTSTRAPPING": "bootstrapping",
    "PAUSED": "paused",
    "FAILED": "failed",
    "REPLICATION NOT IN PROGRESS": "not_following",
}


class DataReadError(Exception):
    """A node answered, but not with what the storefront's indices need to be judged."""


async def _get_json(fetch: Fetch, url: str, *, allow: tuple[int, ...] = (200,)) -> Any:
    status, body = await fetch(url)
    if status not in allow:
        raise DataReadError(f"GET {_path(url)}: HTTP {status} {_error_type(body)}".rstrip())
    try:
        return json.loads(body)
    except ValueError:
        raise DataReadError(f"GET {_path(url)}: not JSON (HTTP {status})") from None


def _path(url: str) -> str:
    return httpx.URL(url).raw_path.decode()


def _error_type(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error or "")


async def read_follower(
    fetch: Fetch, base: str, index: str, kind: ReplicationKind
) -> FollowerState:
    """One index's replication, as the follower reports it."""
    name = quote(index)
    if kind == "opensearch":
        body = await _get_json(fetch, f"{base}/_plugins/_replication/{name}/_status")
        status = _OPENSEARCH_STATUS.get(str(body.get("status")))
        if status is None:
            raise DataReadError(f"unknown replication status {body.get('status')!r} of {index}")
        details = body.get("syncing_details") or {}
        return FollowerState(
            index=index,
            status=status,
            connection=body.get("leader_alias"),
            leader_index=body.get("leader_index"),
            leader_checkpoint=details.get("leader_checkpoint"),
            follower_checkpoint=details.get("follower_checkpoint"),
            reason=body.get("reason") if status in ("paused", "failed") else None,
        )
    info = await _get_json(fetch, f"{base}/{name}/_ccr/info")
    followers = [f for f in info.get("follower_indices", []) if f.get("follower_index") == index]
    if not followers:
        return FollowerState(index=index, status="not_following")
    follower = followers[0]
    state = FollowerState(
        index=index,
        status="paused" if follower.get("status") == "paused" else "syncing",
        connection=follower.get("remote_cluster"),
        leader_index=follower.get("leader_index"),
    )
    if state.status == "paused":
        return state
    stats = await _get_json(fetch, f"{base}/{name}/_ccr/stats")
    shards = [s for i in stats.get("indices", []) for s in i.get("shards", [])]
    fatal = [s["fatal_exception"] for s in shards if s.get("fatal_exception")]
    if fatal:
        state.status = "failed"
        state.reason = f"{fatal[0].get('type')}: {fatal[0].get('reason')}"
    if shards:
        state.leader_checkpoint = sum(int(s["leader_global_checkpoint"]) for s in shards)
        state.follower_checkpoint = sum(int(s["follower_global_checkpoint"]) for s in shards)
        state.since_last_read_ms = max(int(s.get("time_since_last_read_millis", 0)) for s in shards)
    return state


async def read_side_data(
    fetch: Fetch,
    nodes: list[str],
    side: Side,
    magento: MagentoIndices,
    kind: ReplicationKind,
) -> DataSnapshot:
    """Aliases, document counts, replication and cluster-wide status of one side, from the
    first node that answers; a side where none does gets a snapshot with `error`."""
    problems: list[str] = []
    for node in nodes:
        base = node.rstrip("/")
        try:
            return await _read_from(fetch, base, side, magento, kind)
        except (NodeUnreachable, DataReadError) as exc:
            problems.append(f"{base}: {exc}")
    return DataSnapshot(side=side, read_at=time.time(), error="; ".join(problems))


async def _read_from(
    fetch: Fetch, base: str, side: Side, magento: MagentoIndices, kind: ReplicationKind
) -> DataSnapshot:
    read_at = time.time()
    by_index = await _get_json(fetch, f"{base}/_alias")
    wanted = magento.alias_names()
    pointing: dict[str, list[str]] = {name: [] for name in wanted}
    for index, entry in sorted(by_index.items()):
        for alias in (entry or {}).get("aliases", {}):
            if alias in pointing:
                pointing[alias].append(index)
    rows = await _get_json(fetch, f"{base}/_cat/indices?format=json&h=index,docs.count")
    counts = {row["index"]: int(row["docs.count"] or 0) for row in rows if row.get("index")}
    health = await _get_json(fetch, f"{base}/_cluster/health", allow=(200, 408))
    aliases = [
        AliasState(
            alias=name,
            indices=indices,
            documents=sum(counts.get(i, 0) for i in indices) if indices else None,
        )
        for name, indices in pointing.items()
    ]
    followers: list[FollowerState] = []
    if kind != "none":
        backing = sorted({i for indices in pointing.values() for i in indices})
        followers = list(
            await asyncio.gather(*(read_follower(fetch, base, i, kind) for i in backing))
        )
    return DataSnapshot(
        side=side,
        read_at=read_at,
        node=base,
        aliases=aliases,
        followers=followers,
        cluster_status=health.get("status"),
    )


class ClusterChangeError(Exception):
    """A change the cluster refused; the message carries its answer."""


class SearchDataActivities:
    """Reading and changing the storefront's indices. `transport` lets tests route requests."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport

    @activity.defn(name="read_search_data")
    async def read_data(self, request: SideIndicesInput) -> DataSnapshot:
        async with probe_client(
            request.settings, request.timeout_seconds, transport=self.transport
        ) as client:
            return await read_side_data(
                httpx_fetch(client, request.timeout_seconds),
                [str(n) for n in request.settings.nodes],
                request.side,
                request.magento,
                request.kind,
            )

    @activity.defn(name="promote_followers")
    async def promote(self, request: SideIndicesInput) -> PromoteResult:
        """Stops replication on every follower index the storefront uses, then writes once
        through each alias. An index already promoted (by an earlier attempt that crashed)
        is left alone, so each is promoted exactly once."""
        result = PromoteResult()
        async with probe_client(
            request.settings, request.timeout_seconds, transport=self.transport
        ) as client:
            base, snapshot = await self._readable(client, request)
            for state in snapshot.followers:
                if state.status == "not_following":
                    result.already.append(state.index)
                elif await _promote_index(client, base, state.index, request.kind):
                    result.promoted.append(state.index)
                else:
                    result.already.append(state.index)
                activity.heartbeat(result.model_dump(mode="json"))
            result.write_problem = await _write_check(
                client, base, [a.alias for a in snapshot.aliases if a.indices]
            )
        return result

    async def _readable(
        self, client: httpx.AsyncClient, request: SideIndicesInput
    ) -> tuple[str, DataSnapshot]:
        snapshot = await read_side_data(
            httpx_fetch(client, request.timeout_seconds),
            [str(n) for n in request.settings.nodes],
            request.side,
            request.magento,
            request.kind,
        )
        if snapshot.error is not None or snapshot.node is None:
            raise ApplicationError(f"cannot read the {request.side}'s indices: {snapshot.error}")
        return snapshot.node, snapshot

    @activity.defn(name="follow_leader")
    async def follow(self, request: FollowInput) -> FollowResult:
        """Makes the follower side's storefront indices replicate from the leader's: its own
        copies are deleted (they are stale: that is why it is re-seeded) and replication is
        started for each index the leader's aliases point at. Idempotent: an index already
        following the right leader index is left alone."""
        result = FollowResult()
        async with probe_client(
            request.follower, request.timeout_seconds, transport=self.transport
        ) as client:
            fetch = httpx_fetch(client, request.timeout_seconds)
            mine = await read_side_data(
                fetch,
                [str(n) for n in request.follower.nodes],
                request.follower_side,
                request.magento,
                "none",
            )
            if mine.error is not None or mine.node is None:
                raise ApplicationError(f"cannot read the {request.follower_side}: {mine.error}")
            base = mine.node
            for alias in request.leader.aliases:
                if not alias.indices:
                    raise ApplicationError(
                        f"the leader has no index behind {alias.alias}: nothing to follow",
                        non_retryable=True,
                    )
                own = mine.alias(alias.alias)
                for index in own.indices if own is not None else []:
                    if index not in alias.indices:
                        await _delete_copy(client, base, index, request.kind)
                        result.deleted.append(index)
                for index in alias.indices:
                    if await _index_exists(client, base, index):
                        state = await read_follower(fetch, base, index, request.kind)
                        if state.status == "syncing" and state.leader_index == index:
                            result.already.append(index)
                            continue
                        await _delete_copy(client, base, index, request.kind)
                        result.deleted.append(index)
                    await _start_following(client, base, index, request)
                    result.started.append(index)
                activity.heartbeat(result.model_dump(mode="json"))
        return result

    @activity.defn(name=names.WAIT_FOLLOWERS_SYNCED_ACTIVITY)
    async def wait_synced(self, request: FollowInput) -> SyncResult:
        """Polls the follower's replication until every index syncs within the lag limit
        (progress in each heartbeat), or the sync timeout passes."""
        deadline = time.monotonic() + request.sync_timeout_seconds
        polls = 0
        progress: dict[str, object] = {"polls": 0, "problem": "not read yet", "followers": []}
        async with (
            probe_client(
                request.follower, request.timeout_seconds, transport=self.transport
            ) as client,
            _beating(progress),
        ):
            fetch = httpx_fetch(client, request.timeout_seconds)
            while True:
                polls += 1
                snapshot = await read_side_data(
                    fetch,
                    [str(n) for n in request.follower.nodes],
                    request.follower_side,
                    request.magento,
                    request.kind,
                )
                problem = _sync_problem(snapshot, request)
                progress.update(
                    polls=polls,
                    problem=problem,
                    followers=snapshot.model_dump(mode="json")["followers"],
                )
                if problem is None:
                    return SyncResult(synced=True, polls=polls, followers=snapshot.followers)
                if time.monotonic() + request.poll_seconds > deadline:
                    return SyncResult(
                        synced=False, polls=polls, followers=snapshot.followers, problem=problem
                    )
                await asyncio.sleep(request.poll_seconds)

    @activity.defn(name="check_search_indices")
    async def check_indices(self, request: WriteCheckInput) -> CheckResult:
        """Through the switched name: every alias resolves and holds documents."""
        async with self._path_client(request) as (client, base, problem):
            if problem is not None:
                return CheckResult(name="search_indices", problem=problem)
            missing: list[str] = []
            counts: list[str] = []
            for alias in request.aliases:
                try:
                    response = await client.get(f"{base}/{quote(alias)}/_count")
                except httpx.HTTPError as exc:
                    return CheckResult(
                        name="search_indices",
                        problem=f"indices check failed: {type(exc).__name__}: {exc}",
                    )
                count = _count(response)
                if count is None or count == 0:
                    missing.append(f"{alias} (HTTP {response.status_code}, count {count})")
                else:
                    counts.append(f"{alias} {count}")
        if missing:
            return CheckResult(
                name="search_indices",
                problem=f"alias missing through {request.url}: {', '.join(missing)}",
            )
        return CheckResult(name="search_indices", problem=None, detail=", ".join(counts))

    @activity.defn(name="check_search_writes")
    async def check_writes(self, request: WriteCheckInput) -> CheckResult:
        """Through the switched name: a write reaches every alias (then is deleted)."""
        async with self._path_client(request) as (client, base, problem):
            if problem is None:
                problem = await _write_check(client, base, request.aliases)
        return CheckResult(
            name="search_writes",
            problem=problem,
            detail="" if problem else f"wrote and deleted {WRITE_CHECK_ID} in each alias",
        )

    @contextlib.asynccontextmanager
    async def _path_client(
        self, request: WriteCheckInput
    ) -> AsyncIterator[tuple[httpx.AsyncClient, str, str | None]]:
        """An httpx client aimed at the switched name, resolved as Magento resolves it:
        (client, base URL, why the name did not resolve or None)."""
        url = httpx.URL(request.url)
        address, problem = url.host, None
        if request.nameserver is not None:
            try:
                resolved = await resolve_all(url.host, request.nameserver, request.timeout_seconds)
                address = resolved[0]
            except (dns.exception.DNSException, OSError) as exc:
                problem = f"cannot resolve {url.host}: {exc}"
        async with probe_client(
            request.side, request.timeout_seconds, transport=self.transport
        ) as client:
            client.headers["host"] = url.netloc.decode()
            yield client, str(url.copy_with(host=address)).rstrip("/"), problem


@contextlib.asynccontextmanager
async def _beating(progress: dict[str, object]) -> AsyncIterator[None]:
    """Heartbeats the progress every half second, reads included (the worker's automatic
    beats would overwrite it with nothing)."""

    async def beat() -> None:
        while True:
            activity.heartbeat(dict(progress))
            await asyncio.sleep(BEAT_EVERY_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _count(response: httpx.Response) -> int | None:
    if response.status_code != 200:
        return None
    try:
        return int(response.json()["count"])
    except (ValueError, KeyError, TypeError):
        return None


def _sync_problem(snapshot: DataSnapshot, request: FollowInput) -> str | None:
    if snapshot.error is not None:
        return f"cannot read the {request.follower_side}: {snapshot.error}"
    wanted = {i for a in request.leader.aliases for i in a.indices}
    for index in sorted(wanted):
        state = snapshot.follower(index)
        if state is None:
            return f"{index}: not behind any storefront alias on the {request.follower_side} yet"
        if state.status != "syncing":
            return f"{index}: {state.status}" + (f" ({state.reason})" if state.reason else "")
        lag = state.lag_operations
        if lag is None or lag > request.max_lag_operations:
            return f"{index}: syncing, {lag} operations behind"
    for alias in request.leader.aliases:
        mine = snapshot.alias(alias.alias)
        if mine is None or set(mine.indices) != set(alias.indices):
            return f"{alias.alias}: not yet pointing at {', '.join(alias.indices)}"
    return None


async def _post(client: httpx.AsyncClient, url: str, body: object | None = None) -> httpx.Response:
    try:
        return await client.post(url, json=body if body is not None else {})
    except httpx.TransportError as exc:
        raise ApplicationError(f"POST {_path(url)}: {type(exc).__name__}: {exc}") from None


def _refused(response: httpx.Response, what: str) -> ApplicationError:
    error = _error_type(response.content)
    # 4xx but 408/429: the request is wrong for this index's state; retrying will not help.
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
    return ApplicationError(
        f"{what}: HTTP {response.status_code} {error}".rstrip(),
        type="ClusterChangeRefused",
        non_retryable=permanent,
    )


async def _promote_index(
    client: httpx.AsyncClient, base: str, index: str, kind: ReplicationKind
) -> bool:
    """Stops replication on one follower index; False when it had already stopped."""
    name = quote(index)
    if kind == "opensearch":
        response = await _post(client, f"{base}/_plugins/_replication/{name}/_stop")
        if response.status_code == 200:
            return True
        if "No replication in progress" in response.text:
            return False
        raise _refused(response, f"stop replication of {index}")
    # Elasticsearch: pause, close, unfollow, open; each step is skipped once done.
    fetch = httpx_fetch(client, 30)
    state = await read_follower(fetch, base, index, kind)
    if state.status == "not_following":
        await _open(client, base, index)
        return False
    if state.status != "paused":
        response = await _post(client, f"{base}/{name}/_ccr/pause_follow")
        if response.status_code != 200:
            raise _refused(response, f"pause following of {index}")
    response = await _post(client, f"{base}/{name}/_close")
    if response.status_code != 200:
        raise _refused(response, f"close {index}")
    response = await _post(client, f"{base}/{name}/_ccr/unfollow")
    if response.status_code != 200:
        raise _refused(response, f"unfollow {index}")
    await _open(client, base, index)
    return True


async def _open(client: httpx.AsyncClient, base: str, index: str) -> None:
    response = await _post(client, f"{base}/{quote(index)}/_open")
    if response.status_code != 200:
        raise _refused(response, f"open {index}")


async def _write_check(client: httpx.AsyncClient, base: str, aliases: list[str]) -> str | None:
    """A write through each alias, deleted again; None when every one succeeded."""
    stamp = datetime.now(UTC).isoformat()
    for alias in aliases:
        url = f"{base}/{quote(alias)}/_doc/{WRITE_CHECK_ID}"
        try:
            written = await client.put(url, json={"search_failover_write_check": stamp})
            if written.status_code not in (200, 201):
                error = _error_type(written.content) or written.text[:200]
                return f"writes fail: {alias}: HTTP {written.status_code} {error}"
            deleted = await client.delete(url)
        except httpx.TransportError as exc:
            return f"writes fail: {alias}: {type(exc).__name__}: {exc}"
        if deleted.status_code not in (200, 404):
            return (
                f"writes fail: deleting the check document from {alias}: HTTP {deleted.status_code}"
            )
    return None


async def _index_exists(client: httpx.AsyncClient, base: str, index: str) -> bool:
    try:
        response = await client.get(f"{base}/{quote(index)}")
    except httpx.TransportError as exc:
        raise ApplicationError(f"GET /{index}: {type(exc).__name__}: {exc}") from None
    return response.status_code == 200


async def _delete_copy(
    client: httpx.AsyncClient, base: str, index: str, kind: ReplicationKind
) -> None:
    """Deletes this side's own copy of an index; an OpenSearch follower refuses to be
    deleted (its replication block covers metadata), so its replication is stopped first."""
    if kind == "opensearch":
        state = await read_follower(httpx_fetch(client, 30), base, index, kind)
        if state.status != "not_following":
            response = await _post(client, f"{base}/_plugins/_replication/{quote(index)}/_stop")
            if response.status_code != 200 and "No replication in progress" not in response.text:
                raise _refused(response, f"stop replication of {index} before deleting it")
    await _delete_index(client, base, index)


async def _delete_index(client: httpx.AsyncClient, base: str, index: str) -> None:
    try:
        response = await client.delete(f"{base}/{quote(index)}")
    except httpx.TransportError as exc:
        raise ApplicationError(f"DELETE /{index}: {type(exc).__name__}: {exc}") from None
    if response.status_code not in (200, 404):
        raise _refused(response, f"delete {index}")


async def _start_following(
    client: httpx.AsyncClient, base: str, index: str, request: FollowInput
) -> None:
    name = quote(index)
    try:
        if request.kind == "opensearch":
            response = await client.put(
                f"{base}/_plugins/_replication/{name}/_start",
                json={"leader_alias": request.connection, "leader_index": index},
            )
        else:
            response = await client.put(
                f"{base}/{name}/_ccr/follow?wait_for_active_shards=1",
                json={"remote_cluster": request.connection, "leader_index": index},
            )
    except httpx.TransportError as exc:
        raise ApplicationError(f"start following {index}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise _refused(response, f"start following {index} from {request.connection}")
