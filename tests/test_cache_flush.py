"""flush_cache against the real caches: redis-server, varnishd with the Magento VCL, SSM on moto.

Each cache type is flushed through `CacheActivities.flush_cache` in an ActivityEnvironment and
the effect is read back from the real service: key counts per Redis database, Varnish's
HIT/MISS header plus the backend's request count, and the SendCommand that reached moto.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import aws_client_factory
from activities.caches import CacheActivities
from failover.config import AwsSettings, RedisCache, SsmCache, VarnishCache
from failover.models import FlushRequest, FlushResult
from sandbox.services import RedisServer, VarnishServer

LOOPBACK = "127.0.0.1"
CATEGORY_TAGS = "cat_c_3,FPC"
CMS_TAGS = "cms_p_1,FPC"
MAGENTO_COMMAND = "cd /var/www/magento && bin/magento cache:flush"


# --------------------------------------------------------------------------- helpers


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def no_aws() -> Any:
    raise AssertionError("this flush must not call AWS")


def cache_activities(**kwargs: Any) -> CacheActivities:
    kwargs.setdefault("ssm_factory", no_aws)
    kwargs.setdefault("ec2_factory", no_aws)
    return CacheActivities(**kwargs)


async def flush(acts: CacheActivities, cache: RedisCache | VarnishCache | SsmCache) -> FlushResult:
    return await ActivityEnvironment().run(acts.flush_cache, FlushRequest(cluster="c", cache=cache))


async def flush_error(
    acts: CacheActivities, cache: RedisCache | VarnishCache | SsmCache
) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await flush(acts, cache)
    return caught.value


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def seed(port: int, counts: dict[int, int], password: str | None = None) -> None:
    """FLUSHALL, then `count` keys in each database."""
    admin = aioredis.Redis(host=LOOPBACK, port=port, password=password)
    try:
        await admin.flushall()
    finally:
        await admin.aclose()
    for db, count in counts.items():
        client = aioredis.Redis(host=LOOPBACK, port=port, db=db, password=password)
        try:
            await client.mset({f"zc_{db}_{n}": f"value {n}" for n in range(count)})
        finally:
            await client.aclose()


async def db_sizes(port: int, dbs: range = range(3), password: str | None = None) -> dict[int, int]:
    sizes = {}
    for db in dbs:
        client = aioredis.Redis(host=LOOPBACK, port=port, db=db, password=password)
        try:
            sizes[db] = await client.dbsize()
        finally:
            await client.aclose()
    return sizes


def redis_cache(port: int, **overrides: Any) -> RedisCache:
    fields: dict[str, Any] = {
        "type": "redis",
        "name": "magento-redis",
        "host": LOOPBACK,
        "port": port,
        "db": 0,
        "page_cache_db": 1,
    }
    return RedisCache(**(fields | overrides))


async def test_redis_flush_empties_the_configured_dbs_only(redis_server: RedisServer) -> None:
    await seed(redis_server.port, {0: 3, 1: 2, 2: 4})

    result = await flush(cache_activities(), redis_cache(redis_server.port))

    assert await db_sizes(redis_server.port) == {0: 0, 1: 0, 2: 4}
    assert (result.name, result.type) == ("magento-redis", "redis")
    assert "db 0 (3 keys)" in result.detail
    assert "db 1 (2 keys)" in result.detail
    assert "db 2" not in result.detail


async def test_redis_flush_is_idempotent(redis_server: RedisServer) -> None:
    await seed(redis_server.port, {0: 1, 1: 1, 2: 1})
    acts = cache_activities()
    await flush(acts, redis_cache(redis_server.port))

    again = await flush(acts, redis_cache(redis_server.port))

    assert "db 0 (0 keys)" in again.detail
    assert "db 1 (0 keys)" in again.detail
    assert await db_sizes(redis_server.port) == {0: 0, 1: 0, 2: 1}


async def test_redis_without_page_cache_db_flushes_one_db(redis_server: RedisServer) -> None:
    await seed(redis_server.port, {0: 2, 1: 5})

    result = await flush(cache_activities(), redis_cache(redis_server.port, page_cache_db=None))

    assert await db_sizes(redis_server.port, range(2)) == {0: 0, 1: 5}
    assert "db 1" not in result.detail


async def test_redis_nothing_listening_is_a_retryable_redis_error() -> None:
    port = closed_port()

    err = await flush_error(cache_activities(), redis_cache(port))

    assert err.type == "RedisError"
    assert not err.non_retryable
    assert f"{LOOPBACK}:{port}" in err.message


async def test_redis_password_env_unset_is_a_non_retryable_missing_secret(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CACHE_FLUSH_TEST_REDIS_PASSWORD", raising=False)
    await seed(redis_server.port, {0: 2, 1: 2})

    err = await flush_error(
        cache_activities(),
        redis_cache(redis_server.port, password_env="CACHE_FLUSH_TEST_REDIS_PASSWORD"),
    )

    assert err.type == "MissingSecret"
    assert err.non_retryable
    assert "CACHE_FLUSH_TEST_REDIS_PASSWORD" in err.message
    assert await db_sizes(redis_server.port, range(2)) == {0: 2, 1: 2}


async def test_redis_password_from_env_wrong_is_auth_error_right_flushes(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RedisServer(workdir=tmp_path_factory.mktemp("redis-auth")) as server:
        admin = aioredis.Redis(host=LOOPBACK, port=server.port)
        try:
            await admin.config_set("requirepass", "s3cret")
        finally:
            await admin.aclose()
        await seed(server.port, {0: 2, 1: 2}, password="s3cret")
        cache = redis_cache(server.port, password_env="CACHE_FLUSH_TEST_REDIS_PASSWORD")

        monkeypatch.setenv("CACHE_FLUSH_TEST_REDIS_PASSWORD", "not-the-password-4711")
        err = await flush_error(cache_activities(), cache)
        assert err.type == "RedisAuth"
        assert err.non_retryable
        assert "4711" not in err.message  # the secret never reaches workflow history
        assert await db_sizes(server.port, range(2), password="s3cret") == {0: 2, 1: 2}

        monkeypatch.setenv("CACHE_FLUSH_TEST_REDIS_PASSWORD", "s3cret")
        await flush(cache_activities(), cache)
        assert await db_sizes(server.port, range(2), password="s3cret") == {0: 0, 1: 0}


# --------------------------------------------------------------------------- Varnish


@dataclass
class App:
    """An aiohttp app on a loopback port, with what it was asked."""

    runner: web.AppRunner
    port: int
    hits: Counter[str] = field(default_factory=Counter)
    purges: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


async def start_app(handler: Callable[[web.Request, App], Awaitable[web.Response]]) -> App:
    holder: list[App] = []

    async def dispatch(request: web.Request) -> web.Response:
        return await handler(request, holder[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    started = App(runner=runner, port=int(runner.addresses[0][1]))
    holder.append(started)
    return started


async def magento_backend(request: web.Request, app: App) -> web.Response:
    """Cacheable pages the way Magento sends them (developer mode keeps tags visible)."""
    if request.path == "/health_check.php":
        return web.Response(text="ok", headers={"Cache-Control": "no-store"})
    app.hits[request.path] += 1
    tags = CMS_TAGS if request.path.startswith("/cms/") else CATEGORY_TAGS
    return web.Response(
        text=f"<html><body>page {request.path} render {app.hits[request.path]}</body></html>",
        content_type="text/html",
        headers={
            "Cache-Control": "public, max-age=3600",
            "X-Magento-Tags": tags,
            "X-Magento-Debug": "1",
        },
    )


async def refusing_varnish(request: web.Request, app: App) -> web.Response:
    """A 'Varnish' whose purge is broken: answers every PURGE with 500."""
    if request.method == "PURGE":
        app.purges.append(dict(request.headers))
        return web.Response(status=500, text="purge failed")
    return web.Response(status=404)


@pytest_asyncio.fixture(scope="module")
async def backend() -> AsyncIterator[App]:
    app = await start_app(magento_backend)
    try:
        yield app
    finally:
        await app.runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def varnish(
    backend: App, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VarnishServer]:
    server = VarnishServer(
        backend_host=LOOPBACK, backend_port=backend.port, workdir=tmp_path_factory.mktemp("varn")
    )
    try:
        # start() only waits for the VCL (a bare PURGE answers 400), not for the backend.
        server.start()
        await server.wait_backend_healthy()
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def refusing() -> AsyncIterator[App]:
    app = await start_app(refusing_varnish)
    try:
        yield app
    finally:
        await app.runner.cleanup()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        yield client


def unique_path(prefix: str = "/catalog/category/view/id/3") -> str:
    """Every test caches its own URL: a ban in one test does not reset another's."""
    return f"{prefix}/{uuid.uuid4().hex}"


