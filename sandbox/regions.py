"""The sandbox's two Regions: a Magento storefront in us-east-1 (primary) and us-west-2 (DR).

A Region switch moves a whole storefront, so the sandbox gives each Region what AWS would:

* **App tier.** A VPC, an internet-facing ALB with an instance target group health-checking
  ``/health_check.php``, a launch template and an Auto Scaling group attached to the group
  (primary: 2 instances; DR: a pilot light of 1, while taking all traffic needs 2). All of it
  lives in moto and is created through the AWS fault proxy, so ``AwsRegionalDr`` sees the
  instances launch (Pending, targets ``initial``) and turn InService and ``healthy``.
* **Data plane.** An ``AlbStandIn`` per Region on its own loopback address, all on one port
  (DNS answers carry no ports), routing by what the proxy says of the target group. Each
  instance's app server is a TCP relay on an address of its own, booted when the instance is
  first seen, to the Region's Varnish, in front of the Region's storefront stand-in with its
  own Redis.
* **Data.** An Aurora global database (``magento-global``: the writer cluster in us-east-1, a
  secondary in us-west-2 lagging a little) and an ElastiCache global datastore (one
  replication group per Region). A storefront can write only while its Region's cluster is the
  global cluster's writer, and reaches no database while its Region is impaired.
* **Names.** In the sandbox's hosted zone an A record per ALB (``alb-<region>.shop.internal``)
  and ``www.shop.internal`` as a CNAME to the primary ALB's name, TTL 1, answered by the
  sandbox's DNS server.
* **Search.** The sandbox's primary cluster lives in us-east-1, its standby in us-west-2.

``impair_primary_region()`` is a Region outage as customers and AWS see it: the primary's app
servers refuse connections (its ALB answers 502 Bad Gateway), its targets fail their health
checks, its search cluster goes down and its Aurora writer can't be reached.
``restore_primary_region()`` undoes all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
import httpx
from botocore.config import Config as BotoConfig

from sandbox.alb import HEALTH_CHECK_PATH, AlbResources, AlbStandIn, create_app_alb
from sandbox.aws_dr import AwsRegionalDr, DrTiming
from sandbox.aws_fault_proxy import AwsFaultProxy
from sandbox.info import RegionInfo
from sandbox.net import free_port_on
from sandbox.nlb import TargetHealthOverrides
from sandbox.search_sim import FaultMode, NodeFault, SimulatorFleet
from sandbox.services import RedisServer, VarnishServer
from sandbox.storefront import (
    PAGE_CACHE_DB,
    DatabaseProbe,
    DatabaseState,
    Storefront,
    StorefrontSettings,
)
from sandbox.target_routing import Target
from sandbox.waiting import wait_until

__all__ = [
    "DR_REGION",
    "GLOBAL_CLUSTER_ID",
    "PRIMARY_REGION",
    "REGION_TIMING",
    "STOREFRONT_NAME",
    "WWW_NAME",
    "AppServers",
    "RegionInfo",
    "RegionStack",
    "TwoRegions",
    "region_responder",
    "storefront_config",
]

log = logging.getLogger(__name__)

PRIMARY_REGION = "us-east-1"
DR_REGION = "us-west-2"
STOREFRONT_NAME = "shop"
GLOBAL_CLUSTER_ID = "magento-global"
DATASTORE_SUFFIX = "magento-cache"
WWW_NAME = "www.shop.internal."
DB_ENGINE, DB_ENGINE_VERSION = "aurora-mysql", "8.0.mysql_aurora.3.05.2"
# moto launches any image id; this is the one its own tests use.
APP_IMAGE_ID = "ami-12c6146b"
APP_INSTANCE_TYPE = "m6i.large"
ASG_MAX_SIZE = 4
# Lag a secondary shows until told otherwise: a healthy global database is well under 1 s.
DEFAULT_LAG_S = 0.2
# Each storefront asks for the writer at most this often: a cart request must stay cheap.
WRITER_CACHE_S = 0.25
# The ALB stand-ins read target health this often (through the proxy and the responder).
ALB_REFRESH_S = 0.2
READY_TIMEOUT_S = 30.0
HEAL_TIMEOUT_S = 60.0
# InService, healthy instances each Region needs to take all of the shop's traffic.
REGION_CAPACITY = 2

REGION_TIMING = DrTiming(
    global_cluster_pending_s=0.5,
    global_cluster_promotion_s=1.5,
    global_datastore_change_s=0.5,
    instance_launch_s=1.5,
    target_deregistration_s=3.0,
    lag_publish_interval_s=5.0,
)
"""AWS's minutes as the sandbox's seconds: long enough that every intermediate state shows."""

Role = Literal["primary", "dr"]


@dataclass(frozen=True)
class RegionSpec:
    """What one Region of the sandbox has, before anything is created."""

    region: str
    role: Role
    alb_host: str
    instance_network: str  # "127.0.11." : instance app servers get .1, .2, ...
    vpc_cidr: str
    desired: int
    search_side: Literal["primary", "standby"]

    @property
    def alb_name(self) -> str:
        """The ALB's name in the sandbox zone (no trailing dot)."""
        return f"alb-{self.region}.shop.internal"

    @property
    def asg_name(self) -> str:
        return f"magento-web-{self.region}"

    @property
    def db_cluster_id(self) -> str:
        return f"magento-{self.region}"

    @property
    def cache_group(self) -> str:
        return f"magento-cache-{self.region}"


