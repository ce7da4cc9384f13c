"""The search simulator must fail the way real clusters fail, seen only from the outside.

Every test talks HTTP (or raw TCP) to the simulated nodes, as the failover activities do.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from sandbox import net
from sandbox.net import free_port_on
from sandbox.search_sim import (
    FaultControlError,
    FaultMode,
    NodeFault,
    SimulatedCluster,
    SimulatorFleet,
    set_fault_remote,
)

HEALTH_FIELDS = {
    "cluster_name",
    "status",
    "timed_out",
    "number_of_nodes",
    "number_of_data_nodes",
    "active_primary_shards",
    "active_shards",
    "relocating_shards",
    "initializing_shards",
    "unassigned_shards",
    "delayed_unassigned_shards",
    "number_of_pending_tasks",
    "number_of_in_flight_fetch",
    "task_max_waiting_in_queue_millis",
    "active_shards_percent_as_number",
}
# Every simulated cluster starts with four indices (products, the two Magento store indices
# and a log index), each with one primary per node: cluster health sums their shards.
DEFAULT_INDICES = 4
VERSION_FIELDS = {
    "number",
    "build_flavor",
    "build_type",
    "build_hash",
    "build_date",
    "build_snapshot",
    "lucene_version",
    "minimum_wire_compatibility_version",
    "minimum_index_compatibility_version",
}


@pytest.fixture
async def cluster() -> AsyncIterator[SimulatedCluster]:
    sim = SimulatedCluster("primary")
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def opensearch() -> AsyncIterator[SimulatedCluster]:
    sim = SimulatedCluster("secondary", distribution="opensearch")
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def sim_fleet() -> AsyncIterator[SimulatorFleet]:
    sims = [SimulatedCluster("primary"), SimulatedCluster("secondary", node_count=2)]
    async with SimulatorFleet(sims) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        yield http


async def wait_until(condition: Callable[[], Awaitable[bool] | bool], deadline_s: float) -> None:
    """Poll a condition with a deadline: the alternative to sleeping and hoping."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"condition not met within {deadline_s}s"
        await asyncio.sleep(0.02)


