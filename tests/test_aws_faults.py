"""AWS faults against the whole failover: transient ones are backed off, permanent ones end it.

Transient trouble (PriorRequestNotComplete, 5xx, Throttling, slow answers, PENDING changes)
must not change the outcome, and must cost what the retry policy says (seconds of backoff),
not minutes. Permanent errors (AccessDenied, NoSuchHostedZone) must end the run at once with
the AWS code in the reason. Every test reads the end state straight from moto.
"""

from __future__ import annotations

import itertools
import time

from temporalio.api.enums.v1 import EventType

from failover.client.operations import start_or_attach_failover
from failover.models import FailoverResult, Outcome, StepTiming
from failover.names import failover_workflow_id
from sandbox.aws_fault_proxy import FaultKind, FaultRule
from sandbox.search_sim import FaultMode
from sandbox.stack import PRIMARY_HOSTS, PRIMARY_SIM, PRIMARY_VALUE, STANDBY_HOSTS, STANDBY_VALUE
from tests.conftest import Stack
from workflows.steps import AWS_RETRY

# The Temporal timer of a retry may fire a hair before the proxy's clock says it should.
CLOCK_SLACK_S = 0.05


async def run_failover(stack: Stack, reason: str = "aws fault test") -> FailoverResult:
    """Starts a failover for the stack's cluster and waits for its result."""
    handle = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason=reason
    )
    return await handle.result()


def retry_backoff_s(failures: int) -> float:
    """The least time the AWS retry policy waits in total after `failures` failed attempts."""
    initial = AWS_RETRY.initial_interval.total_seconds()
    cap = AWS_RETRY.maximum_interval.total_seconds() if AWS_RETRY.maximum_interval else None
    total = 0.0
    for n in range(failures):
        interval = initial * AWS_RETRY.backoff_coefficient**n
        total += min(interval, cap) if cap is not None else interval
    return total


def retry_intervals_s(failures: int) -> list[float]:
    """The retry policy's wait after each of `failures` failed attempts."""
    return [retry_backoff_s(n + 1) - retry_backoff_s(n) for n in range(failures)]


def arrival_gaps(stack: Stack, operation: str) -> list[float]:
    """Seconds between consecutive calls of `operation` as they reached the proxy."""
    times = [c.time for c in stack.proxy.calls if c.operation == operation]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def step(result: FailoverResult, name: str) -> StepTiming:
    """The one step called `name` in the result's timeline."""
    found = [s for s in result.steps if s.name == name]
    assert len(found) == 1, f"expected one {name!r} step in {[s.name for s in result.steps]}"
    return found[0]


def assert_backed_off(stack: Stack, operation: str, failures: int) -> None:
    """Each retry of `operation` reached AWS no sooner than the policy's interval allows."""
    gaps = arrival_gaps(stack, operation)[:failures]
    assert len(gaps) == failures, f"{operation}: {len(gaps)} retries, wanted {failures}"
    for gap, interval in zip(gaps, retry_intervals_s(failures), strict=True):
        assert gap >= interval - CLOCK_SLACK_S, f"{operation} retried after {gap:.2f}s < {interval}"


# --- Route 53: transient faults ----------------------------------------------------------------


