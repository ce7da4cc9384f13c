"""The Region switch's decisions: each refusal's stable words, and what must not refuse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from failover import decisions
from failover.config import parse_config
from failover.models import (
    AppTierState,
    CacheDatastoreState,
    DatabaseMember,
    DatabaseState,
    FailoverPlan,
    FailoverResult,
    Outcome,
    WaitCapacityResult,
)
from tests.unit.test_region_config import STOREFRONT, config_with

SHOP = parse_config(config_with(STOREFRONT)).storefront("shop")
EAST_DB = SHOP.primary.database_cluster_arn
WEST_DB = SHOP.dr.database_cluster_arn


def database(lag: float | None = 0.5, *, writer: str = EAST_DB, **extra: object) -> DatabaseState:
    return DatabaseState(
        global_cluster_id="shop-global",
        members=[
            DatabaseMember(db_cluster_arn=EAST_DB, region="us-east-1", is_writer=writer == EAST_DB),
            DatabaseMember(
                db_cluster_arn=WEST_DB,
                region="us-west-2",
                is_writer=writer == WEST_DB,
                lag_seconds=lag,
            ),
        ],
        **extra,
    )


def test_the_serving_region_is_read_from_www() -> None:
    assert decisions.serving_region(["alb-us-east-1.shop.example."], SHOP) == ("primary", None)
    assert decisions.serving_region(["alb-us-west-2.shop.example"], SHOP) == ("dr", None)
    role, why = decisions.serving_region(["somewhere.else"], SHOP)
    assert role is None and why is not None and why.startswith(decisions.WWW_UNKNOWN)


def test_the_writer_region_follows_the_writer_arn() -> None:
    assert decisions.writer_region(database(), SHOP) == "primary"
    assert decisions.writer_region(database(writer=WEST_DB), SHOP) == "dr"


def test_a_planned_switch_to_the_serving_region_does_nothing() -> None:
    refusal = decisions.planned_region_refusal("dr", "dr")
    assert refusal is not None and refusal.startswith(decisions.ALREADY_SERVING)
    assert decisions.planned_region_refusal("primary", "dr") is None
    assert decisions.planned_region_refusal("primary", None) is None


@pytest.mark.parametrize(
    ("rounds", "refused"),
    [
        ([["down", "down", None]] * 3, False),  # a quorum of 2 saw it down 3 times
        ([["down", "down", "down"], ["down", None, None], ["down"] * 3], True),
        ([["down", "down", None]] * 2, True),  # fewer rounds than needed
        ([[None, None, None]] * 3, True),
    ],
)
def test_the_region_is_down_only_when_a_quorum_saw_it_every_round(
    rounds: list[list[str | None]], refused: bool
) -> None:
    refusal = decisions.region_down_refusal(rounds, rounds_needed=3, quorum=2)
    assert (refusal is not None) == refused
    if refused:
        assert refusal is not None and refusal.startswith(decisions.REGION_NOT_DOWN)


def test_the_down_reason_names_what_was_seen() -> None:
    reason = decisions.region_down_reason([["HTTP 503", None, "HTTP 503"]], 3)
    assert reason == "down: 3 round(s) in a row from 2 of 3 vantage point(s): HTTP 503"


def tier(**fields: object) -> AppTierState:
    return AppTierState.model_validate(
        {"region": "us-west-2", "load_balancer_state": "active"} | fields
    )


def test_the_dr_tier_needs_an_active_alb_and_a_group() -> None:
    assert decisions.app_tier_refusal(tier(desired_capacity=1), capacity=4) is None
    for state in (
        AppTierState(region="us-west-2"),
        tier(load_balancer_state="provisioning"),
    ):
        refusal = decisions.app_tier_refusal(state, capacity=4)
        assert refusal is not None and refusal.startswith(decisions.ALB_NOT_ACTIVE)
    refusal = decisions.app_tier_refusal(tier(group_found=False), capacity=4)
    assert refusal is not None and refusal.startswith(decisions.ASG_MISSING)


def test_capacity_not_reached_names_the_counts_and_the_scaling_problem() -> None:
    state = tier(in_service=1, healthy_targets=0, scaling_problems=["InsufficientInstanceCapacity"])
    problem = decisions.capacity_problem(
        WaitCapacityResult(ready=False, state=state, polls=9), capacity=4, timeout_s=30
    )
    assert problem == (
        "capacity not reached: the us-west-2 app tier had 1 InService and 0 healthy target(s) "
        "of 4 after 30s; InsufficientInstanceCapacity"
    )
    ready = WaitCapacityResult(ready=True, state=state, polls=1)
    assert decisions.capacity_problem(ready, capacity=4, timeout_s=30) is None


def test_the_database_must_be_close_behind() -> None:
    ok = decisions.database_refusal(
        database(0.5), target_arn=WEST_DB, max_lag_seconds=5, mode="graceful"
    )
    assert ok is None
    lagging = decisions.database_refusal(
        database(12), target_arn=WEST_DB, max_lag_seconds=5, mode="ungraceful"
    )
    assert lagging is not None and lagging.startswith(decisions.DATABASE_LAG + ":")
    assert "12s behind" in lagging
    unknown = decisions.database_refusal(
        database(None), target_arn=WEST_DB, max_lag_seconds=5, mode="graceful"
    )
    assert unknown is not None and unknown.startswith(decisions.DATABASE_LAG_UNKNOWN)


def test_the_database_target_must_be_a_member_and_not_mid_switch() -> None:
    stranger = "arn:aws:rds:us-west-2:123456789012:cluster:other"
    refusal = decisions.database_refusal(
        database(), target_arn=stranger, max_lag_seconds=5, mode="graceful"
    )
    assert refusal is not None and refusal.startswith(decisions.DATABASE_NOT_MEMBER)
    busy = database(failover_status="switching-over", failover_to=EAST_DB)
    refusal = decisions.database_refusal(
        busy, target_arn=WEST_DB, max_lag_seconds=5, mode="graceful"
    )
    assert refusal is not None and refusal.startswith(decisions.DATABASE_BUSY)


def test_a_target_that_already_writes_is_ready_whatever_its_lag() -> None:
    state = database(None, writer=WEST_DB)
    assert (
        decisions.database_refusal(state, target_arn=WEST_DB, max_lag_seconds=0, mode="graceful")
        is None
    )


def test_the_cache_datastore_must_hold_the_dr_group() -> None:
    good = CacheDatastoreState(
        global_replication_group_id="g",
        status="available",
        primary_region="us-east-1",
        members={"us-east-1": "a", "us-west-2": "b"},
    )
    assert decisions.cache_refusal(good, region="us-west-2", group="b") is None
    missing = decisions.cache_refusal(good, region="us-west-2", group="c")
    assert missing is not None and missing.startswith(decisions.CACHE_NOT_READY)
    busy = good.model_copy(update={"status": "modifying"})
    refusal = decisions.cache_refusal(busy, region="us-west-2", group="b")
    assert refusal is not None and "modifying" in refusal


def plan_result(outcome: Outcome, reason: str, data_refusal: str | None = None) -> FailoverResult:
    now = datetime.now(UTC)
    plan = FailoverPlan(
        cluster="catalog",
        from_side="primary",
        to_side="standby",
        confirmation="-",
        data_refusal=data_refusal,
    )
    return FailoverResult(
        result=outcome,
        cluster="catalog",
        from_side="primary",
        to_side="standby",
        from_value=None,
        to_value=None,
        reason=reason,
        trigger="region",
        started_at=now,
        finished_at=now,
        steps=[],
        plan=plan if outcome == Outcome.PLANNED else None,
    )


def test_the_search_dry_run_decides_search_readiness() -> None:
    assert decisions.search_refusal(plan_result(Outcome.PLANNED, "dry run")) is None
    already = f"aborted: {decisions.ALREADY_ACTIVE}: the standby already takes the traffic"
    assert decisions.search_refusal(plan_result(Outcome.ABORTED, already)) is None
    stale = decisions.search_refusal(
        plan_result(Outcome.PLANNED, "dry run", "alias stale: magento2_product_1")
    )
    assert stale == "search not ready: alias stale: magento2_product_1"
    unknown = decisions.search_refusal(plan_result(Outcome.ABORTED, "aborted: record missing"))
    assert unknown is not None and unknown.startswith(decisions.SEARCH_NOT_READY)


def test_an_ungraceful_failover_needs_approval_unless_allowed() -> None:
    refusal = decisions.approval_reason(
        mode="ungraceful", planned=False, allow_data_loss=False, require_approval=False
    )
    assert refusal is not None and refusal.startswith(decisions.NEEDS_APPROVAL)
    assert (
        decisions.approval_reason(
            mode="ungraceful", planned=False, allow_data_loss=True, require_approval=False
        )
        is None
    )
    assert (
        decisions.approval_reason(
            mode="graceful", planned=True, allow_data_loss=False, require_approval=True
        )
        is None
    )
    required = decisions.approval_reason(
        mode="graceful", planned=False, allow_data_loss=False, require_approval=True
    )
    assert required is not None and "requires approval" in required


def test_the_mode_follows_the_kind_of_switch() -> None:
    assert decisions.database_mode(None, planned=True) == "graceful"
    assert decisions.database_mode(None, planned=False) == "ungraceful"
    assert decisions.database_mode("graceful", planned=False) == "graceful"


def test_the_data_loss_window_is_the_lag_of_an_ungraceful_failover() -> None:
    assert decisions.data_loss_window(database(1.5), WEST_DB, "ungraceful") == 1.5
    assert decisions.data_loss_window(database(1.5), WEST_DB, "graceful") == 0.0
    assert decisions.data_loss_window(database(None), WEST_DB, "ungraceful") is None


def test_only_refusals_aws_gives_before_starting_allow_a_rollback() -> None:
    assert decisions.switch_refused("InvalidGlobalClusterStateFault")
    assert not decisions.switch_refused("InternalFailure")
    assert not decisions.switch_refused(None)
