"""Every name Temporal knows this project by, where the name has to stay a string, and
the one option every start of a workflow shares.

Clients (the CLI, the receiver, the activities that start runs) do not import the
workflows, so the workflow types, the workflow ids and the names of queries, updates and
signals live here; the workflows' own decorators use the same constants, so the two
cannot drift. Activities are called by reference from the workflows and need no names.
Search-attribute keys are in `failover.visibility`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Start-to-close timeout of one workflow task, for every workflow this project starts:
# failover, failback and plan runs, monitors and their continue-as-new, drills (by hand and
# by schedule) and a drill's switches (child workflows). A workflow task that a worker had
# taken when it died (SIGKILL, OOM, a lost host) goes to another worker only when this
# expires; Temporal's default of 10 s was most of a resume in about 1 run in 10. Our tasks
# do no I/O and take milliseconds: in bench/resume.py's histories on a busy 2-core machine,
# 600 tasks had p50 14 ms, p99 0.13 s, max 0.28 s (the first task of a run, which loads the
# workflow sandbox, included). 2 s leaves a wide margin: a shorter timeout would fail a slow
# worker's legitimate task, and the retried task would be no faster. (The SDK's deadlock
# detection already fails workflow code that runs 2 s without yielding.)
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)

FAILOVER_WORKFLOW = "FailoverWorkflow"
MONITOR_WORKFLOW = "MonitorWorkflow"
DRILL_WORKFLOW = "DrillWorkflow"
RESEED_WORKFLOW = "ReseedWorkflow"
REGION_SWITCH_WORKFLOW = "RegionSwitchWorkflow"
REGION_DRILL_WORKFLOW = "RegionDrillWorkflow"

# The activities that clients and the worker's interceptors must know by name (the
# monitor's watch and a re-seed's wait, read from their heartbeats; the ones that
# heartbeat on their own).
WATCH_CLUSTER_ACTIVITY = "watch_cluster"
STOREFRONT_PROBE_LOOP_ACTIVITY = "storefront_probe_loop"
# A re-seed's wait, whose heartbeats `failover reseed` shows as progress.
WAIT_FOLLOWERS_SYNCED_ACTIVITY = "wait_followers_synced"
# A Region switch's waits (capacity, the database writer, the cache datastore) heartbeat
# what they see on their own, so `failover region status` can show it while they wait.
WAIT_CAPACITY_ACTIVITY = "wait_capacity"
WAIT_DATABASE_ACTIVITY = "wait_database_writer"
WAIT_CACHE_DATASTORE_ACTIVITY = "wait_cache_datastore"

STATUS_QUERY = "status"
APPROVE_UPDATE = "approve"
ABORT_UPDATE = "abort"
PAUSE_UPDATE = "pause"
RESUME_UPDATE = "resume"
ACCEPT_STALE_UPDATE = "accept_stale"
FAILOVER_FINISHED_SIGNAL = "failover_finished"
ALARM_SIGNAL = "alarm"
CONFIGURE_SIGNAL = "configure"

FAILOVER_ID_PREFIX = "failover-"
MONITOR_ID_PREFIX = "monitor-"
DRILL_ID_PREFIX = "drill-"
PLAN_ID_PREFIX = "plan-"
RESEED_ID_PREFIX = "reseed-"
REGION_ID_PREFIX = "region-"
REGION_PLAN_ID_PREFIX = "region-plan-"


def region_switch_workflow_id(storefront: str) -> str:
    """One Region switch of a storefront at a time: the id is the lock."""
    return f"{REGION_ID_PREFIX}{storefront}"


def region_drill_workflow_id(storefront: str) -> str:
    return f"{REGION_ID_PREFIX}drill-{storefront}"


def region_plan_workflow_id(storefront: str) -> str:
    return f"{REGION_PLAN_ID_PREFIX}{storefront}"


def failover_workflow_id(cluster: str) -> str:
    """One failover (or failback) of a cluster at a time: the id is the lock."""
    return f"{FAILOVER_ID_PREFIX}{cluster}"


def cluster_of_failover(workflow_id: str) -> str:
    return workflow_id.removeprefix(FAILOVER_ID_PREFIX)


def monitor_workflow_id(cluster: str) -> str:
    return f"{MONITOR_ID_PREFIX}{cluster}"


def drill_workflow_id(cluster: str, at: datetime | None = None) -> str:
    stamp = (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{drill_workflow_prefix(cluster)}{stamp}"


def drill_workflow_prefix(cluster: str) -> str:
    """What every drill run of the cluster's id starts with, by hand or by schedule."""
    return f"{DRILL_ID_PREFIX}{cluster}-"


def drill_schedule_id(cluster: str) -> str:
    return f"{DRILL_ID_PREFIX}{cluster}"


def plan_workflow_id(cluster: str, token: str) -> str:
    """A dry run: its own id, so it never waits for (or blocks) a real failover."""
    return f"{PLAN_ID_PREFIX}{cluster}-{token}"


def reseed_workflow_id(cluster: str) -> str:
    """One re-seed of a cluster at a time."""
    return f"{RESEED_ID_PREFIX}{cluster}"
