"""What one simulated cluster stores: indices holding documents with sequence numbers,
Magento's versioned product indices behind their store aliases, and how an index
expression (names, aliases, wildcards) resolves against them.

Pure data: no HTTP here. Shard placement comes from the nodes' faults (cluster.py); every
index shares that placement, so a lost node degrades every index alike.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sandbox.search_sim.catalogue import CATALOGUE, SOURCE_FIELDS, new_cluster_uuid
from sandbox.search_sim.errors import ApiError, BadRequest, IndexNotFound

HealthOverride = Literal["red", "yellow"]
Flavour = Literal["opensearch", "elasticsearch"]
FollowState = Literal["syncing", "paused", "failed"]

STATUS_RANK = {"green": 0, "yellow": 1, "red": 2}
LOG_INDEX = "logs-magento-000001"
_LOG_LINES = (
    {"@timestamp": "2024-09-01T08:00:00Z", "level": "info", "message": "cron: indexer ran"},
    {"@timestamp": "2024-09-01T08:05:00Z", "level": "warning", "message": "cache: flushed"},
    {"@timestamp": "2024-09-01T08:10:00Z", "level": "info", "message": "order 1001 placed"},
)
PRODUCT_MAPPINGS: dict[str, Any] = {
    "properties": {
        "name": {"type": "text"},
        "sku": {"type": "keyword"},
        "price": {"type": "double"},
    }
}
_INVALID_CHARS = ("\\", "/", "*", "?", '"', "<", ">", "|", " ", ",", "#", ":")


# --------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shards:
    """Shard copies of one index (or the sum of several): copies per shard and live ones."""

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

    @classmethod
    def combine(cls, parts: Iterable[Shards]) -> Shards:
        """Several indices' shards as one set: cluster health sums them."""
        copies: list[int] = []
        assigned: list[int] = []
        delayed: list[int] = []
        for part in parts:
            copies += part.copies
            assigned += part.assigned
            delayed += part.delayed
        return cls(tuple(copies), tuple(assigned), tuple(delayed))

    def degraded(self, override: HealthOverride | None) -> Shards:
        """At least as bad as `override`: red loses shard 0, yellow one of its replicas."""
        if override is None or not self.copies:
            return self
        copies, assigned, delayed = list(self.copies), list(self.assigned), list(self.delayed)
        if override == "red" and not self.lost:
            assigned[0] = delayed[0] = 0
        elif override == "yellow" and assigned == copies:
            if copies[0] > 1:
                assigned[0] -= 1
            else:
                copies[0] += 1  # a single-node cluster asked for a replica it cannot place
        return Shards(tuple(copies), tuple(assigned), tuple(delayed))


def shard_of(doc_id: str, primaries: int) -> int:
    """The shard a document routes to: catalogue ids by number, others by a stable hash."""
    if primaries <= 0:
        return 0
    number = int(doc_id) if doc_id.isdigit() else zlib.crc32(doc_id.encode())
    return number % primaries


# --------------------------------------------------------------------------- documents


@dataclass
class Document:
    source: dict[str, Any]
    seq_no: int
    version: int
    primary_term: int = 1


@dataclass(frozen=True)
class Operation:
    """One entry of an index's history, what a follower replays: a write or a delete."""

    seq_no: int
    doc_id: str
    source: dict[str, Any] | None
    version: int
    # When the leader took it (monotonic): a follower that polls sees it only later.
    written_at: float = field(default_factory=time.monotonic)


@dataclass
class FollowerLink:
    """What makes an index a follower: what it copies, how far it got, why it stopped."""

    flavour: Flavour
    connection: str
    leader_index: str
    leader_uuid: str
    state: FollowState = "syncing"
    reason: str = "User initiated"
    leader_checkpoint: int = -1
    lag: int = 0
    fatal: dict[str, Any] | None = None
    use_roles: dict[str, Any] | None = None
    operations_read: int = 0
    operations_written: int = 0
    bytes_read: int = 0
    successful_reads: int = 0
    failed_reads: int = 0
    successful_writes: int = 0
    read_time_ms: int = 0
    write_time_ms: int = 0
    last_read: float = field(default_factory=time.monotonic)


