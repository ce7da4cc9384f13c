"""A Region switch of the app tier must meet AWS's behaviour, not moto's, in the sandbox.

boto3 clients for us-east-1 and us-west-2 talk to the fault proxy with ``AwsRegionalDr`` added,
the proxy to a real moto server on loopback. Every assertion is made on what botocore parsed, so
a wrong wire format or error code would show as a bare HTTP status or the wrong exception class.
Durations are shortened per test through the responder's timing; waits poll with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from sandbox.aws_dr import AwsRegionalDr, DrControlError
from sandbox.aws_fault_proxy import (
    AwsAnswer,
    AwsFaultProxy,
    AwsRequest,
    FaultKind,
    FaultRule,
    ForwardedCall,
    Responder,
)
from sandbox.waiting import wait_for

EAST, WEST = "us-east-1", "us-west-2"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ENGINE, VERSION = "aurora-mysql", "8.0.mysql_aurora.3.05.2"
# Short enough for a quick suite, long enough that polls see every intermediate state.
FAST = {
    "global_cluster_pending_s": 0.5,
    "global_cluster_promotion_s": 1.0,
    "global_datastore_change_s": 1.0,
    "instance_launch_s": 1.5,
    "target_deregistration_s": 1.0,
    "lag_publish_interval_s": 60.0,
}

Clients = Callable[[str, str], Any]


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
def aws(proxy: AwsFaultProxy) -> Clients:
    """boto3 clients that talk to the proxy, one per (service, Region)."""

    @cache
    def client(service: str, region: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=proxy.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=NO_RETRIES,
        )

    return client


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


async def call(client: Any, method: str, **kwargs: Any) -> Any:
    """A blocking boto3 call, off the event loop the proxy runs on."""
    return await asyncio.to_thread(getattr(client, method), **kwargs)


async def fails(client: Any, method: str, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as excinfo:
        await call(client, method, **kwargs)
    return excinfo.value


def code_and_status(error: ClientError) -> tuple[str, int]:
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


async def poll(
    read: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    what: str,
    timeout_s: float = 10.0,
) -> list[Any]:
    """Read until ``done`` holds (with a deadline); returns every value read, in order."""
    seen: list[Any] = []

    async def check() -> bool:
        seen.append(await read())
        return done(seen[-1])

    await wait_for(check, what=what, timeout_s=timeout_s)
    return seen


def compress(values: list[Any]) -> list[Any]:
    """Drop consecutive repeats: the states something went through, in order."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


# --------------------------------------------------------------------------- Aurora helpers


async def create_global_database(aws: Clients, name: str = "shop") -> tuple[str, str]:
    """A global cluster with its writer in us-east-1 and a secondary in us-west-2."""
    east, west = aws("rds", EAST), aws("rds", WEST)
    await call(
        east,
        "create_global_cluster",
        GlobalClusterIdentifier=f"{name}-global",
        Engine=ENGINE,
        EngineVersion=VERSION,
    )
    primary = await call(
        east,
        "create_db_cluster",
        DBClusterIdentifier=f"{name}-east",
        Engine=ENGINE,
        EngineVersion=VERSION,
        GlobalClusterIdentifier=f"{name}-global",
        MasterUsername="magento",
        MasterUserPassword="sandbox-password",
    )
    secondary = await call(
        west,
        "create_db_cluster",
        DBClusterIdentifier=f"{name}-west",
        Engine=ENGINE,
        EngineVersion=VERSION,
        GlobalClusterIdentifier=f"{name}-global",
    )
    return primary["DBCluster"]["DBClusterArn"], secondary["DBCluster"]["DBClusterArn"]


async def global_cluster(aws: Clients, region: str = WEST, name: str = "shop") -> dict[str, Any]:
    answer = await call(
        aws("rds", region), "describe_global_clusters", GlobalClusterIdentifier=f"{name}-global"
    )
    (cluster,) = answer["GlobalClusters"]
    return cluster


def writer_of(cluster: dict[str, Any]) -> str:
    (writer,) = [m["DBClusterArn"] for m in cluster["GlobalClusterMembers"] if m["IsWriter"]]
    return writer


def failover_status(cluster: dict[str, Any]) -> str | None:
    return cluster.get("FailoverState", {}).get("Status")


# --------------------------------------------------------------------------- the extension point


async def test_region_comes_from_the_credential_scope(proxy: AwsFaultProxy, aws: Clients) -> None:
    await call(aws("rds", EAST), "describe_db_clusters")
    await call(aws("rds", WEST), "describe_db_clusters")

    assert [(c.operation, c.service, c.region) for c in proxy.calls] == [
        ("DescribeDBClusters", "rds", EAST),
        ("DescribeDBClusters", "rds", WEST),
    ]


