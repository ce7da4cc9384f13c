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
from dataclasses import dataclass, field, replace
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
from failover.config import (
    AlertmanagerSettings,
    AppConfig,
    AwsSettings,
    ClusterConfig,
    ConfigError,
    ReceiverSettings,
    SecretRef,
)
from failover.logs import escape
from failover.models import AlarmNotice
from failover.process import serve_until_started, stop_on_signals
from failover.secrets import SecretError, SecretResolver, SecretUnavailable, shared_resolver

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


class WrongSecret(Rejected):
    """Credentials that do not match the secret held: perhaps the secret was rotated."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def _basic_pair(manager: AlertmanagerSettings | None, password: bytes | None) -> bytes | None:
    if manager is None or manager.basic_username is None or password is None:
        return None
    return manager.basic_username.encode() + b":" + password


def endpoint_secret_refs(settings: ReceiverSettings, endpoint: Endpoint) -> list[SecretRef]:
    """The Secrets Manager secrets an endpoint checks credentials against (none: all its
    secrets come from the environment, which a running process cannot see change)."""
    refs: list[SecretRef | None] = []
    if endpoint == "eventbridge" and settings.eventbridge is not None:
        refs = [settings.eventbridge.secret_secret]
    elif endpoint == "alertmanager" and settings.alertmanager is not None:
        manager = settings.alertmanager
        refs = [manager.bearer_token_secret, manager.basic_password_secret]
    return [ref for ref in refs if ref is not None]


@dataclass(frozen=True, repr=False)
class ReceiverSecrets:
    """Resolved from the environment variables or AWS Secrets Manager secrets the config
    names; never logged (no repr)."""

    eventbridge: bytes | None = None
    alertmanager_bearer: bytes | None = None
    alertmanager_basic: bytes | None = None  # "user:password"

    @classmethod
    def from_env(
        cls, settings: ReceiverSettings, env: Mapping[str, str] = os.environ
    ) -> ReceiverSecrets:
        """For a section whose secrets all come from the environment (see load)."""
        return cls.load(settings, env=env)

    @classmethod
    def load(
        cls,
        settings: ReceiverSettings,
        *,
        env: Mapping[str, str] = os.environ,
        resolver: SecretResolver | None = None,
    ) -> ReceiverSecrets:
        """Every secret the section names, read now; what cannot be read is a ConfigError
        listing each (a secret from Secrets Manager is read through `resolver`; default: the
        AWS defaults)."""
        problems: list[str] = []

        def read(name: str | None, secret: SecretRef | None, where: str) -> bytes | None:
            if secret is not None:
                try:
                    return (resolver or shared_resolver(AwsSettings())).value(secret).encode()
                except SecretError as exc:
                    temporary = isinstance(exc, SecretUnavailable)
                    later = " (temporary: start again)" if temporary else ""
                    problems.append(f"receiver.{where}: {exc.message}{later}")
                    return None
            if name is None:
                return None
            value = env.get(name)
            if not value:
                problems.append(f"receiver.{where}: environment variable {name} is not set")
                return None
            return value.encode()

        bridge = settings.eventbridge
        eventbridge = read(
            bridge and bridge.secret_env, bridge and bridge.secret_secret, "eventbridge"
        )
        manager = settings.alertmanager
        bearer = read(
            manager and manager.bearer_token_env,
            manager and manager.bearer_token_secret,
            "alertmanager",
        )
        password = read(
            manager and manager.basic_password_env,
            manager and manager.basic_password_secret,
            "alertmanager",
        )
        if problems:
            raise ConfigError(problems)
        return cls(
            eventbridge=eventbridge,
            alertmanager_bearer=bearer,
            alertmanager_basic=_basic_pair(manager, password),
        )

    def reread(
        self, settings: ReceiverSettings, resolver: SecretResolver, endpoint: Endpoint
    ) -> ReceiverSecrets:
        """A copy with the endpoint's Secrets Manager secrets read again past the cache
        (blocking; the resolver rate-limits it). Values from the environment stay."""
        changed: dict[str, bytes | None] = {}
        bridge, manager = settings.eventbridge, settings.alertmanager
        if endpoint == "eventbridge" and bridge is not None and bridge.secret_secret is not None:
            changed["eventbridge"] = resolver.value(bridge.secret_secret, fresh=True).encode()
        if endpoint == "alertmanager" and manager is not None:
            if manager.bearer_token_secret is not None:
                token = resolver.value(manager.bearer_token_secret, fresh=True)
                changed["alertmanager_bearer"] = token.encode()
            if manager.basic_password_secret is not None:
                password = resolver.value(manager.basic_password_secret, fresh=True)
                changed["alertmanager_basic"] = _basic_pair(manager, password.encode())
        return replace(self, **changed)

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
        resolver: SecretResolver | None = None,
    ) -> None:
        """`resolver`: where secrets from Secrets Manager are read again when credentials do
        not match (a rotation); None: never read again."""
        if config.receiver is None:
            raise ConfigError(["receiver: no receiver section in the config"])
        self.config = config
        self.settings: ReceiverSettings = config.receiver
        self.secrets = secrets
        self.resolver = resolver
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

    # --- credentials against secrets that may have been rotated -----------------------------

    async def _authenticate(
        self, endpoint: Endpoint, check: Callable[[ReceiverSecrets], None]
    ) -> None:
        """`check` against the secrets held. When it finds the credentials wrong and the
        endpoint's secret is in Secrets Manager, the secret is read again once (it may have
        been rotated) and checked again before the refusal stands. The resolver allows one
        such read per secret per `aws.secrets_reread_seconds`, so a flood of wrong
        credentials cannot hammer Secrets Manager."""
        try:
            check(self.secrets)
        except WrongSecret:
            fresh = await self._reread(endpoint)
            if fresh is None:
                raise
            check(fresh)

    async def _reread(self, endpoint: Endpoint) -> ReceiverSecrets | None:
        """The endpoint's secrets read again, or None: nothing to read, rate-limited, the
        same values, or Secrets Manager failed (logged; the secrets held stay in use)."""
        refs = endpoint_secret_refs(self.settings, endpoint)
        resolver = self.resolver
        if resolver is None or not any(resolver.may_reread(ref) for ref in refs):
            return None
        try:
            fresh = await asyncio.to_thread(self.secrets.reread, self.settings, resolver, endpoint)
        except SecretError as exc:
            log.warning("receiver.%s: cannot read its secret again: %s", endpoint, exc.message)
            return None
        if fresh == self.secrets:
            return None
        log.warning("receiver.%s: its secret changed in Secrets Manager; now in use", endpoint)
        self.secrets = fresh
        return fresh

    # --- EventBridge -------------------------------------------------------------------------

    async def _eventbridge(self, request: Request, body: bytes) -> Answer:
        await self._authenticate(
            "eventbridge", lambda secrets: self._check_eventbridge_auth(request, body, secrets)
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

    def _check_eventbridge_auth(
        self, request: Request, body: bytes, secrets: ReceiverSecrets
    ) -> None:
        settings = self.settings.eventbridge
        assert settings is not None and secrets.eventbridge is not None
        secret = secrets.eventbridge
        if settings.auth == "header":
            given = request.headers.get(settings.header)
            if given is None:
                raise Rejected(401, f"{AUTH_MISSING}: no {settings.header} header")
            if not hmac.compare_digest(given.encode(), secret):
                raise WrongSecret(403, f"{AUTH_WRONG}: wrong {settings.header}")
        else:
            _check_hmac(
                request,
                body,
                secret,
                settings.header,
                settings.timestamp_header,
                max_age=settings.max_age_seconds,
            )

    # --- Alertmanager ----------------------------------------------------------------------

    async def _alertmanager(self, request: Request, body: bytes) -> Answer:
        await self._authenticate(
            "alertmanager", lambda secrets: self._check_alertmanager_auth(request, secrets)
        )
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

    def _check_alertmanager_auth(self, request: Request, secrets: ReceiverSecrets) -> None:
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
            raise WrongSecret(403, f"{AUTH_WRONG}: wrong {scheme.lower()} credentials")

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
        raise WrongSecret(403, f"{AUTH_WRONG}: signature does not match")


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


def check_receiver_config(
    config: AppConfig, resolver: SecretResolver | None = None
) -> ReceiverSecrets:
    """The receiver section exists and every secret it names can be read (from the
    environment, or from Secrets Manager through `resolver`, default one for config.aws);
    else a ConfigError."""
    if config.receiver is None:
        raise ConfigError(["receiver: the config has no receiver section"])
    return ReceiverSecrets.load(config.receiver, resolver=resolver or shared_resolver(config.aws))


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
    resolver = shared_resolver(config.aws)
    # In a thread: reading Secrets Manager blocks, and a worker's activities share this loop.
    secrets = await asyncio.to_thread(check_receiver_config, config, resolver)
    receiver = AlarmReceiver(config, connect=connect, secrets=secrets, resolver=resolver)
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
    serving = await serve_until_started(server, "alarm receiver")
    try:
        yield server
    finally:
        server.should_exit = True
        await serving
