"""The index APIs a Magento storefront, its indexer and an operator use: search and count,
documents, index create/delete/open/close, aliases and settings, answered from the
cluster's index model in the shapes (and with the errors) of the real servers."""

from __future__ import annotations

import base64
import fnmatch
import time
import uuid
from typing import Any

from aiohttp import web

from sandbox.search_sim.cat import cat_aliases, cat_indices
from sandbox.search_sim.errors import ApiError, BadRequest, IndexNotFound
from sandbox.search_sim.faults import FaultMode
from sandbox.search_sim.indices import (
    Index,
    Shards,
    index_closed,
    inferred_mappings,
    shard_of,
    validate_index_name,
)
from sandbox.search_sim.query import compile_query, lucene_scorer, query_fields, source_filter
from sandbox.search_sim.routes import (
    INDEX,
    NAME,
    Ctx,
    Reply,
    Route,
    body_int,
    flag,
    int_param,
    split_names,
)

REPLICATION_BLOCK = "FORBIDDEN/1000/index read-only(cross-cluster-replication)"
WRITE_BLOCK = "FORBIDDEN/8/index write (api)"
FOLLOWING_ENGINE = (
    "a following engine does not accept operations without an assigned sequence number"
)


def routes() -> list[Route]:
    get, head = ("GET",), ("HEAD", "GET")
    return [
        Route(("GET", "POST"), ("_search",), search),
        Route(("GET", "POST"), (INDEX, "_search"), search),
        Route(("GET", "POST"), ("_count",), count),
        Route(("GET", "POST"), (INDEX, "_count"), count),
        Route(("HEAD", "GET", "PUT", "DELETE"), (INDEX,), index_endpoint),
        Route(head, ("_alias",), get_alias),
        Route(head, ("_alias", NAME), get_alias),
        Route(head, (INDEX, "_alias"), get_alias),
        Route(head, (INDEX, "_alias", NAME), get_alias),
        Route(("POST",), ("_aliases",), post_aliases),
        Route(get, ("_cat", "aliases"), cat_aliases),
        Route(get, ("_cat", "aliases", NAME), cat_aliases),
        Route(get, ("_cat", "indices"), cat_indices),
        Route(get, ("_cat", "indices", NAME), cat_indices),
        Route(("PUT", "POST"), (INDEX, "_doc", NAME), put_doc),
        Route(("HEAD", "GET"), (INDEX, "_doc", NAME), get_doc),
        Route(("DELETE",), (INDEX, "_doc", NAME), delete_doc),
        Route(("POST",), (INDEX, "_doc"), post_doc),
        Route(("PUT", "POST"), (INDEX, "_create", NAME), create_doc),
        Route(("GET", "POST"), ("_refresh",), refresh),
        Route(("GET", "POST"), (INDEX, "_refresh"), refresh),
        Route(("POST",), (INDEX, "_close"), close_index),
        Route(("POST",), (INDEX, "_open"), open_index),
        Route(get, ("_settings",), get_settings),
        Route(("GET", "PUT"), (INDEX, "_settings"), settings_endpoint),
    ]


# --------------------------------------------------------------------------- blocks


def blocked(index: Index, blocks: list[str]) -> ApiError:
    return ApiError(
        403,
        "cluster_block_exception",
        f"index [{index.name}] blocked by: [{', '.join(blocks)}];",
    )


def check_writable(index: Index) -> None:
    """What refuses a document write, in the order the real write path checks it."""
    if not index.is_open:
        raise index_closed(index)
    blocks = [WRITE_BLOCK] if index.write_block else []
    if index.follower is not None and index.follower.flavour == "opensearch":
        blocks.append(REPLICATION_BLOCK)
    if blocks:
        raise blocked(index, blocks)


def check_following_engine(index: Index) -> None:
    """An Elasticsearch follower's engine takes only operations replayed from its leader."""
    if index.follower is not None and index.follower.flavour == "elasticsearch":
        raise ApiError(403, "status_exception", FOLLOWING_ENGINE)


