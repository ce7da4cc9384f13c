"""Fast confirmation: a side every node of which refuses the connection (or has no route) is
down once that has lasted `min_outage_seconds`, probed every `fast_confirm_interval_seconds`
meanwhile; any other evidence keeps the failure threshold, exactly as without the rule."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiohttp import web
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.watch import ClusterWatchActivities, _fast_round_at, _fast_sides
from failover import decisions
from failover.config import ClusterConfig, ProbeSettings
from failover.decisions.monitor import (
    OUTAGE_SLACK_SECONDS,
    REFUSED_BY_ALL,
    confirmed_by_refusal,
    next_side_watch_confirming,
)
from failover.decisions.probe import (
    CONNECTION_FAILED,
    all_refused,
    connection_failure,
    refused_connection,
)
from failover.models import ClusterWatch, NodeProbe, SideHealth, SideWatch, WatchInput

THRESHOLD = 3
WINDOW_S = 30.0
MIN_OUTAGE_S = 1.0
NODES = ["http://a:9200", "http://b:9200", "http://c:9200"]
REFUSED_DETAIL = "[Errno 111] Connect call failed ('10.0.0.5', 9200)"

GREEN = {
    "http_status": 200,
    "cluster_name": "es-a",
    "cluster_uuid": "uuid-a",
    "health_status": "green",
    "timed_out": False,
}


def refused_probe(url: str, os_errno: int = errno.ECONNREFUSED) -> NodeProbe:
    return NodeProbe(url=url, error=connection_failure(os_errno, REFUSED_DETAIL))


def timeout_probe(url: str) -> NodeProbe:
    return NodeProbe(url=url, error="timeout after 0.5s")


def green_probe(url: str) -> NodeProbe:
    return NodeProbe(url=url, **GREEN)


def problems_of(probes: Sequence[NodeProbe]) -> dict[str, str | None]:
    return decisions.node_problems(probes, expected_cluster_name="es-a", yellow_policy="degraded")


@dataclass(frozen=True)
class Round:
    """One probe round as the watch judges it: the side's health, why, and whether every
    node refused (the node count then, else 0)."""

    health: SideHealth
    reason: str | None
    refused_nodes: int


def judged(probes: Sequence[NodeProbe], *, down_share: float = 1.0) -> Round:
    """What the watch makes of a round's answers (the same calls as `_side_health`)."""
    problems = problems_of(probes)
    notes = {p.url: decisions.node_degraded(p) for p in probes}
    health, reason = decisions.side_health(problems, notes, down_share=down_share)
    return Round(health, reason, len(problems) if all_refused(problems) else 0)


REFUSED = judged([refused_probe(url) for url in NODES])
TIMEOUTS = judged([timeout_probe(url) for url in NODES])
MIXED = judged([refused_probe(NODES[0]), refused_probe(NODES[1]), timeout_probe(NODES[2])])
GOOD = judged([green_probe(url) for url in NODES])


def fold(
    rounds: Sequence[tuple[float, Round] | tuple[float, Round, bool]],
    *,
    min_outage_seconds: float | None = MIN_OUTAGE_S,
    start: SideWatch | None = None,
) -> list[SideWatch]:
    """Folds (time, round[, counted]) in order; every view after each round."""
    watch = start or SideWatch(state="healthy")
    seen: list[SideWatch] = []
    for at, probe_round, *flags in rounds:
        watch = next_side_watch_confirming(
            watch,
            probe_round.health,
            probe_round.reason,
            at,
            threshold=THRESHOLD,
            window_seconds=WINDOW_S,
            refused_nodes=probe_round.refused_nodes,
            min_outage_seconds=min_outage_seconds,
            counted=flags[0] if flags else True,
        )
        seen.append(watch)
    return seen


def regular_then_fast(
    probe_round: Round, until: float, *, start: float = 0.0
) -> list[tuple[float, Round, bool]]:
    """A regular round at `start`, then fast rounds every 0.2 s up to `until`."""
    times = [start + 0.2 * k for k in range(1, round((until - start) / 0.2) + 1)]
    return [(start, probe_round, True)] + [(t, probe_round, False) for t in times]


# --- the settings ------------------------------------------------------------------------


