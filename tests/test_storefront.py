"""The storefront stand-in must break, cache and recover the way Magento does.

Real processes only: redis-server holds the caches, varnishd (with the Magento-style VCL)
sits in front of the storefront, and the search simulator is the cluster that dies. The
central story is cache poisoning: a category page rendered while search is down is cached
by both Varnish and the Redis page cache, and only flushing both brings the products back.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from dnslib import CNAME, QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from sandbox.search_sim import FaultMode, NodeFault, SimulatedCluster
from sandbox.services import RedisServer, ServiceError, VarnishServer
from sandbox.storefront import (
    CATEGORY_EMPTY_TEXT,
    CATEGORY_PATH,
    CM_KEY_PREFIX,
    CM_TAG_PREFIX,
    ID_PREFIX,
    NO_ALIVE_NODES,
    PAGE_CACHE_DB,
    Storefront,
    StorefrontSettings,
)
from sandbox.waiting import wait_for

SEARCH_BAG = '{ products(search: "bag", pageSize: 5) { total_count items { sku name } } }'
BAG_SKUS = {"24-MB01", "24-MB05"}  # Joust Duffle Bag, Wayfarer Messenger Bag
ALL_PRODUCTS = 12
CATEGORY_TAGS = "cat_c_3,cat_c_p_3,FPC"


def product_count(page: httpx.Response) -> int:
    """The data-product-count marker the category page carries."""
    marker = 'data-product-count="'
    start = page.text.index(marker) + len(marker)
    return int(page.text[start : page.text.index('"', start)])


# --------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(scope="module")
async def cluster() -> AsyncIterator[SimulatedCluster]:
    sim = SimulatedCluster("es-primary")
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def node_port(cluster: SimulatedCluster) -> int:
    port = urlsplit(cluster.node_urls[0]).port
    assert port is not None
    return port


@pytest_asyncio.fixture(scope="module")
async def storefront(
    cluster: SimulatedCluster, redis_server: RedisServer
) -> AsyncIterator[Storefront]:
    settings = StorefrontSettings(
        search_host="127.0.0.1", search_port=node_port(cluster), redis_url=redis_server.url
    )
    shop = Storefront(settings)
    await shop.start()
    try:
        yield shop
    finally:
        await shop.stop()


@pytest_asyncio.fixture(scope="module")
async def varnish(
    storefront: Storefront, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VarnishServer]:
    server = VarnishServer(
        backend_host="127.0.0.1",
        backend_port=storefront.port,
        workdir=tmp_path_factory.mktemp("varnish"),
    )
    try:
        # Started from the main thread (so the kernel kills varnishd if pytest dies); start()
        # only waits for the VCL, so the storefront serves the first probe right after.
        server.start()
        await server.wait_backend_healthy()
        yield server
    finally:
        server.stop()


@dataclass
class Shop:
    """The running sandbox, reset to: search healthy, caches empty."""

    cluster: SimulatedCluster
    storefront: Storefront
    varnish: VarnishServer
    http: httpx.AsyncClient
    default_cache: aioredis.Redis
    page_cache: aioredis.Redis

    async def search_down(self) -> None:
        self.cluster.set_fault(None, NodeFault(FaultMode.DOWN))
        await self.cluster.settle()

    async def search_up(self) -> None:
        self.cluster.set_fault(None, NodeFault(FaultMode.HEALTHY))
        await self.cluster.settle()

    async def graphql(self, base: str, query: str = SEARCH_BAG) -> httpx.Response:
        return await self.http.post(f"{base}/graphql", json={"query": query})

    async def category(self, base: str) -> httpx.Response:
        return await self.http.get(base + CATEGORY_PATH)

    async def purge(self, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.request("PURGE", self.varnish.url + "/", headers=headers)


@pytest_asyncio.fixture
async def shop(
    cluster: SimulatedCluster,
    redis_server: RedisServer,
    storefront: Storefront,
    varnish: VarnishServer,
) -> AsyncIterator[Shop]:
    default_cache = aioredis.Redis.from_url(redis_server.url, db=0)
    page_cache = aioredis.Redis.from_url(redis_server.url, db=PAGE_CACHE_DB)
    async with httpx.AsyncClient(timeout=5.0) as http:
        env = Shop(cluster, storefront, varnish, http, default_cache, page_cache)
        try:
            await env.search_up()
            await default_cache.flushall()
            assert (await env.purge({"X-Magento-Tags-Pattern": ".*"})).status_code == 200
            yield env
        finally:
            await env.search_up()
            await default_cache.aclose()
            await page_cache.aclose()


# --------------------------------------------------------------------------- GraphQL


async def test_graphql_search_returns_products(shop: Shop) -> None:
    for base in (shop.storefront.url, shop.varnish.url):
        response = await shop.graphql(base)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body
        products = body["data"]["products"]
        assert products["total_count"] == len(BAG_SKUS)
        assert {item["sku"] for item in products["items"]} == BAG_SKUS
        assert all("Bag" in item["name"] for item in products["items"])


async def test_graphql_paging_and_match_all(shop: Shop) -> None:
    query = (
        '{ products(search: "", pageSize: 5, currentPage: 3) '
        "{ total_count items { sku } page_info { current_page page_size total_pages } } }"
    )
    products = (await shop.graphql(shop.storefront.url, query)).json()["data"]["products"]
    assert products["total_count"] == ALL_PRODUCTS
    assert len(products["items"]) == ALL_PRODUCTS - 10
    assert products["page_info"] == {"current_page": 3, "page_size": 5, "total_pages": 3}


async def test_graphql_search_down_gives_magento_error(shop: Shop) -> None:
    await shop.search_down()
    response = await shop.graphql(shop.storefront.url)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"products": None}
    assert [error["message"] for error in body["errors"]] == [NO_ALIVE_NODES]
    assert body["errors"][0]["path"] == ["products"]


async def test_graphql_invalid_requests(shop: Shop) -> None:
    base = shop.storefront.url
    syntax = await shop.graphql(base, "{ products(search: ")
    assert syntax.status_code == 400
    assert "Syntax Error" in syntax.json()["errors"][0]["message"]
    unknown = await shop.graphql(base, '{ products(search: "bag") { nope } }')
    assert unknown.status_code == 400
    assert "nope" in unknown.json()["errors"][0]["message"]
    not_json = await shop.http.post(f"{base}/graphql", content=b"{", headers={"X": "1"})
    assert not_json.status_code == 400
    # Magento refuses a products query without search or filter, while executing it.
    missing = await shop.graphql(base, "{ products { total_count } }")
    assert missing.status_code == 200
    assert missing.json()["errors"][0]["message"] == (
        "'search' or 'filter' input argument is required."
    )


async def test_post_is_never_cached(shop: Shop) -> None:
    first = await shop.graphql(shop.varnish.url)
    assert first.json()["data"]["products"]["total_count"] == len(BAG_SKUS)
    await shop.search_down()
    second = await shop.graphql(shop.varnish.url)
    assert second.json()["errors"][0]["message"] == NO_ALIVE_NODES
    for response in (first, second):
        assert response.headers["X-Magento-Cache-Debug"] == "MISS"
        assert response.headers["X-Cache-Hits"] == "0"


# --------------------------------------------------------------------------- health check


async def test_health_check_ignores_search(shop: Shop) -> None:
    await shop.search_down()
    for base in (shop.storefront.url, shop.varnish.url):
        response = await shop.http.get(f"{base}/health_check.php")
        assert response.status_code == 200, base


async def test_health_check_fails_without_redis(tmp_path: Path, cluster: SimulatedCluster) -> None:
    with RedisServer(workdir=tmp_path / "redis") as server:
        settings = StorefrontSettings(
            search_host="127.0.0.1", search_port=node_port(cluster), redis_url=server.url
        )
        async with Storefront(settings) as shop, httpx.AsyncClient(timeout=5.0) as http:
            health = f"{shop.url}/health_check.php"
            assert (await http.get(health)).status_code == 200
            server.stop()
            assert not server.running
            assert (await http.get(health)).status_code == 500
            # Pages need the cache backends too: Magento's error page, never cached.
            page = await http.get(shop.url + CATEGORY_PATH)
            assert page.status_code == 503
            assert page.headers["Cache-Control"] == "no-store"


def test_missing_binaries_say_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"redis-server not found: apt-get install redis-server"):
        RedisServer(workdir=tmp_path).start()
    monkeypatch.setattr("sandbox.services._SBIN_DIRS", ())
    with pytest.raises(ServiceError, match="varnishd not found"):
        VarnishServer(backend_host="127.0.0.1", backend_port=1, workdir=tmp_path).start()


# --------------------------------------------------------------------------- pages and caches


async def test_category_page_is_cached_by_varnish(shop: Shop) -> None:
    first = await shop.category(shop.varnish.url)
    assert first.status_code == 200
    assert first.headers["X-Magento-Cache-Debug"] == "MISS"
    assert first.headers["X-Storefront-Render"] == "search-ok"
    assert first.headers["X-Storefront-Page-Cache"] == "MISS"
    assert first.headers["X-Magento-Tags"] == CATEGORY_TAGS
    assert product_count(first) == ALL_PRODUCTS
    searches = shop.storefront.search_requests
    second = await shop.category(shop.varnish.url)
    assert second.headers["X-Magento-Cache-Debug"] == "HIT"
    assert second.headers["X-Cache-Hits"] == "1"
    assert second.text == first.text
    assert shop.storefront.search_requests == searches
    # Straight from the app: Magento's own page cache answers, with Magento's headers.
    direct = await shop.category(shop.storefront.url)
    assert direct.headers["X-Storefront-Page-Cache"] == "HIT"
    assert direct.headers["Cache-Control"] == "public, max-age=86400, s-maxage=86400"
    assert direct.headers["X-Magento-Tags"] == CATEGORY_TAGS


async def test_home_page_is_cacheable(shop: Shop) -> None:
    first = await shop.http.get(shop.varnish.url + "/")
    second = await shop.http.get(shop.varnish.url + "/")
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Magento-Tags"] == "cms_p_home,FPC"
    assert [first.headers["X-Magento-Cache-Debug"], second.headers["X-Magento-Cache-Debug"]] == [
        "MISS",
        "HIT",
    ]


async def test_outage_poisons_both_caches_until_flushed(shop: Shop) -> None:
    await shop.search_down()
    broken = await shop.category(shop.varnish.url)
    assert broken.status_code == 200  # Magento does not know the page is broken
    assert broken.headers["X-Storefront-Render"] == "search-failed"
    assert CATEGORY_EMPTY_TEXT in broken.text
    assert product_count(broken) == 0

    await shop.search_up()
    assert (await shop.graphql(shop.storefront.url)).json()["data"]["products"]["total_count"]
    still = await shop.category(shop.varnish.url)
    assert still.headers["X-Magento-Cache-Debug"] == "HIT"
    assert CATEGORY_EMPTY_TEXT in still.text
    bypassed = await shop.category(shop.storefront.url)
    assert bypassed.headers["X-Storefront-Page-Cache"] == "HIT"
    assert CATEGORY_EMPTY_TEXT in bypassed.text

    purged = await shop.purge({"X-Magento-Tags-Pattern": ".*"})
    assert purged.status_code == 200
    assert "Purged" in purged.text
    assert await shop.page_cache.flushdb()

    fixed = await shop.category(shop.varnish.url)
    assert fixed.headers["X-Magento-Cache-Debug"] == "MISS"
    assert fixed.headers["X-Storefront-Page-Cache"] == "MISS"
    assert fixed.headers["X-Storefront-Render"] == "search-ok"
    assert CATEGORY_EMPTY_TEXT not in fixed.text
    assert product_count(fixed) == ALL_PRODUCTS


async def test_purging_varnish_alone_refills_it_from_the_page_cache(shop: Shop) -> None:
    await shop.search_down()
    await shop.category(shop.varnish.url)
    await shop.search_up()
    # Purge only the category's tag, the way Magento does on a category save.
    purged = await shop.purge({"X-Magento-Tags-Pattern": "((^|,)cat_c_3(,|$))"})
    assert purged.status_code == 200
    refetched = await shop.category(shop.varnish.url)
    assert refetched.headers["X-Magento-Cache-Debug"] == "MISS"
    assert refetched.headers["X-Storefront-Page-Cache"] == "HIT"
    assert CATEGORY_EMPTY_TEXT in refetched.text
    # ...and Varnish holds the broken page again: flush Redis before (or with) Varnish.
    again = await shop.category(shop.varnish.url)
    assert again.headers["X-Magento-Cache-Debug"] == "HIT"
    assert CATEGORY_EMPTY_TEXT in again.text


async def test_purge_rules(shop: Shop) -> None:
    missing = await shop.purge()
    assert missing.status_code == 400
    assert "X-Magento-Tags-Pattern or X-Pool header required" in missing.text
    # A client outside the purge ACL (still loopback, but not 127.0.0.1).
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as outsider:
        refused = await outsider.request(
            "PURGE", shop.varnish.url + "/", headers={"X-Magento-Tags-Pattern": ".*"}
        )
    assert refused.status_code == 405
    # Deployment tools purge by pool instead of by tag.
    assert (await shop.purge({"X-Pool": "^sandbox$"})).status_code == 200
    # A tag that matches nothing leaves the cached page alone.
    await shop.category(shop.varnish.url)
    assert (await shop.purge({"X-Magento-Tags-Pattern": "^cms_p_404$"})).status_code == 200
    assert (await shop.category(shop.varnish.url)).headers["X-Magento-Cache-Debug"] == "HIT"


async def test_page_cache_layout_and_flush_scope(shop: Shop) -> None:
    await shop.category(shop.storefront.url)
    entries = [key async for key in shop.page_cache.scan_iter(f"{CM_KEY_PREFIX}*")]
    assert len(entries) == 1
    entry = await shop.page_cache.hgetall(entries[0])
    assert set(entry) == {b"d", b"m", b"t", b"i"}
    tags = entry[b"t"].decode().split(",")
    assert tags == [ID_PREFIX + tag.upper() for tag in CATEGORY_TAGS.split(",")]
    cache_id = entries[0].decode().removeprefix(CM_KEY_PREFIX)
    for tag in tags:
        assert await shop.page_cache.sismember(CM_TAG_PREFIX + tag, cache_id)
    assert 0 < await shop.page_cache.ttl(entries[0]) <= 86400

    default_keys = sorted(await shop.default_cache.keys("*"))
    assert default_keys, "the storefront keeps its config in the default cache (db 0)"
    assert await shop.page_cache.flushdb()
    assert await shop.page_cache.dbsize() == 0
    assert sorted(await shop.default_cache.keys("*")) == default_keys


# --------------------------------------------------------------------------- DNS mode


class _SwitchableZone(BaseResolver):  # type: ignore[misc]
    """search.shop.internal as a CNAME (answered alone) to a switchable A record."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.target = "es-primary.shop.internal."
        self.addresses = {
            "es-primary.shop.internal.": "127.0.0.1",
            "es-dead.shop.internal.": "127.0.0.3",
        }
        self.queries = 0
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname)
        with self._lock:
            self.queries += 1
            if name == "search.shop.internal.":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(self.target), ttl=self.ttl))
            elif name in self.addresses and request.q.qtype == QTYPE.A:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(self.addresses[name]), ttl=self.ttl))
        return reply


