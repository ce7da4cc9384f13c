"""Decisions of a Region switch: which Region serves, is it down, is the DR Region fit.

Each returns a reason when something is wrong (None when all is well), starting with one
of the stable words below, as the rest of failover.decisions does.
"""

from __future__ import annotations

from collections.abc import Sequence

from failover.config import StorefrontConfig
from failover.decisions.plan import ALREADY_ACTIVE
from failover.decisions.switch import active_side
from failover.models import (
    AppTierState,
    CacheDatastoreState,
    DatabaseMode,
    DatabaseState,
    FailoverResult,
    Outcome,
    RegionRole,
    WaitCapacityResult,
)

WWW_UNKNOWN = "www unknown"
ALREADY_SERVING = "already serving"
REGION_NOT_DOWN = "region not down"
ALB_NOT_ACTIVE = "alb not active"
ASG_MISSING = "asg missing"
CAPACITY_NOT_REACHED = "capacity not reached"
DATABASE_NOT_MEMBER = "database not a member"
DATABASE_BUSY = "database busy"
DATABASE_LAG = "database lag"
DATABASE_LAG_UNKNOWN = "database lag unknown"
CACHE_NOT_READY = "cache not ready"
SEARCH_NOT_READY = "search not ready"
NEEDS_APPROVAL = "needs approval"

# Where a Region's name comes from in the www record: Route53Switch's two values.
_ROLE_OF_SIDE: dict[str, RegionRole] = {"primary": "primary", "standby": "dr"}


def serving_region(
    values: Sequence[str], storefront: StorefrontConfig
) -> tuple[RegionRole | None, str | None]:
    """Which Region `www` sends customers to now, or why that cannot be told."""
    side, unknown = active_side(values, storefront.www)
    if side is None:
        return None, f"{WWW_UNKNOWN}: {unknown}"
    return _ROLE_OF_SIDE[side], None


def www_side(role: RegionRole) -> str:
    """The www record's side for a Region (Route53Switch calls the DR value `standby`)."""
    return "primary" if role == "primary" else "standby"


def writer_region(state: DatabaseState, storefront: StorefrontConfig) -> RegionRole | None:
    writer = state.writer
    for role in ("primary", "dr"):
        if writer is not None and writer == storefront.site(role).database_cluster_arn:
            return role  # type: ignore[return-value]
    return None


def planned_region_refusal(serving: RegionRole, to_region: RegionRole | None) -> str | None:
    if to_region is not None and serving == to_region:
        return f"{ALREADY_SERVING}: the {to_region} Region already serves www; nothing to do"
    return None


def region_down_refusal(
    rounds: Sequence[Sequence[str | None]], *, rounds_needed: int, quorum: int
) -> str | None:
    """None when each of the last `rounds_needed` rounds had `quorum` vantage points seeing
    the Region's storefront fail. Each round lists every vantage point's problem (None:
    healthy from there)."""
    if len(rounds) < rounds_needed:
        return f"{REGION_NOT_DOWN}: {len(rounds)} of {rounds_needed} round(s) probed"
    for number, seen in enumerate(rounds[-rounds_needed:], start=1):
        failing = [p for p in seen if p is not None]
        if len(failing) < quorum:
            healthy = len(seen) - len(failing)
            return (
                f"{REGION_NOT_DOWN}: round {number} of {rounds_needed}: {len(failing)} of "
                f"{len(seen)} vantage point(s) saw it fail, {quorum} needed ({healthy} healthy)"
            )
    return None


def region_down_reason(rounds: Sequence[Sequence[str | None]], rounds_needed: int) -> str:
    """What confirmed the outage, for the result and the notification."""
    last = [p for p in rounds[-1] if p is not None]
    return (
        f"down: {rounds_needed} round(s) in a row from {len(last)} of {len(rounds[-1])} "
        f"vantage point(s): {last[0] if last else '-'}"
    )


def app_tier_refusal(state: AppTierState, *, capacity: int) -> str | None:
    """The DR Region's ALB and Auto Scaling group must exist and work; the capacity is
    reached by scaling, so a small pilot light is fine."""
    if state.load_balancer_state is None:
        return f"{ALB_NOT_ACTIVE}: the {state.region} ALB was not found"
    if state.load_balancer_state != "active":
        return f"{ALB_NOT_ACTIVE}: the {state.region} ALB is {state.load_balancer_state}"
    if not state.group_found:
        return f"{ASG_MISSING}: the {state.region} app Auto Scaling group was not found"
    if capacity < 1:
        return f"{CAPACITY_NOT_REACHED}: capacity {capacity} is not a usable size"
    return None


