"""The YAML config: which clusters exist, how to probe them and how to move traffic.

The file holds no secret values. A password is named by the environment variable
that holds it, or by its AWS Secrets Manager secret; AWS credentials come from the
standard AWS chain. That keeps the
whole cluster config safe to pass as workflow input and to show in history.
"""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A Secrets Manager secret's name (letters, digits and /_+=.@-) or its full ARN.
SECRET_ID_PATTERN = r"^[A-Za-z0-9/_+=.@:-]{1,2048}$"
SECRET_ARN_PATTERN = r"^arn:aws(-cn|-us-gov)?:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$"
AWS_REGION_PATTERN = r"^[a-z]{2}(-gov)?(-[a-z]+)+-\d{1,2}$"
SNS_TOPIC_ARN_PATTERN = r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$"


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a failover config must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(StrictModel):
    """A secret in AWS Secrets Manager: its whole SecretString, or one key of the JSON object
    it holds. Only this reference is in the config (and so in workflow history); the value is
    read where it is used, inside the activity or at receiver start."""

    secret_id: str = Field(pattern=SECRET_ID_PATTERN, description="the secret's name or ARN")
    json_key: str | None = Field(
        default=None,
        min_length=1,
        description="a key of the JSON object the secret holds; unset: the whole SecretString",
    )
    region: str | None = Field(
        default=None,
        pattern=AWS_REGION_PATTERN,
        description="where the secret lives; default: the ARN's Region, else aws.region",
    )

    @model_validator(mode="after")
    def _arn_names_its_region(self) -> SecretRef:
        problem = secret_ref_problem(self.secret_id, self.region)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def arn_region(self) -> str | None:
        """The Region an ARN names (None for a plain name)."""
        match = re.match(SECRET_ARN_PATTERN, self.secret_id)
        return match.group(2) if match else None

    def describe(self) -> str:
        """Names the secret (and key) for messages; never its value."""
        key = f", key {self.json_key!r}" if self.json_key is not None else ""
        return f"secret {self.secret_id!r}{key}"


def secret_ref_problem(secret_id: str, region: str | None) -> str | None:
    """An ARN must be a Secrets Manager secret's, and agree with `region` when both are set."""
    if not secret_id.startswith("arn:"):
        return None
    match = re.match(SECRET_ARN_PATTERN, secret_id)
    if match is None:
        return f"{secret_id!r} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:...)"
    if region is not None and region != match.group(2):
        return f"region {region} differs from the Region in the ARN ({match.group(2)})"
    return None


def secret_source_problem(
    name: str, env: str | None, secret: SecretRef | None, *, required: bool
) -> str | None:
    """Where a secret comes from: `<name>_env` or `<name>_secret`, never both; one of them
    when the secret is required."""
    if env is not None and secret is not None:
        return f"set only one of {name}_env or {name}_secret, not both"
    if required and env is None and secret is None:
        return (
            f"set {name}_env (the environment variable holding it) or a valid "
            f"{name}_secret (its AWS Secrets Manager secret)"
        )
    return None


def _check_secret_source(
    name: str, env: str | None, info: ValidationInfo, *, required: bool
) -> str | None:
    """For a field validator on `<name>_env`, declared after `<name>_secret` so that the
    secret's validated value is in `info.data` (a missing pair is reported at the _env path,
    where it always was)."""
    problem = secret_source_problem(name, env, info.data.get(f"{name}_secret"), required=required)
    if problem is not None:
        raise ValueError(problem)
    return env


class NoAuth(StrictModel):
    type: Literal["none"] = "none"


class BasicAuth(StrictModel):
    """HTTP basic auth; the password is read inside the activity from the environment variable
    `password_env` names, or from the Secrets Manager secret `password_secret` names."""

    type: Literal["basic"]
    username: str = Field(min_length=1)
    password_secret: SecretRef | None = None
    password_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN, validate_default=True)

    @field_validator("password_env")
    @classmethod
    def _one_password_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("password", env, info, required=True)


class SigV4Auth(StrictModel):
    """Amazon OpenSearch Service: requests signed with botocore from the standard AWS chain."""

    type: Literal["sigv4"]
    region: str = Field(min_length=1)
    service: Literal["es", "aoss"] = "es"


Auth = Annotated[NoAuth | BasicAuth | SigV4Auth, Field(discriminator="type")]


class TlsSettings(StrictModel):
    verify: bool = True
    ca_bundle: Path | None = None

    @model_validator(mode="after")
    def _ca_bundle_needs_verify(self) -> TlsSettings:
        if self.ca_bundle is not None and not self.verify:
            raise ValueError("ca_bundle is set but verify is false; drop one of them")
        return self


