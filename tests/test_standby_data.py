"""The standby's data on the whole sandbox: Magento's aliases, replication lag, promotion
and re-seeding, on the real dev server, with the monitor recording what it sees.

Both simulated clusters run OpenSearch with the replication plugin: the standby's two
store indices follow the primary's. Each test leaves the sandbox as it found it: traffic
on the primary, the standby following it, no faults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from failover import decisions
from failover.client.operations import (
    known_data,
    monitor_status,
    pause_monitor,
    plan_failover,
    start_drill,
    start_failback,
    start_or_attach_failover,
    start_reseed,
    watch_progress,
)
from failover.models import DataRecord, FailoverResult, OperatorRequest, Outcome
from failover.names import failover_workflow_id
from sandbox.demo import failover_started_by_monitor, monitor_watching
from sandbox.search_sim import FaultMode, NodeFault, SimulatedCluster
from sandbox.stack import PRIMARY_SIM, PRIMARY_VALUE, STANDBY_SIM, Sandbox
from sandbox.waiting import wait_for

pytestmark = pytest.mark.slow

BACKING = ["magento2_product_1_v1", "magento2_product_2_v1"]


@pytest_asyncio.fixture(scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    stack = Sandbox(
        tmp_path_factory.mktemp("standby-data"), mode="dns", probe_interval=0.5, replication=True
    )
    await stack.start()
    assert stack.config is not None and stack.client is not None
    cluster = stack.config.clusters[0]
    await monitor_watching(
        stack.client, cluster.name, cluster.monitor.vantages(stack.config.task_queue)
    )
    await wait_record(stack, lambda r: _following(r, "standby"), "the standby recorded following")
    yield stack
    await stack.stop()


def sims(sandbox: Sandbox) -> tuple[SimulatedCluster, SimulatedCluster]:
    assert sandbox.fleet is not None
    return sandbox.fleet.clusters[PRIMARY_SIM], sandbox.fleet.clusters[STANDBY_SIM]


def _following(record: DataRecord, side: str) -> bool:
    snapshot = record.side(side)  # type: ignore[arg-type]
    return (
        snapshot is not None
        and snapshot.error is None
        and len(snapshot.followers) == len(snapshot.aliases)
        and all(f.status == "syncing" and f.stale_since is None for f in snapshot.followers)
    )


async def wait_record(
    sandbox: Sandbox, check: Callable[[DataRecord], bool], what: str, timeout_s: float = 30
) -> DataRecord:
    """Waits until the monitor's record of the indices satisfies `check`."""
    assert sandbox.client is not None and sandbox.config is not None
    name = sandbox.config.clusters[0].name
    seen: list[DataRecord] = []

    async def holds() -> bool:
        try:
            record = await known_data(sandbox.client, name)  # type: ignore[arg-type]
        except RPCError:
            return False
        seen[:] = [record]
        return check(record)

    await wait_for(holds, what=what, timeout_s=timeout_s)
    return seen[0]


async def set_down(sim: SimulatedCluster, down: bool) -> None:
    sim.set_fault(None, NodeFault(FaultMode.DOWN if down else FaultMode.HEALTHY))
    await sim.settle()


async def fail_over(
    sandbox: Sandbox, reason: str, accept: OperatorRequest | None = None
) -> FailoverResult:
    assert sandbox.client is not None and sandbox.config is not None
    handle = await start_or_attach_failover(
        sandbox.client,
        sandbox.config.clusters[0],
        task_queue=sandbox.config.task_queue,
        reason=reason,
        accept_stale=accept,
    )
    return await handle.result()


async def fail_back(sandbox: Sandbox) -> FailoverResult:
    assert sandbox.client is not None and sandbox.config is not None
    handle = await start_failback(
        sandbox.client,
        sandbox.config.clusters[0],
        task_queue=sandbox.config.task_queue,
        reason="back to the primary",
    )
    return await handle.result()


async def reseed(sandbox: Sandbox) -> None:
    assert sandbox.client is not None and sandbox.config is not None
    handle = await start_reseed(
        sandbox.client,
        sandbox.config.clusters[0],
        task_queue=sandbox.config.task_queue,
        reason="test",
        identity="tests",
    )
    result = await handle.result()
    assert result.result == "reseeded", result.reason


