"""Re-records the workflow histories in tests/histories/ that tests/test_replay.py replays.

Not part of the normal test run: the file name does not match pytest's `test_*.py`, so
`pytest` skips it. Run it on purpose, by path (pytest collects a file named on the command
line whatever its name):

    .venv/bin/pytest tests/record_histories.py

Each test drives one representative run on the real dev server, moto and the simulated
clusters (the fixtures of tests/conftest.py), checks the outcome, replays the fresh history
once as a sanity check and writes it to tests/histories/<scenario>.json. Read the module
docstring of tests/test_replay.py before committing re-recorded histories.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.client import WorkflowHistory

from failover.client.operations import (
    deliver_alarm,
    ensure_monitor,
    monitor_status,
    start_or_attach_failover,
)
from failover.client.temporal import TemporalEndpoint, connect
from failover.models import AlarmNotice, Outcome
from failover.names import failover_workflow_id, reseed_workflow_id
from sandbox.aws_fault_proxy import ForwardedCall
from sandbox.regions import DR_REGION
from sandbox.search_sim import FaultMode
from sandbox.stack import PRIMARY_SIM, SANDBOX_CLUSTER, STANDBY_SIM, STANDBY_VALUE, Sandbox
from sandbox.waiting import wait_for
from tests.conftest import Stack
from tests.test_crash_matrix import SandboxProcess, cli, run_case, start_sandbox, start_worker
from tests.test_region_switch import result_of as region_result_of
from tests.test_region_switch import start as start_region
from tests.test_replay import HISTORIES, make_replayer

# Worker identities ("<pid>@<hostname>") and sticky task queues ("<pid>@<hostname>-<uuid>")
# name the recording machine; replay ignores both, so the files say these instead.
RECORDED_IDENTITY = "recorder"
RECORDED_STICKY_QUEUE = "recorder-sticky"


def _scrub_machine_names(history: WorkflowHistory) -> None:
    """Replaces the recording machine's identities and sticky queue names with fixed strings."""
    for event in history.events:
        attributes_field = event.WhichOneof("attributes")
        if attributes_field is None:
            continue
        attributes = getattr(event, attributes_field)
        fields = attributes.DESCRIPTOR.fields_by_name
        if "identity" in fields and attributes.identity:
            attributes.identity = RECORDED_IDENTITY
        sticky = TaskQueueKind.TASK_QUEUE_KIND_STICKY
        if "task_queue" in fields and attributes.task_queue.kind == sticky:
            attributes.task_queue.name = RECORDED_STICKY_QUEUE


async def _record(stack: Stack, scenario: str, expected: Outcome) -> None:
    """Runs one failover to its end, checks its outcome and writes its history."""
    handle = await start_or_attach_failover(
        stack.client, stack.cluster, task_queue=stack.task_queue, reason=f"recording {scenario}"
    )
    result = await handle.result()
    assert result.result == expected, result.reason
    history = await handle.fetch_history()
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / f"{scenario}.json", history)


def _save(path: Path, history: WorkflowHistory) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(history.to_json() + "\n")


async def test_record_dns_failed_over(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    await _record(stack, "dns_failed_over", Outcome.FAILED_OVER)


async def test_record_dns_rolled_back(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)

    async def kill_standby_after_switch(call: ForwardedCall) -> None:
        if STANDBY_VALUE.encode() in call.request_body:
            await stack.fault(STANDBY_SIM, FaultMode.DOWN)

    stack.proxy.on_forwarded("ChangeResourceRecordSets", kill_standby_after_switch)
    await _record(stack, "dns_rolled_back", Outcome.ROLLED_BACK)


async def test_record_dns_aborted(stack: Stack) -> None:
    await stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    await stack.fault(STANDBY_SIM, FaultMode.DOWN)
    await _record(stack, "dns_aborted", Outcome.ABORTED)


async def test_record_nlb_failed_over(nlb_stack: Stack) -> None:
    await nlb_stack.fault(PRIMARY_SIM, FaultMode.DOWN)
    await _record(nlb_stack, "nlb_failed_over", Outcome.FAILED_OVER)


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from start_sandbox("dns", tmp_path_factory.mktemp("recording"))


async def test_record_dns_crash_after_upsert(sandbox_process: SandboxProcess) -> None:
    """A run whose worker was SIGKILLed right after the UPSERT, finished by a fresh worker."""
    outcome = await run_case(sandbox_process, "upsert_record:after")
    assert outcome.result.result == Outcome.FAILED_OVER, outcome.result.reason
    client = await connect(TemporalEndpoint(**sandbox_process.info["temporal"]))
    handle = client.get_workflow_handle(failover_workflow_id(SANDBOX_CLUSTER))
    history = await handle.fetch_history()
    retried = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt >= 2
    ]
    assert retried, "the crash should show as a retried activity attempt"
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / "dns_crash_after_upsert.json", history)


@pytest.fixture(scope="module")
def replication_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from start_sandbox("dns", tmp_path_factory.mktemp("replication"), replication=True)


async def _save_run(sandbox: SandboxProcess, workflow_id: str, scenario: str) -> None:
    client = await connect(TemporalEndpoint(**sandbox.info["temporal"]))
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / f"{scenario}.json", history)


