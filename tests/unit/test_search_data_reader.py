"""Reading a side's storefront indices from the answers OpenSearch (with its replication
plugin) and Elasticsearch (CCR) really give; and the node probe scoped to those indices."""

from __future__ import annotations

import json

import pytest

from activities.search_data import read_follower, read_side_data
from activities.search_probe import NodeUnreachable, probe_node_via
from failover.config import MagentoIndices
from failover.decisions.probe import INDEX_MISSING, STATUS_RED, node_problem

N1, N2 = "http://es-b1:9200", "http://es-b2:9200"
V1, V2 = "magento2_product_1_v1", "magento2_product_1_v2"
S2 = "magento2_product_2_v7"
MAGENTO = MagentoIndices(stores=[1, 2])

ALIASES = {
    V2: {"aliases": {"magento2_product_1": {}}},
    S2: {"aliases": {"magento2_product_2": {}}},
    V1: {"aliases": {}},
    "magento2_category_1_v3": {"aliases": {"magento2_category_1": {}}},
    ".opendistro-job-scheduler-lock": {"aliases": {}},
    ".plugins-ml-config": {"aliases": {".plugins-ml-config-alias": {"is_hidden": True}}},
}
CAT_INDICES = [
    {"index": V2, "docs.count": "2048"},
    {"index": S2, "docs.count": "512"},
    {"index": V1, "docs.count": "1900"},
    {"index": "magento2_category_1_v3", "docs.count": "40"},
    {"index": ".opendistro-job-scheduler-lock", "docs.count": "1"},
    {"index": "closed_index", "docs.count": None},
]
HEALTH = {
    "cluster_name": "es-b",
    "status": "yellow",
    "timed_out": False,
    "number_of_nodes": 3,
    "number_of_data_nodes": 3,
    "active_primary_shards": 12,
    "active_shards": 20,
    "relocating_shards": 0,
    "initializing_shards": 0,
    "unassigned_shards": 4,
    "delayed_unassigned_shards": 0,
    "number_of_pending_tasks": 0,
    "number_of_in_flight_fetch": 0,
    "task_max_waiting_in_queue_millis": 0,
    "active_shards_percent_as_number": 83.3,
}


def os_syncing(index: str, leader: int, follower: int) -> dict:
    return {
        "status": "SYNCING",
        "reason": "User initiated",
        "leader_alias": "to-primary",
        "leader_index": index,
        "follower_index": index,
        "syncing_details": {
            "leader_checkpoint": leader,
            "follower_checkpoint": follower,
            "seq_no": 0,
        },
    }


def os_stopped(index: str, status: str, reason: str) -> dict:
    return {
        "status": status,
        "reason": reason,
        "leader_alias": "to-primary",
        "leader_index": index,
        "follower_index": index,
    }


NOT_IN_PROGRESS = {"status": "REPLICATION NOT IN PROGRESS"}


def es_info(index: str, status: str = "active") -> dict:
    return {
        "follower_indices": [
            {
                "follower_index": index,
                "remote_cluster": "to-primary",
                "leader_index": index,
                "status": status,
                "parameters": {
                    "max_read_request_operation_count": 5120,
                    "max_outstanding_read_requests": 12,
                    "read_poll_timeout": "1m",
                },
            }
        ]
    }


def es_shard(index: str, shard: int, leader: int, follower: int, **extra: object) -> dict:
    return {
        "remote_cluster": "to-primary",
        "leader_index": index,
        "follower_index": index,
        "shard_id": shard,
        "leader_global_checkpoint": leader,
        "leader_max_seq_no": leader,
        "follower_global_checkpoint": follower,
        "follower_max_seq_no": follower,
        "last_requested_seq_no": follower,
        "outstanding_read_requests": 1,
        "outstanding_write_requests": 0,
        "write_buffer_operation_count": 0,
        "follower_mapping_version": 2,
        "follower_settings_version": 1,
        "follower_aliases_version": 1,
        "total_read_time_millis": 3,
        "total_read_remote_exec_time_millis": 2,
        "successful_read_requests": 4,
        "failed_read_requests": 0,
        "operations_read": 128,
        "bytes_read": 4096,
        "total_write_time_millis": 5,
        "successful_write_requests": 4,
        "failed_write_requests": 0,
        "operations_written": 128,
        "read_exceptions": [],
        "time_since_last_read_millis": 8,
        **extra,
    }


