"""Every decision the failover makes, as small pure functions.

Each returns a reason string when something is wrong (or an action is refused) and
None when all is well. The reasons start with stable words that logs, results and
tests match on; the rest of the sentence is for the person reading it at 3 a.m.
Workflows call these directly: they are deterministic and do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from failover.config import Route53Switch, Target
from failover.models import NodeProbe, Side, TargetState

YellowPolicy = Literal["degraded", "failing"]

# Stable reason prefixes.
UNREACHABLE = "unreachable"
HTTP_ERROR = "http error"
AUTH_REJECTED = "auth rejected"
WRONG_CLUSTER = "wrong cluster"
STATUS_RED = "status red"
STATUS_YELLOW = "status yellow"
HEALTH_TIMED_OUT = "health timed out"
BAD_ANSWER = "bad answer"


def node_problem(
    probe: NodeProbe, *, expected_cluster_name: str | None, yellow_policy: YellowPolicy
) -> str | None:
    """Why this node cannot be trusted to serve search, or None when it can."""
    if probe.error is not None:
        return f"{UNREACHABLE}: {probe.error}"
    if probe.http_status in (401, 403):
        return f"{AUTH_REJECTED}: HTTP {probe.http_status} (check the credentials in config)"
    if probe.http_status is not None and probe.http_status >= 400:
        detail = f" {probe.error_type}" if probe.error_type else ""
        return f"{HTTP_ERROR}: HTTP {probe.http_status}{detail}"
    if expected_cluster_name is not None and probe.cluster_name != expected_cluster_name:
        return (
            f"{WRONG_CLUSTER}: expected cluster_name {expected_cluster_name!r}, "
            f"node reports {probe.cluster_name!r}"
        )
    if probe.timed_out:
        return f"{HEALTH_TIMED_OUT}: _cluster/health answered timed_out=true"
    if probe.health_status == "red":
        return f"{STATUS_RED}: a primary shard is unassigned"
    if probe.health_status == "yellow":
        if yellow_policy == "failing":
            return f"{STATUS_YELLOW}: replicas unassigned and config treats yellow as failing"
        return None
    if probe.health_status != "green":
        return f"{BAD_ANSWER}: unexpected health status {probe.health_status!r}"
    return None


def node_problems(
    probes: Sequence[NodeProbe], *, expected_cluster_name: str | None, yellow_policy: YellowPolicy
) -> dict[str, str | None]:
    return {
        p.url: node_problem(
            p, expected_cluster_name=expected_cluster_name, yellow_policy=yellow_policy
        )
        for p in probes
    }


def _summarise(problems: dict[str, str | None]) -> str:
    return "; ".join(f"{url} {reason}" for url, reason in problems.items() if reason)


def side_down_reason(problems: dict[str, str | None]) -> str | None:
    """A side is down when no node can serve search; None while at least one node can."""
    if not problems:
        return "no nodes probed"
    if any(reason is None for reason in problems.values()):
        return None
    return f"all {len(problems)} nodes failing: {_summarise(problems)}"


def confirmation_refusal(
    round_problems: Sequence[dict[str, str | None]], threshold: int
) -> str | None:
    """None when the active side failed every one of the last `threshold` rounds.

    An auth error is a configuration mistake, never a reason to fail over: switching
    would only move the same broken credentials to the other cluster.
    """
    for index, problems in enumerate(round_problems[-threshold:], start=1):
        auth = [r for r in problems.values() if r and r.startswith(AUTH_REJECTED)]
        if auth:
            return f"not confirmed: {auth[0]}; a credentials problem is not a reason to fail over"
        if side_down_reason(problems) is None:
            healthy = [url for url, reason in problems.items() if reason is None]
            return (
                f"not confirmed: active side healthy in probe round {index} of {threshold} "
                f"({len(healthy)} of {len(problems)} nodes answer)"
            )
    if len(round_problems) < threshold:
        return f"not confirmed: only {len(round_problems)} of {threshold} probe rounds ran"
    return None


def preflight_refusal(problems: dict[str, str | None], target: Side) -> str | None:
    """None when the side we would switch to is fit to take the traffic."""
    for url, reason in problems.items():
        if reason and (reason.startswith(WRONG_CLUSTER) or reason.startswith(AUTH_REJECTED)):
            return f"preflight failed: {target} node {url} {reason}"
    down = side_down_reason(problems)
    if down is not None:
        return f"preflight failed: {target} is not healthy: {down}"
    return None


def normalise_record_value(value: str) -> str:
    return value.rstrip(".").lower()


def active_side(values: Sequence[str], switch: Route53Switch) -> tuple[Side | None, str | None]:
    """Which side the record sends traffic to now, or a reason why that cannot be told."""
    if not values:
        return None, f"record {switch.record_name} {switch.record_type} does not exist"
    if len(values) != 1:
        return None, f"record {switch.record_name} holds {len(values)} values, expected one"
    value = normalise_record_value(values[0])
    if value == normalise_record_value(switch.primary_value):
        return "primary", None
    if value == normalise_record_value(switch.standby_value):
        return "standby", None
    return None, (
        f"record {switch.record_name} points at {values[0]!r}, which is neither the primary "
        f"nor the standby value; refusing to guess"
    )


def record_problem(record_values: Sequence[str], expected_value: str) -> str | None:
    """None when the record holds exactly the value we switched to."""
    if [normalise_record_value(v) for v in record_values] != [
        normalise_record_value(expected_value)
    ]:
        return f"verify failed: record holds {list(record_values)}, expected [{expected_value!r}]"
    return None


REGISTERED_STATES = frozenset({"initial", "healthy", "unhealthy", "unavailable"})


def _registered(states: Sequence[TargetState]) -> set[tuple[str, int]]:
    """Targets that take (or are about to take) new connections: not draining, not gone."""
    return {(s.id, s.port) for s in states if s.state in REGISTERED_STATES}


def _keys(targets: Sequence[Target]) -> set[tuple[str, int]]:
    return {t.key() for t in targets}


def _listed(keys: set[tuple[str, int]]) -> str:
    return ", ".join(f"{i}:{p}" for i, p in sorted(keys)) or "none"


def active_target_side(
    states: Sequence[TargetState], primary: Sequence[Target], standby: Sequence[Target]
) -> tuple[Side | None, str | None]:
    """Which target set the NLB sends traffic to now, or why that cannot be told."""
    registered = _registered(states)
    if registered == _keys(primary):
        return "primary", None
    if registered == _keys(standby):
        return "standby", None
    return None, (
        f"registered targets ({_listed(registered)}) are neither exactly the primary "
        f"({_listed(_keys(primary))}) nor the standby ({_listed(_keys(standby))}); "
        f"refusing to guess"
    )


def targets_problem(states: Sequence[TargetState], expected: Sequence[Target]) -> str | None:
    """None when exactly the expected targets are registered and all of them are healthy."""
    registered = _registered(states)
    if registered != _keys(expected):
        return (
            f"verify failed: registered targets are {_listed(registered)}, "
            f"expected {_listed(_keys(expected))}"
        )
    sick = [
        f"{s.id}:{s.port} {s.state}"
        for s in states
        if s.state in REGISTERED_STATES and s.state != "healthy"
    ]
    if sick:
        return f"verify failed: targets not healthy: {', '.join(sick)}"
    return None


def storefront_problem(
    *,
    search_status: int,
    search_body: object,
    category_status: int | None,
    category_body: str | None,
    broken_marker: str,
) -> str | None:
    """None when a storefront search returns products and the category page is not broken."""
    if search_status != 200 or not isinstance(search_body, dict):
        return f"storefront failed: GraphQL search answered HTTP {search_status}"
    errors = search_body.get("errors")
    if errors:
        message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
        return f"storefront failed: GraphQL search error: {message}"
    products = (search_body.get("data") or {}).get("products") or {}
    total = products.get("total_count")
    if not total:
        return f"storefront failed: GraphQL search returned {total!r} products"
    if category_status is not None:
        if category_status != 200:
            return f"storefront failed: category page answered HTTP {category_status}"
        if category_body is not None and broken_marker in category_body:
            return "storefront failed: category page still shows the page cached during the outage"
    return None