async def back_to_primary(sandbox: Sandbox) -> None:
    """After a failover that promoted the standby: the primary is re-seeded from it, traffic
    fails back (promoting the primary) and the standby follows the primary again."""
    primary, standby = sims(sandbox)
    await set_down(primary, False)
    await reseed(sandbox)
    assert {f["status"] for f in _followers(primary)} == {"syncing"}
    result = await fail_back(sandbox)
    assert result.result == Outcome.FAILED_OVER, result.reason
    names = [s.name for s in result.steps]
    assert "promote" in names and "wait_synced" in names, names
    assert await _record_values(sandbox) == [PRIMARY_VALUE]
    assert _followers(primary) == []
    aliases = primary.data_state()["aliases"]
    behind = sorted(i for a in ("magento2_product_1", "magento2_product_2") for i in aliases[a])
    assert sorted(f["index"] for f in _followers(standby)) == behind
    await wait_record(sandbox, lambda r: _following(r, "standby"), "the standby following again")


def _followers(sim: SimulatedCluster) -> list[dict[str, object]]:
    """The sim's own view: the indices that follow another cluster, and how."""
    state = sim.data_state()
    return [
        {"index": name, **info["follower"]}
        for name, info in state["indices"].items()
        if info.get("follower")
    ]


async def _record_values(sandbox: Sandbox) -> list[str]:
    import asyncio

    return await asyncio.to_thread(sandbox.read_record_values)


async def _no_failover(sandbox: Sandbox) -> bool:
    assert sandbox.client is not None and sandbox.config is not None
    handle = sandbox.client.get_workflow_handle(
        failover_workflow_id(sandbox.config.clusters[0].name)
    )
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return False


async def test_the_plan_shows_the_readiness_and_the_promotion(sandbox: Sandbox) -> None:
    assert sandbox.client is not None and sandbox.config is not None
    result = await plan_failover(
        sandbox.client, sandbox.config.clusters[0], task_queue=sandbox.config.task_queue
    )
    assert result.plan is not None
    data = result.plan.data
    assert "standby magento2_product_1 → magento2_product_1_v1, 12 documents" in data
    assert "standby magento2_product_2_v1: syncing, lag 0 operations (checkpoint 11)" in data
    assert "preflight: data ready" in data
    assert data[-1].startswith("promote: stop replication on the standby's follower indices")
    assert "(2 now following)" in data[-1]
    assert [line for line in result.plan.lines() if line.startswith("data: ")] == [
        f"data: {line}" for line in data
    ]
    assert sorted(f["index"] for f in _followers(sims(sandbox)[1])) == BACKING  # unchanged


async def test_a_red_index_magento_never_reads_is_a_note_not_a_failover(
    sandbox: Sandbox,
) -> None:
    assert sandbox.client is not None and sandbox.config is not None
    cluster = sandbox.config.clusters[0]
    primary, _ = sims(sandbox)
    primary.set_index_health("logs-magento-000001", "red")
    try:
        vantage = cluster.monitor.vantages(sandbox.config.task_queue)[0]

        async def degraded() -> bool:
            progress = (await watch_progress(sandbox.client, cluster.name)).get(vantage)  # type: ignore[arg-type]
            return (
                progress is not None
                and progress.view is not None
                and progress.view.primary.state == "degraded"
            )

        await wait_for(degraded, what="the monitor to note the red index", timeout_s=20)
        progress = await watch_progress(sandbox.client, cluster.name)
        view = progress[vantage].view
        assert view is not None and view.primary.reason is not None
        assert view.primary.reason.startswith(f"{decisions.DEGRADED}: cluster status red outside")
        rounds = progress[vantage].rounds

        async def more_rounds() -> bool:
            now = await watch_progress(sandbox.client, cluster.name)  # type: ignore[arg-type]
            return now[vantage].rounds >= rounds + 2 * cluster.probe.failure_threshold

        # Long enough for a down side to be confirmed twice over: still no failover.
        await wait_for(more_rounds, what="more probe rounds", timeout_s=20)
        assert await _no_failover(sandbox)
        status = await monitor_status(sandbox.client, cluster.name)
        assert status.state.last_decision is None or status.state.last_decision.action != "failover"
    finally:
        primary.set_index_health("logs-magento-000001", None)


