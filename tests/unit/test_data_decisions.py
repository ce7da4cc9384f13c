"""The data decisions: is the standby's data fit for the storefront (aliases, document
counts, replication), and what the monitor keeps of each side. Each refusal starts with a
stable prefix; an allowed standby gets [] (or None)."""

from __future__ import annotations

import pytest

from failover.config import MagentoIndices, ReplicationSettings
from failover.decisions.data import (
    ACCEPTABLE,
    ALIAS_MISSING,
    ALIAS_STALE,
    INDICES_UNREADABLE,
    NOT_RESEEDED,
    REPLICATION_LAG,
    TOO_FEW_DOCUMENTS,
    alias_refusals,
    cluster_status_note,
    data_key,
    data_refusal,
    fold_data,
    index_version,
    promotion_refusal,
    readiness_lines,
    readiness_refusals,
    reference_for,
    replication_refusals,
)
from failover.models import AliasState, DataRecord, DataSnapshot, FollowerState

NOW = 1_700_000_000.0
ALIAS = "magento2_product_1"
V1, V2, V3 = f"{ALIAS}_v1", f"{ALIAS}_v2", f"{ALIAS}_v3"

MAGENTO = MagentoIndices()  # one store: magento2_product_1
REPLICATION = ReplicationSettings(
    kind="opensearch",
    primary_connection="to-primary",
    max_lag_operations=1000,
    max_lag_seconds=300,
)
NO_REPLICATION = ReplicationSettings()


def alias(indices: list[str] | None = None, documents: int | None = 1000, name: str = ALIAS):
    indices = [V2] if indices is None else indices
    return AliasState(alias=name, indices=indices, documents=documents if indices else None)


def follower(index: str = V2, status: str = "syncing", **fields: object) -> FollowerState:
    return FollowerState(index=index, status=status, **fields)


def snapshot(
    side: str = "standby",
    aliases: list[AliasState] | None = None,
    followers: list[FollowerState] | None = None,
    *,
    read_at: float = NOW,
    error: str | None = None,
    cluster_status: str | None = "green",
) -> DataSnapshot:
    return DataSnapshot(
        side=side,
        read_at=read_at,
        error=error,
        aliases=[alias()] if aliases is None else aliases,
        followers=followers or [],
        cluster_status=cluster_status,
    )


def primary(**kwargs: object) -> DataSnapshot:
    return snapshot("primary", **kwargs)


# --- aliases and document counts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        pytest.param(
            [],
            [alias([V2])],
            f"{ALIAS_MISSING}: {ALIAS} is not on the standby; on the primary it points at {V2}",
            id="missing-with-reference",
        ),
        pytest.param(
            [alias([])],
            [alias([])],
            f"{ALIAS_MISSING}: {ALIAS} is not on the standby",
            id="missing-on-both",
        ),
        pytest.param(
            [alias([V1])],
            [alias([V2])],
            f"{ALIAS_STALE}: {ALIAS} points at {V1} on the standby, at {V2} on the primary "
            "(read now)",
            id="stale",
        ),
        pytest.param(
            [alias([V2], documents=800)],
            [alias([V2], documents=1000)],
            f"{TOO_FEW_DOCUMENTS}: {ALIAS} holds 800 documents on the standby, 1000 on the "
            "primary (read now) (min_document_ratio 0.9)",
            id="too-few-documents",
        ),
        pytest.param([alias([V2], 900)], [alias([V2], 1000)], None, id="exactly-the-ratio"),
        pytest.param([alias([V2], 1200)], [alias([V2], 1000)], None, id="more-documents"),
        pytest.param([alias([V3], 1000)], [alias([V2], 1000)], None, id="standby-newer"),
        pytest.param([alias([V2], 0)], [alias([V2], 0)], None, id="both-empty"),
        pytest.param([alias([V2])], [alias([])], None, id="gone-from-the-reference"),
    ],
)
def test_alias_refusals(mine: list, theirs: list, expected: str | None) -> None:
    refusals = alias_refusals(snapshot(aliases=mine), primary(aliases=theirs), MAGENTO, NOW)
    assert refusals == ([expected] if expected else [])


