"""An Application Load Balancer for the sandbox: moto's control plane, an HTTP data plane here.

moto keeps the ELBv2 API for ALBs (load balancers, HTTP target groups, ``ip`` and ``instance``
targets, target health) but moves no traffic. ``AlbStandIn`` is the data plane: an HTTP reverse
proxy on loopback that reads ``describe_target_health`` every ``refresh_seconds`` and forwards
each request to the next routable target, the way an ALB node does. ``create_app_alb`` builds
in moto what a Region's app tier has on AWS: an internet-facing ALB, an HTTP target group
health-checking ``/health_check.php``, a listener and the registered app servers.

What it copies from an ALB (Elastic Load Balancing user guide: "Troubleshoot your Application
Load Balancers", "Health checks for Application Load Balancer target groups", "HTTP headers and
Application Load Balancers", "Request tracing for your Application Load Balancer"):

* Routing: round robin over ``healthy`` targets. With registered targets but none healthy the
  ALB fails open and routes to the ``unhealthy`` ones. The docs' fail-open names unhealthy
  targets only, so ``initial``, ``draining`` and ``unused`` ones get no new requests here, and
  a group with nothing registered (or only targets still in ``initial``) answers 503.
* Errors the ALB itself generates, with its HTML body and ``Server: awselb/2.0``: 503 "Service
  Temporarily Unavailable" when there is no target to route to, 502 "Bad Gateway" when the
  target refuses the connection, resets it or sends no valid response, 504 "Gateway Time-out"
  when the connection is not established within the connect timeout (10 s on AWS) or the
  target sends nothing for the idle timeout (60 s by default). No other target is tried.
* Request headers: ``Host`` as the client sent it; ``X-Forwarded-For`` with the client's address
  appended (the default ``append`` mode); ``X-Forwarded-Proto`` and ``X-Forwarded-Port`` of the
  listener; ``X-Amzn-Trace-Id`` with a new ``Root`` (or a ``Self`` field when the client sent a
  ``Root``). Hop-by-hop headers are not forwarded.

Not copied: TLS listeners, listener rules (one forward action), stickiness, slow start,
deregistration delay for in-flight requests, and health checks themselves (moto reports every
registered target ``healthy``; ``sandbox.nlb.TargetHealthOverrides`` says otherwise).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sandbox.nlb import SANDBOX_VPC_CIDR, create_vpc
from sandbox.target_routing import Target, TargetAddress, TargetRouting

log = logging.getLogger(__name__)

InstanceAddress = TargetAddress
"""Maps an instance target (id, port) to the loopback address its app server listens on."""

ALB_SERVER = "awselb/2.0"
ALB_CONNECT_TIMEOUT_S = 10.0
ALB_IDLE_TIMEOUT_S = 60.0
HEALTH_CHECK_PATH = "/health_check.php"

# Headers that belong to one connection (RFC 9110 7.6.1) and are never passed through.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set again by aiohttp for the body it actually sends.
_RECOMPUTED = frozenset({"content-length"})
# aiohttp adds these when absent; a proxy must not invent them for the client.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")


# --------------------------------------------------------------------------- ALB error pages

_REASONS = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def alb_error_body(status: int) -> bytes:
    """The HTML an ALB sends with an error it generates itself (CRLF line ends, as on AWS)."""
    title = f"{status} {_REASONS[status]}"
    lines = [
        "<html>",
        f"<head><title>{title}</title></head>",
        "<body>",
        f"<center><h1>{title}</h1></center>",
        "</body>",
        "</html>",
    ]
    return "".join(line + "\r\n" for line in lines).encode()


def _alb_error(status: int) -> web.Response:
    return web.Response(
        status=status,
        reason=_REASONS[status],
        body=alb_error_body(status),
        headers={"Server": ALB_SERVER, "Content-Type": "text/html"},
    )


# --------------------------------------------------------------------------- request headers


def _trace_field() -> str:
    """version-time-id: 1, epoch seconds in 8 hex digits, 24 random hex digits."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def amzn_trace_id(incoming: str | None) -> str:
    """The X-Amzn-Trace-Id an ALB forwards, given what the client sent.

    No header (or no Root in it): a new Root. A Root: a Self field is inserted in front. A
    Self already there: its value is replaced. Other fields are kept as they are.
    """
    fields = [f.strip() for f in (incoming or "").split(";") if f.strip()]
    names = [f.split("=", 1)[0] for f in fields]
    if "Root" not in names:
        return f"Root={_trace_field()}"
    self_field = f"Self={_trace_field()}"
    if "Self" in names:
        return ";".join(
            self_field if n == "Self" else f for n, f in zip(names, fields, strict=True)
        )
    return ";".join([self_field, *fields])


