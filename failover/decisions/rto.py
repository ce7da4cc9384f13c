"""A failover's recovery time on the real system, predicted from config: term by term, the
largest named, with what would shorten it.

Pure: a dry run calls it with what AWS said of the switch (the record's TTL, the target
group's deregistration delay), a drill's report with the config alone. Each term is what the
run waits for when all goes as configured: detection for an outage that starts just after a
healthy round, AWS's documented typical figures, the fixed waits exactly, and a cache flush
the seconds it typically takes (its timeout in the note).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from failover.config import (
    Cache,
    ClusterConfig,
    NlbSwitch,
    ProbeSettings,
    RedisCache,
    Route53Switch,
    SsmCache,
    VarnishCache,
)
from failover.models import (
    RecordSnapshot,
    RtoPrediction,
    RtoTerm,
    TargetGroupSnapshot,
)

# The run's own steps, from the sandbox demo in README.md (moto and simulated clusters on
# loopback): detected 2.85 s after the fault at 1 s x 3 rounds, snapshot 0.09 s, preflight
# 0.22 s (0.21-0.26 s with the data checks), flush 0.69 s for Redis, SSM and Varnish
# together, each verify check 0.05-0.10 s. The constants allow several times that for real
# AWS endpoints, TLS and cross-AZ round trips.
# The watch returning, the monitor deciding and starting the run: the demo's three rounds
# took 2-3 s of its 2.85 s, so the hand-off took under 0.85 s.
HANDOFF_SECONDS = 1.0
SNAPSHOT_SECONDS = 0.5  # one AWS read (ListResourceRecordSets or DescribeTargetHealth)
PREFLIGHT_SECONDS = 1.0  # the target's nodes, the switch target, its indices
VERIFY_CHECK_SECONDS = 0.5  # one HTTP round trip a check, when it passes
QUICK_FLUSH_SECONDS = 0.5  # a Redis FLUSHDB or one Varnish PURGE
# An SSM Run Command: the agent polls for it within seconds and bin/magento cache:flush takes
# a few more; the run polls until every instance reports. Its timeout bounds it, not this.
SSM_FLUSH_SECONDS = 10.0
# "Changes generally propagate to all Route 53 name servers within 60 seconds": Amazon
# Route 53 Developer Guide, Editing records,
# https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-editing.html
ROUTE53_PROPAGATION_SECONDS = 60.0
# CreateTargetGroup's defaults for a TCP target group (Elastic Load Balancing API Reference):
# HealthCheckIntervalSeconds 30, HealthyThresholdCount 5; deregistration delay 300 s.
NLB_HEALTH_CHECK_INTERVAL_SECONDS = 30.0
NLB_HEALTHY_THRESHOLD = 5
NLB_DEREGISTRATION_DELAY_SECONDS = 300
ADVISED_TTL_SECONDS = 30
ADVISED_HEALTHY_SECONDS = 20  # interval 10 s x healthy threshold 2

DETECTION = "detection"
HANDOFF = "hand-off"
CONFIRM = "confirm"
SNAPSHOT = "snapshot"
PREFLIGHT = "preflight"
PROPAGATION = "propagation"
TTL = "TTL"
HEALTH_CHECKS = "health checks"
DEREGISTRATION = "deregistration delay"
FLUSH = "cache flush"
VERIFY = "verify"
NOTHING_TO_DO = "nothing to do: the other terms are shorter still"


@dataclass(frozen=True)
class TargetHealth:
    """How an NLB target group's health checks call new targets healthy (the group's own
    settings; the run does not read them from AWS)."""

    interval_seconds: float = NLB_HEALTH_CHECK_INTERVAL_SECONDS
    healthy_threshold: int = NLB_HEALTHY_THRESHOLD


def _s(seconds: float) -> str:
    return f"{seconds:.1f}".removesuffix(".0")


def round_spacing(probe: ProbeSettings) -> float:
    """Regular rounds start `interval_seconds` apart; a round that outlasts its slot (nodes
    timing out) skips the slots it overran, as the watch does."""
    interval, timeout = probe.interval_seconds, probe.timeout_seconds
    return interval if timeout <= interval else (math.floor(timeout / interval) + 1) * interval


def fast_detection_seconds(probe: ProbeSettings) -> float | None:
    """Every node refusing: the first regular round sees it (at most an interval after the
    fault), fast rounds then run until the outage has lasted `min_outage_seconds`, unless
    the threshold's regular rounds (refusals take no time) confirm it first. None without
    fast confirmation."""
    fast, outage = probe.fast_confirm_interval_seconds, probe.min_outage_seconds
    if fast is None or outage is None:
        return None
    by_outage = probe.interval_seconds + math.ceil(outage / fast) * fast
    return min(by_outage, probe.failure_threshold * probe.interval_seconds)


def _detection_terms(cluster: ClusterConfig) -> tuple[list[RtoTerm], list[str]]:
    probe, monitor = cluster.probe, cluster.monitor
    rounds = probe.failure_threshold
    timeout = f"its {_s(probe.timeout_seconds)} s timeout"
    if not (monitor.enabled and monitor.auto_failover):
        why = "the monitor is off" if not monitor.enabled else "monitor.auto_failover is false"
        seconds = rounds * probe.timeout_seconds + (rounds - 1) * probe.interval_seconds
        term = RtoTerm(
            name=CONFIRM,
            seconds=seconds,
            note=f"the run's own {rounds} round(s) {_s(probe.interval_seconds)} s apart, each "
            f"waiting out {timeout} (nodes that hang)",
            in_drill=False,
        )
        return [term], [f"not counted: the time until a person or an alarm starts the run ({why})"]
    spacing = round_spacing(probe)
    skipped = (
        f" (a round waiting out {timeout} skips the slots it overran)"
        if spacing > probe.interval_seconds
        else ""
    )
    return [
        RtoTerm(
            name=DETECTION,
            seconds=rounds * spacing + probe.timeout_seconds,
            note=f"{rounds} failing round(s) {_s(spacing)} s apart{skipped}, the last waiting "
            f"out {timeout}: nodes that hang, from just after a healthy round",
            in_drill=False,
        ),
        RtoTerm(
            name=HANDOFF,
            seconds=HANDOFF_SECONDS,
            note="the monitor decides and starts the failover run",
            in_drill=False,
        ),
        RtoTerm(
            name=CONFIRM,
            seconds=probe.timeout_seconds,
            note=f"one fresh round of the active side, up to {timeout}",
            in_drill=False,
        ),
    ], []


def _dns_terms(
    switch: Route53Switch, live: RecordSnapshot | TargetGroupSnapshot | None
) -> tuple[list[RtoTerm], list[str]]:
    record_ttl = live.ttl if isinstance(live, RecordSnapshot) else None
    if record_ttl is not None:
        ttl = record_ttl
        source = f"the record's TTL now (switch.ttl {switch.ttl} s applies after this switch)"
        if record_ttl == switch.ttl:
            source = "the record's TTL now, as switch.ttl"
    else:
        ttl, source = switch.ttl, "switch.ttl (the run waits out the record's TTL as it finds it)"
    terms = [
        RtoTerm(
            name=PROPAGATION,
            seconds=ROUTE53_PROPAGATION_SECONDS,
            note="UPSERT, then GetChange until INSYNC: Route 53 documents changes reaching all "
            "its name servers within 60 s",
        ),
        RtoTerm(name=TTL, seconds=float(ttl), note=f"resolvers keep the old answer: {source}"),
    ]
    caveats = []
    if switch.insync_timeout_seconds < ROUTE53_PROPAGATION_SECONDS:
        caveats.append(
            f"switch.insync_timeout_seconds {_s(switch.insync_timeout_seconds)} s is shorter "
            f"than Route 53's typical {_s(ROUTE53_PROPAGATION_SECONDS)} s: the wait may fail"
        )
    return terms, caveats


def _nlb_terms(
    switch: NlbSwitch,
    live: RecordSnapshot | TargetGroupSnapshot | None,
    health: TargetHealth | None,
) -> tuple[list[RtoTerm], list[str]]:
    checks = health or TargetHealth()
    source = (
        "the target group's"
        if health is not None
        else "AWS's defaults for a TCP target group; the group's own are not read"
    )
    healthy = checks.interval_seconds * checks.healthy_threshold
    if isinstance(live, TargetGroupSnapshot):
        delay, delay_source = live.deregistration_delay_seconds, "the target group's"
    else:
        delay, delay_source = NLB_DEREGISTRATION_DELAY_SECONDS, "AWS's default"
    drain = float(delay)
    drain_note = f"the old targets drain: {delay_source} deregistration delay {delay} s"
    if switch.drain_timeout_seconds is not None and switch.drain_timeout_seconds < drain:
        drain = switch.drain_timeout_seconds
        drain_note += f", the wait capped by switch.drain_timeout_seconds {_s(drain)} s"
    terms = [
        RtoTerm(
            name=HEALTH_CHECKS,
            seconds=healthy,
            note=f"the new targets turn healthy: interval {_s(checks.interval_seconds)} s x "
            f"healthy threshold {checks.healthy_threshold} ({source})",
        ),
        RtoTerm(name=DEREGISTRATION, seconds=drain, note=drain_note),
    ]
    caveats = [
        "not counted: a registration can take a few minutes before the first health check "
        "(AWS); a drill measures it"
    ]
    if healthy > switch.healthy_timeout_seconds:
        caveats.append(
            f"new targets need {_s(healthy)} s to turn healthy, more than "
            f"switch.healthy_timeout_seconds {_s(switch.healthy_timeout_seconds)} s: the "
            f"switch would give up and keep the active side"
        )
    return terms, caveats


def _cache_seconds(cache: Cache) -> tuple[float, str]:
    """How long a cache's flush holds the run: an SSM command some seconds (its timeout in
    the note), a FLUSHDB or PURGE a moment."""
    if isinstance(cache, SsmCache):
        seconds = min(SSM_FLUSH_SECONDS, cache.timeout_seconds)
        return seconds, (
            f"ssm {cache.name}: bin/magento cache:flush, typically {_s(seconds)} s; a command "
            f"that hangs holds the run up to its timeout_seconds {_s(cache.timeout_seconds)} s"
        )
    if isinstance(cache, VarnishCache):
        seconds = QUICK_FLUSH_SECONDS * len(cache.servers)
        return seconds, f"varnish {cache.name} PURGE on {len(cache.servers)} server(s)"
    assert isinstance(cache, RedisCache)
    return QUICK_FLUSH_SECONDS, f"redis {cache.name} FLUSHDB"


def _slowest_caches(cluster: ClusterConfig) -> list[Cache]:
    """Each flush stage's slowest cache: the stages run one after the other, the caches of
    a stage together."""
    return [max(stage, key=lambda c: _cache_seconds(c)[0]) for stage in cluster.flush_stages()]


def _flush_term(cluster: ClusterConfig) -> RtoTerm | None:
    slowest = _slowest_caches(cluster)
    if not slowest:
        return None
    parts = [_cache_seconds(c) for c in slowest]
    return RtoTerm(
        name=FLUSH,
        seconds=sum(seconds for seconds, _ in parts),
        note=", then ".join(note for _, note in parts),
    )


def _verify_term(cluster: ClusterConfig) -> RtoTerm:
    checks = ["the switch in AWS and the new side's nodes"]
    if cluster.verify.search_path is not None:
        checks.append("search through the switched path")
        if cluster.magento is not None:
            checks.append("the storefront's aliases")
    if cluster.verify.storefront is not None:
        checks.append("the storefront")
    return RtoTerm(
        name=VERIFY,
        seconds=VERIFY_CHECK_SECONDS * len(checks),
        note=f"{len(checks)} check(s) passing at the first attempt: {', '.join(checks)}",
    )


def _advice(cluster: ClusterConfig, largest: RtoTerm) -> str:
    probe = cluster.probe
    if largest.name == TTL:
        if largest.seconds <= ADVISED_TTL_SECONDS:
            return NOTHING_TO_DO
        return (
            f"lower it to {ADVISED_TTL_SECONDS} s before you need it (switch.ttl; a drill "
            f"writes it to the record, whose TTL the run waits out)"
        )
    if largest.name in (DETECTION, CONFIRM):
        knobs = (
            f"lower probe.interval_seconds ({_s(probe.interval_seconds)} s) or "
            f"probe.failure_threshold ({probe.failure_threshold})"
        )
        if probe.fast_confirm:
            return f"{knobs}: fast confirmation shortens only outages that refuse connections"
        return (
            f"{knobs}, or turn on fast confirmation for outages that refuse connections "
            f"(probe.fast_confirm_interval_seconds, probe.min_outage_seconds)"
        )
    if largest.name == HEALTH_CHECKS:
        if largest.seconds <= ADVISED_HEALTHY_SECONDS:
            return NOTHING_TO_DO
        return (
            "shorten the target group's health checks: interval 10 s x healthy threshold 2 "
            "takes 20 s (aws elbv2 modify-target-group --health-check-interval-seconds 10 "
            "--healthy-threshold-count 2)"
        )
    if largest.name == DEREGISTRATION:
        return (
            "lower the target group's deregistration_delay.timeout_seconds (search requests "
            "take milliseconds to drain) or cap the wait with switch.drain_timeout_seconds"
        )
    if largest.name == FLUSH:
        ssm = [c for c in _slowest_caches(cluster) if isinstance(c, SsmCache)]
        if not ssm:
            return NOTHING_TO_DO
        slowest = max(ssm, key=lambda c: _cache_seconds(c)[0])
        return (
            f"time bin/magento cache:flush on your app servers through ssm {slowest.name}: "
            f"if it takes long, flush the Redis cache backend directly instead"
        )
    if largest.name == PROPAGATION:
        return (
            "nothing to do: Route 53 takes that; failover routing on Route 53 health checks "
            "would move traffic without a change to wait for"
        )
    return NOTHING_TO_DO


def predict_rto(
    cluster: ClusterConfig,
    *,
    live: RecordSnapshot | TargetGroupSnapshot | None = None,
    target_health: TargetHealth | None = None,
) -> RtoPrediction:
    """Fault → verified switch on the real system, from config and `live` (the switch as
    read now: the record's TTL, the group's deregistration delay); AWS's defaults for what
    neither says (an NLB group's health checks, unless `target_health` gives them)."""
    terms, caveats = _detection_terms(cluster)
    if cluster.require_approval:
        caveats.append(
            f"not counted: the time a person takes to approve (up to approval_timeout_seconds "
            f"{_s(cluster.approval_timeout_seconds)} s, then {cluster.approval_on_timeout})"
        )
    terms += [
        RtoTerm(name=SNAPSHOT, seconds=SNAPSHOT_SECONDS, note="read the switch from AWS"),
        RtoTerm(
            name=PREFLIGHT,
            seconds=PREFLIGHT_SECONDS,
            note="the target's nodes, where the switch points, and its data",
        ),
    ]
    if isinstance(cluster.switch, Route53Switch):
        switch_terms, switch_caveats = _dns_terms(cluster.switch, live)
    else:
        switch_terms, switch_caveats = _nlb_terms(cluster.switch, live, target_health)
    terms += switch_terms
    caveats += switch_caveats
    flush = _flush_term(cluster)
    if flush is not None:
        terms.append(flush)
    terms.append(_verify_term(cluster))
    total = sum(t.seconds for t in terms)
    # On a tie, the term something can be done about.
    largest = max(terms, key=lambda t: (t.seconds, not _advice(cluster, t).startswith("nothing")))
    fast = fast_detection_seconds(cluster.probe)
    fast_total = None
    by_name = {t.name: t for t in terms}
    if fast is not None and DETECTION in by_name:
        # Refusals answer at once: the run's confirming round waits for no timeout either.
        fast_total = total - by_name[DETECTION].seconds - by_name[CONFIRM].seconds + fast
    return RtoPrediction(
        terms=terms,
        total_seconds=total,
        largest=largest.name,
        advice=_advice(cluster, largest),
        fast_detection_seconds=fast if fast_total is not None else None,
        fast_total_seconds=fast_total,
        caveats=caveats,
    )
