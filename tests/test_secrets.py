"""Credentials from AWS Secrets Manager (moto on loopback): read inside the activity or at
receiver start, cached, read again once when the other side refuses them (a rotation), and
never part of workflow history.

The search cluster is an httpx MockTransport that checks basic auth as Elasticsearch does
(the simulator takes any credentials); reads of Secrets Manager are counted at the boto3
client, so "read exactly twice" is what AWS would have seen.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities import secrets as activity_secrets
from activities.notify import NotifyActivities
from activities.search_probe import SearchProbeActivities
from activities.secrets import secret_from_manager
from failover.alarms.receiver import AlarmReceiver, check_receiver_config
from failover.config import (
    AppConfig,
    AwsSettings,
    ClusterSide,
    ConfigError,
    SecretRef,
    parse_config,
)
from failover.models import (
    Notification,
    NotificationSent,
    ProbeSideInput,
    SideProbe,
)
from failover.secrets import SecretResolver, secrets_client
from sandbox.aws_fault_proxy import AwsFaultProxy, FaultKind, FaultRule
from tests.unit.test_config import _minimal

REGION = "eu-west-1"
USER = "magento"
NODES = ["http://127.0.0.1:9200", "http://127.0.0.2:9200"]
HEALTH = {"cluster_name": "es-a", "status": "green", "timed_out": False, "number_of_nodes": 2}
DEADLINE_S = 30.0


class Clock:
    """The resolver's clock: cache expiry and the re-read limit move only when a test says."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SecretsInMoto:
    """Secrets in moto, and a resolver whose GetSecretValue calls are counted per secret."""

    aws: AwsSettings
    clock: Clock
    resolver: SecretResolver
    reads: Counter[str]
    admin: Any

    def create(self, value: str | dict[str, str]) -> str:
        name = f"search-failover/test-{uuid.uuid4().hex[:10]}"
        text = value if isinstance(value, str) else json.dumps(value)
        self.admin.create_secret(Name=name, SecretString=text)
        return name

    def rotate(self, name: str, value: str | dict[str, str]) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.admin.put_secret_value(SecretId=name, SecretString=text)


def counting_resolver(aws: AwsSettings, clock: Clock, reads: Counter[str]) -> SecretResolver:
    def client(region: str) -> Any:
        made = secrets_client(aws, region)

        def count(params: dict[str, Any], **_: Any) -> None:
            reads[params["SecretId"]] += 1

        made.meta.events.register("before-parameter-build.secrets-manager.GetSecretValue", count)
        return made

    return SecretResolver(aws, client_factory=client, clock=clock)


@pytest.fixture
def moto_secrets(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsInMoto]:
    """The activities read through a counting resolver for the length of the test."""
    aws = AwsSettings(endpoint_url=moto_url, region=REGION)
    clock, reads = Clock(), Counter[str]()
    resolver = counting_resolver(aws, clock, reads)
    monkeypatch.setattr(activity_secrets, "_resolver", resolver)
    yield SecretsInMoto(aws, clock, resolver, reads, secrets_client(aws, REGION))


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


@dataclass
class GuardedCluster:
    """Answers as Elasticsearch behind basic auth: the current password only (401 and a
    security_exception otherwise). Every answer is recorded as (node, path, status)."""

    password: str
    answers: list[tuple[str, str, int]] = field(default_factory=list)

    def answer(self, request: httpx.Request) -> httpx.Response:
        node = f"{request.url.scheme}://{request.url.netloc.decode()}"
        if request.headers.get("authorization") != basic(self.password):
            self.answers.append((node, request.url.path, 401))
            return httpx.Response(
                401,
                json={"error": {"type": "security_exception"}, "status": 401},
                headers={"WWW-Authenticate": 'Basic realm="security"'},
            )
        self.answers.append((node, request.url.path, 200))
        body = HEALTH if request.url.path == "/_cluster/health" else {"cluster_name": "es-a"}
        return httpx.Response(200, json=body)

    def statuses(self, node: str) -> list[int]:
        return [status for n, _, status in self.answers if n == node]

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.answer)


def secret_side(secret_id: str, json_key: str | None = "password") -> ClusterSide:
    ref: dict[str, Any] = {"secret_id": secret_id, "json_key": json_key}
    return ClusterSide.model_validate(
        {"nodes": NODES, "auth": {"type": "basic", "username": USER, "password_secret": ref}}
    )


