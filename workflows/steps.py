"""Workflow-side plumbing shared by the runbook and the switchers: activity options and
the step recorder that builds the timeline. Deterministic: no I/O, time from workflow.now().
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.caches import CacheActivities
    from activities.notify import NotifyActivities
    from activities.search_probe import SearchProbeActivities, health_path_of
    from failover import decisions, metrics
    from failover.config import Cache, ClusterConfig, NotifySettings, SsmCache
    from failover.models import (
        FailoverStatus,
        FlushRequest,
        FlushResult,
        Notification,
        NotificationSent,
        ProbeSideInput,
        Side,
        SideProbe,
        StepTiming,
    )

# Transient AWS trouble (throttling, 5xx) is retried with backoff for a few minutes;
# permanent errors are raised non-retryable by the activities and end the run at once.
AWS_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
)
AWS_CALL_TIMEOUT = timedelta(seconds=30)
AWS_STEP_DEADLINE = timedelta(minutes=5)
# Every activity has a heartbeat timeout and the worker heartbeats for every running
# activity (activities.heartbeat), so a killed worker's activity is retried ~2 s after the
# kill rather than after its start-to-close timeout. 2 s leaves room for the SDK's
# heartbeat throttle (80% of the timeout) on a busy worker.
HEARTBEAT_TIMEOUT = timedelta(seconds=2)

T = TypeVar("T")


class StepFailed(Exception):
    """A step's activity failed for good; carries the reason for the result."""


def failure_reason(err: ActivityError) -> str:
    cause: BaseException | None = err.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)


async def aws_activity(
    activity: Callable[[Any, Any], Awaitable[T]],
    arg: Any,
    *,
    summary: str,
    long_running: timedelta | None = None,
) -> T:
    """Runs an AWS activity with the AWS retry policy; a final failure becomes StepFailed.

    `long_running` is for waits: they get that start-to-close timeout instead of the
    30 s of a single call.
    """
    try:
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=long_running or AWS_CALL_TIMEOUT,
            # A wait's attempts share one deadline too: its own length plus the call budget,
            # so an error that never clears ends the run instead of retrying forever.
            schedule_to_close_timeout=(long_running or timedelta(0)) + AWS_STEP_DEADLINE,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=AWS_RETRY,
            summary=summary,
        )
    except ActivityError as err:
        raise StepFailed(failure_reason(err)) from None


StepOutcome = Literal["ok", "failed", "refused", "warning"]


class StepEnd:
    """How a step that returned (rather than raised) ended: a check that found a problem
    is `failed` with its reason, never `ok`."""

    def __init__(self) -> None:
        self.outcome: StepOutcome = "ok"
        self.detail: str | None = None

    def end(self, outcome: StepOutcome, detail: str) -> None:
        self.outcome, self.detail = outcome, detail


class StepRecorder:
    """Keeps the live status (for the `status` query) and the per-step timeline."""

    def __init__(
        self, status: FailoverStatus, on_phase: Callable[[str], None] | None = None
    ) -> None:
        self.status = status
        self.on_phase = on_phase

    def phase(self, name: str) -> None:
        self.status.phase = name
        if self.on_phase is not None:
            self.on_phase(name)

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[StepEnd]:
        """Times one step. It is `ok` unless it raises StepFailed (`failed`) or its body
        says how it ended through the yielded StepEnd (a failed check, a refusal)."""
        self.phase(name)
        started = workflow.now()
        end = StepEnd()
        outcome: StepOutcome = "failed"
        detail: str | None = None
        try:
            yield end
            outcome, detail = end.outcome, end.detail
        except StepFailed as failed:
            detail = str(failed)
            raise
        finally:
            seconds = (workflow.now() - started).total_seconds()
            workflow.metric_meter().create_histogram_float(
                metrics.STEP_SECONDS, "duration of each failover and drill step", "s"
            ).record(seconds, {"cluster": self.status.cluster, "step": name, "outcome": outcome})
            self.status.steps.append(
                StepTiming(
                    name=name, started_at=started, seconds=seconds, outcome=outcome, detail=detail
                )
            )

    def skipped(self, name: str, detail: str) -> None:
        """A step not run, on purpose: kept in the timeline with why."""
        self.status.steps.append(
            StepTiming(
                name=name, started_at=workflow.now(), seconds=0.0, outcome="ok", detail=detail
            )
        )

    def in_order(self, since: int, names: list[str]) -> None:
        """Steps run side by side are recorded as each ends; from index `since` on, put
        them back in `names` order, so the timeline reads the same whichever ended first."""
        steps = self.status.steps
        steps[since:] = sorted(steps[since:], key=lambda s: names.index(s.name))

    def mark_last(self, name: str, outcome: str, detail: str) -> None:
        steps = self.status.steps
        if steps and steps[-1].name == name:
            steps[-1].outcome = outcome  # type: ignore[assignment]
            steps[-1].detail = detail


PROBE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)


