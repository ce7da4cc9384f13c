"""Probe scale: the most node probes per second one worker process sustains, and what a
healthy cluster's monitor costs in history.

One worker process (this one: `build_worker` with its own ClusterWatchActivities) against
simulated clusters on loopback. The Temporal dev server (fast dynamic config), moto and the
simulators (`python -m sandbox.search_sim`, two processes) run as processes of their own,
so the CPU figures of this process are the worker's. Each monitored cluster has 3 primary +
3 standby nodes, probed every second with a 1 s timeout, one vantage point (the worker's
own queue) and a Route 53 switch on moto; configs share the simulated clusters round-robin.

The load rises step by step (monitored clusters doubled, then one bisection) until the p99
of the rounds' schedule lateness (`round_lateness_ms`) passes 100 ms, the probe rate
(`node_probes`) falls behind schedule, watches fail, or the worker takes no more watches.
Monitors are added a few at a time, each batch running before the next, so that creating
their probe clients does not stall the event loop past the watches' heartbeat timeout. The
sustained figure is the best step that kept the schedule. Each step also reports what
explains it: the event loop thread's CPU, garbage-collector pauses, the heartbeat age
Temporal sees, the simulators' and the Temporal server's CPU, and other load.

History per healthy cluster-hour: events per refresh of the active side and per watch
return, counted in real histories (a monitor refreshing every 2 s; a watch returning on
yellow and green again), plus the growth of quiet monitors' histories during the ramp.

    .venv/bin/python bench/probe_scale.py [--quick] [--window S] [--profile]

What-ifs that change the worker (never the default): `--activity-slots N` (build_worker
cannot set it), `--gc-freeze` (gc.freeze() after each warm-up), `--batch 0` (a whole step's
monitors at once, as after a worker restart). Prints two lines per step and ends with
`probes_per_second=<value>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import functools
import gc
import io
import json
import logging
import math
import os
import pstats
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio import activity  # noqa: E402
from temporalio.api.enums.v1 import (  # noqa: E402
    EventType,
    PendingActivityState,
    TimeoutType,
)
from temporalio.client import Client  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

import activities.watch as watch_module  # noqa: E402
import worker as worker_module  # noqa: E402
from activities.aws import aws_client_factory  # noqa: E402
from activities.watch import ClusterWatchActivities, HeapFreezer, NodeFetcher  # noqa: E402
from failover.client.operations import ensure_monitor  # noqa: E402
from failover.client.temporal import EmbeddedTemporalServer  # noqa: E402
from failover.config import AwsSettings, ClusterConfig, MonitorSettings, parse_config  # noqa: E402
from failover.names import monitor_workflow_id  # noqa: E402
from sandbox.net import free_port  # noqa: E402
from sandbox.search_sim import FaultMode, NodeFault, set_fault_remote  # noqa: E402
from sandbox.stack import (  # noqa: E402
    PRIMARY_HOSTS,
    SANDBOX_AWS_ENV,
    STANDBY_HOSTS,
    create_zone_and_records,
    route53_switch,
    sandbox_config,
)
from sandbox.waiting import wait_for, wait_until  # noqa: E402
from workflows.monitor import WATCH_MAX  # noqa: E402

P99_LIMIT_MS = 100.0
TIMEOUT_SECONDS = 1.0
# A step keeps its schedule when it probes at least this share of what its watches should.
ON_SCHEDULE = 0.95
# Simulated clusters per simulator process; configs reuse them round-robin.
SIMS_PER_PROCESS = 4
# Monitors are added in batches that stall the event loop less than this (probe clients).
BATCH_STALL_MS = 300.0
# ... and at most this many: each new monitor's first workflow tasks run in this process too,
# and a burst of them outlasts their 2 s task timeout on a busy machine (then they run again).
MAX_BATCH = 12
# A batch slower than this to get its watches running halves the next (a quick one adds 2).
SLOW_BATCH_SECONDS = 3.0
# Monitors whose pending watch is described every half second (heartbeat age).
HEARTBEAT_SAMPLE = 6
# Monitors whose history is read across the ramp (quiet growth).
QUIET_SAMPLE = 8
HIST_REFRESH_SECONDS = 2.0
# The ramp doubles the monitored clusters up to this many, then adds half each step.
DOUBLE_UNTIL = 160
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


# --- processes and CPU -----------------------------------------------------------------------


try:  # loaded here, not in the forked child: the child only makes the call
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Child processes get SIGTERM if the bench dies, even by SIGKILL (Linux prctl)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class BenchTemporalServer(EmbeddedTemporalServer):
    """The embedded dev server (fast dynamic config), which dies with the bench."""

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process, from /proc (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int | str = "self") -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal (guest time is counted inside user)
    return total - idle, total


class Simulators:
    """Simulated clusters in two processes of their own (`python -m sandbox.search_sim`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.layout = {
            "a": [f"sim-a{i}" for i in range(SIMS_PER_PROCESS)] + ["hist-p"],
            "b": [f"sim-b{i}:opensearch" for i in range(SIMS_PER_PROCESS)] + ["hist-s"],
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.nodes: dict[str, list[str]] = {}
        self.control: dict[str, str] = {}  # cluster -> control URL of its process

    def start(self) -> None:
        for key, clusters in self.layout.items():
            args = [a for name in clusters for a in ("--cluster", name)]
            with (
                (self.directory / f"sim-{key}.out").open("wb") as out,
                (self.directory / f"sim-{key}.log").open("wb") as log,
            ):
                self.processes[key] = subprocess.Popen(
                    [sys.executable, "-m", "sandbox.search_sim", *args, "--nodes", "3"],
                    cwd=ROOT,
                    stdout=out,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )

    def wait_ready(self) -> None:
        for key, process in self.processes.items():
            summary = wait_until(
                functools.partial(self._summary, key, process), f"simulator {key}", 30
            )
            for name, urls in summary["clusters"].items():
                self.nodes[name] = urls
                self.control[name] = summary["control_url"]

    def _summary(self, key: str, process: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        if process.poll() is not None:
            log = (self.directory / f"sim-{key}.log").read_text(errors="replace")
            raise RuntimeError(f"simulator {key} exited with {process.returncode}: {log[-2000:]}")
        line = (self.directory / f"sim-{key}.out").read_text()
        if not line.endswith("\n"):
            return None
        summary: dict[str, Any] = json.loads(line.splitlines()[0])
        return summary

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(p.pid) for p in self.processes.values())

    def rss_mib(self) -> float:
        return sum(rss_mib(p.pid) for p in self.processes.values())

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class MotoProcess:
    """moto in server mode, in a process of its own (`python -m moto.server`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / "moto.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"moto exited with {self.process.returncode}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(answers, "moto", 30)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid) if self.process else 0.0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class GcPauses:
    """Pauses of the garbage collector in this process, by generation: wall time (ms), and
    the thread's CPU time in them (less when the machine ran something else meanwhile)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # generation, wall ms, cpu ms
        self._started = (0.0, 0.0)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        else:
            wall, cpu = self._started
            self.pauses.append(
                (
                    info["generation"],
                    (time.perf_counter() - wall) * 1000,
                    (time.thread_time() - cpu) * 1000,
                )
            )

    def since(self, mark: int) -> tuple[str, float]:
        """A summary of the pauses since `mark` by generation, and the longest (ms)."""
        window = self.pauses[mark:]
        longest = max(window, key=lambda pause: pause[1], default=(0, 0.0, 0.0))
        parts = []
        for generation in range(3):
            pauses = [ms for g, ms, _ in window if g == generation]
            if pauses:
                parts.append(f"gen{generation} {len(pauses)}x <= {max(pauses):.1f} ms")
        summary = f"gc {', '.join(parts) or 'none'}"
        if window:
            cpu = sum(pause[2] for pause in window)
            summary += f" (the longest used {longest[2]:.1f} ms CPU; {cpu:.0f} ms CPU in all)"
        return summary, longest[1]


class LogCounter(logging.Handler):
    """Counts the worker's warnings instead of printing them; the report lists them.

    Watches cancelled because the bench terminated their monitor are expected and marked.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = str(record.msg).split(" (", 1)[0].split(". ", 1)[0].strip()
        # Core's lines name a run, a task token, a duration: one line per kind of warning.
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\{.*|\d+(\.\d+)?", "N", text)[:120]
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            text += " (cancelled)"
        self.counts[f"{record.levelname} {record.name}: {text}"] += 1

    def install(self) -> None:
        """Before the first client: Core's own log lines go through Python logging too."""
        Runtime.set_default(
            Runtime(
                telemetry=TelemetryConfig(
                    logging=LoggingConfig(
                        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                    )
                )
            )
        )
        logger = logging.getLogger("temporalio")
        logger.setLevel(logging.WARNING)
        logger.addHandler(self)
        logger.propagate = False


# --- the worker's watches ----------------------------------------------------------------------


class CountingWatch(ClusterWatchActivities):
    """The worker's real watch activity, counting the watches running right now per cluster."""

    def __init__(self, heap: HeapFreezer | None) -> None:
        super().__init__(heap=heap)
        self.running: Counter[str] = Counter()
        self.retries = 0  # watches started again after failing (e.g. a heartbeat timeout)
        self.retried: list[str] = []

    @contextlib.asynccontextmanager
    async def _clients(self, cluster: ClusterConfig) -> AsyncIterator[dict[Any, Any]]:
        self.running[cluster.name] += 1
        if activity.info().attempt > 1:
            self.retries += 1
            self.retried.append(cluster.name)
        try:
            async with super()._clients(cluster) as clients:
                yield clients
        finally:
            self.running[cluster.name] -= 1

    @property
    def watches(self) -> int:
        return sum(self.running.values())


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Sample:
    gc_mark: int  # garbage-collector pauses recorded so far
    at: float
    probes: int
    retries: int
    worker_cpu: float
    loop_cpu: float
    sims_cpu: float
    temporal_cpu: float
    moto_cpu: float
    machine: tuple[int, int]


@dataclass
class Step:
    clusters: int
    watches: int
    warm_up_seconds: float
    warm_up_retries: int
    seconds: float
    probes_per_second: float
    expected: float
    retries: int
    rounds: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    worker_cores: float
    loop_cores: float
    rss_mib: float
    sims_cores: float
    temporal_cores: float
    moto_cores: float
    machine_cores: float
    heartbeat_age_p99_s: float = math.nan
    heartbeat_age_max_s: float = math.nan
    gc: str = ""
    gc_longest_ms: float = 0.0
    warm_up_gc_ms: float = 0.0  # the longest pause while the step's monitors started
    note: str = ""
    starts: str = ""

    @property
    def on_schedule(self) -> bool:
        return self.expected > 0 and self.probes_per_second >= ON_SCHEDULE * self.expected

    @property
    def ok(self) -> bool:
        return self.p99_ms <= P99_LIMIT_MS and self.on_schedule and self.retries == 0

    @property
    def verdict(self) -> str:
        if self.ok:
            return "ok"
        if self.retries:
            return "WATCHES FAILING"
        return "LATE" if self.p99_ms > P99_LIMIT_MS else "BEHIND SCHEDULE"

    @property
    def per_core(self) -> float:
        return self.probes_per_second / self.worker_cores if self.worker_cores > 0 else 0.0

    @property
    def other_cores(self) -> float:
        """CPU of everything else on the machine (other load distorts the figures)."""
        ours = self.worker_cores + self.sims_cores + self.temporal_cores + self.moto_cores
        return self.machine_cores - ours

    def line(self, label: str) -> str:
        """Two lines: the figures the ramp is judged on, then what explains them."""
        notes = [self.note] if self.note else []
        if self.warm_up_retries:
            notes.append(f"{self.warm_up_retries} watch retries while starting")
        if self.retries:
            notes.append(f"{self.retries} watch retries in the window")
        return (
            f"{label}: clusters={self.clusters} watches={self.watches} "
            f"probes/s={self.probes_per_second:.1f} (schedule {self.expected:.0f}) "
            f"lateness p50={self.p50_ms:.1f} p99={self.p99_ms:.1f} max={self.max_ms:.1f} ms; "
            f"worker cpu={self.worker_cores:.2f} cores ({self.per_core:.0f} probes/s per core) "
            f"rss={self.rss_mib:.0f} MiB; simulators cpu={self.sims_cores:.2f}; "
            f"{self.verdict}" + (f" ({'; '.join(notes)})" if notes else "") + "\n"
            f"    {self.rounds} rounds in {self.seconds:.1f} s after {self.warm_up_seconds:.1f} s "
            f"warm-up{self.starts}; event loop thread {self.loop_cores:.2f} cores; temporal server "
            f"{self.temporal_cores:.2f}, moto {self.moto_cores:.2f}, other processes "
            f"{self.other_cores:.2f} (machine {self.machine_cores:.2f}/{CORES}); "
            f"heartbeat age seen by Temporal "
            f"p99={self.heartbeat_age_p99_s:.2f} max={self.heartbeat_age_max_s:.2f} s; {self.gc}; "
            f"while starting, the longest gc pause {self.warm_up_gc_ms:.0f} ms"
        )


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Bench:
    client: Client
    task_queue: str
    moto_url: str
    moto: MotoProcess
    zone_id: str
    sims: Simulators
    server: EmbeddedTemporalServer
    watch: CountingWatch
    window: float
    settle: float
    stall: float
    batch: int
    interval: float
    heap: bool = False
    gc: GcPauses = field(default_factory=GcPauses)
    names: list[str] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)  # to start a batch's watches
    batch_sizes: list[int] = field(default_factory=list)
    max_batch: int = MAX_BATCH
    on_window: Callable[[], Awaitable[None]] | None = None

    # --- configs and monitors ---

    def config(
        self, name: str, primary: str, standby: str, *, refresh: float | None = None
    ) -> ClusterConfig:
        raw = sandbox_config(
            aws_endpoint=self.moto_url,
            switch=route53_switch(self.zone_id),
            primary_nodes=self.sims.nodes[primary],
            standby_nodes=self.sims.nodes[standby],
            # Node probes only, as before the storefront's indices were read: the figures
            # stay comparable (scoped health is one request like the cluster-wide one).
            magento=False,
        )
        cluster = raw["clusters"][0]
        cluster["name"] = name
        cluster["primary"]["expected_cluster_name"] = primary
        cluster["standby"]["expected_cluster_name"] = standby
        cluster["probe"].update(interval_seconds=self.interval, timeout_seconds=TIMEOUT_SECONDS)
        cluster["monitor"] = {"vantage_points": []}
        if refresh is not None:
            cluster["monitor"]["refresh_seconds"] = refresh
        raw["task_queue"] = self.task_queue
        return parse_config(raw).clusters[0]

    def ramp_config(self, index: int) -> ClusterConfig:
        slot = index % SIMS_PER_PROCESS
        return self.config(f"probe-{index:04d}", f"sim-a{slot}", f"sim-b{slot}")

    async def set_monitors(self, count: int) -> None:
        """Starts monitors up to `count`, `batch` at a time (each batch's watches running
        before the next; 0: all at once), or terminates the newest ones down to it."""
        gate = asyncio.Semaphore(32)

        async def start(cluster: ClusterConfig) -> None:
            async with gate:
                await ensure_monitor(self.client, cluster, task_queue=self.task_queue)

        while count > len(self.names):
            size = count - len(self.names)
            if self.batch > 0:
                size = min(size, self.batch)
            configs = [self.ramp_config(len(self.names) + i) for i in range(size)]
            began = time.monotonic()
            await asyncio.gather(*(start(c) for c in configs))
            started = [c.name for c in configs]
            self.names += started
            if self.batch > 0:
                # Slow to start, or the worker takes no more: warm_up tells.
                with contextlib.suppress(AssertionError):
                    await wait_for(
                        _ready(lambda: all(self.watch.running[n] for n in started)),  # noqa: B023
                        what="the batch's watches",
                        timeout_s=self.stall,
                    )
                took = time.monotonic() - began
                self.batch_seconds.append(took)
                self.batch_sizes.append(size)
                # A busy worker runs new monitors' workflow tasks slowly, and those that
                # outlast their 2 s timeout run again: fewer at a time, until they are quick.
                if took > SLOW_BATCH_SECONDS:
                    self.batch = max(2, self.batch // 2)
                elif took < SLOW_BATCH_SECONDS / 2:
                    self.batch = min(self.max_batch, self.batch + 2)
        if count < len(self.names):
            extra, self.names = self.names[count:], self.names[:count]
            await self.terminate(extra)

    async def terminate(self, names: list[str]) -> None:
        gate = asyncio.Semaphore(32)

        async def stop(name: str) -> None:
            async with gate:
                handle = self.client.get_workflow_handle(monitor_workflow_id(name))
                with contextlib.suppress(Exception):
                    await handle.terminate(reason="probe_scale bench")

        await asyncio.gather(*(stop(n) for n in names))
        gone = set(names)
        await wait_for(
            _ready(lambda: not any(self.watch.running[n] for n in gone)),
            what="terminated monitors' watches to stop",
            timeout_s=30,
        )

    async def warm_up(self, count: int) -> None:
        """Until every monitor's watch runs, or the count stops rising (the worker is full)."""
        last = [self.watch.watches, time.monotonic()]

        def settled() -> bool:
            watches = self.watch.watches
            if watches != last[0]:
                last[:] = [watches, time.monotonic()]
            return watches >= count or time.monotonic() - last[1] > self.stall

        await wait_for(_ready(settled), what=f"{count} watches", timeout_s=120 + count * 0.2)

    # --- one measured window ---

    def sample(self) -> Sample:
        process = self.server.process
        return Sample(
            gc_mark=len(self.gc.pauses),
            at=time.monotonic(),
            probes=self.watch.node_probes,
            retries=self.watch.retries,
            worker_cpu=self_cpu_seconds(),
            loop_cpu=time.thread_time(),  # measured in the event loop's (main) thread
            sims_cpu=self.sims.cpu_seconds(),
            temporal_cpu=proc_cpu_seconds(process.pid) if process else 0.0,
            moto_cpu=self.moto.cpu_seconds(),
            machine=machine_ticks(),
        )

    async def measure(
        self, clusters: int, start: Sample, *, profile: cProfile.Profile | None = None
    ) -> Step:
        await asyncio.sleep(self.settle)  # new watches' first rounds and connections
        warm_up_gc_ms = max((ms for _, ms, _ in self.gc.pauses[start.gc_mark :]), default=0.0)
        watches = self.watch.watches
        if self.on_window is not None:
            await self.on_window()
        self.watch.round_lateness_ms.clear()
        if profile is not None:
            profile.enable()
        gc_mark = len(self.gc.pauses)
        before = self.sample()
        ages = await self.heartbeat_ages(before.at + self.window)
        after = self.sample()
        if profile is not None:
            profile.disable()
        gc_summary, gc_longest = self.gc.since(gc_mark)
        lateness = list(self.watch.round_lateness_ms)
        seconds = after.at - before.at
        busy = after.machine[0] - before.machine[0]
        total = after.machine[1] - before.machine[1]
        note = ""
        if self.watch.watches < clusters:
            note = f"only {self.watch.watches} of {clusters} monitors' watches running"
        return Step(
            clusters=clusters,
            watches=watches,
            warm_up_seconds=before.at - self.settle - start.at,
            warm_up_retries=before.retries - start.retries,
            seconds=seconds,
            probes_per_second=(after.probes - before.probes) / seconds,
            expected=6 * watches / self.interval,
            retries=after.retries - before.retries,
            rounds=len(lateness),
            p50_ms=percentile(lateness, 0.50),
            p99_ms=percentile(lateness, 0.99),
            max_ms=max(lateness, default=math.nan),
            worker_cores=(after.worker_cpu - before.worker_cpu) / seconds,
            loop_cores=(after.loop_cpu - before.loop_cpu) / seconds,
            rss_mib=rss_mib(),
            sims_cores=(after.sims_cpu - before.sims_cpu) / seconds,
            temporal_cores=(after.temporal_cpu - before.temporal_cpu) / seconds,
            moto_cores=(after.moto_cpu - before.moto_cpu) / seconds,
            machine_cores=CORES * busy / total if total else math.nan,
            heartbeat_age_p99_s=percentile(ages, 0.99),
            heartbeat_age_max_s=max(ages, default=math.nan),
            gc=gc_summary,
            gc_longest_ms=gc_longest,
            warm_up_gc_ms=warm_up_gc_ms,
            note=note,
        )

    async def heartbeat_ages(self, until: float) -> list[float]:
        """Until `until`: how old the last heartbeat Temporal holds for a running watch is,
        sampled on a few monitors every half second (a watch times out at 2 s)."""
        ages: list[float] = []
        turn = 0
        while time.monotonic() < until:
            running = [n for n in self.names if self.watch.running[n]]
            chosen = running[turn % max(1, len(running)) :][:HEARTBEAT_SAMPLE]
            turn += HEARTBEAT_SAMPLE
            descriptions = await asyncio.gather(
                *(
                    self.client.get_workflow_handle(monitor_workflow_id(n)).describe()
                    for n in chosen
                )
            )
            now = time.time()
            for description in descriptions:
                for pending in description.raw_description.pending_activities:
                    if pending.HasField("last_heartbeat_time"):
                        ages.append(now - pending.last_heartbeat_time.ToMicroseconds() / 1e6)
            await asyncio.sleep(max(0.0, min(0.5, until - time.monotonic())))
        return ages

    async def step(self, clusters: int, *, profile: cProfile.Profile | None = None) -> Step:
        start = self.sample()
        mark = len(self.batch_seconds)
        await self.set_monitors(clusters)
        await self.warm_up(clusters)
        step = await self.measure(clusters, start, profile=profile)
        if batches := self.batch_seconds[mark:]:
            sizes = self.batch_sizes[mark:]
            step.starts = (
                f" ({len(batches)} batches of {min(sizes)}-{max(sizes)}, "
                f"{max(batches):.1f} s at most)"
            )
        step.gc += f"; {len(gc.get_objects()):,} objects tracked, {gc.get_freeze_count():,} frozen"
        if (heap := self.watch.heap) is not None:
            step.gc += f" ({heap.freezes} freezes)"
        if self.heap:
            print(heap_census(), flush=True)
        return step

    async def history_lengths(self, names: list[str]) -> dict[str, int]:
        descriptions = await asyncio.gather(
            *(self.client.get_workflow_handle(monitor_workflow_id(n)).describe() for n in names)
        )
        return {n: d.history_length for n, d in zip(names, descriptions, strict=True)}

    async def why_retried(self, name: str) -> str:
        """The failure that made a monitor's watch start again: its pending activity's last."""
        handle = self.client.get_workflow_handle(monitor_workflow_id(name))
        description = await handle.describe()
        reasons = []
        for pending in description.raw_description.pending_activities:
            failure = pending.last_failure
            timeout = failure.timeout_failure_info.timeout_type
            reasons.append(
                f"{pending.activity_type.name} attempt {pending.attempt}, last failure: "
                + (f"{TimeoutType.Name(timeout)}" if timeout else failure.message or "none")
            )
        return f"{name}: {'; '.join(reasons) or 'no pending activity'}"

    async def why_not_running(self) -> str:
        """What a monitor without a running watch waits for, from its pending activities."""
        waiting = [n for n in self.names if not self.watch.running[n]]
        if not waiting:
            return ""
        description = await self.client.get_workflow_handle(
            monitor_workflow_id(waiting[0])
        ).describe()
        pending = [
            f"{a.activity_type.name} {PendingActivityState.Name(a.state)} attempt {a.attempt}"
            for a in description.raw_description.pending_activities
        ]
        history = await self.client.get_workflow_handle(
            monitor_workflow_id(waiting[0])
        ).fetch_history()
        kinds = Counter(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_").lower() for e in history.events
        )
        return (
            f"{len(waiting)} monitors have no running watch; e.g. {waiting[0]} has pending: "
            f"{', '.join(pending) or 'nothing'}; its history: "
            + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        )


async def client_creation_ms(cluster: ClusterConfig, rounds: int = 5) -> float:
    """What opening one side's probe session costs, synchronously, in the event loop."""
    probe = cluster.probe
    total = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        fetcher = NodeFetcher(
            cluster.primary, probe.timeout_seconds, 2 * probe.interval_seconds, None
        )
        await fetcher.__aenter__()
        total += time.perf_counter() - started
        await fetcher.__aexit__(None, None, None)
    return total / rounds * 1000


_last_census: Counter[str] = Counter()


def heap_census(top: int = 20) -> str:
    """What the collector's full pass walks: tracked objects (not frozen) by type, the
    commonest ones and those that grew most since the last census."""
    by_type: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = str(getattr(kind, "__module__", None) or "?")
        by_type[f"{module}.{kind.__qualname__}".removeprefix("builtins.")] += 1
    grown = by_type - _last_census
    _last_census.clear()
    _last_census.update(by_type)
    types = ", ".join(f"{name} {count:,}" for name, count in by_type.most_common(top))
    growth = ", ".join(f"{name} +{count:,}" for name, count in grown.most_common(top))
    return f"heap: by type: {types}\nheap: grown: {growth}"


def garbage_census(top: int = 20) -> str:
    """The cyclic garbage the process holds now (frozen or not), by type: what ended
    watches leave for a full collection to reclaim."""
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    gc.set_debug(0)
    kinds = Counter(type(o).__qualname__ for o in gc.garbage)
    count = len(gc.garbage)
    gc.garbage.clear()
    gc.collect()
    types = ", ".join(f"{name} {n:,}" for name, n in kinds.most_common(top))
    return f"heap: cyclic garbage at the end: {count:,} objects: {types}"


def _ready(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        return check()

    return ready


# --- history cost --------------------------------------------------------------------------


async def scheduled_positions(client: Client, name: str, activity_type: str) -> list[int]:
    """Event ids of the ActivityTaskScheduled events of one activity type in a monitor."""
    history = await client.get_workflow_handle(monitor_workflow_id(name)).fetch_history()
    return [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    ]


async def event_types_between(client: Client, name: str, first: int, last: int) -> Counter[str]:
    history = await client.get_workflow_handle(monitor_workflow_id(name)).fetch_history()
    return Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        for e in history.events
        if first < e.event_id <= last
    )


async def events_per_refresh(bench: Bench, refreshes: int) -> tuple[float, Counter[str]]:
    """A monitor re-reading its switch every 2 s: events from one read_record to the next."""
    name = "hist-refresh"
    cluster = bench.config(name, "sim-a0", "sim-b0", refresh=HIST_REFRESH_SECONDS)
    await ensure_monitor(bench.client, cluster, task_queue=bench.task_queue)
    positions: list[int] = []

    async def enough() -> bool:
        positions[:] = await scheduled_positions(bench.client, name, "read_record")
        return len(positions) >= refreshes + 2  # the first read is the start's, not a refresh

    await wait_for(enough, what="refreshes", timeout_s=30 + refreshes * HIST_REFRESH_SECONDS * 3)
    await bench.terminate([name])
    # From the first refresh's read to the last: whole refresh cycles only.
    per = (positions[-1] - positions[1]) / (len(positions) - 2)
    kinds = await event_types_between(bench.client, name, positions[1], positions[-1])
    return per, kinds


async def events_per_watch_return(bench: Bench) -> tuple[float, Counter[str]]:
    """A watch returns on each state change (yellow, then green again): events per return."""
    name = "hist-watch"
    cluster = bench.config(name, "hist-p", "hist-s")
    await ensure_monitor(bench.client, cluster, task_queue=bench.task_queue)
    await wait_for(
        _ready(lambda: bench.watch.running[name] > 0), what="the watch to run", timeout_s=30
    )
    control = bench.sims.control["hist-p"]
    positions: list[int] = []

    def watches_scheduled(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            positions[:] = await scheduled_positions(bench.client, name, "watch_cluster")
            return len(positions) >= count

        return check

    # A first watch reports its first round; count from the watch that follows it.
    await wait_for(watches_scheduled(2), what="the first report", timeout_s=30)
    for mode in (FaultMode.YELLOW, FaultMode.HEALTHY):
        expected = len(positions) + 1
        await set_fault_remote(control, "hist-p", None, NodeFault(mode))
        await wait_for(watches_scheduled(expected), what=f"watch return on {mode}", timeout_s=30)
    positions[:] = positions[1:]
    await bench.terminate([name])
    per = (positions[-1] - positions[0]) / (len(positions) - 1)
    kinds = await event_types_between(bench.client, name, positions[0], positions[-1])
    return per, kinds


def describe_kinds(kinds: Counter[str], cycles: int) -> str:
    return ", ".join(f"{k.lower()} {v / cycles:g}" for k, v in sorted(kinds.items()))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Ramp:
    steps: list[Step] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    quiet: QuietTracker | None = None

    @property
    def best(self) -> Step | None:
        good = [s for s in self.steps if s.ok]
        return max(good, key=lambda s: s.probes_per_second) if good else None


class QuietTracker:
    """History growth of the first monitors across the ramp: from the first step's window
    to the end of the last step that kept its schedule (and to the end of the ramp)."""

    def __init__(self, bench: Bench, names: list[str]) -> None:
        self.bench = bench
        self.names = names
        self.start: tuple[float, dict[str, int]] | None = None
        self.good: tuple[float, dict[str, int]] | None = None
        self.last: tuple[float, dict[str, int]] | None = None

    async def mark(self, ok: bool) -> None:
        reading = time.monotonic(), await self.bench.history_lengths(self.names)
        if self.start is None:
            self.start = reading
        self.last = reading
        if ok:
            self.good = reading

    def growth(self, until: tuple[float, dict[str, int]] | None) -> tuple[float, int, float]:
        """(events per cluster-hour, events added, seconds) from the start to `until`."""
        if self.start is None or until is None or until[0] <= self.start[0]:
            return math.nan, 0, 0.0
        seconds = until[0] - self.start[0]
        added = sum(until[1].values()) - sum(self.start[1].values())
        return added / len(self.names) * 3600 / seconds, added, seconds

    async def added_kinds(self) -> Counter[str]:
        """The types of the events the quiet monitors added, start to end of the ramp."""
        kinds: Counter[str] = Counter()
        if self.start is None or self.last is None:
            return kinds
        for name in self.names:
            first, last = self.start[1][name], self.last[1][name]
            if last > first:
                kinds += await event_types_between(self.bench.client, name, first, last)
        return kinds


async def ramp(bench: Bench, args: argparse.Namespace) -> Ramp:
    """Doubles the clusters (by half from DOUBLE_UNTIL on) until a step fails (halves if the
    first fails), then bisects between the best good step and the failed one above it."""
    result = Ramp()
    count = args.start
    good: Step | None = None
    failed: Step | None = None
    halvings = 0

    async def record(step: Step, label: str) -> None:
        result.steps.append(step)
        print(step.line(label), flush=True)
        if result.quiet is not None:
            await result.quiet.mark(step.ok)
        if step.watches < step.clusters and (why := await bench.why_not_running()):
            result.findings.append(why)
        if step.retries or step.warm_up_retries:
            retried = bench.watch.retried[-1]
            if retried in bench.names:
                result.findings.append(f"a watch retried: {await bench.why_retried(retried)}")

    async def first_window() -> None:
        result.quiet = QuietTracker(bench, bench.names[:QUIET_SAMPLE])
        await result.quiet.mark(True)
        bench.on_window = None

    bench.on_window = first_window
    while count <= args.max_clusters:
        step = await bench.step(count)
        await record(step, f"step {len(result.steps) + 1}")
        if good is not None and step.watches <= good.watches:
            result.findings.append(
                f"the worker took no more watches at {step.clusters} clusters "
                f"({step.watches} running): more clusters add no probes"
            )
            break
        if not step.ok:
            failed = step
            if good is None and halvings < 2 and count >= 2:
                halvings += 1  # the first step failed already: look below it
                count //= 2
                continue
            break
        good = step
        if failed is not None:
            break  # a good step below a failed one: refine between them
        count = count * 2 if count < DOUBLE_UNTIL else count * 3 // 2
    if good is not None and failed is not None:
        low, high = good.clusters, failed.clusters
        for _ in range(args.refine):
            middle = (low + high) // 2
            if high - low < max(4, low // 8):
                break
            step = await bench.step(middle)
            await record(step, f"step {len(result.steps) + 1} (refine)")
            if step.ok and step.watches > good.watches:
                good, low = step, middle
            else:
                high = middle
    return result


async def run(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> None:
    # SIGTERM cancels the run like Ctrl-C does: the worker shuts down, then main() cleans up.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    for key, value in SANDBOX_AWS_ENV.items():
        os.environ.setdefault(key, value)
    directory = Path(tempfile.mkdtemp(prefix="probe-scale-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)

    busy, total = machine_ticks()
    await asyncio.sleep(1.0)
    after = machine_ticks()
    idle_load = CORES * (after[0] - busy) / max(1, after[1] - total)
    print(f"probe_scale: machine busy {idle_load:.2f}/{CORES} cores before the bench starts")
    sims = Simulators(directory)
    cleanup.callback(sims.stop)
    sims.start()
    moto = MotoProcess(directory)
    cleanup.callback(moto.stop)
    moto.start()
    log = LogCounter()
    log.install()  # before the first Temporal client
    server = BenchTemporalServer(directory, port=free_port(), ui_port=free_port())
    cleanup.callback(server.stop)
    client = await server.start()
    moto_url = moto.url
    sims.wait_ready()
    moto.wait_ready()
    route53 = aws_client_factory(AwsSettings(endpoint_url=moto_url), "route53")()
    zone_id = await asyncio.to_thread(
        create_zone_and_records, route53, primary_ips=PRIMARY_HOSTS, standby_ips=STANDBY_HOSTS
    )

    if args.activity_slots:
        # Not the shipped worker: build_worker has no way to set the activity slots.
        worker_module.Worker = functools.partial(  # type: ignore[misc]
            worker_module.Worker, max_concurrent_activities=args.activity_slots
        )
    # What `python worker.py` does before its worker; the what-if keeps Python's defaults.
    heap = None if args.gc_untuned else worker_module.tune_gc()
    if args.gc_threshold:
        gc.set_threshold(*args.gc_threshold)
    if args.beat_every:
        watch_module.BEAT_EVERY_SECONDS = args.beat_every  # what-if: fewer heartbeats
    watch = CountingWatch(heap)
    task_queue = "probe-scale"
    worker = worker_module.build_worker(
        client, aws=AwsSettings(endpoint_url=moto_url), task_queue=task_queue, watch=watch
    )
    bench = Bench(
        client=client,
        task_queue=task_queue,
        moto_url=moto_url,
        moto=moto,
        zone_id=zone_id,
        sims=sims,
        server=server,
        watch=watch,
        window=args.window,
        settle=args.settle,
        stall=args.stall,
        batch=args.batch or 0,
        interval=args.interval,
        heap=args.heap,
    )
    creation_ms = await client_creation_ms(bench.ramp_config(0))
    if args.batch is None:
        bench.max_batch = max(1, min(MAX_BATCH, int(BATCH_STALL_MS // (2 * creation_ms))))
        bench.batch = bench.max_batch
    config = worker.config()
    slots = (
        f"max_concurrent_activities={config.get('max_concurrent_activities')} "
        f"tuner={'set' if config.get('tuner') else None}"
        + (" (bench override: build_worker cannot set it)" if args.activity_slots else "")
        + f"; gc thresholds {gc.get_threshold()}, "
        + ("untuned (what-if)" if heap is None else "heap frozen as watches settle")
    )
    print(
        f"probe_scale: 1 worker process (pid {os.getpid()}) on {CORES} cores, {slots}; "
        f"clusters of 3+3 nodes probed every {args.interval:g} s (timeout "
        f"{TIMEOUT_SECONDS:g} s) on {2 * SIMS_PER_PROCESS} simulated clusters in 2 processes; "
        f"window {args.window:g} s after {args.settle:g} s settling; goal p99 lateness <= "
        f"{P99_LIMIT_MS:g} ms",
        flush=True,
    )
    print(
        f"watch start: opening one probe session (NodeFetcher) blocks the event loop "
        f"{creation_ms:.1f} ms, two per watch; monitors are added "
        + (f"{bench.batch} at a time" if bench.batch else "a whole step at once"),
        flush=True,
    )

    async with worker:
        if heap is not None:
            heap.freeze(collect=2)  # as `python worker.py` does once its worker runs
        per_refresh, refresh_kinds = await events_per_refresh(bench, args.refreshes)
        print(
            f"history: {per_refresh:g} events per refresh of the active side "
            f"({describe_kinds(refresh_kinds, args.refreshes)})",
            flush=True,
        )
        per_return, return_kinds = await events_per_watch_return(bench)
        print(
            f"history: {per_return:g} events per watch return "
            f"({describe_kinds(return_kinds, 2)}; measured on state changes)",
            flush=True,
        )
        result = await ramp(bench, args)
        best = result.best
        if args.profile and best is not None:
            profile = cProfile.Profile()
            step = await bench.step(best.clusters, profile=profile)
            print(step.line("profiled (cProfile on, slower)"), flush=True)
            print_profile(profile)
        quiet_kinds = await result.quiet.added_kinds() if result.quiet else Counter()
        await bench.set_monitors(0)
        if args.heap:
            print(garbage_census(), flush=True)
    report(result, per_refresh, per_return, task_queue, log, quiet_kinds)


def report(
    result: Ramp,
    per_refresh: float,
    per_return: float,
    task_queue: str,
    log: LogCounter,
    quiet_kinds: Counter[str],
) -> None:
    for line, count in log.counts.most_common():
        expected = " (expected: the bench terminates monitors)" if "(cancelled)" in line else ""
        print(f"worker log: {count} x {line}{expected}")
    for finding in dict.fromkeys(result.findings):
        print(f"finding: {finding}")
    best = result.best
    if best is None:
        print(f"sustained: no step kept p99 lateness <= {P99_LIMIT_MS:g} ms and its schedule")
    else:
        print(
            f"sustained: {best.probes_per_second:.0f} probes/s by one worker process at "
            f"{best.watches} watches (p99 lateness {best.p99_ms:.1f} ms, longest GC pause "
            f"{best.gc_longest_ms:.1f} ms), worker {best.worker_cores:.2f} cores of which the "
            f"event loop {best.loop_cores:.2f}, rss {best.rss_mib:.0f} MiB: "
            f"{best.per_core:.0f} probes/s per core used (goal 1000); simulators "
            f"{best.sims_cores:.2f} cores, temporal {best.temporal_cores:.2f}, machine "
            f"{best.machine_cores:.2f}/{CORES}"
        )
    limit = limit_causes(result)
    print(f"limit: {'; '.join(limit) if limit else 'no step failed: --max-clusters reached'}")
    defaults = MonitorSettings()
    vantages = len(defaults.vantages(task_queue))
    refreshes_per_hour = 3600 / defaults.refresh_seconds
    returns_per_hour = vantages * 3600 / WATCH_MAX.total_seconds()
    quiet_rate = 0.0
    if result.quiet is not None:
        quiet_rate, added, seconds = result.quiet.growth(result.quiet.good)
        _, added_all, seconds_all = result.quiet.growth(result.quiet.last)
        print(
            f"history: {len(result.quiet.names)} quiet monitors grew by {added} events in "
            f"{seconds:.0f} s of steps that kept schedule ({quiet_rate:.1f} per cluster-hour); "
            f"{added_all} in {seconds_all:.0f} s to the end of the ramp"
            + (f" ({describe_kinds(quiet_kinds, 1)})" if quiet_kinds else "")
        )
        if math.isnan(quiet_rate):
            quiet_rate = 0.0
    total = per_refresh * refreshes_per_hour + per_return * returns_per_hour + quiet_rate
    print(
        f"history per healthy cluster-hour at the defaults: {per_refresh:g} x "
        f"{refreshes_per_hour:g} refreshes + {per_return:g} x {returns_per_hour:g} watch returns "
        f"({vantages} vantage point, watch max {WATCH_MAX.total_seconds():g} s) + "
        f"{quiet_rate:.1f} quiet growth = {total:.1f} (goal <= 100)"
    )
    print(f"history_events_per_cluster_hour={total:.1f}")
    if best is not None:
        print(f"probes_per_second_per_core={best.per_core:.0f}")
        print(f"longest_gc_pause_ms={best.gc_longest_ms:.1f}")
    print(f"limit={limit[1] if len(limit) > 1 else 'max clusters reached'}")
    print(f"probes_per_second={best.probes_per_second if best else 0:.0f}", flush=True)


def limit_causes(result: Ramp) -> list[str]:
    """What stopped the ramp, measured in the first failing step above the best one: the
    step, then its causes, the likeliest first (empty when no step failed)."""
    best = result.best
    failing = [x for x in result.steps if not x.ok and (best is None or x.clusters > best.clusters)]
    if not failing:
        failing = [x for x in result.steps if not x.ok]
    if not failing:
        return []
    first = failing[0]
    causes = [f"first failing step {first.clusters} clusters, {first.verdict}"]
    if first.gc_longest_ms > P99_LIMIT_MS:
        causes.append(f"GC pause {first.gc_longest_ms:.0f} ms")
    if first.loop_cores >= 0.8:
        causes.append(
            f"event loop CPU {100 * first.loop_cores:.0f}% (all probing runs on its one thread)"
        )
    if first.machine_cores >= 0.9 * CORES:
        causes.append(
            f"machine CPU {first.machine_cores:.2f}/{CORES} cores (worker "
            f"{first.worker_cores:.2f}, simulators {first.sims_cores:.2f}, temporal server "
            f"{first.temporal_cores:.2f}, other processes {first.other_cores:.2f})"
        )
    if first.watches < first.clusters:
        causes.append(f"watches not starting ({first.watches} of {first.clusters} ran)")
    if first.retries or first.warm_up_retries:
        causes.append(f"watch retries ({first.retries + first.warm_up_retries})")
    if len(causes) == 1:
        causes.append(
            f"no single cause measured (event loop CPU {100 * first.loop_cores:.0f}%, machine "
            f"{first.machine_cores:.2f}/{CORES}, longest GC pause {first.gc_longest_ms:.0f} ms)"
        )
    return causes


def print_profile(profile: cProfile.Profile) -> None:
    """The event loop thread's time by package (own time), then the top functions."""
    stats = pstats.Stats(profile)
    by_package: Counter[str] = Counter()
    total = 0.0
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += own
        total += own
    for package, seconds in by_package.most_common(14):
        print(f"profile: {package:<40} {seconds:7.3f} s own time ({100 * seconds / total:4.1f}%)")
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(30)
    for line in out.getvalue().splitlines():
        if line.strip():
            print(f"profile: {line}")


def _package(filename: str) -> str:
    """site-packages/<pkg>, the project's module, the stdlib module, or the built-in."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.startswith(str(ROOT)):
        return filename.removeprefix(str(ROOT) + "/")
    if filename.startswith("<frozen"):
        return filename
    if filename == "~":
        return "built-in functions (C)"
    parts = Path(filename).parts
    return "stdlib " + "/".join(parts[-2:]) if "python3" in filename else filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="about a minute: shorter windows")
    parser.add_argument("--window", type=float, help="seconds measured per step")
    parser.add_argument("--settle", type=float, help="seconds between warm-up and window")
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval (s)")
    parser.add_argument("--start", type=int, default=20, help="clusters in the first step")
    parser.add_argument("--max-clusters", type=int, default=2000)
    parser.add_argument("--refine", type=int, help="bisection steps after the first failure")
    parser.add_argument(
        "--activity-slots",
        type=int,
        help="diagnosis only: give the worker this many activity slots (build_worker cannot)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="monitors started at a time while ramping (0: a whole step at once; default: "
        "as many as stall the event loop < 300 ms creating their probe clients)",
    )
    parser.add_argument(
        "--gc-untuned",
        action="store_true",
        help="what-if: the worker without its collector settings (worker.tune_gc)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        help="what-if: gc.set_threshold(G0,G1,G2) instead of the worker's",
    )
    parser.add_argument(
        "--beat-every",
        type=float,
        help="what-if: a watch heartbeats every this many seconds (the Temporal server's load)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one window at the end")
    parser.add_argument(
        "--heap", action="store_true", help="after each step: what the collector walks, by type"
    )
    args = parser.parse_args()
    args.window = args.window or (5.0 if args.quick else 20.0)
    args.settle = args.settle if args.settle is not None else (1.0 if args.quick else 2.0)
    args.refine = args.refine if args.refine is not None else (0 if args.quick else 1)
    args.refreshes = 2 if args.quick else 4
    args.stall = 4.0 if args.quick else 8.0

    code = 0
    with contextlib.ExitStack() as cleanup:
        try:
            asyncio.run(run(args, cleanup))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("probe_scale: interrupted", file=sys.stderr)
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
