"""The failover worker: runs the workflows and activities against Temporal and AWS.

`python worker.py [--config FILE]` connects to TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE when
set; otherwise it starts the embedded Temporal dev server (SQLite under the state folder,
Web UI on) and prints where the UI is. SIGINT or SIGTERM shuts it down and it exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from temporalio.client import Client
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.aws import aws_client_factory
from activities.caches import CacheActivities
from activities.control import FailoverControlActivities
from activities.heartbeat import AutoHeartbeat
from activities.nlb import NlbActivities
from activities.notify import NotifyActivities
from activities.region import RegionActivities, region_clients
from activities.reports import ReportActivities
from activities.route53 import Route53Activities
from activities.search_data import SearchDataActivities
from activities.search_probe import SearchProbeActivities
from activities.secrets import configure_secrets
from activities.verify import VerifyActivities
from activities.watch import ClusterWatchActivities, HeapFreezer
from failover import logs, metrics, visibility
from failover.alarms.receiver import check_receiver_config, serve_receiver
from failover.client.operations import ensure_monitors
from failover.client.temporal import (
    EmbeddedTemporalServer,
    TemporalEndpoint,
    configured_endpoint,
    connect,
    state_dir,
)
from failover.codec import PayloadKeyError, payload_codec_from_env
from failover.config import AppConfig, AwsSettings, ConfigError, load_config
from failover.process import exit_now, stop_on_signals
from workflows.drill import DrillWorkflow
from workflows.failover import FailoverWorkflow
from workflows.monitor import MonitorWorkflow
from workflows.region import RegionDrillWorkflow, RegionSwitchWorkflow
from workflows.replication import ReseedWorkflow

DEFAULT_TASK_QUEUE = "search-failover"
# A killed worker's sticky queue would otherwise hold the next workflow task for 10 s; after
# 1 s the task goes to the normal queue, where any live worker takes it. (A workflow task the
# killed worker had already taken waits for the run's task timeout instead: 2 s, set where
# every workflow is started, failover.names.WORKFLOW_TASK_TIMEOUT.)
STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)
# On SIGINT/SIGTERM (a deploy, a scale-in) running activities get this long to finish before
# they are cancelled and retried on a live worker; a failover's AWS calls take well under a
# second, and an hour-long watch would otherwise hold the shutdown. The SDK hands the sticky
# queue back at shutdown (ShutdownWorker), so no workflow task waits for a worker stopped so.
GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# Libraries only activities use. Some import modules lazily on first use, and the workflow
# sandbox's import hook sees those imports while a workflow task runs; passing them through
# keeps them out of the sandbox (and its "imported after initial workflow load" warnings).
# Each monitored cluster's watch holds an activity slot for as long as it runs (up to an
# hour); the SDK's default of 100 slots would leave no room for a failover's steps from
# about 100 clusters on. A watch is a coroutine, so slots are cheap.
log = logging.getLogger("failover.worker")
ACTIVITY_SLOTS = 2000
# Heartbeats reach the server at least this often whatever the heartbeat timeout (the SDK
# would wait 80% of it, 8 s for a watch): a cancelled watch stops within a second, and its
# progress (rounds, what it sees) stays fresh in `failover monitor status`.
HEARTBEAT_THROTTLE = timedelta(seconds=1)
ACTIVITY_ONLY_MODULES = ("redis", "opentelemetry", "dns", "httpx", "aiohttp", "boto3", "botocore")


def build_worker(
    client: Client,
    *,
    aws: AwsSettings | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    probe_transport: httpx.AsyncBaseTransport | None = None,
    watch: ClusterWatchActivities | None = None,
    report_dir: Path | None = None,
) -> Worker:
    """All workflows and activities on one task queue; tests hand in their own clients.

    The worker's task queue is also a vantage point: it runs the monitors' watches too.
    """
    aws = aws or AwsSettings()
    configure_secrets(aws)
    route53 = Route53Activities(aws_client_factory(aws, "route53"))
    nlb = NlbActivities(aws_client_factory(aws, "elbv2"))
    probes = SearchProbeActivities(transport=probe_transport)
    regional = region_clients(aws)
    caches = CacheActivities(
        ssm_factory=aws_client_factory(aws, "ssm"),
        ec2_factory=aws_client_factory(aws, "ec2"),
        clients=regional,
    )
    verify = VerifyActivities(transport=probe_transport)
    data = SearchDataActivities(transport=probe_transport)
    watch = watch or ClusterWatchActivities()
    control = FailoverControlActivities(client)
    reports = ReportActivities(report_dir)
    notify = NotifyActivities(
        sns_factory=aws_client_factory(aws, "sns"), http_transport=probe_transport
    )
    region = RegionActivities(regional)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            FailoverWorkflow,
            MonitorWorkflow,
            DrillWorkflow,
            ReseedWorkflow,
            RegionSwitchWorkflow,
            RegionDrillWorkflow,
        ],
        activities=[
            route53.read_record,
            route53.upsert_record,
            route53.wait_insync,
            nlb.describe_targets,
            nlb.register_targets,
            nlb.deregister_targets,
            nlb.wait_targets,
            probes.probe_side,
            caches.flush_cache,
            verify.check_search_path,
            verify.probe_switch_target,
            verify.check_storefront,
            verify.storefront_probe_loop,
            data.read_data,
            data.promote,
            data.follow,
            data.wait_synced,
            data.check_indices,
            data.check_writes,
            watch.watch_cluster,
            control.start_failover,
            control.await_failover,
            control.monitor_data_record,
            control.drill_guardrail_facts,
            reports.write_drill_report,
            notify.notify,
            region.read_app_tier,
            region.scale_app_tier,
            region.wait_capacity,
            region.read_database,
            region.switch_database,
            region.wait_database_writer,
            region.read_cache_datastore,
            region.failover_cache_datastore,
            region.wait_cache_datastore,
            verify.check_app_health,
            verify.check_cart,
        ],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                *ACTIVITY_ONLY_MODULES
            )
        ),
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
        **_activity_options(),
    )


def build_vantage_worker(
    client: Client,
    *,
    task_queue: str,
    local_address: str | None = None,
    heap: HeapFreezer | None = None,
) -> Worker:
    """A probe worker for one vantage point (an AZ or region): it runs the monitors'
    watches and a Region switch's health checks of the Region it would leave. `heap`: the
    process's HeapFreezer (`tune_gc`), when it is a worker process of its own."""
    watch = ClusterWatchActivities(local_address=local_address, heap=heap)
    verify = VerifyActivities(
        transport=httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
    )
    return Worker(
        client,
        task_queue=task_queue,
        activities=[watch.watch_cluster, verify.check_app_health],
        **_activity_options(),
    )


