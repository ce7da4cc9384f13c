"""The alarm receiver on the real dev server: signed SNS, EventBridge and Alertmanager alarms
start confirmed failovers; forged, stale, replayed, oversized or unauthenticated ones start
nothing, each refused with its own status and reason.

SNS signatures come from a test CA (tests/sns_signing.py) whose signing certificate is
served over https on loopback; the receiver is configured to trust that host and CA,
the only difference from production, where only `sns.<region>.amazonaws.com` is trusted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from failover import logs
from failover.alarms import payloads as alarms
from failover.alarms import sns
from failover.alarms.receiver import (
    AlarmReceiver,
    ReceiverSecrets,
    hmac_headers,
    running_receiver,
)
from failover.client.operations import monitor_status
from failover.config import AppConfig, parse_config
from failover.models import FailoverResult, MonitorInput, Outcome
from failover.names import failover_workflow_id, monitor_workflow_id
from sandbox.net import free_port_on
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, sandbox_config
from sandbox.waiting import wait_for
from tests.conftest import Stack
from tests.sns_signing import (
    EXPIRED_CERT_PATH,
    NOT_PEM_PATH,
    OTHER_TOPIC_ARN,
    TOPIC_ARN,
    CertServer,
    SigningCa,
    SnsSigner,
    alarm_message,
    new_key,
    sns_time,
)

pytestmark = pytest.mark.slow

ALARM = "search-cluster-red"
ALERT_LABELS = {"alertname": "SearchClusterDown", "severity": "critical"}
EVENTBRIDGE_SECRET = "eb-0123456789abcdef-secret"
ALERTMANAGER_TOKEN = "am-0123456789abcdef-token"
SECRETS_ENV = {"TEST_EVENTBRIDGE_SECRET": EVENTBRIDGE_SECRET, "TEST_AM_TOKEN": ALERTMANAGER_TOKEN}
DEADLINE_S = 30.0


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> SigningCa:
    return SigningCa(tmp_path_factory.mktemp("sns-ca"))


@pytest_asyncio.fixture(scope="module")
async def cert_server(test_ca: SigningCa) -> AsyncIterator[CertServer]:
    server = CertServer(test_ca)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def signer(test_ca: SigningCa, cert_server: CertServer) -> SnsSigner:
    return SnsSigner(test_ca, cert_server.cert_url)


def receiver_config(
    base: AppConfig,
    *,
    ca: SigningCa | None,
    monitors: bool,
    rate_limit: str = "100000/minute",
    temporal_timeout: float = 5.0,
    sns_settings: dict[str, Any] | None = None,
) -> AppConfig:
    """The test stack's config with alarms mapped to its cluster and a receiver section."""
    raw = base.model_dump(mode="json")
    cluster = raw["clusters"][0]
    cluster["alarms"] = {
        "cloudwatch": [ALARM],
        "alertmanager": [{**ALERT_LABELS, "cluster": cluster["name"]}],
    }
    cluster["monitor"]["enabled"] = monitors
    raw["receiver"] = {
        "host": "127.0.0.1",
        "port": 0,
        "rate_limit": rate_limit,
        "temporal_timeout_seconds": temporal_timeout,
        "sns": {
            "topic_arns": [TOPIC_ARN],
            # Test-only trust: the loopback certificate server and its CA.
            **(
                {"cert_host_pattern": r"127\.0\.0\.1:[0-9]+", "cert_ca_file": str(ca.ca_file)}
                if ca is not None
                else {}
            ),
            **(sns_settings or {}),
        },
        "eventbridge": {"secret_env": "TEST_EVENTBRIDGE_SECRET"},
        "alertmanager": {"bearer_token_env": "TEST_AM_TOKEN"},
    }
    return parse_config(raw)


@dataclass
class Receiver:
    url: str
    receiver: AlarmReceiver
    cluster: str
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30))

    async def post(
        self,
        endpoint: str,
        body: bytes | dict[str, Any] | list[Any],
        *,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = dict(headers or {})
        if content_type is None:
            content_type = "text/plain; charset=UTF-8" if endpoint == "sns" else "application/json"
        if content_type:
            sent["Content-Type"] = content_type
        return await self.http.post(f"{self.url}/alarms/{endpoint}", content=raw, headers=sent)

    async def sns(self, message: dict[str, Any]) -> httpx.Response:
        return await self.post("sns", message)

    async def eventbridge(self, event: dict[str, Any], token: str = EVENTBRIDGE_SECRET):
        return await self.post("eventbridge", event, headers={"X-Failover-Token": token})

    async def alertmanager(self, webhook: dict[str, Any], token: str = ALERTMANAGER_TOKEN):
        return await self.post(
            "alertmanager", webhook, headers={"Authorization": f"Bearer {token}"}
        )


@contextlib.asynccontextmanager
async def receiving(
    config: AppConfig, connect: Callable[[], Awaitable[Client]]
) -> AsyncIterator[Receiver]:
    assert config.receiver is not None
    receiver = AlarmReceiver(
        config,
        connect=connect,
        secrets=ReceiverSecrets.from_env(config.receiver, SECRETS_ENV),
    )
    async with running_receiver(receiver) as server:
        client = Receiver(f"http://127.0.0.1:{server.port}", receiver, config.clusters[0].name)
        try:
            yield client
        finally:
            await client.http.aclose()


def same_client(client: Client) -> Callable[[], Awaitable[Client]]:
    async def connect() -> Client:
        return client

    return connect


def eventbridge_event(name: str = ALARM, state: str = "ALARM") -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-26T10:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {"value": state, "reason": "Threshold Crossed: 3 datapoints"},
            "previousState": {"value": "OK", "reason": "ok"},
            "configuration": {"metrics": []},
        },
    }


