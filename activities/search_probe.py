"""Probing Elasticsearch/OpenSearch nodes: the only place that talks to search clusters.

A probe never raises for an unhealthy cluster: it reports what each node said, and the
workflow's pure decision functions judge it. Secrets (basic-auth passwords, AWS keys)
are resolved here, at call time, so they never enter workflow history.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from base64 import b64encode
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import httpx
from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.session import Session as BotocoreSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.secrets import read_secret, read_secret_async, secret_from_manager
from failover import metrics
from failover.config import (
    BasicAuth,
    ClusterConfig,
    ClusterSide,
    SecretRef,
    SigV4Auth,
    TlsSettings,
)
from failover.decisions import BAD_ANSWER
from failover.models import NodeProbe, ProbeSideInput, SideProbe


def sigv4_headers(
    session: BotocoreSession, region: str, service: str, method: str, url: str, body: bytes = b""
) -> dict[str, str]:
    """The SigV4 headers for one request to Amazon OpenSearch Service (botocore's signer)."""
    credentials = session.get_credentials()
    if credentials is None:
        raise ApplicationError(
            "no AWS credentials found for SigV4 signing", type="NoCredentials", non_retryable=True
        )
    host = httpx.URL(url).netloc.decode()
    aws_request = AWSRequest(method=method, url=url, data=body, headers={"host": host})
    BotocoreSigV4(credentials.get_frozen_credentials(), service, region).add_auth(aws_request)
    return dict(aws_request.headers.items())


class AwsSigV4Auth(httpx.Auth):
    """Signs each request for Amazon OpenSearch Service with botocore's SigV4 signer."""

    requires_request_body = True

    def __init__(self, region: str, service: str, session: BotocoreSession | None = None) -> None:
        self.region = region
        self.service = service
        self.session = session or BotocoreSession()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = sigv4_headers(
            self.session,
            self.region,
            self.service,
            request.method,
            str(request.url),
            request.content,
        )
        for name, value in headers.items():
            request.headers[name] = value
        yield request


BASIC_PASSWORD = "basic-auth password"
# What a cluster answers to credentials it does not take.
REFUSED_STATUSES = (401, 403)


def basic_password(auth: BasicAuth) -> str:
    """The basic-auth password, read now from its environment variable or (cached) from its
    Secrets Manager secret; blocking on a cache miss."""
    return read_secret(auth.password_env, auth.password_secret, BASIC_PASSWORD)


def _basic_header(username: str, password: str) -> str:
    return "Basic " + b64encode(f"{username}:{password}".encode()).decode()


class SecretBasicAuth(httpx.Auth):
    """Basic auth whose password is in AWS Secrets Manager, read before the first request
    (in a thread, unless `prepare` did it). When the cluster refuses it (401 or 403), the
    secret is read again once past the cache and the request sent again once with what it
    now holds: a rotated password is picked up without a restart. A refused request whose
    secret has not changed is not sent again."""

    requires_request_body = True  # a request sent again needs its body

    def __init__(self, username: str, secret: SecretRef) -> None:
        self.username = username
        self.secret = secret
        self._password: str | None = None
        self._reread_lock = asyncio.Lock()

    async def prepare(self) -> None:
        """Reads the password now, outside any per-request timeout."""
        if self._password is None:
            self._password = await read_secret_async(None, self.secret, BASIC_PASSWORD)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        await self.prepare()
        used = self._password
        assert used is not None
        request.headers["Authorization"] = _basic_header(self.username, used)
        response = yield request
        if response.status_code not in REFUSED_STATUSES:
            return
        async with self._reread_lock:
            if self._password == used:  # not yet re-read by another request of this client
                self._password = await read_secret_async(
                    None, self.secret, BASIC_PASSWORD, fresh=True
                )
            fresh = self._password
        if fresh != used:
            request.headers["Authorization"] = _basic_header(self.username, fresh)
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        if self._password is None:
            self._password = secret_from_manager(self.secret, BASIC_PASSWORD)
        used = self._password
        request.headers["Authorization"] = _basic_header(self.username, used)
        response = yield request
        if response.status_code not in REFUSED_STATUSES:
            return
        if self._password == used:
            self._password = secret_from_manager(self.secret, BASIC_PASSWORD, fresh=True)
        if self._password != used:
            request.headers["Authorization"] = _basic_header(self.username, self._password)
            yield request


def http_auth(side: ClusterSide) -> httpx.Auth | None:
    """Builds the request auth for a side. A password from an environment variable is read
    now; one from Secrets Manager when the first request goes out (SecretBasicAuth)."""
    auth = side.auth
    if isinstance(auth, BasicAuth):
        if auth.password_secret is not None:
            return SecretBasicAuth(auth.username, auth.password_secret)
        return httpx.BasicAuth(auth.username, basic_password(auth))
    if isinstance(auth, SigV4Auth):
        return AwsSigV4Auth(auth.region, auth.service)
    return None


async def prepared_http_auth(side: ClusterSide) -> httpx.Auth | None:
    """http_auth with its secret already read: a slow Secrets Manager then delays the probe
    as a whole instead of timing out the nodes (which would look like a cluster down)."""
    auth = http_auth(side)
    if isinstance(auth, SecretBasicAuth):
        await auth.prepare()
    return auth


def tls_verify(tls: TlsSettings) -> ssl.SSLContext | bool:
    """One SSL context per TLS setting, made once: building one loads the CA bundle, which
    blocks the event loop for tens of milliseconds."""
    if not tls.verify:
        return False
    return _ssl_context(str(tls.ca_bundle) if tls.ca_bundle is not None else None)


@functools.lru_cache(maxsize=32)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


def _describe_transport_error(exc: httpx.TransportError, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout after {timeout:g}s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc or 'refused'}"
    return f"{type(exc).__name__}: {exc}"


USER_AGENT = "search-failover-probe"


class NodeUnreachable(Exception):
    """No HTTP answer from a node; the message describes the transport failure."""


class BadAnswer(Exception):
    """An answer, but not one Elasticsearch/OpenSearch gives (a proxy's error page, say)."""


def _json_object(body: bytes, path: str, status: int) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise BadAnswer(f"not JSON from GET {path} (HTTP {status}): {exc}") from None
    if not isinstance(parsed, dict):
        kind = type(parsed).__name__
        raise BadAnswer(f"not a JSON object from GET {path} (HTTP {status}): a {kind}")
    return parsed


# GET `url` → (HTTP status, body); raises NodeUnreachable when there is no answer.
Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]


