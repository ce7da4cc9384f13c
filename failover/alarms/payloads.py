"""Alarm payloads (CloudWatch via SNS or EventBridge, Alertmanager) and which cluster each names.

Each source's body is validated by a model with the field names the source uses; what
comes out is an `AlarmNotice` per alarm, and the cluster it maps to by config. Nothing
here does I/O: the receiver and the Lambda forwarder share it, and tests call it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from failover.config import AppConfig, ClusterConfig
from failover.models import AlarmNotice, AlarmSource

MAX_DETAIL = 300

# Stable reason prefixes for refused payloads (400) and unrouted alarms (202).
BAD_PAYLOAD = "bad payload"
NOT_AN_ALARM = "not an alarm"
UNMAPPED = "ignored: no cluster for alarm"
NOT_ACTIONABLE = "ignored: state"


class PayloadError(ValueError):
    """The body is not what this endpoint accepts; the message names what is wrong."""


class _Lenient(BaseModel):
    # Sources add fields over time; only the ones read here are checked.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class CloudWatchAlarmMessage(_Lenient):
    """The SNS Message of a CloudWatch alarm action."""

    AlarmName: str = Field(min_length=1, max_length=255)
    NewStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    NewStateReason: str = ""
    OldStateValue: str | None = None


class EventBridgeAlarmState(_Lenient):
    value: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    reason: str = ""


class EventBridgeAlarmDetail(_Lenient):
    alarmName: str = Field(min_length=1, max_length=255)
    state: EventBridgeAlarmState


class EventBridgeAlarmEvent(_Lenient):
    """A "CloudWatch Alarm State Change" event, as an API destination delivers it."""

    id: str = Field(min_length=1, max_length=256)
    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: EventBridgeAlarmDetail


class Alert(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = ""


class AlertmanagerWebhook(_Lenient):
    """Alertmanager's webhook body, version 4."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(min_length=1, max_length=1000)


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise PayloadError(f"{BAD_PAYLOAD}: body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{BAD_PAYLOAD}: not valid JSON: {exc.msg} at char {exc.pos}") from None


def validation_problem(error: ValidationError) -> str:
    """Field paths and messages only: never the values, which may hold anything."""
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        path = ".".join(str(p) for p in item["loc"]) or "(body)"
        problems.append(f"{path}: {item['msg']}")
    return "; ".join(problems)


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], data: object, what: str) -> M:
    if not isinstance(data, dict):
        raise PayloadError(f"{BAD_PAYLOAD}: {what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(f"{NOT_AN_ALARM}: {what}: {validation_problem(exc)}") from None


@dataclass(frozen=True)
class CloudWatchChange:
    """A CloudWatch alarm's new state; `notice` is None for INSUFFICIENT_DATA, which says
    nothing about the cluster."""

    name: str
    raw_state: str
    notice: AlarmNotice | None


def _change(
    source: AlarmSource, name: str, raw_state: str, reason: str, event_id: str
) -> CloudWatchChange:
    state = {"ALARM": "firing", "OK": "resolved"}.get(raw_state)
    notice = (
        None
        if state is None
        else AlarmNotice(
            source=source,
            name=name,
            state=state,  # type: ignore[arg-type]
            detail=reason[:MAX_DETAIL],
            event_id=event_id,
        )
    )
    return CloudWatchChange(name, raw_state, notice)


def from_sns_message(
    message: str, *, message_id: str, source: AlarmSource = "sns"
) -> CloudWatchChange:
    """The Message of an SNS Notification: a CloudWatch alarm state change."""
    try:
        data = json.loads(message)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"{NOT_AN_ALARM}: the SNS Message is not JSON ({exc.msg}); "
            "only CloudWatch alarm notifications are accepted"
        ) from None
    alarm = _validated(CloudWatchAlarmMessage, data, "the SNS Message")
    return _change(source, alarm.AlarmName, alarm.NewStateValue, alarm.NewStateReason, message_id)


def from_eventbridge(data: object) -> CloudWatchChange:
    event = _validated(EventBridgeAlarmEvent, data, "the event")
    state = event.detail.state
    return _change("eventbridge", event.detail.alarmName, state.value, state.reason, event.id)


def from_alertmanager(data: object) -> list[tuple[Alert, AlarmNotice]]:
    webhook = _validated(AlertmanagerWebhook, data, "the webhook")
    found = []
    for alert in webhook.alerts:
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        name = alert.labels.get("alertname", "(no alertname)")
        found.append(
            (
                alert,
                AlarmNotice(
                    source="alertmanager",
                    name=name,
                    state=alert.status,
                    detail=summary[:MAX_DETAIL],
                    event_id=alert.fingerprint,
                ),
            )
        )
    return found


def cluster_for_alarm(config: AppConfig, name: str) -> ClusterConfig | None:
    """The cluster a CloudWatch alarm name is mapped to (config keeps names unique)."""
    for cluster in config.clusters:
        if name in cluster.alarms.cloudwatch:
            return cluster
    return None


def clusters_for_labels(config: AppConfig, labels: dict[str, str]) -> list[ClusterConfig]:
    """Every cluster with a label set that the alert's labels include."""
    return [
        cluster
        for cluster in config.clusters
        if any(
            all(labels.get(k) == v for k, v in matcher.items())
            for matcher in cluster.alarms.alertmanager
        )
    ]
