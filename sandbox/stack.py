"""The embedded local stack: Temporal dev server, moto, two simulated search clusters, a worker.

Everything listens on loopback and starts in about a second, so the demo and the tests
exercise real processes and real protocols without Docker or an AWS account.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml
from moto.server import ThreadedMotoServer
from temporalio.client import Client

from failover.client.temporal import EmbeddedTemporalServer, TemporalEndpoint, connect
from failover.config import AppConfig, AwsSettings, parse_config
from sandbox.aws_dr import AwsRegionalDr
from sandbox.aws_fault_proxy import AwsFaultProxy
from sandbox.dns_server import Route53DnsServer
from sandbox.info import INFO_FILE, SANDBOX_AWS_ENV, Mode, SandboxInfo
from sandbox.net import free_port, free_port_on
from sandbox.nlb import NlbStandIn, create_search_nlb
from sandbox.regions import (
    GLOBAL_CLUSTER_ID,
    TwoRegions,
    region_responder,
    storefront_config,
)
from sandbox.search_sim import SimulatedCluster, SimulatorFleet
from sandbox.services import RedisServer, VarnishServer
from sandbox.storefront import SearchUnavailableError, Storefront, StorefrontSettings
from sandbox.waiting import wait_for

SANDBOX_CLUSTER = "catalog-search"
ZONE_NAME = "shop.internal."
RECORD_NAME = "search.shop.internal."
PRIMARY_VALUE = "es-primary.shop.internal"
STANDBY_VALUE = "es-standby.shop.internal"
PRIMARY_SIM = "es-primary"
# Each node on its own loopback address and one shared port: DNS answers carry no ports.
PRIMARY_HOSTS = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
STANDBY_HOSTS = ["127.0.2.1", "127.0.2.2", "127.0.2.3"]
NLB_HOST = "127.0.3.1"
STANDBY_SIM = "es-standby"
MAGENTO_STORES = (1, 2)
# Followers fetch their leader's operations this often: a shop's writes show as a small lag.
FOLLOWER_READ_INTERVAL_S = 0.5
TASK_QUEUE = "search-failover"
# Two probe workers beside the main worker, as if in other AZs: three vantage points, quorum
# 2. Each probes from its own loopback address, so a partition can cut off one of them.
VANTAGE_WORKERS = {
    f"{TASK_QUEUE}-vantage-b": "127.0.4.2",
    f"{TASK_QUEUE}-vantage-c": "127.0.4.3",
}
CONFIG_FILE = "config.yaml"
# Fast confirmation (probe.fast_confirm_interval_seconds, probe.min_outage_seconds): a side
# every node of which refuses connections is probed every 0.2 s and is down after 1 s of
# nothing but refusals, instead of after failure_threshold rounds. Only at a probe interval
# longer than 0.2 s (where it is faster; the config refuses it otherwise).
FAST_CONFIRM_INTERVAL_S = 0.2
MIN_OUTAGE_S = 1.0


def fast_confirmation(probe_interval: float) -> dict[str, float]:
    """The probe settings that turn fast confirmation on, where it fits the interval."""
    if probe_interval <= FAST_CONFIRM_INTERVAL_S:
        return {}
    return {
        "fast_confirm_interval_seconds": FAST_CONFIRM_INTERVAL_S,
        "min_outage_seconds": MIN_OUTAGE_S,
    }


def route53_switch(zone_id: str, *, ttl: int = 1) -> dict[str, Any]:
    """The search CNAME; the sandbox's TTL is short so the storefront follows the switch fast."""
    return {
        "type": "route53",
        "hosted_zone_id": zone_id,
        "record_name": RECORD_NAME,
        "record_type": "CNAME",
        "ttl": ttl,
        "primary_value": PRIMARY_VALUE,
        "standby_value": STANDBY_VALUE,
        "insync_poll_seconds": 0.5,
    }


