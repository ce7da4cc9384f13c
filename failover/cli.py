"""`failover`: the operator's command line.

Every command that talks to Temporal finds it through TEMPORAL_ADDRESS, or through the
state folder of a running local stack. Exit codes: 0 success, 1 the operation ran but
did not succeed (e.g. a demo that did not fail over), 2 bad input or configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from failover import logs, names
from failover.config import AppConfig, ConfigError, load_config
from failover.process import exit_now
from failover.temporal import connect, find_endpoint, state_dir

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
config_app = typer.Typer(no_args_is_help=True, help="Check configuration files.")
monitor_app = typer.Typer(
    no_args_is_help=True, help="The always-on monitors (one workflow per cluster)."
)
app.add_typer(config_app, name="config")
app.add_typer(monitor_app, name="monitor")
drill_app = typer.Typer(
    no_args_is_help=True, help="Failover drills: run one, schedule them, read their reports."
)
app.add_typer(drill_app, name="drill")

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FAILOVER_CONFIG",
        help="cluster config (YAML); default: the running sandbox's config",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        exit_now(2)


def _load(config: Path | None) -> AppConfig:
    path = config or state_dir() / "config.yaml"
    if config is None and not path.exists():
        err.print("error: no --config given and no running sandbox config at " + str(path))
        exit_now(2)
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"{path}: {line}")
        exit_now(2)


@config_app.command("check")
def config_check(file: Path) -> None:
    """Validate a config file and print every error with its path (exit 2 when invalid)."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        for line in exc.errors:
            out.print(f"{file}: {line}")
        out.print(f"{file}: {len(exc.errors)} error(s)")
        exit_now(2)
    names = ", ".join(c.name for c in config.clusters)
    out.print(f"{file}: valid ({len(config.clusters)} cluster(s): {names})")
    exit_now(0)


