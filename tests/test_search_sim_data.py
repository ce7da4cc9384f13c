"""The simulator's data must look real to the official clients: Magento's index layout,
the index APIs, and cross-cluster replication (the OpenSearch plugin and Elasticsearch CCR),
with the status codes, body shapes and error types the real servers answer.

Every endpoint is called through opensearch-py or elasticsearch-py: a client that cannot
parse an answer is a simulator bug. Data faults come in through the cluster's Python API
and the fleet's control API, as the sandbox and the CLI inject them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from elasticsearch import ApiError, AsyncElasticsearch
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError

from sandbox.search_sim import (
    FaultControlError,
    FaultMode,
    NodeFault,
    SimulatedCluster,
    SimulatorFleet,
    set_data_fault_remote,
)

STORE_1 = "magento2_product_1"
STORE_2 = "magento2_product_2"
V1 = f"{STORE_1}_v1"
CATALOGUE_SIZE = 12
REPLICATION_BLOCK = "blocked by: [FORBIDDEN/1000/index read-only(cross-cluster-replication)];"
FOLLOWING_ENGINE = (
    "a following engine does not accept operations without an assigned sequence number"
)
CAT_INDEX_COLUMNS = [
    "health",
    "status",
    "index",
    "uuid",
    "pri",
    "rep",
    "docs.count",
    "docs.deleted",
    "store.size",
    "pri.store.size",
]
CAT_ALIAS_COLUMNS = [
    "alias",
    "index",
    "filter",
    "routing.index",
    "routing.search",
    "is_write_index",
]
ES_SHARD_STATS_FIELDS = {
    "remote_cluster",
    "leader_index",
    "follower_index",
    "shard_id",
    "leader_global_checkpoint",
    "leader_max_seq_no",
    "follower_global_checkpoint",
    "follower_max_seq_no",
    "last_requested_seq_no",
    "outstanding_read_requests",
    "outstanding_write_requests",
    "write_buffer_operation_count",
    "follower_mapping_version",
    "follower_settings_version",
    "follower_aliases_version",
    "total_read_time_millis",
    "total_read_remote_exec_time_millis",
    "successful_read_requests",
    "failed_read_requests",
    "operations_read",
    "bytes_read",
    "total_write_time_millis",
    "write_buffer_size_in_bytes",
    "successful_write_requests",
    "failed_write_requests",
    "operations_written",
    "read_exceptions",
    "time_since_last_read_millis",
}
OS_FOLLOWER_STATS_FIELDS = {
    "num_syncing_indices",
    "num_bootstrapping_indices",
    "num_paused_indices",
    "num_failed_indices",
    "num_shard_tasks",
    "num_index_tasks",
    "operations_written",
    "operations_read",
    "failed_read_requests",
    "throttled_read_requests",
    "failed_write_requests",
    "throttled_write_requests",
    "follower_checkpoint",
    "leader_checkpoint",
    "total_write_time_millis",
    "index_stats",
}


def es_client(cluster: SimulatedCluster) -> AsyncElasticsearch:
    # No retries: a 503 or 408 is an answer to read, not a reason to ask again.
    return AsyncElasticsearch(cluster.node_urls, retry_on_status=(), max_retries=0)


def os_client(cluster: SimulatedCluster) -> AsyncOpenSearch:
    return AsyncOpenSearch(cluster.node_urls, max_retries=0, retry_on_status=())


def error_of(exc: ApiError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    return body


@pytest.fixture
async def es_pair() -> AsyncIterator[tuple[SimulatedCluster, SimulatedCluster]]:
    """An Elasticsearch leader and a CCR follower of both store indices."""
    leader = SimulatedCluster("primary")
    follower = SimulatedCluster("dr")
    async with leader, follower:
        follower.connect_remote("primary", leader)
        assert follower.follow_all("primary") == [V1, f"{STORE_2}_v1"]
        yield leader, follower


@pytest.fixture
async def os_pair() -> AsyncIterator[tuple[SimulatedCluster, SimulatedCluster]]:
    """An OpenSearch leader and a follower of both store indices through the plugin."""
    leader = SimulatedCluster("active", distribution="opensearch")
    follower = SimulatedCluster("standby", distribution="opensearch")
    async with leader, follower:
        follower.connect_remote("leader-cluster", leader)
        follower.follow_all("leader-cluster")
        yield leader, follower


@pytest.fixture
async def es() -> AsyncIterator[tuple[SimulatedCluster, AsyncElasticsearch]]:
    cluster = SimulatedCluster("primary")
    async with cluster:
        client = es_client(cluster)
        try:
            yield cluster, client
        finally:
            await client.close()


# --------------------------------------------------------------------------- layout


async def test_magento_layout_through_the_elasticsearch_client(
    es: tuple[SimulatedCluster, AsyncElasticsearch],
) -> None:
    _, client = es
    rows = (await client.cat.indices(format="json")).body
    assert [r["index"] for r in rows] == [
        "logs-magento-000001",
        V1,
        f"{STORE_2}_v1",
        "products",
    ]
    assert list(rows[1]) == [*CAT_INDEX_COLUMNS, "dataset.size"]  # ES >= 8.11 adds it
    assert all(isinstance(v, str) for r in rows for v in r.values())
    assert rows[1]["docs.count"] == str(CATALOGUE_SIZE)
    assert (rows[1]["health"], rows[1]["status"], rows[1]["pri"]) == ("green", "open", "3")
    scoped = (await client.cat.indices(index="magento2_*", format="json", h="index")).body
    assert scoped == [{"index": V1}, {"index": f"{STORE_2}_v1"}]
    by_size = (await client.cat.indices(format="json", h="index", s="docs.count,index:desc")).body
    assert by_size[0] == {"index": "logs-magento-000001"}  # 3 documents, the others 12
    assert by_size[1] == {"index": "products"}
    table = (await client.cat.indices(v=True, h="index,docs.count")).body
    assert table.splitlines()[0].split() == ["index", "docs.count"]

    aliases = (await client.cat.aliases(format="json")).body
    assert [list(a) for a in aliases] == [CAT_ALIAS_COLUMNS] * 2
    assert [(a["alias"], a["index"], a["is_write_index"]) for a in aliases] == [
        (STORE_1, V1, "-"),
        (STORE_2, f"{STORE_2}_v1", "-"),
    ]
    one = (await client.cat.aliases(name=STORE_1, format="json")).body
    assert [a["index"] for a in one] == [V1]
    text = (await client.cat.aliases(v=True)).body
    assert text.splitlines()[0].split() == CAT_ALIAS_COLUMNS

    everything = (await client.indices.get_alias()).body
    assert everything["products"] == {"aliases": {}}
    assert everything[V1] == {"aliases": {STORE_1: {}}}
    assert (await client.indices.get_alias(name=STORE_1)).body == {V1: {"aliases": {STORE_1: {}}}}
    assert (await client.indices.get_alias(index=V1)).body == {V1: {"aliases": {STORE_1: {}}}}
    by_both = await client.indices.get_alias(index=V1, name=STORE_1)
    assert by_both.body == {V1: {"aliases": {STORE_1: {}}}}
    with pytest.raises(ApiError) as missing:
        await client.indices.get_alias(name="magento2_product_9")
    assert missing.value.meta.status == 404
    assert error_of(missing.value) == {"error": "alias [magento2_product_9] missing", "status": 404}
    with pytest.raises(ApiError) as partly:
        await client.indices.get_alias(name=f"{STORE_1},nope,gone")
    assert error_of(partly.value)["error"] == "aliases [nope,gone] missing"
    assert error_of(partly.value)[V1] == {"aliases": {STORE_1: {}}}
    assert (await client.indices.exists_alias(name=STORE_2)).body is True
    assert (await client.indices.exists_alias(name="nope")).body is False

    counted = (await client.count(index=STORE_1, query={"match": {"name": "bag"}})).body
    assert counted["count"] == 2  # Joust Duffle Bag, Wayfarer Messenger Bag
    assert counted["_shards"] == {"total": 3, "successful": 3, "skipped": 0, "failed": 0}
    assert (await client.count(index="products")).body["count"] == CATALOGUE_SIZE
    hits = (await client.search(index=STORE_1, query={"match": {"name": "hoodie"}})).body
    assert [(h["_index"], h["_source"]["sku"]) for h in hits["hits"]["hits"]] == [(V1, "MH01")]
    info = (await client.indices.get(index=STORE_1)).body
    assert info[V1]["settings"]["index"]["number_of_shards"] == "3"
    assert info[V1]["aliases"] == {STORE_1: {}}


async def test_magento_layout_through_the_opensearch_client() -> None:
    async with SimulatedCluster("standby", distribution="opensearch", stores=(1, 2, 5)) as sim:
        client = os_client(sim)
        try:
            rows = await client.cat.indices(format="json")
            assert list(rows[0]) == CAT_INDEX_COLUMNS  # no dataset.size on OpenSearch
            assert {r["index"] for r in rows} >= {V1, "magento2_product_5_v1"}
            aliases = await client.cat.aliases(format="json")
            assert [a["alias"] for a in aliases] == [STORE_1, STORE_2, "magento2_product_5"]
            assert await client.indices.get_alias(name="magento2_product_5") == {
                "magento2_product_5_v1": {"aliases": {"magento2_product_5": {}}}
            }
            with pytest.raises(TransportError) as missing:
                await client.indices.get_alias(name="nope")
            assert missing.value.status_code == 404
            assert missing.value.info == {"error": "alias [nope] missing", "status": 404}
            assert (await client.count(index=STORE_2))["count"] == CATALOGUE_SIZE
            health = await client.cluster.health(index=f"{STORE_1},{STORE_2}", level="indices")
            assert health["status"] == "green"
            assert set(health["indices"]) == {V1, f"{STORE_2}_v1"}
        finally:
            await client.close()


# --------------------------------------------------------------------------- writes


async def test_document_writes_and_index_admin(
    es: tuple[SimulatedCluster, AsyncElasticsearch],
) -> None:
    cluster, client = es
    created = await client.index(index=STORE_1, id="100", document={"sku": "X-1", "price": 1.0})
    assert created.meta.status == 201
    assert created.body["_index"] == V1  # the alias's index
    assert created.body["result"] == "created"
    assert created.body["_seq_no"] == CATALOGUE_SIZE
    assert created.body["_shards"] == {"total": 2, "successful": 2, "failed": 0}
    assert set(created.body) == {
        "_index",
        "_id",
        "_version",
        "result",
        "_shards",
        "_seq_no",
        "_primary_term",
    }
    updated = await client.index(index=STORE_1, id="100", document={"sku": "X-1", "price": 2.0})
    assert (updated.meta.status, updated.body["result"], updated.body["_version"]) == (
        200,
        "updated",
        2,
    )
    with pytest.raises(ApiError) as conflict:
        await client.create(index=V1, id="100", document={"sku": "X-1"})
    assert conflict.value.meta.status == 409
    assert error_of(conflict.value)["error"]["type"] == "version_conflict_engine_exception"
    fetched = (await client.get(index=V1, id="100")).body
    assert fetched["found"] is True and fetched["_source"]["price"] == 2.0
    deleted = await client.delete(index=V1, id="100")
    assert deleted.body["result"] == "deleted"
    assert cluster.data_state()["indices"][V1]["checkpoint"] == CATALOGUE_SIZE + 2

    auto = await client.index(index="brand-new", document={"hello": "world"})
    assert auto.meta.status == 201 and auto.body["_index"] == "brand-new"
    assert (await client.indices.exists(index="brand-new")).body is True

    made = await client.indices.create(index="catalog-extra", aliases={"extra": {}})
    assert made.body == {
        "acknowledged": True,
        "shards_acknowledged": True,
        "index": "catalog-extra",
    }
    with pytest.raises(ApiError) as exists:
        await client.indices.create(index="catalog-extra")
    assert exists.value.meta.status == 400
    cause = error_of(exists.value)["error"]
    assert cause["type"] == "resource_already_exists_exception"
    assert cause["reason"].startswith("index [catalog-extra/")

    await client.indices.put_settings(index="catalog-extra", settings={"index.blocks.write": True})
    settings = (await client.indices.get_settings(index="catalog-extra")).body
    assert settings["catalog-extra"]["settings"]["index"]["blocks"] == {"write": "true"}
    with pytest.raises(ApiError) as blocked:
        await client.index(index="catalog-extra", id="1", document={"a": 1})
    assert blocked.value.meta.status == 403
    assert error_of(blocked.value)["error"]["type"] == "cluster_block_exception"
    assert "FORBIDDEN/8/index write (api)" in error_of(blocked.value)["error"]["reason"]
    await client.indices.put_settings(index="catalog-extra", settings={"index.blocks.write": False})

    closed = await client.indices.close(index="catalog-extra")
    assert closed.body["indices"] == {"catalog-extra": {"closed": True}}
    with pytest.raises(ApiError) as refused:
        await client.index(index="catalog-extra", id="1", document={"a": 1})
    assert (refused.value.meta.status, error_of(refused.value)["error"]["type"]) == (
        400,
        "index_closed_exception",
    )
    assert (await client.cat.indices(index="catalog-extra", format="json")).body[0][
        "status"
    ] == "close"
    opened = await client.indices.open(index="catalog-extra")
    assert opened.body == {"acknowledged": True, "shards_acknowledged": True}
    refreshed = (await client.indices.refresh(index="catalog-extra")).body
    assert refreshed["_shards"]["failed"] == 0

    swapped = await client.indices.update_aliases(
        actions=[
            {"remove": {"index": "catalog-extra", "alias": "extra"}},
            {"add": {"index": V1, "alias": "extra"}},
        ]
    )
    assert swapped.body["acknowledged"] is True
    assert (await client.indices.get_alias(name="extra")).body == {V1: {"aliases": {"extra": {}}}}
    with pytest.raises(ApiError) as no_alias:
        await client.indices.update_aliases(
            actions=[{"remove": {"index": V1, "alias": "never-there"}}]
        )
    assert error_of(no_alias.value)["error"]["type"] == "aliases_not_found_exception"
    await client.indices.update_aliases(actions=[{"remove_index": {"index": "catalog-extra"}}])
    assert (await client.indices.exists(index="catalog-extra")).body is False

    with pytest.raises(ApiError) as via_alias:
        await client.indices.delete(index=STORE_1)
    assert "matches an alias" in error_of(via_alias.value)["error"]["reason"]
    with pytest.raises(ApiError) as wildcard:
        await client.indices.delete(index="brand-*")
    assert error_of(wildcard.value)["error"]["reason"] == (
        "Wildcard expressions or all indices are not allowed"
    )
    assert (await client.indices.delete(index="brand-new")).body == {"acknowledged": True}
    with pytest.raises(ApiError) as gone:
        await client.indices.delete(index="brand-new")
    assert error_of(gone.value)["error"]["type"] == "index_not_found_exception"


async def test_index_apis_through_the_opensearch_client() -> None:
    async with SimulatedCluster("standby", distribution="opensearch") as sim:
        client = os_client(sim)
        try:
            assert await client.indices.get_alias(index=V1) == {V1: {"aliases": {STORE_1: {}}}}
            assert await client.indices.get_alias(index=V1, name=STORE_1) == {
                V1: {"aliases": {STORE_1: {}}}
            }
            assert set(await client.indices.get_alias()) == {
                "logs-magento-000001",
                V1,
                f"{STORE_2}_v1",
                "products",
            }
            assert await client.indices.exists_alias(name=STORE_1) is True
            only = await client.cat.indices(index="logs-*", format="json", h="index,health")
            assert only == [{"index": "logs-magento-000001", "health": "green"}]
            text = await client.cat.aliases(name=STORE_2, v=True)
            assert text.splitlines()[1].split()[:2] == [STORE_2, f"{STORE_2}_v1"]
            bags = await client.count(index=STORE_1, body={"query": {"match": {"name": "bag"}}})
            assert bags["count"] == 2

            created = await client.create(index="catalog-extra", id="1", body={"sku": "A"})
            assert (created["result"], created["_seq_no"]) == ("created", 0)
            posted = await client.index(index="catalog-extra", body={"sku": "B"})
            assert posted["result"] == "created" and len(posted["_id"]) == 20
            assert (await client.get(index="catalog-extra", id="1"))["_source"] == {"sku": "A"}
            assert (await client.delete(index="catalog-extra", id="1"))["result"] == "deleted"
            with pytest.raises(TransportError) as gone:
                await client.delete(index="catalog-extra", id="1")
            assert gone.value.status_code == 404
            assert gone.value.info["result"] == "not_found"

            made = await client.indices.create(index="catalog-new", body={"aliases": {"new": {}}})
            assert made["index"] == "catalog-new"
            await client.indices.put_settings(
                index="catalog-new", body={"index": {"blocks": {"write": True}}}
            )
            settings = await client.indices.get_settings(index="catalog-new")
            assert settings["catalog-new"]["settings"]["index"]["blocks"]["write"] == "true"
            assert (await client.indices.close(index="catalog-new"))["acknowledged"] is True
            assert (await client.indices.open(index="catalog-new"))["shards_acknowledged"] is True
            assert (await client.indices.refresh(index="catalog-new"))["_shards"]["failed"] == 0
            swapped = await client.indices.update_aliases(
                body={"actions": [{"add": {"index": "catalog-extra", "alias": "new"}}]}
            )
            assert swapped == {"acknowledged": True}
            assert set(await client.indices.get_alias(name="new")) == {
                "catalog-new",
                "catalog-extra",
            }
            # OpenSearch 2.x allows wildcards in deletes (action.destructive_requires_name).
            assert await client.indices.delete(index="catalog-*") == {"acknowledged": True}
            assert await client.indices.exists(index="catalog-new") is False
        finally:
            await client.close()


# --------------------------------------------------------------------------- health


async def test_an_unrelated_red_index_leaves_the_storefront_indices_green(
    es: tuple[SimulatedCluster, AsyncElasticsearch],
) -> None:
    cluster, client = es
    cluster.set_index_health("logs-magento-000001", "red")
    overall = (await client.cluster.health()).body
    assert overall["status"] == "red"
    assert overall["active_primary_shards"] == 4 * 3 - 1
    scoped = (await client.cluster.health(index=f"{STORE_1},{STORE_2}", level="indices")).body
    assert scoped["status"] == "green"
    assert scoped["active_primary_shards"] == 6  # only those two indices' shards
    assert scoped["indices"][V1] == {
        "status": "green",
        "number_of_shards": 3,
        "number_of_replicas": 1,
        "active_primary_shards": 3,
        "active_shards": 6,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
    }
    logs = (await client.cluster.health(index="logs-*", level="indices")).body
    assert logs["indices"]["logs-magento-000001"]["status"] == "red"
    assert (await client.cluster.health(index="nothing-*")).body["status"] == "green"
    rows = (await client.cat.indices(index="logs-*", format="json")).body
    assert rows[0]["health"] == "red"
    with pytest.raises(ApiError) as search:
        await client.search(index="logs-magento-000001")
    assert search.value.meta.status == 503
    assert error_of(search.value)["error"]["reason"] == "all shards failed"
    assert (await client.count(index=STORE_1)).body["count"] == CATALOGUE_SIZE

    cluster.set_index_health(STORE_2, "yellow")
    assert (await client.cluster.health(index=STORE_2)).body["status"] == "yellow"
    cluster.set_index_health("logs-magento-000001", None)
    cluster.set_index_health(STORE_2, None)
    assert (await client.cluster.health()).body["status"] == "green"


async def test_a_missing_alias_times_out_red_on_scoped_health(
    es: tuple[SimulatedCluster, AsyncElasticsearch],
) -> None:
    cluster, client = es
    cluster.drop_alias(STORE_2)
    with pytest.raises(ApiError) as missing:
        await client.cluster.health(index=f"{STORE_1},{STORE_2}")
    assert missing.value.meta.status == 408
    body = error_of(missing.value)
    assert (body["status"], body["timed_out"]) == ("red", True)
    with pytest.raises(ApiError) as waited:
        await client.cluster.health(index=STORE_2, timeout="100ms", wait_for_status="yellow")
    assert waited.value.meta.status == 408
    cluster.point_alias(STORE_2, f"{STORE_2}_v1")
    assert (await client.cluster.health(index=f"{STORE_1},{STORE_2}")).body["status"] == "green"


# --------------------------------------------------------------------------- OpenSearch


async def test_opensearch_replication_plugin(
    os_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = os_pair
    lead, follow = os_client(leader), os_client(follower)
    replication = follow.plugins.replication
    try:
        status = await replication.status(index=V1)
        assert status == {
            "status": "SYNCING",
            "reason": "User initiated",
            "leader_alias": "leader-cluster",
            "leader_index": V1,
            "follower_index": V1,
            "syncing_details": {
                "leader_checkpoint": CATALOGUE_SIZE - 1,
                "follower_checkpoint": CATALOGUE_SIZE - 1,
                "seq_no": CATALOGUE_SIZE,
            },
        }
        assert (await follow.indices.get_alias(name=STORE_1)) == {V1: {"aliases": {STORE_1: {}}}}
        assert (await follow.count(index=STORE_1))["count"] == CATALOGUE_SIZE

        # A follower refuses writes, deletes and alias changes: the plugin's index block.
        with pytest.raises(TransportError) as write:
            await follow.index(index=STORE_1, id="1", body={"price": 1})
        assert write.value.status_code == 403
        assert write.value.error == "cluster_block_exception"
        assert write.value.info["error"]["reason"] == f"index [{V1}] {REPLICATION_BLOCK}"
        with pytest.raises(TransportError) as delete:
            await follow.indices.delete(index=V1)
        assert delete.value.status_code == 403

        await lead.index(index="catalog-extra", id="1", body={"sku": "A", "price": 3.0})
        started = await replication.start(
            index="catalog-extra",
            body={
                "leader_alias": "leader-cluster",
                "leader_index": "catalog-extra",
                "use_roles": {
                    "leader_cluster_role": "all_access",
                    "follower_cluster_role": "all_access",
                },
            },
        )
        assert started == {"acknowledged": True}
        with pytest.raises(TransportError) as again:
            await replication.start(
                index="catalog-extra",
                body={"leader_alias": "leader-cluster", "leader_index": "catalog-extra"},
            )
        assert (again.value.status_code, again.value.error) == (400, "illegal_argument_exception")
        assert again.value.info["error"]["reason"] == (
            "Cant use same index again for replication. Delete the index:catalog-extra"
        )
        with pytest.raises(TransportError) as no_leader:
            await replication.start(
                index="other", body={"leader_alias": "leader-cluster", "leader_index": "nope"}
            )
        assert (no_leader.value.status_code, no_leader.value.error) == (
            404,
            "index_not_found_exception",
        )
        with pytest.raises(TransportError) as no_remote:
            await replication.start(
                index="other", body={"leader_alias": "nowhere", "leader_index": "catalog-extra"}
            )
        assert no_remote.value.error == "no_such_remote_cluster_exception"

        # Pause keeps the checkpoint; resume catches up.
        assert await replication.pause(index=V1, body={}) == {"acknowledged": True}
        paused = await replication.status(index=V1)
        assert (paused["status"], paused["reason"]) == ("PAUSED", "User initiated")
        assert "syncing_details" not in paused
        with pytest.raises(TransportError) as twice:
            await replication.pause(index=V1, body={})
        assert twice.value.error == "resource_already_exists_exception"
        assert leader.write_documents(STORE_1, 4) == CATALOGUE_SIZE + 3
        assert follower.data_state()["indices"][V1]["checkpoint"] == CATALOGUE_SIZE - 1
        assert await replication.resume(index=V1, body={}) == {"acknowledged": True}
        resumed = await replication.status(index=V1)
        assert resumed["syncing_details"]["follower_checkpoint"] == CATALOGUE_SIZE + 3
        with pytest.raises(TransportError) as running:
            await replication.resume(index=V1, body={})
        assert running.value.info["error"]["reason"] == (
            f"Replication on Index {V1} is already running"
        )

        stats = await replication.follower_stats()
        assert set(stats) == OS_FOLLOWER_STATS_FIELDS
        assert stats["num_syncing_indices"] == 3
        assert stats["operations_written"] >= 4
        assert stats["index_stats"][V1]["follower_checkpoint"] == CATALOGUE_SIZE + 3
        served = await lead.plugins.replication.leader_stats()
        assert served["num_replicated_indices"] == 3
        assert served["index_stats"][V1]["operations_read"] == 4

        # Stop promotes: the block goes, writes succeed, status says so.
        assert await replication.stop(index=V1, body={}) == {"acknowledged": True}
        assert await replication.status(index=V1) == {"status": "REPLICATION NOT IN PROGRESS"}
        written = await follow.index(index=STORE_1, id="1", body={"price": 1})
        assert written["result"] == "updated"
        with pytest.raises(TransportError) as stopped:
            await replication.stop(index=V1, body={})
        assert (stopped.value.status_code, stopped.value.error) == (
            400,
            "illegal_argument_exception",
        )
        assert stopped.value.info["error"]["reason"] == f"No replication in progress for index:{V1}"
    finally:
        await lead.close()
        await follow.close()


async def test_opensearch_autofollow_follows_a_reindexed_store(
    os_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = os_pair
    follow = os_client(follower)
    replication = follow.plugins.replication
    try:
        rule = {
            "leader_alias": "leader-cluster",
            "name": "storefront",
            "pattern": "magento2_product_*",
            "use_roles": {
                "leader_cluster_role": "all_access",
                "follower_cluster_role": "all_access",
            },
        }
        assert await replication.create_replication_rule(body=rule) == {"acknowledged": True}
        new = leader.reindex_store(1)
        assert new == f"{STORE_1}_v2"
        assert (await replication.status(index=new))["status"] == "SYNCING"
        stats = await replication.autofollow_stats()
        assert stats["num_success_start_replication"] == 1
        assert stats["autofollow_stats"][0]["name"] == "storefront"
        assert stats["autofollow_stats"][0]["pattern"] == "magento2_product_*"
        # Aliases are copied when replication starts: the old version still holds it too.
        assert set(await follow.indices.get_alias(name=STORE_1)) == {V1, new}
        old = await replication.status(index=V1)
        assert old["status"] == "PAUSED"
        assert "no such index" in old["reason"]
        assert await replication.delete_replication_rule(
            body={"leader_alias": "leader-cluster", "name": "storefront"}
        ) == {"acknowledged": True}
        assert (await replication.autofollow_stats())["autofollow_stats"] == []
    finally:
        await follow.close()


async def test_opensearch_reindex_on_the_leader_strands_the_follower(
    os_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = os_pair
    follow = os_client(follower)
    try:
        leader.reindex_store(1)
        # No rule follows the new version: the follower's alias stays on the old one, and
        # the plugin auto-pauses the follower whose leader index is gone.
        assert await follow.indices.get_alias(name=STORE_1) == {V1: {"aliases": {STORE_1: {}}}}
        status = await follow.plugins.replication.status(index=V1)
        assert status["status"] == "PAUSED"
        assert status["reason"] == (
            f'AutoPaused: [[{V1}][0] - org.opensearch.index.IndexNotFoundException - "no such '
            f'index [{V1}]"], '
        )
        stats = await follow.plugins.replication.follower_stats()
        assert (stats["num_paused_indices"], stats["num_syncing_indices"]) == (1, 1)
        with pytest.raises(TransportError) as resume:
            await follow.plugins.replication.resume(index=V1, body={})
        assert resume.value.status_code == 404
        assert (await follow.count(index=STORE_1))["count"] == CATALOGUE_SIZE
    finally:
        await follow.close()


async def test_lag_and_an_unreachable_leader_show_in_the_checkpoints(
    os_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = os_pair
    follow = os_client(follower)
    replication = follow.plugins.replication
    try:
        follower.replication_fault("lag", V1, operations=5)
        leader.write_documents(STORE_1, 8)
        details = (await replication.status(index=V1))["syncing_details"]
        assert details["leader_checkpoint"] - details["follower_checkpoint"] == 5
        follower.replication_fault("sync", V1)
        details = (await replication.status(index=V1))["syncing_details"]
        assert details["leader_checkpoint"] == details["follower_checkpoint"] == 19

        leader.set_fault(None, NodeFault(FaultMode.DOWN))
        await leader.settle()
        leader.write_documents(STORE_1, 3)  # written, but no follower can read it
        details = (await replication.status(index=V1))["syncing_details"]
        assert details["leader_checkpoint"] == details["follower_checkpoint"] == 19
        assert (await follow.count(index=STORE_1))["count"] == CATALOGUE_SIZE
        leader.set_fault(None, NodeFault(FaultMode.HEALTHY))
        await leader.settle()
        details = (await replication.status(index=V1))["syncing_details"]
        assert details["leader_checkpoint"] == details["follower_checkpoint"] == 22

        follower.replication_fault("fail", V1)
        failed = await replication.status(index=V1)
        assert failed["status"] == "FAILED" and failed["reason"]
        assert (await replication.follower_stats())["num_failed_indices"] == 1
        follower.replication_fault("resume")
        assert (await replication.status(index=V1))["status"] == "SYNCING"
        follower.replication_fault("pause")
        assert (await replication.follower_stats())["num_paused_indices"] == 2
    finally:
        await follow.close()


async def test_elasticsearch_answers_no_handler_for_plugin_paths(
    es: tuple[SimulatedCluster, AsyncElasticsearch],
) -> None:
    cluster, _ = es
    async with httpx.AsyncClient() as http:
        url = cluster.node_urls[0] + f"/_plugins/_replication/{V1}/_status"
        response = await http.get(url)
    assert response.status_code == 400
    assert response.json() == {
        "error": f"no handler found for uri [/_plugins/_replication/{V1}/_status] and method [GET]"
    }


# --------------------------------------------------------------------------- Elasticsearch


async def test_elasticsearch_ccr_follow_stats_info(
    es_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = es_pair
    lead, follow = es_client(leader), es_client(follower)
    try:
        await lead.indices.create(index="catalog-extra")
        await lead.index(index="catalog-extra", id="1", document={"sku": "A"})
        followed = await follow.ccr.follow(
            index="catalog-extra",
            remote_cluster="primary",
            leader_index="catalog-extra",
            wait_for_active_shards="1",
        )
        assert followed.body == {
            "follow_index_created": True,
            "follow_index_shards_acked": True,
            "index_following_started": True,
        }
        with pytest.raises(ApiError) as again:
            await follow.ccr.follow(
                index="catalog-extra", remote_cluster="primary", leader_index="catalog-extra"
            )
        assert error_of(again.value)["error"]["type"] == "snapshot_restore_exception"
        with pytest.raises(ApiError) as no_leader:
            await follow.ccr.follow(index="x", remote_cluster="primary", leader_index="nope")
        assert no_leader.value.meta.status == 404
        assert error_of(no_leader.value)["error"]["reason"] == "no such index [nope]"

        leader.write_documents(STORE_1, 3)
        follower.replication_fault("lag", V1, operations=2)
        leader.write_documents(STORE_1, 4)
        stats = (await follow.ccr.follow_stats(index=V1)).body
        [entry] = stats["indices"]
        assert entry["index"] == V1
        assert entry["total_global_checkpoint_lag"] == 2
        [shard] = entry["shards"]
        assert set(shard) == ES_SHARD_STATS_FIELDS
        assert shard["leader_global_checkpoint"] == CATALOGUE_SIZE + 6
        assert shard["follower_global_checkpoint"] == CATALOGUE_SIZE + 4
        assert (shard["remote_cluster"], shard["shard_id"]) == ("primary", 0)
        everything = (await follow.ccr.stats()).body
        assert {i["index"] for i in everything["follow_stats"]["indices"]} == {
            V1,
            f"{STORE_2}_v1",
            "catalog-extra",
        }
        assert "auto_follow_stats" in everything
        info = (await follow.ccr.follow_info(index=V1)).body
        assert info["follower_indices"][0]["status"] == "active"
        assert info["follower_indices"][0]["parameters"]["max_read_request_operation_count"] == 5120
        assert (await follow.ccr.follow_info(index="products")).body == {"follower_indices": []}
        with pytest.raises(ApiError) as not_following:
            await follow.ccr.follow_stats(index="products")
        assert error_of(not_following.value)["error"] == {
            "root_cause": [
                {
                    "type": "resource_not_found_exception",
                    "reason": "No shard follow tasks for follower indices [products]",
                }
            ],
            "type": "resource_not_found_exception",
            "reason": "No shard follow tasks for follower indices [products]",
        }
    finally:
        await lead.close()
        await follow.close()


async def test_elasticsearch_promotion_in_order_and_out_of_order(
    es_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    _, follower = es_pair
    follow = es_client(follower)
    ccr = follow.ccr
    try:
        with pytest.raises(ApiError) as write:
            await follow.index(index=STORE_1, id="1", document={"price": 1})
        assert write.value.meta.status == 403
        assert error_of(write.value)["error"]["type"] == "status_exception"
        assert error_of(write.value)["error"]["reason"] == FOLLOWING_ENGINE

        def reason(exc: pytest.ExceptionInfo[ApiError]) -> str:
            return str(error_of(exc.value)["error"]["reason"])

        with pytest.raises(ApiError) as open_index:
            await ccr.unfollow(index=V1)
        assert open_index.value.meta.status == 400
        assert reason(open_index) == (
            f"cannot convert the follower index [{V1}] to a non-follower, because it has not "
            "been closed"
        )
        await follow.indices.close(index=V1)
        with pytest.raises(ApiError) as active:
            await ccr.unfollow(index=V1)
        assert reason(active) == (
            f"cannot convert the follower index [{V1}] to a non-follower, because it has not "
            "been paused"
        )
        assert (await ccr.pause_follow(index=V1)).body == {"acknowledged": True}
        with pytest.raises(ApiError) as paused_twice:
            await ccr.pause_follow(index=V1)
        assert reason(paused_twice) == f"no shard follow tasks for [{V1}]"
        paused = (await ccr.follow_info(index=V1)).body["follower_indices"][0]
        assert paused["status"] == "paused" and "parameters" not in paused
        assert (await ccr.unfollow(index=V1)).body == {"acknowledged": True}
        with pytest.raises(ApiError) as closed:
            await follow.index(index=STORE_1, id="1", document={"price": 1})
        assert error_of(closed.value)["error"]["type"] == "index_closed_exception"
        await follow.indices.open(index=V1)
        written = await follow.index(index=STORE_1, id="1", document={"price": 1})
        assert written.body["result"] == "updated"
        assert (await ccr.follow_info(index=V1)).body == {"follower_indices": []}
        with pytest.raises(ApiError) as not_follower:
            await ccr.pause_follow(index=V1)
        assert reason(not_follower) == f"index [{V1}] is not a follower index"
        with pytest.raises(ApiError) as no_metadata:
            await ccr.resume_follow(index=V1)
        assert reason(no_metadata) == f"follow index [{V1}] does not have ccr metadata"

        other = f"{STORE_2}_v1"
        await ccr.pause_follow(index=other)
        assert (await ccr.resume_follow(index=other)).body == {"acknowledged": True}
        with pytest.raises(ApiError) as running:
            await ccr.resume_follow(index=other)
        assert error_of(running.value)["error"]["type"] == "resource_already_exists_exception"
    finally:
        await follow.close()


async def test_elasticsearch_reindex_on_the_leader_fails_the_follower(
    es_pair: tuple[SimulatedCluster, SimulatedCluster],
) -> None:
    leader, follower = es_pair
    follow = es_client(follower)
    try:
        leader.reindex_store(1)
        assert (await follow.indices.get_alias(name=STORE_1)).body == {
            V1: {"aliases": {STORE_1: {}}}
        }
        [shard] = (await follow.ccr.follow_stats(index=V1)).body["indices"][0]["shards"]
        assert shard["fatal_exception"]["type"] == "index_not_found_exception"
        assert shard["fatal_exception"]["reason"] == f"no such index [{V1}]"
        info = (await follow.ccr.follow_info(index=V1)).body["follower_indices"][0]
        assert info["status"] == "active"  # the task still exists, failed
    finally:
        await follow.close()


# --------------------------------------------------------------------------- control API


async def test_control_api_data_actions_round_trip() -> None:
    leader = SimulatedCluster("active", distribution="opensearch")
    follower = SimulatedCluster("standby", distribution="opensearch", node_count=2)
    async with SimulatorFleet([leader, follower]) as fleet:
        follower.connect_remote("leader-cluster", leader)
        follower.follow_all("leader-cluster")
        url = fleet.control_url

        written = await set_data_fault_remote(
            url, "active", "write_documents", index_or_alias=STORE_1, count=3
        )
        assert written["result"] == CATALOGUE_SIZE + 2
        assert written["data"]["indices"][V1]["checkpoint"] == CATALOGUE_SIZE + 2
        lagged = await set_data_fault_remote(
            url, "standby", "replication_fault", kind="lag", index=V1, operations=2
        )
        assert lagged["result"] == [V1]
        # `index` is accepted too: the CLI's --index names the target of every action.
        await set_data_fault_remote(url, "active", "write_documents", index=V1, count=2)
        async with httpx.AsyncClient() as http:
            state = (await http.get(f"{url}/clusters/standby/data")).json()
        link = state["indices"][V1]["follower"]
        assert (link["status"], link["lag"]) == ("syncing", 2)
        assert link["leader_checkpoint"] - link["follower_checkpoint"] == 2
        paused = await set_data_fault_remote(url, "standby", "replication_fault", kind="pause")
        assert paused["data"]["indices"][V1]["follower"]["status"] == "paused"
        reindexed = await set_data_fault_remote(url, "active", "reindex_store", store=2)
        assert reindexed["result"] == f"{STORE_2}_v2"
        assert reindexed["data"]["aliases"][STORE_2] == [f"{STORE_2}_v2"]
        health = await set_data_fault_remote(
            url, "active", "set_index_health", index="logs-magento-000001", status="red"
        )
        assert health["data"]["indices"]["logs-magento-000001"]["health"] == "red"
        await set_data_fault_remote(url, "active", "drop_alias", alias=STORE_1)
        pointed = await set_data_fault_remote(
            url, "active", "point_alias", alias=STORE_1, index="products"
        )
        assert pointed["data"]["aliases"][STORE_1] == ["products"]

        bad = {
            "count": {"action": "write_documents", "index_or_alias": STORE_1, "count": -1},
            "kind": {"action": "replication_fault", "kind": "explode"},
            "store": {"action": "reindex_store"},
            "status": {"action": "set_index_health", "index": V1, "status": "blue"},
            "action": {"action": "format_disk"},
            "colour": {"action": "drop_alias", "alias": STORE_2, "colour": "red"},
        }
        for field_name, body in bad.items():
            action = body.pop("action")
            with pytest.raises(FaultControlError) as refused:
                await set_data_fault_remote(url, "active", action, **body)
            assert refused.value.status == 400
            assert field_name in str(refused.value) or action in str(refused.value)
        with pytest.raises(FaultControlError) as not_a_follower:
            await set_data_fault_remote(url, "active", "replication_fault", kind="pause", index=V1)
        assert not_a_follower.value.status == 400
        with pytest.raises(FaultControlError) as unknown:
            await set_data_fault_remote(url, "nowhere", "drop_alias", alias=STORE_1)
        assert unknown.value.status == 404
        async with httpx.AsyncClient() as http:
            missing = await http.get(f"{url}/clusters/nowhere/data")
            not_json = await http.post(f"{url}/clusters/active/data", content=b"{")
        assert missing.status_code == 404
        assert not_json.status_code == 400
