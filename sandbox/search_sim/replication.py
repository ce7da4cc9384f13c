"""Cross-cluster replication as each distribution exposes it: the OpenSearch replication
plugin (`/_plugins/_replication/...`) and Elasticsearch CCR (`/<index>/_ccr/...`).

Followers copy the leader's operations with their seq_nos. They sync lazily: whenever the
follower cluster is asked anything, each following index replays what its leader has
written since (minus an injected lag), unless the leader cannot be reached (all its nodes
down or hung, or no master), in which case it keeps what it has and the last leader
checkpoint it saw. A deleted leader index pauses an OpenSearch follower (the plugin's
auto-pause) and gives an Elasticsearch follower a fatal exception, as the real ones do.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sandbox.search_sim.errors import ApiError, BadRequest, IndexNotFound
from sandbox.search_sim.indices import (
    FollowerLink,
    Index,
    copy_index,
    store_alias,
    validate_index_name,
)
from sandbox.search_sim.routes import INDEX, Ctx, Reply, Route, split_names

if TYPE_CHECKING:
    from sandbox.search_sim.cluster import SimulatedCluster

FaultKind = Literal["pause", "fail", "resume", "lag", "sync"]
FAULT_KINDS: tuple[str, ...] = ("pause", "fail", "resume", "lag", "sync")
USER_INITIATED = "User initiated"
_PREFIX = ("_plugins", "_replication")
# Elasticsearch's FollowParameters defaults, as GET /<index>/_ccr/info reports them.
_ES_FOLLOW_PARAMETERS: dict[str, Any] = {
    "max_read_request_operation_count": 5120,
    "max_read_request_size": "32mb",
    "max_outstanding_read_requests": 12,
    "max_write_request_operation_count": 5120,
    "max_write_request_size": "9223372036854775807b",
    "max_outstanding_write_requests": 9,
    "max_write_buffer_count": 2147483647,
    "max_write_buffer_size": "512mb",
    "max_retry_delay": "500ms",
    "read_poll_timeout": "1m",
}
_ES_FOLLOW_FIELDS = {"remote_cluster", "leader_index", "settings", "data_stream_name"} | set(
    _ES_FOLLOW_PARAMETERS
)


@dataclass
class AutoFollowRule:
    """An OpenSearch replication rule: new leader indices matching `pattern` get followed."""

    connection: str
    name: str
    pattern: str
    use_roles: dict[str, Any] | None = None
    success: int = 0
    failed: int = 0
    failed_leader_calls: int = 0
    failed_indices: list[str] = field(default_factory=list)
    last_execution: int = 0
    last_failed_call: float = 0.0


@dataclass
class LeaderReads:
    """What followers read from one leader index (the leader_stats counters)."""

    operations: int = 0
    bytes: int = 0
    read_time_ms: int = 0


def _no_such_remote(connection: str) -> ApiError:
    return ApiError(
        404, "no_such_remote_cluster_exception", f"no such remote cluster: [{connection}]"
    )


def _unreachable(connection: str) -> ApiError:
    return ApiError(
        500,
        "connect_transport_exception",
        f"[{connection}] connect_exception: no node of the remote cluster is reachable",
    )


class Replication:
    """One cluster's side of replication: its remote connections, the followers it holds,
    its autofollow rules and what followers read from it as a leader."""

    def __init__(self, cluster: SimulatedCluster) -> None:
        self.cluster = cluster
        self.remotes: dict[str, SimulatedCluster] = {}
        self.rules: dict[tuple[str, str], AutoFollowRule] = {}
        self.served: dict[str, LeaderReads] = {}
        # How often each index was turned from a follower into a plain index (stop, or
        # unfollow): a promotion repeated after a crash would show here.
        self.promotions: dict[str, int] = {}

    # ------------------------------------------------------------------ model

    def connect(self, name: str, leader: SimulatedCluster) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"invalid remote connection name {name!r}")
        if leader is self.cluster:
            raise ValueError(f"cluster {self.cluster.name!r} cannot follow itself")
        self.remotes[name] = leader

    def leader(self, connection: str) -> SimulatedCluster:
        try:
            return self.remotes[connection]
        except KeyError:
            raise _no_such_remote(connection) from None

    def followers(self) -> list[Index]:
        return [i for i in self.cluster.data.indices.values() if i.follower is not None]

    def refresh(self) -> None:
        """Bring every syncing follower up to date, and let autofollow rules act."""
        for index in self.followers():
            self._sync(index)
        if self.rules:
            self._autofollow()

    def _sync(self, index: Index) -> None:
        link = index.follower
        if link is None or link.state != "syncing":
            return
        leader = self.remotes.get(link.connection)
        if leader is None or not leader.serves_followers():
            link.failed_reads += 1
            return
        source = leader.data.get(link.leader_index)
        if source is None or source.uuid != link.leader_uuid:
            self._leader_gone(link)
            return
        link.leader_checkpoint = source.checkpoint
        ops = source.ops_after(index.checkpoint, source.checkpoint - link.lag)
        interval = self.cluster.follower_read_interval_s
        if interval:
            # A follower polls: what the leader took in the last interval is not read yet.
            cutoff = time.monotonic() - interval
            ops = list(itertools.takewhile(lambda op: op.written_at <= cutoff, ops))
        size = sum(len(json.dumps(op.source or {})) + 32 for op in ops)
        for op in ops:
            index.apply(op)
        link.last_read = time.monotonic()
        link.successful_reads += 1
        link.read_time_ms += 1
        if ops:
            link.operations_read += len(ops)
            link.operations_written += len(ops)
            link.bytes_read += size
            link.successful_writes += 1
            link.write_time_ms += len(ops)
            leader.replication.note_read(source.name, len(ops), size)

    def note_read(self, leader_index: str, operations: int, size: int) -> None:
        reads = self.served.setdefault(leader_index, LeaderReads())
        reads.operations += operations
        reads.bytes += size
        reads.read_time_ms += 1

    @staticmethod
    def _leader_gone(link: FollowerLink) -> None:
        name = link.leader_index
        if link.flavour == "opensearch":
            link.state = "paused"
            link.reason = (
                f"AutoPaused: [[{name}][0] - org.opensearch.index.IndexNotFoundException - "
                f'"no such index [{name}]"], '
            )
            return
        link.state = "failed"
        link.fatal = {
            "type": "index_not_found_exception",
            "reason": f"no such index [{name}]",
            "resource.type": "index_or_alias",
            "resource.id": name,
            "index_uuid": "_na_",
            "index": name,
        }

    def start(
        self,
        follower: str,
        connection: str,
        leader_index: str,
        *,
        use_roles: dict[str, Any] | None = None,
    ) -> Index:
        """Bootstrap a follower from the leader's index, as `_start` / `_ccr/follow` do."""
        leader = self.leader(connection)
        if not leader.serves_followers():
            raise _unreachable(connection)
        source = leader.data.get(leader_index)
        if source is None:
            raise IndexNotFound(leader_index)
        local = self.cluster.data
        flavour = self.cluster.distribution
        if follower in local.indices:
            if flavour == "opensearch":
                raise BadRequest(
                    "illegal_argument_exception",
                    f"Cant use same index again for replication. Delete the index:{follower}",
                )
            raise ApiError(
                500,
                "snapshot_restore_exception",
                f"[_ccr_{connection}:_latest_/_latest_] cannot restore index [{follower}] "
                "because an open index with same name already exists in the cluster. Either "
                "close or delete the existing index or restore the index under a different "
                "name by providing a rename pattern and replacement name",
            )
        validate_index_name(follower)
        if local.is_alias(follower):
            raise BadRequest(
                "invalid_index_name_exception",
                f"Invalid index name [{follower}], already exists as alias",
                index_uuid="_na_",
                index=follower,
            )
        index = copy_index(source, follower)
        index.aliases = {a for a in source.aliases if a not in local.indices}
        index.follower = FollowerLink(
            flavour,
            connection,
            leader_index,
            source.uuid,
            leader_checkpoint=source.checkpoint,
            use_roles=use_roles,
        )
        local.add(index)
        leader.replication.served.setdefault(leader_index, LeaderReads())
        return index

    def _autofollow(self) -> None:
        local = self.cluster.data
        now = time.monotonic()
        for rule in self.rules.values():
            rule.last_execution = int(time.time() * 1000)
            leader = self.remotes.get(rule.connection)
            if leader is None or not leader.serves_followers():
                if now - rule.last_failed_call >= 1.0:
                    rule.failed_leader_calls += 1
                    rule.last_failed_call = now
                continue
            for name in sorted(leader.data.indices):
                if name.startswith(".") or not fnmatch.fnmatchcase(name, rule.pattern):
                    continue
                if name in local.indices or name in rule.failed_indices:
                    continue
                try:
                    if leader.data.indices[name].follower is not None:
                        raise BadRequest(
                            "illegal_argument_exception",
                            f"Cannot Replicate a Replicated Index {name}",
                        )
                    self.start(name, rule.connection, name, use_roles=rule.use_roles)
                    rule.success += 1
                except (ApiError, IndexNotFound):
                    rule.failed += 1
                    rule.failed_indices.append(name)

    # ------------------------------------------------------------------ Python API

    def follow_all(self, connection: str) -> list[str]:
        """Every store's versioned index (same name as on the leader) becomes a follower."""
        try:
            leader = self.leader(connection)
        except ApiError as exc:
            raise ValueError(str(exc.reason)) from None
        local = self.cluster.data
        started: list[str] = []
        for store in self.cluster.stores:
            alias = store_alias(self.cluster.index_prefix, store)
            sources = leader.data.alias_indices(alias)
            if not sources:
                raise ValueError(f"the leader {leader.name!r} has no index behind alias {alias!r}")
            for own in local.alias_indices(alias):
                local.drop(own.name)
            for source in sources:
                if source.name in local.indices:
                    local.drop(source.name)
                try:
                    self.start(source.name, connection, source.name)
                except (ApiError, IndexNotFound) as exc:
                    raise ValueError(f"cannot follow {source.name}: {exc}") from None
                started.append(source.name)
        return started

    def fault(self, kind: str, index: str | None = None, operations: int = 0) -> list[str]:
        """Pause, fail, resume, lag or sync followers; returns the indices it touched."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"invalid kind {kind!r}; expected one of: {', '.join(FAULT_KINDS)}")
        if isinstance(operations, bool) or not isinstance(operations, int) or operations < 0:
            raise ValueError(f"invalid operations {operations!r}: expected a non-negative integer")
        if kind in ("pause", "fail"):
            # Real followers are near real time: what the leader wrote before the fault is
            # replicated. A lag, though, holds back what the follower has not read yet.
            self.refresh()
        if index is None:
            targets = self.followers()
        else:
            named = self.cluster.data.get(index)
            targets = [named] if named is not None else self.cluster.data.alias_indices(index)
            if not targets:
                raise ValueError(f"cluster {self.cluster.name!r} has no index or alias {index!r}")
            targets = [t for t in targets if t.follower is not None]
            if not targets:
                raise ValueError(f"{index!r} on {self.cluster.name!r} is not a follower index")
        for target in targets:
            link = target.follower
            assert link is not None
            if kind == "pause":
                link.state, link.reason, link.fatal = "paused", USER_INITIATED, None
            elif kind == "fail":
                link.state = "failed"
                link.reason = (
                    f"[[{target.name}][0] - org.opensearch.replication.ReplicationException - "
                    '"Unable to replicate operations from the leader index"], '
                )
                link.fatal = {
                    "type": "illegal_state_exception",
                    "reason": "unable to replicate operations from the leader index",
                }
            elif kind == "resume":
                link.state, link.reason, link.fatal = "syncing", USER_INITIATED, None
            elif kind == "lag":
                link.lag = operations
            else:
                link.lag = 0
        self.refresh()
        return [t.name for t in targets]

    def describe(self, index: Index) -> dict[str, Any] | None:
        link = index.follower
        if link is None:
            return None
        return {
            "flavour": link.flavour,
            "connection": link.connection,
            "leader_index": link.leader_index,
            "status": link.state,
            "reason": link.reason if link.flavour == "opensearch" else None,
            "fatal_exception": link.fatal,
            "leader_checkpoint": link.leader_checkpoint,
            "follower_checkpoint": index.checkpoint,
            "lag": link.lag,
        }

    # ------------------------------------------------------------------ REST surface

    def routes(self) -> list[Route]:
        os, es = "opensearch", "elasticsearch"
        return [
            Route(("PUT",), (*_PREFIX, INDEX, "_start"), self._os_start, only=os),
            Route(("POST",), (*_PREFIX, INDEX, "_stop"), self._os_stop, only=os),
            Route(("POST",), (*_PREFIX, INDEX, "_pause"), self._os_pause, only=os),
            Route(("POST",), (*_PREFIX, INDEX, "_resume"), self._os_resume, only=os),
            Route(("GET",), (*_PREFIX, INDEX, "_status"), self._os_status, only=os),
            Route(("GET",), (*_PREFIX, "follower_stats"), self._os_follower_stats, only=os),
            Route(("GET",), (*_PREFIX, "leader_stats"), self._os_leader_stats, only=os),
            Route(("GET",), (*_PREFIX, "autofollow_stats"), self._os_autofollow_stats, only=os),
            Route(("POST", "DELETE"), (*_PREFIX, "_autofollow"), self._os_autofollow, only=os),
            Route(("PUT",), (INDEX, "_ccr", "follow"), self._es_follow, only=es),
            Route(("POST",), (INDEX, "_ccr", "pause_follow"), self._es_pause, only=es),
            Route(("POST",), (INDEX, "_ccr", "resume_follow"), self._es_resume, only=es),
            Route(("POST",), (INDEX, "_ccr", "unfollow"), self._es_unfollow, only=es),
            Route(("GET",), (INDEX, "_ccr", "stats"), self._es_index_stats, only=es),
            Route(("GET",), (INDEX, "_ccr", "info"), self._es_info, only=es),
            Route(("GET",), ("_ccr", "stats"), self._es_stats, only=es),
        ]

    # ------------------------------------------------------------------ OpenSearch plugin

    def _os_link(self, name: str) -> tuple[Index, FollowerLink]:
        index = self.cluster.data.get(name)
        if index is None or index.follower is None:
            raise BadRequest(
                "illegal_argument_exception", f"No replication in progress for index:{name}"
            )
        return index, index.follower

    async def _os_start(self, ctx: Ctx) -> Reply:
        body = await ctx.object_body(required=True)
        unknown = sorted(set(body) - {"leader_alias", "leader_index", "use_roles", "settings"})
        if unknown:
            raise BadRequest(
                "x_content_parse_exception",
                f"[1:2] [FollowIndexRequestParser] unknown field [{unknown[0]}]",
            )
        roles = body.get("use_roles")
        problems = []
        if not isinstance(body.get("leader_alias"), str) or not isinstance(
            body.get("leader_index"), str
        ):
            problems.append("Mandatory params are missing for the request")
        if roles is not None and (
            not isinstance(roles, dict)
            or not roles.get("leader_cluster_role")
            or not roles.get("follower_cluster_role")
        ):
            problems.append("Need roles for leader_cluster_role and follower_cluster_role")
        if problems:
            listed = "".join(f"{n}: {p};" for n, p in enumerate(problems, start=1))
            raise BadRequest("action_request_validation_exception", f"Validation Failed: {listed}")
        self.start(ctx.args["index"], body["leader_alias"], body["leader_index"], use_roles=roles)
        return Reply({"acknowledged": True})

    async def _os_stop(self, ctx: Ctx) -> Reply:
        await ctx.body()
        index, _ = self._os_link(ctx.args["index"])
        index.follower = None
        index.settings_version += 1
        self.promotions[index.name] = self.promotions.get(index.name, 0) + 1
        return Reply({"acknowledged": True})

    async def _os_pause(self, ctx: Ctx) -> Reply:
        body = await ctx.object_body()
        name = ctx.args["index"]
        _, link = self._os_link(name)
        if link.state == "paused":
            raise BadRequest("resource_already_exists_exception", f"Index {name} is already paused")
        if link.state == "failed":
            raise ApiError(
                500, "illegal_state_exception", "Unknown value of replication state:FAILED"
            )
        link.state = "paused"
        link.reason = str(body.get("reason") or USER_INITIATED)
        return Reply({"acknowledged": True})

    async def _os_resume(self, ctx: Ctx) -> Reply:
        await ctx.body()
        name = ctx.args["index"]
        index, link = self._os_link(name)
        if link.state != "paused":
            raise BadRequest(
                "resource_already_exists_exception",
                f"Replication on Index {name} is already running",
            )
        leader = self.leader(link.connection)
        if not leader.serves_followers():
            raise _unreachable(link.connection)
        source = leader.data.get(link.leader_index)
        if source is None or source.uuid != link.leader_uuid:
            full = f"{link.connection}:{link.leader_index}"
            raise ApiError(
                404,
                "index_not_found_exception",
                f"no such index [{full}]",
                **{"resource.type": "index_or_alias", "resource.id": full},
                index_uuid="_na_",
                index=full,
            )
        link.state, link.reason = "syncing", USER_INITIATED
        self._sync(index)
        return Reply({"acknowledged": True})

    async def _os_status(self, ctx: Ctx) -> Reply:
        name = ctx.args["index"]
        index = self.cluster.data.get(name)
        link = index.follower if index is not None else None
        if index is None or link is None:
            return Reply({"status": "REPLICATION NOT IN PROGRESS"})
        body: dict[str, Any] = {
            "status": {"syncing": "SYNCING", "paused": "PAUSED", "failed": "FAILED"}[link.state],
            "reason": link.reason,
            "leader_alias": link.connection,
            "leader_index": link.leader_index,
            "follower_index": index.name,
        }
        if link.state == "syncing":
            body["syncing_details"] = {
                "leader_checkpoint": link.leader_checkpoint,
                "follower_checkpoint": index.checkpoint,
                "seq_no": index.checkpoint + 1,
            }
        return Reply(body)

    @staticmethod
    def _os_index_stats(index: Index, link: FollowerLink) -> dict[str, int]:
        return {
            "operations_written": link.operations_written,
            "operations_read": link.operations_read,
            "failed_read_requests": link.failed_reads,
            "throttled_read_requests": 0,
            "failed_write_requests": 0,
            "throttled_write_requests": 0,
            "follower_checkpoint": index.checkpoint,
            "leader_checkpoint": link.leader_checkpoint,
            "total_write_time_millis": link.write_time_ms,
        }

    async def _os_follower_stats(self, ctx: Ctx) -> Reply:
        followers = [(i, i.follower) for i in self.followers() if i.follower is not None]
        syncing = {
            i.name: self._os_index_stats(i, link)
            for i, link in followers
            if link.state == "syncing"
        }
        totals = dict.fromkeys(
            (
                "operations_written",
                "operations_read",
                "failed_read_requests",
                "throttled_read_requests",
                "failed_write_requests",
                "throttled_write_requests",
                "follower_checkpoint",
                "leader_checkpoint",
                "total_write_time_millis",
            ),
            0,
        )
        for stats in syncing.values():
            for key, value in stats.items():
                totals[key] += value
        return Reply(
            {
                "num_syncing_indices": len(syncing),
                "num_bootstrapping_indices": 0,
                "num_paused_indices": sum(1 for _, link in followers if link.state == "paused"),
                "num_failed_indices": sum(1 for _, link in followers if link.state == "failed"),
                "num_shard_tasks": len(syncing),
                "num_index_tasks": len(syncing),
                **totals,
                "index_stats": dict(sorted(syncing.items())),
            }
        )

    async def _os_leader_stats(self, ctx: Ctx) -> Reply:
        served = {
            name: reads
            for name, reads in sorted(self.served.items())
            if name in self.cluster.data.indices
        }

        def fields(reads: LeaderReads) -> dict[str, int]:
            return {
                "operations_read": reads.operations,
                "translog_size_bytes": reads.bytes,
                "operations_read_lucene": 0,
                "operations_read_translog": reads.operations,
                "total_read_time_lucene_millis": 0,
                "total_read_time_translog_millis": reads.read_time_ms,
                "bytes_read": reads.bytes,
            }

        total = LeaderReads(
            sum(r.operations for r in served.values()),
            sum(r.bytes for r in served.values()),
            sum(r.read_time_ms for r in served.values()),
        )
        return Reply(
            {
                "num_replicated_indices": len(served),
                **fields(total),
                "index_stats": {name: fields(reads) for name, reads in served.items()},
            }
        )

    async def _os_autofollow(self, ctx: Ctx) -> Reply:
        body = await ctx.object_body(required=True)
        connection, name = body.get("leader_alias"), body.get("name")
        if not isinstance(connection, str) or not isinstance(name, str):
            raise BadRequest(
                "action_request_validation_exception",
                "Validation Failed: 1: Mandatory params are missing for the request;",
            )
        if ctx.request.method == "DELETE":
            self.rules.pop((connection, name), None)
            return Reply({"acknowledged": True})
        pattern = body.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ApiError(
                500, "replication_exception", "Failed to update empty autofollow pattern"
            )
        self.leader(connection)
        self.rules[(connection, name)] = AutoFollowRule(
            connection, name, pattern, body.get("use_roles")
        )
        self._autofollow()
        return Reply({"acknowledged": True})

    async def _os_autofollow_stats(self, ctx: Ctx) -> Reply:
        rules = list(self.rules.values())

        def fields(rule: AutoFollowRule) -> dict[str, Any]:
            return {
                "name": rule.name,
                "pattern": rule.pattern,
                "num_success_start_replication": rule.success,
                "num_failed_start_replication": rule.failed,
                "num_failed_leader_calls": rule.failed_leader_calls,
                "failed_indices": list(rule.failed_indices),
                "last_execution_time": rule.last_execution,
            }

        return Reply(
            {
                "num_success_start_replication": sum(r.success for r in rules),
                "num_failed_start_replication": sum(r.failed for r in rules),
                "num_failed_leader_calls": sum(r.failed_leader_calls for r in rules),
                "failed_indices": [i for r in rules for i in r.failed_indices],
                "autofollow_stats": [fields(r) for r in rules],
            }
        )

    # ------------------------------------------------------------------ Elasticsearch CCR

    def _es_follower(self, name: str) -> tuple[Index, FollowerLink]:
        index = self.cluster.data.get(name)
        if index is None:
            raise IndexNotFound(name)
        if index.follower is None:
            raise BadRequest(
                "illegal_argument_exception", f"index [{name}] is not a follower index"
            )
        return index, index.follower

    async def _es_follow(self, ctx: Ctx) -> Reply:
        body = await ctx.object_body(required=True)
        unknown = sorted(set(body) - _ES_FOLLOW_FIELDS)
        if unknown:
            raise BadRequest(
                "x_content_parse_exception",
                f"[1:2] [put_follow_request] unknown field [{unknown[0]}]",
            )
        missing = [f for f in ("remote_cluster", "leader_index") if not body.get(f)]
        if missing:
            listed = "".join(f"{n}: [{f}] is missing;" for n, f in enumerate(missing, start=1))
            raise BadRequest("action_request_validation_exception", f"Validation Failed: {listed}")
        self.start(ctx.args["index"], str(body["remote_cluster"]), str(body["leader_index"]))
        return Reply(
            {
                "follow_index_created": True,
                "follow_index_shards_acked": True,
                "index_following_started": True,
            }
        )

    async def _es_pause(self, ctx: Ctx) -> Reply:
        name = ctx.args["index"]
        _, link = self._es_follower(name)
        if link.state == "paused":
            raise BadRequest("illegal_argument_exception", f"no shard follow tasks for [{name}]")
        link.state, link.fatal = "paused", None
        return Reply({"acknowledged": True})

    async def _es_resume(self, ctx: Ctx) -> Reply:
        await ctx.body()
        name = ctx.args["index"]
        index = self.cluster.data.get(name)
        if index is None:
            raise IndexNotFound(name)
        link = index.follower
        if link is None:
            raise BadRequest(
                "illegal_argument_exception", f"follow index [{name}] does not have ccr metadata"
            )
        if link.state != "paused":
            raise BadRequest(
                "resource_already_exists_exception",
                f"task with id {{{index.uuid}-0}} already exist",
            )
        leader = self.leader(link.connection)
        if not leader.serves_followers():
            raise _unreachable(link.connection)
        if leader.data.get(link.leader_index) is None:
            raise IndexNotFound(link.leader_index)
        link.state = "syncing"
        self._sync(index)
        return Reply({"acknowledged": True})

    async def _es_unfollow(self, ctx: Ctx) -> Reply:
        name = ctx.args["index"]
        index, link = self._es_follower(name)
        if index.is_open:
            raise BadRequest(
                "illegal_argument_exception",
                f"cannot convert the follower index [{name}] to a non-follower, because it has "
                "not been closed",
            )
        if link.state != "paused":
            raise BadRequest(
                "illegal_argument_exception",
                f"cannot convert the follower index [{name}] to a non-follower, because it has "
                "not been paused",
            )
        index.follower = None
        index.settings_version += 1
        self.promotions[index.name] = self.promotions.get(index.name, 0) + 1
        return Reply({"acknowledged": True})

    def _es_shard_stats(self, index: Index, link: FollowerLink) -> dict[str, Any]:
        since = int((time.monotonic() - link.last_read) * 1000)
        stats: dict[str, Any] = {
            "remote_cluster": link.connection,
            "leader_index": link.leader_index,
            "follower_index": index.name,
            "shard_id": 0,
            "leader_global_checkpoint": link.leader_checkpoint,
            "leader_max_seq_no": link.leader_checkpoint,
            "follower_global_checkpoint": index.checkpoint,
            "follower_max_seq_no": index.checkpoint,
            "last_requested_seq_no": index.checkpoint,
            "outstanding_read_requests": 0 if link.fatal else 1,
            "outstanding_write_requests": 0,
            "write_buffer_operation_count": 0,
            "follower_mapping_version": index.mapping_version,
            "follower_settings_version": index.settings_version,
            "follower_aliases_version": index.aliases_version,
            "total_read_time_millis": link.read_time_ms,
            "total_read_remote_exec_time_millis": link.read_time_ms // 2,
            "successful_read_requests": link.successful_reads,
            "failed_read_requests": link.failed_reads,
            "operations_read": link.operations_read,
            "bytes_read": link.bytes_read,
            "total_write_time_millis": link.write_time_ms,
            "write_buffer_size_in_bytes": 0,
            "successful_write_requests": link.successful_writes,
            "failed_write_requests": 0,
            "operations_written": link.operations_written,
            "read_exceptions": [],
            "time_since_last_read_millis": since,
        }
        if link.fatal:
            stats["fatal_exception"] = dict(link.fatal)
        return stats

    def _es_indices_stats(self, indices: list[Index]) -> list[dict[str, Any]]:
        result = []
        for index in indices:
            link = index.follower
            if link is None or link.state == "paused":
                continue  # a paused follower has no shard follow tasks to report
            shard = self._es_shard_stats(index, link)
            lag = max(0, shard["leader_global_checkpoint"] - shard["follower_global_checkpoint"])
            result.append(
                {"index": index.name, "total_global_checkpoint_lag": lag, "shards": [shard]}
            )
        return result

    async def _es_index_stats(self, ctx: Ctx) -> Reply:
        expression = ctx.args["index"]
        indices = self.cluster.data.resolve(
            expression, include_closed=True, ignore_unavailable=True
        )
        stats = self._es_indices_stats(indices)
        if not stats and not any(p in ("_all", "*") for p in split_names(expression)):
            raise ApiError(
                404,
                "resource_not_found_exception",
                f"No shard follow tasks for follower indices [{expression}]",
            )
        return Reply({"indices": stats})

    async def _es_stats(self, ctx: Ctx) -> Reply:
        return Reply(
            {
                "auto_follow_stats": {
                    "number_of_failed_follow_indices": 0,
                    "number_of_failed_remote_cluster_state_requests": 0,
                    "number_of_successful_follow_indices": 0,
                    "recent_auto_follow_errors": [],
                    "auto_followed_clusters": [],
                },
                "follow_stats": {"indices": self._es_indices_stats(self.followers())},
            }
        )

    async def _es_info(self, ctx: Ctx) -> Reply:
        indices = self.cluster.data.resolve(ctx.args["index"], include_closed=True)
        infos = []
        for index in indices:
            link = index.follower
            if link is None:
                continue
            info: dict[str, Any] = {
                "follower_index": index.name,
                "remote_cluster": link.connection,
                "leader_index": link.leader_index,
                "status": "paused" if link.state == "paused" else "active",
            }
            if link.state != "paused":
                info["parameters"] = dict(_ES_FOLLOW_PARAMETERS)
            infos.append(info)
        return Reply({"follower_indices": infos})
