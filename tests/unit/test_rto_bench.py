"""The RTO bench's own arithmetic: percentiles, the table, the RTO's parts, the last lines,
and the steady state a run starts from; the sandbox runs are the bench's, not these."""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from failover.config import parse_config
from failover.models import (
    DataRecord,
    DataSnapshot,
    FollowerState,
    MonitorState,
    MonitorStatus,
    WatchProgress,
)
from sandbox.stack import route53_switch, sandbox_config

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rto.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rto", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


rto = load_bench()

STEPS = [
    ("confirm", 0.2),
    ("preflight", 0.4),
    ("switch", 0.3),
    ("flush", 0.5),
    ("verify", 0.6),
    ("verify_storefront", 0.4),
    ("promote", 0.3),
    ("verify_writes", 0.2),
]


def run(
    cadence: str = "ours",
    *,
    mode: str = "dns",
    detection: float = 3.0,
    rto_s: float | None = 5.0,
    storefront: float | None = 3.5,
    result: str = "failed_over",
    steps: list[tuple[str, float]] | None = None,
) -> Any:
    return rto.RunFigures(
        mode=mode,
        cadence=cadence,
        result=result,
        detection=detection,
        rto=rto_s,
        storefront=storefront,
        steps=tuple(STEPS if steps is None else steps),
    )


# --- percentiles and ratios --------------------------------------------------------------


def test_percentiles_interpolate_between_ranks_and_p50_is_the_median() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert rto.percentile(values, 0.5) == 3.0
    assert rto.percentile(values, 0.95) == pytest.approx(4.8)
    assert rto.percentile(values, 0.0) == 1.0
    assert rto.percentile(values, 1.0) == 5.0
    assert rto.percentile([2.0, 7.0], 0.5) == statistics.median([2.0, 7.0]) == 4.5
    assert rto.percentile([4.2], 0.95) == 4.2
    assert math.isnan(rto.percentile([], 0.5))


def test_a_percentile_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        rto.percentile([1.0], 95)


def test_ratio_is_baseline_over_ours_and_unknown_without_both() -> None:
    assert rto.ratio(32.0, 5.0) == pytest.approx(6.4)
    assert math.isnan(rto.ratio(math.nan, 5.0))
    assert math.isnan(rto.ratio(32.0, math.nan))
    assert math.isnan(rto.ratio(32.0, 0.0))


# --- one run's figures --------------------------------------------------------------------


def test_figures_come_from_the_demo_report() -> None:
    report = {
        "result": "failed_over",
        "detection_seconds": 2.9,
        "rto_seconds": 5.3,
        "storefront_recovered_seconds": None,
        "steps": [{"name": "confirm", "seconds": 0.25, "outcome": "ok", "detail": None}],
    }
    figures = rto.figures_of(report, "nlb", "baseline")
    assert (figures.mode, figures.cadence, figures.detection, figures.rto) == (
        "nlb",
        "baseline",
        2.9,
        5.3,
    )
    assert figures.storefront is None
    assert figures.steps == (("confirm", 0.25),)
    assert figures.measured


def test_a_run_without_a_verified_switch_is_not_measured() -> None:
    assert not run(result="rolled_back").measured
    assert not run(rto_s=None).measured
    assert run(result="failed_over_with_warnings").measured


def test_the_rto_ends_with_the_last_verify_step() -> None:
    assert rto.within_rto(STEPS) == 6  # promote and verify_writes come after it
    assert rto.within_rto([("confirm", 0.1), ("verify_indices", 0.2)]) == 2
    assert rto.within_rto([("confirm", 0.1), ("preflight", 0.2)]) == 0


# --- summaries and shares -----------------------------------------------------------------


def test_summary_takes_p50_and_p95_of_the_measured_runs_of_one_mode_and_cadence() -> None:
    runs = [
        run(detection=2.0, rto_s=4.0, storefront=3.0),
        run(detection=3.0, rto_s=5.0, storefront=None),
        run(detection=4.0, rto_s=6.0, storefront=5.0),
        run(detection=9.0, rto_s=None, result="rolled_back"),
        run("baseline", detection=30.0, rto_s=32.0),
        run(mode="nlb", detection=1.0, rto_s=1.0),
    ]
    summary = rto.summarize(runs, "dns", "ours")
    assert (summary.runs, summary.measured) == (4, 3)
    assert summary.detection == (3.0, pytest.approx(3.9))
    assert summary.rto == (5.0, pytest.approx(5.9))
    assert summary.storefront == (4.0, pytest.approx(4.9))