def alertmanager_webhook(cluster: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    alert_labels = {**ALERT_LABELS, "cluster": cluster, **labels}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SearchClusterDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "failover",
        "groupLabels": {"alertname": "SearchClusterDown"},
        "commonLabels": alert_labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": status,
                "labels": alert_labels,
                "annotations": {"summary": "all search nodes unreachable"},
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


async def failover_result(stack: Stack, cluster: str) -> FailoverResult:
    handle = stack.client.get_workflow_handle(
        failover_workflow_id(cluster), result_type=FailoverResult
    )
    async with asyncio.timeout(DEADLINE_S):
        return await handle.result()


async def kill_primary(stack: Stack) -> None:
    stack.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await stack.fleet.clusters[PRIMARY_SIM].settle()


def assert_confirmed_switch(result: FailoverResult, stack: Stack, *, by: str) -> None:
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.trigger == "alarm"
    assert by in result.reason
    steps = [s.name for s in result.steps]
    # The alarm is a reason to look, never proof: the run confirmed the fault itself.
    assert steps.index("confirm") < steps.index("switch")
    assert stack.record_values() == [stack.cluster.switch.standby_value]


# --- alarms that fail over -----------------------------------------------------------------


async def test_signed_sns_alarm_makes_one_confirmed_failover(
    stack: Stack, test_ca: SigningCa, signer: SnsSigner, cert_server: CertServer
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    await kill_primary(stack)
    async with receiving(config, same_client(stack.client)) as receiver:
        answer = await receiver.sns(signer.notification(alarm_message(ALARM), version="2"))
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
        assert answer.json()["cluster"] == stack.cluster.name
        result = await failover_result(stack, stack.cluster.name)
    assert_confirmed_switch(result, stack, by=ALARM)
    runs = [
        w
        async for w in stack.client.list_workflows(
            f"WorkflowId = '{failover_workflow_id(stack.cluster.name)}'"
        )
    ]
    assert len(runs) == 1


async def test_eventbridge_alarm_makes_a_confirmed_failover(
    stack: Stack, test_ca: SigningCa
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    await kill_primary(stack)
    async with receiving(config, same_client(stack.client)) as receiver:
        event = eventbridge_event()
        answer = await receiver.eventbridge(event)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
        # EventBridge delivers again with the same id when unsure: taken once.
        again = await receiver.eventbridge(event)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        result = await failover_result(stack, stack.cluster.name)
    assert_confirmed_switch(result, stack, by=ALARM)


async def test_alertmanager_alert_makes_a_confirmed_failover(
    stack: Stack, test_ca: SigningCa
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    await kill_primary(stack)
    async with receiving(config, same_client(stack.client)) as receiver:
        answer = await receiver.alertmanager(alertmanager_webhook(stack.cluster.name))
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
        assert stack.cluster.name in answer.json()["deliveries"]
        result = await failover_result(stack, stack.cluster.name)
    assert_confirmed_switch(result, stack, by="SearchClusterDown")


async def test_stray_alarm_on_a_healthy_cluster_switches_nothing(
    stack: Stack, test_ca: SigningCa, signer: SnsSigner
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    async with receiving(config, same_client(stack.client)) as receiver:
        answer = await receiver.sns(signer.notification(alarm_message(ALARM)))
        assert answer.status_code == 202, answer.text
        result = await failover_result(stack, stack.cluster.name)
    assert result.result == Outcome.NOT_CONFIRMED
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_eventbridge_hmac_mode(stack: Stack, test_ca: SigningCa) -> None:
    """For senders that sign (a script, a forwarder): HMAC of '<timestamp>.<body>'."""
    raw = receiver_config(stack.config, ca=test_ca, monitors=False).model_dump(mode="json")
    raw["receiver"]["eventbridge"] = {
        "auth": "hmac",
        "header": "X-Failover-Signature",
        "secret_env": "TEST_EVENTBRIDGE_SECRET",
        "max_age_seconds": 60,
    }
    config = parse_config(raw)
    secret = EVENTBRIDGE_SECRET.encode()
    body = json.dumps(eventbridge_event()).encode()
    async with receiving(config, same_client(stack.client)) as receiver:
        missing = await receiver.post("eventbridge", body)
        assert missing.status_code == 401
        forged = await receiver.post(
            "eventbridge", body, headers=hmac_headers(b"not-the-secret", body)
        )
        assert forged.status_code == 403
        old = await receiver.post(
            "eventbridge", body, headers=hmac_headers(secret, body, now=time.time() - 120)
        )
        assert old.status_code == 403 and "outside 60 s" in old.json()["reason"]
        other_body = json.dumps(eventbridge_event()).encode()
        swapped = await receiver.post("eventbridge", other_body, headers=hmac_headers(secret, body))
        assert swapped.status_code == 403
        good = await receiver.post("eventbridge", body, headers=hmac_headers(secret, body))
        assert good.status_code == 202, good.text
        result = await failover_result(stack, stack.cluster.name)
    assert result.trigger == "alarm"


async def test_alarm_storm_without_a_monitor_joins_one_failover(stack: Stack, test_ca: SigningCa):
    """No monitor: each alarm starts or joins `failover-<cluster>` by its fixed id, so 100
    alarms while it runs all land on one run."""
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    await kill_primary(stack)
    async with receiving(config, same_client(stack.client)) as receiver:
        webhooks = [alertmanager_webhook(stack.cluster.name) for _ in range(100)]
        answers = await asyncio.gather(*(receiver.alertmanager(w) for w in webhooks))
        assert {a.status_code for a in answers} == {202}
        joined = {a.json()["deliveries"][stack.cluster.name] for a in answers}
        assert len(joined) == 1, joined  # one run id in every answer
        result = await failover_result(stack, stack.cluster.name)
    assert_confirmed_switch(result, stack, by="SearchClusterDown")
    query = f"WorkflowId = '{failover_workflow_id(stack.cluster.name)}'"
    assert len([w async for w in stack.client.list_workflows(query)]) == 1


async def test_alertmanager_basic_auth(stack: Stack, test_ca: SigningCa) -> None:
    raw = receiver_config(stack.config, ca=test_ca, monitors=False).model_dump(mode="json")
    raw["receiver"]["alertmanager"] = {
        "basic_username": "alertmanager",
        "basic_password_env": "TEST_AM_TOKEN",
    }
    config = parse_config(raw)
    webhook = alertmanager_webhook(stack.cluster.name, "resolved")

    def basic(user: str, password: str) -> dict[str, str]:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    async with receiving(config, same_client(stack.client)) as receiver:
        wrong = await receiver.post("alertmanager", webhook, headers=basic("alertmanager", "guess"))
        assert wrong.status_code == 403
        bearer = await receiver.alertmanager(webhook)
        assert bearer.status_code == 401
        assert bearer.headers["WWW-Authenticate"].startswith("Basic")
        good = await receiver.post(
            "alertmanager", webhook, headers=basic("alertmanager", ALERTMANAGER_TOKEN)
        )
        assert good.status_code == 202 and good.json()["status"] == "recorded"


# --- through the monitor -------------------------------------------------------------------


async def test_alarm_storm_through_the_monitor_is_one_failover(
    monitor_stack: Stack, test_ca: SigningCa, signer: SnsSigner
) -> None:
    """100 identical alarms (distinct deliveries, as SNS makes them): one failover run.
    The cluster is healthy, so that run confirms nothing and switches nothing."""
    config = receiver_config(monitor_stack.config, ca=test_ca, monitors=True)
    cluster = config.clusters[0]
    try:
        async with receiving(config, same_client(monitor_stack.client)) as receiver:
            messages = [signer.notification(alarm_message(ALARM)) for _ in range(100)]
            answers = await asyncio.gather(*(receiver.sns(m) for m in messages))
            assert sorted({a.status_code for a in answers}) == [202], [
                a.text for a in answers if a.status_code != 202
            ]

            async def all_counted() -> bool:
                status = await monitor_status(monitor_stack.client, cluster.name)
                return (
                    status.state.alarms_received == 100
                    and status.phase == "watching"
                    and (
                        bool(status.state.failovers)
                        and status.state.failovers[-1].result is not None
                    )
                )

            await wait_for(all_counted, what="the monitor to take 100 alarms", timeout_s=DEADLINE_S)
        status = await monitor_status(monitor_stack.client, cluster.name)
        assert len(status.state.failovers) == 1
        assert status.state.failovers[0].result == Outcome.NOT_CONFIRMED
        kinds = [e.kind for e in status.state.events]
        assert kinds.count("alarm_firing") == 1  # a storm is counted, not logged 100 times
        query = f"WorkflowId = '{failover_workflow_id(cluster.name)}'"
        runs = [w async for w in monitor_stack.client.list_workflows(query)]
        assert len(runs) == 1
        result = await failover_result(monitor_stack, cluster.name)
        assert result.trigger == "alarm" and result.result == Outcome.NOT_CONFIRMED
        assert monitor_stack.record_values() == [cluster.switch.primary_value]
    finally:
        with contextlib.suppress(RPCError):
            await monitor_stack.client.get_workflow_handle(
                monitor_workflow_id(cluster.name)
            ).terminate("test over")


async def test_resolved_alarm_is_recorded_and_never_fails_back(
    monitor_stack: Stack, test_ca: SigningCa, signer: SnsSigner
) -> None:
    config = receiver_config(monitor_stack.config, ca=test_ca, monitors=True)
    cluster = config.clusters[0]
    try:
        async with receiving(config, same_client(monitor_stack.client)) as receiver:
            # No monitor yet: an OK starts nothing, and says it was only recorded here.
            first = await receiver.sns(signer.notification(alarm_message(ALARM, "OK")))
            assert first.status_code == 202 and first.json()["status"] == "recorded"
            assert "not running" in first.json()["deliveries"][cluster.name]
            with pytest.raises(RPCError):
                await monitor_stack.client.get_workflow_handle(
                    monitor_workflow_id(cluster.name)
                ).describe()
            await monitor_stack.client.start_workflow(
                "MonitorWorkflow",
                MonitorInput(cluster=cluster, task_queue=config.task_queue),
                id=monitor_workflow_id(cluster.name),
                task_queue=config.task_queue,
            )
            answer = await receiver.sns(signer.notification(alarm_message(ALARM, "OK")))
            assert answer.status_code == 202 and answer.json()["status"] == "recorded"

            async def recorded() -> bool:
                status = await monitor_status(monitor_stack.client, cluster.name)
                return any(e.kind == "alarm_resolved" for e in status.state.events)

            await wait_for(recorded, what="the monitor to record the OK", timeout_s=DEADLINE_S)
        status = await monitor_status(monitor_stack.client, cluster.name)
        assert not status.state.failovers
        with pytest.raises(RPCError):
            await monitor_stack.client.get_workflow_handle(
                failover_workflow_id(cluster.name)
            ).describe()
    finally:
        with contextlib.suppress(RPCError):
            await monitor_stack.client.get_workflow_handle(
                monitor_workflow_id(cluster.name)
            ).terminate("test over")


# --- SNS subscriptions ---------------------------------------------------------------------


async def test_subscription_confirmed_for_an_allowed_topic_only(
    stack: Stack, test_ca: SigningCa, signer: SnsSigner, cert_server: CertServer
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False)
    subscribe = cert_server.base + "/confirm?Action=ConfirmSubscription&Token={token}"
    async with receiving(config, same_client(stack.client)) as receiver:
        before = len(cert_server.confirmations)
        confirmation = signer.subscription_confirmation(subscribe)
        answer = await receiver.sns(confirmation)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "confirmed"
        assert cert_server.confirmations[before:] == [confirmation["Token"]]

        refused = await receiver.sns(
            signer.subscription_confirmation(subscribe, topic_arn=OTHER_TOPIC_ARN)
        )
        assert refused.status_code == 403
        assert refused.json()["reason"].startswith(sns.TOPIC_NOT_ALLOWED)
        elsewhere = await receiver.sns(
            signer.subscription_confirmation("https://attacker.example.net/confirm?T={token}")
        )
        assert elsewhere.status_code == 403
        assert elsewhere.json()["reason"].startswith(sns.BAD_SUBSCRIBE_URL)
        assert cert_server.confirmations[before:] == [confirmation["Token"]]


# --- Temporal down, rate limits, moto -------------------------------------------------------


async def test_temporal_down_answers_503_and_the_retry_is_taken(
    stack: Stack, test_ca: SigningCa, signer: SnsSigner
) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False, temporal_timeout=2.0)
    dead = f"127.0.0.1:{free_port_on(['127.0.0.1'])}"
    target = {"address": dead}

    async def connect() -> Client:
        return await Client.connect(target["address"], data_converter=pydantic_data_converter)

    async with receiving(config, connect) as receiver:
        message = signer.notification(alarm_message(ALARM))
        down = await receiver.sns(message)
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"].isdigit()
        assert down.json()["reason"].startswith("temporal unavailable")
        # SNS delivers the same message again; once Temporal is back it is taken, not
        # refused as a replay.
        target["address"] = stack.client.service_client.config.target_host
        retried = await receiver.sns(message)
        assert retried.status_code == 202, retried.text
        result = await failover_result(stack, stack.cluster.name)
    assert result.trigger == "alarm"


async def test_rate_limit_per_source(stack: Stack, test_ca: SigningCa) -> None:
    config = receiver_config(stack.config, ca=test_ca, monitors=False, rate_limit="5/minute")
    async with receiving(config, same_client(stack.client)) as receiver:
        # A forged X-Forwarded-For does not make a new source: no proxy is trusted.
        codes = [
            (
                await receiver.post(
                    "eventbridge", b"{}", headers={"X-Forwarded-For": f"10.0.0.{n}"}
                )
            ).status_code
            for n in range(7)
        ]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429, 429]
        limited = await receiver.post("eventbridge", b"{}")
        assert "Retry-After" in limited.headers
        # Another endpoint has its own budget.
        other = await receiver.post("alertmanager", b"{}")
        assert other.status_code == 401


async def test_moto_sns_delivery_is_parsed(stack: Stack, test_ca: SigningCa, moto_url: str) -> None:
    """moto publishes to an HTTP subscription like SNS, but its signature is fake: this
    receiver uses the test-only `unsafe_skip_signature_check` (loopback only), and
    production's host rule for the certificate URL, which moto's URL passes."""
    config = receiver_config(
        stack.config,
        ca=test_ca,
        monitors=False,
        sns_settings={
            "unsafe_skip_signature_check": True,
            "cert_host_pattern": r"sns\.[a-z0-9-]+\.amazonaws\.com",
        },
    )
    sns_client = boto3.client("sns", endpoint_url=moto_url, region_name="us-east-1")
    topic = sns_client.create_topic(Name="search-alarms")["TopicArn"]
    assert topic == TOPIC_ARN
    async with receiving(config, same_client(stack.client)) as receiver:
        await asyncio.to_thread(
            sns_client.subscribe,
            TopicArn=topic,
            Protocol="http",
            Endpoint=f"{receiver.url}/alarms/sns",
        )
        await asyncio.to_thread(
            sns_client.publish, TopicArn=topic, Message=alarm_message(ALARM), Subject="ALARM"
        )
        result = await failover_result(stack, stack.cluster.name)
        assert receiver.receiver.counters.by_status == {202: 1}
    assert result.trigger == "alarm"
    assert result.result == Outcome.NOT_CONFIRMED  # healthy cluster: nothing moves
    description = await stack.client.get_workflow_handle(
        failover_workflow_id(stack.cluster.name)
    ).describe()
    summary = await description.static_summary()
    assert summary is not None and f"sns alarm {ALARM!r} firing" in summary


# --- the bad-input table -------------------------------------------------------------------


@dataclass
class TableContext:
    receiver: Receiver
    signer: SnsSigner
    ca: SigningCa
    cert_server: CertServer
    cluster: str


@pytest_asyncio.fixture(scope="module")
async def table(
    temporal_env: WorkflowEnvironment, test_ca: SigningCa, cert_server: CertServer, tmp_path_factory
) -> AsyncIterator[TableContext]:
    """A receiver for a cluster with a monitor enabled and no worker: anything let through
    would start `monitor-<cluster>` or `failover-<cluster>`, and the test would see it."""
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:9",
        switch={
            "type": "route53",
            "hosted_zone_id": "Z0TABLE",
            "record_name": "search.example.internal.",
            "primary_value": "primary.example.internal",
            "standby_value": "standby.example.internal",
        },
        primary_nodes=["http://127.0.0.1:9"],
        standby_nodes=["http://127.0.0.1:9"],
    )
    suffix = uuid.uuid4().hex[:8]
    raw["task_queue"] = f"table-{suffix}"
    raw["clusters"][0]["name"] = f"table-{suffix}"
    raw["clusters"][0]["monitor"] = {}
    config = receiver_config(parse_config(raw), ca=test_ca, monitors=True)
    async with receiving(config, same_client(temporal_env.client)) as receiver:
        yield TableContext(
            receiver,
            SnsSigner(test_ca, cert_server.cert_url),
            test_ca,
            cert_server,
            config.clusters[0].name,
        )


Build = Callable[[TableContext], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Bad:
    name: str
    build: Build
    status: int
    reason: str  # the answer's reason starts with this
    lines: int = 1  # log lines the request(s) make: one per request the receiver handles
    logged: str = ""  # the last of them holds this (request text, escaped)


def _sns(make: Callable[[TableContext], dict[str, Any] | bytes], **post: Any) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        return await ctx.receiver.post("sns", make(ctx), **post)

    return build


def _signed(**overrides: Any) -> Callable[[TableContext], dict[str, Any]]:
    """A correctly signed alarm notification, built with these fields."""
    return lambda ctx: ctx.signer.notification(alarm_message(ALARM), **overrides)


def _tampered(**changes: Any) -> Callable[[TableContext], dict[str, Any]]:
    """Signed, then changed: the signature no longer covers what is sent."""
    return lambda ctx: {**ctx.signer.notification(alarm_message(ALARM)), **changes}


def _without(field_name: str) -> Callable[[TableContext], dict[str, Any]]:
    def make(ctx: TableContext) -> dict[str, Any]:
        message = ctx.signer.notification(alarm_message(ALARM))
        del message[field_name]
        return message

    return make


def _cert_at(path_or_url: str) -> Callable[[TableContext], dict[str, Any]]:
    def make(ctx: TableContext) -> dict[str, Any]:
        url = path_or_url if "://" in path_or_url else ctx.cert_server.base + path_or_url
        return ctx.signer.notification(alarm_message(ALARM), SigningCertURL=url)

    return make


def _message(text: str) -> Callable[[TableContext], dict[str, Any]]:
    return lambda ctx: ctx.signer.notification(text)


def _replayed() -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        # An unmapped alarm, so the first delivery (202 ignored) starts nothing either.
        message = ctx.signer.notification(alarm_message("not-ours"))
        first = await ctx.receiver.post("sns", message)
        assert first.status_code == 202 and first.json()["status"] == "ignored"
        return await ctx.receiver.post("sns", message)

    return build


def _confirmation(url: str, topic: str | None = None) -> Callable[[TableContext], dict[str, Any]]:
    def make(ctx: TableContext) -> dict[str, Any]:
        target = url if "://" in url else ctx.cert_server.base + url
        return ctx.signer.subscription_confirmation(target, topic_arn=topic)

    return make


def _eventbridge(
    make: Callable[[TableContext], dict[str, Any] | bytes],
    *,
    token: str | None = EVENTBRIDGE_SECRET,
    content_type: str | None = None,
) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        headers = {} if token is None else {"X-Failover-Token": token}
        return await ctx.receiver.post(
            "eventbridge", make(ctx), headers=headers, content_type=content_type
        )

    return build


def _alertmanager(
    make: Callable[[TableContext], dict[str, Any] | bytes],
    *,
    authorization: str | None = f"Bearer {ALERTMANAGER_TOKEN}",
    content_type: str | None = None,
) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        headers = {} if authorization is None else {"Authorization": authorization}
        return await ctx.receiver.post(
            "alertmanager", make(ctx), headers=headers, content_type=content_type
        )

    return build


def _webhook(**changes: Any) -> Callable[[TableContext], dict[str, Any]]:
    return lambda ctx: {**alertmanager_webhook(ctx.cluster), **changes}


def _alert(**changes: Any) -> Callable[[TableContext], dict[str, Any]]:
    def make(ctx: TableContext) -> dict[str, Any]:
        webhook = alertmanager_webhook(ctx.cluster)
        webhook["alerts"][0].update(changes)
        return webhook

    return make


def _event(**detail: Any) -> Callable[[TableContext], dict[str, Any]]:
    def make(ctx: TableContext) -> dict[str, Any]:
        event = eventbridge_event()
        event["detail"].update(detail)
        return event

    return make


def _get(path: str) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        return await ctx.receiver.http.get(f"{ctx.receiver.url}{path}")

    return build


def _replayed_id(message_id: str) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        message = ctx.signer.notification(alarm_message("not-ours"), MessageId=message_id)
        first = await ctx.receiver.post("sns", message)
        assert first.status_code == 202 and first.json()["status"] == "ignored"
        return await ctx.receiver.post("sns", message)

    return build


def _duplicate_event(event_id: str) -> Build:
    async def build(ctx: TableContext) -> httpx.Response:
        event = {**eventbridge_event("not-ours"), "id": event_id}
        headers = {"X-Failover-Token": EVENTBRIDGE_SECRET}
        first = await ctx.receiver.post("eventbridge", event, headers=headers)
        assert first.status_code == 202 and first.json()["status"] == "ignored"
        return await ctx.receiver.post("eventbridge", event, headers=headers)

    return build


def _content_type(endpoint: str, value: bytes) -> Build:
    """A Content-Type header with bytes HTTP lets through (h11 refuses only NUL, CR, LF)."""

    async def build(ctx: TableContext) -> httpx.Response:
        return await ctx.receiver.http.post(
            f"{ctx.receiver.url}/alarms/{endpoint}",
            content=b"{}",
            headers=[(b"Content-Type", value)],
        )

    return build


# Request text that, logged raw, forges a line, hides text or rewrites the terminal: each
# goes into every field the receiver logs, and must come out as one escaped line.
FORGED = "alarm accepted: endpoint=sns peer=10.0.0.1 {'table': 'started'}"
INJECTIONS: dict[str, tuple[str, str]] = {  # name: (raw, as logged)
    "newline": (f"x\n{FORGED}", f"x\\n{FORGED}"),
    "carriage return": (f"x\r{FORGED}", f"x\\r{FORGED}"),
    "NUL": ("x\x00hidden", "x\\x00hidden"),
    "bidi override": ("x\u202ederaeppa", "x\\u202ederaeppa"),
    "bidi isolate": ("x\u2067hidden\u2069", "x\\u2067hidden\\u2069"),
    "ANSI escape": ("x\x1b[31mred\x1b[0m\x1b[2K", "x\\x1b[31mred\\x1b[0m\\x1b[2K"),
}


def _injection_rows() -> list[Bad]:
    rows: list[Bad] = []
    arn = "arn:aws:sns:us-east-1:123456789012:"
    for what, (raw, shown) in INJECTIONS.items():
        rows += [
            Bad(  # refused before the signature is even checked: anyone can send it
                f"sns TopicArn with {what}",
                _sns(_signed(TopicArn=arn + raw)),
                403,
                sns.TOPIC_NOT_ALLOWED,
                logged=f"reason={sns.TOPIC_NOT_ALLOWED}: {arn}{shown}",
            ),
            Bad(
                f"sns AlarmName with {what}",
                _sns(lambda c, raw=raw: c.signer.notification(alarm_message(ALARM + raw))),
                202,
                alarms.UNMAPPED,
                logged=f"{alarms.UNMAPPED}: {ALARM}{shown}",
            ),
            Bad(
                f"eventbridge alarmName with {what}",
                _eventbridge(lambda c, raw=raw: eventbridge_event(ALARM + raw)),
                202,
                alarms.UNMAPPED,
                logged=f"{alarms.UNMAPPED}: {ALARM}{shown}",
            ),
            Bad(
                f"alertmanager alertname with {what}",
                _alertmanager(_alert(labels={"alertname": "SearchClusterDown" + raw})),
                202,
                alarms.UNMAPPED,
                logged=f"{alarms.UNMAPPED}: SearchClusterDown{shown}",
            ),
        ]
    newline, shown = INJECTIONS["newline"]
    rows += [
        Bad(
            "sns replayed MessageId with a newline",
            _replayed_id(f"{uuid.uuid4()}{newline}"),
            409,
            sns.REPLAYED,
            lines=2,
            logged=f"{shown} was already accepted",
        ),
        Bad(
            "eventbridge duplicate event id with a newline",
            _duplicate_event(f"{uuid.uuid4()}{newline}"),
            200,
            "event ",
            lines=2,
            logged=f"{shown} already taken",
        ),
        Bad(
            "sns content type with an ANSI escape",
            _content_type("sns", b"text/x\x1b[2k\x1b[1aplain"),
            415,
            "unsupported content type",
            logged="reason=unsupported content type: text/x\\x1b[2k\\x1b[1aplain;",
        ),
        Bad(
            "eventbridge content type with C1 controls",
            _content_type("eventbridge", b"application/x\x85\x9b31mjson"),
            415,
            "unsupported content type",
            logged="unsupported content type: application/x\\x85\\x9b31mjson;",
        ),
    ]
    return rows


OTHER_KEY = new_key()  # not the key the test CA certified
HOUR = dt.timedelta(hours=1)
BIG = 300 * 1024
JSON_TEXT = "application/json"

BAD_INPUTS: list[Bad] = [
    # SNS: signatures and certificates
    Bad(
        "sns forged signature",
        _sns(lambda c: c.signer.notification(alarm_message(ALARM), key=OTHER_KEY)),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad(
        "sns forged signature v2",
        _sns(lambda c: c.signer.notification(alarm_message(ALARM), key=OTHER_KEY, version="2")),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad(
        "sns signature not base64",
        _sns(_tampered(Signature="%%%not-base64%%%")),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad("sns signature empty", _sns(_tampered(Signature="")), 400, "not an SNS message"),
    Bad(
        "sns cert url on another host",
        _sns(_cert_at("https://attacker.example.net/SimpleNotificationService-x.pem")),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad(
        "sns cert url look-alike host",
        _sns(_cert_at("https://sns.us-east-1.amazonaws.com.attacker.net/x.pem")),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad(
        "sns cert url over http",
        _sns(
            lambda c: c.signer.notification(
                alarm_message(ALARM), SigningCertURL=c.cert_server.cert_url.replace("https", "http")
            )
        ),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad(
        "sns cert url with credentials",
        _sns(
            lambda c: c.signer.notification(
                alarm_message(ALARM),
                SigningCertURL=c.cert_server.cert_url.replace("https://", "https://user:pw@"),
            )
        ),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad("sns cert url not a .pem", _sns(_cert_at("/confirm")), 403, sns.BAD_CERT_URL),
    Bad(
        "sns cert url with a newline",  # urlsplit drops it; httpx would refuse the URL
        _sns(
            lambda c: c.signer.notification(
                alarm_message(ALARM),
                SigningCertURL=c.cert_server.cert_url.replace(".pem", "\n.pem"),
            )
        ),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad(
        "sns cert url with a query",
        _sns(
            lambda c: c.signer.notification(
                alarm_message(ALARM), SigningCertURL=c.cert_server.cert_url + "?x=1"
            )
        ),
        403,
        sns.BAD_CERT_URL,
    ),
    Bad("sns cert not found", _sns(_cert_at("/missing.pem")), 403, sns.CERT_UNAVAILABLE),
    Bad("sns cert not PEM", _sns(_cert_at(NOT_PEM_PATH)), 403, sns.BAD_CERT),
    Bad("sns cert expired", _sns(_cert_at(EXPIRED_CERT_PATH)), 403, sns.BAD_CERT),
    Bad(
        "sns tampered Message",
        _sns(_tampered(Message=alarm_message(ALARM, reason="forged"))),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad("sns tampered Subject", _sns(_tampered(Subject="OK")), 403, sns.BAD_SIGNATURE),
    Bad(
        "sns tampered MessageId",
        _sns(_tampered(MessageId=str(uuid.uuid4()))),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad(
        "sns tampered Timestamp",
        _sns(
            lambda c: {
                **c.signer.notification(alarm_message(ALARM)),
                "Timestamp": sns_time(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)),
            }
        ),
        403,
        sns.BAD_SIGNATURE,
    ),
    Bad(
        "sns stale timestamp",
        _sns(
            lambda c: c.signer.notification(
                alarm_message(ALARM), at=dt.datetime.now(dt.UTC) - 2 * HOUR
            )
        ),
        403,
        sns.STALE,
    ),
    Bad(
        "sns timestamp from the future",
        _sns(
            lambda c: c.signer.notification(alarm_message(ALARM), at=dt.datetime.now(dt.UTC) + HOUR)
        ),
        403,
        sns.FUTURE,
    ),
    Bad("sns replayed MessageId", _replayed(), 409, sns.REPLAYED, lines=2),
    Bad(
        "sns SignatureVersion 3",
        _sns(lambda c: {**c.signer.notification(alarm_message(ALARM)), "SignatureVersion": "3"}),
        403,
        sns.UNSUPPORTED_VERSION,
    ),
    Bad(
        "sns SignatureVersion missing",
        _sns(_without("SignatureVersion")),
        400,
        "not an SNS message",
    ),
    Bad("sns Signature missing", _sns(_without("Signature")), 400, "not an SNS message"),
    Bad("sns MessageId missing", _sns(_without("MessageId")), 400, "not an SNS message"),
    Bad("sns Timestamp missing", _sns(_without("Timestamp")), 400, "not an SNS message"),
    Bad("sns TopicArn missing", _sns(_without("TopicArn")), 400, "not an SNS message"),
    Bad("sns SigningCertURL missing", _sns(_without("SigningCertURL")), 400, "not an SNS message"),
    Bad(
        "sns Timestamp not a time", _sns(_signed(Timestamp="yesterday")), 400, "not an SNS message"
    ),
    Bad("sns unknown Type", _sns(_signed(Type="Advertisement")), 400, "not an SNS message"),
    Bad(
        "sns topic not allowed",
        _sns(
            lambda c: SnsSigner(c.ca, c.cert_server.cert_url, OTHER_TOPIC_ARN).notification(
                alarm_message(ALARM)
            )
        ),
        403,
        sns.TOPIC_NOT_ALLOWED,
    ),
    Bad(
        "sns Message not JSON",
        _sns(_message("the search cluster is red")),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "sns Message without AlarmName",
        _sns(_message(json.dumps({"NewStateValue": "ALARM"}))),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "sns Message with a bogus state",
        _sns(_message(json.dumps({"AlarmName": ALARM, "NewStateValue": "ON_FIRE"}))),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "sns unknown alarm",
        _sns(lambda c: c.signer.notification(alarm_message("not-ours"))),
        202,
        alarms.UNMAPPED,
    ),
    Bad("sns OK state", _sns(lambda c: c.signer.notification(alarm_message(ALARM, "OK"))), 202, ""),
    Bad(
        "sns INSUFFICIENT_DATA",
        _sns(lambda c: c.signer.notification(alarm_message(ALARM, "INSUFFICIENT_DATA"))),
        202,
        alarms.NOT_ACTIONABLE,
    ),
    Bad("sns oversized body", _sns(lambda c: b"{" + b" " * BIG + b"}"), 413, "body too large"),
    Bad("sns wrong JSON", _sns(lambda c: b'{"Type": "Notification", '), 400, alarms.BAD_PAYLOAD),
    Bad("sns JSON array", _sns(lambda c: [1, 2, 3]), 400, alarms.BAD_PAYLOAD),
    Bad("sns body not UTF-8", _sns(lambda c: b'{"Type": "\xff\xfe"}'), 400, alarms.BAD_PAYLOAD),
    Bad(
        "sns wrong content type",
        _sns(_signed(), content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported content type",
    ),
    Bad("sns no content type", _sns(_signed(), content_type=""), 415, "unsupported content type"),
    Bad(
        "sns confirmation for another topic",
        _sns(_confirmation("/confirm?T={token}", OTHER_TOPIC_ARN)),
        403,
        sns.TOPIC_NOT_ALLOWED,
    ),
    Bad(
        "sns confirmation to another host",
        _sns(_confirmation("https://attacker.example.net/confirm?T={token}")),
        403,
        sns.BAD_SUBSCRIBE_URL,
    ),
    Bad(
        "sns confirmation over http",
        _sns(
            lambda c: c.signer.subscription_confirmation(
                c.cert_server.base.replace("https", "http") + "/confirm?T={token}"
            )
        ),
        403,
        sns.BAD_SUBSCRIBE_URL,
    ),
    Bad("sns GET", _get("/alarms/sns"), 405, "", lines=0),  # Starlette answers
    # EventBridge
    Bad(
        "eventbridge token missing",
        _eventbridge(lambda c: eventbridge_event(), token=None),
        401,
        "authentication missing",
    ),
    Bad(
        "eventbridge token wrong",
        _eventbridge(lambda c: eventbridge_event(), token="guess"),
        403,
        "authentication failed",
    ),
    Bad(
        "eventbridge token prefix only",
        _eventbridge(lambda c: eventbridge_event(), token=EVENTBRIDGE_SECRET[:8]),
        403,
        "authentication failed",
    ),
    Bad(
        "eventbridge wrong content type",
        _eventbridge(lambda c: eventbridge_event(), content_type="text/plain"),
        415,
        "unsupported content type",
    ),
    Bad("eventbridge wrong JSON", _eventbridge(lambda c: b"{'id': 1}"), 400, alarms.BAD_PAYLOAD),
    Bad(
        "eventbridge other detail-type",
        _eventbridge(
            lambda c: {
                **eventbridge_event(),
                "detail-type": "EC2 Instance State-change Notification",
            }
        ),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "eventbridge other source",
        _eventbridge(lambda c: {**eventbridge_event(), "source": "aws.ec2"}),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "eventbridge alarmName missing",
        _eventbridge(_event(alarmName=None)),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad("eventbridge state missing", _eventbridge(_event(state=None)), 400, alarms.NOT_AN_ALARM),
    Bad(
        "eventbridge unknown alarm",
        _eventbridge(lambda c: eventbridge_event("not-ours")),
        202,
        alarms.UNMAPPED,
    ),
    Bad("eventbridge OK state", _eventbridge(lambda c: eventbridge_event(state="OK")), 202, ""),
    Bad(
        "eventbridge oversized body",
        _eventbridge(lambda c: b"[" + b" " * BIG + b"]"),
        413,
        "body too large",
    ),
    # Alertmanager
    Bad(
        "alertmanager no Authorization",
        _alertmanager(_webhook(), authorization=None),
        401,
        "authentication missing",
    ),
    Bad(
        "alertmanager wrong bearer token",
        _alertmanager(_webhook(), authorization="Bearer not-the-token"),
        403,
        "authentication failed",
    ),
    Bad(
        "alertmanager basic instead of bearer",
        _alertmanager(
            _webhook(),
            authorization="Basic "
            + base64.b64encode(b"am:" + ALERTMANAGER_TOKEN.encode()).decode(),
        ),
        401,
        "authentication missing",
    ),
    Bad(
        "alertmanager unknown scheme",
        _alertmanager(_webhook(), authorization="Token abc"),
        401,
        "authentication missing",
    ),
    Bad(
        "alertmanager wrong content type",
        _alertmanager(_webhook(), content_type="application/xml"),
        415,
        "unsupported content type",
    ),
    Bad("alertmanager wrong JSON", _alertmanager(lambda c: b"not json"), 400, alarms.BAD_PAYLOAD),
    Bad("alertmanager version 3", _alertmanager(_webhook(version="3")), 400, alarms.NOT_AN_ALARM),
    Bad("alertmanager no alerts", _alertmanager(_webhook(alerts=[])), 400, alarms.NOT_AN_ALARM),
    Bad(
        "alertmanager bogus alert status",
        _alertmanager(_alert(status="smouldering")),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "alertmanager alert without labels",
        _alertmanager(_alert(labels={})),
        400,
        alarms.NOT_AN_ALARM,
    ),
    Bad(
        "alertmanager unmapped labels",
        _alertmanager(_alert(labels={"alertname": "DiskFull"})),
        202,
        alarms.UNMAPPED,
    ),
    Bad(
        "alertmanager resolved",
        _alertmanager(lambda c: alertmanager_webhook(c.cluster, "resolved")),
        202,
        "",
    ),
    Bad(
        "alertmanager oversized body",
        _alertmanager(lambda c: b"{" + b" " * BIG + b"}"),
        413,
        "body too large",
    ),
    # Log injection: request text in every field the receiver logs
    *_injection_rows(),
]


def test_the_table_is_big_enough() -> None:
    assert len(BAD_INPUTS) >= 50
    assert len({b.name for b in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.fixture
def receiver_log() -> Iterator[dict[str, io.StringIO]]:
    """The receiver's log lines as `--log-format text` and `json` write them."""
    logger = logging.getLogger("failover.receiver")
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [logging.StreamHandler(stream) for stream in streams.values()]
    for handler, log_format in zip(handlers, streams, strict=True):
        handler.setFormatter(logs.formatter(log_format))  # type: ignore[arg-type]
        logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield streams
    finally:
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)


MEANT = ("alarm rejected: ", "alarm ignored: ", "alarm recorded: ", "alarm duplicate: ")


def assert_logged(streams: dict[str, io.StringIO], bad: Bad) -> None:
    """Exactly the lines the receiver means: one per request, each printable, the JSON
    ones saying the same; no request text can add a line or hide one."""
    text = streams["text"].getvalue()
    assert text.count("\n") == bad.lines, text
    lines = text.split("\n")[:-1]
    for line in lines:
        assert line.isprintable(), line
        # Nothing in the table is accepted: a line saying so would be forged.
        assert line.startswith(MEANT), line
    if lines:
        assert f"status={bad.status} " in lines[-1] or bad.status < 400, lines[-1]
        assert bad.logged in lines[-1], lines[-1]
    json_text = streams["json"].getvalue()
    assert json_text.count("\n") == bad.lines, json_text
    objects = []
    for line in json_text.split("\n")[:-1]:
        assert line.isascii() and line.isprintable(), line
        objects.append(json.loads(line))
    assert [o["message"] for o in objects] == lines
    assert {o["logger"] for o in objects} <= {"failover.receiver"}


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
async def test_bad_input_is_refused_and_starts_nothing(
    table: TableContext,
    temporal_env: WorkflowEnvironment,
    receiver_log: dict[str, io.StringIO],
    bad: Bad,
) -> None:
    answer = await bad.build(table)
    assert answer.status_code == bad.status, answer.text
    if answer.status_code != 405:
        body = answer.json()
        assert body.get("reason", "").startswith(bad.reason), body
        assert EVENTBRIDGE_SECRET not in answer.text and ALERTMANAGER_TOKEN not in answer.text
    assert_logged(receiver_log, bad)
    # Strongly consistent: neither workflow exists.
    for workflow_id in (failover_workflow_id(table.cluster), monitor_workflow_id(table.cluster)):
        with pytest.raises(RPCError):
            await temporal_env.client.get_workflow_handle(workflow_id).describe()
    # And listed: nothing at all on this cluster's task queue.
    query = f"TaskQueue = '{table.cluster}'"
    assert [w.id async for w in temporal_env.client.list_workflows(query)] == []


async def test_the_table_receiver_does_start_workflows_when_asked_properly(
    table: TableContext, temporal_env: WorkflowEnvironment
) -> None:
    """The canary: the same receiver, a good alarm, and the monitor appears in the list.
    Without this the table's 'nothing started' could pass on a receiver that does nothing.
    Runs after the table (pytest keeps file order)."""
    answer = await table.receiver.sns(table.signer.notification(alarm_message(ALARM)))
    assert answer.status_code == 202, answer.text
    client = temporal_env.client
    query = f"TaskQueue = '{table.cluster}'"

    async def listed() -> bool:
        return [w.id async for w in client.list_workflows(query)] == [
            monitor_workflow_id(table.cluster)
        ]

    await wait_for(listed, what="the monitor to be listed", timeout_s=DEADLINE_S)
    await client.get_workflow_handle(monitor_workflow_id(table.cluster)).terminate("test over")


def test_cert_fetched_once_for_many_messages(table: TableContext) -> None:
    """Certificates are cached: the table sent dozens of messages signed with one cert."""
    verifier = table.receiver.receiver.sns
    assert verifier is not None
    assert verifier.certificates.fetches[table.cert_server.cert_url] == 1
    assert len(verifier.replays) > 5  # messages that got as far as the signature
