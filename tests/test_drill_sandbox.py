"""Drills and dry runs on the whole sandbox: storefront, Redis, Varnish, SSM, DNS, monitors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from failover.client.operations import plan_failover, start_drill
from failover.models import DrillReport, Outcome
from sandbox.demo import monitor_watching
from sandbox.stack import Sandbox

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    stack = Sandbox(tmp_path_factory.mktemp("drill-sandbox"), mode="dns", probe_interval=0.5)
    await stack.start()
    assert stack.config is not None and stack.client is not None
    cluster = stack.config.clusters[0]
    await monitor_watching(
        stack.client, cluster.name, cluster.monitor.vantages(stack.config.task_queue)
    )
    yield stack
    await stack.stop()


def redis_cache(sandbox: Sandbox) -> tuple[str, int]:
    assert sandbox.config is not None
    [cache] = [c for c in sandbox.config.clusters[0].caches if c.type == "redis"]
    return cache.host, cache.port  # type: ignore[union-attr]


async def redis_keys(sandbox: Sandbox, marker: str) -> dict[int, int]:
    host, port = redis_cache(sandbox)
    found = {}
    for db in (0, 1):
        client = aioredis.Redis(host=host, port=port, db=db)
        try:
            found[db] = len(await client.keys(f"{marker}*"))
        finally:
            await client.aclose()
    return found


async def seed_redis(sandbox: Sandbox, marker: str) -> None:
    host, port = redis_cache(sandbox)
    for db in (0, 1):
        client = aioredis.Redis(host=host, port=port, db=db)
        try:
            await client.set(f"{marker}:{db}", "cached page")
        finally:
            await client.aclose()


async def varnish_hit(http: httpx.AsyncClient, url: str) -> bool:
    answer = await http.get(url)
    return answer.headers.get("X-Magento-Cache-Debug") == "HIT"


async def test_dry_runs_change_nothing_in_aws_redis_or_varnish(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert sandbox.config is not None and sandbox.client is not None
    cluster = sandbox.config.clusters[0]
    marker = "dry-run-canary"
    await seed_redis(sandbox, marker)
    page = f"{sandbox.storefront_url}/women.html"
    async with httpx.AsyncClient(timeout=5) as http:
        await http.get(page)
        assert await varnish_hit(http, page)  # cached in Varnish now
        record_before = await asyncio.to_thread(sandbox.read_record_values)
        sandbox.aws_proxy.calls.clear()

        plan = await plan_failover(sandbox.client, cluster, task_queue=sandbox.config.task_queue)
        drill = await start_drill(
            sandbox.client, cluster, task_queue=sandbox.config.task_queue, dry_run=True
        )
        report: DrillReport = await drill.result()

        assert plan.result == Outcome.PLANNED and plan.plan is not None
        host, port = redis_cache(sandbox)
        assert plan.plan.caches == [
            f"redis magento-redis: FLUSHDB of db 0, 1 on {host}:{port}",
            "ssm magento-app: `bin/magento cache:flush` in /var/www/magento on instances "
            "tagged Role=magento-app",
            f"varnish varnish: PURGE X-Magento-Tags-Pattern .* on {sandbox.storefront_url}/",
        ]
        assert report.dry_run and [r.result for r in report.plans] == [Outcome.PLANNED] * 2
        # Nothing switched, flushed or purged.
        assert await asyncio.to_thread(sandbox.read_record_values) == record_before
        assert await redis_keys(sandbox, marker) == {0: 1, 1: 1}
        assert await varnish_hit(http, page)
    operations = {call.operation for call in sandbox.aws_proxy.calls}
    assert operations <= {"ListResourceRecordSets"}, operations


async def test_drill_on_the_sandbox_passes_with_storefront_counts(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert sandbox.config is not None and sandbox.client is not None
    raw = sandbox.config.clusters[0].model_dump(mode="json")
    raw["drill"] = {"report_dir": str(tmp_path), "storefront_interval_seconds": 0.25}
    cluster = type(sandbox.config.clusters[0]).model_validate(raw)
    handle = await start_drill(
        sandbox.client, cluster, task_queue=sandbox.config.task_queue, hold_seconds=1
    )
    report: DrillReport = await handle.result()
    assert report.verdict == "pass", report.reason
    assert report.rto_seconds is not None and report.rto_seconds < report.rto_target_seconds
    assert report.storefront_total_requests >= 4
    assert report.storefront_failed_requests == 0, report.storefront_problems
    assert report.failover is not None and [f.name for f in report.failover.flushed] == [
        "magento-redis",
        "magento-app",
        "varnish",
    ]
    assert await asyncio.to_thread(sandbox.read_record_values) == ["es-primary.shop.internal"]
    assert report.files is not None
    assert await asyncio.to_thread(Path(report.files.html).exists)
