"""The crash matrix: SIGKILL the worker at every kind of point, start a fresh one, and check
that the failover ends as an uncrashed one would, in the real systems.

Real processes, as in production: the sandbox (`failover sandbox up --no-worker`) runs the
Temporal dev server, moto behind the fault proxy, the clusters, Redis, Varnish and the
storefront; each case runs the worker (`python -m sandbox.crash`) with FAILOVER_CRASH_AT set,
waits for it to die by SIGKILL, starts a worker without it, and waits for the result
against a deadline. While a
case runs, a watcher reads the record or the target group straight from moto every 20 ms:
traffic must never point back at the dead side once moved, and the target group must
never be empty.

Cases alternate direction: each one kills the side that is active and fails over to the
other, so one sandbox serves a whole mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from temporalio.api.enums.v1 import EventType, PendingWorkflowTaskState, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.aws import aws_client_factory
from failover.client.operations import start_or_attach_failover
from failover.client.temporal import TemporalEndpoint, connect
from failover.config import AwsSettings, RedisCache, load_config
from failover.models import FailoverResult, Outcome, Side
from failover.names import WORKFLOW_TASK_TIMEOUT, failover_workflow_id
from sandbox.aws_fault_proxy import FaultKind, FaultRule, add_rule_remote, clear_rules_remote
from sandbox.net import free_port
from sandbox.search_sim import FaultMode, NodeFault, set_fault_remote
from sandbox.stack import (
    PRIMARY_SIM,
    PRIMARY_VALUE,
    SANDBOX_AWS_ENV,
    SANDBOX_CLUSTER,
    STANDBY_SIM,
    STANDBY_VALUE,
)
from sandbox.waiting import wait_for, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
BROKEN = "We can't find products matching the selection."
CASE_DEADLINE_SECONDS = 60.0

# Every step is covered: before it starts, in the middle of the long waits, and right after
# each side effect but before the activity reports completion. probe_side calls 1-3 are the
# confirmation rounds (the active side is down in all three), call 4 is the preflight.
DNS_POINTS = [
    "read_record:before",  # snapshot
    "probe_side:before:1",  # confirm
    "probe_side:before:4",  # preflight
    "probe_switch_target:before",  # preflight: who answers where the record will point
    "upsert_record:before",  # switch
    "upsert_record:after",  # the record changed, completion not reported
    "wait_insync:before",
    "wait_insync:heartbeat:2",  # mid-wait, GetChange answering PENDING
    "wait_insync:after",  # just before the TTL wait
    "flush_cache:before:1",
    "flush_cache:heartbeat:1",  # mid-wait for the SSM cache:flush invocations
    "flush_cache:after:3",  # Varnish purged, completion not reported
    "check_search_path:before",  # verify
    "check_storefront:after",  # verify_storefront
]
NLB_POINTS = [
    "describe_targets:before:1",  # snapshot
    "probe_side:before:1",  # confirm
    "probe_side:before:4",  # preflight
    "register_targets:before",
    "register_targets:after",  # both sets registered, completion not reported
    "wait_targets:heartbeat:1",  # mid-wait for the new targets to turn healthy
    "deregister_targets:before",
    "deregister_targets:after",  # old set out, completion not reported
    "wait_targets:heartbeat:2",  # mid-drain
    "flush_cache:heartbeat:1",  # mid-wait for SSM
    "flush_cache:after:3",
    "check_storefront:before",
]
# Promotion (replication on): before it, after its first index (its heartbeat), and after
# the last one but before it reports. Every follower must end promoted exactly once.
PROMOTION_POINTS = [
    "promote_followers:before",
    "promote_followers:heartbeat:1",
    "promote_followers:after",
]
PENDING_POLLS = 4  # GetChange PENDING answers for the cases that crash mid-INSYNC-wait
# A workflow task held by a killed worker must be done by the next one well before
# Temporal's default task timeout (10 s) would have handed it over.
HELD_TASK_RESUME_SECONDS = 5.0


@dataclass
class SandboxProcess:
    mode: str
    info: dict[str, Any]
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes]

    @property
    def config_path(self) -> str:
        return self.info["config_path"]


def start_sandbox(mode: str, tmp: Path, *, replication: bool = False) -> Iterator[SandboxProcess]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env = clean | SANDBOX_AWS_ENV | {"FAILOVER_STATE_DIR": str(tmp / "state")}
    log = (tmp / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [BIN / "failover", "sandbox", "up", "--no-worker", "--mode", mode,
         "--probe-interval", "0.5",
         "--replication" if replication else "--no-replication",
         "--port", str(free_port()), "--ui-port", str(free_port())],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    info_file = tmp / "state" / "sandbox.json"
    try:
        info = wait_until(
            lambda: info_file.exists() and json.loads(info_file.read_text()), "sandbox", 60
        )
        yield SandboxProcess(mode=mode, info=info, env=env, logs=tmp, process=process)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        log.close()


@pytest.fixture(scope="module")
def dns_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from start_sandbox("dns", tmp_path_factory.mktemp("dns"))


@pytest.fixture(scope="module")
def nlb_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from start_sandbox("nlb", tmp_path_factory.mktemp("nlb"))


@pytest.fixture(scope="module")
def replication_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from start_sandbox("dns", tmp_path_factory.mktemp("replication"), replication=True)


@dataclass
class ControlPlaneWatch:
    """Reads the record or the target group straight from moto while a case runs."""

    sandbox: SandboxProcess
    seen: list[tuple[str, ...]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def read(self) -> tuple[str, ...]:
        aws = AwsSettings(endpoint_url=self.sandbox.info["aws_endpoint"])
        if self.sandbox.mode == "nlb":
            config = load_config(self.sandbox.config_path)
            arn = config.clusters[0].switch.target_group_arn  # type: ignore[union-attr]
            elbv2 = aws_client_factory(aws, "elbv2")()
            answer = elbv2.describe_target_health(TargetGroupArn=arn)
            return tuple(
                sorted(
                    d["Target"]["Id"]
                    for d in answer["TargetHealthDescriptions"]
                    if d["TargetHealth"]["State"] not in ("draining", "unused")
                )
            )
        route53 = aws_client_factory(aws, "route53")()
        answer = route53.list_resource_record_sets(
            HostedZoneId=self.sandbox.info["hosted_zone_id"],
            StartRecordName="search.shop.internal.",
            StartRecordType="CNAME",
            MaxItems="1",
        )
        return tuple(r["Value"] for s in answer["ResourceRecordSets"] for r in s["ResourceRecords"])

    def __enter__(self) -> ControlPlaneWatch:
        self.seen.append(self.read())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            state = self.read()
            if state != self.seen[-1]:
                self.seen.append(state)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen.append(self.read())


def side_of(mode: str, state: tuple[str, ...]) -> Side | None:
    """Which side the control plane sends traffic to; None for an overlap or anything else."""
    if mode == "nlb":
        if state and all(ip.startswith("127.0.1.") for ip in state):
            return "primary"
        if state and all(ip.startswith("127.0.2.") for ip in state):
            return "standby"
        return None
    if state == (PRIMARY_VALUE,):
        return "primary"
    if state == (STANDBY_VALUE,):
        return "standby"
    return None


def expire_caches(sandbox: SandboxProcess) -> None:
    """The good pages cached by the last case expire, so this outage can poison them again."""
    for cache in load_config(sandbox.config_path).clusters[0].caches:
        if isinstance(cache, RedisCache):
            for db in (cache.db, cache.page_cache_db):
                redis.Redis(host=cache.host, port=cache.port, db=db).flushdb()
    response = httpx.request(
        "PURGE", sandbox.info["storefront_url"], headers={"X-Magento-Tags-Pattern": ".*"}
    )
    assert response.status_code == 200


def cli(sandbox: SandboxProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [BIN / "failover", *args], env=sandbox.env, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def start_worker(sandbox: SandboxProcess, log: Path, crash_at: str | None) -> subprocess.Popen:
    env = sandbox.env | {"TEMPORAL_ADDRESS": sandbox.info["temporal"]["address"]}
    if crash_at:
        env["FAILOVER_CRASH_AT"] = crash_at
    with log.open("ab") as out:
        return subprocess.Popen(
            # Triggered by hand: the case's crash point must meet exactly one failover.
            [sys.executable, "-m", "sandbox.crash", "--config", sandbox.config_path,
             "--no-monitors"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


@dataclass
class CaseOutcome:
    result: FailoverResult
    seen: list[tuple[str, ...]]
    crashed: bool
    from_side: Side
    seconds: float
    # Wall clock: the fresh worker seen polling (its start-up, seconds on a loaded machine,
    # is not what the held task waits for).
    restarted_at: float | None = None
    history: list[HistoryEvent] = field(default_factory=list)


async def run_case(
    sandbox: SandboxProcess, crash_at: str | None, *, hold_workflow_task: bool = False
) -> CaseOutcome:
    """One failover, its worker killed at `crash_at`, or (`hold_workflow_task`) while the
    run's first workflow task is handed to it: stopped (SIGSTOP) while it polls, it takes
    the task and never answers, and is then SIGKILLed."""
    watch_probe = ControlPlaneWatch(sandbox)
    active = side_of(sandbox.mode, watch_probe.read())
    assert active is not None, f"sandbox control plane in an unknown state: {watch_probe.read()}"
    dead, alive = (PRIMARY_SIM, STANDBY_SIM) if active == "primary" else (STANDBY_SIM, PRIMARY_SIM)
    control = sandbox.info["simulator_control_url"]
    await set_fault_remote(control, alive, None, NodeFault(FaultMode.HEALTHY))
    await set_fault_remote(control, dead, None, NodeFault(FaultMode.DOWN))
    proxy = sandbox.info["aws_proxy_url"]
    clear_rules_remote(proxy)
    if crash_at and crash_at.startswith("wait_insync:heartbeat"):
        add_rule_remote(proxy, FaultRule("GetChange", FaultKind.PENDING, count=PENDING_POLLS))

    storefront = sandbox.info["storefront_url"]
    await asyncio.to_thread(expire_caches, sandbox)
    async with httpx.AsyncClient(timeout=5) as http:  # a customer caches the broken page
        assert BROKEN in (await http.get(f"{storefront}/women.html")).text

    client = await connect(TemporalEndpoint(**sandbox.info["temporal"]))
    log = sandbox.logs / f"worker-{(crash_at or 'none').replace(':', '-')}.log"
    started = time.monotonic()
    restarted_at = None
    worker = start_worker(sandbox, log, crash_at)
    try:
        with ControlPlaneWatch(sandbox) as watch:
            if hold_workflow_task:
                await _polling(client, sandbox, worker)
                worker.send_signal(signal.SIGSTOP)
            config = load_config(sandbox.config_path)
            await start_or_attach_failover(
                client,
                config.cluster(SANDBOX_CLUSTER),
                task_queue=config.task_queue,
                reason=f"crash at {crash_at}",
            )
            if hold_workflow_task:
                await _first_task_started(client)
                worker.send_signal(signal.SIGKILL)
                code = await asyncio.to_thread(worker.wait, 10)
                assert code == -signal.SIGKILL, f"worker exited {code}: {log.read_text()}"
                worker = start_worker(sandbox, log, None)
                await _polling(client, sandbox, worker)
                restarted_at = time.time()
            elif crash_at:
                code = await asyncio.to_thread(worker.wait, CASE_DEADLINE_SECONDS)
                assert code == -signal.SIGKILL, f"worker exited {code}: {log.read_text()}"
                assert f"crash point {crash_at}" in log.read_text()
                worker = start_worker(sandbox, log, None)
            result = await asyncio.wait_for(_result(client), CASE_DEADLINE_SECONDS)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0, log.read_text()
    clear_rules_remote(proxy)
    history = await client.get_workflow_handle(
        failover_workflow_id(SANDBOX_CLUSTER)
    ).fetch_history()
    return CaseOutcome(
        result=result,
        seen=watch.seen,
        crashed=crash_at is not None or hold_workflow_task,
        from_side=active,
        seconds=time.monotonic() - started,
        restarted_at=restarted_at,
        history=list(history.events),
    )


async def _polling(client: Client, sandbox: SandboxProcess, worker: subprocess.Popen) -> None:
    """Until the server lists this worker process among the workflow task queue's pollers."""
    queue = load_config(sandbox.config_path).task_queue
    request = DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue))

    async def listed() -> bool:
        pollers = (await client.workflow_service.describe_task_queue(request)).pollers
        return any(p.identity.startswith(f"{worker.pid}@") for p in pollers)

    await wait_for(listed, what="the worker to poll for workflow tasks", timeout_s=30)