async def test_red_storefront_indices_fail_over_and_failback_needs_a_reseed(
    sandbox: Sandbox,
) -> None:
    assert sandbox.client is not None and sandbox.config is not None
    primary, standby = sims(sandbox)
    primary.set_index_health("magento2_product_1_v1", "red")
    handle = await failover_started_by_monitor(sandbox.client, sandbox.config.clusters[0].name)
    result = await handle.result()
    primary.set_index_health("magento2_product_1_v1", None)

    assert result.result == Outcome.FAILED_OVER, result.reason
    assert result.trigger == "monitor"
    assert "storefront's indices" in result.reason
    assert result.promotion is not None and sorted(result.promotion.promoted) == BACKING
    outcomes = {s.name: s.outcome for s in result.steps}
    assert outcomes["promote"] == "ok" and outcomes["verify_writes"] == "ok"
    assert outcomes["verify_indices"] == "ok"
    assert _followers(standby) == []

    # The primary still holds the data from before: failing back now would lose the writes
    # made on the standby since, so it is refused and nothing moves.
    refused = await fail_back(sandbox)
    assert refused.result == Outcome.ABORTED
    assert refused.reason.startswith(f"aborted: preflight failed: {decisions.NOT_RESEEDED}: ")
    assert await _record_values(sandbox) == ["es-standby.shop.internal"]
    await back_to_primary(sandbox)


async def test_replication_paused_longer_than_allowed_aborts(sandbox: Sandbox) -> None:
    assert sandbox.client is not None and sandbox.config is not None
    cluster = sandbox.config.clusters[0]
    await pause_monitor(
        sandbox.client, cluster.name, reason="tests trigger by hand", identity="tests"
    )
    primary, standby = sims(sandbox)
    standby.replication_fault("pause")
    await wait_record(
        sandbox,
        lambda r: (
            r.standby is not None and all(f.stale_since is not None for f in r.standby.followers)
        ),
        "the monitor to see the paused replication beyond max_lag_seconds",
    )
    await set_down(primary, True)
    try:
        result = await fail_over(sandbox, "primary down, standby paused")
    finally:
        await set_down(primary, False)
        standby.replication_fault("resume")
    assert result.result == Outcome.ABORTED
    assert result.reason.startswith(f"aborted: preflight failed: {decisions.REPLICATION_LAG}: ")
    assert "beyond the limits" in result.reason
    assert [s.outcome for s in result.steps if s.name == "preflight"] == ["refused"]
    assert await _record_values(sandbox) == [PRIMARY_VALUE]
    assert sorted(f["index"] for f in _followers(standby)) == BACKING  # not promoted
    await wait_record(sandbox, lambda r: _following(r, "standby"), "the standby fresh again")


async def test_a_standby_within_the_lag_limit_fails_over_promotes_and_takes_writes(
    sandbox: Sandbox,
) -> None:
    primary, standby = sims(sandbox)
    standby.replication_fault("lag", index="magento2_product_1_v1", operations=10)
    primary.write_documents("magento2_product_1", 20)

    def lagging(record: DataRecord) -> bool:
        follower = record.standby.follower("magento2_product_1_v1") if record.standby else None
        return follower is not None and follower.lag_operations == 10

    await wait_record(sandbox, lagging, "the monitor to record the standby 10 operations behind")
    await set_down(primary, True)
    result = await fail_over(sandbox, "primary down, standby 10 operations behind")

    assert result.result == Outcome.FAILED_OVER, result.reason
    assert any("lag 10 operations" in line for line in result.readiness), result.readiness
    assert result.promotion is not None and sorted(result.promotion.promoted) == BACKING
    outcomes = {s.name: s.outcome for s in result.steps}
    assert outcomes["promote"] == "ok" and outcomes["verify_writes"] == "ok"
    assert await _record_values(sandbox) == ["es-standby.shop.internal"]
    # Magento's indexer can write to the new side: a product save through the alias.
    async with httpx.AsyncClient(timeout=5) as http:
        saved = await http.put(
            f"{standby.node_urls[0]}/magento2_product_1/_doc/1001",
            json={"sku": "24-MB99", "name": "Saved after the failover", "price": 1.0},
        )
    assert saved.status_code == 201, saved.text
    await back_to_primary(sandbox)
    # The write made on the standby reached the primary through the re-seed.
    async with httpx.AsyncClient(timeout=5) as http:
        found = await http.get(f"{primary.node_urls[0]}/magento2_product_1/_doc/1001")
    assert found.status_code == 200 and found.json()["_source"]["sku"] == "24-MB99"


