"""The NLB stand-in must send traffic exactly where moto's target group says, like a real NLB.

moto holds the control plane (registrations, target health, optionally overridden), three tiny
HTTP servers on loopback play the search nodes (two primaries, one standby, one shared port), and
every assertion about routing is made on which server actually answered through the stand-in.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import WaiterError
from moto.elbv2.models import FakeTargetGroup
from moto.server import ThreadedMotoServer

from sandbox.nlb import NlbResources, NlbStandIn, TargetHealthOverrides, create_search_nlb

PRIMARY_A = "127.0.1.1"
PRIMARY_B = "127.0.1.2"
STANDBY = "127.0.2.1"
NODES = {PRIMARY_A: "primary-a", PRIMARY_B: "primary-b", STANDBY: "standby"}
# Fast waiters: moto answers at once, so a waiter either succeeds on the first poll or never.
FAST_WAITER = {"Delay": 0.05, "MaxAttempts": 3}
DEADLINE = 3.0

ClientFactory = Callable[[str], Any]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> ClientFactory:
    """boto3 clients for moto that give up fast: a dead endpoint must not stall a refresh."""

    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}),
        )

    return make


def _bind_shared_port(hosts: list[str]) -> list[socket.socket]:
    """Listening sockets on one port free on every host (the port of a target group)."""
    for _ in range(50):
        first = socket.create_server((hosts[0], 0))
        port = first.getsockname()[1]
        sockets = [first]
        try:
            sockets += [socket.create_server((host, port)) for host in hosts[1:]]
        except OSError:
            for sock in sockets:
                sock.close()
            continue
        return sockets
    raise RuntimeError("no port free on all of " + ", ".join(hosts))


@pytest_asyncio.fixture(scope="module")
async def search_port() -> AsyncIterator[int]:
    """Three HTTP servers on one port, each answering its own name; POST /echo echoes."""

    def app_for(name: str) -> web.Application:
        async def hello(_: web.Request) -> web.Response:
            return web.Response(text=name)

        async def echo(request: web.Request) -> web.Response:
            return web.Response(body=await request.read())

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/", hello)
        app.router.add_post("/echo", echo)
        return app

    sockets = _bind_shared_port(list(NODES))
    runners = []
    for sock in sockets:
        runner = web.AppRunner(app_for(NODES[sock.getsockname()[0]]), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
    yield sockets[0].getsockname()[1]
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def nlb(aws: ClientFactory, search_port: int) -> NlbResources:
    """A fresh NLB per test with both primaries registered."""
    return create_search_nlb(
        aws("ec2"),
        aws("elbv2"),
        name=f"search-{uuid.uuid4().hex[:8]}",
        port=search_port,
        targets=[(PRIMARY_A, search_port), (PRIMARY_B, search_port)],
    )


@pytest_asyncio.fixture
async def standin(aws: ClientFactory, nlb: NlbResources) -> AsyncIterator[NlbStandIn]:
    async with NlbStandIn(lambda: aws("elbv2"), nlb.target_group_arn, refresh_seconds=0.02) as lb:
        yield lb


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """No keep-alive: every request is a new TCP connection, so each is routed afresh."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=2.0, trust_env=False) as client:
        yield client


async def ask(http: httpx.AsyncClient, lb: NlbStandIn) -> str:
    response = await http.get(f"http://{lb.host}:{lb.port}/")
    response.raise_for_status()
    return response.text


async def ask_many(http: httpx.AsyncClient, lb: NlbStandIn, n: int) -> list[str]:
    return [await ask(http, lb) for _ in range(n)]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition until DEADLINE instead of sleeping for a guessed time."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def routes_to(lb: NlbStandIn, *ips: str) -> Callable[[], bool]:
    return lambda: {ip for ip, _ in lb.routable_targets()} == set(ips)


def states(elbv2: Any, tg_arn: str, targets: list[tuple[str, int]] | None = None) -> dict:
    kwargs: dict[str, Any] = {"TargetGroupArn": tg_arn}
    if targets is not None:
        kwargs["Targets"] = [{"Id": ip, "Port": port} for ip, port in targets]
    answer = elbv2.describe_target_health(**kwargs)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"] for d in answer}


# --------------------------------------------------------------------------- control plane


