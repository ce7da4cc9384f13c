"""The failover workflow end to end on a real dev server, moto and the cluster simulator."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from failover.client.operations import start_or_attach_failover
from failover.config import RedisCache
from failover.models import FailoverResult, FailoverStatus, Outcome
from failover.names import failover_workflow_id
from sandbox.aws_fault_proxy import FaultKind, FaultRule, ForwardedCall
from sandbox.net import free_port
from sandbox.nlb import TargetHealthOverrides
from sandbox.search_sim import FaultMode
from sandbox.stack import (
    PRIMARY_HOSTS,
    PRIMARY_SIM,
    PRIMARY_VALUE,
    STANDBY_HOSTS,
    STANDBY_SIM,
    STANDBY_VALUE,
)
from sandbox.waiting import wait_for
from tests.conftest import Stack


async def run_failover(stack: Stack, reason: str = "test") -> FailoverResult:
    handle = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason=reason
    )
    return await handle.result()


def step_names(result: FailoverResult) -> list[str]:
    return [s.name for s in result.steps]


async def test_primary_down_fails_over_to_standby(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    result = await run_failover(stack, "primary killed")
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (result.from_side, result.to_side) == ("primary", "standby")
    assert result.to_value == STANDBY_VALUE
    assert step_names(result) == [
        "snapshot",
        "confirm",
        "preflight",
        "switch",
        "wait",
        "ttl_wait",
        "verify",
    ]
    assert all(s.outcome == "ok" for s in result.steps)
    assert stack.record_values() == [STANDBY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 1


async def test_healthy_primary_is_not_confirmed_and_nothing_changes(stack: Stack) -> None:
    result = await run_failover(stack, "stray alarm")
    assert result.result == Outcome.NOT_CONFIRMED
    assert result.reason.startswith("not confirmed: active side healthy in probe round 1 of 3")
    assert step_names(result) == ["snapshot", "confirm"]
    assert result.steps[-1].outcome == "refused"
    assert stack.record_values() == [PRIMARY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 0


async def test_red_primary_confirms_but_yellow_does_not(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.YELLOW)
    assert (await run_failover(stack)).result == Outcome.NOT_CONFIRMED
    await stack.fault(PRIMARY_SIM, FaultMode.RED)
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert stack.record_values() == [STANDBY_VALUE]


async def test_standby_down_aborts_and_record_is_unchanged(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    await stack.fault(STANDBY_SIM, FaultMode.DOWN)
    result = await run_failover(stack)
    assert result.result == Outcome.ABORTED
    assert result.reason.startswith("aborted: preflight failed: standby is not healthy")
    assert step_names(result) == ["snapshot", "confirm", "preflight"]
    assert stack.record_values() == [PRIMARY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 0


async def test_standby_reporting_wrong_cluster_aborts(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    await stack.fault(STANDBY_SIM, FaultMode.WRONG_CLUSTER, node=1)
    result = await run_failover(stack)
    assert result.result == Outcome.ABORTED
    assert "wrong cluster" in result.reason
    assert stack.record_values() == [PRIMARY_VALUE]


async def test_verify_failure_rolls_back_to_the_snapshot(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    switched: list[bytes] = []

    async def kill_standby_after_switch(call: ForwardedCall) -> None:
        if STANDBY_VALUE.encode() in call.request_body:
            switched.append(call.request_body)
            await stack.fault(STANDBY_SIM, FaultMode.DOWN)

    stack.proxy.on_forwarded("ChangeResourceRecordSets", kill_standby_after_switch)
    result = await run_failover(stack)
    assert len(switched) == 1
    assert result.result == Outcome.ROLLED_BACK
    assert result.reason.startswith("rolled back: verify failed: new side not serving")
    assert step_names(result)[-2:] == ["verify", "rollback"]
    # The failed check is recorded as failed, with its reason: no timeline, metric, report
    # or RTO may read a rolled-back run as verified.
    verify = result.steps[-2]
    assert (verify.outcome, verify.detail) == (
        "failed",
        result.reason.removeprefix("rolled back: "),
    )
    assert result.steps[-1].outcome == "ok"
    assert stack.record_values() == [PRIMARY_VALUE]
    assert stack.proxy.count("ChangeResourceRecordSets") == 2


async def test_access_denied_fails_fast_without_retries(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    stack.proxy.add_rule(
        FaultRule(
            operation="ChangeResourceRecordSets",
            kind=FaultKind.ERROR,
            count=-1,
            status=403,
            code="AccessDenied",
            message="User is not authorized to perform: route53:ChangeResourceRecordSets",
        )
    )
    started = time.monotonic()
    result = await run_failover(stack)
    elapsed = time.monotonic() - started
    assert result.result == Outcome.FAILED
    assert "AccessDenied" in result.reason and "not authorized" in result.reason
    assert result.steps[-1].name == "switch" and result.steps[-1].outcome == "failed"
    assert stack.proxy.count("ChangeResourceRecordSets") == 1
    assert elapsed < 30, f"a permanent error took {elapsed:.1f}s to fail"
    assert stack.record_values() == [PRIMARY_VALUE]


async def test_throttling_and_pending_are_waited_out(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    throttle = stack.proxy.add_rule(
        FaultRule(operation="ChangeResourceRecordSets", kind=FaultKind.ERROR, count=2)
    )
    pending = stack.proxy.add_rule(
        FaultRule(operation="GetChange", kind=FaultKind.PENDING, count=3)
    )
    result = await run_failover(stack)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert throttle.hits == 2 and pending.hits == 3
    assert stack.proxy.count("ChangeResourceRecordSets") == 3
    assert stack.proxy.count("GetChange") == 4
    assert stack.record_values() == [STANDBY_VALUE]


async def test_two_triggers_at_once_make_one_workflow(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    first, second = await asyncio.gather(
        start_or_attach_failover(
            stack.client, stack.cluster, task_queue=stack.task_queue, reason="alarm 1"
        ),
        start_or_attach_failover(
            stack.client, stack.cluster, task_queue=stack.task_queue, reason="alarm 2"
        ),
    )
    assert first.result_run_id == second.result_run_id
    result = await first.result()
    assert result.result == Outcome.FAILED_OVER
    workflow_id = failover_workflow_id(stack.cluster.name)
    runs: list[WorkflowExecution] = []

    async def listed_completed() -> bool:  # visibility follows the history a moment later
        runs[:] = [
            execution
            async for execution in stack.client.list_workflows(f"WorkflowId = '{workflow_id}'")
        ]
        return any(r.status == WorkflowExecutionStatus.COMPLETED for r in runs)

    await wait_for(listed_completed, what="the run to be listed as completed")
    assert len(runs) == 1
    assert stack.proxy.count("ChangeResourceRecordSets") == 1


async def test_second_failover_moves_back_from_where_traffic_is(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    assert (await run_failover(stack)).result == Outcome.FAILED_OVER
    await stack.fault(PRIMARY_SIM, FaultMode.HEALTHY)
    await stack.fault(STANDBY_SIM, FaultMode.HTTP_503)
    back = await run_failover(stack, "standby broke")
    assert back.result == Outcome.FAILED_OVER, back.reason
    assert (back.from_side, back.to_side) == ("standby", "primary")
    assert stack.record_values() == [PRIMARY_VALUE]


async def test_status_query_answers_while_running(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    stack.proxy.add_rule(FaultRule(operation="GetChange", kind=FaultKind.PENDING, count=-1))
    handle = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason="query me"
    )
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = await handle.query("status", result_type=FailoverStatus)
        if status.phase == "wait":
            break
        await asyncio.sleep(0.05)
    assert status is not None and status.phase == "wait"
    assert [s.name for s in status.steps] == ["snapshot", "confirm", "preflight", "switch"]
    assert (status.from_side, status.to_side) == ("primary", "standby")
    stack.proxy.clear_rules()
    result = await handle.result()
    assert result.result == Outcome.FAILED_OVER


# --- NLB mode ---------------------------------------------------------------------------------


async def test_nlb_primary_down_moves_the_targets(nlb_stack: Stack) -> None:
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    result = await run_failover(nlb_stack, "primary killed")
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert step_names(result) == [
        "snapshot",
        "confirm",
        "preflight",
        "register",
        "wait_healthy",
        "deregister",
        "drain",
        "verify",
    ]
    assert result.to_value == ",".join(
        f"{h}:{result.to_value.split(':')[-1]}" for h in STANDBY_HOSTS
    )
    registered = nlb_stack.registered_targets()
    assert registered == dict.fromkeys(STANDBY_HOSTS, "healthy")


async def test_nlb_standby_never_healthy_aborts_and_keeps_the_primary(
    nlb_stack: Stack, target_health: TargetHealthOverrides
) -> None:
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    switch = nlb_stack.cluster.switch
    for target in switch.standby_targets:
        target_health.set(switch.target_group_arn, target.id, target.port, "unhealthy")
    result = await run_failover(nlb_stack)
    assert result.result == Outcome.ABORTED
    assert "standby targets never became healthy" in result.reason
    assert "unhealthy" in result.reason
    assert step_names(result)[-3:] == ["register", "wait_healthy", "unregister_new"]
    # Never both sets deregistered: the primary's targets were never touched.
    assert nlb_stack.registered_targets() == dict.fromkeys(PRIMARY_HOSTS, "healthy")
    assert nlb_stack.proxy.count("DeregisterTargets") == 1


async def test_nlb_verify_failure_restores_the_original_registrations(nlb_stack: Stack) -> None:
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)

    async def kill_standby_after_deregister(call: ForwardedCall) -> None:
        if b"127.0.1.1" in call.request_body:  # the primary's targets went out: switched
            await nlb_stack.fault(STANDBY_SIM, FaultMode.DOWN)

    nlb_stack.proxy.on_forwarded("DeregisterTargets", kill_standby_after_deregister)
    result = await run_failover(nlb_stack)
    assert result.result == Outcome.ROLLED_BACK
    assert result.reason.startswith("rolled back: verify failed: new side not serving")
    verify = next(s for s in result.steps if s.name == "verify")
    assert verify.outcome == "failed"
    assert verify.detail is not None and verify.detail.startswith("verify failed:")
    assert nlb_stack.registered_targets() == dict.fromkeys(PRIMARY_HOSTS, "healthy")


async def test_a_failed_cache_flush_warns_but_keeps_a_healthy_switch(stack: Stack) -> None:
    cluster = stack.cluster.model_copy(
        update={
            "caches": [
                RedisCache(
                    type="redis",
                    name="magento-redis",
                    host="127.0.0.1",
                    port=free_port(),
                    password_env="FAILOVER_TEST_UNSET_PASSWORD",
                )
            ]
        }
    )
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    handle = await start_or_attach_failover(
        stack.client, cluster, task_queue=stack.task_queue, reason="flush will fail"
    )
    result = await handle.result()
    assert result.result == Outcome.FAILED_OVER_WITH_WARNINGS
    assert result.flushed == []
    assert result.warnings == [
        "cache flush failed: magento-redis: environment variable "
        "FAILOVER_TEST_UNSET_PASSWORD (redis magento-redis password) is not set"
    ]
    flush = [s for s in result.steps if s.name == "flush"]
    assert [s.outcome for s in flush] == ["warning"]
    assert stack.record_values() == [STANDBY_VALUE]
