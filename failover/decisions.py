"""Every decision the failover makes, as small pure functions.

Each returns a reason string when something is wrong (or an action is refused) and
None when all is well. The reasons start with stable words that logs, results and
tests match on; the rest of the sentence is for the person reading it at 3 a.m.
Workflows call these directly: they are deterministic and do no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from failover.config import (
    ClusterConfig,
    DrillSettings,
    NlbSwitch,
    RedisCache,
    Route53Switch,
    SsmCache,
    Target,
    VarnishCache,
    normalise_record_value,
)
from failover.models import (
    ClusterWatch,
    FailoverPlan,
    FailoverResult,
    MonitorDecision,
    NodeProbe,
    Outcome,
    RecordChange,
    Side,
    SideHealth,
    SideWatch,
    SwitchEndpoint,
    SwitchTargetProbe,
    SwitchTargetRequest,
    TargetState,
    other_side,
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
    if probe.http_status is not None and probe.http_status >= 400:
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


def _summarise(problems: dict[str, str | None]) -> str:
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
        return f"all {len(problems)} nodes failing: {_summarise(problems)}"
    return (
        f"{failing} of {len(problems)} nodes failing (down_share {down_share:g}): "
        f"{_summarise(problems)}"
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


# --- the monitor: health of a side, a vantage point's streak, and what to do ---------------

# Stable reason prefixes of the monitor.
CONFIG_ERROR = "configuration error"
DEGRADED = "degraded"
SUSPECT = "suspect"
DOWN = "down"
RECOVERED = "recovered"
NOT_CONFIRMED = "not confirmed"
UNKNOWN_ACTIVE = "active side unknown"
BOTH_DOWN = "both sides down"
PAUSED = "paused"
COOLDOWN = "cooldown"
MANUAL_FAILBACK = "failback is manual"
HOLDING_OFF = "holding off"
AUTO_OFF = "automatic failover off"
FAILING_OVER = "failing over"
CONFIRMING_ALARM = "alarm, confirming"


def node_degraded(probe: NodeProbe) -> str | None:
    """A yellow node serves search with missing replicas: worth a note, not a failover."""
    if probe.error is None and probe.health_status == "yellow":
        return f"{STATUS_YELLOW}: replicas unassigned"
    return None


def side_health(
    problems: dict[str, str | None], notes: dict[str, str | None], *, down_share: float
) -> tuple[SideHealth, str | None]:
    """One probe round of one side: healthy, degraded, failing, or misconfigured (401/403).

    Rejected credentials say nothing about the cluster's health, and switching would take
    the same credentials to the other side: it is an alert, never a failing round.
    """
    for url, reason in problems.items():
        if reason and reason.startswith(AUTH_REJECTED):
            return "misconfigured", (
                f"{CONFIG_ERROR}: {url} {reason}; a credentials problem is never a reason "
                f"to fail over"
            )
    down = side_down_reason(problems, down_share)
    if down is not None:
        return "failing", down
    failing = {url: reason for url, reason in problems.items() if reason}
    if failing:
        return "degraded", (
            f"{DEGRADED}: {len(failing)} of {len(problems)} nodes failing: {_summarise(failing)}"
        )
    yellow = {url: note for url, note in notes.items() if note}
    if yellow:
        return "degraded", f"{DEGRADED}: {_summarise(yellow)}"
    return "healthy", None


def next_side_watch(
    previous: SideWatch,
    health: SideHealth,
    reason: str | None,
    now: float,
    *,
    threshold: int,
    window_seconds: float,
) -> SideWatch:
    """Folds one probe round into a vantage point's view of a side.

    A side is down after `threshold` consecutive failing rounds that all fall within
    `window_seconds`; any round that is not failing ends the streak. `failing_since` keeps
    the streak's first round: the hold-off tells new evidence from old by it.
    """
    rounds = 0
    since: float | None = None
    if health == "failing":
        streak = [t for t in previous.failing_at if now - t <= window_seconds] + [now]
        streak = streak[-threshold:]
        # The whole outage's length, for the record: failing_at keeps only the last rounds.
        rounds = previous.failing_rounds + 1 if previous.failing_at else 1
        since = _streak_start(previous) if previous.failing_at else now
        if previous.state == "down" or len(streak) >= threshold:
            state = "down"
            why = (
                f"{DOWN}: {len(streak)} consecutive failing rounds in "
                f"{now - streak[0]:.1f}s: {reason}"
            )
        else:
            state = "suspect"
            why = f"{SUSPECT}: failing round {len(streak)} of {threshold}: {reason}"
    else:
        streak = []
        state, why = health, reason
        if previous.state in ("suspect", "down") and health in ("healthy", "degraded"):
            why = f"{RECOVERED} after {previous.failing_rounds} failing round(s)" + (
                f"; {reason}" if reason else ""
            )
    changed_at = now if state != previous.state else previous.changed_at
    return SideWatch(
        state=state,
        reason=why,
        failing_at=streak,
        failing_rounds=rounds,
        changed_at=changed_at,
        failing_since=since,
    )


def _streak_start(watch: SideWatch) -> float | None:
    """The first failing round of a watch's streak, also from a watch older than
    `failing_since`: its failing_at still starts with it while no round was dropped."""
    if watch.failing_since is not None:
        return watch.failing_since
    if watch.failing_at and watch.failing_rounds <= len(watch.failing_at):
        return watch.failing_at[0]
    return None


def streak_began(view: ClusterWatch, side: Side) -> datetime | None:
    """When `view`'s failing streak of `side` began, on the monitor's clock, or None if not
    known. The vantage point's own round times give how long before its report the streak
    began; the monitor's receipt of that report places it, so clock skew between the
    vantage point and the monitor does not matter."""
    since = _streak_start(view.side(side))
    if since is None or view.received_at is None or view.observed_at is None:
        return None
    return view.received_at - timedelta(seconds=max(0.0, view.observed_at - since))


def evidence_since(down: Sequence[ClusterWatch], side: Side, quorum: int) -> datetime | None:
    """Since when a quorum of these vantage points (those seeing `side` down) has been in
    its current streak: the quorum-th latest streak start. None if too few are known."""
    began = sorted((t for v in down if (t := streak_began(v, side)) is not None), reverse=True)
    return began[quorum - 1] if quorum >= 1 and len(began) >= quorum else None


def _names(views: Sequence[ClusterWatch]) -> str:
    return ", ".join(v.vantage for v in views)


def monitor_decision(
    *,
    active: Side | None,
    active_problem: str | None,
    views: Sequence[ClusterWatch],
    vantage_count: int,
    quorum: int,
    guards: Guards,
) -> MonitorDecision:
    """What the monitor does with what its vantage points see: nothing, alert, or fail over.

    `views` holds the vantage points that have probed and still answer; one that has not
    counts as seeing neither the active side down nor the standby healthy.
    """
    if active is None:
        return MonitorDecision(action="alert", reason=f"{UNKNOWN_ACTIVE}: {active_problem}")
    target = other_side(active)
    misconfigured = [v for v in views if v.side(active).state == "misconfigured"]
    if misconfigured:
        return MonitorDecision(
            action="alert",
            reason=f"{misconfigured[0].side(active).reason} (seen from {_names(misconfigured)})",
        )
    down = [v for v in views if v.side(active).state == "down"]
    seen = f"{active} down from {len(down)} of {vantage_count} vantage points (quorum {quorum})"
    if len(down) < quorum:
        return MonitorDecision(action="none", reason=f"{NOT_CONFIRMED}: {seen}")
    usable = [v for v in views if v.side(target).state in ("healthy", "degraded")]
    if len(usable) < quorum:
        sick = [v for v in views if v not in usable]
        why = sick[0].side(target).reason if sick else "no vantage point answered"
        return _both_down(seen, f"{target} is not healthy either ({why})")
    refused = guards.refusal(seen, active, evidence_since(down, active, quorum))
    if refused is not None:
        return refused
    return MonitorDecision(
        action="failover", reason=f"{FAILING_OVER}: {seen}: {down[0].side(active).reason}"
    )


@dataclass(frozen=True)
class Guards:
    """What stops an automatic failover, whatever the evidence: the operators' pause, the
    cooldown after a failover, manual failback, the hold-off after an attempt that changed
    nothing (unless the evidence is new: `hold_off`), and automatic failover turned off."""

    now: datetime
    paused: bool = False
    paused_reason: str | None = None
    cooldown_until: datetime | None = None
    hold_until: datetime | None = None
    # When the last attempt that changed nothing ended (None: hold every piece of evidence),
    # and how many such attempts came in a row.
    refused_at: datetime | None = None
    refusals: int = 0
    auto_failover: bool = True
    auto_failback: bool = False

    def refusal(
        self, seen: str, active: Side, since: datetime | None = None
    ) -> MonitorDecision | None:
        """The decision that stops a failover the evidence (`seen`, held by a quorum since
        `since`; None when unknown, or for an alarm) calls for, or None."""
        if self.paused:
            return MonitorDecision(
                action="alert",
                reason=f"{PAUSED}: {seen}, but automatic action is paused"
                + (f" ({self.paused_reason})" if self.paused_reason else ""),
            )
        if self.cooldown_until is not None and self.now < self.cooldown_until:
            return MonitorDecision(
                action="alert",
                reason=f"{COOLDOWN}: {seen}, but the last failover was less than the cooldown "
                f"ago; no automatic failover until {self.cooldown_until.isoformat()}",
            )
        if active == "standby" and not self.auto_failback:
            return MonitorDecision(
                action="alert",
                reason=f"{MANUAL_FAILBACK}: {seen}; moving back to the primary is a person's "
                f"decision (`failover trigger`, or auto_failback: true in config)",
            )
        held = hold_off(
            seen,
            now=self.now,
            hold_until=self.hold_until,
            refused_at=self.refused_at,
            refusals=self.refusals,
            since=since,
        )
        if held is not None:
            return held
        if not self.auto_failover:
            return MonitorDecision(action="alert", reason=f"{AUTO_OFF}: {seen}; act by hand")
        return None


# The hold-off after attempts that changed nothing: 60 s, doubling with each attempt in a
# row, capped; forgotten after a quiet half hour (three times the cap) or a switch.
HOLD_OFF_BASE_SECONDS = 60.0
HOLD_OFF_MAX_SECONDS = 600.0
HOLD_OFF_RESET_SECONDS = 1800.0
# From this many attempts in a row that changed nothing, new evidence is held off too.
HOLD_OFF_NEW_EVIDENCE_AFTER = 2


def hold_off(
    seen: str,
    *,
    now: datetime,
    hold_until: datetime | None,
    refused_at: datetime | None,
    refusals: int,
    since: datetime | None,
) -> MonitorDecision | None:
    """Whether the hold-off after an attempt that changed nothing stops this failover.

    The hold-off exists so that one piece of evidence, refuted by the run it started,
    cannot start run after run. It holds that evidence only: a confirmation whose streak
    (on a quorum of vantage points) began after the refuted run ended is new evidence,
    gathered after the run looked, and is acted on at once, so an outage that begins
    just after a flap is failed over in the normal detection time. A side whose new
    streaks are refuted again and again (a flapping primary) is not: from the second
    attempt in a row that changed nothing, everything is held, and the hold doubles
    (`hold_off_after`). `refused_at` None (a state from before this rule) holds all.
    """
    if hold_until is None or now >= hold_until:
        return None
    until = hold_until.isoformat()
    if refused_at is None:
        why = f"the last attempt changed nothing, next try after {until}"
    elif refusals >= HOLD_OFF_NEW_EVIDENCE_AFTER:
        why = f"{refusals} attempts in a row changed nothing, backing off until {until}"
    elif since is None:
        why = (
            f"no new down streak since the last attempt ended at {refused_at.isoformat()} "
            f"and changed nothing, next try after {until}"
        )
    elif since <= refused_at:
        why = (
            f"the evidence (a quorum down since {since.isoformat()}) is what the last attempt "
            f"saw, which ended at {refused_at.isoformat()} and changed nothing, next try "
            f"after {until}"
        )
    else:
        return None
    return MonitorDecision(action="none", reason=f"{HOLDING_OFF}: {seen}; {why}")


def hold_off_after(
    *, refusals: int, refused_at: datetime | None, now: datetime
) -> tuple[int, datetime, str]:
    """The hold-off after an attempt that changed nothing ended at `now`, given the state
    left by the previous ones: (attempts in a row, hold until, why, for the record).

    60 s after the first, doubling with each attempt in a row (120 s, 240 s, ...) up to
    10 minutes; the count starts over when the previous attempt ended more than half an
    hour ago (a quiet time: no confirmation the monitor acted on) or never did.
    """
    quiet = refused_at is None or (now - refused_at).total_seconds() > HOLD_OFF_RESET_SECONDS
    count = 1 if refusals <= 0 or quiet else refusals + 1
    seconds = min(HOLD_OFF_BASE_SECONDS * 2 ** min(count - 1, 16), HOLD_OFF_MAX_SECONDS)
    until = now + timedelta(seconds=seconds)
    then = (
        "a new down streak is still acted on at once"
        if count < HOLD_OFF_NEW_EVIDENCE_AFTER
        else "backing off, new down streaks too"
    )
    why = f"{HOLDING_OFF} {seconds:.0f}s: {count} attempt(s) in a row changed nothing; {then}"
    return count, until, why


def _both_down(seen: str, target_state: str) -> MonitorDecision:
    """No safe place to go: an alert for a person, never a switch."""
    return MonitorDecision(
        action="alert", reason=f"{BOTH_DOWN}: {seen}, and {target_state}; not switching"
    )


def alarm_decision(
    *,
    alarm: str,
    active: Side | None,
    active_problem: str | None,
    views: Sequence[ClusterWatch],
    quorum: int,
    guards: Guards,
) -> MonitorDecision:
    """What the monitor does with a firing alarm: start a failover that confirms the fault
    itself (all its probe rounds), or say why not. An alarm is a reason to look now, never
    proof: the same guards hold as for the monitor's own evidence."""
    if active is None:
        return MonitorDecision(action="alert", reason=f"{UNKNOWN_ACTIVE}: {active_problem}")
    target = other_side(active)
    seen = f"{alarm} says {active} is failing"
    sick = [v for v in views if v.side(target).state in ("down", "misconfigured")]
    if len(sick) >= quorum:
        return _both_down(
            seen,
            f"{target} is down from {len(sick)} vantage point(s) ({sick[0].side(target).reason})",
        )
    refused = guards.refusal(seen, active)
    if refused is not None:
        return refused
    return MonitorDecision(
        action="failover", reason=f"{CONFIRMING_ALARM}: {seen}; the failover confirms it first"
    )


