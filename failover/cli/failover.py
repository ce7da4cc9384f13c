"""Failover commands: trigger, status, failback, approve, abort, accept-stale, reseed,
plan, and the alarm receiver."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

import typer

from failover import logs, names
from failover.cli.common import (
    ConfigOption,
    IdentityOption,
    JsonOption,
    ReasonOption,
    app,
    cluster_of,
    err,
    identity_or_default,
    load_app_config,
    out,
    run_async,
    run_rpc,
)
from failover.cli.output import print_status, print_steps
from failover.client.temporal import connect, find_endpoint
from failover.config import ConfigError
from failover.process import exit_now

AcceptStaleOption = Annotated[
    bool,
    typer.Option(
        "--accept-stale",
        help="accept the standby's data as it is for this run (stale alias, replication "
        "lag, too few documents, not re-seeded); needs --reason; recorded in the result",
    ),
]


def _acceptance(accept: bool, reason: str, identity: str | None) -> Any:
    """The operator's acceptance of stale data, or None; refused without a real reason."""
    from failover.models import OperatorRequest

    if not accept:
        return None
    if reason in ("manual trigger", "failback", "") or not reason.strip():
        err.print("error: --accept-stale needs --reason: say why the standby's data will do")
        exit_now(2)
    return OperatorRequest(reason=reason, identity=identity_or_default(identity))


@app.command()
def trigger(
    cluster: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "manual trigger",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    accept_stale: AcceptStaleOption = False,
    identity: IdentityOption = None,
) -> None:
    """Start a failover of CLUSTER, or attach to the one already running."""
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)
    acceptance = _acceptance(accept_stale, reason, identity)

    async def go() -> dict[str, Any]:
        from failover.client.operations import start_or_attach_failover

        endpoint = find_endpoint()
        client = await connect(endpoint)
        handle = await start_or_attach_failover(
            client,
            cluster_config,
            task_queue=app_config.task_queue,
            reason=reason,
            accept_stale=acceptance,
        )
        return {
            "workflow_id": handle.id,
            "run_id": handle.result_run_id,
            "ui_url": endpoint.workflow_url(handle.id, handle.result_run_id),
        }

    started = run_async(go())
    if as_json:
        print(json.dumps(started))
    else:
        out.print(f"failover {started['workflow_id']} run {started['run_id']}")
        if started["ui_url"]:
            out.print(f"watch it: {started['ui_url']}")
    exit_now(0)


@app.command()
def status(
    cluster: Annotated[str | None, typer.Argument(help="one cluster (default: all)")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON: one object for CLUSTER, else a list")
    ] = False,
) -> None:
    """Show each cluster's active side, the running failover's phase, and the last result.

    One row per cluster that has had a failover; with CLUSTER, also that run's reason and
    steps."""

    async def go() -> list[dict[str, Any]]:
        from temporalio.service import RPCError

        from failover.client.operations import failover_state, list_failover_clusters

        client = await connect(find_endpoint())
        clusters = [cluster] if cluster else await list_failover_clusters(client)
        states = []
        for name in clusters:
            try:
                states.append(await failover_state(client, name))
            except RPCError as exc:
                states.append({"cluster": name, "error": exc.message})
        return states

    states = run_async(go())
    if as_json:
        print(json.dumps(states[0] if cluster else states))
    elif not states:
        out.print("no failovers have run")
    else:
        print_status(states, detail=cluster is not None)
    exit_now(0 if all("error" not in s for s in states) else 1)


@app.command()
def failback(
    cluster: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "failback",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    accept_stale: AcceptStaleOption = False,
    identity: IdentityOption = None,
) -> None:
    """Move CLUSTER back to the primary, verified (rolled back if the check fails)."""
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)
    acceptance = _acceptance(accept_stale, reason, identity)

    async def go() -> dict[str, Any]:
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from failover.client.operations import start_failback

        client = await connect(find_endpoint())
        try:
            handle = await start_failback(
                client,
                cluster_config,
                task_queue=app_config.task_queue,
                reason=reason,
                accept_stale=acceptance,
            )
        except WorkflowAlreadyStartedError:
            err.print(f"error: failover-{cluster} is running; wait for it, then fail back")
            exit_now(2)
        return (await handle.result()).model_dump(mode="json")

    result = run_async(go())
    if as_json:
        print(json.dumps(result))
    else:
        out.print(
            f"{cluster}: {result['result']} ({result['from_side']} → {result['to_side']})",
            style="bold",
        )
        out.print(f"  reason: {result['reason']}")
        print_steps(result["steps"])
    exit_now(0 if result["result"] in ("failed_over", "failed_over_with_warnings") else 1)


def _failover_update(cluster: str, update: str, request: Any) -> Any:
    async def go() -> Any:
        from failover.client.operations import send_update
        from failover.models import FailoverStatus
        from failover.names import failover_workflow_id

        client = await connect(find_endpoint())
        handle = client.get_workflow_handle(failover_workflow_id(cluster))
        return await send_update(handle, update, request, result_type=FailoverStatus)

    return run_rpc(go(), missing=f"no failover of {cluster} is running")


