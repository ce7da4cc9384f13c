"""Drill, failback and dry-run decisions: guardrails, blackout windows, steady state, verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from failover import decisions
from failover.config import ConfigError, DrillSettings, parse_config
from failover.models import FailoverResult, Outcome, StepTiming
from sandbox.demo import rto_seconds
from tests.unit.test_config import _cluster

# A Wednesday.
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def drill(**settings: object) -> DrillSettings:
    return DrillSettings.model_validate(settings)


@pytest.mark.parametrize(
    ("window", "at", "blocked"),
    [
        ({"start": "09:00", "end": "18:00"}, NOON, True),
        ({"start": "09:00", "end": "18:00"}, NOON.replace(hour=18), False),  # end is open
        ({"start": "09:00", "end": "18:00", "days": ["sat", "sun"]}, NOON, False),
        # Across midnight: Tuesday 22:00 to Wednesday 06:00.
        ({"start": "22:00", "end": "06:00", "days": ["tue"]}, NOON.replace(hour=5), True),
        ({"start": "22:00", "end": "06:00", "days": ["tue"]}, NOON.replace(hour=23), False),
        ({"start": "22:00", "end": "06:00", "days": ["wed"]}, NOON.replace(hour=23), True),
    ],
)
def test_blackout_windows(window: dict[str, object], at: datetime, blocked: bool) -> None:
    reason = decisions.blackout_reason(at, drill(blackout_windows=[window]))
    assert (reason is not None) == blocked
    if blocked:
        assert reason is not None and reason.startswith(decisions.BLACKOUT)


def test_blackout_windows_are_read_in_the_drill_time_zone() -> None:
    # 12:00 UTC is 13:00 in Berlin (winter): inside 13:00-14:00 there, not in UTC.
    settings = drill(
        timezone="Europe/Berlin", blackout_windows=[{"start": "13:00", "end": "14:00"}]
    )
    assert decisions.blackout_reason(NOON, settings) is not None
    assert (
        decisions.blackout_reason(NOON, drill(blackout_windows=settings.blackout_windows)) is None
    )


def test_blackout_dates() -> None:
    reason = decisions.blackout_reason(NOON, drill(blackout_dates=["2026-11-25"]))
    assert reason == "blackout: 2026-11-25 is a blackout date"
    assert decisions.blackout_reason(NOON, drill(blackout_dates=["2026-11-26"])) is None


def test_guardrails_in_order() -> None:
    settings = drill(blackout_dates=["2026-11-25"])
    common = {"now": NOON, "monitor_paused": True, "monitor_paused_reason": "freeze"}
    busy = decisions.drill_refusal(settings=settings, running=["failover-c"], **common)
    assert busy == "busy: failover-c running for this cluster"
    blackout = decisions.drill_refusal(settings=settings, running=[], **common)
    assert blackout is not None and blackout.startswith(decisions.BLACKOUT)
    paused = decisions.drill_refusal(settings=drill(), running=[], **common)
    assert paused == "paused: the cluster's monitor is paused (freeze)"
    assert (
        decisions.drill_refusal(
            settings=drill(), running=[], now=NOON, monitor_paused=False, monitor_paused_reason=None
        )
        is None
    )


def test_steady_state_names_the_first_sick_node() -> None:
    healthy = {"http://a:9200/": None, "http://b:9200/": None}
    sick = {"http://a:9200/": "http error: HTTP 500", "http://b:9200/": "unreachable: refused"}
    assert decisions.steady_state_problem(primary=healthy, standby=healthy, storefront=None) is None
    problem = decisions.steady_state_problem(primary=healthy, standby=sick, storefront=None)
    assert problem == "not steady: standby http://a:9200/: http error: HTTP 500 (+1 more node(s))"
    storefront = decisions.steady_state_problem(
        primary=healthy, standby=healthy, storefront="storefront failed: no products"
    )
    assert storefront == "not steady: storefront failed: no products"


def _result(outcome: Outcome, verify_end: float) -> FailoverResult:
    start = NOON
    return FailoverResult(
        result=outcome,
        cluster="c",
        from_side="primary",
        to_side="standby",
        from_value="a",
        to_value="b",
        reason="drill",
        trigger="drill",
        started_at=start,
        finished_at=start + timedelta(seconds=verify_end),
        steps=[
            StepTiming(name="switch", started_at=start, seconds=1, outcome="ok"),
            StepTiming(
                name="verify",
                started_at=start + timedelta(seconds=verify_end - 0.5),
                seconds=0.5,
                outcome="ok",
            ),
        ],
    )


def test_checks_run_side_by_side_are_verified_when_the_last_one_ends() -> None:
    """The timeline lists verify, verify_indices, verify_storefront in that order whichever
    ended first: the switch is verified at the latest end, not at the last listed."""
    result = _result(Outcome.FAILED_OVER, 3)
    started = result.steps[-1].started_at
    result.steps += [
        StepTiming(name="verify_indices", started_at=started, seconds=0.2, outcome="ok"),
        StepTiming(name="verify_storefront", started_at=started, seconds=0.1, outcome="ok"),
    ]
    assert decisions.verified_at(result) == NOON + timedelta(seconds=3)
    result.steps[-2].seconds = 0.9
    assert decisions.verified_at(result) == started + timedelta(seconds=0.9)


def test_rto_is_measured_to_the_end_of_the_last_passing_verify() -> None:
    switch_started = NOON - timedelta(seconds=1)
    assert decisions.verified_switch_seconds(switch_started, _result(Outcome.FAILED_OVER, 3)) == 4
    assert (
        decisions.verified_switch_seconds(switch_started, _result(Outcome.ROLLED_BACK, 3)) is None
    )
    assert decisions.verified_switch_seconds(None, None) is None


def test_no_rto_from_a_run_whose_verification_failed() -> None:
    """A verify that found a problem is `failed`: even a run reported switched gives no RTO
    from it, and neither does a passing path check followed by a failed storefront check."""
    switch_started = NOON - timedelta(seconds=1)
    result = _result(Outcome.FAILED_OVER, 3)
    assert decisions.verified_at(result) == NOON + timedelta(seconds=3)
    result.steps[-1].outcome = "failed"
    assert decisions.verified_at(result) is None
    assert decisions.verified_switch_seconds(switch_started, result) is None
    path_ok = _result(Outcome.ROLLED_BACK, 3)
    path_ok.steps.append(
        StepTiming(
            name="verify_storefront",
            started_at=NOON + timedelta(seconds=3),
            seconds=1,
            outcome="failed",
            detail="verify failed: storefront failed: no products",
        )
    )
    assert decisions.verified_at(path_ok) is None
    assert (
        decisions.verified_at(_result(Outcome.FAILED_OVER, 3).model_copy(update={"steps": []}))
        is None
    )


@pytest.mark.parametrize(
    ("changes", "verdict", "starts"),
    [
        ({}, "pass", "RTO 4.00 s within"),
        ({"rto_seconds": 400.0}, "fail", "RTO 400.0 s over the target"),
        ({"failover": Outcome.ROLLED_BACK}, "fail", "failover rolled_back"),
        ({"failback": None}, "fail", "failback not run"),
        ({"steady_after": "not steady: x"}, "fail", "after the drill"),
        ({"aborted": "by ops: call"}, "aborted", "aborted by ops: call"),
    ],
)
def test_drill_verdicts(changes: dict[str, object], verdict: str, starts: str) -> None:
    arguments: dict[str, object] = {
        "failover": Outcome.FAILED_OVER,
        "failover_reason": "ok",
        "failback": Outcome.FAILED_OVER,
        "failback_reason": "ok",
        "steady_after": None,
        "rto_seconds": 4.0,
        "rto_target_seconds": 300,
        "aborted": None,
    } | changes
    found, reason = decisions.drill_verdict(**arguments)  # type: ignore[arg-type]
    assert (found, reason[: len(starts)]) == (verdict, starts)


def test_only_drills_and_failbacks_skip_confirmation() -> None:
    assert decisions.skip_confirmation_refusal("drill") is None
    assert decisions.skip_confirmation_refusal("failback") is None
    for trigger in ("manual", "alarm", "monitor"):
        refusal = decisions.skip_confirmation_refusal(trigger)
        assert refusal is not None and refusal.startswith(decisions.CONFIRMATION_REQUIRED)


def test_a_planned_switch_to_the_active_side_is_refused() -> None:
    assert decisions.planned_switch_refusal("primary", "standby") is None
    assert decisions.planned_switch_refusal("primary", None) is None
    refusal = decisions.planned_switch_refusal("primary", "primary")
    assert refusal is not None and refusal.startswith(decisions.ALREADY_ACTIVE)


def test_nlb_plan_lists_targets_and_checks() -> None:
    config = parse_config(
        {
            "clusters": [
                _cluster(
                    switch={
                        "type": "nlb",
                        "target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:"
                        "123456789012:targetgroup/search/0123456789abcdef",
                        "primary_targets": [{"id": "10.0.1.10", "port": 9200}],
                        "standby_targets": [{"id": "10.0.1.20", "port": 9200}],
                    },
                    caches=[
                        {"type": "varnish", "name": "v", "servers": ["http://v:6081"]},
                        {"type": "redis", "name": "r", "host": "redis"},
                    ],
                )
            ]
        }
    )
    plan = decisions.failover_plan(config.clusters[0], active="standby", skip_confirmation=True)
    assert (plan.from_side, plan.to_side) == ("standby", "primary")
    assert plan.register_targets == ["10.0.1.10:9200"]
    assert plan.deregister_targets == ["10.0.1.20:9200"]
    assert plan.record is None
    assert plan.confirmation.startswith("skipped")
    assert [c.split(":")[0] for c in plan.caches] == ["redis r", "varnish v"]  # Varnish last
    assert plan.lines()[0] == "catalog: standby → primary"


def test_drill_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "clusters": [
                    _cluster(
                        drill={
                            "timezone": "Mars/Olympus",
                            "blackout_windows": [{"start": "10:00", "end": "10:00"}],
                            "rto_target_seconds": 0,
                        }
                    )
                ]
            }
        )
    errors = "\n".join(caught.value.errors)
    assert "clusters[0].drill.rto_target_seconds" in errors
    assert "unknown time zone 'Mars/Olympus'" in errors
    assert "start and end are the same" in errors


def test_the_demo_reports_no_rto_for_a_run_that_did_not_verify() -> None:
    fault_at = NOON - timedelta(seconds=2)
    assert rto_seconds(fault_at, _result(Outcome.FAILED_OVER, 3)) == 5.0
    rolled_back = _result(Outcome.ROLLED_BACK, 3)
    rolled_back.steps[-1].outcome = "failed"
    assert rto_seconds(fault_at, rolled_back) is None
