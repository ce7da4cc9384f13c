"""A Region switch of the app tier, answered in the AWS proxy the way AWS answers it.

Switching a Magento storefront to another Region moves the Aurora writer, the ElastiCache
primary and the web tier's capacity. moto (5.2.5) keeps the resources but not the switch:

* **Aurora global database.** ``CreateGlobalCluster``, ``CreateDBCluster`` with
  ``GlobalClusterIdentifier`` and ``DescribeGlobalClusters`` (members with ``IsWriter`` and
  ``Readers``) work, in every Region, from one store. ``SwitchoverGlobalCluster`` and
  ``FailoverGlobalCluster`` answer HTTP 500 (NotImplementedError), ``DescribeGlobalClusters``
  ignores ``GlobalClusterIdentifier`` (it lists every cluster, never GlobalClusterNotFoundFault)
  and its members carry no ``SynchronizationStatus``. ``DescribeDBClusters`` says nothing about
  which member writes.
* **ElastiCache global datastore.** Every call is missing (500). ``CreateReplicationGroup`` takes
  ``GlobalReplicationGroupId`` without checking it and marks the group SECONDARY.
* **Auto Scaling.** New instances are ``InService`` and ``Healthy`` at once, registered
  ``healthy`` in the attached target groups at once; terminated ones stay ``healthy`` there.
  ``DescribeScalingActivities`` is always empty; ``SetDesiredCapacity`` accepts any value (and a
  missing group is a 500).
* **CloudWatch** keeps what ``PutMetricData`` sends, ``AWS/`` namespaces included, and answers
  ``GetMetricData`` and ``GetMetricStatistics`` from it.

``AwsRegionalDr`` is a ``Responder`` for ``AwsFaultProxy`` that fills these gaps. It keeps the
state AWS would keep (who writes, a switch in progress, datastore members, instance launch times,
overridden capacity) and applies it to every later answer, whichever call reads it: moto stays the
store of resources, the responder only adds what changes over time. It is enabled explicitly::

    dr = AwsRegionalDr()
    await proxy.add_responder(dr)

and controlled from Python (``impair_region``, ``set_replication_lag``, ``set_no_capacity`` ...)
or over HTTP on the proxy's port, each body a JSON object (a bad one is a 400 naming the field):

* ``GET /__faults__/dr``: timing, impaired Regions, lags, Auto Scaling controls, datastores.
* ``GET|POST /__faults__/dr/timing``: read, or change some ``DrTiming`` fields.
* ``POST /__faults__/dr/impairment`` ``{"region": "us-east-1", "impaired": true}``.
* ``POST /__faults__/dr/replication-lag`` ``{"db_cluster_arn": "arn:aws:rds:...", "seconds": 2}``.
* ``GET /__faults__/dr/writer?global_cluster=<id>``: the writer's ARN and the FailoverState.
* ``POST /__faults__/dr/auto-scaling``
  ``{"region": "us-west-2", "group": "web", "never_healthy": true, "no_capacity": false}``
  (either flag, or both).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import botocore.session
from aiohttp import web
from botocore.model import OperationModel, Shape, StructureShape
from multidict import CIMultiDict

from sandbox.aws_fault_proxy import AwsAnswer, AwsRequest, Responder

log = logging.getLogger(__name__)

RDS_VERSION = "2014-10-31"
ELASTICACHE_VERSION = "2015-02-02"
AUTOSCALING_VERSION = "2011-01-01"
ELBV2_VERSION = "2015-12-01"
EC2_VERSION = "2016-11-15"
RDS_XMLNS = f"http://rds.amazonaws.com/doc/{RDS_VERSION}/"
ELASTICACHE_XMLNS = f"http://elasticache.amazonaws.com/doc/{ELASTICACHE_VERSION}/"
AUTOSCALING_XMLNS = f"http://autoscaling.amazonaws.com/doc/{AUTOSCALING_VERSION}/"

# The metric AWS publishes, in the secondary's Region, for each secondary of a global database
# (Aurora User Guide, "Cluster-level metrics for Amazon Aurora"; Aurora labs: the same metric is
# also found under the SourceRegion dimension).
LAG_NAMESPACE = "AWS/RDS"
LAG_METRIC = "AuroraGlobalDBReplicationLag"

# ElastiCache prefixes a global datastore's id by the primary's Region (ElastiCache User Guide,
# "Using global datastores (CLI)"). Other Regions get a stable made-up prefix.
GLOBAL_DATASTORE_PREFIX = {
    "us-east-1": "ldgnf",
    "us-east-2": "fpkhr",
    "us-west-1": "virxk",
    "us-west-2": "sgaui",
    "ca-central-1": "bxodz",
    "ap-south-1": "erpgt",
    "ap-northeast-1": "quwsw",
    "ap-northeast-2": "lfqnh",
    "ap-northeast-3": "nlapn",
    "ap-southeast-1": "vlqxn",
    "ap-southeast-2": "vbgxd",
    "eu-central-1": "iudkw",
    "eu-west-1": "gxeiz",
    "eu-west-2": "okuqm",
    "eu-west-3": "fgjhi",
    "sa-east-1": "juxlw",
    "cn-north-1": "emvgo",
    "cn-northwest-1": "ckbem",
    "ap-east-1": "knjmp",
}

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_CLUSTER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:rds:([a-z0-9-]+):(\d{12}):cluster:([A-Za-z0-9-]+)$")
_ARN_ACCOUNT_RE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")

# Auto Scaling calls after which the group's instances may have changed.
_SCALING_CALLS = frozenset(
    {
        "CreateAutoScalingGroup",
        "SetDesiredCapacity",
        "UpdateAutoScalingGroup",
        "ExecutePolicy",
        "TerminateInstanceInAutoScalingGroup",
        "AttachInstances",
        "DetachInstances",
        "EnterStandby",
        "ExitStandby",
    }
)


# --------------------------------------------------------------------------- timing and errors


@dataclass
class DrTiming:
    """How long the things that take time on AWS take here (seconds; settable per test)."""

    # FailoverState "pending": the service checks both clusters before it starts.
    global_cluster_pending_s: float = 1.0
    # Then "switching-over"/"failing-over" until IsWriter moves to the target.
    global_cluster_promotion_s: float = 2.0
    # A global datastore is "creating"/"modifying" this long after a change or a failover.
    global_datastore_change_s: float = 2.0
    # A new Auto Scaling instance is Pending (its target "initial") this long.
    instance_launch_s: float = 1.5
    # A scaled-in instance is "draining" in its target groups this long (AWS's default: 300 s).
    target_deregistration_s: float = 300.0
    # How often AuroraGlobalDBReplicationLag datapoints are published (AWS: every minute).
    lag_publish_interval_s: float = 60.0

    def validate(self) -> None:
        """Raise DrControlError naming the first field that is not a usable duration."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DrControlError(f.name, f"must be a number of seconds; got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise DrControlError(f.name, "must be a finite number >= 0")
        if self.lag_publish_interval_s <= 0:
            raise DrControlError("lag_publish_interval_s", "must be > 0")


class DrControlError(ValueError):
    """A control call was given bad input; ``field`` names it so the control API can say so."""

    def __init__(self, field_name: str | None, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}" if field_name else message)


class _AwsError(Exception):
    """An AWS error answer, raised from deep inside a handler and sent as is."""

    def __init__(self, answer: AwsAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _error(status: int, code: str, message: str, xmlns: str) -> _AwsError:
    """A query-protocol error document as AWS sends it (botocore maps ``code`` to its class)."""
    request_id = str(uuid.uuid4())
    root = ET.Element("ErrorResponse", xmlns=xmlns)
    error = ET.SubElement(root, "Error")
    ET.SubElement(error, "Type").text = "Sender" if status < 500 else "Receiver"
    ET.SubElement(error, "Code").text = code
    ET.SubElement(error, "Message").text = message
    ET.SubElement(root, "RequestId").text = request_id
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}
    )
    return _AwsError(AwsAnswer(status, headers, ET.tostring(root, encoding="utf-8")))


def _rds_error(status: int, code: str, message: str) -> _AwsError:
    return _error(status, code, message, RDS_XMLNS)


def _elasticache_error(status: int, code: str, message: str) -> _AwsError:
    return _error(status, code, message, ELASTICACHE_XMLNS)


def _autoscaling_error(message: str) -> _AwsError:
    return _error(400, "ValidationError", message, AUTOSCALING_XMLNS)


# --------------------------------------------------------------------------- XML