def test_alias_missing_without_any_reference() -> None:
    refusals = alias_refusals(snapshot(aliases=[]), None, MAGENTO, NOW)
    assert refusals == [f"{ALIAS_MISSING}: {ALIAS} is not on the standby"]


def test_without_a_reference_a_present_alias_is_not_judged() -> None:
    assert alias_refusals(snapshot(aliases=[alias([V1], 1)]), None, MAGENTO, NOW) == []


def test_a_stale_alias_against_the_monitors_record_says_how_old_it_is() -> None:
    record = primary(aliases=[alias([V2])], read_at=NOW - 120)
    [refusal] = alias_refusals(snapshot(aliases=[alias([V1])]), record, MAGENTO, NOW)
    assert refusal.startswith(ALIAS_STALE)
    assert refusal.endswith("(last known, read 120 s ago)")


def test_a_newer_standby_is_still_judged_by_its_document_count() -> None:
    refusals = alias_refusals(
        snapshot(aliases=[alias([V3], 10)]), primary(aliases=[alias([V2], 1000)]), MAGENTO, NOW
    )
    assert len(refusals) == 1 and refusals[0].startswith(TOO_FEW_DOCUMENTS)


def test_a_stale_alias_is_not_also_counted() -> None:
    refusals = alias_refusals(
        snapshot(aliases=[alias([V1], 10)]), primary(aliases=[alias([V2], 1000)]), MAGENTO, NOW
    )
    assert len(refusals) == 1 and refusals[0].startswith(ALIAS_STALE)


def test_every_store_is_judged_on_its_own() -> None:
    magento = MagentoIndices(stores=[1, 2])
    two = "magento2_product_2"
    mine = [alias([V2], 1000), alias([], name=two)]
    theirs = [alias([V2], 1000), alias([f"{two}_v4"], 50, name=two)]
    refusals = alias_refusals(snapshot(aliases=mine), primary(aliases=theirs), magento, NOW)
    assert refusals == [
        f"{ALIAS_MISSING}: {two} is not on the standby; on the primary it points at {two}_v4"
    ]


def test_explicit_alias_names_replace_the_store_aliases() -> None:
    magento = MagentoIndices(aliases=["vendor_brands"])
    # The store alias is missing, but the storefront only reads `vendor_brands`.
    mine = [alias(["vendor_brands_v1"], 10, name="vendor_brands")]
    assert alias_refusals(snapshot(aliases=mine), None, magento, NOW) == []
    assert alias_refusals(snapshot(aliases=[alias([V2])]), None, magento, NOW) == [
        f"{ALIAS_MISSING}: vendor_brands is not on the standby"
    ]


def test_a_configured_ratio_is_used() -> None:
    magento = MagentoIndices(min_document_ratio=0.5)
    mine, theirs = [alias([V2], 600)], [alias([V2], 1000)]
    assert alias_refusals(snapshot(aliases=mine), primary(aliases=theirs), magento, NOW) == []
    mine = [alias([V2], 400)]
    [refusal] = alias_refusals(snapshot(aliases=mine), primary(aliases=theirs), magento, NOW)
    assert refusal.startswith(TOO_FEW_DOCUMENTS) and "(min_document_ratio 0.5)" in refusal


@pytest.mark.parametrize(
    ("index", "version"),
    [(V1, 1), ("magento2_product_1_v17", 17), (ALIAS, None), ("products_v2_old", None)],
)
def test_index_version(index: str, version: int | None) -> None:
    assert index_version(index) == version


# --- replication ---------------------------------------------------------------------------


def repl(
    live: DataSnapshot,
    reference: DataSnapshot | None = None,
    recorded: DataSnapshot | None = None,
    replication: ReplicationSettings = REPLICATION,
) -> list[str]:
    return replication_refusals(live, reference, recorded, replication, NOW)


def test_replication_disabled_refuses_nothing() -> None:
    live = snapshot(followers=[follower(status="not_following")])
    assert repl(live, primary(), replication=NO_REPLICATION) == []
    assert repl(snapshot(followers=[follower(status="paused")]), None, None, NO_REPLICATION) == []


