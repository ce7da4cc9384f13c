"""A Network Load Balancer for the sandbox: moto's control plane plus a data plane on loopback.

moto keeps the ELBv2 API (load balancers, target groups, register/deregister, target health) but
moves no traffic, reports every registered target ``healthy`` at once and forgets deregistered
ones at once. That is enough to test the *calls* a failover makes, not what the storefront sees.
This module fills the gaps:

* ``create_search_nlb`` builds in moto what a user has on AWS: a VPC, subnets, an internal
  ``network`` load balancer, an ``ip`` target group with real-looking health checks, a TCP
  listener and the registered search nodes.
* ``TargetHealthOverrides`` makes moto report chosen targets ``unhealthy``/``initial``/
  ``draining``/..., by patching moto's in-process backend (this only works because
  ``ThreadedMotoServer`` runs in the same process), so a test can show a standby that never
  becomes healthy.
* ``NlbStandIn`` is the data plane: a TCP listener on loopback that polls
  ``describe_target_health`` and forwards each new connection to the next healthy target, failing
  open like an NLB when none is healthy.

What moto 5.2 does (read in ``moto/elbv2/models.py`` and checked against a live server):

* Target IPs are **not** validated: ``register_targets`` accepts any ``Id`` for an ``ip`` target
  group, even outside the VPC CIDR (``8.8.8.8`` in a ``10.0.0.0/16`` VPC is accepted). Real AWS
  requires ``ip`` targets in the VPC CIDR (or RFC 1918 / 100.64.0.0/10 with
  ``AvailabilityZone=all``) and rejects loopback outright.
* ``create_vpc`` only checks the prefix length (/16 to /28): ``127.0.0.0/16`` is accepted,
  ``127.0.0.0/8`` fails with ``InvalidVpc.Range``. The sandbox VPC is therefore ``127.0.0.0/16``,
  so the loopback search nodes (127.0.1.x primary, 127.0.2.x standby) are *inside* the VPC CIDR,
  as the real targets are, and ``create_search_nlb`` checks that like AWS would.
* Targets are keyed by ``Id`` alone: registering the same IP on a second port replaces the first
  (AWS keys by ``Id`` + ``Port``). Use one port per IP.
* ``describe_target_health`` without ``Targets`` lists registered targets only, all ``healthy``.
  With explicit ``Targets``, a deregistered one is ``unused``/``Target.NotRegistered`` and one
  that was never registered is ``unavailable``/``Target.NotRegistered``; the reported port is the
  registered one, whatever port was asked for.
* boto3 waiters: ``target_in_service`` succeeds on the first poll for any registered target;
  ``target_deregistered`` succeeds on the first poll after a deregistration (``unused``) but never
  for a target that was never registered (``unavailable``), so it runs into its max attempts.
  With an override, ``target_in_service`` keeps polling an ``unhealthy``/``initial`` target and
  ``target_deregistered`` keeps polling a ``draining`` one, as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

from sandbox.target_routing import TargetRouting

log = logging.getLogger(__name__)

# Loopback stands in for the VPC: moto accepts any /16../28 CIDR, and 127.0.0.0/16 holds every
# sandbox search node, so targets are inside the VPC CIDR as AWS requires for ip targets.
SANDBOX_VPC_CIDR = "127.0.0.0/16"


# --------------------------------------------------------------------------- control plane


@dataclass(frozen=True)
class NlbResources:
    """The ARNs and names a failover config needs to point at the load balancer."""

    load_balancer_arn: str
    target_group_arn: str
    listener_arn: str
    dns_name: str
    vpc_id: str
    subnet_ids: tuple[str, ...] = ()


def create_vpc(
    ec2: Any, vpc_cidr: str, targets: list[tuple[str, int]], *, zones: str
) -> tuple[str, tuple[str, ...]]:
    """A VPC with one /24 subnet per zone letter, for a load balancer in moto; (vpc, subnets).

    moto does not check that IP targets lie in the VPC; AWS does (InvalidTarget), so a
    sandbox config that would fail on AWS fails here too.
    """
    network = ipaddress.ip_network(vpc_cidr)
    for ip, _ in targets:
        if ipaddress.ip_address(ip) not in network:
            raise ValueError(f"target {ip} is outside the VPC CIDR {vpc_cidr}")
    region = ec2.meta.region_name
    vpc_id = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
    subnet_ids = tuple(
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(cidr), AvailabilityZone=f"{region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for cidr, zone in zip(network.subnets(new_prefix=24), zones, strict=False)
    )
    return vpc_id, subnet_ids


def create_search_nlb(
    ec2: Any,
    elbv2: Any,
    *,
    name: str,
    port: int,
    targets: list[tuple[str, int]],
    vpc_cidr: str = SANDBOX_VPC_CIDR,
    health_check_path: str = "/",
) -> NlbResources:
    """Create, in moto, the internal NLB in front of a search cluster that a real setup has.

    One VPC with three /24 subnets in zones a-c (an NLB needs at least one subnet; three mirror a
    typical multi-AZ setup), the load balancer and its target group both named ``name``, a TCP
    listener on ``port`` forwarding to the group, and ``targets`` registered as (IP, port).
    """
    vpc_id, subnet_ids = create_vpc(ec2, vpc_cidr, targets, zones="abc")
    lb = elbv2.create_load_balancer(
        Name=name,
        Type="network",
        Scheme="internal",
        IpAddressType="ipv4",
        Subnets=list(subnet_ids),
    )["LoadBalancers"][0]
    # Health checks as a search target group on AWS has them: HTTP on the traffic port, 200 only,
    # NLB-style equal thresholds. moto stores them but never runs them.
    tg = elbv2.create_target_group(
        Name=name,
        Protocol="TCP",
        Port=port,
        VpcId=vpc_id,
        TargetType="ip",
        IpAddressType="ipv4",
        HealthCheckEnabled=True,
        HealthCheckProtocol="HTTP",
        HealthCheckPort="traffic-port",
        HealthCheckPath=health_check_path,
        HealthCheckIntervalSeconds=10,
        HealthCheckTimeoutSeconds=6,
        HealthyThresholdCount=3,
        UnhealthyThresholdCount=3,
        Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="TCP",
        Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )["Listeners"][0]
    if targets:
        elbv2.register_targets(
            TargetGroupArn=tg["TargetGroupArn"],
            Targets=[{"Id": ip, "Port": target_port} for ip, target_port in targets],
        )
    return NlbResources(
        load_balancer_arn=lb["LoadBalancerArn"],
        target_group_arn=tg["TargetGroupArn"],
        listener_arn=listener["ListenerArn"],
        dns_name=lb["DNSName"],
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
    )


# --------------------------------------------------------------------------- health overrides

HEALTH_STATES = frozenset(
    {"initial", "healthy", "unhealthy", "unhealthy.draining", "unused", "draining", "unavailable"}
)

# The reason AWS gives for each state when none is chosen, and the descriptions AWS uses.
_DEFAULT_REASON: dict[str, str | None] = {
    "initial": "Elb.RegistrationInProgress",
    "healthy": None,
    "unhealthy": "Target.FailedHealthChecks",
    "unhealthy.draining": "Target.FailedHealthChecks",
    "unused": "Target.NotRegistered",
    "draining": "Target.DeregistrationInProgress",
    "unavailable": "Target.HealthCheckDisabled",
}
_DESCRIPTION: dict[str, str] = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Elb.InitialHealthChecking": "Initial health checks in progress",
    "Elb.InternalError": "Health checks failed due to an internal error",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.Timeout": "Request timed out",
    "Target.ResponseCodeMismatch": "Health checks failed with these codes: [503]",
    "Target.NotRegistered": "Target is not registered to the target group",
    "Target.NotInUse": "Target group is not configured to receive traffic from the load balancer",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
    "Target.HealthCheckDisabled": "Health checks disabled",
    "Target.InvalidState": "Target is in the stopped state",
    "Target.IpUnusable": "The target IP address is unusable",
}


@dataclass(frozen=True)
class _ForcedHealth:
    state: str
    reason: str | None
    description: str | None


# One wrapper on FakeTargetGroup.health_for serves every active TargetHealthOverrides; it is
# installed when the first one activates and the original restored when the last one leaves, so
# nesting works and nothing outlives its context.
_patch_lock = threading.Lock()
_active: tuple[TargetHealthOverrides, ...] = ()
_original_health_for: Callable[..., FakeHealthStatus] | None = None
_MOTO_HEALTH_FOR: Callable[..., FakeHealthStatus] = FakeTargetGroup.__dict__["health_for"]


def _patched_health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
    """moto's answer first (it knows the effective port), then the newest matching override."""
    original = _original_health_for or _MOTO_HEALTH_FOR  # None only mid-uninstall
    status = original(self, target, ec2_backend)
    for overrides in reversed(_active):  # read without the lock: _active is replaced, not mutated
        forced = overrides.lookup(self.arn, status.instance_id, status.port)
        if forced is not None:
            return FakeHealthStatus(
                status.instance_id,
                status.port,
                status.health_check_port,
                forced.state,
                forced.reason,
                forced.description,
            )
    return status