def _activity_options() -> dict[str, Any]:
    """What the main worker and the vantage workers run their activities with."""
    return {
        "interceptors": _interceptors(),
        "max_concurrent_activities": ACTIVITY_SLOTS,
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
    }


# Interceptors a wrapping entry point adds to every worker this process builds: the
# sandbox's crash points (`python -m sandbox.crash`), without the runtime knowing of them.
EXTRA_INTERCEPTORS: list[Interceptor] = []


def _interceptors() -> list[Interceptor]:
    return [AutoHeartbeat(), *EXTRA_INTERCEPTORS]


async def run_until_signalled(
    worker: Worker, on_started: Callable[[], Awaitable[None]] | None = None
) -> None:
    stop = stop_on_signals()
    async with worker:
        if on_started is not None:
            await on_started()
        await stop.wait()


# Python's young passes (every 700 new objects) stay: at 10,000 they are a tenth as many,
# but one walks so many young objects that it pauses 40-100 ms when monitors start. The
# middle generation is collected every 5 young passes, not 10: its passes halve, to 10 ms.
GC_THRESHOLDS = (700, 5, 10)


def tune_gc() -> HeapFreezer:
    """The collector of a worker process that runs hundreds of watches: shorter middle
    passes, the start-up heap frozen now, and the rest as the watches run (HeapFreezer)."""
    gc.set_threshold(*GC_THRESHOLDS)
    heap = HeapFreezer()
    heap.freeze(collect=2)
    return heap


MONITOR_CHECK_EVERY_SECONDS = 60.0


async def keep_monitors_running(client: Client, config: AppConfig) -> None:
    """Restarts a monitor that someone terminated (or that failed), once a minute.

    Describing is a read: it adds nothing to the monitors' histories, unlike a signal.
    """
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from failover.client.operations import ensure_monitor
    from failover.names import monitor_workflow_id

    while True:
        await asyncio.sleep(MONITOR_CHECK_EVERY_SECONDS)
        for cluster in config.clusters:
            if not cluster.monitor.enabled:
                continue
            handle = client.get_workflow_handle(monitor_workflow_id(cluster.name))
            try:
                status = (await handle.describe()).status
            except RPCError:
                status = None
            if status != WorkflowExecutionStatus.RUNNING:
                try:
                    await ensure_monitor(client, cluster, task_queue=config.task_queue)
                    log.info("monitor restarted: %s (was %s)", handle.id, status)
                except RPCError as exc:
                    log.warning("monitor %s not restarted: %s", handle.id, exc.message)