def capacity_problem(result: WaitCapacityResult, *, capacity: int, timeout_s: float) -> str | None:
    if result.ready:
        return None
    state = result.state
    why = f"; {'; '.join(state.scaling_problems)}" if state.scaling_problems else ""
    return (
        f"{CAPACITY_NOT_REACHED}: the {state.region} app tier had {state.in_service} InService "
        f"and {state.healthy_targets} healthy target(s) of {capacity} after {timeout_s:g}s{why}"
    )


def database_refusal(
    state: DatabaseState, *, target_arn: str, max_lag_seconds: float, mode: DatabaseMode
) -> str | None:
    """The DR member must be in the global database, not mid-switch, and close behind.

    A lag that was never published cannot be shown to be small: refused, as an unknown
    lag could be hours. The limit holds in both modes: a switchover waits for the lag to
    drain, a failover loses it.
    """
    member = state.member(target_arn)
    if member is None:
        return (
            f"{DATABASE_NOT_MEMBER}: {target_arn} is not a member of global database "
            f"{state.global_cluster_id}"
        )
    if member.is_writer:
        return None
    if state.failover_status is not None and state.failover_to != target_arn:
        return (
            f"{DATABASE_BUSY}: global database {state.global_cluster_id} is "
            f"{state.failover_status} to {state.failover_to}"
        )
    if member.lag_seconds is None:
        return (
            f"{DATABASE_LAG_UNKNOWN}: no AuroraGlobalDBReplicationLag published for "
            f"{target_arn}; cannot show the {mode} switch loses nothing or little"
        )
    if member.lag_seconds > max_lag_seconds:
        return (
            f"{DATABASE_LAG}: {target_arn} is {member.lag_seconds:g}s behind its writer, more "
            f"than max_lag_seconds {max_lag_seconds:g}"
        )
    return None


def cache_refusal(state: CacheDatastoreState, *, region: str, group: str) -> str | None:
    if state.members.get(region) != group:
        return (
            f"{CACHE_NOT_READY}: {group} in {region} is not a member of global datastore "
            f"{state.global_replication_group_id}"
        )
    if state.primary_region != region and state.status != "available":
        return (
            f"{CACHE_NOT_READY}: global datastore {state.global_replication_group_id} is "
            f"{state.status}"
        )
    return None


def search_refusal(plan: FailoverResult) -> str | None:
    """The search cluster's dry run toward the DR side: ready, already there, or refused."""
    if plan.result == Outcome.PLANNED:
        refusal = plan.plan.data_refusal if plan.plan is not None else None
        return f"{SEARCH_NOT_READY}: {refusal}" if refusal else None
    if plan.result == Outcome.ABORTED and ALREADY_ACTIVE in plan.reason:
        return None
    return f"{SEARCH_NOT_READY}: {plan.reason}"


def approval_reason(
    *, mode: DatabaseMode, planned: bool, allow_data_loss: bool, require_approval: bool
) -> str | None:
    """Why the run must wait for an operator before it changes anything (None: go on)."""
    if mode == "ungraceful" and not allow_data_loss:
        return (
            f"{NEEDS_APPROVAL}: an ungraceful database failover may lose the writes not yet "
            "replicated (database.allow_data_loss is off)"
        )
    if require_approval and not planned:
        return f"{NEEDS_APPROVAL}: the storefront requires approval for unplanned switches"
    return None


def database_mode(requested: DatabaseMode | None, *, planned: bool) -> DatabaseMode:
    """A planned switch keeps every write (switchover); an outage's switch cannot reach the
    old writer, so it fails over."""
    if requested is not None:
        return requested
    return "graceful" if planned else "ungraceful"


def data_loss_window(state: DatabaseState, target_arn: str, mode: DatabaseMode) -> float | None:
    """Writes the new writer may never get: the lag when an ungraceful failover starts."""
    if mode == "graceful":
        return 0.0
    member = state.member(target_arn)
    if member is None or member.is_writer:
        return 0.0
    return member.lag_seconds


# AWS error codes of a switch call that was refused before it started: nothing moved, so
# the run may still roll back. Any other failure (a timeout, a 5xx after the retries) may
# have started the switch, and the run must not pretend it did not.
SWITCH_REFUSALS = frozenset(
    {
        "InvalidGlobalClusterStateFault",
        "InvalidDBClusterStateFault",
        "GlobalClusterNotFoundFault",
        "DBClusterNotFoundFault",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "AccessDenied",
        "AccessDeniedException",
        "ValidationError",
    }
)


def switch_refused(error_code: str | None) -> bool:
    return error_code in SWITCH_REFUSALS