async def test_prior_request_not_complete_is_retried_with_backoff(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    busy = stack.proxy.add_rule(
        FaultRule(
            operation="ChangeResourceRecordSets",
            kind=FaultKind.ERROR,
            count=2,
            status=400,
            code="PriorRequestNotComplete",
            message="The request was rejected because Route 53 was still processing a prior "
            "request.",
        )
    )
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert busy.hits == 2
    assert stack.proxy.count("ChangeResourceRecordSets") == 3
    switch = step(result, "switch")
    assert switch.outcome == "ok"
    assert retry_backoff_s(2) <= switch.seconds < 10, switch.seconds
    assert_backed_off(stack, "ChangeResourceRecordSets", 2)
    assert stack.record_values() == [STANDBY_VALUE]


async def test_5xx_on_the_snapshot_read_is_retried_with_growing_backoff(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    unavailable = stack.proxy.add_rule(
        FaultRule(
            operation="ListResourceRecordSets",
            kind=FaultKind.ERROR,
            count=2,
            status=503,
            code="ServiceUnavailable",
            message="Service Unavailable",
        )
    )
    # skip=2: of two ERROR rules on one call only the first answers, so the second waits its turn.
    internal = stack.proxy.add_rule(
        FaultRule(
            operation="ListResourceRecordSets",
            kind=FaultKind.ERROR,
            count=1,
            skip=2,
            status=500,
            code="InternalError",
            message="An internal error occurred",
        )
    )
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (unavailable.hits, internal.hits) == (2, 1)
    snapshot = step(result, "snapshot")
    assert snapshot.outcome == "ok"
    assert retry_backoff_s(3) <= snapshot.seconds < 15, snapshot.seconds
    assert_backed_off(stack, "ListResourceRecordSets", 3)
    first_four = [c for c in stack.proxy.calls if c.operation == "ListResourceRecordSets"][:4]
    assert [c.status for c in first_four] == [503, 503, 500, 200]
    assert stack.record_values() == [STANDBY_VALUE]


async def test_a_slow_change_call_is_waited_for(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    slow = stack.proxy.add_rule(
        FaultRule(operation="ChangeResourceRecordSets", kind=FaultKind.SLOW, delay_ms=1500)
    )
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert slow.hits == 1
    assert stack.proxy.count("ChangeResourceRecordSets") == 1  # slow is not failed: no retry
    switch = step(result, "switch")
    assert slow.delay_ms / 1000 <= switch.seconds < 10, switch.seconds
    assert stack.record_values() == [STANDBY_VALUE]


async def test_a_pending_change_is_polled_until_insync(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    pending = stack.proxy.add_rule(
        FaultRule(operation="GetChange", kind=FaultKind.PENDING, count=5)
    )
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert pending.hits == 5
    assert stack.proxy.count("GetChange") == 6
    wait = step(result, "wait")
    poll_s = stack.cluster.switch.insync_poll_seconds
    assert 5 * poll_s <= wait.seconds < 10, wait.seconds
    assert stack.record_values() == [STANDBY_VALUE]


# --- Route 53: permanent faults ----------------------------------------------------------------


async def test_no_such_hosted_zone_fails_fast_and_changes_nothing(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    stack.proxy.add_rule(
        FaultRule(
            operation="ListResourceRecordSets",
            kind=FaultKind.ERROR,
            count=-1,
            status=404,
            code="NoSuchHostedZone",
            message=f"No hosted zone found with ID: {stack.zone_id}",
        )
    )
    started = time.monotonic()
    result = await run_failover(stack)
    elapsed = time.monotonic() - started
    assert result.result == Outcome.FAILED
    assert "NoSuchHostedZone" in result.reason, result.reason
    assert elapsed < 5, f"a permanent error took {elapsed:.1f}s to fail"
    assert [(s.name, s.outcome) for s in result.steps] == [("snapshot", "failed")]
    assert (result.from_side, result.to_side) == (None, None)
    # One read per attempt, and the 404 ended the attempts: a second attempt can only come
    # from a lost heartbeat (a stalled, busy worker), never from retrying the error.
    attempts, non_retryable = await read_record_attempts(stack)
    assert non_retryable
    assert stack.proxy.count("ListResourceRecordSets") == attempts <= 2
    assert stack.proxy.count("ChangeResourceRecordSets") == 0
    assert stack.record_values() == [PRIMARY_VALUE]


async def read_record_attempts(stack: Stack) -> tuple[int, bool]:
    """How many attempts the snapshot's read_record had, and whether the last one failed
    as non-retryable, as the run's history says."""
    handle = stack.client.get_workflow_handle(failover_workflow_id(stack.cluster.name))
    events = (await handle.fetch_history()).events
    [scheduled] = [
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "read_record"
    ]
    [started] = [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id == scheduled
    ]
    [failure] = [
        e.activity_task_failed_event_attributes.failure
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
        and e.activity_task_failed_event_attributes.scheduled_event_id == scheduled
    ]
    return started, failure.application_failure_info.non_retryable


async def test_access_denied_on_get_change_fails_after_the_upsert(stack: Stack) -> None:
    """The UPSERT went through, then GetChange is denied: the run fails at once, in `wait`.

    Nothing is half-switched (a CNAME has one value), but the record now points at the
    standby while the run reports `failed`: there is no rollback, verify or cache flush.
    """
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    stack.proxy.add_rule(
        FaultRule(
            operation="GetChange",
            kind=FaultKind.ERROR,
            count=-1,
            status=403,
            code="AccessDenied",
            message="User is not authorized to perform: route53:GetChange",
        )
    )
    started = time.monotonic()
    result = await run_failover(stack)
    elapsed = time.monotonic() - started
    assert result.result == Outcome.FAILED
    assert "GetChange" in result.reason and "AccessDenied" in result.reason, result.reason
    # The reason says the record moved, so nobody reads "failed" as "nothing changed".
    assert result.reason.startswith("record already switched to es-standby.shop.internal")
    assert elapsed < 5, f"a permanent error took {elapsed:.1f}s to fail"
    assert [s.name for s in result.steps][-2:] == ["switch", "wait"]
    assert [s.outcome for s in result.steps][-2:] == ["ok", "failed"]
    assert "AccessDenied" in (result.steps[-1].detail or "")
    assert (result.from_side, result.to_side) == ("primary", "standby")
    assert stack.proxy.count("ChangeResourceRecordSets") == 1
    assert stack.proxy.count("GetChange") == 1
    # The switch happened and stays: the record holds the standby's value, not a mix.
    assert stack.record_values() == [STANDBY_VALUE]


# --- NLB mode ----------------------------------------------------------------------------------


async def test_nlb_throttled_register_is_retried_and_switches(nlb_stack: Stack) -> None:
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    throttle = nlb_stack.proxy.add_rule(
        FaultRule(operation="RegisterTargets", kind=FaultKind.ERROR, count=2)
    )
    result = await run_failover(nlb_stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert throttle.hits == 2
    assert nlb_stack.proxy.count("RegisterTargets") == 3
    register = step(result, "register")
    assert retry_backoff_s(2) <= register.seconds < 10, register.seconds
    assert_backed_off(nlb_stack, "RegisterTargets", 2)
    assert nlb_stack.registered_targets() == dict.fromkeys(STANDBY_HOSTS, "healthy")


async def test_nlb_access_denied_on_deregister_leaves_both_sides_registered(
    nlb_stack: Stack,
) -> None:
    """Register and wait_healthy went through, then deregistering the old side is denied.

    The run fails at once and names AccessDenied; both sides stay registered (half-switched:
    the NLB sends traffic to both until its health checks drop the dead side).
    """
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    nlb_stack.proxy.add_rule(
        FaultRule(
            operation="DeregisterTargets",
            kind=FaultKind.ERROR,
            count=-1,
            status=403,
            code="AccessDenied",
            message="User is not authorized to perform: elasticloadbalancing:DeregisterTargets",
        )
    )
    started = time.monotonic()
    result = await run_failover(nlb_stack)
    elapsed = time.monotonic() - started
    assert result.result == Outcome.FAILED
    assert "DeregisterTargets" in result.reason and "AccessDenied" in result.reason, result.reason
    assert "both sides take traffic" in result.reason, result.reason
    assert elapsed < 10, f"a permanent error took {elapsed:.1f}s to fail"
    assert [(s.name, s.outcome) for s in result.steps][-3:] == [
        ("register", "ok"),
        ("wait_healthy", "ok"),
        ("deregister", "failed"),
    ]
    assert nlb_stack.proxy.count("RegisterTargets") == 1
    assert nlb_stack.proxy.count("DeregisterTargets") == 1
    assert nlb_stack.registered_targets() == dict.fromkeys(PRIMARY_HOSTS + STANDBY_HOSTS, "healthy")