class ClusterSide(StrictModel):
    """One of the two clusters (primary or standby) that can serve search."""

    nodes: list[AnyHttpUrl] = Field(min_length=1)
    expected_cluster_name: str | None = Field(
        default=None,
        description="cluster_name the nodes must report: guards against the wrong cluster",
    )
    expected_cluster_uuid: str | None = Field(
        default=None,
        description="cluster_uuid the nodes must report: catches a rebuilt cluster, same name",
    )
    auth: Auth = Field(default_factory=NoAuth)
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, nodes: list[AnyHttpUrl]) -> list[AnyHttpUrl]:
        seen: set[str] = set()
        for node in nodes:
            if str(node) in seen:
                raise ValueError(f"node {node} is listed twice")
            seen.add(str(node))
        return nodes


class ProbeSettings(StrictModel):
    interval_seconds: float = Field(default=5.0, gt=0, le=300)
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    failure_threshold: int = Field(default=3, ge=1, le=20)
    yellow_policy: Literal["degraded", "failing"] = Field(
        default="degraded",
        description="yellow only means missing replicas: by default it is no reason to fail over",
    )
    verify_attempts: int = Field(default=3, ge=1, le=20)
    down_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="share of a side's nodes that must fail for the side to count as down",
    )
    failure_window_seconds: float | None = Field(
        default=None,
        gt=0,
        description="the failing rounds must all fall in this window (default: 3 x threshold "
        "x (interval + timeout))",
    )
    fast_confirm_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="while every node of a side refuses the connection (or has no route), "
        "probe that side this often instead of every interval_seconds; off when unset",
    )
    min_outage_seconds: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description="a side every node of which has refused for this long, with no answer "
        "in between, is down without waiting for failure_threshold rounds; off when unset",
    )

    @model_validator(mode="after")
    def _fast_confirm_fits(self) -> ProbeSettings:
        """Both fast-confirmation settings or neither, and a fast interval that is fast."""
        fast, outage = self.fast_confirm_interval_seconds, self.min_outage_seconds
        if (fast is None) != (outage is None):
            given, missing = (
                ("fast_confirm_interval_seconds", "min_outage_seconds")
                if outage is None
                else ("min_outage_seconds", "fast_confirm_interval_seconds")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: fast confirmation needs both (or "
                f"neither, to keep only the failure_threshold rule)"
            )
        if fast is None or outage is None:
            return self
        problems: list[str] = []
        if fast >= self.interval_seconds:
            problems.append(
                f"fast_confirm_interval_seconds {fast:g} is not shorter than "
                f"interval_seconds {self.interval_seconds:g}: it would not be faster"
            )
        if outage < fast:
            problems.append(
                f"min_outage_seconds {outage:g} is shorter than fast_confirm_interval_seconds "
                f"{fast:g}: rounds that far apart cannot measure an outage that short"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def fast_confirm(self) -> bool:
        """Whether a side refused by every node is confirmed down by `min_outage_seconds`."""
        fast, outage = self.fast_confirm_interval_seconds, self.min_outage_seconds
        return fast is not None and outage is not None

    @model_validator(mode="after")
    def _window_fits_rounds(self) -> ProbeSettings:
        needed = (self.failure_threshold - 1) * self.interval_seconds
        if self.failure_window_seconds is not None and self.failure_window_seconds < needed:
            raise ValueError(
                f"failure_window_seconds {self.failure_window_seconds:g} is shorter than "
                f"{self.failure_threshold} rounds at {self.interval_seconds:g}s take "
                f"({needed:g}s): a side could never be confirmed down"
            )
        return self

    @property
    def window_seconds(self) -> float:
        if self.failure_window_seconds is not None:
            return self.failure_window_seconds
        return 3 * self.failure_threshold * (self.interval_seconds + self.timeout_seconds)


class MonitorSettings(StrictModel):
    """The always-on monitor: who probes, how many must agree, and what it may do alone."""

    enabled: bool = True
    auto_failover: bool = Field(
        default=True, description="false: the monitor alerts on a confirmed down but never acts"
    )
    auto_failback: bool = Field(
        default=False,
        description="allow the monitor to move traffic back to the primary when the standby "
        "it runs on fails; off by default, failback is a person's decision",
    )
    vantage_points: list[str] = Field(
        default_factory=list,
        description="task queues of the probe workers (one per AZ or region); empty: the "
        "worker's own task queue is the only vantage point",
    )
    quorum: int | None = Field(
        default=None, ge=1, description="vantage points that must agree; default: a majority"
    )
    cooldown_seconds: float = Field(
        default=600, ge=0, description="after a failover, no automatic action for this long"
    )
    refresh_seconds: float = Field(
        default=1800,
        gt=0,
        le=86400,
        description="how often a quiet monitor re-reads which side is active",
    )

    @field_validator("vantage_points")
    @classmethod
    def _unique_vantages(cls, vantages: list[str]) -> list[str]:
        _refuse_repeats("vantage point", vantages)
        if any(not v.strip() for v in vantages):
            raise ValueError("vantage point names (task queues) must not be empty")
        return vantages

    @model_validator(mode="after")
    def _quorum_fits(self) -> MonitorSettings:
        count = len(self.vantage_points) or 1
        if self.quorum is not None and self.quorum > count:
            raise ValueError(
                f"quorum {self.quorum} is more than the {count} vantage point(s) configured"
            )
        return self

    def vantages(self, default_queue: str) -> list[str]:
        return list(self.vantage_points) or [default_queue]

    def quorum_of(self, vantage_count: int) -> int:
        return self.quorum if self.quorum is not None else vantage_count // 2 + 1


class AlarmRoutes(StrictModel):
    """Which alarms speak for this cluster: a firing one makes its monitor confirm and act."""

    cloudwatch: list[str] = Field(
        default_factory=list,
        description="CloudWatch alarm names, delivered by SNS or EventBridge",
    )
    alertmanager: list[dict[str, str]] = Field(
        default_factory=list,
        description="Alertmanager label sets; an alert matches one when it has all its labels",
    )

    @field_validator("cloudwatch")
    @classmethod
    def _unique_alarm_names(cls, names: list[str]) -> list[str]:
        _refuse_repeats("alarm name", names)
        if any(not n.strip() for n in names):
            raise ValueError("alarm names must not be empty")
        return names

    @field_validator("alertmanager")
    @classmethod
    def _matchers_not_empty(cls, matchers: list[dict[str, str]]) -> list[dict[str, str]]:
        if any(not m for m in matchers):
            raise ValueError("an empty label set would match every alert; name at least one label")
        return matchers


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BlackoutWindow(StrictModel):
    """A weekly window without drills, e.g. trading hours; end before start crosses midnight."""

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> BlackoutWindow:
        if self.start == self.end:
            raise ValueError("start and end are the same; the window would be empty")
        return self


class DrillSettings(StrictModel):
    """Failover drills: the RTO to meet, how long to stay on the standby, when never to run."""

    rto_target_seconds: float = Field(
        default=300, gt=0, description="the verified switch must take no longer"
    )
    hold_seconds: float = Field(default=60, ge=0, le=86400)
    storefront_interval_seconds: float = Field(default=1.0, ge=0.05, le=60)
    timezone: str = Field(default="UTC", description="for blackout windows and dates")
    blackout_windows: list[BlackoutWindow] = Field(default_factory=list)
    blackout_dates: list[date] = Field(default_factory=list)
    report_dir: str | None = Field(
        default=None, description="where the worker writes reports; default <state>/reports"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name)") from None
        return zone


class NotifySettings(StrictModel):
    """Where phase changes and results go: an SNS topic, a Slack-compatible webhook, or both."""

    sns_topic_arn: str | None = Field(default=None, pattern=SNS_TOPIC_ARN_PATTERN)
    webhook_url_secret: SecretRef | None = Field(
        default=None, description="the Secrets Manager secret holding the incoming-webhook URL"
    )
    webhook_url_env: str | None = Field(
        default=None,
        pattern=ENV_VAR_PATTERN,
        description="the environment variable holding the incoming-webhook URL (a secret)",
    )

    @field_validator("webhook_url_env")
    @classmethod
    def _one_webhook_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("webhook_url", env, info, required=False)

    @property
    def has_webhook(self) -> bool:
        return self.webhook_url_env is not None or self.webhook_url_secret is not None


class Route53Switch(StrictModel):
    """Traffic follows one Route 53 record that Magento's search hostname resolves through."""

    type: Literal["route53"]
    hosted_zone_id: str = Field(pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    record_name: str = Field(min_length=1)
    record_type: Literal["CNAME", "A"] = "CNAME"
    ttl: int = Field(default=60, ge=0, le=86400)
    primary_value: str = Field(min_length=1)
    standby_value: str = Field(min_length=1)
    insync_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    insync_poll_seconds: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _values_differ(self) -> Route53Switch:
        if normalise_record_value(self.primary_value) == normalise_record_value(self.standby_value):
            raise ValueError(
                "primary_value and standby_value are the same; a switch would be a no-op"
            )
        return self

    @field_validator("record_name")
    @classmethod
    def _fqdn(cls, name: str) -> str:
        return name if name.endswith(".") else name + "."

    @property
    def zone_id(self) -> str:
        return self.hosted_zone_id.removeprefix("/hostedzone/")


def _refuse_repeats(what: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(repeated)}")


def normalise_record_value(value: str) -> str:
    """Route 53 and resolvers write names with or without the final dot, in any case."""
    return value.rstrip(".").lower()


class Target(StrictModel):
    """An NLB target: an IP address or an instance id, and its port."""

    id: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)

    def key(self) -> tuple[str, int]:
        return (self.id, self.port)


class NlbSwitch(StrictModel):
    """Traffic follows whichever target set is registered in one NLB target group."""

    type: Literal["nlb"]
    target_group_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:elasticloadbalancing:[^:]+:\d{12}:targetgroup/.+"
    )
    primary_targets: list[Target] = Field(min_length=1)
    standby_targets: list[Target] = Field(min_length=1)
    healthy_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    poll_seconds: float = Field(default=2.0, gt=0, le=60)
    drain_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="cap on waiting for deregistered targets to drain; default: the group's delay",
    )

    @model_validator(mode="after")
    def _sets_disjoint(self) -> NlbSwitch:
        shared = {t.key() for t in self.primary_targets} & {t.key() for t in self.standby_targets}
        if shared:
            listed = ", ".join(f"{i}:{p}" for i, p in sorted(shared))
            raise ValueError(f"targets in both primary_targets and standby_targets: {listed}")
        return self