def probe_input(settings: ClusterSide) -> ProbeSideInput:
    return ProbeSideInput(cluster="c", side="primary", settings=settings, timeout_seconds=1)


async def probe(cluster: GuardedCluster, settings: ClusterSide) -> SideProbe:
    activities = SearchProbeActivities(transport=cluster.transport)
    return await ActivityEnvironment().run(activities.probe_side, probe_input(settings))


# --- the search cluster ----------------------------------------------------------------------


async def test_a_probe_authenticates_with_the_password_from_a_secret(
    moto_secrets: SecretsInMoto,
) -> None:
    name = moto_secrets.create({"username": USER, "password": "pw-1"})
    cluster = GuardedCluster("pw-1")
    result = await probe(cluster, secret_side(name))
    assert [(n.http_status, n.health_status) for n in result.nodes] == [(200, "green")] * 2
    assert {status for _, _, status in cluster.answers} == {200}
    assert moto_secrets.reads[name] == 1
    await probe(cluster, secret_side(name))
    assert moto_secrets.reads[name] == 1, "within secrets_cache_seconds the cached value serves"
    moto_secrets.clock.advance(moto_secrets.aws.secrets_cache_seconds + 1)
    await probe(cluster, secret_side(name))
    assert moto_secrets.reads[name] == 2


async def test_a_rotated_password_is_read_again_once_and_the_probe_succeeds(
    moto_secrets: SecretsInMoto,
) -> None:
    name = moto_secrets.create({"username": USER, "password": "pw-1"})
    cluster = GuardedCluster("pw-1")
    await probe(cluster, secret_side(name))
    assert moto_secrets.reads[name] == 1
    moto_secrets.rotate(name, {"username": USER, "password": "pw-2"})
    cluster.password, cluster.answers = "pw-2", []
    result = await probe(cluster, secret_side(name))
    assert [n.http_status for n in result.nodes] == [200, 200]
    for node in NODES:
        # GET / refused with the cached password, sent again with the new one, then health.
        assert cluster.statuses(node) == [401, 200, 200], node
    assert moto_secrets.reads[name] == 2, "both nodes' refusals share one re-read"
    cluster.answers = []
    await probe(cluster, secret_side(name))
    assert {status for _, _, status in cluster.answers} == {200}
    assert moto_secrets.reads[name] == 2


async def test_a_password_that_stays_wrong_is_re_read_at_most_once_per_interval(
    moto_secrets: SecretsInMoto,
) -> None:
    name = moto_secrets.create({"username": USER, "password": "pw-1"})
    cluster = GuardedCluster("not-what-the-secret-holds")
    result = await probe(cluster, secret_side(name))
    # A refusal is data (the decisions call it a credentials problem), not an error.
    assert [n.http_status for n in result.nodes] == [401, 401]
    for node in NODES:
        assert cluster.statuses(node) == [401], "the same password is not sent twice"
    assert moto_secrets.reads[name] == 2
    await probe(cluster, secret_side(name))
    assert moto_secrets.reads[name] == 2, "re-read again within secrets_reread_seconds"
    moto_secrets.clock.advance(moto_secrets.aws.secrets_reread_seconds + 1)
    await probe(cluster, secret_side(name))
    assert moto_secrets.reads[name] == 3


# --- errors ----------------------------------------------------------------------------------


async def test_a_missing_secret_is_a_permanent_error_naming_it(
    moto_secrets: SecretsInMoto,
) -> None:
    name = f"search-failover/missing-{uuid.uuid4().hex[:10]}"
    cluster = GuardedCluster("pw-1")
    with pytest.raises(ApplicationError) as caught:
        await probe(cluster, secret_side(name))
    assert caught.value.non_retryable
    assert caught.value.type == "SecretNotFound"
    assert caught.value.message == (
        f"basic-auth password: AWS Secrets Manager secret {name!r}, key 'password' in "
        f"{REGION} does not exist (ResourceNotFoundException)"
    )
    assert cluster.answers == [], "nothing is sent without the password"


