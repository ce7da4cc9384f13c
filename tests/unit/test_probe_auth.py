"""Probe auth: secrets are read from the environment at call time and never stored."""

from __future__ import annotations

import base64

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.search_probe import SearchProbeActivities, http_auth
from failover.config import ClusterSide
from failover.models import ProbeSideInput

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
