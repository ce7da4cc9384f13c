"""Drills: blackout windows, guardrails, the steady state, the measured RTO and the
verdict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from failover.config import (
    DrillSettings,
)
from failover.decisions.monitor import PAUSED
from failover.models import (
    FailoverResult,
    Outcome,
)

# Stable reason prefixes of the drill's refusals.
NOT_STEADY = "not steady"
BLACKOUT = "blackout"
BUSY = "busy"

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
    # The checks before customers count; a promotion's write check after them does not.
    verify = [
        s for s in failover.steps if s.name in ("verify", "verify_indices", "verify_storefront")
    ]
    if not verify or any(s.outcome != "ok" for s in verify):
        return None
    # The checks may run side by side: the switch is verified when the last one ends.
    return max(s.started_at + timedelta(seconds=s.seconds) for s in verify)


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