async def test_record_replication_promote_reseed_failback(
    replication_process: SandboxProcess,
) -> None:
    """With replication: a failover that promotes the standby, the re-seed of the primary,
    and the failback that promotes it and re-seeds the standby again."""
    sandbox = replication_process
    outcome = await run_case(sandbox, None)
    assert outcome.result.result == Outcome.FAILED_OVER, outcome.result.reason
    assert outcome.result.promotion is not None and outcome.result.promotion.promoted
    name = outcome.result.cluster
    await _save_run(sandbox, failover_workflow_id(name), "dns_promoted")
    cli(sandbox, "sandbox", "fault", PRIMARY_SIM, "all", "healthy")
    worker = start_worker(sandbox, sandbox.logs / "worker-recording.log", None)
    try:
        cli(sandbox, "reseed", name, "--reason", "recording")
        await _save_run(sandbox, reseed_workflow_id(name), "reseed_reseeded")
        cli(sandbox, "failback", name, "--reason", "recording")
        await _save_run(sandbox, failover_workflow_id(name), "dns_failback_reseeded")
    finally:
        worker.terminate()
        assert worker.wait(30) == 0


async def test_record_monitor_failed_over(monitor_stack: Stack) -> None:
    """A monitor that sees the primary die from three vantage points and fails over."""
    handle = await ensure_monitor(
        monitor_stack.client, monitor_stack.cluster, task_queue=monitor_stack.task_queue
    )
    name = monitor_stack.cluster.name

    async def watching() -> bool:
        return len((await monitor_status(monitor_stack.client, name)).state.views) == 3

    await wait_for(watching, what="first reports from every vantage point")
    await monitor_stack.fault(PRIMARY_SIM, FaultMode.DOWN)

    async def standby_active() -> bool:
        status = await monitor_status(monitor_stack.client, name)
        return status.state.active == "standby" and status.phase == "watching"

    await wait_for(standby_active, what="the failover and the re-read", timeout_s=30)
    history = await handle.fetch_history()
    await handle.terminate("recorded")
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / "monitor_failed_over.json", history)
    # The run the monitor started: confirmed already, it probes once beside its snapshot.
    run = monitor_stack.client.get_workflow_handle(failover_workflow_id(name))
    run_history = await run.fetch_history()
    _scrub_machine_names(run_history)
    assert (await make_replayer().replay_workflow(run_history)).replay_failure is None
    _save(HISTORIES / "dns_monitor_started.json", run_history)


async def test_record_monitor_alarm_not_confirmed(monitor_stack: Stack) -> None:
    """A monitor that takes a storm of alarms on a healthy cluster, then a resolved one:
    one failover, which confirms nothing; the rest are counted."""
    config = monitor_stack.config
    cluster = monitor_stack.cluster
    handle = await ensure_monitor(monitor_stack.client, cluster, task_queue=config.task_queue)

    async def watching() -> bool:
        return len((await monitor_status(monitor_stack.client, cluster.name)).state.views) == 3

    await wait_for(watching, what="first reports from every vantage point")
    firing = AlarmNotice(source="sns", name="search-red", state="firing", event_id="m")
    for _ in range(5):
        await deliver_alarm(monitor_stack.client, config, cluster, firing)

    async def failover_done() -> bool:
        state = (await monitor_status(monitor_stack.client, cluster.name)).state
        return (
            state.alarms_received == 5
            and bool(state.failovers)
            and (state.failovers[-1].result is not None)
        )

    await wait_for(failover_done, what="the alarm's failover", timeout_s=30)
    resolved = firing.model_copy(update={"state": "resolved"})
    await deliver_alarm(monitor_stack.client, config, cluster, resolved)

    async def recorded() -> bool:
        return (await monitor_status(monitor_stack.client, cluster.name)).state.alarms_received == 6

    await wait_for(recorded, what="the resolved alarm")
    status = await monitor_status(monitor_stack.client, cluster.name)
    assert [f.result for f in status.state.failovers] == [Outcome.NOT_CONFIRMED]
    history = await handle.fetch_history()
    await handle.terminate("recorded")
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / "monitor_alarm_not_confirmed.json", history)


# --- the Region switch (two-Region sandbox, in process) ------------------------------------


async def _record_region(handle: Any, scenario: str, expected: Outcome) -> None:
    result = await region_result_of(handle)
    assert result.result == expected, result.reason
    history = await handle.fetch_history()
    _scrub_machine_names(history)
    replayed = await make_replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    _save(HISTORIES / f"{scenario}.json", history)


# In this order: the rollback starts from the primary Region with the DR tier at its pilot
# light; the switch after it then moves the storefront.
async def test_record_region_rolled_back(region_sandbox: Sandbox) -> None:
    assert region_sandbox.config is not None and region_sandbox.regions is not None
    config = region_sandbox.config
    group = config.storefront("shop").dr.auto_scaling_group
    region_sandbox.regions.dr.set_never_healthy(DR_REGION, group)
    handle = await start_region(
        region_sandbox,
        config,
        planned=True,
        reason="recording",
        storefront={"scale_timeout_seconds": 2},
    )
    await _record_region(handle, "region_rolled_back", Outcome.ROLLED_BACK)
    region_sandbox.regions.dr.set_never_healthy(DR_REGION, group, False)


async def test_record_region_failed_over(region_sandbox: Sandbox) -> None:
    assert region_sandbox.config is not None
    handle = await start_region(
        region_sandbox, region_sandbox.config, planned=True, reason="recording"
    )
    await _record_region(handle, "region_failed_over", Outcome.FAILED_OVER)
