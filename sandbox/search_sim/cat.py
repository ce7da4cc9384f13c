"""The `_cat` APIs: one renderer for the JSON list (every value a string) and the aligned
text table with `v`, `h` and `s`, and the aliases and indices tables that use it."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from sandbox.search_sim.errors import BadRequest
from sandbox.search_sim.indices import Index, Shards
from sandbox.search_sim.routes import Ctx, Reply, flag, split_names

Row = Mapping[str, str | None]

ALIAS_COLUMNS = ("alias", "index", "filter", "routing.index", "routing.search", "is_write_index")
_ALIAS_SHORT = {
    "a": "alias",
    "i": "index",
    "idx": "index",
    "f": "filter",
    "fi": "filter",
    "ri": "routing.index",
    "routingIndex": "routing.index",
    "rs": "routing.search",
    "routingSearch": "routing.search",
    "w": "is_write_index",
    "isWriteIndex": "is_write_index",
}
INDEX_COLUMNS = (
    "health",
    "status",
    "index",
    "uuid",
    "pri",
    "rep",
    "docs.count",
    "docs.deleted",
    "store.size",
    "pri.store.size",
)
_INDEX_SHORT = {
    "h": "health",
    "s": "status",
    "i": "index",
    "idx": "index",
    "id": "uuid",
    "p": "pri",
    "shards.primary": "pri",
    "shardsPrimary": "pri",
    "r": "rep",
    "shards.replica": "rep",
    "shardsReplica": "rep",
    "dc": "docs.count",
    "docsCount": "docs.count",
    "dd": "docs.deleted",
    "docsDeleted": "docs.deleted",
    "ss": "store.size",
    "storeSize": "store.size",
    "ds": "dataset.size",
}
_INDEX_NUMERIC = {"pri", "rep", "docs.count", "docs.deleted", "store.size", "pri.store.size"}


def render(
    query: Mapping[str, str],
    rows: Sequence[Row],
    columns: Sequence[str],
    *,
    known: Sequence[str] = (),
    short: Mapping[str, str] | None = None,
    numeric: set[str] | frozenset[str] = frozenset(),
) -> Reply:
    """A `_cat` answer: `format=json` lists the rows, else the text table real nodes print."""
    chosen = list(columns)
    if "h" in query:
        chosen = []
        for raw in query["h"].split(","):
            column = (short or {}).get(raw, raw)
            if known and column not in known:
                raise BadRequest("illegal_argument_exception", f"mapping for [{raw}] not found")
            chosen.append(column)
    ordered = list(rows)
    for key in reversed(split_names(query.get("s"))):
        name, _, direction = key.partition(":")
        column = (short or {}).get(name, name)
        if known and column not in known:
            raise BadRequest(
                "unsupported_operation_exception",
                f"Unable to sort by unknown sort key `{name}`",
            )

        def sort_key(row: Row, column: str = column) -> tuple[int, float, str]:
            value = row.get(column) or ""
            number = _number(value)
            return (1, 0.0, value) if number is None else (0, number, value)

        ordered.sort(key=sort_key, reverse=direction == "desc")
    if query.get("format") == "json":
        return Reply([{c: row.get(c) for c in chosen} for row in ordered])
    header: list[Row] = [{c: c for c in chosen}] if flag(query, "v") else []

    def cell(row: Row, column: str) -> str:
        return row.get(column) or ""

    widths = {c: max((len(cell(r, c)) for r in header + ordered), default=0) for c in chosen}
    # Like real _cat: the header is left-aligned, numeric cells right-aligned.
    lines = [" ".join(cell(r, c).ljust(widths[c]) for c in chosen) for r in header]
    lines += [
        " ".join(
            cell(r, c).rjust(widths[c]) if c in numeric else cell(r, c).ljust(widths[c])
            for c in chosen
        )
        for r in ordered
    ]
    return Reply(text="".join(line + "\n" for line in lines))


_UNITS = {"tb": 1 << 40, "gb": 1 << 30, "mb": 1 << 20, "kb": 1 << 10, "b": 1}


def _number(value: str) -> float | None:
    """A cell as a number for `s=`: counts, and sizes with their unit (1.7kb < 3mb)."""
    scale = 1
    for unit, factor in _UNITS.items():
        if value.endswith(unit):
            value, scale = value.removesuffix(unit), factor
            break
    try:
        return float(value) * scale
    except ValueError:
        return None


def human_bytes(size: int) -> str:
    """A byte count as ES prints it: 208b, 5.6kb, 4.8mb."""
    for unit, scale in (("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + unit
    return f"{size}b"


async def cat_aliases(ctx: Ctx) -> Reply:
    """`GET /_cat/aliases[/<names>]`: one row per alias and index."""
    patterns = split_names(ctx.arg("name"))
    rows: list[Row] = []
    for alias, indices in ctx.cluster.data.alias_map().items():
        if patterns and not _matches(alias, patterns):
            continue
        for index in indices:
            rows.append(
                {
                    "alias": alias,
                    "index": index,
                    "filter": "-",
                    "routing.index": "-",
                    "routing.search": "-",
                    "is_write_index": "-",
                }
            )
    return render(ctx.query, rows, ALIAS_COLUMNS, known=ALIAS_COLUMNS, short=_ALIAS_SHORT)


async def cat_indices(ctx: Ctx) -> Reply:
    """`GET /_cat/indices[/<pattern>]`: health, status, counts and sizes per index."""
    cluster = ctx.cluster
    indices = cluster.data.resolve(ctx.arg("name"), include_closed=True)
    columns = list(INDEX_COLUMNS)
    if cluster.distribution == "elasticsearch" and cluster.version_tuple >= (8, 11):
        columns.append("dataset.size")
    raw_bytes = ctx.query.get("bytes") == "b"
    rows = [index_row(index, index.shards(ctx.view.shards), raw_bytes) for index in indices]
    return render(
        ctx.query,
        rows,
        columns,
        known=columns,
        short=_INDEX_SHORT,
        numeric=_INDEX_NUMERIC | {"dataset.size"},
    )


def index_row(index: Index, shards: Shards, raw_bytes: bool) -> dict[str, str | None]:
    size = index.size_in_bytes()
    stored = size * shards.active // max(1, shards.primaries)

    def shown(n: int) -> str:
        return str(n) if raw_bytes else human_bytes(n)

    replicas = max(shards.copies, default=1) - 1
    row: dict[str, str | None] = {
        "health": shards.status,
        "status": "open" if index.is_open else "close",
        "index": index.name,
        "uuid": index.uuid,
        "pri": str(shards.primaries),
        "rep": str(replicas),
        "docs.count": str(len(index.docs)),
        "docs.deleted": str(index.deleted_docs),
        "store.size": shown(stored),
        "pri.store.size": shown(size),
        "dataset.size": shown(stored),
    }
    if not index.is_open:
        for key in ("docs.count", "docs.deleted", "store.size", "pri.store.size", "dataset.size"):
            row[key] = None
    return row


def _matches(name: str, patterns: list[str]) -> bool:
    return any(p in ("_all", "*") or fnmatch.fnmatchcase(name, p) for p in patterns)