def es_stats(index: str, *shards: dict) -> dict:
    lag = sum(s["leader_global_checkpoint"] - s["follower_global_checkpoint"] for s in shards)
    return {
        "indices": [{"index": index, "total_global_checkpoint_lag": lag, "shards": list(shards)}]
    }


class FakeNodes:
    """GET url → (status, JSON body); a node listed as down raises NodeUnreachable."""

    def __init__(self, answers: dict[str, object], down: tuple[str, ...] = ()) -> None:
        self.answers = answers
        self.down = down
        self.asked: list[str] = []

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.asked.append(url)
        if url.startswith(self.down):
            raise NodeUnreachable("connection failed: [Errno 111] Connection refused")
        answer = self.answers.get(url)
        if answer is None:
            return 404, json.dumps({"error": {"type": "index_not_found_exception"}}).encode()
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()


def side_answers(base: str = N1, health: dict = HEALTH, **extra: object) -> dict[str, object]:
    return {
        f"{base}/_alias": ALIASES,
        f"{base}/_cat/indices?format=json&h=index,docs.count": CAT_INDICES,
        f"{base}/_cluster/health": health,
        **{f"{base}{path}": body for path, body in extra.items()},
    }


def os_status(index: str) -> str:
    return f"/_plugins/_replication/{index}/_status"


async def read(fetch: FakeNodes, kind: str = "opensearch", nodes: list[str] | None = None):
    return await read_side_data(fetch, nodes or [N1], "standby", MAGENTO, kind)


# --- aliases, counts and health ---------------------------------------------------------------


async def test_aliases_counts_and_cluster_status_without_replication() -> None:
    fetch = FakeNodes(side_answers())
    snapshot = await read(fetch, kind="none")
    assert snapshot.error is None
    assert snapshot.side == "standby"
    assert snapshot.node == N1
    assert [(a.alias, a.indices, a.documents) for a in snapshot.aliases] == [
        ("magento2_product_1", [V2], 2048),
        ("magento2_product_2", [S2], 512),
    ]
    assert snapshot.followers == []
    assert snapshot.cluster_status == "yellow"
    assert not any("_replication" in u or "_ccr" in u for u in fetch.asked)


async def test_a_missing_alias_has_no_indices_and_no_count() -> None:
    answers = side_answers()
    answers[f"{N1}/_alias"] = {V2: {"aliases": {"magento2_product_1": {}}}, S2: {"aliases": {}}}
    snapshot = await read(FakeNodes(answers), kind="none")
    missing = snapshot.alias("magento2_product_2")
    assert missing is not None and missing.indices == [] and missing.documents is None


async def test_an_alias_over_two_indices_sums_their_documents() -> None:
    answers = side_answers()
    answers[f"{N1}/_alias"] = {
        V2: {"aliases": {"magento2_product_1": {}}},
        V1: {"aliases": {"magento2_product_1": {}}},
        S2: {"aliases": {"magento2_product_2": {}}},
    }
    snapshot = await read(FakeNodes(answers), kind="none")
    both = snapshot.alias("magento2_product_1")
    assert both is not None
    assert both.indices == [V1, V2]
    assert both.documents == 2048 + 1900


async def test_a_closed_index_counts_no_documents() -> None:
    answers = side_answers()
    answers[f"{N1}/_alias"] = {"closed_index": {"aliases": {"magento2_product_1": {}}}}
    snapshot = await read(FakeNodes(answers), kind="none")
    assert snapshot.alias("magento2_product_1").documents == 0