@pytest.mark.parametrize(
    ("secret_string", "json_key", "kind", "problem"),
    [
        ('{"username": "magento"}', "password", "SecretKeyMissing", "has no key 'password'"),
        ("pw-plain-text", "password", "SecretNotJson", "the secret is not JSON"),
    ],
)
async def test_a_secret_without_the_key_is_a_permanent_error(
    moto_secrets: SecretsInMoto, secret_string: str, json_key: str, kind: str, problem: str
) -> None:
    name = moto_secrets.create(secret_string)
    with pytest.raises(ApplicationError) as caught:
        await probe(GuardedCluster("x"), secret_side(name, json_key))
    assert caught.value.non_retryable and caught.value.type == kind
    assert name in caught.value.message and problem in caught.value.message
    assert "pw-plain-text" not in caught.value.message


async def test_a_plain_secret_is_used_whole_without_json_key(
    moto_secrets: SecretsInMoto,
) -> None:
    name = moto_secrets.create("pw-plain-text")
    result = await probe(GuardedCluster("pw-plain-text"), secret_side(name, None))
    assert [n.http_status for n in result.nodes] == [200, 200]


@pytest.mark.parametrize(
    ("status", "code"), [(400, "ThrottlingException"), (500, "InternalServiceError")]
)
async def test_throttling_and_5xx_are_retryable(
    aws_proxy: AwsFaultProxy,
    moto_secrets: SecretsInMoto,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    code: str,
) -> None:
    name = moto_secrets.create("pw-1")
    through_proxy = AwsSettings(endpoint_url=aws_proxy.url, region=REGION)
    reads = Counter[str]()
    monkeypatch.setattr(
        activity_secrets, "_resolver", counting_resolver(through_proxy, Clock(), reads)
    )
    rule = aws_proxy.add_rule(
        FaultRule(operation="GetSecretValue", kind=FaultKind.ERROR, status=status, code=code)
    )
    try:
        with pytest.raises(ApplicationError) as caught:
            await asyncio.to_thread(secret_from_manager, SecretRef(secret_id=name), "test")
        assert not caught.value.non_retryable
        assert caught.value.type == "SecretUnavailable"
        assert code in caught.value.message and name in caught.value.message
        assert rule.hits == 1
        # What a retry of the activity does: the next read goes through.
        ref = SecretRef(secret_id=name)
        assert await asyncio.to_thread(secret_from_manager, ref, "test") == "pw-1"
        assert reads[name] == 2
    finally:
        aws_proxy.reset()


# --- workflow history --------------------------------------------------------------------------


class SecretUsingRun(BaseModel):
    probe: ProbeSideInput
    notification: Notification


# Not sandboxed: the sandbox would re-import this test module (and pytest) for it.
@workflow.defn(sandboxed=False)
class SecretUsingWorkflow:
    """Probes a cluster whose password is in Secrets Manager, then notifies a webhook whose
    URL is: both activities get references and read the values themselves."""

    @workflow.run
    async def run(self, request: SecretUsingRun) -> SideProbe:
        result = await workflow.execute_activity(
            "probe_side",
            request.probe,
            result_type=SideProbe,
            start_to_close_timeout=timedelta(seconds=20),
        )
        await workflow.execute_activity(
            "notify",
            request.notification,
            result_type=NotificationSent,
            start_to_close_timeout=timedelta(seconds=20),
        )
        return result


