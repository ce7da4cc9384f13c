"""Probing Elasticsearch/OpenSearch nodes: the only place that talks to search clusters.

A probe never raises for an unhealthy cluster: it reports what each node said, and the
workflow's pure decision functions judge it. Secrets (basic-auth passwords, AWS keys)
are resolved here, at call time, so they never enter workflow history.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Generator

import httpx
from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.session import Session as BotocoreSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from failover.config import BasicAuth, ClusterSide, SigV4Auth, TlsSettings
from failover.models import NodeProbe, ProbeSideInput, SideProbe


class AwsSigV4Auth(httpx.Auth):
    """Signs each request for Amazon OpenSearch Service with botocore's SigV4 signer."""

    requires_request_body = True

    def __init__(self, region: str, service: str, session: BotocoreSession | None = None) -> None:
        self.region = region
        self.service = service
        self.session = session or BotocoreSession()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        credentials = self.session.get_credentials()
        if credentials is None:
            raise ApplicationError(
                "no AWS credentials found for SigV4 signing",
                type="NoCredentials",
                non_retryable=True,
            )
        aws_request = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"host": request.url.netloc.decode()},
        )
        BotocoreSigV4(credentials.get_frozen_credentials(), self.service, self.region).add_auth(
            aws_request
        )
        for name, value in aws_request.headers.items():
            request.headers[name] = value
        yield request


def http_auth(side: ClusterSide) -> httpx.Auth | None:
    """Builds the request auth for a side, reading secrets from the environment now."""
    auth = side.auth
    if isinstance(auth, BasicAuth):
        password = os.environ.get(auth.password_env)
        if password is None:
            raise ApplicationError(
                f"environment variable {auth.password_env} (basic-auth password) is not set",
                type="MissingSecret",
                non_retryable=True,
            )
        return httpx.BasicAuth(auth.username, password)
    if isinstance(auth, SigV4Auth):
        return AwsSigV4Auth(auth.region, auth.service)
    return None


def tls_verify(tls: TlsSettings) -> ssl.SSLContext | bool:
    if tls.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(tls.ca_bundle))
    return tls.verify


def _describe_transport_error(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout after {timeout:g}s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc or 'refused'}"
    return f"{type(exc).__name__}: {exc}"


def _error_type(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("type")
    return error if isinstance(error, str) else None


async def probe_node(
    client: httpx.AsyncClient, url: str, timeout_s: float, *, identity: bool = True
) -> NodeProbe:
    """Asks one node who it is and how its cluster is; all failures become data.

    `identity=False` skips `GET /`: _cluster/health names the cluster too, only the
    cluster_uuid is missing. Monitors use it on most rounds to halve their requests.
    """
    started = time.monotonic()
    probe = NodeProbe(url=url)
    base = url.rstrip("/")
    try:
        async with asyncio.timeout(timeout_s * 2):
            if identity:
                root = await client.get(base + "/")
                if root.status_code >= 400:
                    probe.http_status = root.status_code
                    probe.error_type = _error_type(root)
                    return probe
                info = root.json()
                probe.cluster_name = info.get("cluster_name")
                probe.cluster_uuid = info.get("cluster_uuid")
            health = await client.get(base + "/_cluster/health")
            probe.http_status = health.status_code
            if health.status_code >= 400:
                probe.error_type = _error_type(health)
                return probe
            body = health.json()
            if not identity:
                probe.cluster_name = body.get("cluster_name")
            probe.health_status = body.get("status")
            probe.timed_out = body.get("timed_out")
            probe.number_of_nodes = body.get("number_of_nodes")
    except httpx.TransportError as exc:
        probe.error = _describe_transport_error(exc, timeout_s)
    except TimeoutError:
        probe.error = f"timeout after {timeout_s * 2:g}s (no full answer)"
    except ValueError as exc:
        probe.error = f"answer is not JSON: {exc}"
    finally:
        probe.latency_ms = round((time.monotonic() - started) * 1000, 1)
    return probe


def probe_client(
    side: ClusterSide,
    timeout_seconds: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    local_address: str | None = None,
) -> httpx.AsyncClient:
    """A client for one side's nodes; `local_address` pins the source address (vantage)."""
    if transport is None and local_address is not None:
        transport = httpx.AsyncHTTPTransport(
            local_address=local_address, verify=tls_verify(side.tls)
        )
    return httpx.AsyncClient(
        auth=http_auth(side),
        verify=tls_verify(side.tls),
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        headers={"user-agent": "search-failover-probe"},
    )


class SearchProbeActivities:
    """Activities that read search-cluster health. `transport` lets tests route requests."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport

    @activity.defn(name="probe_side")
    async def probe_side(self, request: ProbeSideInput) -> SideProbe:
        settings = request.settings
        async with probe_client(
            settings, request.timeout_seconds, transport=self.transport
        ) as client:
            probes = await asyncio.gather(
                *(probe_node(client, str(node), request.timeout_seconds) for node in settings.nodes)
            )
        return SideProbe(cluster=request.cluster, side=request.side, nodes=list(probes))
