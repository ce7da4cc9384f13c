"""The query engine: enough of the Query DSL and Lucene syntax for a storefront's product
search, scored and filtered as the real servers do."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.search_sim.catalogue import CATALOGUE, SOURCE_FIELDS
from sandbox.search_sim.errors import BadRequest

# --------------------------------------------------------------------------- search


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


def query_fields(spec: Any) -> list[str]:
    names = [spec] if isinstance(spec, str) else list(spec or ["*"])
    fields: list[str] = []
    for raw in names:
        name = str(raw).split("^")[0].removesuffix(".keyword")
        fields += [f for f in SOURCE_FIELDS if fnmatch.fnmatchcase(f, name)]
    return list(dict.fromkeys(fields))


def _text_scorer(fields: list[str], text: Any, operator: str = "or") -> _Scorer:
    """Case-insensitive substring match of every query term on the given fields."""
    terms = _terms(text)
    require_all = str(operator).lower() == "and"

    def score(doc: Mapping[str, Any]) -> float | None:
        best: float | None = None
        for name in fields:
            value = doc.get(name)
            if value is None:
                continue  # a document without the field (a log line, a check document)
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


def lucene_scorer(query: str, default_fields: list[str], operator: str = "or") -> _Scorer:
    """The tiny subset of Lucene query syntax clients send: `term`, `field:term`, `*`."""
    if query.strip() in ("", "*", "*:*"):
        return lambda _doc: 1.0
    tokens = re.findall(r'(?:([\w.]+):)?("[^"]*"|\S+)', query)
    if any(value in ("AND", "&&") for _, value in tokens):
        operator = "and"
    clauses = [
        _text_scorer(query_fields(name) if name else default_fields, value.strip('"'))
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
        raise BadRequest("parsing_exception", f"[{kind}] query doesn't support multiple fields")
    ((name, value),) = spec.items()
    return str(name), value


def _field_and_value(kind: str, spec: Any, value_key: str) -> tuple[str, Any, Mapping[str, Any]]:
    """Like _single_field, unwrapping the long form `{"field": {"query": value, ...}}`."""
    name, value = _single_field(kind, spec)
    if isinstance(value, Mapping):
        if value_key not in value:
            raise BadRequest("parsing_exception", f"[{kind}] requires [{value_key}]")
        return name, value[value_key], value
    return name, value, {}


def _clauses(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def compile_query(query: Any) -> _Scorer:
    """Turn the query DSL subset Magento and health probes use into a scoring function."""
    if not isinstance(query, Mapping) or len(query) != 1:
        raise BadRequest(
            "parsing_exception", "[_na] query malformed, no start_object after query name"
        )
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return lambda _doc: 1.0
    if kind == "match_none":
        return lambda _doc: None
    if kind in ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix"):
        name, text, options = _field_and_value(kind, spec, "query")
        return _text_scorer(query_fields(name), text, options.get("operator", "or"))
    if kind == "multi_match":
        if not isinstance(spec, Mapping) or "query" not in spec:
            raise BadRequest("parsing_exception", "No text specified for multi_match query")
        return _text_scorer(
            query_fields(spec.get("fields")), spec["query"], spec.get("operator", "or")
        )
    if kind in ("query_string", "simple_query_string"):
        if not isinstance(spec, Mapping) or "query" not in spec:
            raise BadRequest("parsing_exception", f"[{kind}] must be provided with a [query]")
        default = query_fields(spec.get("fields") or spec.get("default_field") or "*")
        return lucene_scorer(str(spec["query"]), default, spec.get("default_operator", "or"))
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
        return lambda doc: 1.0 if str(doc.get("_id")) in values else None
    if kind == "range":
        return _range_scorer(spec)
    if kind == "constant_score":
        inner = compile_query((spec or {}).get("filter"))
        boost = float((spec or {}).get("boost", 1.0))
        return lambda doc: boost if inner(doc) is not None else None
    if kind == "bool":
        return _bool_scorer(spec)
    raise BadRequest("parsing_exception", f"unknown query [{kind}]")


def _as_term(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_scorer(spec: Any) -> _Scorer:
    name, bounds = _single_field("range", spec)
    if not isinstance(bounds, Mapping):
        raise BadRequest("parsing_exception", "[range] query malformed, no start_object")
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
        raise BadRequest("parsing_exception", "[bool] query malformed, no start_object")
    must = [compile_query(q) for q in _clauses(spec.get("must", []))]
    filters = [compile_query(q) for q in _clauses(spec.get("filter", []))]
    should = [compile_query(q) for q in _clauses(spec.get("should", []))]
    must_not = [compile_query(q) for q in _clauses(spec.get("must_not", []))]
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


def source_filter(spec: Any) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
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
