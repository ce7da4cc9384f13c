"""The ALB stand-in must route, fail and rewrite headers the way an Application Load Balancer does.

moto holds the control plane (the ALB, its target group, registrations, target health, maybe
overridden), small HTTP servers on loopback play the app servers, and every assertion about
routing is made on which server actually answered through the stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from botocore.config import Config
from moto.server import ThreadedMotoServer

from sandbox.alb import (
    ALB_SERVER,
    AlbResources,
    AlbStandIn,
    alb_error_body,
    amzn_trace_id,
    create_app_alb,
)
from sandbox.net import free_port_on
from sandbox.nlb import TargetHealthOverrides
from sandbox.waiting import wait_for

APP_A = "127.0.6.1"
APP_B = "127.0.6.2"
NOBODY = "127.0.6.3"  # registered but nothing listens: connections are refused
SILENT = "127.0.6.4"  # accepts connections and never answers
APPS = {APP_A: "app-a", APP_B: "app-b"}
CLIENT = "127.0.7.9"  # the address the test client connects from
ALB_HOST = "127.0.5.1"
TRACE_FIELD = r"1-[0-9a-f]{8}-[0-9a-f]{24}"
DEADLINE = 3.0

ClientFactory = Callable[[str], Any]


# --------------------------------------------------------------------------- fixtures


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


def _app_for(name: str) -> web.Application:
    """Answers any request with what it received, so tests see what the ALB forwarded."""

    async def echo(request: web.Request) -> web.Response:
        response = web.json_response(
            {
                "name": name,
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": list(request.headers.items()),
                "body": (await request.read()).decode(),
            }
        )
        response.headers.add("Set-Cookie", "PHPSESSID=abc; path=/")
        response.headers.add("Set-Cookie", "form_key=xyz; path=/")
        return response

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", echo)
    return app


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read until the peer gives up, answer nothing."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    writer.close()


@pytest_asyncio.fixture(scope="module")
async def app_port() -> AsyncIterator[int]:
    """The two app servers and the silent one, on one port (the target group's port)."""
    port = free_port_on([APP_A, APP_B, NOBODY, SILENT])
    runners = []
    for host, name in APPS.items():
        runner = web.AppRunner(_app_for(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    silent = await asyncio.start_server(_silent, SILENT, port)
    yield port
    silent.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def alb(aws: ClientFactory, app_port: int) -> AlbResources:
    """A fresh ALB per test with both app servers registered."""
    return create_app_alb(
        aws("ec2"),
        aws("elbv2"),
        name=f"app-{uuid.uuid4().hex[:8]}",
        port=app_port,
        targets=[(APP_A, app_port), (APP_B, app_port)],
    )


@pytest_asyncio.fixture
async def standin(aws: ClientFactory, alb: AlbResources) -> AsyncIterator[AlbStandIn]:
    async with AlbStandIn(
        lambda: aws("elbv2"), alb.target_group_arn, listen_host=ALB_HOST, refresh_seconds=0.02
    ) as lb:
        yield lb


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=CLIENT)
    async with httpx.AsyncClient(transport=transport, timeout=5.0, trust_env=False) as client:
        yield client


@dataclass
class Echo:
    """What an app server received, as it reported it."""

    name: str
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


async def ask(http: httpx.AsyncClient, lb: AlbStandIn, path: str = "/") -> Echo:
    response = await http.get(lb.url + path)
    response.raise_for_status()
    return Echo(**response.json())


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition until the deadline instead of sleeping for a guessed time."""

    async def check() -> bool:
        return condition()

    await wait_for(check, what=what, timeout_s=DEADLINE)


def routes_to(lb: AlbStandIn, *ips: str) -> Callable[[], bool]:
    return lambda: {ip for ip, _ in lb.routable_targets()} == set(ips)


async def deregister_all(aws: ClientFactory, alb: AlbResources, port: int) -> None:
    elbv2 = aws("elbv2")
    await asyncio.to_thread(
        elbv2.deregister_targets,
        TargetGroupArn=alb.target_group_arn,
        Targets=[{"Id": ip, "Port": port} for ip in APPS],
    )


async def register(aws: ClientFactory, alb: AlbResources, ip: str, port: int) -> None:
    elbv2 = aws("elbv2")
    await asyncio.to_thread(
        elbv2.register_targets,
        TargetGroupArn=alb.target_group_arn,
        Targets=[{"Id": ip, "Port": port}],
    )


def assert_alb_error(response: httpx.Response, status: int, reason: str) -> None:
    """The response came from the ALB itself, byte for byte as AWS sends it."""
    assert response.status_code == status
    assert response.reason_phrase == reason
    assert response.headers["Server"] == ALB_SERVER
    assert response.headers["Content-Type"] == "text/html"
    assert response.content == alb_error_body(status)
    assert int(response.headers["Content-Length"]) == len(response.content)


# --------------------------------------------------------------------------- control plane


def test_alb_looks_like_an_app_tier_alb(aws: ClientFactory, alb: AlbResources) -> None:
    elbv2 = aws("elbv2")
    lb = elbv2.describe_load_balancers(LoadBalancerArns=[alb.load_balancer_arn])
    assert lb["LoadBalancers"][0]["Type"] == "application"
    assert lb["LoadBalancers"][0]["Scheme"] == "internet-facing"
    tg = elbv2.describe_target_groups(TargetGroupArns=[alb.target_group_arn])["TargetGroups"][0]
    assert (tg["TargetType"], tg["Protocol"], tg["HealthCheckPath"]) == (
        "ip",
        "HTTP",
        "/health_check.php",
    )
    listener = elbv2.describe_listeners(ListenerArns=[alb.listener_arn])["Listeners"][0]
    assert listener["Protocol"] == "HTTP"
    assert listener["DefaultActions"][0]["TargetGroupArn"] == alb.target_group_arn
    with pytest.raises(ValueError, match="outside the VPC CIDR"):
        create_app_alb(aws("ec2"), elbv2, name="bad", port=80, targets=[("8.8.8.8", 80)])


def test_trace_id_rules() -> None:
    assert re.fullmatch(f"Root={TRACE_FIELD}", amzn_trace_id(None))
    assert re.fullmatch(f"Root={TRACE_FIELD}", amzn_trace_id("CalledFrom=app"))
    root = "Root=1-67891233-abcdef012345678912345678"
    assert re.fullmatch(
        f"Self={TRACE_FIELD};{root};CalledFrom=app", amzn_trace_id(f"{root};CalledFrom=app")
    )
    updated = amzn_trace_id(f"Self=1-00000000-000000000000000000000000;{root}")
    assert re.fullmatch(f"Self={TRACE_FIELD};{root}", updated)
    assert not updated.startswith("Self=1-00000000-")


# --------------------------------------------------------------------------- routing


async def test_round_robin_over_healthy_targets(
    standin: AlbStandIn, http: httpx.AsyncClient, app_port: int
) -> None:
    answers = [(await ask(http, standin)).name for _ in range(6)]
    assert answers == ["app-a", "app-b"] * 3 or answers == ["app-b", "app-a"] * 3, answers
    assert standin.forwarded == {(APP_A, app_port): 3, (APP_B, app_port): 3}
    assert standin.requests == 6
    assert not standin.fail_open
    assert not standin.elb_errors


async def test_headers_as_an_alb_forwards_them(
    standin: AlbStandIn, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        standin.url + "/graphql?x=1&y=%2F",
        content=b'{"query": "{ __typename }"}',
        headers={
            "Host": "www.shop.example",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "one hop only",
            "Cookie": "PHPSESSID=abc",
        },
    )
    assert response.status_code == 200
    echo = Echo(**response.json())
    assert (echo.method, echo.path_qs, echo.body) == (
        "POST",
        "/graphql?x=1&y=%2F",
        '{"query": "{ __typename }"}',
    )
    assert echo.header("Host") == ["www.shop.example"]
    assert echo.header("X-Forwarded-For") == [f"203.0.113.7, {CLIENT}"]
    assert echo.header("X-Forwarded-Proto") == ["http"]  # the listener's, not the client's
    assert echo.header("X-Forwarded-Port") == [str(standin.port)]
    assert echo.header("Cookie") == ["PHPSESSID=abc"]
    assert echo.header("X-Hop") == []
    (trace,) = echo.header("X-Amzn-Trace-Id")
    assert re.fullmatch(f"Root={TRACE_FIELD}", trace)
    # The target's response headers come back, repeated ones included.
    assert response.headers.get_list("Set-Cookie") == [
        "PHPSESSID=abc; path=/",
        "form_key=xyz; path=/",
    ]

    # A client that already carries a Root keeps it; the ALB adds its own Self.
    root = "Root=1-67891233-abcdef012345678912345678"
    traced = await http.get(standin.url + "/", headers={"X-Amzn-Trace-Id": root})
    assert re.fullmatch(
        f"Self={TRACE_FIELD};{root}", Echo(**traced.json()).header("X-Amzn-Trace-Id")[0]
    )
    plain = await ask(http, standin)
    assert plain.header("X-Forwarded-For") == [CLIENT]


async def test_no_registered_target_answers_503(
    aws: ClientFactory,
    alb: AlbResources,
    standin: AlbStandIn,
    http: httpx.AsyncClient,
    app_port: int,
) -> None:
    await deregister_all(aws, alb, app_port)
    await eventually(routes_to(standin), "no routable target")
    response = await http.get(standin.url + "/women.html")
    assert_alb_error(response, 503, "Service Temporarily Unavailable")
    assert response.text == (
        "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
        "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    assert response.headers["Content-Length"] == "162"
    assert standin.elb_errors == {503: 1}
    # Registering an app server again (an Auto Scaling group scaling out) brings traffic back.
    await register(aws, alb, APP_B, app_port)
    await eventually(routes_to(standin, APP_B), "routing to the new target")
    assert (await ask(http, standin)).name == "app-b"


async def test_all_unhealthy_fails_open_but_initial_gets_nothing(
    alb: AlbResources, standin: AlbStandIn, http: httpx.AsyncClient, app_port: int
) -> None:
    with TargetHealthOverrides() as overrides:
        overrides.set(alb.target_group_arn, APP_A, app_port, "unhealthy")
        await eventually(routes_to(standin, APP_B), "the unhealthy target taken out")
        assert {(await ask(http, standin)).name for _ in range(3)} == {"app-b"}

        overrides.set(alb.target_group_arn, APP_B, app_port, "unhealthy")
        await eventually(lambda: standin.fail_open, "fail open")
        assert {(await ask(http, standin)).name for _ in range(4)} == {"app-a", "app-b"}

        # Targets still registering (a fresh Auto Scaling instance) take no traffic at all.
        for ip in APPS:
            overrides.set(alb.target_group_arn, ip, app_port, "initial")
        await eventually(routes_to(standin), "nothing routable while targets are initial")
        assert not standin.fail_open
        assert_alb_error(await http.get(standin.url + "/"), 503, "Service Temporarily Unavailable")
        assert standin.target_states() == {
            (APP_A, app_port): "initial",
            (APP_B, app_port): "initial",
        }
    await eventually(routes_to(standin, APP_A, APP_B), "both targets back once healthy")


async def test_refused_connection_answers_502(
    aws: ClientFactory,
    alb: AlbResources,
    standin: AlbStandIn,
    http: httpx.AsyncClient,
    app_port: int,
) -> None:
    await deregister_all(aws, alb, app_port)
    await register(aws, alb, NOBODY, app_port)
    await eventually(routes_to(standin, NOBODY), "routing to the dead target")
    response = await http.get(standin.url + "/")
    assert_alb_error(response, 502, "Bad Gateway")
    assert response.headers["Content-Length"] == "122"
    assert standin.elb_errors == {502: 1}


async def test_silent_target_answers_504(
    aws: ClientFactory, alb: AlbResources, http: httpx.AsyncClient, app_port: int
) -> None:
    await deregister_all(aws, alb, app_port)
    await register(aws, alb, SILENT, app_port)
    async with AlbStandIn(
        lambda: aws("elbv2"),
        alb.target_group_arn,
        listen_host=ALB_HOST,
        refresh_seconds=0.02,
        idle_timeout=0.3,
    ) as lb:
        assert lb.routable_targets() == [(SILENT, app_port)]
        response = await http.get(lb.url + "/")
        assert_alb_error(response, 504, "Gateway Time-out")
        assert response.headers["Content-Length"] == "132"
        assert lb.elb_errors == {504: 1}


async def test_instance_targets_reach_their_app_servers(
    aws: ClientFactory, http: httpx.AsyncClient, app_port: int
) -> None:
    ec2, elbv2 = aws("ec2"), aws("elbv2")
    alb = create_app_alb(
        ec2, elbv2, name=f"asg-{uuid.uuid4().hex[:8]}", port=app_port, target_type="instance"
    )
    # moto does not validate AMIs by default; this is the id moto's own examples use.
    reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)
    ids = [instance["InstanceId"] for instance in reservation["Instances"]]
    addresses = dict(zip(ids, APPS, strict=True))
    elbv2.register_targets(
        TargetGroupArn=alb.target_group_arn, Targets=[{"Id": i, "Port": app_port} for i in ids]
    )

    def address(instance_id: str, port: int) -> tuple[str, int] | None:
        ip = addresses.get(instance_id)
        return None if ip is None else (ip, port)

    async with AlbStandIn(
        lambda: aws("elbv2"),
        alb.target_group_arn,
        instance_address=address,
        listen_host=ALB_HOST,
        refresh_seconds=0.02,
    ) as lb:
        assert {(await ask(http, lb)).name for _ in range(4)} == {"app-a", "app-b"}
        # moto reports a stopped instance "unused" (Target.InvalidState): it leaves routing.
        await asyncio.to_thread(ec2.stop_instances, InstanceIds=[ids[0]])
        await eventually(routes_to(lb, addresses[ids[1]]), "the stopped instance taken out")
        assert lb.target_states()[(addresses[ids[0]], app_port)] == "unused"
        assert {(await ask(http, lb)).name for _ in range(2)} == {APPS[addresses[ids[1]]]}


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
    alb: AlbResources,
    http: httpx.AsyncClient,
    app_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    breakable = _BreakableElbv2(aws("elbv2"))
    caplog.set_level(logging.INFO, logger="sandbox.alb")
    async with AlbStandIn(
        lambda: breakable, alb.target_group_arn, listen_host=ALB_HOST, refresh_seconds=0.02
    ) as lb:
        breakable.broken = True
        await deregister_all(aws, alb, app_port)
        await eventually(lambda: lb.refresh_failures >= 3, "a few failed refreshes")
        assert routes_to(lb, APP_A, APP_B)()
        assert {(await ask(http, lb)).name for _ in range(2)} == {"app-a", "app-b"}
        assert "keeping last routing" in caplog.text
        breakable.broken = False
        await eventually(routes_to(lb), "routing read again after recovery")


async def test_stop_closes_the_listener(standin: AlbStandIn, http: httpx.AsyncClient) -> None:
    url = standin.url
    assert standin.active
    await standin.stop()
    assert not standin.active
    with pytest.raises(RuntimeError):
        _ = standin.url
    with pytest.raises(httpx.ConnectError):
        await http.get(url + "/")
    await standin.stop()  # idempotent
