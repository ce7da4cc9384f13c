"""The Region switch's crash matrix (issue 17): SIGKILL the worker in each of the switch's own
steps, start a fresh one, and check that the switch ends as an uncrashed one does, in the real
systems.

Real processes, as in production: the sandbox (`failover sandbox up --region --no-worker`)
runs the Temporal dev server, moto behind the fault proxy with the two-Region responder, both
Regions' ALBs, app servers, Redis, Varnish and storefronts, and the search clusters; each case
runs the worker (`sandbox.crash`'s main) with FAILOVER_CRASH_AT set, waits for it to die by
SIGKILL, starts a fresh worker without it, and waits for the result against a deadline. Each
worker process is loaded ahead and started once: the seconds Python spends importing it are
not what a crash matrix measures. While a case runs, a watcher reads www straight from moto
and the writer from the proxy every 20 ms: once moved, neither may ever point back.

Cases alternate direction: each one is a planned graceful switch from the Region serving www
to the other, so both Regions stay healthy and one sandbox serves the whole matrix. Before
each case the target Region's app tier goes back to its pilot light, so the scale step runs.
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
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import dns.asyncresolver
import httpx
import pytest
from botocore.config import Config
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from activities.aws import aws_client_factory
from failover.client.region import region_switch_request, start_region_switch
from failover.client.temporal import TemporalEndpoint, connect
from failover.config import AppConfig, AwsSettings, StorefrontConfig, load_config
from failover.models import Outcome, RegionRole, RegionSwitchResult, other_region
from sandbox.aws_fault_proxy import FaultKind, FaultRule, add_rule_remote, clear_rules_remote
from sandbox.crash import CRASH_ENV, CrashPoint
from sandbox.net import free_port
from sandbox.stack import SANDBOX_AWS_ENV
from sandbox.waiting import wait_for, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.regions]

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
STOREFRONT = "shop"
CASE_DEADLINE_SECONDS = 60.0
SETTLE_SECONDS = 30.0
PILOT_LIGHT = 1
CART = "mutation { createEmptyCart }"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

# Each new step of the switch: before its change, right after it (done, completion not
# reported), and in the middle of each wait. The search failover (a child run on the same
# worker) calls upsert_record, wait_insync and flush_cache first, so the Region's own call
# of those is the n-th after the child's: one UPSERT, one INSYNC poll, three flushes.
POINTS = [
    "scale_app_tier:after",  # scale: DesiredCapacity and MinSize set, completion not reported
    "wait_capacity:heartbeat:2",  # mid-wait for the new instance to turn InService and healthy
    "switch_database:before",  # the switchover not yet asked for
    "switch_database:after",  # SwitchoverGlobalCluster accepted, completion not reported
    "wait_database_writer:heartbeat:2",  # mid-promotion of the target cluster
    "failover_cache_datastore:after",  # the datastore modifying, completion not reported
    "wait_cache_datastore:heartbeat:1",  # the first poll of the datastore's primary
    "check_cart:after",  # verify_dr: a cart made through the target's ALB, not reported
    "upsert_record:after:2",  # www's UPSERT done (call 1 is the search record's)
    "wait_insync:heartbeat:3",  # www's INSYNC wait, GetChange answering PENDING
    "flush_cache:after:5",  # the target's Varnish purged (calls 1-3 are the search child's)
]
# GetChange PENDING answers for the case that crashes mid-INSYNC-wait; the first GetChange
# (the search child's) is let through, so the wait that crashes is www's.
PENDING_POLLS = 4
PENDING_SKIP = 1
# The timeline of a planned switch, each step once whatever the crash.
STEPS = [
    "snapshot", "confirm", "preflight", "scale", "wait_capacity", "database", "wait_database",
    "caches", "wait_caches", "search", "verify_dr", "switch", "wait", "ttl_wait", "flush",
    "verify",
]  # fmt: skip


@dataclass
class RegionSandbox:
    """The sandbox process, and what sandbox.json says about it."""

    info: dict[str, Any]
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes]

    @cached_property
    def config(self) -> AppConfig:
        return load_config(self.info["config_path"])

    @property
    def shop(self) -> StorefrontConfig:
        return self.config.storefront(STOREFRONT)

    @property
    def proxy(self) -> str:
        return str(self.info["aws_proxy_url"])

    def site(self, role: RegionRole) -> dict[str, Any]:
        """The Region's entry in sandbox.json: its ALB's name, ASG, cluster ARN, ..."""
        (found,) = [r for r in self.info["regions"] if r["role"] == role]
        return found

    clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    def aws(self, service: str, region: str) -> Any:
        """A client through the proxy, so the two-Region responder sees and answers it."""
        if (service, region) not in self.clients:
            self.clients[(service, region)] = boto3.client(
                service, endpoint_url=self.proxy, region_name=region, config=NO_RETRIES
            )
        return self.clients[(service, region)]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegionSandbox]:
    tmp = tmp_path_factory.mktemp("region-crash")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env = clean | SANDBOX_AWS_ENV | {"FAILOVER_STATE_DIR": str(tmp / "state")}
    log = (tmp / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [BIN / "failover", "sandbox", "up", "--region", "--no-worker", "--no-monitors",
         "--port", str(free_port()), "--ui-port", str(free_port())],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    info_file = tmp / "state" / "sandbox.json"
    try:
        info = wait_until(
            lambda: info_file.exists() and json.loads(info_file.read_text()), "sandbox", 90
        )
        yield RegionSandbox(info=info, env=env, logs=tmp, process=process)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        log.close()


# --------------------------------------------------------------------------- reading state


def www_values(sandbox: RegionSandbox, route53: Any) -> tuple[str, ...]:
    """www's values, read straight from moto (not through the proxy)."""
    name = sandbox.shop.www.record_name
    answer = route53.list_resource_record_sets(
        HostedZoneId=sandbox.shop.www.hosted_zone_id,
        StartRecordName=name,
        StartRecordType="CNAME",
        MaxItems="1",
    )
    return tuple(
        r["Value"].rstrip(".")
        for s in answer["ResourceRecordSets"]
        if s["Name"] == name and s["Type"] == "CNAME"
        for r in s["ResourceRecords"]
    )