def check_metadata_writable(index: Index) -> None:
    """The replication plugin's block also covers metadata: delete, close, aliases."""
    if index.follower is not None and index.follower.flavour == "opensearch":
        raise blocked(index, [REPLICATION_BLOCK])


# --------------------------------------------------------------------------- search


def _scorer(params: Any, body: dict[str, Any]) -> Any:
    try:
        if "q" in params:
            default = query_fields(params.get("df", "*"))
            return lucene_scorer(params["q"], default, params.get("default_operator", "or"))
        return compile_query(body.get("query", {"match_all": {}}))
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadRequest("parsing_exception", f"failed to parse query: {exc}") from None


def _doc_order(doc_id: str) -> tuple[int, int, str]:
    return (0, int(doc_id), "") if doc_id.isdigit() else (1, 0, doc_id)


class _Matcher:
    """The part search and count share: which shards answer and which documents match."""

    def __init__(self, ctx: Ctx, indices: list[Index]) -> None:
        self.indices = indices
        placement = ctx.view.shards
        self.lost: dict[str, set[int]] = {}
        self.primaries: dict[str, int] = {}
        for index in indices:
            shards = index.shards(placement)
            dead = index.health_override == "red" or not shards.active
            self.primaries[index.name] = shards.primaries
            self.lost[index.name] = set(range(shards.primaries)) if dead else set(shards.lost)
        everything_dead = bool(indices) and all(
            len(self.lost[i.name]) == self.primaries[i.name] for i in indices
        )
        if ctx.view.forced is FaultMode.RED or everything_dead:
            raise ApiError(
                503,
                "search_phase_execution_exception",
                "all shards failed",
                root_cause=[],
                phase="query",
                grouped=True,
                failed_shards=[],
            )

    def matches(self, scorer: Any) -> list[tuple[float, Index, str, dict[str, Any]]]:
        found = []
        for index in self.indices:
            lost, primaries = self.lost[index.name], self.primaries[index.name]
            for doc_id, doc in index.docs.items():
                if shard_of(doc_id, primaries) in lost:
                    continue  # the shard holding this document is unassigned
                try:
                    score = scorer({**doc.source, "_id": doc_id})
                except (TypeError, ValueError, AttributeError) as exc:
                    raise BadRequest("parsing_exception", f"failed to run query: {exc}") from None
                if score is not None:
                    found.append((round(score, 7), index, doc_id, doc.source))
        found.sort(key=lambda m: (-m[0], m[1].name, _doc_order(m[2])))
        return found

    def shards_header(self) -> dict[str, Any]:
        total = sum(self.primaries.values())
        failed = sum(len(lost) for lost in self.lost.values())
        header: dict[str, Any] = {
            "total": total,
            "successful": total - failed,
            "skipped": 0,
            "failed": failed,
        }
        if failed:
            header["failures"] = [
                {
                    "shard": shard,
                    "index": name,
                    "node": None,
                    "reason": {"type": "no_shard_available_action_exception", "reason": None},
                }
                for name, lost in self.lost.items()
                for shard in sorted(lost)
            ]
        return header


async def _query_body(ctx: Ctx) -> dict[str, Any]:
    body = await ctx.body()
    if not isinstance(body, dict):
        raise BadRequest("parsing_exception", "Unknown key for a VALUE_STRING in [_na_].")
    return body


def _search_targets(ctx: Ctx) -> list[Index]:
    return ctx.cluster.data.resolve(
        ctx.arg("index"),
        forbid_closed=True,
        ignore_unavailable=flag(ctx.query, "ignore_unavailable"),
    )