class _Toy(Responder):
    """A responder that answers one call, rewrites another and breaks on a third."""

    name = "toy"
    control_name = "toy"

    async def answer(self, request: AwsRequest) -> AwsAnswer | None:
        if request.operation == "ListHostedZonesByName":
            raise RuntimeError("toy bug")
        return None

    async def rewrite(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        if request.operation == "ListHostedZones":
            answer.body = answer.body.replace(b"<IsTruncated>false", b"<IsTruncated>true")
        return answer


async def test_a_responder_rewrites_and_its_errors_are_kept(
    proxy: AwsFaultProxy, aws: Clients
) -> None:
    toy = await proxy.add_responder(_Toy())
    try:
        zones = await call(aws("route53", EAST), "list_hosted_zones")
        assert zones["IsTruncated"] is True  # what the responder made of moto's answer
        error = await fails(aws("route53", EAST), "list_hosted_zones_by_name")
        assert code_and_status(error) == ("InternalFailure", 500)
        assert [str(e) for e in proxy.responder_errors] == ["toy bug"]
        proxy.responder_errors.clear()
        control = await asyncio.to_thread(httpx.get, f"{proxy.url}/__faults__/toy/anything")
        assert control.status_code == 404
        state = (await asyncio.to_thread(httpx.get, f"{proxy.url}/__faults__")).json()
        assert state["responders"] == ["dr", "toy"]
    finally:
        await proxy.remove_responder(toy)


async def test_fault_rules_come_first_and_hooks_see_answered_calls(
    proxy: AwsFaultProxy, aws: Clients
) -> None:
    _, west_arn = await create_global_database(aws)
    rule = proxy.add_rule(FaultRule("SwitchoverGlobalCluster", FaultKind.ERROR, code="Throttling"))
    seen: list[ForwardedCall] = []
    proxy.on_forwarded("SwitchoverGlobalCluster", seen.append)
    kwargs = {"GlobalClusterIdentifier": "shop-global", "TargetDbClusterIdentifier": west_arn}

    throttled = await fails(aws("rds", WEST), "switchover_global_cluster", **kwargs)
    await call(aws("rds", WEST), "switchover_global_cluster", **kwargs)

    assert code_and_status(throttled) == ("Throttling", 400)
    assert rule.hits == 1
    assert [(c.region, c.status) for c in seen] == [(WEST, 200)]
    assert [c.answered_by for c in proxy.calls if c.operation == "SwitchoverGlobalCluster"] == [
        None,
        "aws-regional-dr",
    ]


# --------------------------------------------------------------------------- Aurora global database


async def test_describe_global_clusters_filters_by_identifier(aws: Clients) -> None:
    east_arn, west_arn = await create_global_database(aws)
    await call(
        aws("rds", EAST), "create_global_cluster", GlobalClusterIdentifier="other", Engine=ENGINE
    )

    cluster = await global_cluster(aws, EAST)
    missing = await fails(
        aws("rds", EAST), "describe_global_clusters", GlobalClusterIdentifier="nope"
    )

    assert cluster["GlobalClusterIdentifier"] == "shop-global"
    assert isinstance(missing, aws("rds", EAST).exceptions.GlobalClusterNotFoundFault)
    assert code_and_status(missing) == ("GlobalClusterNotFoundFault", 404)
    members = {m["DBClusterArn"]: m for m in cluster["GlobalClusterMembers"]}
    assert members[east_arn]["IsWriter"] and not members[west_arn]["IsWriter"]
    assert members[east_arn]["Readers"] == [west_arn]
    assert {m["SynchronizationStatus"] for m in members.values()} == {"connected"}
    assert "FailoverState" not in cluster


async def test_switchover_goes_pending_then_switching_over_then_moves_the_writer(
    proxy: AwsFaultProxy, dr: AwsRegionalDr, aws: Clients
) -> None:
    east_arn, west_arn = await create_global_database(aws)
    started = time.monotonic()

    answer = await call(
        aws("rds", WEST),
        "switchover_global_cluster",
        GlobalClusterIdentifier="shop-global",
        TargetDbClusterIdentifier=west_arn,
    )
    seen = await poll(
        lambda: global_cluster(aws),
        lambda c: "FailoverState" not in c,
        "the switchover to finish",
    )
    took = time.monotonic() - started

    switching = answer["GlobalCluster"]
    assert switching["Status"] == "switching-over"
    assert switching["FailoverState"] == {
        "Status": "pending",
        "FromDbClusterArn": east_arn,
        "ToDbClusterArn": west_arn,
        "IsDataLossAllowed": False,
    }
    assert compress([failover_status(c) for c in seen]) == ["pending", "switching-over", None]
    # The writer stays put until the switch is done, and every read agrees on it.
    assert {writer_of(c) for c in seen[:-1]} == {east_arn}
    done = seen[-1]
    assert writer_of(done) == west_arn
    assert done["Status"] == "available"
    members = {m["DBClusterArn"]: m for m in done["GlobalClusterMembers"]}
    assert members[west_arn]["Readers"] == [east_arn]
    assert members[east_arn]["Readers"] == []
    assert members[east_arn]["GlobalWriteForwardingStatus"] == "disabled"
    assert "GlobalWriteForwardingStatus" not in members[west_arn]
    assert took >= FAST["global_cluster_pending_s"] + FAST["global_cluster_promotion_s"] - 0.05
    assert writer_of(await global_cluster(aws, EAST)) == west_arn
    assert await dr.writer("SHOP-GLOBAL") == west_arn  # identifiers are case-insensitive
    control = await asyncio.to_thread(
        httpx.get, f"{proxy.url}/__faults__/dr/writer", params={"global_cluster": "shop-global"}
    )
    assert control.json() == {
        "global_cluster": "shop-global",
        "writer": west_arn,
        "failover_state": None,
    }


async def test_switchover_is_refused_while_the_writer_region_is_impaired(
    dr: AwsRegionalDr, aws: Clients
) -> None:
    east_arn, west_arn = await create_global_database(aws)
    dr.impair_region(EAST)
    rds = aws("rds", WEST)
    target = {"GlobalClusterIdentifier": "shop-global", "TargetDbClusterIdentifier": west_arn}

    refused = await fails(rds, "switchover_global_cluster", **target)
    also_refused = await fails(rds, "failover_global_cluster", **target, Switchover=True)

    for error in (refused, also_refused):
        assert isinstance(error, rds.exceptions.InvalidGlobalClusterStateFault)
        assert code_and_status(error) == ("InvalidGlobalClusterStateFault", 400)
        assert east_arn in error.response["Error"]["Message"]
    cluster = await global_cluster(aws)
    assert writer_of(cluster) == east_arn
    assert "FailoverState" not in cluster


async def test_failover_with_data_loss_works_without_the_writer_region(
    dr: AwsRegionalDr, aws: Clients
) -> None:
    east_arn, west_arn = await create_global_database(aws)
    dr.impair_region(EAST)

    answer = await call(
        aws("rds", WEST),
        "failover_global_cluster",
        GlobalClusterIdentifier="shop-global",
        TargetDbClusterIdentifier=west_arn,
        AllowDataLoss=True,
    )
    seen = await poll(
        lambda: global_cluster(aws), lambda c: "FailoverState" not in c, "the failover to finish"
    )

    assert answer["GlobalCluster"]["Status"] == "failing-over"
    assert answer["GlobalCluster"]["FailoverState"]["IsDataLossAllowed"] is True
    assert compress([failover_status(c) for c in seen]) == ["pending", "failing-over", None]
    done = {m["DBClusterArn"]: m for m in seen[-1]["GlobalClusterMembers"]}
    assert done[west_arn]["IsWriter"] and not done[east_arn]["IsWriter"]
    # The old writer cannot be resynchronised while its Region is down...
    assert done[east_arn]["SynchronizationStatus"] == "pending-resync"
    dr.restore_region(EAST)
    back = {m["DBClusterArn"]: m for m in (await global_cluster(aws))["GlobalClusterMembers"]}
    # ...and rejoins as a secondary once it is back.
    assert back[east_arn]["SynchronizationStatus"] == "connected"
    assert back[west_arn]["IsWriter"]


@pytest.mark.parametrize(
    ("method", "kwargs", "code", "status"),
    [
        (
            "switchover_global_cluster",
            {"GlobalClusterIdentifier": "nope", "TargetDbClusterIdentifier": "{west}"},
            "GlobalClusterNotFoundFault",
            404,
        ),
        (
            "switchover_global_cluster",
            {
                "GlobalClusterIdentifier": "shop-global",
                "TargetDbClusterIdentifier": "arn:aws:rds:us-west-2:123456789012:cluster:stray",
            },
            "DBClusterNotFoundFault",
            404,
        ),
        (
            "switchover_global_cluster",
            {"GlobalClusterIdentifier": "shop-global", "TargetDbClusterIdentifier": "{east}"},
            "InvalidDBClusterStateFault",
            400,
        ),
        (
            "failover_global_cluster",
            {
                "GlobalClusterIdentifier": "shop-global",
                "TargetDbClusterIdentifier": "{west}",
                "AllowDataLoss": True,
                "Switchover": True,
            },
            "InvalidParameterCombination",
            400,
        ),
    ],
)
async def test_bad_switches_get_aws_errors(
    aws: Clients, method: str, kwargs: dict[str, Any], code: str, status: int
) -> None:
    east_arn, west_arn = await create_global_database(aws)
    filled = {
        k: v.format(east=east_arn, west=west_arn) if isinstance(v, str) else v
        for k, v in kwargs.items()
    }

    error = await fails(aws("rds", WEST), method, **filled)

    assert code_and_status(error) == (code, status)
    assert writer_of(await global_cluster(aws)) == east_arn


async def test_a_second_switch_is_refused_while_one_is_in_progress(aws: Clients) -> None:
    _, west_arn = await create_global_database(aws)
    rds = aws("rds", WEST)
    # Named by identifier in its own Region, as AWS also accepts.
    await call(
        rds,
        "switchover_global_cluster",
        GlobalClusterIdentifier="shop-global",
        TargetDbClusterIdentifier="shop-west",
    )

    error = await fails(
        rds,
        "failover_global_cluster",
        GlobalClusterIdentifier="shop-global",
        TargetDbClusterIdentifier=west_arn,
        AllowDataLoss=True,
    )

    assert isinstance(error, rds.exceptions.InvalidGlobalClusterStateFault)
    assert "switchover in progress" in error.response["Error"]["Message"]


async def lag_datapoints(
    aws: Clients, region: str, dimension: tuple[str, str]
) -> tuple[list[float], list[dict[str, Any]]]:
    """AuroraGlobalDBReplicationLag as a dashboard reads it, newest minute first.

    Returns GetMetricData's values and GetMetricStatistics' datapoints (one per 1-minute period;
    two datapoints a moment apart may fall into neighbouring periods).
    """
    cloudwatch = aws("cloudwatch", region)
    now = datetime.now(UTC)
    metric = {
        "Namespace": "AWS/RDS",
        "MetricName": "AuroraGlobalDBReplicationLag",
        "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
    }
    window = {"StartTime": now - timedelta(minutes=5), "EndTime": now + timedelta(minutes=1)}
    data = await call(
        cloudwatch,
        "get_metric_data",
        MetricDataQueries=[
            {"Id": "lag", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}}
        ],
        ScanBy="TimestampDescending",
        **window,
    )
    stats = await call(
        cloudwatch,
        "get_metric_statistics",
        **metric,
        **window,
        Period=60,
        Statistics=["Maximum", "SampleCount"],
    )
    newest_first = sorted(stats["Datapoints"], key=lambda d: d["Timestamp"], reverse=True)
    return data["MetricDataResults"][0]["Values"], newest_first