def direct_route53(sandbox: RegionSandbox) -> Any:
    return aws_client_factory(AwsSettings(endpoint_url=sandbox.info["aws_endpoint"]), "route53")()


def writer(sandbox: RegionSandbox, http: httpx.Client) -> str | None:
    """The global cluster's writer as the responder keeps it (its control API)."""
    answer = http.get(
        f"{sandbox.proxy}/__faults__/dr/writer",
        params={"global_cluster": sandbox.info["global_cluster_id"]},
    )
    answer.raise_for_status()
    return answer.json()["writer"]


def serving_role(sandbox: RegionSandbox) -> RegionRole:
    values = www_values(sandbox, direct_route53(sandbox))
    for role in ("primary", "dr"):
        if values == (sandbox.site(role)["alb_name"],):
            return role  # type: ignore[return-value]
    raise AssertionError(f"www in an unknown state: {values}")


@dataclass
class ControlPlaneWatch:
    """Reads www (from moto) and the writer (from the responder) every 20 ms while a case
    runs; keeps each change."""

    sandbox: RegionSandbox
    www: list[tuple[str, ...]] = field(default_factory=list)
    writers: list[str | None] = field(default_factory=list)
    failed: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def _look(self) -> None:
        www = www_values(self.sandbox, self._route53)
        if not self.www or www != self.www[-1]:
            self.www.append(www)
        now = writer(self.sandbox, self._http)
        if not self.writers or now != self.writers[-1]:
            self.writers.append(now)

    def __enter__(self) -> ControlPlaneWatch:
        self._route53 = direct_route53(self.sandbox)
        self._http = httpx.Client(timeout=5, trust_env=False)
        self._look()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.02):
                self._look()
        except Exception as exc:  # a watch with gaps proves nothing: the case fails on it
            self.failed = exc

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._look()
        self._http.close()
        assert self.failed is None, f"the watcher stopped: {self.failed!r}"


def group_state(sandbox: RegionSandbox, role: RegionRole) -> dict[str, Any]:
    site = sandbox.site(role)
    answer = sandbox.aws("autoscaling", site["region"]).describe_auto_scaling_groups(
        AutoScalingGroupNames=[site["auto_scaling_group"]]
    )
    (group,) = answer["AutoScalingGroups"]
    return group