async def search(ctx: Ctx) -> Reply:
    """`_search`: match the indices' documents, in the exact response shape."""
    started = time.perf_counter()
    indices = _search_targets(ctx)
    body = await _query_body(ctx)
    params = ctx.query
    matcher = _Matcher(ctx, indices)
    scorer = _scorer(params, body)
    size = int_param(params, "size")
    size = body_int(body, "size", 10) if size is None else size
    offset = int_param(params, "from")
    offset = body_int(body, "from", 0) if offset is None else offset
    if size < 0:
        raise BadRequest(
            "illegal_argument_exception", f"[size] parameter cannot be negative, found [{size}]"
        )
    if offset < 0:
        raise BadRequest(
            "illegal_argument_exception", f"[from] parameter cannot be negative, found [{offset}]"
        )
    source_spec = body.get("_source")
    if "_source" in params:
        source_spec = {"false": False, "true": True}.get(
            params["_source"], params["_source"].split(",")
        )
    if body.get("stored_fields") == "_none_":
        source_spec = False
    keep = source_filter(source_spec)
    found = matcher.matches(scorer)
    hits = []
    for score, index, doc_id, source in found[offset : offset + size]:
        hit: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_score": score}
        kept = keep(dict(source))
        if kept is not None:
            hit["_source"] = kept
        hits.append(hit)
    total: Any = {"value": len(found), "relation": "eq"}
    if flag(params, "rest_total_hits_as_int"):
        total = len(found)
    return Reply(
        {
            "took": max(1, round((time.perf_counter() - started) * 1000)),
            "timed_out": False,
            "_shards": matcher.shards_header(),
            "hits": {
                "total": total,
                "max_score": found[0][0] if found else None,
                "hits": hits,
            },
        }
    )


async def count(ctx: Ctx) -> Reply:
    """`_count`: how many documents match, with the shards that answered."""
    indices = _search_targets(ctx)
    body = await _query_body(ctx)
    matcher = _Matcher(ctx, indices)
    found = matcher.matches(_scorer(ctx.query, body))
    return Reply({"count": len(found), "_shards": matcher.shards_header()})


# --------------------------------------------------------------------------- indices


def index_settings(ctx: Ctx, index: Index) -> dict[str, Any]:
    """The `index` settings object real nodes report (strings, as they are)."""
    shards = index.shards(ctx.view.shards)
    replicas = max(shards.copies, default=1) - 1
    settings: dict[str, Any] = {}
    if ctx.cluster.distribution == "elasticsearch":
        settings["routing"] = {"allocation": {"include": {"_tier_preference": "data_content"}}}
    if index.write_block:
        settings["blocks"] = {"write": "true"}
    settings.update(
        number_of_shards=str(shards.primaries),
        provided_name=index.name,
        creation_date=str(index.creation_date),
        number_of_replicas=str(replicas),
        uuid=index.uuid,
    )
    if not index.is_open:
        settings["verified_before_close"] = "true"
    link = index.follower
    if link is not None and link.flavour == "elasticsearch":
        settings["xpack"] = {"ccr": {"following_index": "true"}}
    return settings


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(_flatten(f"{prefix}.{key}" if prefix else key, inner))
    return flat


async def index_endpoint(ctx: Ctx) -> Reply:
    method = ctx.request.method
    if method == "PUT":
        return await create_index(ctx)
    if method == "DELETE":
        return await delete_index(ctx)
    indices = ctx.cluster.data.resolve(ctx.arg("index"), include_closed=True)
    result: dict[str, Any] = {}
    for index in indices:
        result[index.name] = {
            "aliases": {alias: {} for alias in sorted(index.aliases)},
            "mappings": inferred_mappings(index),
            "settings": {"index": index_settings(ctx, index)},
        }
    return Reply(result)


async def create_index(ctx: Ctx) -> Reply:
    """`PUT /<index>`: settings are accepted, mappings and aliases kept."""
    name = ctx.args["index"]
    body = await ctx.object_body()
    aliases = body.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise BadRequest("parse_exception", "aliases must be an object")
    mappings = body.get("mappings")
    ctx.cluster.data.create(
        name, aliases=list(aliases), mappings=mappings if isinstance(mappings, dict) else None
    )
    return Reply({"acknowledged": True, "shards_acknowledged": True, "index": name})


