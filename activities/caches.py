"""Magento cache flushes after a switch: pages rendered while search was down are cached.

Each cache target is flushed by its own activity; every flush is idempotent (flushing
twice is harmless), so retries after a crash are safe. Passwords are read here (from
the environment or AWS Secrets Manager), never carried in history.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shlex
import threading
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
from activities.secrets import read_secret_async
from failover.config import RedisCache, SsmCache, VarnishCache
from failover.models import FlushRequest, FlushResult

SSM_DONE = {"Success", "Cancelled", "TimedOut", "Failed"}
SSM_MIN_TIMEOUT_SECONDS = 30  # SendCommand refuses less
VARNISH_TIMEOUT_SECONDS = 10.0  # what Magento's own purge uses

log = logging.getLogger(__name__)


async def _redis_password(cache: RedisCache) -> str | None:
    """From the environment variable or Secrets Manager secret the config names, if any."""
    if cache.password_env is None and cache.password_secret is None:
        return None
    return await read_secret_async(
        cache.password_env, cache.password_secret, f"redis {cache.name} password"
    )


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
        # A boto3 client takes 0.1-0.5 s to make (it reads the service model), and the
        # first flush is the first call: made here in the background, the SSM flush of a
        # failover does not wait for them (and the worker's event loop is not held).
        threading.Thread(target=self._make_clients, name="cache-aws-clients", daemon=True).start()

    def _make_clients(self) -> None:
        """Makes the SSM and EC2 clients ahead of the first flush; a factory that fails is
        left for that flush to call again and report."""
        for caller in (self.ec2, self.ssm):
            try:
                caller.client  # noqa: B018 (the property makes and keeps the client)
            except Exception as exc:  # reported by the flush that needs the client
                log.debug("cache flush AWS client not made ahead: %s", exc)

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
        password = await _redis_password(cache)
        for db in databases:
            client = aioredis.Redis(
                host=cache.host,
                port=cache.port,
                db=db,
                password=password,
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
        """Each instance's final status. A round asks every unfinished instance at once (one
        call's latency, not one per instance), the first right after SendCommand."""
        deadline = time.monotonic() + cache.timeout_seconds
        statuses = dict.fromkeys(instance_ids, "Pending")

        async def status_of(instance_id: str) -> str:
            try:
                answer = await self.call_in(
                    "ssm",
                    region,
                    "GetCommandInvocation",
                    CommandId=command_id,
                    InstanceId=instance_id,
                )
            except ApplicationError as err:
                if err.type != "InvocationDoesNotExist":
                    raise
                return statuses[instance_id]  # not registered yet: poll again
            return str(answer["Status"])

        while True:
            waiting = [i for i in instance_ids if statuses[i] not in SSM_DONE]
            for instance_id, status in zip(
                waiting, await asyncio.gather(*map(status_of, waiting)), strict=True
            ):
                statuses[instance_id] = status
            activity.heartbeat(statuses)
            if all(s in SSM_DONE for s in statuses.values()):
                return statuses
            if time.monotonic() >= deadline:
                return {i: (s if s in SSM_DONE else "TimedOut") for i, s in statuses.items()}
            await asyncio.sleep(cache.poll_seconds)
