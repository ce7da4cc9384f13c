"""The Temporal server itself restarts in the middle of a failover (same SQLite file), once
killed and once stopped: the failover carries on and completes.

The sandbox runs in this process against a dev server this test owns, so it can kill and
restart that server while the worker, moto and the clusters keep running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from failover.client.operations import start_or_attach_failover
from failover.client.temporal import EmbeddedTemporalServer
from failover.models import FailoverResult, FailoverStatus, Outcome
from sandbox.aws_fault_proxy import FaultKind, FaultRule
from sandbox.net import free_port
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, STANDBY_VALUE, Sandbox

pytestmark = pytest.mark.slow


class Restartable:
    def __init__(self, directory: Path) -> None:
        self.server = EmbeddedTemporalServer(directory, port=free_port(), ui_port=free_port())

    async def start(self) -> Client:
        return await self.server.start()

    async def restart(self, *, kill: bool) -> Client:
        process = self.server.process
        assert process is not None
        if kill:
            process.kill()
            process.wait()
        else:
            self.server.stop()
        return await self.server.start()


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Restartable, Sandbox]]:
    temporal = Restartable(tmp_path / "temporal")
    (tmp_path / "temporal").mkdir()
    await temporal.start()
    sandbox = Sandbox(tmp_path / "sandbox", temporal=temporal.server.endpoint)
    await sandbox.start()
    try:
        yield temporal, sandbox
    finally:
        await sandbox.stop()
        temporal.server.stop()


async def wait_for_phase(handle: WorkflowHandle, phase: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await handle.query("status", result_type=FailoverStatus)
        if status.phase == phase:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the failover never reached phase {phase!r}")


async def start_failover(sandbox: Sandbox) -> WorkflowHandle:
    assert sandbox.fleet and sandbox.client and sandbox.config
    sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await sandbox.fleet.clusters[PRIMARY_SIM].settle()
    return await start_or_attach_failover(
        sandbox.client,
        sandbox.config.clusters[0],
        task_queue=sandbox.config.task_queue,
        reason="server restart test",
    )


async def result_after_restart(client: Client, handle: WorkflowHandle) -> FailoverResult:
    fresh = client.get_workflow_handle(handle.id, result_type=FailoverResult)
    return await asyncio.wait_for(fresh.result(), 60)


async def test_server_killed_during_the_insync_wait(stack: tuple[Restartable, Sandbox]) -> None:
    temporal, sandbox = stack
    pending = sandbox.aws_proxy.add_rule(FaultRule("GetChange", FaultKind.PENDING, count=-1))
    handle = await start_failover(sandbox)
    await wait_for_phase(handle, "wait")

    client = await temporal.restart(kill=True)
    polls_before = pending.hits
    sandbox.aws_proxy.clear_rules()  # Route 53 finishes propagating while the server is back
    result = await result_after_restart(client, handle)

    assert polls_before >= 1
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert [s.name for s in result.steps][:6] == [
        "snapshot", "confirm", "preflight", "switch", "wait", "ttl_wait"
    ]  # fmt: skip
    assert sandbox.read_record_values() == [STANDBY_VALUE]


async def test_server_stopped_during_the_cache_flush(stack: tuple[Restartable, Sandbox]) -> None:
    temporal, sandbox = stack
    # The SSM wait answers slowly, so the flush is still running when the server goes down.
    sandbox.aws_proxy.add_rule(
        FaultRule("GetCommandInvocation", FaultKind.SLOW, count=3, delay_ms=1000)
    )
    handle = await start_failover(sandbox)
    await wait_for_phase(handle, "flush")

    client = await temporal.restart(kill=False)
    result = await result_after_restart(client, handle)

    assert result.result == Outcome.FAILED_OVER, result.reason
    assert [f.name for f in result.flushed] == ["magento-redis", "magento-app", "varnish"]
    assert sandbox.read_record_values() == [STANDBY_VALUE]