def _parse(body: bytes) -> tuple[ET.Element, str]:
    """Parse an AWS XML answer and drop namespaces from the tags; returns (root, xmlns)."""
    root = ET.fromstring(body)
    xmlns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    for elem in root.iter():
        if elem.tag.startswith("{"):
            elem.tag = elem.tag.partition("}")[2]
    return root, xmlns


def _dump(root: ET.Element, xmlns: str) -> bytes:
    if xmlns:
        root.set("xmlns", xmlns)
    return ET.tostring(root, encoding="utf-8")


def _text(elem: ET.Element | None, path: str) -> str | None:
    if elem is None:
        return None
    found = elem.find(path)
    return found.text if found is not None else None


def _set_text(elem: ET.Element, name: str, value: str) -> None:
    """Set the text of ``elem``'s child ``name``, adding the child if moto left it out."""
    child = elem.find(name)
    if child is None:
        child = ET.SubElement(elem, name)
    child.text = value


def _items(elem: ET.Element | None, path: str) -> list[ET.Element]:
    found = elem.find(path) if elem is not None else None
    return list(found) if found is not None else []


def _xml_bool(value: bool) -> str:
    return "true" if value else "false"


def _iso(timestamp: float) -> str:
    """Epoch seconds as AWS writes timestamps in XML."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@functools.cache
def _operation_model(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


def _result(service: str, operation: str, result: Mapping[str, Any]) -> AwsAnswer:
    """A query-protocol answer built from botocore's own model of the operation's output.

    Used where moto has nothing to say, so the element names and list wrappers are those
    botocore parses; an unknown key is a bug here and raises.
    """
    model = _operation_model(service, operation)
    request_id = str(uuid.uuid4())
    root = ET.Element(f"{operation}Response", xmlns=model.service_model.metadata["xmlNamespace"])
    shape = model.output_shape
    if isinstance(shape, StructureShape):
        wrapper = ET.SubElement(
            root, shape.serialization.get("resultWrapper", f"{operation}Result")
        )
        _members_xml(wrapper, result, shape)
    meta = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(meta, "RequestId").text = request_id
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}
    )
    return AwsAnswer(200, headers, ET.tostring(root, encoding="utf-8"))


def _members_xml(parent: ET.Element, value: Mapping[str, Any], shape: StructureShape) -> None:
    unknown = set(value) - set(shape.members)
    if unknown:
        raise KeyError(f"{shape.name} has no member(s) {sorted(unknown)}")
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _value_xml(parent, member.serialization.get("name", name), value[name], member)


def _value_xml(parent: ET.Element, tag: str, value: Any, shape: Shape) -> None:
    elem = ET.SubElement(parent, tag)
    match shape.type_name:
        case "structure":
            assert isinstance(shape, StructureShape)
            _members_xml(elem, value, shape)
        case "list":
            item = shape.member  # type: ignore[attr-defined]
            for entry in value:
                _value_xml(elem, item.serialization.get("name", "member"), entry, item)
        case "boolean":
            elem.text = _xml_bool(value)
        case "timestamp":
            elem.text = _iso(value)
        case _:
            elem.text = str(value)


# --------------------------------------------------------------------------- state


@dataclass
class _Switch:
    """A switchover or failover of a global cluster in progress."""

    from_arn: str
    to_arn: str
    data_loss: bool
    started: float  # time.monotonic()


@dataclass
class _GlobalCluster:
    """What AWS knows about a global cluster that moto does not (keyed by its resource id)."""

    writer_arn: str | None = None  # None: moto's IsWriter stands
    switch: _Switch | None = None
    # After a failover with data loss, the old writer needs a resync while its Region is down.
    resync_arn: str | None = None


@dataclass
class _DatastoreMember:
    replication_group_id: str
    region: str
    role: str  # PRIMARY | SECONDARY
    automatic_failover: str
    associated_at: float  # time.monotonic() when "associating" becomes "associated"


@dataclass
class _Datastore:
    """An ElastiCache global datastore: entirely the responder's, since moto has none."""

    id: str
    description: str
    arn: str
    cache_node_type: str
    engine: str
    engine_version: str | None
    cluster_enabled: bool
    auth_token_enabled: bool
    transit_encryption_enabled: bool
    at_rest_encryption_enabled: bool
    members: list[_DatastoreMember]
    busy_status: str = "creating"  # what Status says until busy_until
    busy_until: float = 0.0
    failover_to: tuple[str, str] | None = None  # (region, replication group) being promoted

    def settle(self, now: float) -> None:
        """Finish a failover whose time is up: roles swap only then."""
        if self.failover_to is not None and now >= self.busy_until:
            region, group = self.failover_to
            for member in self.members:
                is_target = (member.region, member.replication_group_id) == (region, group)
                member.role = "PRIMARY" if is_target else "SECONDARY"
            self.failover_to = None

    def status(self, now: float) -> str:
        self.settle(now)
        if now < self.busy_until:
            return self.busy_status
        return "available" if len(self.members) > 1 else "primary-only"

    def member(self, region: str, group: str) -> _DatastoreMember | None:
        return next(
            (m for m in self.members if (m.region, m.replication_group_id) == (region, group)),
            None,
        )

    @property
    def primary(self) -> _DatastoreMember:
        return next(m for m in self.members if m.role == "PRIMARY")


@dataclass
class _Instance:
    """An Auto Scaling instance as the responder has seen it."""

    region: str
    instance_id: str
    group: str | None
    launched_at: float  # wall clock (time.time()), like EC2's LaunchTime
    left_at: float | None = None  # when it left its group (scale-in, detach)
    deregistered: bool = False


@dataclass
class _GroupControl:
    """The sandbox's controls on one Auto Scaling group, and the capacity it could not get."""

    never_healthy_since: float | None = None  # instances launched from then on never turn healthy
    no_capacity: bool = False
    wanted_desired: int | None = None  # what the group was asked for but could not launch
    wanted_min: int | None = None


@dataclass
class _Activity:
    """A scaling activity as DescribeScalingActivities reports it (moto keeps none)."""

    activity_id: str
    region: str
    group: str
    group_arn: str | None
    description: str
    cause: str
    start: float
    end: float
    final_status: str  # Successful | Failed
    status_message: str | None = None
    details: str = field(default="{}")


# --------------------------------------------------------------------------- the responder