async def test_replication_lag_is_read_as_aws_publishes_it(
    proxy: AwsFaultProxy, dr: AwsRegionalDr, aws: Clients
) -> None:
    east_arn, west_arn = await create_global_database(aws)

    await dr.set_replication_lag(west_arn, 2.5)
    await dr.set_replication_lag(east_arn, 0.3)  # the writer: published once it is a secondary
    values, datapoints = await lag_datapoints(aws, WEST, ("DBClusterIdentifier", "shop-west"))
    by_source, _ = await lag_datapoints(aws, WEST, ("SourceRegion", EAST))
    writer_values, _ = await lag_datapoints(aws, EAST, ("DBClusterIdentifier", "shop-east"))

    assert set(values) == {2500.0}
    assert {(d["Maximum"], d["Unit"]) for d in datapoints} == {(2500.0, "Milliseconds")}
    assert set(by_source) == {2500.0}
    assert writer_values == []
    assert dr.replication_lag(west_arn) == 2.5

    changed = await asyncio.to_thread(
        httpx.post,
        f"{proxy.url}/__faults__/dr/replication-lag",
        json={"db_cluster_arn": west_arn, "seconds": 4},
    )
    assert changed.status_code == 200
    assert changed.json() == {"db_cluster_arn": west_arn, "seconds": 4.0}
    values, _ = await lag_datapoints(aws, WEST, ("DBClusterIdentifier", "shop-west"))
    assert values[0] == 4000.0


