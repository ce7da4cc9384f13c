"""Simulated Elasticsearch / OpenSearch clusters that fail the way real ones do.

The failover orchestrator has to be exercised against everything a production search
cluster does when it breaks: refused connections, hung sockets, slow answers, 5xx errors,
red or yellow health, flapping, missing credentials, a DNS record that points at the wrong
cluster and a lost master quorum. Running real JVMs for that is slow and cannot be made to
fail on demand, so every simulated node is its own aiohttp server on loopback (clients see
real TCP behaviour) answering with the JSON bodies ES 8.x / OpenSearch 2.x send.
A small JSON control API lets other processes (the CLI) inject faults.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

import httpx
from aiohttp import web

__all__ = [
    "CATALOGUE",
    "FaultControlError",
    "FaultMode",
    "NodeFault",
    "SimulatedCluster",
    "SimulatorFleet",
    "set_fault_remote",
]

Distribution = Literal["elasticsearch", "opensearch"]

DEFAULT_VERSIONS: dict[str, str] = {"elasticsearch": "8.15.0", "opensearch": "2.17.0"}
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=UTF-8"
ES_BASIC_CHALLENGE = 'Basic realm="security" charset="UTF-8"'
OS_BASIC_CHALLENGE = 'Basic realm="OpenSearch Security"'
# Hung handlers are released at stop(); this only bounds a handler that misbehaves anyway.
_SHUTDOWN_TIMEOUT_S = 2.0
_HEALTH_POLL_S = 0.05
_STATUS_RANK = {"green": 0, "yellow": 1, "red": 2}


class FaultMode(StrEnum):
    """Every way a node can misbehave; the values are what the control API accepts."""

    HEALTHY = "healthy"
    DOWN = "down"
    HANG = "hang"
    SLOW = "slow"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    RED = "red"
    YELLOW = "yellow"
    FLAPPING = "flapping"
    UNAUTHORIZED = "unauthorized"
    WRONG_CLUSTER = "wrong_cluster"


_FAULT_FIELDS = ("mode", "slow_ms", "flap_period_s")


@dataclass
class NodeFault:
    """The fault injected into one node; validated on creation so bad input fails early."""

    mode: FaultMode = FaultMode.HEALTHY
    slow_ms: int = 2000
    flap_period_s: float = 2.0

    def __post_init__(self) -> None:
        try:
            self.mode = FaultMode(self.mode)
        except (ValueError, TypeError):
            allowed = ", ".join(FaultMode)
            raise ValueError(f"invalid mode {self.mode!r}; expected one of: {allowed}") from None
        slow = self.slow_ms
        if isinstance(slow, float) and slow.is_integer():
            slow = int(slow)
        if isinstance(slow, bool) or not isinstance(slow, int) or slow < 0:
            raise ValueError(
                f"invalid slow_ms {self.slow_ms!r}: expected a non-negative integer (milliseconds)"
            )
        self.slow_ms = slow
        period = self.flap_period_s
        if (
            isinstance(period, bool)
            or not isinstance(period, int | float)
            or not math.isfinite(period)
            or period <= 0
        ):
            raise ValueError(
                f"invalid flap_period_s {self.flap_period_s!r}: expected a positive number "
                "of seconds"
            )
        self.flap_period_s = float(period)

    @classmethod
    def from_dict(cls, data: Any) -> NodeFault:
        """Build from a control-API body; ValueError names the offending field or value."""
        if not isinstance(data, Mapping):
            raise ValueError('fault must be a JSON object like {"mode": "down"}')
        unknown = sorted(str(key) for key in data if key not in _FAULT_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FAULT_FIELDS)}"
            )
        if "mode" not in data:
            raise ValueError("missing field 'mode'")
        return cls(**{key: data[key] for key in _FAULT_FIELDS if key in data})

    def to_dict(self) -> dict[str, Any]:
        """The control-API representation."""
        return {
            "mode": str(self.mode),
            "slow_ms": self.slow_ms,
            "flap_period_s": self.flap_period_s,
        }


class FaultControlError(RuntimeError):
    """The control API refused a fault (or was unreachable); carries the server's message."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- catalogue

CATALOGUE: tuple[dict[str, Any], ...] = tuple(
    {"entity_id": entity_id, "sku": sku, "name": name, "price": price}
    for entity_id, (sku, name, price) in enumerate(
        [
            ("24-MB01", "Joust Duffle Bag", 34.0),
            ("24-MB04", "Strive Shoulder Pack", 32.0),
            ("24-MB03", "Crown Summit Backpack", 38.0),
            ("24-MB05", "Wayfarer Messenger Bag", 45.0),
            ("24-MB06", "Rival Field Messenger", 45.0),
            ("24-MB02", "Fusion Backpack", 59.0),
            ("24-WB07", "Overnight Duffle", 45.0),
            ("24-UG06", "Affirm Water Bottle", 7.0),
            ("24-UG07", "Dual Handle Cardio Ball", 12.0),
            ("24-UG01", "Quest Lumaflex Band", 19.0),
            ("MH01", "Chaz Kangeroo Hoodie", 52.0),
            ("WS12", "Radiant Tee", 22.0),
        ],
        start=1,
    )
)
"""A few Magento Luma sample products, so searches return something recognisable."""