def test_nlb_looks_like_a_real_search_nlb(aws: ClientFactory, nlb: NlbResources) -> None:
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    lb = elbv2.describe_load_balancers(LoadBalancerArns=[nlb.load_balancer_arn])
    assert lb["LoadBalancers"][0]["Type"] == "network"
    assert lb["LoadBalancers"][0]["Scheme"] == "internal"
    tg = elbv2.describe_target_groups(TargetGroupArns=[nlb.target_group_arn])["TargetGroups"][0]
    assert (tg["TargetType"], tg["Protocol"], tg["HealthCheckProtocol"]) == ("ip", "TCP", "HTTP")
    listener = elbv2.describe_listeners(ListenerArns=[nlb.listener_arn])["Listeners"][0]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == nlb.target_group_arn
    vpc = ec2.describe_vpcs(VpcIds=[nlb.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "127.0.0.0/16"
    # moto reports a new target healthy at once: nothing ever passes through "initial".
    assert {ip: h["State"] for ip, h in states(elbv2, nlb.target_group_arn).items()} == {
        PRIMARY_A: "healthy",
        PRIMARY_B: "healthy",
    }


def test_moto_does_not_check_target_ips(aws: ClientFactory, nlb: NlbResources) -> None:
    """Documents why create_search_nlb checks the VPC CIDR itself."""
    elbv2 = aws("elbv2")
    elbv2.register_targets(TargetGroupArn=nlb.target_group_arn, Targets=[{"Id": "8.8.8.8"}])
    assert states(elbv2, nlb.target_group_arn)["8.8.8.8"]["State"] == "healthy"
    with pytest.raises(ValueError, match="outside the VPC CIDR"):
        create_search_nlb(aws("ec2"), elbv2, name="bad", port=9200, targets=[("8.8.8.8", 9200)])


def test_waiters_against_moto_and_overrides(
    aws: ClientFactory, nlb: NlbResources, search_port: int
) -> None:
    elbv2, tg = aws("elbv2"), nlb.target_group_arn
    standby = [{"Id": STANDBY, "Port": search_port}]
    elbv2.register_targets(TargetGroupArn=tg, Targets=standby)
    elbv2.get_waiter("target_in_service").wait(
        TargetGroupArn=tg, Targets=standby, WaiterConfig=FAST_WAITER
    )
    with TargetHealthOverrides() as overrides:
        overrides.set(tg, STANDBY, search_port, "initial")
        assert states(elbv2, tg, [(STANDBY, search_port)])[STANDBY] == {
            "State": "initial",
            "Reason": "Elb.RegistrationInProgress",
            "Description": "Target registration is in progress",
        }
        with pytest.raises(WaiterError, match="Max attempts exceeded"):
            elbv2.get_waiter("target_in_service").wait(
                TargetGroupArn=tg, Targets=standby, WaiterConfig=FAST_WAITER
            )
        elbv2.deregister_targets(TargetGroupArn=tg, Targets=standby)
        overrides.set(tg, STANDBY, search_port, "draining")
        with pytest.raises(WaiterError, match="Max attempts exceeded"):
            elbv2.get_waiter("target_deregistered").wait(
                TargetGroupArn=tg, Targets=standby, WaiterConfig=FAST_WAITER
            )
        overrides.clear()
        elbv2.get_waiter("target_deregistered").wait(
            TargetGroupArn=tg, Targets=standby, WaiterConfig=FAST_WAITER
        )
    # A target moto never saw is "unavailable", never "unused": target_deregistered never ends.
    with pytest.raises(WaiterError):
        elbv2.get_waiter("target_deregistered").wait(
            TargetGroupArn=tg, Targets=[{"Id": "127.0.9.9", "Port": 1}], WaiterConfig=FAST_WAITER
        )


# --------------------------------------------------------------------------- data plane


async def test_round_robin_over_registered_healthy_targets(
    standin: NlbStandIn, http: httpx.AsyncClient
) -> None:
    answers = await ask_many(http, standin, 6)
    assert set(answers) == {"primary-a", "primary-b"}
    assert all(a != b for a, b in itertools.pairwise(answers)), answers
    assert standin.connections == 6
    assert not standin.fail_open


async def test_large_bodies_pass_both_ways(standin: NlbStandIn, http: httpx.AsyncClient) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: exercises back-pressure in both directions
    response = await http.post(f"http://{standin.host}:{standin.port}/echo", content=body)
    assert response.content == body


async def test_switch_to_standby(
    aws: ClientFactory,
    nlb: NlbResources,
    standin: NlbStandIn,
    http: httpx.AsyncClient,
    search_port: int,
) -> None:
    elbv2, tg = aws("elbv2"), nlb.target_group_arn
    primaries = [{"Id": ip, "Port": search_port} for ip in (PRIMARY_A, PRIMARY_B)]
    standby = [{"Id": STANDBY, "Port": search_port}]
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as kept_alive:
        url = f"http://{standin.host}:{standin.port}/"
        before = (await kept_alive.get(url)).text

        await asyncio.to_thread(elbv2.register_targets, TargetGroupArn=tg, Targets=standby)
        await asyncio.to_thread(elbv2.deregister_targets, TargetGroupArn=tg, Targets=primaries)
        await eventually(routes_to(standin, STANDBY), "routing to the standby only")
        assert await ask_many(http, standin, 4) == ["standby"] * 4

        # The connection opened before the switch still reaches its primary, like on an NLB.
        assert (await kept_alive.get(url)).text == before


async def test_unhealthy_override_stops_routing(
    aws: ClientFactory,
    nlb: NlbResources,
    standin: NlbStandIn,
    http: httpx.AsyncClient,
    search_port: int,
) -> None:
    elbv2, tg = aws("elbv2"), nlb.target_group_arn
    original = FakeTargetGroup.__dict__["health_for"]
    with TargetHealthOverrides() as overrides:
        overrides.set(tg, PRIMARY_A, search_port, "unhealthy")
        assert states(elbv2, tg)[PRIMARY_A] == {
            "State": "unhealthy",
            "Reason": "Target.FailedHealthChecks",
            "Description": "Health checks failed",
        }
        await eventually(routes_to(standin, PRIMARY_B), "PRIMARY_A taken out of routing")
        assert await ask_many(http, standin, 4) == ["primary-b"] * 4
    # Uninstalled: moto speaks for itself again and the target comes back.
    assert FakeTargetGroup.__dict__["health_for"] is original
    assert states(elbv2, tg)[PRIMARY_A]["State"] == "healthy"
    await eventually(routes_to(standin, PRIMARY_A, PRIMARY_B), "PRIMARY_A back in routing")


async def test_all_unhealthy_fails_open(
    nlb: NlbResources, standin: NlbStandIn, http: httpx.AsyncClient, search_port: int
) -> None:
    with TargetHealthOverrides() as overrides:
        for ip in (PRIMARY_A, PRIMARY_B):
            overrides.set(nlb.target_group_arn, ip, search_port, "unhealthy")
        await eventually(lambda: standin.fail_open, "fail open")
        assert set(await ask_many(http, standin, 4)) == {"primary-a", "primary-b"}
        # A draining target is on its way out: it is not part of the fail-open set.
        overrides.set(nlb.target_group_arn, PRIMARY_B, search_port, "draining")
        await eventually(routes_to(standin, PRIMARY_A), "fail open without the draining one")
        assert standin.fail_open


async def test_no_registered_target_resets_connections(
    aws: ClientFactory,
    nlb: NlbResources,
    standin: NlbStandIn,
    http: httpx.AsyncClient,
    search_port: int,
) -> None:
    primaries = [{"Id": ip, "Port": search_port} for ip in (PRIMARY_A, PRIMARY_B)]
    elbv2 = aws("elbv2")
    await asyncio.to_thread(
        elbv2.deregister_targets, TargetGroupArn=nlb.target_group_arn, Targets=primaries
    )
    await eventually(routes_to(standin), "no routable target")
    with pytest.raises(httpx.TransportError):
        await ask(http, standin)
    reader, writer = await asyncio.open_connection(standin.host, standin.port)
    try:
        assert await reader.read() == b""
    except ConnectionResetError:
        pass  # the RST may arrive before or instead of an EOF
    finally:
        writer.close()


async def test_unreachable_target_resets_the_client(
    aws: ClientFactory, nlb: NlbResources, standin: NlbStandIn, http: httpx.AsyncClient
) -> None:
    elbv2, tg = aws("elbv2"), nlb.target_group_arn
    await asyncio.to_thread(
        elbv2.deregister_targets, TargetGroupArn=tg, Targets=[{"Id": PRIMARY_A}, {"Id": PRIMARY_B}]
    )
    nobody = ("127.0.1.3", 9)  # discard port: nothing listens there on loopback
    await asyncio.to_thread(
        elbv2.register_targets, TargetGroupArn=tg, Targets=[{"Id": nobody[0], "Port": nobody[1]}]
    )
    await eventually(routes_to(standin, nobody[0]), "routing to the dead target")
    with pytest.raises(httpx.TransportError):
        await ask(http, standin)


class _BreakableElbv2:
    """An elbv2 client whose describe_target_health can be made to fail like a dead endpoint."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.broken = False

    def describe_target_health(self, **kwargs: Any) -> Any:
        if self.broken:
            raise ConnectionError("endpoint unreachable")
        return self.client.describe_target_health(**kwargs)


async def test_failed_refresh_keeps_last_routing(
    aws: ClientFactory,
    nlb: NlbResources,
    http: httpx.AsyncClient,
    search_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    elbv2 = aws("elbv2")
    breakable = _BreakableElbv2(aws("elbv2"))
    caplog.set_level(logging.INFO, logger="sandbox.nlb")
    async with NlbStandIn(lambda: breakable, nlb.target_group_arn, refresh_seconds=0.02) as lb:
        breakable.broken = True
        await asyncio.to_thread(
            elbv2.deregister_targets,
            TargetGroupArn=nlb.target_group_arn,
            Targets=[{"Id": PRIMARY_B, "Port": search_port}],
        )
        await eventually(lambda: lb.refresh_failures >= 3, "a few failed refreshes")
        assert routes_to(lb, PRIMARY_A, PRIMARY_B)()
        assert set(await ask_many(http, lb, 2)) == {"primary-a", "primary-b"}
        assert "keeping last routing" in caplog.text

        breakable.broken = False
        await eventually(routes_to(lb, PRIMARY_A), "routing read again after recovery")
        assert await ask_many(http, lb, 2) == ["primary-a"] * 2


async def test_stop_resets_open_connections(standin: NlbStandIn) -> None:
    reader, writer = await asyncio.open_connection(standin.host, standin.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: search\r\n\r\n")  # keep-alive: the node keeps it open
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await standin.stop()
    try:
        await asyncio.wait_for(reader.read(), DEADLINE)
    except ConnectionResetError:
        pass
    finally:
        writer.close()