async def test_lag_is_published_on_schedule_and_follows_the_writer(
    dr: AwsRegionalDr, aws: Clients
) -> None:
    east_arn, west_arn = await create_global_database(aws)
    await dr.set_replication_lag(east_arn, 0.3)
    dr.set_timing(lag_publish_interval_s=0.2)

    await call(
        aws("rds", WEST),
        "switchover_global_cluster",
        GlobalClusterIdentifier="shop-global",
        TargetDbClusterIdentifier=west_arn,
    )
    await poll(
        lambda: global_cluster(aws), lambda c: writer_of(c) == west_arn, "the writer to move"
    )

    async def east_lag() -> list[dict[str, Any]]:
        return (await lag_datapoints(aws, EAST, ("DBClusterIdentifier", "shop-east")))[1]

    datapoints = await poll(east_lag, bool, "the new secondary's lag to be published")
    assert datapoints[-1][0]["Maximum"] == 300.0


# --------------------------------------------------------------------------- ElastiCache


async def create_replication_group(aws: Clients, region: str, name: str, **extra: Any) -> None:
    await call(
        aws("elasticache", region),
        "create_replication_group",
        ReplicationGroupId=name,
        ReplicationGroupDescription="Magento sessions and cache",
        Engine="redis",
        CacheNodeType="cache.r6g.large",
        NumCacheClusters=2,
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
        **extra,
    )


async def datastore(aws: Clients, region: str, global_id: str) -> dict[str, Any]:
    answer = await call(
        aws("elasticache", region),
        "describe_global_replication_groups",
        GlobalReplicationGroupId=global_id,
        ShowMemberInfo=True,
    )
    (found,) = answer["GlobalReplicationGroups"]
    return found


def roles(found: dict[str, Any]) -> dict[str, str]:
    return {m["ReplicationGroupRegion"]: m["Role"] for m in found["Members"]}


async def member_role(aws: Clients, region: str, group: str) -> str | None:
    answer = await call(
        aws("elasticache", region), "describe_replication_groups", ReplicationGroupId=group
    )
    info = answer["ReplicationGroups"][0].get("GlobalReplicationGroupInfo")
    return info["GlobalReplicationGroupMemberRole"] if info else None