async def _first_task_started(client: Client) -> None:
    """Until the run's first workflow task is started: handed to the stopped worker."""
    handle = client.get_workflow_handle(failover_workflow_id(SANDBOX_CLUSTER))
    started = PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED

    async def taken() -> bool:
        pending = (await handle.describe()).raw_description.pending_workflow_task
        return pending.state == started

    await wait_for(taken, what="the first workflow task to be handed out", timeout_s=10)


async def _result(client: Client) -> FailoverResult:
    handle = client.get_workflow_handle(
        failover_workflow_id(SANDBOX_CLUSTER), result_type=FailoverResult
    )
    return await handle.result()


def check_case(sandbox: SandboxProcess, outcome: CaseOutcome) -> None:
    result, mode = outcome.result, sandbox.mode
    target: Side = "standby" if outcome.from_side == "primary" else "primary"
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (result.from_side, result.to_side) == (outcome.from_side, target)
    assert result.warnings == []
    assert [f.name for f in result.flushed] == ["magento-redis", "magento-app", "varnish"]
    sides = [side_of(mode, state) for state in outcome.seen]
    assert sides[0] == outcome.from_side and sides[-1] == target, outcome.seen
    # Once traffic moved to the live side it never went back to the dead one ...
    moved = sides.index(target)
    assert all(side == target for side in sides[moved:]), outcome.seen
    # ... and in NLB mode the target group was never empty (both sets may overlap briefly).
    assert all(state for state in outcome.seen), outcome.seen
    # Between the two, only the NLB overlap (both sets registered) may be seen.
    assert all(side is None for side in sides[1:moved]), outcome.seen
    if mode == "dns":
        assert moved == 1, outcome.seen


