"""The storefront-index activities against simulated clusters of both flavours: the
OpenSearch replication plugin and Elasticsearch CCR. Reading, promotion (idempotent), the
write check, and re-seeding the other way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.search_data import WRITE_CHECK_ID, SearchDataActivities
from failover.config import ClusterSide, MagentoIndices
from failover.models import (
    DataSnapshot,
    FollowInput,
    ReplicationKind,
    Side,
    SideIndicesInput,
    WriteCheckInput,
)
from sandbox.search_sim import SimulatedCluster

MAGENTO = MagentoIndices(index_prefix="magento2", stores=[1, 2])
BACKING = ["magento2_product_1_v1", "magento2_product_2_v1"]


@dataclass
class Pair:
    kind: ReplicationKind
    leader: SimulatedCluster
    follower: SimulatedCluster
    env: ActivityEnvironment
    activities: SearchDataActivities

    def side(self, which: SimulatedCluster) -> ClusterSide:
        return ClusterSide(nodes=which.node_urls)  # type: ignore[arg-type]

    async def read(self, which: SimulatedCluster, side: Side) -> DataSnapshot:
        return await self.env.run(self.activities.read_data, self.indices(which, side))

    def indices(self, which: SimulatedCluster, side: Side) -> SideIndicesInput:
        return SideIndicesInput(
            cluster="catalog",
            side=side,
            settings=self.side(which),
            magento=MAGENTO,
            kind=self.kind,
            timeout_seconds=2,
        )

    def writes(self, which: SimulatedCluster) -> WriteCheckInput:
        return WriteCheckInput(
            url=which.node_urls[0],
            side=self.side(which),
            aliases=MAGENTO.alias_names(),
            timeout_seconds=2,
        )


@pytest_asyncio.fixture(params=["opensearch", "elasticsearch"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    kind: ReplicationKind = request.param
    async with (
        SimulatedCluster("leader", distribution=kind, node_count=1) as leader,
        SimulatedCluster("follower", distribution=kind, node_count=1) as follower,
    ):
        follower.connect_remote("leader", leader)
        leader.connect_remote("follower", follower)
        assert sorted(follower.follow_all("leader")) == BACKING
        yield Pair(kind, leader, follower, ActivityEnvironment(), SearchDataActivities())


async def test_reads_aliases_counts_and_replication_of_both_sides(pair: Pair) -> None:
    pair.leader.write_documents("magento2_product_1", 7)
    pair.follower.replication_fault("lag", index="magento2_product_1_v1", operations=5)
    follower = await pair.read(pair.follower, "standby")
    leader = await pair.read(pair.leader, "primary")

    assert follower.error is None and leader.error is None
    assert [(a.alias, a.indices) for a in follower.aliases] == [
        ("magento2_product_1", ["magento2_product_1_v1"]),
        ("magento2_product_2", ["magento2_product_2_v1"]),
    ]
    assert all(a.documents and a.documents > 0 for a in follower.aliases)
    lagging = follower.follower("magento2_product_1_v1")
    assert lagging is not None and lagging.status == "syncing"
    assert lagging.lag_operations == 5
    assert lagging.connection == "leader" and lagging.leader_index == "magento2_product_1_v1"
    synced = follower.follower("magento2_product_2_v1")
    assert synced is not None and synced.lag_operations == 0
    # The leader's own indices follow nobody.
    assert {f.status for f in leader.followers} == {"not_following"}
    assert follower.cluster_status == "green"


async def test_paused_and_failed_replication_read_as_such(pair: Pair) -> None:
    pair.follower.replication_fault("pause", index="magento2_product_1_v1")
    pair.follower.replication_fault("fail", index="magento2_product_2_v1")
    follower = await pair.read(pair.follower, "standby")
    statuses = {f.index: f.status for f in follower.followers}
    assert statuses == {"magento2_product_1_v1": "paused", "magento2_product_2_v1": "failed"}


async def test_promotion_stops_replication_once_and_then_writes_succeed(pair: Pair) -> None:
    refused = await pair.env.run(pair.activities.check_writes, pair.writes(pair.follower))
    assert refused.problem is not None and refused.problem.startswith("writes fail: ")

    first = await pair.env.run(pair.activities.promote, pair.indices(pair.follower, "standby"))
    assert sorted(first.promoted) == BACKING and first.already == []
    assert first.write_problem is None
    # Again (a retry after a crash): nothing left to do, nothing done twice.
    again = await pair.env.run(pair.activities.promote, pair.indices(pair.follower, "standby"))
    assert again.promoted == [] and sorted(again.already) == BACKING

    after = await pair.read(pair.follower, "standby")
    assert {f.status for f in after.followers} == {"not_following"}
    writes = await pair.env.run(pair.activities.check_writes, pair.writes(pair.follower))
    assert writes.problem is None, writes.problem
    # The check document was deleted again: the storefront never sees it.
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{pair.follower.node_urls[0]}/magento2_product_1/_doc/{WRITE_CHECK_ID}"
        )
    assert answer.status_code == 404


async def test_reseed_makes_the_old_leader_follow_and_catch_up(pair: Pair) -> None:
    await pair.env.run(pair.activities.promote, pair.indices(pair.follower, "standby"))
    # The promoted side takes writes; the old leader is stale until it is re-seeded.
    pair.follower.write_documents("magento2_product_1", 4)
    new_leader = await pair.read(pair.follower, "standby")
    request = FollowInput(
        cluster="catalog",
        follower_side="primary",
        follower=pair.side(pair.leader),
        leader=new_leader,
        connection="follower",
        magento=MAGENTO,
        kind=pair.kind,
        timeout_seconds=2,
        poll_seconds=0.05,
        sync_timeout_seconds=10,
    )
    followed = await pair.env.run(pair.activities.follow, request)
    assert sorted(followed.started) == BACKING
    assert set(BACKING) <= set(followed.deleted)  # its own stale copies are replaced
    synced = await pair.env.run(pair.activities.wait_synced, request)
    assert synced.synced, synced.problem

    old_leader = await pair.read(pair.leader, "primary")
    assert {f.status for f in old_leader.followers} == {"syncing"}
    assert all(f.lag_operations == 0 for f in old_leader.followers)
    counts = {a.alias: a.documents for a in old_leader.aliases}
    assert counts == {a.alias: a.documents for a in new_leader.aliases}
    # Idempotent: a second start finds every index already following.
    again = await pair.env.run(pair.activities.follow, request)
    assert again.started == [] and sorted(again.already) == BACKING


async def test_indices_check_through_a_path_names_a_missing_alias(pair: Pair) -> None:
    ok = await pair.env.run(pair.activities.check_indices, pair.writes(pair.follower))
    assert ok.problem is None, ok.problem
    pair.follower.drop_alias("magento2_product_2")
    missing = await pair.env.run(pair.activities.check_indices, pair.writes(pair.follower))
    assert missing.problem is not None
    assert missing.problem.startswith("alias missing through ")
    assert "magento2_product_2" in missing.problem
