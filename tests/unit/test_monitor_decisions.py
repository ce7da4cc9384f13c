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


# --- the hold-off after attempts that changed nothing: new evidence, back-off ---------------

SEEN = "primary down from 2 of 3 vantage points (quorum 2)"
ENDED = NOW - timedelta(seconds=20)  # the refuted run ended 20 s ago
HOLD = ENDED + timedelta(seconds=60)


def test_failing_since_is_the_first_failing_round_of_the_streak() -> None:
    suspect = fold(SideWatch(), "failing", 100.0)
    assert suspect.failing_since == 100.0
    down = fold_failing(suspect, 105.0, 110.0, 115.0, 120.0)
    assert down.state == "down" and down.failing_at == [110.0, 115.0, 120.0]
    assert down.failing_since == 100.0


def test_a_good_round_ends_failing_since_and_the_next_streak_starts_anew() -> None:
    down = fold_failing(SideWatch(), 100.0, 105.0, 110.0)
    healthy = fold(down, "healthy", 115.0, reason=None)
    assert healthy.failing_since is None
    assert fold(healthy, "failing", 120.0).failing_since == 120.0


def test_failing_since_of_a_watch_older_than_the_field() -> None:
    # Its failing_at still begins with the streak's first round: nothing was dropped.
    old = SideWatch(state="suspect", failing_at=[100.0, 105.0], failing_rounds=2)
    assert fold(old, "failing", 110.0).failing_since == 100.0
    # Rounds were dropped (6 failing, 3 kept): the start is not known.
    longer = SideWatch(state="down", failing_at=[120.0, 125.0, 130.0], failing_rounds=6)
    assert fold(longer, "failing", 135.0).failing_since is None


def reported(
    vantage: str, began: datetime | None, *, skew_s: float = 0.0, received: datetime = NOW
) -> ClusterWatch:
    """A vantage point reporting the primary down, its streak begun at `began` (monitor's
    clock), its own clock `skew_s` ahead of the monitor's, received by the monitor at
    `received` (the report's latency is left out: it only shifts the start a little)."""
    observed = received.timestamp() + skew_s
    since = None if began is None else began.timestamp() + skew_s
    primary = DOWN_WATCH.model_copy(update={"failing_since": since})
    return ClusterWatch(
        vantage=vantage, primary=primary, observed_at=observed, received_at=received
    )


def test_streak_began_is_placed_on_the_monitors_clock_whatever_the_skew() -> None:
    began = NOW - timedelta(seconds=3)
    for skew in (-120.0, 0.0, 45.0):
        at = decisions.streak_began(reported("az-a", began, skew_s=skew), "primary")
        assert at is not None and abs((at - began).total_seconds()) < 1e-3, skew


def test_streak_began_is_unknown_without_a_start_or_a_receipt() -> None:
    assert decisions.streak_began(reported("az-a", None), "primary") is None
    never_received = reported("az-a", NOW).model_copy(update={"received_at": None})
    assert decisions.streak_began(never_received, "primary") is None
    assert decisions.streak_began(view("az-a"), "primary") is None


def test_evidence_since_is_the_quorum_th_latest_streak_start() -> None:
    t1, t2, t3 = (NOW - timedelta(seconds=s) for s in (30, 10, 5))
    views = [reported("az-a", t1), reported("az-b", t2), reported("az-c", t3)]
    assert decisions.evidence_since(views, "primary", 2) == t2
    assert decisions.evidence_since(views, "primary", 3) == t1
    assert decisions.evidence_since(views, "primary", 1) == t3


def test_evidence_since_is_unknown_when_too_few_starts_are_known() -> None:
    views = [reported("az-a", NOW), reported("az-b", None)]
    assert decisions.evidence_since(views, "primary", 2) is None


def held(**overrides: object):
    arguments: dict[str, object] = {
        "now": NOW,
        "hold_until": HOLD,
        "refused_at": ENDED,
        "refusals": 1,
        "since": ENDED - timedelta(seconds=2),
    } | overrides
    return decisions.hold_off(SEEN, **arguments)


def test_hold_off_holds_the_evidence_the_refuted_run_saw() -> None:
    since = ENDED - timedelta(seconds=2)
    decision = held(since=since)
    assert decision is not None and decision.action == "none"
    assert decision.reason == (
        f"holding off: {SEEN}; the evidence (a quorum down since {since.isoformat()}) is "
        f"what the last attempt saw, which ended at {ENDED.isoformat()} and changed nothing, "
        f"next try after {HOLD.isoformat()}"
    )


def test_hold_off_holds_a_streak_that_began_exactly_when_the_run_ended() -> None:
    decision = held(since=ENDED)
    assert decision is not None and decision.reason.startswith(decisions.HOLDING_OFF)


def test_hold_off_lets_a_streak_that_began_after_the_run_ended_through() -> None:
    assert held(since=ENDED + timedelta(seconds=10)) is None


def test_hold_off_holds_evidence_of_unknown_age() -> None:
    decision = held(since=None)
    assert decision is not None and decision.action == "none"
    assert decision.reason == (
        f"holding off: {SEEN}; no new down streak since the last attempt ended at "
        f"{ENDED.isoformat()} and changed nothing, next try after {HOLD.isoformat()}"
    )


