"""A Magento 2 stand-in: just enough storefront to show what a search outage does to it.

When the search cluster dies, Magento still answers: GraphQL product searches return
"No alive nodes found in your cluster", and category pages render as empty categories.
Magento cannot tell an empty category from a broken one, so it stores the empty page in its
full page cache (Redis, Cm_Cache_Backend_Redis format) and Varnish caches it too. A failover
is only done once those caches are flushed and a storefront search returns products again;
this app reproduces that, with real Redis behind it and real Varnish in front.

For a Region switch the same app runs in each Region, labelled by ``region``. Its MySQL is a
probe (``database``): a Region whose Aurora cluster is a reader still passes
``/health_check.php`` but fails the guest-cart mutations a checkout needs, as Magento does.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import inspect
import json
import random
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import redis.asyncio as aioredis
from aiohttp import web
from graphql import (
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
    graphql,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = [
    "CATEGORY_EMPTY_TEXT",
    "CATEGORY_PATH",
    "CATEGORY_TAGS",
    "DB_READ_ONLY",
    "DB_UNREACHABLE",
    "INTERNAL_ERROR",
    "NO_ALIVE_NODES",
    "PAGE_CACHE_DB",
    "REGION_HEADER",
    "DatabaseProbe",
    "DatabaseState",
    "Storefront",
    "StorefrontSettings",
]

NO_ALIVE_NODES = "No alive nodes found in your cluster"
"""The message Magento's Elasticsearch/OpenSearch client gives when no node answers."""
CATEGORY_EMPTY_TEXT = "We can't find products matching the selection."
"""What Magento renders for a category without products, and so for a broken search."""
CATEGORY_PATH = "/women.html"
CATEGORY_ID = 3
CATEGORY_TAGS = (f"cat_c_{CATEGORY_ID}", f"cat_c_p_{CATEGORY_ID}", "FPC")
HOME_TAGS = ("cms_p_home", "FPC")
PAGE_CACHE_CONTROL = "public, max-age=86400, s-maxage=86400"
PAGE_LIFETIME_S = 86400
DEFAULT_CACHE_DB = 0
PAGE_CACHE_DB = 1
GRID_PER_PAGE = 12  # catalog/frontend/grid_per_page default
_MAX_CNAME_HOPS = 8
_REDIS_TIMEOUT_S = 1.0

# Cm_Cache_Backend_Redis layout: a hash per entry and a set of entry ids per tag.
# Magento's cache frontend upper-cases ids and tags and prefixes them with the id_prefix
# from env.php (by default the first 3 hex digits of md5(<install path>) plus "_").
CM_KEY_PREFIX = "zc:k:"
CM_TAG_PREFIX = "zc:ti:"
CM_TAGS_SET = "zc:tags"
ID_PREFIX = "69d_"
_CONFIG_CACHE_ID = "SYSTEM_DEFAULT"
_CONFIG_CACHE_TAGS = ("CONFIG",)

REGION_HEADER = "X-Sandbox-Region"
"""Names the Region whose app server answered (sandbox only; Magento sends no such header)."""
INTERNAL_ERROR = "Internal server error"
"""graphql-php's message for an exception that is not client-safe (a PDOException is not)."""
DB_READ_ONLY = (
    "SQLSTATE[HY000]: General error: 1290 The MySQL server is running with the --read-only"
    " option so it cannot execute this statement"
)
"""PDO's message for a write to an Aurora MySQL reader (a secondary Region's cluster)."""
DB_UNREACHABLE = "SQLSTATE[HY000] [2002] Connection refused"
"""PDO's message when nothing accepts the MySQL connection."""
MASKED_CART_ID_LENGTH = 32
_MASKED_ID_CHARS = string.ascii_letters + string.digits
_DATABASE_TIMEOUT_S = 1.0


class SearchUnavailableError(Exception):
    """The search cluster could not answer; Magento shows this as NO_ALIVE_NODES."""


class DatabaseError(Exception):
    """MySQL refused the statement (PDOException): not client-safe, so GraphQL masks it."""


@dataclass(frozen=True)
class DatabaseState:
    """What this Region's app servers see of MySQL: a reachable writer unless told otherwise.

    In an Aurora global database only one Region's cluster is the writer; the others are
    readers that accept connections (so health checks pass) but refuse every write.
    """

    reachable: bool = True
    writer: bool = True

    @property
    def writable(self) -> bool:
        return self.reachable and self.writer