# --- planned switches, dry runs and drills ---------------------------------------------------

CONFIRMATION_REQUIRED = "confirmation required"
ALREADY_ACTIVE = "already active"
NOT_STEADY = "not steady"
BLACKOUT = "blackout"
BUSY = "busy"
PLANNED_TRIGGERS = ("drill", "failback")


def skip_confirmation_refusal(trigger: str) -> str | None:
    """Only a drill or a failback moves traffic off a side that is not down."""
    if trigger in PLANNED_TRIGGERS:
        return None
    return (
        f"{CONFIRMATION_REQUIRED}: a {trigger} failover must confirm the active side is down; "
        f"only drills and failbacks may skip it"
    )


def planned_switch_refusal(active: Side, to_side: Side | None) -> str | None:
    if to_side is not None and active == to_side:
        return f"{ALREADY_ACTIVE}: the {to_side} already takes the traffic; nothing to do"
    return None


def _cache_plan(cache: object) -> str:
    if isinstance(cache, RedisCache):
        dbs = [cache.db] + ([cache.page_cache_db] if cache.page_cache_db is not None else [])
        where = f"{cache.host}:{cache.port}"
        return f"redis {cache.name}: FLUSHDB of db {', '.join(map(str, dbs))} on {where}"
    if isinstance(cache, VarnishCache):
        servers = ", ".join(str(s) for s in cache.servers)
        return (
            f"varnish {cache.name}: PURGE X-Magento-Tags-Pattern {cache.tags_pattern} on {servers}"
        )
    assert isinstance(cache, SsmCache)
    return (
        f"ssm {cache.name}: `{cache.command}` in {cache.magento_root} on instances tagged "
        f"{cache.tag_key}={cache.tag_value}"
    )


