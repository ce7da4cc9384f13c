"""The blip soak's own parts: its seeded schedule, what it reads from the monitor's events,
the table and the last lines; the sandbox runs are the bench's, not these."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from failover.config import parse_config
from failover.models import MonitorEvent
from sandbox.stack import route53_switch, sandbox_config

BENCH = Path(__file__).resolve().parents[2] / "bench" / "blip_soak.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_blip_soak", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


soak = load_bench()
Kind = soak.Kind


@pytest.mark.parametrize("count", [1, 3, 4, 40, 200, 517])
def test_schedule_honours_the_count_and_numbers_the_blips(count: int) -> None:
    blips = soak.schedule(count, seed=7)
    assert len(blips) == count
    assert [b.number for b in blips] == list(range(1, count + 1))


def test_every_kind_is_drawn_and_the_mix_follows_the_weights() -> None:
    blips = soak.schedule(2000, seed=3)
    kinds = Counter(b.kind for b in blips)
    assert set(kinds) == set(Kind)
    for kind, weight in soak.WEIGHTS.items():
        assert abs(kinds[kind] / len(blips) - weight) < 0.05, (kind, kinds)
    # Few blips still have every kind.
    assert {b.kind for b in soak.schedule(4, seed=11)} == set(Kind)


@pytest.mark.parametrize("seed", [0, 1, 2, 99])
def test_durations_nodes_and_gaps_are_within_bounds(seed: int) -> None:
    for blip in soak.schedule(300, seed=seed):
        low, high = soak.BOUNDS[blip.kind]
        assert low <= blip.seconds <= high, blip
        base = soak.GAP_BASE_SECONDS[blip.kind]
        assert base <= blip.gap_seconds <= base + soak.GAP_EXTRA_SECONDS, blip
        if blip.kind is Kind.NODE_RESTART:
            assert blip.node in range(soak.NODE_COUNT), blip
        else:
            assert blip.node is None, blip


def test_the_bounds_keep_blips_below_both_rules() -> None:
    """A refusal ends before min_outage; a hang leaves room for fewer failing rounds than the
    threshold (a timed-out round skips the next slot: one every 2 intervals)."""
    assert soak.BOUNDS[Kind.REFUSED][1] < soak.MIN_OUTAGE_SECONDS
    hang_rounds = soak.BOUNDS[Kind.HANG][1] / (2 * soak.INTERVAL_SECONDS) + 1
    assert hang_rounds < soak.FAILURE_THRESHOLD
    assert soak.BOUNDS[Kind.HANG][0] >= soak.PROBE_TIMEOUT_SECONDS  # really timed out
    assert soak.GAP_BASE_SECONDS[Kind.HANG] > soak.PROBE_TIMEOUT_SECONDS


def test_the_schedule_is_the_seeds() -> None:
    assert soak.schedule(50, seed=5) == soak.schedule(50, seed=5)
    assert soak.schedule(50, seed=5) != soak.schedule(50, seed=6)


def test_schedule_refuses_no_blips() -> None:
    with pytest.raises(ValueError, match="count must be at least 1, not 0"):
        soak.schedule(0, seed=1)


AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


def observed(vantage: str, state: str, reason: str = "", offset: float = 0.0) -> MonitorEvent:
    text = f"{vantage} sees primary {state}, standby healthy" + (
        f"; primary: {reason}" if reason else ""
    )
    return MonitorEvent(at=AT + timedelta(seconds=offset), kind="observed", reason=text)


def test_seen_in_keeps_each_vantages_worst_state_and_the_failing_rounds() -> None:
    events = [
        observed("a", "suspect", "suspect: refused by all 3 nodes for 0.0 s (down at 1 s): …"),
        observed("b", "degraded", "1 of 3 nodes failing: …", 0.1),
        observed("b", "suspect", "suspect: failing round 1 of 3: …", 0.2),
        observed("a", "healthy", "recovered after 1 failing round(s)", 0.6),
        observed("b", "healthy", "recovered after 2 failing round(s)", 1.2),
        observed("c", "degraded", "1 of 3 nodes failing: …", 1.3),
        observed("c", "healthy", "", 1.4),
        MonitorEvent(at=AT, kind="decision_none", reason="not confirmed: …"),
        MonitorEvent(at=AT, kind="data", reason="primary: recovered after 9 failing round"),
    ]
    seen = soak.seen_in(events)
    assert seen.worst == {"a": "suspect", "b": "suspect", "c": "degraded"}
    assert seen.failing_rounds == 3
    assert seen.most_rounds == 2
    assert seen.failovers == 0
    started = MonitorEvent(at=AT, kind="failover_started", reason="failover-x run 1")
    assert soak.seen_in([*events, started]).failovers == 1


def test_tally_counts_per_vantage_and_table_shows_it() -> None:
    tallies = {kind: soak.KindTally() for kind in Kind}
    tallies[Kind.REFUSED].add(0.5, soak.seen_in([observed("a", "suspect")]))
    tallies[Kind.REFUSED].add(0.8, soak.seen_in([observed("a", "suspect"), observed("b", "down")]))
    tallies[Kind.NODE_RESTART].add(2.0, soak.seen_in([observed("c", "degraded")]))
    tallies[Kind.HANG].add(
        1.5, soak.seen_in([observed("a", "healthy", "recovered after 2 failing round(s)")])
    )
    tallies[Kind.HANG].add(
        1.2, soak.seen_in([observed("b", "healthy", "recovered after 1 failing round(s)")])
    )
    assert tallies[Kind.REFUSED].suspect == Counter({"a": 2})
    assert tallies[Kind.REFUSED].down == Counter({"b": 1})
    text = soak.table(tallies, ["a", "b", "c"])
    refused = next(line for line in text.splitlines() if line.startswith("refused "))
    assert refused.split() == [
        *("refused", "2", "0.50-0.80"),
        *("suspect", "2", "0", "0"),
        *("down", "0", "1", "0"),
        *("degraded", "0", "0", "0"),
        *("0", "0", "0"),
    ]
    hang = next(line for line in text.splitlines() if line.startswith("hang "))
    assert hang.split()[:3] == ["hang", "2", "1.20-1.50"]
    assert hang.split()[-3:] == ["3", "2", "0"]
    rolling = next(line for line in text.splitlines() if line.startswith("rolling_restart "))
    assert rolling.split()[:3] == ["rolling_restart", "0", "-"]
    assert "v1 = a, v2 = b, v3 = c" in text


def test_final_lines_and_the_verdict() -> None:
    assert soak.final_lines(200, 0, 37, 2, 2) == [
        "blips=200",
        "failovers=0",
        "suspect_rounds=37",
        "real_outages_confirmed=2/2",
    ]
    assert soak.succeeded(0, 2, 2)
    assert not soak.succeeded(1, 2, 2)
    assert not soak.succeeded(0, 1, 2)


def test_tuned_turns_fast_confirmation_on_without_a_cooldown() -> None:
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:1",
        switch=route53_switch("Z1"),
        primary_nodes=["http://127.0.1.1:9200"],
        standby_nodes=["http://127.0.2.1:9200"],
        probe_interval=1.0,
        replication=True,
    )
    sandboxed = parse_config(raw, source="test").clusters[0]
    cluster = soak.tuned(sandboxed)
    probe = cluster.probe
    assert probe.fast_confirm
    assert (probe.interval_seconds, probe.failure_threshold) == (1.0, 3)
    assert (probe.fast_confirm_interval_seconds, probe.min_outage_seconds) == (0.2, 1.0)
    assert probe.timeout_seconds == soak.PROBE_TIMEOUT_SECONDS
    assert cluster.monitor.cooldown_seconds == 0
    assert cluster.monitor.vantage_points == sandboxed.monitor.vantage_points


def test_tuned_refuses_a_probe_timeout_the_hangs_were_not_drawn_for() -> None:
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:1",
        switch=route53_switch("Z1"),
        primary_nodes=["http://127.0.1.1:9200"],
        standby_nodes=["http://127.0.2.1:9200"],
    )
    cluster = parse_config(raw, source="test").clusters[0]
    slow = cluster.model_copy(
        update={"probe": cluster.probe.model_copy(update={"timeout_seconds": 2.5})}
    )
    with pytest.raises(ValueError, match=r"probe timeout is 2\.5 s"):
        soak.tuned(slow)