def test_fast_confirmation_is_off_by_default() -> None:
    probe = ProbeSettings()
    assert probe.fast_confirm_interval_seconds is None and probe.min_outage_seconds is None
    assert not probe.fast_confirm


def test_both_settings_turn_it_on() -> None:
    probe = ProbeSettings(
        interval_seconds=1, fast_confirm_interval_seconds=0.2, min_outage_seconds=1.0
    )
    assert probe.fast_confirm


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"fast_confirm_interval_seconds": 0.2},
            "fast_confirm_interval_seconds is set but min_outage_seconds is not",
        ),
        (
            {"min_outage_seconds": 1.0},
            "min_outage_seconds is set but fast_confirm_interval_seconds is not",
        ),
        (
            {"fast_confirm_interval_seconds": 1.0, "min_outage_seconds": 2.0},
            "fast_confirm_interval_seconds 1 is not shorter than interval_seconds 1",
        ),
        (
            {"fast_confirm_interval_seconds": 0.5, "min_outage_seconds": 0.2},
            "min_outage_seconds 0.2 is shorter than fast_confirm_interval_seconds 0.5",
        ),
        ({"fast_confirm_interval_seconds": 0, "min_outage_seconds": 1.0}, "greater than 0"),
    ],
)
def test_bad_fast_confirmation_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ProbeSettings(interval_seconds=1, **settings)


def test_every_problem_of_the_pair_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        ProbeSettings(interval_seconds=1, fast_confirm_interval_seconds=2, min_outage_seconds=1)
    assert "not shorter than interval_seconds" in str(caught.value)
    assert "min_outage_seconds 1 is shorter than" in str(caught.value)


def test_min_outage_of_exactly_the_fast_interval_is_accepted() -> None:
    probe = ProbeSettings(
        interval_seconds=1, fast_confirm_interval_seconds=0.2, min_outage_seconds=0.2
    )
    assert probe.fast_confirm


# --- what counts as unambiguous evidence -------------------------------------------------


@pytest.mark.parametrize(
    ("os_errno", "kind"),
    [
        (errno.ECONNREFUSED, "refused"),
        (errno.EHOSTUNREACH, "no route to host"),
        (errno.ENETUNREACH, "network unreachable"),
    ],
)
def test_a_refusal_or_missing_route_is_named_and_unambiguous(os_errno: int, kind: str) -> None:
    error = connection_failure(os_errno, REFUSED_DETAIL)
    assert error == f"{CONNECTION_FAILED}: {kind}: {REFUSED_DETAIL}"
    [problem] = problems_of([refused_probe("http://a:9200", os_errno)]).values()
    assert problem == f"{decisions.UNREACHABLE}: {error}"
    assert refused_connection(problem)


@pytest.mark.parametrize("os_errno", [errno.ECONNRESET, errno.ETIMEDOUT, None])
def test_other_connection_failures_are_plain_and_ambiguous(os_errno: int | None) -> None:
    error = connection_failure(os_errno, "Cannot connect to host a:9200")
    assert error == f"{CONNECTION_FAILED}: Cannot connect to host a:9200"
    [problem] = problems_of([NodeProbe(url="http://a:9200", error=error)]).values()
    assert problem is not None and not refused_connection(problem)


@pytest.mark.parametrize(
    "probe",
    [
        NodeProbe(url="http://a:9200", error="timeout after 0.5s"),
        NodeProbe(url="http://a:9200", error="ServerDisconnectedError: Server disconnected"),
        NodeProbe(url="http://a:9200", error="bad answer: not JSON from GET / (HTTP 200)"),
        NodeProbe(url="http://a:9200", **(GREEN | {"http_status": 500})),
        NodeProbe(url="http://a:9200", **(GREEN | {"http_status": 503})),
        NodeProbe(url="http://a:9200", **(GREEN | {"http_status": 401})),
        NodeProbe(url="http://a:9200", **(GREEN | {"http_status": 403})),
        NodeProbe(url="http://a:9200", **(GREEN | {"health_status": "red"})),
        NodeProbe(url="http://a:9200", **(GREEN | {"cluster_name": "es-other"})),
    ],
    ids=["timeout", "disconnected", "bad-answer", "500", "503", "401", "403", "red", "wrong"],
)
def test_every_other_failure_is_ambiguous(probe: NodeProbe) -> None:
    [problem] = problems_of([probe]).values()
    assert problem is not None, "a failing node"
    assert not refused_connection(problem)
    assert not all_refused({probe.url: problem})


