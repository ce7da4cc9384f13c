"""The pure decision functions, each reason asserted by its stable words."""

from __future__ import annotations

import pytest

from failover import decisions
from failover.config import Route53Switch, Target
from failover.models import NodeProbe, TargetState

GREEN = {"http_status": 200, "cluster_name": "es-a", "health_status": "green", "timed_out": False}


def node(url: str = "http://n1", **fields: object) -> NodeProbe:
    return NodeProbe(url=url, **(GREEN | fields))


def problem(probe: NodeProbe, *, expected: str | None = "es-a", yellow: str = "degraded"):
    return decisions.node_problem(probe, expected_cluster_name=expected, yellow_policy=yellow)


@pytest.mark.parametrize(
    ("fields", "prefix"),
    [
        ({"error": "connection failed: refused"}, "unreachable: connection failed"),
        ({"error": "timeout after 1s (ReadTimeout)"}, "unreachable: timeout"),
        (
            {"http_status": 503, "error_type": "master_not_discovered_exception"},
            "http error: HTTP 503",
        ),
        ({"http_status": 500}, "http error: HTTP 500"),
        ({"http_status": 401}, "auth rejected: HTTP 401"),
        ({"http_status": 403}, "auth rejected: HTTP 403"),
        ({"health_status": "red"}, "status red"),
        ({"timed_out": True}, "health timed out"),
        ({"cluster_name": "es-impostor"}, "wrong cluster: expected cluster_name 'es-a'"),
        ({"health_status": "purple"}, "bad answer"),
    ],
)
def test_node_problems(fields: dict, prefix: str) -> None:
    reason = problem(node(**fields))
    assert reason is not None and reason.startswith(prefix), reason


def test_green_node_is_healthy() -> None:
    assert problem(node()) is None


def test_yellow_is_degraded_not_failing_by_default() -> None:
    assert problem(node(health_status="yellow")) is None
    reason = problem(node(health_status="yellow"), yellow="failing")
    assert reason is not None and reason.startswith("status yellow")


def test_cluster_name_not_checked_when_not_configured() -> None:
    assert problem(node(cluster_name="anything"), expected=None) is None


def test_side_is_down_only_when_no_node_can_serve() -> None:
    assert decisions.side_down_reason({"a": "unreachable: x", "b": None}) is None
    reason = decisions.side_down_reason({"a": "unreachable: x", "b": "status red: y"})
    assert reason == "all 2 nodes failing: a unreachable: x; b status red: y"
    assert decisions.side_down_reason({}) == "no nodes probed"


DOWN = {"a": "unreachable: refused", "b": "unreachable: refused"}
UP = {"a": None, "b": "unreachable: refused"}


def test_confirmation_needs_every_round_down() -> None:
    assert decisions.confirmation_refusal([DOWN, DOWN, DOWN], 3) is None
    refusal = decisions.confirmation_refusal([DOWN, DOWN], 3)
    assert refusal == "not confirmed: only 2 of 3 probe rounds ran"
    refusal = decisions.confirmation_refusal([DOWN, UP], 3)
    assert refusal is not None and refusal.startswith(
        "not confirmed: active side healthy in probe round 2"
    )
    refusal = decisions.confirmation_refusal([DOWN, UP, DOWN], 3)
    assert refusal == (
        "not confirmed: active side healthy in probe round 2 of 3 (1 of 2 nodes answer)"
    )


def test_auth_errors_never_confirm_a_failover() -> None:
    auth = {"a": "auth rejected: HTTP 401 (check the credentials in config)"}
    refusal = decisions.confirmation_refusal([auth, auth], 2)
    assert refusal is not None
    assert refusal.startswith("not confirmed: auth rejected")
    assert "not a reason to fail over" in refusal


def test_preflight() -> None:
    assert decisions.preflight_refusal(UP, "standby") is None
    refusal = decisions.preflight_refusal(DOWN, "standby")
    assert refusal is not None and refusal.startswith("preflight failed: standby is not healthy")
    wrong = {"a": None, "b": "wrong cluster: expected cluster_name 'es-b', node reports 'x'"}
    refusal = decisions.preflight_refusal(wrong, "standby")
    assert refusal is not None and refusal.startswith(
        "preflight failed: standby node b wrong cluster"
    )