async def test_a_red_health_answer_with_408_is_read_as_status() -> None:
    red = HEALTH | {"status": "red", "timed_out": True}
    snapshot = await read(FakeNodes(side_answers(health=(408, red))), kind="none")
    assert snapshot.error is None
    assert snapshot.cluster_status == "red"


# --- OpenSearch's replication plugin -------------------------------------------------------


async def test_opensearch_syncing_followers() -> None:
    fetch = FakeNodes(
        side_answers(
            **{os_status(V2): os_syncing(V2, 220, 200), os_status(S2): os_syncing(S2, 19, 19)}
        )
    )
    snapshot = await read(fetch)
    assert snapshot.error is None
    first, second = snapshot.followers
    assert (first.index, first.status, first.lag_operations) == (V2, "syncing", 20)
    assert (first.leader_checkpoint, first.follower_checkpoint) == (220, 200)
    assert first.connection == "to-primary" and first.leader_index == V2
    assert first.reason is None  # "User initiated" is how it started, not why it stopped
    assert (second.index, second.status, second.lag_operations) == (S2, "syncing", 0)
    # Only the indices behind the storefront's aliases are asked about.
    asked = [u for u in fetch.asked if "_replication" in u]
    assert sorted(asked) == sorted([f"{N1}{os_status(V2)}", f"{N1}{os_status(S2)}"])


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (os_stopped(V2, "PAUSED", "User initiated"), "paused", "User initiated"),
        (
            os_stopped(V2, "FAILED", "AutoPause: Leader index deleted"),
            "failed",
            "AutoPause: Leader index deleted",
        ),
        (NOT_IN_PROGRESS, "not_following", None),
        (
            {"status": "BOOTSTRAPPING", "reason": "User initiated", "leader_alias": "to-primary"},
            "bootstrapping",
            None,
        ),
    ],
)
async def test_opensearch_replication_states(body: dict, status: str, reason: str | None) -> None:
    state = await read_follower(FakeNodes({f"{N1}{os_status(V2)}": body}), N1, V2, "opensearch")
    assert state.index == V2
    assert state.status == status
    assert state.reason == reason
    assert state.leader_checkpoint is None and state.follower_checkpoint is None


async def test_a_standby_that_is_not_a_follower() -> None:
    fetch = FakeNodes(
        side_answers(**{os_status(V2): NOT_IN_PROGRESS, os_status(S2): NOT_IN_PROGRESS})
    )
    snapshot = await read(fetch)
    assert [(f.index, f.status) for f in snapshot.followers] == [
        (V2, "not_following"),
        (S2, "not_following"),
    ]


async def test_an_unknown_replication_status_makes_the_side_unreadable() -> None:
    fetch = FakeNodes(
        side_answers(**{os_status(V2): {"status": "RESTORING"}, os_status(S2): NOT_IN_PROGRESS})
    )
    snapshot = await read(fetch)
    assert snapshot.error is not None
    assert snapshot.error.startswith(f"{N1}: unknown replication status 'RESTORING' of {V2}")


# --- Elasticsearch CCR -----------------------------------------------------------------------


def es_answers(info: dict, stats: dict | None = None, index: str = V2) -> dict[str, object]:
    answers = side_answers(
        **{f"/{S2}/_ccr/info": {"follower_indices": []}, f"/{index}/_ccr/info": info}
    )
    if stats is not None:
        answers[f"{N1}/{index}/_ccr/stats"] = stats
    return answers


async def test_elasticsearch_active_follower_sums_its_shards() -> None:
    stats = es_stats(
        V2,
        es_shard(V2, 0, 1024, 768, time_since_last_read_millis=8),
        es_shard(V2, 1, 1000, 1000, time_since_last_read_millis=40),
    )
    snapshot = await read(FakeNodes(es_answers(es_info(V2), stats)), kind="elasticsearch")
    assert snapshot.error is None
    state = snapshot.follower(V2)
    assert state is not None
    assert state.status == "syncing"
    assert state.connection == "to-primary" and state.leader_index == V2
    assert (state.leader_checkpoint, state.follower_checkpoint) == (2024, 1768)
    assert state.lag_operations == 256
    assert state.since_last_read_ms == 40
    assert state.reason is None