def _storefront_recovered(sandbox: SandboxProcess) -> bool:
    response = httpx.get(f"{sandbox.info['storefront_url']}/women.html", timeout=5)
    return response.status_code == 200 and BROKEN not in response.text


async def _run_and_check(sandbox: SandboxProcess, crash_at: str | None) -> None:
    outcome = await run_case(sandbox, crash_at)
    check_case(sandbox, outcome)
    assert _storefront_recovered(sandbox)
    steps = " ".join(f"{s.name}={s.seconds:.2f}" for s in outcome.result.steps)
    print(
        f"\ncrash-matrix {sandbox.mode} {crash_at or 'no crash'}: {outcome.result.result.value} "
        f"{outcome.from_side}->{outcome.result.to_side} in {outcome.seconds:.1f}s; {steps}"
    )


@pytest.mark.parametrize("crash_at", [None, *DNS_POINTS])
async def test_dns_crash_matrix(dns_sandbox: SandboxProcess, crash_at: str | None) -> None:
    await _run_and_check(dns_sandbox, crash_at)


@pytest.mark.parametrize("crash_at", [None, *NLB_POINTS])
async def test_nlb_crash_matrix(nlb_sandbox: SandboxProcess, crash_at: str | None) -> None:
    await _run_and_check(nlb_sandbox, crash_at)


