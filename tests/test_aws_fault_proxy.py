"""The fault proxy must be invisible when idle and fail exactly like AWS when told to.

boto3 is pointed at the proxy, the proxy at a real moto server on loopback, and every assertion
is made on what botocore parsed: if the wire format of an injected error were wrong, the error
code seen here would be a bare HTTP status instead of the AWS code.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import cache
from typing import Any

import boto3
import httpx
import pytest
import pytest_asyncio
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from sandbox.aws_fault_proxy import (
    AwsFaultProxy,
    FaultKind,
    FaultRule,
    FaultRuleError,
    ForwardedCall,
    add_rule_remote,
    clear_rules_remote,
)

# Exactly one attempt. Careful: in a botocore Config "max_attempts" counts *retries* (it becomes
# total_max_attempts = max_attempts + 1), so {"max_attempts": 1} would retry a throttled call once.
ClientFactory = Callable[[str], Any]

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def make_client(service: str, endpoint_url: str, config: Config = NO_RETRIES) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        config=config,
    )


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest_asyncio.fixture(scope="module")
async def proxy(moto_server_url: str) -> AsyncIterator[AwsFaultProxy]:
    async with AwsFaultProxy(moto_server_url) as running:
        yield running


@pytest.fixture(scope="module")
def aws(proxy: AwsFaultProxy) -> ClientFactory:
    """boto3 clients that talk to the proxy, one per service (creating them is slow)."""
    return cache(lambda service: make_client(service, proxy.url))


@pytest.fixture(scope="module")
def moto_direct(moto_server_url: str) -> ClientFactory:
    """boto3 clients that bypass the proxy, to see what really reached moto."""
    return cache(lambda service: make_client(service, moto_server_url))


@pytest_asyncio.fixture(autouse=True)
async def clean_slate(proxy: AwsFaultProxy) -> AsyncIterator[None]:
    proxy.reset()
    reset = await asyncio.to_thread(httpx.post, f"{proxy.url}/moto-api/reset", timeout=10)
    assert reset.status_code == 200
    yield
    errors, proxy.hook_errors = proxy.hook_errors, []
    assert not errors, f"on_forwarded hooks failed: {errors!r}"


def client_error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


async def create_zone(r53: Any, name: str = "example.internal") -> str:
    created = await asyncio.to_thread(
        r53.create_hosted_zone, Name=name, CallerReference=str(uuid.uuid4())
    )
    return created["HostedZone"]["Id"].removeprefix("/hostedzone/")


def upsert_kwargs(
    zone_id: str, value: str, name: str = "search.example.internal"
) -> dict[str, Any]:
    return {
        "HostedZoneId": zone_id,
        "ChangeBatch": {
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    }


async def cname_values(r53: Any, zone_id: str, name: str = "search.example.internal.") -> list[str]:
    listed = await asyncio.to_thread(r53.list_resource_record_sets, HostedZoneId=zone_id)
    return [
        record["Value"]
        for rrset in listed["ResourceRecordSets"]
        if rrset["Name"] == name and rrset["Type"] == "CNAME"
        for record in rrset["ResourceRecords"]
    ]


# --- transparent forwarding --------------------------------------------------------------------


async def test_forwards_route53_calls_transparently(
    proxy: AwsFaultProxy, aws: ClientFactory, moto_direct: ClientFactory
) -> None:
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    change = await asyncio.to_thread(
        r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-primary.internal")
    )
    assert change["ChangeInfo"]["Status"] == "INSYNC"

    assert await cname_values(r53, zone_id) == ["es-primary.internal"]
    # The change really reached moto, not some proxy-side state.
    assert await cname_values(moto_direct("route53"), zone_id) == ["es-primary.internal"]
    # Query strings survive the trip (moto filters on ?dnsname=).
    by_name = await asyncio.to_thread(r53.list_hosted_zones_by_name, DNSName="example.internal")
    assert [z["Id"] for z in by_name["HostedZones"]] == [f"/hostedzone/{zone_id}"]
    got = await asyncio.to_thread(r53.get_change, Id=change["ChangeInfo"]["Id"])
    assert got["ChangeInfo"]["Status"] == "INSYNC"

    assert [c.operation for c in proxy.calls] == [
        "CreateHostedZone",
        "ChangeResourceRecordSets",
        "ListResourceRecordSets",
        "ListHostedZonesByName",
        "GetChange",
    ]
    assert all(c.injected is None and 200 <= c.status < 300 for c in proxy.calls)
    assert all(c.service == "route53" for c in proxy.calls)
    assert proxy.count("ChangeResourceRecordSets") == 1


async def test_moto_api_passes_through_unrecorded(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    await create_zone(r53)
    proxy.add_rule(FaultRule("Unknown", FaultKind.ERROR, count=-1))

    reset = await asyncio.to_thread(httpx.post, f"{proxy.url}/moto-api/reset", timeout=10)

    assert reset.status_code == 200
    zones = await asyncio.to_thread(r53.list_hosted_zones)
    assert zones["HostedZones"] == []
    assert [c.operation for c in proxy.calls] == ["CreateHostedZone", "ListHostedZones"]


# --- injected errors ---------------------------------------------------------------------------


async def test_throttles_first_two_changes_then_lets_them_through(
    proxy: AwsFaultProxy, aws: ClientFactory, moto_direct: ClientFactory
) -> None:
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    rule = proxy.add_rule(FaultRule("ChangeResourceRecordSets", FaultKind.ERROR, count=2))

    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            await asyncio.to_thread(
                r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-standby.internal")
            )
        assert client_error(excinfo) == ("Throttling", 400, "Rate exceeded")
        # A throttled change must not have been applied upstream.
        assert await cname_values(moto_direct("route53"), zone_id) == []

    await asyncio.to_thread(
        r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-standby.internal")
    )

    assert await cname_values(moto_direct("route53"), zone_id) == ["es-standby.internal"]
    assert rule.hits == 2
    assert rule.spent
    changes = [c for c in proxy.calls if c.operation == "ChangeResourceRecordSets"]
    assert [(c.injected, c.status) for c in changes] == [
        (FaultKind.ERROR, 400),
        (FaultKind.ERROR, 400),
        (None, 200),
    ]


@pytest.mark.parametrize(
    ("code", "status", "modeled"),
    [
        ("PriorRequestNotComplete", 400, "PriorRequestNotComplete"),
        ("Throttling", 400, None),
        ("AccessDenied", 403, None),
        ("NoSuchHostedZone", 404, "NoSuchHostedZone"),
        ("InvalidChangeBatch", 400, "InvalidChangeBatch"),
        ("ServiceUnavailable", 503, None),
        ("InternalError", 500, None),
    ],
)
async def test_route53_error_codes_reach_boto3(
    proxy: AwsFaultProxy, aws: ClientFactory, code: str, status: int, modeled: str | None
) -> None:
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    proxy.add_rule(
        FaultRule(
            "ChangeResourceRecordSets", FaultKind.ERROR, status=status, code=code, message="nope"
        )
    )

    with pytest.raises(ClientError) as excinfo:
        await asyncio.to_thread(
            r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-standby.internal")
        )

    assert client_error(excinfo) == (code, status, "nope")
    assert excinfo.value.response["ResponseMetadata"]["RequestId"]
    if modeled:
        assert isinstance(excinfo.value, getattr(r53.exceptions, modeled))


async def test_skip_lets_the_first_calls_through(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    await create_zone(r53)
    rule = proxy.add_rule(
        FaultRule("ListHostedZones", FaultKind.ERROR, skip=2, count=1, code="Throttling")
    )

    outcomes = []
    for _ in range(4):
        try:
            await asyncio.to_thread(r53.list_hosted_zones)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    assert outcomes == ["ok", "ok", "Throttling", "ok"]
    assert rule.hits == 1
    assert rule.matched == 3


async def test_forever_rule_and_service_filter(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    forever = proxy.add_rule(
        FaultRule("ListHostedZones", FaultKind.ERROR, count=-1, code="AccessDenied", status=403)
    )
    other_service = proxy.add_rule(
        FaultRule("ListHostedZonesByName", FaultKind.ERROR, service="elasticloadbalancing")
    )

    for _ in range(3):
        with pytest.raises(ClientError, match="AccessDenied"):
            await asyncio.to_thread(r53.list_hosted_zones)
    await asyncio.to_thread(r53.list_hosted_zones_by_name)

    assert forever.hits == 3
    assert not forever.spent
    assert other_service.hits == 0


# --- slow and pending --------------------------------------------------------------------------


async def test_botocore_max_attempts_counts_retries(proxy: AwsFaultProxy) -> None:
    """Why NO_RETRIES uses total_max_attempts: the proxy sees botocore's hidden retry."""
    one_retry = make_client(
        "route53", proxy.url, Config(retries={"max_attempts": 1, "mode": "standard"})
    )
    rule = proxy.add_rule(FaultRule("ListHostedZones", FaultKind.ERROR))

    await asyncio.to_thread(one_retry.list_hosted_zones)

    assert rule.hits == 1
    assert proxy.count("ListHostedZones") == 2


