"""Every workflow this project starts has the short workflow task timeout.

A workflow task that a worker had taken when it died goes to another worker only when the
task's start-to-close timeout (the run's workflow task timeout) expires: Temporal's 10 s
default, unless the start says otherwise. So each way a run starts is checked here, on the
real dev server, in what the server says the started run has: failover (through the
monitor's start_failover activity, which triggers and alarms share), failback, plan,
monitor and its continue-as-new, drill by hand and by schedule, and a drill's switches
(child runs). tests/test_crash_matrix.py kills a real worker holding a workflow task.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.control import FailoverControlActivities
from failover.client.operations import (
    ensure_monitor,
    plan_failover,
    schedule_drill,
    start_drill,
    start_failback,
)
from failover.config import AppConfig, ClusterConfig, parse_config
from failover.models import (
    DrillReport,
    FailoverRequest,
    FailoverResult,
    Outcome,
    StartFailoverInput,
)
from failover.names import (
    FAILOVER_WORKFLOW,
    WORKFLOW_TASK_TIMEOUT,
    drill_schedule_id,
    failover_workflow_id,
    monitor_workflow_id,
    plan_workflow_id,
)
from sandbox.waiting import wait_for
from tests.conftest import Stack

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0
# The resume target (p95 ≤ 3 s from the new worker's start) needs the task timeout below it.
RESUME_TARGET = timedelta(seconds=3)


def test_the_task_timeout_is_short_enough_for_the_resume_target() -> None:
    assert timedelta(seconds=1) <= WORKFLOW_TASK_TIMEOUT < RESUME_TARGET


async def task_timeout_of(client: Client, workflow_id: str, run_id: str | None = None) -> timedelta:
    """The started run's workflow task timeout, as the server describes it."""
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    config = description.raw_description.execution_config
    return config.default_workflow_task_timeout.ToTimedelta()


async def children_of(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str, timedelta]]:
    """Each child run the workflow started: id, run id, task timeout asked for at the start."""
    events = (await handle.fetch_history()).events
    asked = {
        e.event_id: e.start_child_workflow_execution_initiated_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    }
    children = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            started = event.child_workflow_execution_started_event_attributes
            timeout = asked[started.initiated_event_id].workflow_task_timeout.ToTimedelta()
            execution = started.workflow_execution
            children.append((execution.workflow_id, execution.run_id, timeout))
    return children


async def result_of(handle: WorkflowHandle[Any, Any]) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        return await handle.result()


def with_drill(stack: Stack, tmp_path: Path, **drill: Any) -> ClusterConfig:
    raw = stack.config.model_dump(mode="json")
    raw["clusters"][0]["drill"] = {"report_dir": str(tmp_path / "reports"), **drill}
    config: AppConfig = parse_config(raw)
    return config.clusters[0]


async def test_failover_failback_and_plan_runs_have_the_short_task_timeout(stack: Stack) -> None:
    client, cluster = stack.client, stack.cluster
    # The monitor's way in (triggers and alarms call the same start_or_attach_failover).
    request = FailoverRequest(cluster=cluster, reason="resume test", trigger="monitor")
    activity = FailoverControlActivities(client)
    started = await ActivityEnvironment().run(
        activity.start_failover, StartFailoverInput(request=request, task_queue=stack.task_queue)
    )
    timeout = await task_timeout_of(client, started.workflow_id, started.run_id)
    assert timeout == WORKFLOW_TASK_TIMEOUT
    failover = client.get_workflow_handle(
        started.workflow_id, run_id=started.run_id, result_type=FailoverResult
    )
    assert (await result_of(failover)).result == Outcome.NOT_CONFIRMED  # both sides healthy

    failback = await start_failback(client, cluster, task_queue=stack.task_queue, reason="test")
    assert await task_timeout_of(client, failback.id, failback.result_run_id) == timeout
    await result_of(failback)

    await plan_failover(client, cluster, task_queue=stack.task_queue)
    plans: list[str] = []

    async def listed() -> bool:
        query = f"WorkflowType = '{FAILOVER_WORKFLOW}' AND TaskQueue = '{stack.task_queue}'"
        plans[:] = [
            w.id
            async for w in client.list_workflows(query)
            if w.id.startswith(plan_workflow_id(cluster.name, ""))
        ]
        return bool(plans)

    await wait_for(listed, what="the plan run in the list", timeout_s=10)
    assert await task_timeout_of(client, plans[0]) == timeout