Switch = Annotated[Route53Switch | NlbSwitch, Field(discriminator="type")]


class RedisCache(StrictModel):
    """A Magento cache backend on Redis (Cm_Cache_Backend_Redis): flushed with FLUSHDB."""

    type: Literal["redis"]
    name: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0, le=15)
    page_cache_db: int | None = Field(default=None, ge=0, le=15)
    password_secret: SecretRef | None = None
    password_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    tls: bool = False

    @field_validator("password_env")
    @classmethod
    def _one_password_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("password", env, info, required=False)


class VarnishCache(StrictModel):
    """Varnish servers purged the way Magento does: PURGE + X-Magento-Tags-Pattern."""

    type: Literal["varnish"]
    name: str = Field(min_length=1)
    servers: list[AnyHttpUrl] = Field(min_length=1)
    tags_pattern: str = ".*"


class SsmCache(StrictModel):
    """`bin/magento cache:flush` on the app instances found by tag, through SSM Run Command."""

    type: Literal["ssm"]
    name: str = Field(min_length=1)
    tag_key: str = Field(min_length=1)
    tag_value: str = Field(min_length=1)
    magento_root: str = Field(default="/var/www/magento", min_length=1)
    command: str = "bin/magento cache:flush"
    run_as: str | None = None
    timeout_seconds: float = Field(default=300, gt=0, le=3600)
    poll_seconds: float = Field(default=2.0, gt=0, le=60)


