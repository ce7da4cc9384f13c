"""`failover sandbox up|fault` and `failover demo`: the embedded local stack from the
operator's command line. Registered into `failover` through the `search_failover.cli`
entry point, so a runtime install without the sandbox's extras has no such commands.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from failover.cli.common import JsonOption, command_group, err, out, run_async
from failover.cli.output import print_report, print_steps
from failover.client.temporal import state_dir
from failover.process import exit_now, stop_on_signals
from sandbox.info import SANDBOX_AWS_ENV, SandboxInfo

# Without the sandbox's extras there are no sandbox commands: `failover` skips a command
# module that cannot be imported. Looked up, not imported, to keep every command fast.
for _extra in ("moto", "dnslib", "graphql"):
    if importlib.util.find_spec(_extra) is None:
        raise ImportError(f"the sandbox's commands need {_extra}: pip install '.[sandbox]'")

# The stack, the simulator and the demos (moto, aiohttp, graphql: seconds of imports) are
# imported by the commands that run them: every `failover` command loads this module.

sandbox_app = command_group("The embedded local stack.")


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
    app.command()(demo)


ModeOption = Annotated[str, typer.Option("--mode", help="how traffic moves: dns (Route 53) or nlb")]
ProbeIntervalOption = Annotated[
    float, typer.Option("--probe-interval", min=0.05, help="seconds between probe rounds")
]


ReplicationOption = Annotated[
    bool,
    typer.Option(
        "--replication/--no-replication",
        help="the standby's indices follow the primary's; a failover promotes them",
    ),
]


def _mode(mode: str) -> str:
    if mode not in ("dns", "nlb"):
        err.print(f"error: --mode must be dns or nlb, not {mode!r}")
        exit_now(2)
    return mode


@sandbox_app.command("up")
def sandbox_up(
    mode: ModeOption = "dns",
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker")] = True,
    port: Annotated[int, typer.Option(help="Temporal gRPC port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port")] = 8233,
    probe_interval: ProbeIntervalOption = 1.0,
    monitors: Annotated[
        bool, typer.Option(help="start the cluster's monitor (with the in-process worker)")
    ] = True,
    replication: ReplicationOption = False,
    region: Annotated[
        bool,
        typer.Option(
            "--region",
            help="also run the storefront in two Regions (us-east-1, us-west-2) behind www, "
            "for a Region switch",
        ),
    ] = False,
) -> None:
    """Run the local stack in the foreground until Ctrl-C."""
    from sandbox.stack import Sandbox

    async def go() -> None:
        # Before the start: a Ctrl-C while it starts then stops it cleanly, as one after.
        stop = stop_on_signals()
        sandbox = Sandbox(
            state_dir(),
            mode=_mode(mode),  # type: ignore[arg-type]
            temporal_port=port,
            ui_port=ui_port,
            with_worker=with_worker,
            probe_interval=probe_interval,
            monitors=monitors,
            replication=replication,
            regions=region,
        )
        info = await sandbox.start()
        try:
            out.print(f"Temporal       {info.temporal.address}  (namespace default)")
            out.print(f"Web UI         {info.temporal.ui_url}")
            out.print(f"AWS (moto)     {info.aws_endpoint}  zone {info.hosted_zone_id}")
            out.print(f"AWS faults     {info.aws_proxy_url}/__faults__  (the worker's endpoint)")
            out.print(f"fault control  {info.simulator_control_url}")
            out.print(f"storefront     {info.storefront_url}  (Varnish → storefront → Redis)")
            out.print(
                f"search path    {info.search_url}  (mode {info.mode}, DNS {info.dns_server})"
            )
            for name, nodes in info.clusters.items():
                out.print(f"{name:<14} {' '.join(nodes)}")
            if info.regions:
                out.print(f"www            {info.www_url}  (DNS {info.dns_server})")
                for site in info.regions:
                    out.print(
                        f"{site.region:<14} {site.role}: ALB {site.alb_url} ({site.alb_name}), "
                        f"ASG {site.auto_scaling_group}, search {site.search_cluster}"
                    )
                out.print(
                    f"global data    Aurora {info.global_cluster_id}, "
                    f"ElastiCache {info.global_datastore_id}"
                )
            out.print(f"config         {info.config_path}")
            out.print("vantage points probe workers b and c running in this process")
            if with_worker:
                out.print("worker         running in this process")
                if monitors:
                    out.print("monitor        running: faults are detected and failed over")
            else:
                aws_env = " ".join(f"{k}={v}" for k, v in SANDBOX_AWS_ENV.items())
                out.print("worker         not started; run your own with:")
                out.print(
                    f"  TEMPORAL_ADDRESS={info.temporal.address} {aws_env} "
                    f"python worker.py --config {info.config_path}"
                )
            out.print("Ctrl-C stops everything.")
            await stop.wait()
        finally:
            await sandbox.stop()

    run_async(go())
    exit_now(0)


async def _wait_for_signal() -> None:
    await stop_on_signals().wait()


@sandbox_app.command("fault")
def sandbox_fault(
    cluster: Annotated[str, typer.Argument(help="simulated cluster, e.g. es-primary")],
    node: Annotated[str, typer.Argument(help="node index (0, 1, …) or 'all'")],
    mode: Annotated[str, typer.Argument(help="healthy, down, hang, slow, http_500, …")],
    slow_ms: Annotated[int, typer.Option(help="delay for 'slow'")] = 2000,
    flap_period: Annotated[float, typer.Option(help="seconds per phase for 'flapping'")] = 2.0,
) -> None:
    """Put a simulated node (or all of a cluster's) into a fault mode."""
    from sandbox.search_sim import FaultMode, NodeFault, set_fault_remote

    info = SandboxInfo.load(state_dir())
    if info is None:
        err.print(f"error: no sandbox is running (no sandbox.json in {state_dir()})")
        exit_now(2)
    try:
        fault = NodeFault(FaultMode(mode), slow_ms=slow_ms, flap_period_s=flap_period)
    except ValueError:
        err.print(f"error: unknown mode {mode!r}; one of: {', '.join(m.value for m in FaultMode)}")
        exit_now(2)
    if node != "all" and not node.isdigit():
        err.print(f"error: node must be an index or 'all', not {node!r}")
        exit_now(2)
    index = None if node == "all" else int(node)
    try:
        answer = run_async(set_fault_remote(info.simulator_control_url, cluster, index, fault))
    except Exception as exc:  # the control API's own message names what was wrong
        err.print(f"error: {exc}")
        exit_now(2)
    out.print(json.dumps(answer))
    exit_now(0)


DATA_ACTIONS = (
    "replication_fault",
    "write_documents",
    "reindex_store",
    "drop_alias",
    "point_alias",
    "set_index_health",
)


@sandbox_app.command("data")
def sandbox_data(
    cluster: Annotated[str, typer.Argument(help="simulated cluster, e.g. es-standby")],
    action: Annotated[str, typer.Argument(help=", ".join(DATA_ACTIONS))],
    kind: Annotated[
        str | None, typer.Option(help="replication_fault: pause, fail, resume, lag, sync")
    ] = None,
    index: Annotated[str | None, typer.Option(help="an index or alias")] = None,
    operations: Annotated[int | None, typer.Option(help="replication_fault lag: how many")] = None,
    count: Annotated[int | None, typer.Option(help="write_documents: how many")] = None,
    store: Annotated[int | None, typer.Option(help="reindex_store: the store id")] = None,
    alias: Annotated[str | None, typer.Option(help="drop_alias, point_alias")] = None,
    status: Annotated[str | None, typer.Option(help="set_index_health: red, yellow")] = None,
) -> None:
    """Change a simulated cluster's indices: replication faults, writes, a reindex, aliases."""
    from sandbox.search_sim import set_data_fault_remote

    info = SandboxInfo.load(state_dir())
    if info is None:
        err.print(f"error: no sandbox is running (no sandbox.json in {state_dir()})")
        exit_now(2)
    if action not in DATA_ACTIONS:
        err.print(f"error: unknown action {action!r}; one of: {', '.join(DATA_ACTIONS)}")
        exit_now(2)
    given = {
        "kind": kind,
        "index": index,
        "operations": operations,
        "count": count,
        "store": store,
        "alias": alias,
        "status": status,
    }
    params = {k: v for k, v in given.items() if v is not None}
    try:
        answer = run_async(
            set_data_fault_remote(info.simulator_control_url, cluster, action, **params)
        )
    except Exception as exc:  # the control API's own message names what was wrong
        err.print(f"error: {exc}")
        exit_now(2)
    out.print(json.dumps(answer))
    exit_now(0)


def demo(
    mode: ModeOption = "dns",
    as_json: JsonOption = False,
    keep: Annotated[bool, typer.Option(help="keep the stack running afterwards")] = False,
    probe_interval: ProbeIntervalOption = 1.0,
    drill: Annotated[
        bool, typer.Option("--drill", help="run one whole drill instead, and print its report")
    ] = False,
    region: Annotated[
        bool,
        typer.Option(
            "--region",
            help="kill the primary Region instead (app, search, database writer) and show "
            "the whole storefront's switch to the DR Region",
        ),
    ] = False,
    replication: ReplicationOption = True,
) -> None:
    """Start the sandbox, kill the primary; the monitor detects it and fails over; print the
    timeline; stop. With --drill: a drill on the healthy sandbox, and its report. With
    --region: a Region outage, the approved switch to the DR Region, what customers saw."""
    if drill and region:
        err.print("error: --drill and --region are different demos; choose one")
        exit_now(2)
    from sandbox.demo import (
        demo_succeeded,
        region_demo_succeeded,
        run_demo,
        run_drill_demo,
        run_region_demo,
    )
    from sandbox.stack import Sandbox

    kind = "drill" if drill else "region" if region else "search"
    # The NLB stand-in logs every connection it cannot place while the primary is down.
    logging.getLogger("sandbox.nlb").setLevel(logging.ERROR)
    _core_logs_to_stderr()

    async def go() -> dict[str, Any]:
        sandbox = Sandbox(
            Path(tempfile.mkdtemp(prefix="failover-demo-")),
            mode=_mode(mode),  # type: ignore[arg-type]
            probe_interval=probe_interval,
            replication=replication,
            regions=region,
            # The Region switch fails search over itself; a monitor racing it for the
            # cluster's failover would only be waited for.
            monitors=not region,
        )
        await sandbox.start()
        try:
            runs = {"drill": run_drill_demo, "region": run_region_demo, "search": run_demo}
            report = await runs[kind](sandbox)
            if keep:
                _print_demo_or_drill(report, kind)
                out.print("stack kept running; Ctrl-C stops it")
                await _wait_for_signal()
            return report
        finally:
            await sandbox.stop()

    report = run_async(go())
    if kind == "drill":
        succeeded = report["verdict"] == "pass"
    else:
        succeeded = (region_demo_succeeded if region else demo_succeeded)(report)
    if succeeded:  # a failed demo keeps its logs and SQLite history for a look
        shutil.rmtree(report.pop("state_dir"), ignore_errors=True)
    if as_json:
        print(json.dumps(report))
    elif not keep:
        _print_demo_or_drill(report, kind)
    exit_now(0 if succeeded else 1)


def _core_logs_to_stderr() -> None:
    """The SDK core prints its warnings on stdout by default; stdout is the report's (one
    JSON object with --json), so they go through Python's logging, on stderr."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

    logging_config = dataclasses.replace(
        LoggingConfig.default,
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=logging_config)))


def _print_demo_or_drill(report: dict[str, Any], kind: str) -> None:
    if kind == "search":
        _print_demo(report)
        return
    if kind == "region":
        _print_region_demo(report)
        return
    from failover.models import DrillReport

    print_report(DrillReport.model_validate(report))
    out.print(f"workflow: {report['workflow_id']}  {report['ui_url']}")


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def _print_region_demo(report: dict[str, Any]) -> None:
    regions = report["regions"]
    out.print(
        f"{report['storefront']}: {report['result']} ({report['from_region']} "
        f"{regions.get(report['from_region'] or '', '?')} → {report['to_region']} "
        f"{regions.get(report['to_region'] or '', '?')}, {report['mode']} database failover)",
        style="bold",
    )
    out.print(f"reason: {report['reason']}")
    out.print("plan (a dry run before the fault):")
    for line in report["plan"]:
        out.print(f"  {line}")
    out.print(f"fault: {report['fault']}")
    out.print(f"switch started {_seconds(report['switch_started_seconds'])} after the fault")
    approval = report["approval"]
    if approval["asked"]:
        out.print(f"asked: {approval['asked']}")
    out.print(
        f"approved by {approval['approved_by'] or 'nobody'} "
        f"{_seconds(approval['approved_seconds'])} after the fault; the run waited "
        f"{approval['run_waited_seconds']:.3f} s for it"
        + (f" (refused: {approval['refused']})" if approval["refused"] else "")
    )
    for warning in report["warnings"]:
        out.print(f"warning: {warning}")
    for flushed in report["flushed"]:
        out.print(f"flushed {flushed['type']} {flushed['name']}: {flushed['detail']}")
    print_steps(report["steps"])
    search = report["search"]
    if search is not None:
        out.print(
            f"search: {search['result']} {search['from']} → {search['to']} "
            f"(trigger {search['trigger']}): {', '.join(search['steps'])}"
        )
    out.print(
        f"RTO (fault → switch verified): {_seconds(report['rto_seconds'])}; without the "
        f"approval wait {_seconds(report['rto_without_approval_seconds'])}",
        style="bold",
    )
    window = report["data_loss_window_seconds"]
    out.print(
        "data-loss window (writes the DR writer may never have got): "
        + ("none (the database did not move)" if window is None else f"{window:g} s")
    )
    seen = report["storefront_requests"]
    out.print(
        f"customers through www: {seen['failed']} of {seen['total']} requests failed "
        f"({seen['failed_searches']} searches, {seen['failed_carts']} carts); failures from "
        f"{_seconds(seen['first_failure_seconds'])} to {_seconds(seen['last_failure_seconds'])}"
        f" after the fault; served again {_seconds(seen['serving_again_seconds'])} after it "
        f"(outage seen: {_seconds(seen['outage_seen_seconds'])}; a round every "
        f"{_seconds(seen['mean_round_seconds'])})"
    )
    for problem, count in seen["failures"].items():
        out.print(f"  {count:>5}  {problem}")
    served = ", ".join(f"{r} {n}" for r, n in seen["served_by_region"].items())
    out.print(f"requests served by Region: {served or 'none'}")
    after = report["after"]
    cart = "a cart works" if after["customer"]["ok"] else f"FAILS: {after['customer']}"
    out.print(
        f"now (read from outside): www → {', '.join(after['www'])}; writer "
        f"{after['writer']}; search → {', '.join(after['search_record'])}; through www {cart}"
        f" ({', '.join(after['customer']['regions']) or 'no Region'})"
    )
    restored = "restored" if report["primary_region_restored"] else "NOT restored"
    out.print(f"{regions['primary']} {restored} afterwards (www stays on the DR Region)")
    out.print(f"workflow: {report['workflow_id']}  {report['ui_url']}")


def _print_demo(report: dict[str, Any]) -> None:
    out.print(
        f"{report['cluster']}: {report['result']} "
        f"({report['from']} {report['from_value']} → {report['to']} {report['to_value']})",
        style="bold",
    )
    out.print(f"reason: {report['reason']}")
    out.print(
        f"detected by the {report['trigger']} {report['detection_seconds']:.3f} s after the fault"
    )
    what = "registered targets" if report["mode"] == "nlb" else "record"
    out.print(f"{what} now: {', '.join(report['switched_after'])}")
    for flushed in report["flushed"]:
        out.print(f"flushed {flushed['type']} {flushed['name']}: {flushed['detail']}")
    for warning in report["warnings"]:
        out.print(f"warning: {warning}")
    for line in report["standby_data"]["readiness"]:
        out.print(f"standby data: {line}")
    # The preflight's detail is the readiness above; the other steps' details fit a row.
    steps = [s | {"detail": None} if s["name"] == "preflight" else s for s in report["steps"]]
    print_steps(steps, rto=report["rto_seconds"])
    recovered = report["storefront_recovered_seconds"]
    requests = report["storefront_requests"]
    out.print(
        f"storefront search recovered (fault → first products): "
        f"{'never' if recovered is None else f'{recovered:.3f} s'}; "
        f"{requests['failed']} failed and {requests['ok']} good searches meanwhile"
    )
    if report["poisoned_page_cached_during_outage"]:
        fixed = "gone" if report["category_page_fixed_after"] else "STILL SERVED"
        out.print(f"category page cached broken during the outage: {fixed} after the flush")
    out.print(f"workflow: {report['workflow_id']}  {report['ui_url']}")