async def serve(
    config: AppConfig | None,
    *,
    monitors: bool = True,
    vantage: str | None = None,
    source_address: str | None = None,
    receiver: bool = False,
) -> None:
    aws = config.aws if config else AwsSettings()
    task_queue = config.task_queue if config else DEFAULT_TASK_QUEUE
    endpoint = configured_endpoint()
    server = None
    if endpoint is None:
        directory = state_dir()
        port = int(os.environ.get("FAILOVER_TEMPORAL_PORT", "7233"))
        ui_port = int(os.environ.get("FAILOVER_TEMPORAL_UI_PORT", str(port + 1000)))
        server = EmbeddedTemporalServer(directory, port=port, ui_port=ui_port)
        client = await server.start()
        endpoint = server.endpoint
        log.info("embedded Temporal dev server at %s, log in %s", endpoint.address, server.log_path)
    else:
        client = await connect(endpoint)
    # Filterable runs in the Web UI; a server that refuses them still fails over.
    missing = await visibility.register(client)
    if missing:
        log.warning("search attributes not registered: %s", ", ".join(missing))
    heap = tune_gc()
    if vantage is not None:
        configure_secrets(aws)  # its watches read basic-auth passwords too
        worker = build_vantage_worker(
            client, task_queue=vantage, local_address=source_address, heap=heap
        )
        _announce(endpoint, vantage)
    else:
        worker = build_worker(
            client,
            aws=aws,
            task_queue=task_queue,
            watch=ClusterWatchActivities(local_address=source_address, heap=heap),
        )
        _announce(endpoint, task_queue)

    async def start_monitors() -> None:
        if config is not None and monitors and vantage is None:
            for workflow_id in await ensure_monitors(client, config):
                log.info("monitor running: %s", workflow_id)
            background.append(asyncio.create_task(keep_monitors_running(client, config)))
        if receiver and config is not None:
            background.append(
                asyncio.create_task(serve_receiver(config, _same(client), stop=receiver_stop))
            )
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise pause the probe loop for 100+ ms (the
        # watches' state is frozen as it settles: HeapFreezer).
        heap.freeze(collect=2)

    background: list[asyncio.Task[None]] = []
    receiver_stop = asyncio.Event()

    try:
        await run_until_signalled(worker, start_monitors)
    finally:
        receiver_stop.set()
        for task in background:
            task.cancel()
        if server is not None:
            server.stop()
    log.info("worker stopped")


def _same(client: Client) -> Callable[[], Awaitable[Client]]:
    async def connected() -> Client:
        return client

    return connected


def _announce(endpoint: TemporalEndpoint, task_queue: str) -> None:
    log.info(
        "worker polling task queue %r on %s/%s", task_queue, endpoint.address, endpoint.namespace
    )
    if endpoint.ui_url:
        log.info("Temporal Web UI: %s/namespaces/%s/workflows", endpoint.ui_url, endpoint.namespace)
    sys.stdout.flush()


def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="FAILOVER_CONFIG", help="cluster config (YAML)"),
    ] = None,
    monitors: Annotated[
        bool,
        typer.Option(help="start (or update) a monitor workflow for each cluster in config"),
    ] = True,
    vantage: Annotated[
        str | None,
        typer.Option(
            help="run as the probe worker of this vantage point (its task queue) only",
        ),
    ] = None,
    source_address: Annotated[
        str | None, typer.Option(help="source IP address for the probes of this worker")
    ] = None,
    receiver: Annotated[
        bool, typer.Option(help="also run the alarm receiver (the config's receiver section)")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            envvar="FAILOVER_LOG_FORMAT",
            help="text, or json: one object per line, with cluster and workflow_id",
        ),
    ] = "text",
    metrics_address: Annotated[
        str | None,
        typer.Option(
            envvar="FAILOVER_METRICS_ADDRESS",
            help="serve Prometheus metrics (the SDK's and ours) at HOST:PORT /metrics",
        ),
    ] = None,
) -> None:
    """Run the failover worker until SIGINT/SIGTERM."""
    app_config = None
    if config is not None:
        try:
            app_config = load_config(config)
            if receiver:
                check_receiver_config(app_config)
        except ConfigError as err:
            for line in err.errors:
                print(f"config error: {line}", file=sys.stderr)
            exit_now(2)
    elif receiver:
        print("config error: --receiver needs --config with a receiver section", file=sys.stderr)
        exit_now(2)
    try:  # bad payload keys stop the worker here, not at its first workflow task
        codec = payload_codec_from_env()
    except PayloadKeyError as err:
        for line in err.errors:
            print(f"config error: {line}", file=sys.stderr)
        exit_now(2)
    if log_format not in ("text", "json"):
        print(f"error: --log-format must be text or json, not {log_format!r}", file=sys.stderr)
        exit_now(2)
    logs.configure(log_format)  # type: ignore[arg-type]
    if codec is not None:
        log.info(
            "payloads encrypted with key %s; keys that decrypt: %s",
            codec.keys.current,
            ", ".join(codec.keys.ids),
        )
    if metrics_address is not None:
        metrics.serve_prometheus(metrics_address)
        log.info("metrics at http://%s/metrics", metrics_address)
    asyncio.run(
        serve(
            app_config,
            monitors=monitors,
            vantage=vantage,
            source_address=source_address,
            receiver=receiver,
        )
    )
    exit_now(0)


if __name__ == "__main__":
    typer.run(main)
