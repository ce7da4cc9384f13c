"""The two-Region sandbox must behave like a storefront in two AWS Regions.

One sandbox with ``regions=True`` serves the whole module. Customers reach www through the
sandbox's DNS server; each Region's ALB stand-in forwards to its Auto Scaling instances' app
servers; carts need the Aurora writer; and a Region outage looks like one from outside. Every
AWS call goes through the fault proxy (and its ``AwsRegionalDr``) with boto3; waits poll with
deadlines. Each test leaves the sandbox as it found it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import dns.asyncresolver
import dns.name
import httpx
import pytest
import pytest_asyncio
from botocore.config import Config

from sandbox.alb import ALB_SERVER
from sandbox.regions import (
    DR_REGION,
    GLOBAL_CLUSTER_ID,
    PRIMARY_REGION,
    REGION_TIMING,
    WWW_NAME,
    RegionStack,
    TwoRegions,
)
from sandbox.stack import PRIMARY_SIM, Sandbox, SandboxInfo
from sandbox.storefront import DB_READ_ONLY, INTERNAL_ERROR, REGION_HEADER
from sandbox.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.regions]

SEARCH = '{ products(search: "bag", pageSize: 1) { total_count items { sku } } }'
CART = "mutation { createEmptyCart }"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def sandbox(region_sandbox: Sandbox) -> Sandbox:
    return region_sandbox


@pytest.fixture(scope="module")
def aws(region_aws: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    return region_aws


async def call(client: Any, method: str, **kwargs: Any) -> Any:
    """A blocking boto3 call, off the loop the proxy runs on."""
    return await asyncio.to_thread(getattr(client, method), **kwargs)


async def graphql(
    http: httpx.AsyncClient, base: str, query: str, host: str | None = None
) -> httpx.Response:
    headers = {"Host": host} if host else None
    return await http.post(f"{base}/graphql", json={"query": query}, headers=headers)


async def cart_error(http: httpx.AsyncClient, site: RegionStack) -> str | None:
    """None when a guest cart was created through the Region's ALB, else PDO's message."""
    answer = await graphql(http, site.alb_url, CART)
    assert answer.status_code == 200
    assert answer.headers[REGION_HEADER] == site.region
    body = answer.json()
    if "errors" not in body:
        assert len(body["data"]["createEmptyCart"]) == 32
        return None
    (error,) = body["errors"]
    assert error["message"] == INTERNAL_ERROR  # masked, as graphql-php does
    return str(error["debugMessage"])


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> None:
    await wait_for(check, what=what, timeout_s=timeout_s)


# --------------------------------------------------------------------------- www


async def test_www_leads_to_the_primary_alb_where_search_and_carts_work(
    sandbox: Sandbox, regions: TwoRegions
) -> None:
    assert sandbox.info is not None
    ns_host, _, ns_port = sandbox.info.dns_server.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [ns_host], int(ns_port)
    answer = await resolver.resolve(WWW_NAME, "A", search=False)

    assert answer.canonical_name == dns.name.from_text(regions.primary.spec.alb_name)
    assert [r.address for r in answer] == [regions.primary.spec.alb_host]
    address = answer[0].address
    www = httpx.URL(regions.www_url)
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        base = f"http://{address}:{www.port}"
        search = await graphql(http, base, SEARCH, host=www.netloc.decode())
        cart = await graphql(http, base, CART, host=www.netloc.decode())

    assert search.status_code == 200 and search.headers[REGION_HEADER] == PRIMARY_REGION
    assert search.json()["data"]["products"]["total_count"] > 0
    assert "errors" not in cart.json()
    assert cart.headers[REGION_HEADER] == PRIMARY_REGION
    assert len(cart.json()["data"]["createEmptyCart"]) == 32


async def test_config_and_sandbox_json_describe_both_regions(
    sandbox: Sandbox, regions: TwoRegions
) -> None:
    assert sandbox.config is not None and sandbox.info is not None
    (shop,) = sandbox.config.storefronts
    for site, running in ((shop.primary, regions.primary), (shop.dr, regions.dr_region)):
        assert site.region == running.region
        assert str(site.url).rstrip("/") == running.alb_url
        assert site.target_group_arn == running.alb.target_group_arn
        assert site.database_cluster_arn == running.db_cluster_arn
        assert site.capacity == 2
        assert [c.name for c in site.caches] == [f"redis-{site.region}", f"varnish-{site.region}"]
    assert (shop.primary.search_side, shop.dr.search_side) == ("primary", "standby")
    assert shop.search_cluster == sandbox.config.clusters[0].name
    assert shop.database.global_cluster_id == GLOBAL_CLUSTER_ID
    assert shop.checks.nameserver == sandbox.info.dns_server
    assert (shop.www.primary_value, shop.www.standby_value) == (
        regions.primary.spec.alb_name,
        regions.dr_region.spec.alb_name,
    )

    loaded = SandboxInfo.load(sandbox.directory)
    assert loaded is not None
    assert loaded.regions == regions.infos()
    assert loaded.www_url == regions.www_url
    assert loaded.global_datastore_id == regions.datastore_id != ""


# --------------------------------------------------------------------------- the database


async def writer_settled(regions: TwoRegions, arn: str) -> bool:
    """The global cluster's writer is `arn` and no switch is in progress."""
    state = await regions.dr.failover_state(GLOBAL_CLUSTER_ID)
    return state is None and await regions.dr.writer(GLOBAL_CLUSTER_ID) == arn


