"""Where the switch points must be the expected cluster, before and after the switch.

The standby's nodes in the config answer as the right cluster, but the name traffic will
follow (the record's value, resolved through DNS as Magento resolves it) or the NLB's
target addresses lead to another cluster with the same cluster_name and another
cluster_uuid: a DNS mix-up, or a staging cluster restored from a production snapshot.
Real dev server, moto, the sandbox's DNS server and simulated clusters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from activities.aws import aws_client_factory
from failover.client.operations import start_failback, start_or_attach_failover
from failover.config import (
    AwsSettings,
    ClusterConfig,
    NlbSwitch,
    SearchPathCheck,
    Target,
    VerifySettings,
)
from failover.models import FailoverResult, Outcome
from sandbox.aws_fault_proxy import ForwardedCall
from sandbox.dns_server import Route53DnsServer
from sandbox.search_sim import FaultMode, SimulatedCluster, SimulatorFleet
from sandbox.stack import (
    PRIMARY_SIM,
    PRIMARY_VALUE,
    RECORD_NAME,
    STANDBY_HOSTS,
    STANDBY_SIM,
    STANDBY_VALUE,
)
from sandbox.waiting import wait_for
from tests.conftest import Stack

IMPOSTOR_HOSTS = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]


def _port(stack: Stack) -> int:
    return int(stack.fleet.clusters[STANDBY_SIM].node_urls[0].rsplit(":", 1)[1])


@pytest_asyncio.fixture
async def impostor(fleet: SimulatorFleet) -> AsyncIterator[SimulatedCluster]:
    """A cluster named like the standby, with its own cluster_uuid, on other addresses."""
    port = int(fleet.clusters[STANDBY_SIM].node_urls[0].rsplit(":", 1)[1])
    async with SimulatedCluster(
        STANDBY_SIM, hosts=IMPOSTOR_HOSTS, ports=[port] * 3, distribution="opensearch"
    ) as cluster:
        yield cluster


@pytest.fixture
def dns(stack: Stack) -> Iterator[Route53DnsServer]:
    """Answers from moto's Route 53 for this test's zone, as Magento's resolver would see it."""
    factory = aws_client_factory(AwsSettings(endpoint_url=stack.moto_url), "route53")
    with Route53DnsServer(factory, zone_ids=[stack.zone_id]) as server:
        yield server


def _route53(stack: Stack) -> Any:
    return aws_client_factory(AwsSettings(endpoint_url=stack.moto_url), "route53")()


async def _point_a_record(stack: Stack, name: str, addresses: list[str]) -> None:
    change = {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": "A",
            "TTL": 60,
            "ResourceRecords": [{"Value": a} for a in addresses],
        },
    }
    await asyncio.to_thread(
        _route53(stack).change_resource_record_sets,
        HostedZoneId=stack.zone_id,
        ChangeBatch={"Changes": [change]},
    )


def _with_search_path(stack: Stack, dns: Route53DnsServer) -> ClusterConfig:
    """The cluster as its user configures it: verify resolves Magento's search name through
    DNS, and each side's nodes must report its cluster_uuid."""
    cluster = stack.cluster
    fleet = stack.fleet.clusters
    check = SearchPathCheck(
        url=f"http://{RECORD_NAME.rstrip('.')}:{_port(stack)}/",
        nameserver=f"{dns.host}:{dns.port}",
        timeout_seconds=1.0,
    )
    return cluster.model_copy(
        update={
            "verify": VerifySettings(search_path=check),
            "primary": cluster.primary.model_copy(
                update={"expected_cluster_uuid": fleet[PRIMARY_SIM].cluster_uuid}
            ),
            "standby": cluster.standby.model_copy(
                update={"expected_cluster_uuid": fleet[STANDBY_SIM].cluster_uuid}
            ),
        }
    )


async def _fail_over(stack: Stack, cluster: ClusterConfig) -> FailoverResult:
    handle = await start_or_attach_failover(
        stack.client, cluster, task_queue=stack.task_queue, reason="primary down"
    )
    return await handle.result()


