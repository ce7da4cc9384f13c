"""Starting and awaiting a failover from the monitor, through the Temporal client.

The monitor starts `failover-<cluster>` by id (attaching to a run another trigger already
started) rather than as a child, so a failover outlives the monitor's continue-as-new and
a manual trigger and the monitor can never run two failovers at once.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from failover.models import FailoverResult, FailoverStarted, StartFailoverInput
from failover.operations import start_or_attach_failover


class FailoverControlActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="start_failover")
    async def start_failover(self, request: StartFailoverInput) -> FailoverStarted:
        failover = request.request
        handle = await start_or_attach_failover(
            self.client,
            failover.cluster,
            task_queue=request.task_queue,
            reason=failover.reason,
            trigger=failover.trigger,
            confirmation=failover.confirmation,
        )
        run_id = handle.result_run_id or handle.first_execution_run_id or ""
        return FailoverStarted(workflow_id=handle.id, run_id=run_id)

    @activity.defn(name="await_failover")
    async def await_failover(self, started: FailoverStarted) -> FailoverResult:
        """Waits for that run's result; heartbeats keep a dead worker's wait from hanging."""
        handle = self.client.get_workflow_handle(
            started.workflow_id, run_id=started.run_id, result_type=FailoverResult
        )
        return await handle.result(follow_runs=False)
