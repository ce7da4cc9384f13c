"""Client-side operations of a storefront's Region switch: start, plan, drill, status."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from failover import names, visibility
from failover.config import AppConfig
from failover.models import (
    DatabaseMode,
    RegionDrillRequest,
    RegionRole,
    RegionSwitchRequest,
    RegionSwitchResult,
    RegionSwitchStatus,
    Trigger,
)
from failover.names import REGION_DRILL_WORKFLOW, REGION_SWITCH_WORKFLOW, WORKFLOW_TASK_TIMEOUT


def region_switch_request(
    config: AppConfig,
    storefront: str,
    *,
    reason: str,
    trigger: Trigger = "manual",
    planned: bool = False,
    mode: DatabaseMode | None = None,
    dry_run: bool = False,
    to_region: RegionRole | None = None,
) -> RegionSwitchRequest:
    """The switch's input from config: the storefront and its search cluster, by name."""
    site = config.storefront(storefront)
    search = config.cluster(site.search_cluster) if site.search_cluster else None
    return RegionSwitchRequest(
        storefront=site,
        search=search,
        reason=reason,
        trigger=trigger,
        planned=planned,
        mode=mode,
        dry_run=dry_run,
        to_region=to_region,
    )


async def start_region_switch(
    client: Client, request: RegionSwitchRequest, *, task_queue: str
) -> WorkflowHandle[Any, RegionSwitchResult]:
    """`region-<storefront>`: one at a time; a running one makes this fail at once (a dry
    run has an id of its own and runs beside anything)."""
    name = request.storefront.name
    workflow_id = (
        f"{names.region_plan_workflow_id(name)}-{uuid.uuid4().hex[:8]}"
        if request.dry_run
        else names.region_switch_workflow_id(name)
    )
    kind = "plan (dry run)" if request.dry_run else ("planned" if request.planned else "outage")
    summary = f"{name}: Region switch, {kind}"
    return await visibility.start_with_fallback(
        lambda attributes: client.start_workflow(
            REGION_SWITCH_WORKFLOW,
            request,
            id=workflow_id,
            task_queue=task_queue,
            result_type=RegionSwitchResult,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=summary,
            static_details=f"reason: {request.reason}",
            search_attributes=attributes,
        ),
        visibility.attributes(name, trigger=request.trigger, summary=summary),
    )


async def start_region_drill(
    client: Client, request: RegionDrillRequest, *, task_queue: str
) -> WorkflowHandle[Any, Any]:
    name = request.storefront.name
    return await client.start_workflow(
        REGION_DRILL_WORKFLOW,
        request,
        id=names.region_drill_workflow_id(name),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        static_summary=f"{name}: Region drill",
    )


async def region_status(client: Client, storefront: str) -> RegionSwitchStatus:
    handle = client.get_workflow_handle(names.region_switch_workflow_id(storefront))
    return await handle.query(names.STATUS_QUERY, result_type=RegionSwitchStatus)
