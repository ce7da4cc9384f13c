"""The Region switch's activities against AWS as the sandbox answers it, and the storefront.

A real moto server behind the fault proxy with ``AwsRegionalDr`` stands in for two Regions
(us-east-1, us-west-2): Auto Scaling instances launch Pending and turn InService, targets go
initial then healthy, the Aurora global database switches over and fails over with a
FailoverState, the ElastiCache global datastore fails over while "modifying". The activities
get their clients from ``region_clients``, as the worker builds them. The storefront checks
run against the Magento stand-in in two Regions, one of which writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from moto.server import ThreadedMotoServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import aws_client_factory
from activities.caches import CacheActivities
from activities.region import Clients, RegionActivities, region_clients
from activities.verify import VerifyActivities
from failover import names
from failover.config import AwsSettings, SsmCache, StorefrontCheck
from failover.models import (
    AppHealthRequest,
    AppTierRequest,
    CacheDatastoreRequest,
    CartRequest,
    DatabaseRequest,
    FailoverCacheRequest,
    FlushRequest,
    ScaleRequest,
    StorefrontRequest,
    SwitchDatabaseRequest,
    WaitCacheRequest,
    WaitCapacityRequest,
    WaitDatabaseRequest,
)
from sandbox.alb import create_app_alb
from sandbox.aws_dr import AwsRegionalDr
from sandbox.aws_fault_proxy import AwsFaultProxy
from sandbox.dns_server import Route53DnsServer
from sandbox.net import free_port
from sandbox.services import RedisServer
from sandbox.storefront import (
    DB_READ_ONLY,
    DatabaseState,
    Storefront,
    StorefrontSettings,
)
from sandbox.waiting import wait_for

EAST, WEST = "us-east-1", "us-west-2"
ENGINE, VERSION = "aurora-mysql", "8.0.mysql_aurora.3.05.2"
GROUP = "magento-web"
FAST = {
    "global_cluster_pending_s": 0.3,
    "global_cluster_promotion_s": 0.7,
    "global_datastore_change_s": 0.7,
    "instance_launch_s": 1.0,
    "target_deregistration_s": 1.0,
    "lag_publish_interval_s": 60.0,
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest_asyncio.fixture(scope="module")
async def proxy(moto_server_url: str) -> AsyncIterator[AwsFaultProxy]:
    running = AwsFaultProxy(moto_server_url)
    await running.add_responder(AwsRegionalDr())
    async with running:
        yield running


@pytest.fixture(scope="module")
def dr(proxy: AwsFaultProxy) -> AwsRegionalDr:
    return next(r for r in proxy.responders if isinstance(r, AwsRegionalDr))


@pytest.fixture(scope="module")
def clients(proxy: AwsFaultProxy) -> Clients:
    return region_clients(AwsSettings(endpoint_url=proxy.url))


@pytest.fixture(scope="module")
def acts(clients: Clients) -> RegionActivities:
    return RegionActivities(clients)


@pytest_asyncio.fixture(autouse=True)
async def clean_slate(proxy: AwsFaultProxy, dr: AwsRegionalDr) -> AsyncIterator[None]:
    proxy.reset()
    reset = await asyncio.to_thread(httpx.post, f"{proxy.url}/moto-api/reset", timeout=10)
    assert reset.status_code == 200
    dr.set_timing(**FAST)
    yield
    errors = [*proxy.hook_errors, *proxy.responder_errors]
    proxy.hook_errors, proxy.responder_errors = [], []
    assert not errors, f"hooks or responders failed: {errors!r}"


@dataclasses.dataclass
class Env:
    """An ActivityEnvironment whose activity was first scheduled `age` ago, and its beats."""

    env: ActivityEnvironment
    beats: list[Any]


def activity_env(activity_type: str, *, age: timedelta = timedelta(0)) -> Env:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        activity_type=activity_type,
        scheduled_time=datetime.now(UTC) - age,
        heartbeat_timeout=timedelta(seconds=5),
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0] if details else None)
    return Env(env, beats)


async def call(client: Any, method: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(getattr(client, method), **kwargs)


async def refused(run: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run
    return caught.value


# --------------------------------------------------------------------------- the app tier


async def create_app_tier(
    clients: Clients, region: str = WEST, *, desired: int = 0, max_size: int = 4
) -> AppTierRequest:
    """An ALB, its instance target group and the web Auto Scaling group attached to it."""
    ec2 = clients("ec2", region)
    alb = await asyncio.to_thread(
        create_app_alb, ec2, clients("elbv2", region), name=GROUP, port=80, target_type="instance"
    )
    await call(
        ec2,
        "create_launch_template",
        LaunchTemplateName=GROUP,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"},
    )
    await call(
        clients("autoscaling", region),
        "create_auto_scaling_group",
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": GROUP, "Version": "$Latest"},
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(alb.subnet_ids),
        TargetGroupARNs=[alb.target_group_arn],
        HealthCheckType="ELB",
    )
    return AppTierRequest(
        region=region,
        load_balancer_arn=alb.load_balancer_arn,
        target_group_arn=alb.target_group_arn,
        auto_scaling_group=GROUP,
    )


async def test_read_app_tier_counts_in_service_instances_and_healthy_targets(
    acts: RegionActivities, clients: Clients
) -> None:
    tier = await create_app_tier(clients, desired=2)

    launching = await acts.read_app_tier(tier)
    ready = None

    async def both_ready() -> bool:
        nonlocal ready
        ready = await acts.read_app_tier(tier)
        return ready.in_service == 2 and ready.healthy_targets == 2

    await wait_for(both_ready, what="both instances InService and healthy", timeout_s=10)

    assert launching.group_found
    assert launching.load_balancer_state in ("provisioning", "active")
    assert (launching.desired_capacity, launching.min_size, launching.max_size) == (2, 0, 4)
    assert (launching.in_service, launching.healthy_targets) == (0, 0)  # Pending, initial
    assert launching.scaling_problems == []
    assert ready is not None and ready.region == WEST


async def test_read_app_tier_of_missing_resources_says_so(
    acts: RegionActivities, clients: Clients
) -> None:
    tier = await create_app_tier(clients, desired=0)
    stray = (
        "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/gone/0123456789abcdef"
    )

    state = await acts.read_app_tier(
        tier.model_copy(update={"auto_scaling_group": "nope", "load_balancer_arn": stray})
    )

    assert state.load_balancer_state is None
    assert not state.group_found
    assert (state.in_service, state.healthy_targets) == (0, 0)


async def test_scale_then_wait_capacity_is_ready(acts: RegionActivities, clients: Clients) -> None:
    tier = await create_app_tier(clients, desired=0, max_size=1)

    scaled = await acts.scale_app_tier(ScaleRequest(tier=tier, desired_capacity=2, min_size=2))
    again = await acts.scale_app_tier(ScaleRequest(tier=tier, desired_capacity=2, min_size=2))
    env = activity_env(names.WAIT_CAPACITY_ACTIVITY)
    result = await env.env.run(
        acts.wait_capacity,
        WaitCapacityRequest(tier=tier, capacity=2, timeout_seconds=15, poll_seconds=0.2),
    )

    assert scaled.changed and not again.changed
    assert (again.desired_capacity, again.min_size) == (2, 2)
    assert result.ready
    assert (result.state.in_service, result.state.healthy_targets) == (2, 2)
    assert result.state.max_size == 2  # raised: it was below the capacity asked for
    assert result.polls >= 2  # the first poll saw the instances Pending
    seen = [b["state"]["in_service"] for b in env.beats if isinstance(b, dict) and b["state"]]
    assert seen[0] == 0 and seen[-1] == 2
    assert all(b["deadline"] for b in env.beats)


async def test_never_healthy_instances_end_the_wait_not_ready_at_its_deadline(
    acts: RegionActivities, clients: Clients, dr: AwsRegionalDr
) -> None:
    tier = await create_app_tier(clients, desired=0)
    dr.set_never_healthy(WEST, GROUP)
    await acts.scale_app_tier(ScaleRequest(tier=tier, desired_capacity=1, min_size=1))
    started = time.monotonic()

    result = await activity_env(names.WAIT_CAPACITY_ACTIVITY).env.run(
        acts.wait_capacity,
        WaitCapacityRequest(tier=tier, capacity=1, timeout_seconds=2.5, poll_seconds=0.3),
    )

    elapsed = time.monotonic() - started
    assert not result.ready
    assert (result.state.in_service, result.state.healthy_targets) == (1, 0)
    assert 2.3 <= elapsed < 5


async def test_a_retried_wait_keeps_the_first_attempts_deadline(
    acts: RegionActivities, clients: Clients
) -> None:
    tier = await create_app_tier(clients, desired=0)
    # Scheduled a minute ago with 30 s to wait: a retry after a crash polls once and reports.
    env = activity_env(names.WAIT_CAPACITY_ACTIVITY, age=timedelta(seconds=60))
    env.env.info = dataclasses.replace(env.env.info, attempt=2)

    result = await env.env.run(
        acts.wait_capacity,
        WaitCapacityRequest(tier=tier, capacity=1, timeout_seconds=30, poll_seconds=5),
    )

    assert not result.ready
    assert result.polls == 1


async def test_no_capacity_is_named_in_scaling_problems(
    acts: RegionActivities, clients: Clients, dr: AwsRegionalDr
) -> None:
    tier = await create_app_tier(clients, desired=0)
    await dr.set_no_capacity(WEST, GROUP)

    await acts.scale_app_tier(ScaleRequest(tier=tier, desired_capacity=2, min_size=2))
    state = await acts.read_app_tier(tier)

    assert (state.desired_capacity, state.in_service) == (2, 0)
    assert len(state.scaling_problems) == 1
    assert state.scaling_problems[0].startswith(
        "We currently do not have sufficient capacity in the Availability Zone you requested"
    )


async def test_scale_of_a_missing_group_is_not_retried(
    acts: RegionActivities, clients: Clients
) -> None:
    tier = await create_app_tier(clients, desired=0)

    error = await refused(
        acts.scale_app_tier(
            ScaleRequest(
                tier=tier.model_copy(update={"auto_scaling_group": "nope"}),
                desired_capacity=1,
                min_size=1,
            )
        )
    )

    assert error.non_retryable
    assert "nope" in error.message and WEST in error.message


# --------------------------------------------------------------------------- the global database


async def create_global_database(clients: Clients, name: str = "shop") -> tuple[str, str]:
    """A global cluster with its writer in us-east-1 and a secondary in us-west-2."""
    await call(
        clients("rds", EAST),
        "create_global_cluster",
        GlobalClusterIdentifier=f"{name}-global",
        Engine=ENGINE,
        EngineVersion=VERSION,
    )
    arns = []
    for region, suffix in ((EAST, "east"), (WEST, "west")):
        extra = {"MasterUsername": "magento", "MasterUserPassword": "sandbox-password"}
        created = await call(
            clients("rds", region),
            "create_db_cluster",
            DBClusterIdentifier=f"{name}-{suffix}",
            Engine=ENGINE,
            EngineVersion=VERSION,
            GlobalClusterIdentifier=f"{name}-global",
            **(extra if region == EAST else {}),
        )
        arns.append(created["DBCluster"]["DBClusterArn"])
    return arns[0], arns[1]


def switch(target: str, mode: str) -> SwitchDatabaseRequest:
    return SwitchDatabaseRequest(
        global_cluster_id="shop-global", region=WEST, target_arn=target, mode=mode
    )


def wait_writer(target: str, timeout: float = 10) -> WaitDatabaseRequest:
    return WaitDatabaseRequest(
        global_cluster_id="shop-global",
        region=WEST,
        target_arn=target,
        timeout_seconds=timeout,
        poll_seconds=0.1,
    )


async def test_read_database_shows_the_writer_and_the_secondarys_lag(
    acts: RegionActivities, clients: Clients, dr: AwsRegionalDr
) -> None:
    east_arn, west_arn = await create_global_database(clients)
    await dr.set_replication_lag(west_arn, 2.5)

    state = await acts.read_database(DatabaseRequest(global_cluster_id="shop-global", region=WEST))

    assert state.writer == east_arn
    assert state.failover_status is None
    west, east = state.member(west_arn), state.member(east_arn)
    assert west is not None and east is not None
    assert (west.region, west.is_writer, west.lag_seconds) == (WEST, False, 2.5)
    assert (east.region, east.is_writer, east.lag_seconds) == (EAST, True, None)


async def test_graceful_switch_moves_the_writer_and_repeats_as_already(
    acts: RegionActivities, clients: Clients, dr: AwsRegionalDr
) -> None:
    east_arn, west_arn = await create_global_database(clients)
    await dr.set_replication_lag(west_arn, 0.4)

    started = await acts.switch_database(switch(west_arn, "graceful"))
    repeated = await acts.switch_database(switch(west_arn, "graceful"))  # a retry mid-switch
    env = activity_env(names.WAIT_DATABASE_ACTIVITY)
    done = await env.env.run(acts.wait_database_writer, wait_writer(west_arn))
    after = await acts.switch_database(switch(west_arn, "graceful"))

    assert not started.already
    assert started.state.failover_status == "pending"
    assert started.state.failover_to == west_arn
    assert started.state.member(west_arn).lag_seconds == 0.4  # type: ignore[union-attr]
    assert repeated.already and repeated.state.failover_to == west_arn
    assert done.done and done.state.writer == west_arn and done.state.failover_status is None
    statuses = [b["state"]["failover_status"] for b in env.beats if b and b["state"]]
    assert "switching-over" in statuses and statuses[-1] is None
    assert after.already and after.state.writer == west_arn
    assert await dr.writer("shop-global") == west_arn
    assert done.state.member(east_arn).is_writer is False  # type: ignore[union-attr]


async def test_ungraceful_failover_works_with_the_primary_region_impaired(
    acts: RegionActivities, clients: Clients, dr: AwsRegionalDr
) -> None:
    east_arn, west_arn = await create_global_database(clients)
    dr.impair_region(EAST)

    graceful = await refused(acts.switch_database(switch(west_arn, "graceful")))
    failing = await acts.switch_database(switch(west_arn, "ungraceful"))
    done = await activity_env(names.WAIT_DATABASE_ACTIVITY).env.run(
        acts.wait_database_writer, wait_writer(west_arn)
    )

    assert graceful.type == "InvalidGlobalClusterStateFault"
    assert graceful.non_retryable
    assert east_arn in graceful.message and "SwitchoverGlobalCluster" in graceful.message
    assert not failing.already and failing.state.failover_to == west_arn
    assert done.done and done.state.writer == west_arn
    old = done.state.member(east_arn)
    assert old is not None and old.synchronization_status == "pending-resync"


async def test_a_missing_global_cluster_or_member_is_not_retried(
    acts: RegionActivities, clients: Clients
) -> None:
    await create_global_database(clients)
    stray = "arn:aws:rds:us-west-2:123456789012:cluster:stray"

    missing = await refused(
        acts.read_database(DatabaseRequest(global_cluster_id="shop-nope", region=WEST))
    )
    not_member = await refused(acts.switch_database(switch(stray, "graceful")))

    assert missing.non_retryable and missing.type == "GlobalClusterNotFoundFault"
    assert "shop-nope" in missing.message
    assert not_member.non_retryable and stray in not_member.message


async def test_the_wait_for_a_writer_that_never_moves_ends_at_its_deadline(
    acts: RegionActivities, clients: Clients
) -> None:
    _, west_arn = await create_global_database(clients)

    result = await activity_env(names.WAIT_DATABASE_ACTIVITY).env.run(
        acts.wait_database_writer, wait_writer(west_arn, timeout=0.5)
    )

    assert not result.done and result.polls >= 2
    assert result.state.writer != west_arn


# --------------------------------------------------------------------------- the cache datastore


async def create_datastore(clients: Clients) -> str:
    """sessions-east (primary) and sessions-west in one global datastore, available."""
    for region, group in ((EAST, "sessions-east"), (WEST, "sessions-west")):
        extra = {"GlobalReplicationGroupId": "ldgnf-sessions"} if region == WEST else {}
        await call(
            clients("elasticache", region),
            "create_replication_group",
            ReplicationGroupId=group,
            ReplicationGroupDescription="Magento sessions and cache",
            Engine="redis",
            CacheNodeType="cache.r6g.large",
            NumCacheClusters=2,
            AutomaticFailoverEnabled=True,
            **extra,
        )
        if region == EAST:
            await call(
                clients("elasticache", EAST),
                "create_global_replication_group",
                GlobalReplicationGroupIdSuffix="sessions",
                PrimaryReplicationGroupId=group,
            )
            await wait_status(clients, "primary-only")
    await wait_status(clients, "available")
    return "ldgnf-sessions"


async def wait_status(clients: Clients, status: str) -> None:
    async def reached() -> bool:
        answer = await call(
            clients("elasticache", EAST),
            "describe_global_replication_groups",
            GlobalReplicationGroupId="ldgnf-sessions",
        )
        return bool(answer["GlobalReplicationGroups"][0]["Status"] == status)

    await wait_for(reached, what=f"the datastore to be {status}", timeout_s=10)


async def test_cache_datastore_fails_over_once_and_the_wait_sees_it_done(
    acts: RegionActivities, clients: Clients, proxy: AwsFaultProxy
) -> None:
    global_id = await create_datastore(clients)
    to_west = FailoverCacheRequest(
        global_replication_group_id=global_id,
        region=WEST,
        primary_region=WEST,
        primary_group="sessions-west",
    )

    before = await acts.read_cache_datastore(
        CacheDatastoreRequest(global_replication_group_id=global_id, region=WEST)
    )
    failing = await acts.failover_cache_datastore(to_west)
    busy = await refused(acts.failover_cache_datastore(to_west))  # a retry mid-failover
    done = await activity_env(names.WAIT_CACHE_DATASTORE_ACTIVITY).env.run(
        acts.wait_cache_datastore,
        WaitCacheRequest(
            global_replication_group_id=global_id,
            region=WEST,
            primary_region=WEST,
            timeout_seconds=10,
            poll_seconds=0.1,
        ),
    )
    again = await acts.failover_cache_datastore(to_west)

    assert (before.primary_region, before.primary_group, before.status) == (
        EAST,
        "sessions-east",
        "available",
    )
    assert before.members == {EAST: "sessions-east", WEST: "sessions-west"}
    assert failing.status == "modifying"
    assert not busy.non_retryable and "modifying" in busy.message
    assert done.done and (done.state.primary_region, done.state.primary_group) == (
        WEST,
        "sessions-west",
    )
    assert again.primary_region == WEST
    assert proxy.count("FailoverGlobalReplicationGroup") == 1


async def test_a_cache_failover_to_a_stranger_is_not_retried(
    acts: RegionActivities, clients: Clients
) -> None:
    global_id = await create_datastore(clients)

    error = await refused(
        acts.failover_cache_datastore(
            FailoverCacheRequest(
                global_replication_group_id=global_id,
                region=WEST,
                primary_region="eu-west-1",
                primary_group="sessions-eu",
            )
        )
    )
    missing = await refused(
        acts.read_cache_datastore(
            CacheDatastoreRequest(global_replication_group_id="ldgnf-nope", region=WEST)
        )
    )

    assert error.non_retryable and "sessions-eu" in error.message
    assert missing.non_retryable and "ldgnf-nope" in missing.message


# --------------------------------------------------------------------------- caches in a Region


def no_aws() -> Any:
    raise AssertionError("a flush that names its Region must not use the configured clients")


async def run_app_servers(clients: Clients, region: str) -> list[str]:
    answer = await call(
        clients("ec2", region),
        "run_instances",
        ImageId="ami-12c6146b",
        MinCount=2,
        MaxCount=2,
        InstanceType="m5.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": "web"}]}],
    )
    return sorted(i["InstanceId"] for i in answer["Instances"])


async def test_an_ssm_cache_flush_runs_in_the_region_it_names(
    clients: Clients, proxy: AwsFaultProxy
) -> None:
    east = await run_app_servers(clients, EAST)
    west = await run_app_servers(clients, WEST)
    caches = CacheActivities(ssm_factory=no_aws, ec2_factory=no_aws, clients=clients)
    cache = SsmCache(
        type="ssm", name="magento-app", tag_key="Role", tag_value="web", poll_seconds=0.05
    )

    result = await ActivityEnvironment().run(
        caches.flush_cache, FlushRequest(cluster="shop", cache=cache, region=WEST)
    )

    assert all(i in result.detail for i in west)
    assert not any(i in result.detail for i in east)
    assert [(c.operation, c.region) for c in proxy.calls if c.operation == "SendCommand"] == [
        ("SendCommand", WEST)
    ]


async def test_a_regional_flush_without_regional_clients_is_not_retried() -> None:
    caches = CacheActivities(ssm_factory=no_aws, ec2_factory=no_aws)
    cache = SsmCache(type="ssm", name="magento-app", tag_key="Role", tag_value="web")

    error = await refused(
        ActivityEnvironment().run(
            caches.flush_cache, FlushRequest(cluster="shop", cache=cache, region=WEST)
        )
    )

    assert error.non_retryable and error.type == "NoRegionalClients"
    assert WEST in error.message


# --------------------------------------------------------------------------- the storefront


@dataclasses.dataclass
class Writer:
    """Which Region's Aurora cluster writes, as each Region's app servers see it."""

    region: str = EAST
    unreachable: set[str] = dataclasses.field(default_factory=set)

    def probe(self, region: str) -> Any:
        def state() -> DatabaseState:
            return DatabaseState(
                reachable=region not in self.unreachable, writer=region == self.region
            )

        return state


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def writer() -> Writer:
    return Writer()


@pytest_asyncio.fixture(scope="module")
async def shops(redis_server: RedisServer, writer: Writer) -> AsyncIterator[dict[str, Storefront]]:
    started = {
        region: Storefront(
            StorefrontSettings(
                search_host="127.0.0.1",
                search_port=free_port(),  # nothing here searches
                redis_url=redis_server.url,
                database=writer.probe(region),
                region=region,
            )
        )
        for region in (EAST, WEST)
    }
    for shop in started.values():
        await shop.start()
    try:
        yield started
    finally:
        for shop in started.values():
            await shop.stop()


@pytest.fixture
def verify(writer: Writer) -> VerifyActivities:
    writer.region, writer.unreachable = EAST, set()
    return VerifyActivities()


def health(shop: Storefront, host_header: str | None = None) -> AppHealthRequest:
    return AppHealthRequest(
        url=shop.url, path="/health_check.php", timeout_seconds=2, host_header=host_header
    )


def cart(url: str, **extra: Any) -> CartRequest:
    return CartRequest(check=StorefrontCheck(url=url, timeout_seconds=2, **extra))


async def test_app_health_passes_in_both_regions_and_names_what_fails(
    verify: VerifyActivities, shops: dict[str, Storefront], writer: Writer
) -> None:
    reader = await verify.check_app_health(health(shops[WEST], host_header="www.shop.example"))
    writer.unreachable.add(EAST)
    no_database = await verify.check_app_health(health(shops[EAST]))
    closed = f"http://127.0.0.1:{free_port()}"
    nothing = await verify.check_app_health(
        AppHealthRequest(url=closed, path="/health_check.php", timeout_seconds=1)
    )

    assert reader.problem is None  # a reader accepts connections: healthy, as on AWS
    assert reader.detail.endswith("HTTP 200")
    assert no_database.problem is not None
    assert "HTTP 500: Magento cannot reach its database or cache" in no_database.problem
    assert nothing.problem is not None
    assert nothing.problem.startswith(f"app unhealthy: {closed}/health_check.php unreachable")


async def test_a_cart_is_created_only_where_the_database_writes(
    verify: VerifyActivities, shops: dict[str, Storefront]
) -> None:
    made = await verify.check_cart(cart(shops[EAST].url))
    read_only = await verify.check_cart(cart(shops[WEST].url))

    cart_id = made.detail.removeprefix("cart ")
    assert made.problem is None
    assert cart_id in shops[EAST].carts and len(cart_id) == 32
    assert read_only.problem is not None
    assert read_only.problem.startswith("cart failed: createEmptyCart error: Internal server error")
    assert DB_READ_ONLY in read_only.problem
    assert shops[WEST].carts == set()


@pytest.fixture
def dns_zone(moto_server_url: str) -> Iterator[Route53DnsServer]:
    """www.shop.example → 127.0.0.1 in Route 53, served by the sandbox's DNS server."""
    route53 = aws_client_factory(AwsSettings(endpoint_url=moto_server_url), "route53")()
    zone = route53.create_hosted_zone(Name="shop.example.", CallerReference=uuid.uuid4().hex)
    route53.change_resource_record_sets(
        HostedZoneId=zone["HostedZone"]["Id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": "www.shop.example.",
                        "Type": "A",
                        "TTL": 1,
                        "ResourceRecords": [{"Value": "127.0.0.1"}],
                    },
                }
            ]
        },
    )
    with Route53DnsServer(lambda: route53) as server:
        yield server


