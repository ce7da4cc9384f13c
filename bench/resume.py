"""Resume time after a worker crash: from the new worker's start until the interrupted step
runs again.

Real processes: the sandbox (`failover sandbox up --no-worker`), a worker killed by SIGKILL
in the middle of the Route 53 INSYNC wait (GetChange answering PENDING), and a fresh worker
started at once, as a supervisor (systemd, ECS, Kubernetes) would. The moment the step runs
again is read from Temporal's history: the start time of the wait activity's next attempt.

    .venv/bin/python bench/resume.py [--runs 5]

Prints one line per run and, last, `resume_seconds=<median>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.api.enums.v1 import EventType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from failover.models import FailoverResult  # noqa: E402
from failover.net import free_port  # noqa: E402
from failover.operations import failover_workflow_id  # noqa: E402
from failover.temporal import TemporalEndpoint, connect  # noqa: E402
from sandbox.aws_fault_proxy import FaultKind, FaultRule, add_rule_remote  # noqa: E402
from sandbox.stack import PRIMARY_SIM, SANDBOX_AWS_ENV, SANDBOX_CLUSTER, STANDBY_SIM  # noqa: E402
from sandbox.waiting import wait_until  # noqa: E402

BIN = Path(sys.executable).parent
CRASH_AT = "wait_insync:heartbeat:2"


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [BIN / "failover", *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def worker(env: dict[str, str], config: str, log: Path, crash_at: str | None) -> subprocess.Popen:
    extra = {"FAILOVER_CRASH_AT": crash_at} if crash_at else {}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, ROOT / "worker.py", "--config", config, "--no-monitors"],
            env=env | extra,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def resumed_at(endpoint: TemporalEndpoint, run_id: str) -> float:
    """Start time of the wait activity's last attempt, from the workflow's history."""
    client = await connect(endpoint)
    handle = client.get_workflow_handle(
        failover_workflow_id(SANDBOX_CLUSTER), run_id=run_id, result_type=FailoverResult
    )
    await handle.result()
    history = await handle.fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "wait_insync"
    }
    for event in history.events:
        attributes = event.activity_task_started_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and attributes.scheduled_event_id in scheduled
            and attributes.attempt >= 2
        ):
            return event.event_time.ToDatetime().timestamp() + 0.0
    raise SystemExit("the wait step was not retried: the crash did not interrupt it")


def one_run(env: dict[str, str], info: dict, directory: Path, index: int) -> float:
    dead, alive = (PRIMARY_SIM, STANDBY_SIM) if index % 2 == 0 else (STANDBY_SIM, PRIMARY_SIM)
    run(env, "sandbox", "fault", alive, "all", "healthy")
    run(env, "sandbox", "fault", dead, "all", "down")
    add_rule_remote(info["aws_proxy_url"], FaultRule("GetChange", FaultKind.PENDING, count=8))
    worker_env = env | {"TEMPORAL_ADDRESS": info["temporal"]["address"]}
    log = directory / f"worker-{index}.log"
    crashing = worker(worker_env, info["config_path"], log, CRASH_AT)
    wait_until(lambda: "worker polling" in log.read_text(), "the first worker")
    started = json.loads(run(env, "trigger", SANDBOX_CLUSTER, "--json"))
    crashing.wait(60)
    restarted_at = time.time()
    fresh = worker(worker_env, info["config_path"], log, None)
    try:
        resumed = asyncio.run(resumed_at(TemporalEndpoint(**info["temporal"]), started["run_id"]))
    finally:
        fresh.send_signal(signal.SIGTERM)
        fresh.wait(30)
    return resumed - restarted_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env = clean | SANDBOX_AWS_ENV | {"FAILOVER_STATE_DIR": str(directory / "state")}
    with (directory / "sandbox.log").open("wb") as log:
        sandbox = subprocess.Popen(
            [BIN / "failover", "sandbox", "up", "--no-worker",
             "--port", str(free_port()), "--ui-port", str(free_port())],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        info_file = directory / "state" / "sandbox.json"
        info = wait_until(
            lambda: info_file.exists() and json.loads(info_file.read_text()), "sandbox"
        )
        samples = []
        for index in range(args.runs):
            seconds = one_run(env, info, directory, index)
            samples.append(seconds)
            print(f"run {index + 1}: crash at {CRASH_AT}, step ran again {seconds:.3f} s "
                  f"after the new worker started", flush=True)  # fmt: skip
        print(f"min={min(samples):.3f} max={max(samples):.3f} runs={len(samples)}")
        print(f"resume_seconds={statistics.median(samples):.3f}", flush=True)
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.wait(30)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
