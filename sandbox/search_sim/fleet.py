"""Several clusters and the JSON control API other processes inject faults through (node
faults, and data faults: replication, writes, reindexes, aliases, index health); run
standalone with `python -m sandbox.search_sim`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from aiohttp import web

from sandbox.search_sim.cluster import SHUTDOWN_TIMEOUT_S, SimulatedCluster
from sandbox.search_sim.faults import FaultControlError, NodeFault, parse_data_action

# --------------------------------------------------------------------------- fleet


class SimulatorFleet:
    """Several clusters plus a small JSON control API.

    The control API lets other processes (the CLI) inject faults into a running fleet.
    """

    def __init__(
        self, clusters: list[SimulatedCluster], *, host: str = "127.0.0.1", control_port: int = 0
    ) -> None:
        names = [cluster.name for cluster in clusters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate cluster name(s): {', '.join(duplicates)}")
        self.clusters: dict[str, SimulatedCluster] = {c.name: c for c in clusters}
        self.host = host
        self.control_port = control_port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> SimulatorFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def control_url(self) -> str:
        """Base URL of the control API; known once start() has bound it."""
        if self._runner is None:
            raise RuntimeError("control_url is known after SimulatorFleet.start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.control_port}"

    async def start(self) -> None:
        """Start every cluster, then the control server; undo everything on failure."""
        started: list[SimulatedCluster] = []
        try:
            for cluster in self.clusters.values():
                await cluster.start()
                started.append(cluster)
            app = web.Application(middlewares=[_json_errors])
            app.router.add_get("/clusters", self._list)
            app.router.add_get("/clusters/{name}", self._get)
            app.router.add_post("/clusters/{name}/nodes/{node}/fault", self._post_fault)
            app.router.add_get("/clusters/{name}/data", self._get_data)
            app.router.add_post("/clusters/{name}/data", self._post_data)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.host, self.control_port, reuse_address=True)
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
            self.control_port = int(runner.addresses[0][1])
            self._runner = runner
        except BaseException:
            for cluster in started:
                await cluster.stop()
            raise

    async def stop(self) -> None:
        """Stop the control server first (no fault changes mid-shutdown), then the clusters."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await asyncio.gather(*(cluster.stop() for cluster in self.clusters.values()))

    def set_fault(self, cluster: str, node: int | None, fault: NodeFault) -> None:
        """Inject a fault; ValueError names an unknown cluster or node index."""
        self._cluster(cluster).set_fault(node, fault)

    def describe(self) -> dict[str, Any]:
        return {"clusters": {name: c.describe() for name, c in self.clusters.items()}}

    def _cluster(self, name: str) -> SimulatedCluster:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ValueError(f"unknown cluster {name!r}; known clusters: {known}") from None

    def _named(self, request: web.Request) -> SimulatedCluster:
        """The cluster the request's path names; an unknown one answers 404 with its error."""
        try:
            return self._cluster(request.match_info["name"])
        except ValueError as exc:
            raise _UnknownCluster(str(exc)) from None

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _get(self, request: web.Request) -> web.Response:
        cluster = self._named(request)
        return web.json_response(cluster.describe())

    async def _post_fault(self, request: web.Request) -> web.Response:
        """Apply a fault and answer only once the node's socket reflects it."""
        cluster = self._named(request)
        raw_node = request.match_info["node"]
        node: int | None = None
        if raw_node != "all":
            node = int(raw_node) if raw_node.isdigit() else -1
            if not 0 <= node < cluster.node_count:
                return web.json_response(
                    {
                        "error": f"cluster {cluster.name!r} has no node {raw_node!r}; use "
                        f"0..{cluster.node_count - 1} or 'all'"
                    },
                    status=404,
                )
        try:
            payload = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response(
                {"error": f'request body must be JSON like {{"mode": "down"}}: {exc}'}, status=400
            )
        try:
            fault = NodeFault.from_dict(payload)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        cluster.set_fault(node, fault)
        try:
            await cluster.settle()
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response(cluster.describe())

    async def _get_data(self, request: web.Request) -> web.Response:
        cluster = self._named(request)
        return web.json_response(cluster.data_state())

    async def _post_data(self, request: web.Request) -> web.Response:
        """Run one data action (a SimulatedCluster method of that name) on a cluster."""
        cluster = self._named(request)
        try:
            payload = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response(
                {"error": f'request body must be JSON like {{"action": "drop_alias", ...}}: {exc}'},
                status=400,
            )
        try:
            action, params = parse_data_action(payload)
            result = getattr(cluster, action)(**params)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"action": action, "result": result, "data": cluster.data_state()})


