"""A fault-injecting reverse proxy that sits between boto3 and a moto server on loopback.

moto answers every Route 53 change as INSYNC at once, never throttles and never denies access, so
code tested only against moto never meets the behaviour that makes a failover hard on real AWS.
Point boto3 at ``AwsFaultProxy.url`` instead of moto: calls are forwarded transparently, except
that rules can make the first K calls of one AWS operation fail with a real AWS error (in the
service's own wire format, so botocore raises ``ClientError`` with the right code), answer slowly,
or report a Route 53 change as still PENDING. Hooks run after a call went through, which lets a
test break something at exactly the worst moment (e.g. right after the Route 53 UPSERT).

Another process can set rules through the control API on the proxy's own port, under
``/__faults__`` (see ``add_rule_remote``).

Some AWS calls moto lacks or answers unlike AWS. A ``Responder`` (``add_responder``) can answer
such a call itself, or rewrite moto's answer after forwarding, keeping whatever state that needs;
it may also serve its own control endpoints under ``/__faults__/<name>/``. The proxy learns each
call's Region from the SigV4 credential scope, since one moto server serves every Region.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import inspect
import json
import logging
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import aiohttp
import httpx
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/__faults__"
MOTO_API_PREFIX = "/moto-api/"
ROUTE53_PREFIX = "/2013-04-01/"
ROUTE53_XMLNS = "https://route53.amazonaws.com/doc/2013-04-01/"
UNKNOWN_OPERATION = "Unknown"

# Operations whose answers carry a Route 53 ChangeInfo status that PENDING can rewrite.
PENDING_OPERATIONS = frozenset({"GetChange", "ChangeResourceRecordSets"})

# Query-protocol error documents name the service's namespace; botocore ignores it, but keeping
# the real one makes captured traffic look like AWS. Keyed by the SigV4 signing name.
_QUERY_XMLNS = {
    "elasticloadbalancing": "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "monitoring": "http://monitoring.amazonaws.com/doc/2010-08-01/",
}
_DEFAULT_QUERY_XMLNS = _QUERY_XMLNS["elasticloadbalancing"]

# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus the ones the proxy
# recomputes itself because it may change or re-encode the body.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED_REQUEST = _HOP_BY_HOP | {"host", "content-length"}
_NOT_RETURNED_RESPONSE = _HOP_BY_HOP | {"content-length", "content-encoding"}
# Never let aiohttp invent these on the upstream request: forwarding must stay transparent.
_NO_AUTO_HEADERS = frozenset({"User-Agent", "Content-Type", "Accept", "Accept-Encoding"})

_INSYNC_RE = re.compile(rb"<Status>\s*INSYNC\s*</Status>")
# Credential=<access key>/<date>/<region>/<service>/aws4_request
_CREDENTIAL_RE = re.compile(
    r"Credential=(?P<key>[^/,\s]+)/(?P<date>[^/,\s]+)/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/"
)


class FaultKind(StrEnum):
    """What a rule does to the calls it applies to."""

    ERROR = "error"  # answer with an AWS error in the service's wire format; nothing is forwarded
    SLOW = "slow"  # forward, but delay the answer by delay_ms
    PENDING = "pending"  # Route 53: rewrite <Status>INSYNC</Status> in the answer to PENDING


class FaultRuleError(ValueError):
    """A rule is invalid; ``field`` names the offending field so the control API can say which."""

    def __init__(self, field_name: str | None, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}" if field_name else message)


@dataclass
class FaultRule:
    """Apply ``kind`` to calls of ``operation`` number skip+1 .. skip+count after the rule is added.

    Each rule counts the matching calls it has seen on its own (``matched``), so several rules for
    one operation do not steal calls from each other: SLOW and PENDING combine with whatever else
    applies; of several ERROR rules applying to the same call only the first added one answers.
    """

    operation: str
    kind: FaultKind
    count: int = 1  # -1 = forever
    skip: int = 0
    status: int = 400
    code: str = "Throttling"
    message: str = "Rate exceeded"
    delay_ms: int = 0
    # Optional SigV4 signing name ("route53", "elasticloadbalancing", "ssm", ...) for operation
    # names that more than one service uses (AddTags, ListTagsForResource, ...).
    service: str | None = None
    # Filled in by the proxy: calls this rule changed, and matching calls it has seen.
    hits: int = 0
    matched: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise FaultRuleError for a rule that could never do what its author meant."""
        if not isinstance(self.operation, str) or not self.operation.strip():
            raise FaultRuleError("operation", "must be a non-empty AWS operation name")
        try:
            self.kind = FaultKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in FaultKind)
            raise FaultRuleError("kind", f"must be one of {allowed}; got {self.kind!r}") from None
        for name in ("count", "skip", "status", "delay_ms", "hits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FaultRuleError(name, f"must be an integer; got {value!r}")
        if self.count < 1 and self.count != -1:
            raise FaultRuleError("count", "must be >= 1, or -1 for forever")
        if self.skip < 0:
            raise FaultRuleError("skip", "must be >= 0")
        if self.delay_ms < 0:
            raise FaultRuleError("delay_ms", "must be >= 0")
        for name in ("code", "message"):
            if not isinstance(getattr(self, name), str):
                raise FaultRuleError(name, "must be a string")
        if self.service is not None and (not isinstance(self.service, str) or not self.service):
            raise FaultRuleError("service", "must be a non-empty string or null")
        if self.kind is FaultKind.ERROR:
            if not 400 <= self.status <= 599:
                raise FaultRuleError("status", "an AWS error status must be 400..599")
            if not self.code:
                raise FaultRuleError("code", "an error needs a code, e.g. Throttling")
        if self.kind is FaultKind.SLOW and self.delay_ms == 0:
            raise FaultRuleError("delay_ms", "a slow rule needs delay_ms > 0")
        if self.kind is FaultKind.PENDING and self.operation not in PENDING_OPERATIONS:
            allowed = " or ".join(sorted(PENDING_OPERATIONS))
            raise FaultRuleError("operation", f"pending only applies to {allowed}")

    @property
    def spent(self) -> bool:
        """True once the rule has seen every call it was meant to change."""
        return self.count != -1 and self.matched >= self.skip + self.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the control API returns it."""
        data = dataclasses.asdict(self)
        data["kind"] = self.kind.value
        data["spent"] = self.spent
        return data

    @classmethod
    def from_dict(cls, data: object) -> FaultRule:
        """Build a rule from control-API JSON; FaultRuleError names the first bad field."""
        if not isinstance(data, Mapping):
            raise FaultRuleError(None, "the body must be a JSON object of FaultRule fields")
        settable = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "hits"}
        for key in data:
            if key not in settable:
                raise FaultRuleError(str(key), "unknown field (or one only the proxy sets)")
        for required in ("operation", "kind"):
            if required not in data:
                raise FaultRuleError(required, "is required")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - fields were checked above
            raise FaultRuleError(None, str(exc)) from exc

    def matches(self, operation: str, service: str | None) -> bool:
        return self.operation == operation and (self.service is None or self.service == service)


@dataclass(frozen=True)
class ForwardedCall:
    """A call that went through to the upstream and was answered 2xx (what hooks receive)."""

    operation: str
    method: str
    path: str  # includes the query string
    request_body: bytes
    status: int
    response_body: bytes  # as returned to the client, i.e. after any PENDING rewrite
    service: str | None = None
    region: str | None = None  # from the SigV4 credential scope


@dataclass
class CallRecord:
    """One AWS call that reached the proxy (control API and /moto-api/ calls are not recorded)."""

    operation: str
    injected: FaultKind | None  # ERROR beats PENDING beats SLOW when several applied
    status: int  # 0 while the call is still in flight
    time: float  # time.monotonic() when the call arrived
    method: str = ""
    path: str = ""
    service: str | None = None
    region: str | None = None  # from the SigV4 credential scope
    answered_by: str | None = None  # the responder that answered instead of the upstream


ForwardedHook = Callable[[ForwardedCall], Awaitable[None] | None]


# --- request classification -------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialScope:
    """The parts of a SigV4 credential scope: which key signed, for which Region and service."""

    access_key: str
    date: str
    region: str
    service: str


def credential_scope(headers: Mapping[str, str]) -> CredentialScope | None:
    """The SigV4 credential scope of the Authorization header, if the request is signed."""
    match = _CREDENTIAL_RE.search(headers.get("Authorization", ""))
    if match is None:
        return None
    return CredentialScope(match["key"], match["date"], match["region"], match["service"])


def _signing_service(headers: Mapping[str, str]) -> str | None:
    """The SigV4 signing name from the Authorization header's credential scope, if signed."""
    scope = credential_scope(headers)
    return scope.service if scope else None


def _route53_operation(method: str, path: str) -> str:
    """Name a Route 53 REST-XML call from its method and path (the API has no operation field)."""
    parts = [p for p in path[len(ROUTE53_PREFIX) :].split("/") if p]
    match method, parts:
        case "POST", ["hostedzone", _, "rrset"]:
            return "ChangeResourceRecordSets"
        case "GET", ["hostedzone", _, "rrset"]:
            return "ListResourceRecordSets"
        case "GET", ["change", _]:
            return "GetChange"
        case "GET", ["hostedzone", _]:
            return "GetHostedZone"
        case "DELETE", ["hostedzone", _]:
            return "DeleteHostedZone"
        case "GET", ["hostedzone"]:
            return "ListHostedZones"
        case "POST", ["hostedzone"]:
            return "CreateHostedZone"
        case "GET", ["hostedzonesbyname"]:
            return "ListHostedZonesByName"
    return "Route53Other"


def _decoded_body(body: bytes, headers: Mapping[str, str]) -> bytes:
    """The request body without its Content-Encoding (botocore gzips some requests)."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error):
        return b""
    return body


def _query_action(body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The Action of a query-protocol call: form field in the body, else the query string."""
    if "x-www-form-urlencoded" in headers.get("Content-Type", "") and body:
        text = _decoded_body(body, headers).decode("utf-8", "replace")
        actions = parse_qs(text).get("Action")
        if actions:
            return actions[0]
    return query.get("Action")


@dataclass(frozen=True)
class Classified:
    operation: str
    protocol: str  # "rest-xml", "json" or "query" - decides the error wire format
    service: str | None
    region: str | None = None  # from the SigV4 credential scope; one moto serves every Region


def classify(
    method: str, path: str, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
) -> Classified:
    """Work out which AWS operation (and wire protocol, and Region) a request is."""
    scope = credential_scope(headers)
    service = scope.service if scope else None
    region = scope.region if scope else None
    if path.startswith(ROUTE53_PREFIX):
        return Classified(
            _route53_operation(method, path), "rest-xml", service or "route53", region
        )
    target = headers.get("X-Amz-Target")
    if target:
        prefix, _, operation = target.rpartition(".")
        return Classified(operation or UNKNOWN_OPERATION, "json", service or prefix or None, region)
    action = _query_action(body, headers, query)
    return Classified(action or UNKNOWN_OPERATION, "query", service, region)


def _query_params(
    body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
) -> dict[str, str]:
    """Every query-protocol parameter of a call (query string, then form body), first value each."""
    params = dict(query)
    if "x-www-form-urlencoded" in headers.get("Content-Type", "") and body:
        text = _decoded_body(body, headers).decode("utf-8", "replace")
        for key, values in parse_qs(text, keep_blank_values=True).items():
            params[key] = values[0]
    return params


# --- responders --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsRequest:
    """One AWS call as a responder sees it: already classified, with its Region and parameters."""

    operation: str
    protocol: str
    service: str | None
    region: str | None
    method: str
    path: str  # as sent (still percent-encoded), with the query string: fit for send_upstream
    headers: Mapping[str, str]
    body: bytes  # as received (possibly Content-Encoded)
    params: Mapping[str, str]  # query-protocol parameters; empty for other protocols
    access_key: str | None = None  # from the credential scope: moto picks the account by it

    def param(self, name: str, default: str | None = None) -> str | None:
        """One query-protocol parameter, e.g. ``GlobalClusterIdentifier`` or ``Foo.member.1``."""
        return self.params.get(name, default)


@dataclass
class AwsAnswer:
    """An HTTP answer to an AWS call, from the upstream or made up by a responder."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Responder:
    """Answers AWS calls the upstream lacks, or corrects the upstream's answers.

    Subclasses override what they need. ``answer`` runs before forwarding: returning an answer
    means the upstream never sees the call. ``rewrite`` runs on every forwarded answer. Fault
    rules still come first (a rule can throttle a call a responder would have answered), and
    on_forwarded hooks still run on 2xx answers whoever made them. A responder with a
    ``control_name`` also serves ``/__faults__/<control_name>`` and everything below it.
    """

    name: str = "responder"
    control_name: str | None = None
    proxy: AwsFaultProxy  # set by attach()

    def attach(self, proxy: AwsFaultProxy) -> None:
        """Called once by ``add_responder``; keep the proxy to reach the upstream."""
        self.proxy = proxy

    async def start(self) -> None:
        """Called when the proxy starts (or at once, if it already runs)."""

    async def stop(self) -> None:
        """Called when the proxy stops or the responder is removed."""

    def reset(self) -> None:
        """Forget all state: the proxy was reset, or moto was (``/moto-api/reset``)."""

    async def answer(self, request: AwsRequest) -> AwsAnswer | None:
        """Answer ``request`` instead of the upstream, or return None to forward it."""
        return None

    async def rewrite(self, request: AwsRequest, answer: AwsAnswer) -> AwsAnswer:
        """Return the answer the client gets for a forwarded call (``answer`` by default)."""
        return answer

    async def control(self, request: web.Request, sub: str) -> web.StreamResponse:
        """Serve ``/__faults__/<control_name><sub>``; ``sub`` is "" or starts with "/"."""
        return _json_error(404, f"no control endpoint {request.path}")


# --- AWS error documents -----------------------------------------------------------------------


def aws_error(
    protocol: str, status: int, code: str, message: str, service: str | None = None
) -> tuple[CIMultiDict[str], bytes]:
    """Headers and body of an AWS error as the service itself sends it, so botocore parses it.

    ``protocol`` is "rest-xml" (Route 53), "json" (X-Amz-Target services) or "query".
    """
    request_id = str(uuid.uuid4())
    headers: CIMultiDict[str] = CIMultiDict({"x-amzn-RequestId": request_id})
    if protocol == "json":
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/x-amz-json-1.1"
        return headers, json.dumps({"__type": code, "message": message}).encode()
    xmlns = ROUTE53_XMLNS if protocol == "rest-xml" else _QUERY_XMLNS.get(service or "")
    sender = "Sender" if status < 500 else "Receiver"
    headers["Content-Type"] = "text/xml"
    text = (
        '<?xml version="1.0"?>\n'
        f'<ErrorResponse xmlns="{xmlns or _DEFAULT_QUERY_XMLNS}">'
        f"<Error><Type>{sender}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return headers, text.encode()


# --- the proxy ---------------------------------------------------------------------------------


class AwsFaultProxy:
    """Reverse proxy on loopback in front of moto that injects AWS faults by operation name.

    Runs on the caller's event loop; boto3 (which blocks) must be called from another thread,
    e.g. through asyncio.to_thread, or the proxy cannot answer.
    """

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.url = ""
        self.rules: list[FaultRule] = []
        self.calls: list[CallRecord] = []
        # Exceptions raised by on_forwarded hooks; stop() re-raises them so they are not lost.
        self.hook_errors: list[BaseException] = []
        self._hooks: dict[str, list[ForwardedHook]] = {}
        self._responders: list[Responder] = []
        self._started_responders: list[Responder] = []
        # Exceptions raised by responders; the call got a 500, stop() re-raises them.
        self.responder_errors: list[BaseException] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one) and set ``url``."""
        if self._runner is not None:
            raise RuntimeError("the proxy is already running")
        self._session = aiohttp.ClientSession(
            auto_decompress=True,
            timeout=aiohttp.ClientTimeout(total=120),
            skip_auto_headers=_NO_AUTO_HEADERS,
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        log.debug("aws fault proxy %s -> %s", self.url, self.upstream)
        for responder in self._responders:
            await self._start_responder(responder)

    async def stop(self) -> None:
        """Stop listening; raise any exceptions hooks or responders raised, after cleaning up."""
        runner, session = self._runner, self._session
        self._runner = None
        if runner is not None:
            await runner.cleanup()
        for responder in list(self._started_responders):
            await self._stop_responder(responder)
        self._session = None
        if session is not None:
            await session.close()
        errors = [*self.hook_errors, *self.responder_errors]
        if errors:
            self.hook_errors, self.responder_errors = [], []
            raise ExceptionGroup(
                "on_forwarded hooks or responders of the AWS fault proxy failed", errors
            )

    # --- responders ---

    async def add_responder(self, responder: Responder) -> Responder:
        """Let ``responder`` answer or rewrite calls from now on (after those added before it)."""
        if responder in self._responders:
            raise ValueError(f"responder {responder.name!r} is already added")
        names = {r.control_name for r in self._responders if r.control_name}
        if responder.control_name and responder.control_name in names | {"rules"}:
            raise ValueError(f"control name {responder.control_name!r} is already taken")
        responder.attach(self)
        self._responders.append(responder)
        if self._runner is not None:
            await self._start_responder(responder)
        return responder

    async def remove_responder(self, responder: Responder) -> None:
        """Stop ``responder`` and forward its calls to the upstream again."""
        if responder in self._responders:
            self._responders.remove(responder)
            await self._stop_responder(responder)

    @property
    def responders(self) -> tuple[Responder, ...]:
        return tuple(self._responders)

    async def _start_responder(self, responder: Responder) -> None:
        if responder not in self._started_responders:
            await responder.start()
            self._started_responders.append(responder)

    async def _stop_responder(self, responder: Responder) -> None:
        if responder in self._started_responders:
            self._started_responders.remove(responder)
            await responder.stop()

    def _reset_responders(self) -> None:
        for responder in self._responders:
            responder.reset()

    async def send_upstream(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes = b""
    ) -> AwsAnswer:
        """Send a request of a responder's own to the upstream (``path`` includes any query)."""
        status, answer_headers, answer = await self._send(method, path, headers, body)
        return AwsAnswer(status, answer_headers, answer)

    # --- rules, hooks, records ---

    def add_rule(self, rule: FaultRule) -> FaultRule:
        """Start applying ``rule``; returns it so the caller can read ``hits`` later."""
        rule.validate()
        self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Drop every rule and every on_forwarded hook."""
        self.rules.clear()
        self._hooks.clear()

    def clear_hooks(self) -> None:
        """Drop every on_forwarded hook, keep the rules."""
        self._hooks.clear()

    def reset(self) -> None:
        """Forget rules, hooks, recorded calls and responders' state: a clean slate between tests.

        Responders stay added; only what they remembered goes.
        """
        self.clear_rules()
        self.calls.clear()
        self._reset_responders()

    def on_forwarded(self, operation: str, callback: ForwardedHook) -> None:
        """Run ``callback`` after a call of ``operation`` went through upstream with a 2xx answer.

        It runs before the answer is returned to the client, so the client only learns that the
        call succeeded after whatever the callback did (e.g. stopping a cluster) has happened.
        """
        self._hooks.setdefault(operation, []).append(callback)

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` reached the proxy (faulted or not)."""
        return sum(1 for call in self.calls if call.operation == operation)

    def call_counts(self) -> dict[str, int]:
        """Calls per operation, as the control API reports them."""
        return dict(Counter(call.operation for call in self.calls))

    # --- request handling ---

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return await self._control(request)
        body = await request.read()
        if path.startswith(MOTO_API_PREFIX):
            status, headers, answer = await self._forward(request, body)
            if path.rstrip("/") == MOTO_API_PREFIX + "reset" and 200 <= status < 300:
                # moto forgot everything; state kept about its resources must go too.
                self._reset_responders()
            return web.Response(status=status, headers=headers, body=answer)
        return await self._aws_call(request, body)

    def _select(self, operation: str, service: str | None) -> list[FaultRule]:
        """Advance every live rule for this call and return those that apply to it, in order."""
        applying = []
        for rule in self.rules:
            if rule.spent or not rule.matches(operation, service):
                continue
            rule.matched += 1
            if rule.matched > rule.skip:
                applying.append(rule)
        return applying

    async def _aws_call(self, request: web.Request, body: bytes) -> web.StreamResponse:
        call = classify(request.method, request.path, request.headers, body, request.query)
        # Recorded on arrival, so count() already includes calls that are still in flight.
        record = CallRecord(
            call.operation,
            None,
            0,
            time.monotonic(),
            request.method,
            request.path_qs,
            call.service,
            call.region,
        )
        self.calls.append(record)
        rules = self._select(call.operation, call.service)
        error = next((r for r in rules if r.kind is FaultKind.ERROR), None)
        slow = [r for r in rules if r.kind is FaultKind.SLOW]
        pending = [r for r in rules if r.kind is FaultKind.PENDING]
        delay = sum(r.delay_ms for r in slow) / 1000
        for rule in slow:
            rule.hits += 1
        if slow:
            record.injected = FaultKind.SLOW

        if error is not None:
            error.hits += 1
            record.injected, record.status = FaultKind.ERROR, error.status
            log.info("injecting %s %s into %s", error.status, error.code, call.operation)
            if delay:
                await asyncio.sleep(delay)
            headers, answer = aws_error(
                call.protocol, error.status, error.code, error.message, call.service
            )
            return web.Response(status=error.status, headers=headers, body=answer)

        if self._responders:
            status, headers, answer = await self._respond(request, body, call, record)
        else:
            status, headers, answer = await self._forward(request, body)
        record.status = status
        if pending and 200 <= status < 300:
            answer, rewritten = _INSYNC_RE.subn(b"<Status>PENDING</Status>", answer)
            if rewritten:
                record.injected = FaultKind.PENDING
                for rule in pending:
                    rule.hits += 1
        if 200 <= status < 300:
            await self._run_hooks(
                ForwardedCall(
                    call.operation,
                    request.method,
                    request.path_qs,
                    body,
                    status,
                    answer,
                    call.service,
                    call.region,
                )
            )
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers, body=answer)

    async def _respond(
        self, request: web.Request, body: bytes, call: Classified, record: CallRecord
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """Let responders answer the call, or forward it and let them rewrite the answer."""
        scope = credential_scope(request.headers)
        aws_request = AwsRequest(
            operation=call.operation,
            protocol=call.protocol,
            service=call.service,
            region=call.region,
            method=request.method,
            path=request.raw_path,
            headers=request.headers,
            body=body,
            params=_query_params(body, request.headers, request.query)
            if call.protocol == "query"
            else {},
            access_key=scope.access_key if scope else None,
        )
        responder: Responder | None = None
        try:
            for responder in list(self._responders):
                made = await responder.answer(aws_request)
                if made is not None:
                    record.answered_by = responder.name
                    return made.status, made.headers, made.body
            responder = None
            status, headers, answer = await self._forward(request, body)
            result = AwsAnswer(status, headers, answer)
            for responder in list(self._responders):
                result = await responder.rewrite(aws_request, result)
        except Exception as exc:
            name = responder.name if responder is not None else "?"
            log.exception("responder %s failed on %s", name, call.operation)
            self.responder_errors.append(exc)
            headers, answer = aws_error(
                call.protocol, 500, "InternalFailure", f"responder {name} failed: {exc!r}"
            )
            return 500, headers, answer
        return result.status, result.headers, result.body

    async def _run_hooks(self, forwarded: ForwardedCall) -> None:
        for hook in list(self._hooks.get(forwarded.operation, ())):
            try:
                result = hook(forwarded)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("on_forwarded hook for %s failed", forwarded.operation)
                self.hook_errors.append(exc)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """Send the request on unchanged (but for hop-by-hop headers) and return the answer."""
        return await self._send(request.method, request.raw_path, request.headers, body)

    async def _send(
        self, method: str, raw_path: str, request_headers: Mapping[str, str], body: bytes
    ) -> tuple[int, CIMultiDict[str], bytes]:
        if self._session is None:
            raise RuntimeError("the proxy is not running")
        dropped = _NOT_FORWARDED_REQUEST | _connection_tokens(request_headers)
        headers = CIMultiDict(
            (k, v) for k, v in request_headers.items() if k.lower() not in dropped
        )
        url = URL(self.upstream + raw_path, encoded=True)
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                answer = await upstream.read()
                status = upstream.status
                dropped = _NOT_RETURNED_RESPONSE | _connection_tokens(upstream.headers)
                out = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in dropped
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream %s failed: %r", self.upstream, exc)
            failed_headers, failed_body = aws_error("query", 502, "ProxyUpstreamError", repr(exc))
            return 502, failed_headers, failed_body
        return status, out, answer

    # --- control API ---

    async def _control(self, request: web.Request) -> web.StreamResponse:
        """GET /__faults__, POST and DELETE /__faults__/rules, and each responder's endpoints."""
        sub = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        head, _, rest = sub.lstrip("/").partition("/")
        for responder in self._responders:
            if responder.control_name and head == responder.control_name:
                return await responder.control(request, f"/{rest}" if rest else "")
        routes: dict[str, set[str]] = {"": {"GET"}, "/rules": {"GET", "POST", "DELETE"}}
        if sub not in routes:
            return _json_error(404, f"no control endpoint {request.path}")
        if request.method not in routes[sub]:
            allowed = ", ".join(sorted(routes[sub]))
            return web.json_response(
                {"error": f"use {allowed}", "field": None},
                status=405,
                headers={"Allow": allowed},
            )
        if request.method == "GET" and sub == "":
            return web.json_response(
                {
                    "rules": [r.to_dict() for r in self.rules],
                    "calls": self.call_counts(),
                    "responders": [r.control_name or r.name for r in self._responders],
                }
            )
        if request.method == "GET":
            return web.json_response(
                {"rules": [r.to_dict() for r in self.rules], "calls": self.call_counts()}
            )
        if request.method == "DELETE":
            cleared = len(self.rules)
            self.clear_rules()
            return web.json_response({"cleared": cleared})
        try:
            data = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json_error(400, "the body is not valid JSON")
        try:
            rule = self.add_rule(FaultRule.from_dict(data))
        except FaultRuleError as exc:
            return _json_error(400, str(exc), exc.field)
        return web.json_response(rule.to_dict(), status=201)


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names a Connection header declares hop-by-hop."""
    value = headers.get("Connection", "")
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _json_error(status: int, message: str, field_name: str | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field_name}, status=status)


# --- remote control ---------------------------------------------------------------------------


def add_rule_remote(proxy_url: str, rule: FaultRule, *, timeout: float = 5.0) -> FaultRule:
    """Add ``rule`` to a proxy that runs in another process; returns the proxy's copy.

    Raises FaultRuleError (naming the field) when the proxy rejects the rule.
    """
    data = {
        f.name: getattr(rule, f.name)
        for f in dataclasses.fields(rule)
        if f.init and f.name != "hits"
    }
    data["kind"] = FaultKind(rule.kind).value
    response = httpx.post(
        proxy_url.rstrip("/") + CONTROL_PREFIX + "/rules", json=data, timeout=timeout
    )
    if response.status_code == 400:
        detail = response.json()
        raise FaultRuleError(detail.get("field"), detail.get("error", "rejected"))
    response.raise_for_status()
    created = response.json()
    created.pop("spent", None)
    matched = created.pop("matched", 0)
    copy = FaultRule(**created)
    copy.matched = matched
    return copy


def clear_rules_remote(proxy_url: str, *, timeout: float = 5.0) -> int:
    """Clear the rules (and hooks) of a proxy in another process; returns how many rules went."""
    response = httpx.delete(proxy_url.rstrip("/") + CONTROL_PREFIX + "/rules", timeout=timeout)
    response.raise_for_status()
    return int(response.json()["cleared"])