@pytest.mark.parametrize(
    "followers",
    [[follower(status="not_following")], []],
    ids=["not-following", "no-replication-state"],
)
def test_not_following_while_the_other_side_follows_nothing_is_not_reseeded(
    followers: list[FollowerState],
) -> None:
    reference = primary(followers=[follower(status="not_following")])
    [refusal] = repl(snapshot(followers=followers), reference)
    assert refusal.startswith(f"{NOT_RESEEDED}: {V2} on the standby is not replicating from")
    assert "failover reseed" in refusal


def test_not_following_without_a_reference_is_not_reseeded() -> None:
    [refusal] = repl(snapshot(followers=[follower(status="not_following")]))
    assert refusal.startswith(NOT_RESEEDED)


def test_not_following_while_the_other_side_follows_it_is_the_leader() -> None:
    live = snapshot(followers=[follower(status="not_following")])
    reference = primary(followers=[follower(status="syncing", connection="to-standby")])
    assert repl(live, reference) == []


def test_a_failed_follower_on_the_other_side_still_makes_this_one_the_leader() -> None:
    live = snapshot(followers=[follower(status="not_following")])
    assert repl(live, primary(followers=[follower(status="failed")])) == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [("paused", "User initiated"), ("failed", "leader index deleted"), ("paused", None)],
)
def test_paused_or_failed_without_a_monitor_record_is_lag_since_when_unknown(
    status: str, reason: str | None
) -> None:
    live = snapshot(followers=[follower(status=status, reason=reason)])
    why = f" ({reason})" if reason else ""
    assert repl(live, primary()) == [
        f"{REPLICATION_LAG}: {V2} replication {status}{why} on the standby, since when unknown "
        "(the monitor has no reading of it)"
    ]


def test_a_record_beyond_the_limits_is_replication_lag() -> None:
    # Caught up as it reads now (the leader is gone, its checkpoints are frozen).
    live = snapshot(
        followers=[follower(status="syncing", leader_checkpoint=50, follower_checkpoint=50)]
    )
    recorded = snapshot(followers=[follower(stale_since=NOW - 600, fresh_at=NOW - 600)])
    [refusal] = repl(live, None, recorded)
    assert refusal.startswith(f"{REPLICATION_LAG}: {V2} on the standby (syncing) has been ")
    assert "beyond the limits for 600 s" in refusal
    assert "max_lag_seconds 300, max_lag_operations 1000" in refusal


def test_a_record_beyond_the_limits_names_the_pause_reason() -> None:
    live = snapshot(followers=[follower(status="paused", reason="User initiated")])
    recorded = snapshot(followers=[follower(status="paused", stale_since=NOW - 30)])
    [refusal] = repl(live, primary(), recorded)
    assert refusal.startswith(f"{REPLICATION_LAG}: {V2} on the standby (paused (User initiated))")


def test_paused_recently_within_the_limits_is_allowed() -> None:
    live = snapshot(followers=[follower(status="paused")])
    recorded = snapshot(followers=[follower(status="paused", fresh_at=NOW - 60)])
    assert repl(live, primary(), recorded) == []


def test_paused_with_a_record_never_judged_is_still_since_when_unknown() -> None:
    live = snapshot(followers=[follower(status="paused")])
    reading = snapshot(followers=[follower(status="paused")], read_at=NOW - 60)
    recorded = fold_data(None, reading, REPLICATION, leader_healthy=False)
    assert recorded.followers[0].fresh_at is None
    assert recorded.followers[0].stale_since is None
    [refusal] = repl(live, primary(), recorded)
    assert refusal.startswith(REPLICATION_LAG) and "since when unknown" in refusal


