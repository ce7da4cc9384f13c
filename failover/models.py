"""Inputs and outputs of the workflows and activities: one model in, one model out.

Everything here travels through Temporal history, so nothing here may hold a secret:
auth settings name environment variables, never their values.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from failover.config import (
    ClusterConfig,
    ClusterSide,
    RedisCache,
    SearchPathCheck,
    SsmCache,
    StorefrontCheck,
    Target,
    VarnishCache,
)

Side = Literal["primary", "standby"]
Trigger = Literal["manual", "alarm", "monitor", "drill"]


def other_side(side: Side) -> Side:
    return "standby" if side == "primary" else "primary"


class Outcome(StrEnum):
    FAILED_OVER = "failed_over"
    FAILED_OVER_WITH_WARNINGS = "failed_over_with_warnings"
    NOT_CONFIRMED = "not_confirmed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


# --- search probes -----------------------------------------------------------------------


class ProbeSideInput(BaseModel):
    cluster: str
    side: Side
    settings: ClusterSide
    timeout_seconds: float


class NodeProbe(BaseModel):
    """What one node said (or failed to say) when asked `GET /` and `GET /_cluster/health`."""

    url: str
    error: str | None = None
    http_status: int | None = None
    cluster_name: str | None = None
    cluster_uuid: str | None = None
    health_status: str | None = None
    timed_out: bool | None = None
    number_of_nodes: int | None = None
    error_type: str | None = None
    latency_ms: float = 0.0


class SideProbe(BaseModel):
    cluster: str
    side: Side
    nodes: list[NodeProbe]


# --- Route 53 ------------------------------------------------------------------------------


class RecordRef(BaseModel):
    zone_id: str
    record_name: str
    record_type: Literal["CNAME", "A"]


class RecordSnapshot(BaseModel):
    """The record as Route 53 holds it: what a rollback restores."""

    ref: RecordRef
    exists: bool
    values: list[str] = Field(default_factory=list)
    ttl: int | None = None


class UpsertRecordInput(BaseModel):
    ref: RecordRef
    value: str
    ttl: int


class ChangeRef(BaseModel):
    """The Route 53 change to wait for; `change_id` is None when nothing had to change."""

    change_id: str | None
    already_set: bool


class WaitChangeInput(BaseModel):
    change_id: str
    poll_seconds: float


class WaitChangeResult(BaseModel):
    change_id: str
    status: str
    polls: int


# --- NLB target groups ----------------------------------------------------------------------


class TargetState(BaseModel):
    id: str
    port: int
    state: str
    reason: str | None = None


class TargetGroupSnapshot(BaseModel):
    """The registered targets: what a rollback restores, and which side is active."""

    target_group_arn: str
    targets: list[TargetState]
    deregistration_delay_seconds: int


class TargetsChange(BaseModel):
    target_group_arn: str
    targets: list[Target]


class WaitTargetsInput(BaseModel):
    target_group_arn: str
    targets: list[Target]
    want: Literal["healthy", "gone"]
    timeout_seconds: float
    poll_seconds: float


class WaitTargetsResult(BaseModel):
    reached: bool
    polls: int
    states: list[TargetState]


# --- caches and verification --------------------------------------------------------------


class FlushRequest(BaseModel):
    cluster: str
    cache: RedisCache | VarnishCache | SsmCache = Field(discriminator="type")


class FlushResult(BaseModel):
    name: str
    type: str
    detail: str


class SearchPathRequest(BaseModel):
    """Probe search through the switched path, with the auth of the side it should reach."""

    check: SearchPathCheck
    side: ClusterSide


class StorefrontRequest(BaseModel):
    check: StorefrontCheck


class CheckResult(BaseModel):
    """What a verification check saw; `problem` is None when it passed."""

    name: str
    problem: str | None
    detail: str = ""


# --- the failover workflow ------------------------------------------------------------------


class FailoverRequest(BaseModel):
    cluster: ClusterConfig
    reason: str = "manual trigger"
    trigger: Trigger = "manual"


class StepTiming(BaseModel):
    name: str
    started_at: datetime
    seconds: float
    outcome: Literal["ok", "failed", "refused", "warning"]
    detail: str | None = None


class FailoverStatus(BaseModel):
    cluster: str
    phase: str
    from_side: Side | None = None
    to_side: Side | None = None
    reason: str
    steps: list[StepTiming] = Field(default_factory=list)


class FailoverResult(BaseModel):
    result: Outcome
    flushed: list[FlushResult] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    cluster: str
    from_side: Side | None
    to_side: Side | None
    from_value: str | None
    to_value: str | None
    reason: str
    trigger: Trigger
    started_at: datetime
    finished_at: datetime
    steps: list[StepTiming]

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()