def test_each_part_is_a_median_share_of_the_rto_p50_and_the_rest_closes_it() -> None:
    runs = [
        run(detection=2.0, steps=[("confirm", 0.1), ("verify", 0.5), ("promote", 0.3)]),
        run(detection=3.0, steps=[("confirm", 0.3), ("verify", 0.7), ("promote", 0.5)]),
        run(detection=4.0, steps=[("confirm", 0.2), ("retry", 1.0), ("verify", 0.6)]),
        run(detection=50.0, rto_s=None, result="rolled_back", steps=[("confirm", 9.0)]),
    ]
    shares = {s.name: s for s in rto.step_shares(runs, 5.0)}
    assert list(shares) == ["detection", "confirm", "verify", "promote", "retry", "rest"]
    assert shares["detection"].seconds == 3.0
    assert shares["detection"].share == pytest.approx(0.6)
    assert shares["confirm"].seconds == pytest.approx(0.2)
    assert shares["verify"].share == pytest.approx(0.12)
    # Taken by one run of three: 0 s in the others.
    assert shares["retry"].seconds == 0.0
    # After the verified switch: shown, not part of the RTO.
    assert shares["promote"].seconds == pytest.approx(0.3)
    assert shares["promote"].share is None
    assert shares["rest"].seconds == pytest.approx(5.0 - 3.0 - 0.2 - 0.6 - 0.0)
    counted = [s.share for s in shares.values() if s.share is not None]
    assert sum(counted) == pytest.approx(1.0)


def test_a_step_taken_twice_in_a_run_counts_its_sum() -> None:
    twice = [("flush", 0.2), ("verify", 0.4), ("flush", 0.3)]
    shares = {s.name: s for s in rto.step_shares([run(steps=twice)], 5.0)}
    assert shares["flush"].seconds == pytest.approx(0.5)


def test_no_measured_run_has_no_shares() -> None:
    assert rto.step_shares([run(result="aborted", rto_s=None)], math.nan) == []


# --- the table and the last lines ---------------------------------------------------------


def both_cadences() -> list[Any]:
    return [
        run(detection=3.0, rto_s=5.0, storefront=4.0),
        run("baseline", detection=30.0, rto_s=32.0, storefront=33.0),
        run(detection=3.2, rto_s=5.4, storefront=4.4),
        run("baseline", detection=29.0, rto_s=31.0, storefront=32.0),
    ]


def test_the_table_shows_each_mode_and_cadence_the_ratios_and_the_shares() -> None:
    text = rto.table(both_cadences(), ["dns"], [rto.OURS, rto.BASELINE])
    lines = text.splitlines()
    [ours] = [line for line in lines if line.startswith("dns   ours (1 s x 3)")]
    assert "2/2" in ours and "3.10 / 3.19" in ours and "5.20 / 5.38" in ours
    assert "4.20 / 4.38" in ours
    [baseline] = [line for line in lines if line.startswith("dns   baseline (10 s x 3)")]
    assert "29.50 / 29.95" in baseline and "31.50 / 31.95" in baseline
    [ratios] = [line for line in lines if "baseline/ours" in line]
    assert ratios.split()[-3:] == ["9.5x", "6.1x", "7.7x"]
    assert "dns ours (1 s x 3): share of the RTO p50 (5.20 s), medians" in lines
    [detection] = [line for line in lines if line.strip().startswith("detection")][:1]
    assert detection.split()[-1] == f"{100 * 3.1 / 5.2:.1f}%"
    assert sum("after the RTO" in line for line in lines) == 4  # promote, verify_writes x 2


def test_a_mode_with_no_measured_run_shows_n_a() -> None:
    runs = [run(result="rolled_back", rto_s=None), run("baseline")]
    text = rto.table(runs, ["dns"], [rto.OURS, rto.BASELINE])
    [ours] = [line for line in text.splitlines() if line.startswith("dns   ours")]
    assert "0/1" in ours and "n/a / n/a" in ours
    [ratios] = [line for line in text.splitlines() if "baseline/ours" in line]
    assert ratios.split()[-3:] == ["n/a", "n/a", "n/a"]


def test_the_last_lines_are_the_dns_rto_p50s_and_their_ratio() -> None:
    runs = [*both_cadences(), run(mode="nlb", rto_s=1.0), run("baseline", mode="nlb", rto_s=9.0)]
    assert rto.final_lines(runs, ["dns", "nlb"]) == [
        "rto_p50_seconds=5.200",
        "baseline_rto_p50_seconds=31.500",
        "ratio=6.06",
    ]
    assert rto.final_lines(runs, ["nlb"]) == [
        "rto_p50_seconds=1.000",
        "baseline_rto_p50_seconds=9.000",
        "ratio=9.00",
    ]


def test_the_last_lines_say_nan_when_nothing_was_measured() -> None:
    assert rto.final_lines([run(result="aborted", rto_s=None)], ["dns"]) == [
        "rto_p50_seconds=nan",
        "baseline_rto_p50_seconds=nan",
        "ratio=nan",
    ]


# --- arguments ----------------------------------------------------------------------------


def test_modes_are_checked_and_kept_in_order() -> None:
    assert rto.parse_modes("nlb, dns,nlb") == ["nlb", "dns"]
    for bad in ("dns,alb", "", ","):
        with pytest.raises(Exception, match="comma-separated list of dns, nlb"):
            rto.parse_modes(bad)
    with pytest.raises(Exception, match="at least 1"):
        rto.positive_int("0")