@pytest.mark.parametrize(
    ("leader", "recorded_leader", "follower_at", "behind"),
    [
        pytest.param(5000, None, 3000, 2000, id="live-lag-above"),
        pytest.param(3500, None, 3000, None, id="live-lag-below"),
        pytest.param(4000, None, 3000, None, id="exactly-the-limit"),
        pytest.param(3000, 5000, 3000, 2000, id="recorded-leader-larger"),
        pytest.param(5000, 3100, 3000, 2000, id="live-leader-larger"),
        pytest.param(3000, 3500, 3000, None, id="recorded-leader-within"),
        pytest.param(None, 5000, 3000, 2000, id="only-the-recorded-leader"),
        pytest.param(None, None, 3000, None, id="no-leader-checkpoint"),
    ],
)
def test_lag_in_operations_uses_the_larger_leader_checkpoint(
    leader: int | None, recorded_leader: int | None, follower_at: int, behind: int | None
) -> None:
    live = snapshot(followers=[follower(leader_checkpoint=leader, follower_checkpoint=follower_at)])
    recorded = snapshot(
        followers=[follower(leader_checkpoint=recorded_leader, follower_checkpoint=follower_at)],
        read_at=NOW - 30,
    )
    refusals = repl(live, None, recorded)
    if behind is None:
        assert refusals == []
    else:
        assert refusals == [
            f"{REPLICATION_LAG}: {V2} on the standby is {behind} operations behind the primary "
            "(max_lag_operations 1000)"
        ]


def test_the_side_judged_is_the_one_read() -> None:
    # A failback judges the primary, fed from the standby.
    live = primary(followers=[follower(status="not_following")])
    [refusal] = repl(live, snapshot(followers=[follower(status="not_following")]))
    assert refusal.startswith(f"{NOT_RESEEDED}: {V2} on the primary is not replicating from the ")
    assert "from the standby" in refusal


# --- readiness as a whole, and the preflight's verdict --------------------------------------


def test_an_unreadable_standby_is_refused_whatever_else() -> None:
    live = snapshot(aliases=[], error="http://n1:9200: connection failed: refused")
    refusals = readiness_refusals(live, primary(), None, MAGENTO, REPLICATION, NOW)
    assert refusals == [
        f"{INDICES_UNREADABLE}: standby: http://n1:9200: connection failed: refused"
    ]
    assert data_refusal(refusals, accepted=False) == f"preflight failed: {refusals[0]}"
    assert data_refusal(refusals, accepted=True) == f"preflight failed: {refusals[0]}"


def test_readiness_joins_alias_and_replication_refusals() -> None:
    live = snapshot(aliases=[alias([V1])], followers=[follower(V1, status="paused")])
    refusals = readiness_refusals(live, primary(), None, MAGENTO, REPLICATION, NOW)
    assert [r.split(":")[0] for r in refusals] == [ALIAS_STALE, REPLICATION_LAG]


def test_a_fit_standby_has_no_refusals() -> None:
    live = snapshot(followers=[follower(leader_checkpoint=100, follower_checkpoint=100)])
    assert readiness_refusals(live, primary(), None, MAGENTO, REPLICATION, NOW) == []


def test_no_refusal_is_no_verdict() -> None:
    assert data_refusal([], accepted=False) is None
    assert data_refusal([], accepted=True) is None


@pytest.mark.parametrize("prefix", ACCEPTABLE)
def test_an_accepted_run_lets_each_acceptable_refusal_through(prefix: str) -> None:
    refusals = [f"{prefix}: something about {ALIAS}"]
    assert data_refusal(refusals, accepted=True) is None
    assert data_refusal(refusals, accepted=False) == f"preflight failed: {refusals[0]}"


def test_acceptable_prefixes_leave_out_an_unreadable_standby() -> None:
    assert INDICES_UNREADABLE not in ACCEPTABLE
    assert set(ACCEPTABLE) == {
        ALIAS_MISSING,
        ALIAS_STALE,
        REPLICATION_LAG,
        TOO_FEW_DOCUMENTS,
        NOT_RESEEDED,
    }


def test_every_refusal_is_listed_and_one_unacceptable_refuses_an_accepted_run() -> None:
    refusals = [f"{ALIAS_STALE}: a", f"{REPLICATION_LAG}: b"]
    expected = f"preflight failed: {ALIAS_STALE}: a; {REPLICATION_LAG}: b"
    assert data_refusal(refusals, accepted=False) == expected
    mixed = [*refusals, f"{INDICES_UNREADABLE}: standby: gone"]
    assert data_refusal(mixed, accepted=True) == "preflight failed: " + "; ".join(mixed)


