"""Verifying Amazon SNS HTTP(S) messages, as the SNS developer guide describes it.

A message is trusted only when its signature verifies with the certificate named by
SigningCertURL, and that certificate came over https from an SNS host. The canonical
string is built from the documented fields, in their documented order. Certificates are
cached by URL; a message older than the configured window, or one whose MessageId was
already accepted, is refused, so a captured message cannot be played back.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import httpx
from cachetools import TTLCache
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from failover.config import SnsSettings

MessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]

# The fields signed for each message type, in the order SNS signs them.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
CERT_CACHE_SECONDS = 24 * 3600
# A clock a little ahead of ours is not an attack; a message from the future is.
CLOCK_SKEW = timedelta(minutes=5)

# Stable reason prefixes (logged with every rejection, and asserted in tests).
BAD_CERT_URL = "bad certificate url"
CERT_UNAVAILABLE = "certificate unavailable"
BAD_CERT = "bad certificate"
BAD_SIGNATURE = "bad signature"
UNSUPPORTED_VERSION = "unsupported signature version"
STALE = "stale message"
FUTURE = "message from the future"
REPLAYED = "replayed message"
TOPIC_NOT_ALLOWED = "topic not allowed"
BAD_SUBSCRIBE_URL = "bad subscribe url"


class SnsEnvelope(BaseModel):
    """The JSON body SNS POSTs to an HTTP(S) subscription (field names as SNS spells them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    Type: MessageType
    MessageId: str = Field(min_length=1, max_length=256)
    TopicArn: str = Field(min_length=1, max_length=1024)
    Message: str
    # Kept as sent: the signature covers the text, not a re-formatted datetime.
    Timestamp: str = Field(max_length=64)
    SignatureVersion: str = Field(max_length=8)
    Signature: str = Field(min_length=1, max_length=4096)
    SigningCertURL: str = Field(min_length=1, max_length=2048)
    Subject: str | None = None
    SubscribeURL: str | None = Field(default=None, max_length=4096)
    Token: str | None = Field(default=None, max_length=4096)
    UnsubscribeURL: str | None = None

    def canonical_string(self) -> bytes:
        """'Name\\nvalue\\n' for each signed field present, in SNS's order."""
        parts: list[str] = []
        for name in SIGNED_FIELDS[self.Type]:
            value = getattr(self, name)
            if value is None:
                continue
            parts.append(f"{name}\n{value}\n")
        return "".join(parts).encode("utf-8")

    @field_validator("Timestamp")
    @classmethod
    def _timestamp_parses(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise ValueError("has no time zone")
        return value

    @property
    def sent_at(self) -> datetime:
        return datetime.fromisoformat(self.Timestamp)


class SnsRejected(Exception):
    """A message that must not be acted on; `reason` starts with a stable prefix."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_sns_url(url: str, host_pattern: str) -> str | None:
    """Why this URL is not an SNS https URL we may fetch, or None when it is."""
    if not url.isprintable():
        # urlsplit drops tabs and newlines that httpx then refuses (InvalidURL, a 500).
        return "control or format characters in the URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"unparseable ({exc})"
    if parts.scheme != "https":
        return f"scheme {parts.scheme or '(none)'!r} is not https"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL"
    host = (parts.hostname or "") + (f":{port}" if port not in (None, 443) else "")
    if not re.fullmatch(host_pattern, host):
        return f"host {host!r} is not an SNS host"
    return None


def check_cert_url(url: str, host_pattern: str) -> str | None:
    problem = check_sns_url(url, host_pattern)
    if problem is None:
        parts = urlsplit(url)
        if not parts.path.endswith(".pem"):
            problem = "path is not a .pem certificate"
        elif parts.query or parts.fragment:
            problem = "query or fragment in a certificate URL"
    return None if problem is None else f"{BAD_CERT_URL}: {problem}"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


class SigningCertificates:
    """Fetches signing certificates over https from allowed hosts, and keeps them a day."""

    def __init__(self, settings: SnsSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self._pattern = settings.cert_host_pattern
        self.http = http or httpx.AsyncClient(
            verify=tls_context(str(settings.cert_ca_file) if settings.cert_ca_file else None),
            timeout=5.0,
            follow_redirects=False,
        )
        self._cache: TTLCache[str, x509.Certificate] = TTLCache(maxsize=64, ttl=CERT_CACHE_SECONDS)
        self.fetches: Counter[str] = Counter()

    async def get(self, url: str) -> x509.Certificate:
        problem = check_cert_url(url, self._pattern)
        if problem is not None:
            raise SnsRejected(403, problem)
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        certificate = await self._fetch(url)
        self._cache[url] = certificate
        return certificate

    async def _fetch(self, url: str) -> x509.Certificate:
        self.fetches[url] += 1
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise SnsRejected(403, f"{CERT_UNAVAILABLE}: HTTP {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CERT_BYTES:
                        raise SnsRejected(403, f"{BAD_CERT}: larger than {MAX_CERT_BYTES} bytes")
        except httpx.HTTPError as exc:
            # Could be ours (network) or theirs; SNS retries a 5xx, so a blip costs nothing.
            raise SnsRejected(503, f"{CERT_UNAVAILABLE}: {type(exc).__name__}: {exc}") from None
        try:
            return x509.load_pem_x509_certificate(body)
        except ValueError:
            raise SnsRejected(403, f"{BAD_CERT}: not a PEM certificate") from None

    async def aclose(self) -> None:
        await self.http.aclose()


def verify_signature(envelope: SnsEnvelope, certificate: x509.Certificate) -> None:
    """Raises SnsRejected unless the signature over the canonical string verifies."""
    algorithm = HASHES.get(envelope.SignatureVersion)
    if algorithm is None:
        raise SnsRejected(403, f"{UNSUPPORTED_VERSION}: {envelope.SignatureVersion!r}")
    at = envelope.sent_at
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise SnsRejected(403, f"{BAD_CERT}: not valid at the message's Timestamp")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRejected(403, f"{BAD_CERT}: not an RSA key")
    try:
        signature = base64.b64decode(envelope.Signature, validate=True)
    except (binascii.Error, ValueError):
        raise SnsRejected(403, f"{BAD_SIGNATURE}: not base64") from None
    try:
        key.verify(signature, envelope.canonical_string(), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SnsRejected(403, f"{BAD_SIGNATURE}: does not verify") from None


def check_age(envelope: SnsEnvelope, *, now: datetime, max_age: timedelta) -> None:
    at = envelope.sent_at
    if now - at > max_age:
        raise SnsRejected(
            403, f"{STALE}: sent {int((now - at).total_seconds())} s ago, window {max_age}"
        )
    if at - now > CLOCK_SKEW:
        raise SnsRejected(403, f"{FUTURE}: Timestamp {envelope.Timestamp}")


@dataclass
class ReplayGuard:
    """MessageIds accepted within the age window. A failed delivery releases its id, so
    SNS's retry of a message we answered 5xx is taken, not refused as a replay."""

    window: timedelta
    maxsize: int = 100_000

    def __post_init__(self) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(
            maxsize=self.maxsize, ttl=(self.window + CLOCK_SKEW).total_seconds()
        )

    def claim(self, message_id: str) -> None:
        if message_id in self._seen:
            raise SnsRejected(409, f"{REPLAYED}: MessageId {message_id} was already accepted")
        self._seen[message_id] = True

    def release(self, message_id: str) -> None:
        self._seen.pop(message_id, None)

    def __len__(self) -> int:
        return len(self._seen)


class SnsVerifier:
    """Everything that must hold before an SNS message is believed."""

    def __init__(
        self, settings: SnsSettings, certificates: SigningCertificates | None = None
    ) -> None:
        self.settings = settings
        self.certificates = certificates or SigningCertificates(settings)
        self.replays = ReplayGuard(timedelta(seconds=settings.max_age_seconds))

    async def verify(self, envelope: SnsEnvelope, *, now: datetime | None = None) -> None:
        """Raises SnsRejected; on success the MessageId is claimed (release it on failure)."""
        settings = self.settings
        if envelope.TopicArn not in settings.topic_arns:
            raise SnsRejected(403, f"{TOPIC_NOT_ALLOWED}: {envelope.TopicArn}")
        if envelope.SignatureVersion not in HASHES:
            raise SnsRejected(403, f"{UNSUPPORTED_VERSION}: {envelope.SignatureVersion!r}")
        problem = check_cert_url(envelope.SigningCertURL, settings.cert_host_pattern)
        if problem is not None:
            raise SnsRejected(403, problem)
        check_age(
            envelope,
            now=now or datetime.now(UTC),
            max_age=timedelta(seconds=settings.max_age_seconds),
        )
        if not settings.unsafe_skip_signature_check:
            certificate = await self.certificates.get(envelope.SigningCertURL)
            verify_signature(envelope, certificate)
        self.replays.claim(envelope.MessageId)

    def subscribe_url_problem(self, envelope: SnsEnvelope) -> str | None:
        if not envelope.SubscribeURL:
            return f"{BAD_SUBSCRIBE_URL}: missing"
        problem = check_sns_url(envelope.SubscribeURL, self.settings.cert_host_pattern)
        return None if problem is None else f"{BAD_SUBSCRIBE_URL}: {problem}"