async def probe_side(cluster: ClusterConfig, side: Side) -> dict[str, str | None]:
    """Probes every node of one side; returns each node's problem, or None where healthy."""
    settings = cluster.side(side)
    timeout = cluster.probe.timeout_seconds
    probe: SideProbe = await workflow.execute_activity_method(
        SearchProbeActivities.probe_side,
        ProbeSideInput(
            cluster=cluster.name,
            side=side,
            settings=settings,
            timeout_seconds=timeout,
            health_path=health_path_of(cluster),
        ),
        start_to_close_timeout=timedelta(seconds=timeout * 2 + 5),
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=PROBE_RETRY,
        summary=f"probe {side} {cluster.name}",
    )
    return decisions.node_problems(
        probe.nodes,
        expected_cluster_name=settings.expected_cluster_name,
        expected_cluster_uuid=settings.expected_cluster_uuid,
        yellow_policy=cluster.probe.yellow_policy,
    )


NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


class Notifier:
    """Tells the configured channels, in the background: a run never waits for, or fails
    on, a notification; `failed()` counts those that failed for good, at the end.

    `patch`: the patch id older runs of the workflow were recorded without; it is asked
    only where channels are configured, once, as when the workflow first notified.
    """

    def __init__(self, name: str, channels: NotifySettings, *, patch: str | None = None) -> None:
        self.name = name
        self.channels = channels
        self.patch = patch
        self._enabled: bool | None = None
        self._sent: list[asyncio.Future[NotificationSent]] = []

    def send(self, event: str, text: str) -> None:
        channels = self.channels
        if channels.sns_topic_arn is None and not channels.has_webhook:
            return
        if self._enabled is None:
            self._enabled = self.patch is None or workflow.patched(self.patch)
        if not self._enabled:
            return
        self._sent.append(
            workflow.start_activity_method(
                NotifyActivities.notify,
                Notification(
                    cluster=self.name,
                    event=event,
                    text=f"{self.name}: {text}",
                    sns_topic_arn=channels.sns_topic_arn,
                    webhook_url_env=channels.webhook_url_env,
                    webhook_url_secret=channels.webhook_url_secret,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {event}",
            )
        )

    async def failed(self) -> int:
        failed = 0
        for outcome in await asyncio.gather(*self._sent, return_exceptions=True):
            if isinstance(outcome, BaseException):
                failed += 1
                why = failure_reason(outcome) if isinstance(outcome, ActivityError) else outcome
                workflow.logger.warning("notification failed: %s", why)
        return failed


FLUSH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=4
)


async def flush_stages(
    name: str, stages: list[list[Cache]], region: str | None = None
) -> list[FlushResult | str]:
    """Flushes the caches stage by stage (the app's backends together, then Varnish: purged
    first, Varnish would refill from the still-broken page cache); a cache that could not
    be flushed is the reason why, never an exception."""
    results: list[FlushResult | str] = []
    for stage in stages:
        results += await asyncio.gather(*(_flush(name, cache, region) for cache in stage))
    return results


async def _flush(name: str, cache: Cache, region: str | None) -> FlushResult | str:
    is_ssm = isinstance(cache, SsmCache)
    timeout = timedelta(seconds=cache.timeout_seconds + 30) if is_ssm else timedelta(seconds=30)
    where = f" in {region}" if region else ""
    try:
        return await workflow.execute_activity_method(
            CacheActivities.flush_cache,
            FlushRequest(cluster=name, cache=cache, region=region),
            start_to_close_timeout=timeout,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=FLUSH_RETRY,
            summary=f"flush {cache.type} {cache.name}{where}",
        )
    except ActivityError as err:
        return f"cache flush failed: {cache.name}: {failure_reason(err)}"


async def first_fit_round(
    check_round: Callable[[], Awaitable[str | None]],
    *,
    attempts: int,
    interval_seconds: float,
    what: str,
    patch: str | None = None,
) -> str | None:
    """None at the first round that finds nothing wrong, else the last round's problem after
    `attempts` rounds `interval_seconds` apart: one slow round on a busy system (every node
    timing out together) is not a side or a shop that is unfit. Runs recorded before
    `patch` judged one round."""
    problem: str | None = None
    for attempt in range(1, attempts + 1):
        problem = await check_round()
        if problem is None:
            return None
        workflow.logger.warning("%s round %d of %d: %s", what, attempt, attempts, problem)
        if attempt == attempts or (patch is not None and not workflow.patched(patch)):
            return problem
        await workflow.sleep(timedelta(seconds=interval_seconds))
    return problem


async def fit_to_take_traffic(
    cluster: ClusterConfig, side: Side, *, attempts: int = 1
) -> str | None:
    """Preflight of the side traffic would move to, in up to `attempts` rounds; a missing
    alias is left for the data checks to name."""

    async def fit_round() -> str | None:
        problems = await probe_side(cluster, side)
        if cluster.magento is not None:
            problems = decisions.defer_to_data(problems)
        return decisions.preflight_refusal(problems, side)

    return await first_fit_round(
        fit_round,
        attempts=attempts,
        interval_seconds=cluster.probe.interval_seconds,
        what="preflight",
    )
