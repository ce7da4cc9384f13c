"""The Lambda forwarder, called as Lambda would call it, against the real dev server."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.alarms import lambda_forwarder
from failover.alarms.payloads import PayloadError
from failover.config import parse_config
from failover.models import Outcome
from failover.names import failover_workflow_id
from sandbox.stack import sandbox_config
from tests.conftest import Stack
from tests.sns_signing import alarm_message
from tests.test_receiver import (
    ALARM,
    assert_confirmed_switch,
    eventbridge_event,
    failover_result,
    kill_primary,
    receiver_config,
    same_client,
)

pytestmark = pytest.mark.slow


def sns_invocation(message: str) -> dict[str, Any]:
    """What SNS hands a subscribed function: the notification inside a record."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:search-alarms:1",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:search-alarms",
                    "Subject": "ALARM",
                    "Message": message,
                    "Timestamp": "2026-11-26T10:00:00.000Z",
                },
            }
        ]
    }


def alarm_action_invocation(name: str, state: str = "ALARM") -> dict[str, Any]:
    """What a CloudWatch alarm's own Lambda action sends."""
    return {
        "source": "aws.cloudwatch",
        "alarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        "accountId": "123456789012",
        "time": "2026-11-26T10:00:00.000+0000",
        "region": "us-east-1",
        "alarmData": {
            "alarmName": name,
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "x"},
            "previousState": {"value": "OK", "reason": "ok", "timestamp": "x"},
            "configuration": {"metrics": []},
        },
    }


def test_each_invocation_shape_is_understood() -> None:
    for event in (
        sns_invocation(alarm_message(ALARM)),
        eventbridge_event(ALARM),
        alarm_action_invocation(ALARM),
    ):
        [change] = lambda_forwarder.changes_in(event)
        assert change.name == ALARM
        assert change.notice is not None and change.notice.state == "firing"
    with pytest.raises(PayloadError):
        lambda_forwarder.changes_in({"hello": "world"})


async def test_sns_invocation_makes_a_confirmed_failover(stack: Stack, tmp_path: Path) -> None:
    config = receiver_config(stack.config, ca=None, monitors=False)
    await kill_primary(stack)
    outcomes = await lambda_forwarder.forward(
        sns_invocation(alarm_message(ALARM)), config, same_client(stack.client)
    )
    assert len(outcomes) == 1 and "started or joined" in outcomes[0]
    result = await failover_result(stack, stack.cluster.name)
    assert_confirmed_switch(result, stack, by=ALARM)


async def test_handler_from_the_environment(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real entry point: config file and Temporal address from the environment. The
    cluster is healthy, so the failover it starts confirms nothing and moves nothing."""
    config = receiver_config(stack.config, ca=None, monitors=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    monkeypatch.setenv("FAILOVER_CONFIG", str(path))
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.client.service_client.config.target_host)
    monkeypatch.delenv("TEMPORAL_API_KEY_SECRET", raising=False)
    lambda_forwarder._config.cache_clear()
    try:
        answer = await asyncio.to_thread(
            lambda_forwarder.handler, alarm_action_invocation(ALARM), None
        )
        ignored = await asyncio.to_thread(
            lambda_forwarder.handler, alarm_action_invocation("not-ours"), None
        )
    finally:
        lambda_forwarder._config.cache_clear()
    assert json.dumps(answer)  # what Lambda returns must be JSON
    assert failover_workflow_id(stack.cluster.name) in answer["forwarded"][0]
    assert ignored == {"forwarded": ["not-ours: ignored (no cluster for it)"]}
    result = await failover_result(stack, stack.cluster.name)
    assert result.trigger == "alarm" and result.result == Outcome.NOT_CONFIRMED


def test_handler_logs_one_line_per_alarm_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever may publish to the topic writes the alarm's name: a newline, a carriage
    return, NUL, an ANSI escape or a bidi control in it is escaped, never a second line.
    Unmapped alarms, so Temporal is never asked."""
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:9",
        switch={
            "type": "route53",
            "hosted_zone_id": "Z0LAMBDA",
            "record_name": "search.example.internal.",
            "primary_value": "primary.example.internal",
            "standby_value": "standby.example.internal",
        },
        primary_nodes=["http://127.0.0.1:9"],
        standby_nodes=["http://127.0.0.1:9"],
    )
    config = receiver_config(parse_config(raw), ca=None, monitors=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    monkeypatch.setenv("FAILOVER_CONFIG", str(path))
    names = {
        "x\nalarm forwarded: failover-catalog run 1 started": r"x\nalarm forwarded: failover-",
        "x\r\x00y": r"x\r\x00y",
        "x\x1b[31m\u202edenwo\u2066": r"x\x1b[31m\u202edenwo\u2066",
    }
    event = sns_invocation(alarm_message("unused"))
    [record] = event["Records"]
    event["Records"] = [
        {**record, "Sns": {**record["Sns"], "Message": alarm_message(name)}} for name in names
    ]
    caplog.set_level(logging.INFO, logger="failover.lambda")
    lambda_forwarder._config.cache_clear()
    try:
        answer = lambda_forwarder.handler(event, None)
    finally:
        lambda_forwarder._config.cache_clear()
    assert answer == {"forwarded": [f"{name}: ignored (no cluster for it)" for name in names]}
    lines = [r.getMessage() for r in caplog.records if r.name == "failover.lambda"]
    assert len(lines) == len(names)
    for line, shown in zip(lines, names.values(), strict=True):
        assert line.isprintable(), line
        assert line.startswith(f"alarm {shown}") and line.endswith(": ignored (no cluster for it)")
