"""Calling AWS from activities: one client per activity class, errors sorted by kind.

Permanent errors (wrong rights, wrong zone, a request AWS will never accept) become
non-retryable ApplicationErrors that end the run at once with the AWS code as reason;
everything else (throttling, 5xx, connection trouble) is raised retryable, so the
workflow's retry policy backs off. botocore's own retries are off in the clients the
worker builds, so every attempt is visible in history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)
from temporalio.exceptions import ApplicationError

from failover.config import AwsSettings


def aws_client_factory(
    aws: AwsSettings,
    service: str,
    region: str | None = None,
    *,
    session: boto3.session.Session | None = None,
) -> Callable[[], Any]:
    """boto3 clients with botocore's retries off: Temporal's retry policy owns retrying.

    The only place that makes boto3 clients; activities receive factories, never boto3.
    `region` overrides the configured Region (a Region switch calls both of its Regions);
    `session`, shared, makes each further client in milliseconds instead of reading the
    service models again (a session is not thread-safe: the caller holds a lock).
    """

    def make() -> Any:
        return (session or boto3.session.Session()).client(
            service,
            region_name=region or aws.region,
            endpoint_url=str(aws.endpoint_url).rstrip("/") if aws.endpoint_url else None,
            config=BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=20,
            ),
        )

    return make


def aws_session() -> boto3.session.Session:
    """A session to share between the clients one place makes (see aws_client_factory)."""
    return boto3.session.Session()


# Errors that no retry will fix: wrong rights, wrong zone, a change AWS will never accept.
PERMANENT_AWS_ERRORS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "NoSuchHostedZone",
        "InvalidChangeBatch",
        "InvalidInput",
        "InvalidDomainName",
        "NoSuchChange",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ValidationError",
    }
)


def aws_failure(operation: str, exc: Exception) -> ApplicationError:
    """Turns a boto error into an ApplicationError whose type is the AWS error code."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ApplicationError(
            f"{operation}: {code}: {message}" + (f" (HTTP {status})" if status else ""),
            type=code,
            non_retryable=code in PERMANENT_AWS_ERRORS,
        )
    if isinstance(exc, ParamValidationError):
        return ApplicationError(
            f"{operation}: request refused before sending: {exc}",
            type="ParamValidationError",
            non_retryable=True,
        )
    if isinstance(exc, NoCredentialsError):
        return ApplicationError(
            f"{operation}: no AWS credentials found", type="NoCredentials", non_retryable=True
        )
    if isinstance(exc, EndpointConnectionError):
        return ApplicationError(f"{operation}: {exc}", type="EndpointConnectionError")
    return ApplicationError(f"{operation}: {type(exc).__name__}: {exc}", type=type(exc).__name__)


class AwsCaller:
    """Base for activity classes that call one AWS service through a client factory."""

    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._client_factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(operation, exc) from exc


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