_SOURCE_FIELDS = ("sku", "name", "price")
_MAGENTO_INDEX_PREFIX = "magento2_product"
_KNOWN_CONCRETE_INDICES = ("products", "magento2_product_1_v1")


def _resolve_index(name: str) -> str | None:
    """Map an index or Magento alias to the concrete index name a real cluster reports."""
    if name == "products":
        return name
    if name.startswith(_MAGENTO_INDEX_PREFIX):
        # Magento writes to "<prefix>_product_<store>_v<N>" behind the alias without _vN.
        return name if re.search(r"_v\d+$", name) else f"{name}_v1"
    return None


def _resolve_indices(expression: str | None) -> list[str]:
    """Resolve a comma-separated index expression; raise _IndexNotFound on the first miss."""
    if expression is None or expression in ("_all", "*"):
        return ["products"]
    resolved: list[str] = []
    for part in expression.split(","):
        if "*" in part:
            resolved += [i for i in _KNOWN_CONCRETE_INDICES if fnmatch.fnmatchcase(i, part)]
            continue
        concrete = _resolve_index(part)
        if concrete is None:
            raise _IndexNotFound(part)
        resolved.append(concrete)
    return list(dict.fromkeys(resolved))


# --------------------------------------------------------------------------- versions


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("-")[0])[:3])


_KNOWN_BUILDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("elasticsearch", "8.15.0"): (
        "1a77947f34deddb41af25e6f0ddb8e830159c179",
        "2024-08-05T10:05:34.233336849Z",
        "9.11.1",
    ),
    ("opensearch", "2.17.0"): (
        "8586481dc99b1740ca3c7c966aee15ad0fc7b548",
        "2024-09-13T01:04:46.735497043Z",
        "9.11.1",
    ),
}


def _version_info(distribution: str, version: str) -> dict[str, Any]:
    """The `version` object of `GET /`, with the fields each distribution really sends."""
    major = (_version_tuple(version) or (0,))[0]
    build_hash, build_date, lucene = _KNOWN_BUILDS.get(
        (distribution, version),
        (
            hashlib.sha1(f"{distribution}-{version}".encode()).hexdigest(),
            "2024-01-01T00:00:00.000000000Z",
            "8.11.1" if major in (1, 7) else "9.11.1",
        ),
    )
    wire, index = ("6.8.0", "6.0.0-beta1") if major in (1, 7) else ("7.17.0", "7.0.0")
    if distribution == "opensearch":
        if major >= 2:
            wire = "7.10.0"
        return {
            "distribution": "opensearch",
            "number": version,
            "build_type": "tar",
            "build_hash": build_hash,
            "build_date": build_date,
            "build_snapshot": "SNAPSHOT" in version,
            "lucene_version": lucene,
            "minimum_wire_compatibility_version": wire,
            "minimum_index_compatibility_version": index,
        }
    return {
        "number": version,
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": build_hash,
        "build_date": build_date,
        "build_snapshot": "SNAPSHOT" in version,
        "lucene_version": lucene,
        "minimum_wire_compatibility_version": wire,
        "minimum_index_compatibility_version": index,
    }