async def test_secret_values_appear_nowhere_in_workflow_history(
    temporal_env: WorkflowEnvironment, moto_secrets: SecretsInMoto
) -> None:
    password_secret = moto_secrets.create({"username": USER, "password": "pw-history-1"})
    webhook_url = f"https://hooks.example.test/services/T0/B0/{uuid.uuid4().hex}"
    webhook_secret = moto_secrets.create(webhook_url)
    # The worker holds the old password; the cluster now takes only the rotated one, so the
    # run also covers a refusal, a re-read and a retry inside a real activity.
    settings = secret_side(password_secret)
    assert settings.auth.type == "basic" and settings.auth.password_secret is not None
    moto_secrets.resolver.value(settings.auth.password_secret)
    moto_secrets.rotate(password_secret, {"username": USER, "password": "pw-history-2"})
    cluster = GuardedCluster("pw-history-2")
    posted: list[str] = []

    def hook(request: httpx.Request) -> httpx.Response:
        posted.append(str(request.url))
        return httpx.Response(200, text="ok")

    client: Client = temporal_env.client
    task_queue = f"secrets-{uuid.uuid4().hex[:8]}"
    probes = SearchProbeActivities(transport=cluster.transport)
    notify = NotifyActivities(sns_factory=_no_sns, http_transport=httpx.MockTransport(hook))
    request = SecretUsingRun(
        probe=probe_input(settings),
        notification=Notification(
            cluster="c",
            event="test",
            text="secrets stay out of history",
            webhook_url_secret=SecretRef(secret_id=webhook_secret),
        ),
    )
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SecretUsingWorkflow],
        activities=[probes.probe_side, notify.notify],
    ):
        handle = await client.start_workflow(
            SecretUsingWorkflow.run,
            request,
            id=f"secrets-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=DEADLINE_S),
        )
        async with asyncio.timeout(DEADLINE_S):
            result = await handle.result()
    assert [n.http_status for n in result.nodes] == [200, 200]
    assert 401 in {status for _, _, status in cluster.answers}
    assert posted == [webhook_url]
    assert moto_secrets.reads[password_secret] == 2
    history = await handle.fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    # The references travel (so this scan does read the payloads) ...
    assert password_secret.encode() in raw and webhook_secret.encode() in raw
    # ... the values never, in any form a request carried them.
    for value in ("pw-history-1", "pw-history-2", webhook_url):
        assert value.encode() not in raw, value
    for password in ("pw-history-1", "pw-history-2"):
        assert basic(password).encode() not in raw


def _no_sns() -> Any:
    raise AssertionError("no SNS topic is configured in this test")


# --- the alarm receiver ------------------------------------------------------------------------


def receiver_config(moto_url: str, token_secret: str) -> AppConfig:
    return parse_config(
        {
            "aws": {"endpoint_url": moto_url, "region": REGION},
            "clusters": [_minimal()],
            "receiver": {"alertmanager": {"bearer_token_secret": {"secret_id": token_secret}}},
        }
    )


def unmapped_webhook() -> dict[str, Any]:
    """An alert no cluster maps: accepted (202, ignored) without reaching Temporal."""
    labels = {"alertname": "SomethingElse", "cluster": "not-configured"}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "failover",
        "groupLabels": {},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


async def _no_temporal() -> Client:
    raise AssertionError("an unmapped alert never reaches Temporal")


async def test_the_receiver_picks_up_a_rotated_token_and_limits_re_reads(
    moto_url: str, moto_secrets: SecretsInMoto
) -> None:
    name = moto_secrets.create("am-token-1")
    config = receiver_config(moto_url, name)
    resolver = moto_secrets.resolver
    receiver = AlarmReceiver(
        config,
        connect=_no_temporal,
        secrets=check_receiver_config(config, resolver),
        resolver=resolver,
    )
    assert moto_secrets.reads[name] == 1
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:

        async def post(token: str) -> int:
            answer = await http.post(
                "/alarms/alertmanager",
                json=unmapped_webhook(),
                headers={"Authorization": f"Bearer {token}"},
            )
            return answer.status_code

        assert await post("am-token-1") == 202
        moto_secrets.rotate(name, "am-token-2")
        assert await post("am-token-2") == 202, "a rotated token is read again and accepted"
        assert moto_secrets.reads[name] == 2
        assert await post("am-token-1") == 403, "the old token is refused from now on"
        flood = await asyncio.gather(*(post(f"guess-{i}") for i in range(20)))
        assert set(flood) == {403}
        assert moto_secrets.reads[name] == 2, "wrong tokens within the interval read nothing"
        moto_secrets.clock.advance(config.aws.secrets_reread_seconds + 1)
        assert await post("guess-again") == 403
        assert moto_secrets.reads[name] == 3, "one re-read per interval, then refused"
        assert await post("am-token-2") == 202


def test_the_receiver_does_not_start_without_its_secret(
    moto_url: str, moto_secrets: SecretsInMoto
) -> None:
    name = f"search-failover/missing-{uuid.uuid4().hex[:10]}"
    config = receiver_config(moto_url, name)
    with pytest.raises(ConfigError) as caught:
        check_receiver_config(config, moto_secrets.resolver)
    assert caught.value.errors == [
        f"receiver.alertmanager: AWS Secrets Manager secret {name!r} in {REGION} does not "
        "exist (ResourceNotFoundException)"
    ]