SPECS = (
    RegionSpec(
        region=PRIMARY_REGION,
        role="primary",
        alb_host="127.0.10.1",
        instance_network="127.0.11.",
        vpc_cidr="10.10.0.0/16",
        desired=2,
        search_side="primary",
    ),
    # A pilot light: one instance, scaled up to REGION_CAPACITY before it takes all traffic.
    RegionSpec(
        region=DR_REGION,
        role="dr",
        alb_host="127.0.10.2",
        instance_network="127.0.12.",
        vpc_cidr="10.20.0.0/16",
        desired=1,
        search_side="standby",
    ),
)


def region_responder() -> AwsRegionalDr:
    """The AWS proxy's responder for the sandbox: sandbox timings, a small default lag."""
    return AwsRegionalDr(
        dataclasses.replace(REGION_TIMING), default_replication_lag_s=DEFAULT_LAG_S
    )


# --------------------------------------------------------------------------- app servers


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so connections queue before asyncio serves it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class AppServers:
    """The app servers of one Region's Auto Scaling instances.

    Each instance gets a loopback address of its own the first time its target is seen (as an
    instance gets its private IP at launch) and a TCP relay there to the Region's Varnish, so
    the ALB stand-in's per-target counts say which instance served. ``address`` is the stand-in's
    ``instance_address``. While ``refusing``, nothing listens: connections are refused.
    """

    def __init__(self, region: str, *, network: str, backend: tuple[str, int]) -> None:
        self.region = region
        self.backend = backend
        self.refusing = False
        self._hosts: Iterator[str] = (f"{network}{n}" for n in range(1, 255))
        self._addresses: dict[str, Target] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()

    def address(self, instance_id: str, _port: int) -> Target | None:
        """Where ``instance_id``'s app server listens; boots it on first sight."""
        known = self._addresses.get(instance_id)
        if known is not None:
            return known
        host = next(self._hosts, None)
        if host is None:
            log.warning("%s: no loopback address left for instance %s", self.region, instance_id)
            return None
        sock = _listening_socket(host, 0)
        address: Target = (host, int(sock.getsockname()[1]))
        self._addresses[instance_id] = address
        if self.refusing:
            sock.close()
        else:
            self._serve(instance_id, sock)
        log.info("%s: instance %s serves on %s:%s", self.region, instance_id, *address)
        return address

    def addresses(self) -> dict[str, Target]:
        """Every instance seen so far and its app server's address."""
        return dict(self._addresses)

    def _serve(self, instance_id: str, sock: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(self._start_server(instance_id, sock))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_server(self, instance_id: str, sock: socket.socket) -> None:
        try:
            self._servers[instance_id] = await asyncio.start_server(self._relay, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.transport.abort()
            return
        self._connections |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._connections.discard(end)
                end.close()

    async def refuse(self) -> None:
        """Stop listening and cut every open connection: the instances are unreachable."""
        self.refusing = True
        await asyncio.gather(*self._starting, return_exceptions=True)
        for end in list(self._connections):
            end.transport.abort()
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.close()
        for server in servers.values():
            await server.wait_closed()

    async def accept(self) -> None:
        """Listen again on every instance's address."""
        if not self.refusing:
            return
        self.refusing = False
        for instance_id, (host, port) in self._addresses.items():
            self._serve(instance_id, _listening_socket(host, port))
        await asyncio.gather(*self._starting)

    async def stop(self) -> None:
        await self.refuse()


# --------------------------------------------------------------------------- one Region


@dataclass
class RegionStack:
    """One Region as it runs: its AWS resources and the processes serving its storefront."""

    spec: RegionSpec
    alb: AlbResources
    db_cluster_arn: str
    redis: RedisServer
    storefront: Storefront
    varnish: VarnishServer
    app_servers: AppServers
    standin: AlbStandIn
    search_cluster: str

    @property
    def region(self) -> str:
        return self.spec.region

    @property
    def alb_url(self) -> str:
        return self.standin.url

    def info(self) -> RegionInfo:
        return RegionInfo(
            region=self.region,
            role=self.spec.role,
            alb_name=self.spec.alb_name,
            alb_url=self.alb_url,
            load_balancer_arn=self.alb.load_balancer_arn,
            target_group_arn=self.alb.target_group_arn,
            auto_scaling_group=self.spec.asg_name,
            db_cluster_arn=self.db_cluster_arn,
            cache_replication_group=self.spec.cache_group,
            varnish_url=self.varnish.url,
            storefront_url=self.storefront.url,
            redis_url=self.redis.url,
            search_cluster=self.search_cluster,
            search_side=self.spec.search_side,
        )

    def app_address(self, instance_id: str) -> Target | None:
        """The address of an instance's app server (known once its target was seen)."""
        return self.app_servers.addresses().get(instance_id)


# --------------------------------------------------------------------------- both Regions


class TwoRegions:
    """The primary and DR Regions of the sandbox's storefront, and their outage controls.

    Runs on the sandbox's event loop (the proxy's): boto3 is called from threads. ``dr`` is the
    proxy's ``AwsRegionalDr``; it must have been added before ``start()``.
    """

    def __init__(
        self,
        *,
        proxy: AwsFaultProxy,
        dr: AwsRegionalDr,
        fleet: SimulatorFleet,
        zone_id: str,
        dns_server: tuple[str, int],
        search_host: str,
        search_port: int,
        search_dns: tuple[str, int] | None,
        search_clusters: tuple[str, str],
        workdir: Path,
    ) -> None:
        """`search_host`/`search_port`/`search_dns`: how Magento reaches search (as the
        sandbox's own storefront does); `search_clusters`: the simulated primary and standby."""
        self.proxy = proxy
        self.dr = dr
        self.fleet = fleet
        self.zone_id = zone_id
        self.dns_server = dns_server
        self.search_host = search_host
        self.search_port = search_port
        self.search_dns = search_dns
        self.search_clusters = search_clusters
        self.workdir = workdir
        self.port = 0
        self.datastore_id = ""
        self.stacks: dict[str, RegionStack] = {}
        self.db_arns: dict[str, str] = {}
        self.health = TargetHealthOverrides()
        self._stack = AsyncExitStack()
        self._writer_cache: tuple[str | None, float] | None = None
        self._writer_lock = asyncio.Lock()
        self._session = boto3.session.Session()
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()

    # ---- where things are

    @property
    def primary(self) -> RegionStack:
        return self.stacks[PRIMARY_REGION]

    @property
    def dr_region(self) -> RegionStack:
        return self.stacks[DR_REGION]

    @property
    def www_url(self) -> str:
        """What customers type: www's name on the ALBs' shared port."""
        return f"http://{WWW_NAME.rstrip('.')}:{self.port}"

    @property
    def nameserver(self) -> str:
        return f"{self.dns_server[0]}:{self.dns_server[1]}"

    def infos(self) -> list[RegionInfo]:
        return [self.stacks[spec.region].info() for spec in SPECS]

    def aws(self, service: str, region: str) -> Any:
        """A boto3 client through the proxy, one per (service, Region); call it from a thread,
        never the loop the proxy runs on.

        One session makes them all: a session per client (as activities.aws does) reads
        the service models again each time, a few hundred ms a client.
        """
        with self._clients_lock:
            client = self._clients.get((service, region))
            if client is None:
                client = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.proxy.url,
                    config=BotoConfig(
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=20,
                    ),
                )
                self._clients[(service, region)] = client
            return client

    # ---- lifecycle

    async def start(self) -> None:
        """Create every Region's resources and processes; undo them all on failure."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        stack = self._stack
        if self.dr not in self.proxy.responders:
            raise RuntimeError("TwoRegions needs the AwsRegionalDr added to the proxy first")
        self.health.install()
        stack.callback(self.health.uninstall)
        self.port = free_port_on([spec.alb_host for spec in SPECS])
        # Independent parts side by side; a TaskGroup cancels the rest if one fails.
        async with asyncio.TaskGroup() as group:
            data = group.create_task(asyncio.to_thread(self._create_data))
            tiers = group.create_task(asyncio.to_thread(self._create_app_tiers))
            apps = {spec.region: group.create_task(self._start_app(spec, stack)) for spec in SPECS}
        self.db_arns, self.datastore_id = data.result()
        await self.dr.set_replication_lag(self.db_arns[DR_REGION], DEFAULT_LAG_S)
        for spec in SPECS:
            alb = tiers.result()[spec.region]
            redis, storefront, varnish = apps[spec.region].result()
            servers = AppServers(
                spec.region, network=spec.instance_network, backend=("127.0.0.1", varnish.port)
            )
            stack.push_async_callback(servers.stop)
            standin = AlbStandIn(
                lambda region=spec.region: self.aws("elbv2", region),
                alb.target_group_arn,
                instance_address=servers.address,
                listen_host=spec.alb_host,
                listen_port=self.port,
                refresh_seconds=ALB_REFRESH_S,
            )
            await standin.start()
            stack.push_async_callback(standin.stop)
            self.stacks[spec.region] = RegionStack(
                spec=spec,
                alb=alb,
                db_cluster_arn=self.db_arns[spec.region],
                redis=redis,
                storefront=storefront,
                varnish=varnish,
                app_servers=servers,
                standin=standin,
                search_cluster=self.search_clusters[0 if spec.search_side == "primary" else 1],
            )
        for spec in SPECS:
            await self.wait_routing(spec.region, spec.desired)

    async def stop(self) -> None:
        """Stops everything that started, newest first; safe after a failed start."""
        await self._stack.aclose()
        self.stacks.clear()

    # ---- AWS (in a thread)

    def _create_data(self) -> tuple[dict[str, str], str]:
        """The global database and the global datastore; (cluster ARN per Region, datastore)."""
        rds = self.aws("rds", PRIMARY_REGION)
        rds.create_global_cluster(
            GlobalClusterIdentifier=GLOBAL_CLUSTER_ID,
            Engine=DB_ENGINE,
            EngineVersion=DB_ENGINE_VERSION,
        )
        arns: dict[str, str] = {}
        for spec in SPECS:
            # The writer cluster in the primary Region, a secondary in the DR Region.
            credentials = (
                {"MasterUsername": "magento", "MasterUserPassword": "sandbox-password"}
                if spec.role == "primary"
                else {}
            )
            cluster = self.aws("rds", spec.region).create_db_cluster(
                DBClusterIdentifier=spec.db_cluster_id,
                Engine=DB_ENGINE,
                EngineVersion=DB_ENGINE_VERSION,
                GlobalClusterIdentifier=GLOBAL_CLUSTER_ID,
                **credentials,
            )
            arns[spec.region] = cluster["DBCluster"]["DBClusterArn"]
        return arns, self._create_datastore()

    def _create_datastore(self) -> str:
        """The primary's cache group founds the datastore, the DR group joins it once it is
        primary-only; returns its id once it is available."""
        primary, secondary = SPECS
        east = self.aws("elasticache", primary.region)
        east.create_replication_group(**_cache_group(primary))
        answer = east.create_global_replication_group(
            GlobalReplicationGroupIdSuffix=DATASTORE_SUFFIX,
            GlobalReplicationGroupDescription="Magento cache and sessions",
            PrimaryReplicationGroupId=primary.cache_group,
        )
        datastore_id = str(answer["GlobalReplicationGroup"]["GlobalReplicationGroupId"])
        west = self.aws("elasticache", secondary.region)

        def status() -> str:
            found = west.describe_global_replication_groups(GlobalReplicationGroupId=datastore_id)
            return str(found["GlobalReplicationGroups"][0]["Status"])

        wait_until(lambda: status() == "primary-only", "the global datastore", READY_TIMEOUT_S)
        west.create_replication_group(
            **_cache_group(secondary), GlobalReplicationGroupId=datastore_id
        )
        wait_until(lambda: status() == "available", "the DR cache to join", READY_TIMEOUT_S)
        return datastore_id

    def _create_app_tiers(self) -> dict[str, AlbResources]:
        """Each Region's app tier, then the names customers and checks reach them by."""
        albs = {spec.region: self._create_app_tier(spec) for spec in SPECS}
        self._create_records()
        return albs

    def _create_app_tier(self, spec: RegionSpec) -> AlbResources:
        """VPC, ALB, instance target group, launch template, and the ASG attached to it."""
        ec2, elbv2 = self.aws("ec2", spec.region), self.aws("elbv2", spec.region)
        alb = create_app_alb(
            ec2,
            elbv2,
            name=f"magento-{spec.region}",
            port=self.port,
            target_type="instance",
            vpc_cidr=spec.vpc_cidr,
            health_check_path=HEALTH_CHECK_PATH,
        )
        # An ALB is "provisioning" until described once (moto's way of becoming active).
        elbv2.describe_load_balancers(LoadBalancerArns=[alb.load_balancer_arn])
        ec2.create_launch_template(
            LaunchTemplateName="magento-web",
            LaunchTemplateData={"ImageId": APP_IMAGE_ID, "InstanceType": APP_INSTANCE_TYPE},
        )
        self.aws("autoscaling", spec.region).create_auto_scaling_group(
            AutoScalingGroupName=spec.asg_name,
            LaunchTemplate={"LaunchTemplateName": "magento-web", "Version": "$Latest"},
            MinSize=spec.desired,
            MaxSize=ASG_MAX_SIZE,
            DesiredCapacity=spec.desired,
            VPCZoneIdentifier=",".join(alb.subnet_ids),
            TargetGroupARNs=[alb.target_group_arn],
            HealthCheckType="ELB",
            HealthCheckGracePeriod=60,
        )
        return alb

    def _create_records(self) -> None:
        """An A record per ALB, and www on the primary's (TTL 1: customers follow fast)."""
        changes = [_upsert(spec.alb_name + ".", "A", 60, spec.alb_host) for spec in SPECS]
        changes.append(_upsert(WWW_NAME, "CNAME", 1, SPECS[0].alb_name))
        self.aws("route53", PRIMARY_REGION).change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Comment": "sandbox storefront", "Changes": changes},
        )

    # ---- processes

    async def _start_app(
        self, spec: RegionSpec, stack: AsyncExitStack
    ) -> tuple[RedisServer, Storefront, VarnishServer]:
        """The Region's Redis, storefront stand-in and Varnish, as the sandbox starts its own."""
        workdir = self.workdir / spec.region
        redis = RedisServer(workdir=workdir / "redis")
        await asyncio.to_thread(redis.start)
        stack.callback(redis.stop)
        storefront = Storefront(
            StorefrontSettings(
                search_host=self.search_host,
                search_port=self.search_port,
                redis_url=redis.url,
                dns_server=self.search_dns,
                database=self.database_probe(spec.region),
                region=spec.region,
            )
        )
        await storefront.start()
        stack.push_async_callback(storefront.stop)
        varnish = VarnishServer(
            backend_host="127.0.0.1", backend_port=storefront.port, workdir=workdir / "varnish"
        )
        await asyncio.to_thread(varnish.start)
        stack.callback(varnish.stop)
        await varnish.wait_backend_healthy()
        return redis, storefront, varnish

    # ---- the database as each Region's app servers see it

    def database_probe(self, region: str) -> DatabaseProbe:
        """Reachable unless the Region is impaired; writable only where the writer is."""

        async def probe() -> DatabaseState:
            if region in self.dr.impaired_regions:
                return DatabaseState(reachable=False, writer=False)
            mine = self.db_arns.get(region)
            if mine is None:  # still being created: no writer yet
                return DatabaseState(reachable=True, writer=False)
            return DatabaseState(reachable=True, writer=mine == await self.writer())

        return probe

    async def writer(self) -> str | None:
        """The global cluster's writer ARN, asked of the responder at most every 0.25 s."""
        cached = self._writer_cache
        if cached is not None and time.monotonic() - cached[1] < WRITER_CACHE_S:
            return cached[0]
        async with self._writer_lock:
            cached = self._writer_cache
            if cached is not None and time.monotonic() - cached[1] < WRITER_CACHE_S:
                return cached[0]
            writer = await self.dr.writer(GLOBAL_CLUSTER_ID)
            self._writer_cache = (writer, time.monotonic())
            return writer

    # ---- controls

    async def impair_primary_region(self) -> None:
        """A Region outage: app servers refuse connections, targets fail their health checks,
        the search cluster goes down, the Aurora writer there can't be reached."""
        primary = self.primary
        self.dr.impair_region(PRIMARY_REGION)
        for instance in primary.app_servers.addresses():
            self.health.set(primary.alb.target_group_arn, instance, self.port, "unhealthy")
        # Instances launched meanwhile fail their health checks too.
        self.dr.set_never_healthy(PRIMARY_REGION, primary.spec.asg_name)
        await primary.app_servers.refuse()
        cluster = self.fleet.clusters[primary.search_cluster]
        cluster.set_fault(None, NodeFault(FaultMode.DOWN))
        await cluster.settle()
        self._writer_cache = None
        log.info("%s impaired", PRIMARY_REGION)

    async def restore_primary_region(self) -> None:
        """Undo impair_primary_region, and wait until the Region serves through its ALB."""
        primary = self.primary
        cluster = self.fleet.clusters[primary.search_cluster]
        cluster.set_fault(None, NodeFault(FaultMode.HEALTHY))
        await cluster.settle()
        self.dr.restore_region(PRIMARY_REGION)
        self._writer_cache = None
        self.dr.set_never_healthy(PRIMARY_REGION, primary.spec.asg_name, False)
        self.health.clear()
        await primary.app_servers.accept()
        await self.wait_healthy(PRIMARY_REGION)
        log.info("%s restored", PRIMARY_REGION)

    async def wait_healthy(self, region: str, timeout_s: float = HEAL_TIMEOUT_S) -> None:
        """Until the Region's ALB answers /health_check.php with 200 (Varnish's probe may
        need a few rounds after a long outage)."""
        url = self.stacks[region].alb_url + HEALTH_CHECK_PATH
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{region} did not turn healthy within {timeout_s}s")
                await asyncio.sleep(0.1)

    async def wait_routing(
        self, region: str, count: int, timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        """Until the Region's ALB routes to `count` healthy targets."""
        standin = self.stacks[region].standin
        deadline = time.monotonic() + timeout_s
        while not (len(standin.routable_targets()) == count and not standin.fail_open):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{region}'s ALB routes to {standin.routable_targets()}, not {count} "
                    f"healthy targets, after {timeout_s}s"
                )
            await asyncio.sleep(0.05)

    @property
    def primary_impaired(self) -> bool:
        return PRIMARY_REGION in self.dr.impaired_regions