def failover_plan(
    cluster: ClusterConfig,
    *,
    active: Side,
    record_values: Sequence[str] = (),
    skip_confirmation: bool,
    monitor_confirmed: bool = False,
) -> FailoverPlan:
    """Exactly what a failover from `active` would change and check, given the switch as
    read from AWS now."""
    target = other_side(active)
    probe = cluster.probe
    if skip_confirmation:
        confirmation = "skipped (a planned switch: drill or failback)"
    else:
        rounds = 1 if monitor_confirmed else probe.failure_threshold
        confirmation = (
            f"{rounds} probe round(s) of the {active}, {probe.interval_seconds:g} s apart; "
            f"any healthy round stops the failover"
        )
    plan = FailoverPlan(
        cluster=cluster.name, from_side=active, to_side=target, confirmation=confirmation
    )
    switch = cluster.switch
    if isinstance(switch, Route53Switch):
        value = {"primary": switch.primary_value, "standby": switch.standby_value}
        plan.record = RecordChange(
            name=switch.record_name,
            type=switch.record_type,
            from_value=record_values[0] if record_values else value[active],
            to_value=value[target],
            ttl=switch.ttl,
        )
    else:
        assert isinstance(switch, NlbSwitch)
        targets = {"primary": switch.primary_targets, "standby": switch.standby_targets}
        plan.register_targets = [f"{t.id}:{t.port}" for t in targets[target]]
        plan.deregister_targets = [f"{t.id}:{t.port}" for t in targets[active]]
    plan.caches = [_cache_plan(c) for stage in cluster.flush_stages() for c in stage]
    plan.checks = [f"preflight: every node of the {target} answers"]
    pointed = switch_target_request(cluster, target)
    if pointed is not None:
        names = ", ".join(f"{e.name}:{e.port}" for e in pointed.endpoints)
        plan.checks.append(f"preflight: {names} answers as the {target} cluster")
    plan.checks += [
        "switch is in place in AWS (record or targets)",
        f"the {target}'s nodes answer, up to {probe.verify_attempts} attempts",
    ]
    if cluster.verify.search_path is not None:
        plan.checks.append(f"search answers through {cluster.verify.search_path.url}")
    if cluster.verify.storefront is not None:
        storefront = cluster.verify.storefront
        plan.checks.append(
            f"storefront search {storefront.search_term!r} at {storefront.url} finds products"
        )
    plan.checks.append("on a failed verify: roll back and flush again")
    return plan


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def blackout_reason(now: datetime, settings: DrillSettings) -> str | None:
    """Why `now` is inside a blackout window or date, in the drill's time zone."""
    local = now.astimezone(ZoneInfo(settings.timezone))
    today: date = local.date()
    if today in settings.blackout_dates:
        return f"{BLACKOUT}: {today.isoformat()} is a blackout date"
    clock = local.time().replace(tzinfo=None)
    day = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    for window in settings.blackout_windows:
        if window.start <= window.end:
            inside = day in window.days and window.start <= clock < window.end
        else:  # across midnight: the evening of a listed day, or the morning after it
            inside = (day in window.days and clock >= window.start) or (
                yesterday in window.days and clock < window.end
            )
        if inside:
            return (
                f"{BLACKOUT}: {local.strftime('%a %H:%M')} {settings.timezone} is inside "
                f"{','.join(window.days)} {window.start.strftime('%H:%M')}-"
                f"{window.end.strftime('%H:%M')}"
            )
    return None