class _UnknownCluster(Exception):
    """A control request for a cluster the fleet does not have: 404, with its name."""


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown control routes answer JSON too, so the CLI can always show `error`."""
    try:
        return await handler(request)
    except _UnknownCluster as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {"error": f"{exc.reason}: {request.method} {request.path}"}, status=exc.status
        )


async def set_fault_remote(
    control_url: str,
    cluster: str,
    node: int | None,
    fault: NodeFault,
    *,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """POST a fault to a running fleet's control API; FaultControlError carries its message."""
    target = "all" if node is None else str(node)
    url = f"{control_url.rstrip('/')}/clusters/{quote(cluster, safe='')}/nodes/{target}/fault"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, json=fault.to_dict())
    except httpx.HTTPError as exc:
        raise FaultControlError(
            None, f"cannot reach the simulator control API at {control_url}: {exc!r}"
        ) from exc
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise FaultControlError(
            response.status_code,
            f"setting fault {fault.mode} on {cluster}/{target} failed "
            f"(HTTP {response.status_code}): {message}",
        )
    result: dict[str, Any] = response.json()
    return result


async def set_data_fault_remote(
    control_url: str,
    cluster: str,
    action: str,
    *,
    timeout_s: float = 10.0,
    **params: Any,
) -> dict[str, Any]:
    """POST a data action (`write_documents`, `replication_fault`, ...) to a running fleet's
    control API; FaultControlError carries the server's message."""
    url = f"{control_url.rstrip('/')}/clusters/{quote(cluster, safe='')}/data"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, json={"action": action, **params})
    except httpx.HTTPError as exc:
        raise FaultControlError(
            None, f"cannot reach the simulator control API at {control_url}: {exc!r}"
        ) from exc
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise FaultControlError(
            response.status_code,
            f"{action} on {cluster} failed (HTTP {response.status_code}): {message}",
        )
    result: dict[str, Any] = response.json()
    return result


# --------------------------------------------------------------------------- standalone


async def _serve(specs: list[str], node_count: int, host: str, control_port: int) -> None:
    clusters = []
    for spec in specs:
        name, _, distribution = spec.partition(":")
        clusters.append(
            SimulatedCluster(
                name,
                node_count=node_count,
                host=host,
                distribution="opensearch" if distribution == "opensearch" else "elasticsearch",
            )
        )
    # Each cluster knows the others as remote connections named after them, so replication
    # can be started through their REST APIs.
    for cluster in clusters:
        for other in clusters:
            if other is not cluster:
                cluster.connect_remote(other.name, other)
    async with SimulatorFleet(clusters, host=host, control_port=control_port) as fleet:
        summary = {
            "control_url": fleet.control_url,
            "clusters": {name: c.node_urls for name, c in fleet.clusters.items()},
        }
        print(json.dumps(summary), flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Run a fleet in the foreground: `python -m sandbox.search_sim --cluster primary ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.search_sim",
        description="Simulated Elasticsearch / OpenSearch clusters that fail the way real ones do.",
    )
    parser.add_argument(
        "--cluster",
        action="append",
        metavar="NAME[:opensearch]",
        help="a cluster to simulate (repeatable); default: primary and secondary",
    )
    parser.add_argument("--nodes", type=int, default=3, help="nodes per cluster")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(
                args.cluster or ["primary", "secondary"], args.nodes, args.host, args.control_port
            )
        )


if __name__ == "__main__":
    main()