def _destructive_targets(ctx: Ctx, expression: str) -> list[Index]:
    """Concrete names only (ES 8 requires them for deletes and closes); no aliases."""
    model = ctx.cluster.data
    wildcard = any(p in ("_all", "*") or "*" in p for p in split_names(expression))
    if wildcard and ctx.cluster.distribution == "elasticsearch":
        raise BadRequest(
            "illegal_argument_exception", "Wildcard expressions or all indices are not allowed"
        )
    for part in split_names(expression):
        if "*" not in part and part not in model.indices and model.is_alias(part):
            raise BadRequest(
                "illegal_argument_exception",
                f"The provided expression [{part}] matches an alias, specify the corresponding "
                "concrete indices instead.",
            )
    return model.resolve(expression, include_closed=True)


async def delete_index(ctx: Ctx) -> Reply:
    targets = _destructive_targets(ctx, ctx.args["index"])
    for index in targets:
        check_metadata_writable(index)
    for index in targets:
        ctx.cluster.data.drop(index.name)
    return Reply({"acknowledged": True})


async def close_index(ctx: Ctx) -> Reply:
    targets = _destructive_targets(ctx, ctx.args["index"])
    for index in targets:
        check_metadata_writable(index)
    for index in targets:
        index.is_open = False
    return Reply(
        {
            "acknowledged": True,
            "shards_acknowledged": True,
            "indices": {index.name: {"closed": True} for index in targets},
        }
    )


async def open_index(ctx: Ctx) -> Reply:
    targets = ctx.cluster.data.resolve(ctx.args["index"], include_closed=True)
    for index in targets:
        if not index.is_open:
            check_metadata_writable(index)
    for index in targets:
        index.is_open = True
    return Reply({"acknowledged": True, "shards_acknowledged": True})


async def refresh(ctx: Ctx) -> Reply:
    indices = ctx.cluster.data.resolve(ctx.arg("index"), forbid_closed=True)
    shards = Shards.combine(i.shards(ctx.view.shards) for i in indices)
    return Reply({"_shards": {"total": shards.total, "successful": shards.active, "failed": 0}})


async def get_settings(ctx: Ctx) -> Reply:
    indices = ctx.cluster.data.resolve(ctx.arg("index"), include_closed=True)
    flat = flag(ctx.query, "flat_settings")
    result: dict[str, Any] = {}
    for index in indices:
        settings: dict[str, Any] = {"index": index_settings(ctx, index)}
        result[index.name] = {"settings": _flatten("", settings) if flat else settings}
    return Reply(result)


async def settings_endpoint(ctx: Ctx) -> Reply:
    if ctx.request.method == "GET":
        return await get_settings(ctx)
    body = _flatten("", await ctx.object_body(required=True))
    body = {k.removeprefix("settings."): v for k, v in body.items()}
    targets = ctx.cluster.data.resolve(ctx.args["index"], include_closed=True)
    for index in targets:
        check_metadata_writable(index)
    for key, value in body.items():
        name = key if key.startswith("index.") else f"index.{key}"
        if name != "index.blocks.write":
            continue  # accepted and ignored: the simulator models no other setting
        for index in targets:
            index.write_block = str(value).lower() == "true"
            index.settings_version += 1
    return Reply({"acknowledged": True})


# --------------------------------------------------------------------------- aliases