@dataclass
class Index:
    """One concrete index: its documents, history and the metadata real servers report."""

    name: str
    uuid: str = field(default_factory=new_cluster_uuid)
    docs: dict[str, Document] = field(default_factory=dict)
    ops: list[Operation] = field(default_factory=list)
    max_seq_no: int = -1
    aliases: set[str] = field(default_factory=set)
    is_open: bool = True
    write_block: bool = False
    health_override: HealthOverride | None = None
    follower: FollowerLink | None = None
    mappings: dict[str, Any] | None = None
    deleted_docs: int = 0
    creation_date: int = field(default_factory=lambda: int(time.time() * 1000))
    settings_version: int = 1
    aliases_version: int = 1
    mapping_version: int = 1

    @property
    def checkpoint(self) -> int:
        """The global checkpoint; every write is acknowledged at once, so the max seq_no."""
        return self.max_seq_no

    def write(self, doc_id: str, source: dict[str, Any]) -> tuple[Document, bool]:
        """Index a document as the primary does: next seq_no, version + 1; True if created."""
        old = self.docs.get(doc_id)
        self.max_seq_no += 1
        doc = Document(dict(source), self.max_seq_no, old.version + 1 if old else 1)
        self.docs[doc_id] = doc
        if old is not None:
            self.deleted_docs += 1  # Lucene updates are a delete plus an add
        self.ops.append(Operation(doc.seq_no, doc_id, doc.source, doc.version))
        return doc, old is None

    def delete(self, doc_id: str) -> tuple[Operation, bool]:
        """Delete as the primary does: a missing document still takes a seq_no."""
        old = self.docs.pop(doc_id, None)
        self.max_seq_no += 1
        version = old.version + 1 if old else 1
        if old is not None:
            self.deleted_docs += 1
        op = Operation(self.max_seq_no, doc_id, None, version)
        self.ops.append(op)
        return op, old is not None

    def apply(self, op: Operation) -> None:
        """Replay a leader's operation with its own seq_no, as a following engine does."""
        if op.source is None:
            if self.docs.pop(op.doc_id, None) is not None:
                self.deleted_docs += 1
        else:
            if op.doc_id in self.docs:
                self.deleted_docs += 1
            self.docs[op.doc_id] = Document(dict(op.source), op.seq_no, op.version)
        self.ops.append(op)
        self.max_seq_no = max(self.max_seq_no, op.seq_no)

    def ops_after(self, seq_no: int, upto: int) -> list[Operation]:
        return [op for op in self.ops if seq_no < op.seq_no <= upto]

    def size_in_bytes(self) -> int:
        """A plausible store size: a segment's overhead plus the stored sources."""
        stored = sum(len(json.dumps(d.source)) + 64 for d in self.docs.values())
        return 225 + stored + 32 * self.deleted_docs

    def shards(self, placement: Shards) -> Shards:
        return placement.degraded(self.health_override)


# --------------------------------------------------------------------------- the model


def validate_index_name(name: str) -> None:
    """The checks ES runs before creating an index, with its messages."""

    def invalid(why: str) -> ApiError:
        return BadRequest(
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {why}",
            index_uuid="_na_",
            index=name,
        )

    if not name or name in (".", ".."):
        raise invalid("must not be '.' or '..'" if name else "must not be empty")
    if name.lower() != name:
        raise invalid("must be lowercase")
    if any(ch in name for ch in _INVALID_CHARS):
        raise invalid('must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]')
    if name[0] in "_-+":
        raise invalid("must not start with '_', '-', or '+'")