def test_all_refused_needs_every_node() -> None:
    assert all_refused(problems_of([refused_probe(url) for url in NODES]))
    assert all_refused(
        problems_of(
            [
                refused_probe(NODES[0]),
                refused_probe(NODES[1], errno.EHOSTUNREACH),
                refused_probe(NODES[2], errno.ENETUNREACH),
            ]
        )
    )
    one_answers = [refused_probe(NODES[0]), refused_probe(NODES[1]), green_probe(NODES[2])]
    assert not all_refused(problems_of(one_answers))
    assert not all_refused({})
    assert MIXED.health == "failing" and MIXED.refused_nodes == 0


# --- the refusal rule --------------------------------------------------------------------


def test_refused_by_all_for_min_outage_is_down_and_says_so() -> None:
    seen = fold(regular_then_fast(REFUSED, MIN_OUTAGE_S))
    first, last = seen[0], seen[-1]
    assert first.state == "suspect" and first.refused_since == 0.0
    assert first.reason is not None
    assert first.reason.startswith(
        f"{decisions.SUSPECT}: {REFUSED_BY_ALL} 3 nodes for 0.0 s (down at 1 s): all 3 nodes "
    )
    assert [w.state for w in seen[1:-1]] == ["suspect"] * 4
    assert last.state == "down"
    assert last.reason is not None
    assert last.reason.startswith(f"{decisions.DOWN}: {REFUSED_BY_ALL} 3 nodes for 1.0 s: ")
    assert "unreachable: connection failed: refused: [Errno 111]" in last.reason
    assert confirmed_by_refusal(last)
    assert last.changed_at == pytest.approx(1.0)
    # The fast rounds lengthen the outage; only the regular round counts for the threshold.
    assert last.failing_at == [0.0] and last.failing_rounds == 1
    assert last.failing_since == 0.0


def test_refused_for_less_than_min_outage_is_only_suspect() -> None:
    seen = fold(regular_then_fast(REFUSED, 0.8))
    assert [w.state for w in seen] == ["suspect"] * 5
    assert not any(confirmed_by_refusal(w) for w in seen)
    assert seen[-1].reason is not None and "for 0.8 s (down at 1 s)" in seen[-1].reason


def test_the_outage_slack_is_milliseconds_not_a_round() -> None:
    assert OUTAGE_SLACK_SECONDS < 0.05
    just_short = fold([(0.0, REFUSED), (MIN_OUTAGE_S - 0.05, REFUSED, False)])
    assert just_short[-1].state == "suspect"
    on_time = fold([(0.0, REFUSED), (MIN_OUTAGE_S - OUTAGE_SLACK_SECONDS / 2, REFUSED, False)])
    assert on_time[-1].state == "down"


def test_a_single_good_answer_in_between_starts_the_outage_again() -> None:
    rounds = [
        (0.0, REFUSED),
        (0.2, REFUSED, False),
        (0.4, GOOD, False),
        *regular_then_fast(REFUSED, 1.4, start=0.6),
    ]
    seen = fold(rounds)
    assert seen[2].state == "healthy"
    assert seen[2].reason == f"{decisions.RECOVERED} after 1 failing round(s)"
    assert seen[2].refused_since is None and seen[2].failing_at == []
    assert seen[3].refused_since == 0.6
    # 1.4 s after the first refusal, but only 0.8 s since the answer: not down.
    assert seen[-1].state == "suspect"
    assert fold([*rounds, (1.6, REFUSED, False)])[-1].state == "down"


def test_one_node_answering_is_not_refused_by_all() -> None:
    one_answers = judged([refused_probe(NODES[0]), refused_probe(NODES[1]), green_probe(NODES[2])])
    assert one_answers.health == "degraded"
    seen = fold([(0.0, one_answers), (1.0, one_answers), (2.0, one_answers)])
    assert [w.state for w in seen] == ["degraded"] * 3
    # With down_share 2/3 the side is failing, but not refused by all: the threshold decides.
    failing = judged(
        [refused_probe(NODES[0]), refused_probe(NODES[1]), green_probe(NODES[2])],
        down_share=0.6,
    )
    assert failing.health == "failing" and failing.refused_nodes == 0
    seen = fold([(0.0, failing), (1.0, failing), (2.0, failing)])
    assert [w.state for w in seen] == ["suspect", "suspect", "down"]
    assert seen[-1].reason is not None
    assert seen[-1].reason.startswith(f"{decisions.DOWN}: 3 consecutive failing rounds in 2.0s")
    assert all(w.refused_since is None for w in seen)