@pytest_asyncio.fixture
async def writer_back_home(
    regions: TwoRegions, aws: Callable[[str, str], Any]
) -> AsyncIterator[None]:
    """After the test the primary Region's cluster is the writer again."""
    yield
    home = regions.primary.db_cluster_arn

    async def no_switch() -> bool:
        return await regions.dr.failover_state(GLOBAL_CLUSTER_ID) is None

    await until(no_switch, "the switch in progress to end")
    if await regions.dr.writer(GLOBAL_CLUSTER_ID) != home:
        await call(
            aws("rds", PRIMARY_REGION),
            "switchover_global_cluster",
            GlobalClusterIdentifier=GLOBAL_CLUSTER_ID,
            TargetDbClusterIdentifier=home,
        )
    await until(lambda: writer_settled(regions, home), "the writer back in the primary Region")


@pytest.mark.usefixtures("writer_back_home")
async def test_carts_work_only_in_the_region_of_the_aurora_writer(
    regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    primary, dr = regions.primary, regions.dr_region
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        assert await cart_error(http, dr) == DB_READ_ONLY
        assert await cart_error(http, primary) is None

        switching = await call(
            aws("rds", DR_REGION),
            "switchover_global_cluster",
            GlobalClusterIdentifier=GLOBAL_CLUSTER_ID,
            TargetDbClusterIdentifier=dr.db_cluster_arn,
        )
        assert switching["GlobalCluster"]["FailoverState"]["Status"] == "pending"
        # Until the writer has moved, the DR Region's database still refuses writes.
        assert await cart_error(http, dr) == DB_READ_ONLY
        await until(lambda: writer_settled(regions, dr.db_cluster_arn), "the writer to move")
        described = await call(
            aws("rds", DR_REGION),
            "describe_global_clusters",
            GlobalClusterIdentifier=GLOBAL_CLUSTER_ID,
        )

        async def dr_takes_carts() -> bool:
            return await cart_error(http, dr) is None

        await until(dr_takes_carts, "a cart through the DR ALB", timeout_s=5)
        assert await cart_error(http, primary) == DB_READ_ONLY

    (cluster,) = described["GlobalClusters"]
    writers = [m["DBClusterArn"] for m in cluster["GlobalClusterMembers"] if m["IsWriter"]]
    assert writers == [dr.db_cluster_arn]


# --------------------------------------------------------------------------- scaling


async def group_instances(aws: Callable[[str, str], Any], site: RegionStack) -> dict[str, str]:
    answer = await call(
        aws("autoscaling", site.region),
        "describe_auto_scaling_groups",
        AutoScalingGroupNames=[site.spec.asg_name],
    )
    (group,) = answer["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


async def target_states(aws: Callable[[str, str], Any], site: RegionStack) -> dict[str, str]:
    answer = await call(
        aws("elbv2", site.region),
        "describe_target_health",
        TargetGroupArn=site.alb.target_group_arn,
    )
    return {
        d["Target"]["Id"]: d["TargetHealth"]["State"] for d in answer["TargetHealthDescriptions"]
    }


@pytest_asyncio.fixture
async def dr_pilot_light(
    regions: TwoRegions, aws: Callable[[str, str], Any]
) -> AsyncIterator[None]:
    """After the test the DR Region is back to one instance, its ALB routing to it alone."""
    yield
    site = regions.dr_region
    regions.dr.set_timing(target_deregistration_s=0.2)  # scaled-in targets drain at once
    try:
        await call(
            aws("autoscaling", DR_REGION),
            "set_desired_capacity",
            AutoScalingGroupName=site.spec.asg_name,
            DesiredCapacity=site.spec.desired,
            HonorCooldown=False,
        )

        async def one_left() -> bool:
            states = await target_states(aws, site)
            instances = await group_instances(aws, site)
            return (
                list(states.values()) == ["healthy"]
                and list(instances.values()) == ["InService"]
                and len(site.standin.target_states()) == 1
            )

        await until(one_left, "the DR Region back to one instance")
        await regions.wait_routing(DR_REGION, site.spec.desired)
    finally:
        regions.dr.set_timing(target_deregistration_s=REGION_TIMING.target_deregistration_s)


@pytest.mark.usefixtures("dr_pilot_light")
async def test_a_scaled_up_dr_instance_launches_and_then_takes_requests(
    regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    site = regions.dr_region
    before = await group_instances(aws, site)
    assert list(before.values()) == ["InService"]

    await call(
        aws("autoscaling", DR_REGION),
        "set_desired_capacity",
        AutoScalingGroupName=site.spec.asg_name,
        DesiredCapacity=2,
        HonorCooldown=False,
    )
    launching = await group_instances(aws, site)
    (new,) = set(launching) - set(before)
    assert launching[new] == "Pending"
    assert (await target_states(aws, site))[new] == "initial"
    assert len(site.standin.routable_targets()) == 1  # not routed to while initial
    lifecycle = [launching[new]]

    async def in_service() -> bool:
        lifecycle.append((await group_instances(aws, site))[new])
        return lifecycle[-1] == "InService"

    async def healthy() -> bool:
        return (await target_states(aws, site))[new] == "healthy"

    await until(in_service, "the new instance to be InService")
    await until(healthy, "the new instance's target to be healthy")
    assert [s for i, s in enumerate(lifecycle) if i == 0 or s != lifecycle[i - 1]] == [
        "Pending",
        "InService",
    ]
    address = site.app_address(new)
    assert address is not None

    async def routed() -> bool:
        return address in site.standin.routable_targets()

    await until(routed, "the DR ALB to route to the new instance", timeout_s=5)
    assert len(site.standin.routable_targets()) == 2
    served_before = site.standin.forwarded[address]
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        answers = [await http.get(f"{site.alb_url}/health_check.php") for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.headers[REGION_HEADER] for a in answers} == {DR_REGION}
    assert site.standin.forwarded[address] - served_before == 2  # round robin over two


# --------------------------------------------------------------------------- an outage


@pytest_asyncio.fixture
async def primary_restored(regions: TwoRegions) -> AsyncIterator[None]:
    yield
    if regions.primary_impaired or regions.primary.app_servers.refusing:
        await regions.restore_primary_region()


@pytest.mark.usefixtures("primary_restored")
async def test_a_primary_region_outage_and_its_end(
    sandbox: Sandbox, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    assert sandbox.info is not None
    primary, dr = regions.primary, regions.dr_region
    search_node = sandbox.info.clusters[PRIMARY_SIM][0]
    async with httpx.AsyncClient(timeout=3, trust_env=False) as http:
        assert (await http.get(search_node)).status_code == 200

        await regions.impair_primary_region()

        down = await http.get(f"{primary.alb_url}/health_check.php")
        assert down.status_code == 502
        assert down.headers["Server"] == ALB_SERVER
        assert "502 Bad Gateway" in down.text
        with pytest.raises(httpx.ConnectError):
            await http.get(search_node)
        assert regions.dr.impaired_regions == {PRIMARY_REGION}
        assert set((await target_states(aws, primary)).values()) == {"unhealthy"}
        # The DR Region is untouched: healthy, and its database reachable (a reader).
        assert (await http.get(f"{dr.alb_url}/health_check.php")).status_code == 200
        assert await cart_error(http, dr) == DB_READ_ONLY

        await regions.restore_primary_region()

        up = await http.get(f"{primary.alb_url}/health_check.php")
        assert up.status_code == 200 and up.headers[REGION_HEADER] == PRIMARY_REGION
        assert (await http.get(search_node)).status_code == 200
        assert regions.dr.impaired_regions == frozenset()
        assert set((await target_states(aws, primary)).values()) == {"healthy"}
        assert await cart_error(http, primary) is None