DatabaseProbe = Callable[[], DatabaseState | Awaitable[DatabaseState]]
"""Asked on each request that needs MySQL; raising counts as an unreachable database."""


@dataclass
class StorefrontSettings:
    """Where Magento finds search and its caches (what app/etc/env.php and config hold).

    ``database`` stands in for the MySQL connection (None: a reachable writer, the single-Region
    setup); ``region`` labels every response with REGION_HEADER so a test can tell which
    Region's app server answered.
    """

    search_host: str
    search_port: int
    redis_url: str
    dns_server: tuple[str, int] | None = None
    index: str = "magento2_product_1"
    search_timeout_seconds: float = 1.0
    scheme: str = "http"
    database: DatabaseProbe | None = None
    region: str | None = None


@dataclass(frozen=True)
class SearchResult:
    total: int
    items: list[dict[str, Any]]


# --------------------------------------------------------------------------- GraphQL schema


def _field(type_: Any) -> GraphQLField:
    return GraphQLField(type_)


_PRODUCT_FIELDS = {"sku": _field(GraphQLString), "name": _field(GraphQLString)}
_PRODUCT_INTERFACE = GraphQLInterfaceType(
    "ProductInterface",
    lambda: dict(_PRODUCT_FIELDS),
    resolve_type=lambda _value, _info, _type: "SimpleProduct",
)
_SIMPLE_PRODUCT = GraphQLObjectType(
    "SimpleProduct", lambda: dict(_PRODUCT_FIELDS), interfaces=[_PRODUCT_INTERFACE]
)
_PAGE_INFO = GraphQLObjectType(
    "SearchResultPageInfo",
    {
        "current_page": _field(GraphQLInt),
        "page_size": _field(GraphQLInt),
        "total_pages": _field(GraphQLInt),
    },
)
_PRODUCTS = GraphQLObjectType(
    "Products",
    {
        "total_count": _field(GraphQLInt),
        "items": _field(GraphQLList(_PRODUCT_INTERFACE)),
        "page_info": _field(_PAGE_INFO),
    },
)