def test_readiness_lines_show_aliases_counts_and_lag() -> None:
    magento = MagentoIndices(stores=[1, 2])
    live = snapshot(
        aliases=[alias([V2], 1200)],
        followers=[
            follower(leader_checkpoint=130, follower_checkpoint=100),
            follower("other_v1", status="not_following"),
            follower("paused_v1", status="paused"),
        ],
    )
    assert readiness_lines(live, magento) == [
        f"standby {ALIAS} → {V2}, 1200 documents",
        "standby magento2_product_2: missing",
        f"standby {V2}: syncing, lag 30 operations (checkpoint 100)",
        "standby paused_v1: paused",
    ]


# --- the monitor's record ----------------------------------------------------------------


def reading(at: float, *states: FollowerState, error: str | None = None) -> DataSnapshot:
    return snapshot(followers=list(states), read_at=at, error=error)


def fold(
    previous: DataSnapshot | None, current: DataSnapshot, *, leader_healthy: bool = True
) -> DataSnapshot:
    return fold_data(previous, current, REPLICATION, leader_healthy=leader_healthy)


def state_of(folded: DataSnapshot) -> FollowerState:
    [state] = folded.followers
    return state


def test_an_error_keeps_the_previous_snapshot() -> None:
    previous = fold(None, reading(NOW, follower(leader_checkpoint=10, follower_checkpoint=10)))
    failed = reading(NOW + 30, error="http://n1:9200: connection failed: refused")
    assert fold(previous, failed) == previous
    assert fold(None, failed) == failed


def test_a_caught_up_follower_is_fresh_now() -> None:
    folded = fold(None, reading(NOW, follower(leader_checkpoint=10, follower_checkpoint=10)))
    assert state_of(folded).fresh_at == NOW
    assert state_of(folded).stale_since is None
    assert folded.read_at == NOW


def test_fresh_at_moves_while_caught_up_and_while_advancing() -> None:
    first = fold(None, reading(NOW, follower(leader_checkpoint=100, follower_checkpoint=100)))
    # Behind but advancing: still fresh.
    second = fold(
        first, reading(NOW + 30, follower(leader_checkpoint=300, follower_checkpoint=200))
    )
    assert state_of(second).fresh_at == NOW + 30
    # Behind and not advancing: fresh_at stays where it was.
    third = fold(
        second, reading(NOW + 60, follower(leader_checkpoint=400, follower_checkpoint=200))
    )
    assert state_of(third).fresh_at == NOW + 30
    assert state_of(third).stale_since is None


def test_bootstrapping_counts_as_catching_up() -> None:
    first = fold(None, reading(NOW, follower(status="bootstrapping")))
    assert state_of(first).fresh_at == NOW


def test_frozen_checkpoints_while_the_leader_is_down_do_not_refresh() -> None:
    first = fold(None, reading(NOW, follower(leader_checkpoint=100, follower_checkpoint=100)))
    # The leader is gone: the follower reports the last checkpoints, lag 0.
    later = fold(
        first,
        reading(NOW + 900, follower(leader_checkpoint=100, follower_checkpoint=100)),
        leader_healthy=False,
    )
    assert state_of(later).fresh_at == NOW
    assert state_of(later).stale_since is None


def test_a_stale_flag_is_kept_while_the_leader_is_down() -> None:
    previous = reading(NOW, follower(fresh_at=NOW - 900, stale_since=NOW - 600))
    later = fold(
        previous,
        reading(NOW + 60, follower(leader_checkpoint=5, follower_checkpoint=5)),
        leader_healthy=False,
    )
    assert state_of(later).fresh_at == NOW - 900
    assert state_of(later).stale_since == NOW - 600


def test_a_first_reading_without_a_healthy_leader_is_not_fresh() -> None:
    folded = fold(
        None,
        reading(NOW, follower(leader_checkpoint=10, follower_checkpoint=10)),
        leader_healthy=False,
    )
    assert state_of(folded).fresh_at is None
    assert state_of(folded).stale_since is None


def test_lag_beyond_the_operations_limit_sets_stale_since() -> None:
    folded = fold(None, reading(NOW, follower(leader_checkpoint=5000, follower_checkpoint=100)))
    state = state_of(folded)
    assert state.stale_since is not None
    assert state.stale_since <= NOW