Cache = Annotated[RedisCache | VarnishCache | SsmCache, Field(discriminator="type")]


class SearchPathCheck(StrictModel):
    """Search as Magento reaches it: through the switched name or the load balancer."""

    url: AnyHttpUrl
    nameserver: str | None = Field(
        default=None,
        description="host:port of a DNS server to resolve with (default: the system resolver)",
    )
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)


class StorefrontCheck(StrictModel):
    """A storefront search and a category page, as a customer gets them."""

    url: AnyHttpUrl
    graphql_path: str = "/graphql"
    search_term: str = Field(default="bag", min_length=1)
    category_path: str | None = "/women.html"
    broken_marker: str = "We can't find products matching the selection."
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    nameserver: str | None = Field(
        default=None,
        description="host:port of a DNS server to resolve the url's host with, as customers "
        "would (default: connect as the url says)",
    )
    host_header: str | None = Field(
        default=None,
        description="Host header to send (checking one Region's ALB directly as www)",
    )


class VerifySettings(StrictModel):
    search_path: SearchPathCheck | None = None
    storefront: StorefrontCheck | None = None


INDEX_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.+-]{0,254}$"


class MagentoIndices(StrictModel):
    """The indices the storefront reads: Magento searches the alias `<prefix>_product_<store>`,
    which points at the versioned index `<prefix>_product_<store>_v<N>` a reindex replaces."""

    index_prefix: str = Field(default="magento2", pattern=r"^[a-z0-9][a-z0-9_-]{0,100}$")
    stores: list[int] = Field(default_factory=lambda: [1], min_length=1)
    aliases: list[str] = Field(
        default_factory=list,
        description="explicit alias names instead of <prefix>_product_<store> (other "
        "extensions' indices, say)",
    )
    min_document_ratio: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="the standby must hold at least this share of the primary's last known "
        "document count per alias, or preflight refuses it (too few documents)",
    )
    check_every_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="how often the monitor reads aliases, counts and replication checkpoints",
    )

    @field_validator("stores")
    @classmethod
    def _unique_stores(cls, stores: list[int]) -> list[int]:
        repeated = sorted({s for s in stores if stores.count(s) > 1})
        if repeated:
            raise ValueError(f"stores are listed twice: {', '.join(map(str, repeated))}")
        if any(s < 0 for s in stores):
            raise ValueError("store ids are whole numbers from 0")
        return stores

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, aliases: list[str]) -> list[str]:
        _refuse_repeats("alias", aliases)
        bad = [a for a in aliases if not re.match(INDEX_NAME_PATTERN, a)]
        if bad:
            raise ValueError(
                f"not index or alias names: {', '.join(map(repr, bad))} (lowercase, no "
                "wildcards, no leading _ or -)"
            )
        return aliases

    def alias_names(self) -> list[str]:
        if self.aliases:
            return list(self.aliases)
        return [f"{self.index_prefix}_product_{store}" for store in self.stores]

    def health_path(self) -> str:
        """`_cluster/health` scoped to the storefront's indices: a red index Magento never
        reads is no reason to fail over, and a missing alias is (HTTP 408, red)."""
        return "/_cluster/health/" + ",".join(self.alias_names()) + "?timeout=0s"


def flush_stages(caches: list[Cache]) -> list[list[Cache]]:
    """The caches in flush order: the app's backends together, then Varnish. Purged
    first, Varnish would refill from Magento's still-broken page cache in Redis."""
    backends = [c for c in caches if not isinstance(c, VarnishCache)]
    varnishes = [c for c in caches if isinstance(c, VarnishCache)]
    return [stage for stage in (backends, varnishes) if stage]