async def _resolve_products(
    _root: object,
    info: GraphQLResolveInfo,
    search: str | None = None,
    page_size: int = 20,
    current_page: int = 1,
) -> dict[str, Any]:
    """Magento's products query: validate like Magento, then ask the search cluster."""
    if search is None:
        raise GraphQLError("'search' or 'filter' input argument is required.")
    if page_size < 1:
        raise GraphQLError("pageSize value must be greater than 0.")
    if current_page < 1:
        raise GraphQLError("currentPage value must be greater than 0.")
    storefront: Storefront = info.context
    try:
        result = await storefront.search(
            search, size=page_size, offset=(current_page - 1) * page_size
        )
    except SearchUnavailableError:
        # Developer mode shows the real message; production mode would mask it.
        raise GraphQLError(NO_ALIVE_NODES, extensions={"category": "internal"}) from None
    return {
        "total_count": result.total,
        "items": result.items,
        "page_info": {
            "current_page": current_page,
            "page_size": page_size,
            "total_pages": -(-result.total // page_size),
        },
    }


def _input_value(cart_input: dict[str, Any] | None, key: str) -> str | None:
    value = (cart_input or {}).get(key)
    return None if value is None else str(value)


async def _resolve_create_empty_cart(
    _root: object, info: GraphQLResolveInfo, cart_input: dict[str, Any] | None = None
) -> str:
    """createEmptyCart: the new cart's masked id (a guest here: no customer token is read)."""
    storefront: Storefront = info.context
    return await storefront.create_guest_cart(_input_value(cart_input, "cart_id"))


async def _resolve_create_guest_cart(
    _root: object, info: GraphQLResolveInfo, cart_input: dict[str, Any] | None = None
) -> dict[str, Any]:
    """createGuestCart (Magento 2.4.7+): the same cart, as { cart { id } }."""
    storefront: Storefront = info.context
    masked_id = await storefront.create_guest_cart(_input_value(cart_input, "cart_uid"))
    return {"cart": {"id": masked_id}}


_CART = GraphQLObjectType("Cart", {"id": _field(GraphQLNonNull(GraphQLID))})
_CREATE_GUEST_CART_OUTPUT = GraphQLObjectType("CreateGuestCartOutput", {"cart": _field(_CART)})
_CREATE_EMPTY_CART_INPUT = GraphQLInputObjectType(
    "createEmptyCartInput", {"cart_id": GraphQLInputField(GraphQLString)}
)
_CREATE_GUEST_CART_INPUT = GraphQLInputObjectType(
    "CreateGuestCartInput", {"cart_uid": GraphQLInputField(GraphQLID)}
)

SCHEMA = GraphQLSchema(
    mutation=GraphQLObjectType(
        "Mutation",
        {
            "createEmptyCart": GraphQLField(
                GraphQLString,
                args={"input": GraphQLArgument(_CREATE_EMPTY_CART_INPUT, out_name="cart_input")},
                resolve=_resolve_create_empty_cart,
                deprecation_reason=(
                    "Use `Mutation.createGuestCart`, or `Query.cart` for logged-in shoppers"
                ),
            ),
            "createGuestCart": GraphQLField(
                _CREATE_GUEST_CART_OUTPUT,
                args={"input": GraphQLArgument(_CREATE_GUEST_CART_INPUT, out_name="cart_input")},
                resolve=_resolve_create_guest_cart,
            ),
        },
    ),
    query=GraphQLObjectType(
        "Query",
        {
            "products": GraphQLField(
                _PRODUCTS,
                args={
                    "search": GraphQLArgument(GraphQLString),
                    "pageSize": GraphQLArgument(GraphQLInt, default_value=20, out_name="page_size"),
                    "currentPage": GraphQLArgument(
                        GraphQLInt, default_value=1, out_name="current_page"
                    ),
                },
                resolve=_resolve_products,
            )
        },
    ),
    types=[_SIMPLE_PRODUCT],
)


# --------------------------------------------------------------------------- storefront


class Storefront:
    """The aiohttp app standing in for Magento: GraphQL, a category page, health check."""

    def __init__(
        self, settings: StorefrontSettings, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.search_requests = 0
        self.carts: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._cache: aioredis.Redis | None = None
        self._page_cache: aioredis.Redis | None = None
        self._resolver: dns.asyncresolver.Resolver | None = None
        if settings.dns_server is not None:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [settings.dns_server[0]]
            resolver.port = settings.dns_server[1]
            # Answers are kept for their TTL, so a DNS switch is seen late, as PHP sees it.
            resolver.cache = dns.resolver.Cache()
            resolver.lifetime = settings.search_timeout_seconds
            self._resolver = resolver

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("Storefront.url is known after start()")
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Storefront:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect the clients and bind the HTTP server."""
        # A fresh connection per search, like a PHP-FPM request: no stale keep-alive
        # connection to a dead node survives into the next request.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._cache = self._redis(DEFAULT_CACHE_DB)
        self._page_cache = self._redis(PAGE_CACHE_DB)
        app = web.Application()
        app.on_response_prepare.append(self._label_region)
        app.router.add_post("/graphql", self._graphql)
        app.router.add_get("/health_check.php", self._health_check)
        app.router.add_get("/pub/health_check.php", self._health_check)
        app.router.add_get(CATEGORY_PATH, self._category_page)
        app.router.add_get("/", self._home_page)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._close_clients()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._close_clients()

    async def _close_clients(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()
        for client in (self._cache, self._page_cache):
            if client is not None:
                await client.aclose()
        self._cache = self._page_cache = None

    def _redis(self, db: int) -> aioredis.Redis:
        """One client per Magento cache frontend; fail fast (no retries) when Redis is gone."""
        return aioredis.Redis.from_url(
            self.settings.redis_url,
            db=db,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
            socket_timeout=_REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )

    # ------------------------------------------------------------------ database

    async def database_state(self) -> DatabaseState:
        """What MySQL looks like from this app server now (settings.database decides)."""
        probe = self.settings.database
        if probe is None:
            return DatabaseState()
        try:
            state = probe()
            if inspect.isawaitable(state):
                async with asyncio.timeout(_DATABASE_TIMEOUT_S):
                    state = await state
        except Exception:  # the probe failing is the database being out of reach
            return DatabaseState(reachable=False, writer=False)
        return state

    async def create_guest_cart(self, masked_id: str | None = None) -> str:
        """Magento's CreateEmptyCartForGuest: validate the id, then INSERT the quote.

        The checks run in Magento's order: the length needs no database, the "already
        exists" lookup is a read (fine on a reader), the quote itself is a write.
        """
        if masked_id is not None and len(masked_id) != MASKED_CART_ID_LENGTH:
            raise GraphQLError(
                "Cart ID length should to be 32 symbols.",
                extensions={"category": "graphql-input"},
            )
        state = await self.database_state()
        if not state.reachable:
            raise DatabaseError(DB_UNREACHABLE)
        if masked_id is not None and masked_id in self.carts:
            raise GraphQLError(
                f'Cart with ID "{masked_id}" already exists.',
                extensions={"category": "graphql-already-exists"},
            )
        if not state.writer:
            raise DatabaseError(DB_READ_ONLY)
        if masked_id is None:
            # Magento's Random::getUniqueHash: 32 characters from [A-Za-z0-9].
            masked_id = "".join(
                secrets.choice(_MASKED_ID_CHARS) for _ in range(MASKED_CART_ID_LENGTH)
            )
        self.carts.add(masked_id)
        return masked_id

    # ------------------------------------------------------------------ search

    async def resolve_search_host(self) -> str:
        """The address Magento connects to: via the sandbox DNS server (cached) or as given."""
        if self._resolver is None:
            return self.settings.search_host
        name = dns.name.from_text(self.settings.search_host)
        try:
            for _ in range(_MAX_CNAME_HOPS):
                try:
                    answer = await self._resolver.resolve(name, "A", search=False)
                except dns.resolver.NoAnswer as exc:
                    # The server gave only the CNAME; ask for its target, as a stub would.
                    target = _cname_target(exc.response(), name)
                    if target is None:
                        raise
                    name = target
                    continue
                return str(random.choice([rdata.address for rdata in answer]))
        except dns.exception.DNSException as exc:
            raise SearchUnavailableError(
                f"cannot resolve {self.settings.search_host}: {exc}"
            ) from exc
        raise SearchUnavailableError(f"too many CNAMEs resolving {self.settings.search_host}")

    async def search(self, text: str | None, *, size: int, offset: int = 0) -> SearchResult:
        """One `_search` against the cluster; any failure is SearchUnavailableError."""
        settings = self.settings
        query: dict[str, Any] = {"match": {"name": text}} if text else {"match_all": {}}
        address = await self.resolve_search_host()
        host = f"[{address}]" if ":" in address else address
        url = f"{settings.scheme}://{host}:{settings.search_port}/{settings.index}/_search"
        if self._http is None:
            raise RuntimeError("Storefront is not started")
        self.search_requests += 1
        try:
            async with self._http.post(
                url,
                json={"query": query, "size": size, "from": offset},
                headers={"Host": f"{settings.search_host}:{settings.search_port}"},
                # Over TLS the certificate names the host, not the address we resolved.
                server_hostname=settings.search_host if settings.scheme == "https" else None,
                timeout=aiohttp.ClientTimeout(total=settings.search_timeout_seconds),
            ) as response:
                if not 200 <= response.status < 300:
                    raise SearchUnavailableError(f"search answered HTTP {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SearchUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        try:
            hits = body["hits"]
            total = hits["total"]
            total = int(total["value"] if isinstance(total, dict) else total)
            items = [
                {"sku": hit["_source"]["sku"], "name": hit["_source"]["name"]}
                for hit in hits["hits"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchUnavailableError(f"unexpected search response: {exc!r}") from exc
        return SearchResult(total=total, items=items)

    # ------------------------------------------------------------------ handlers

    async def _graphql(self, request: web.Request) -> web.Response:
        """POST /graphql: request errors answer 400, execution errors 200 (as Magento)."""
        try:
            payload = await request.json()
        except ValueError:
            return _graphql_response({"errors": [{"message": "Unable to parse the request."}]}, 400)
        query = payload.get("query") if isinstance(payload, dict) else None
        if not isinstance(query, str) or not query.strip():
            return _graphql_response({"errors": [{"message": "Query string is empty."}]}, 400)
        variables = payload.get("variables")
        operation = payload.get("operationName")
        result = await graphql(
            SCHEMA,
            query,
            context_value=self,
            variable_values=variables if isinstance(variables, dict) else None,
            operation_name=operation if isinstance(operation, str) else None,
        )
        status = 400 if result.data is None and result.errors else 200
        body = result.formatted
        if result.errors:
            body["errors"] = [
                _format_error(error, formatted)
                for error, formatted in zip(result.errors, body["errors"], strict=True)
            ]
        return _graphql_response(body, status)

    async def _label_region(self, _request: web.Request, response: web.StreamResponse) -> None:
        """Stamp every response, errors and cached pages included, with this Region's name."""
        if self.settings.region is not None:
            response.headers[REGION_HEADER] = self.settings.region

    async def _health_check(self, request: web.Request) -> web.Response:
        """pub/health_check.php: MySQL must accept a connection and the caches must answer.

        A reader accepts connections, so a Region whose database is not the writer is healthy
        here; search is not checked at all.
        """
        if not (await self.database_state()).reachable:
            return web.Response(status=500, headers={"Cache-Control": "no-store"})
        try:
            async with asyncio.timeout(2 * _REDIS_TIMEOUT_S):
                for client in (self._cache, self._page_cache):
                    if client is None or not await client.ping():
                        raise RedisError("no client")
        except (RedisError, OSError, TimeoutError):
            return web.Response(status=500, headers={"Cache-Control": "no-store"})
        return web.Response(status=200, headers={"Cache-Control": "no-store"})

    async def _category_page(self, request: web.Request) -> web.Response:
        return await self._page(request, CATEGORY_TAGS, self._render_category)

    async def _home_page(self, request: web.Request) -> web.Response:
        return await self._page(request, HOME_TAGS, _render_home)

    async def _page(
        self,
        request: web.Request,
        tags: tuple[str, ...],
        render: Callable[[], Awaitable[tuple[str, str]]],
    ) -> web.Response:
        """Magento's built-in full page cache: serve from Redis, else render and store."""
        cache_id = page_cache_id(request.secure, request.path_qs)
        try:
            await self._warm_config_cache()
            cached = await self._page_cache_load(cache_id)
            if cached is not None:
                return _page_response(cached, "HIT")
            content, outcome = await render()
            entry = {
                "status": 200,
                "content": content,
                "headers": {
                    "Content-Type": "text/html; charset=UTF-8",
                    "Cache-Control": PAGE_CACHE_CONTROL,
                    "X-Magento-Tags": ",".join(tags),
                    "X-Storefront-Render": outcome,
                },
            }
            # Magento cannot tell an empty result from a failed search: it caches either.
            await self._page_cache_save(cache_id, entry, tags)
        except (RedisError, OSError) as exc:
            return _error_page(exc)
        return _page_response(entry, "MISS")

    async def _render_category(self) -> tuple[str, str]:
        try:
            result = await self.search(None, size=GRID_PER_PAGE)
        except SearchUnavailableError:
            return render_category_html([], 0), "search-failed"
        return render_category_html(result.items, result.total), "search-ok"

    # ------------------------------------------------------------------ Redis caches

    async def _page_cache_load(self, cache_id: str) -> dict[str, Any] | None:
        assert self._page_cache is not None
        data = await self._page_cache.hget(CM_KEY_PREFIX + cache_id, "d")
        if data is None:
            return None
        try:
            entry: dict[str, Any] = json.loads(data)
        except ValueError:
            return None
        return entry

    async def _page_cache_save(
        self, cache_id: str, entry: dict[str, Any], tags: tuple[str, ...]
    ) -> None:
        assert self._page_cache is not None
        await cm_save(self._page_cache, cache_id, json.dumps(entry), tags, PAGE_LIFETIME_S)

    async def _warm_config_cache(self) -> None:
        """Magento loads its config from the default cache (db 0) on every request."""
        assert self._cache is not None
        cache_id = ID_PREFIX + _CONFIG_CACHE_ID
        if not await self._cache.exists(CM_KEY_PREFIX + cache_id):
            config = json.dumps({"web": {"secure": {"base_url": self.url + "/"}}})
            await cm_save(self._cache, cache_id, config, _CONFIG_CACHE_TAGS, None)


# --------------------------------------------------------------------------- helpers


def page_cache_id(secure: bool, path_qs: str) -> str:
    """Magento's page cache identifier: sha1 of [isSecure, url, vary], prefixed, uppercased.

    The URL is keyed without the host: the sandbox has one store, and requests through
    Varnish and straight to the app must find the same entry.
    """
    raw = json.dumps([secure, path_qs, None], separators=(",", ":"))
    return ID_PREFIX + hashlib.sha1(raw.encode()).hexdigest().upper()


async def cm_save(
    client: aioredis.Redis,
    cache_id: str,
    data: str,
    tags: tuple[str, ...],
    lifetime_s: int | None,
) -> None:
    """Store an entry as Cm_Cache_Backend_Redis::save does (uncompressed).

    Field i is Cm's "infinite" flag (1 when there is no lifetime); the lifetime itself is
    the key's EXPIRE.
    """
    key = CM_KEY_PREFIX + cache_id
    full_tags = [ID_PREFIX + tag.upper() for tag in tags]
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping={
                "d": data,
                "t": ",".join(full_tags),
                "m": int(time.time()),
                "i": 1 if lifetime_s is None else 0,
            },
        )
        if lifetime_s is not None:
            pipe.expire(key, lifetime_s)
        for tag in full_tags:
            pipe.sadd(CM_TAG_PREFIX + tag, cache_id)
        pipe.sadd(CM_TAGS_SET, *full_tags)
        await pipe.execute()


def _cname_target(
    response: dns.message.Message | None, name: dns.name.Name
) -> dns.name.Name | None:
    """The end of the CNAME chain starting at name, as far as the response shows it."""
    if response is None:
        return None
    target = name
    for _ in range(_MAX_CNAME_HOPS):
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == target:
                target = rrset[0].target
                break
        else:
            break
    return None if target == name else target


def render_category_html(items: list[dict[str, Any]], total: int) -> str:
    """The category page; data-product-count is the marker tests and checks read."""
    if items:
        rows = "\n".join(
            f'      <li class="item product product-item" data-sku="{html.escape(p["sku"])}">'
            f'<strong class="product name product-item-name">{html.escape(p["name"])}</strong>'
            "</li>"
            for p in items
        )
        listing = (
            f'  <p class="toolbar-amount"><span class="toolbar-number">{total}</span> Items</p>\n'
            '  <div class="products wrapper grid products-grid"'
            f' data-product-count="{len(items)}">\n'
            f'    <ol class="products list items product-items">\n{rows}\n    </ol>\n'
            "  </div>"
        )
    else:
        listing = (
            '  <div class="message info empty" data-product-count="0">'
            f"<div>{html.escape(CATEGORY_EMPTY_TEXT, quote=False)}</div></div>"
        )
    return _html_page(
        "Women",
        "page-products catalog-category-view",
        f'<h1 class="page-title">Women</h1>\n{listing}',
    )


async def _render_home() -> tuple[str, str]:
    body = '<h1 class="page-title">Home Page</h1>\n<p>CMS homepage content goes here.</p>'
    return _html_page("Home Page", "cms-home cms-index-index", body), "no-search"


def _html_page(title: str, body_class: str, main: str) -> str:
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f'<body class="{body_class}">\n<main id="maincontent">\n{main}\n</main>\n</body></html>\n'
    )