_REPLACED = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id"}
)


def _end_to_end(headers: Any) -> CIMultiDict[str]:
    """Headers without hop-by-hop ones (also those the Connection header names)."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in _HOP_BY_HOP and lowered not in _RECOMPUTED and lowered not in named:
            kept.add(name, value)
    return kept


def forwarded_headers(request: web.Request, listen_port: int) -> CIMultiDict[str]:
    """The client's headers as the target gets them from an HTTP listener."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in _end_to_end(request.headers).items():
        if name.lower() not in _REPLACED:
            headers.add(name, value)
    chain = [v.strip() for v in request.headers.getall("X-Forwarded-For", []) if v.strip()]
    if request.remote:
        chain.append(request.remote)
    if chain:
        headers["X-Forwarded-For"] = ", ".join(chain)
    headers["X-Forwarded-Proto"] = "http"
    headers["X-Forwarded-Port"] = str(listen_port)
    headers["X-Amzn-Trace-Id"] = amzn_trace_id(request.headers.get("X-Amzn-Trace-Id"))
    return headers


# --------------------------------------------------------------------------- control plane


@dataclass(frozen=True)
class AlbResources:
    """The ARNs and names a Region switch needs to point at a Region's app tier."""

    load_balancer_arn: str
    target_group_arn: str
    listener_arn: str
    dns_name: str
    vpc_id: str
    subnet_ids: tuple[str, ...] = ()


def create_app_alb(
    ec2: Any,
    elbv2: Any,
    *,
    name: str,
    port: int,
    targets: list[Target] | None = None,
    target_type: str = "ip",
    vpc_cidr: str = SANDBOX_VPC_CIDR,
    health_check_path: str = HEALTH_CHECK_PATH,
) -> AlbResources:
    """Create, in moto, the ALB in front of a Region's Magento app servers.

    A VPC with two /24 subnets in zones a and b (an ALB needs two zones), an internet-facing
    ``application`` load balancer and an HTTP target group both named ``name``, an HTTP
    listener on ``port`` forwarding to the group, and ``targets`` (ip, port) registered. For
    ``target_type="instance"`` register instance ids later, as an Auto Scaling group does.
    """
    vpc_id, subnet_ids = create_vpc(ec2, vpc_cidr, targets or [], zones="ab")
    lb = elbv2.create_load_balancer(
        Name=name,
        Type="application",
        Scheme="internet-facing",
        IpAddressType="ipv4",
        Subnets=list(subnet_ids),
    )["LoadBalancers"][0]
    # Magento's own health check, as a Magento target group on AWS has it.
    tg = elbv2.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=port,
        VpcId=vpc_id,
        TargetType=target_type,
        HealthCheckEnabled=True,
        HealthCheckProtocol="HTTP",
        HealthCheckPort="traffic-port",
        HealthCheckPath=health_check_path,
        HealthCheckIntervalSeconds=10,
        HealthCheckTimeoutSeconds=5,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
        Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )["Listeners"][0]
    if targets:
        elbv2.register_targets(
            TargetGroupArn=tg["TargetGroupArn"],
            Targets=[{"Id": ip, "Port": target_port} for ip, target_port in targets],
        )
    return AlbResources(
        load_balancer_arn=lb["LoadBalancerArn"],
        target_group_arn=tg["TargetGroupArn"],
        listener_arn=listener["ListenerArn"],
        dns_name=lb["DNSName"],
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
    )