SWITCH = Route53Switch(
    type="route53",
    hosted_zone_id="Z1",
    record_name="search.shop.internal",
    primary_value="es-a.shop.internal",
    standby_value="es-b.shop.internal",
)


def test_active_side_is_read_from_the_record() -> None:
    assert decisions.active_side(["es-a.shop.internal."], SWITCH) == ("primary", None)
    assert decisions.active_side(["ES-B.shop.internal"], SWITCH) == ("standby", None)
    side, reason = decisions.active_side(["elsewhere.example"], SWITCH)
    assert side is None and "neither the primary nor the standby" in reason
    side, reason = decisions.active_side([], SWITCH)
    assert side is None and "does not exist" in reason
    side, reason = decisions.active_side(["a", "b"], SWITCH)
    assert side is None and "holds 2 values" in reason


def test_record_problem() -> None:
    assert decisions.record_problem(["es-b.shop.internal."], "es-b.shop.internal") is None
    reason = decisions.record_problem(["es-a.shop.internal"], "es-b.shop.internal")
    assert reason is not None and reason.startswith("verify failed: record holds")


PRIMARY_TARGETS = [Target(id="127.0.1.1", port=9200), Target(id="127.0.1.2", port=9200)]
STANDBY_TARGETS = [Target(id="127.0.2.1", port=9200)]


def states(*entries: tuple[str, str]) -> list[TargetState]:
    return [TargetState(id=i, port=9200, state=s) for i, s in entries]


def test_active_target_side_reads_the_registrations() -> None:
    primary = states(("127.0.1.1", "healthy"), ("127.0.1.2", "unhealthy"))
    assert decisions.active_target_side(primary, PRIMARY_TARGETS, STANDBY_TARGETS) == (
        "primary",
        None,
    )
    # Draining and unused targets take no new connections: they do not count.
    standby = states(("127.0.2.1", "healthy"), ("127.0.1.1", "draining"))
    assert decisions.active_target_side(standby, PRIMARY_TARGETS, STANDBY_TARGETS) == (
        "standby",
        None,
    )
    both = states(("127.0.1.1", "healthy"), ("127.0.1.2", "healthy"), ("127.0.2.1", "healthy"))
    side, reason = decisions.active_target_side(both, PRIMARY_TARGETS, STANDBY_TARGETS)
    assert side is None and "refusing to guess" in reason
    side, reason = decisions.active_target_side([], PRIMARY_TARGETS, STANDBY_TARGETS)
    assert side is None and reason.startswith("registered targets (none)")


def test_targets_problem() -> None:
    assert decisions.targets_problem(states(("127.0.2.1", "healthy")), STANDBY_TARGETS) is None
    reason = decisions.targets_problem(states(("127.0.2.1", "initial")), STANDBY_TARGETS)
    assert reason == "verify failed: targets not healthy: 127.0.2.1:9200 initial"
    reason = decisions.targets_problem(states(("127.0.1.1", "healthy")), STANDBY_TARGETS)
    assert reason is not None and reason.startswith("verify failed: registered targets are")


BROKEN = "We can't find products matching the selection."
FOUND = {"data": {"products": {"total_count": 3, "items": [{"sku": "24-MB01"}]}}}


def storefront(**overrides: object) -> str | None:
    arguments = {
        "search_status": 200,
        "search_body": FOUND,
        "category_status": 200,
        "category_body": "<ul data-product-count=3>",
        "broken_marker": BROKEN,
    } | overrides
    return decisions.storefront_problem(**arguments)


def test_storefront_problem() -> None:
    assert storefront() is None
    assert storefront(category_status=None, category_body=None) is None
    no_nodes = {"errors": [{"message": "No alive nodes found in your cluster"}], "data": None}
    assert storefront(search_body=no_nodes) == (
        "storefront failed: GraphQL search error: No alive nodes found in your cluster"
    )
    empty = {"data": {"products": {"total_count": 0, "items": []}}}
    assert storefront(search_body=empty) == "storefront failed: GraphQL search returned 0 products"
    assert storefront(search_status=502) == "storefront failed: GraphQL search answered HTTP 502"
    assert storefront(category_body=f"<p>{BROKEN}</p>") == (
        "storefront failed: category page still shows the page cached during the outage"
    )
    assert storefront(category_status=503) == "storefront failed: category page answered HTTP 503"