@app.command()
def approve(cluster: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Approve the failover of CLUSTER that waits for approval (require_approval)."""
    from failover.models import ApproveRequest

    who = identity_or_default(identity)
    status = _failover_update(
        cluster, names.APPROVE_UPDATE, ApproveRequest(identity=who, reason=reason)
    )
    out.print(f"failover-{cluster} approved by {who} (phase {status.phase})")
    exit_now(0)


@app.command()
def abort(cluster: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Abort the failover of CLUSTER before it switches (after the switch: failback)."""
    from failover.models import AbortRequest

    who = identity_or_default(identity)
    _failover_update(cluster, names.ABORT_UPDATE, AbortRequest(identity=who, reason=reason))
    out.print(f"failover-{cluster}: abort requested by {who}")
    exit_now(0)


@app.command("accept-stale")
def accept_stale(cluster: str, reason: ReasonOption = "", identity: IdentityOption = None) -> None:
    """Accept the standby's data as it is for the failover of CLUSTER now running (before
    its preflight); the result records who accepted what."""
    from failover.models import OperatorRequest

    if not reason.strip():
        err.print("error: --reason is required: say why the standby's data will do")
        exit_now(2)
    who = identity_or_default(identity)
    _failover_update(
        cluster, names.ACCEPT_STALE_UPDATE, OperatorRequest(identity=who, reason=reason)
    )
    out.print(f"failover-{cluster}: stale data accepted by {who} for this run")
    exit_now(0)


@app.command()
def reseed(
    cluster: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "reseed",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    identity: IdentityOption = None,
) -> None:
    """Make the side of CLUSTER without traffic follow the active one (its own copies of the
    storefront's indices are replaced), and wait until it has caught up."""
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)

    async def go() -> dict[str, Any]:
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from failover.client.operations import reseed_progress, start_reseed

        endpoint = find_endpoint()
        client = await connect(endpoint)
        try:
            handle = await start_reseed(
                client,
                cluster_config,
                task_queue=app_config.task_queue,
                reason=reason,
                identity=identity_or_default(identity),
            )
        except WorkflowAlreadyStartedError:
            err.print(f"error: {names.reseed_workflow_id(cluster)} is already running")
            exit_now(2)
        if not as_json:
            out.print(f"re-seed {handle.id} run {handle.result_run_id}")
        waiting = asyncio.ensure_future(handle.result())
        shown: str | None = None
        while not as_json and not waiting.done():
            progress = await reseed_progress(client, handle.id)
            if progress is not None and progress != shown:
                out.print(f"  waiting until synced: {progress}")
                shown = progress
            await asyncio.wait([waiting], timeout=1.0)
        return (await waiting).model_dump(mode="json")

    result = run_async(go())
    if as_json:
        print(json.dumps(result))
    else:
        out.print(f"{cluster}: {result['result']}: {result['reason']}", style="bold")
        print_steps(result["steps"])
    exit_now(0 if result["result"] == "reseeded" else 1)


@app.command()
def plan(cluster: str, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print exactly what a failover of CLUSTER would change and check; change nothing."""
    app_config = load_app_config(config)
    cluster_config = cluster_of(app_config, cluster)

    async def go() -> Any:
        from failover.client.operations import plan_failover

        client = await connect(find_endpoint())
        return await plan_failover(client, cluster_config, task_queue=app_config.task_queue)

    result = run_async(go())
    if result.plan is None:
        err.print(f"{cluster}: no plan: {result.reason}")
        exit_now(1)
    if as_json:
        print(json.dumps(result.plan.model_dump(mode="json")))
    else:
        for line in result.plan.lines():
            out.print(line)
    exit_now(0)


@app.command()
def receiver(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: config)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: config)")] = None,
    metrics_address: Annotated[
        str | None,
        typer.Option(
            envvar="FAILOVER_METRICS_ADDRESS",
            help="serve Prometheus metrics (alarms by endpoint and status) at HOST:PORT /metrics",
        ),
    ] = None,
) -> None:
    """Run the alarm receiver (SNS, EventBridge, Alertmanager) until SIGINT/SIGTERM."""
    from failover import metrics
    from failover.alarms.receiver import serve_receiver

    app_config = load_app_config(config)
    # Request text in messages is escaped, so one request cannot forge another log line.
    handler = logging.StreamHandler()
    handler.setFormatter(logs.TextFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        endpoint = find_endpoint()
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        exit_now(2)
    if metrics_address is not None:
        metrics.serve_prometheus(metrics_address)  # before the receiver makes its counter
        logging.info("metrics at http://%s/metrics", metrics_address)
    try:
        run_async(serve_receiver(app_config, lambda: connect(endpoint), host=host, port=port))
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"config error: {line}")
        exit_now(2)
    exit_now(0)
