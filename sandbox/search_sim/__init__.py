"""Simulated Elasticsearch / OpenSearch clusters that fail the way real ones do.

The failover orchestrator has to be exercised against everything a production search
cluster does when it breaks: refused connections, hung sockets, slow answers, 5xx errors,
red or yellow health, flapping, missing credentials, a DNS record that points at the wrong
cluster and a lost master quorum. Running real JVMs for that is slow and cannot be made to
fail on demand, so every simulated node is its own aiohttp server on loopback (clients see
real TCP behaviour) answering with the JSON bodies ES 8.x / OpenSearch 2.x send.
A small JSON control API lets other processes (the CLI) inject faults.
"""

from __future__ import annotations

from sandbox.search_sim.catalogue import CATALOGUE
from sandbox.search_sim.cluster import SimulatedCluster
from sandbox.search_sim.faults import FaultControlError, FaultMode, NodeFault
from sandbox.search_sim.fleet import SimulatorFleet, set_fault_remote

__all__ = [
    "CATALOGUE",
    "FaultControlError",
    "FaultMode",
    "NodeFault",
    "SimulatedCluster",
    "SimulatorFleet",
    "set_fault_remote",
]
