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
Trigger = Literal["manual", "alarm", "monitor", "drill", "failback"]


def other_side(side: Side) -> Side:
    return "standby" if side == "primary" else "primary"


class Outcome(StrEnum):
    FAILED_OVER = "failed_over"
    FAILED_OVER_WITH_WARNINGS = "failed_over_with_warnings"
    NOT_CONFIRMED = "not_confirmed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    PLANNED = "planned"  # a dry run: the plan, nothing changed


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
    # The same judgement as the probes of the side's nodes (runs recorded before it: degraded).
    yellow_policy: Literal["degraded", "failing"] = "degraded"


class SwitchEndpoint(BaseModel):
    """A name (resolved through the request's nameserver) or an address, and its port."""

    name: str
    port: int


class SwitchTargetRequest(BaseModel):
    """What the switch will point traffic at, to probe before it does: the record's value
    (a name resolved through `nameserver`, or an address) or the NLB's target addresses."""

    endpoints: list[SwitchEndpoint] = Field(min_length=1)
    scheme: str = "http"
    # The Host header Magento's requests will carry after the switch.
    host_header: str | None = None
    nameserver: str | None = None
    side: ClusterSide
    timeout_seconds: float


class ResolvedProbe(BaseModel):
    """One name the switch points at: the addresses it resolved to and what answered there."""

    name: str
    addresses: list[str] = Field(default_factory=list)
    error: str | None = None
    nodes: list[NodeProbe] = Field(default_factory=list)


class SwitchTargetProbe(BaseModel):
    targets: list[ResolvedProbe]


class StorefrontRequest(BaseModel):
    check: StorefrontCheck


class CheckResult(BaseModel):
    """What a verification check saw; `problem` is None when it passed."""

    name: str
    problem: str | None
    detail: str = ""


# --- the failover workflow ------------------------------------------------------------------


class MonitorConfirmation(BaseModel):
    """What the monitor saw before it started a failover: the run re-checks it once."""

    vantages_down: list[str]
    vantage_count: int
    quorum: int
    reason: str


class FailoverRequest(BaseModel):
    cluster: ClusterConfig
    reason: str = "manual trigger"
    trigger: Trigger = "manual"
    confirmation: MonitorConfirmation | None = None
    # A planned switch (failback, drill) names its target; it refuses if that side is
    # already active, instead of moving traffic the other way.
    to_side: Side | None = None
    # Only failbacks and drills may skip confirming that the active side is down.
    skip_confirmation: bool = False
    # Compute and return the plan; change nothing.
    dry_run: bool = False
    # For a dry run of a later step (a drill's failback): plan as if this side were active.
    assume_active: Side | None = None


class RecordChange(BaseModel):
    name: str
    type: str
    from_value: str
    to_value: str
    ttl: int


class FailoverPlan(BaseModel):
    """What a failover would do, read from AWS now: for `failover plan` and dry runs."""

    cluster: str
    from_side: Side
    to_side: Side
    confirmation: str
    record: RecordChange | None = None
    register_targets: list[str] = Field(default_factory=list)
    deregister_targets: list[str] = Field(default_factory=list)
    caches: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{self.cluster}: {self.from_side} → {self.to_side}",
            f"confirm: {self.confirmation}",
        ]
        if self.record is not None:
            r = self.record
            out.append(
                f"switch: UPSERT {r.name} {r.type} {r.from_value} → {r.to_value} (TTL {r.ttl})"
            )
        if self.register_targets or self.deregister_targets:
            out.append(f"switch: register {', '.join(self.register_targets) or '-'}")
            out.append(f"switch: deregister {', '.join(self.deregister_targets) or '-'}")
        out += [f"flush: {c}" for c in self.caches]
        out += [f"check: {c}" for c in self.checks]
        return out


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
    paused_by: str | None = None
    approved_by: str | None = None


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
    plan: FailoverPlan | None = None
    approved_by: str | None = None
    notifications_failed: int = 0

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


# --- the monitor ----------------------------------------------------------------------------

WatchState = Literal["healthy", "degraded", "suspect", "down", "misconfigured"]
SideHealth = Literal["healthy", "degraded", "failing", "misconfigured"]


class SideWatch(BaseModel):
    """One vantage point's view of one side, and the failing streak behind it."""

    state: WatchState = "healthy"
    reason: str | None = None
    failing_at: list[float] = Field(
        default_factory=list, description="epoch seconds of the last failing rounds (≤ threshold)"
    )
    failing_rounds: int = 0
    changed_at: float | None = None
    failing_since: float | None = Field(
        default=None,
        description="epoch seconds of the first failing round of the current streak (the "
        "vantage point's clock); None when not failing, or from a watch older than the field",
    )


class ClusterWatch(BaseModel):
    """What one vantage point sees of both sides; sent to the monitor only when it changes."""

    vantage: str
    primary: SideWatch = Field(default_factory=SideWatch)
    standby: SideWatch = Field(default_factory=SideWatch)
    rounds: int = 0
    observed_at: float | None = None
    # Set by the monitor when the report arrives (its own clock): with observed_at, it puts
    # the vantage point's round times on the monitor's clock, whatever the skew between them.
    received_at: datetime | None = None

    def side(self, side: Side) -> SideWatch:
        return self.primary if side == "primary" else self.standby

    def states(self) -> tuple[WatchState, WatchState]:
        """What changes here is what the watch reports: (primary, standby)."""
        return (self.primary.state, self.standby.state)


class WatchInput(BaseModel):
    cluster: ClusterConfig
    vantage: str
    last: ClusterWatch | None = None
    max_seconds: float


class WatchProgress(BaseModel):
    """Heartbeat details of a running watch: proof of life for operators and tests."""

    rounds: int
    last_round_at: float
    primary: WatchState
    standby: WatchState
    max_lateness_ms: float
    view: ClusterWatch | None = None


class MonitorDecision(BaseModel):
    action: Literal["none", "alert", "failover"]
    reason: str


class MonitorEvent(BaseModel):
    at: datetime
    kind: str
    reason: str


class FailoverRecord(BaseModel):
    workflow_id: str
    run_id: str
    started_at: datetime
    reason: str
    result: Outcome | None = None
    result_reason: str | None = None
    finished_at: datetime | None = None
    from_side: Side | None = None
    to_side: Side | None = None


AlarmSource = Literal["sns", "eventbridge", "alertmanager", "lambda"]
AlarmState = Literal["firing", "resolved"]


class AlarmNotice(BaseModel):
    """A verified alarm about one cluster, as the receiver hands it on: names, no secrets."""

    source: AlarmSource
    name: str
    state: AlarmState
    detail: str = ""
    event_id: str = ""

    def describe(self) -> str:
        text = f"{self.source} alarm {self.name!r} {self.state}"
        return f"{text}: {self.detail}" if self.detail else text


class MonitorState(BaseModel):
    """Everything a monitor carries across continue-as-new."""

    cluster: str
    active: Side | None = None
    active_problem: str | None = None
    active_read_at: datetime | None = None
    views: dict[str, ClusterWatch] = Field(default_factory=dict)
    unreachable_vantages: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    paused_reason: str | None = None
    paused_by: str | None = None
    cooldown_until: datetime | None = None
    hold_until: datetime | None = None
    # The hold-off after attempts that changed nothing (decisions.hold_off): when the last
    # one ended (None: hold every piece of evidence, as before this field) and how many
    # came in a row (the back-off).
    refused_at: datetime | None = None
    refusals: int = 0
    last_decision: MonitorDecision | None = None
    failovers: list[FailoverRecord] = Field(default_factory=list)
    events: list[MonitorEvent] = Field(default_factory=list)
    generation: int = 1
    # Alarms seen (firing and resolved), and the last one: a storm is one event, not a flood.
    alarms_received: int = 0
    last_alarm: AlarmNotice | None = None


class MonitorInput(BaseModel):
    cluster: ClusterConfig
    task_queue: str
    state: MonitorState | None = None
    max_history_events: int = Field(default=10_000, ge=20)


class MonitorStatus(BaseModel):
    phase: Literal["starting", "watching", "failing_over"]
    vantages: list[str]
    quorum: int
    history_length: int
    state: MonitorState


class OperatorRequest(BaseModel):
    """Who asks, and why: the argument of every operator update (pause, resume, approve,
    abort), kept in the workflow's history and its result."""

    reason: str = ""
    identity: str = ""

    @property
    def who(self) -> str:
        return self.identity or "unknown"

    def who_and_why(self) -> str:
        return f"{self.who}: {self.reason or '-'}"

    def by(self) -> str:
        """`by <identity>: <reason>`, as results, events and refusals say it."""
        return f"by {self.who_and_why()}"


PauseRequest = ApproveRequest = AbortRequest = OperatorRequest


class StartFailoverInput(BaseModel):
    request: FailoverRequest
    task_queue: str


class FailoverStarted(BaseModel):
    workflow_id: str
    run_id: str


# --- drills ----------------------------------------------------------------------------------

DrillVerdict = Literal["pass", "fail", "skipped", "aborted"]


class ReportFiles(BaseModel):
    markdown: str
    html: str


class DrillRequest(BaseModel):
    cluster: ClusterConfig
    reason: str = "drill"
    dry_run: bool = False
    hold_seconds: float | None = Field(default=None, ge=0)


class GuardrailRequest(BaseModel):
    cluster: str
    own_workflow_id: str


class GuardrailFacts(BaseModel):
    """What the guardrails need from Temporal: runs in progress, the monitor's pause."""

    running: list[str] = Field(default_factory=list)
    monitor_paused: bool = False
    monitor_paused_reason: str | None = None


class StorefrontLoopInput(BaseModel):
    check: StorefrontCheck
    interval_seconds: float


class StorefrontTally(BaseModel):
    """Storefront requests made by the drill's probe loop, and when they failed."""

    total: int = 0
    failed: int = 0
    first_failure_at: datetime | None = None
    last_failure_at: datetime | None = None
    problems: list[str] = Field(default_factory=list)
    lost: bool = False


class DrillReport(BaseModel):
    cluster: str
    workflow_id: str
    verdict: DrillVerdict
    reason: str
    started_at: datetime
    finished_at: datetime
    rto_seconds: float | None
    rto_target_seconds: float
    storefront_recovery_seconds: float | None = None
    storefront_failed_requests: int = 0
    storefront_total_requests: int = 0
    storefront_problems: list[str] = Field(default_factory=list)
    confirmation_skipped: bool = False
    phases: list[StepTiming] = Field(default_factory=list)
    failover: FailoverResult | None = None
    failback: FailoverResult | None = None
    plans: list[FailoverResult] = Field(default_factory=list)
    dry_run: bool = False
    files: ReportFiles | None = None


class WriteReportInput(BaseModel):
    report: DrillReport
    directory: str | None = None


# --- notifications ---------------------------------------------------------------------------


class Notification(BaseModel):
    """One message to the cluster's channels: names and text only, never a secret."""

    cluster: str
    event: str
    text: str
    sns_topic_arn: str | None = None
    webhook_url_env: str | None = None


class NotificationSent(BaseModel):
    channels: list[str] = Field(default_factory=list)
