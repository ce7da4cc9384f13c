"""Shared fixtures: a real Temporal dev server, moto behind a fault proxy, simulated clusters.

Everything listens on loopback. The dev server gets the same fast dynamic config as the
embedded stack, so timers and activity round trips cost milliseconds, not seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from moto.server import ThreadedMotoServer
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.aws import aws_client_factory
from failover import visibility
from failover.client.temporal import FAST_DEV_SERVER_ARGS, temporal_cli_path
from failover.config import AppConfig, AwsSettings, ClusterConfig, parse_config
from sandbox.aws_fault_proxy import AwsFaultProxy
from sandbox.net import free_port_on
from sandbox.nlb import TargetHealthOverrides, create_search_nlb
from sandbox.regions import TwoRegions
from sandbox.search_sim import FaultMode, NodeFault, SimulatedCluster, SimulatorFleet
from sandbox.stack import (
    PRIMARY_HOSTS,
    PRIMARY_SIM,
    RECORD_NAME,
    SANDBOX_AWS_ENV,
    SANDBOX_CLUSTER,
    STANDBY_HOSTS,
    STANDBY_SIM,
    Sandbox,
    create_zone_and_records,
    nlb_switch,
    route53_switch,
    sandbox_config,
)
from worker import build_vantage_worker, build_worker

for _key, _value in SANDBOX_AWS_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        search_attributes=list(visibility.KEYS),
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=list(FAST_DEV_SERVER_ARGS),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest_asyncio.fixture(scope="session")
async def aws_proxy(moto_url: str) -> AsyncIterator[AwsFaultProxy]:
    proxy = AwsFaultProxy(moto_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest_asyncio.fixture(scope="session")
async def fleet() -> AsyncIterator[SimulatorFleet]:
    """Both clusters on their own loopback IPs and one port, as DNS and NLB targets need."""
    port = free_port_on(PRIMARY_HOSTS + STANDBY_HOSTS)
    primary = SimulatedCluster(PRIMARY_SIM, hosts=PRIMARY_HOSTS, ports=[port] * 3)
    standby = SimulatedCluster(
        STANDBY_SIM, hosts=STANDBY_HOSTS, ports=[port] * 3, distribution="opensearch"
    )
    fleet = SimulatorFleet([primary, standby])
    await fleet.start()
    yield fleet
    await fleet.stop()


@dataclass
class Stack:
    """One test's view of the stack: a fresh zone and record, healthy clusters, a worker."""

    client: Client
    config: AppConfig
    fleet: SimulatorFleet
    proxy: AwsFaultProxy
    moto_url: str
    zone_id: str
    task_queue: str

    @property
    def cluster(self) -> ClusterConfig:
        return self.config.clusters[0]

    async def fault(self, sim: str, mode: FaultMode, node: int | None = None) -> None:
        self.fleet.set_fault(sim, node, NodeFault(mode))
        await self.fleet.clusters[sim].settle()

    def registered_targets(self) -> dict[str, str]:
        """Target id → state, read straight from moto."""
        elbv2 = aws_client_factory(AwsSettings(endpoint_url=self.moto_url), "elbv2")()
        answer = elbv2.describe_target_health(TargetGroupArn=self.cluster.switch.target_group_arn)
        return {
            d["Target"]["Id"]: d["TargetHealth"]["State"]
            for d in answer["TargetHealthDescriptions"]
        }

    def record_values(self) -> list[str]:
        """Read straight from moto, bypassing the fault proxy."""
        route53 = aws_client_factory(AwsSettings(endpoint_url=self.moto_url), "route53")()
        answer = route53.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=RECORD_NAME, MaxItems="1"
        )
        return [
            r["Value"]
            for record in answer["ResourceRecordSets"]
            if record["Name"] == RECORD_NAME
            for r in record["ResourceRecords"]
        ]


async def _reset_moto(moto_url: str) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{moto_url}/moto-api/reset")).raise_for_status()


# Source addresses of the two extra vantage workers: a partition can cut off one of them.
VANTAGE_SOURCES = ("127.0.4.2", "127.0.4.3")


