"""Probe auth: secrets are read from the environment at call time and never stored. And what
a probe makes of an answer that is not Elasticsearch's (a proxy's page)."""

from __future__ import annotations

import base64

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.search_probe import SearchProbeActivities, http_auth, probe_node
from failover import decisions
from failover.config import ClusterSide
from failover.models import NodeProbe, ProbeSideInput

HEALTH = {"cluster_name": "es-a", "status": "green", "timed_out": False, "number_of_nodes": 3}


def side(auth: dict) -> ClusterSide:
    return ClusterSide.model_validate({"nodes": ["http://127.0.0.1:9200"], "auth": auth})


async def probe_with(settings: ClusterSide) -> tuple[list[httpx.Request], object]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = HEALTH if request.url.path == "/_cluster/health" else {"cluster_name": "es-a"}
        return httpx.Response(200, json=body)

    activities = SearchProbeActivities(transport=httpx.MockTransport(answer))
    # Run as Temporal runs it: inside an activity context (heartbeats, metrics).
    result = await ActivityEnvironment().run(
        activities.probe_side,
        ProbeSideInput(cluster="c", side="primary", settings=settings, timeout_seconds=1),
    )
    return seen, result


async def test_basic_auth_password_comes_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ES_TEST_PASSWORD", "s3cret")
    settings = side({"type": "basic", "username": "magento", "password_env": "ES_TEST_PASSWORD"})
    seen, result = await probe_with(settings)
    expected = "Basic " + base64.b64encode(b"magento:s3cret").decode()
    assert [r.headers["authorization"] for r in seen] == [expected, expected]
    assert "s3cret" not in settings.model_dump_json() + result.model_dump_json()


def test_missing_password_variable_is_a_permanent_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ES_TEST_PASSWORD", raising=False)
    settings = side({"type": "basic", "username": "magento", "password_env": "ES_TEST_PASSWORD"})
    with pytest.raises(ApplicationError) as caught:
        http_auth(settings)
    assert caught.value.non_retryable
    assert "ES_TEST_PASSWORD" in caught.value.message


async def test_sigv4_signs_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    seen, _ = await probe_with(side({"type": "sigv4", "region": "eu-west-1"}))
    for request in seen:
        authorization = request.headers["authorization"]
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        assert "/eu-west-1/es/aws4_request" in authorization
        assert "x-amz-date" in request.headers


# --- answers that are not Elasticsearch's ---------------------------------------------------

PROXY_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


async def probe_answering(root: httpx.Response, health: httpx.Response, *, identity: bool):
    def answer(request: httpx.Request) -> httpx.Response:
        return health if request.url.path == "/_cluster/health" else root

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        return await probe_node(client, "http://127.0.0.1:9200", 1, identity=identity)


def problem(probe: NodeProbe) -> str | None:
    return decisions.node_problem(probe, expected_cluster_name="es-a", yellow_policy="degraded")


@pytest.mark.parametrize("identity", [True, False], ids=["GET /", "GET /_cluster/health"])
async def test_a_200_that_is_not_json_is_a_bad_answer_not_unreachable(identity: bool) -> None:
    """A proxy's error page with 200: the node answered, so the reason says so."""
    html = httpx.Response(200, content=PROXY_PAGE, headers={"content-type": "text/html"})
    good = httpx.Response(200, json={"cluster_name": "es-a"})
    probe = await probe_answering(html if identity else good, html, identity=identity)
    path = "/" if identity else "/_cluster/health"
    assert probe.error is not None
    assert probe.error.startswith(f"bad answer: not JSON from GET {path} (HTTP 200): Expecting")
    reason = problem(probe)
    assert reason is not None and reason.startswith("bad answer: not JSON")
    assert "unreachable" not in reason


async def test_json_that_is_not_an_object_is_a_bad_answer() -> None:
    probe = await probe_answering(
        httpx.Response(200, json=["es-a"]), httpx.Response(200, json=HEALTH), identity=True
    )
    assert problem(probe) == "bad answer: not a JSON object from GET / (HTTP 200): a list"


async def test_a_body_that_is_not_utf8_is_a_bad_answer() -> None:
    probe = await probe_answering(
        httpx.Response(200, json={"cluster_name": "es-a"}),
        httpx.Response(200, content=b"\xff\xfe\xfa"),
        identity=True,
    )
    reason = problem(probe)
    assert reason is not None and reason.startswith("bad answer: not JSON from GET /_cluster")


async def test_no_answer_is_still_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        probe = await probe_node(client, "http://127.0.0.1:9200", 1)
    assert problem(probe) == "unreachable: connection failed: refused"
