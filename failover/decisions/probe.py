"""Is a node, a side, what the switch points at fit to serve search: the probes' verdicts,
the confirmation of an outage and the preflight of the side traffic would move to."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from typing import Literal

from failover.config import (
    ClusterConfig,
    Route53Switch,
)
from failover.models import (
    NodeProbe,
    Side,
    SwitchEndpoint,
    SwitchTargetProbe,
    SwitchTargetRequest,
)

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
INDEX_MISSING = "storefront index missing"


def node_problem(
    probe: NodeProbe,
    *,
    expected_cluster_name: str | None,
    yellow_policy: YellowPolicy,
    expected_cluster_uuid: str | None = None,
) -> str | None:
    """Why this node cannot be trusted to serve search, or None when it can."""
    if probe.error is not None:
        # `bad answer: …` (not JSON, say): the node did answer, so it is not unreachable.
        return (
            probe.error if probe.error.startswith(BAD_ANSWER) else f"{UNREACHABLE}: {probe.error}"
        )
    if probe.http_status in (401, 403):
        return f"{AUTH_REJECTED}: HTTP {probe.http_status} (check the credentials in config)"
    scoped_answer = probe.health_scope is not None and probe.http_status == 408
    if probe.http_status is not None and probe.http_status >= 400 and not scoped_answer:
        detail = f" {probe.error_type}" if probe.error_type else ""
        return f"{HTTP_ERROR}: HTTP {probe.http_status}{detail}"
    if expected_cluster_name is not None and probe.cluster_name != expected_cluster_name:
        return (
            f"{WRONG_CLUSTER}: expected cluster_name {expected_cluster_name!r}, "
            f"node reports {probe.cluster_name!r}"
        )
    if (
        expected_cluster_uuid is not None
        and probe.cluster_uuid is not None
        and probe.cluster_uuid != expected_cluster_uuid
    ):
        return (
            f"{WRONG_CLUSTER}: expected cluster_uuid {expected_cluster_uuid!r}, "
            f"node reports {probe.cluster_uuid!r}"
        )
    if probe.timed_out and probe.health_scope is not None:
        return (
            f"{INDEX_MISSING}: the storefront's indices ({probe.health_scope}) are not all "
            f"there (_cluster/health answered timed_out=true: an alias or index is missing)"
        )
    if probe.timed_out:
        return f"{HEALTH_TIMED_OUT}: _cluster/health answered timed_out=true"
    if probe.health_status == "red" and probe.health_scope is not None:
        return f"{STATUS_RED}: a primary shard of the storefront's indices is unassigned"
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
    probes: Sequence[NodeProbe],
    *,
    expected_cluster_name: str | None,
    yellow_policy: YellowPolicy,
    expected_cluster_uuid: str | None = None,
) -> dict[str, str | None]:
    return {
        p.url: node_problem(
            p,
            expected_cluster_name=expected_cluster_name,
            yellow_policy=yellow_policy,
            expected_cluster_uuid=expected_cluster_uuid,
        )
        for p in probes
    }


# How a probe words a connection that was never made (`connection_failure`): a refusal and
# a missing route are named, so they can be told from a silence by their prefix.
CONNECTION_FAILED = "connection failed"
REFUSED = "refused"
NO_ROUTE_TO_HOST = "no route to host"
NETWORK_UNREACHABLE = "network unreachable"
REFUSALS: dict[int, str] = {
    errno.ECONNREFUSED: REFUSED,
    errno.EHOSTUNREACH: NO_ROUTE_TO_HOST,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
}


def connection_failure(os_errno: int | None, detail: str) -> str:
    """A probe's error for a connection that was not made, e.g. `connection failed: refused:
    [Errno 111] Connect call failed ('10.0.0.5', 9200)`: the operating system's answer
    (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH) named when it is one, plain otherwise."""
    kind = REFUSALS.get(os_errno) if os_errno is not None else None
    return f"{CONNECTION_FAILED}: {kind}: {detail}" if kind else f"{CONNECTION_FAILED}: {detail}"


def refused_connection(problem: str | None) -> bool:
    """Whether a node's problem is a refused connection or a missing route: an answer from
    the network that nothing listens there, the same at once as after a minute. A timeout
    (slow, partitioned or overloaded), an HTTP error, red, another cluster or rejected
    credentials are not: they may pass, or say nothing of the node itself."""
    if problem is None:
        return False
    return any(
        problem.startswith(f"{UNREACHABLE}: {CONNECTION_FAILED}: {kind}: ")
        for kind in REFUSALS.values()
    )


def all_refused(problems: dict[str, str | None]) -> bool:
    """Every node of a side refused the connection or had no route (see `refused_connection`):
    the unambiguous evidence the monitors may confirm an outage on by its length alone."""
    return bool(problems) and all(refused_connection(reason) for reason in problems.values())


def defer_to_data(problems: dict[str, str | None]) -> dict[str, str | None]:
    """For the side traffic moves to: a node that answers but misses one of the storefront's
    aliases is judged by the data checks (which name the alias, and which an operator may
    accept), not counted as a failing node."""
    return {
        url: None if reason is not None and reason.startswith(INDEX_MISSING) else reason
        for url, reason in problems.items()
    }


def summarise_problems(problems: dict[str, str | None]) -> str:
    return "; ".join(f"{url} {reason}" for url, reason in problems.items() if reason)


def side_down_reason(problems: dict[str, str | None], down_share: float = 1.0) -> str | None:
    """A side is down when at least `down_share` of its nodes fail (default: every node).

    "No master" needs no rule of its own: without an elected master every node answers
    _cluster/health with 503, so every node fails.
    """
    if not problems:
        return "no nodes probed"
    failing = sum(1 for reason in problems.values() if reason is not None)
    # A hair of slack: 0.56 * 25 is 14.000000000000002 in floating point, not 14.
    if failing == 0 or failing < down_share * len(problems) - 1e-9:
        return None
    if failing == len(problems):
        return f"all {len(problems)} nodes failing: {summarise_problems(problems)}"
    return (
        f"{failing} of {len(problems)} nodes failing (down_share {down_share:g}): "
        f"{summarise_problems(problems)}"
    )


def confirmation_refusal(
    round_problems: Sequence[dict[str, str | None]], threshold: int, down_share: float = 1.0
) -> str | None:
    """None when the active side failed every one of the last `threshold` rounds.

    An auth error is a configuration mistake, never a reason to fail over: switching
    would only move the same broken credentials to the other cluster.
    """
    for index, problems in enumerate(round_problems[-threshold:], start=1):
        auth = [r for r in problems.values() if r and r.startswith(AUTH_REJECTED)]
        if auth:
            return f"not confirmed: {auth[0]}; a credentials problem is not a reason to fail over"
        if side_down_reason(problems, down_share) is None:
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


def switch_target_request(cluster: ClusterConfig, target: Side) -> SwitchTargetRequest | None:
    """What preflight probes as the place traffic will follow, or None when nothing more
    can be probed than the target's nodes.

    Route 53: the record's value for `target`, resolved the way verify resolves Magento's
    search name (so only where `verify.search_path` says how: its DNS server, port and
    scheme). NLB: the target addresses it will register (instance targets have none).
    """
    side = cluster.side(target)
    path = cluster.verify.search_path
    scheme = path.url.scheme if path is not None else side.nodes[0].scheme
    host_header = None
    if path is not None and path.url.host is not None:
        host_header = f"{path.url.host}:{path.url.port}" if path.url.port else path.url.host
    switch = cluster.switch
    if isinstance(switch, Route53Switch):
        if path is None:
            return None
        value = switch.primary_value if target == "primary" else switch.standby_value
        endpoints = [SwitchEndpoint(name=value, port=path.url.port or 80)]
    else:
        targets = switch.primary_targets if target == "primary" else switch.standby_targets
        endpoints = [SwitchEndpoint(name=t.id, port=t.port) for t in targets if _is_address(t.id)]
        if not endpoints:
            return None
    return SwitchTargetRequest(
        endpoints=endpoints,
        scheme=scheme,
        host_header=host_header,
        nameserver=path.nameserver if path is not None else None,
        side=side,
        timeout_seconds=path.timeout_seconds if path is not None else cluster.probe.timeout_seconds,
    )


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def switch_target_refusal(
    probe: SwitchTargetProbe,
    target: Side,
    *,
    expected_cluster_name: str | None,
    expected_cluster_uuid: str | None,
    yellow_policy: YellowPolicy,
) -> str | None:
    """None when what the switch will point at answers as the expected `target` cluster.

    Judged like the target's nodes: any answer from another cluster (name, or uuid when
    configured) or with rejected credentials refuses; so does a name that does not resolve,
    and one where no address serves search.
    """
    problems: dict[str, str | None] = {}
    for resolved in probe.targets:
        name = resolved.name
        if resolved.error is not None:
            return f"preflight failed: cannot resolve {name}: {resolved.error}"
        if not resolved.nodes:
            return f"preflight failed: {name} resolves to no address"
        for address, node in zip(resolved.addresses, resolved.nodes, strict=True):
            reason = node_problem(
                node,
                expected_cluster_name=expected_cluster_name,
                expected_cluster_uuid=expected_cluster_uuid,
                yellow_policy=yellow_policy,
            )
            if reason is not None and reason.startswith(WRONG_CLUSTER):
                found = f"cluster {node.cluster_name!r} (cluster_uuid {node.cluster_uuid!r})"
                where = (
                    f"target {address} answers as {found}"
                    if name == address
                    else f"{name} resolves to {found} at {address}"
                )
                return f"preflight failed: {where}, not the {target}: {reason}"
            if reason is not None and reason.startswith(AUTH_REJECTED):
                return f"preflight failed: {name} at {address} {reason}"
            problems[f"{name} ({address})"] = reason
    down = side_down_reason(problems)
    if down is not None:
        return f"preflight failed: no {target} serving search where the switch points: {down}"
    return None


# --- the app tier and the storefront's writes (a Region switch) ----------------------------

APP_UNHEALTHY = "app unhealthy"
CART_FAILED = "cart failed"
# What an ALB means by the errors it generates itself (Elastic Load Balancing user guide,
# "Troubleshoot your Application Load Balancers").
ALB_ERRORS = {
    502: "the load balancer got no valid answer from an app server",
    503: "the load balancer has no healthy app server to route to",
    504: "an app server did not answer the load balancer in time",
}


def _http_meaning(status: int) -> str:
    if status in ALB_ERRORS:
        return f"HTTP {status}: {ALB_ERRORS[status]}"
    if status == 500:
        return "HTTP 500: Magento cannot reach its database or cache"
    return f"HTTP {status}"


def app_health_problem(*, url: str, status: int | None, error: str | None = None) -> str | None:
    """None when Magento's health check answers 200 through the Region's load balancer."""
    if error is not None:
        return f"{APP_UNHEALTHY}: {url} unreachable: {error}"
    if status == 200:
        return None
    return f"{APP_UNHEALTHY}: {url} answered {_http_meaning(status or 0)}"


def created_cart(body: object) -> str | None:
    """The masked id of the cart createEmptyCart made, when the answer holds one."""
    if not isinstance(body, dict):
        return None
    cart = (body.get("data") or {}).get("createEmptyCart")
    return cart if isinstance(cart, str) and cart else None


def cart_problem(*, status: int, body: object) -> str | None:
    """None when a guest cart was created: HTTP 200, a cart id and no `errors`.

    Magento answers a write to a read-only database (an Aurora reader, the Region that does
    not write) with HTTP 200 and `errors: [{message: "Internal server error"}]`; its developer
    mode adds the database's own words as debugMessage, quoted here when present.
    """
    if status != 200:
        return f"{CART_FAILED}: createEmptyCart answered {_http_meaning(status)}"
    if not isinstance(body, dict):
        return f"{CART_FAILED}: createEmptyCart answered HTTP 200 without a JSON object"
    errors = body.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) else errors
        if isinstance(first, dict):
            message = str(first.get("message", first))
            debug = first.get("debugMessage")
            message += f" ({debug})" if debug else ""
        else:
            message = str(first)
        return f"{CART_FAILED}: createEmptyCart error: {message}"
    if created_cart(body) is None:
        cart = (body.get("data") or {}).get("createEmptyCart")
        return f"{CART_FAILED}: createEmptyCart returned no cart id ({cart!r})"
    return None
