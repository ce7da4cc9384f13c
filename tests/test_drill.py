"""Failback, dry runs and drills on the real dev server and the simulated clusters.

The stack here has no storefront or caches (tests/test_drill_sandbox.py runs drills on
the whole sandbox); each test has its own cluster name, zone and task queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from activities.aws import aws_client_factory
from failover import decisions, visibility
from failover.client.operations import (
    abort_drill,
    plan_failover,
    schedule_drill,
    start_drill,
    start_failback,
    start_or_attach_failover,
)
from failover.config import AppConfig, AwsSettings, ClusterConfig, parse_config
from failover.models import DrillReport, FailoverResult, FailoverStatus, Outcome
from failover.names import drill_schedule_id, failover_workflow_id
from failover.report import to_html, to_markdown
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, RECORD_NAME
from sandbox.waiting import wait_for
from tests.conftest import Stack

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0


def with_drill(stack: Stack, tmp_path: Path, **drill: Any) -> ClusterConfig:
    """The stack's cluster with drill settings (reports written under tmp_path)."""
    raw = stack.config.model_dump(mode="json")
    raw["clusters"][0]["drill"] = {"report_dir": str(tmp_path / "reports"), **drill}
    config: AppConfig = parse_config(raw)
    return config.clusters[0]


async def result_of(handle: WorkflowHandle[Any, Any]) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        return await handle.result()


async def fail_over_for_real(stack: Stack) -> None:
    stack.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await stack.fleet.clusters[PRIMARY_SIM].settle()
    handle = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason="primary died"
    )
    result = await result_of(handle)
    assert result.result == Outcome.FAILED_OVER, result.reason
    stack.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.HEALTHY))
    await stack.fleet.clusters[PRIMARY_SIM].settle()


# --- failback -------------------------------------------------------------------------------


async def test_failback_moves_traffic_back_verified(stack: Stack) -> None:
    await fail_over_for_real(stack)
    assert stack.record_values() == [stack.cluster.switch.standby_value]
    handle = await start_failback(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason="primary repaired"
    )
    result: FailoverResult = await result_of(handle)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (result.trigger, result.from_side, result.to_side) == ("failback", "standby", "primary")
    steps = {s.name: s for s in result.steps}
    assert steps["confirm"].detail == "skipped: a planned switch (failback)"
    assert steps["preflight"].outcome == "ok" and steps["verify"].outcome == "ok"
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_failback_when_the_primary_is_active_does_nothing(stack: Stack) -> None:
    handle = await start_failback(stack.client, stack.cluster, task_queue=stack.task_queue,
                                  reason="by mistake")  # fmt: skip
    result: FailoverResult = await result_of(handle)
    assert result.result == Outcome.ABORTED
    assert decisions.ALREADY_ACTIVE in result.reason
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_failback_refuses_to_run_beside_a_failover(stack: Stack) -> None:
    stack.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.HANG))
    await stack.fleet.clusters[PRIMARY_SIM].settle()
    running = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason="hanging"
    )
    with pytest.raises(Exception, match="already"):
        await start_failback(stack.client, stack.cluster, task_queue=stack.task_queue, reason="x")
    await running.terminate("test over")


# --- dry runs -------------------------------------------------------------------------------


async def test_plan_lists_the_changes_and_changes_nothing(stack: Stack) -> None:
    # The record carries a longer TTL than switch.ttl (1 s): the run would wait that out.
    route53 = aws_client_factory(AwsSettings(endpoint_url=stack.moto_url), "route53")()
    change = {"Name": RECORD_NAME, "Type": "CNAME", "TTL": 300}
    change["ResourceRecords"] = [{"Value": stack.cluster.switch.primary_value}]
    route53.change_resource_record_sets(
        HostedZoneId=stack.zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": change}]},
    )
    result = await plan_failover(stack.client, stack.cluster, task_queue=stack.task_queue)
    assert result.result == Outcome.PLANNED
    plan = result.plan
    assert plan is not None and (plan.from_side, plan.to_side) == ("primary", "standby")
    assert plan.record is not None
    assert plan.record.from_value == stack.cluster.switch.primary_value
    assert plan.record.to_value == stack.cluster.switch.standby_value
    assert plan.confirmation.startswith("3 probe round(s) of the primary")
    # The predicted RTO, with the TTL the record has now, as `failover plan` prints it and
    # as its --json writes it.
    assert plan.rto is not None and plan.rto.largest == "TTL"
    ttl = plan.rto.term("TTL")
    assert ttl is not None and ttl.seconds == 300
    assert "switch.ttl 1 s applies after this switch" in ttl.note
    assert f"rto: {plan.rto.headline()}" in plan.lines()
    assert "TTL 300 s is" in plan.rto.headline()
    dumped = result.model_dump(mode="json")["plan"]["rto"]
    assert dumped["largest"] == "TTL" and dumped["total_seconds"] == plan.rto.total_seconds
    assert [s.name for s in result.steps] == ["snapshot"]
    assert stack.record_values() == [stack.cluster.switch.primary_value]
    # Only reads reached AWS.
    assert {c.operation for c in stack.proxy.calls} <= {"ListResourceRecordSets"}