async def test_global_datastore_create_join_describe_and_fail_over(aws: Clients) -> None:
    east, west = aws("elasticache", EAST), aws("elasticache", WEST)
    await create_replication_group(aws, EAST, "sessions-east")

    created = await call(
        east,
        "create_global_replication_group",
        GlobalReplicationGroupIdSuffix="sessions",
        PrimaryReplicationGroupId="sessions-east",
    )
    global_id = created["GlobalReplicationGroup"]["GlobalReplicationGroupId"]
    assert global_id == "ldgnf-sessions"  # us-east-1's prefix
    assert created["GlobalReplicationGroup"]["Status"] == "creating"
    assert created["GlobalReplicationGroup"]["ARN"] == (
        "arn:aws:elasticache::123456789012:globalreplicationgroup:ldgnf-sessions"
    )
    await poll(
        lambda: datastore(aws, EAST, global_id),
        lambda d: d["Status"] == "primary-only",
        "the datastore to be created",
    )
    no_secondary = await fails(
        east,
        "failover_global_replication_group",
        GlobalReplicationGroupId=global_id,
        PrimaryRegion=EAST,
        PrimaryReplicationGroupId="sessions-east",
    )
    assert isinstance(no_secondary, east.exceptions.InvalidGlobalReplicationGroupStateFault)

    await create_replication_group(aws, WEST, "sessions-west", GlobalReplicationGroupId=global_id)
    joining = await datastore(aws, WEST, global_id)
    assert joining["Status"] == "modifying"
    assert {m["Status"] for m in joining["Members"] if m["Role"] == "SECONDARY"} == {"associating"}
    await poll(
        lambda: datastore(aws, WEST, global_id),
        lambda d: d["Status"] == "available",
        "the secondary to join",
    )
    brief = await call(
        west, "describe_global_replication_groups", GlobalReplicationGroupId=global_id
    )
    assert "Members" not in brief["GlobalReplicationGroups"][0]  # only with ShowMemberInfo
    assert roles(await datastore(aws, WEST, global_id)) == {EAST: "PRIMARY", WEST: "SECONDARY"}
    assert await member_role(aws, EAST, "sessions-east") == "PRIMARY"
    assert await member_role(aws, WEST, "sessions-west") == "SECONDARY"

    failing = await call(
        west,
        "failover_global_replication_group",
        GlobalReplicationGroupId=global_id,
        PrimaryRegion=WEST,
        PrimaryReplicationGroupId="sessions-west",
    )
    assert failing["GlobalReplicationGroup"]["Status"] == "modifying"
    again = await fails(
        west,
        "failover_global_replication_group",
        GlobalReplicationGroupId=global_id,
        PrimaryRegion=WEST,
        PrimaryReplicationGroupId="sessions-west",
    )
    assert isinstance(again, west.exceptions.InvalidGlobalReplicationGroupStateFault)
    assert code_and_status(again) == ("InvalidGlobalReplicationGroupState", 400)
    seen = await poll(
        lambda: datastore(aws, WEST, global_id),
        lambda d: d["Status"] == "available",
        "the failover to finish",
    )
    # Roles swap only when the failover is done.
    assert all(roles(d) == {EAST: "PRIMARY", WEST: "SECONDARY"} for d in seen[:-1])
    assert roles(seen[-1]) == {EAST: "SECONDARY", WEST: "PRIMARY"}
    assert await member_role(aws, WEST, "sessions-west") == "PRIMARY"
    assert await member_role(aws, EAST, "sessions-east") == "SECONDARY"


async def test_global_datastore_refusals(aws: Clients) -> None:
    east = aws("elasticache", EAST)
    await create_replication_group(aws, EAST, "sessions-east")
    await call(
        east,
        "create_global_replication_group",
        GlobalReplicationGroupIdSuffix="sessions",
        PrimaryReplicationGroupId="sessions-east",
    )
    global_id = "ldgnf-sessions"
    await poll(
        lambda: datastore(aws, EAST, global_id),
        lambda d: d["Status"] == "primary-only",
        "the datastore to be created",
    )
    await create_replication_group(aws, WEST, "sessions-west", GlobalReplicationGroupId=global_id)
    await poll(
        lambda: datastore(aws, EAST, global_id),
        lambda d: d["Status"] == "available",
        "the datastore to be available",
    )

    missing = await fails(
        east, "describe_global_replication_groups", GlobalReplicationGroupId="ldgnf-nope"
    )
    to_primary = await fails(
        east,
        "failover_global_replication_group",
        GlobalReplicationGroupId=global_id,
        PrimaryRegion=EAST,
        PrimaryReplicationGroupId="sessions-east",
    )
    stranger = await fails(
        east,
        "failover_global_replication_group",
        GlobalReplicationGroupId=global_id,
        PrimaryRegion="eu-west-1",
        PrimaryReplicationGroupId="sessions-eu",
    )
    duplicate = await fails(
        east,
        "create_global_replication_group",
        GlobalReplicationGroupIdSuffix="sessions",
        PrimaryReplicationGroupId="sessions-east",
    )
    member_delete = await fails(
        aws("elasticache", WEST), "delete_replication_group", ReplicationGroupId="sessions-west"
    )
    no_datastore = await fails(
        aws("elasticache", "eu-west-1"),
        "create_replication_group",
        ReplicationGroupId="sessions-eu",
        ReplicationGroupDescription="x",
        GlobalReplicationGroupId="ldgnf-nope",
    )

    assert isinstance(missing, east.exceptions.GlobalReplicationGroupNotFoundFault)
    assert code_and_status(missing) == ("GlobalReplicationGroupNotFoundFault", 404)
    for error in (to_primary, stranger):
        assert isinstance(error, east.exceptions.InvalidParameterValueException)
        assert code_and_status(error) == ("InvalidParameterValue", 400)
    assert code_and_status(duplicate) == ("GlobalReplicationGroupAlreadyExistsFault", 400)
    assert code_and_status(member_delete) == ("InvalidReplicationGroupState", 400)
    assert code_and_status(no_datastore) == ("GlobalReplicationGroupNotFoundFault", 404)


