"""Encrypted payloads: AES-256-GCM over every payload a client or worker sends to Temporal.

Workflow inputs, results, activity arguments, queries, summaries and failure messages hold
cluster hostnames and the layout of a storefront; without a codec the Temporal server
stores them in the clear. With payload keys configured, every payload leaves this process
encrypted with the current key (a fresh 96-bit nonce each time), its metadata naming the
key (`encryption-key-id`), so keys rotate: any key still listed decrypts what it encrypted.

The keys come from one of two environment variables, read when a client is made:
- FAILOVER_PAYLOAD_KEYS_FILE: a file of `key-id: base64-key` lines;
- FAILOVER_PAYLOAD_KEYS_SECRET_ID: a Secrets Manager secret whose string is such lines.
The first key listed encrypts; every key listed decrypts. Each key is 32 random bytes in
base64 (`openssl rand -base64 32`). Neither variable set: no codec, payloads in the clear.

Search attributes never pass through a codec: they stay readable on the server.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from base64 import b64decode
from binascii import Error as Base64Error
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

KEYS_FILE_ENV = "FAILOVER_PAYLOAD_KEYS_FILE"
KEYS_SECRET_ENV = "FAILOVER_PAYLOAD_KEYS_SECRET_ID"

ENCODING_KEY = "encoding"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_KEY = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, GCM's own size: never reused, as each is random
# Ids travel in every payload's metadata and in error messages: short, plain, printable.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAKE_A_KEY = "make one with `openssl rand -base64 32`"


class PayloadKeyError(RuntimeError):
    """The payload keys are misconfigured; every problem found, each naming its source."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


class PayloadDecryptError(Exception):
    """An encrypted payload this process cannot decrypt: an unknown key id, a payload
    altered on the way, or a key listed under the right id but with the wrong bytes."""


@dataclass(frozen=True, repr=False)
class PayloadKeys:
    """Key id → 32-byte key, and the id that encrypts. Never logged (no repr)."""

    current: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise PayloadKeyError([f"current key {self.current!r} is not among the keys"])

    @property
    def ids(self) -> list[str]:
        return list(self.keys)

    def __repr__(self) -> str:
        return f"PayloadKeys(current={self.current!r}, ids={self.ids!r})"


def parse_payload_keys(text: str, *, source: str) -> PayloadKeys:
    """`key-id: base64-key` lines (blank lines and `#` comments skipped); the first key
    encrypts. Every problem is reported at once, naming `source`, the line and the key id,
    never the key itself."""
    keys: dict[str, bytes] = {}
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        key_id, colon, encoded = (part.strip() for part in line.partition(":"))
        if not colon:
            errors.append(f"{where}: expected `key-id: base64-key`")
            continue
        problem = key_problem(key_id, encoded, known=keys)
        if problem is not None:
            errors.append(f"{where}: {problem}")
            continue
        keys[key_id] = b64decode(encoded, validate=True)
    if not keys and not errors:
        errors.append(f"{source}: no keys; add a line `key-id: base64-key` ({MAKE_A_KEY})")
    if errors:
        raise PayloadKeyError(errors)
    return PayloadKeys(current=next(iter(keys)), keys=keys)


def key_problem(key_id: str, encoded: str, *, known: Mapping[str, bytes]) -> str | None:
    """Why this line's key cannot be used, or None."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        return (
            f"key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if key_id in known:
        return f"key id {key_id!r} is listed twice"
    try:
        key = b64decode(encoded, validate=True)
    except (Base64Error, ValueError):
        return f"key {key_id!r} is not base64 ({MAKE_A_KEY})"
    if len(key) != KEY_BYTES:
        return (
            f"key {key_id!r} is {len(key)} bytes; payload keys are {KEY_BYTES} bytes "
            f"(AES-256): {MAKE_A_KEY}"
        )
    return None


def read_secret_string(secret_id: str) -> str:
    """A Secrets Manager secret's string: in the Region its ARN names, else where boto3
    looks (AWS_REGION); the endpoint as boto3 finds it (AWS_ENDPOINT_URL_SECRETS_MANAGER).
    This is process configuration, read before any config file, so it does not go through
    failover.secrets, whose reads follow the config's `aws` section."""
    import boto3

    parts = secret_id.split(":")
    region = parts[3] if secret_id.startswith("arn:") and len(parts) > 3 else None
    client = boto3.client("secretsmanager", region_name=region or None)
    text = client.get_secret_value(SecretId=secret_id).get("SecretString")
    if text is None:
        raise ValueError("it holds binary data (SecretBinary); store the text as a SecretString")
    return str(text)