def nlb_switch(
    target_group_arn: str, primary: list[tuple[str, int]], standby: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "type": "nlb",
        "target_group_arn": target_group_arn,
        "primary_targets": [{"id": ip, "port": port} for ip, port in primary],
        "standby_targets": [{"id": ip, "port": port} for ip, port in standby],
        "healthy_timeout_seconds": 5,
        "poll_seconds": 0.2,
        "drain_timeout_seconds": 5,
    }


def sandbox_config(
    *,
    aws_endpoint: str,
    switch: dict[str, Any],
    primary_nodes: list[str],
    standby_nodes: list[str],
    caches: list[dict[str, Any]] | None = None,
    verify: dict[str, Any] | None = None,
    probe_interval: float = 0.5,
    replication: bool = False,
    magento: bool = True,
    fast_confirm: bool = False,
) -> dict[str, Any]:
    """The config file a user would write for this stack, with sandbox-fast probe timings
    (and, with `fast_confirm`, fast confirmation where it fits the interval).

    Magento's two store aliases are checked on both sides; with `replication` the standby's
    indices follow the primary's (the OpenSearch replication plugin) and a failover
    promotes them."""
    cluster: dict[str, Any] = {
        "name": SANDBOX_CLUSTER,
        "primary": {"nodes": primary_nodes, "expected_cluster_name": PRIMARY_SIM},
        "standby": {"nodes": standby_nodes, "expected_cluster_name": STANDBY_SIM},
        "probe": {
            "interval_seconds": probe_interval,
            "timeout_seconds": 1.0,
            "failure_threshold": 3,
            "verify_attempts": 6,
            "yellow_policy": "degraded",
        }
        | (fast_confirmation(probe_interval) if fast_confirm else {}),
        "monitor": {"vantage_points": [TASK_QUEUE, *VANTAGE_WORKERS], "quorum": 2},
        "switch": switch,
    }
    if caches:
        cluster["caches"] = caches
    if verify:
        cluster["verify"] = verify
    if magento or replication:
        cluster["magento"] = {
            "index_prefix": "magento2",
            "stores": list(MAGENTO_STORES),
            "check_every_seconds": 1.0,
        }
    if replication:
        cluster["replication"] = {
            "kind": "opensearch",
            "primary_connection": PRIMARY_SIM,
            "standby_connection": STANDBY_SIM,
            "max_lag_operations": 100,
            "max_lag_seconds": 5,
            "poll_seconds": 0.2,
            "sync_timeout_seconds": 120,
        }
    return {
        "aws": {"region": "us-east-1", "endpoint_url": aws_endpoint},
        "task_queue": TASK_QUEUE,
        "clusters": [cluster],
    }


APP_TAG = ("Role", "magento-app")


def create_app_instances(ec2: Any, count: int = 2) -> list[str]:
    """The Magento app servers, for the SSM cache:flush; one untagged box is not one of them."""
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tagged = ec2.run_instances(
        ImageId=image,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": APP_TAG[0], "Value": APP_TAG[1]}]}
        ],
    )
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)
    return sorted(i["InstanceId"] for i in tagged["Instances"])


def _upsert(name: str, rtype: str, ttl: int, values: list[str]) -> dict[str, Any]:
    return {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": rtype,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        },
    }


def create_zone_and_records(
    route53: Any, *, primary_ips: list[str], standby_ips: list[str], ttl: int = 1
) -> str:
    """The zone Magento's search name lives in: the CNAME on the primary, each cluster's
    nodes as A records. Returns the zone id."""
    zone = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference=f"sandbox-{uuid.uuid4()}")
    zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
    changes = [
        _upsert(RECORD_NAME, "CNAME", ttl, [PRIMARY_VALUE]),
        _upsert(PRIMARY_VALUE + ".", "A", 60, primary_ips),
        _upsert(STANDBY_VALUE + ".", "A", 60, standby_ips),
    ]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return zone_id


async def _wait_storefront_searches(storefront: Storefront) -> None:
    """Until the storefront's first search has gone through DNS to the cluster, uncached.

    The first search pays for every cold path at once (the DNS server's first Route 53 read,
    the storefront's connection pool); on a busy machine it can miss the storefront's search
    timeout, and Magento caches the category page it rendered empty, so the shop would start
    broken and a drill's steady state would rightly refuse it.
    """

    async def searches() -> bool:
        try:
            return (await storefront.search(None, size=1)).total > 0
        except SearchUnavailableError:
            return False

    await wait_for(searches, what="the storefront's first search to return products", timeout_s=30)