async def test_preflight_refuses_a_record_value_that_resolves_to_another_cluster(
    stack: Stack, dns: Route53DnsServer, impostor: SimulatedCluster
) -> None:
    cluster = _with_search_path(stack, dns)
    await _point_a_record(stack, STANDBY_VALUE + ".", IMPOSTOR_HOSTS)
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    result = await _fail_over(stack, cluster)
    assert result.result == Outcome.ABORTED, result.reason
    assert result.reason.startswith(
        f"aborted: preflight failed: {STANDBY_VALUE} resolves to cluster {STANDBY_SIM!r} "
        f"(cluster_uuid {impostor.cluster_uuid!r}) at 127.0.5."
    ), result.reason
    assert "expected cluster_uuid" in result.reason
    assert [(s.name, s.outcome) for s in result.steps][-1] == ("preflight", "refused")
    assert stack.record_values() == [PRIMARY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 0
    assert impostor.request_count > 0, "preflight must have asked the impostor who it is"


async def test_preflight_passes_when_the_record_value_leads_to_the_standby(
    stack: Stack, dns: Route53DnsServer, impostor: SimulatedCluster
) -> None:
    """The same set-up with DNS right: the check lets a real failover through."""
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    result = await _fail_over(stack, _with_search_path(stack, dns))
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert stack.record_values() == [STANDBY_VALUE]
    assert impostor.request_count == 0


async def test_preflight_looks_again_at_a_record_value_that_resolved_elsewhere_once(
    stack: Stack, dns: Route53DnsServer, impostor: SimulatedCluster
) -> None:
    """The name leads to the impostor at the first look, to the standby an interval later
    (a slow round, a DNS answer being fixed): preflight looks again before refusing."""
    cluster = _with_search_path(stack, dns)
    cluster = cluster.model_copy(
        update={"probe": cluster.probe.model_copy(update={"interval_seconds": 1.5})}
    )
    await _point_a_record(stack, STANDBY_VALUE + ".", IMPOSTOR_HOSTS)
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    handle = await start_or_attach_failover(
        stack.client, cluster, task_queue=stack.task_queue, reason="primary down"
    )

    async def asked() -> bool:
        return impostor.request_count > 0

    await wait_for(asked, what="preflight to ask the impostor", timeout_s=30)
    await _point_a_record(stack, STANDBY_VALUE + ".", STANDBY_HOSTS)
    result: FailoverResult = await handle.result()
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert stack.record_values() == [STANDBY_VALUE]


async def test_failback_preflight_refuses_a_primary_value_that_resolves_elsewhere(
    stack: Stack, dns: Route53DnsServer
) -> None:
    cluster = _with_search_path(stack, dns)
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    assert (await _fail_over(stack, cluster)).result == Outcome.FAILED_OVER
    await stack.fault(PRIMARY_SIM, FaultMode.HEALTHY)
    async with SimulatedCluster(
        PRIMARY_SIM, hosts=IMPOSTOR_HOSTS, ports=[_port(stack)] * 3
    ) as rebuilt:
        await _point_a_record(stack, PRIMARY_VALUE + ".", IMPOSTOR_HOSTS)
        handle = await start_failback(
            stack.client, cluster, task_queue=stack.task_queue, reason="primary repaired"
        )
        result = await handle.result()
    assert result.result == Outcome.ABORTED, result.reason
    assert result.reason.startswith(
        f"aborted: preflight failed: {PRIMARY_VALUE} resolves to cluster {PRIMARY_SIM!r} "
        f"(cluster_uuid {rebuilt.cluster_uuid!r})"
    ), result.reason
    assert stack.record_values() == [STANDBY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 1


async def test_verify_rolls_back_when_the_switched_name_leads_to_another_cluster_uuid(
    stack: Stack, dns: Route53DnsServer, impostor: SimulatedCluster
) -> None:
    """Preflight saw the standby; right after the switch the name leads elsewhere (same
    cluster_name): verify through the switched path must catch it by cluster_uuid."""
    cluster = _with_search_path(stack, dns)
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    moved: list[bool] = []

    async def repoint_after_switch(call: ForwardedCall) -> None:
        if STANDBY_VALUE.encode() in call.request_body and not moved:
            moved.append(True)
            await _point_a_record(stack, STANDBY_VALUE + ".", IMPOSTOR_HOSTS)

    stack.proxy.on_forwarded("ChangeResourceRecordSets", repoint_after_switch)
    result = await _fail_over(stack, cluster)
    assert moved == [True], result.reason
    assert result.result == Outcome.ROLLED_BACK, result.reason
    assert result.reason.startswith("rolled back: verify failed: search path failed: "), (
        result.reason
    )
    assert f"expected cluster_uuid {stack.fleet.clusters[STANDBY_SIM].cluster_uuid!r}" in (
        result.reason
    )
    verify = next(s for s in result.steps if s.name == "verify")
    assert (verify.outcome, verify.detail) == (
        "failed",
        result.reason.removeprefix("rolled back: "),
    )
    assert stack.record_values() == [PRIMARY_VALUE]


async def test_nlb_preflight_refuses_target_addresses_of_another_cluster(
    nlb_stack: Stack, impostor: SimulatedCluster
) -> None:
    """The standby's nodes are right, but the targets to register are the impostor's."""
    stack = nlb_stack
    cluster = stack.cluster
    switch = cluster.switch
    assert isinstance(switch, NlbSwitch)
    wrong = [Target(id=host, port=_port(stack)) for host in IMPOSTOR_HOSTS]
    cluster = cluster.model_copy(
        update={
            "switch": switch.model_copy(update={"standby_targets": wrong}),
            "standby": cluster.standby.model_copy(
                update={"expected_cluster_uuid": stack.fleet.clusters[STANDBY_SIM].cluster_uuid}
            ),
        }
    )
    before = stack.registered_targets()
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    result = await _fail_over(stack, cluster)
    assert result.result == Outcome.ABORTED, result.reason
    assert result.reason.startswith(
        f"aborted: preflight failed: target 127.0.5.1 answers as cluster {STANDBY_SIM!r} "
        f"(cluster_uuid {impostor.cluster_uuid!r}), not the standby: wrong cluster"
    ), result.reason
    assert stack.registered_targets() == before
    assert stack.proxy.count("RegisterTargets") == 0
