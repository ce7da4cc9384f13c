"""The monitor's pure decisions: a side's health, a vantage point's streak, and what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from failover import decisions
from failover.models import ClusterWatch, NodeProbe, SideWatch

GREEN = {
    "http_status": 200,
    "cluster_name": "es-a",
    "cluster_uuid": "uuid-a",
    "health_status": "green",
    "timed_out": False,
}


def node(url: str = "http://n1", **fields: object) -> NodeProbe:
    return NodeProbe(url=url, **(GREEN | fields))


def uuid_problem(probe: NodeProbe, expected_uuid: str | None = "uuid-a") -> str | None:
    return decisions.node_problem(
        probe,
        expected_cluster_name="es-a",
        yellow_policy="degraded",
        expected_cluster_uuid=expected_uuid,
    )


# --- node_problem with expected_cluster_uuid, node_degraded ---------------------------------


def test_matching_cluster_uuid_is_no_problem() -> None:
    assert uuid_problem(node(cluster_uuid="uuid-a")) is None


def test_other_cluster_uuid_is_the_wrong_cluster_and_names_both() -> None:
    reason = uuid_problem(node(cluster_uuid="uuid-rebuilt"))
    assert reason is not None
    assert reason.startswith(decisions.WRONG_CLUSTER)
    assert "'uuid-a'" in reason and "'uuid-rebuilt'" in reason


def test_probe_without_a_uuid_is_not_a_uuid_problem() -> None:
    assert uuid_problem(node(cluster_uuid=None)) is None


def test_uuid_not_checked_when_not_configured() -> None:
    assert uuid_problem(node(cluster_uuid="anything"), expected_uuid=None) is None


def test_wrong_cluster_name_is_reported_before_the_uuid() -> None:
    reason = uuid_problem(node(cluster_name="es-b", cluster_uuid="uuid-b"))
    assert reason is not None and reason.startswith("wrong cluster: expected cluster_name 'es-a'")


def test_node_problems_pass_the_uuid_to_every_node() -> None:
    problems = decisions.node_problems(
        [node("http://a"), node("http://b", cluster_uuid="uuid-b")],
        expected_cluster_name=None,
        yellow_policy="degraded",
        expected_cluster_uuid="uuid-a",
    )
    assert problems["http://a"] is None
    assert problems["http://b"] is not None
    assert problems["http://b"].startswith(decisions.WRONG_CLUSTER)


def test_yellow_node_is_degraded() -> None:
    note = decisions.node_degraded(node(health_status="yellow"))
    assert note is not None and note.startswith("status yellow")


@pytest.mark.parametrize(
    "fields",
    [
        {"health_status": "green"},
        {"health_status": "red"},
        {"error": "connection failed: refused", "health_status": None},
        {"error": "timeout after 3s", "health_status": "yellow"},
    ],
    ids=["green", "red", "unreachable", "error-with-stale-yellow"],
)
def test_only_an_answering_yellow_node_is_degraded(fields: dict) -> None:
    assert decisions.node_degraded(node(**fields)) is None


# --- side_down_reason with down_share -------------------------------------------------------

FAIL = "unreachable: refused"
TWO_OF_THREE = {"a": FAIL, "b": FAIL, "c": None}


def test_side_with_every_node_failing_is_down() -> None:
    reason = decisions.side_down_reason({"a": FAIL, "b": FAIL, "c": FAIL}, 1.0)
    assert reason is not None and reason.startswith("all 3 nodes failing: a unreachable")


def test_two_of_three_is_down_at_half() -> None:
    reason = decisions.side_down_reason(TWO_OF_THREE, 0.5)
    assert reason == (
        "2 of 3 nodes failing (down_share 0.5): a unreachable: refused; b unreachable: refused"
    )


@pytest.mark.parametrize("share", [0.67, 1.0])
def test_two_of_three_is_not_down_above_two_thirds(share: float) -> None:
    assert decisions.side_down_reason(TWO_OF_THREE, share) is None


def test_share_of_exactly_the_failing_fraction_is_down() -> None:
    reason = decisions.side_down_reason({"a": FAIL, "b": None}, 0.5)
    assert reason is not None and reason.startswith("1 of 2 nodes failing")


def test_exact_share_is_down_despite_float_rounding() -> None:
    problems = {f"n{i}": (FAIL if i < 14 else None) for i in range(25)}
    assert decisions.side_down_reason(problems, 0.56) is not None


@pytest.mark.parametrize("share", [0.01, 0.5, 1.0])
def test_side_with_no_failing_node_is_never_down(share: float) -> None:
    assert decisions.side_down_reason({"a": None, "b": None}, share) is None


def test_side_with_no_nodes_probed_is_down() -> None:
    assert decisions.side_down_reason({}, 0.5) == "no nodes probed"


# --- side_health -----------------------------------------------------------------------------

AUTH = "auth rejected: HTTP 401 (check the credentials in config)"
NO_NOTES: dict[str, str | None] = {"a": None, "b": None, "c": None}


def test_side_health_healthy() -> None:
    health = decisions.side_health({"a": None, "b": None, "c": None}, NO_NOTES, down_share=1.0)
    assert health == ("healthy", None)


def test_one_failing_node_of_three_is_degraded() -> None:
    state, reason = decisions.side_health({"a": None, "b": FAIL, "c": None}, NO_NOTES, down_share=1)
    assert state == "degraded"
    assert reason is not None and reason.startswith(decisions.DEGRADED)
    assert "1 of 3 nodes failing" in reason
    assert "b unreachable: refused" in reason


def test_yellow_notes_make_a_side_degraded() -> None:
    notes = {"a": "status yellow: replicas unassigned", "b": None}
    state, reason = decisions.side_health({"a": None, "b": None}, notes, down_share=1.0)
    assert state == "degraded"
    assert reason == "degraded: a status yellow: replicas unassigned"


def test_every_node_failing_is_a_failing_round() -> None:
    state, reason = decisions.side_health({"a": FAIL, "b": FAIL}, NO_NOTES, down_share=1.0)
    assert state == "failing"
    assert reason is not None and reason.startswith("all 2 nodes failing")


def test_down_share_decides_failing_versus_degraded() -> None:
    assert decisions.side_health(TWO_OF_THREE, NO_NOTES, down_share=0.5)[0] == "failing"
    assert decisions.side_health(TWO_OF_THREE, NO_NOTES, down_share=1.0)[0] == "degraded"


def test_rejected_credentials_are_misconfigured() -> None:
    state, reason = decisions.side_health({"a": None, "b": AUTH}, NO_NOTES, down_share=1.0)
    assert state == "misconfigured"
    assert reason is not None and reason.startswith(decisions.CONFIG_ERROR)
    assert "b auth rejected: HTTP 401" in reason


def test_rejected_credentials_beat_failing_nodes() -> None:
    problems = {"a": FAIL, "b": "auth rejected: HTTP 403 (check the credentials in config)"}
    state, reason = decisions.side_health(problems, NO_NOTES, down_share=1.0)
    assert state == "misconfigured"
    assert reason is not None and reason.startswith("configuration error: b auth rejected")


# --- next_side_watch -------------------------------------------------------------------------

THRESHOLD = 3
WINDOW = 30.0


def fold(
    previous: SideWatch, health: str, now: float, reason: str | None = "all 2 nodes failing"
) -> SideWatch:
    return decisions.next_side_watch(
        previous, health, reason, now, threshold=THRESHOLD, window_seconds=WINDOW
    )


def fold_failing(previous: SideWatch, *times: float) -> SideWatch:
    for now in times:
        previous = fold(previous, "failing", now)
    return previous


def test_first_failing_round_makes_a_side_suspect() -> None:
    watch = fold(SideWatch(), "failing", 100.0)
    assert watch.state == "suspect"
    assert watch.reason == "suspect: failing round 1 of 3: all 2 nodes failing"
    assert watch.failing_at == [100.0]
    assert watch.changed_at == 100.0


def test_second_failing_round_stays_suspect_and_counts() -> None:
    watch = fold_failing(SideWatch(), 100.0, 105.0)
    assert watch.state == "suspect"
    assert watch.reason is not None and watch.reason.startswith("suspect: failing round 2 of 3")
    assert watch.changed_at == 100.0


def test_threshold_failing_rounds_make_a_side_down() -> None:
    watch = fold_failing(SideWatch(), 100.0, 105.0, 110.0)
    assert watch.state == "down"
    assert watch.reason == "down: 3 consecutive failing rounds in 10.0s: all 2 nodes failing"
    assert watch.failing_at == [100.0, 105.0, 110.0]
    assert watch.changed_at == 110.0


def test_threshold_of_one_is_down_at_once() -> None:
    watch = decisions.next_side_watch(
        SideWatch(), "failing", "x", 100.0, threshold=1, window_seconds=WINDOW
    )
    assert watch.state == "down"


def test_rounds_at_the_window_edge_still_count() -> None:
    watch = fold_failing(SideWatch(), 100.0, 115.0, 100.0 + WINDOW)
    assert watch.state == "down"


def test_failing_rounds_spread_wider_than_the_window_never_reach_down() -> None:
    watch = SideWatch()
    for round_number in range(10):
        watch = fold(watch, "failing", 100.0 + round_number * 20.0)
        assert watch.state == "suspect", round_number
    # Only the rounds within WINDOW seconds of the last one stay in the streak.
    assert watch.failing_at == [260.0, 280.0]
    assert watch.reason is not None and watch.reason.startswith("suspect: failing round 2 of 3")


def test_streak_keeps_only_the_last_threshold_rounds() -> None:
    watch = fold_failing(SideWatch(), 100.0, 102.0, 104.0, 106.0, 108.0)
    assert watch.failing_at == [104.0, 106.0, 108.0]


def test_healthy_round_after_suspect_recovers() -> None:
    watch = fold(fold_failing(SideWatch(), 100.0, 105.0), "healthy", 110.0, reason=None)
    assert watch.state == "healthy"
    assert watch.reason == "recovered after 2 failing round(s)"
    assert watch.failing_at == []
    assert watch.changed_at == 110.0


def test_degraded_round_after_down_recovers_with_its_reason() -> None:
    down = fold_failing(SideWatch(), 100.0, 105.0, 110.0)
    watch = fold(down, "degraded", 115.0, reason="degraded: 1 of 2 nodes failing: a x")
    assert watch.state == "degraded"
    assert watch.reason == "recovered after 3 failing round(s); degraded: 1 of 2 nodes failing: a x"


def test_recovery_counts_every_failing_round_of_a_long_outage() -> None:
    down = fold_failing(SideWatch(), 100.0, 105.0, 110.0, 115.0, 120.0, 125.0)
    watch = fold(down, "healthy", 130.0, reason=None)
    assert watch.reason == "recovered after 6 failing round(s)"


def test_once_down_a_side_stays_down_on_further_failing_rounds() -> None:
    down = fold_failing(SideWatch(), 100.0, 105.0, 110.0)
    watch = fold_failing(down, 115.0, 120.0)
    assert watch.state == "down"
    assert watch.reason is not None and watch.reason.startswith(decisions.DOWN)
    assert watch.changed_at == 110.0


def test_once_down_a_late_failing_round_keeps_it_down() -> None:
    down = fold_failing(SideWatch(), 100.0, 105.0, 110.0)
    watch = fold(down, "failing", 110.0 + 10 * WINDOW)
    assert watch.state == "down"
    assert watch.failing_at == [110.0 + 10 * WINDOW]


def test_changed_at_only_moves_when_the_state_changes() -> None:
    healthy = fold(SideWatch(state="healthy", changed_at=50.0), "healthy", 100.0, reason=None)
    assert healthy.changed_at == 50.0
    degraded = fold(healthy, "degraded", 105.0, reason="degraded: a x")
    assert degraded.changed_at == 105.0
    still = fold(degraded, "degraded", 110.0, reason="degraded: b y")
    assert still.changed_at == 105.0
    assert still.reason == "degraded: b y"


def test_degraded_passes_through_from_healthy() -> None:
    watch = fold(SideWatch(), "degraded", 100.0, reason="degraded: a status yellow")
    assert watch.state == "degraded"
    assert watch.reason == "degraded: a status yellow"
    assert watch.failing_at == []


def test_misconfigured_round_resets_the_streak() -> None:
    suspect = fold_failing(SideWatch(), 100.0, 105.0)
    reason = "configuration error: a auth rejected: HTTP 401"
    misconfigured = fold(suspect, "misconfigured", 110.0, reason=reason)
    assert misconfigured.state == "misconfigured"
    assert misconfigured.failing_at == []
    # The streak starts again: one failing round after it is round 1, not round 3.
    watch = fold(misconfigured, "failing", 115.0)
    assert watch.state == "suspect"
    assert watch.failing_at == [115.0]


def test_misconfigured_from_healthy_keeps_the_config_error_reason() -> None:
    reason = "configuration error: a auth rejected: HTTP 401"
    watch = fold(SideWatch(), "misconfigured", 100.0, reason=reason)
    assert watch == SideWatch(state="misconfigured", reason=reason, changed_at=100.0)


def test_misconfigured_after_suspect_still_starts_with_config_error() -> None:
    suspect = fold_failing(SideWatch(), 100.0, 105.0)
    reason = "configuration error: a auth rejected: HTTP 401"
    watch = fold(suspect, "misconfigured", 110.0, reason=reason)
    assert watch.reason is not None and watch.reason.startswith(decisions.CONFIG_ERROR)


# --- monitor_decision ------------------------------------------------------------------------

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
VANTAGES = ("az-a", "az-b", "az-c")

HEALTHY = SideWatch(state="healthy")
DEGRADED = SideWatch(state="degraded", reason="degraded: a status yellow: replicas unassigned")
SUSPECT = SideWatch(state="suspect", reason="suspect: failing round 1 of 3: all 2 nodes failing")
DOWN_WATCH = SideWatch(state="down", reason="down: 3 consecutive failing rounds in 10.0s: all")
MISCONFIGURED = SideWatch(
    state="misconfigured", reason="configuration error: a auth rejected: HTTP 401"
)
STANDBY_DOWN = SideWatch(state="down", reason="down: standby gone")


def view(vantage: str, primary: SideWatch = HEALTHY, standby: SideWatch = HEALTHY) -> ClusterWatch:
    return ClusterWatch(vantage=vantage, primary=primary, standby=standby)


def primary_down_from(count: int, standby: SideWatch = HEALTHY) -> list[ClusterWatch]:
    """All three vantage points answer; the first `count` see the primary down."""
    return [
        view(v, primary=DOWN_WATCH if i < count else HEALTHY, standby=standby)
        for i, v in enumerate(VANTAGES)
    ]


GUARD_FIELDS = set(decisions.Guards.__dataclass_fields__)


def decide(views: list[ClusterWatch], **overrides: object):
    guards = {"now": NOW} | {k: v for k, v in overrides.items() if k in GUARD_FIELDS}
    arguments = {
        "active": "primary",
        "active_problem": None,
        "views": views,
        "vantage_count": len(VANTAGES),
        "quorum": 2,
    } | {k: v for k, v in overrides.items() if k not in GUARD_FIELDS}
    return decisions.monitor_decision(**arguments, guards=decisions.Guards(**guards))


def test_all_healthy_does_nothing() -> None:
    decision = decide(primary_down_from(0))
    assert decision.action == "none"
    assert decision.reason == ("not confirmed: primary down from 0 of 3 vantage points (quorum 2)")


def test_one_of_three_down_with_quorum_two_is_not_confirmed() -> None:
    decision = decide(primary_down_from(1))
    assert decision.action == "none"
    assert decision.reason.startswith(decisions.NOT_CONFIRMED)
    assert "1 of 3 vantage points (quorum 2)" in decision.reason


def test_two_of_three_down_with_quorum_two_fails_over() -> None:
    decision = decide(primary_down_from(2))
    assert decision.action == "failover"
    assert decision.reason == (
        "failing over: primary down from 2 of 3 vantage points (quorum 2): "
        "down: 3 consecutive failing rounds in 10.0s: all"
    )


def test_suspect_is_not_down() -> None:
    views = [view(v, primary=SUSPECT) for v in VANTAGES]
    decision = decide(views)
    assert decision.action == "none"
    assert decision.reason.startswith(decisions.NOT_CONFIRMED)


def test_a_silent_vantage_point_counts_as_not_seeing_down() -> None:
    # az-c never answered: only az-a sees the primary down, so 1 of 3 is short of quorum 2.
    views = [view("az-a", primary=DOWN_WATCH), view("az-b")]
    decision = decide(views)
    assert decision.action == "none"
    assert "down from 1 of 3 vantage points" in decision.reason


def test_quorum_may_be_met_with_a_vantage_point_silent() -> None:
    views = [view("az-a", primary=DOWN_WATCH), view("az-b", primary=DOWN_WATCH)]
    assert decide(views).action == "failover"


def test_quorum_three_needs_all_three() -> None:
    assert decide(primary_down_from(2), quorum=3).action == "none"
    assert decide(primary_down_from(3), quorum=3).action == "failover"


def test_unknown_active_side_alerts() -> None:
    decision = decide(
        primary_down_from(3), active=None, active_problem="record s.x. CNAME does not exist"
    )
    assert decision.action == "alert"
    assert decision.reason == "active side unknown: record s.x. CNAME does not exist"


def test_misconfigured_active_side_alerts_with_the_config_error() -> None:
    views = [view("az-a", primary=MISCONFIGURED), view("az-b"), view("az-c")]
    decision = decide(views)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.CONFIG_ERROR)
    assert decision.reason.endswith("(seen from az-a)")


def test_misconfigured_beats_a_confirmed_down() -> None:
    views = [
        view("az-a", primary=DOWN_WATCH),
        view("az-b", primary=DOWN_WATCH),
        view("az-c", primary=MISCONFIGURED),
    ]
    decision = decide(views)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.CONFIG_ERROR)


def test_misconfigured_standby_alone_does_not_alert() -> None:
    views = [view(v, standby=MISCONFIGURED) for v in VANTAGES]
    assert decide(views).action == "none"


def test_both_sides_down_does_not_switch() -> None:
    decision = decide(primary_down_from(3, standby=STANDBY_DOWN))
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.BOTH_DOWN)
    assert "standby is not healthy either (down: standby gone)" in decision.reason


def test_degraded_standby_is_usable() -> None:
    assert decide(primary_down_from(2, standby=DEGRADED)).action == "failover"


@pytest.mark.parametrize("standby", [SUSPECT, MISCONFIGURED], ids=["suspect", "misconfigured"])
def test_standby_neither_healthy_nor_degraded_is_not_usable(standby: SideWatch) -> None:
    decision = decide(primary_down_from(3, standby=standby))
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.BOTH_DOWN)


def test_standby_must_be_usable_on_a_quorum_of_vantage_points() -> None:
    views = [
        view("az-a", primary=DOWN_WATCH, standby=HEALTHY),
        view("az-b", primary=DOWN_WATCH, standby=STANDBY_DOWN),
        view("az-c", primary=DOWN_WATCH, standby=STANDBY_DOWN),
    ]
    decision = decide(views)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.BOTH_DOWN)
    views[1] = view("az-b", primary=DOWN_WATCH, standby=HEALTHY)
    assert decide(views).action == "failover"


def test_paused_alerts_with_its_reason() -> None:
    decision = decide(primary_down_from(2), paused=True, paused_reason="maintenance window")
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.PAUSED)
    assert decision.reason.endswith("automatic action is paused (maintenance window)")


def test_paused_without_a_reason() -> None:
    decision = decide(primary_down_from(2), paused=True)
    assert decision.action == "alert"
    assert decision.reason.endswith("automatic action is paused")


def test_paused_does_not_alert_while_not_confirmed() -> None:
    decision = decide(primary_down_from(1), paused=True)
    assert decision.action == "none"
    assert decision.reason.startswith(decisions.NOT_CONFIRMED)


def test_cooldown_in_the_future_alerts_until_it_ends() -> None:
    until = NOW + timedelta(minutes=5)
    decision = decide(primary_down_from(2), cooldown_until=until)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.COOLDOWN)
    assert decision.reason.endswith(f"no automatic failover until {until.isoformat()}")


def test_cooldown_in_the_past_no_longer_stops_a_failover() -> None:
    decision = decide(primary_down_from(2), cooldown_until=NOW - timedelta(seconds=1))
    assert decision.action == "failover"


def test_cooldown_ends_exactly_at_its_time() -> None:
    assert decide(primary_down_from(2), cooldown_until=NOW).action == "failover"


def standby_active_down(**overrides: object):
    views = [view(v, primary=HEALTHY, standby=DOWN_WATCH) for v in VANTAGES]
    return decide(views, active="standby", **overrides)


def test_failback_is_manual_by_default() -> None:
    decision = standby_active_down()
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.MANUAL_FAILBACK)
    assert "standby down from 3 of 3 vantage points" in decision.reason


def test_auto_failback_fails_over_to_the_primary() -> None:
    decision = standby_active_down(auto_failback=True)
    assert decision.action == "failover"
    assert decision.reason.startswith("failing over: standby down from 3 of 3")


def test_holding_off_after_an_attempt_that_changed_nothing() -> None:
    until = NOW + timedelta(minutes=1)
    decision = decide(primary_down_from(2), hold_until=until)
    assert decision.action == "none"
    assert decision.reason.startswith(decisions.HOLDING_OFF)
    assert decision.reason.endswith(f"next try after {until.isoformat()}")


def test_hold_in_the_past_no_longer_holds() -> None:
    decision = decide(primary_down_from(2), hold_until=NOW - timedelta(seconds=1))
    assert decision.action == "failover"


def test_auto_failover_off_alerts_instead() -> None:
    decision = decide(primary_down_from(2), auto_failover=False)
    assert decision.action == "alert"
    assert decision.reason == (
        "automatic failover off: primary down from 2 of 3 vantage points (quorum 2); act by hand"
    )


# Precedence: each pair shows the earlier rule winning when both apply.

LATER = NOW + timedelta(minutes=5)


def test_unknown_active_beats_misconfigured() -> None:
    views = [view(v, primary=MISCONFIGURED) for v in VANTAGES]
    decision = decide(views, active=None, active_problem="no record")
    assert decision.reason.startswith(decisions.UNKNOWN_ACTIVE)


def test_both_down_beats_paused() -> None:
    decision = decide(primary_down_from(3, standby=STANDBY_DOWN), paused=True)
    assert decision.reason.startswith(decisions.BOTH_DOWN)


def test_paused_beats_cooldown() -> None:
    decision = decide(primary_down_from(2), paused=True, cooldown_until=LATER)
    assert decision.reason.startswith(decisions.PAUSED)


def test_cooldown_beats_manual_failback() -> None:
    decision = standby_active_down(cooldown_until=LATER)
    assert decision.reason.startswith(decisions.COOLDOWN)


def test_manual_failback_beats_holding_off() -> None:
    decision = standby_active_down(hold_until=LATER)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.MANUAL_FAILBACK)


def test_holding_off_beats_auto_failover_off() -> None:
    decision = decide(primary_down_from(2), hold_until=LATER, auto_failover=False)
    assert decision.action == "none"
    assert decision.reason.startswith(decisions.HOLDING_OFF)


def test_auto_failover_off_also_stops_an_allowed_failback() -> None:
    decision = standby_active_down(auto_failback=True, auto_failover=False)
    assert decision.action == "alert"
    assert decision.reason.startswith(decisions.AUTO_OFF)