async def _make_stack(
    mode: str,
    temporal_env: WorkflowEnvironment,
    moto_url: str,
    aws_proxy: AwsFaultProxy,
    fleet: SimulatorFleet,
    *,
    monitored: bool = False,
) -> AsyncIterator[Stack]:
    await _reset_moto(moto_url)
    aws_proxy.reset()
    for name in fleet.clusters:
        fleet.clusters[name].heal()
        fleet.set_fault(name, None, NodeFault(FaultMode.HEALTHY))
        await fleet.clusters[name].settle()
    direct = AwsSettings(endpoint_url=moto_url)
    route53 = aws_client_factory(direct, "route53")()
    zone_id = await asyncio.to_thread(
        create_zone_and_records, route53, primary_ips=PRIMARY_HOSTS, standby_ips=STANDBY_HOSTS
    )
    primary_nodes = fleet.clusters[PRIMARY_SIM].node_urls
    standby_nodes = fleet.clusters[STANDBY_SIM].node_urls
    suffix = uuid.uuid4().hex[:8]
    if mode == "nlb":
        port = int(primary_nodes[0].rsplit(":", 1)[1])
        primary_targets = [(host, port) for host in PRIMARY_HOSTS]
        resources = await asyncio.to_thread(
            create_search_nlb,
            aws_client_factory(direct, "ec2")(),
            aws_client_factory(direct, "elbv2")(),
            name=f"search-{suffix}",
            port=port,
            targets=primary_targets,
        )
        switch = nlb_switch(
            resources.target_group_arn, primary_targets, [(h, port) for h in STANDBY_HOSTS]
        )
    else:
        switch = route53_switch(zone_id)
    raw: dict[str, Any] = sandbox_config(
        aws_endpoint=aws_proxy.url,
        switch=switch,
        primary_nodes=primary_nodes,
        standby_nodes=standby_nodes,
    )
    # A unique cluster name and queue per test: workflow ids never collide across tests.
    raw["task_queue"] = f"test-{suffix}"
    cluster = raw["clusters"][0]
    cluster["name"] = f"{SANDBOX_CLUSTER}-{suffix}"
    cluster["probe"].update(interval_seconds=0.1, timeout_seconds=0.5, verify_attempts=3)
    if mode == "dns":
        cluster["switch"]["insync_poll_seconds"] = 0.1
    vantage_queues = [f"{raw['task_queue']}-vantage-{n}" for n in ("b", "c")]
    del cluster["monitor"]  # the sandbox's vantage queues are not this test's
    if monitored:
        # Three vantage points: this worker's queue and two probe workers, quorum 2.
        cluster["probe"].update(interval_seconds=0.2, timeout_seconds=0.5)
        cluster["monitor"] = {
            "vantage_points": [raw["task_queue"], *vantage_queues],
            "quorum": 2,
            "cooldown_seconds": 600,
        }
    config = parse_config(raw)
    workers = [build_worker(temporal_env.client, aws=config.aws, task_queue=config.task_queue)]
    if monitored:
        workers += [
            build_vantage_worker(temporal_env.client, task_queue=queue, local_address=source)
            for queue, source in zip(vantage_queues, VANTAGE_SOURCES, strict=True)
        ]
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        yield Stack(
            client=temporal_env.client,
            config=config,
            fleet=fleet,
            proxy=aws_proxy,
            moto_url=moto_url,
            zone_id=zone_id,
            task_queue=config.task_queue,
        )


@pytest_asyncio.fixture
async def stack(
    temporal_env: WorkflowEnvironment,
    moto_url: str,
    aws_proxy: AwsFaultProxy,
    fleet: SimulatorFleet,
) -> AsyncIterator[Stack]:
    """Route 53 mode."""
    async for made in _make_stack("dns", temporal_env, moto_url, aws_proxy, fleet):
        yield made


@pytest_asyncio.fixture
async def nlb_stack(
    temporal_env: WorkflowEnvironment,
    moto_url: str,
    aws_proxy: AwsFaultProxy,
    fleet: SimulatorFleet,
) -> AsyncIterator[Stack]:
    """NLB mode: the target group starts with the primary's nodes registered."""
    async for made in _make_stack("nlb", temporal_env, moto_url, aws_proxy, fleet):
        yield made


@pytest_asyncio.fixture
async def monitor_stack(
    temporal_env: WorkflowEnvironment,
    moto_url: str,
    aws_proxy: AwsFaultProxy,
    fleet: SimulatorFleet,
) -> AsyncIterator[Stack]:
    """Route 53 mode with three vantage workers (quorum 2); the test starts the monitor."""
    async for made in _make_stack("dns", temporal_env, moto_url, aws_proxy, fleet, monitored=True):
        yield made


@pytest.fixture
def target_health() -> Iterator[TargetHealthOverrides]:
    """Makes moto report chosen targets unhealthy, as it never does by itself."""
    with TargetHealthOverrides() as overrides:
        yield overrides


# --- the two-Region sandbox (a Region switch's tests) -----------------------------------------


@pytest_asyncio.fixture(scope="module")
async def region_sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    """One two-Region sandbox per module that asks for it; its monitors off."""
    stack = Sandbox(tmp_path_factory.mktemp("regions"), regions=True, monitors=False)
    await stack.start()
    yield stack
    await stack.stop()


@pytest.fixture(scope="module")
def regions(region_sandbox: Sandbox) -> TwoRegions:
    assert region_sandbox.regions is not None
    return region_sandbox.regions


@pytest.fixture(scope="module")
def region_aws(regions: TwoRegions) -> Callable[[str, str], Any]:
    """boto3 clients through the fault proxy, one per (service, Region), as activities
    make them; call from a thread."""
    return regions.aws