def _upsert(name: str, rtype: str, ttl: int, value: str) -> dict[str, Any]:
    return {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": rtype,
            "TTL": ttl,
            "ResourceRecords": [{"Value": value}],
        },
    }


def _cache_group(spec: RegionSpec) -> dict[str, Any]:
    return {
        "ReplicationGroupId": spec.cache_group,
        "ReplicationGroupDescription": "Magento cache and sessions",
        "Engine": "redis",
        "CacheNodeType": "cache.r6g.large",
        "NumCacheClusters": 2,
        "AutomaticFailoverEnabled": True,
        "MultiAZEnabled": True,
    }


# --------------------------------------------------------------------------- config


def _region_site(info: RegionInfo, capacity: int) -> dict[str, Any]:
    redis_port = int(info.redis_url.rsplit(":", 1)[1].split("/")[0])
    return {
        "region": info.region,
        "load_balancer_arn": info.load_balancer_arn,
        "target_group_arn": info.target_group_arn,
        "url": info.alb_url,
        "auto_scaling_group": info.auto_scaling_group,
        "capacity": capacity,
        "database_cluster_arn": info.db_cluster_arn,
        "cache_replication_group": info.cache_replication_group,
        "caches": [
            {
                "type": "redis",
                "name": f"redis-{info.region}",
                "host": "127.0.0.1",
                "port": redis_port,
                "db": 0,
                "page_cache_db": PAGE_CACHE_DB,
            },
            {"type": "varnish", "name": f"varnish-{info.region}", "servers": [info.varnish_url]},
        ],
        "search_side": info.search_side,
    }