# --------------------------------------------------------------------------- data plane


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class AlbStandIn(TargetRouting):
    """The ALB's data plane on loopback, routed by what moto says about the target group.

    ``elbv2_factory`` is called once at start; its client is used from a worker thread, one call
    at a time. ``instance_address`` maps instance targets to the app server's loopback address
    (an instance it does not know is left out of routing); ``ip`` targets are used as they are.
    A refresh that fails keeps the last routing in force.
    """

    def __init__(
        self,
        elbv2_factory: Callable[[], Any],
        target_group_arn: str,
        *,
        instance_address: InstanceAddress | None = None,
        listen_host: str = "127.0.5.1",
        listen_port: int = 0,
        refresh_seconds: float = 0.1,
        connect_timeout: float = ALB_CONNECT_TIMEOUT_S,
        idle_timeout: float = ALB_IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(
            elbv2_factory,
            target_group_arn,
            refresh_seconds=refresh_seconds,
            # An ALB whose registered targets are all unhealthy routes to them anyway.
            fails_open_to=lambda state: state == "unhealthy",
            log=log,
        )
        self._address = self._address_of
        self._instance_address = instance_address
        self.host = listen_host
        self.port = listen_port
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.requests = 0
        self.elb_errors: Counter[int] = Counter()
        """Responses the ALB generated itself, by status (HTTPCode_ELB_5XX_Count)."""
        self.forwarded: Counter[Target] = Counter()
        """Requests each target was sent (RequestCountPerTarget)."""
        self._unmapped: set[tuple[str, int]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def active(self) -> bool:
        """True between start() and stop(): the listener accepts requests."""
        return self._runner is not None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("AlbStandIn.url is known after start()")
        return f"http://{self.host}:{self.port}"

    # ---- routing

    def routing_name(self) -> str:
        return f"ALB stand-in {self.host}:{self.port}"

    def _address_of(self, target_id: str, port: int) -> Target | None:
        if _is_ip(target_id):
            return (target_id, port)
        address = self._instance_address(target_id, port) if self._instance_address else None
        if address is None and (target_id, port) not in self._unmapped:
            self._unmapped.add((target_id, port))
            log.warning(
                "ALB stand-in has no address for target %s:%s; not routing to it", target_id, port
            )
        return address

    # ---- lifecycle

    async def start(self) -> None:
        """Read target health once (errors propagate), then listen and keep refreshing."""
        if self._runner is not None:
            return
        await self.start_routing()
        # A fresh connection per request: a target that went away shows up as refused (502),
        # never as a stale pooled connection. No cookie jar: clients' cookies stay theirs.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect_timeout, sock_read=self.idle_timeout
            ),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise
        self.host, self.port = runner.addresses[0][:2]
        self._runner = runner

    async def stop(self) -> None:
        """Stop refreshing and listening; requests in flight are cut off."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self.stop_routing()
        await runner.cleanup()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- requests

    def _error(self, status: int) -> web.Response:
        self.elb_errors[status] += 1
        return _alb_error(status)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        target = self.next_target()
        if target is None:
            return self._error(503)
        assert self._session is not None
        body = await request.read()
        host, port = target
        url = URL(f"http://{host}:{port}{request.raw_path}", encoded=True)
        headers = forwarded_headers(request, self.port)
        skip = [name for name in _AUTO_HEADERS if name not in request.headers]
        self.forwarded[target] += 1
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                skip_auto_headers=skip,
            ) as upstream:
                content = await upstream.read()
                headers = _end_to_end(upstream.headers)
                if request.method == "HEAD" and "Content-Length" in upstream.headers:
                    # No body to measure: the target's length is the one to pass on.
                    headers["Content-Length"] = upstream.headers["Content-Length"]
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    body=content,
                    headers=headers,
                )
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            log.info("ALB stand-in: target %s:%s timed out (%s); 504", host, port, exc)
            return self._error(504)
        except (aiohttp.ClientError, OSError) as exc:
            log.info("ALB stand-in: target %s:%s failed (%s); 502", host, port, exc)
            return self._error(502)