def pilot_light(sandbox: RegionSandbox, role: RegionRole) -> None:
    """The Region's app tier back to one instance, and until that one alone takes traffic
    (the one scaled in may still drain)."""
    site = sandbox.site(role)
    region, name = site["region"], site["auto_scaling_group"]
    sandbox.aws("autoscaling", region).update_auto_scaling_group(
        AutoScalingGroupName=name, DesiredCapacity=PILOT_LIGHT, MinSize=PILOT_LIGHT
    )
    elbv2 = sandbox.aws("elbv2", region)

    def settled() -> bool:
        group = group_state(sandbox, role)
        instances = group["Instances"]
        if (group["DesiredCapacity"], group["MinSize"], len(instances)) != (1, 1, 1):
            return False
        (kept,) = instances
        if (kept["LifecycleState"], kept["HealthStatus"]) != ("InService", "Healthy"):
            return False
        health = elbv2.describe_target_health(TargetGroupArn=site["target_group_arn"])
        taking = {
            d["Target"]["Id"]
            for d in health["TargetHealthDescriptions"]
            if d["TargetHealth"]["State"] in ("healthy", "initial")
        }
        return taking == {kept["InstanceId"]}

    wait_until(settled, f"{name} at its pilot light", SETTLE_SECONDS)


async def cart_through_www(sandbox: RegionSandbox) -> str:
    """A cart created as a customer creates one: www resolved through the sandbox DNS."""
    www = httpx.URL(sandbox.info["www_url"])
    host, _, port = sandbox.info["dns_server"].rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [host], int(port)
    address = (await resolver.resolve(www.host, "A", search=False))[0].address
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        answer = await http.post(
            f"http://{address}:{www.port}/graphql",
            json={"query": CART},
            headers={"Host": www.netloc.decode()},
        )
    body = answer.json()
    assert "errors" not in body, body
    return str(body["data"]["createEmptyCart"])


def retried(events: list[HistoryEvent]) -> set[str]:
    """Activity types the run needed a second attempt of: a crash lost the first."""
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return {
        scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt > 1
    }


# --------------------------------------------------------------------------- one case


# A worker process with its imports done (seconds of them, on this machine) that waits for
# one line on stdin, its environment and arguments, and then runs `python -m sandbox.crash`'s
# main with them. Stdin closed without a line ends it without starting.
WARM_WORKER = """
import json, os, sys
import sandbox.crash, worker
line = sys.stdin.readline()
if line:
    start = json.loads(line)
    os.environ.clear()
    os.environ.update(start["env"])
    sys.argv[1:] = start["args"]
    sandbox.crash.main()
"""


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM, as a deploy stops a worker: it finishes and exits 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(30) == 0, self.log.read_text()


