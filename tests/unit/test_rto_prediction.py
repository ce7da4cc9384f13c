"""The RTO a failover would take on the real system, predicted from config: its terms add
up, the largest is named with advice that fits it, and plans and drill reports show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from failover.config import ClusterConfig, parse_config
from failover.decisions import failover_plan
from failover.decisions.rto import (
    HANDOFF_SECONDS,
    PREFLIGHT_SECONDS,
    QUICK_FLUSH_SECONDS,
    ROUTE53_PROPAGATION_SECONDS,
    SNAPSHOT_SECONDS,
    SSM_FLUSH_SECONDS,
    VERIFY_CHECK_SECONDS,
    TargetHealth,
    predict_rto,
)
from failover.models import (
    DrillReport,
    FailoverPlan,
    RecordRef,
    RecordSnapshot,
    RtoPrediction,
    TargetGroupSnapshot,
)
from failover.report import headline, to_html, to_markdown
from tests.unit.test_config import _cluster

TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/search/0123abcd"
NLB = {
    "type": "nlb",
    "target_group_arn": TARGET_GROUP,
    "primary_targets": [{"id": "10.0.1.10", "port": 9200}],
    "standby_targets": [{"id": "10.0.1.20", "port": 9200}],
}


def cluster(**sections: Any) -> ClusterConfig:
    switch = sections.pop("switch", {})
    raw = _cluster(**sections)
    raw["switch"] = raw["switch"] | switch if switch.get("type") != "nlb" else switch
    return parse_config({"clusters": [raw]}).clusters[0]


def seconds_of(prediction: RtoPrediction) -> dict[str, float]:
    return {t.name: t.seconds for t in prediction.terms}


def assert_adds_up(prediction: RtoPrediction) -> None:
    assert prediction.total_seconds == pytest.approx(sum(seconds_of(prediction).values()))
    largest = max(t.seconds for t in prediction.terms)
    assert seconds_of(prediction)[prediction.largest] == largest
    assert prediction.drill_seconds == pytest.approx(
        sum(t.seconds for t in prediction.terms if t.in_drill)
    )


def test_a_long_ttl_is_the_largest_term_and_the_advice_is_to_lower_it() -> None:
    prediction = predict_rto(
        cluster(
            switch={"ttl": 300},
            probe={"interval_seconds": 5, "timeout_seconds": 3, "failure_threshold": 3},
        )
    )
    assert_adds_up(prediction)
    terms = seconds_of(prediction)
    # 3 rounds 5 s apart, the last waiting out its 3 s timeout; one confirming round.
    assert terms["detection"] == 3 * 5 + 3
    assert (terms["hand-off"], terms["confirm"]) == (HANDOFF_SECONDS, 3)
    assert (terms["snapshot"], terms["preflight"]) == (SNAPSHOT_SECONDS, PREFLIGHT_SECONDS)
    assert terms["propagation"] == ROUTE53_PROPAGATION_SECONDS
    assert terms["TTL"] == 300
    assert terms["verify"] == VERIFY_CHECK_SECONDS  # nodes and the switch only
    assert "cache flush" not in terms  # no caches configured
    expected = 18 + HANDOFF_SECONDS + 3 + SNAPSHOT_SECONDS + PREFLIGHT_SECONDS + 60 + 300 + 0.5
    assert prediction.total_seconds == pytest.approx(expected)
    assert prediction.largest == "TTL"
    assert prediction.advice.startswith("lower it to 30 s before you need it")
    share = round(100 * 300 / expected)
    assert prediction.headline().startswith(
        f"predicted RTO {expected:g} s; TTL 300 s is {share}% of it: lower it to 30 s"
    )
    # A drill measures from its switch: detection, hand-off and confirmation are outside.
    assert prediction.drill_seconds == pytest.approx(expected - 18 - HANDOFF_SECONDS - 3)
    assert prediction.fast_total_seconds is None  # no fast confirmation configured


def test_the_record_ttl_as_read_now_is_what_the_run_waits_out() -> None:
    """The run waits the TTL the record has, not switch.ttl: lowering the config alone does
    not shorten the next failover."""
    config = cluster(switch={"ttl": 30})
    record = RecordSnapshot(
        ref=RecordRef(zone_id="Z1", record_name="s.x.", record_type="CNAME"),
        exists=True,
        values=["a.x"],
        ttl=300,
    )
    prediction = predict_rto(config, live=record)
    ttl = prediction.term("TTL")
    assert ttl is not None and ttl.seconds == 300
    assert "switch.ttl 30 s applies after this switch" in ttl.note
    assert seconds_of(predict_rto(config))["TTL"] == 30


def test_with_ttl_1_slow_probes_make_detection_the_largest_term() -> None:
    prediction = predict_rto(
        cluster(
            switch={"ttl": 1},
            probe={"interval_seconds": 30, "timeout_seconds": 3, "failure_threshold": 3},
        )
    )
    assert_adds_up(prediction)
    assert prediction.largest == "detection"
    assert seconds_of(prediction)["detection"] == 3 * 30 + 3
    assert "probe.interval_seconds (30 s)" in prediction.advice
    assert "probe.failure_threshold (3)" in prediction.advice
    assert "fast confirmation" in prediction.advice
    assert prediction.headline().startswith(
        f"predicted RTO {prediction.total_seconds:g} s; detection 93 s is"
    )


def test_with_ttl_1_and_10_s_probes_route_53_propagation_is_the_largest_term() -> None:
    """10 s x 3 rounds detect in 33 s, less than Route 53's documented 60 s: nothing to
    tune then but the routing itself."""
    prediction = predict_rto(
        cluster(
            switch={"ttl": 1},
            probe={"interval_seconds": 10, "timeout_seconds": 3, "failure_threshold": 3},
        )
    )
    assert_adds_up(prediction)
    assert seconds_of(prediction)["detection"] == 33
    assert prediction.largest == "propagation"
    assert prediction.advice.startswith("nothing to do")
    assert "health checks" in prediction.advice


def test_a_round_that_outlasts_its_interval_skips_slots() -> None:
    prediction = predict_rto(
        cluster(probe={"interval_seconds": 2, "timeout_seconds": 5, "failure_threshold": 3})
    )
    detection = prediction.term("detection")
    # Each round waits 5 s, so the next starts at the slot after: 6 s apart.
    assert detection is not None and detection.seconds == 3 * 6 + 5
    assert "skips the slots it overran" in detection.note


def test_nlb_deregistration_delay_is_the_largest_term() -> None:
    group = TargetGroupSnapshot(
        target_group_arn=TARGET_GROUP, targets=[], deregistration_delay_seconds=300
    )
    prediction = predict_rto(
        cluster(switch=NLB), live=group, target_health=TargetHealth(30, healthy_threshold=3)
    )
    assert_adds_up(prediction)
    terms = seconds_of(prediction)
    assert (terms["health checks"], terms["deregistration delay"]) == (90, 300)
    assert "propagation" not in terms and "TTL" not in terms
    assert prediction.largest == "deregistration delay"
    assert "deregistration_delay.timeout_seconds" in prediction.advice
    assert "switch.drain_timeout_seconds" in prediction.advice
    assert prediction.headline().startswith(
        f"predicted RTO {prediction.total_seconds:g} s; deregistration delay 300 s is"
    )


def test_nlb_health_checks_are_the_largest_term_once_the_delay_is_short() -> None:
    group = TargetGroupSnapshot(
        target_group_arn=TARGET_GROUP, targets=[], deregistration_delay_seconds=10
    )
    prediction = predict_rto(
        cluster(switch=NLB), live=group, target_health=TargetHealth(30, healthy_threshold=3)
    )
    assert_adds_up(prediction)
    assert prediction.largest == "health checks"
    assert "--health-check-interval-seconds 10 --healthy-threshold-count 2" in prediction.advice


def test_nlb_without_live_figures_uses_aws_defaults_and_the_drain_cap() -> None:
    capped = cluster(switch=NLB | {"drain_timeout_seconds": 60})
    prediction = predict_rto(capped)
    terms = seconds_of(prediction)
    assert terms["health checks"] == 30 * 5  # a TCP target group's defaults
    assert terms["deregistration delay"] == 60  # 300 s by default, the wait capped at 60 s
    health = prediction.term("health checks")
    assert health is not None and "not read" in health.note


def test_health_checks_longer_than_the_healthy_timeout_are_a_caveat() -> None:
    config = cluster(switch=NLB | {"healthy_timeout_seconds": 60})
    prediction = predict_rto(config, target_health=TargetHealth(30, healthy_threshold=5))
    assert any("switch would give up" in c for c in prediction.caveats)
    assert not any("give up" in c for c in predict_rto(cluster(switch=NLB)).caveats)


def test_fast_confirmation_shortens_detection_of_an_outage_that_refuses() -> None:
    probe = {"interval_seconds": 10, "timeout_seconds": 3, "failure_threshold": 3}
    slow = predict_rto(cluster(switch={"ttl": 1}, probe=probe))
    fast = predict_rto(
        cluster(
            switch={"ttl": 1},
            probe=probe | {"fast_confirm_interval_seconds": 1, "min_outage_seconds": 3},
        )
    )
    assert_adds_up(fast)
    # Nodes that hang still take the threshold's rounds: the total is the same.
    assert seconds_of(fast) == seconds_of(slow)
    # Refusals: the first regular round (within 10 s), then 3 s of fast rounds 1 s apart.
    assert fast.fast_detection_seconds == 10 + 3
    assert fast.fast_detection_seconds < seconds_of(fast)["detection"]
    # Neither the detection's nor the confirming round's timeout is waited for.
    assert fast.fast_total_seconds == pytest.approx(fast.total_seconds - 33 - 3 + 13)
    assert any("fast confirmation): detected in 13 s" in line for line in fast.lines())
    assert slow.fast_detection_seconds is None and slow.fast_total_seconds is None


def test_fast_confirmation_never_predicts_slower_than_the_threshold_rounds() -> None:
    probe = {"interval_seconds": 2, "failure_threshold": 2, "timeout_seconds": 1}
    fast = predict_rto(
        cluster(probe=probe | {"fast_confirm_interval_seconds": 1, "min_outage_seconds": 10})
    )
    # 2 + 10 s by the outage's length, but 2 regular rounds of refusals confirm in 4 s.
    assert fast.fast_detection_seconds == 4


def test_an_ssm_flush_counts_what_it_typically_takes_and_names_its_timeout() -> None:
    caches = [
        {"type": "redis", "name": "redis", "host": "redis"},
        {"type": "ssm", "name": "app", "tag_key": "Role", "tag_value": "magento"},
        {"type": "varnish", "name": "varnish", "servers": ["http://v1:6081", "http://v2:6081"]},
    ]
    prediction = predict_rto(cluster(caches=caches))
    assert_adds_up(prediction)
    flush = prediction.term("cache flush")
    # Redis and SSM together (SSM the slower), then both Varnish servers.
    assert flush is not None and flush.seconds == SSM_FLUSH_SECONDS + 2 * QUICK_FLUSH_SECONDS
    assert flush.note.startswith("ssm app: bin/magento cache:flush, typically 10 s;")
    assert "up to its timeout_seconds 300 s, then varnish" in flush.note
    # A timeout shorter than the typical flush caps it.
    capped = [
        {"type": "ssm", "name": "app", "tag_key": "Role", "tag_value": "m", "timeout_seconds": 4}
    ]
    short = predict_rto(cluster(caches=capped)).term("cache flush")
    assert short is not None and short.seconds == 4


def test_quick_flushes_and_verify_checks_are_counted() -> None:
    prediction = predict_rto(
        cluster(
            caches=[{"type": "redis", "name": "redis", "host": "redis"}],
            verify={
                "search_path": {"url": "http://search.x:9200/"},
                "storefront": {"url": "https://shop.x/"},
            },
        )
    )
    terms = seconds_of(prediction)
    assert terms["cache flush"] == QUICK_FLUSH_SECONDS
    assert terms["verify"] == 3 * VERIFY_CHECK_SECONDS  # nodes, search path, storefront


def test_without_automatic_failover_the_run_confirms_and_the_wait_for_a_person_is_named() -> None:
    prediction = predict_rto(
        cluster(
            monitor={"auto_failover": False},
            probe={"interval_seconds": 5, "timeout_seconds": 3, "failure_threshold": 3},
            require_approval=True,
        )
    )
    assert_adds_up(prediction)
    terms = seconds_of(prediction)
    assert "detection" not in terms and "hand-off" not in terms
    assert terms["confirm"] == 3 * 3 + 2 * 5  # three rounds, each waiting out its timeout
    assert any("a person or an alarm" in c for c in prediction.caveats)
    assert any("approve" in c and "900 s" in c for c in prediction.caveats)


def test_the_plan_prints_and_serialises_its_prediction() -> None:
    """What `failover plan` prints (the plan's lines) and `--json` writes (its dump)."""
    config = cluster(switch={"ttl": 300})
    plan = failover_plan(config, active="primary", skip_confirmation=False)
    plan.rto = predict_rto(config)
    lines = plan.lines()
    assert f"rto: {plan.rto.headline()}" in lines
    assert "rto:   TTL 300 s: resolvers keep the old answer" in "\n".join(lines)
    dumped = plan.model_dump(mode="json")
    assert dumped["rto"]["largest"] == "TTL"
    assert dumped["rto"]["total_seconds"] == plan.rto.total_seconds
    assert {"name": "TTL", "seconds": 300.0}.items() <= next(
        t for t in dumped["rto"]["terms"] if t["name"] == "TTL"
    ).items()
    assert FailoverPlan.model_validate(dumped) == plan
    # A plan without one (recorded before the prediction) prints as it always did.
    older = plan.model_copy(update={"rto": None})
    assert not any(line.startswith("rto:") for line in older.lines())


def test_a_drill_report_puts_the_measured_rto_beside_the_prediction() -> None:
    config = cluster(switch={"ttl": 60})
    prediction = predict_rto(config)
    started = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    report = DrillReport(
        cluster=config.name,
        workflow_id="drill-catalog-1",
        verdict="pass",
        reason="both switches verified",
        started_at=started,
        finished_at=started + timedelta(seconds=20),
        rto_seconds=2.4,
        rto_target_seconds=300,
        rto_predicted=prediction,
    )
    assert f"(target 300 s, predicted {prediction.drill_seconds:.1f} s)" in headline(report)
    markdown = to_markdown(report)
    assert "(measured 2.40 s)" in markdown
    assert prediction.headline() in markdown
    assert "## Predicted RTO" in markdown
    assert "| detection | 18.0 s |" in markdown and "(not in a drill)" in markdown
    page = to_html(report)
    assert "<h2>Predicted RTO</h2>" in page and "<td>propagation</td>" in page
    # Reports of drills run before the prediction render as they did.
    older = report.model_copy(update={"rto_predicted": None})
    assert "predicted" not in headline(older).lower() and "Predicted RTO" not in to_html(older)