async def test_an_alias_moved_on_the_primary_only_aborts_as_stale(sandbox: Sandbox) -> None:
    primary, standby = sims(sandbox)
    new_index = primary.reindex_store(1)
    assert new_index == "magento2_product_1_v2"
    await wait_record(
        sandbox,
        lambda r: (
            r.primary is not None
            and (alias := r.primary.alias("magento2_product_1")) is not None
            and alias.indices == [new_index]
        ),
        "the monitor to record the primary's new index version",
    )
    await set_down(primary, True)
    try:
        result = await fail_over(sandbox, "primary down after a reindex")
    finally:
        await set_down(primary, False)
    assert result.result == Outcome.ABORTED
    assert result.reason.startswith(
        f"aborted: preflight failed: {decisions.ALIAS_STALE}: magento2_product_1 points at "
        "magento2_product_1_v1 on the standby, at magento2_product_1_v2 on the primary"
    ), result.reason
    assert await _record_values(sandbox) == [PRIMARY_VALUE]
    # A re-seed brings the standby to the primary's layout, following it again.
    await reseed(sandbox)
    followed = sorted(f["index"] for f in _followers(standby))
    assert followed == ["magento2_product_1_v2", "magento2_product_2_v1"]
    assert standby.data_state()["aliases"]["magento2_product_1"] == [new_index]


async def test_a_missing_alias_aborts_and_accept_stale_overrides_it_once(
    sandbox: Sandbox,
) -> None:
    primary, standby = sims(sandbox)
    standby.drop_alias("magento2_product_2")
    await set_down(primary, True)
    refused = await fail_over(sandbox, "primary down, store 2 alias gone on the standby")
    assert refused.result == Outcome.ABORTED
    assert refused.reason.startswith(
        f"aborted: preflight failed: {decisions.ALIAS_MISSING}: magento2_product_2 is not on "
        "the standby"
    ), refused.reason
    assert refused.accepted_stale is None

    accepted = await fail_over(
        sandbox,
        "store 2 is closed for the season",
        accept=OperatorRequest(identity="oncall-alice", reason="store 2 is closed for the season"),
    )
    assert accepted.result == Outcome.FAILED_OVER_WITH_WARNINGS, accepted.reason
    assert accepted.accepted_stale is not None
    assert accepted.accepted_stale.startswith("accepted by oncall-alice: store 2 is closed")
    assert f"{decisions.ALIAS_MISSING}: magento2_product_2" in accepted.accepted_stale
    assert await _record_values(sandbox) == ["es-standby.shop.internal"]

    # Put the alias back and promote the index behind it, as an operator would, then return.
    standby.point_alias("magento2_product_2", "magento2_product_2_v1")
    async with httpx.AsyncClient(timeout=5) as http:
        stopped = await http.post(
            f"{standby.node_urls[0]}/_plugins/_replication/magento2_product_2_v1/_stop", json={}
        )
    assert stopped.status_code == 200, stopped.text
    await back_to_primary(sandbox)


async def test_a_drill_keeps_replication_and_says_writes_wait(sandbox: Sandbox) -> None:
    """Promotion cannot be undone, so a drill never promotes: the standby stays a follower
    while it serves, and replication still runs primary → standby afterwards."""
    assert sandbox.client is not None and sandbox.config is not None
    cluster = sandbox.config.clusters[0]
    # Drills refuse to run while the monitor is paused (the tests above paused it).
    await pause_monitor(
        sandbox.client, cluster.name, reason="the drill", identity="tests", paused=False
    )
    _, standby = sims(sandbox)
    handle = await start_drill(
        sandbox.client, cluster, task_queue=sandbox.config.task_queue, hold_seconds=0.5
    )
    report = await handle.result()
    assert report.verdict == "pass", report.reason
    assert report.failover is not None and report.failback is not None
    [skipped] = [s for s in report.failover.steps if s.name == "promote"]
    assert skipped.detail is not None and skipped.detail.startswith("drill: replication kept")
    assert report.failover.promotion is None
    [back] = [s for s in report.failback.steps if s.name == "promote"]
    assert back.detail is not None and back.detail.startswith("drill: replication kept")
    assert len(_followers(standby)) == 2
    assert await _record_values(sandbox) == [PRIMARY_VALUE]
