"""The Region switch end to end, on the real dev server and the two-Region sandbox.

One sandbox (two Regions: ALBs, Auto Scaling groups, the Aurora global database and the
ElastiCache global datastore answered as AWS does, a storefront with Redis and Varnish in
each Region, the two search clusters) serves the module. Each test starts with the primary
Region serving www and writing, and puts it back so before it ends: a switch back is itself
a planned, verified Region switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import dns.asyncresolver
import httpx
import pytest
import pytest_asyncio
from botocore.config import Config
from temporalio.client import WorkflowHandle

from failover import decisions, names
from failover.client.operations import UpdateRefused, send_update
from failover.client.region import region_status, region_switch_request, start_region_switch
from failover.config import AppConfig
from failover.models import (
    OperatorRequest,
    Outcome,
    RegionDrillRequest,
    RegionDrillResult,
    RegionSwitchResult,
    RegionSwitchStatus,
)
from sandbox.regions import DR_REGION, GLOBAL_CLUSTER_ID, PRIMARY_REGION, TwoRegions
from sandbox.stack import Sandbox
from sandbox.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.regions]

RESULT_DEADLINE_S = 90.0
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
CART = "mutation { createEmptyCart }"


@pytest.fixture(scope="module")
def sandbox(region_sandbox: Sandbox) -> Sandbox:
    return region_sandbox


@pytest.fixture(scope="module")
def config(sandbox: Sandbox) -> AppConfig:
    assert sandbox.config is not None
    return sandbox.config


@pytest.fixture(scope="module")
def aws(region_aws: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    return region_aws


async def run_switch(
    sandbox: Sandbox, config: AppConfig, **fields: Any
) -> tuple[WorkflowHandle[Any, RegionSwitchResult], RegionSwitchResult]:
    handle = await start(sandbox, config, **fields)
    return handle, await result_of(handle)


async def result_of(handle: WorkflowHandle[Any, RegionSwitchResult]) -> RegionSwitchResult:
    async with asyncio.timeout(RESULT_DEADLINE_S):
        return await handle.result()


async def start(
    sandbox: Sandbox,
    config: AppConfig,
    *,
    storefront: dict[str, Any] | None = None,
    **fields: Any,
) -> WorkflowHandle[Any, RegionSwitchResult]:
    """Starts `region-shop`; `storefront` changes the storefront's config for this run."""
    assert sandbox.client is not None
    fields.setdefault("reason", "test")
    request = region_switch_request(config, "shop", **fields)
    if storefront:
        raw = request.storefront.model_dump(mode="json")
        for key, value in storefront.items():
            raw[key] = raw[key] | value if isinstance(value, dict) else value
        request.storefront = type(request.storefront).model_validate(raw)
    return await start_region_switch(sandbox.client, request, task_queue=config.task_queue)


def www_values(sandbox: Sandbox, config: AppConfig) -> list[str]:
    return sandbox.read_record_values(config.storefront("shop").www.record_name)


async def writer(regions: TwoRegions) -> str | None:
    return await regions.dr.writer(GLOBAL_CLUSTER_ID)


async def desired(aws: Callable[[str, str], Any], region: str, group: str) -> tuple[int, int]:
    answer = await asyncio.to_thread(
        aws("autoscaling", region).describe_auto_scaling_groups, AutoScalingGroupNames=[group]
    )
    (found,) = answer["AutoScalingGroups"]
    return found["DesiredCapacity"], found["MinSize"]


async def cart_through_www(regions: TwoRegions) -> str:
    """A cart created as a customer creates one: www resolved through the sandbox DNS."""
    www = httpx.URL(regions.www_url)
    host, _, port = regions.nameserver.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [host], int(port)
    address = (await resolver.resolve(www.host, "A", search=False))[0].address
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        answer = await http.post(
            f"http://{address}:{www.port}/graphql",
            json={"query": CART},
            headers={"Host": www.netloc.decode()},
        )
    body = answer.json()
    assert "errors" not in body, body
    return str(body["data"]["createEmptyCart"])


