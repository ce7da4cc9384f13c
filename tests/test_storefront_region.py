"""The storefront in two Regions: health checks, guest carts and the Region label.

An Aurora global database has one writer Region; the other Region's cluster is a reader that
accepts connections and refuses writes. Magento's health check only connects, so both Regions
look healthy to their ALBs, while a verification that creates a guest cart succeeds only in the
writer's Region. Real Redis holds the caches; the database is the probe the settings give.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sandbox.net import free_port
from sandbox.services import RedisServer
from sandbox.storefront import (
    DB_READ_ONLY,
    DB_UNREACHABLE,
    INTERNAL_ERROR,
    REGION_HEADER,
    DatabaseProbe,
    DatabaseState,
    Storefront,
    StorefrontSettings,
)

EAST = "us-east-1"
WEST = "us-west-2"
CREATE_EMPTY_CART = "mutation { createEmptyCart }"
CREATE_GUEST_CART = "mutation { createGuestCart { cart { id } } }"
EMPTY_CART_WITH_ID = "mutation ($id: String) { createEmptyCart(input: {cart_id: $id}) }"
GUEST_CART_WITH_ID = (
    "mutation ($id: ID) { createGuestCart(input: {cart_uid: $id}) { cart { id } } }"
)
MASKED_ID = re.compile(r"[A-Za-z0-9]{32}")


@dataclass
class GlobalDatabase:
    """An Aurora global database as each Region's app servers see it."""

    writer_region: str = EAST
    unreachable: set[str] = field(default_factory=set)

    def probe(self, region: str) -> DatabaseProbe:
        def state() -> DatabaseState:
            return DatabaseState(
                reachable=region not in self.unreachable, writer=region == self.writer_region
            )

        return state


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def database() -> GlobalDatabase:
    return GlobalDatabase()


def settings_for(redis_url: str, **kwargs: Any) -> StorefrontSettings:
    """Search points at a closed port: nothing here searches."""
    return StorefrontSettings(
        search_host="127.0.0.1", search_port=free_port(), redis_url=redis_url, **kwargs
    )


@pytest_asyncio.fixture(scope="module")
async def regions(
    redis_server: RedisServer, database: GlobalDatabase
) -> AsyncIterator[dict[str, Storefront]]:
    shops = {
        region: Storefront(
            settings_for(redis_server.url, database=database.probe(region), region=region)
        )
        for region in (EAST, WEST)
    }
    for shop in shops.values():
        await shop.start()
    try:
        yield shops
    finally:
        for shop in shops.values():
            await shop.stop()


