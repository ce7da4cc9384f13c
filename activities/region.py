"""The Region switch's AWS side: a Region's app tier, the Aurora global database's writer and
the ElastiCache global datastore's primary.

Every call names its Region: a switch reads and changes both Regions, and must go on when one
of them is impaired, so clients are made per (service, Region). Each change reads first and does
only what is left, so a retry after a worker crash is harmless. Each wait polls with a deadline
counted from the activity's first schedule (a retry does not restart the clock), heartbeats what
it sees, and reports rather than raises a timeout: the workflow decides what a slow Region means.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import aws_client_factory, aws_failure, aws_session
from failover import names
from failover.config import AwsSettings, arn_region
from failover.models import (
    AppTierRequest,
    AppTierState,
    CacheDatastoreRequest,
    CacheDatastoreState,
    DatabaseMember,
    DatabaseRequest,
    DatabaseState,
    FailoverCacheRequest,
    ScaleRequest,
    ScaleResult,
    SwitchDatabaseRequest,
    SwitchDatabaseResult,
    WaitCacheRequest,
    WaitCacheResult,
    WaitCapacityRequest,
    WaitCapacityResult,
    WaitDatabaseRequest,
    WaitDatabaseResult,
)

Clients = Callable[[str, str], Any]
State = TypeVar("State", bound=BaseModel)

BEAT_EVERY_SECONDS = 0.5
# AWS publishes AuroraGlobalDBReplicationLag every minute; older than this is no lag reading.
LAG_WINDOW_SECONDS = 300
LAG_NAMESPACE = "AWS/RDS"
LAG_METRIC = "AuroraGlobalDBReplicationLag"
# Failed scaling activities older than this do not explain why capacity is short now.
SCALING_PROBLEMS_WINDOW_SECONDS = 3600
MAX_SCALING_PROBLEMS = 5
# A switch refused in these states needs a decision, not a retry (see switch_database).
REFUSED_SWITCH_STATES = frozenset({"InvalidGlobalClusterStateFault", "InvalidDBClusterStateFault"})
NOT_FOUND = frozenset(
    {
        "GlobalClusterNotFoundFault",
        "DBClusterNotFoundFault",
        "GlobalReplicationGroupNotFoundFault",
        "TargetGroupNotFound",
    }
)


def region_clients(aws: AwsSettings) -> Clients:
    """One boto3 client per (service, Region), made on first use from one session: a fresh
    session reads the service models again (a few hundred ms a client on a busy worker),
    and a Region switch calls the same few again and again."""
    made: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()
    session = aws_session()

    def client(service: str, region: str) -> Any:
        with lock:
            if (service, region) not in made:
                make = aws_client_factory(aws, service, region, session=session)
                made[(service, region)] = make()
            return made[(service, region)]

    return client


class RegionalAws:
    """AWS calls that name their Region, off the event loop, errors sorted by aws_failure."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    async def call_in(
        self, service: str, region: str, operation: str, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            client = await asyncio.to_thread(self._clients, service, region)
            method = getattr(client, xform_name(operation))
            answer: dict[str, Any] = await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(f"{operation} in {region}", exc) from exc
        return answer


def _final(err: ApplicationError, message: str) -> ApplicationError:
    """The same AWS error code, non-retryable, with a sentence that names what is wrong."""
    return ApplicationError(f"{message}: {err.message}", type=err.type, non_retryable=True)