def test_not_fresh_for_longer_than_max_lag_seconds_sets_stale_since() -> None:
    first = fold(None, reading(NOW, follower(leader_checkpoint=100, follower_checkpoint=100)))
    stuck = follower(leader_checkpoint=150, follower_checkpoint=99)
    within = fold(first, reading(NOW + 300, stuck))
    assert state_of(within).stale_since is None
    beyond = fold(within, reading(NOW + 301, stuck))
    assert state_of(beyond).fresh_at == NOW
    assert state_of(beyond).stale_since is not None
    assert state_of(beyond).stale_since <= NOW + 301
    # Kept, not moved, by the next reading beyond the limits.
    still = fold(beyond, reading(NOW + 400, stuck))
    assert state_of(still).stale_since == state_of(beyond).stale_since


def test_a_paused_follower_goes_stale_after_max_lag_seconds() -> None:
    first = fold(None, reading(NOW, follower(leader_checkpoint=100, follower_checkpoint=100)))
    paused = follower(status="paused", reason="User initiated")
    soon = fold(first, reading(NOW + 120, paused))
    assert state_of(soon).fresh_at == NOW  # paused: not fresh, not yet beyond the limits
    assert state_of(soon).stale_since is None
    later = fold(soon, reading(NOW + 400, paused))
    assert state_of(later).stale_since is not None
    # ...which the preflight then refuses, even once the follower reads as syncing again
    # with the leader gone.
    live = snapshot(
        followers=[follower(leader_checkpoint=100, follower_checkpoint=100)], read_at=NOW + 500
    )
    [refusal] = replication_refusals(live, None, later, REPLICATION, NOW + 500)
    assert refusal.startswith(REPLICATION_LAG) and "beyond the limits" in refusal


def test_a_paused_follower_first_seen_is_stale_at_once() -> None:
    folded = fold(None, reading(NOW, follower(status="failed", reason="index closed")))
    assert state_of(folded).fresh_at is None
    assert state_of(folded).stale_since == NOW


def test_stale_since_is_cleared_once_back_within_the_limits() -> None:
    previous = reading(NOW, follower(fresh_at=NOW - 900, stale_since=NOW - 600))
    back = fold(
        previous, reading(NOW + 30, follower(leader_checkpoint=500, follower_checkpoint=500))
    )
    assert state_of(back).fresh_at == NOW + 30
    assert state_of(back).stale_since is None


def test_a_not_following_index_is_never_stale() -> None:
    folded = fold(None, reading(NOW, follower(status="not_following")))
    assert state_of(folded).fresh_at is None
    assert state_of(folded).stale_since is None


def test_each_follower_is_folded_on_its_own() -> None:
    other = "magento2_product_2_v5"
    previous = reading(
        NOW,
        follower(fresh_at=NOW - 900, stale_since=NOW - 600, follower_checkpoint=1),
        follower(other, fresh_at=NOW, follower_checkpoint=7, leader_checkpoint=7),
    )
    folded = fold(
        previous,
        reading(
            NOW + 30,
            follower(leader_checkpoint=9000, follower_checkpoint=1),
            follower(other, leader_checkpoint=8, follower_checkpoint=8),
        ),
    )
    assert [(f.index, f.stale_since is not None) for f in folded.followers] == [
        (V2, True),
        (other, False),
    ]
    assert folded.followers[0].stale_since == NOW - 600


# --- what the watch reports ---------------------------------------------------------------


def record(**standby: object) -> DataRecord:
    fields = {
        "aliases": [alias([V2], 1000)],
        "followers": [follower(leader_checkpoint=10, follower_checkpoint=10)],
    } | standby
    return DataRecord(primary=primary(), standby=snapshot(**fields))