def test_hold_off_backs_off_new_evidence_too_after_two_attempts_in_a_row() -> None:
    decision = held(refusals=2, since=ENDED + timedelta(seconds=10))
    assert decision is not None and decision.action == "none"
    assert decision.reason == (
        f"holding off: {SEEN}; 2 attempts in a row changed nothing, backing off until "
        f"{HOLD.isoformat()}"
    )


def test_hold_off_without_a_refused_at_holds_everything_as_before() -> None:
    decision = held(refused_at=None, refusals=0, since=NOW)
    assert decision is not None
    assert decision.reason == (
        f"holding off: {SEEN}; the last attempt changed nothing, next try after {HOLD.isoformat()}"
    )


@pytest.mark.parametrize("until", [None, NOW, NOW - timedelta(seconds=1)])
def test_no_hold_off_once_it_is_over(until: datetime | None) -> None:
    assert held(hold_until=until, refusals=5, since=None) is None


def test_monitor_decision_holds_the_refuted_evidence_and_acts_on_a_new_streak() -> None:
    guards = {"hold_until": HOLD, "refused_at": ENDED, "refusals": 1}
    before = ENDED - timedelta(seconds=2)
    old = [reported("az-a", before), reported("az-b", before), view("az-c")]
    decision = decide(old, **guards)
    assert decision.action == "none"
    assert decision.reason.startswith(f"{decisions.HOLDING_OFF}: {SEEN}; the evidence")
    after = ENDED + timedelta(seconds=10)
    new = [reported("az-a", after), reported("az-b", after), view("az-c")]
    decision = decide(new, **guards)
    assert decision.action == "failover"
    assert decision.reason.startswith(f"{decisions.FAILING_OVER}: {SEEN}")


def test_monitor_decision_needs_a_quorum_of_new_streaks() -> None:
    guards = {"hold_until": HOLD, "refused_at": ENDED, "refusals": 1}
    # az-a has been down since before the run ended; only az-b's streak is new.
    views = [
        reported("az-a", ENDED - timedelta(seconds=5)),
        reported("az-b", ENDED + timedelta(seconds=10)),
        view("az-c"),
    ]
    decision = decide(views, **guards)
    assert decision.action == "none" and decision.reason.startswith(decisions.HOLDING_OFF)


def test_an_alarm_during_the_hold_off_is_held() -> None:
    decision = decisions.alarm_decision(
        alarm="sns alarm 'search-red'",
        active="primary",
        active_problem=None,
        views=[view(v) for v in VANTAGES],
        quorum=2,
        guards=decisions.Guards(now=NOW, hold_until=HOLD, refused_at=ENDED, refusals=1),
    )
    assert decision.action == "none"
    assert decision.reason.startswith(
        f"{decisions.HOLDING_OFF}: sns alarm 'search-red' says primary is failing; "
        "no new down streak since the last attempt"
    )


def test_manual_failback_beats_a_refused_attempts_hold_off() -> None:
    views = [reported(v, ENDED - timedelta(seconds=1)) for v in VANTAGES]
    views = [v.model_copy(update={"primary": HEALTHY, "standby": v.primary}) for v in views]
    decision = decide(views, active="standby", hold_until=HOLD, refused_at=ENDED, refusals=1)
    assert decision.reason.startswith(decisions.MANUAL_FAILBACK)


def after_refusal(refusals: int, refused_at: datetime | None):
    return decisions.hold_off_after(refusals=refusals, refused_at=refused_at, now=NOW)


def test_the_first_attempt_that_changed_nothing_holds_60_s() -> None:
    count, until, why = after_refusal(0, None)
    assert (count, until) == (1, NOW + timedelta(seconds=60))
    assert why == (
        "holding off 60s: 1 attempt(s) in a row changed nothing; "
        "a new down streak is still acted on at once"
    )


def test_attempts_in_a_row_back_off_doubling_up_to_ten_minutes() -> None:
    refusals, refused_at, holds = 0, None, []
    now = NOW
    for _ in range(7):
        refusals, until, _why = decisions.hold_off_after(
            refusals=refusals, refused_at=refused_at, now=now
        )
        holds.append((until - now).total_seconds())
        refused_at, now = now, until + timedelta(seconds=5)
    assert holds == [60, 120, 240, 480, 600, 600, 600]
    assert refusals == 7


def test_the_second_attempt_in_a_row_backs_off_new_streaks_too() -> None:
    count, until, why = after_refusal(1, NOW - timedelta(seconds=30))
    assert (count, until) == (2, NOW + timedelta(seconds=120))
    assert why == (
        "holding off 120s: 2 attempt(s) in a row changed nothing; backing off, new down streaks too"
    )


def test_the_back_off_is_forgotten_after_a_quiet_half_hour() -> None:
    count, until, _ = after_refusal(4, NOW - timedelta(minutes=31))
    assert (count, until) == (1, NOW + timedelta(seconds=60))
    count, _, _ = after_refusal(4, NOW - timedelta(minutes=29))
    assert count == 5


def test_a_count_without_an_end_time_starts_over() -> None:
    assert after_refusal(3, None)[0] == 1