# --- drills ---------------------------------------------------------------------------------


async def test_drill_passes_and_leaves_the_primary_active(stack: Stack, tmp_path: Path) -> None:
    cluster = with_drill(stack, tmp_path, hold_seconds=0.5, rto_target_seconds=60)
    handle = await start_drill(stack.client, cluster, task_queue=stack.task_queue)
    report: DrillReport = await result_of(handle)
    assert report.verdict == "pass", report.reason
    assert report.confirmation_skipped
    phases = [p.name for p in report.phases]
    assert phases == [
        "steady_state_before",
        "guardrails",
        "failover",
        "hold",
        "failback",
        "steady_state_after",
    ]
    assert report.failover is not None and report.failover.result == Outcome.FAILED_OVER
    assert report.failback is not None and report.failback.to_side == "primary"
    assert report.rto_seconds is not None and 0 < report.rto_seconds < 60
    assert stack.record_values() == [stack.cluster.switch.primary_value]
    assert report.files is not None
    markdown = await asyncio.to_thread(Path(report.files.markdown).read_text)
    page = await asyncio.to_thread(Path(report.files.html).read_text)
    assert markdown == to_markdown(report)
    assert "<svg" in page and "RTO" in page
    # The written report sets the measured RTO beside the one predicted from config.
    assert report.rto_predicted is not None
    assert f"predicted {report.rto_predicted.drill_seconds:.1f} s" in markdown
    assert "<h2>Predicted RTO</h2>" in page


async def test_drill_on_a_sick_system_is_skipped(stack: Stack, tmp_path: Path) -> None:
    stack.fleet.set_fault(PRIMARY_SIM, 1, NodeFault(FaultMode.HTTP_500))
    await stack.fleet.clusters[PRIMARY_SIM].settle()
    handle = await start_drill(
        stack.client, with_drill(stack, tmp_path), task_queue=stack.task_queue
    )
    report: DrillReport = await result_of(handle)
    assert report.verdict == "skipped"
    assert report.reason.startswith(decisions.NOT_STEADY)
    assert "primary" in report.reason and "HTTP 500" in report.reason
    assert report.failover is None
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(failover_workflow_id(stack.cluster.name)).describe()


async def test_an_unsteady_round_is_looked_at_again_before_the_drill_is_skipped(
    stack: Stack, tmp_path: Path
) -> None:
    """A blip at the first steady-state round (one node answering 500) is not a sick shop:
    the drill looks again an interval later, finds it steady and runs."""
    stack.fleet.set_fault(PRIMARY_SIM, 1, NodeFault(FaultMode.HTTP_500))
    await stack.fleet.clusters[PRIMARY_SIM].settle()
    raw = stack.config.model_dump(mode="json")
    raw["clusters"][0]["probe"]["interval_seconds"] = 1.0  # time to end the blip in
    raw["clusters"][0]["drill"] = {"report_dir": str(tmp_path / "reports"), "hold_seconds": 0}
    cluster = parse_config(raw).clusters[0]
    handle = await start_drill(stack.client, cluster, task_queue=stack.task_queue)

    async def looking_again() -> bool:
        history = await handle.fetch_history()
        return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events)

    await wait_for(looking_again, what="the drill to wait for a second look", timeout_s=DEADLINE_S)
    stack.fleet.set_fault(PRIMARY_SIM, 1, NodeFault(FaultMode.HEALTHY))
    report: DrillReport = await result_of(handle)
    assert report.verdict == "pass", report.reason
    assert report.failover is not None and report.failover.result == Outcome.FAILED_OVER


