"""A Lambda handler that forwards CloudWatch alarms to Temporal, for teams with no HTTP endpoint.

Subscribe it to the alarm's SNS topic, target it from an EventBridge rule on "CloudWatch
Alarm State Change", or name it as the alarm's own Lambda action. AWS invokes it, so
there is no signature to check; it maps the alarm by the same config as the receiver
and hands it on the same way (`operations.deliver_alarm`): to the cluster's monitor, or
straight to `failover-<cluster>`, which confirms the fault before anything moves.

Environment:
- FAILOVER_CONFIG: path of the YAML config in the deployment package (default config.yaml)
- TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE: the Temporal frontend and namespace
- TEMPORAL_TLS: "true" for TLS (Temporal Cloud and most self-hosted frontends)
- TEMPORAL_API_KEY_SECRET: name or ARN of a Secrets Manager secret holding the API key
  (the key itself never goes in the environment or the config)
- FAILOVER_PAYLOAD_KEYS_SECRET_ID (or FAILOVER_PAYLOAD_KEYS_FILE): the payload keys, when
  the workers encrypt payloads (failover.codec); read once per warm container

A failure to reach Temporal raises, so Lambda's own retries (twice, for SNS and
EventBridge invocations) deliver the alarm again; add an on-failure destination or DLQ.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter

from failover.alarms.payloads import (
    CloudWatchChange,
    PayloadError,
    cluster_for_alarm,
    from_eventbridge,
    from_sns_message,
)
from failover.client.operations import deliver_alarm
from failover.codec import data_converter_from_env
from failover.config import AppConfig, load_config
from failover.logs import escape
from failover.process import exit_now

log = logging.getLogger("failover.lambda")
log.setLevel(logging.INFO)


def changes_in(event: dict[str, Any]) -> list[CloudWatchChange]:
    """The alarm changes an invocation carries, whichever service invoked the function."""
    if "Records" in event:  # SNS
        found = []
        for record in event["Records"]:
            message = record.get("Sns") or {}
            found.append(
                from_sns_message(
                    message.get("Message", ""), message_id=message.get("MessageId", "")
                )
            )
        return found
    if "alarmData" in event:  # the alarm's own Lambda action
        data = event["alarmData"]
        return [
            from_eventbridge(
                {
                    "id": f"{event.get('alarmArn', '')}@{event.get('time', '')}",
                    "source": "aws.cloudwatch",
                    "detail-type": "CloudWatch Alarm State Change",
                    "detail": data,
                }
            )
        ]
    return [from_eventbridge(event)]  # EventBridge


async def forward(
    event: dict[str, Any], config: AppConfig, connect: Callable[[], Awaitable[Client]]
) -> list[str]:
    """Hands each mapped ALARM/OK change to Temporal; returns what was done for each."""
    outcomes: list[str] = []
    client: Client | None = None
    for change in changes_in(event):
        cluster = cluster_for_alarm(config, change.name)
        if cluster is None or change.notice is None:
            why = "no cluster for it" if cluster is None else f"state {change.raw_state}"
            outcomes.append(f"{change.name}: ignored ({why})")
            continue
        client = client or await connect()
        notice = change.notice.model_copy(update={"source": "lambda"})
        done = await deliver_alarm(client, config, cluster, notice)
        outcomes.append(f"{change.name}: {done}")
    return outcomes


@cache
def _config() -> AppConfig:
    return load_config(os.environ.get("FAILOVER_CONFIG", "config.yaml"))


def _api_key() -> str | None:
    secret = os.environ.get("TEMPORAL_API_KEY_SECRET")
    if not secret:
        return None
    import boto3

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]


@cache
def _data_converter() -> DataConverter:
    return data_converter_from_env()


async def _connect() -> Client:
    return await Client.connect(
        os.environ["TEMPORAL_ADDRESS"],
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        tls=os.environ.get("TEMPORAL_TLS", "").lower() == "true",
        api_key=_api_key(),
        data_converter=_data_converter(),
    )


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point."""
    try:
        outcomes = asyncio.run(forward(event, _config(), _connect))
    except PayloadError as exc:
        # Not an alarm: retrying cannot help, so report and return.
        log.warning("not forwarded: %s", escape(exc))
        return {"forwarded": [], "error": str(exc)}
    for outcome in outcomes:
        # The alarm's name is the sender's text: one line per alarm, whatever it holds.
        log.info("alarm %s", escape(outcome))
    return {"forwarded": outcomes}


if __name__ == "__main__":  # a local try: python -m failover.alarms.lambda_forwarder < event.json
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(handler(json.load(sys.stdin), None)), flush=True)
    exit_now(0)