class ReplicationSettings(StrictModel):
    """Cross-cluster replication from the active cluster to the other: the OpenSearch
    replication plugin (and Amazon OpenSearch Service), or Elasticsearch CCR."""

    kind: Literal["opensearch", "elasticsearch", "none"] = "none"
    max_lag_operations: int = Field(
        default=1000, ge=0, description="preflight refuses a standby further behind"
    )
    max_lag_seconds: float = Field(
        default=300,
        ge=0,
        description="preflight refuses a standby that had not caught up for longer (while the "
        "primary was still healthy), or whose replication was paused or failed for longer",
    )
    promote: bool = Field(
        default=True,
        description="after a verified failover, stop replication on the new active side so "
        "Magento's indexer can write (cannot be undone; never in a drill or dry run)",
    )
    primary_connection: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        description="on the standby: the remote connection (leader alias) to the primary",
    )
    standby_connection: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        description="on the primary: the remote connection to the standby, for re-seeding",
    )
    sync_timeout_seconds: float = Field(
        default=3600, gt=0, le=7 * 86400, description="how long a re-seed may take to catch up"
    )
    poll_seconds: float = Field(default=5, gt=0, le=300)

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def connection_to(self, leader: Literal["primary", "standby"]) -> str | None:
        """The connection name a follower uses to reach `leader`."""
        return self.primary_connection if leader == "primary" else self.standby_connection


CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ClusterConfig(StrictModel):
    name: str
    primary: ClusterSide
    standby: ClusterSide
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    switch: Switch
    caches: list[Cache] = Field(default_factory=list)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    alarms: AlarmRoutes = Field(default_factory=AlarmRoutes)
    require_approval: bool = Field(
        default=False, description="a person approves before traffic moves (not for drills)"
    )
    approval_timeout_seconds: float = Field(default=900, gt=0, le=86400)
    approval_on_timeout: Literal["proceed", "abort"] = "abort"
    notify: NotifySettings = Field(default_factory=NotifySettings)
    drill: DrillSettings = Field(default_factory=DrillSettings)
    magento: MagentoIndices | None = Field(
        default=None, description="the storefront's indices: checked on both sides, off by default"
    )
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)

    def side(self, name: Literal["primary", "standby"]) -> ClusterSide:
        return self.primary if name == "primary" else self.standby

    def flush_stages(self) -> list[list[Cache]]:
        return flush_stages(self.caches)

    @model_validator(mode="after")
    def _replication_needs_indices(self) -> ClusterConfig:
        replication = self.replication
        if replication.enabled and self.magento is None:
            raise ValueError(
                "replication is configured but magento is not: name the indices that are "
                "replicated (magento: {index_prefix: ..., stores: [...]})"
            )
        if replication.enabled and replication.primary_connection is None:
            raise ValueError(
                "replication.primary_connection is required: the remote connection on the "
                "standby that its follower indices replicate from"
            )
        return self

    @property
    def promotes(self) -> bool:
        return self.replication.enabled and self.replication.promote

    @field_validator("caches")
    @classmethod
    def _unique_cache_names(cls, caches: list[Cache]) -> list[Cache]:
        _refuse_repeats("cache", [c.name for c in caches])
        return caches

    @field_validator("name")
    @classmethod
    def _name_fits_workflow_ids(cls, name: str) -> str:
        if not CLUSTER_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a valid cluster name: use 1-63 lowercase letters, digits "
                "and dashes, starting with a letter or digit (it becomes part of workflow ids)"
            )
        return name


class AwsSettings(StrictModel):
    """Where boto3 talks to; endpoint_url is for local stand-ins (the sandbox), unset on AWS."""

    region: str = "us-east-1"
    endpoint_url: AnyHttpUrl | None = None
    secrets_cache_seconds: float = Field(
        default=300,
        ge=1,
        le=86400,
        description="how long a value read from AWS Secrets Manager is used before it is "
        "read again",
    )
    secrets_reread_seconds: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="a refused login reads its secret again past the cache at most once "
        "per this long, per secret",
    )