async def test_a_blackout_window_blocks_the_drill(stack: Stack, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    window = {
        "start": (now - dt.timedelta(minutes=5)).strftime("%H:%M"),
        "end": (now + dt.timedelta(minutes=5)).strftime("%H:%M"),
    }
    cluster = with_drill(stack, tmp_path, blackout_windows=[window])
    report: DrillReport = await result_of(
        await start_drill(stack.client, cluster, task_queue=stack.task_queue)
    )
    assert report.verdict == "skipped" and report.reason.startswith(decisions.BLACKOUT)
    dated = with_drill(stack, tmp_path, blackout_dates=[now.date().isoformat()])
    report = await result_of(await start_drill(stack.client, dated, task_queue=stack.task_queue))
    assert report.verdict == "skipped" and "blackout date" in report.reason
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_abort_mid_drill_fails_back(stack: Stack, tmp_path: Path) -> None:
    cluster = with_drill(stack, tmp_path, hold_seconds=600)
    handle = await start_drill(stack.client, cluster, task_queue=stack.task_queue)

    async def holding() -> bool:
        status = await handle.query("status", result_type=FailoverStatus)
        return status.phase == "hold"

    await wait_for(holding, what="the drill to hold on the standby", timeout_s=DEADLINE_S)
    assert stack.record_values() == [stack.cluster.switch.standby_value]
    await abort_drill(stack.client, handle.id, reason="customer call", identity="ops@example")
    report: DrillReport = await result_of(handle)
    assert report.verdict == "aborted", report.reason
    assert "ops@example" in report.reason
    assert report.failback is not None and report.failback.result == Outcome.FAILED_OVER
    assert stack.record_values() == [stack.cluster.switch.primary_value]
    hold = next(p for p in report.phases if p.name == "hold")
    assert hold.seconds < 60  # the abort ended the 600 s hold


async def test_drill_dry_run_plans_both_switches_and_changes_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    handle = await start_drill(
        stack.client, with_drill(stack, tmp_path), task_queue=stack.task_queue, dry_run=True
    )
    report: DrillReport = await result_of(handle)
    assert report.verdict == "skipped" and report.reason.startswith("dry run")
    plans = [r.plan for r in report.plans]
    assert [(p.from_side, p.to_side) for p in plans if p] == [
        ("primary", "standby"),
        ("standby", "primary"),
    ]
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_a_schedule_triggers_a_drill(stack: Stack, tmp_path: Path) -> None:
    cluster = with_drill(stack, tmp_path, hold_seconds=0)
    schedule = await schedule_drill(
        stack.client, cluster, task_queue=stack.task_queue, cron="0 3 * * 0", paused=True
    )
    try:
        description = await schedule.describe()
        assert description.schedule.state.paused
        # The server keeps the cron expression as a calendar: Sundays at 03:00.
        [calendar] = description.schedule.spec.calendars
        assert [r.start for r in calendar.hour] == [3]
        assert [r.start for r in calendar.day_of_week] == [0]
        await schedule.trigger()
        found: list[str] = []

        async def drill_done() -> bool:
            query = "WorkflowType = 'DrillWorkflow' AND ExecutionStatus = 'Completed'"
            found[:] = [
                w.id
                async for w in stack.client.list_workflows(query)
                if w.id.startswith(drill_schedule_id(cluster.name) + "-")
            ]
            return bool(found)

        await wait_for(drill_done, what="the scheduled drill to finish", timeout_s=DEADLINE_S)
        drill = stack.client.get_workflow_handle(found[0], result_type=DrillReport)
        report: DrillReport = await drill.result()
        assert report.verdict == "pass", report.reason
        # Scheduled runs are as visible as the others: summary and search attributes.
        description = await drill.describe()
        summary = f"{cluster.name}: scheduled failover drill"
        assert await description.static_summary() == summary
        attributes = description.typed_search_attributes
        assert attributes.get(visibility.CLUSTER) == cluster.name
        assert attributes.get(visibility.RESULT) == "pass"
        assert attributes.get(visibility.SUMMARY) == summary
        # Its switches are child runs with their own summaries, in the list too; the
        # latest run of failover-<cluster> is the drill's failback.
        child_id = failover_workflow_id(cluster.name)
        child = await stack.client.get_workflow_handle(child_id).describe()
        child_summary = await child.static_summary()
        assert child_summary == f"{cluster.name}: drill switch to the primary"
        assert child.typed_search_attributes.get(visibility.SUMMARY) == child_summary
    finally:
        await schedule.delete()


def test_report_renders_without_a_drill() -> None:
    start = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
    report = DrillReport(
        cluster="c",
        workflow_id="drill-c-x",
        verdict="skipped",
        reason="not steady: primary down",
        started_at=start,
        finished_at=start + dt.timedelta(seconds=1),
        rto_seconds=None,
        rto_target_seconds=60,
    )
    assert "Drill SKIPPED for c" in to_markdown(report)
    assert "<svg" in to_html(report)
