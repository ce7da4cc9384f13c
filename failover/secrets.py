"""Reading secrets from AWS Secrets Manager, for the activities and the alarm receiver.

The config names a secret (`*_secret: {secret_id, json_key, region}`); the value is read
here, where it is used, and never enters workflow input, results or history. Values are
cached for `aws.secrets_cache_seconds`; a login the other side refuses may read its secret
again past the cache (`fresh=True`), at most once per `aws.secrets_reread_seconds` per
secret, so a rotated password is picked up without a restart and a flood of refused
requests cannot hammer Secrets Manager.

Errors name the secret (and key), never its value: a secret that does not exist, a key that
is missing, a secret that is not JSON where a key is asked for, are SecretConfigError (no
retry helps); throttling, 5xx and connection trouble are SecretUnavailable (retry).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
)
from cachetools import TTLCache

from failover.config import AwsSettings, SecretRef

SERVICE = "secretsmanager"
# Secrets held at once per resolver; a config names a handful.
CACHE_SIZE = 256
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)

# (Region, secret id): one cached SecretString whatever keys of it are used.
SecretKey = tuple[str, str]


class SecretError(Exception):
    """Reading a secret failed; `kind` is a stable name for logs and ApplicationError types."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class SecretConfigError(SecretError):
    """The reference cannot work as configured (no such secret, no such key, no rights):
    permanent, fix the config, the secret or the IAM policy."""


class SecretUnavailable(SecretError):
    """Secrets Manager could not answer now (throttled, 5xx, unreachable): retry."""


def secrets_client(aws: AwsSettings, region: str) -> Any:
    """A secretsmanager client built as activities.aws.aws_client_factory builds every other
    one: the configured endpoint (the sandbox's moto), botocore's retries off (the caller's
    retry policy owns retrying), short timeouts."""
    return boto3.session.Session().client(
        SERVICE,
        region_name=region,
        endpoint_url=str(aws.endpoint_url).rstrip("/") if aws.endpoint_url else None,
        config=BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=20,
        ),
    )


def secret_region(ref: SecretRef, default: str) -> str:
    """The reference's own Region, else the one its ARN names, else the configured one."""
    return ref.region or ref.arn_region or default


def read_failure(ref: SecretRef, region: str, exc: Exception) -> SecretError:
    """Sorts a failed GetSecretValue into permanent and transient; the message names the
    secret and the AWS error code, never a value (GetSecretValue errors carry none)."""
    where = f"AWS Secrets Manager {ref.describe()} in {region}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = error.get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code == "ResourceNotFoundException":
            return SecretConfigError(f"{where} does not exist ({code})", "SecretNotFound")
        if code == "AccessDeniedException":
            return SecretConfigError(
                f"{where}: access denied; the worker's role needs secretsmanager:GetSecretValue "
                f"on it (and kms:Decrypt on a customer managed key) ({code})",
                "SecretAccessDenied",
            )
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return SecretUnavailable(f"{where}: {code}: {message}", "SecretUnavailable")
        return SecretConfigError(f"{where}: {code}: {message}", "SecretNotUsable")
    if isinstance(exc, NoCredentialsError):
        return SecretConfigError(f"{where}: no AWS credentials found", "NoCredentials")
    if isinstance(exc, ParamValidationError):
        return SecretConfigError(
            f"{where}: request refused before sending: {exc}", "SecretNotUsable"
        )
    return SecretUnavailable(f"{where}: {type(exc).__name__}: {exc}", "SecretUnavailable")


def secret_field(ref: SecretRef, secret_string: str) -> str:
    """The value the reference asks for: the whole SecretString, or one string key of the JSON
    object it holds. Every problem names the secret and key, never what the secret holds."""
    if ref.json_key is None:
        if not secret_string:
            raise SecretConfigError(f"{ref.describe()} is empty", "SecretEmpty")
        return secret_string
    try:
        data = json.loads(secret_string)
    except ValueError:
        raise SecretConfigError(
            f"{ref.describe()}: the secret is not JSON, so it has no key to read; drop json_key "
            "to use the whole SecretString",
            "SecretNotJson",
        ) from None
    if not isinstance(data, dict):
        raise SecretConfigError(
            f"{ref.describe()}: the secret is JSON but not an object, so it has no keys",
            "SecretNotJson",
        )
    if ref.json_key not in data:
        raise SecretConfigError(
            f"{ref.describe()}: the secret has no key {ref.json_key!r}", "SecretKeyMissing"
        )
    value = data[ref.json_key]
    if not isinstance(value, str) or not value:
        kind = "an empty string" if value == "" else f"a JSON {type(value).__name__}"
        raise SecretConfigError(
            f"{ref.describe()}: the key holds {kind}, not a non-empty string", "SecretNotUsable"
        )
    return value