def _data(sandbox: SandboxProcess, cluster: str) -> dict[str, Any]:
    url = f"{sandbox.info['simulator_control_url']}/clusters/{cluster}/data"
    return httpx.get(url, timeout=10).json()


def _storefront_followers(data: dict[str, Any]) -> list[str]:
    behind = {
        i for name, indices in data["aliases"].items() if "_product_" in name for i in indices
    }
    return sorted(i for i in behind if data["indices"][i]["follower"])


async def _reseed_the_side_without_traffic(sandbox: SandboxProcess) -> None:
    """Between cases: the last case promoted one side, so the other is re-seeded from it
    (with a worker of its own), as an operator would before the next failover."""
    cli(sandbox, "sandbox", "fault", PRIMARY_SIM, "all", "healthy")
    cli(sandbox, "sandbox", "fault", STANDBY_SIM, "all", "healthy")
    worker = start_worker(sandbox, sandbox.logs / "worker-reseed.log", None)
    try:
        cli(sandbox, "reseed", SANDBOX_CLUSTER, "--reason", "crash matrix: next case")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


@pytest.mark.parametrize("crash_at", PROMOTION_POINTS)
async def test_promotion_crash_matrix(replication_sandbox: SandboxProcess, crash_at: str) -> None:
    sandbox = replication_sandbox
    await _reseed_the_side_without_traffic(sandbox)
    watch = ControlPlaneWatch(sandbox)
    target = STANDBY_SIM if side_of(sandbox.mode, watch.read()) == "primary" else PRIMARY_SIM
    before = _data(sandbox, target)
    following = _storefront_followers(before)
    assert len(following) == 2, before

    outcome = await run_case(sandbox, crash_at)
    check_case(sandbox, outcome)
    result = outcome.result
    assert result.promotion is not None
    assert sorted(result.promotion.promoted + result.promotion.already) == following
    assert [s.outcome for s in result.steps if s.name in ("promote", "verify_writes")] == [
        "ok",
        "ok",
    ]
    after = _data(sandbox, target)
    assert _storefront_followers(after) == []
    # Exactly once each, whatever the crash: a retry found the index already promoted.
    promoted = {
        i: after["promotions"].get(i, 0) - before["promotions"].get(i, 0) for i in following
    }
    assert promoted == {i: 1 for i in following}, promoted
    print(f"\npromotion {crash_at}: promoted {result.promotion.promoted}, "
          f"already {result.promotion.already}")  # fmt: skip


def _seconds(event: HistoryEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e9


async def test_a_workflow_task_held_by_a_killed_worker_is_done_by_the_next_one_quickly(
    dns_sandbox: SandboxProcess,
) -> None:
    outcome = await run_case(dns_sandbox, None, hold_workflow_task=True)
    check_case(dns_sandbox, outcome)
    events, restarted_at = outcome.history, outcome.restarted_at
    assert restarted_at is not None
    # The history shows the held task: started (by the killed worker), then timed out.
    [timed_out] = [
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
    ]
    attributes = timed_out.workflow_task_timed_out_event_attributes
    assert attributes.timeout_type == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
    held = next(e for e in events if e.event_id == attributes.started_event_id)
    held_for = _seconds(timed_out) - _seconds(held)
    assert held_for < WORKFLOW_TASK_TIMEOUT.total_seconds() + 1, held_for
    done = next(
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        and _seconds(e) > restarted_at
    )
    resumed = _seconds(done) - restarted_at
    print(
        f"\nheld workflow task: timed out after {held_for:.2f}s, done {resumed:.2f}s after the "
        "new worker was seen polling"
    )
    assert resumed < HELD_TASK_RESUME_SECONDS, resumed