SNS_TOPIC_ARN = SNS_TOPIC_ARN_PATTERN
# Where SNS serves its signing certificates (and SubscribeURLs): https on these hosts only.
SNS_HOST_PATTERN = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class SnsSettings(StrictModel):
    """Amazon SNS HTTP(S) subscriptions: which topics, and whom to trust for certificates."""

    topic_arns: list[str] = Field(min_length=1, description="topics allowed to deliver here")
    max_age_seconds: float = Field(
        default=3900,
        gt=0,
        le=86400,
        description="older messages are refused (SNS retries an HTTP/S delivery for at most "
        "3600 s); duplicate MessageIds are refused for as long",
    )
    confirm_subscriptions: bool = True
    cert_host_pattern: str = Field(
        default=SNS_HOST_PATTERN,
        description="regular expression the whole host[:port] of SigningCertURL and "
        "SubscribeURL must match; https is always required",
    )
    cert_ca_file: Path | None = Field(
        default=None, description="CA bundle for fetching certificates; default: system CAs"
    )
    unsafe_skip_signature_check: bool = Field(
        default=False,
        description="tests only (moto signs nothing): accept unsigned messages; refused "
        "unless the receiver listens on loopback",
    )

    @field_validator("topic_arns")
    @classmethod
    def _topic_arns(cls, arns: list[str]) -> list[str]:
        _refuse_repeats("topic", arns)
        bad = [a for a in arns if not re.match(SNS_TOPIC_ARN, a)]
        if bad:
            raise ValueError(f"not SNS topic ARNs: {', '.join(map(repr, bad))}")
        return arns

    @field_validator("cert_host_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class EventBridgeSettings(StrictModel):
    """EventBridge API destinations: a shared secret in a header, or an HMAC of the body."""

    auth: Literal["header", "hmac"] = "header"
    header: str = Field(
        default="X-Failover-Token",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="header: the API key header of the connection; hmac: the header "
        "carrying 'sha256=<hex>' of '<timestamp>.<body>'",
    )
    timestamp_header: str = Field(default="X-Failover-Timestamp", pattern=r"^[A-Za-z0-9-]{1,64}$")
    secret_secret: SecretRef | None = Field(
        default=None, description="the shared secret, from AWS Secrets Manager"
    )
    secret_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN, validate_default=True)
    max_age_seconds: float = Field(default=300, gt=0, le=86400)

    @field_validator("secret_env")
    @classmethod
    def _one_secret_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("secret", env, info, required=True)


class AlertmanagerSettings(StrictModel):
    """Alertmanager webhooks (version 4): a bearer token or basic auth, never neither."""

    bearer_token_secret: SecretRef | None = None
    bearer_token_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)
    basic_username: str | None = Field(default=None, min_length=1)
    basic_password_secret: SecretRef | None = None
    basic_password_env: str | None = Field(default=None, pattern=ENV_VAR_PATTERN)

    @field_validator("bearer_token_env")
    @classmethod
    def _one_bearer_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("bearer_token", env, info, required=False)

    @field_validator("basic_password_env")
    @classmethod
    def _one_basic_source(cls, env: str | None, info: ValidationInfo) -> str | None:
        return _check_secret_source("basic_password", env, info, required=False)

    @model_validator(mode="after")
    def _one_method(self) -> AlertmanagerSettings:
        password = self.basic_password_env is not None or self.basic_password_secret is not None
        bearer = self.bearer_token_env is not None or self.bearer_token_secret is not None
        basic = self.basic_username is not None or password
        if basic and (self.basic_username is None or not password):
            raise ValueError(
                "basic auth needs both basic_username and basic_password_env "
                "(or basic_password_secret)"
            )
        if basic == bearer:
            raise ValueError(
                "set exactly one of bearer_token_env (or bearer_token_secret) or basic auth"
            )
        return self


class ReceiverSettings(StrictModel):
    """The alarm receiver: where it listens and how much it accepts from whom."""

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=10 * 1024 * 1024)
    rate_limit: str = Field(
        default="120/minute", description="per source address and endpoint, e.g. '10/second'"
    )
    temporal_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="longer than this to reach Temporal: answer 503"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of the load balancers in front (ALB, proxy) whose "
        "X-Forwarded-For names the source; empty: the peer address is the source",
    )
    sns: SnsSettings | None = None
    eventbridge: EventBridgeSettings | None = None
    alertmanager: AlertmanagerSettings | None = None

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit; write e.g. '120/minute' or '5/second'"
            ) from None
        return value

    @model_validator(mode="after")
    def _unsafe_only_on_loopback(self) -> ReceiverSettings:
        if self.sns and self.sns.unsafe_skip_signature_check and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                "sns.unsafe_skip_signature_check is for tests on loopback only; "
                f"the receiver listens on {self.host}"
            )
        return self


REGION_PATTERN = AWS_REGION_PATTERN
ARN_PARTITION = r"arn:aws(-cn|-us-gov)?"
ELB_ARN_PREFIX = rf"^{ARN_PARTITION}:elasticloadbalancing:[a-z0-9-]+:\d{{12}}"
ALB_ARN_PATTERN = ELB_ARN_PREFIX + r":loadbalancer/app/[A-Za-z0-9-]+/[0-9a-f]+$"
TARGET_GROUP_ARN_PATTERN = ELB_ARN_PREFIX + r":targetgroup/[A-Za-z0-9-]+/[0-9a-f]+$"
DB_CLUSTER_ARN_PATTERN = rf"^{ARN_PARTITION}:rds:[a-z0-9-]+:\d{{12}}:cluster:[A-Za-z0-9-]+$"
RegionRole = Literal["primary", "dr"]
SearchSide = Literal["primary", "standby"]


def arn_region(arn: str) -> str:
    """The Region field of an ARN (arn:partition:service:region:account:resource)."""
    return arn.split(":")[3]