class SecretResolver:
    """Reads secrets through one client per Region and caches each SecretString.

    Thread-safe: the activities and the receiver call it from worker threads
    (`asyncio.to_thread`), since a read is a blocking boto3 call. Concurrent reads of one
    secret make one GetSecretValue; reads of different secrets do not wait for each other.
    `client_factory(region)` and `clock` let tests count calls and move time.
    """

    def __init__(
        self,
        aws: AwsSettings,
        *,
        client_factory: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = aws
        self._client_factory = client_factory or functools.partial(secrets_client, aws)
        self._clock = clock
        self._cache: TTLCache[SecretKey, str] = TTLCache(
            maxsize=CACHE_SIZE, ttl=aws.secrets_cache_seconds, timer=clock
        )
        self._reread_at: dict[SecretKey, float] = {}
        self._clients: dict[str, Any] = {}
        self._fetching: dict[SecretKey, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the dicts above, never held during a read

    def value(self, ref: SecretRef, *, fresh: bool = False) -> str:
        """The secret's value. `fresh`: the caller's login was refused with the cached value;
        read it again unless that was done within `aws.secrets_reread_seconds`."""
        region = secret_region(ref, self.aws.region)
        return secret_field(ref, self._secret_string(ref, (region, ref.secret_id), fresh))

    def may_reread(self, ref: SecretRef) -> bool:
        """Whether `value(ref, fresh=True)` would read Secrets Manager now (not rate-limited)."""
        key = (secret_region(ref, self.aws.region), ref.secret_id)
        with self._lock:
            return self._reread_allowed(key)

    def _reread_allowed(self, key: SecretKey) -> bool:
        last = self._reread_at.get(key)
        return last is None or self._clock() - last >= self.aws.secrets_reread_seconds

    def _secret_string(self, ref: SecretRef, key: SecretKey, fresh: bool) -> str:
        with self._lock:
            cached = self._cache.get(key)
            fetch_lock = self._fetching.setdefault(key, threading.Lock())
            reread = fresh and self._reread_allowed(key)
            if reread:
                self._reread_at[key] = self._clock()
        if cached is not None and not reread:
            if fresh:
                # Rate-limited: a re-read in flight (another refused login) is worth waiting
                # for, its value is the newest there is.
                with fetch_lock, self._lock:
                    return self._cache.get(key, cached)
            return cached
        with fetch_lock:
            if not reread:
                with self._lock:
                    cached = self._cache.get(key)
                if cached is not None:  # read by another thread while this one waited
                    return cached
            secret_string = self._read(ref, key)
            with self._lock:
                self._cache[key] = secret_string
            return secret_string

    def _read(self, ref: SecretRef, key: SecretKey) -> str:
        region = key[0]
        try:
            answer = self._client(region).get_secret_value(SecretId=ref.secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise read_failure(ref, region, exc) from None
        text = answer.get("SecretString")
        if text is None:
            raise SecretConfigError(
                f"AWS Secrets Manager {ref.describe()} in {region} holds binary data "
                "(SecretBinary); store the value as a SecretString",
                "SecretNotUsable",
            )
        return str(text)

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                # Made under the lock: a boto3 session is not thread-safe.
                client = self._clients[region] = self._client_factory(region)
            return client


@functools.lru_cache(maxsize=8)
def shared_resolver(aws: AwsSettings) -> SecretResolver:
    """One resolver (one cache) per AWS setting in this process: the worker's activities
    and a receiver running beside them read each secret once per cache period."""
    return SecretResolver(aws)