def test_timeouts_only_keep_the_threshold_rule_exactly() -> None:
    rounds = [(0.0, TIMEOUTS), (1.0, TIMEOUTS), (2.0, TIMEOUTS)]
    with_rule = fold(rounds)
    today = fold(rounds, min_outage_seconds=None)
    assert with_rule == today
    assert [w.state for w in with_rule] == ["suspect", "suspect", "down"]
    assert with_rule[-1].reason == (
        f"{decisions.DOWN}: 3 consecutive failing rounds in 2.0s: {TIMEOUTS.reason}"
    )
    assert not confirmed_by_refusal(with_rule[-1])


def test_mixed_refused_and_timeout_keeps_the_threshold_rule() -> None:
    rounds = [(0.0, MIXED), (1.0, MIXED), (2.0, MIXED)]
    assert fold(rounds) == fold(rounds, min_outage_seconds=None)
    assert fold(rounds)[-1].reason == (
        f"{decisions.DOWN}: 3 consecutive failing rounds in 2.0s: {MIXED.reason}"
    )


def test_an_ambiguous_fast_round_ends_the_fast_path_without_counting() -> None:
    seen = fold([(0.0, REFUSED), (0.2, TIMEOUTS, False)])
    after = seen[-1]
    assert after.state == "suspect" and after.refused_since is None
    assert after.reason == f"{decisions.SUSPECT}: failing round 1 of 3: {TIMEOUTS.reason}"
    # Not a threshold round: the regular rounds at 1 s and 2 s make it 3, as they would have.
    assert after.failing_at == [0.0]
    rounds = [(0.0, REFUSED), (0.2, TIMEOUTS, False), (1.0, TIMEOUTS), (2.0, TIMEOUTS)]
    assert [w.state for w in fold(rounds)] == ["suspect", "suspect", "suspect", "down"]
    assert fold(rounds)[-1].reason == (
        f"{decisions.DOWN}: 3 consecutive failing rounds in 2.0s: {TIMEOUTS.reason}"
    )


def test_refusals_after_an_ambiguous_round_are_a_new_outage() -> None:
    rounds = [(0.0, TIMEOUTS), *regular_then_fast(REFUSED, 1.8, start=1.0)]
    seen = fold(rounds)
    assert seen[1].refused_since == 1.0
    assert seen[-1].state == "suspect", "refused for 0.8 s only"
    down = fold([*rounds, (2.0, REFUSED)])[-1]
    assert down.state == "down" and confirmed_by_refusal(down)
    assert down.reason is not None and "for 1.0 s" in down.reason


def test_threshold_rule_reason_is_unchanged_when_it_confirms_first() -> None:
    """A min_outage longer than the threshold's rounds: the threshold confirms, as today."""
    rounds = [(0.0, REFUSED), (1.0, REFUSED), (2.0, REFUSED)]
    with_rule = fold(rounds, min_outage_seconds=5.0)
    assert with_rule[-1].state == "down"
    assert with_rule[-1].reason == (
        f"{decisions.DOWN}: 3 consecutive failing rounds in 2.0s: {REFUSED.reason}"
    )
    assert not confirmed_by_refusal(with_rule[-1])
    today = fold(rounds, min_outage_seconds=None)[-1]
    assert (today.state, today.reason, today.failing_at) == (
        "down",
        with_rule[-1].reason,
        with_rule[-1].failing_at,
    )