async def cache_state(http: httpx.AsyncClient, varnish: VarnishServer, path: str) -> str:
    response = await http.get(varnish.url + path)
    assert response.status_code == 200, response.text
    return response.headers["X-Magento-Cache-Debug"]


async def warm(http: httpx.AsyncClient, varnish: VarnishServer, path: str) -> None:
    assert await cache_state(http, varnish, path) == "MISS"
    assert await cache_state(http, varnish, path) == "HIT"


def varnish_cache(*servers: str, **overrides: Any) -> VarnishCache:
    fields: dict[str, Any] = {"type": "varnish", "name": "varnish", "servers": list(servers)}
    return VarnishCache(**(fields | overrides))


async def test_varnish_page_is_cached_with_its_tags(
    http: httpx.AsyncClient, varnish: VarnishServer, backend: App
) -> None:
    path = unique_path()
    first = await http.get(varnish.url + path)
    second = await http.get(varnish.url + path)

    assert first.headers["X-Magento-Cache-Debug"] == "MISS"
    assert second.headers["X-Magento-Cache-Debug"] == "HIT"
    assert second.headers["X-Magento-Tags"] == CATEGORY_TAGS
    assert second.text == first.text
    assert backend.hits[path] == 1


async def test_varnish_flush_turns_the_next_request_into_a_miss(
    http: httpx.AsyncClient, varnish: VarnishServer, backend: App
) -> None:
    path = unique_path()
    await warm(http, varnish, path)
    assert backend.hits[path] == 1

    result = await flush(cache_activities(), varnish_cache(varnish.url))

    assert (result.name, result.type) == ("varnish", "varnish")
    assert "X-Magento-Tags-Pattern .*" in result.detail
    assert "1 server" in result.detail
    assert await cache_state(http, varnish, path) == "MISS"
    assert backend.hits[path] == 2
    # ...and the fresh page is cached again.
    assert await cache_state(http, varnish, path) == "HIT"
    assert backend.hits[path] == 2