async def test_elasticsearch_paused_follower_reads_no_stats() -> None:
    fetch = FakeNodes(es_answers(es_info(V2, status="paused")))
    snapshot = await read(fetch, kind="elasticsearch")
    assert snapshot.error is None
    state = snapshot.follower(V2)
    assert state is not None and state.status == "paused"
    assert state.leader_checkpoint is None
    assert f"{N1}/{V2}/_ccr/stats" not in fetch.asked


async def test_elasticsearch_fatal_exception_is_failed() -> None:
    fatal = {
        "type": "index_not_found_exception",
        "reason": f"no such index [{V2}]",
        "index": V2,
    }
    stats = es_stats(V2, es_shard(V2, 0, 500, 400, fatal_exception=fatal))
    snapshot = await read(FakeNodes(es_answers(es_info(V2), stats)), kind="elasticsearch")
    state = snapshot.follower(V2)
    assert state is not None
    assert state.status == "failed"
    assert state.reason == f"index_not_found_exception: no such index [{V2}]"
    assert state.lag_operations == 100


async def test_elasticsearch_index_that_is_not_a_follower() -> None:
    fetch = FakeNodes(es_answers({"follower_indices": []}))
    snapshot = await read(fetch, kind="elasticsearch")
    assert [(f.index, f.status) for f in snapshot.followers] == [
        (V2, "not_following"),
        (S2, "not_following"),
    ]
    assert not any(u.endswith("/_ccr/stats") for u in fetch.asked)


async def test_elasticsearch_info_about_another_index_is_not_this_ones() -> None:
    info = es_info("some_other_index")
    state = await read_follower(FakeNodes({f"{N1}/{V2}/_ccr/info": info}), N1, V2, "elasticsearch")
    assert state.status == "not_following"


# --- which node answers ---------------------------------------------------------------------


async def test_the_second_node_answers_when_the_first_is_unreachable() -> None:
    fetch = FakeNodes(side_answers(N2), down=(N1,))
    snapshot = await read(fetch, kind="none", nodes=[N1, N2 + "/"])
    assert snapshot.error is None
    assert snapshot.node == N2
    assert snapshot.alias("magento2_product_1").indices == [V2]
    assert fetch.asked[0] == f"{N1}/_alias"


async def test_a_node_answering_an_error_is_passed_over_too() -> None:
    answers = side_answers(N2)
    answers[f"{N1}/_alias"] = (
        503,
        {"error": {"type": "cluster_block_exception", "reason": "blocked"}, "status": 503},
    )
    snapshot = await read(FakeNodes(answers), kind="none", nodes=[N1, N2])
    assert snapshot.error is None and snapshot.node == N2


async def test_every_node_failing_names_each_node() -> None:
    answers = {
        f"{N2}/_alias": (
            503,
            {
                "error": {
                    "type": "master_not_discovered_exception",
                    "reason": "no cluster-manager",
                },
                "status": 503,
            },
        )
    }
    fetch = FakeNodes(answers, down=(N1,))
    snapshot = await read(fetch, nodes=[N1, N2])
    assert snapshot.node is None
    assert snapshot.aliases == [] and snapshot.followers == []
    assert snapshot.error == (
        f"{N1}: connection failed: [Errno 111] Connection refused; "
        f"{N2}: GET /_alias: HTTP 503 master_not_discovered_exception: no cluster-manager"
    )


