"""Client-side operations shared by the CLI, the demo and the tests."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from failover.config import ClusterConfig
from failover.models import FailoverRequest, FailoverResult, FailoverStatus, Trigger

FAILOVER_WORKFLOW = "FailoverWorkflow"


def failover_workflow_id(cluster: str) -> str:
    return f"failover-{cluster}"


async def start_or_attach_failover(
    client: Client,
    cluster: ClusterConfig,
    *,
    task_queue: str,
    reason: str,
    trigger: Trigger = "manual",
) -> WorkflowHandle[Any, FailoverResult]:
    """Starts `failover-<cluster>`, or returns the run already in progress.

    The fixed id plus USE_EXISTING is what makes a storm of triggers one failover;
    ALLOW_DUPLICATE lets a later trigger start a new run (a move back) once one ended.
    """
    return await client.start_workflow(
        FAILOVER_WORKFLOW,
        FailoverRequest(cluster=cluster, reason=reason, trigger=trigger),
        id=failover_workflow_id(cluster.name),
        task_queue=task_queue,
        result_type=FailoverResult,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"{cluster.name}: failover ({trigger}: {reason})"[:200],
    )


async def failover_state(client: Client, cluster: str) -> dict[str, Any]:
    """The current run's live status, or the last run's result, as plain JSON-able data."""
    handle = client.get_workflow_handle(failover_workflow_id(cluster), result_type=FailoverResult)
    description = await handle.describe()
    state: dict[str, Any] = {
        "cluster": cluster,
        "workflow_id": description.id,
        "run_id": description.run_id,
        "workflow_status": description.status.name if description.status else None,
    }
    if description.status == WorkflowExecutionStatus.RUNNING:
        status = await handle.query("status", result_type=FailoverStatus)
        state["status"] = status.model_dump(mode="json")
    elif description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        state["result"] = result.model_dump(mode="json")
    return state


async def list_failover_clusters(client: Client) -> list[str]:
    """Clusters that have had a failover workflow, newest first, each once."""
    seen: list[str] = []
    async for execution in client.list_workflows(f"WorkflowType = '{FAILOVER_WORKFLOW}'"):
        cluster = execution.id.removeprefix("failover-")
        if cluster not in seen:
            seen.append(cluster)
    return seen