async def test_slow_delays_the_answer_but_forwards(
    proxy: AwsFaultProxy, aws: ClientFactory, moto_direct: ClientFactory
):
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    rule = proxy.add_rule(FaultRule("ChangeResourceRecordSets", FaultKind.SLOW, delay_ms=400))

    started = time.monotonic()
    await asyncio.to_thread(
        r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-standby.internal")
    )
    elapsed = time.monotonic() - started

    assert elapsed >= 0.4
    assert rule.hits == 1
    assert proxy.calls[-1].injected is FaultKind.SLOW
    assert await cname_values(moto_direct("route53"), zone_id) == ["es-standby.internal"]


async def test_slow_and_error_combine(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    slow = proxy.add_rule(FaultRule("ListHostedZones", FaultKind.SLOW, delay_ms=200))
    error = proxy.add_rule(FaultRule("ListHostedZones", FaultKind.ERROR, code="InternalError"))

    started = time.monotonic()
    with pytest.raises(ClientError, match="InternalError"):
        await asyncio.to_thread(r53.list_hosted_zones)

    assert time.monotonic() - started >= 0.2
    assert (slow.hits, error.hits) == (1, 1)


async def test_pending_for_n_polls_then_insync(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    on_change = proxy.add_rule(FaultRule("ChangeResourceRecordSets", FaultKind.PENDING))
    on_poll = proxy.add_rule(FaultRule("GetChange", FaultKind.PENDING, count=3))

    change = await asyncio.to_thread(
        r53.change_resource_record_sets, **upsert_kwargs(zone_id, "es-standby.internal")
    )
    statuses = [change["ChangeInfo"]["Status"]]
    while statuses[-1] != "INSYNC":
        assert len(statuses) < 10, statuses
        polled = await asyncio.to_thread(r53.get_change, Id=change["ChangeInfo"]["Id"])
        statuses.append(polled["ChangeInfo"]["Status"])

    assert statuses == ["PENDING", "PENDING", "PENDING", "PENDING", "INSYNC"]
    assert (on_change.hits, on_poll.hits) == (1, 3)
    assert [c.injected for c in proxy.calls if c.operation == "GetChange"] == [
        FaultKind.PENDING,
        FaultKind.PENDING,
        FaultKind.PENDING,
        None,
    ]


def test_pending_is_refused_for_other_operations() -> None:
    with pytest.raises(FaultRuleError) as excinfo:
        FaultRule("ListHostedZones", FaultKind.PENDING)
    assert excinfo.value.field == "operation"


# --- hooks -------------------------------------------------------------------------------------


async def test_on_forwarded_runs_once_after_the_upsert_and_before_the_answer(
    proxy: AwsFaultProxy, aws: ClientFactory, moto_direct: ClientFactory
) -> None:
    r53 = aws("route53")
    zone_id = await create_zone(r53)
    proxy.add_rule(FaultRule("ChangeResourceRecordSets", FaultKind.ERROR, code="Throttling"))
    client_returned = threading.Event()
    seen: list[tuple[ForwardedCall, list[str], bool]] = []

    async def hook(call: ForwardedCall) -> None:
        upstream = await cname_values(moto_direct("route53"), zone_id)
        seen.append((call, upstream, client_returned.is_set()))

    proxy.on_forwarded("ChangeResourceRecordSets", hook)

    def change_with_retry() -> None:
        try:
            r53.change_resource_record_sets(**upsert_kwargs(zone_id, "es-standby.internal"))
        except ClientError:
            r53.change_resource_record_sets(**upsert_kwargs(zone_id, "es-standby.internal"))
        client_returned.set()

    await asyncio.to_thread(change_with_retry)

    assert proxy.count("ChangeResourceRecordSets") == 2
    assert len(seen) == 1
    call, upstream, returned_before_hook = seen[0]
    assert call.operation == "ChangeResourceRecordSets"
    assert call.method == "POST"
    assert call.path == f"/2013-04-01/hostedzone/{zone_id}/rrset/"
    assert call.status == 200
    assert b"<Value>es-standby.internal</Value>" in call.request_body
    assert b"<Status>INSYNC</Status>" in call.response_body
    assert upstream == ["es-standby.internal"]  # the UPSERT had gone through
    assert not returned_before_hook  # and the client had not been answered yet


async def test_sync_hooks_errors_and_clearing(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    r53 = aws("route53")
    counted: list[str] = []
    proxy.on_forwarded("ListHostedZones", lambda call: counted.append(call.operation))

    def broken(_call: ForwardedCall) -> None:
        raise RuntimeError("hook bug")

    proxy.on_forwarded("ListHostedZones", broken)

    zones = await asyncio.to_thread(r53.list_hosted_zones)
    assert zones["HostedZones"] == []  # a broken hook does not break the call...
    errors, proxy.hook_errors = proxy.hook_errors, []
    assert [str(e) for e in errors] == ["hook bug"]  # ...but is not lost either

    proxy.clear_rules()
    await asyncio.to_thread(r53.list_hosted_zones)
    assert counted == ["ListHostedZones"]


# --- other protocols ---------------------------------------------------------------------------


async def test_elbv2_query_protocol_access_denied(proxy: AwsFaultProxy, aws: ClientFactory) -> None:
    elbv2 = aws("elbv2")
    rule = proxy.add_rule(
        FaultRule(
            "CreateTargetGroup",
            FaultKind.ERROR,
            status=403,
            code="AccessDenied",
            message="User is not authorized to perform: elasticloadbalancing:CreateTargetGroup",
        )
    )

    with pytest.raises(ClientError) as excinfo:
        await asyncio.to_thread(elbv2.create_target_group, Name="es-primary", TargetType="lambda")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("AccessDenied", 403)
    assert message.startswith("User is not authorized")

    created = await asyncio.to_thread(
        elbv2.create_target_group, Name="es-primary", TargetType="lambda"
    )
    listed = await asyncio.to_thread(elbv2.describe_target_groups)
    assert [g["TargetGroupArn"] for g in listed["TargetGroups"]] == [
        created["TargetGroups"][0]["TargetGroupArn"]
    ]
    assert rule.hits == 1
    assert {c.service for c in proxy.calls} == {"elasticloadbalancing"}
    assert proxy.count("CreateTargetGroup") == 2


@pytest.mark.parametrize(
    ("code", "modeled"),
    [("InvalidInstanceId", "InvalidInstanceId"), ("ThrottlingException", None)],
)
async def test_ssm_json_protocol_error(
    proxy: AwsFaultProxy, aws: ClientFactory, code: str, modeled: str | None
) -> None:
    ssm = aws("ssm")
    proxy.add_rule(FaultRule("SendCommand", FaultKind.ERROR, code=code, message="no such node"))

    with pytest.raises(ClientError) as excinfo:
        await asyncio.to_thread(
            ssm.send_command,
            InstanceIds=["i-0123456789abcdef0"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["systemctl stop elasticsearch"]},
        )

    assert client_error(excinfo) == (code, 400, "no such node")
    if modeled:
        assert isinstance(excinfo.value, getattr(ssm.exceptions, modeled))
    assert proxy.calls[-1].service == "ssm"


async def test_json_protocol_forwards_transparently(
    proxy: AwsFaultProxy, aws: ClientFactory
) -> None:
    ssm = aws("ssm")
    await asyncio.to_thread(ssm.put_parameter, Name="/es/active", Value="primary", Type="String")
    got = await asyncio.to_thread(ssm.get_parameter, Name="/es/active")
    assert got["Parameter"]["Value"] == "primary"
    assert [c.operation for c in proxy.calls] == ["PutParameter", "GetParameter"]


# --- control API -------------------------------------------------------------------------------


async def test_control_api_adds_lists_and_clears_rules(
    proxy: AwsFaultProxy, aws: ClientFactory
) -> None:
    r53 = aws("route53")
    added = await asyncio.to_thread(
        add_rule_remote,
        proxy.url,
        FaultRule("ListHostedZones", FaultKind.ERROR, status=503, code="ServiceUnavailable"),
    )
    assert (added.operation, added.kind, added.code, added.hits) == (
        "ListHostedZones",
        FaultKind.ERROR,
        "ServiceUnavailable",
        0,
    )

    with pytest.raises(ClientError) as excinfo:
        await asyncio.to_thread(r53.list_hosted_zones)
    assert client_error(excinfo)[:2] == ("ServiceUnavailable", 503)

    state = (await asyncio.to_thread(httpx.get, f"{proxy.url}/__faults__")).json()
    assert state["calls"] == {"ListHostedZones": 1}
    assert [(r["operation"], r["hits"], r["spent"]) for r in state["rules"]] == [
        ("ListHostedZones", 1, True)
    ]

    assert await asyncio.to_thread(clear_rules_remote, proxy.url) == 1
    assert proxy.rules == []
    assert (await asyncio.to_thread(httpx.get, f"{proxy.url}/__faults__")).json()["rules"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[]", None),
        (json.dumps({"kind": "error"}).encode(), "operation"),
        (json.dumps({"operation": "GetChange", "kind": "explode"}).encode(), "kind"),
        (json.dumps({"operation": "GetChange", "kind": "error", "count": 0}).encode(), "count"),
        (json.dumps({"operation": "GetChange", "kind": "error", "skip": "1"}).encode(), "skip"),
        (json.dumps({"operation": "GetChange", "kind": "slow"}).encode(), "delay_ms"),
        (json.dumps({"operation": "GetChange", "kind": "error", "status": 200}).encode(), "status"),
        (json.dumps({"operation": "GetChange", "kind": "error", "hits": 5}).encode(), "hits"),
        (json.dumps({"operation": "GetChange", "kind": "error", "colour": 1}).encode(), "colour"),
        (json.dumps({"operation": "ListHostedZones", "kind": "pending"}).encode(), "operation"),
    ],
)
async def test_control_api_rejects_bad_rules(
    proxy: AwsFaultProxy, body: bytes, field: str | None
) -> None:
    response = await asyncio.to_thread(
        httpx.post,
        f"{proxy.url}/__faults__/rules",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["field"] == field
    if field:
        assert field in response.json()["error"]
    assert proxy.rules == []


async def test_add_rule_remote_raises_naming_the_field(proxy: AwsFaultProxy) -> None:
    rule = FaultRule("GetChange", FaultKind.ERROR)
    rule.count = 0

    with pytest.raises(FaultRuleError) as excinfo:
        await asyncio.to_thread(add_rule_remote, proxy.url, rule)

    assert excinfo.value.field == "count"
    assert proxy.rules == []


async def test_control_api_unknown_paths_and_methods(proxy: AwsFaultProxy) -> None:
    missing = await asyncio.to_thread(httpx.get, f"{proxy.url}/__faults__/nope")
    wrong_method = await asyncio.to_thread(httpx.put, f"{proxy.url}/__faults__/rules")

    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["Allow"]
    assert proxy.calls == []