def _error_type(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return error.get("type")
    return error if isinstance(error, str) else None


HEALTH_PATH = "/_cluster/health"


async def probe_node_via(
    fetch: Fetch,
    url: str,
    timeout_s: float,
    *,
    identity: bool = True,
    health_path: str = HEALTH_PATH,
) -> NodeProbe:
    """Asks one node who it is and how its cluster is; all failures become data.

    `identity=False` skips `GET /`: _cluster/health names the cluster too, only the
    cluster_uuid is missing. Monitors use it on most rounds to halve their requests.
    `health_path` scopes the health to the storefront's indices (MagentoIndices): there a
    missing alias answers 408 with `timed_out` and red, which is health, not an HTTP error.
    """
    started = time.monotonic()
    scoped = health_path != HEALTH_PATH
    probe = NodeProbe(url=url, health_scope=_scope(health_path) if scoped else None)
    base = url.rstrip("/")
    try:
        async with asyncio.timeout(timeout_s * 2):
            if identity:
                status, body = await fetch(base + "/")
                if status >= 400:
                    probe.http_status = status
                    probe.error_type = _error_type(body)
                    return probe
                info = _json_object(body, "/", status)
                probe.cluster_name = info.get("cluster_name")
                probe.cluster_uuid = info.get("cluster_uuid")
            status, body = await fetch(base + health_path)
            probe.http_status = status
            if status >= 400 and not (scoped and status == 408):
                probe.error_type = _error_type(body)
                return probe
            health = _json_object(body, health_path, status)
            if not identity:
                probe.cluster_name = health.get("cluster_name")
            probe.health_status = health.get("status")
            probe.timed_out = health.get("timed_out")
            probe.number_of_nodes = health.get("number_of_nodes")
    except NodeUnreachable as exc:
        probe.error = str(exc)
    except TimeoutError:
        probe.error = f"timeout after {timeout_s * 2:g}s (no full answer)"
    except BadAnswer as exc:
        # It answered: not `unreachable` (decisions.node_problem keeps this reason as it is).
        probe.error = f"{BAD_ANSWER}: {exc}"
    finally:
        probe.latency_ms = round((time.monotonic() - started) * 1000, 1)
    return probe


def _scope(health_path: str) -> str:
    return health_path.removeprefix(HEALTH_PATH + "/").split("?", 1)[0]


def health_path_of(cluster: ClusterConfig) -> str:
    return cluster.magento.health_path() if cluster.magento is not None else HEALTH_PATH


def httpx_fetch(client: httpx.AsyncClient, timeout_s: float) -> Fetch:
    async def fetch(url: str) -> tuple[int, bytes]:
        try:
            response = await client.get(url)
        except httpx.TransportError as exc:
            raise NodeUnreachable(_describe_transport_error(exc, timeout_s)) from None
        return response.status_code, response.content

    return fetch


async def probe_node(
    client: httpx.AsyncClient,
    url: str,
    timeout_s: float,
    *,
    identity: bool = True,
    health_path: str = HEALTH_PATH,
) -> NodeProbe:
    return await probe_node_via(
        httpx_fetch(client, timeout_s), url, timeout_s, identity=identity, health_path=health_path
    )


def probe_client(
    side: ClusterSide,
    timeout_seconds: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """`auth`: one made already (prepared_http_auth); default: http_auth(side)."""
    return httpx.AsyncClient(
        auth=auth if auth is not None else http_auth(side),
        verify=tls_verify(side.tls),
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        headers={"user-agent": USER_AGENT},
    )


class SearchProbeActivities:
    """Activities that read search-cluster health. `transport` lets tests route requests."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport

    @activity.defn(name="probe_side")
    async def probe_side(self, request: ProbeSideInput) -> SideProbe:
        settings = request.settings
        auth = await prepared_http_auth(settings)
        async with probe_client(
            settings, request.timeout_seconds, transport=self.transport, auth=auth
        ) as client:
            probes = await asyncio.gather(
                *(
                    probe_node(
                        client,
                        str(node),
                        request.timeout_seconds,
                        health_path=request.health_path,
                    )
                    for node in settings.nodes
                )
            )
        counter = activity.metric_meter().create_counter(
            metrics.PROBES, "search node probes by the failover and drills"
        )
        for probe in probes:
            answered = probe.error is None and probe.http_status == 200
            counter.add(
                1,
                {
                    "cluster": request.cluster,
                    "side": request.side,
                    "outcome": "answered" if answered else "failed",
                },
            )
        return SideProbe(cluster=request.cluster, side=request.side, nodes=list(probes))
