"""`failover drill …`: run, schedule, list, pause, resume, trigger, delete, abort, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from failover import names
from failover.cli.common import (
    ConfigOption,
    IdentityOption,
    JsonOption,
    ReasonOption,
    cluster_of,
    drill_app,
    err,
    identity_or_default,
    load_app_config,
    out,
    run_async,
    run_rpc,
)
from failover.cli.output import print_report
from failover.client.temporal import connect, find_endpoint
from failover.process import exit_now

HoldOption = Annotated[
    float | None, typer.Option("--hold", min=0, help="seconds on the standby (default: config)")
]


def _exit_with_verdict(report: Any) -> NoReturn:
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
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)

    async def go() -> Any:
        from failover.client.operations import start_drill

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

    report = run_async(go())
    if as_json:
        print(json.dumps(report.model_dump(mode="json")))
    else:
        print_report(report)
    _exit_with_verdict(report)


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
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)
    interval = _every(every) if every is not None else None

    async def go() -> str:
        from failover.client.operations import schedule_drill

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

    schedule_id = run_rpc(go(), missing="no such namespace")
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

    listing = run_async(go())
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

    run_rpc(go(), missing=f"no drill schedule for {cluster} (create it: failover drill schedule)")
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
        from failover.client.operations import abort_drill

        client = await connect(find_endpoint())
        await abort_drill(
            client, workflow_id, reason=reason, identity=identity_or_default(identity)
        )

    run_rpc(go(), missing=f"no drill {workflow_id}")
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

    report = run_rpc(go(), missing=f"no drill {workflow_id}")
    if html is not None:
        html.write_text(to_html(report), encoding="utf-8")
    if markdown is not None:
        markdown.write_text(to_markdown(report), encoding="utf-8")
    if as_json:
        print(json.dumps(report.model_dump(mode="json")))
    elif html is None and markdown is None:
        print_report(report)
    exit_now(0)