class RegionSite(StrictModel):
    """One Region of a storefront: what serves the shop there, and what it needs to take all
    of the shop's traffic."""

    region: str = Field(pattern=REGION_PATTERN)
    load_balancer_arn: str = Field(pattern=ALB_ARN_PATTERN, description="the app's ALB")
    target_group_arn: str = Field(
        pattern=TARGET_GROUP_ARN_PATTERN, description="the ALB's target group of app servers"
    )
    url: AnyHttpUrl = Field(
        description="the ALB's own address: the Region is checked through it before www moves"
    )
    auto_scaling_group: str = Field(min_length=1, max_length=255)
    capacity: int = Field(
        ge=1, le=10000, description="InService, healthy instances needed to take all traffic"
    )
    database_cluster_arn: str = Field(
        pattern=DB_CLUSTER_ARN_PATTERN, description="this Region's member of the global database"
    )
    cache_replication_group: str | None = Field(
        default=None, description="this Region's member of the ElastiCache global datastore"
    )
    caches: list[Cache] = Field(
        default_factory=list, description="flushed here after the switch (Redis, Varnish, SSM)"
    )
    search_side: SearchSide | None = Field(
        default=None, description="the search cluster's side that lives in this Region"
    )

    @field_validator("caches")
    @classmethod
    def _unique_cache_names(cls, caches: list[Cache]) -> list[Cache]:
        _refuse_repeats("cache", [c.name for c in caches])
        return caches

    @model_validator(mode="after")
    def _arns_in_region(self) -> RegionSite:
        wrong = [
            f"{name} is in {arn_region(arn)}"
            for name, arn in (
                ("load_balancer_arn", self.load_balancer_arn),
                ("target_group_arn", self.target_group_arn),
                ("database_cluster_arn", self.database_cluster_arn),
            )
            if arn_region(arn) != self.region
        ]
        if wrong:
            raise ValueError(f"not in region {self.region}: {'; '.join(wrong)}")
        return self

    def flush_stages(self) -> list[list[Cache]]:
        return flush_stages(self.caches)


class GlobalDatabase(StrictModel):
    """The Aurora global database whose writer moves with the storefront."""

    global_cluster_id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
    max_lag_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="preflight refuses a secondary further behind (AuroraGlobalDBReplicationLag)",
    )
    allow_data_loss: bool = Field(
        default=False,
        description="let an ungraceful failover (FailoverGlobalCluster with AllowDataLoss) run "
        "without an operator's approval",
    )
    switch_timeout_seconds: float = Field(default=900, gt=0, le=7200)
    poll_seconds: float = Field(default=5.0, gt=0, le=300)


class GlobalCache(StrictModel):
    """The ElastiCache global datastore holding Magento's cache and sessions."""

    global_replication_group_id: str = Field(min_length=1, max_length=255)
    switch_timeout_seconds: float = Field(default=900, gt=0, le=7200)
    poll_seconds: float = Field(default=5.0, gt=0, le=300)


class RegionConfirmation(StrictModel):
    """How a Region is found down: its ALB and Magento's health check, from a quorum of
    vantage points, for `rounds` rounds in a row."""

    health_path: str = Field(default="/health_check.php", pattern=r"^/")
    rounds: int = Field(default=3, ge=1, le=20)
    interval_seconds: float = Field(default=5.0, gt=0, le=300)
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    vantage_points: list[str] = Field(
        default_factory=list,
        description="task queues of probe workers (empty: the worker's own queue only)",
    )
    quorum: int | None = Field(default=None, ge=1, description="default: a majority")

    @model_validator(mode="after")
    def _quorum_fits(self) -> RegionConfirmation:
        _refuse_repeats("vantage point", self.vantage_points)
        count = max(1, len(self.vantage_points))
        if self.quorum is not None and self.quorum > count:
            raise ValueError(f"quorum {self.quorum} is more than the {count} vantage point(s)")
        return self

    def needed(self) -> int:
        count = max(1, len(self.vantage_points))
        return self.quorum if self.quorum is not None else count // 2 + 1