# --- the cadence and the steady state -----------------------------------------------------


def sandbox_cluster(*, fast_confirm: bool = False) -> Any:
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:1",
        switch=route53_switch("Z1"),
        primary_nodes=["http://127.0.1.1:9200"],
        standby_nodes=["http://127.0.2.1:9200"],
        replication=True,
        fast_confirm=fast_confirm,
    )
    return parse_config(raw, source="test").clusters[0]


def test_tuned_sets_the_cadence_and_drops_the_cooldown_only() -> None:
    cluster = sandbox_cluster()
    tuned = rto.tuned(cluster, rto.BASELINE)
    assert (tuned.probe.interval_seconds, tuned.probe.failure_threshold) == (10.0, 3)
    assert tuned.monitor.cooldown_seconds == 0
    assert tuned.probe.timeout_seconds == cluster.probe.timeout_seconds
    assert tuned.monitor.vantage_points == cluster.monitor.vantage_points
    assert tuned.model_copy(update={"probe": cluster.probe, "monitor": cluster.monitor}) == cluster


def test_the_baseline_runs_without_fast_confirmation_and_ours_with_the_sandbox_s() -> None:
    """A Route 53 health check has no fast confirmation: the baseline must not get the
    sandbox's, or it would detect as fast as the monitor does."""
    cluster = sandbox_cluster(fast_confirm=True)
    assert cluster.probe.fast_confirm
    assert (cluster.probe.fast_confirm_interval_seconds, cluster.probe.min_outage_seconds) == (
        0.2,
        1.0,
    )
    baseline = rto.tuned(cluster, rto.BASELINE).probe
    assert not baseline.fast_confirm
    assert baseline.fast_confirm_interval_seconds is None and baseline.min_outage_seconds is None
    assert rto.tuned(cluster, rto.OURS).probe.fast_confirm


def test_tuned_refuses_a_cadence_the_config_would_refuse() -> None:
    with pytest.raises(ValidationError, match="interval_seconds"):
        rto.tuned(sandbox_cluster(), rto.Cadence("broken", 0.0, 3))


VANTAGES = ["a", "b", "c"]


def watching(rounds: int = 3, primary: str = "healthy") -> Any:
    return WatchProgress(
        rounds=rounds, last_round_at=1.0, primary=primary, standby="healthy", max_lateness_ms=0
    )


def status(*, phase: str = "watching", active: str | None = "primary", **state: Any) -> Any:
    follower = FollowerState(index="magento2_product_1_v1", status="syncing", fresh_at=1.0)
    data = DataRecord(standby=DataSnapshot(side="standby", read_at=1.0, followers=[follower]))
    fields: dict[str, Any] = {"cluster": "c", "active": active, "data": data} | state
    return MonitorStatus(
        phase=phase, vantages=VANTAGES, quorum=2, history_length=1, state=MonitorState(**fields)
    )


def problem(monitor: Any, progress: dict[str, Any] | None = None) -> str | None:
    seen = {v: watching() for v in VANTAGES} if progress is None else progress
    return rto.steady_state_problem(monitor, seen, VANTAGES, replication=True)


def test_the_steady_state_holds_when_everything_watches_and_the_standby_is_fed() -> None:
    assert problem(status()) is None


def test_the_steady_state_names_what_is_missing() -> None:
    assert problem(status(phase="failing_over")) == "the monitor is failing_over"
    assert problem(status(active="standby")).startswith("the monitor reads standby as active")
    assert problem(status(unreachable_vantages={"b": "gone"})) == (
        "vantage points not answering: b"
    )
    few = {"a": watching(), "b": watching(rounds=1), "c": watching()}
    assert problem(status(), few) == "b has probed 1 rounds"
    missing = {"a": watching(), "c": watching()}
    assert problem(status(), missing) == "no watch from b at the new cadence yet"
    down = {"a": watching(primary="down"), "b": watching(), "c": watching()}
    assert problem(status(), down) == "a sees the primary down, the standby healthy"


def test_the_steady_state_waits_for_the_standby_to_be_fed() -> None:
    paused = FollowerState(index="magento2_product_1_v1", status="paused")
    stale = FollowerState(index="magento2_product_2_v1", status="syncing", stale_since=1.0)
    for follower, why in ((paused, "is paused"), (stale, "is syncing (beyond the limits)")):
        data = DataRecord(standby=DataSnapshot(side="standby", read_at=1.0, followers=[follower]))
        assert problem(status(data=data)) == f"the standby's {follower.index} {why}"
    assert problem(status(data=DataRecord())) == (
        "the monitor has no reading of the standby's followers"
    )
    assert (
        rto.steady_state_problem(
            status(data=DataRecord()),
            {v: watching() for v in VANTAGES},
            VANTAGES,
            replication=False,
        )
        is None
    )