class Sandbox:
    """Starts and stops the whole local stack in this process.

    The customer's path is real: the storefront (Magento stand-in) reaches search through
    the sandbox DNS server (Route 53 mode) or the NLB stand-in (NLB mode), caches pages in
    a real Redis, and sits behind a real Varnish with Magento's purge rules.
    """

    def __init__(
        self,
        directory: Path,
        *,
        mode: Mode = "dns",
        temporal_port: int | None = None,
        ui_port: int | None = None,
        with_worker: bool = True,
        temporal: TemporalEndpoint | None = None,
        probe_interval: float = 1.0,
        monitors: bool = True,
        replication: bool = False,
        regions: bool = False,
    ) -> None:
        """`temporal`: use that server instead of starting one (tests that restart it).

        `monitors`: the in-process worker starts a monitor per cluster, which then detects
        faults by itself. The vantage workers run either way.
        `replication`: the standby's indices follow the primary's, and failovers promote.
        `regions`: the storefront also runs in two Regions (sandbox.regions), for a Region
        switch; `self.regions` controls them.
        """
        self.replication = replication
        self.with_regions = regions
        self.regions: TwoRegions | None = None
        self.dr: AwsRegionalDr | None = None
        self.probe_interval = probe_interval
        self.monitors = monitors
        self.directory = directory
        self.temporal_endpoint = temporal
        self.mode = mode
        self.temporal_port = temporal_port or free_port()
        self.ui_port = ui_port or free_port()
        self.with_worker = with_worker
        self.fleet: SimulatorFleet | None = None
        self.client: Client | None = None
        self.config: AppConfig | None = None
        self.info: SandboxInfo | None = None
        self.storefront_url: str = ""
        self._stack = AsyncExitStack()

    async def start(self) -> SandboxInfo:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> SandboxInfo:
        from activities.aws import aws_client_factory
        from failover.client.operations import ensure_monitors
        from worker import build_vantage_worker, build_worker

        for key, value in SANDBOX_AWS_ENV.items():
            os.environ.setdefault(key, value)
        self.directory.mkdir(parents=True, exist_ok=True)
        stack = self._stack

        # moto's werkzeug logs every request at INFO; the stack's own output says enough.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        aws_endpoint = f"http://{host}:{port}"
        # moto keeps its AWS in module state, shared by every server in this process: a
        # second sandbox in one process (a test run) would find the first one's resources.
        async with httpx.AsyncClient() as http:
            (await http.post(f"{aws_endpoint}/moto-api/reset")).raise_for_status()
        direct = AwsSettings(endpoint_url=aws_endpoint)
        # The worker reaches moto through the fault proxy, so tests (and curious users)
        # can make AWS throttle, fail, or answer PENDING; its control API is /__faults__.
        self.aws_proxy = AwsFaultProxy(aws_endpoint)
        await self.aws_proxy.start()
        stack.push_async_callback(self.aws_proxy.stop)
        if self.with_regions:
            # Before anything is created, so it sees every Auto Scaling instance launch.
            self.dr = region_responder()
            await self.aws_proxy.add_responder(self.dr)
        await asyncio.to_thread(create_app_instances, aws_client_factory(direct, "ec2")())

        search_port = free_port_on([*PRIMARY_HOSTS, *STANDBY_HOSTS, NLB_HOST])
        # Both OpenSearch, as cross-cluster replication needs the same distribution on
        # both ends (Amazon OpenSearch Service's, or the replication plugin's).
        primary, standby = (
            SimulatedCluster(
                name,
                hosts=hosts,
                ports=[search_port] * 3,
                distribution="opensearch",
                stores=MAGENTO_STORES,
                follower_read_interval_s=FOLLOWER_READ_INTERVAL_S,
            )
            for name, hosts in ((PRIMARY_SIM, PRIMARY_HOSTS), (STANDBY_SIM, STANDBY_HOSTS))
        )
        self.fleet = SimulatorFleet([primary, standby])
        await self.fleet.start()
        stack.push_async_callback(self.fleet.stop)
        # Each side can reach the other as a remote connection named after it.
        standby.connect_remote(PRIMARY_SIM, primary)
        primary.connect_remote(STANDBY_SIM, standby)
        if self.replication:
            standby.follow_all(PRIMARY_SIM)

        route53_factory = aws_client_factory(direct, "route53")
        zone_id = await asyncio.to_thread(
            create_zone_and_records,
            route53_factory(),
            primary_ips=PRIMARY_HOSTS,
            standby_ips=STANDBY_HOSTS,
        )
        dns = Route53DnsServer(route53_factory, zone_ids=[zone_id])
        dns.start()
        stack.callback(dns.stop)

        if self.mode == "nlb":
            primary_targets = [(h, search_port) for h in PRIMARY_HOSTS]
            nlb = await asyncio.to_thread(
                create_search_nlb,
                aws_client_factory(direct, "ec2")(),
                aws_client_factory(direct, "elbv2")(),
                name="catalog-search",
                port=search_port,
                targets=primary_targets,
            )
            standin = NlbStandIn(
                aws_client_factory(direct, "elbv2"),
                nlb.target_group_arn,
                listen_host=NLB_HOST,
                listen_port=search_port,
            )
            await standin.start()
            stack.push_async_callback(standin.stop)
            switch = nlb_switch(
                nlb.target_group_arn, primary_targets, [(h, search_port) for h in STANDBY_HOSTS]
            )
            search_host, search_url, nameserver = NLB_HOST, f"http://{NLB_HOST}:{search_port}", None
        else:
            switch = route53_switch(zone_id)
            search_host = RECORD_NAME.rstrip(".")
            search_url = f"http://{search_host}:{search_port}"
            nameserver = f"{dns.host}:{dns.port}"

        redis = RedisServer(workdir=self.directory / "redis")
        await asyncio.to_thread(redis.start)
        stack.callback(redis.stop)
        storefront = Storefront(
            StorefrontSettings(
                search_host=search_host,
                search_port=search_port,
                redis_url=redis.url,
                dns_server=(dns.host, dns.port) if self.mode == "dns" else None,
            )
        )
        await storefront.start()
        stack.push_async_callback(storefront.stop)
        await _wait_storefront_searches(storefront)
        varnish = VarnishServer(
            backend_host="127.0.0.1",
            backend_port=storefront.port,
            workdir=self.directory / "varnish",
        )
        await asyncio.to_thread(varnish.start)
        stack.callback(varnish.stop)
        await varnish.wait_backend_healthy()
        self.storefront_url = varnish.url

        if self.dr is not None:
            self.regions = TwoRegions(
                proxy=self.aws_proxy,
                dr=self.dr,
                fleet=self.fleet,
                zone_id=zone_id,
                dns_server=(dns.host, dns.port),
                search_host=search_host,
                search_port=search_port,
                search_dns=(dns.host, dns.port) if self.mode == "dns" else None,
                search_clusters=(PRIMARY_SIM, STANDBY_SIM),
                workdir=self.directory / "regions",
            )
            await self.regions.start()
            stack.push_async_callback(self.regions.stop)

        redis_port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
        raw = sandbox_config(
            aws_endpoint=self.aws_proxy.url,
            switch=switch,
            primary_nodes=primary.node_urls,
            standby_nodes=standby.node_urls,
            caches=[
                {
                    "type": "redis",
                    "name": "magento-redis",
                    "host": "127.0.0.1",
                    "port": redis_port,
                    "db": 0,
                    "page_cache_db": 1,
                },
                {
                    "type": "ssm",
                    "name": "magento-app",
                    "tag_key": APP_TAG[0],
                    "tag_value": APP_TAG[1],
                    "poll_seconds": 0.2,
                    "timeout_seconds": 30,
                },
                {"type": "varnish", "name": "varnish", "servers": [varnish.url]},
            ],
            verify={
                "search_path": {"url": search_url, "nameserver": nameserver},
                "storefront": {"url": varnish.url},
            },
            probe_interval=self.probe_interval,
            replication=self.replication,
            fast_confirm=True,
        )
        if self.regions is not None:
            raw["storefronts"] = [
                storefront_config(
                    self.regions.infos(),
                    zone_id=zone_id,
                    www_url=self.regions.www_url,
                    nameserver=self.regions.nameserver,
                    datastore_id=self.regions.datastore_id,
                    search_cluster=SANDBOX_CLUSTER,
                    vantage_points=[TASK_QUEUE, *VANTAGE_WORKERS],
                )
            ]
        self.config = parse_config(raw, source="sandbox")
        config_path = self.directory / CONFIG_FILE
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

        if self.temporal_endpoint is not None:
            endpoint = self.temporal_endpoint
            self.client = await connect(endpoint)
        else:
            temporal = EmbeddedTemporalServer(
                self.directory, port=self.temporal_port, ui_port=self.ui_port
            )
            self.client = await temporal.start()
            stack.callback(temporal.stop)
            endpoint = temporal.endpoint
        workers = [
            build_vantage_worker(self.client, task_queue=queue, local_address=source)
            for queue, source in VANTAGE_WORKERS.items()
        ]
        if self.with_worker:
            workers.append(
                build_worker(self.client, aws=self.config.aws, task_queue=self.config.task_queue)
            )
        for worker in workers:
            await stack.enter_async_context(worker)
        if self.with_worker and self.monitors:
            await ensure_monitors(self.client, self.config)

        self.info = SandboxInfo(
            mode=self.mode,
            temporal=endpoint,
            aws_endpoint=aws_endpoint,
            aws_proxy_url=self.aws_proxy.url,
            simulator_control_url=self.fleet.control_url,
            config_path=str(config_path),
            hosted_zone_id=zone_id,
            storefront_url=varnish.url,
            dns_server=f"{dns.host}:{dns.port}",
            search_url=search_url,
            clusters={PRIMARY_SIM: primary.node_urls, STANDBY_SIM: standby.node_urls},
        )
        if self.regions is not None:
            self.info.www_url = self.regions.www_url
            self.info.regions = self.regions.infos()
            self.info.global_cluster_id = GLOBAL_CLUSTER_ID
            self.info.global_datastore_id = self.regions.datastore_id
        self.info.save(self.directory)
        stack.callback((self.directory / INFO_FILE).unlink, missing_ok=True)
        return self.info

    def read_record_values(self, name: str = RECORD_NAME) -> list[str]:
        """A CNAME's values (the search record's by default), read straight from moto (not
        through the workflow, nor the fault proxy)."""
        from activities.aws import aws_client_factory

        assert self.info is not None
        route53 = aws_client_factory(AwsSettings(endpoint_url=self.info.aws_endpoint), "route53")()
        answer = route53.list_resource_record_sets(
            HostedZoneId=self.info.hosted_zone_id,
            StartRecordName=name,
            StartRecordType="CNAME",
            MaxItems="1",
        )
        return [
            r["Value"]
            for record in answer["ResourceRecordSets"]
            if record["Name"] == name and record["Type"] == "CNAME"
            for r in record["ResourceRecords"]
        ]

    def registered_targets(self) -> list[str]:
        """The NLB target group's registered targets, read straight from moto."""
        from activities.aws import aws_client_factory

        assert self.info is not None and self.config is not None
        elbv2 = aws_client_factory(AwsSettings(endpoint_url=self.info.aws_endpoint), "elbv2")()
        switch = self.config.clusters[0].switch
        answer = elbv2.describe_target_health(TargetGroupArn=switch.target_group_arn)
        return sorted(
            f"{d['Target']['Id']}:{d['Target']['Port']}" for d in answer["TargetHealthDescriptions"]
        )

    async def stop(self) -> None:
        """Stops everything that started, newest first; safe after a failed start."""
        await self._stack.aclose()
