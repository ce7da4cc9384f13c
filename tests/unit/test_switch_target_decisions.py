"""Preflight of where the switch will point: what is probed, and when it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from failover import decisions
from failover.config import ClusterConfig
from failover.models import NodeProbe, ResolvedProbe, SwitchTargetProbe

GOOD = {"http_status": 200, "cluster_name": "es-b", "cluster_uuid": "uuid-b"}


def answer(address: str, **fields: object) -> NodeProbe:
    return NodeProbe(url=f"http://{address}:9200/", **(GOOD | {"health_status": "green"} | fields))


def resolved(name: str, *nodes: tuple[str, dict[str, Any]]) -> ResolvedProbe:
    return ResolvedProbe(
        name=name,
        addresses=[address for address, _ in nodes],
        nodes=[answer(address, **fields) for address, fields in nodes],
    )


def refusal(*targets: ResolvedProbe, uuid: str | None = "uuid-b") -> str | None:
    return decisions.switch_target_refusal(
        SwitchTargetProbe(targets=list(targets)),
        "standby",
        expected_cluster_name="es-b",
        expected_cluster_uuid=uuid,
        yellow_policy="degraded",
    )


def cluster(switch: dict[str, Any], verify: dict[str, Any] | None = None) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "name": "catalog",
            "primary": {"nodes": ["http://10.0.1.1:9200"], "expected_cluster_name": "es-a"},
            "standby": {"nodes": ["https://10.0.2.1:9243"], "expected_cluster_name": "es-b"},
            "switch": switch,
            "verify": verify or {},
        }
    )


DNS = {
    "type": "route53",
    "hosted_zone_id": "Z123",
    "record_name": "search.shop.internal",
    "primary_value": "es-a.shop.internal",
    "standby_value": "es-b.shop.internal",
}
NLB = {
    "type": "nlb",
    "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/s/1",
    "primary_targets": [{"id": "10.0.1.1", "port": 9200}],
    "standby_targets": [{"id": "10.0.2.1", "port": 9200}, {"id": "i-0abc", "port": 9200}],
}


def test_the_standby_answering_where_the_name_resolves_passes() -> None:
    assert refusal(resolved("es-b.shop.internal", ("10.0.2.1", {}), ("10.0.2.2", {}))) is None


def test_same_cluster_name_other_uuid_is_refused_naming_what_answered() -> None:
    reason = refusal(
        resolved("es-b.shop.internal", ("10.0.2.1", {}), ("10.9.0.1", {"cluster_uuid": "uuid-x"}))
    )
    assert reason == (
        "preflight failed: es-b.shop.internal resolves to cluster 'es-b' (cluster_uuid "
        "'uuid-x') at 10.9.0.1, not the standby: wrong cluster: expected cluster_uuid "
        "'uuid-b', node reports 'uuid-x'"
    )


def test_uuid_is_only_compared_when_configured() -> None:
    assert refusal(resolved("es-b", ("10.9.0.1", {"cluster_uuid": "uuid-x"})), uuid=None) is None


def test_another_cluster_name_at_a_target_address_is_refused() -> None:
    reason = refusal(resolved("10.9.0.1", ("10.9.0.1", {"cluster_name": "es-staging"})))
    assert reason is not None
    assert reason.startswith(
        "preflight failed: target 10.9.0.1 answers as cluster 'es-staging' (cluster_uuid "
        "'uuid-b'), not the standby: wrong cluster: expected cluster_name 'es-b'"
    )


@pytest.mark.parametrize(
    ("probe", "prefix"),
    [
        (
            ResolvedProbe(name="es-b.shop.internal", error="NXDOMAIN: no such name"),
            "preflight failed: cannot resolve es-b.shop.internal: NXDOMAIN",
        ),
        (
            ResolvedProbe(name="es-b.shop.internal"),
            "preflight failed: es-b.shop.internal resolves to no address",
        ),
        (
            resolved("es-b", ("10.0.2.1", {"http_status": 401})),
            "preflight failed: es-b at 10.0.2.1 auth rejected: HTTP 401",
        ),
        (
            resolved("es-b", ("10.0.2.1", {"error": "connection failed: refused"})),
            "preflight failed: no standby serving search where the switch points: all 1 nodes",
        ),
    ],
)
def test_what_cannot_be_trusted_is_refused(probe: ResolvedProbe, prefix: str) -> None:
    reason = refusal(probe)
    assert reason is not None and reason.startswith(prefix), reason


def test_one_address_down_of_several_is_not_a_refusal() -> None:
    """As for the side's nodes: a side serves while any of them does."""
    probe = resolved(
        "es-b", ("10.0.2.1", {"error": "connection failed: refused"}), ("10.0.2.2", {})
    )
    assert refusal(probe) is None


def test_route53_probes_the_record_value_through_the_search_paths_resolver() -> None:
    config = cluster(
        DNS,
        {"search_path": {"url": "http://search.shop.internal:9200/", "nameserver": "10.0.0.2:53"}},
    )
    request = decisions.switch_target_request(config, "standby")
    assert request is not None
    assert [(e.name, e.port) for e in request.endpoints] == [("es-b.shop.internal", 9200)]
    assert (request.scheme, request.host_header, request.nameserver) == (
        "http",
        "search.shop.internal:9200",
        "10.0.0.2:53",
    )
    assert request.side == config.standby
    failback = decisions.switch_target_request(config, "primary")
    assert failback is not None and failback.endpoints[0].name == "es-a.shop.internal"


def test_route53_without_a_search_path_probes_only_the_nodes() -> None:
    assert decisions.switch_target_request(cluster(DNS), "standby") is None


def test_nlb_probes_the_ip_targets_it_will_register() -> None:
    request = decisions.switch_target_request(cluster(NLB), "standby")
    assert request is not None
    # The instance target has no address to ask; the side's scheme comes from its nodes.
    assert [(e.name, e.port) for e in request.endpoints] == [("10.0.2.1", 9200)]
    assert (request.scheme, request.host_header, request.nameserver) == ("https", None, None)
