"""The alarm receiver: CloudWatch alarms via SNS or EventBridge, and Alertmanager webhooks.

An HTTP service (Starlette on uvicorn) that may face the internet, so every request is
checked in the same order, cheapest first: rate limit per source address, endpoint
enabled, content type, body size, authentication (SNS: the message signature), JSON,
shape. Only then is the alarm mapped to a cluster and handed to Temporal, where the
cluster's monitor (or the failover itself) confirms the fault before anything moves.
Every refusal is logged with a stable reason; no answer or log line carries a secret.
What a request says (a TopicArn, an alarm name, a header) reaches the log through
`logs.escape`, so one request makes one line, whatever control characters it holds.
When Temporal cannot be reached the answer is 503, so SNS and EventBridge deliver again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import httpx
import uvicorn
from cachetools import TTLCache
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from failover import metrics
from failover.alarms.payloads import (
    NOT_ACTIONABLE,
    UNMAPPED,
    CloudWatchChange,
    PayloadError,
    cluster_for_alarm,
    clusters_for_labels,
    from_alertmanager,
    from_eventbridge,
    from_sns_message,
    parse_json,
    validation_problem,
)
from failover.alarms.sns import SigningCertificates, SnsEnvelope, SnsRejected, SnsVerifier
from failover.client.operations import deliver_alarm
from failover.config import AppConfig, ClusterConfig, ConfigError, ReceiverSettings
from failover.logs import escape
from failover.models import AlarmNotice
from failover.process import stop_on_signals

log = logging.getLogger("failover.receiver")

Endpoint = Literal["sns", "eventbridge", "alertmanager"]
CONTENT_TYPES: dict[Endpoint, tuple[str, ...]] = {
    # SNS posts text/plain; JSON is accepted too (it is what the body is).
    "sns": ("text/plain", "application/json"),
    "eventbridge": ("application/json",),
    "alertmanager": ("application/json",),
}
# EventBridge retries an API destination for up to 24 h with the same event id.
EVENT_ID_MEMORY = timedelta(hours=24)
RETRY_AFTER_SECONDS = 5
STARTUP_SECONDS = 10.0

# Stable reason prefixes.
RATE_LIMITED = "rate limited"
NOT_ENABLED = "endpoint not enabled"
BAD_CONTENT_TYPE = "unsupported content type"
TOO_LARGE = "body too large"
AUTH_MISSING = "authentication missing"
AUTH_WRONG = "authentication failed"
TEMPORAL_UNAVAILABLE = "temporal unavailable"
CONFIRM_FAILED = "subscription confirmation failed"


class Rejected(Exception):
    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, repr=False)
class ReceiverSecrets:
    """Resolved from the environment variables the config names; never logged (no repr)."""

    eventbridge: bytes | None = None
    alertmanager_bearer: bytes | None = None
    alertmanager_basic: bytes | None = None  # "user:password"

    @classmethod
    def from_env(
        cls, settings: ReceiverSettings, env: Mapping[str, str] = os.environ
    ) -> ReceiverSecrets:
        missing: list[str] = []

        def read(name: str | None, where: str) -> bytes | None:
            if name is None:
                return None
            value = env.get(name)
            if not value:
                missing.append(f"receiver.{where}: environment variable {name} is not set")
                return None
            return value.encode()

        eventbridge = read(settings.eventbridge and settings.eventbridge.secret_env, "eventbridge")
        manager = settings.alertmanager
        bearer = read(manager and manager.bearer_token_env, "alertmanager")
        password = read(manager and manager.basic_password_env, "alertmanager")
        if missing:
            raise ConfigError(missing)
        basic = None
        if manager is not None and manager.basic_username is not None and password is not None:
            basic = manager.basic_username.encode() + b":" + password
        return cls(eventbridge=eventbridge, alertmanager_bearer=bearer, alertmanager_basic=basic)

    def __repr__(self) -> str:
        return "ReceiverSecrets(<hidden>)"


class TemporalGate:
    """One client, connected on first use and again after a failed connect."""

    def __init__(self, connect: Callable[[], Awaitable[Client]]) -> None:
        self._connect = connect
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
            return self._client


@dataclass
class ReceiverCounters:
    """What the receiver has answered, by status; for tests and the status log line."""

    by_status: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


class AlarmReceiver:
    def __init__(
        self,
        config: AppConfig,
        *,
        connect: Callable[[], Awaitable[Client]],
        secrets: ReceiverSecrets,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if config.receiver is None:
            raise ConfigError(["receiver: no receiver section in the config"])
        self.config = config
        self.settings: ReceiverSettings = config.receiver
        self.secrets = secrets
        self.gate = TemporalGate(connect)
        self.counters = ReceiverCounters()
        self._alarm_counter = Runtime.default().metric_meter.create_counter(
            metrics.ALARMS, "alarm deliveries by endpoint and answer"
        )
        self.sns: SnsVerifier | None = None
        if self.settings.sns is not None:
            self.sns = SnsVerifier(
                self.settings.sns, SigningCertificates(self.settings.sns, http=http)
            )
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._limit = parse(self.settings.rate_limit)
        self._event_ids: TTLCache[str, bool] = TTLCache(
            maxsize=100_000, ttl=EVENT_ID_MEMORY.total_seconds()
        )

    def app(self) -> Starlette:
        async def health(_: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        routes = [Route("/healthz", health, methods=["GET"])]
        for endpoint in CONTENT_TYPES:
            routes.append(Route(f"/alarms/{endpoint}", self._endpoint(endpoint), methods=["POST"]))
        return Starlette(routes=routes)

    def _endpoint(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handle(request: Request) -> JSONResponse:
            return await self.handle(endpoint, request)

        return handle

    async def handle(self, endpoint: Endpoint, request: Request) -> JSONResponse:
        peer = request.client.host if request.client else "unknown"
        try:
            self._check_rate(endpoint, peer)
            self._check_enabled(endpoint)
            self._check_content_type(endpoint, request)
            body = await self._read_body(request)
            if endpoint == "sns":
                answer = await self._sns(body)
            elif endpoint == "eventbridge":
                answer = await self._eventbridge(request, body)
            else:
                answer = await self._alertmanager(request, body)
        except Rejected as rejected:
            self.counters.count(rejected.status)
            self._alarm_counter.add(1, {"endpoint": endpoint, "status": str(rejected.status)})
            log.warning(
                "alarm rejected: endpoint=%s peer=%s status=%d reason=%s",
                endpoint,
                escape(peer),
                rejected.status,
                escape(rejected.reason),
            )
            return JSONResponse(
                {"status": "rejected", "reason": rejected.reason},
                rejected.status,
                headers=rejected.headers,
            )
        self.counters.count(answer.status)
        self._alarm_counter.add(1, {"endpoint": endpoint, "status": str(answer.status)})
        log.info(
            "alarm %s: endpoint=%s peer=%s %s",
            answer.body.get("status"),
            endpoint,
            escape(peer),
            escape(answer.body.get("reason") or answer.body.get("deliveries")),
        )
        return JSONResponse(answer.body, answer.status)

    # --- checks, cheapest first ------------------------------------------------------------

    def _check_rate(self, endpoint: Endpoint, peer: str) -> None:
        if not self._limiter.hit(self._limit, endpoint, peer):
            reset = self._limiter.get_window_stats(self._limit, endpoint, peer).reset_time
            wait = max(1, int(reset - time.time()) + 1)
            raise Rejected(
                429,
                f"{RATE_LIMITED}: more than {self.settings.rate_limit} from {peer}",
                {"Retry-After": str(wait)},
            )

    def _check_enabled(self, endpoint: Endpoint) -> None:
        if getattr(self.settings, endpoint) is None:
            raise Rejected(404, f"{NOT_ENABLED}: no receiver.{endpoint} section in the config")

    def _check_content_type(self, endpoint: Endpoint, request: Request) -> None:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES[endpoint]:
            raise Rejected(
                415,
                f"{BAD_CONTENT_TYPE}: {media_type or '(none)'}; "
                f"expected {' or '.join(CONTENT_TYPES[endpoint])}",
            )

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Rejected(413, f"{TOO_LARGE}: {declared} bytes declared, limit {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Rejected(413, f"{TOO_LARGE}: more than {limit} bytes")
        return bytes(body)

    # --- SNS -----------------------------------------------------------------------------

    async def _sns(self, body: bytes) -> Answer:
        assert self.sns is not None
        data = _json(body)
        if not isinstance(data, dict):
            raise Rejected(400, "bad payload: an SNS message is a JSON object")
        try:
            envelope = SnsEnvelope.model_validate(data)
        except ValidationError as exc:
            raise Rejected(400, f"not an SNS message: {validation_problem(exc)}") from None
        try:
            await self.sns.verify(envelope)
        except SnsRejected as rejected:
            raise Rejected(rejected.status, rejected.reason) from None
        try:
            return await self._sns_verified(envelope)
        except Rejected as rejected:
            if rejected.status >= 500:
                # Not handled: SNS will deliver it again, and that must not count as a replay.
                self.sns.replays.release(envelope.MessageId)
            raise

    async def _sns_verified(self, envelope: SnsEnvelope) -> Answer:
        assert self.sns is not None
        if envelope.Type == "SubscriptionConfirmation":
            return await self._confirm_subscription(envelope)
        if envelope.Type == "UnsubscribeConfirmation":
            log.warning("SNS unsubscribed this endpoint from %s", escape(envelope.TopicArn))
            return Answer(200, {"status": "recorded", "reason": "unsubscribe confirmation"})
        try:
            change = from_sns_message(envelope.Message, message_id=envelope.MessageId)
        except PayloadError as exc:
            raise Rejected(400, str(exc)) from None
        return await self._cloudwatch(change)

    async def _confirm_subscription(self, envelope: SnsEnvelope) -> Answer:
        assert self.sns is not None
        problem = self.sns.subscribe_url_problem(envelope)
        if problem is not None:
            raise Rejected(403, problem)
        if not self.sns.settings.confirm_subscriptions:
            return Answer(
                200, {"status": "ignored", "reason": "confirm_subscriptions is off in config"}
            )
        assert envelope.SubscribeURL is not None
        try:
            response = await self.sns.certificates.http.get(envelope.SubscribeURL)
        except httpx.HTTPError as exc:
            raise Rejected(503, f"{CONFIRM_FAILED}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise Rejected(503, f"{CONFIRM_FAILED}: HTTP {response.status_code}")
        log.warning("SNS subscription to %s confirmed", escape(envelope.TopicArn))
        return Answer(200, {"status": "confirmed", "topic": envelope.TopicArn})

    # --- EventBridge -----------------------------------------------------------------------

    async def _eventbridge(self, request: Request, body: bytes) -> Answer:
        settings = self.settings.eventbridge
        assert settings is not None and self.secrets.eventbridge is not None
        secret = self.secrets.eventbridge
        if settings.auth == "header":
            given = request.headers.get(settings.header)
            if given is None:
                raise Rejected(401, f"{AUTH_MISSING}: no {settings.header} header")
            if not hmac.compare_digest(given.encode(), secret):
                raise Rejected(403, f"{AUTH_WRONG}: wrong {settings.header}")
        else:
            _check_hmac(
                request,
                body,
                secret,
                settings.header,
                settings.timestamp_header,
                max_age=settings.max_age_seconds,
            )
        try:
            change = from_eventbridge(_json(body))
        except PayloadError as exc:
            raise Rejected(400, str(exc)) from None
        event_id = change.notice.event_id if change.notice else None
        if event_id is not None and event_id in self._event_ids:
            return Answer(200, {"status": "duplicate", "reason": f"event {event_id} already taken"})
        answer = await self._cloudwatch(change)
        if event_id is not None:
            self._event_ids[event_id] = True
        return answer

    # --- Alertmanager ----------------------------------------------------------------------

    async def _alertmanager(self, request: Request, body: bytes) -> Answer:
        self._check_alertmanager_auth(request)
        try:
            alerts = from_alertmanager(_json(body))
        except PayloadError as exc:
            raise Rejected(400, str(exc)) from None
        per_cluster: dict[str, tuple[ClusterConfig, AlarmNotice]] = {}
        unmapped: list[str] = []
        for alert, notice in alerts:
            clusters = clusters_for_labels(self.config, alert.labels)
            if not clusters:
                unmapped.append(notice.name)
            for cluster in clusters:
                kept = per_cluster.get(cluster.name)
                # One delivery per cluster: a firing alert wins over resolved ones.
                if kept is None or (kept[1].state != "firing" and notice.state == "firing"):
                    per_cluster[cluster.name] = (cluster, notice)
        if not per_cluster:
            return Answer(
                202, {"status": "ignored", "reason": f"{UNMAPPED}: {', '.join(unmapped)}"}
            )
        deliveries = {}
        for name, (cluster, notice) in per_cluster.items():
            deliveries[name] = await self._deliver(cluster, notice)
        status = (
            "accepted"
            if any(n.state == "firing" for _, n in per_cluster.values())
            else ("recorded")
        )
        return Answer(202, {"status": status, "deliveries": deliveries, "unmapped": unmapped})

    def _check_alertmanager_auth(self, request: Request) -> None:
        secrets = self.secrets
        scheme = "Bearer" if secrets.alertmanager_bearer is not None else "Basic"
        challenge = {"WWW-Authenticate": f'{scheme} realm="failover"'}
        header = request.headers.get("authorization")
        if not header:
            raise Rejected(401, f"{AUTH_MISSING}: no Authorization header", challenge)
        given_scheme, _, credentials = header.partition(" ")
        if given_scheme.lower() != scheme.lower() or not credentials:
            raise Rejected(401, f"{AUTH_MISSING}: expected {scheme} credentials", challenge)
        if scheme == "Bearer":
            expected = secrets.alertmanager_bearer
            given = credentials.strip().encode()
        else:
            expected = secrets.alertmanager_basic
            try:
                given = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise Rejected(403, f"{AUTH_WRONG}: basic credentials are not base64") from None
        assert expected is not None
        if not hmac.compare_digest(given, expected):
            raise Rejected(403, f"{AUTH_WRONG}: wrong {scheme.lower()} credentials")

    # --- handing on --------------------------------------------------------------------------

    async def _cloudwatch(self, change: CloudWatchChange) -> Answer:
        cluster = cluster_for_alarm(self.config, change.name)
        if cluster is None:
            return Answer(202, {"status": "ignored", "reason": f"{UNMAPPED}: {change.name}"})
        if change.notice is None:
            return Answer(
                202,
                {"status": "ignored", "reason": f"{NOT_ACTIONABLE} {change.raw_state}"},
            )
        done = await self._deliver(cluster, change.notice)
        status = "accepted" if change.notice.state == "firing" else "recorded"
        return Answer(
            202, {"status": status, "cluster": cluster.name, "deliveries": {cluster.name: done}}
        )

    async def _deliver(self, cluster: ClusterConfig, notice: AlarmNotice) -> str:
        timeout = self.settings.temporal_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                client = await self.gate.client()
                return await deliver_alarm(
                    client,
                    self.config,
                    cluster,
                    notice,
                    rpc_timeout=timedelta(seconds=timeout),
                )
        except (RPCError, RuntimeError, TimeoutError, OSError) as exc:
            log.error(
                "cannot hand %s to Temporal: %s: %s",
                escape(notice.describe()),
                type(exc).__name__,
                escape(exc),
            )
            raise Rejected(
                503,
                f"{TEMPORAL_UNAVAILABLE}: {type(exc).__name__}; deliver again later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None


def _json(body: bytes) -> object:
    try:
        return parse_json(body)
    except PayloadError as exc:
        raise Rejected(400, str(exc)) from None


def _check_hmac(
    request: Request,
    body: bytes,
    secret: bytes,
    header: str,
    timestamp_header: str,
    *,
    max_age: float,
) -> None:
    """'sha256=<hex>' of '<unix seconds>.<body>', the timestamp within max_age of now."""
    signature = request.headers.get(header)
    stamp = request.headers.get(timestamp_header)
    if signature is None or stamp is None:
        raise Rejected(401, f"{AUTH_MISSING}: needs {header} and {timestamp_header} headers")
    try:
        sent = int(stamp)
    except ValueError:
        raise Rejected(403, f"{AUTH_WRONG}: {timestamp_header} is not unix seconds") from None
    if abs(time.time() - sent) > max_age:
        raise Rejected(403, f"{AUTH_WRONG}: {timestamp_header} outside {max_age:g} s of now")
    expected = (
        "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise Rejected(403, f"{AUTH_WRONG}: signature does not match")


def hmac_headers(
    secret: bytes,
    body: bytes,
    *,
    header: str = "X-Failover-Signature",
    timestamp_header: str = "X-Failover-Timestamp",
    now: float | None = None,
) -> dict[str, str]:
    """The headers a sender (the Lambda forwarder, a script) adds in hmac mode."""
    stamp = str(int(time.time() if now is None else now))
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {header: f"sha256={digest}", timestamp_header: stamp}


class ReceiverServer(uvicorn.Server):
    """uvicorn without signal handlers of its own: the process that runs it (the CLI, the
    worker, a test) decides when it stops, by setting `should_exit`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        """The bound port (the config may say 0: any free one)."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def receiver_server(
    receiver: AlarmReceiver, *, host: str | None = None, port: int | None = None
) -> ReceiverServer:
    """uvicorn with limits: beyond 500 requests in flight the answer is 503 at once."""
    settings = receiver.settings
    return ReceiverServer(
        uvicorn.Config(
            receiver.app(),
            host=settings.host if host is None else host,
            port=settings.port if port is None else port,
            log_level="warning",
            access_log=False,
            limit_concurrency=500,
            timeout_keep_alive=5,
            # The source address (rate limits, logs) comes from X-Forwarded-For only when
            # the peer is a configured proxy.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies) or None,
            lifespan="off",
            server_header=False,
        )
    )


def check_receiver_config(config: AppConfig) -> ReceiverSecrets:
    """The receiver section exists and every secret it names is set; else a ConfigError."""
    if config.receiver is None:
        raise ConfigError(["receiver: the config has no receiver section"])
    return ReceiverSecrets.from_env(config.receiver)


async def serve_receiver(
    config: AppConfig,
    connect: Callable[[], Awaitable[Client]],
    *,
    host: str | None = None,
    port: int | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serves until SIGINT/SIGTERM (or `stop` is set). Missing secrets are a ConfigError
    before anything listens."""
    receiver = AlarmReceiver(config, connect=connect, secrets=check_receiver_config(config))
    if stop is None:
        stop = stop_on_signals()
    async with running_receiver(receiver, host=host, port=port) as server:
        enabled = [e for e in CONTENT_TYPES if getattr(receiver.settings, e) is not None]
        print(
            f"alarm receiver on http://{server.config.host}:{server.port} "
            f"(endpoints: {', '.join(f'/alarms/{e}' for e in enabled) or 'none enabled'})",
            flush=True,
        )
        await stop.wait()


@contextlib.asynccontextmanager
async def running_receiver(
    receiver: AlarmReceiver, *, host: str | None = None, port: int | None = None
) -> AsyncIterator[ReceiverServer]:
    """The receiver serving in this event loop until the block ends."""
    server = receiver_server(receiver, host=host, port=port)
    serving = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while not server.started:
        if serving.done():
            await serving  # raises why it could not start (e.g. the port is taken)
            raise RuntimeError("the alarm receiver stopped before it started")
        if asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the alarm receiver did not start within {STARTUP_SECONDS:g} s")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await serving