def test_config_off_is_exactly_todays_fold() -> None:
    rounds = [(0.0, REFUSED), (1.0, REFUSED), (2.0, REFUSED), (3.0, GOOD), (4.0, TIMEOUTS)]
    watch = SideWatch(state="healthy")
    for at, probe_round in rounds:
        off = next_side_watch_confirming(
            watch,
            probe_round.health,
            probe_round.reason,
            at,
            threshold=THRESHOLD,
            window_seconds=WINDOW_S,
            refused_nodes=probe_round.refused_nodes,
            min_outage_seconds=None,
        )
        today = decisions.next_side_watch(
            watch,
            probe_round.health,
            probe_round.reason,
            at,
            threshold=THRESHOLD,
            window_seconds=WINDOW_S,
        )
        assert off == today
        assert off.refused_since is None
        watch = off
    assert watch.state == "suspect"


def test_down_by_refusal_stays_down_and_recovers_like_any_down() -> None:
    down = fold([*regular_then_fast(REFUSED, 1.0), (2.0, REFUSED), (3.0, TIMEOUTS)])
    assert [w.state for w in down[-3:]] == ["down", "down", "down"]
    assert confirmed_by_refusal(down[-2])
    assert down[-1].refused_since is None  # a timeout: still down, by the failing rounds
    back = fold([(4.0, GOOD)], start=down[-1])[-1]
    assert back.state == "healthy" and back.refused_since is None
    assert back.reason == f"{decisions.RECOVERED} after 3 failing round(s)"


def test_watches_from_before_the_rule_still_parse() -> None:
    old = SideWatch.model_validate({"state": "suspect", "failing_at": [1.0], "failing_rounds": 1})
    assert old.refused_since is None
    view = ClusterWatch.model_validate({"vantage": "v", "primary": {"state": "down"}})
    assert view.primary.refused_since is None


# --- the monitor's decision --------------------------------------------------------------

NOW = 1_000.0


def vantage_view(name: str, primary: SideWatch) -> ClusterWatch:
    return ClusterWatch(
        vantage=name, primary=primary, standby=SideWatch(state="healthy"), observed_at=NOW
    )


def refusal_down(outage: float) -> SideWatch:
    return fold(
        [(NOW - outage, REFUSED), (NOW, REFUSED, False)], min_outage_seconds=min(outage, 1.0)
    )[-1]


def threshold_down() -> SideWatch:
    rounds = [(NOW - 2.0, TIMEOUTS), (NOW - 1.0, TIMEOUTS), (NOW, TIMEOUTS)]
    return fold(rounds)[-1]


def decide(views: Sequence[ClusterWatch]) -> str:
    decision = decisions.monitor_decision(
        active="primary",
        active_problem=None,
        views=views,
        vantage_count=3,
        quorum=2,
        guards=decisions.Guards(now=datetime(2025, 1, 1, tzinfo=UTC)),
    )
    return f"{decision.action}: {decision.reason}"


def test_a_quorum_refused_by_all_fails_over_and_says_which_rule() -> None:
    views = [
        vantage_view("a", refusal_down(1.0)),
        vantage_view("b", refusal_down(1.2)),
        vantage_view("c", refusal_down(1.4)),
    ]
    assert all(confirmed_by_refusal(v.primary) for v in views)
    assert decide(views) == (
        f"failover: {decisions.FAILING_OVER}: primary down from 3 of 3 vantage points "
        f"(quorum 2): {decisions.DOWN}: {REFUSED_BY_ALL} nodes from 3 of 3 vantage points "
        f"for 1.0 s"
    )


def test_refusal_evidence_from_one_vantage_point_is_not_a_quorum() -> None:
    views = [
        vantage_view("a", refusal_down(1.0)),
        vantage_view("b", SideWatch(state="healthy")),
        vantage_view("c", SideWatch(state="healthy")),
    ]
    assert decide(views) == (
        f"none: {decisions.NOT_CONFIRMED}: primary down from 1 of 3 vantage points (quorum 2)"
    )


def test_mixed_rules_in_the_quorum_keep_the_first_views_reason() -> None:
    threshold = threshold_down()
    views = [
        vantage_view("a", threshold),
        vantage_view("b", refusal_down(1.0)),
        vantage_view("c", SideWatch(state="healthy")),
    ]
    assert decide(views) == (
        f"failover: {decisions.FAILING_OVER}: primary down from 2 of 3 vantage points "
        f"(quorum 2): {threshold.reason}"
    )
    two_refused = [*views[1:2], vantage_view("c", refusal_down(1.1)), views[0]]
    assert decide(two_refused).endswith(
        f"(quorum 2): {decisions.DOWN}: {REFUSED_BY_ALL} nodes from 2 of 3 vantage points for 1.0 s"
    )