async def test_a_proxy_page_is_not_json() -> None:
    answers = side_answers()
    answers[f"{N1}/_cat/indices?format=json&h=index,docs.count"] = (200, b"<html>502</html>")
    snapshot = await read(FakeNodes(answers), kind="none")
    path = "/_cat/indices?format=json&h=index,docs.count"
    assert snapshot.error == f"{N1}: GET {path}: not JSON (HTTP 200)"


async def test_a_failing_follower_read_fails_the_node() -> None:
    answers = side_answers(N2, **{os_status(V2): NOT_IN_PROGRESS, os_status(S2): NOT_IN_PROGRESS})
    answers |= side_answers(N1)  # N1 answers everything but the replication plugin
    snapshot = await read(FakeNodes(answers), nodes=[N1, N2])
    assert snapshot.node == N2
    assert [f.status for f in snapshot.followers] == ["not_following", "not_following"]


# --- the probe scoped to the storefront's indices ------------------------------------------


SCOPE = "magento2_product_1,magento2_product_2"
IDENTITY = {"name": "es-b1", "cluster_name": "es-b", "cluster_uuid": "b-uuid"}


def health_fetch(status: int, health: dict, path: str = MAGENTO.health_path()) -> FakeNodes:
    return FakeNodes({f"{N1}/": IDENTITY, f"{N1}{path}": (status, health)})


def test_the_health_path_names_the_storefronts_aliases() -> None:
    assert MAGENTO.health_path() == f"/_cluster/health/{SCOPE}?timeout=0s"


async def test_a_scoped_408_red_timed_out_is_health_not_an_http_error() -> None:
    red = HEALTH | {"status": "red", "timed_out": True}
    fetch = health_fetch(408, red)
    probe = await probe_node_via(fetch, N1, 1.0, health_path=MAGENTO.health_path())
    assert fetch.asked == [f"{N1}/", f"{N1}/_cluster/health/{SCOPE}?timeout=0s"]
    assert probe.error is None
    assert probe.error_type is None
    assert probe.http_status == 408
    assert probe.health_status == "red"
    assert probe.timed_out is True
    assert probe.health_scope == SCOPE
    assert probe.cluster_uuid == "b-uuid"


async def test_a_scoped_408_red_says_the_storefronts_indices_are_not_all_there() -> None:
    red = HEALTH | {"status": "red", "timed_out": True}
    probe = await probe_node_via(health_fetch(408, red), N1, 1.0, health_path=MAGENTO.health_path())
    problem = node_problem(probe, expected_cluster_name="es-b", yellow_policy="degraded")
    assert problem is not None
    assert problem.startswith(
        f"{INDEX_MISSING}: the storefront's indices ({SCOPE}) are not all there"
    )


async def test_a_scoped_red_answer_with_200_is_an_unassigned_storefront_shard() -> None:
    red = HEALTH | {"status": "red", "timed_out": False}
    probe = await probe_node_via(health_fetch(200, red), N1, 1.0, health_path=MAGENTO.health_path())
    problem = node_problem(probe, expected_cluster_name="es-b", yellow_policy="degraded")
    assert problem == f"{STATUS_RED}: a primary shard of the storefront's indices is unassigned"


async def test_a_scoped_green_answer_is_healthy() -> None:
    green = HEALTH | {"status": "green"}
    probe = await probe_node_via(
        health_fetch(200, green), N1, 1.0, identity=False, health_path=MAGENTO.health_path()
    )
    assert probe.cluster_name == "es-b"
    assert node_problem(probe, expected_cluster_name="es-b", yellow_policy="degraded") is None


async def test_an_unscoped_408_stays_an_http_error() -> None:
    red = {"cluster_name": "es-b", "status": "red", "timed_out": True}
    fetch = health_fetch(408, red, path="/_cluster/health")
    probe = await probe_node_via(fetch, N1, 1.0)
    assert probe.health_scope is None
    assert probe.http_status == 408
    assert probe.health_status is None
    problem = node_problem(probe, expected_cluster_name="es-b", yellow_policy="degraded")
    assert problem is not None and problem.startswith("http error: HTTP 408")