class IndexModel:
    """Every index and alias of one cluster; aliases live on their indices, as in ES."""

    def __init__(self) -> None:
        self.indices: dict[str, Index] = {}

    @classmethod
    def magento_layout(cls, stores: Iterable[int], index_prefix: str) -> IndexModel:
        """A plain `products` index, one versioned product index per store behind the store's
        alias (what Magento's indexer leaves), and a log index Magento never reads."""
        model = cls()
        model.create("products", documents=catalogue_documents(), mappings=PRODUCT_MAPPINGS)
        for store in stores:
            alias = store_alias(index_prefix, store)
            model.create(
                f"{alias}_v1",
                documents=catalogue_documents(),
                aliases=(alias,),
                mappings=PRODUCT_MAPPINGS,
            )
        model.create(
            LOG_INDEX, documents=[(str(i), line) for i, line in enumerate(_LOG_LINES, start=1)]
        )
        return model

    def get(self, name: str) -> Index | None:
        return self.indices.get(name)

    def require(self, name: str) -> Index:
        index = self.indices.get(name)
        if index is None:
            raise IndexNotFound(name)
        return index

    def alias_map(self) -> dict[str, list[str]]:
        """alias -> the indices it points at, both sorted."""
        result: dict[str, list[str]] = {}
        for index in sorted(self.indices.values(), key=lambda i: i.name):
            for alias in index.aliases:
                result.setdefault(alias, []).append(index.name)
        return dict(sorted(result.items()))

    def alias_indices(self, alias: str) -> list[Index]:
        return sorted(
            (i for i in self.indices.values() if alias in i.aliases), key=lambda i: i.name
        )

    def is_alias(self, name: str) -> bool:
        return any(name in i.aliases for i in self.indices.values())

    def resolve(
        self,
        expression: str | None,
        *,
        include_closed: bool = False,
        forbid_closed: bool = False,
        ignore_unavailable: bool = False,
    ) -> list[Index]:
        """Names, aliases and wildcards, comma-separated, as ES expands them.

        A missing concrete name raises IndexNotFound (unless ignore_unavailable); wildcards
        matching nothing resolve to nothing. Wildcards skip closed indices unless
        include_closed; naming a closed index with forbid_closed is index_closed_exception.
        """
        if expression is None or expression.strip() in ("", "_all", "*"):
            return [
                i
                for i in sorted(self.indices.values(), key=lambda i: i.name)
                if include_closed or i.is_open
            ]
        found: dict[str, Index] = {}
        for part in (p.strip() for p in expression.split(",")):
            if not part:
                continue
            if "*" in part or "?" in part:
                names = sorted(self.indices)
                for name in names:
                    index = self.indices[name]
                    hit = fnmatch.fnmatchcase(name, part) or any(
                        fnmatch.fnmatchcase(a, part) for a in index.aliases
                    )
                    if hit and (include_closed or index.is_open):
                        found.setdefault(name, index)
                continue
            targets = [self.indices[part]] if part in self.indices else self.alias_indices(part)
            if not targets:
                if ignore_unavailable:
                    continue
                raise IndexNotFound(part)
            for index in targets:
                if not index.is_open and forbid_closed:
                    if ignore_unavailable:
                        continue
                    raise index_closed(index)
                found.setdefault(index.name, index)
        return list(found.values())

    def write_target(self, name: str) -> Index | None:
        """The index a write to `name` lands in; None if neither index nor alias exists."""
        if name in self.indices:
            return self.indices[name]
        targets = self.alias_indices(name)
        if not targets:
            return None
        if len(targets) > 1:
            raise BadRequest(
                "illegal_argument_exception",
                f"no write index is defined for alias [{name}]. The write index may be "
                "explicitly disabled using is_write_index=false or the alias points to "
                "multiple indices without one being designated as a write index",
            )
        return targets[0]

    def create(
        self,
        name: str,
        *,
        documents: Iterable[tuple[str, dict[str, Any]]] = (),
        aliases: Iterable[str] = (),
        mappings: dict[str, Any] | None = None,
    ) -> Index:
        """A new index; the errors ES gives for a taken or invalid name."""
        validate_index_name(name)
        existing = self.indices.get(name)
        if existing is not None:
            raise BadRequest(
                "resource_already_exists_exception",
                f"index [{name}/{existing.uuid}] already exists",
                index_uuid=existing.uuid,
                index=name,
            )
        if self.is_alias(name):
            raise BadRequest(
                "invalid_index_name_exception",
                f"Invalid index name [{name}], already exists as alias",
                index_uuid="_na_",
                index=name,
            )
        index = Index(name, mappings=mappings)
        for doc_id, source in documents:
            index.write(doc_id, source)
        index.deleted_docs = 0
        for alias in aliases:
            self.check_alias_name(alias)
            index.aliases.add(alias)
        self.indices[name] = index
        return index

    def check_alias_name(self, alias: str) -> None:
        if alias in self.indices:
            raise BadRequest(
                "invalid_alias_name_exception",
                f"Invalid alias name [{alias}]: an index or data stream exists with the same "
                "name as the alias",
                index_uuid="_na_",
                index=alias,
            )

    def drop(self, name: str) -> Index:
        index = self.require(name)
        del self.indices[name]
        return index

    def add(self, index: Index) -> None:
        self.indices[index.name] = index

    # ------------------------------------------------------------------ what faults change

    def _named(self, name: str) -> list[Index]:
        """An index by name, or the indices an alias points at; ValueError if neither."""
        if name in self.indices:
            return [self.indices[name]]
        targets = self.alias_indices(name)
        if not targets:
            raise ValueError(f"no index or alias {name!r}")
        return targets

    def write_documents(self, name: str, count: int) -> int:
        """`count` price changes on a leader index, as Magento's indexer writes them."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"invalid count {count!r}: expected a non-negative integer")
        targets = self._named(name)
        if len(targets) != 1:
            raise ValueError(f"alias {name!r} points at {len(targets)} indices; name one")
        index = targets[0]
        if index.follower is not None:
            raise ValueError(
                f"{index.name!r} follows {index.follower.leader_index!r}; write to its leader"
            )
        if not index.is_open:
            raise ValueError(f"{index.name!r} is closed")
        ids = sorted(index.docs, key=lambda i: (not i.isdigit(), int(i) if i.isdigit() else 0, i))
        for n in range(count):
            if not ids:
                doc_id, source = catalogue_documents()[n % len(CATALOGUE)]
            else:
                doc_id = ids[(index.max_seq_no + 1 + n) % len(ids)]
                source = dict(index.docs[doc_id].source)
                if isinstance(source.get("price"), int | float):
                    source["price"] = round(float(source["price"]) + 1.0, 2)
                else:
                    source["revision"] = int(source.get("revision", 0)) + 1
            index.write(doc_id, source)
        return index.checkpoint

    def reindex_store(self, index_prefix: str, store: int) -> str:
        """Magento's full reindex: a new `_v<N+1>` index, the alias moved, the old deleted."""
        alias = store_alias(index_prefix, store)
        current = self.alias_indices(alias)
        if not current:
            raise ValueError(f"no index behind alias {alias!r} to reindex")
        versions = [
            int(m.group(1))
            for name in self.indices
            if (m := re.fullmatch(re.escape(alias) + r"_v(\d+)", name))
        ]
        version = max(versions, default=0) + 1
        name = f"{alias}_v{version}"
        documents = [(doc_id, dict(doc.source)) for doc_id, doc in current[0].docs.items()]
        new = self.create(name, documents=documents, mappings=current[0].mappings)
        for old in current:
            old.aliases.discard(alias)
            if re.fullmatch(re.escape(alias) + r"_v\d+", old.name):
                del self.indices[old.name]
        new.aliases.add(alias)
        return name

    def drop_alias(self, alias: str) -> None:
        targets = self.alias_indices(alias)
        if not targets:
            raise ValueError(f"no alias {alias!r}")
        for index in targets:
            index.aliases.discard(alias)
            index.aliases_version += 1

    def point_alias(self, alias: str, index: str) -> None:
        """Make `alias` point at `index` alone, as an operator's _aliases swap does."""
        target = self.indices.get(index)
        if target is None:
            raise ValueError(f"no index {index!r}")
        if alias in self.indices:
            raise ValueError(f"{alias!r} is an index, not an alias")
        for other in self.alias_indices(alias):
            other.aliases.discard(alias)
            other.aliases_version += 1
        target.aliases.add(alias)
        target.aliases_version += 1

    def set_health(self, name: str, status: HealthOverride | None) -> None:
        if status not in (None, "red", "yellow"):
            raise ValueError(f"invalid status {status!r}; expected red, yellow or null")
        for index in self._named(name):
            index.health_override = status