class StorefrontConfig(StrictModel):
    """A Magento storefront in two Regions: the Region switch's runbook reads from here."""

    name: str
    primary: RegionSite
    dr: RegionSite
    www: Route53Switch = Field(
        description="the record customers follow: primary_value the primary ALB's name, "
        "standby_value the DR ALB's"
    )
    database: GlobalDatabase
    cache_datastore: GlobalCache | None = None
    search_cluster: str | None = Field(
        default=None, description="a cluster from clusters: failed over as a child run"
    )
    checks: StorefrontCheck = Field(description="the storefront through www (search, a cart)")
    confirm: RegionConfirmation = Field(default_factory=RegionConfirmation)
    scale_timeout_seconds: float = Field(default=900, gt=0, le=7200)
    scale_poll_seconds: float = Field(default=5.0, gt=0, le=300)
    verify_attempts: int = Field(default=3, ge=1, le=20)
    verify_interval_seconds: float = Field(default=2.0, ge=0, le=300)
    require_approval: bool = Field(
        default=False, description="every unplanned switch waits for an operator's approval"
    )
    approval_timeout_seconds: float = Field(default=900, gt=0, le=86400)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @field_validator("name")
    @classmethod
    def _name_fits_workflow_ids(cls, name: str) -> str:
        return _workflow_name(name)

    @model_validator(mode="after")
    def _two_regions(self) -> StorefrontConfig:
        problems: list[str] = []
        if self.primary.region == self.dr.region:
            problems.append(f"primary and dr are both in {self.primary.region}")
        if self.primary.database_cluster_arn == self.dr.database_cluster_arn:
            problems.append("primary and dr name the same database_cluster_arn")
        if self.primary.auto_scaling_group == self.dr.auto_scaling_group and (
            self.primary.region == self.dr.region
        ):
            problems.append("primary and dr name the same auto_scaling_group")
        if self.search_cluster is not None:
            sides = (self.primary.search_side, self.dr.search_side)
            if None in sides:
                problems.append(
                    "search_cluster is set: name the search_side (primary or standby) that "
                    "lives in each Region"
                )
            elif sides[0] == sides[1]:
                problems.append(f"primary and dr both name search_side {sides[0]}")
        if self.cache_datastore is not None and None in (
            self.primary.cache_replication_group,
            self.dr.cache_replication_group,
        ):
            problems.append("cache_datastore is set: name each Region's cache_replication_group")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def site(self, role: RegionRole) -> RegionSite:
        return self.primary if role == "primary" else self.dr


def _workflow_name(name: str) -> str:
    if not CLUSTER_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid name: use 1-63 lowercase letters, digits and dashes, "
            "starting with a letter or digit (it becomes part of workflow ids)"
        )
    return name


class AppConfig(StrictModel):
    aws: AwsSettings = Field(default_factory=AwsSettings)
    task_queue: str = Field(default="search-failover", min_length=1)
    clusters: list[ClusterConfig] = Field(min_length=1)
    storefronts: list[StorefrontConfig] = Field(
        default_factory=list, description="Magento storefronts a Region switch moves"
    )
    receiver: ReceiverSettings | None = None

    @field_validator("clusters")
    @classmethod
    def _unique_names(cls, clusters: list[ClusterConfig]) -> list[ClusterConfig]:
        _refuse_repeats("cluster", [c.name for c in clusters])
        owners: dict[str, str] = {}
        for cluster in clusters:
            for alarm in cluster.alarms.cloudwatch:
                if alarm in owners:
                    raise ValueError(
                        f"alarm {alarm!r} is mapped to both {owners[alarm]!r} and "
                        f"{cluster.name!r}; an alarm speaks for one cluster"
                    )
                owners[alarm] = cluster.name
        return clusters

    @model_validator(mode="after")
    def _storefronts_name_known_clusters(self) -> AppConfig:
        _refuse_repeats("storefront", [s.name for s in self.storefronts])
        known = {c.name for c in self.clusters}
        unknown = [
            f"storefront {s.name!r} names search_cluster {s.search_cluster!r}, which is not in "
            f"clusters ({', '.join(sorted(known))})"
            for s in self.storefronts
            if s.search_cluster is not None and s.search_cluster not in known
        ]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self

    def storefront(self, name: str) -> StorefrontConfig:
        for storefront in self.storefronts:
            if storefront.name == name:
                return storefront
        known = ", ".join(s.name for s in self.storefronts) or "none"
        raise ConfigError([f"storefronts: no storefront named {name!r} (configured: {known})"])

    def cluster(self, name: str) -> ClusterConfig:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        known = ", ".join(c.name for c in self.clusters)
        raise ConfigError([f"clusters: no cluster named {name!r} (configured: {known})"])


class ConfigError(Exception):
    """Every problem found in a config file, each as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def _error_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


SECRET_WORDS = ("password", "secret", "token", "key")


def _describe(err: ErrorDetails) -> str:
    path = _error_path(err["loc"])
    last = str(err["loc"][-1]).lower() if err["loc"] else ""
    in_reference = any(str(part).endswith("_secret") for part in err["loc"][:-1])
    if (
        err["type"] == "extra_forbidden"
        and not in_reference
        and any(word in last for word in SECRET_WORDS)
    ):
        return (
            f"{path}: secret values do not belong in the config file; name the environment "
            f"variable that holds it instead (e.g. password_env), or its AWS Secrets Manager "
            f"secret (e.g. password_secret: {{secret_id: ...}})"
        )
    message = err["msg"].removeprefix("Value error, ")
    return f"{path}: {message}"


def parse_config(data: object, *, source: str = "config") -> AppConfig:
    """Validate already-parsed YAML/JSON; raise ConfigError listing every error with its path."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping with a 'clusters' list"])
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        # Discriminated unions add the tag to the location ("switch.route53.ttl"); it is
        # kept, as it tells the reader which variant was checked.
        raise ConfigError([_describe(err) for err in exc.errors(include_url=False)]) from None


def load_config(path: Path | str) -> AppConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    return parse_config(data, source=str(path))
