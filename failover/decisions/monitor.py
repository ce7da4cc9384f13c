"""The monitor: health of a side, a vantage point's streak, the guards, the hold-off, and
what to do about the evidence or an alarm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from failover.decisions.probe import (
    AUTH_REJECTED,
    STATUS_YELLOW,
    side_down_reason,
    summarise_problems,
)
from failover.models import (
    ClusterWatch,
    MonitorDecision,
    NodeProbe,
    Side,
    SideHealth,
    SideWatch,
    WatchState,
    other_side,
)

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
        nodes = summarise_problems(failing)
        return "degraded", f"{DEGRADED}: {len(failing)} of {len(problems)} nodes failing: {nodes}"
    yellow = {url: note for url, note in notes.items() if note}
    if yellow:
        return "degraded", f"{DEGRADED}: {summarise_problems(yellow)}"
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
    if _unchanged(previous, state, why, streak):
        # The same view as before: no new object per side per quiet round (a worker's
        # hundreds of watches would make thousands a second for the collector).
        return previous
    changed_at = now if state != previous.state else previous.changed_at
    return SideWatch(
        state=state,
        reason=why,
        failing_at=streak,
        failing_rounds=rounds,
        changed_at=changed_at,
        failing_since=since,
    )


def _unchanged(
    previous: SideWatch, state: WatchState, why: str | None, streak: list[float]
) -> bool:
    """Whether a round that is not failing leaves `previous` exactly as it was."""
    return (
        not streak
        and not previous.failing_at
        and state == previous.state
        and why == previous.reason
        and previous.failing_rounds == 0
        and previous.failing_since is None
        and previous.refused_since is None
    )


# The reason of a side confirmed by the length of its outage, after `down: ` or `suspect: `.
REFUSED_BY_ALL = "refused by all"
# Rounds planned `min_outage_seconds` apart count as that far apart, whatever milliseconds
# the probes themselves took.
OUTAGE_SLACK_SECONDS = 0.02


def next_side_watch_confirming(
    previous: SideWatch,
    health: SideHealth,
    reason: str | None,
    now: float,
    *,
    threshold: int,
    window_seconds: float,
    refused_nodes: int,
    min_outage_seconds: float | None,
    counted: bool = True,
) -> SideWatch:
    """Folds one probe round with two rules: `next_side_watch`'s failure threshold, and the
    length of an outage in which every node refuses.

    `refused_nodes` is the side's node count when every node refused the connection or had
    no route this round (`all_refused`), else 0. Such rounds are unambiguous: the side is
    down once they have run for `min_outage_seconds` with no other answer in between. Any
    other answer ends the run: a good one ends the streak too, an ambiguous failing one
    (a timeout, a 5xx, red) leaves the side to the threshold rule, exactly as without this
    one. `counted` False marks a fast round (probed between the regular rounds): it adds to
    the outage's length, never to the threshold's count, so the threshold and its window
    mean what they always did. `min_outage_seconds` None: exactly `next_side_watch`.
    """
    if min_outage_seconds is None or counted or health != "failing":
        folded = next_side_watch(
            previous, health, reason, now, threshold=threshold, window_seconds=window_seconds
        )
        if min_outage_seconds is None:
            return folded
    else:
        folded = _uncounted_failing_round(previous, reason, now, threshold)
    if health != "failing" or refused_nodes <= 0:
        if folded.refused_since is None:
            return folded  # as the copy would be, without the copy
        return folded.model_copy(update={"refused_since": None})
    since = previous.refused_since if previous.refused_since is not None else now
    outage = now - since
    refused = f"{REFUSED_BY_ALL} {refused_nodes} nodes for {outage:.1f} s"
    if outage >= min_outage_seconds - OUTAGE_SLACK_SECONDS:
        state, why = "down", f"{DOWN}: {refused}: {reason}"
    elif folded.state == "down":  # the threshold rule confirmed it first
        state, why = "down", folded.reason
    else:
        state = "suspect"
        why = f"{SUSPECT}: {refused} (down at {min_outage_seconds:g} s): {reason}"
    return folded.model_copy(
        update={
            "state": state,
            "reason": why,
            "changed_at": now if state != previous.state else previous.changed_at,
            "refused_since": since,
        }
    )


def _uncounted_failing_round(
    previous: SideWatch, reason: str | None, now: float, threshold: int
) -> SideWatch:
    """A failing fast round: the streak stays as the regular rounds left it."""
    if previous.state == "down":
        return previous.model_copy()
    streak = len(previous.failing_at)
    return previous.model_copy(
        update={
            "state": "suspect",
            "reason": f"{SUSPECT}: failing round {streak} of {threshold}: {reason}",
            "changed_at": now if previous.state != "suspect" else previous.changed_at,
            "failing_since": _streak_start(previous) if streak else now,
        }
    )


def confirmed_by_refusal(watch: SideWatch) -> bool:
    """Whether this side is down by the length of an outage in which every node refused."""
    return watch.state == "down" and (watch.reason or "").startswith(f"{DOWN}: {REFUSED_BY_ALL} ")


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
    why = _refused_from(down, active, vantage_count, quorum) or down[0].side(active).reason
    return MonitorDecision(action="failover", reason=f"{FAILING_OVER}: {seen}: {why}")


def _refused_from(
    down: Sequence[ClusterWatch], side: Side, vantage_count: int, quorum: int
) -> str | None:
    """`down: refused by all nodes from 2 of 3 vantage points for 1.0 s` when a quorum saw
    `side` down by the length of a refused outage (the shortest one they saw), else None."""
    refused = [v for v in down if confirmed_by_refusal(v.side(side))]
    if len(refused) < quorum:
        return None
    lasted = [
        v.observed_at - since
        for v in refused
        if (since := v.side(side).refused_since) is not None and v.observed_at is not None
    ]
    return (
        f"{DOWN}: {REFUSED_BY_ALL} nodes from {len(refused)} of {vantage_count} vantage points"
        + (f" for {min(lasted):.1f} s" if lasted else "")
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
