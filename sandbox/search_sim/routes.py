"""The REST surface as a table: which handler a method and path reach, so an unknown path
answers "no handler found" and a known one with the wrong method 405, as the real servers do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.search_sim.errors import BadRequest

if TYPE_CHECKING:
    from sandbox.search_sim.cluster import SimulatedCluster, _Node, _View

# A path segment naming an index expression: never one starting with "_" (those are APIs),
# except `_all`.
INDEX = "{index}"
# Any one segment: an alias name, a document id, a pattern.
NAME = "{name}"


@dataclass
class Reply:
    """A handler's answer: a JSON body, or `text` for the _cat tables."""

    body: Any = None
    status: int = 200
    text: str | None = None
    headers: dict[str, str] | None = None


@dataclass
class Ctx:
    """Everything a handler needs about one request."""

    cluster: SimulatedCluster
    node: _Node
    request: web.Request
    view: _View
    released: asyncio.Event
    args: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    def arg(self, name: str) -> str | None:
        return self.args.get(name)

    async def body(self, *, required: bool = False) -> Any:
        """The JSON body, parsed as ES does; an empty one is {} unless `required`."""
        raw = await self.request.read()
        if not raw.strip():
            if required:
                raise BadRequest("parse_exception", "request body is required")
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest("x_content_parse_exception", f"[1:1] {exc}") from None

    async def object_body(self, *, required: bool = False) -> dict[str, Any]:
        body = await self.body(required=required)
        if not isinstance(body, dict):
            raise BadRequest("parse_exception", "request body must be a JSON object")
        return body


Handler = Callable[[Ctx], Awaitable[Reply | web.Response]]


@dataclass(frozen=True)
class Route:
    """Methods and a path pattern; `only` limits it to one distribution."""

    methods: tuple[str, ...]
    pattern: tuple[str, ...]
    handler: Handler
    only: str | None = None
    needs_quorum: bool = True

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.pattern):
            return None
        args: dict[str, str] = {}
        for token, part in zip(self.pattern, parts, strict=True):
            if token == INDEX:
                if part.startswith("_") and part != "_all":
                    return None
                args["index"] = part
            elif token.startswith("{"):
                args[token.strip("{}")] = part
            elif token != part:
                return None
        return args


def find(
    routes: list[Route], parts: list[str], method: str, distribution: str
) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route for this request, its path arguments, and every method the path allows."""
    allowed: list[str] = []
    chosen: tuple[Route | None, dict[str, str]] = (None, {})
    for route in routes:
        if route.only is not None and route.only != distribution:
            continue
        args = route.match(parts)
        if args is None:
            continue
        for m in route.methods:
            if m not in allowed:
                allowed.append(m)
        if chosen[0] is None and method in route.methods:
            chosen = (route, args)
    return chosen[0], chosen[1], allowed


# --------------------------------------------------------------------------- parameters


def flag(query: Mapping[str, str], name: str) -> bool:
    """ES boolean params: present without value or "true" means true."""
    return name in query and query[name].lower() in ("", "true")


def int_param(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise BadRequest(
            "illegal_argument_exception",
            f"Failed to parse int parameter [{name}] with value [{query[name]}]",
        ) from None


def body_int(body: Mapping[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("x_content_parse_exception", f"[1:1] [{name}] failed to parse field")
    return value


def split_names(expression: str | None) -> list[str]:
    return [p.strip() for p in (expression or "").split(",") if p.strip()]