def _port_key(port: Any) -> int | None:
    try:
        return int(port)
    except (TypeError, ValueError):
        return None


class TargetHealthOverrides:
    """Make moto's describe_target_health report chosen targets in a chosen state.

    Overrides are keyed by (target group ARN, target IP, port) and apply to everything moto
    answers about that target: the full listing (registered targets only, as moto lists them) and
    explicit ``Targets=[...]`` queries, which is what boto3's waiters use. They take effect only
    while installed (``with TargetHealthOverrides() as overrides:`` or ``install()``); leaving
    the context uninstalls the patch but keeps the overrides for a later ``install()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forced: dict[tuple[str, str, int], _ForcedHealth] = {}

    def set(
        self,
        target_group_arn: str,
        target_id: str,
        port: int,
        state: str,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        """Report ``target_id:port`` of the group as ``state`` (with AWS's usual reason)."""
        if state not in HEALTH_STATES:
            raise ValueError(f"unknown target health state {state!r}")
        reason = reason if reason is not None else _DEFAULT_REASON[state]
        if description is None and reason is not None:
            description = _DESCRIPTION.get(reason)
        with self._lock:
            self._forced[(target_group_arn, target_id, int(port))] = _ForcedHealth(
                state, reason, description
            )

    def remove(self, target_group_arn: str, target_id: str, port: int) -> None:
        """Let moto speak for this target again."""
        with self._lock:
            self._forced.pop((target_group_arn, target_id, int(port)), None)

    def clear(self) -> None:
        with self._lock:
            self._forced.clear()

    def lookup(self, target_group_arn: str, target_id: str, port: Any) -> _ForcedHealth | None:
        key = _port_key(port)
        if key is None:
            return None
        with self._lock:
            return self._forced.get((target_group_arn, target_id, key))

    @property
    def installed(self) -> bool:
        return self in _active

    def install(self) -> Self:
        global _active, _original_health_for
        with _patch_lock:
            if self in _active:
                return self
            if not _active:
                _original_health_for = FakeTargetGroup.__dict__["health_for"]
                FakeTargetGroup.health_for = _patched_health_for  # type: ignore[method-assign]
            _active = (*_active, self)
        return self

    def uninstall(self) -> None:
        global _active, _original_health_for
        with _patch_lock:
            if self not in _active:
                return
            _active = tuple(o for o in _active if o is not self)
            if not _active and _original_health_for is not None:
                FakeTargetGroup.health_for = _original_health_for  # type: ignore[method-assign]
                _original_health_for = None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()


# --------------------------------------------------------------------------- data plane

# States of a target that is still registered. An NLB with no healthy target fails open to these;
# draining/unused targets are on their way out (or gone) and never get new connections.
_DEREGISTERED_STATES = frozenset({"draining", "unused"})
_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN, as an NLB does when it cannot serve a flow."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close the other side (TCP semantics kept)."""
    while data := await src.read(_CHUNK):
        dst.write(data)
        await dst.drain()
    if not dst.is_closing() and dst.can_write_eof():
        with contextlib.suppress(OSError):
            dst.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


class NlbStandIn(TargetRouting):
    """The load balancer's data plane on loopback, routed by what moto says about the group.

    ``elbv2_factory`` is called once at start; its client is used from a worker thread, one call
    at a time. Routing is refreshed every ``refresh_seconds``: round robin over ``healthy``
    targets; if none is healthy but some are registered, all registered ones (fail open); if none
    is registered, new connections are reset. A routing change affects new connections only;
    connections already forwarded carry on. If a refresh fails, the last routing stays in force.
    """

    def __init__(
        self,
        elbv2_factory: Callable[[], Any],
        target_group_arn: str,
        *,
        listen_host: str = "127.0.3.1",
        listen_port: int = 0,
        refresh_seconds: float = 0.1,
        connect_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            elbv2_factory,
            target_group_arn,
            refresh_seconds=refresh_seconds,
            fails_open_to=lambda state: state not in _DEREGISTERED_STATES,
            log=log,
        )
        self.host = listen_host
        self.port = listen_port
        self.connect_timeout = connect_timeout
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._flows: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def routing_name(self) -> str:
        return f"NLB stand-in {self.host}:{self.port}"

    # ---- lifecycle

    async def start(self) -> None:
        """Read target health once (errors propagate), then listen and keep refreshing."""
        if self._server is not None:
            return
        await self.start_routing()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        """Stop listening and refreshing, and reset the flows still open."""
        if self._server is None:
            return
        self._server.close()
        await self.stop_routing()
        flows = list(self._flows)
        for flow in flows:
            flow.cancel()
        await asyncio.gather(*flows, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # ---- flows

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._flows.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            # Only stop() cancels flows (and they are reset by then). Not re-raised: asyncio's
            # stream server would log a cancelled client_connected_cb task as an error.
            pass
        finally:
            if task is not None:
                self._flows.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.next_target()
        if target is None:
            log.info("NLB stand-in has no registered target; resetting the connection")
            _reset(writer)
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                up_reader, up_writer = await asyncio.open_connection(*target)
        except (OSError, TimeoutError) as exc:
            log.warning("NLB stand-in cannot reach %s:%s (%s); resetting", *target, exc)
            _reset(writer)
            return
        except asyncio.CancelledError:
            _reset(writer)
            raise
        await self._splice(reader, writer, up_reader, up_writer)

    @staticmethod
    async def _splice(
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Pipe both ways; a clean end closes both sides, an error or cancel resets both."""
        pumps = [
            asyncio.create_task(_pump(client_reader, up_writer)),
            asyncio.create_task(_pump(up_reader, client_writer)),
        ]
        clean = False
        try:
            # Returns once both directions reached EOF, or as soon as one of them failed.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            clean = all(p.done() and p.exception() is None for p in pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if clean:
                await _close(up_writer)
                await _close(client_writer)
            else:
                _reset(up_writer)
                _reset(client_writer)