# --------------------------------------------------------------------------- Auto Scaling


async def create_web_tier(aws: Clients, region: str = WEST, desired: int = 0) -> str:
    """A VPC, a launch template, an instance target group and the web ASG attached to it."""
    ec2, elbv2 = aws("ec2", region), aws("elbv2", region)
    vpc = (await call(ec2, "create_vpc", CidrBlock="10.1.0.0/16"))["Vpc"]["VpcId"]
    subnets = [
        (
            await call(
                ec2,
                "create_subnet",
                VpcId=vpc,
                CidrBlock=f"10.1.{n}.0/24",
                AvailabilityZone=f"{region}{zone}",
            )
        )["Subnet"]["SubnetId"]
        for n, zone in enumerate("ab")
    ]
    await call(
        ec2,
        "create_launch_template",
        LaunchTemplateName="magento-web",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"},
    )
    target_group = (
        await call(
            elbv2,
            "create_target_group",
            Name="magento-web",
            Protocol="HTTP",
            Port=80,
            VpcId=vpc,
            TargetType="instance",
            HealthCheckPath="/health_check.php",
        )
    )["TargetGroups"][0]["TargetGroupArn"]
    await call(
        aws("autoscaling", region),
        "create_auto_scaling_group",
        AutoScalingGroupName="magento-web",
        LaunchTemplate={"LaunchTemplateName": "magento-web", "Version": "$Latest"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[target_group],
        HealthCheckType="ELB",
    )
    return target_group


async def web_group(aws: Clients, region: str = WEST) -> dict[str, Any]:
    answer = await call(
        aws("autoscaling", region),
        "describe_auto_scaling_groups",
        AutoScalingGroupNames=["magento-web"],
    )
    return answer["AutoScalingGroups"][0]


def lifecycles(group: dict[str, Any]) -> list[str]:
    return sorted(i["LifecycleState"] for i in group["Instances"])


async def target_states(
    aws: Clients, target_group: str, region: str = WEST, ids: list[str] | None = None
) -> dict[str, str]:
    kwargs: dict[str, Any] = {"TargetGroupArn": target_group}
    if ids:
        kwargs["Targets"] = [{"Id": i, "Port": 80} for i in ids]
    answer = await call(aws("elbv2", region), "describe_target_health", **kwargs)
    return {
        d["Target"]["Id"]: d["TargetHealth"]["State"] for d in answer["TargetHealthDescriptions"]
    }


async def activities(aws: Clients, region: str = WEST) -> list[dict[str, Any]]:
    answer = await call(
        aws("autoscaling", region),
        "describe_scaling_activities",
        AutoScalingGroupName="magento-web",
    )
    return answer["Activities"]


async def test_scale_up_is_pending_then_in_service_and_targets_initial_then_healthy(
    aws: Clients,
) -> None:
    target_group = await create_web_tier(aws)
    asg = aws("autoscaling", WEST)
    started = time.monotonic()

    await call(
        asg,
        "set_desired_capacity",
        AutoScalingGroupName="magento-web",
        DesiredCapacity=2,
        HonorCooldown=False,
    )
    launching = await web_group(aws)
    ids = [i["InstanceId"] for i in launching["Instances"]]
    instances = await call(asg, "describe_auto_scaling_instances", InstanceIds=ids)
    listed = await target_states(aws, target_group)
    asked = await target_states(aws, target_group, ids=ids)
    in_progress = await activities(aws)
    seen = await poll(
        lambda: web_group(aws),
        lambda g: lifecycles(g) == ["InService", "InService"],
        "the new instances to be InService",
    )
    in_service_after = time.monotonic() - started
    healthy = await poll(
        lambda: target_states(aws, target_group),
        lambda states: set(states.values()) == {"healthy"},
        "the new targets to be healthy",
    )

    assert lifecycles(launching) == ["Pending", "Pending"]
    assert {i["HealthStatus"] for i in launching["Instances"]} == {"Healthy"}
    assert [i["LifecycleState"] for i in instances["AutoScalingInstances"]] == ["Pending"] * 2
    assert listed == asked == dict.fromkeys(ids, "initial")
    assert {a["StatusCode"] for a in in_progress} == {"PreInService"}
    assert compress([lifecycles(g) for g in seen])[-1] == ["InService", "InService"]
    assert in_service_after >= FAST["instance_launch_s"] - 0.05
    assert healthy[-1] == dict.fromkeys(ids, "healthy")
    done = await activities(aws)
    assert sorted(a["Description"] for a in done) == sorted(
        f"Launching a new EC2 instance: {i}" for i in ids
    )
    assert {(a["StatusCode"], a["Progress"]) for a in done} == {("Successful", 100)}
    # boto3's own waiter agrees once AWS would.
    await asyncio.to_thread(
        aws("elbv2", WEST).get_waiter("target_in_service").wait,
        TargetGroupArn=target_group,
        Targets=[{"Id": i} for i in ids],
        WaiterConfig={"Delay": 1, "MaxAttempts": 3},
    )


async def test_never_healthy_instances_stay_unhealthy(
    proxy: AwsFaultProxy, dr: AwsRegionalDr, aws: Clients
) -> None:
    target_group = await create_web_tier(aws, desired=1)
    (old,) = [i["InstanceId"] for i in (await web_group(aws))["Instances"]]
    await poll(
        lambda: target_states(aws, target_group),
        lambda s: s == {old: "healthy"},
        "the first instance to be healthy",
    )
    marked = await asyncio.to_thread(
        httpx.post,
        f"{proxy.url}/__faults__/dr/auto-scaling",
        json={"region": WEST, "group": "magento-web", "never_healthy": True},
    )
    assert marked.json()["never_healthy"] is True

    await call(
        aws("autoscaling", WEST),
        "set_desired_capacity",
        AutoScalingGroupName="magento-web",
        DesiredCapacity=2,
    )
    await poll(
        lambda: web_group(aws),
        lambda g: lifecycles(g) == ["InService", "InService"],
        "the new instance to be InService",
    )
    (new,) = [
        i["InstanceId"] for i in (await web_group(aws))["Instances"] if i["InstanceId"] != old
    ]
    answer = await call(
        aws("elbv2", WEST),
        "describe_target_health",
        TargetGroupArn=target_group,
        Targets=[{"Id": new, "Port": 80}],
    )

    health = answer["TargetHealthDescriptions"][0]["TargetHealth"]
    assert health == {
        "State": "unhealthy",
        "Reason": "Target.FailedHealthChecks",
        "Description": "Health checks failed",
    }
    assert await target_states(aws, target_group) == {old: "healthy", new: "unhealthy"}
    dr.set_never_healthy(WEST, "magento-web", False)
    assert await target_states(aws, target_group) == {old: "healthy", new: "healthy"}


async def test_no_capacity_accepts_the_scale_up_but_launches_nothing(
    proxy: AwsFaultProxy, dr: AwsRegionalDr, aws: Clients
) -> None:
    await create_web_tier(aws, desired=1)
    await poll(
        lambda: web_group(aws),
        lambda g: lifecycles(g) == ["InService"],
        "the first instance to be InService",
    )
    asg = aws("autoscaling", WEST)
    blocked = await asyncio.to_thread(
        httpx.post,
        f"{proxy.url}/__faults__/dr/auto-scaling",
        json={"region": WEST, "group": "magento-web", "no_capacity": True},
    )
    assert blocked.status_code == 200

    await call(asg, "set_desired_capacity", AutoScalingGroupName="magento-web", DesiredCapacity=3)
    await call(asg, "update_auto_scaling_group", AutoScalingGroupName="magento-web", MinSize=2)
    held = await web_group(aws)
    failed = [a for a in await activities(aws) if a["StatusCode"] == "Failed"]

    assert held["DesiredCapacity"] == 3
    assert held["MinSize"] == 2
    assert len(held["Instances"]) == 1
    assert len(failed) == 2
    assert "We currently do not have sufficient m5.large capacity" in failed[0]["StatusMessage"]
    assert failed[0]["Description"].startswith("Launching a new EC2 instance.  Status Reason:")
    assert "increasing the capacity from 1 to 3" in failed[0]["Cause"]
    assert dr.auto_scaling_controls(WEST, "magento-web")["held_back_desired_capacity"] == 3

    await dr.set_no_capacity(WEST, "magento-web", False)
    launched = await web_group(aws)
    assert (launched["DesiredCapacity"], launched["MinSize"]) == (3, 2)
    assert lifecycles(launched) == ["InService", "Pending", "Pending"]
    await poll(
        lambda: web_group(aws),
        lambda g: lifecycles(g) == ["InService"] * 3,
        "the held-back instances to be InService",
    )


async def test_set_desired_capacity_is_validated_like_aws(aws: Clients) -> None:
    await create_web_tier(aws)
    asg = aws("autoscaling", WEST)

    above = await fails(
        asg, "set_desired_capacity", AutoScalingGroupName="magento-web", DesiredCapacity=9
    )
    missing = await fails(
        asg, "set_desired_capacity", AutoScalingGroupName="nope", DesiredCapacity=1
    )

    assert code_and_status(above) == ("ValidationError", 400)
    assert above.response["Error"]["Message"] == (
        "New SetDesiredCapacity value 9 is above max value 4 for the AutoScalingGroup."
    )
    assert code_and_status(missing) == ("ValidationError", 400)
    assert (await web_group(aws))["DesiredCapacity"] == 0


async def test_scaled_in_targets_drain_then_leave_the_target_group(aws: Clients) -> None:
    target_group = await create_web_tier(aws, desired=2)
    await poll(
        lambda: target_states(aws, target_group),
        lambda s: len(s) == 2 and set(s.values()) == {"healthy"},
        "both targets to be healthy",
    )
    before = set(await target_states(aws, target_group))

    await call(
        aws("autoscaling", WEST),
        "set_desired_capacity",
        AutoScalingGroupName="magento-web",
        DesiredCapacity=1,
    )
    (kept,) = [i["InstanceId"] for i in (await web_group(aws))["Instances"]]
    (gone,) = before - {kept}
    draining = await target_states(aws, target_group)
    seen = await poll(
        lambda: target_states(aws, target_group),
        lambda s: gone not in s,
        "the scaled-in target to finish draining",
    )

    assert draining == {kept: "healthy", gone: "draining"}
    assert seen[-1] == {kept: "healthy"}
    assert await target_states(aws, target_group, ids=[gone]) == {gone: "unused"}
    terminating = [a for a in await activities(aws) if a["Description"].startswith("Terminating")]
    assert [a["Description"] for a in terminating] == [f"Terminating EC2 instance: {gone}"]


# --------------------------------------------------------------------------- control API


async def test_control_api_impairs_regions_and_sets_timing(
    proxy: AwsFaultProxy, dr: AwsRegionalDr
) -> None:
    base = f"{proxy.url}/__faults__/dr"

    impaired = await asyncio.to_thread(
        httpx.post, f"{base}/impairment", json={"region": EAST, "impaired": True}
    )
    timing = await asyncio.to_thread(httpx.post, f"{base}/timing", json={"instance_launch_s": 0.25})
    state = (await asyncio.to_thread(httpx.get, base)).json()
    restored = await asyncio.to_thread(
        httpx.post, f"{base}/impairment", json={"region": EAST, "impaired": False}
    )

    assert impaired.json() == {"impaired_regions": [EAST]}
    assert timing.json()["instance_launch_s"] == 0.25
    assert dr.timing.instance_launch_s == 0.25
    assert state["impaired_regions"] == [EAST]
    assert state["timing"]["instance_launch_s"] == 0.25
    assert restored.json() == {"impaired_regions": []}
    assert dr.impaired_regions == frozenset()


async def test_moto_reset_through_the_proxy_resets_the_responder(
    proxy: AwsFaultProxy, dr: AwsRegionalDr
) -> None:
    dr.impair_region(WEST)
    dr.set_never_healthy(WEST, "magento-web")

    await asyncio.to_thread(httpx.post, f"{proxy.url}/moto-api/reset", timeout=10)

    assert dr.impaired_regions == frozenset()
    assert dr.auto_scaling_controls(WEST, "magento-web")["never_healthy"] is False


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/impairment", b"{not json", None),
        ("/impairment", b"[]", None),
        ("/impairment", {"impaired": True}, "region"),
        ("/impairment", {"region": "mars-1", "impaired": True}, "region"),
        ("/impairment", {"region": EAST}, "impaired"),
        ("/impairment", {"region": EAST, "impaired": "yes"}, "impaired"),
        ("/impairment", {"region": EAST, "impaired": True, "colour": 1}, "colour"),
        ("/replication-lag", {"seconds": 1}, "db_cluster_arn"),
        ("/replication-lag", {"db_cluster_arn": "shop-west", "seconds": 1}, "db_cluster_arn"),
        (
            "/replication-lag",
            {"db_cluster_arn": "arn:aws:rds:us-west-2:123456789012:cluster:w", "seconds": -1},
            "seconds",
        ),
        (
            "/replication-lag",
            {"db_cluster_arn": "arn:aws:rds:us-west-2:123456789012:cluster:w", "seconds": "2"},
            "seconds",
        ),
        ("/timing", {"instance_launch_s": -1}, "instance_launch_s"),
        ("/timing", {"instance_launch_s": True}, "instance_launch_s"),
        ("/timing", {"lag_publish_interval_s": 0}, "lag_publish_interval_s"),
        ("/timing", {"warp_speed": 1}, "warp_speed"),
        ("/auto-scaling", {"group": "web", "no_capacity": True}, "region"),
        ("/auto-scaling", {"region": WEST, "no_capacity": True}, "group"),
        ("/auto-scaling", {"region": WEST, "group": "web", "no_capacity": 1}, "no_capacity"),
        ("/auto-scaling", {"region": WEST, "group": "web"}, "never_healthy"),
    ],
)
async def test_control_api_rejects_bad_input_naming_the_field(
    proxy: AwsFaultProxy, dr: AwsRegionalDr, path: str, body: Any, field: str | None
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = await asyncio.to_thread(
        httpx.post,
        f"{proxy.url}/__faults__/dr{path}",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["field"] == field
    if field:
        assert field in response.json()["error"]
    assert dr.impaired_regions == frozenset()
    assert dr.timing.instance_launch_s == FAST["instance_launch_s"]


async def test_control_api_writer_paths_and_methods(proxy: AwsFaultProxy) -> None:
    base = f"{proxy.url}/__faults__/dr"

    no_name = await asyncio.to_thread(httpx.get, f"{base}/writer")
    unknown = await asyncio.to_thread(httpx.get, f"{base}/writer", params={"global_cluster": "x"})
    missing = await asyncio.to_thread(httpx.get, f"{base}/nope")
    wrong = await asyncio.to_thread(httpx.get, f"{base}/impairment")

    assert (no_name.status_code, no_name.json()["field"]) == (400, "global_cluster")
    assert unknown.status_code == 404
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


def test_python_controls_name_the_bad_field() -> None:
    dr = AwsRegionalDr()
    with pytest.raises(DrControlError) as bad_region:
        dr.impair_region("EAST")
    with pytest.raises(DrControlError) as bad_timing:
        dr.set_timing(global_cluster_promotion_s=float("nan"))
    assert bad_region.value.field == "region"
    assert bad_timing.value.field == "global_cluster_promotion_s"
