"""What an operator sees and does at 3 a.m., on the real dev server: filterable search
attributes, summaries and live details; approve, abort, pause; the approval timeout."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import boto3
import pytest
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from failover import visibility
from failover.client.operations import start_or_attach_failover
from failover.config import ClusterConfig, parse_config
from failover.models import (
    AbortRequest,
    ApproveRequest,
    FailoverResult,
    FailoverStatus,
    Outcome,
    PauseRequest,
)
from failover.names import failover_workflow_id
from sandbox.aws_fault_proxy import FaultKind, FaultRule
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM
from sandbox.waiting import wait_for
from tests.conftest import Stack
from workflows.steps import NOTIFY_RETRY

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0


def approving(stack: Stack, **settings: Any) -> ClusterConfig:
    raw = stack.config.model_dump(mode="json")
    raw["clusters"][0] |= {"require_approval": True, **settings}
    return parse_config(raw).clusters[0]


async def kill_primary(stack: Stack) -> None:
    stack.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await stack.fleet.clusters[PRIMARY_SIM].settle()


async def start(
    stack: Stack, cluster: ClusterConfig, *, client: Client | None = None
) -> WorkflowHandle[Any, FailoverResult]:
    return await start_or_attach_failover(
        client or stack.client, cluster, task_queue=stack.task_queue, reason="es-red alarm"
    )


async def status_of(handle: WorkflowHandle[Any, Any]) -> FailoverStatus:
    return await handle.query("status", result_type=FailoverStatus)


async def wait_phase(handle: WorkflowHandle[Any, Any], phase: str) -> None:
    async def reached() -> bool:
        return (await status_of(handle)).phase == phase

    await wait_for(reached, what=f"phase {phase}", timeout_s=DEADLINE_S)


async def listed(stack: Stack, query: str) -> list[str]:
    found: list[str] = []

    async def some() -> bool:
        found[:] = [w.id async for w in stack.client.list_workflows(query)]
        return bool(found)

    await wait_for(some, what=f"a run matching {query}", timeout_s=DEADLINE_S)
    return found


async def result_of(handle: WorkflowHandle[Any, FailoverResult]) -> FailoverResult:
    async with asyncio.timeout(DEADLINE_S):
        return await handle.result()


async def test_awaiting_approval_is_filterable_and_abort_ends_it(stack: Stack) -> None:
    cluster = approving(stack)
    await kill_primary(stack)
    handle = await start(stack, cluster)
    await wait_phase(handle, "awaiting_approval")
    name = cluster.name
    query = f'FailoverCluster = "{name}" AND FailoverPhase = "awaiting_approval"'
    assert await listed(stack, query) == [failover_workflow_id(name)]

    status = await status_of(handle)  # answers mid-run
    assert (status.from_side, status.to_side) == ("primary", "standby")
    assert [s.name for s in status.steps] == ["snapshot", "confirm", "preflight"]
    description = await handle.describe()
    summary = f"{name}: primary ⇄ standby (manual: es-red alarm)"
    assert await description.static_summary() == summary
    details = await description.static_details()
    assert details is not None and "operator approval" in details and "UPSERT" in details
    attributes = description.typed_search_attributes
    assert attributes.get(visibility.TRIGGER) == "manual"
    assert attributes.get(visibility.CLUSTER) == name
    # The list page's column: what the list API returns, not only what describe does.
    rows = [w async for w in stack.client.list_workflows(query)]
    assert [row.typed_search_attributes.get(visibility.SUMMARY) for row in rows] == [summary]

    accepted = await handle.execute_update(
        "abort", AbortRequest(reason="x", identity="y"), result_type=FailoverStatus
    )
    assert accepted.phase == "awaiting_approval"  # nothing has moved: an abort is allowed
    result = await result_of(handle)
    assert result.result == Outcome.ABORTED and "by y: x" in result.reason
    assert stack.record_values() == [stack.cluster.switch.primary_value]


async def test_approve_records_who_and_the_result_is_filterable(stack: Stack) -> None:
    cluster = approving(stack)
    await kill_primary(stack)
    handle = await start(stack, cluster)
    await wait_phase(handle, "awaiting_approval")
    await handle.execute_update(
        "approve", ApproveRequest(identity="ops@example"), result_type=FailoverStatus
    )
    result = await result_of(handle)
    assert result.result == Outcome.FAILED_OVER and result.approved_by == "ops@example"
    assert [s.name for s in result.steps][:4] == [
        "snapshot",
        "confirm",
        "preflight",
        "awaiting_approval",
    ]
    query = f'FailoverCluster = "{cluster.name}" AND FailoverResult = "failed_over"'
    assert await listed(stack, query) == [failover_workflow_id(cluster.name)]
    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update("approve", ApproveRequest(identity="late"))


@pytest.mark.parametrize(("on_timeout", "outcome"), [("abort", Outcome.ABORTED),
                                                     ("proceed", Outcome.FAILED_OVER)])  # fmt: skip
async def test_approval_timeout(stack: Stack, on_timeout: str, outcome: Outcome) -> None:
    cluster = approving(stack, approval_timeout_seconds=0.5, approval_on_timeout=on_timeout)
    await kill_primary(stack)
    result = await result_of(await start(stack, cluster))
    assert result.result == outcome, result.reason
    if on_timeout == "abort":
        assert "no approval within 0.5 s" in result.reason
        assert stack.record_values() == [stack.cluster.switch.primary_value]
    else:
        assert result.approved_by is not None and result.approved_by.startswith("timeout")


async def test_abort_and_pause_are_refused_once_traffic_moves(stack: Stack) -> None:
    await kill_primary(stack)
    # Hold the run in its INSYNC wait: the record is already switched.
    stack.proxy.add_rule(FaultRule(operation="GetChange", kind=FaultKind.PENDING, count=40))
    handle = await start(stack, stack.cluster)
    await wait_phase(handle, "wait")
    for update, request in (("abort", AbortRequest()), ("pause", PauseRequest())):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(update, request)
        message = str(getattr(refused.value.cause, "message", refused.value.cause))
        assert ("abort after switch: use failback" if update == "abort" else "too late") in message
    result = await result_of(handle)
    assert result.result == Outcome.FAILED_OVER


async def test_pause_holds_before_the_switch_until_resumed(stack: Stack) -> None:
    cluster = approving(stack)
    await kill_primary(stack)
    handle = await start(stack, cluster)
    await wait_phase(handle, "awaiting_approval")
    await handle.execute_update("pause", PauseRequest(identity="ops", reason="checking"))
    await handle.execute_update("approve", ApproveRequest(identity="ops"))
    # Approved but paused: it waits before the switch.
    status = await status_of(handle)
    assert status.paused_by == "ops: checking"
    assert stack.record_values() == [stack.cluster.switch.primary_value]
    await handle.execute_update("resume", PauseRequest(identity="ops"))
    assert (await result_of(handle)).result == Outcome.FAILED_OVER
    assert stack.record_values() == [stack.cluster.switch.standby_value]


# --- notifications --------------------------------------------------------------------------


class Webhook:
    """A Slack-compatible incoming webhook on loopback that keeps what it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Webhook:
        async def hook(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.Response(status=self.status, text="ok")

        app = web.Application()
        app.router.add_post("/services/T000/B000/XXXX", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/services/T000/B000/XXXX"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def notifying(stack: Stack, topic_arn: str | None) -> ClusterConfig:
    raw = stack.config.model_dump(mode="json")
    raw["clusters"][0]["notify"] = {"sns_topic_arn": topic_arn, "webhook_url_env": "TEST_HOOK"}
    # Notification retries run beside the probes: room for a busy machine.
    raw["clusters"][0]["probe"]["timeout_seconds"] = 2.0
    return parse_config(raw).clusters[0]


async def test_notifications_reach_the_webhook_and_sns(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sns = boto3.client("sns", endpoint_url=stack.moto_url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=stack.moto_url, region_name="us-east-1")
    topic = sns.create_topic(Name="search-failover-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    await kill_primary(stack)
    async with Webhook() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        result = await result_of(await start(stack, notifying(stack, topic)))
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.notifications_failed == 0
    texts = [m["text"] for m in hook.received]
    assert texts[0].startswith(f"{stack.cluster.name}: moving traffic primary → standby")
    assert texts[-1].startswith(f"{stack.cluster.name}: failed_over")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    published = sorted(json.loads(m["Body"])["Subject"] for m in messages)
    assert published == [
        f"failover {stack.cluster.name}: result",
        f"failover {stack.cluster.name}: switching",
    ]


async def test_a_failing_webhook_does_not_fail_the_failover(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kill_primary(stack)
    async with Webhook(status=500) as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        result = await result_of(await start(stack, notifying(stack, None)))
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.notifications_failed == 2  # "switching" and the result, each retried
    assert len(hook.received) == 2 * NOTIFY_RETRY.maximum_attempts
    assert stack.record_values() == [stack.cluster.switch.standby_value]


# --- a server prepared by hand, or not at all ------------------------------------------------


async def test_a_namespace_without_the_summary_attribute_still_gets_the_other_four(
    stack: Stack,
) -> None:
    """A namespace where someone created only the four Keyword attributes (as the docs said
    before the summary existed): runs start with those four; `register` adds the fifth."""
    namespace = f"partial-{uuid.uuid4().hex[:8]}"
    service = stack.client.workflow_service
    await service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(seconds=86400),
        )
    )
    client = Client(
        stack.client.service_client,
        namespace=namespace,
        data_converter=stack.client.data_converter,
    )
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={
                key.name: int(key.indexed_value_type)
                for key in visibility.KEYS
                if key != visibility.SUMMARY
            },
        )
    )
    cluster = stack.cluster
    started: list[WorkflowHandle[Any, FailoverResult]] = []

    async def started_in_the_new_namespace() -> bool:
        try:  # a new namespace takes a moment to reach every service of the server
            started.append(await start(stack, cluster, client=client))
        except RPCError as err:
            if "not found" not in err.message.lower():
                raise
            return False
        return True

    await wait_for(started_in_the_new_namespace, what="a start in the new namespace")
    description = await started[0].describe()
    names = {pair.key.name for pair in description.typed_search_attributes.search_attributes}
    assert names == {"FailoverCluster", "FailoverPhase", "FailoverTrigger"}
    await started[0].terminate("test over")

    assert await visibility.register(client) == []
    listed_now = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert visibility.SUMMARY.name in listed_now.custom_attributes