# --- the watch's schedule ----------------------------------------------------------------


def test_fast_rounds_only_while_a_side_is_being_confirmed() -> None:
    suspect = fold([(0.0, REFUSED)])[-1]
    view = ClusterWatch(vantage="v", primary=suspect)
    assert _fast_sides(view) == ("primary",)
    assert _fast_round_at(view, 0.2, last_round=10.0, next_at=11.0) == pytest.approx(10.2)
    # Due within half a fast interval of the regular round: the regular round it is.
    assert _fast_round_at(view, 0.2, last_round=10.75, next_at=11.0) is None
    assert _fast_round_at(view, None, last_round=10.0, next_at=11.0) is None
    down = ClusterWatch(vantage="v", primary=fold(regular_then_fast(REFUSED, 1.0))[-1])
    assert down.primary.state == "down" and _fast_sides(down) == ()
    assert _fast_sides(ClusterWatch(vantage="v")) == ()


# --- the watch itself, against closed ports ----------------------------------------------


def closed_ports(count: int) -> list[int]:
    """Ports nothing listens on (bound, then closed): a connection there is refused."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture
async def green_node() -> AsyncIterator[str]:
    """One node answering as a green cluster `es-b`."""

    async def answer(request: web.Request) -> web.Response:
        body = {"cluster_name": "es-b", "cluster_uuid": "uuid-b", "status": "green"}
        return web.json_response(body | {"timed_out": False, "number_of_nodes": 1})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def watched_cluster(standby: str) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "name": "catalog",
            "primary": {"nodes": [f"http://127.0.0.1:{p}" for p in closed_ports(3)]},
            "standby": {"nodes": [standby]},
            "switch": {
                "type": "route53",
                "hosted_zone_id": "Z1",
                "record_name": "s.x",
                "primary_value": "a.x",
                "standby_value": "b.x",
            },
            "probe": {
                "interval_seconds": 1.0,
                "timeout_seconds": 0.5,
                "fast_confirm_interval_seconds": 0.2,
                "min_outage_seconds": MIN_OUTAGE_S,
            },
        }
    )


async def test_the_watch_confirms_a_refused_side_by_fast_rounds(green_node: str) -> None:
    cluster = watched_cluster(green_node)
    watch = ClusterWatchActivities()
    env = ActivityEnvironment()
    healthy = ClusterWatch(vantage="v", rounds=5, observed_at=time.time() - 1.0)
    # The first round sees every primary node refuse: a change, reported at once.
    suspect = await env.run(
        watch.watch_cluster,
        WatchInput(cluster=cluster, vantage="v", last=healthy, max_seconds=30),
    )
    assert suspect.primary.state == "suspect" and suspect.standby.state == "healthy"
    assert suspect.primary.refused_since is not None
    assert suspect.primary.reason is not None
    assert suspect.primary.reason.startswith(f"{decisions.SUSPECT}: {REFUSED_BY_ALL} 3 nodes")
    # The next watch probes the primary every 0.2 s and reports it down after the outage.
    lateness_before, probes_before = len(watch.round_lateness_ms), watch.node_probes
    started = time.monotonic()
    down = await env.run(
        watch.watch_cluster,
        WatchInput(cluster=cluster, vantage="v", last=suspect, max_seconds=30),
    )
    took = time.monotonic() - started
    assert down.primary.state == "down", down.primary.reason
    assert confirmed_by_refusal(down.primary)
    assert down.observed_at is not None
    outage = down.observed_at - suspect.primary.refused_since
    assert MIN_OUTAGE_S - OUTAGE_SLACK_SECONDS <= outage < MIN_OUTAGE_S + 0.5, outage
    assert took < MIN_OUTAGE_S + 0.5, took
    assert down.standby.state == "healthy"
    # Fast rounds probed only the primary's 3 nodes, and are neither rounds nor lateness.
    regular = down.rounds - suspect.rounds
    assert len(watch.round_lateness_ms) - lateness_before == regular
    fast_probes = watch.node_probes - probes_before - regular * 4
    assert fast_probes >= 3 * 3 and fast_probes % 3 == 0, (fast_probes, regular)