@functools.cache
def _cached_secret(secret_id: str) -> str:
    """A long-lived process (a worker, a warm Lambda) fetches the keys once."""
    return read_secret_string(secret_id)


def payload_keys_from_env(
    env: Mapping[str, str] = os.environ,
    read_secret: Callable[[str], str] = _cached_secret,
) -> PayloadKeys | None:
    """The keys the environment names, or None when it names none (no encryption)."""
    path, secret_id = env.get(KEYS_FILE_ENV) or None, env.get(KEYS_SECRET_ENV) or None
    if path and secret_id:
        raise PayloadKeyError([f"set {KEYS_FILE_ENV} or {KEYS_SECRET_ENV}, not both"])
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PayloadKeyError(
                [f"{KEYS_FILE_ENV}: cannot read {path}: {exc.strerror or exc}"]
            ) from None
        return parse_payload_keys(text, source=f"{KEYS_FILE_ENV} ({path})")
    if secret_id:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            text = read_secret(secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise PayloadKeyError(
                [f"{KEYS_SECRET_ENV}: cannot read secret {secret_id!r}: {code}"]
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise PayloadKeyError(
                [f"{KEYS_SECRET_ENV}: cannot read secret {secret_id!r}: {exc}"]
            ) from None
        return parse_payload_keys(text, source=f"{KEYS_SECRET_ENV} ({secret_id})")
    return None


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM, the whole serialized payload (its metadata too) sealed under the
    current key; the key id is bound to the ciphertext as associated data, so a payload
    relabelled with another id fails to decrypt instead of decrypting wrongly.

    Payloads that are not encrypted decode as they are: runs started before encryption
    was switched on stay readable."""

    def __init__(self, keys: PayloadKeys) -> None:
        self.keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={ENCODING_KEY: ENCRYPTED_ENCODING, KEY_ID_KEY: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(ENCODING_KEY) != ENCRYPTED_ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_KEY)
        if raw_id is None:
            raise PayloadDecryptError(f"encrypted payload without {KEY_ID_KEY} metadata")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptError(
                f"payload encrypted with key {key_id!r}, which is not among this process's "
                f"payload keys ({', '.join(self.keys.ids)}): add it to the keys that "
                f"{KEYS_FILE_ENV} or {KEYS_SECRET_ENV} names"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise PayloadDecryptError(
                f"payload encrypted with key {key_id!r} does not authenticate: it was "
                f"altered, or key {key_id!r} here is not the key it was encrypted with"
            ) from None
        return Payload.FromString(plain)


def encrypted_data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The project's converter (pydantic), with the codec when there is one. Failure
    messages and stack traces then travel as an encoded attribute too: they quote node
    URLs and record values."""
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def payload_codec_from_env(env: Mapping[str, str] = os.environ) -> EncryptionCodec | None:
    keys = payload_keys_from_env(env)
    return None if keys is None else EncryptionCodec(keys)


def data_converter_from_env(env: Mapping[str, str] = os.environ) -> DataConverter:
    """What every client of this project connects with: the pydantic converter, encrypted
    when the environment names payload keys. A PayloadKeyError when it names bad ones."""
    return encrypted_data_converter(payload_codec_from_env(env))


def encrypts(converter: DataConverter) -> bool:
    """Whether payloads from this converter reach the server encrypted: then what stays in
    the clear (search attributes) should say less."""
    return isinstance(converter.payload_codec, EncryptionCodec)
