"""Resume time after a worker crash: from the new worker's start to the run's next step.

Real processes: the sandbox (`failover sandbox up --no-worker`), a worker killed by SIGKILL
at a random moment 0.2 to 3 s after a failover was triggered (seeded: the seed is printed, and
`--seed` repeats a series), and a fresh worker started at once, as a supervisor (systemd,
ECS, Kubernetes) would. `--crash-at <activity>:<phase>[:<n>]` kills it at a crash point
instead (sandbox/crash.py), e.g. `wait_insync:heartbeat:2`.

Everything is read from Temporal's history, not from sleeps: the run's next step is the
first event after the new worker started that shows progress (a workflow task completed
or an activity task started), and what the killed worker held is named from the events
that followed it (a workflow task timed out, an activity attempt retried). Each run must
still end `failed_over`, from the side that was active to the other.

    .venv/bin/python bench/resume.py [--runs 20] [--seed S] [--crash-at POINT]

Prints one line per run, the workflow tasks' own durations, and, last, one line:
`resume_seconds=<p50> resume_p95_seconds=<p95> resume_max_seconds=<max> runs=<n> seed=<s>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from failover.client.temporal import TemporalEndpoint, connect  # noqa: E402
from failover.models import FailoverResult, Outcome, Side  # noqa: E402
from failover.names import WORKFLOW_TASK_TIMEOUT, failover_workflow_id  # noqa: E402
from sandbox.aws_fault_proxy import (  # noqa: E402
    FaultKind,
    FaultRule,
    add_rule_remote,
    clear_rules_remote,
)
from sandbox.net import free_port  # noqa: E402
from sandbox.stack import PRIMARY_SIM, SANDBOX_AWS_ENV, SANDBOX_CLUSTER, STANDBY_SIM  # noqa: E402
from sandbox.waiting import wait_until  # noqa: E402

BIN = Path(sys.executable).parent
KILL_AFTER_SECONDS = (0.2, 3.0)
RUN_DEADLINE_SECONDS = 90.0  # one run's result, crash and resume included
PROGRESS = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    }
)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [BIN / "failover", *args], env=env, capture_output=True, text=True, check=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout


def worker(env: dict[str, str], config: str, log: Path, crash_at: str | None) -> subprocess.Popen:
    extra = {"FAILOVER_CRASH_AT": crash_at} if crash_at else {}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox.crash", "--config", config, "--no-monitors"],
            env=env | extra,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def at(event: HistoryEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e9


@dataclass
class Sample:
    seconds: float | None  # new worker's start → next step; None: the run ended first
    held: str  # what the killed worker held, read from the history
    result: FailoverResult
    task_seconds: list[float]  # every workflow task's started → completed


def read_history(
    events: list[HistoryEvent], killed_at: float, restarted_at: float
) -> tuple[float | None, str, list[float]]:
    """The resume time, what the dead worker held, and the workflow tasks' durations."""
    ended = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
    if ended and at(ended[0]) <= killed_at:
        return None, "nothing: the run had ended", []
    progress = next(
        (at(e) for e in events if e.event_type in PROGRESS and at(e) > restarted_at), None
    )
    resumed = None if progress is None else progress - restarted_at
    held = []
    by_id = {e.event_id: e for e in events}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            attributes = event.workflow_task_timed_out_event_attributes
            started = by_id.get(attributes.started_event_id)
            if attributes.timeout_type == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE and started:
                held.append(f"a workflow task (timed out after {at(event) - at(started):.1f} s)")
            elif attributes.timeout_type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START:
                held.append("its sticky queue")
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            if attributes.attempt >= 2 and at(event) > killed_at:
                scheduled = by_id[attributes.scheduled_event_id]
                name = scheduled.activity_task_scheduled_event_attributes.activity_type.name
                cause = attributes.last_failure.message or "retried"
                held.append(f"activity {name} ({cause})")
    tasks = []
    started_at: dict[int, float] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started_at[event.event_id] = at(event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            began = started_at.get(event.workflow_task_completed_event_attributes.started_event_id)
            if began is not None:
                tasks.append(at(event) - began)
    return resumed, "; ".join(held) or "nothing in flight", tasks


async def outcome(endpoint: TemporalEndpoint, run_id: str) -> tuple[FailoverResult, list]:
    client = await connect(endpoint)
    handle = client.get_workflow_handle(
        failover_workflow_id(SANDBOX_CLUSTER), run_id=run_id, result_type=FailoverResult
    )
    result = await asyncio.wait_for(handle.result(), RUN_DEADLINE_SECONDS)
    history = await handle.fetch_history()
    return result, list(history.events)


def one_run(
    env: dict[str, str],
    info: dict,
    directory: Path,
    index: int,
    active: Side,
    kill_after: float | None,
    crash_at: str | None,
) -> Sample:
    dead, alive = (PRIMARY_SIM, STANDBY_SIM) if active == "primary" else (STANDBY_SIM, PRIMARY_SIM)
    cli(env, "sandbox", "fault", alive, "all", "healthy")
    cli(env, "sandbox", "fault", dead, "all", "down")
    clear_rules_remote(info["aws_proxy_url"])
    if crash_at and crash_at.startswith("wait_insync:heartbeat"):
        add_rule_remote(info["aws_proxy_url"], FaultRule("GetChange", FaultKind.PENDING, count=8))
    worker_env = env | {"TEMPORAL_ADDRESS": info["temporal"]["address"]}
    log = directory / f"worker-{index}.log"
    first = worker(worker_env, info["config_path"], log, crash_at)
    fresh = None
    try:
        wait_until(lambda: "worker polling" in log.read_text(), "the first worker", 60)
        started = json.loads(cli(env, "trigger", SANDBOX_CLUSTER, "--json"))
        if kill_after is not None:
            time.sleep(kill_after)
            first.send_signal(signal.SIGKILL)
        first.wait(RUN_DEADLINE_SECONDS)
        killed_at = time.time()
        if first.returncode != -signal.SIGKILL:
            raise SystemExit(f"the first worker exited {first.returncode}: see {log}")
        restarted_at = time.time()
        fresh = worker(worker_env, info["config_path"], log, None)
        endpoint = TemporalEndpoint(**info["temporal"])
        result, events = asyncio.run(outcome(endpoint, started["run_id"]))
    finally:
        if first.poll() is None:
            first.kill()
        if fresh is not None:
            stop(fresh)
    clear_rules_remote(info["aws_proxy_url"])
    seconds, held, tasks = read_history(events, killed_at, restarted_at)
    return Sample(seconds=seconds, held=held, result=result, task_seconds=tasks)


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--crash-at", default=None, help="a crash point instead of a random kill")
    args = parser.parse_args()
    if not 1 <= args.runs <= 500:
        raise SystemExit("--runs: 1 to 500")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    chance = random.Random(seed)
    print(f"seed={seed} runs={args.runs} workflow_task_timeout={WORKFLOW_TASK_TIMEOUT}", flush=True)
    directory = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env = clean | SANDBOX_AWS_ENV | {"FAILOVER_STATE_DIR": str(directory / "state")}
    with (directory / "sandbox.log").open("wb") as log:
        sandbox = subprocess.Popen(
            [BIN / "failover", "sandbox", "up", "--no-worker",
             "--port", str(free_port()), "--ui-port", str(free_port())],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    wrong = 0
    try:
        info_file = directory / "state" / "sandbox.json"
        info = wait_until(
            lambda: info_file.exists() and json.loads(info_file.read_text()), "sandbox", 60
        )
        samples: list[float] = []
        tasks: list[float] = []
        active: Side = "primary"
        for index in range(args.runs):
            kill_after = None if args.crash_at else chance.uniform(*KILL_AFTER_SECONDS)
            sample = one_run(env, info, directory, index, active, kill_after, args.crash_at)
            target: Side = "standby" if active == "primary" else "primary"
            result = sample.result
            right = result.result == Outcome.FAILED_OVER and (
                result.from_side,
                result.to_side,
            ) == (active, target)
            wrong += not right
            tasks += sample.task_seconds
            how = f"crash at {args.crash_at}" if args.crash_at else f"killed {kill_after:.2f} s in"
            resumed = "—" if sample.seconds is None else f"{sample.seconds:.3f} s"
            print(
                f"run {index + 1}: {how}, next step {resumed} after the new worker started; "
                f"held {sample.held}; {result.result.value} {result.from_side}→{result.to_side}"
                + ("" if right else " WRONG"),
                flush=True,
            )
            if sample.seconds is not None:
                samples.append(sample.seconds)
            if result.to_side is not None and result.result == Outcome.FAILED_OVER:
                active = result.to_side
        if tasks:
            print(
                f"workflow tasks (started → completed, {len(tasks)}): "
                f"p50={nearest_rank(tasks, 0.5):.3f} p99={nearest_rank(tasks, 0.99):.3f} "
                f"max={max(tasks):.3f} s"
            )
        if not samples:
            raise SystemExit("no run was interrupted mid-way")
        print(
            f"resume_seconds={nearest_rank(samples, 0.5):.3f} "
            f"resume_p95_seconds={nearest_rank(samples, 0.95):.3f} "
            f"resume_max_seconds={max(samples):.3f} runs={len(samples)} seed={seed}",
            flush=True,
        )
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.wait(30)
    sys.stdout.flush()
    os._exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
