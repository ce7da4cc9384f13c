"""Replays recorded histories against the current workflow code: breaking changes fail CI.

Every `tests/histories/*.json` is one run of `FailoverWorkflow`, of `ReseedWorkflow`
(`reseed_*`), of `RegionSwitchWorkflow` (`region_*`), or of `MonitorWorkflow` (`monitor_*`:
a monitor never finishes, so its history stops mid-run) (Temporal's JSON
history format, as written by `WorkflowHistory.to_json()` or `temporal workflow show
--output json`; the file name, without `.json`, is used as the workflow id). Each is replayed
with `temporalio.worker.Replayer`, configured like the worker (same data converter, same
sandbox). If the workflow code would now issue different commands for the same history
(another activity, a new timer, a reordered step), replay raises `NondeterminismError` and
the test fails: a workflow that is running in production while the new code is deployed
would get stuck the same way. No Temporal server is needed.

Adding a history: drop the JSON file into tests/histories/; it is picked up automatically.
`*_before_tell_monitor.json` are runs recorded before the `tell-monitor` patch (the run
signals the monitor at its end), `*_before_side_by_side.json` before `verify-side-by-side`
(the verify checks one after the other): they keep the unpatched paths replaying.
`dns_monitor_started.json` is the failover a monitor started (`probe-with-snapshot`).

When a replay test fails, do not re-record to make it pass. Keep running workflows working
by guarding the change with `workflow.patched("<change-id>")` (old path when it returns
False, new path when True; later `workflow.deprecate_patch(...)` once no old run is left).

Refresh the histories on purpose only for an intended, versioned change: one that is deployed
while no failover workflow is running (or under a new workflow name or task queue), so no
run recorded with the old code will ever be replayed by the new one. Then re-record with

    .venv/bin/pytest tests/record_histories.py

which runs the scenarios on a real dev server and overwrites dns_failed_over, dns_rolled_back,
dns_aborted, nlb_failed_over, monitor_failed_over (and the run it started,
dns_monitor_started), monitor_alarm_not_confirmed, with
replication dns_promoted, reseed_reseeded and dns_failback_reseeded, and on the two-Region
sandbox region_failed_over and region_rolled_back in tests/histories/
(other files, such as the crash history, are left alone and must be refreshed the way they
were made). Review the diff, run this module, and commit the new
histories together with the workflow change.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from failover.models import FailoverRequest, FailoverResult, ProbeSideInput, SideProbe
from worker import ACTIVITY_ONLY_MODULES
from workflows.failover import FailoverWorkflow
from workflows.monitor import MonitorWorkflow
from workflows.region import RegionSwitchWorkflow
from workflows.replication import ReseedWorkflow

HISTORIES = Path(__file__).parent / "histories"


def make_replayer(*workflows: type) -> Replayer:
    """A replayer set up like the worker in worker.build_worker."""
    return Replayer(
        workflows=list(workflows)
        or [FailoverWorkflow, MonitorWorkflow, ReseedWorkflow, RegionSwitchWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                *ACTIVITY_ONLY_MODULES
            )
        ),
    )


def load_history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def history_files() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_histories_are_present() -> None:
    """An empty folder would make the replay check pass vacuously."""
    assert history_files(), f"no recorded histories in {HISTORIES}: see this module's docstring"


@pytest.mark.parametrize("path", history_files(), ids=lambda p: p.stem)
async def test_history_replays_against_current_workflow_code(path: Path) -> None:
    history = load_history(path)
    assert history.events, f"{path.name} has no events"
    result = await make_replayer().replay_workflow(history)
    assert result.replay_failure is None


# --- the check can fail -------------------------------------------------------------------


# Not sandboxed: the sandbox would re-import this test module (and pytest) for it. The
# runner makes no difference to how a command mismatch is detected.
@workflow.defn(name="FailoverWorkflow", sandboxed=False)
class ProbeFirstFailoverWorkflow(FailoverWorkflow):
    """A plausible unguarded change: probe the standby before the snapshot."""

    @workflow.run
    async def run(self, request: FailoverRequest) -> FailoverResult:
        cluster = request.cluster
        await workflow.execute_activity(
            "probe_side",
            ProbeSideInput(
                cluster=cluster.name,
                side="standby",
                settings=cluster.standby,
                timeout_seconds=cluster.probe.timeout_seconds,
            ),
            result_type=SideProbe,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return await super().run(request)


async def test_a_changed_workflow_fails_replay() -> None:
    path = HISTORIES / "dns_failed_over_before_side_by_side.json"
    history = load_history(path)
    with pytest.raises(workflow.NondeterminismError) as raised:
        await make_replayer(ProbeFirstFailoverWorkflow).replay_workflow(history)
    assert "probe_side" in str(raised.value) and "read_record" in str(raised.value)
    result = await make_replayer(ProbeFirstFailoverWorkflow).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, workflow.NondeterminismError)