@pytest_asyncio.fixture
async def http(database: GlobalDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """A client, with the global database reset to: writer in EAST, both reachable."""
    database.writer_region = EAST
    database.unreachable.clear()
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        yield client


async def graphql(
    http: httpx.AsyncClient,
    shop: Storefront,
    query: str,
    variables: dict[str, Any] | None = None,
) -> httpx.Response:
    return await http.post(f"{shop.url}/graphql", json={"query": query, "variables": variables})


async def health(http: httpx.AsyncClient, shop: Storefront) -> int:
    return (await http.get(f"{shop.url}/health_check.php")).status_code


def internal_error(debug_message: str, field_name: str) -> dict[str, Any]:
    """What Magento (graphql-php 14, developer mode) answers when MySQL throws in a resolver."""
    return {
        "debugMessage": debug_message,
        "message": INTERNAL_ERROR,
        "extensions": {"category": "internal"},
        "locations": [{"line": 1, "column": 12}],
        "path": [field_name],
    }


# --------------------------------------------------------------------------- health check


async def test_health_check_needs_the_database_but_not_the_writer(
    regions: dict[str, Storefront], database: GlobalDatabase, http: httpx.AsyncClient
) -> None:
    assert [await health(http, regions[r]) for r in (EAST, WEST)] == [200, 200]
    database.unreachable.add(WEST)
    response = await http.get(f"{regions[WEST].url}/pub/health_check.php")
    assert response.status_code == 500
    assert response.content == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert await health(http, regions[EAST]) == 200
    # The writer role does not matter to the health check: WEST as writer, EAST unreachable.
    database.unreachable = {EAST}
    database.writer_region = WEST
    assert [await health(http, regions[r]) for r in (EAST, WEST)] == [500, 200]


async def test_health_check_probe_failures(redis_server: RedisServer) -> None:
    def broken() -> DatabaseState:
        raise ConnectionRefusedError("no route to the cluster endpoint")

    async def reader() -> DatabaseState:
        return DatabaseState(writer=False)

    async def hangs() -> DatabaseState:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    expected = {broken: 500, reader: 200, hangs: 500}
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        for probe, status in expected.items():
            async with Storefront(settings_for(redis_server.url, database=probe)) as shop:
                assert await health(http, shop) == status, probe.__name__


# --------------------------------------------------------------------------- guest carts


async def test_guest_carts_on_the_writer(
    regions: dict[str, Storefront], http: httpx.AsyncClient
) -> None:
    east = regions[EAST]
    empty = await graphql(http, east, CREATE_EMPTY_CART)
    assert empty.status_code == 200
    masked_id = empty.json()["data"]["createEmptyCart"]
    assert MASKED_ID.fullmatch(masked_id)
    guest = await graphql(http, east, CREATE_GUEST_CART)
    assert guest.status_code == 200
    assert "errors" not in guest.json()
    guest_id = guest.json()["data"]["createGuestCart"]["cart"]["id"]
    assert MASKED_ID.fullmatch(guest_id)
    assert guest_id != masked_id
    assert {masked_id, guest_id} <= east.carts


async def test_client_chosen_cart_ids_are_validated_like_magento(
    regions: dict[str, Storefront], http: httpx.AsyncClient
) -> None:
    east = regions[EAST]
    chosen = "A" * 31 + "1"
    created = await graphql(http, east, GUEST_CART_WITH_ID, {"id": chosen})
    assert created.json() == {"data": {"createGuestCart": {"cart": {"id": chosen}}}}
    again = await graphql(http, east, EMPTY_CART_WITH_ID, {"id": chosen})
    assert again.status_code == 200
    (error,) = again.json()["errors"]
    assert error["message"] == f'Cart with ID "{chosen}" already exists.'
    assert error["extensions"] == {"category": "graphql-already-exists"}
    short = await graphql(http, east, EMPTY_CART_WITH_ID, {"id": "too-short"})
    assert short.status_code == 200
    (error,) = short.json()["errors"]
    assert error["message"] == "Cart ID length should to be 32 symbols."
    assert error["extensions"] == {"category": "graphql-input"}


async def test_a_reader_refuses_carts_as_mysql_does(
    regions: dict[str, Storefront], http: httpx.AsyncClient
) -> None:
    west = regions[WEST]
    before = set(west.carts)
    empty = await graphql(http, west, CREATE_EMPTY_CART)
    assert empty.status_code == 200  # a resolver error: Magento still answers 200
    assert empty.json() == {
        "errors": [internal_error(DB_READ_ONLY, "createEmptyCart")],
        "data": {"createEmptyCart": None},
    }
    guest = await graphql(http, west, CREATE_GUEST_CART)
    assert guest.status_code == 200
    assert guest.json() == {
        "errors": [internal_error(DB_READ_ONLY, "createGuestCart")],
        "data": {"createGuestCart": None},
    }
    assert west.carts == before
    # The health check that keeps WEST in its ALB says nothing about this.
    assert await health(http, west) == 200


async def test_no_database_no_cart(
    regions: dict[str, Storefront], database: GlobalDatabase, http: httpx.AsyncClient
) -> None:
    database.unreachable.add(EAST)
    empty = await graphql(http, regions[EAST], CREATE_EMPTY_CART)
    assert empty.status_code == 200
    assert empty.json()["errors"] == [internal_error(DB_UNREACHABLE, "createEmptyCart")]
    # The length check needs no database, so it still answers first.
    short = await graphql(http, regions[EAST], EMPTY_CART_WITH_ID, {"id": "x"})
    assert short.json()["errors"][0]["extensions"] == {"category": "graphql-input"}


async def test_moving_the_writer_moves_cart_creation(
    regions: dict[str, Storefront], database: GlobalDatabase, http: httpx.AsyncClient
) -> None:
    async def creates_cart(region: str) -> bool:
        body = (await graphql(http, regions[region], CREATE_GUEST_CART)).json()
        return "errors" not in body and body["data"]["createGuestCart"] is not None

    assert [await creates_cart(r) for r in (EAST, WEST)] == [True, False]
    database.writer_region = WEST  # switchover_global_cluster finished
    assert [await creates_cart(r) for r in (EAST, WEST)] == [False, True]


async def test_default_database_is_a_writer_and_no_region_label(
    redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    async with Storefront(settings_for(redis_server.url)) as shop:
        response = await graphql(http, shop, CREATE_EMPTY_CART)
        assert MASKED_ID.fullmatch(response.json()["data"]["createEmptyCart"])
        assert REGION_HEADER not in response.headers
        assert await health(http, shop) == 200


# --------------------------------------------------------------------------- region label


async def test_every_response_names_its_region(
    regions: dict[str, Storefront], redis_server: RedisServer, http: httpx.AsyncClient
) -> None:
    page_cache = aioredis.Redis.from_url(redis_server.url)
    try:
        await page_cache.flushall()
    finally:
        await page_cache.aclose()
    for region, shop in regions.items():
        for response in (
            await graphql(http, shop, CREATE_EMPTY_CART),
            await http.get(f"{shop.url}/health_check.php"),
            await http.get(f"{shop.url}/no-such-page"),
        ):
            assert response.headers[REGION_HEADER] == region, response.url
    # Both Regions share this Redis here: WEST serves EAST's cached page, labelled WEST.
    first = await http.get(regions[EAST].url + "/")
    second = await http.get(regions[WEST].url + "/")
    assert [
        first.headers["X-Storefront-Page-Cache"],
        second.headers["X-Storefront-Page-Cache"],
    ] == [
        "MISS",
        "HIT",
    ]
    assert [first.headers[REGION_HEADER], second.headers[REGION_HEADER]] == [EAST, WEST]