def store_alias(index_prefix: str, store: int) -> str:
    """The alias Magento searches for a store: `<prefix>_product_<store>`."""
    return f"{index_prefix}_product_{store}"


def catalogue_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(str(p["entity_id"]), {k: p[k] for k in SOURCE_FIELDS}) for p in CATALOGUE]


def index_closed(index: Index) -> ApiError:
    return BadRequest("index_closed_exception", "closed", index_uuid=index.uuid, index=index.name)


def copy_index(source: Index, name: str) -> Index:
    """A follower's bootstrap copy: the same documents, seq_nos and history, new identity."""
    return Index(
        name,
        docs={k: replace(d, source=dict(d.source)) for k, d in source.docs.items()},
        ops=list(source.ops),
        max_seq_no=source.max_seq_no,
        aliases=set(source.aliases),
        mappings=source.mappings,
        deleted_docs=source.deleted_docs,
    )


def inferred_mappings(index: Index) -> dict[str, Any]:
    """Dynamic mappings as ES derives them from the documents' first values."""
    if index.mappings is not None:
        return index.mappings
    properties: dict[str, Any] = {}
    for doc in index.docs.values():
        for key, value in doc.source.items():
            if key in properties:
                continue
            if isinstance(value, bool):
                properties[key] = {"type": "boolean"}
            elif isinstance(value, int):
                properties[key] = {"type": "long"}
            elif isinstance(value, float):
                properties[key] = {"type": "float"}
            elif isinstance(value, dict):
                properties[key] = {"type": "object"}
            else:
                properties[key] = {
                    "type": "text",
                    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                }
    return {"properties": dict(sorted(properties.items()))} if properties else {}