async def test_the_monitor_and_its_next_run_have_the_short_task_timeout(stack: Stack) -> None:
    client, cluster = stack.client, stack.cluster
    monitor = await ensure_monitor(
        client, cluster, task_queue=stack.task_queue, max_history_events=40
    )
    try:
        first_run = monitor.result_run_id
        assert await task_timeout_of(client, monitor.id, first_run) == WORKFLOW_TASK_TIMEOUT

        async def continued() -> bool:
            # Each configure signal restarts the watches: history grows to the limit.
            await ensure_monitor(client, cluster, task_queue=stack.task_queue)
            return (await client.get_workflow_handle(monitor.id).describe()).run_id != first_run

        await wait_for(continued, what="the monitor to continue as new", timeout_s=DEADLINE_S)
        assert await task_timeout_of(client, monitor_workflow_id(cluster.name)) == (
            WORKFLOW_TASK_TIMEOUT
        )
    finally:
        await client.get_workflow_handle(monitor.id).terminate("test over")


async def test_drills_and_their_switches_have_the_short_task_timeout(
    stack: Stack, tmp_path: Path
) -> None:
    client = stack.client
    cluster = with_drill(stack, tmp_path, hold_seconds=0)
    # By hand (a dry run: its switches are plan-<cluster>-<side>-… children).
    drill = await start_drill(client, cluster, task_queue=stack.task_queue, dry_run=True)
    assert await task_timeout_of(client, drill.id) == WORKFLOW_TASK_TIMEOUT
    await result_of(drill)
    plans = await children_of(drill)
    assert len(plans) == 2
    for workflow_id, run_id, asked in plans:
        assert asked == WORKFLOW_TASK_TIMEOUT
        assert await task_timeout_of(client, workflow_id, run_id) == WORKFLOW_TASK_TIMEOUT

    # By schedule: the action, the run it starts, and that drill's real switches.
    schedule = await schedule_drill(
        client, cluster, task_queue=stack.task_queue, cron="0 3 * * 0", paused=True
    )
    try:
        action = (await schedule.describe()).schedule.action
        assert action.task_timeout == WORKFLOW_TASK_TIMEOUT  # type: ignore[union-attr]
        await schedule.trigger()
        runs: list[tuple[str, str]] = []

        async def started() -> bool:
            recent = (await schedule.describe()).info.recent_actions
            runs[:] = [
                (a.action.workflow_id, a.action.first_execution_run_id)  # type: ignore[union-attr]
                for a in recent
            ]
            return bool(runs)

        await wait_for(started, what="the scheduled drill to start", timeout_s=10)
        workflow_id, run_id = runs[0]
        assert workflow_id.startswith(drill_schedule_id(cluster.name) + "-")
        assert await task_timeout_of(client, workflow_id, run_id) == WORKFLOW_TASK_TIMEOUT
        scheduled = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=DrillReport)
        report = await result_of(scheduled)
        assert report.verdict == "pass", report.reason
        switches = await children_of(scheduled)
        assert [w for w, _, _ in switches] == [failover_workflow_id(cluster.name)] * 2
        for workflow_id, run_id, asked in switches:
            assert asked == WORKFLOW_TASK_TIMEOUT
            assert await task_timeout_of(client, workflow_id, run_id) == WORKFLOW_TASK_TIMEOUT
    finally:
        await schedule.delete()
