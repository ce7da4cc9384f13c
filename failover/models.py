"""Inputs and outputs of the workflows and activities: one model in, one model out.

Everything here travels through Temporal history, so nothing here may hold a secret:
auth settings name environment variables, never their values.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from failover.config import ClusterConfig, ClusterSide

Side = Literal["primary", "standby"]
Trigger = Literal["manual", "alarm", "monitor", "drill"]


def other_side(side: Side) -> Side:
    return "standby" if side == "primary" else "primary"


class Outcome(StrEnum):
    FAILED_OVER = "failed_over"
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


# --- the failover workflow ------------------------------------------------------------------


class FailoverRequest(BaseModel):
    cluster: ClusterConfig
    reason: str = "manual trigger"
    trigger: Trigger = "manual"


class StepTiming(BaseModel):
    name: str
    started_at: datetime
    seconds: float
    outcome: Literal["ok", "failed", "refused"]
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