@app.command()
def trigger(
    cluster: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "manual trigger",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a failover of CLUSTER, or attach to the one already running."""
    app_config = _load(config)
    try:
        cluster_config = app_config.cluster(cluster)
    except ConfigError as exc:
        err.print(f"error: {exc}")
        exit_now(2)

    async def go() -> dict[str, Any]:
        from failover.operations import start_or_attach_failover

        endpoint = find_endpoint()
        client = await connect(endpoint)
        handle = await start_or_attach_failover(
            client, cluster_config, task_queue=app_config.task_queue, reason=reason
        )
        return {
            "workflow_id": handle.id,
            "run_id": handle.result_run_id,
            "ui_url": endpoint.workflow_url(handle.id, handle.result_run_id),
        }

    started = _run(go())
    if as_json:
        print(json.dumps(started))
    else:
        out.print(f"failover {started['workflow_id']} run {started['run_id']}")
        if started["ui_url"]:
            out.print(f"watch it: {started['ui_url']}")
    exit_now(0)


@app.command()
def status(cluster: Annotated[str | None, typer.Argument()] = None, as_json: JsonOption = False):
    """Show the running failover's phase, or the last result, for one cluster or all."""

    async def go() -> list[dict[str, Any]]:
        from temporalio.service import RPCError

        from failover.operations import failover_state, list_failover_clusters

        client = await connect(find_endpoint())
        clusters = [cluster] if cluster else await list_failover_clusters(client)
        states = []
        for name in clusters:
            try:
                states.append(await failover_state(client, name))
            except RPCError as exc:
                states.append({"cluster": name, "error": exc.message})
        return states

    states = _run(go())
    if as_json:
        print(json.dumps(states[0] if cluster else states))
    elif not states:
        out.print("no failovers have run")
    for state in [] if as_json else states:
        _print_state(state)
    exit_now(0 if all("error" not in s for s in states) else 1)


def _print_state(state: dict[str, Any]) -> None:
    if "error" in state:
        out.print(f"{state['cluster']}: {state['error']}")
        return
    data = state.get("result") or state.get("status") or {}
    headline = data.get("result") or f"running, phase {data.get('phase')}"
    direction = f"{data.get('from_side')} → {data.get('to_side')}"
    out.print(f"{state['cluster']}: {headline} ({direction}) {state['workflow_id']}", style="bold")
    out.print(f"  reason: {data.get('reason')}")
    _print_steps(data.get("steps", []))


def _print_steps(steps: list[dict[str, Any]], rto: float | None = None) -> None:
    table = Table("step", "seconds", "outcome", "detail", box=None, pad_edge=False)
    for step in steps:
        detail = step.get("detail") or ""
        table.add_row(step["name"], f"{step['seconds']:.3f}", step["outcome"], detail)
    out.print(table)
    if rto is not None:
        out.print(f"RTO (fault → verified switch): {rto:.3f} s", style="bold")


def _cluster_of(app_config: AppConfig, name: str) -> Any:
    try:
        return app_config.cluster(name)
    except ConfigError as exc:
        err.print(f"error: {exc}")
        exit_now(2)


@app.command()
def failback(
    cluster: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "failback",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move CLUSTER back to the primary, verified (rolled back if the check fails)."""
    app_config = _load(config)
    cluster_config = _cluster_of(app_config, cluster)

    async def go() -> dict[str, Any]:
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from failover.operations import start_failback

        client = await connect(find_endpoint())
        try:
            handle = await start_failback(
                client, cluster_config, task_queue=app_config.task_queue, reason=reason
            )
        except WorkflowAlreadyStartedError:
            err.print(f"error: failover-{cluster} is running; wait for it, then fail back")
            exit_now(2)
        return (await handle.result()).model_dump(mode="json")

    result = _run(go())
    if as_json:
        print(json.dumps(result))
    else:
        out.print(
            f"{cluster}: {result['result']} ({result['from_side']} → {result['to_side']})",
            style="bold",
        )
        out.print(f"  reason: {result['reason']}")
        _print_steps(result["steps"])
    exit_now(0 if result["result"] in ("failed_over", "failed_over_with_warnings") else 1)


def _failover_update(cluster: str, update: str, request: Any) -> Any:
    async def go() -> Any:
        from failover.models import FailoverStatus
        from failover.names import failover_workflow_id
        from failover.operations import send_update

        client = await connect(find_endpoint())
        handle = client.get_workflow_handle(failover_workflow_id(cluster))
        return await send_update(handle, update, request, result_type=FailoverStatus)

    return _run_rpc(go(), missing=f"no failover of {cluster} is running")


@app.command()
def approve(cluster: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Approve the failover of CLUSTER that waits for approval (require_approval)."""
    from failover.models import ApproveRequest

    who = _identity(identity)
    status = _failover_update(
        cluster, names.APPROVE_UPDATE, ApproveRequest(identity=who, reason=reason)
    )
    out.print(f"failover-{cluster} approved by {who} (phase {status.phase})")
    exit_now(0)


@app.command()
def abort(cluster: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Abort the failover of CLUSTER before it switches (after the switch: failback)."""
    from failover.models import AbortRequest

    who = _identity(identity)
    _failover_update(cluster, names.ABORT_UPDATE, AbortRequest(identity=who, reason=reason))
    out.print(f"failover-{cluster}: abort requested by {who}")
    exit_now(0)


@app.command()
def plan(cluster: str, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print exactly what a failover of CLUSTER would change and check; change nothing."""
    app_config = _load(config)
    cluster_config = _cluster_of(app_config, cluster)

    async def go() -> Any:
        from failover.operations import plan_failover

        client = await connect(find_endpoint())
        return await plan_failover(client, cluster_config, task_queue=app_config.task_queue)

    result = _run(go())
    if result.plan is None:
        err.print(f"{cluster}: no plan: {result.reason}")
        exit_now(1)
    if as_json:
        print(json.dumps(result.plan.model_dump(mode="json")))
    else:
        for line in result.plan.lines():
            out.print(line)
    exit_now(0)


# --- drills ----------------------------------------------------------------------------------

HoldOption = Annotated[
    float | None, typer.Option("--hold", min=0, help="seconds on the standby (default: config)")
]


def _print_report(report: Any) -> None:
    from failover.report import headline

    out.print(headline(report), style="bold")
    out.print(f"  {report.verdict}: {report.reason}")
    _print_steps([p.model_dump() for p in report.phases])
    for title, run in (("failover", report.failover), ("failback", report.failback)):
        if run is not None:
            out.print(f"{title}: {run.result.value} ({run.from_side} → {run.to_side})")
            _print_steps([s.model_dump() for s in run.steps])
    for run in report.plans:
        if run.plan is not None:
            for line in run.plan.lines():
                out.print(f"  {line}")
    if report.files is not None:
        out.print(f"report: {report.files.markdown}, {report.files.html}")


def _reportexit_now(report: Any) -> NoReturn:
    exit_now(0 if report.verdict == "pass" or (report.dry_run and report.plans) else 1)


@drill_app.command("run")
def drill_run(
    cluster: str,
    config: ConfigOption = None,
    hold: HoldOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan both switches only")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run one drill of CLUSTER now and print its report (exit 0 when it passes)."""
    app_config = _load(config)
    cluster_config = _cluster_of(app_config, cluster)

    async def go() -> Any:
        from failover.operations import start_drill

        client = await connect(find_endpoint())
        handle = await start_drill(
            client,
            cluster_config,
            task_queue=app_config.task_queue,
            dry_run=dry_run,
            hold_seconds=hold,
        )
        if not as_json:
            out.print(f"drill {handle.id} started")
        return await handle.result()

    report = _run(go())
    if as_json:
        print(json.dumps(report.model_dump(mode="json")))
    else:
        _print_report(report)
    _reportexit_now(report)


def _every(text: str) -> Any:
    import re
    from datetime import timedelta

    match = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if match is None:
        err.print(f"error: --every {text!r}: write a number and a unit, e.g. 7d, 12h, 30m")
        exit_now(2)
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return timedelta(**{unit[match.group(2)]: int(match.group(1))})


@drill_app.command("schedule")
def drill_schedule(
    cluster: str,
    cron: Annotated[str | None, typer.Option(help='cron, e.g. "0 3 * * sun" (UTC)')] = None,
    every: Annotated[str | None, typer.Option(help="an interval, e.g. 7d")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    hold: HoldOption = None,
    config: ConfigOption = None,
) -> None:
    """Create or replace the Schedule drill-CLUSTER (a drill still running skips the next)."""
    if (cron is None) == (every is None):
        err.print("error: give exactly one of --cron or --every")
        exit_now(2)
    app_config = _load(config)
    cluster_config = _cluster_of(app_config, cluster)
    interval = _every(every) if every is not None else None

    async def go() -> str:
        from failover.operations import schedule_drill

        client = await connect(find_endpoint())
        handle = await schedule_drill(
            client,
            cluster_config,
            task_queue=app_config.task_queue,
            cron=cron,
            every=interval,
            paused=paused,
            hold_seconds=hold,
        )
        return handle.id

    schedule_id = _run_rpc(go(), missing="no such namespace")
    when = f"cron {cron!r}" if cron else f"every {every}"
    out.print(f"schedule {schedule_id}: {when}" + (" (paused)" if paused else ""))
    exit_now(0)


@drill_app.command("list")
def drill_list(as_json: JsonOption = False) -> None:
    """The drill schedules, and the last drills run."""

    async def go() -> dict[str, Any]:
        from failover.names import DRILL_WORKFLOW

        client = await connect(find_endpoint())
        schedules = []
        async for entry in await client.list_schedules():
            if not entry.id.startswith(names.DRILL_ID_PREFIX):
                continue
            info, schedule = entry.info, entry.schedule
            schedules.append(
                {
                    "id": entry.id,
                    "paused": bool(schedule and schedule.state.paused),
                    "next": [t.isoformat() for t in (info.next_action_times if info else [])][:1],
                }
            )
        drills = []
        async for execution in client.list_workflows(f"WorkflowType = '{DRILL_WORKFLOW}'"):
            drills.append(
                {"id": execution.id, "status": execution.status.name if execution.status else None}
            )
            if len(drills) >= 20:
                break
        return {"schedules": schedules, "drills": drills}

    listing = _run(go())
    if as_json:
        print(json.dumps(listing))
        exit_now(0)
    for schedule in listing["schedules"]:
        state = "paused" if schedule["paused"] else f"next {', '.join(schedule['next']) or '-'}"
        out.print(f"schedule {schedule['id']}: {state}")
    for drill in listing["drills"]:
        out.print(f"drill {drill['id']}: {drill['status']}")
    exit_now(0)


def _schedule_action(cluster: str, action: str) -> None:
    async def go() -> None:
        from failover.names import drill_schedule_id

        client = await connect(find_endpoint())
        handle = client.get_schedule_handle(drill_schedule_id(cluster))
        if action == "pause":
            await handle.pause(note="paused from the CLI")
        elif action == "resume":
            await handle.unpause(note="resumed from the CLI")
        elif action == "trigger":
            await handle.trigger()
        else:
            await handle.delete()

    _run_rpc(go(), missing=f"no drill schedule for {cluster} (create it: failover drill schedule)")
    out.print(f"schedule drill-{cluster}: {action}")
    exit_now(0)


@drill_app.command("pause")
def drill_pause(cluster: str) -> None:
    """Pause the drill schedule of CLUSTER."""
    _schedule_action(cluster, "pause")


@drill_app.command("resume")
def drill_resume(cluster: str) -> None:
    """Resume the drill schedule of CLUSTER."""
    _schedule_action(cluster, "resume")


@drill_app.command("trigger")
def drill_trigger(cluster: str) -> None:
    """Start a drill from the schedule of CLUSTER now (its overlap rule still applies)."""
    _schedule_action(cluster, "trigger")


@drill_app.command("delete")
def drill_delete(cluster: str) -> None:
    """Delete the drill schedule of CLUSTER."""
    _schedule_action(cluster, "delete")


@drill_app.command("abort")
def drill_abort(
    workflow_id: str, reason: ReasonOption = "", identity: IdentityOption = None
) -> None:
    """Stop a running drill safely: if traffic already moved, it fails back first."""

    async def go() -> None:
        from failover.operations import abort_drill

        client = await connect(find_endpoint())
        await abort_drill(client, workflow_id, reason=reason, identity=_identity(identity))

    _run_rpc(go(), missing=f"no drill {workflow_id}")
    out.print(f"{workflow_id}: abort requested")
    exit_now(0)


@drill_app.command("report")
def drill_report(
    workflow_id: str,
    html: Annotated[Path | None, typer.Option("--html", help="write the HTML report here")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="write Markdown here")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch a finished drill's report; print it, or write it as HTML or Markdown."""
    from failover.report import to_html, to_markdown

    async def go() -> Any:
        from failover.models import DrillReport

        client = await connect(find_endpoint())
        handle = client.get_workflow_handle(workflow_id, result_type=DrillReport)
        return await handle.result()

    report = _run_rpc(go(), missing=f"no drill {workflow_id}")
    if html is not None:
        html.write_text(to_html(report), encoding="utf-8")
    if markdown is not None:
        markdown.write_text(to_markdown(report), encoding="utf-8")
    if as_json:
        print(json.dumps(report.model_dump(mode="json")))
    elif html is None and markdown is None:
        _print_report(report)
    exit_now(0)


# --- monitors ----------------------------------------------------------------------------

ClusterArgument = Annotated[str, typer.Argument(help="cluster name from config")]
ReasonOption = Annotated[str, typer.Option(help="why; recorded in the monitor")]
IdentityOption = Annotated[
    str | None, typer.Option(help="who is acting (default: user@host)", show_default=False)
]


def _identity(identity: str | None) -> str:
    import getpass
    import socket

    return identity or f"{getpass.getuser()}@{socket.gethostname()}"


@app.command()
def receiver(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: config)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: config)")] = None,
) -> None:
    """Run the alarm receiver (SNS, EventBridge, Alertmanager) until SIGINT/SIGTERM."""
    from failover.receiver import serve_receiver

    app_config = _load(config)
    # Request text in messages is escaped, so one request cannot forge another log line.
    handler = logging.StreamHandler()
    handler.setFormatter(logs.TextFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        endpoint = find_endpoint()
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        exit_now(2)
    try:
        _run(serve_receiver(app_config, lambda: connect(endpoint), host=host, port=port))
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"config error: {line}")
        exit_now(2)
    exit_now(0)


@monitor_app.command("start")
def monitor_start(config: ConfigOption = None) -> None:
    """Start a monitor for each cluster in config, or hand running ones the current config."""
    app_config = _load(config)

    async def go() -> list[str]:
        from failover.operations import ensure_monitors

        return await ensure_monitors(await connect(find_endpoint()), app_config)

    for workflow_id in _run(go()):
        out.print(f"monitor running: {workflow_id}")
    exit_now(0)


@monitor_app.command("status")
def monitor_status_command(cluster: ClusterArgument, as_json: JsonOption = False) -> None:
    """What each vantage point sees now, the last decision, and the recent events."""

    async def go() -> dict[str, Any]:
        from failover.operations import monitor_status, watch_progress

        client = await connect(find_endpoint())
        status = await monitor_status(client, cluster)
        progress = await watch_progress(client, cluster)
        return {
            **status.model_dump(mode="json"),
            "watches": {
                v: p.model_dump(mode="json", exclude={"view"}) for v, p in progress.items()
            },
        }

    data = _run_rpc(go())
    if as_json:
        print(json.dumps(data))
        exit_now(0)
    state = data["state"]
    paused = f"PAUSED by {state['paused_by']}: {state['paused_reason']}" if state["paused"] else ""
    out.print(
        f"{cluster}: {data['phase']}, active side {state['active']}, quorum {data['quorum']} "
        f"of {len(data['vantages'])} {paused}",
        style="bold",
    )
    table = Table("vantage", "rounds", "primary", "standby", "max late ms", box=None)
    for vantage in data["vantages"]:
        watch = data["watches"].get(vantage)
        if watch is None:
            table.add_row(vantage, "-", "not running", "", "")
        else:
            late = f"{watch['max_lateness_ms']:.0f}"
            table.add_row(vantage, str(watch["rounds"]), watch["primary"], watch["standby"], late)
    out.print(table)
    if state["last_decision"]:
        decision = state["last_decision"]
        out.print(f"decision: {decision['action']}: {decision['reason']}")
    for event in state["events"][-10:]:
        out.print(f"  {event['at']}  {event['kind']}: {event['reason']}")
    exit_now(0)


@monitor_app.command("pause")
def monitor_pause(
    cluster: ClusterArgument,
    reason: ReasonOption = "maintenance",
    identity: IdentityOption = None,
) -> None:
    """Stop automatic action for CLUSTER (it keeps probing and alerting)."""
    _set_paused(cluster, True, reason, _identity(identity))


@monitor_app.command("resume")
def monitor_resume(
    cluster: ClusterArgument,
    reason: ReasonOption = "maintenance over",
    identity: IdentityOption = None,
) -> None:
    """Allow automatic action for CLUSTER again."""
    _set_paused(cluster, False, reason, _identity(identity))


def _set_paused(cluster: str, paused: bool, reason: str, identity: str) -> None:
    async def go() -> Any:
        from failover.operations import UpdateRefused, pause_monitor

        client = await connect(find_endpoint())
        try:
            return await pause_monitor(
                client, cluster, reason=reason, identity=identity, paused=paused
            )
        except UpdateRefused as exc:
            err.print(f"error: monitor-{cluster} refused: {exc}")
            exit_now(1)

    status = _run_rpc(go())
    word = "paused" if status.state.paused else "resumed"
    out.print(f"monitor-{cluster} {word} by {identity}: {reason}")
    exit_now(0)


MISSING_MONITOR = "no such monitor is running (start it: failover monitor start)"


def _run_rpc(coro: Coroutine[Any, Any, T], missing: str = MISSING_MONITOR) -> T:
    """Like _run, and a workflow that does not exist is a clear error, not a traceback; so
    is an update the workflow refused."""
    from temporalio.service import RPCError, RPCStatusCode

    from failover.operations import UpdateRefused

    try:
        return _run(coro)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            err.print(f"error: {missing}")
        else:
            err.print(f"error: {exc.message}")
        exit_now(2)
    except UpdateRefused as exc:
        err.print(f"error: refused: {exc}")
        exit_now(1)


# Command groups from other installed packages: the sandbox adds `failover sandbox …` and
# `failover demo` where it and its extras are installed, and nothing where they are not.
PLUGIN_GROUP = "search_failover.cli"


def add_plugin_commands(app: typer.Typer) -> None:
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            register = entry.load()
        except ImportError:  # installed without the extras it needs
            continue
        register(app)


def main() -> None:
    add_plugin_commands(app)
    app()


if __name__ == "__main__":
    main()
