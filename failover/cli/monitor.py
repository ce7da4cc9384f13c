"""`failover monitor …`: start, status, pause, resume."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from failover.cli.common import (
    ClusterArgument,
    ConfigOption,
    IdentityOption,
    JsonOption,
    ReasonOption,
    err,
    identity_or_default,
    load_app_config,
    monitor_app,
    out,
    run_async,
    run_rpc,
)
from failover.client.temporal import connect, find_endpoint
from failover.process import exit_now


@monitor_app.command("start")
def monitor_start(config: ConfigOption = None) -> None:
    """Start a monitor for each cluster in config, or hand running ones the current config."""
    app_config = load_app_config(config)

    async def go() -> list[str]:
        from failover.client.operations import ensure_monitors

        return await ensure_monitors(await connect(find_endpoint()), app_config)

    for workflow_id in run_async(go()):
        out.print(f"monitor running: {workflow_id}")
    exit_now(0)


@monitor_app.command("status")
def monitor_status_command(cluster: ClusterArgument, as_json: JsonOption = False) -> None:
    """What each vantage point sees now, the last decision, and the recent events."""

    async def go() -> dict[str, Any]:
        from failover.client.operations import monitor_status, watch_progress

        client = await connect(find_endpoint())
        status = await monitor_status(client, cluster)
        progress = await watch_progress(client, cluster)
        return {
            **status.model_dump(mode="json"),
            "watches": {
                v: p.model_dump(mode="json", exclude={"view"}) for v, p in progress.items()
            },
        }

    data = run_rpc(go())
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
    _set_paused(cluster, True, reason, identity_or_default(identity))


@monitor_app.command("resume")
def monitor_resume(
    cluster: ClusterArgument,
    reason: ReasonOption = "maintenance over",
    identity: IdentityOption = None,
) -> None:
    """Allow automatic action for CLUSTER again."""
    _set_paused(cluster, False, reason, identity_or_default(identity))


def _set_paused(cluster: str, paused: bool, reason: str, identity: str) -> None:
    async def go() -> Any:
        from failover.client.operations import UpdateRefused, pause_monitor

        client = await connect(find_endpoint())
        try:
            return await pause_monitor(
                client, cluster, reason=reason, identity=identity, paused=paused
            )
        except UpdateRefused as exc:
            err.print(f"error: monitor-{cluster} refused: {exc}")
            exit_now(1)

    status = run_rpc(go())
    word = "paused" if status.state.paused else "resumed"
    out.print(f"monitor-{cluster} {word} by {identity}: {reason}")
    exit_now(0)
