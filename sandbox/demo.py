"""The demo: a real failover on the local stack, start to finish, with its timeline.

It starts the sandbox, kills every node of the primary cluster, triggers the failover,
then reads the record back from Route 53 (moto) itself rather than trusting the result.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from failover.models import FailoverResult, Outcome
from failover.operations import failover_workflow_id, start_or_attach_failover
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, SANDBOX_CLUSTER, Sandbox


def rto_seconds(fault_at: datetime, result: FailoverResult) -> float | None:
    """Fault to verified switch: the end of the verify step that passed."""
    verify = [s for s in result.steps if s.name == "verify" and s.outcome == "ok"]
    if not verify:
        return None
    verified_at = verify[-1].started_at.timestamp() + verify[-1].seconds
    return round(verified_at - fault_at.timestamp(), 3)


async def run_demo(sandbox: Sandbox) -> dict[str, Any]:
    """Kills the primary of a started sandbox, fails over, and reports the timeline."""
    assert sandbox.fleet and sandbox.config and sandbox.client and sandbox.info
    cluster = sandbox.config.cluster(SANDBOX_CLUSTER)
    fault_at = datetime.now(UTC)
    sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await sandbox.fleet.clusters[PRIMARY_SIM].settle()
    handle = await start_or_attach_failover(
        sandbox.client,
        cluster,
        task_queue=sandbox.config.task_queue,
        reason="demo: every node of the primary cluster was killed",
    )
    result = await handle.result()
    workflow_id = failover_workflow_id(cluster.name)
    return {
        "result": result.result.value,
        "cluster": result.cluster,
        "from": result.from_side,
        "to": result.to_side,
        "from_value": result.from_value,
        "to_value": result.to_value,
        "record_after": await asyncio.to_thread(sandbox.read_record_values),
        "reason": result.reason,
        "fault_injected_at": fault_at.isoformat(),
        "rto_seconds": rto_seconds(fault_at, result),
        "workflow_seconds": round(result.seconds, 3),
        "steps": [
            {"name": s.name, "seconds": round(s.seconds, 3), "outcome": s.outcome}
            for s in result.steps
        ],
        "workflow_id": workflow_id,
        "run_id": handle.result_run_id,
        "ui_url": sandbox.info.temporal.workflow_url(workflow_id, handle.result_run_id),
        "state_dir": str(sandbox.directory),
    }


def demo_succeeded(report: dict[str, Any]) -> bool:
    return report["result"] == Outcome.FAILED_OVER.value
