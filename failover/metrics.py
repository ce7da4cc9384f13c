"""Our own metrics, beside the SDK's, on the worker's Prometheus endpoint.

Everything goes through Temporal's metric meters: in workflows the meter skips replays, so
a number counts what happened once; the worker's runtime exports them all together.
"""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

FAILOVER_RESULTS = "failover_results"
STEP_SECONDS = "failover_step_seconds"
PROBES = "search_probes"
ALARMS = "alarms"
NOTIFICATIONS_FAILED = "failover_notifications_failed"
REGION_SWITCH_RESULTS = "region_switch_results"


def serve_prometheus(bind_address: str) -> Runtime:
    """Makes the default runtime export to Prometheus at bind_address (host:port); call
    before any client connects."""
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind_address, durations_as_seconds=True)
        )
    )
    Runtime.set_default(runtime, error_if_already_set=True)
    return runtime