def _new_cluster_uuid() -> str:
    """22 base64url characters, the shape of a real cluster_uuid."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


# --------------------------------------------------------------------------- shard model


@dataclass(frozen=True)
class _Shards:
    """Shard copies of the `products` index: one primary per node, one replica each."""

    copies: tuple[int, ...]
    assigned: tuple[int, ...]
    delayed: tuple[int, ...]

    @property
    def primaries(self) -> int:
        return len(self.copies)

    @property
    def total(self) -> int:
        return sum(self.copies)

    @property
    def active(self) -> int:
        return sum(self.assigned)

    @property
    def active_primary(self) -> int:
        return sum(1 for live in self.assigned if live)

    @property
    def unassigned(self) -> int:
        return self.total - self.active

    @property
    def lost(self) -> tuple[int, ...]:
        """Shard numbers without any active copy (their primary is unassigned)."""
        return tuple(shard for shard, live in enumerate(self.assigned) if not live)

    @property
    def status(self) -> str:
        if self.lost:
            return "red"
        return "yellow" if self.assigned != self.copies else "green"

    @property
    def percent(self) -> float:
        return 100.0 * self.active / self.total if self.total else 100.0


def _allocate(node_count: int, present: set[int], forced: FaultMode | None) -> _Shards:
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
    return _Shards(tuple(copies), tuple(assigned), tuple(delayed))


# --------------------------------------------------------------------------- search


class _IndexNotFound(Exception):
    """An index name that the simulated cluster does not hold."""

    def __init__(self, index: str) -> None:
        super().__init__(index)
        self.index = index


class _BadRequest(Exception):
    """A request ES would reject with 400; carries the ES error type and reason."""

    def __init__(self, err_type: str, reason: str) -> None:
        super().__init__(reason)
        self.err_type = err_type
        self.reason = reason


class _Dropped(Exception):
    """The node died while answering: cut the connection instead of replying."""


_Scorer = Callable[[Mapping[str, Any]], float | None]


def _terms(text: Any) -> list[str]:
    return re.findall(r"[\w.-]+", str(text).lower())


def _score_term(field_name: str, term: str, value: str) -> float:
    """A BM25-shaped score (tf=1) so rarer terms and shorter names rank higher."""
    docs = [str(p.get(field_name, "")).lower() for p in CATALOGUE]
    df = sum(term in doc for doc in docs) or 1
    idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
    avg_len = sum(len(doc.split()) for doc in docs) / len(docs)
    length = max(1, len(value.split()))
    k1, b = 1.2, 0.75
    return idf * (k1 + 1) / (1 + k1 * (1 - b + b * length / avg_len))


def _fields(spec: Any) -> list[str]:
    names = [spec] if isinstance(spec, str) else list(spec or ["*"])
    fields: list[str] = []
    for raw in names:
        name = str(raw).split("^")[0].removesuffix(".keyword")
        fields += [f for f in _SOURCE_FIELDS if fnmatch.fnmatchcase(f, name)]
    return list(dict.fromkeys(fields))


def _text_scorer(fields: list[str], text: Any, operator: str = "or") -> _Scorer:
    """Case-insensitive substring match of every query term on the given fields."""
    terms = _terms(text)
    require_all = str(operator).lower() == "and"

    def score(doc: Mapping[str, Any]) -> float | None:
        best: float | None = None
        for name in fields:
            value = doc.get(name)
            if isinstance(value, int | float):
                hit = any(_same_number(term, value) for term in terms)
                candidate = 1.0 if hit else None
            else:
                hay = str(value).lower()
                matched = [t for t in terms if t in hay]
                if not matched or (require_all and len(matched) != len(terms)):
                    continue
                candidate = sum(_score_term(name, t, hay) for t in matched)
            if candidate is not None and (best is None or candidate > best):
                best = candidate
        return best

    return score


def _same_number(term: str, value: float) -> bool:
    try:
        return float(term) == float(value)
    except ValueError:
        return False


def _lucene_scorer(query: str, default_fields: list[str], operator: str = "or") -> _Scorer:
    """The tiny subset of Lucene query syntax clients send: `term`, `field:term`, `*`."""
    if query.strip() in ("", "*", "*:*"):
        return lambda _doc: 1.0
    tokens = re.findall(r'(?:([\w.]+):)?("[^"]*"|\S+)', query)
    if any(value in ("AND", "&&") for _, value in tokens):
        operator = "and"
    clauses = [
        _text_scorer(_fields(name) if name else default_fields, value.strip('"'))
        for name, value in tokens
        if value not in ("AND", "OR", "&&", "||")
    ]
    return _combine(clauses, require_all=str(operator).lower() == "and")


def _combine(clauses: list[_Scorer], *, require_all: bool) -> _Scorer:
    def score(doc: Mapping[str, Any]) -> float | None:
        scores = [clause(doc) for clause in clauses]
        hits = [s for s in scores if s is not None]
        if not hits or (require_all and len(hits) != len(scores)):
            return None
        return sum(hits)

    return score


def _single_field(kind: str, spec: Any) -> tuple[str, Any]:
    """`{"field": value}`: the shape of match, term, terms and range queries."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise _BadRequest("parsing_exception", f"[{kind}] query doesn't support multiple fields")
    ((name, value),) = spec.items()
    return str(name), value


def _field_and_value(kind: str, spec: Any, value_key: str) -> tuple[str, Any, Mapping[str, Any]]:
    """Like _single_field, unwrapping the long form `{"field": {"query": value, ...}}`."""
    name, value = _single_field(kind, spec)
    if isinstance(value, Mapping):
        if value_key not in value:
            raise _BadRequest("parsing_exception", f"[{kind}] requires [{value_key}]")
        return name, value[value_key], value
    return name, value, {}