async def test_cart_resolves_the_storefront_through_the_nameserver(
    verify: VerifyActivities, shops: dict[str, Storefront], dns_zone: Route53DnsServer
) -> None:
    nameserver = f"{dns_zone.host}:{dns_zone.port}"
    port = shops[EAST].port

    made = await verify.check_cart(cart(f"http://www.shop.example:{port}", nameserver=nameserver))
    unknown = await verify.check_cart(
        cart(f"http://nope.shop.example:{port}", nameserver=nameserver)
    )

    assert made.problem is None
    assert made.detail.endswith("(www.shop.example → 127.0.0.1)")
    assert unknown.problem is not None
    assert unknown.problem.startswith("cart failed: cannot resolve nope.shop.example through")


async def test_storefront_check_connects_where_the_nameserver_says_with_the_host_asked_for(
    dns_zone: Route53DnsServer,
) -> None:
    seen: list[tuple[str, str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.host, request.headers["host"]))
        if request.method == "POST":
            return httpx.Response(
                200, json={"data": {"products": {"total_count": 3, "items": [{"sku": "b"}]}}}
            )
        return httpx.Response(200, text="<html>bags</html>")

    verify = VerifyActivities(transport=httpx.MockTransport(answer))
    nameserver = f"{dns_zone.host}:{dns_zone.port}"
    check = StorefrontCheck(url="http://www.shop.example:8080", nameserver=nameserver)
    alb = StorefrontCheck(url="http://10.1.2.3", host_header="www.shop.example")

    through_dns = await verify.check_storefront(StorefrontRequest(check=check))
    direct = seen[:]
    seen.clear()
    through_alb = await verify.check_storefront(StorefrontRequest(check=alb))
    by_alb = seen[:]
    seen.clear()
    plain = await verify.check_storefront(
        StorefrontRequest(check=StorefrontCheck(url="http://www.shop.example", category_path=None))
    )

    assert through_dns.problem is None and through_alb.problem is None
    assert through_dns.detail.endswith("(www.shop.example → 127.0.0.1)")
    assert sorted(direct) == [
        ("GET", "127.0.0.1", "www.shop.example:8080"),
        ("POST", "127.0.0.1", "www.shop.example:8080"),
    ]
    assert sorted(by_alb) == [
        ("GET", "10.1.2.3", "www.shop.example"),
        ("POST", "10.1.2.3", "www.shop.example"),
    ]
    assert plain.problem is None
    assert seen == [("POST", "www.shop.example", "www.shop.example")]