class Workers:
    """Fresh worker processes, each started once and never reused. One is always loading or
    loaded ahead (the first while the sandbox starts), so a case waits for a worker's start,
    not for Python importing it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._made = 0
        self._spare = self._spawn()

    def _spawn(self) -> WorkerProcess:
        self._made += 1
        log = self.logs / f"worker-{self._made}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", WARM_WORKER],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
            )  # fmt: skip
        return WorkerProcess(process, log)

    def start(self, sandbox: RegionSandbox, crash_at: str | None) -> WorkerProcess:
        """A worker polling from now on (once loaded), killed at `crash_at`; the next one
        starts loading."""
        worker, self._spare = self._spare, self._spawn()
        env = sandbox.env | {"TEMPORAL_ADDRESS": sandbox.info["temporal"]["address"]}
        env.pop(CRASH_ENV, None)
        if crash_at:
            env[CRASH_ENV] = crash_at
        # Triggered by hand: the case's crash point must meet exactly one switch.
        args = ["--config", sandbox.info["config_path"], "--no-monitors"]
        assert worker.process.stdin is not None
        worker.process.stdin.write(json.dumps({"env": env, "args": args}).encode() + b"\n")
        worker.process.stdin.close()
        return worker

    def close(self) -> None:
        assert self._spare.process.stdin is not None
        self._spare.process.stdin.close()
        assert self._spare.process.wait(30) == 0, self._spare.log.read_text()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    made = Workers(tmp_path_factory.mktemp("region-crash-workers"))
    try:
        yield made
    finally:
        made.close()


@dataclass
class CaseOutcome:
    result: RegionSwitchResult
    from_role: RegionRole
    to_role: RegionRole
    www: list[tuple[str, ...]]
    writers: list[str | None]
    seconds: float
    retried: set[str]


async def run_case(sandbox: RegionSandbox, workers: Workers, crash_at: str | None) -> CaseOutcome:
    """One planned graceful switch away from the Region serving www, its worker killed at
    `crash_at`, the rest done by a fresh worker."""
    serving = serving_role(sandbox)
    target = other_region(serving)
    request = region_switch_request(
        sandbox.config,
        STOREFRONT,
        reason=f"crash matrix: {crash_at or 'no crash'}",
        planned=True,
        mode="graceful",
        to_region=target,
    )
    client = await connect(TemporalEndpoint(**sandbox.info["temporal"]))
    # The case's worker starts polling while the target's tier scales in: no run is waiting
    # for it yet.
    worker = workers.start(sandbox, crash_at)
    result_task: asyncio.Future[RegionSwitchResult] | None = None
    try:
        await asyncio.to_thread(pilot_light, sandbox, target)
        clear_rules_remote(sandbox.proxy)
        if crash_at and crash_at.startswith("wait_insync:heartbeat"):
            rule = FaultRule("GetChange", FaultKind.PENDING, count=PENDING_POLLS, skip=PENDING_SKIP)
            add_rule_remote(sandbox.proxy, rule)
        started = time.monotonic()
        with ControlPlaneWatch(sandbox) as watch:
            handle = await start_region_switch(
                client, request, task_queue=sandbox.config.task_queue
            )
            pending = result_task = asyncio.ensure_future(handle.result())
            if crash_at:
                crashed = worker

                async def died_or_done() -> bool:
                    return crashed.process.poll() is not None or pending.done()

                await wait_for(
                    died_or_done, what=f"the crash at {crash_at}", timeout_s=CASE_DEADLINE_SECONDS
                )
                code = crashed.process.poll()
                assert code == -signal.SIGKILL, f"worker exited {code}: {crashed.log.read_text()}"
                reached = f"crash point {CrashPoint.parse(crash_at)} reached"
                assert reached in crashed.log.read_text()
                worker = workers.start(sandbox, None)
            result = await asyncio.wait_for(pending, CASE_DEADLINE_SECONDS)
    finally:
        if result_task is not None:
            result_task.cancel()
        worker.stop()
        clear_rules_remote(sandbox.proxy)
    history = await handle.fetch_history()
    return CaseOutcome(
        result=result,
        from_role=serving,
        to_role=target,
        www=watch.www,
        writers=watch.writers,
        seconds=time.monotonic() - started,
        retried=retried(list(history.events)),
    )


async def check_case(sandbox: RegionSandbox, crash_at: str | None, case: CaseOutcome) -> None:
    """The one correct end: the whole storefront in the target Region, moved once."""
    result, shop = case.result, sandbox.shop
    source, target = sandbox.site(case.from_role), sandbox.site(case.to_role)
    assert result.result == Outcome.FAILED_OVER, result.reason
    assert (result.from_region, result.to_region, result.mode) == (
        case.from_role,
        case.to_role,
        "graceful",
    )
    assert result.database_switched
    assert result.warnings == []
    assert [s.name for s in result.steps] == STEPS
    assert [s.name for s in result.steps if s.outcome != "ok"] == []
    assert result.scaled_from == {"desired": PILOT_LIGHT, "min": PILOT_LIGHT}
    region = target["region"]
    assert [f.name for f in result.flushed] == [f"redis-{region}", f"varnish-{region}"]
    assert result.search is not None and result.search.result == Outcome.FAILED_OVER
    assert result.search.to_side == target["search_side"]
    # www and the writer each moved exactly once, and never back.
    assert case.www == [(source["alb_name"],), (target["alb_name"],)], case.www
    assert case.writers == [source["db_cluster_arn"], target["db_cluster_arn"]], case.writers
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert await asyncio.to_thread(writer, sandbox, http) == target["db_cluster_arn"]
    group = await asyncio.to_thread(group_state, sandbox, case.to_role)
    assert group["DesiredCapacity"] >= shop.site(case.to_role).capacity, group
    assert len(await cart_through_www(sandbox)) == 32
    if crash_at is not None:
        # The crash was in the Region switch's own step, and its retry finished it.
        assert CrashPoint.parse(crash_at).activity in case.retried, case.retried


@pytest.mark.parametrize("crash_at", [None, *POINTS])
async def test_region_crash_matrix(
    workers: Workers, sandbox: RegionSandbox, crash_at: str | None
) -> None:
    case = await run_case(sandbox, workers, crash_at)
    await check_case(sandbox, crash_at, case)
    steps = " ".join(f"{s.name}={s.seconds:.2f}" for s in case.result.steps)
    print(
        f"\nregion-crash-matrix {crash_at or 'no crash'}: {case.result.result.value} "
        f"{case.from_role}->{case.to_role} in {case.seconds:.1f}s; {steps}"
    )