class AwsRegionalDr(Responder):
    """Aurora global database, ElastiCache global datastore and Auto Scaling, as AWS has them.

    Runs on the proxy's event loop; its Python controls are meant to be called from that loop
    (tests and the sandbox run there). Controls that must reach moto are coroutines.
    """

    name = "aws-regional-dr"
    control_name = "dr"

    def __init__(
        self, timing: DrTiming | None = None, *, default_replication_lag_s: float | None = None
    ) -> None:
        self.timing = timing or DrTiming()
        self.timing.validate()
        # Lag published for a secondary whose lag the sandbox never set (None: publish nothing).
        self.default_replication_lag_s = default_replication_lag_s
        self._impaired: set[str] = set()
        self._lag: dict[str, float] = {}
        self._clusters: dict[str, _GlobalCluster] = {}
        self._datastores: dict[str, _Datastore] = {}
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._members: dict[tuple[str, str], set[str]] = {}
        self._groups: dict[tuple[str, str], _GroupControl] = {}
        self._activities: list[_Activity] = []
        self._access_key = "sandbox"
        self._publisher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ---- lifecycle

    async def start(self) -> None:
        """Start publishing AuroraGlobalDBReplicationLag, as AWS does without being asked."""
        self._wake = asyncio.Event()
        self._publisher = asyncio.create_task(self._publish_forever())

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None

    def reset(self) -> None:
        """Forget every switch, datastore, instance and control (moto forgot its side too).

        The timing stays: it is configuration, not state.
        """
        self._impaired.clear()
        self._lag.clear()
        self._clusters.clear()
        self._datastores.clear()
        self._instances.clear()
        self._members.clear()
        self._groups.clear()
        self._activities.clear()
        self._wake.set()  # the publisher's next wake-up may have been for a forgotten switch

    # ---- Python controls

    def set_timing(self, **changes: float) -> DrTiming:
        """Change some durations; DrControlError names a bad one (nothing changes then)."""
        known = {f.name for f in dataclasses.fields(DrTiming)}
        for name in changes:
            if name not in known:
                raise DrControlError(name, "unknown timing field")
        updated = dataclasses.replace(self.timing, **changes)
        updated.validate()
        self.timing = updated
        self._wake.set()
        return updated

    def impair_region(self, region: str) -> None:
        """Make ``region``'s RDS writers unreachable: switchovers from it are refused."""
        self._impaired.add(_check_region(region))

    def restore_region(self, region: str) -> None:
        self._impaired.discard(_check_region(region))

    @property
    def impaired_regions(self) -> frozenset[str]:
        return frozenset(self._impaired)

    async def set_replication_lag(self, db_cluster_arn: str, seconds: float) -> None:
        """Set how far ``db_cluster_arn`` lags its writer while it is a secondary.

        Published at once as AuroraGlobalDBReplicationLag (milliseconds, in the cluster's
        Region), then every ``lag_publish_interval_s``.
        """
        _cluster_arn_parts(db_cluster_arn)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise DrControlError("seconds", f"must be a number; got {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise DrControlError("seconds", "must be a finite number >= 0")
        self._lag[db_cluster_arn] = float(seconds)
        await self._publish_lag(self._access_key, only={db_cluster_arn})

    def replication_lag(self, db_cluster_arn: str) -> float | None:
        return self._lag.get(db_cluster_arn, self.default_replication_lag_s)

    async def writer(self, global_cluster_id: str) -> str | None:
        """The ARN of the global cluster's writer now (None without members); KeyError if none."""
        item = await self._global_cluster_item(global_cluster_id, self._access_key)
        if item is None:
            raise KeyError(global_cluster_id)
        return self._apply_overlay(item)["writer"]

    async def failover_state(self, global_cluster_id: str) -> dict[str, Any] | None:
        """The FailoverState AWS would show now (None when no switch is in progress)."""
        item = await self._global_cluster_item(global_cluster_id, self._access_key)
        if item is None:
            raise KeyError(global_cluster_id)
        return self._apply_overlay(item)["failover_state"]

    def set_never_healthy(self, region: str, group: str, never: bool = True) -> None:
        """Instances ``group`` launches from now on never pass their target health checks."""
        control = self._group(_check_region(region), _check_group(group))
        control.never_healthy_since = time.time() if never else None

    async def set_no_capacity(self, region: str, group: str, blocked: bool = True) -> None:
        """Make scale-ups of ``group`` fail like InsufficientInstanceCapacity, or stop that.

        While blocked, a scale-up is accepted (DesiredCapacity shows it) but no instance launches
        and a Failed scaling activity says why. Unblocking launches what was asked for, as AWS's
        retries eventually do.
        """
        control = self._group(_check_region(region), _check_group(group))
        control.no_capacity = blocked
        if blocked or control.wanted_desired is None:
            return
        params = {
            "Action": "UpdateAutoScalingGroup",
            "Version": AUTOSCALING_VERSION,
            "AutoScalingGroupName": group,
            "DesiredCapacity": str(control.wanted_desired),
        }
        if control.wanted_min is not None:
            params["MinSize"] = str(control.wanted_min)
        answer = await self._query("autoscaling", region, params, self._access_key)
        if not answer.ok:
            raise RuntimeError(f"moto refused the held-back scale-up of {group}: {answer.body!r}")
        control.wanted_desired = control.wanted_min = None
        await self._observe_group(region, group, self._access_key, launched_now=True)

    def auto_scaling_controls(self, region: str, group: str) -> dict[str, Any]:
        control = self._groups.get((region, group), _GroupControl())
        return {
            "region": region,
            "group": group,
            "never_healthy": control.never_healthy_since is not None,
            "no_capacity": control.no_capacity,
            "held_back_desired_capacity": control.wanted_desired,
        }

    # ---- the Responder interface

    async def answer(self, request: AwsRequest) -> AwsAnswer | None:
        if request.access_key:
            self._access_key = request.access_key
        handler = {
            ("rds", "SwitchoverGlobalCluster"): self._switch_global_cluster,
            ("rds", "FailoverGlobalCluster"): self._switch_global_cluster,
            ("elasticache", "CreateGlobalReplicationGroup"): self._create_datastore,
            ("elasticache", "DescribeGlobalReplicationGroups"): self._describe_datastores,
            ("elasticache", "FailoverGlobalReplicationGroup"): self._failover_datastore,
            ("elasticache", "DisassociateGlobalReplicationGroup"): self._disassociate_datastore,
            ("elasticache", "DeleteGlobalReplicationGroup"): self._delete_datastore,
            ("elasticache", "CreateReplicationGroup"): self._check_datastore_join,
            ("elasticache", "DeleteReplicationGroup"): self._check_member_delete,
            ("autoscaling", "SetDesiredCapacity"): self._set_desired_capacity,
            ("autoscaling", "UpdateAutoScalingGroup"): self._update_group,
            ("autoscaling", "DescribeScalingActivities"): self._describe_activities,
        }.get((request.service or "", request.operation))
        if handler is None or request.region is None:
            return None
        try:
            return await handler(request)
        except _AwsError as exc:
            return exc.answer

    async def rewrite(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        if request.region is None:
            return answer
        service, operation = request.service or "", request.operation
        try:
            if service == "rds" and operation == "DescribeGlobalClusters" and answer.ok:
                return self._rewrite_global_clusters(request, answer)
            if service == "elasticache" and answer.ok:
                if operation == "CreateReplicationGroup":
                    self._joined_datastore(request)
                if operation in ("CreateReplicationGroup", "DescribeReplicationGroups"):
                    return self._rewrite_replication_groups(request, answer)
            if service == "autoscaling" and answer.ok:
                if operation in _SCALING_CALLS:
                    await self._after_scaling_call(request)
                if operation == "DescribeAutoScalingGroups":
                    return await self._rewrite_groups(request, answer)
                if operation == "DescribeAutoScalingInstances":
                    return await self._rewrite_instances(request, answer)
            if (
                service == "elasticloadbalancing"
                and operation == "DescribeTargetHealth"
                and answer.ok
            ):
                return await self._rewrite_target_health(request, answer)
        except _AwsError as exc:
            return exc.answer
        return answer

    # ---- upstream

    async def _query(
        self, service: str, region: str, params: Mapping[str, str], key: str | None
    ) -> AwsAnswer:
        """A query-protocol call of the responder's own to moto, as ``key`` in ``region``."""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": _authorization(key or self._access_key, region, service),
        }
        return await self.proxy.send_upstream("POST", "/", headers, urlencode(params).encode())

    async def _ok_query(
        self, service: str, region: str, params: Mapping[str, str], key: str | None
    ) -> ET.Element:
        answer = await self._query(service, region, params, key)
        if not answer.ok:
            raise _AwsError(answer)
        return _parse(answer.body)[0]

    # ================================================================ Aurora global database

    async def _global_cluster_items(self, key: str | None) -> list[ET.Element]:
        # moto keeps global clusters in one store whatever the Region; us-east-1 reads it.
        params = {"Action": "DescribeGlobalClusters", "Version": RDS_VERSION}
        root = await self._ok_query("rds", "us-east-1", params, key)
        return _items(root, "DescribeGlobalClustersResult/GlobalClusters")

    async def _global_cluster_item(self, global_id: str, key: str | None) -> ET.Element | None:
        wanted = global_id.lower()
        for item in await self._global_cluster_items(key):
            if (_text(item, "GlobalClusterIdentifier") or "").lower() == wanted:
                return item
        return None

    def _settled(self, resource_id: str) -> _GlobalCluster:
        state = self._clusters.setdefault(resource_id, _GlobalCluster())
        switch = state.switch
        if switch is not None and time.monotonic() >= switch.started + self._switch_duration():
            state.writer_arn = switch.to_arn
            state.resync_arn = switch.from_arn if switch.data_loss else None
            state.switch = None
        return state

    def _switch_duration(self) -> float:
        return self.timing.global_cluster_pending_s + self.timing.global_cluster_promotion_s

    def _apply_overlay(self, item: ET.Element) -> dict[str, Any]:
        """Make a moto global cluster element say what AWS would say now; returns the gist."""
        state = self._settled(_text(item, "GlobalClusterResourceId") or "")
        members = _items(item, "GlobalClusterMembers")
        arns = [_text(m, "DBClusterArn") or "" for m in members]
        moto_writer = next(
            (arn for m, arn in zip(members, arns, strict=True) if _text(m, "IsWriter") == "true"),
            None,
        )
        writer = state.writer_arn if state.writer_arn in arns else moto_writer
        for member, arn in zip(members, arns, strict=True):
            is_writer = arn == writer
            _set_text(member, "IsWriter", _xml_bool(is_writer))
            readers = member.find("Readers")
            if readers is None:
                readers = ET.SubElement(member, "Readers")
            readers.clear()
            if is_writer:
                for other in arns:
                    if other != arn:
                        ET.SubElement(readers, "member").text = other
            forwarding = member.find("GlobalWriteForwardingStatus")
            if is_writer and forwarding is not None:
                member.remove(forwarding)
            elif not is_writer and forwarding is None:
                _set_text(member, "GlobalWriteForwardingStatus", "disabled")
            resync = arn == state.resync_arn and _arn_region(arn) in self._impaired
            _set_text(member, "SynchronizationStatus", "pending-resync" if resync else "connected")
        failover_state: dict[str, Any] | None = None
        old_state = item.find("FailoverState")
        if old_state is not None:
            item.remove(old_state)
        switch = state.switch
        if switch is not None and switch.to_arn in arns:
            moving = "failing-over" if switch.data_loss else "switching-over"
            pending = time.monotonic() < switch.started + self.timing.global_cluster_pending_s
            failover_state = {
                "Status": "pending" if pending else moving,
                "FromDbClusterArn": switch.from_arn,
                "ToDbClusterArn": switch.to_arn,
                "IsDataLossAllowed": switch.data_loss,
            }
            elem = ET.SubElement(item, "FailoverState")
            for name, value in failover_state.items():
                text = _xml_bool(value) if isinstance(value, bool) else value
                ET.SubElement(elem, name).text = text
            _set_text(item, "Status", moving)
        return {"writer": writer, "failover_state": failover_state, "members": arns}

    def _rewrite_global_clusters(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        root, xmlns = _parse(answer.body)
        container = root.find("DescribeGlobalClustersResult/GlobalClusters")
        if container is None:
            return answer
        wanted = request.param("GlobalClusterIdentifier")
        for item in list(container):
            name = _text(item, "GlobalClusterIdentifier") or ""
            if wanted is not None and name.lower() != wanted.lower():
                container.remove(item)  # moto ignores the identifier; AWS filters by it
                continue
            self._apply_overlay(item)
        if wanted is not None and len(container) == 0:
            raise _rds_error(
                404, "GlobalClusterNotFoundFault", f"GlobalCluster {wanted} not found."
            )
        return AwsAnswer(answer.status, answer.headers, _dump(root, xmlns))

    async def _switch_global_cluster(self, request: AwsRequest) -> AwsAnswer:
        """SwitchoverGlobalCluster, and FailoverGlobalCluster with or without data loss."""
        operation = request.operation
        global_id = _required(request, "GlobalClusterIdentifier", RDS_XMLNS)
        target = _required(request, "TargetDbClusterIdentifier", RDS_XMLNS)
        allow = request.param("AllowDataLoss")
        switchover = request.param("Switchover")
        if operation == "FailoverGlobalCluster" and allow is not None and switchover is not None:
            raise _rds_error(
                400,
                "InvalidParameterCombination",
                "AllowDataLoss and Switchover can't be specified together.",
            )
        data_loss = operation == "FailoverGlobalCluster" and allow == "true"
        item = await self._global_cluster_item(global_id, request.access_key)
        if item is None:
            raise _rds_error(
                404, "GlobalClusterNotFoundFault", f"GlobalCluster {global_id} not found."
            )
        resource_id = _text(item, "GlobalClusterResourceId") or ""
        gist = self._apply_overlay(item)
        writer: str | None = gist["writer"]
        target_arn = _resolve_member(target, gist["members"], request.region or "")
        if target_arn is None:
            raise _rds_error(404, "DBClusterNotFoundFault", f"DBCluster {target} not found.")
        state = self._settled(resource_id)
        if state.switch is not None:
            verb = "failover" if state.switch.data_loss else "switchover"
            raise _rds_error(
                400,
                "InvalidGlobalClusterStateFault",
                f"Global cluster {global_id} already has a {verb} in progress "
                f"to {state.switch.to_arn}.",
            )
        if target_arn == writer:
            raise _rds_error(
                400,
                "InvalidDBClusterStateFault",
                f"DB cluster {target_arn} is already the primary cluster of global cluster "
                f"{global_id}.",
            )
        if _arn_region(target_arn) in self._impaired:
            raise _rds_error(
                400,
                "InvalidDBClusterStateFault",
                f"DB cluster {target_arn} is not available: its Region can't be reached.",
            )
        if not data_loss and writer is not None and _arn_region(writer) in self._impaired:
            raise _rds_error(
                400,
                "InvalidGlobalClusterStateFault",
                f"Global cluster {global_id} can't be switched over: its primary DB cluster "
                f"{writer} can't be reached. A switchover needs every member available; to "
                "promote a secondary without the primary, fail over with AllowDataLoss.",
            )
        state.switch = _Switch(writer or "", target_arn, data_loss, time.monotonic())
        state.resync_arn = None
        self._wake.set()
        log.info("%s of global cluster %s: %s -> %s", operation, global_id, writer, target_arn)
        self._apply_overlay(item)
        return _wrap_global_cluster(operation, item)

    async def _publish_lag(self, key: str, *, only: set[str] | None = None) -> None:
        """Put one AuroraGlobalDBReplicationLag datapoint per secondary into moto's CloudWatch."""
        if not self._lag and self.default_replication_lag_s is None:
            return
        for item in await self._global_cluster_items(key):
            gist = self._apply_overlay(item)
            writer = gist["writer"]
            for arn in gist["members"]:
                lag = self.replication_lag(arn)
                region = _arn_region(arn)
                if arn == writer or lag is None or region in self._impaired:
                    continue
                if only is not None and arn not in only:
                    continue
                await self._put_lag(key, arn, _arn_region(writer) if writer else None, lag)

    async def _put_lag(self, key: str, arn: str, source_region: str | None, lag_s: float) -> None:
        region, _, cluster_id = _cluster_arn_parts(arn)
        dimension_sets = [[{"Name": "DBClusterIdentifier", "Value": cluster_id}]]
        if source_region:
            dimension_sets.append([{"Name": "SourceRegion", "Value": source_region}])
        now = time.time()
        data = [
            {
                "MetricName": LAG_METRIC,
                "Dimensions": dimensions,
                "Timestamp": now,
                "Value": lag_s * 1000,
                "Unit": "Milliseconds",
            }
            for dimensions in dimension_sets
        ]
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "GraniteServiceVersion20100801.PutMetricData",
            "x-amzn-query-mode": "true",
            "Authorization": _authorization(key, region, "monitoring"),
        }
        body = json.dumps({"Namespace": LAG_NAMESPACE, "MetricData": data}).encode()
        answer = await self.proxy.send_upstream("POST", "/", headers, body)
        if not answer.ok:
            raise RuntimeError(f"moto refused {LAG_METRIC} for {arn}: {answer.body!r}")

    def _next_publish_in(self) -> float:
        """The publish interval, cut short so a finished switch is published at once."""
        wait = self.timing.lag_publish_interval_s
        now = time.monotonic()
        for resource_id in list(self._clusters):
            state = self._settled(resource_id)
            if state.switch is not None:
                done = state.switch.started + self._switch_duration() - now
                wait = min(wait, max(done, 0.0) + 0.01)
        return wait

    async def _publish_forever(self) -> None:
        failing = False
        while True:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._next_publish_in())
                continue  # woken by a change: wait again with the new timing
            except TimeoutError:
                pass
            try:
                await self._publish_lag(self._access_key)
            except Exception as exc:
                if not failing:
                    log.warning("cannot publish %s: %r", LAG_METRIC, exc)
                failing = True
            else:
                failing = False

    # ================================================================ ElastiCache global datastore

    def _datastore(self, global_id: str) -> _Datastore:
        datastore = self._datastores.get(global_id)
        if datastore is None:
            raise _elasticache_error(
                404,
                "GlobalReplicationGroupNotFoundFault",
                f"Global replication group {global_id} not found.",
            )
        return datastore

    def _datastore_of(self, region: str, group: str) -> _Datastore | None:
        for datastore in self._datastores.values():
            if datastore.member(region, group) is not None:
                return datastore
        return None

    def _datastore_dict(self, datastore: _Datastore, *, members: bool) -> dict[str, Any]:
        now = time.monotonic()
        status = datastore.status(now)
        result: dict[str, Any] = {
            "GlobalReplicationGroupId": datastore.id,
            "GlobalReplicationGroupDescription": datastore.description,
            "Status": status,
            "CacheNodeType": datastore.cache_node_type,
            "Engine": datastore.engine,
            "EngineVersion": datastore.engine_version,
            "ClusterEnabled": datastore.cluster_enabled,
            "GlobalNodeGroups": [{"GlobalNodeGroupId": f"{datastore.id}-0001", "Slots": "0-16383"}],
            "AuthTokenEnabled": datastore.auth_token_enabled,
            "TransitEncryptionEnabled": datastore.transit_encryption_enabled,
            "AtRestEncryptionEnabled": datastore.at_rest_encryption_enabled,
            "ARN": datastore.arn,
        }
        if datastore.cluster_enabled:
            result.pop("GlobalNodeGroups")
        if members:
            result["Members"] = [
                {
                    "ReplicationGroupId": m.replication_group_id,
                    "ReplicationGroupRegion": m.region,
                    "Role": m.role,
                    "AutomaticFailover": m.automatic_failover,
                    "Status": "associating" if now < m.associated_at else "associated",
                }
                for m in datastore.members
            ]
        return result

    def _change(self) -> float:
        return self.timing.global_datastore_change_s

    def _busy(self, datastore: _Datastore, status: str) -> None:
        datastore.busy_status = status
        datastore.busy_until = time.monotonic() + self._change()

    def _check_available(self, datastore: _Datastore, what: str) -> None:
        status = datastore.status(time.monotonic())
        if status != "available":
            raise _elasticache_error(
                400,
                "InvalidGlobalReplicationGroupState",
                f"Global replication group {datastore.id} is in {status} state; {what} needs it "
                "available.",
            )

    async def _create_datastore(self, request: AwsRequest) -> AwsAnswer:
        region = request.region or ""
        suffix = _required(request, "GlobalReplicationGroupIdSuffix", ELASTICACHE_XMLNS)
        primary_id = _required(request, "PrimaryReplicationGroupId", ELASTICACHE_XMLNS)
        global_id = f"{_datastore_prefix(region)}-{suffix}"
        if global_id in self._datastores:
            raise _elasticache_error(
                400,
                "GlobalReplicationGroupAlreadyExistsFault",
                f"Global replication group {global_id} already exists.",
            )
        group = await self._replication_group(region, primary_id, request.access_key)
        in_moto = group.find("GlobalReplicationGroupInfo/GlobalReplicationGroupId") is not None
        if self._datastore_of(region, primary_id) or in_moto:
            raise _elasticache_error(
                400,
                "InvalidReplicationGroupState",
                f"Replication group {primary_id} is already a member of a global datastore.",
            )
        arn = _text(group, "ARN") or ""
        account = match[1] if (match := _ARN_ACCOUNT_RE.match(arn)) else "123456789012"
        ready = time.monotonic() + self._change()
        datastore = _Datastore(
            id=global_id,
            description=request.param("GlobalReplicationGroupDescription") or " ",
            arn=f"arn:aws:elasticache::{account}:globalreplicationgroup:{global_id}",
            cache_node_type=_text(group, "CacheNodeType") or "cache.r6g.large",
            engine=_text(group, "Engine") or "redis",
            engine_version=_text(group, "EngineVersion"),
            cluster_enabled=_text(group, "ClusterEnabled") == "true",
            auth_token_enabled=_text(group, "AuthTokenEnabled") == "true",
            transit_encryption_enabled=_text(group, "TransitEncryptionEnabled") == "true",
            at_rest_encryption_enabled=_text(group, "AtRestEncryptionEnabled") == "true",
            members=[
                _DatastoreMember(
                    primary_id,
                    region,
                    "PRIMARY",
                    _text(group, "AutomaticFailover") or "disabled",
                    ready,
                )
            ],
        )
        self._busy(datastore, "creating")
        self._datastores[global_id] = datastore
        return _result(
            "elasticache",
            request.operation,
            {"GlobalReplicationGroup": self._datastore_dict(datastore, members=True)},
        )

    async def _replication_group(self, region: str, group_id: str, key: str | None) -> ET.Element:
        params = {
            "Action": "DescribeReplicationGroups",
            "Version": ELASTICACHE_VERSION,
            "ReplicationGroupId": group_id,
        }
        root = await self._ok_query("elasticache", region, params, key)
        groups = _items(root, "DescribeReplicationGroupsResult/ReplicationGroups")
        if not groups:
            raise _elasticache_error(
                404, "ReplicationGroupNotFoundFault", f"Replication group {group_id} not found."
            )
        return groups[0]

    async def _describe_datastores(self, request: AwsRequest) -> AwsAnswer:
        wanted = request.param("GlobalReplicationGroupId")
        show_members = request.param("ShowMemberInfo") == "true"
        chosen = [self._datastore(wanted)] if wanted else list(self._datastores.values())
        return _result(
            "elasticache",
            request.operation,
            {
                "GlobalReplicationGroups": [
                    self._datastore_dict(d, members=show_members) for d in chosen
                ]
            },
        )

    async def _failover_datastore(self, request: AwsRequest) -> AwsAnswer:
        global_id = _required(request, "GlobalReplicationGroupId", ELASTICACHE_XMLNS)
        region = _required(request, "PrimaryRegion", ELASTICACHE_XMLNS)
        group = _required(request, "PrimaryReplicationGroupId", ELASTICACHE_XMLNS)
        datastore = self._datastore(global_id)
        self._check_available(datastore, "a failover")
        member = datastore.member(region, group)
        if member is None:
            raise _elasticache_error(
                400,
                "InvalidParameterValue",
                f"Replication group {group} in {region} is not a member of global replication "
                f"group {global_id}.",
            )
        if member.role == "PRIMARY":
            raise _elasticache_error(
                400,
                "InvalidParameterValue",
                f"Replication group {group} in {region} is already the primary of global "
                f"replication group {global_id}.",
            )
        self._busy(datastore, "modifying")
        datastore.failover_to = (region, group)
        log.info("failover of global datastore %s to %s in %s", global_id, group, region)
        return _result(
            "elasticache",
            request.operation,
            {"GlobalReplicationGroup": self._datastore_dict(datastore, members=True)},
        )

    async def _disassociate_datastore(self, request: AwsRequest) -> AwsAnswer:
        global_id = _required(request, "GlobalReplicationGroupId", ELASTICACHE_XMLNS)
        group = _required(request, "ReplicationGroupId", ELASTICACHE_XMLNS)
        region = _required(request, "ReplicationGroupRegion", ELASTICACHE_XMLNS)
        datastore = self._datastore(global_id)
        self._check_available(datastore, "removing a secondary")
        member = datastore.member(region, group)
        if member is None or member.role != "SECONDARY":
            raise _elasticache_error(
                400,
                "InvalidParameterValue",
                f"Replication group {group} in {region} is not a secondary of global "
                f"replication group {global_id}.",
            )
        datastore.members.remove(member)
        self._busy(datastore, "modifying")
        return _result(
            "elasticache",
            request.operation,
            {"GlobalReplicationGroup": self._datastore_dict(datastore, members=True)},
        )

    async def _delete_datastore(self, request: AwsRequest) -> AwsAnswer:
        global_id = _required(request, "GlobalReplicationGroupId", ELASTICACHE_XMLNS)
        retain = _required(request, "RetainPrimaryReplicationGroup", ELASTICACHE_XMLNS)
        datastore = self._datastore(global_id)
        if retain != "true":
            raise _elasticache_error(
                400,
                "InvalidParameterValue",
                "RetainPrimaryReplicationGroup must be true: the primary cluster is never "
                "deleted with its global datastore.",
            )
        status = datastore.status(time.monotonic())
        if len(datastore.members) > 1 or status not in ("primary-only", "available"):
            raise _elasticache_error(
                400,
                "InvalidGlobalReplicationGroupState",
                f"Global replication group {global_id} still has secondary clusters or is "
                f"{status}; disassociate the secondaries first.",
            )
        result = self._datastore_dict(datastore, members=True)
        result["Status"] = "deleting"
        del self._datastores[global_id]
        return _result("elasticache", request.operation, {"GlobalReplicationGroup": result})

    async def _check_datastore_join(self, request: AwsRequest) -> AwsAnswer | None:
        """CreateReplicationGroup into a datastore: refuse what AWS refuses, else let moto."""
        global_id = request.param("GlobalReplicationGroupId")
        if not global_id:
            return None
        datastore = self._datastore(global_id)
        status = datastore.status(time.monotonic())
        if status not in ("primary-only", "available"):
            raise _elasticache_error(
                400,
                "InvalidGlobalReplicationGroupState",
                f"Global replication group {global_id} is in {status} state.",
            )
        region = request.region or ""
        if any(m.region == region for m in datastore.members):
            raise _elasticache_error(
                400,
                "InvalidParameterValue",
                f"Global replication group {global_id} already has a member in {region}.",
            )
        return None

    def _joined_datastore(self, request: AwsRequest) -> None:
        global_id = request.param("GlobalReplicationGroupId")
        group = request.param("ReplicationGroupId")
        datastore = self._datastores.get(global_id or "")
        if datastore is None or not group:
            return
        primary = datastore.primary
        datastore.members.append(
            _DatastoreMember(
                group,
                request.region or "",
                "SECONDARY",
                primary.automatic_failover,
                time.monotonic() + self._change(),
            )
        )
        self._busy(datastore, "modifying")

    async def _check_member_delete(self, request: AwsRequest) -> AwsAnswer | None:
        group = request.param("ReplicationGroupId") or ""
        datastore = self._datastore_of(request.region or "", group)
        if datastore is not None:
            raise _elasticache_error(
                400,
                "InvalidReplicationGroupState",
                f"Replication group {group} is a member of global replication group "
                f"{datastore.id}; disassociate it (or delete the datastore) first.",
            )
        return None

    def _rewrite_replication_groups(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        """GlobalReplicationGroupInfo as the datastores say, not as moto guessed it."""
        root, xmlns = _parse(answer.body)
        groups = root.findall(".//ReplicationGroup")
        for group in groups:
            group_id = _text(group, "ReplicationGroupId") or ""
            datastore = self._datastore_of(request.region or "", group_id)
            info = group.find("GlobalReplicationGroupInfo")
            if datastore is None:
                if info is not None:
                    group.remove(info)  # not a member of any datastore the responder made
                continue
            datastore.settle(time.monotonic())
            member = datastore.member(request.region or "", group_id)
            assert member is not None
            if info is None:
                info = ET.SubElement(group, "GlobalReplicationGroupInfo")
            info.clear()
            ET.SubElement(info, "GlobalReplicationGroupId").text = datastore.id
            ET.SubElement(info, "GlobalReplicationGroupMemberRole").text = member.role
        return AwsAnswer(answer.status, answer.headers, _dump(root, xmlns))

    # ================================================================ Auto Scaling

    def _group(self, region: str, group: str) -> _GroupControl:
        return self._groups.setdefault((region, group), _GroupControl())

    async def _group_element(self, region: str, group: str, key: str | None) -> ET.Element:
        params = {
            "Action": "DescribeAutoScalingGroups",
            "Version": AUTOSCALING_VERSION,
            "AutoScalingGroupNames.member.1": group,
        }
        root = await self._ok_query("autoscaling", region, params, key)
        found = _items(root, "DescribeAutoScalingGroupsResult/AutoScalingGroups")
        if not found:
            raise _autoscaling_error(
                f"AutoScalingGroup name not found - AutoScalingGroup {group} not found"
            )
        return found[0]

    async def _observe_group(
        self, region: str, group: str, key: str | None, *, launched_now: bool
    ) -> ET.Element | None:
        try:
            element = await self._group_element(region, group, key)
        except _AwsError:
            return None  # deleted meanwhile
        await self._note_group(region, element, key, launched_now=launched_now)
        return element

    async def _note_group(
        self, region: str, element: ET.Element, key: str | None, *, launched_now: bool
    ) -> None:
        """Record the group's instances: when each launched, and which ones left it."""
        group = _text(element, "AutoScalingGroupName") or ""
        group_arn = _text(element, "AutoScalingGroupARN")
        zones = {
            _text(i, "InstanceId") or "": _text(i, "AvailabilityZone")
            for i in _items(element, "Instances")
        }
        ids = list(zones)
        previous = self._members.get((region, group))
        now = time.time()
        unknown = [i for i in ids if (region, i) not in self._instances]
        if unknown:
            if launched_now:
                times = dict.fromkeys(unknown, now)
            else:
                times = await self._launch_times(region, unknown, key)
            before = len(previous) if previous is not None else len(ids) - len(unknown)
            for number, instance_id in enumerate(unknown, start=1):
                launched = times.get(instance_id, now)
                self._instances[(region, instance_id)] = _Instance(
                    region, instance_id, group, launched
                )
                self._activities.append(
                    _Activity(
                        str(uuid.uuid4()),
                        region,
                        group,
                        group_arn,
                        f"Launching a new EC2 instance: {instance_id}",
                        f"At {_iso(launched)} an instance was started in response to a "
                        "difference between desired and actual capacity, increasing the "
                        f"capacity from {before + number - 1} to {before + number}.",
                        launched,
                        launched + self.timing.instance_launch_s,
                        "Successful",
                        details=json.dumps({"Availability Zone": zones[instance_id]}),
                    )
                )
        for instance_id in ids:
            record = self._instances[(region, instance_id)]
            record.group, record.left_at = group, None
        if previous is not None:
            gone = sorted(previous - set(ids))
            for number, instance_id in enumerate(gone):
                record = self._instances.get((region, instance_id))
                if record is None or record.left_at is not None:
                    continue
                record.left_at = now
                size = len(previous) - number
                self._activities.append(
                    _Activity(
                        str(uuid.uuid4()),
                        region,
                        group,
                        group_arn,
                        f"Terminating EC2 instance: {instance_id}",
                        f"At {_iso(now)} an instance was taken out of service in response to "
                        "a difference between desired and actual capacity, shrinking the "
                        f"capacity from {size} to {size - 1}.",
                        now,
                        now,
                        "Successful",
                    )
                )
        self._members[(region, group)] = set(ids)

    async def _launch_times(self, region: str, ids: list[str], key: str | None) -> dict[str, float]:
        """EC2's LaunchTime of instances launched behind the proxy's back (second precision)."""
        params = {"Action": "DescribeInstances", "Version": EC2_VERSION}
        params.update({f"InstanceId.{n}": i for n, i in enumerate(ids, start=1)})
        answer = await self._query("ec2", region, params, key)
        if not answer.ok:
            return {}
        root, _ = _parse(answer.body)
        times = {}
        for instance in root.iterfind("reservationSet/item/instancesSet/item"):
            instance_id, launched = _text(instance, "instanceId"), _text(instance, "launchTime")
            if instance_id and launched:
                times[instance_id] = _parse_iso(launched)
        return times

    def _lifecycle(self, region: str, instance_id: str, moto_state: str | None) -> str | None:
        record = self._instances.get((region, instance_id))
        if record is None or moto_state != "InService":
            return moto_state
        if time.time() < record.launched_at + self.timing.instance_launch_s:
            return "Pending"
        return moto_state

    async def _rewrite_groups(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        region = request.region or ""
        root, xmlns = _parse(answer.body)
        for element in _items(root, "DescribeAutoScalingGroupsResult/AutoScalingGroups"):
            await self._note_group(region, element, request.access_key, launched_now=False)
            group = _text(element, "AutoScalingGroupName") or ""
            control = self._groups.get((region, group))
            if control is not None and control.wanted_desired is not None:
                _set_text(element, "DesiredCapacity", str(control.wanted_desired))
            if control is not None and control.wanted_min is not None:
                _set_text(element, "MinSize", str(control.wanted_min))
            for instance in _items(element, "Instances"):
                state = self._lifecycle(
                    region, _text(instance, "InstanceId") or "", _text(instance, "LifecycleState")
                )
                if state:
                    _set_text(instance, "LifecycleState", state)
        return AwsAnswer(answer.status, answer.headers, _dump(root, xmlns))

    async def _rewrite_instances(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        region = request.region or ""
        root, xmlns = _parse(answer.body)
        instances = _items(root, "DescribeAutoScalingInstancesResult/AutoScalingInstances")
        unknown = [
            _text(i, "InstanceId") or ""
            for i in instances
            if (region, _text(i, "InstanceId") or "") not in self._instances
        ]
        if unknown:
            times = await self._launch_times(region, unknown, request.access_key)
            for instance in instances:
                instance_id = _text(instance, "InstanceId") or ""
                if instance_id in unknown:
                    self._instances[(region, instance_id)] = _Instance(
                        region,
                        instance_id,
                        _text(instance, "AutoScalingGroupName"),
                        times.get(instance_id, time.time()),
                    )
        for instance in instances:
            state = self._lifecycle(
                region, _text(instance, "InstanceId") or "", _text(instance, "LifecycleState")
            )
            if state:
                _set_text(instance, "LifecycleState", state)
        return AwsAnswer(answer.status, answer.headers, _dump(root, xmlns))

    async def _set_desired_capacity(self, request: AwsRequest) -> AwsAnswer | None:
        region = request.region or ""
        group = request.param("AutoScalingGroupName") or ""
        if not group:
            raise _autoscaling_error("AutoScalingGroupName is required.")
        wanted = _int_param(request, "DesiredCapacity")
        element = await self._group_element(region, group, request.access_key)
        await self._note_group(region, element, request.access_key, launched_now=False)
        low, high = int(_text(element, "MinSize") or 0), int(_text(element, "MaxSize") or 0)
        if wanted > high:
            raise _autoscaling_error(
                f"New SetDesiredCapacity value {wanted} is above max value {high} for the "
                "AutoScalingGroup."
            )
        if wanted < low:
            raise _autoscaling_error(
                f"New SetDesiredCapacity value {wanted} is below min value {low} for the "
                "AutoScalingGroup."
            )
        control = self._groups.get((region, group))
        running = len(_items(element, "Instances"))
        if control is None or not control.no_capacity or wanted <= running:
            if control is not None:
                control.wanted_desired = None
            return None
        before = control.wanted_desired or int(_text(element, "DesiredCapacity") or running)
        control.wanted_desired = wanted
        self._capacity_failure(
            region,
            element,
            f"At {_iso(time.time())} a user request explicitly set group desired capacity "
            f"changing the desired capacity from {before} to {wanted}.",
            running,
            wanted,
        )
        return _result("autoscaling", request.operation, {})

    async def _update_group(self, request: AwsRequest) -> AwsAnswer | None:
        region = request.region or ""
        group = request.param("AutoScalingGroupName") or ""
        control = self._groups.get((region, group))
        min_size = request.param("MinSize")
        desired = request.param("DesiredCapacity")
        if min_size is None and desired is None:
            return None  # no capacity change: moto launches nothing
        # Know the instances from before the call, so those moto launches now are new.
        element = await self._group_element(region, group, request.access_key)
        await self._note_group(region, element, request.access_key, launched_now=False)
        if control is None or not control.no_capacity:
            if control is not None and desired is not None:
                control.wanted_desired = control.wanted_min = None
            return None
        running = len(_items(element, "Instances"))
        current = control.wanted_desired or int(_text(element, "DesiredCapacity") or running)
        wanted = int(desired) if desired is not None else current
        if min_size is not None:
            wanted = max(wanted, int(min_size))
        if wanted <= running:
            control.wanted_desired = control.wanted_min = None
            return None
        # moto would launch at once: give it only what is already running, keep the rest.
        params = dict(request.params)
        params["DesiredCapacity"] = str(running)
        if min_size is not None:
            params["MinSize"] = str(min(int(min_size), running))
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-length", "content-encoding")
        }
        answer = await self.proxy.send_upstream(
            request.method, request.path, headers, urlencode(params).encode()
        )
        if not answer.ok:
            return answer
        control.wanted_desired = wanted
        raised_min = min_size is not None and int(min_size) > running
        control.wanted_min = int(min_size) if raised_min and min_size is not None else None
        self._capacity_failure(
            region,
            element,
            f"At {_iso(time.time())} a user request update of AutoScalingGroup constraints "
            f"changing the desired capacity from {current} to {wanted}.",
            running,
            wanted,
        )
        return answer

    def _capacity_failure(
        self, region: str, element: ET.Element, cause: str, running: int, wanted: int
    ) -> None:
        """The Failed activity AWS records when EC2 has no capacity for the launch."""
        zones = [z.text or "" for z in _items(element, "AvailabilityZones")] or [f"{region}a"]
        types = [_text(i, "InstanceType") for i in _items(element, "Instances")]
        kind = next((t for t in types if t), None)
        capacity = f"{kind} capacity" if kind else "capacity"
        others = ", ".join(zones[1:])
        message = (
            f"We currently do not have sufficient {capacity} in the Availability Zone you "
            f"requested ({zones[0]}). Our system will be working on provisioning additional "
            "capacity."
            + (
                f" You can currently get {capacity} by not specifying an Availability Zone in "
                f"your request or choosing {others}."
                if others
                else ""
            )
            + " Launching EC2 instance failed."
        )
        now = time.time()
        self._activities.append(
            _Activity(
                str(uuid.uuid4()),
                region,
                _text(element, "AutoScalingGroupName") or "",
                _text(element, "AutoScalingGroupARN"),
                f"Launching a new EC2 instance.  Status Reason: {message}",
                f"{cause}  At {_iso(now)} an instance was started in response to a difference "
                f"between desired and actual capacity, increasing the capacity from {running} "
                f"to {wanted}.",
                now,
                now,
                "Failed",
                message,
            )
        )
        log.info(
            "no capacity for %s in %s: held at %d of %d instances",
            _text(element, "AutoScalingGroupName"),
            region,
            running,
            wanted,
        )

    async def _after_scaling_call(self, request: AwsRequest) -> None:
        region = request.region or ""
        group = request.param("AutoScalingGroupName")
        if group is None and request.param("InstanceId"):
            record = self._instances.get((region, request.param("InstanceId") or ""))
            group = record.group if record else None
        if not group:
            return
        # New instances launched just now, unless moto had the group before the responder did.
        known = (region, group) in self._members
        launched_now = known or request.operation == "CreateAutoScalingGroup"
        await self._observe_group(region, group, request.access_key, launched_now=launched_now)

    async def _describe_activities(self, request: AwsRequest) -> AwsAnswer:
        region = request.region or ""
        group = request.param("AutoScalingGroupName")
        wanted_ids = {v for k, v in request.params.items() if k.startswith("ActivityIds.member.")}
        limit = _int_param(request, "MaxRecords") if request.param("MaxRecords") else 100
        if group:
            await self._observe_group(region, group, request.access_key, launched_now=False)
        now = time.time()
        chosen = [
            a
            for a in sorted(self._activities, key=lambda a: a.start, reverse=True)
            if a.region == region
            and (not group or a.group == group)
            and (not wanted_ids or a.activity_id in wanted_ids)
        ][:limit]
        activities = []
        for activity in chosen:
            done = now >= activity.end
            entry: dict[str, Any] = {
                "ActivityId": activity.activity_id,
                "AutoScalingGroupName": activity.group,
                "Description": activity.description,
                "Cause": activity.cause,
                "StartTime": activity.start,
                "EndTime": activity.end if done else None,
                "StatusCode": activity.final_status if done else "PreInService",
                "StatusMessage": activity.status_message,
                "Progress": 100 if done else 30,
                "Details": activity.details,
                "AutoScalingGroupARN": activity.group_arn,
            }
            activities.append(entry)
        return _result("autoscaling", request.operation, {"Activities": activities})

    # ---- target health

    async def _rewrite_target_health(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        region = request.region or ""
        root, xmlns = _parse(answer.body)
        container = root.find("DescribeTargetHealthResult/TargetHealthDescriptions")
        if container is None:
            return answer
        explicit = any(k.startswith("Targets.member.") for k in request.params)
        descriptions = list(container)
        ids = [_text(d, "Target/Id") or "" for d in descriptions]
        unknown = [i for i in ids if i.startswith("i-") and (region, i) not in self._instances]
        if unknown:
            await self._learn_instances(region, unknown, request.access_key)
        now = time.time()
        for description, instance_id in zip(descriptions, ids, strict=True):
            record = self._instances.get((region, instance_id))
            if record is None or record.group is None:
                continue
            state = _text(description, "TargetHealth/State")
            if state not in ("healthy", "initial", "unhealthy"):
                continue  # moto's unused/draining stand
            forced = self._target_state(record, now)
            if forced == "gone":
                await self._deregister(request, description, record)
                if explicit:
                    _set_target_health(description, "unused", "Target.NotRegistered")
                else:
                    container.remove(description)
            elif forced is not None:
                reason = {
                    "initial": "Elb.RegistrationInProgress",
                    "unhealthy": "Target.FailedHealthChecks",
                    "draining": "Target.DeregistrationInProgress",
                }[forced]
                _set_target_health(description, forced, reason)
        return AwsAnswer(answer.status, answer.headers, _dump(root, xmlns))

    def _target_state(self, record: _Instance, now: float) -> str | None:
        """What AWS would report for an Auto Scaling instance's target, if not moto's healthy."""
        if record.left_at is not None:
            if now < record.left_at + self.timing.target_deregistration_s:
                return "draining"
            return "gone"
        if now < record.launched_at + self.timing.instance_launch_s:
            return "initial"
        control = self._groups.get((record.region, record.group or ""))
        since = control.never_healthy_since if control else None
        if since is not None and record.launched_at >= since:
            return "unhealthy"
        return None

    async def _learn_instances(self, region: str, ids: list[str], key: str | None) -> None:
        """Which Auto Scaling group (if any) each instance belongs to, and when it launched."""
        params = {"Action": "DescribeAutoScalingInstances", "Version": AUTOSCALING_VERSION}
        params.update({f"InstanceIds.member.{n}": i for n, i in enumerate(ids, start=1)})
        answer = await self._query("autoscaling", region, params, key)
        if not answer.ok:
            return  # leave moto's answer alone rather than fail the caller's call
        root, _ = _parse(answer.body)
        groups = {
            _text(i, "InstanceId"): _text(i, "AutoScalingGroupName")
            for i in _items(root, "DescribeAutoScalingInstancesResult/AutoScalingInstances")
        }
        times = await self._launch_times(region, ids, key)
        for instance_id in ids:
            self._instances[(region, instance_id)] = _Instance(
                region, instance_id, groups.get(instance_id), times.get(instance_id, time.time())
            )

    async def _deregister(
        self, request: AwsRequest, description: ET.Element, record: _Instance
    ) -> None:
        """End a scaled-in target's draining in moto too, so every later call agrees."""
        if record.deregistered:
            return
        params = {
            "Action": "DeregisterTargets",
            "Version": ELBV2_VERSION,
            "TargetGroupArn": request.param("TargetGroupArn") or "",
            "Targets.member.1.Id": record.instance_id,
        }
        port = _text(description, "Target/Port")
        if port:
            params["Targets.member.1.Port"] = port
        answer = await self._query(
            "elasticloadbalancing", record.region, params, request.access_key
        )
        record.deregistered = answer.ok

    # ================================================================ control API

    async def control(self, request: web.Request, sub: str) -> web.StreamResponse:
        routes: dict[str, set[str]] = {
            "": {"GET"},
            "/timing": {"GET", "POST"},
            "/impairment": {"POST"},
            "/replication-lag": {"POST"},
            "/writer": {"GET"},
            "/auto-scaling": {"POST"},
        }
        if sub not in routes:
            return _json_error(404, f"no control endpoint {request.path}")
        if request.method not in routes[sub]:
            allowed = ", ".join(sorted(routes[sub]))
            return web.json_response(
                {"error": f"use {allowed}", "field": None}, status=405, headers={"Allow": allowed}
            )
        try:
            if request.method == "GET":
                return await self._control_get(request, sub)
            body = await request.read()
            try:
                data = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _json_error(400, "the body is not valid JSON")
            if not isinstance(data, dict):
                return _json_error(400, "the body must be a JSON object")
            return await self._control_post(sub, data)
        except DrControlError as exc:
            return _json_error(400, str(exc), exc.field)
        except _AwsError as exc:
            return _json_error(502, f"moto answered {exc.answer.status}: {exc.answer.body!r}")

    async def _control_get(self, request: web.Request, sub: str) -> web.Response:
        if sub == "/timing":
            return web.json_response(dataclasses.asdict(self.timing))
        if sub == "/writer":
            global_id = request.query.get("global_cluster")
            if not global_id:
                raise DrControlError("global_cluster", "is required (?global_cluster=<id>)")
            item = await self._global_cluster_item(global_id, self._access_key)
            if item is None:
                return _json_error(404, f"no global cluster {global_id}", "global_cluster")
            gist = self._apply_overlay(item)
            return web.json_response(
                {
                    "global_cluster": global_id,
                    "writer": gist["writer"],
                    "failover_state": gist["failover_state"],
                }
            )
        return web.json_response(
            {
                "timing": dataclasses.asdict(self.timing),
                "impaired_regions": sorted(self._impaired),
                "replication_lag": dict(self._lag),
                "auto_scaling": [self.auto_scaling_controls(r, g) for r, g in self._groups],
                "global_datastores": sorted(self._datastores),
            }
        )

    async def _control_post(self, sub: str, data: dict[str, Any]) -> web.Response:
        if sub == "/timing":
            timing = self.set_timing(**data)
            return web.json_response(dataclasses.asdict(timing))
        if sub == "/impairment":
            _only(data, {"region", "impaired"})
            region = _str_field(data, "region")
            if _bool_field(data, "impaired", required=True):
                self.impair_region(region)
            else:
                self.restore_region(region)
            return web.json_response({"impaired_regions": sorted(self._impaired)})
        if sub == "/replication-lag":
            _only(data, {"db_cluster_arn", "seconds"})
            arn = _str_field(data, "db_cluster_arn")
            if "seconds" not in data:
                raise DrControlError("seconds", "is required")
            await self.set_replication_lag(arn, data["seconds"])
            return web.json_response({"db_cluster_arn": arn, "seconds": self._lag[arn]})
        _only(data, {"region", "group", "never_healthy", "no_capacity"})
        region = _check_region(_str_field(data, "region"))
        group = _check_group(_str_field(data, "group"))
        never = _bool_field(data, "never_healthy", required=False)
        blocked = _bool_field(data, "no_capacity", required=False)
        if never is None and blocked is None:
            raise DrControlError("never_healthy", "give never_healthy and/or no_capacity")
        if never is not None:
            self.set_never_healthy(region, group, never)
        if blocked is not None:
            await self.set_no_capacity(region, group, blocked)
        return web.json_response(self.auto_scaling_controls(region, group))


# --------------------------------------------------------------------------- helpers


def _authorization(key: str, region: str, service: str) -> str:
    """A SigV4-shaped Authorization header: moto reads the key, Region and service from it."""
    date = time.strftime("%Y%m%d", time.gmtime())
    return (
        f"AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


def _required(request: AwsRequest, name: str, xmlns: str) -> str:
    value = request.param(name)
    if not value:
        raise _error(
            400, "MissingParameter", f"The request must contain the parameter {name}.", xmlns
        )
    return value


def _int_param(request: AwsRequest, name: str) -> int:
    value = request.param(name)
    try:
        return int(value or "")
    except ValueError:
        raise _autoscaling_error(f"Invalid value for {name}: {value!r}") from None


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _cluster_arn_parts(arn: object) -> tuple[str, str, str]:
    """(region, account, cluster id) of an Aurora DB cluster ARN; DrControlError otherwise."""
    match = _CLUSTER_ARN_RE.match(arn) if isinstance(arn, str) else None
    if match is None:
        raise DrControlError(
            "db_cluster_arn",
            f"must be a DB cluster ARN (arn:aws:rds:<region>:<account>:cluster:<id>); got {arn!r}",
        )
    return match[1], match[2], match[3]


def _resolve_member(target: str, members: Iterable[str], region: str) -> str | None:
    """A member named by ARN, or by cluster identifier in the caller's Region as AWS allows."""
    for arn in members:
        if arn == target:
            return arn
    for arn in members:
        match = _CLUSTER_ARN_RE.match(arn)
        if match and match[1] == region and match[3].lower() == target.lower():
            return arn
    return None


def _wrap_global_cluster(operation: str, item: ET.Element) -> AwsAnswer:
    """``<{operation}Response>`` around one global cluster element taken from a describe."""
    request_id = str(uuid.uuid4())
    root = ET.Element(f"{operation}Response", xmlns=RDS_XMLNS)
    result = ET.SubElement(root, f"{operation}Result")
    item.tag = "GlobalCluster"
    result.append(item)
    meta = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(meta, "RequestId").text = request_id
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}
    )
    return AwsAnswer(200, headers, ET.tostring(root, encoding="utf-8"))


def _set_target_health(description: ET.Element, state: str, reason: str) -> None:
    health = description.find("TargetHealth")
    if health is None:
        health = ET.SubElement(description, "TargetHealth")
    health.clear()
    ET.SubElement(health, "State").text = state
    ET.SubElement(health, "Reason").text = reason
    ET.SubElement(health, "Description").text = _TARGET_DESCRIPTION[reason]


_TARGET_DESCRIPTION = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
    "Target.NotRegistered": "Target is not registered to the target group",
}


def _datastore_prefix(region: str) -> str:
    known = GLOBAL_DATASTORE_PREFIX.get(region)
    if known:
        return known
    letters = "abcdefghijklmnopqrstuvwxyz"
    digest = uuid.uuid5(uuid.NAMESPACE_DNS, region).int
    return "".join(letters[(digest >> (5 * n)) % 26] for n in range(5))


def _check_region(region: object) -> str:
    if not isinstance(region, str) or not _REGION_RE.match(region):
        raise DrControlError("region", f"must be an AWS Region such as us-east-1; got {region!r}")
    return region


def _check_group(group: object) -> str:
    if not isinstance(group, str) or not group.strip():
        raise DrControlError("group", f"must be an Auto Scaling group name; got {group!r}")
    return group


def _only(data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise DrControlError(str(key), "unknown field")


def _str_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise DrControlError(name, "is required")
    if not isinstance(value, str) or not value:
        raise DrControlError(name, f"must be a non-empty string; got {value!r}")
    return value


def _bool_field(data: Mapping[str, Any], name: str, *, required: bool) -> bool | None:
    if name not in data:
        if required:
            raise DrControlError(name, "is required")
        return None
    value = data[name]
    if not isinstance(value, bool):
        raise DrControlError(name, f"must be true or false; got {value!r}")
    return value


def _json_error(status: int, message: str, field_name: str | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field_name}, status=status)
