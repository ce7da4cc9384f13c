"""Magento cache flushes after a switch: pages rendered while search was down are cached.

Each cache target is flushed by its own activity; every flush is idempotent (flushing
twice is harmless), so retries after a crash are safe. Passwords are read from the
environment here, never carried in history.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsCaller
from activities.region import Clients, RegionalAws
from activities.secrets import secret_from_env
from failover.config import RedisCache, SsmCache, VarnishCache
from failover.models import FlushRequest, FlushResult

SSM_DONE = {"Success", "Cancelled", "TimedOut", "Failed"}
SSM_MIN_TIMEOUT_SECONDS = 30  # SendCommand refuses less
VARNISH_TIMEOUT_SECONDS = 10.0  # what Magento's own purge uses


def _secret(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    return secret_from_env(env_name)


class CacheActivities:
    """Flushes Redis cache databases, purges Varnish and runs cache:flush through SSM.

    `clients(service, region)` (activities.region.region_clients) serves SSM flushes that name
    their Region; the factories serve the others, in the configured Region.
    """

    def __init__(
        self,
        *,
        ssm_factory: Callable[[], Any],
        ec2_factory: Callable[[], Any],
        http_transport: httpx.AsyncBaseTransport | None = None,
        clients: Clients | None = None,
    ) -> None:
        self.ssm = AwsCaller(ssm_factory)
        self.ec2 = AwsCaller(ec2_factory)
        self.regional = RegionalAws(clients) if clients is not None else None
        self.http_transport = http_transport

    async def call_in(
        self, service: Literal["ssm", "ec2"], region: str | None, operation: str, **kwargs: Any
    ) -> dict[str, Any]:
        """The call in `region`, or through the configured clients when it is None."""
        if region is None:
            return await (self.ssm if service == "ssm" else self.ec2).call(operation, **kwargs)
        if self.regional is None:
            raise ApplicationError(
                f"cannot flush in {region}: this worker's CacheActivities has no per-Region AWS "
                "clients (clients=region_clients(aws))",
                type="NoRegionalClients",
                non_retryable=True,
            )
        return await self.regional.call_in(service, region, operation, **kwargs)

    @activity.defn(name="flush_cache")
    async def flush_cache(self, request: FlushRequest) -> FlushResult:
        cache = request.cache
        if isinstance(cache, RedisCache):
            detail = await self._flush_redis(cache)
        elif isinstance(cache, VarnishCache):
            detail = await self._purge_varnish(cache)
        else:
            detail = await self._ssm_cache_flush(cache, request.region)
        return FlushResult(name=cache.name, type=cache.type, detail=detail)

    async def _flush_redis(self, cache: RedisCache) -> str:
        """FLUSHDB on the configured databases only: what `bin/magento cache:flush` does."""
        databases = [cache.db] + ([cache.page_cache_db] if cache.page_cache_db is not None else [])
        flushed = []
        for db in databases:
            client = aioredis.Redis(
                host=cache.host,
                port=cache.port,
                db=db,
                password=_secret(cache.password_env),
                ssl=cache.tls,
                socket_timeout=5,
                socket_connect_timeout=5,
                retry=Retry(NoBackoff(), 0),  # Temporal's retry policy owns retrying
            )
            try:
                keys = await client.dbsize()
                await client.flushdb()
            except AuthenticationError as exc:
                raise ApplicationError(
                    f"redis {cache.name} ({cache.host}:{cache.port}): {exc}",
                    type="RedisAuth",
                    non_retryable=True,
                ) from exc
            except (RedisError, ResponseError, OSError) as exc:
                raise ApplicationError(
                    f"redis {cache.name} ({cache.host}:{cache.port} db {db}): {exc}",
                    type="RedisError",
                ) from exc
            finally:
                await client.aclose()
            flushed.append(f"db {db} ({keys} keys)")
        return "FLUSHDB " + ", ".join(flushed)

    async def _purge_varnish(self, cache: VarnishCache) -> str:
        """PURGE with X-Magento-Tags-Pattern, as Magento's own purge sends to each server."""
        async with httpx.AsyncClient(
            timeout=VARNISH_TIMEOUT_SECONDS, transport=self.http_transport
        ) as client:
            for server in cache.servers:
                try:
                    response = await client.request(
                        "PURGE", str(server), headers={"X-Magento-Tags-Pattern": cache.tags_pattern}
                    )
                except httpx.HTTPError as exc:
                    raise ApplicationError(
                        f"varnish {cache.name}: PURGE {server} failed: {type(exc).__name__}: {exc}",
                        type="VarnishUnreachable",
                    ) from exc
                if not response.is_success:
                    raise ApplicationError(
                        f"varnish {cache.name}: PURGE {server} answered HTTP "
                        f"{response.status_code} {response.reason_phrase}",
                        type="VarnishPurgeRefused",
                    )
        servers = len(cache.servers)
        return f"PURGE X-Magento-Tags-Pattern {cache.tags_pattern} on {servers} server(s)"

    async def _ssm_cache_flush(self, cache: SsmCache, region: str | None) -> str:
        """Runs cache:flush on every running instance with the tag, and waits for each."""
        reservations = await self.call_in(
            "ec2",
            region,
            "DescribeInstances",
            Filters=[
                {"Name": f"tag:{cache.tag_key}", "Values": [cache.tag_value]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ],
        )
        instance_ids = sorted(
            i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]
        )
        if not instance_ids:
            where = f" in {region}" if region else ""
            raise ApplicationError(
                f"ssm {cache.name}: no running instance tagged {cache.tag_key}={cache.tag_value}"
                + where,
                type="NoInstances",
                non_retryable=True,
            )
        command = f"cd {shlex.quote(cache.magento_root)} && {cache.command}"
        if cache.run_as:
            command = f"sudo -u {shlex.quote(cache.run_as)} sh -c {shlex.quote(command)}"
        sent = await self.call_in(
            "ssm",
            region,
            "SendCommand",
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Comment="search-failover: Magento cache flush",
            Parameters={"commands": [command]},
            TimeoutSeconds=max(SSM_MIN_TIMEOUT_SECONDS, math.ceil(cache.timeout_seconds)),
        )
        command_id = sent["Command"]["CommandId"]
        statuses = await self._wait_invocations(cache, command_id, instance_ids, region)
        failed = {i: s for i, s in statuses.items() if s != "Success"}
        if failed:
            listed = ", ".join(f"{i} {s}" for i, s in failed.items())
            raise ApplicationError(
                f"ssm {cache.name}: command {command_id} failed on {listed}", type="SsmFailed"
            )
        return f"{cache.command} on {', '.join(instance_ids)} (command {command_id})"

    async def _wait_invocations(
        self, cache: SsmCache, command_id: str, instance_ids: list[str], region: str | None
    ) -> dict[str, str]:
        deadline = time.monotonic() + cache.timeout_seconds
        statuses = dict.fromkeys(instance_ids, "Pending")
        while True:
            for instance_id in instance_ids:
                if statuses[instance_id] in SSM_DONE:
                    continue
                try:
                    answer = await self.call_in(
                        "ssm",
                        region,
                        "GetCommandInvocation",
                        CommandId=command_id,
                        InstanceId=instance_id,
                    )
                except ApplicationError as err:
                    if err.type != "InvocationDoesNotExist":  # not registered yet: poll again
                        raise
                    continue
                statuses[instance_id] = answer["Status"]
            activity.heartbeat(statuses)
            if all(s in SSM_DONE for s in statuses.values()):
                return statuses
            if time.monotonic() >= deadline:
                return {i: (s if s in SSM_DONE else "TimedOut") for i, s in statuses.items()}
            await asyncio.sleep(cache.poll_seconds)
