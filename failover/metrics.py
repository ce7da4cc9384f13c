"""Our own metrics, beside the SDK's, on the worker's Prometheus endpoint.

Everything goes through Temporal's metric meters: in workflows the meter skips replays, so
a number counts what happened once; the worker's runtime exports them all together.
Counters are exported without a `_total` suffix, histograms in seconds.
`deploy/prometheus/rules.yaml` and `deploy/grafana/failover-dashboard.json` use these names;
`tests/test_monitoring.py` checks every name they use is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from temporalio.common import MetricCounter, MetricGauge, MetricHistogramFloat, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from failover.models import Side, SideHealth, WatchState

FAILOVER_RESULTS = "failover_results"
STEP_SECONDS = "failover_step_seconds"
PROBES = "search_probes"
ALARMS = "alarms"
NOTIFICATIONS_FAILED = "failover_notifications_failed"
REGION_SWITCH_RESULTS = "region_switch_results"
# The monitors' watches, labelled cluster, side, vantage (and verdict for the rounds).
MONITOR_ROUNDS = "monitor_probe_rounds"
MONITOR_SIDE_UP = "monitor_side_up"
MONITOR_PROBE_SECONDS = "monitor_probe_seconds"

# A round probes a side's nodes at once, on a LAN in milliseconds: with the SDK's buckets
# (50 ms and up) every round would fall in the first one, and p50 and p99 would say nothing.
PROBE_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# The states in which a side could take traffic: what the monitor requires of a target.
USABLE_STATES: frozenset[WatchState] = frozenset({"healthy", "degraded"})


def prometheus_runtime(bind_address: str) -> Runtime:
    """A runtime serving Prometheus `/metrics` at bind_address (host:port)."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                durations_as_seconds=True,
                histogram_bucket_overrides={MONITOR_PROBE_SECONDS: list(PROBE_SECONDS_BUCKETS)},
            )
        )
    )


def serve_prometheus(bind_address: str) -> Runtime:
    """Makes the default runtime export to Prometheus at bind_address (host:port); call
    before any client connects."""
    runtime = prometheus_runtime(bind_address)
    Runtime.set_default(runtime, error_if_already_set=True)
    return runtime


@dataclass(frozen=True, slots=True)
class SideInstruments:
    """One side's instruments for one watch, their labels bound once: a probe round only
    hands numbers over (the hot path of hundreds of watches a worker)."""

    rounds: dict[SideHealth, MetricCounter]
    up: MetricGauge
    probe_seconds: MetricHistogramFloat

    def probed(self, seconds: float) -> None:
        """How long the round took to probe every node of the side (they run at once)."""
        self.probe_seconds.record(seconds)

    def judged(self, health: SideHealth, state: WatchState) -> None:
        """The round's verdict, and whether the side could take traffic after it."""
        self.rounds[health].add(1)
        self.up.set(1 if state in USABLE_STATES else 0)


def watch_instruments(
    meter: MetricMeter, cluster: str, vantage: str
) -> dict[Side, SideInstruments]:
    """The instruments of one watch of `cluster` from `vantage`, created once per watch."""
    rounds = meter.create_counter(
        MONITOR_ROUNDS, "monitor probe rounds by cluster, side, vantage point and verdict"
    )
    up = meter.create_gauge(
        MONITOR_SIDE_UP, "1 while a side could take traffic (healthy or degraded), else 0"
    )
    seconds = meter.create_histogram_float(
        MONITOR_PROBE_SECONDS, "time a monitor round took to probe all nodes of a side", "s"
    )
    instruments: dict[Side, SideInstruments] = {}
    for side in get_args(Side):
        labels = {"cluster": cluster, "side": side, "vantage": vantage}
        instruments[side] = SideInstruments(
            rounds={
                verdict: rounds.with_additional_attributes(labels | {"verdict": verdict})
                for verdict in get_args(SideHealth)
            },
            up=up.with_additional_attributes(labels),
            probe_seconds=seconds.with_additional_attributes(labels),
        )
    return instruments