@pytest.fixture
def zone() -> Iterator[tuple[_SwitchableZone, int]]:
    resolver = _SwitchableZone(ttl=2)
    server = DNSServer(resolver, address="127.0.0.1", port=0)
    server.start_thread()
    try:
        yield resolver, int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


async def test_dns_answers_are_cached_for_their_ttl(
    shop: Shop, redis_server: RedisServer, zone: tuple[_SwitchableZone, int]
) -> None:
    records, dns_port = zone
    settings = StorefrontSettings(
        search_host="search.shop.internal",
        search_port=node_port(shop.cluster),
        redis_url=redis_server.url,
        dns_server=("127.0.0.1", dns_port),
    )
    async with Storefront(settings) as storefront:

        async def total() -> Any:
            body = (await shop.graphql(storefront.url)).json()
            products = body["data"]["products"]
            return products["total_count"] if products else body["errors"][0]["message"]

        assert await total() == len(BAG_SKUS)
        asked = records.queries
        assert asked == 2  # the CNAME, then its target
        assert await total() == len(BAG_SKUS)
        assert records.queries == asked, "answers within their TTL come from the cache"

        records.target = "es-dead.shop.internal."
        assert await total() == len(BAG_SKUS), "the old cluster is used until the TTL expires"

        async def switched() -> bool:
            return await total() == NO_ALIVE_NODES

        await wait_for(switched, what="the storefront to follow the new record", timeout_s=5.0)
        assert records.queries > asked
