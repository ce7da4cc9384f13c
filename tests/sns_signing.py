"""A test CA that stands in for Amazon's: it signs SNS messages and serves the certificate.

Production trusts only https from `sns.<region>.amazonaws.com`; the tests point the
receiver's `cert_host_pattern` and `cert_ca_file` at a loopback HTTPS server whose
certificate this CA issued, and sign messages with a key whose certificate it also issued.
The canonical string is written out here from the SNS developer guide, independently of
the receiver's code, so a mistake in one is caught by the other.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:search-alarms"
OTHER_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
CERT_PATH = "/SimpleNotificationService-test.pem"
EXPIRED_CERT_PATH = "/SimpleNotificationService-expired.pem"
NOT_PEM_PATH = "/SimpleNotificationService-garbage.pem"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    ip: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class SigningCa:
    directory: Path
    ca_key: rsa.RSAPrivateKey = field(default_factory=new_key)
    signing_key: rsa.RSAPrivateKey = field(default_factory=new_key)
    server_key: rsa.RSAPrivateKey = field(default_factory=new_key)

    def __post_init__(self) -> None:
        self.ca_cert = _issue(
            "failover test CA", self.ca_key, _name("failover test CA"), self.ca_key, ca=True
        )
        issuer = self.ca_cert.subject
        self.signing_cert = _issue("sns.amazonaws.com", self.signing_key, issuer, self.ca_key)
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
        self.expired_cert = _issue(
            "sns.amazonaws.com",
            self.signing_key,
            issuer,
            self.ca_key,
            not_before=long_ago,
            not_after=long_ago + dt.timedelta(days=30),
        )
        self.server_cert = _issue("127.0.0.1", self.server_key, issuer, self.ca_key, ip="127.0.0.1")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self.ca_cert))
        (self.directory / "server.pem").write_bytes(_pem(self.server_cert))
        (self.directory / "server-key.pem").write_bytes(
            self.server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.directory / "server.pem", self.directory / "server-key.pem")
        return context


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs: 'Name\\nvalue\\n' for these fields, in this order, if present."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{n}\n{message[n]}\n" for n in names if message.get(n) is not None)
    return text.encode()


def sign(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def sns_time(at: dt.datetime | None = None) -> str:
    at = at or dt.datetime.now(dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def alarm_message(name: str, state: str = "ALARM", reason: str = "Threshold crossed") -> str:
    """The Message a CloudWatch alarm action publishes (the fields CloudWatch sends)."""
    import json

    return json.dumps(
        {
            "AlarmName": name,
            "AlarmDescription": "search cluster health",
            "AWSAccountId": "123456789012",
            "NewStateValue": state,
            "NewStateReason": reason,
            "StateChangeTime": "2026-11-26T10:00:00.000+0000",
            "Region": "US East (N. Virginia)",
            "AlarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
            "OldStateValue": "OK" if state == "ALARM" else "ALARM",
            "Trigger": {"MetricName": "ClusterStatus.red", "Namespace": "AWS/ES"},
        }
    )


class CertServer:
    """HTTPS on loopback: the signing certificates, and a SubscribeURL that records its GETs."""

    def __init__(self, ca: SigningCa) -> None:
        self.ca = ca
        self.confirmations: list[str] = []
        self.cert_fetches = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert_url(self) -> str:
        return self.base + CERT_PATH

    async def start(self) -> None:
        async def cert(_: web.Request) -> web.Response:
            self.cert_fetches += 1
            return web.Response(body=_pem(self.ca.signing_cert))

        async def expired(_: web.Request) -> web.Response:
            return web.Response(body=_pem(self.ca.expired_cert))

        async def garbage(_: web.Request) -> web.Response:
            return web.Response(body=b"this is not a certificate")

        async def confirm(request: web.Request) -> web.Response:
            self.confirmations.append(request.query.get("Token", ""))
            return web.Response(text="<ConfirmSubscriptionResponse/>")

        app = web.Application()
        app.router.add_get(CERT_PATH, cert)
        app.router.add_get(EXPIRED_CERT_PATH, expired)
        app.router.add_get(NOT_PEM_PATH, garbage)
        app.router.add_get("/confirm", confirm)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ca.server_context())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class SnsSigner:
    """Builds signed SNS messages as SNS would send them to the receiver."""

    ca: SigningCa
    cert_url: str
    topic_arn: str = TOPIC_ARN

    def notification(
        self,
        message: str,
        *,
        version: str = "1",
        at: dt.datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        body = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": self.topic_arn,
            "Subject": 'ALARM: "search-down" in US East (N. Virginia)',
            "Message": message,
            "Timestamp": sns_time(at),
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            **overrides,
        }
        return sign(body, key or self.ca.signing_key, version)

    def subscription_confirmation(
        self, subscribe_url: str, *, topic_arn: str | None = None, version: str = "1"
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex
        body = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic_arn or self.topic_arn,
            "Message": "You have chosen to subscribe to the topic. To confirm, visit the "
            "SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url.replace("{token}", token),
            "Timestamp": sns_time(),
            "SigningCertURL": self.cert_url,
        }
        return sign(body, self.ca.signing_key, version)