async def test_varnish_flush_with_a_tags_pattern_bans_only_matching_pages(
    http: httpx.AsyncClient, varnish: VarnishServer, backend: App
) -> None:
    category, cms = unique_path(), unique_path("/cms/page")
    await warm(http, varnish, category)
    await warm(http, varnish, cms)

    # The pattern Magento sends when it cleans one tag.
    await flush(cache_activities(), varnish_cache(varnish.url, tags_pattern="((^|,)cat_c_3(,|$))"))

    assert await cache_state(http, varnish, category) == "MISS"
    assert await cache_state(http, varnish, cms) == "HIT"
    assert (backend.hits[category], backend.hits[cms]) == (2, 1)


async def test_varnish_raw_purge_without_header_is_refused_by_the_vcl(
    http: httpx.AsyncClient, varnish: VarnishServer
) -> None:
    path = unique_path()
    await warm(http, varnish, path)

    refused = await http.request("PURGE", varnish.url + "/")

    assert refused.status_code == 400
    assert await cache_state(http, varnish, path) == "HIT"


async def test_varnish_purge_answered_500_names_the_server_and_status(
    http: httpx.AsyncClient, varnish: VarnishServer, refusing: App
) -> None:
    path = unique_path()
    await warm(http, varnish, path)

    err = await flush_error(cache_activities(), varnish_cache(varnish.url, refusing.url))

    assert err.type == "VarnishPurgeRefused"
    assert not err.non_retryable
    assert refusing.url in err.message
    assert "500" in err.message
    assert f":{varnish.port}" not in err.message
    # The refusing server was asked the Magento way; the real one before it was purged.
    assert [h.get("X-Magento-Tags-Pattern") for h in refusing.purges] == [".*"]
    assert await cache_state(http, varnish, path) == "MISS"


async def test_varnish_unreachable_server_is_named() -> None:
    dead = f"http://{LOOPBACK}:{closed_port()}"

    err = await flush_error(cache_activities(), varnish_cache(dead))

    assert err.type == "VarnishUnreachable"
    assert not err.non_retryable
    assert dead in err.message


# --------------------------------------------------------------------------- SSM on moto


@dataclass
class AwsClients:
    """boto3 clients built once (building them is slow); the SSM one records SendCommand."""

    ec2: Any
    ssm: Any
    image_id: str
    sent: list[dict[str, Any]]  # SendCommand parameters exactly as the activity passed them


@dataclass
class Aws:
    clients: AwsClients
    acts: CacheActivities

    @property
    def ec2(self) -> Any:
        return self.clients.ec2

    @property
    def ssm(self) -> Any:
        return self.clients.ssm

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.clients.sent

    def run(self, role: str, count: int = 1) -> list[str]:
        answer = self.ec2.run_instances(
            ImageId=self.clients.image_id,
            MinCount=count,
            MaxCount=count,
            InstanceType="t3.micro",
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": role}]}
            ],
        )
        return sorted(i["InstanceId"] for i in answer["Instances"])