def drill_refusal(
    *,
    now: datetime,
    settings: DrillSettings,
    running: Sequence[str],
    monitor_paused: bool,
    monitor_paused_reason: str | None,
) -> str | None:
    """The guardrails: nothing else switching, not a blackout, not paused."""
    if running:
        return f"{BUSY}: {', '.join(running)} running for this cluster"
    blackout = blackout_reason(now, settings)
    if blackout is not None:
        return blackout
    if monitor_paused:
        return f"{PAUSED}: the cluster's monitor is paused ({monitor_paused_reason or '-'})"
    return None


def steady_state_problem(
    *,
    primary: dict[str, str | None],
    standby: dict[str, str | None],
    storefront: str | None,
) -> str | None:
    """A drill needs every node of both sides answering and the storefront searching."""
    for side, problems in (("primary", primary), ("standby", standby)):
        failing = {node: p for node, p in problems.items() if p is not None}
        if failing:
            node, problem = next(iter(failing.items()))
            return f"{NOT_STEADY}: {side} {node}: {problem}" + (
                f" (+{len(failing) - 1} more node(s))" if len(failing) > 1 else ""
            )
    if storefront is not None:
        return f"{NOT_STEADY}: {storefront}"
    return None


def verified_at(failover: FailoverResult) -> datetime | None:
    """When the switch was verified: the end of the last verify step, or None for a run
    that did not end switched with every verify step passing (no RTO comes from it)."""
    if failover.result not in (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS):
        return None
    verify = [s for s in failover.steps if s.name in ("verify", "verify_storefront")]
    if not verify or any(s.outcome != "ok" for s in verify):
        return None
    last = verify[-1]
    return last.started_at + timedelta(seconds=last.seconds)


