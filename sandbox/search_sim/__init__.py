"""Simulated Elasticsearch / OpenSearch clusters that fail the way real ones do.

The failover orchestrator has to be exercised against everything a production search
cluster does when it breaks: refused connections, hung sockets, slow answers, 5xx errors,
red or yellow health, flapping, missing credentials, a DNS record that points at the wrong
cluster and a lost master quorum. Running real JVMs for that is slow and cannot be made to
fail on demand, so every simulated node is its own aiohttp server on loopback (clients see
real TCP behaviour) answering with the JSON bodies ES 8.x / OpenSearch 2.x send.

Each cluster also holds data as Magento lays it out: per store, the versioned index
`magento2_product_<store>_v<N>` behind the alias `magento2_product_<store>` (plus a plain
`products` index and a log index), with documents carrying seq_nos. The index APIs
(search, count, documents, aliases, `_cat`, settings, open/close) answer from that model,
and clusters replicate to each other: the OpenSearch replication plugin on the OpenSearch
flavour, CCR on the Elasticsearch one, with followers that refuse writes until promoted.

A small JSON control API lets other processes (the CLI) inject node faults and data faults
(paused or failed replication, lag, leader writes, reindexes, alias changes, red indices).
"""

from __future__ import annotations

from sandbox.search_sim.catalogue import CATALOGUE
from sandbox.search_sim.cluster import SimulatedCluster
from sandbox.search_sim.faults import DATA_ACTIONS, FaultControlError, FaultMode, NodeFault
from sandbox.search_sim.fleet import SimulatorFleet, set_data_fault_remote, set_fault_remote
from sandbox.search_sim.indices import IndexModel
from sandbox.search_sim.replication import FaultKind

__all__ = [
    "CATALOGUE",
    "DATA_ACTIONS",
    "FaultControlError",
    "FaultKind",
    "FaultMode",
    "IndexModel",
    "NodeFault",
    "SimulatedCluster",
    "SimulatorFleet",
    "set_data_fault_remote",
    "set_fault_remote",
]