def _clauses(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _compile(query: Any) -> _Scorer:
    """Turn the query DSL subset Magento and health probes use into a scoring function."""
    if not isinstance(query, Mapping) or len(query) != 1:
        raise _BadRequest(
            "parsing_exception", "[_na] query malformed, no start_object after query name"
        )
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return lambda _doc: 1.0
    if kind == "match_none":
        return lambda _doc: None
    if kind in ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix"):
        name, text, options = _field_and_value(kind, spec, "query")
        return _text_scorer(_fields(name), text, options.get("operator", "or"))
    if kind == "multi_match":
        if not isinstance(spec, Mapping) or "query" not in spec:
            raise _BadRequest("parsing_exception", "No text specified for multi_match query")
        return _text_scorer(_fields(spec.get("fields")), spec["query"], spec.get("operator", "or"))
    if kind in ("query_string", "simple_query_string"):
        if not isinstance(spec, Mapping) or "query" not in spec:
            raise _BadRequest("parsing_exception", f"[{kind}] must be provided with a [query]")
        default = _fields(spec.get("fields") or spec.get("default_field") or "*")
        return _lucene_scorer(str(spec["query"]), default, spec.get("default_operator", "or"))
    if kind in ("term", "terms"):
        if kind == "term":
            name, value, _ = _field_and_value(kind, spec, "value")
            wanted = {str(value)}
        else:
            name, values = _single_field(kind, spec)
            wanted = {str(v) for v in _clauses(values)}
        key = name.removesuffix(".keyword")
        return lambda doc: 1.0 if _as_term(doc.get(key)) in wanted else None
    if kind == "ids":
        values = {str(v) for v in (spec or {}).get("values", [])}
        return lambda doc: 1.0 if str(doc["entity_id"]) in values else None
    if kind == "range":
        return _range_scorer(spec)
    if kind == "constant_score":
        inner = _compile((spec or {}).get("filter"))
        boost = float((spec or {}).get("boost", 1.0))
        return lambda doc: boost if inner(doc) is not None else None
    if kind == "bool":
        return _bool_scorer(spec)
    raise _BadRequest("parsing_exception", f"unknown query [{kind}]")


def _as_term(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_scorer(spec: Any) -> _Scorer:
    name, bounds = _single_field("range", spec)
    if not isinstance(bounds, Mapping):
        raise _BadRequest("parsing_exception", "[range] query malformed, no start_object")
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }

    def score(doc: Mapping[str, Any]) -> float | None:
        value = doc.get(name)
        if not isinstance(value, int | float):
            return None
        for op, bound in bounds.items():
            if op in checks and bound is not None and not checks[op](value, float(bound)):
                return None
        return 1.0

    return score


def _bool_scorer(spec: Any) -> _Scorer:
    if not isinstance(spec, Mapping):
        raise _BadRequest("parsing_exception", "[bool] query malformed, no start_object")
    must = [_compile(q) for q in _clauses(spec.get("must", []))]
    filters = [_compile(q) for q in _clauses(spec.get("filter", []))]
    should = [_compile(q) for q in _clauses(spec.get("should", []))]
    must_not = [_compile(q) for q in _clauses(spec.get("must_not", []))]
    minimum = _minimum_should_match(
        spec.get("minimum_should_match"), len(should), default=0 if must or filters else 1
    )
    if should and not (must or filters):
        minimum = max(1, minimum)  # a pure disjunction still needs one matching clause

    def score(doc: Mapping[str, Any]) -> float | None:
        total = 0.0
        for clause in must:
            result = clause(doc)
            if result is None:
                return None
            total += result
        if any(clause(doc) is None for clause in filters):
            return None
        if any(clause(doc) is not None for clause in must_not):
            return None
        should_scores = [s for s in (clause(doc) for clause in should) if s is not None]
        if len(should_scores) < minimum:
            return None
        return total + sum(should_scores)

    return score


def _minimum_should_match(value: Any, optional: int, *, default: int) -> int:
    """ES accepts an integer, "N", "N%" or a negative form counting the clauses allowed to miss."""
    if value is None:
        return min(default, optional)
    text = str(value).strip()
    if text.endswith("%"):
        count = math.floor(optional * abs(float(text[:-1])) / 100)
        negative = text.startswith("-")
    else:
        count = abs(int(text))
        negative = text.startswith("-")
    return max(0, optional - count if negative else count)


def _source_filter(spec: Any) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """Honour `_source`: false, a pattern list, or {includes, excludes}."""
    if spec is None or spec is True:
        return lambda src: src
    if spec is False:
        return lambda _src: None
    if isinstance(spec, Mapping):
        includes = _clauses(spec.get("includes", spec.get("include", ["*"]))) or ["*"]
        excludes = _clauses(spec.get("excludes", spec.get("exclude", [])))
    else:
        includes, excludes = _clauses(spec), []

    def keep(src: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in src.items()
            if any(fnmatch.fnmatchcase(k, str(p)) for p in includes)
            and not any(fnmatch.fnmatchcase(k, str(p)) for p in excludes)
        }

    return keep


# --------------------------------------------------------------------------- parameters


def _flag(query: Mapping[str, str], name: str) -> bool:
    """ES boolean params: present without value or "true" means true."""
    return name in query and query[name].lower() in ("", "true")


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise _BadRequest(
            "illegal_argument_exception",
            f"Failed to parse int parameter [{name}] with value [{query[name]}]",
        ) from None


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
        raise _BadRequest(
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
    shards: _Shards
    forced: FaultMode | None

    @property
    def quorum(self) -> bool:
        return self.master is not None


_ROUTES: dict[str, tuple[str, ...]] = {
    "root": ("HEAD", "GET"),
    "health": ("GET",),
    "cat_nodes": ("GET",),
    "search": ("GET", "POST"),
    "index": ("HEAD", "GET"),
}


class SimulatedCluster:
    """One ES/OpenSearch cluster: a real HTTP server per node, with per-node faults."""

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
    ) -> None:
        """`hosts` gives each node its own address (DNS can list IPs, not ports); else `host`."""
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
        self.cluster_uuid = _new_cluster_uuid()
        self.impostor_uuid = _new_cluster_uuid()
        self.request_count = 0
        # Requests being handled right now (hung or slow ones included): lets tests wait for
        # "the request has reached the node" instead of sleeping.
        self.in_flight = 0
        self._version_info = _version_info(distribution, self.version)
        self._version_tuple = _version_tuple(self.version)
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
                    app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
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
                raise _Dropped
            mode = node.mode_now()
            if mode is FaultMode.SLOW and await _released_within(
                released, node.fault.slow_ms / 1000
            ):
                raise _Dropped
            response = await self._respond(node, request, released)
        except _Dropped:
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
            raise _Dropped  # the socket is about to close; a request slipped in
        if mode is FaultMode.HANG:
            await released.wait()
            raise _Dropped
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
        except _BadRequest as exc:
            return self._error(request, 400, exc.err_type, exc.reason)
        except _IndexNotFound as exc:
            return self._index_not_found(request, exc.index)

    async def _dispatch(
        self, node: _Node, request: web.Request, mode: FaultMode, released: asyncio.Event
    ) -> web.Response:
        parts = [p for p in request.path.split("/") if p]
        route, arg = _route(parts)
        if route is None:
            return self._json(
                request,
                {
                    "error": f"no handler found for uri [{request.path_qs}] and method "
                    f"[{request.method}]"
                },
                400,
            )
        allowed = _ROUTES[route]
        if request.method not in allowed:
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
        if route == "root":
            return self._json(request, self._root_body(node, view))
        if not view.quorum:
            return self._master_not_discovered(request)
        if route == "health":
            return await self._health(node, request, released, arg)
        if route == "cat_nodes":
            return self._cat_nodes(request, view)
        if route == "search":
            return await self._search(request, view, arg)
        return self._index_info(request, arg)

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
    ) -> web.Response:
        if _flag(request.query, "pretty"):
            text = json.dumps(data, indent=2) + "\n"
        else:
            text = json.dumps(data, separators=(",", ":"))
        response = web.Response(
            body=text.encode(), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
        )
        return self._decorate(request, response)

    def _decorate(self, request: web.BaseRequest, response: web.Response) -> web.Response:
        # ES >= 7.14 marks its answers so clients can refuse impostors; not on auth errors.
        if (
            self.distribution == "elasticsearch"
            and self._version_tuple >= (7, 14)
            and response.status not in (401, 403)
        ):
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
        **extra: Any,
    ) -> web.Response:
        """An error in the exact envelope ES uses: error.root_cause[], error.type, status."""
        cause = {"type": err_type, "reason": reason, **extra}
        body = {"error": {"root_cause": [cause] if root_cause is None else root_cause, **cause}}
        body["status"] = status
        return self._json(request, body, status, headers=headers)

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

    def _health_body(self, view: _View, shards: _Shards, *, timed_out: bool) -> dict[str, Any]:
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
        body.update(
            active_primary_shards=shards.active_primary,
            active_shards=shards.active,
            relocating_shards=0,
            initializing_shards=0,
            unassigned_shards=shards.unassigned,
        )
        if self.distribution == "elasticsearch" and self._version_tuple >= (8, 16):
            body["unassigned_primary_shards"] = len(shards.lost)
        body.update(
            delayed_unassigned_shards=sum(shards.delayed),
            number_of_pending_tasks=0,
            number_of_in_flight_fetch=0,
            task_max_waiting_in_queue_millis=0,
            active_shards_percent_as_number=shards.percent,
        )
        return body

    async def _health(
        self, node: _Node, request: web.Request, released: asyncio.Event, index: str | None
    ) -> web.Response:
        """`GET /_cluster/health`: wait_for_status is re-checked until `timeout` expires."""
        query = request.query
        _flag(query, "local")  # accepted; the simulated state is the same on every node
        wanted = query.get("wait_for_status")
        if wanted is not None and wanted not in _STATUS_RANK:
            raise _BadRequest(
                "illegal_argument_exception", f"No cluster health status for value [{wanted}]"
            )
        # Real ES waits 30s by default; the simulator only waits when told how long.
        timeout_s = _time_param(query, "timeout", 0.0)
        _time_param(query, "master_timeout", 30.0)
        missing_index = index is not None and not all(
            _resolve_index(name) for name in index.split(",")
        )
        deadline = time.monotonic() + timeout_s
        while True:
            view = self._view(node, node.mode_now())
            if not view.quorum:
                return self._master_not_discovered(request)
            shards = _Shards((), (), ()) if missing_index else view.shards
            status = "red" if missing_index else shards.status
            met = not missing_index and (
                wanted is None or _STATUS_RANK[status] <= _STATUS_RANK[wanted]
            )
            remaining = deadline - time.monotonic()
            if met or remaining <= 0:
                break
            if await _released_within(released, min(_HEALTH_POLL_S, remaining)):
                raise _Dropped
        body = self._health_body(view, shards, timed_out=not met)
        if missing_index:
            body["status"] = "red"
        return self._json(request, body, 200 if met else 408)

    def _cat_nodes(self, request: web.Request, view: _View) -> web.Response:
        """`GET /_cat/nodes`: the JSON list (values are strings) or the aligned text table."""
        opensearch = self.distribution == "opensearch"
        rows: list[dict[str, str]] = []
        for i in view.present:
            is_master = "*" if i == view.master else "-"
            row = {
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
        columns = list(rows[0]) if rows else []
        if "h" in request.query:
            aliases = {"i": "ip", "hp": "heap.percent", "rp": "ram.percent", "r": "node.role"}
            aliases |= {"m": "master", "n": "name", "role": "node.role", "cm": "cluster_manager"}
            columns = []
            for raw in request.query["h"].split(","):
                column = aliases.get(raw, raw)
                if rows and column not in rows[0]:
                    raise _BadRequest(
                        "illegal_argument_exception", f"mapping for [{raw}] not found"
                    )
                columns.append(column)
        if request.query.get("format") == "json":
            return self._json(request, [{c: row[c] for c in columns} for row in rows])
        numeric = {"heap.percent", "ram.percent", "cpu", "load_1m", "load_5m", "load_15m"}
        header = [{c: c for c in columns}] if _flag(request.query, "v") else []
        widths = {c: max(len(r[c]) for r in header + rows) for c in columns}
        # Like real _cat: the header is left-aligned, numeric cells right-aligned.
        lines = [" ".join(r[c].ljust(widths[c]) for c in columns) for r in header]
        lines += [
            " ".join(
                r[c].rjust(widths[c]) if c in numeric else r[c].ljust(widths[c]) for c in columns
            )
            for r in rows
        ]
        text = "".join(line + "\n" for line in lines)
        response = web.Response(body=text.encode(), content_type="text/plain", charset="UTF-8")
        return self._decorate(request, response)

    async def _search(self, request: web.Request, view: _View, index: str | None) -> web.Response:
        """`_search`: match the small catalogue, in the exact response shape."""
        started = time.perf_counter()
        indices = _resolve_indices(index)
        raw = await request.read()
        body: Any = {}
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _BadRequest("x_content_parse_exception", f"[1:1] {exc}") from None
            if not isinstance(body, dict):
                raise _BadRequest("parsing_exception", "Unknown key for a VALUE_STRING in [_na_].")
        params = request.query
        if view.forced is FaultMode.RED or (view.shards.lost and not view.shards.active):
            return self._all_shards_failed(request)
        try:
            if "q" in params:
                default = _fields(params.get("df", "*"))
                scorer = _lucene_scorer(params["q"], default, params.get("default_operator", "or"))
            else:
                scorer = _compile(body.get("query", {"match_all": {}}))
        except (TypeError, ValueError, AttributeError) as exc:
            raise _BadRequest("parsing_exception", f"failed to parse query: {exc}") from None
        size = _int_param(params, "size")
        size = _body_int(body, "size", 10) if size is None else size
        offset = _int_param(params, "from")
        offset = _body_int(body, "from", 0) if offset is None else offset
        if size < 0:
            raise _BadRequest(
                "illegal_argument_exception", f"[size] parameter cannot be negative, found [{size}]"
            )
        if offset < 0:
            raise _BadRequest(
                "illegal_argument_exception",
                f"[from] parameter cannot be negative, found [{offset}]",
            )
        source_spec = body.get("_source")
        if "_source" in params:
            source_spec = {"false": False, "true": True}.get(
                params["_source"], params["_source"].split(",")
            )
        if body.get("stored_fields") == "_none_":
            source_spec = False
        keep = _source_filter(source_spec)
        lost = set(view.shards.lost)
        primaries = view.shards.primaries
        matches: list[tuple[float, str, dict[str, Any]]] = []
        for concrete in indices:
            for doc in CATALOGUE:
                if doc["entity_id"] % primaries in lost:
                    continue  # the shard holding this product is unassigned
                try:
                    score = scorer(doc)
                except (TypeError, ValueError, AttributeError) as exc:
                    raise _BadRequest("parsing_exception", f"failed to run query: {exc}") from None
                if score is not None:
                    matches.append((round(score, 7), concrete, doc))
        matches.sort(key=lambda m: (-m[0], m[1], m[2]["entity_id"]))
        hits = []
        for score, concrete, doc in matches[offset : offset + size]:
            hit: dict[str, Any] = {
                "_index": concrete,
                "_id": str(doc["entity_id"]),
                "_score": score,
            }
            source = keep({k: doc[k] for k in _SOURCE_FIELDS})
            if source is not None:
                hit["_source"] = source
            hits.append(hit)
        failed = len(lost) * len(indices)
        shards: dict[str, Any] = {
            "total": primaries * len(indices),
            "successful": primaries * len(indices) - failed,
            "skipped": 0,
            "failed": failed,
        }
        if failed:
            shards["failures"] = [
                {
                    "shard": shard,
                    "index": concrete,
                    "node": None,
                    "reason": {"type": "no_shard_available_action_exception", "reason": None},
                }
                for concrete in indices
                for shard in sorted(lost)
            ]
        total: Any = {"value": len(matches), "relation": "eq"}
        if _flag(params, "rest_total_hits_as_int"):
            total = len(matches)
        result = {
            "took": max(1, round((time.perf_counter() - started) * 1000)),
            "timed_out": False,
            "_shards": shards,
            "hits": {
                "total": total,
                "max_score": matches[0][0] if matches else None,
                "hits": hits,
            },
        }
        return self._json(request, result)

    def _all_shards_failed(self, request: web.BaseRequest) -> web.Response:
        return self._error(
            request,
            503,
            "search_phase_execution_exception",
            "all shards failed",
            root_cause=[],
            phase="query",
            grouped=True,
            failed_shards=[],
        )

    def _index_info(self, request: web.Request, index: str | None) -> web.Response:
        """`GET /{index}`: enough settings and mappings for a client to recognise it."""
        primaries = len(self._nodes)
        result: dict[str, Any] = {}
        for concrete in _resolve_indices(index):
            alias = re.sub(r"_v\d+$", "", concrete)
            result[concrete] = {
                "aliases": {alias: {}} if alias != concrete else {},
                "mappings": {
                    "properties": {
                        "name": {"type": "text"},
                        "sku": {"type": "keyword"},
                        "price": {"type": "double"},
                    }
                },
                "settings": {
                    "index": {
                        "number_of_shards": str(primaries),
                        "number_of_replicas": "1" if primaries > 1 else "0",
                        "provided_name": concrete,
                        "uuid": base64.urlsafe_b64encode(
                            hashlib.md5(f"{self.cluster_uuid}/{concrete}".encode()).digest()
                        )
                        .rstrip(b"=")
                        .decode(),
                    }
                },
            }
        return self._json(request, result)


def _route(parts: list[str]) -> tuple[str | None, str | None]:
    """Which endpoint a path names, plus its index argument if any."""
    if not parts:
        return "root", None
    if parts[:2] == ["_cluster", "health"] and len(parts) <= 3:
        return "health", parts[2] if len(parts) == 3 else None
    if parts == ["_cat", "nodes"]:
        return "cat_nodes", None
    if parts == ["_search"]:
        return "search", None
    if len(parts) == 2 and parts[1] == "_search" and not parts[0].startswith("_"):
        return "search", parts[0]
    if len(parts) == 1 and not parts[0].startswith("_"):
        return "index", parts[0]
    return None, None


def _body_int(body: Mapping[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest("x_content_parse_exception", f"[1:1] [{name}] failed to parse field")
    return value


# --------------------------------------------------------------------------- fleet


class SimulatorFleet:
    """Several clusters plus a small JSON control API.

    The control API lets other processes (the CLI) inject faults into a running fleet.
    """

    def __init__(
        self, clusters: list[SimulatedCluster], *, host: str = "127.0.0.1", control_port: int = 0
    ) -> None:
        names = [cluster.name for cluster in clusters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate cluster name(s): {', '.join(duplicates)}")
        self.clusters: dict[str, SimulatedCluster] = {c.name: c for c in clusters}
        self.host = host
        self.control_port = control_port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> SimulatorFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def control_url(self) -> str:
        """Base URL of the control API; known once start() has bound it."""
        if self._runner is None:
            raise RuntimeError("control_url is known after SimulatorFleet.start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.control_port}"

    async def start(self) -> None:
        """Start every cluster, then the control server; undo everything on failure."""
        started: list[SimulatedCluster] = []
        try:
            for cluster in self.clusters.values():
                await cluster.start()
                started.append(cluster)
            app = web.Application(middlewares=[_json_errors])
            app.router.add_get("/clusters", self._list)
            app.router.add_get("/clusters/{name}", self._get)
            app.router.add_post("/clusters/{name}/nodes/{node}/fault", self._post_fault)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.host, self.control_port, reuse_address=True)
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
            self.control_port = int(runner.addresses[0][1])
            self._runner = runner
        except BaseException:
            for cluster in started:
                await cluster.stop()
            raise

    async def stop(self) -> None:
        """Stop the control server first (no fault changes mid-shutdown), then the clusters."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await asyncio.gather(*(cluster.stop() for cluster in self.clusters.values()))

    def set_fault(self, cluster: str, node: int | None, fault: NodeFault) -> None:
        """Inject a fault; ValueError names an unknown cluster or node index."""
        self._cluster(cluster).set_fault(node, fault)

    def describe(self) -> dict[str, Any]:
        return {"clusters": {name: c.describe() for name, c in self.clusters.items()}}

    def _cluster(self, name: str) -> SimulatedCluster:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ValueError(f"unknown cluster {name!r}; known clusters: {known}") from None

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _get(self, request: web.Request) -> web.Response:
        try:
            cluster = self._cluster(request.match_info["name"])
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(cluster.describe())

    async def _post_fault(self, request: web.Request) -> web.Response:
        """Apply a fault and answer only once the node's socket reflects it."""
        try:
            cluster = self._cluster(request.match_info["name"])
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        raw_node = request.match_info["node"]
        node: int | None = None
        if raw_node != "all":
            node = int(raw_node) if raw_node.isdigit() else -1
            if not 0 <= node < cluster.node_count:
                return web.json_response(
                    {
                        "error": f"cluster {cluster.name!r} has no node {raw_node!r}; use "
                        f"0..{cluster.node_count - 1} or 'all'"
                    },
                    status=404,
                )
        try:
            payload = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response(
                {"error": f'request body must be JSON like {{"mode": "down"}}: {exc}'}, status=400
            )
        try:
            fault = NodeFault.from_dict(payload)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        cluster.set_fault(node, fault)
        try:
            await cluster.settle()
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response(cluster.describe())


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown control routes answer JSON too, so the CLI can always show `error`."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {"error": f"{exc.reason}: {request.method} {request.path}"}, status=exc.status
        )


async def set_fault_remote(
    control_url: str,
    cluster: str,
    node: int | None,
    fault: NodeFault,
    *,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """POST a fault to a running fleet's control API; FaultControlError carries its message."""
    target = "all" if node is None else str(node)
    url = f"{control_url.rstrip('/')}/clusters/{quote(cluster, safe='')}/nodes/{target}/fault"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, json=fault.to_dict())
    except httpx.HTTPError as exc:
        raise FaultControlError(
            None, f"cannot reach the simulator control API at {control_url}: {exc!r}"
        ) from exc
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise FaultControlError(
            response.status_code,
            f"setting fault {fault.mode} on {cluster}/{target} failed "
            f"(HTTP {response.status_code}): {message}",
        )
    result: dict[str, Any] = response.json()
    return result


# --------------------------------------------------------------------------- standalone


async def _serve(specs: list[str], node_count: int, host: str, control_port: int) -> None:
    clusters = []
    for spec in specs:
        name, _, distribution = spec.partition(":")
        clusters.append(
            SimulatedCluster(
                name,
                node_count=node_count,
                host=host,
                distribution="opensearch" if distribution == "opensearch" else "elasticsearch",
            )
        )
    async with SimulatorFleet(clusters, host=host, control_port=control_port) as fleet:
        summary = {
            "control_url": fleet.control_url,
            "clusters": {name: c.node_urls for name, c in fleet.clusters.items()},
        }
        print(json.dumps(summary), flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Run a fleet in the foreground: `python -m sandbox.search_sim --cluster primary ...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cluster",
        action="append",
        metavar="NAME[:opensearch]",
        help="a cluster to simulate (repeatable); default: primary and secondary",
    )
    parser.add_argument("--nodes", type=int, default=3, help="nodes per cluster")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(
                args.cluster or ["primary", "secondary"], args.nodes, args.host, args.control_port
            )
        )


if __name__ == "__main__":
    main()
