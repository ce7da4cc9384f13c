"""`failover sandbox up|fault` and `failover demo`: the embedded local stack from the
operator's command line. Registered into `failover` through the `search_failover.cli`
entry point, so a runtime install without the sandbox's extras has no such commands.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from failover.cli.common import JsonOption, err, out, run_async
from failover.cli.output import print_report, print_steps
from failover.client.temporal import state_dir
from failover.process import exit_now, stop_on_signals
from sandbox.demo import demo_succeeded, run_demo, run_drill_demo
from sandbox.search_sim import FaultMode, NodeFault, set_fault_remote
from sandbox.stack import SANDBOX_AWS_ENV, Sandbox, SandboxInfo

sandbox_app = typer.Typer(no_args_is_help=True, help="The embedded local stack.")


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
    app.command()(demo)


ModeOption = Annotated[str, typer.Option("--mode", help="how traffic moves: dns (Route 53) or nlb")]
ProbeIntervalOption = Annotated[
    float, typer.Option("--probe-interval", min=0.05, help="seconds between probe rounds")
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
) -> None:
    """Run the local stack in the foreground until Ctrl-C."""

    async def go() -> None:
        sandbox = Sandbox(
            state_dir(),
            mode=_mode(mode),  # type: ignore[arg-type]
            temporal_port=port,
            ui_port=ui_port,
            with_worker=with_worker,
            probe_interval=probe_interval,
            monitors=monitors,
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
            await _wait_for_signal()
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


def demo(
    mode: ModeOption = "dns",
    as_json: JsonOption = False,
    keep: Annotated[bool, typer.Option(help="keep the stack running afterwards")] = False,
    probe_interval: ProbeIntervalOption = 1.0,
    drill: Annotated[
        bool, typer.Option("--drill", help="run one whole drill instead, and print its report")
    ] = False,
) -> None:
    """Start the sandbox, kill the primary; the monitor detects it and fails over; print the
    timeline; stop. With --drill: a drill on the healthy sandbox, and its report."""
    # The NLB stand-in logs every connection it cannot place while the primary is down.
    logging.getLogger("sandbox.nlb").setLevel(logging.ERROR)

    async def go() -> dict[str, Any]:
        sandbox = Sandbox(
            Path(tempfile.mkdtemp(prefix="failover-demo-")),
            mode=_mode(mode),  # type: ignore[arg-type]
            probe_interval=probe_interval,
        )
        await sandbox.start()
        try:
            report = await (run_drill_demo(sandbox) if drill else run_demo(sandbox))
            if keep:
                _print_demo_or_drill(report, drill)
                out.print("stack kept running; Ctrl-C stops it")
                await _wait_for_signal()
            return report
        finally:
            await sandbox.stop()

    report = run_async(go())
    succeeded = report["verdict"] == "pass" if drill else demo_succeeded(report)
    if succeeded:  # a failed demo keeps its logs and SQLite history for a look
        shutil.rmtree(report.pop("state_dir"), ignore_errors=True)
    if as_json:
        print(json.dumps(report))
    elif not keep:
        _print_demo_or_drill(report, drill)
    exit_now(0 if succeeded else 1)


def _print_demo_or_drill(report: dict[str, Any], drill: bool) -> None:
    if not drill:
        _print_demo(report)
        return
    from failover.models import DrillReport

    print_report(DrillReport.model_validate(report))
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
    print_steps(report["steps"], rto=report["rto_seconds"])
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
