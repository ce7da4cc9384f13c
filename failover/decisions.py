"""Every decision the failover makes, as small pure functions.

Each returns a reason string when something is wrong (or an action is refused) and
None when all is well. The reasons start with stable words that logs, results and
tests match on; the rest of the sentence is for the person reading it at 3 a.m.
Workflows call these directly: they are deterministic and do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from failover.config import Route53Switch
from failover.models import NodeProbe, Side

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


def verify_problem(
    record_values: Sequence[str], expected_value: str, side_problems: dict[str, str | None]
) -> str | None:
    """None when the record holds the new value and the new side serves search."""
    if [normalise_record_value(v) for v in record_values] != [
        normalise_record_value(expected_value)
    ]:
        return f"verify failed: record holds {list(record_values)}, expected [{expected_value!r}]"
    down = side_down_reason(side_problems)
    if down is not None:
        return f"verify failed: new side not serving: {down}"
    return None
