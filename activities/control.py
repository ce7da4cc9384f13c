"""Workflows asking Temporal about other workflows, through the client.

The monitor starts `failover-<cluster>` by id (attaching to a run another trigger already
started) rather than as a child, so a failover outlives the monitor's continue-as-new and
a manual trigger and the monitor can never run two failovers at once. A drill asks what
else is running for its cluster, and whether the monitor is paused, before it switches.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from failover.client.operations import (
    known_data,
    monitor_status,
    start_or_attach_failover,
)
from failover.models import (
    DataRecord,
    FailoverResult,
    FailoverStarted,
    GuardrailFacts,
    GuardrailRequest,
    StartFailoverInput,
)
from failover.names import DRILL_WORKFLOW, drill_workflow_prefix, failover_workflow_id


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

    @activity.defn(name="monitor_data_record")
    async def monitor_data_record(self, cluster: str) -> DataRecord:
        """The monitor's record of both sides' storefront indices; empty without a monitor
        (preflight then judges the standby on what it says of itself)."""
        try:
            return await known_data(self.client, cluster)
        except RPCError as err:
            activity.logger.info("no monitor record for %s: %s", cluster, err.message)
            return DataRecord()

    @activity.defn(name="drill_guardrail_facts")
    async def drill_guardrail_facts(self, request: GuardrailRequest) -> GuardrailFacts:
        facts = GuardrailFacts()
        failover = self.client.get_workflow_handle(failover_workflow_id(request.cluster))
        try:
            if (await failover.describe()).status == WorkflowExecutionStatus.RUNNING:
                facts.running.append(failover.id)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        query = f"WorkflowType = '{DRILL_WORKFLOW}' AND ExecutionStatus = 'Running'"
        prefix = drill_workflow_prefix(request.cluster)
        async for execution in self.client.list_workflows(query):
            if execution.id.startswith(prefix) and execution.id != request.own_workflow_id:
                facts.running.append(execution.id)
        try:
            status = await monitor_status(self.client, request.cluster)
        except RPCError as err:
            # No monitor (or one not answering queries): nothing paused it.
            activity.logger.info("no monitor status for %s: %s", request.cluster, err.message)
        else:
            facts.monitor_paused = status.state.paused
            facts.monitor_paused_reason = status.state.paused_reason
        return facts