def storefront_config(
    regions: list[RegionInfo],
    *,
    zone_id: str,
    www_url: str,
    nameserver: str,
    datastore_id: str,
    search_cluster: str,
    vantage_points: list[str],
    capacity: int = REGION_CAPACITY,
) -> dict[str, Any]:
    """The `storefronts:` entry for the sandbox's shop, with sandbox-fast timings; the
    primary Region is found down from the worker's queue and the probe workers', quorum 2."""
    by_role = {info.role: info for info in regions}
    primary, dr = by_role["primary"], by_role["dr"]
    return {
        "name": STOREFRONT_NAME,
        "primary": _region_site(primary, capacity),
        "dr": _region_site(dr, capacity),
        "www": {
            "type": "route53",
            "hosted_zone_id": zone_id,
            "record_name": WWW_NAME,
            "record_type": "CNAME",
            "ttl": 1,
            "primary_value": primary.alb_name,
            "standby_value": dr.alb_name,
            "insync_timeout_seconds": 30,
            "insync_poll_seconds": 0.2,
        },
        "database": {
            "global_cluster_id": GLOBAL_CLUSTER_ID,
            "max_lag_seconds": 5,
            "switch_timeout_seconds": 30,
            "poll_seconds": 0.2,
        },
        "cache_datastore": {
            "global_replication_group_id": datastore_id,
            "switch_timeout_seconds": 30,
            "poll_seconds": 0.2,
        },
        "search_cluster": search_cluster,
        "checks": {"url": www_url, "nameserver": nameserver, "timeout_seconds": 2.0},
        "confirm": {
            "rounds": 2,
            "interval_seconds": 0.5,
            "timeout_seconds": 1.0,
            "vantage_points": vantage_points,
            "quorum": 2 if len(vantage_points) >= 2 else None,
        },
        "scale_timeout_seconds": 30,
        "scale_poll_seconds": 0.2,
        "verify_attempts": 6,
        "verify_interval_seconds": 0.5,
    }