class RegionActivities:
    """Auto Scaling, ELBv2, Aurora global database and ElastiCache global datastore activities;
    `clients(service, region)` returns a boto3 client (the worker passes region_clients)."""

    def __init__(self, clients: Clients) -> None:
        self.aws = RegionalAws(clients)

    # ---------------------------------------------------------------- the app tier

    async def _read_app_tier(self, request: AppTierRequest) -> AppTierState:
        region = request.region
        state = AppTierState(region=region)
        try:
            balancers = await self.aws.call_in(
                "elbv2",
                region,
                "DescribeLoadBalancers",
                LoadBalancerArns=[request.load_balancer_arn],
            )
            found = balancers.get("LoadBalancers", [])
            state.load_balancer_state = found[0]["State"]["Code"] if found else None
        except ApplicationError as err:
            if err.type != "LoadBalancerNotFound":
                raise
        groups = await self.aws.call_in(
            "autoscaling",
            region,
            "DescribeAutoScalingGroups",
            AutoScalingGroupNames=[request.auto_scaling_group],
        )
        found_groups = groups.get("AutoScalingGroups", [])
        if not found_groups:
            state.group_found = False
            return state
        group = found_groups[0]
        state.desired_capacity = group["DesiredCapacity"]
        state.min_size = group["MinSize"]
        state.max_size = group["MaxSize"]
        instances = group.get("Instances", [])
        members = {i["InstanceId"] for i in instances}
        state.in_service = sum(
            1
            for i in instances
            if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"
        )
        try:
            health = await self.aws.call_in(
                "elbv2", region, "DescribeTargetHealth", TargetGroupArn=request.target_group_arn
            )
        except ApplicationError as err:
            if err.type in NOT_FOUND:
                raise _final(err, f"target group {request.target_group_arn} not found") from err
            raise
        state.healthy_targets = sum(
            1
            for d in health.get("TargetHealthDescriptions", [])
            if d["Target"]["Id"] in members and d["TargetHealth"]["State"] == "healthy"
        )
        state.scaling_problems = await self._scaling_problems(region, request.auto_scaling_group)
        return state

    async def _scaling_problems(self, region: str, group: str) -> list[str]:
        """Why the group is short, in AWS's words: its recent failed launches, newest first."""
        answer = await self.aws.call_in(
            "autoscaling", region, "DescribeScalingActivities", AutoScalingGroupName=group
        )
        since = datetime.now(UTC) - timedelta(seconds=SCALING_PROBLEMS_WINDOW_SECONDS)
        problems: list[str] = []
        for entry in sorted(answer.get("Activities", []), key=_started, reverse=True):
            if entry.get("StatusCode") != "Failed" or _started(entry) < since:
                continue
            message = entry.get("StatusMessage") or entry.get("Description") or "failed"
            if message not in problems:
                problems.append(message)
        return problems[:MAX_SCALING_PROBLEMS]

    @activity.defn(name="read_app_tier")
    async def read_app_tier(self, request: AppTierRequest) -> AppTierState:
        return await self._read_app_tier(request)

    @activity.defn(name="scale_app_tier")
    async def scale_app_tier(self, request: ScaleRequest) -> ScaleResult:
        """Sets MinSize and DesiredCapacity exactly (a scale-back restores what was there);
        MaxSize only ever grows, when it would be below them."""
        tier = request.tier
        state = await self._read_app_tier(tier)
        if not state.group_found:
            raise ApplicationError(
                f"Auto Scaling group {tier.auto_scaling_group} not found in {tier.region}",
                type="AutoScalingGroupNotFound",
                non_retryable=True,
            )
        if (state.desired_capacity, state.min_size) == (request.desired_capacity, request.min_size):
            return ScaleResult(
                changed=False, desired_capacity=request.desired_capacity, min_size=request.min_size
            )
        changes: dict[str, Any] = {
            "MinSize": request.min_size,
            "DesiredCapacity": request.desired_capacity,
        }
        needed = max(request.desired_capacity, request.min_size)
        if state.max_size < needed:
            changes["MaxSize"] = needed
        await self.aws.call_in(
            "autoscaling",
            tier.region,
            "UpdateAutoScalingGroup",
            AutoScalingGroupName=tier.auto_scaling_group,
            **changes,
        )
        return ScaleResult(
            changed=True, desired_capacity=request.desired_capacity, min_size=request.min_size
        )

    @activity.defn(name=names.WAIT_CAPACITY_ACTIVITY)
    async def wait_capacity(self, request: WaitCapacityRequest) -> WaitCapacityResult:
        """Until `capacity` instances are InService and healthy in the target group."""

        def ready(state: AppTierState) -> bool:
            return (
                state.in_service >= request.capacity and state.healthy_targets >= request.capacity
            )

        done, state, polls = await _poll(
            lambda: self._read_app_tier(request.tier),
            ready,
            request.timeout_seconds,
            request.poll_seconds,
        )
        return WaitCapacityResult(ready=done, state=state, polls=polls)

    # ---------------------------------------------------------------- the global database

    async def _read_database(self, global_cluster_id: str, region: str) -> DatabaseState:
        try:
            answer = await self.aws.call_in(
                "rds", region, "DescribeGlobalClusters", GlobalClusterIdentifier=global_cluster_id
            )
        except ApplicationError as err:
            if err.type in NOT_FOUND:
                raise _final(err, f"global cluster {global_cluster_id} not found") from err
            raise
        found = answer.get("GlobalClusters", [])
        if not found:
            raise ApplicationError(
                f"global cluster {global_cluster_id} not found (in {region})",
                type="GlobalClusterNotFoundFault",
                non_retryable=True,
            )
        state = _database_state(global_cluster_id, found[0])
        secondaries = [m for m in state.members if not m.is_writer]
        lags = await asyncio.gather(*(self._lag_seconds(m) for m in secondaries))
        for member, lag in zip(secondaries, lags, strict=True):
            member.lag_seconds = lag
        return state

    async def _lag_seconds(self, member: DatabaseMember) -> float | None:
        """The latest AuroraGlobalDBReplicationLag of a secondary, read in its own Region as
        AWS publishes it (milliseconds, by DBClusterIdentifier); None without a recent one."""
        now = datetime.now(UTC)
        query = {
            "Id": "lag",
            "MetricStat": {
                "Metric": {
                    "Namespace": LAG_NAMESPACE,
                    "MetricName": LAG_METRIC,
                    "Dimensions": [
                        {
                            "Name": "DBClusterIdentifier",
                            "Value": member.db_cluster_arn.split(":")[-1],
                        }
                    ],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        try:
            answer = await self.aws.call_in(
                "cloudwatch",
                member.region,
                "GetMetricData",
                MetricDataQueries=[query],
                StartTime=now - timedelta(seconds=LAG_WINDOW_SECONDS),
                EndTime=now + timedelta(minutes=1),
                ScanBy="TimestampDescending",
            )
        except ApplicationError as err:
            if err.non_retryable:
                raise
            # The secondary's Region may be the impaired one: an unknown lag, not a failed read.
            activity.logger.warning("no replication lag for %s: %s", member.db_cluster_arn, err)
            return None
        results = answer.get("MetricDataResults", [])
        values = results[0].get("Values", []) if results else []
        return values[0] / 1000 if values else None

    @activity.defn(name="read_database")
    async def read_database(self, request: DatabaseRequest) -> DatabaseState:
        return await self._read_database(request.global_cluster_id, request.region)

    @activity.defn(name="switch_database")
    async def switch_database(self, request: SwitchDatabaseRequest) -> SwitchDatabaseResult:
        """Moves the writer to `target_arn`: SwitchoverGlobalCluster (graceful, no data loss,
        needs the old writer's Region) or FailoverGlobalCluster with AllowDataLoss.

        A retry finds its own switch under way (or done) and calls nothing. AWS refusing the
        switch because of a cluster's state (InvalidGlobalClusterStateFault: another switch in
        progress, or a switchover whose writer is out of reach; InvalidDBClusterStateFault: the
        target cannot be promoted now) is raised non-retryable: the states a retry would wait
        out are already taken care of, and what is left needs a decision (fail over with data
        loss instead, or stop), which a retry loop would only delay while the shop is down.
        """
        gid, target = request.global_cluster_id, request.target_arn
        state = await self._read_database(gid, request.region)
        if state.member(target) is None:
            members = ", ".join(m.db_cluster_arn for m in state.members) or "none"
            raise ApplicationError(
                f"{target} is not a member of global cluster {gid} (members: {members})",
                type="DBClusterNotFoundFault",
                non_retryable=True,
            )
        if state.failover_status is not None:
            if state.failover_to == target:
                return SwitchDatabaseResult(already=True, state=state)
            raise ApplicationError(
                f"global cluster {gid} is already {state.failover_status} to "
                f"{state.failover_to}, not to {target}",
                type="InvalidGlobalClusterStateFault",
                non_retryable=True,
            )
        if state.writer == target:
            return SwitchDatabaseResult(already=True, state=state)
        switch = {"GlobalClusterIdentifier": gid, "TargetDbClusterIdentifier": target}
        graceful = request.mode == "graceful"
        operation = "SwitchoverGlobalCluster" if graceful else "FailoverGlobalCluster"
        try:
            if graceful:
                answer = await self.aws.call_in(
                    "rds", request.region, "SwitchoverGlobalCluster", **switch
                )
            else:
                answer = await self.aws.call_in(
                    "rds", request.region, "FailoverGlobalCluster", **switch, AllowDataLoss=True
                )
        except ApplicationError as err:
            if err.type in REFUSED_SWITCH_STATES or err.type in NOT_FOUND:
                raise _final(err, f"{operation} of {gid} to {target} refused") from err
            raise
        switched = _database_state(gid, answer["GlobalCluster"])
        for member in switched.members:  # the lag at the moment of the switch: data at risk
            before = state.member(member.db_cluster_arn)
            member.lag_seconds = before.lag_seconds if before is not None else None
        return SwitchDatabaseResult(already=False, state=switched)

    @activity.defn(name=names.WAIT_DATABASE_ACTIVITY)
    async def wait_database_writer(self, request: WaitDatabaseRequest) -> WaitDatabaseResult:
        """Until the target writes and no switch is in progress."""

        def done(state: DatabaseState) -> bool:
            return state.writer == request.target_arn and state.failover_status is None

        finished, state, polls = await _poll(
            lambda: self._read_database(request.global_cluster_id, request.region),
            done,
            request.timeout_seconds,
            request.poll_seconds,
        )
        return WaitDatabaseResult(done=finished, state=state, polls=polls)

    # ---------------------------------------------------------------- the global datastore

    async def _read_datastore(self, global_id: str, region: str) -> CacheDatastoreState:
        try:
            answer = await self.aws.call_in(
                "elasticache",
                region,
                "DescribeGlobalReplicationGroups",
                GlobalReplicationGroupId=global_id,
                ShowMemberInfo=True,
            )
        except ApplicationError as err:
            if err.type in NOT_FOUND:
                raise _final(err, f"global datastore {global_id} not found") from err
            raise
        found = answer.get("GlobalReplicationGroups", [])
        if not found:
            raise ApplicationError(
                f"global datastore {global_id} not found (in {region})",
                type="GlobalReplicationGroupNotFoundFault",
                non_retryable=True,
            )
        group = found[0]
        state = CacheDatastoreState(
            global_replication_group_id=global_id, status=group.get("Status")
        )
        for member in group.get("Members", []):
            region_name, group_id = member["ReplicationGroupRegion"], member["ReplicationGroupId"]
            state.members[region_name] = group_id
            if member.get("Role") == "PRIMARY":
                state.primary_region, state.primary_group = region_name, group_id
        return state

    @activity.defn(name="read_cache_datastore")
    async def read_cache_datastore(self, request: CacheDatastoreRequest) -> CacheDatastoreState:
        return await self._read_datastore(request.global_replication_group_id, request.region)

    @activity.defn(name="failover_cache_datastore")
    async def failover_cache_datastore(self, request: FailoverCacheRequest) -> CacheDatastoreState:
        """Makes `primary_group` in `primary_region` the primary; nothing when it already is.

        A datastore that is not available (creating, modifying: our own failover from before a
        crash, say) is a retryable error: once it settles, the retry finds the primary moved and
        calls nothing, or finds another change done and fails over then.
        """
        gid = request.global_replication_group_id
        state = await self._read_datastore(gid, request.region)
        if (state.primary_region, state.primary_group) == (
            request.primary_region,
            request.primary_group,
        ):
            return state
        if state.members.get(request.primary_region) != request.primary_group:
            members = ", ".join(f"{g} in {r}" for r, g in state.members.items()) or "none"
            raise ApplicationError(
                f"{request.primary_group} in {request.primary_region} is not a member of global "
                f"datastore {gid} (members: {members})",
                type="InvalidParameterValue",
                non_retryable=True,
            )
        if state.status != "available":
            raise ApplicationError(
                f"global datastore {gid} is {state.status}; a failover needs it available",
                type="InvalidGlobalReplicationGroupState",
            )
        answer = await self.aws.call_in(
            "elasticache",
            request.region,
            "FailoverGlobalReplicationGroup",
            GlobalReplicationGroupId=gid,
            PrimaryRegion=request.primary_region,
            PrimaryReplicationGroupId=request.primary_group,
        )
        state.status = answer.get("GlobalReplicationGroup", {}).get("Status", state.status)
        return state

    @activity.defn(name=names.WAIT_CACHE_DATASTORE_ACTIVITY)
    async def wait_cache_datastore(self, request: WaitCacheRequest) -> WaitCacheResult:
        """Until the primary is in `primary_region` and the datastore is available."""

        def done(state: CacheDatastoreState) -> bool:
            return state.primary_region == request.primary_region and state.status == "available"

        finished, state, polls = await _poll(
            lambda: self._read_datastore(request.global_replication_group_id, request.region),
            done,
            request.timeout_seconds,
            request.poll_seconds,
        )
        return WaitCacheResult(done=finished, state=state, polls=polls)


def _started(entry: dict[str, Any]) -> datetime:
    started = entry.get("StartTime")
    if not isinstance(started, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return started if started.tzinfo else started.replace(tzinfo=UTC)


def _database_state(global_cluster_id: str, cluster: dict[str, Any]) -> DatabaseState:
    failover = cluster.get("FailoverState") or {}
    return DatabaseState(
        global_cluster_id=global_cluster_id,
        status=cluster.get("Status"),
        members=[
            DatabaseMember(
                db_cluster_arn=m["DBClusterArn"],
                region=arn_region(m["DBClusterArn"]),
                is_writer=bool(m.get("IsWriter")),
                synchronization_status=m.get("SynchronizationStatus"),
            )
            for m in cluster.get("GlobalClusterMembers", [])
        ],
        failover_status=failover.get("Status"),
        failover_to=failover.get("ToDbClusterArn"),
    )


def _deadline(timeout_seconds: float) -> datetime:
    """From the first attempt's schedule: a retry after a worker crash keeps the clock."""
    return activity.info().scheduled_time + timedelta(seconds=timeout_seconds)


async def _poll(
    read: Callable[[], Awaitable[State]],
    done: Callable[[State], bool],
    timeout_seconds: float,
    poll_seconds: float,
) -> tuple[bool, State, int]:
    """Reads until `done` or the deadline: (done, the last state, polls), the state in every
    heartbeat (these activities beat on their own: see activities.heartbeat)."""
    deadline = _deadline(timeout_seconds)
    progress: dict[str, object] = {"polls": 0, "deadline": deadline.isoformat(), "state": None}
    polls = 0
    async with _beating(progress):
        while True:
            state = await read()
            polls += 1
            progress.update(polls=polls, state=state.model_dump(mode="json"))
            activity.heartbeat(dict(progress))
            if done(state):
                return True, state, polls
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                return False, state, polls
            await asyncio.sleep(min(poll_seconds, remaining))


@contextlib.asynccontextmanager
async def _beating(progress: dict[str, object]) -> AsyncIterator[None]:
    """Heartbeats the progress every half second, slow reads included."""

    async def beat() -> None:
        while True:
            activity.heartbeat(dict(progress))
            await asyncio.sleep(BEAT_EVERY_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