async def get_alias(ctx: Ctx) -> Reply:
    """`GET [/<index>]/_alias[/<name>]`: every index with its aliases, or only those holding
    the named aliases; a named alias that no index has answers 404 with the real body."""
    model = ctx.cluster.data
    indices = model.resolve(ctx.arg("index"), include_closed=True)
    names = split_names(ctx.arg("name"))
    head = ctx.request.method == "HEAD"
    if not names:
        return Reply({i.name: {"aliases": {a: {} for a in sorted(i.aliases)}} for i in indices})
    wildcard_all = any(n in ("_all", "*") for n in names)
    result: dict[str, Any] = {}
    seen: set[str] = set()
    for index in indices:
        hits = sorted(
            a
            for a in index.aliases
            if wildcard_all or any(_alias_matches(a, pattern) for pattern in names)
        )
        seen.update(hits)
        if hits:
            result[index.name] = {"aliases": {a: {} for a in hits}}
    missing = [n for n in names if "*" not in n and n != "_all" and n not in seen]
    if not missing:
        return Reply(result)
    if head:
        return Reply(None, 404)
    noun = "alias" if len(missing) == 1 else "aliases"
    return Reply({"error": f"{noun} [{','.join(missing)}] missing", "status": 404, **result}, 404)


def _alias_matches(alias: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(alias, pattern)


async def post_aliases(ctx: Ctx) -> Reply:
    """`POST /_aliases`: add, remove and remove_index, validated first, applied together."""
    model = ctx.cluster.data
    body = await ctx.object_body(required=True)
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        raise BadRequest(
            "action_request_validation_exception",
            "Validation Failed: 1: Must specify at least one alias action;",
        )
    plan: list[tuple[str, list[Index], list[str]]] = []
    for entry in actions:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise BadRequest("parsing_exception", "Expected a single alias action per entry")
        ((kind, spec),) = entry.items()
        if kind not in ("add", "remove", "remove_index") or not isinstance(spec, dict):
            raise BadRequest("illegal_argument_exception", f"Unsupported action [{kind}]")
        expression = spec.get("index", spec.get("indices"))
        if isinstance(expression, list):
            expression = ",".join(str(e) for e in expression)
        if not expression:
            raise BadRequest(
                "action_request_validation_exception",
                "Validation Failed: 1: One of [index] or [indices] is required;",
            )
        if kind == "remove_index":
            for part in split_names(str(expression)):
                if "*" not in part and part not in model.indices and model.is_alias(part):
                    raise BadRequest(
                        "illegal_argument_exception",
                        f"The provided expression [{part}] matches an alias, specify the "
                        "corresponding concrete indices instead.",
                    )
        targets = model.resolve(str(expression), include_closed=True)
        aliases: list[str] = []
        if kind != "remove_index":
            raw = spec.get("alias", spec.get("aliases"))
            aliases = [str(a) for a in (raw if isinstance(raw, list) else [raw]) if a]
            if not aliases:
                raise BadRequest(
                    "action_request_validation_exception",
                    "Validation Failed: 1: One of [alias] or [aliases] is required;",
                )
        for index in targets:
            check_metadata_writable(index)
        if kind == "add":
            for alias in aliases:
                model.check_alias_name(alias)
        if kind == "remove":
            present = {a for i in targets for a in i.aliases}
            absent = [a for a in aliases if "*" not in a and a not in present]
            if absent:
                raise ApiError(
                    404,
                    "aliases_not_found_exception",
                    f"aliases [{','.join(absent)}] missing",
                    **{"resource.type": "aliases", "resource.id": ",".join(absent)},
                )
        plan.append((kind, targets, aliases))
    for kind, targets, aliases in plan:
        for index in targets:
            if kind == "add":
                index.aliases.update(aliases)
            elif kind == "remove":
                index.aliases -= {
                    a for a in index.aliases if any(_alias_matches(a, p) for p in aliases)
                }
            else:
                model.indices.pop(index.name, None)
                continue
            index.aliases_version += 1
    answer: dict[str, Any] = {"acknowledged": True}
    if ctx.cluster.distribution == "elasticsearch" and ctx.cluster.version_tuple >= (8, 14):
        answer["errors"] = False
    return Reply(answer)


# --------------------------------------------------------------------------- documents


def _write_target(ctx: Ctx) -> Index:
    """The index a write lands in; a missing one is created, as ES's auto-create does."""
    name = ctx.args["index"]
    index = ctx.cluster.data.write_target(name)
    if index is None:
        validate_index_name(name)
        index = ctx.cluster.data.create(name)
    check_writable(index)
    return index


def _check_shard(ctx: Ctx, index: Index, doc_id: str) -> tuple[int, int]:
    """The copies of the document's shard: total and active; a lost primary refuses."""
    shards = index.shards(ctx.view.shards)
    shard = shard_of(doc_id, shards.primaries)
    if not shards.assigned[shard]:
        raise ApiError(
            503,
            "unavailable_shards_exception",
            f"[{index.name}][{shard}] primary shard is not active Timeout: [1m], request: "
            f"[BulkShardRequest [[{index.name}][{shard}]] containing [index {{[{index.name}]"
            f"[{doc_id}]}}]]",
        )
    check_following_engine(index)
    return shards.copies[shard], shards.assigned[shard]


def _doc_reply(index: Index, doc_id: str, result: str, seq_no: int, version: int) -> dict[str, Any]:
    return {
        "_index": index.name,
        "_id": doc_id,
        "_version": version,
        "result": result,
        "_shards": {},
        "_seq_no": seq_no,
        "_primary_term": 1,
    }


async def _write(ctx: Ctx, doc_id: str, *, create: bool) -> Reply:
    source = await ctx.body(required=True)
    if not isinstance(source, dict):
        raise BadRequest("mapper_parsing_exception", "failed to parse")
    index = _write_target(ctx)
    total, active = _check_shard(ctx, index, doc_id)
    if create and doc_id in index.docs:
        existing = index.docs[doc_id]
        raise ApiError(
            409,
            "version_conflict_engine_exception",
            f"[{doc_id}]: version conflict, document already exists (current version "
            f"[{existing.version}])",
            index_uuid=index.uuid,
            shard=str(shard_of(doc_id, index.shards(ctx.view.shards).primaries)),
            index=index.name,
        )
    doc, created = index.write(doc_id, source)
    body = _doc_reply(index, doc_id, "created" if created else "updated", doc.seq_no, doc.version)
    body["_shards"] = {"total": total, "successful": active, "failed": 0}
    headers = {"Location": f"/{index.name}/_doc/{doc_id}"} if created else None
    return Reply(body, 201 if created else 200, headers=headers)


async def put_doc(ctx: Ctx) -> Reply:
    return await _write(ctx, ctx.args["name"], create=ctx.query.get("op_type") == "create")


async def create_doc(ctx: Ctx) -> Reply:
    return await _write(ctx, ctx.args["name"], create=True)


async def post_doc(ctx: Ctx) -> Reply:
    doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
    return await _write(ctx, doc_id, create=True)


async def delete_doc(ctx: Ctx) -> Reply:
    model = ctx.cluster.data
    name, doc_id = ctx.args["index"], ctx.args["name"]
    index = model.write_target(name)
    if index is None:
        raise IndexNotFound(name)
    check_writable(index)
    total, active = _check_shard(ctx, index, doc_id)
    op, found = index.delete(doc_id)
    body = _doc_reply(index, doc_id, "deleted" if found else "not_found", op.seq_no, op.version)
    body["_shards"] = {"total": total, "successful": active, "failed": 0}
    return Reply(body, 200 if found else 404)


async def get_doc(ctx: Ctx) -> Reply | web.Response:
    model = ctx.cluster.data
    name, doc_id = ctx.args["index"], ctx.args["name"]
    index = model.write_target(name)
    if index is None:
        raise IndexNotFound(name)
    if not index.is_open:
        raise index_closed(index)
    doc = index.docs.get(doc_id)
    if doc is None:
        return Reply({"_index": index.name, "_id": doc_id, "found": False}, 404)
    return Reply(
        {
            "_index": index.name,
            "_id": doc_id,
            "_version": doc.version,
            "_seq_no": doc.seq_no,
            "_primary_term": doc.primary_term,
            "found": True,
            "_source": doc.source,
        }
    )
