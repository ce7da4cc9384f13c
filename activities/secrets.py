"""Secrets are read inside activities, at call time, from the environment variable or the
AWS Secrets Manager secret the config names: only the name or the reference (secret id and
key) travels through workflow input and history.

Secrets Manager reads go through failover.secrets (cached, rate-limited re-reads); this
module turns its errors into ApplicationErrors: a permanent one fails the run fast, a
transient one is retried by the activity's retry policy.
"""

from __future__ import annotations

import asyncio
import os

from temporalio.exceptions import ApplicationError

from failover.config import AwsSettings, SecretRef
from failover.secrets import (
    SecretConfigError,
    SecretResolver,
    SecretUnavailable,
    shared_resolver,
)

_resolver: SecretResolver | None = None


def configure_secrets(aws: AwsSettings) -> None:
    """Where this process's activities read Secrets Manager (the worker calls it with the
    config's `aws:` section: endpoint, Region, cache time)."""
    use_resolver(shared_resolver(aws))


def use_resolver(resolver: SecretResolver) -> None:
    """Hands the activities a resolver of the caller's own (tests count its reads)."""
    global _resolver
    _resolver = resolver


def secret_resolver() -> SecretResolver:
    """The configured resolver; without configure_secrets, the AWS defaults (real AWS)."""
    return _resolver if _resolver is not None else shared_resolver(AwsSettings())


def secret_from_env(name: str, what: str | None = None) -> str:
    """The value of `name` now; unset (or empty) is a permanent error naming the variable,
    never its value, so the run fails fast instead of retrying."""
    value = os.environ.get(name)
    if not value:
        purpose = f" ({what})" if what else ""
        raise ApplicationError(
            f"environment variable {name}{purpose} is not set",
            type="MissingSecret",
            non_retryable=True,
        )
    return value


def secret_from_manager(ref: SecretRef, what: str | None = None, *, fresh: bool = False) -> str:
    """The referenced secret's value (blocking on a cache miss: call it in a thread, see
    read_secret_async). `fresh`: the value was refused; read again past the cache."""
    purpose = f"{what}: " if what else ""
    try:
        return secret_resolver().value(ref, fresh=fresh)
    except SecretConfigError as exc:
        raise ApplicationError(purpose + exc.message, type=exc.kind, non_retryable=True) from None
    except SecretUnavailable as exc:
        raise ApplicationError(purpose + exc.message, type=exc.kind) from None


def read_secret(
    env: str | None, secret: SecretRef | None, what: str, *, fresh: bool = False
) -> str:
    """The value from whichever source the config names (config validation allows one)."""
    if secret is not None:
        return secret_from_manager(secret, what, fresh=fresh)
    if env is None:
        raise ApplicationError(
            f"no source configured for the {what}", type="MissingSecret", non_retryable=True
        )
    return secret_from_env(env, what)


async def read_secret_async(
    env: str | None, secret: SecretRef | None, what: str, *, fresh: bool = False
) -> str:
    """read_secret without blocking the event loop: a Secrets Manager read runs in a thread."""
    if secret is None:
        return read_secret(env, None, what)
    return await asyncio.to_thread(secret_from_manager, secret, what, fresh=fresh)