@pytest_asyncio.fixture
async def back_to_primary(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> AsyncIterator[None]:
    """Each test starts and ends with the primary Region serving and writing, the DR tier
    at its pilot-light size."""
    shop = config.storefront("shop")
    before = await desired(aws, DR_REGION, shop.dr.auto_scaling_group)
    assert www_values(sandbox, config) == [shop.www.primary_value]
    assert await writer(regions) == shop.primary.database_cluster_arn
    yield
    sandbox.aws_proxy.clear_rules()
    sandbox.aws_proxy.clear_hooks()
    for group in (shop.primary.auto_scaling_group, shop.dr.auto_scaling_group):
        for region in (PRIMARY_REGION, DR_REGION):
            regions.dr.set_never_healthy(region, group, False)
    await regions.dr.set_replication_lag(shop.dr.database_cluster_arn, 0.2)
    await regions.dr_region.app_servers.accept()
    await regions.restore_primary_region()
    if www_values(sandbox, config) == [shop.www.primary_value] and (
        await writer(regions) != shop.primary.database_cluster_arn
    ):
        # Stranded: the writer moved, www did not. Finish the switch, then come back.
        _, ahead = await run_switch(sandbox, config, planned=True, to_region="dr", reason="finish")
        assert ahead.result == Outcome.FAILED_OVER, ahead.reason
    if www_values(sandbox, config) != [shop.www.primary_value]:
        _, back = await run_switch(
            sandbox, config, planned=True, mode="graceful", to_region="primary", reason="reset"
        )
        assert back.result == Outcome.FAILED_OVER, back.reason
    await asyncio.to_thread(
        aws("autoscaling", DR_REGION).update_auto_scaling_group,
        AutoScalingGroupName=shop.dr.auto_scaling_group,
        DesiredCapacity=before[0],
        MinSize=before[1],
    )


def step_names(result: RegionSwitchResult) -> list[str]:
    return [s.name for s in result.steps]


# --------------------------------------------------------------------------- switches


@pytest.mark.usefixtures("back_to_primary")
async def test_a_planned_graceful_switch_moves_the_whole_storefront(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    shop = config.storefront("shop")
    _, result = await run_switch(sandbox, config, planned=True, reason="planned move")
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (result.from_region, result.to_region, result.mode) == ("primary", "dr", "graceful")
    assert result.data_loss_window_seconds == 0.0
    assert result.database_switched
    assert step_names(result)[:4] == ["snapshot", "confirm", "preflight", "scale"]
    for name in ("wait_capacity", "database", "wait_database", "caches", "search", "verify_dr"):
        assert name in step_names(result)
    assert step_names(result)[-1] == "verify"
    assert www_values(sandbox, config) == [shop.www.standby_value]
    assert await writer(regions) == shop.dr.database_cluster_arn
    assert await desired(aws, DR_REGION, shop.dr.auto_scaling_group) == (2, 2)
    assert result.search is not None and result.search.to_side == "standby"
    assert [f.name for f in result.flushed] == [
        f"redis-{DR_REGION}",
        f"varnish-{DR_REGION}",
    ]
    assert len(await cart_through_www(regions)) == 32


def mutating_calls(sandbox: Sandbox) -> list[str]:
    """Calls that reached the AWS proxy and could change something (not a read)."""
    reads = ("Describe", "List", "Get")
    return [c.operation for c in sandbox.aws_proxy.calls if not c.operation.startswith(reads)]


@pytest.mark.usefixtures("back_to_primary")
async def test_an_outage_waits_for_approval_of_the_ungraceful_failover_and_abort_changes_nothing(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions
) -> None:
    shop = config.storefront("shop")
    await regions.impair_primary_region()
    sandbox.aws_proxy.calls.clear()
    handle = await start(sandbox, config, reason="us-east-1 is down")

    async def awaiting() -> bool:
        status = await region_status(sandbox.client, "shop")  # type: ignore[arg-type]
        return status.phase == "awaiting_approval"

    await wait_for(awaiting, what="the switch to wait for approval", timeout_s=30)
    status = await region_status(sandbox.client, "shop")  # type: ignore[arg-type]
    assert status.mode == "ungraceful"
    assert status.awaiting is not None and status.awaiting.startswith(decisions.NEEDS_APPROVAL)
    # Paused, then approved: the run holds before its first change until it is aborted.
    paused = await send_update(
        handle,
        names.PAUSE_UPDATE,
        OperatorRequest(identity="oncall", reason="wait"),
        RegionSwitchStatus,
    )
    assert paused.paused_by == "oncall: wait"
    await send_update(handle, names.APPROVE_UPDATE, OperatorRequest(identity="oncall"))
    await send_update(
        handle, names.ABORT_UPDATE, OperatorRequest(identity="oncall", reason="not yet")
    )
    result = await result_of(handle)
    assert result.result == Outcome.ABORTED
    assert result.reason == "aborted before scale by oncall: not yet"
    assert result.approved_by == "oncall"
    assert mutating_calls(sandbox) == []
    assert www_values(sandbox, config) == [shop.www.primary_value]
    assert await writer(regions) == shop.primary.database_cluster_arn
    assert [s.name for s in result.steps][:3] == ["snapshot", "confirm", "preflight"]


@pytest.mark.usefixtures("back_to_primary")
async def test_an_approved_ungraceful_failover_records_its_data_loss_window(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions
) -> None:
    shop = config.storefront("shop")
    await regions.dr.set_replication_lag(shop.dr.database_cluster_arn, 0.7)
    await regions.impair_primary_region()
    handle = await start(sandbox, config, reason="us-east-1 is down")

    async def approve() -> bool:
        try:
            await send_update(handle, names.APPROVE_UPDATE, OperatorRequest(identity="oncall"))
        except UpdateRefused:
            return False
        return True

    await wait_for(approve, what="the approval to be taken", timeout_s=30)
    result = await result_of(handle)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.mode == "ungraceful" and result.approved_by == "oncall"
    assert result.data_loss_window_seconds == 0.7
    confirm = next(s for s in result.steps if s.name == "confirm")
    assert confirm.outcome == "ok"
    assert www_values(sandbox, config) == [shop.www.standby_value]
    assert await writer(regions) == shop.dr.database_cluster_arn
    assert len(await cart_through_www(regions)) == 32


@pytest.mark.usefixtures("back_to_primary")
async def test_a_healthy_primary_is_not_switched_away_from(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions
) -> None:
    sandbox.aws_proxy.calls.clear()
    _, result = await run_switch(sandbox, config, reason="a false alarm")
    assert result.result == Outcome.NOT_CONFIRMED
    assert result.reason.startswith(decisions.REGION_NOT_DOWN)
    assert mutating_calls(sandbox) == []


@pytest.mark.usefixtures("back_to_primary")
async def test_dr_targets_that_never_turn_healthy_roll_back_and_www_never_moves(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    shop = config.storefront("shop")
    regions.dr.set_never_healthy(DR_REGION, shop.dr.auto_scaling_group)
    _, result = await run_switch(
        sandbox, config, planned=True, storefront={"scale_timeout_seconds": 4}
    )
    assert result.result == Outcome.ROLLED_BACK, result.reason
    assert decisions.CAPACITY_NOT_REACHED in result.reason
    assert "database" not in step_names(result)
    assert step_names(result)[-1] == "rollback"
    assert not result.database_switched
    assert www_values(sandbox, config) == [shop.www.primary_value]
    assert await writer(regions) == shop.primary.database_cluster_arn
    assert await desired(aws, DR_REGION, shop.dr.auto_scaling_group) == (1, 1)


@pytest.mark.usefixtures("back_to_primary")
async def test_a_failed_check_after_the_database_moved_stops_and_notifies(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    shop = config.storefront("shop")
    topic = await asyncio.to_thread(
        aws("sns", PRIMARY_REGION).create_topic, Name="region-switch-alerts"
    )
    published: list[bytes] = []
    sandbox.aws_proxy.on_forwarded("Publish", lambda call: published.append(call.request_body))

    async def break_dr_app_once_it_writes() -> None:
        async def writes() -> bool:
            return await writer(regions) == shop.dr.database_cluster_arn

        await wait_for(writes, what="the DR writer", timeout_s=60)
        await regions.dr_region.app_servers.refuse()

    breaker = asyncio.create_task(break_dr_app_once_it_writes())
    _, result = await run_switch(
        sandbox,
        config,
        planned=True,
        storefront={"notify": {"sns_topic_arn": topic["TopicArn"]}, "verify_attempts": 2},
    )
    await breaker
    assert result.result == Outcome.FAILED_AFTER_DATABASE_SWITCH, result.reason
    assert result.reason.startswith("failed_after_database_switch: ")
    assert "Nothing was rolled back automatically. Decide:" in result.reason
    assert "rollback" not in step_names(result)
    assert next(s for s in result.steps if s.name == "verify_dr").outcome == "failed"
    assert result.database_switched
    assert await writer(regions) == shop.dr.database_cluster_arn
    assert www_values(sandbox, config) == [shop.www.primary_value]  # never moved
    texts = [body.decode() for body in published]
    assert any("failed_after_database_switch" in t and "stranded" in t for t in texts), texts
    assert result.notifications_failed == 0


@pytest.mark.usefixtures("back_to_primary")
async def test_a_dry_run_changes_nothing_and_shows_the_plan(
    sandbox: Sandbox, config: AppConfig
) -> None:
    sandbox.aws_proxy.calls.clear()
    _, result = await run_switch(sandbox, config, dry_run=True)
    assert result.result == Outcome.PLANNED, result.reason
    assert mutating_calls(sandbox) == []
    assert result.plan[-1] == "preflight: ok"
    assert any(line.startswith("database: FailoverGlobalCluster") for line in result.plan)
    assert any(line.startswith("scale: ") and "1 → 2" in line for line in result.plan)


@pytest.mark.usefixtures("back_to_primary")
async def test_a_region_drill_goes_and_comes_back_scaled_as_before(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions, aws: Callable[[str, str], Any]
) -> None:
    from failover.client.region import start_region_drill

    shop = config.storefront("shop")
    request = region_switch_request(config, "shop", reason="drill")
    assert sandbox.client is not None
    handle = await start_region_drill(
        sandbox.client,
        RegionDrillRequest(storefront=request.storefront, search=request.search),
        task_queue=config.task_queue,
    )
    async with asyncio.timeout(RESULT_DEADLINE_S * 2):
        report = RegionDrillResult.model_validate(await handle.result())
    assert report.verdict == "pass", report.reason
    assert report.forward.result == Outcome.FAILED_OVER
    assert report.back is not None and report.back.result == Outcome.FAILED_OVER
    assert (report.back.from_region, report.back.to_region) == ("dr", "primary")
    assert report.scaled_back == {"desired": 1, "min": 1}
    assert www_values(sandbox, config) == [shop.www.primary_value]
    assert await writer(regions) == shop.primary.database_cluster_arn
    assert await desired(aws, DR_REGION, shop.dr.auto_scaling_group) == (1, 1)
    assert len(await cart_through_www(regions)) == 32


@pytest.mark.usefixtures("back_to_primary")
async def test_a_lagging_dr_database_is_refused_before_anything_changes(
    sandbox: Sandbox, config: AppConfig, regions: TwoRegions
) -> None:
    """Last in the module: the lag is read as AWS publishes it, the Maximum of the last
    minute, so the 30 s set here stays the lag seen for a minute."""
    shop = config.storefront("shop")
    await regions.dr.set_replication_lag(shop.dr.database_cluster_arn, 30)
    sandbox.aws_proxy.calls.clear()
    _, result = await run_switch(sandbox, config, planned=True)
    assert result.result == Outcome.ABORTED
    assert f"{decisions.DATABASE_LAG}: {shop.dr.database_cluster_arn} is 30s behind" in (
        result.reason
    )
    assert mutating_calls(sandbox) == []
    assert www_values(sandbox, config) == [shop.www.primary_value]