def test_data_key_of_nothing() -> None:
    assert data_key(None) == ()
    assert data_key(DataRecord()) == (None, None)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"aliases": [alias([V3], 1000)]}, id="alias-moves"),
        pytest.param({"aliases": [alias([], None)]}, id="alias-goes"),
        pytest.param({"followers": [follower(status="paused")]}, id="status"),
        pytest.param(
            {"followers": [follower(leader_checkpoint=10, follower_checkpoint=10, stale_since=1)]},
            id="goes-stale",
        ),
        pytest.param({"cluster_status": "yellow"}, id="cluster-status"),
        pytest.param({"error": "unreadable"}, id="error"),
    ],
)
def test_data_key_changes_on_what_matters(changed: dict) -> None:
    assert data_key(record(**changed)) != data_key(record())


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"aliases": [alias([V2], 1234)]}, id="document-count"),
        pytest.param(
            {"followers": [follower(leader_checkpoint=99, follower_checkpoint=90)]},
            id="checkpoints",
        ),
        pytest.param(
            {"followers": [follower(leader_checkpoint=10, follower_checkpoint=10, fresh_at=5)]},
            id="fresh-at",
        ),
        pytest.param({"read_at": NOW + 30}, id="read-at"),
    ],
)
def test_data_key_ignores_counts_and_checkpoints(changed: dict) -> None:
    assert data_key(record(**changed)) == data_key(record())


def test_data_key_sees_the_primary_too() -> None:
    moved = DataRecord(primary=primary(aliases=[alias([V3])]), standby=record().standby)
    assert data_key(moved) != data_key(record())


def test_data_key_ignores_the_order_of_an_aliases_indices() -> None:
    assert data_key(record(aliases=[alias([V1, V2])])) == data_key(
        record(aliases=[alias([V2, V1])])
    )


# --- notes, promotion and references ---------------------------------------------------------


@pytest.mark.parametrize("status", ["red", "yellow"])
def test_cluster_status_note_for_a_red_or_yellow_cluster(status: str) -> None:
    note = cluster_status_note(snapshot(cluster_status=status))
    assert note is not None
    assert note.startswith(f"cluster status {status} outside the storefront's indices")


@pytest.mark.parametrize(
    "read",
    [
        snapshot(cluster_status="green"),
        snapshot(cluster_status=None),
        snapshot(cluster_status="red", error="unreadable"),
        None,
    ],
    ids=["green", "unknown", "unreadable", "no-reading"],
)
def test_no_cluster_status_note(read: DataSnapshot | None) -> None:
    assert cluster_status_note(read) is None


@pytest.mark.parametrize(
    ("trigger", "dry_run", "promote", "prefix"),
    [
        ("drill", False, True, "drill: replication kept"),
        ("manual", True, True, "dry run: nothing promoted"),
        ("drill", True, True, "dry run"),
        ("monitor", False, False, "promotion off (replication.promote: false)"),
        ("drill", False, False, "promotion off"),
        ("manual", False, True, None),
        ("alarm", False, True, None),
        ("monitor", False, True, None),
        ("failback", False, True, None),
    ],
)
def test_promotion_refusal(trigger: str, dry_run: bool, promote: bool, prefix: str | None) -> None:
    refusal = promotion_refusal(trigger=trigger, dry_run=dry_run, promote=promote)
    if prefix is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.startswith(prefix), refusal


def test_reference_is_the_other_side_read_now() -> None:
    live = primary(read_at=NOW)
    recorded = DataRecord(primary=primary(read_at=NOW - 60), standby=snapshot(read_at=NOW))
    assert reference_for("standby", live, recorded) is live


def test_reference_falls_back_to_the_monitors_record() -> None:
    kept = primary(read_at=NOW - 60)
    recorded = DataRecord(primary=kept, standby=snapshot(read_at=NOW))
    unreadable = primary(read_at=NOW, error="connection failed")
    assert reference_for("standby", unreadable, recorded) is kept
    assert reference_for("standby", None, recorded) is kept


def test_reference_of_the_primary_is_the_standby() -> None:
    kept = snapshot(read_at=NOW - 60)
    assert reference_for("primary", None, DataRecord(primary=primary(), standby=kept)) is kept


def test_no_reference_without_a_reading() -> None:
    assert reference_for("standby", None, None) is None
    assert reference_for("standby", None, DataRecord(standby=snapshot())) is None
    broken = DataRecord(primary=primary(error="unreadable"))
    assert reference_for("standby", primary(error="unreadable"), broken) is None