async def port_refuses(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


# --------------------------------------------------------------------------- healthy


async def test_root_looks_like_elasticsearch_8(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    bodies = []
    for url in cluster.node_urls:
        response = await client.get(url + "/")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-elastic-product"] == "Elasticsearch"
        bodies.append(response.json())
    first = bodies[0]
    assert first["name"] == "primary-node-1"
    assert [b["name"] for b in bodies] == ["primary-node-1", "primary-node-2", "primary-node-3"]
    assert {b["cluster_uuid"] for b in bodies} == {cluster.cluster_uuid}
    assert len(cluster.cluster_uuid) == 22
    assert first["cluster_name"] == "primary"
    assert set(first["version"]) == VERSION_FIELDS
    assert first["version"]["number"] == "8.15.0"
    assert first["version"]["build_snapshot"] is False
    assert first["tagline"] == "You Know, for Search"

    head = await client.head(cluster.node_urls[0] + "/")
    assert head.status_code == 200
    assert head.content == b""


async def test_health_is_green_with_every_real_field(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    response = await client.get(cluster.node_urls[1] + "/_cluster/health", params={"local": "true"})
    assert response.status_code == 200
    health = response.json()
    assert set(health) == HEALTH_FIELDS
    assert health["cluster_name"] == "primary"
    assert health["status"] == "green"
    assert health["timed_out"] is False
    assert health["number_of_nodes"] == health["number_of_data_nodes"] == 3
    assert health["active_primary_shards"] == 3 * DEFAULT_INDICES
    assert health["active_shards"] == 6 * DEFAULT_INDICES
    assert health["unassigned_shards"] == health["delayed_unassigned_shards"] == 0
    assert health["active_shards_percent_as_number"] == 100.0


async def test_cat_nodes_lists_three_nodes_and_one_master(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    response = await client.get(cluster.node_urls[2] + "/_cat/nodes", params={"format": "json"})
    assert response.status_code == 200
    nodes = response.json()
    assert [n["name"] for n in nodes] == ["primary-node-1", "primary-node-2", "primary-node-3"]
    assert [n["master"] for n in nodes].count("*") == 1
    assert all(n["node.role"] == "cdfhilmrstw" and n["ip"] == "127.0.0.1" for n in nodes)
    assert all(isinstance(n["heap.percent"], str) for n in nodes)  # _cat JSON values are strings

    text = await client.get(cluster.node_urls[0] + "/_cat/nodes", params={"v": "true"})
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert lines[0].split() == [
        "ip",
        "heap.percent",
        "ram.percent",
        "cpu",
        "load_1m",
        "load_5m",
        "load_15m",
        "node.role",
        "master",
        "name",
    ]
    assert len(lines) == 4
    assert lines[1].split()[-2:] == ["*", "primary-node-1"]


async def test_search_finds_products_by_term(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    url = cluster.node_urls[0]
    by_param = (await client.get(url + "/products/_search", params={"q": "duffle"})).json()
    assert set(by_param) == {"took", "timed_out", "_shards", "hits"}
    assert by_param["_shards"] == {"total": 3, "successful": 3, "skipped": 0, "failed": 0}
    assert by_param["hits"]["total"] == {"value": 2, "relation": "eq"}
    names = {hit["_source"]["name"] for hit in by_param["hits"]["hits"]}
    assert names == {"Joust Duffle Bag", "Overnight Duffle"}
    top = by_param["hits"]["hits"][0]
    assert set(top) == {"_index", "_id", "_score", "_source"}
    assert by_param["hits"]["max_score"] == top["_score"] > 0

    match = await client.post(
        url + "/products/_search", json={"query": {"match": {"name": "BACKPACK"}}, "size": 1}
    )
    body = match.json()
    assert body["hits"]["total"]["value"] == 2
    assert len(body["hits"]["hits"]) == 1
    assert "Backpack" in body["hits"]["hits"][0]["_source"]["name"]

    multi = await client.post(
        url + "/magento2_product_1/_search",
        json={"query": {"multi_match": {"query": "hoodie", "fields": ["name^5", "sku"]}}},
    )
    hits = multi.json()["hits"]["hits"]
    assert [(h["_index"], h["_source"]["sku"]) for h in hits] == [("magento2_product_1_v1", "MH01")]

    query_string = await client.post(
        url + "/products/_search", json={"query": {"query_string": {"query": "name:tee"}}}
    )
    assert [h["_source"]["name"] for h in query_string.json()["hits"]["hits"]] == ["Radiant Tee"]

    everything = (await client.get(url + "/products/_search", params={"size": "5"})).json()
    assert everything["hits"]["total"]["value"] == 12
    assert len(everything["hits"]["hits"]) == 5

    missing = await client.get(url + "/nope/_search")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["type"] == "index_not_found_exception"
    assert error["reason"] == "no such index [nope]"
    assert error["root_cause"][0]["index"] == "nope"


async def test_unknown_routes_and_methods_answer_like_es(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    url = cluster.node_urls[0]
    wrong_method = await client.delete(url + "/_cluster/health")
    assert wrong_method.status_code == 405
    assert "allowed: [GET]" in wrong_method.json()["error"]
    no_handler = await client.get(url + "/_nope")
    assert no_handler.status_code == 400
    assert no_handler.json() == {"error": "no handler found for uri [/_nope] and method [GET]"}
    bad_query = await client.post(url + "/products/_search", json={"query": {"fuzzy_x": {}}})
    assert bad_query.status_code == 400
    assert bad_query.json()["error"]["type"] == "parsing_exception"


# --------------------------------------------------------------------------- transport faults


async def test_down_refuses_connections_then_comes_back_on_the_same_port(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    url = cluster.node_urls[2]
    assert (await client.get(url + "/")).status_code == 200  # leaves a keep-alive connection

    cluster.set_fault(2, NodeFault(FaultMode.DOWN))
    await cluster.settle()
    with pytest.raises(httpx.ConnectError):
        await client.get(url + "/")
    assert await port_refuses(url)
    assert cluster.node_urls[2] == url
    assert (await client.get(cluster.node_urls[0] + "/")).status_code == 200

    cluster.set_fault(2, NodeFault(FaultMode.HEALTHY))
    await cluster.settle()
    assert cluster.node_urls[2] == url
    back = await client.get(url + "/_cluster/health")
    assert back.status_code == 200
    assert back.json()["number_of_nodes"] == 3


async def test_going_down_cuts_requests_in_flight(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(0, NodeFault(FaultMode.SLOW, slow_ms=5000))
    request = asyncio.create_task(client.get(cluster.node_urls[0] + "/", timeout=5.0))
    await wait_until(lambda: cluster.in_flight == 1, 2.0)
    started = time.monotonic()
    cluster.set_fault(0, NodeFault(FaultMode.DOWN))
    await cluster.settle()
    with pytest.raises(httpx.TransportError):
        await request
    assert time.monotonic() - started < 1.0


async def test_faults_set_before_start_apply_at_start() -> None:
    sim = SimulatedCluster("early")
    sim.set_fault(1, NodeFault(FaultMode.DOWN))
    async with sim:
        assert await port_refuses(sim.node_urls[1])
        assert not await port_refuses(sim.node_urls[0])


async def test_hang_accepts_but_never_answers(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(1, NodeFault(FaultMode.HANG))
    await cluster.settle()
    assert not await port_refuses(cluster.node_urls[1])  # the socket accepts
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await client.get(cluster.node_urls[1] + "/_cluster/health", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_stop_is_prompt_with_hanging_requests_in_flight(client: httpx.AsyncClient) -> None:
    sim = SimulatedCluster("stuck")
    await sim.start()
    sim.set_fault(None, NodeFault(FaultMode.HANG))
    requests = [asyncio.create_task(client.get(url + "/", timeout=10.0)) for url in sim.node_urls]
    await wait_until(lambda: sim.in_flight == 3, 2.0)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 1.0
    results = await asyncio.gather(*requests, return_exceptions=True)
    assert all(isinstance(r, httpx.TransportError) for r in results), results
    assert all(await asyncio.gather(*(port_refuses(url) for url in sim.node_urls)))


async def test_slow_answers_after_slow_ms(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(0, NodeFault(FaultMode.SLOW, slow_ms=300))
    started = time.monotonic()
    response = await client.get(cluster.node_urls[0] + "/_cluster/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "green"
    assert elapsed >= 0.3
    fast_started = time.monotonic()
    assert (await client.get(cluster.node_urls[1] + "/")).status_code == 200
    assert time.monotonic() - fast_started < 0.3


# --------------------------------------------------------------------------- HTTP faults


@pytest.mark.parametrize(
    ("mode", "status", "error_type"),
    [
        (FaultMode.HTTP_500, 500, "null_pointer_exception"),
        (FaultMode.HTTP_503, 503, "master_not_discovered_exception"),
    ],
)
async def test_http_error_modes_fail_every_endpoint(
    cluster: SimulatedCluster,
    client: httpx.AsyncClient,
    mode: FaultMode,
    status: int,
    error_type: str,
) -> None:
    cluster.set_fault(None, NodeFault(mode))
    for path in ("/", "/_cluster/health", "/_cat/nodes?format=json", "/products/_search"):
        response = await client.get(cluster.node_urls[0] + path)
        assert response.status_code == status, path
        body = response.json()
        assert body["status"] == status
        assert body["error"]["type"] == error_type
        assert body["error"]["root_cause"][0]["type"] == error_type
    assert cluster.request_count == 4


async def test_red_health_and_failing_search(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(None, NodeFault(FaultMode.RED))
    url = cluster.node_urls[0]
    health = (await client.get(url + "/_cluster/health")).json()
    assert health["status"] == "red"
    assert health["active_primary_shards"] < 3 * DEFAULT_INDICES
    assert health["unassigned_shards"] > 0
    assert health["active_shards"] + health["unassigned_shards"] == 6 * DEFAULT_INDICES
    assert health["active_shards_percent_as_number"] < 100

    search = await client.get(url + "/products/_search", params={"q": "bag"})
    assert search.status_code == 503
    assert search.json()["error"]["type"] == "search_phase_execution_exception"
    assert search.json()["error"]["reason"] == "all shards failed"
    assert (await client.get(url + "/")).status_code == 200


async def test_yellow_health_still_searches(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(None, NodeFault(FaultMode.YELLOW))
    url = cluster.node_urls[1]
    health = (await client.get(url + "/_cluster/health")).json()
    assert health["status"] == "yellow"
    # primaries fine, a replica is missing in each index
    assert health["active_primary_shards"] == 3 * DEFAULT_INDICES
    assert health["unassigned_shards"] == DEFAULT_INDICES
    assert health["active_shards_percent_as_number"] < 100
    search = await client.get(url + "/products/_search", params={"q": "bottle"})
    assert search.status_code == 200
    assert search.json()["hits"]["hits"][0]["_source"]["sku"] == "24-UG06"


async def test_wait_for_status_times_out_with_408(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(None, NodeFault(FaultMode.YELLOW))
    url = cluster.node_urls[0] + "/_cluster/health"
    started = time.monotonic()
    waited = await client.get(url, params={"wait_for_status": "green", "timeout": "150ms"})
    assert waited.status_code == 408
    assert waited.json()["timed_out"] is True
    assert waited.json()["status"] == "yellow"
    assert time.monotonic() - started >= 0.15
    met = await client.get(url, params={"wait_for_status": "yellow", "timeout": "1s"})
    assert met.status_code == 200
    assert met.json()["timed_out"] is False
    bad = await client.get(url, params={"timeout": "soon"})
    assert bad.status_code == 400
    assert "failed to parse setting [timeout]" in bad.json()["error"]["reason"]


async def test_flapping_alternates_between_healthy_and_503(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(0, NodeFault(FaultMode.FLAPPING, flap_period_s=0.3))
    seen: dict[int, dict[str, object]] = {}

    async def both_states_seen() -> bool:
        response = await client.get(cluster.node_urls[0] + "/_cluster/health")
        seen.setdefault(response.status_code, response.json())
        return {200, 503} <= set(seen)

    await wait_until(both_states_seen, 3.0)
    assert set(seen) == {200, 503}
    assert seen[200]["status"] == "green"
    assert seen[503]["error"]["type"] == "master_not_discovered_exception"  # type: ignore[index]


async def test_unauthorized_challenges_for_basic_auth(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(2, NodeFault(FaultMode.UNAUTHORIZED))
    response = await client.get(cluster.node_urls[2] + "/_cluster/health")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="security" charset="UTF-8"'
    error = response.json()["error"]
    assert error["type"] == "security_exception"
    assert error["reason"] == (
        "missing authentication credentials for REST request [/_cluster/health]"
    )
    assert response.json()["status"] == 401
    assert (await client.get(cluster.node_urls[0] + "/_cluster/health")).status_code == 200


async def test_wrong_cluster_answers_as_an_impostor(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(1, NodeFault(FaultMode.WRONG_CLUSTER))
    root = (await client.get(cluster.node_urls[1] + "/")).json()
    health = (await client.get(cluster.node_urls[1] + "/_cluster/health")).json()
    assert root["cluster_name"] == health["cluster_name"] == "primary-impostor"
    assert root["cluster_uuid"] != cluster.cluster_uuid
    assert len(root["cluster_uuid"]) == 22
    assert health["status"] == "green"
    genuine = (await client.get(cluster.node_urls[0] + "/")).json()
    assert genuine["cluster_uuid"] == cluster.cluster_uuid


# --------------------------------------------------------------------------- cluster level


async def test_one_node_down_leaves_a_yellow_two_node_cluster(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(0, NodeFault(FaultMode.DOWN))  # the elected master
    await cluster.settle()
    for url in cluster.node_urls[1:]:
        health = (await client.get(url + "/_cluster/health")).json()
        assert health["number_of_nodes"] == health["number_of_data_nodes"] == 2
        assert health["status"] == "yellow"
        assert health["active_primary_shards"] == 3 * DEFAULT_INDICES
        assert health["unassigned_shards"] == 2 * DEFAULT_INDICES
        assert health["active_shards"] == 4 * DEFAULT_INDICES
    nodes = (
        await client.get(cluster.node_urls[1] + "/_cat/nodes", params={"format": "json"})
    ).json()
    assert [n["name"] for n in nodes] == ["primary-node-2", "primary-node-3"]
    assert [n["master"] for n in nodes] == ["*", "-"]  # a new master was elected


async def test_hung_node_counts_as_absent(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(2, NodeFault(FaultMode.HANG))
    health = (await client.get(cluster.node_urls[0] + "/_cluster/health")).json()
    assert health["number_of_nodes"] == 2
    assert health["status"] == "yellow"


async def test_two_nodes_down_lose_the_master_quorum(
    cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    cluster.set_fault(0, NodeFault(FaultMode.DOWN))
    cluster.set_fault(1, NodeFault(FaultMode.DOWN))
    await cluster.settle()
    survivor = cluster.node_urls[2]
    for path in ("/_cluster/health", "/_cat/nodes", "/products/_search"):
        response = await client.get(survivor + path)
        assert response.status_code == 503, path
        assert response.json()["error"]["type"] == "master_not_discovered_exception"
    root = await client.get(survivor + "/")
    assert root.status_code == 200
    assert root.json()["name"] == "primary-node-3"

    cluster.set_fault(1, NodeFault(FaultMode.HEALTHY))
    await cluster.settle()
    assert (await client.get(survivor + "/_cluster/health")).json()["number_of_nodes"] == 2


async def test_losing_both_copies_of_a_shard_turns_red_with_partial_search(
    client: httpx.AsyncClient,
) -> None:
    async with SimulatedCluster("wide", node_count=5) as sim:
        sim.set_fault(0, NodeFault(FaultMode.DOWN))  # shard 0 lives on nodes 0 and 1
        sim.set_fault(1, NodeFault(FaultMode.DOWN))
        await sim.settle()
        url = sim.node_urls[3]
        health = (await client.get(url + "/_cluster/health")).json()
        assert (health["status"], health["number_of_nodes"]) == ("red", 3)
        assert health["active_primary_shards"] == 4 * DEFAULT_INDICES
        search = await client.get(url + "/products/_search", params={"size": "50"})
        assert search.status_code == 200  # partial results, as allow_partial_search_results
        body = search.json()
        assert body["_shards"]["failed"] == 1
        assert body["_shards"]["successful"] == 4
        assert 0 < body["hits"]["total"]["value"] < 12


# --------------------------------------------------------------------------- opensearch


async def test_opensearch_distribution(
    opensearch: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    url = opensearch.node_urls[0]
    root = await client.get(url + "/")
    body = root.json()
    assert body["version"]["distribution"] == "opensearch"
    assert body["version"]["number"] == "2.17.0"
    assert "build_flavor" not in body["version"]
    assert body["tagline"] == "The OpenSearch Project: https://opensearch.org/"
    assert "x-elastic-product" not in root.headers

    health = (await client.get(url + "/_cluster/health")).json()
    assert health["status"] == "green"
    assert health["discovered_cluster_manager"] is True
    nodes = (await client.get(url + "/_cat/nodes", params={"format": "json"})).json()
    assert [n["cluster_manager"] for n in nodes].count("*") == 1

    opensearch.set_fault(None, NodeFault(FaultMode.HTTP_503))
    unavailable = (await client.get(url + "/_cluster/health")).json()
    assert unavailable["error"]["type"] == "cluster_manager_not_discovered_exception"
    opensearch.set_fault(None, NodeFault(FaultMode.UNAUTHORIZED))
    denied = await client.get(url + "/_cluster/health")
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Basic realm=")


# --------------------------------------------------------------------------- control API


async def test_control_api_lists_clusters(
    sim_fleet: SimulatorFleet, client: httpx.AsyncClient
) -> None:
    listing = (await client.get(sim_fleet.control_url + "/clusters")).json()["clusters"]
    assert set(listing) == {"primary", "secondary"}
    primary = listing["primary"]
    assert primary["cluster_name"] == "primary"
    assert primary["cluster_uuid"] == sim_fleet.clusters["primary"].cluster_uuid
    assert [n["url"] for n in primary["nodes"]] == sim_fleet.clusters["primary"].node_urls
    assert {n["mode"] for n in primary["nodes"]} == {"healthy"}
    assert {"slow_ms", "flap_period_s"} <= set(primary["nodes"][0])
    assert len(listing["secondary"]["nodes"]) == 2


async def test_set_fault_remote_applies_and_settles(
    sim_fleet: SimulatorFleet, client: httpx.AsyncClient
) -> None:
    url = sim_fleet.clusters["primary"].node_urls[1]
    result = await set_fault_remote(sim_fleet.control_url, "primary", 1, NodeFault(FaultMode.DOWN))
    assert [n["mode"] for n in result["nodes"]] == ["healthy", "down", "healthy"]
    assert await port_refuses(url)  # the POST answered only after the socket closed

    result = await set_fault_remote(
        sim_fleet.control_url, "primary", None, NodeFault(FaultMode.SLOW, slow_ms=50)
    )
    assert {(n["mode"], n["slow_ms"]) for n in result["nodes"]} == {("slow", 50)}
    assert (await client.get(url + "/")).status_code == 200
    assert sim_fleet.clusters["secondary"].faults() == [NodeFault(), NodeFault()]


async def test_control_api_rejects_bad_input(
    sim_fleet: SimulatorFleet, client: httpx.AsyncClient
) -> None:
    with pytest.raises(FaultControlError, match="unknown cluster 'nope'") as unknown:
        await set_fault_remote(sim_fleet.control_url, "nope", 0, NodeFault(FaultMode.DOWN))
    assert unknown.value.status == 404

    with pytest.raises(FaultControlError, match="no node '7'") as bad_node:
        await set_fault_remote(sim_fleet.control_url, "secondary", 7, NodeFault(FaultMode.DOWN))
    assert bad_node.value.status == 404

    base = sim_fleet.control_url + "/clusters/primary/nodes/0/fault"
    bad_mode = await client.post(base, json={"mode": "exploded"})
    assert bad_mode.status_code == 400
    assert "mode" in bad_mode.json()["error"]
    assert "exploded" in bad_mode.json()["error"]

    bad_slow = await client.post(base, json={"mode": "slow", "slow_ms": "fast"})
    assert bad_slow.status_code == 400
    assert "slow_ms" in bad_slow.json()["error"]

    unknown_field = await client.post(base, json={"mode": "down", "colour": "red"})
    assert unknown_field.status_code == 400
    assert "colour" in unknown_field.json()["error"]

    not_json = await client.post(base, content=b"down")
    assert not_json.status_code == 400
    assert sim_fleet.clusters["primary"].faults()[0].mode is FaultMode.HEALTHY


async def test_set_fault_remote_reports_an_unreachable_control_api() -> None:
    sim = SimulatedCluster("gone")
    async with sim:
        dead_url = sim.node_urls[0]
        sim.set_fault(0, NodeFault(FaultMode.DOWN))
        await sim.settle()
        with pytest.raises(FaultControlError, match="cannot reach"):
            await set_fault_remote(dead_url, "gone", 0, NodeFault(), timeout_s=0.5)


# --------------------------------------------------------------------------- python API


async def test_invalid_faults_raise_value_error(sim_fleet: SimulatorFleet) -> None:
    with pytest.raises(ValueError, match="unknown cluster 'tertiary'"):
        sim_fleet.set_fault("tertiary", 0, NodeFault(FaultMode.DOWN))
    with pytest.raises(ValueError, match="has no node 3"):
        sim_fleet.set_fault("primary", 3, NodeFault(FaultMode.DOWN))
    with pytest.raises(ValueError, match="invalid mode 'melted'"):
        NodeFault(mode="melted")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flap_period_s"):
        NodeFault(FaultMode.FLAPPING, flap_period_s=0)
    assert NodeFault(mode="down").mode is FaultMode.DOWN  # type: ignore[arg-type]


async def test_explicit_ports_are_used_and_requests_counted(client: httpx.AsyncClient) -> None:
    async with SimulatedCluster("probe", node_count=2) as probe:
        ports = [int(url.rsplit(":", 1)[1]) for url in probe.node_urls]
    sim = SimulatedCluster("pinned", node_count=2, ports=ports)
    async with sim:
        assert sim.node_urls == [f"http://127.0.0.1:{port}" for port in ports]
        for url in sim.node_urls:
            assert (await client.get(url + "/")).json()["cluster_name"] == "pinned"
        assert sim.request_count == 2


# --------------------------------------------------------------------------- one IP per node

NODE_HOSTS = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]


@pytest.fixture
async def per_ip_cluster() -> AsyncIterator[SimulatedCluster]:
    port = free_port_on(NODE_HOSTS)
    sim = SimulatedCluster("primary", hosts=NODE_HOSTS, ports=[port] * 3)
    async with sim:
        yield sim


async def test_nodes_on_their_own_ips_share_one_port(
    per_ip_cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    port = int(per_ip_cluster.node_urls[0].rsplit(":", 1)[1])
    assert per_ip_cluster.node_urls == [f"http://{host}:{port}" for host in NODE_HOSTS]
    assert per_ip_cluster.node_hosts == NODE_HOSTS
    assert [n["url"] for n in per_ip_cluster.describe()["nodes"]] == per_ip_cluster.node_urls
    for i, url in enumerate(per_ip_cluster.node_urls):
        assert (await client.get(url + "/")).json()["name"] == f"primary-node-{i + 1}"
    assert await port_refuses(f"http://127.0.0.1:{port}")  # bound to each IP, not a wildcard

    cat = await client.get(per_ip_cluster.node_urls[1] + "/_cat/nodes", params={"format": "json"})
    assert [(n["name"], n["ip"]) for n in cat.json()] == [
        (f"primary-node-{i + 1}", host) for i, host in enumerate(NODE_HOSTS)
    ]


async def test_one_node_down_and_up_on_its_own_ip(
    per_ip_cluster: SimulatedCluster, client: httpx.AsyncClient
) -> None:
    urls = per_ip_cluster.node_urls
    per_ip_cluster.set_fault(1, NodeFault(FaultMode.DOWN))
    await per_ip_cluster.settle()
    assert await port_refuses(urls[1])
    for url in (urls[0], urls[2]):  # same port, other IPs: still serving
        assert (await client.get(url + "/_cluster/health")).json()["number_of_nodes"] == 2
    cat = await client.get(urls[0] + "/_cat/nodes", params={"format": "json", "h": "ip"})
    assert [n["ip"] for n in cat.json()] == [NODE_HOSTS[0], NODE_HOSTS[2]]

    per_ip_cluster.set_fault(1, NodeFault(FaultMode.HEALTHY))
    await per_ip_cluster.settle()
    assert per_ip_cluster.node_urls == urls
    back = await client.get(urls[1] + "/_cluster/health")
    assert back.json()["number_of_nodes"] == 3


async def test_hosts_must_match_the_node_count() -> None:
    with pytest.raises(ValueError, match="got 2 hosts for 3 nodes"):
        SimulatedCluster("primary", hosts=NODE_HOSTS[:2])
    with pytest.raises(ValueError, match=r"share the address\(es\) 127\.0\.0\.1:9200"):
        SimulatedCluster("primary", node_count=2, ports=[9200, 9200])


def test_free_port_on_every_host() -> None:
    port = free_port_on(NODE_HOSTS)
    for host in NODE_HOSTS:
        with socket.socket() as sock:
            sock.bind((host, port))  # free on each address
    with pytest.raises(ValueError, match="at least one host"):
        free_port_on([])


def test_free_port_on_retries_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    rejected: list[int] = []

    def taken_twice(host: str, port: int) -> bool:
        if len(rejected) < 2:
            rejected.append(port)
            return False
        return True

    monkeypatch.setattr(net, "_can_bind", taken_twice)
    free_port_on(NODE_HOSTS)
    assert len(rejected) == 2
    monkeypatch.setattr(net, "_can_bind", lambda host, port: False)
    with pytest.raises(OSError, match=r"no TCP port free on all of 127\.0\.1\.1"):
        free_port_on(NODE_HOSTS)
