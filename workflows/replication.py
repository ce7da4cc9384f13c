"""The standby's data in the runbook: read it, promote it, and re-seed the side left behind.

Elastic's and AWS's disaster-recovery guides: a follower is promoted by stopping replication
on its indices, and failing back needs replication the other way first. `ReseedWorkflow`
(`reseed-<cluster>`, one at a time) makes the side that does not take traffic follow the
one that does and waits until it has caught up; a failback runs the same steps afterwards
to put the direction back.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.search_data import SearchDataActivities
    from failover import names
    from failover.config import ClusterConfig
    from failover.models import (
        DataSnapshot,
        FailoverStatus,
        FollowInput,
        ReseedRequest,
        ReseedResult,
        Side,
        SideIndicesInput,
        other_side,
    )

from workflows.steps import (
    HEARTBEAT_TIMEOUT,
    PROBE_RETRY,
    StepFailed,
    StepRecorder,
    aws_activity,
)
from workflows.switchers import make_switcher

# Changes to a cluster are retried like AWS calls: transient trouble with backoff,
# permanent refusals (4xx) at once.
CLUSTER_CHANGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
)


def indices_input(cluster: ClusterConfig, side: Side) -> SideIndicesInput:
    assert cluster.magento is not None
    return SideIndicesInput(
        cluster=cluster.name,
        side=side,
        settings=cluster.side(side),
        magento=cluster.magento,
        kind=cluster.replication.kind,
        timeout_seconds=cluster.probe.timeout_seconds,
    )


async def read_data(cluster: ClusterConfig, side: Side) -> DataSnapshot:
    """One side's storefront indices now; a side that does not answer gets `error`."""
    return await workflow.execute_activity_method(
        SearchDataActivities.read_data,
        indices_input(cluster, side),
        start_to_close_timeout=timedelta(
            seconds=cluster.probe.timeout_seconds * 4 * len(cluster.side(side).nodes) + 5
        ),
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=PROBE_RETRY,
        summary=f"read {side} indices",
    )


def follow_input(cluster: ClusterConfig, follower: Side, leader: DataSnapshot) -> FollowInput:
    replication = cluster.replication
    connection = replication.connection_to(other_side(follower))
    if connection is None:
        key = f"{other_side(follower)}_connection"
        raise StepFailed(
            f"replication.{key} is not configured: the {follower} has no remote connection "
            f"to the {other_side(follower)} to replicate from"
        )
    assert cluster.magento is not None
    return FollowInput(
        cluster=cluster.name,
        follower_side=follower,
        follower=cluster.side(follower),
        leader=leader,
        connection=connection,
        magento=cluster.magento,
        kind=replication.kind,
        timeout_seconds=cluster.probe.timeout_seconds,
        poll_seconds=replication.poll_seconds,
        sync_timeout_seconds=replication.sync_timeout_seconds,
        max_lag_operations=replication.max_lag_operations,
    )


async def reseed(cluster: ClusterConfig, follower: Side, steps: StepRecorder) -> ReseedResult:
    """Makes `follower` replicate from the other side, and waits until it has caught up."""
    leader_side = other_side(follower)
    result = ReseedResult(cluster=cluster.name, leader=leader_side, follower=follower)
    async with steps.step("read_leader"):
        leader = await read_data(cluster, leader_side)
        if leader.error is not None:
            raise StepFailed(f"cannot read the {leader_side}'s indices: {leader.error}")
    request = follow_input(cluster, follower, leader)
    async with steps.step("follow"):
        result.follow = await aws_activity(
            SearchDataActivities.follow,
            request,
            summary=f"{follower} follows {leader_side} ({request.connection})",
            long_running=timedelta(seconds=request.timeout_seconds * 20 + 30),
        )
    async with steps.step("wait_synced") as waited:
        result.sync = await aws_activity(
            SearchDataActivities.wait_synced,
            request,
            summary=f"wait until the {follower} has caught up",
            long_running=timedelta(seconds=request.sync_timeout_seconds + 60),
        )
        if not result.sync.synced:
            waited.end("failed", f"not synced: {result.sync.problem}")
    return result


@workflow.defn(name=names.RESEED_WORKFLOW)
class ReseedWorkflow:
    """`failover reseed <cluster>`: the side without traffic follows the active one again."""

    @workflow.init
    def __init__(self, request: ReseedRequest) -> None:
        self._status = FailoverStatus(
            cluster=request.cluster.name, phase="starting", reason=request.reason
        )
        self._steps = StepRecorder(self._status)

    @workflow.run
    async def run(self, request: ReseedRequest) -> ReseedResult:
        cluster = request.cluster
        steps = self._steps
        try:
            if not cluster.replication.enabled or cluster.magento is None:
                return self._end(
                    ReseedResult(cluster=cluster.name),
                    "refused",
                    "refused: replication is not configured for this cluster",
                )
            switcher = make_switcher(cluster, steps)
            async with steps.step("snapshot"):
                snapshot = await switcher.snapshot()
            active, unknown = switcher.active_side(snapshot)
            if active is None:
                return self._end(
                    ReseedResult(cluster=cluster.name), "refused", f"refused: {unknown}"
                )
            self._status.from_side, self._status.to_side = active, other_side(active)
            result = await reseed(cluster, other_side(active), steps)
        except StepFailed as failed:
            return self._end(ReseedResult(cluster=cluster.name), "failed", f"failed: {failed}")
        if result.sync is not None and not result.sync.synced:
            return self._end(result, "failed", f"failed: not synced: {result.sync.problem}")
        return self._end(
            result,
            "reseeded",
            f"the {result.follower} follows the {result.leader} and has caught up",
        )

    def _end(self, result: ReseedResult, outcome: str, reason: str) -> ReseedResult:
        self._status.phase = "done"
        workflow.logger.info("reseed %s: %s", outcome, reason)
        return result.model_copy(
            update={"result": outcome, "reason": reason, "steps": list(self._status.steps)}
        )

    @workflow.query(name=names.STATUS_QUERY)
    def status(self) -> FailoverStatus:
        return self._status