def _page_response(entry: dict[str, Any], page_cache: str) -> web.Response:
    headers = dict(entry.get("headers", {}))
    headers["X-Storefront-Page-Cache"] = page_cache
    # Developer mode: Varnish keeps X-Magento-Tags and debug headers visible.
    headers["X-Magento-Debug"] = "1"
    return web.Response(
        status=int(entry.get("status", 200)), text=entry["content"], headers=headers
    )


def _format_error(error: GraphQLError, formatted: dict[str, Any]) -> dict[str, Any]:
    """Mask a resolver exception that is not a GraphQLError, as graphql-php does.

    graphql-php 14 (Magento 2.4.4-2.4.6) reports it as "Internal server error" with
    extensions.category "internal"; Magento's developer mode adds the real message as
    debugMessage. Resolver errors still answer HTTP 200.
    """
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return formatted
    masked: dict[str, Any] = {
        "debugMessage": str(original),
        "message": INTERNAL_ERROR,
        "extensions": {"category": "internal"},
    }
    masked.update({key: formatted[key] for key in ("locations", "path") if key in formatted})
    return masked


def _graphql_response(body: dict[str, Any], status: int) -> web.Response:
    return web.json_response(
        body,
        status=status,
        headers={"Cache-Control": "no-store, no-cache, must-revalidate", "X-Magento-Debug": "1"},
    )


def _error_page(exc: BaseException) -> web.Response:
    """Magento's generic error page when a cache backend is unreachable."""
    return web.Response(
        status=503,
        text=_html_page(
            "Error",
            "cms-noroute",
            "<h1>There has been an error processing your request</h1>\n"
            f"<!-- {html.escape(type(exc).__name__)} -->",
        ),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )
