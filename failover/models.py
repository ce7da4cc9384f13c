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
    MagentoIndices,
    RedisCache,
    SearchPathCheck,
    SecretRef,
    SsmCache,
    StorefrontCheck,
    StorefrontConfig,
    Target,
    VarnishCache,
)

Side = Literal["primary", "standby"]
# "region": a Region switch moving its search cluster (the switch confirmed the outage).
Trigger = Literal["manual", "alarm", "monitor", "drill", "failback", "region"]


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
    # A Region switch whose check failed after the database writer moved: no automatic way
    # back, a person decides (the reason says what).
    FAILED_AFTER_DATABASE_SWITCH = "failed_after_database_switch"


# --- search probes -----------------------------------------------------------------------


class ProbeSideInput(BaseModel):
    cluster: str
    side: Side
    settings: ClusterSide
    timeout_seconds: float
    # Scoped to the storefront's indices when the cluster names them (MagentoIndices).
    health_path: str = "/_cluster/health"


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
    # The indices a scoped _cluster/health asked about (None: the whole cluster).
    health_scope: str | None = None


class SideProbe(BaseModel):
    cluster: str
    side: Side
    nodes: list[NodeProbe]


# --- the storefront's indices and replication ------------------------------------------------

FollowStatus = Literal["syncing", "bootstrapping", "paused", "failed", "not_following"]
ReplicationKind = Literal["opensearch", "elasticsearch", "none"]


class AliasState(BaseModel):
    """One alias the storefront searches, as one side holds it: what it points at (empty
    when the alias is missing) and how many documents are behind it."""

    alias: str
    indices: list[str] = Field(default_factory=list)
    documents: int | None = None


class FollowerState(BaseModel):
    """Replication of one index as the follower reports it (the OpenSearch plugin's
    `_status`, or Elasticsearch's `_ccr/info` and `_ccr/stats`)."""

    index: str
    status: FollowStatus
    connection: str | None = None
    leader_index: str | None = None
    leader_checkpoint: int | None = None
    follower_checkpoint: int | None = None
    since_last_read_ms: int | None = None
    reason: str | None = None
    # Kept by the monitor (epoch seconds): the last reading, taken while the leader was
    # healthy, at which this follower had caught up (or was catching up), and, once it is
    # beyond replication's limits, since when (None: within them, as of the last reading).
    fresh_at: float | None = None
    stale_since: float | None = None

    @property
    def lag_operations(self) -> int | None:
        if self.leader_checkpoint is None or self.follower_checkpoint is None:
            return None
        return max(0, self.leader_checkpoint - self.follower_checkpoint)


class DataSnapshot(BaseModel):
    """One side's storefront indices at one moment: aliases, counts, replication."""

    side: Side
    read_at: float
    node: str | None = None
    error: str | None = None
    aliases: list[AliasState] = Field(default_factory=list)
    followers: list[FollowerState] = Field(default_factory=list)
    cluster_status: str | None = None

    def alias(self, name: str) -> AliasState | None:
        return next((a for a in self.aliases if a.alias == name), None)

    def follower(self, index: str) -> FollowerState | None:
        return next((f for f in self.followers if f.index == index), None)


class DataRecord(BaseModel):
    """The last good reading of each side, kept by the monitor while both lived: what the
    standby must match when the primary can no longer be asked."""

    primary: DataSnapshot | None = None
    standby: DataSnapshot | None = None

    def side(self, side: Side) -> DataSnapshot | None:
        return self.primary if side == "primary" else self.standby


class SideIndicesInput(BaseModel):
    """One side's storefront indices: to read them, or to promote its followers (stop
    replication on them so Magento's indexer can write)."""

    cluster: str
    side: Side
    settings: ClusterSide
    magento: MagentoIndices
    kind: ReplicationKind
    timeout_seconds: float


class PromoteResult(BaseModel):
    promoted: list[str] = Field(default_factory=list)
    already: list[str] = Field(default_factory=list)
    write_problem: str | None = None


class FollowInput(BaseModel):
    """Make `follower_side`'s storefront indices follow the leader's, over `connection`."""

    cluster: str
    follower_side: Side
    follower: ClusterSide
    leader: DataSnapshot
    connection: str
    magento: MagentoIndices
    kind: ReplicationKind
    timeout_seconds: float
    poll_seconds: float = 5.0
    sync_timeout_seconds: float = 3600.0
    # Synced: every index syncing with at most this many operations still to apply.
    max_lag_operations: int = 0


class FollowResult(BaseModel):
    started: list[str] = Field(default_factory=list)
    already: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)


class SyncResult(BaseModel):
    synced: bool
    polls: int
    followers: list[FollowerState] = Field(default_factory=list)
    problem: str | None = None


class WriteCheckInput(BaseModel):
    """A write through the name Magento uses (the switched path) into each alias."""

    url: str
    nameserver: str | None = None
    side: ClusterSide
    aliases: list[str]
    timeout_seconds: float


class ReseedRequest(BaseModel):
    cluster: ClusterConfig
    reason: str = "reseed"
    identity: str = ""


class ReseedResult(BaseModel):
    """What a re-seed did: who follows whom now, and whether it caught up."""

    cluster: str
    result: Literal["reseeded", "refused", "failed", "running"] = "running"
    reason: str = ""
    leader: Side | None = None
    follower: Side | None = None
    follow: FollowResult | None = None
    sync: SyncResult | None = None
    steps: list[StepTiming] = Field(default_factory=list)


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
    # An SSM flush runs in this Region (a Region switch's app servers); None: the configured one.
    region: str | None = None


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
    # An operator accepts the standby's data refusals (stale, lagging, too few documents)
    # for this run only; kept in the result.
    accept_stale: OperatorRequest | None = None


def _rounded(seconds: float) -> str:
    """Seconds to one decimal, without a trailing .0: 340, 2.5."""
    return f"{seconds:.1f}".removesuffix(".0")


class RtoTerm(BaseModel):
    """One part of a predicted recovery time, and where its figure comes from."""

    name: str
    seconds: float
    note: str
    # Inside a drill's measured RTO (its switch started → verified): not detection.
    in_drill: bool = True


class RtoPrediction(BaseModel):
    """A failover's recovery time on the real system (fault → verified switch), predicted
    from config and what AWS said of the switch: term by term, the largest named with what
    would shorten it. `failover.decisions.rto.predict_rto` makes it."""

    terms: list[RtoTerm]
    total_seconds: float
    largest: str
    advice: str
    # An outage in which every node refuses: fast confirmation's detection, and the total.
    fast_detection_seconds: float | None = None
    fast_total_seconds: float | None = None
    caveats: list[str] = Field(default_factory=list)  # what the total leaves out or risks

    @property
    def drill_seconds(self) -> float:
        """The part a drill measures: from its switch, no detection."""
        return sum(t.seconds for t in self.terms if t.in_drill)

    def term(self, name: str) -> RtoTerm | None:
        return next((t for t in self.terms if t.name == name), None)

    def headline(self) -> str:
        largest = self.term(self.largest)
        seconds = largest.seconds if largest is not None else 0.0
        share = round(100 * seconds / self.total_seconds) if self.total_seconds > 0 else 0
        return (
            f"predicted RTO {_rounded(self.total_seconds)} s; {self.largest} "
            f"{_rounded(seconds)} s is {share}% of it: {self.advice}"
        )

    def lines(self) -> list[str]:
        out = [self.headline()]
        out += [f"  {t.name} {_rounded(t.seconds)} s: {t.note}" for t in self.terms]
        if self.fast_detection_seconds is not None and self.fast_total_seconds is not None:
            out.append(
                f"  every node refusing (fast confirmation): detected in "
                f"{_rounded(self.fast_detection_seconds)} s, predicted RTO "
                f"{_rounded(self.fast_total_seconds)} s"
            )
        out += [f"  note: {c}" for c in self.caveats]
        return out


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
    # The target's storefront indices as read now, what preflight would refuse, and the
    # promotion that would follow a verified switch.
    data: list[str] = Field(default_factory=list)
    data_refusal: str | None = None  # what preflight's data checks would refuse now
    rto: RtoPrediction | None = None  # the recovery time predicted on the real system

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
        out += [f"data: {d}" for d in self.data]
        if self.rto is not None:
            out += [f"rto: {line}" for line in self.rto.lines()]
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
    # What preflight found of the standby's data, and who accepted what it refused.
    readiness: list[str] = Field(default_factory=list)
    accepted_stale: str | None = None
    promotion: PromoteResult | None = None

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
    refused_since: float | None = Field(
        default=None,
        description="epoch seconds of the first round of the current run of rounds in which "
        "every node refused the connection (or had no route); None otherwise. While set and "
        "not down, the side is probed every probe.fast_confirm_interval_seconds",
    )


class ClusterWatch(BaseModel):
    """What one vantage point sees of both sides; sent to the monitor only when it changes."""

    vantage: str
    primary: SideWatch = Field(default_factory=SideWatch)
    standby: SideWatch = Field(default_factory=SideWatch)
    rounds: int = 0
    observed_at: float | None = None
    # The storefront's indices of each side (read every magento.check_every_seconds by one
    # vantage point); a change that matters ends the watch like a change of state does.
    data: DataRecord | None = None
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
    read_data: bool = False


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
    # Each side's storefront indices as last read while it answered (aliases, counts,
    # replication checkpoints): preflight's reference once the primary is gone.
    data: DataRecord = Field(default_factory=DataRecord)
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
    # The RTO predicted from config on the real system, beside the one measured.
    rto_predicted: RtoPrediction | None = None


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
    webhook_url_secret: SecretRef | None = None  # the reference only; read in the activity


class NotificationSent(BaseModel):
    channels: list[str] = Field(default_factory=list)


# --- the Region switch -------------------------------------------------------------------------

RegionRole = Literal["primary", "dr"]
DatabaseMode = Literal["graceful", "ungraceful"]


def other_region(role: RegionRole) -> RegionRole:
    return "dr" if role == "primary" else "primary"


class AppTierRequest(BaseModel):
    """One Region's app tier: its ALB, its Auto Scaling group and the group's target group."""

    region: str
    load_balancer_arn: str
    target_group_arn: str
    auto_scaling_group: str


class AppTierState(BaseModel):
    """What AWS says of one Region's app tier now."""

    region: str
    load_balancer_state: str | None = None  # active, provisioning, failed; None: not found
    group_found: bool = True
    desired_capacity: int = 0
    min_size: int = 0
    max_size: int = 0
    in_service: int = 0  # InService and Healthy in the group
    healthy_targets: int = 0  # group instances the target group reports healthy
    # Why the group is short: failed scaling activities (InsufficientInstanceCapacity ...).
    scaling_problems: list[str] = Field(default_factory=list)


class ScaleRequest(BaseModel):
    tier: AppTierRequest
    desired_capacity: int
    min_size: int


class ScaleResult(BaseModel):
    changed: bool
    desired_capacity: int
    min_size: int


class WaitCapacityRequest(BaseModel):
    tier: AppTierRequest
    capacity: int
    timeout_seconds: float
    poll_seconds: float


class WaitCapacityResult(BaseModel):
    """The last state seen: `ready` when the capacity was InService and healthy in time."""

    ready: bool
    state: AppTierState
    polls: int


class DatabaseRequest(BaseModel):
    """A global database, read through the Region given (the one that is expected to work)."""

    global_cluster_id: str
    region: str


class DatabaseMember(BaseModel):
    db_cluster_arn: str
    region: str
    is_writer: bool
    # AuroraGlobalDBReplicationLag's latest datapoint (seconds); None: none published.
    lag_seconds: float | None = None
    synchronization_status: str | None = None


class DatabaseState(BaseModel):
    global_cluster_id: str
    status: str | None = None
    members: list[DatabaseMember] = Field(default_factory=list)
    failover_status: str | None = None  # FailoverState.Status: pending, switching-over ...
    failover_to: str | None = None  # FailoverState.ToDbClusterArn

    @property
    def writer(self) -> str | None:
        return next((m.db_cluster_arn for m in self.members if m.is_writer), None)

    def member(self, arn: str) -> DatabaseMember | None:
        return next((m for m in self.members if m.db_cluster_arn == arn), None)


class SwitchDatabaseRequest(BaseModel):
    global_cluster_id: str
    region: str  # where the call is made: the target's Region
    target_arn: str
    mode: DatabaseMode


class SwitchDatabaseResult(BaseModel):
    already: bool  # the target was the writer, or the same switch was under way
    state: DatabaseState


class WaitDatabaseRequest(BaseModel):
    global_cluster_id: str
    region: str
    target_arn: str
    timeout_seconds: float
    poll_seconds: float


class WaitDatabaseResult(BaseModel):
    done: bool  # the target writes and no switch is in progress
    state: DatabaseState
    polls: int


class CacheDatastoreRequest(BaseModel):
    global_replication_group_id: str
    region: str  # where the call is made


class CacheDatastoreState(BaseModel):
    global_replication_group_id: str
    status: str | None = None  # available, modifying, primary-only ...
    primary_region: str | None = None
    primary_group: str | None = None
    members: dict[str, str] = Field(default_factory=dict)  # Region → replication group


class FailoverCacheRequest(BaseModel):
    global_replication_group_id: str
    region: str
    primary_region: str
    primary_group: str


class WaitCacheRequest(BaseModel):
    global_replication_group_id: str
    region: str
    primary_region: str
    timeout_seconds: float
    poll_seconds: float


class WaitCacheResult(BaseModel):
    done: bool
    state: CacheDatastoreState
    polls: int


class AppHealthRequest(BaseModel):
    """Magento's health check through one Region's ALB."""

    url: str
    path: str
    timeout_seconds: float
    host_header: str | None = None


class CartRequest(BaseModel):
    """A write through the storefront: a guest cart (GraphQL), as a shopper's first click."""

    check: StorefrontCheck


class RegionSwitchRequest(BaseModel):
    storefront: StorefrontConfig
    search: ClusterConfig | None = None  # the storefront's search cluster, when it has one
    reason: str
    trigger: Trigger = "manual"
    planned: bool = False  # an operator's switch: no confirmation of an outage
    # graceful: SwitchoverGlobalCluster, no data loss; ungraceful: FailoverGlobalCluster with
    # AllowDataLoss. None: graceful when planned, ungraceful when the outage was confirmed.
    mode: DatabaseMode | None = None
    dry_run: bool = False
    # Moving back, e.g. a drill's failback: to the Region configured as `to` (None: whichever
    # does not serve www now).
    to_region: RegionRole | None = None


class RegionSnapshot(BaseModel):
    """Before anything changes: who serves, who writes, and the app tiers' sizes."""

    www_values: list[str]
    serving: RegionRole | None
    writer: str | None
    writer_role: RegionRole | None
    tiers: dict[str, AppTierState] = Field(default_factory=dict)  # by role
    cache_primary_region: str | None = None


class RegionSwitchStatus(BaseModel):
    storefront: str
    phase: str
    reason: str
    from_region: RegionRole | None = None
    to_region: RegionRole | None = None
    mode: DatabaseMode | None = None
    steps: list[StepTiming] = Field(default_factory=list)
    approved_by: str | None = None
    paused_by: str | None = None
    awaiting: str | None = None  # what the run waits for an operator to decide

    @property
    def cluster(self) -> str:
        return self.storefront


class RegionSwitchResult(BaseModel):
    result: Outcome
    storefront: str
    reason: str
    trigger: Trigger
    from_region: RegionRole | None = None
    to_region: RegionRole | None = None
    mode: DatabaseMode | None = None
    started_at: datetime
    finished_at: datetime
    steps: list[StepTiming] = Field(default_factory=list)
    # Seconds of writes the old writer may have taken that the new one never got: the
    # replication lag at the moment of an ungraceful failover (0 for a switchover).
    data_loss_window_seconds: float | None = None
    database_switched: bool = False
    scaled_from: dict[str, int] | None = None  # the DR tier's desired/min before the scale-up
    search: FailoverResult | None = None
    flushed: list[FlushResult] = Field(default_factory=list)
    plan: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    approved_by: str | None = None
    notifications_failed: int = 0

    @property
    def rto_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class RegionDrillRequest(BaseModel):
    """A planned switch to the DR Region and back, as a rehearsal of the real one."""

    storefront: StorefrontConfig
    search: ClusterConfig | None = None
    reason: str = "region drill"
    hold_seconds: float = Field(default=0, ge=0, le=86400)


class RegionDrillResult(BaseModel):
    verdict: Literal["pass", "fail"]
    storefront: str
    reason: str
    forward: RegionSwitchResult
    back: RegionSwitchResult | None = None
    scaled_back: dict[str, int] | None = None  # the DR tier's size restored after the drill
    started_at: datetime
    finished_at: datetime