@pytest.fixture(scope="module")
def aws_clients(moto_url: str) -> Iterator[AwsClients]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        settings = AwsSettings(endpoint_url=moto_url)
        ec2 = aws_client_factory(settings, "ec2")()
        ssm = aws_client_factory(settings, "ssm")()
        sent: list[dict[str, Any]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            sent.append(copy.deepcopy(params))

        ssm.meta.events.register("provide-client-params.ssm.SendCommand", record)
        image_id = ec2.describe_images()["Images"][0]["ImageId"]
        yield AwsClients(ec2=ec2, ssm=ssm, image_id=image_id, sent=sent)


@pytest_asyncio.fixture
async def aws(moto_url: str, aws_clients: AwsClients) -> Aws:
    """moto emptied (its default AMIs stay), nothing recorded, fresh activities."""
    async with httpx.AsyncClient(trust_env=False) as client:
        (await client.post(f"{moto_url}/moto-api/reset")).raise_for_status()
    aws_clients.sent.clear()
    acts = cache_activities(
        ssm_factory=lambda: aws_clients.ssm, ec2_factory=lambda: aws_clients.ec2
    )
    return Aws(clients=aws_clients, acts=acts)


def ssm_cache(**overrides: Any) -> SsmCache:
    fields: dict[str, Any] = {
        "type": "ssm",
        "name": "magento-app",
        "tag_key": "Role",
        "tag_value": "magento-app",
        "poll_seconds": 0.05,
        "timeout_seconds": 30,  # the lowest TimeoutSeconds SendCommand accepts
    }
    return SsmCache(**(fields | overrides))


async def test_ssm_flush_runs_cache_flush_on_the_running_tagged_instances(aws: Aws) -> None:
    app = await asyncio.to_thread(aws.run, "magento-app", 2)
    other = await asyncio.to_thread(aws.run, "other")
    stopped = await asyncio.to_thread(aws.run, "magento-app")
    await asyncio.to_thread(aws.ec2.stop_instances, InstanceIds=stopped)

    result = await flush(aws.acts, ssm_cache())

    assert len(aws.sent) == 1
    sent = aws.sent[0]
    assert sent["InstanceIds"] == app
    assert sent["DocumentName"] == "AWS-RunShellScript"
    assert sent["Parameters"] == {"commands": [MAGENTO_COMMAND]}

    commands = (await asyncio.to_thread(aws.ssm.list_commands))["Commands"]
    assert len(commands) == 1
    command = commands[0]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"]["commands"] == [MAGENTO_COMMAND]
    # moto adds every instance of the region to a command sent without Targets, so the
    # stored InstanceIds are only checked to hold the tagged ones; the exact list is above.
    assert set(app) <= set(command["InstanceIds"])
    for instance_id in app:
        invocation = await asyncio.to_thread(
            aws.ssm.get_command_invocation,
            CommandId=command["CommandId"],
            InstanceId=instance_id,
        )
        assert invocation["Status"] == "Success"

    assert (result.name, result.type) == ("magento-app", "ssm")
    for instance_id in app:
        assert instance_id in result.detail
    for instance_id in other + stopped:
        assert instance_id not in result.detail
    assert command["CommandId"] in result.detail


async def test_ssm_flush_with_run_as_wraps_the_command_in_sudo(aws: Aws) -> None:
    app = await asyncio.to_thread(aws.run, "magento-app")

    await flush(aws.acts, ssm_cache(run_as="www-data"))

    assert aws.sent[0]["InstanceIds"] == app
    assert aws.sent[0]["Parameters"] == {
        "commands": [f"sudo -u www-data sh -c '{MAGENTO_COMMAND}'"]
    }


async def test_ssm_flush_without_tagged_instances_is_non_retryable(aws: Aws) -> None:
    await asyncio.to_thread(aws.run, "other")

    err = await flush_error(aws.acts, ssm_cache())

    assert err.type == "NoInstances"
    assert err.non_retryable
    assert "Role=magento-app" in err.message
    assert aws.sent == []
    assert (await asyncio.to_thread(aws.ssm.list_commands))["Commands"] == []


async def test_ssm_flush_accepts_a_timeout_below_thirty_seconds(aws: Aws) -> None:
    app = await asyncio.to_thread(aws.run, "magento-app", 2)

    result = await flush(aws.acts, ssm_cache(timeout_seconds=10))

    assert all(instance_id in result.detail for instance_id in app)
    assert aws.sent[-1]["TimeoutSeconds"] == 30