def verified_switch_seconds(
    switch_started: datetime | None, failover: FailoverResult | None
) -> float | None:
    """From the drill starting its switch to the end of the last passing verify step."""
    if switch_started is None or failover is None:
        return None
    verified = verified_at(failover)
    return None if verified is None else (verified - switch_started).total_seconds()


def drill_verdict(
    *,
    failover: Outcome,
    failover_reason: str,
    failback: Outcome | None,
    failback_reason: str | None,
    steady_after: str | None,
    rto_seconds: float | None,
    rto_target_seconds: float,
    aborted: str | None,
) -> tuple[str, str]:
    """pass, fail or aborted, with the first reason that decided it."""
    switched = (Outcome.FAILED_OVER, Outcome.FAILED_OVER_WITH_WARNINGS)
    if failover not in switched:
        return "fail", f"failover {failover.value}: {failover_reason}"
    if failback not in switched:
        state = failback.value if failback else "not run"
        return "fail", f"failback {state}: {failback_reason or '-'}"
    if steady_after is not None:
        return "fail", f"after the drill: {steady_after}"
    if aborted is not None:
        return "aborted", f"aborted {aborted}; failed back"
    if rto_seconds is None or rto_seconds > rto_target_seconds:
        return "fail", f"RTO {rto_seconds} s over the target {rto_target_seconds:g} s"
    return "pass", f"RTO {rto_seconds:.2f} s within the target {rto_target_seconds:g} s"
