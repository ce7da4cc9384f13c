"""`failover region …`: switch a storefront to its other Region, plan it, drill it, steer it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from failover import names
from failover.cli.common import (
    ConfigOption,
    IdentityOption,
    JsonOption,
    ReasonOption,
    err,
    identity_or_default,
    load_app_config,
    out,
    region_app,
    run_rpc,
)
from failover.client.temporal import connect, find_endpoint
from failover.config import AppConfig, ConfigError
from failover.process import exit_now

ModeOption = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="graceful (switchover, no data loss) or ungraceful (failover, may lose the "
        "replication lag); default: graceful when --planned, else ungraceful",
    ),
]
SWITCHED = ("failed_over", "failed_over_with_warnings", "planned")


def _request(app_config: AppConfig, storefront: str, **fields: Any) -> Any:
    from failover.client.region import region_switch_request

    mode = fields.get("mode")
    if mode not in (None, "graceful", "ungraceful"):
        err.print(f"error: --mode {mode!r}: use graceful or ungraceful")
        exit_now(2)
    try:
        return region_switch_request(app_config, storefront, **fields)
    except ConfigError as exc:
        err.print(f"error: {exc}")
        exit_now(2)


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.model_dump(mode="json") | {"rto_seconds": result.rto_seconds}))
        return
    out.print(f"{result.storefront}: {result.result.value}: {result.reason}")
    for line in result.plan:
        out.print(f"  plan: {line}")
    for step in result.steps:
        detail = f" ({step.detail})" if step.detail else ""
        out.print(f"  {step.name:<18} {step.outcome:<8} {step.seconds:7.2f}s{detail}")
    if result.data_loss_window_seconds is not None:
        out.print(f"  data-loss window: {result.data_loss_window_seconds:g}s")


@region_app.command("switch")
def switch(
    storefront: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the workflow")] = "manual",
    planned: Annotated[
        bool, typer.Option("--planned", help="an operator's switch: no outage to confirm")
    ] = False,
    mode: ModeOption = None,
    wait: Annotated[bool, typer.Option(help="wait for the result")] = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Switch STOREFRONT to its other Region: app tier, database, caches, search, www."""
    app_config = load_app_config(config)
    request = _request(app_config, storefront, reason=reason, planned=planned, mode=mode)

    async def go() -> Any:
        from failover.client.region import start_region_switch

        endpoint = find_endpoint()
        client = await connect(endpoint)
        handle = await start_region_switch(client, request, task_queue=app_config.task_queue)
        out.print(f"region switch {handle.id}: {endpoint.workflow_url(handle.id) or ''}")
        return await handle.result() if wait else None

    result = run_rpc(go(), missing=f"no Region switch of {storefront}")
    if result is None:
        exit_now(0)
    _print_result(result, as_json)
    exit_now(0 if result.result.value in SWITCHED else 1)


@region_app.command("plan")
def plan(storefront: str, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """What a switch of STOREFRONT would do, and its preflight now; changes nothing."""
    app_config = load_app_config(config)
    request = _request(app_config, storefront, reason="dry run", dry_run=True)

    async def go() -> Any:
        from failover.client.region import start_region_switch

        client = await connect(find_endpoint())
        handle = await start_region_switch(client, request, task_queue=app_config.task_queue)
        return await handle.result()

    result = run_rpc(go())
    _print_result(result, as_json)
    exit_now(0)


@region_app.command("drill")
def drill(
    storefront: str,
    hold: Annotated[float, typer.Option(min=0, help="seconds in the DR Region")] = 0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Switch STOREFRONT to the DR Region and back, verified; exit 0 when it passes."""
    app_config = load_app_config(config)
    switch_request = _request(app_config, storefront, reason="region drill")

    async def go() -> Any:
        from failover.client.region import start_region_drill
        from failover.models import RegionDrillRequest, RegionDrillResult

        client = await connect(find_endpoint())
        handle = await start_region_drill(
            client,
            RegionDrillRequest(
                storefront=switch_request.storefront,
                search=switch_request.search,
                hold_seconds=hold,
            ),
            task_queue=app_config.task_queue,
        )
        return RegionDrillResult.model_validate(await handle.result())

    result = run_rpc(go())
    if as_json:
        print(json.dumps(result.model_dump(mode="json")))
    else:
        out.print(f"{result.storefront}: drill {result.verdict}: {result.reason}")
        for leg in (result.forward, result.back):
            if leg is not None:
                _print_result(leg, as_json=False)
    exit_now(0 if result.verdict == "pass" else 1)


@region_app.command("status")
def status(storefront: str, as_json: JsonOption = False) -> None:
    """The running (or last) Region switch of STOREFRONT: phase, direction, steps."""

    async def go() -> Any:
        from failover.client.region import region_status

        return await region_status(await connect(find_endpoint()), storefront)

    state = run_rpc(go(), missing=f"no Region switch of {storefront} is known")
    if as_json:
        print(json.dumps(state.model_dump(mode="json")))
    else:
        direction = f"{state.from_region} → {state.to_region}" if state.from_region else "-"
        out.print(f"{state.storefront}: {state.phase} ({direction}, {state.mode or '-'})")
        if state.awaiting:
            out.print(f"  waiting for an operator: {state.awaiting}")
        for step in state.steps:
            out.print(f"  {step.name:<18} {step.outcome:<8} {step.seconds:7.2f}s")
    exit_now(0)


def _update(storefront: str, update: str, reason: str, who: str) -> Any:
    async def go() -> Any:
        from failover.client.operations import send_update
        from failover.models import OperatorRequest, RegionSwitchStatus

        client = await connect(find_endpoint())
        handle = client.get_workflow_handle(names.region_switch_workflow_id(storefront))
        request = OperatorRequest(identity=who, reason=reason)
        return await send_update(handle, update, request, result_type=RegionSwitchStatus)

    return run_rpc(go(), missing=f"no Region switch of {storefront} is running")


@region_app.command("approve")
def approve(storefront: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Approve the Region switch of STOREFRONT that waits for an operator."""
    who = identity_or_default(identity)
    state = _update(storefront, names.APPROVE_UPDATE, reason, who)
    out.print(f"region-{storefront} approved by {who} (phase {state.phase})")
    exit_now(0)


@region_app.command("abort")
def abort(storefront: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Abort the Region switch of STOREFRONT before its database moves."""
    who = identity_or_default(identity)
    state = _update(storefront, names.ABORT_UPDATE, reason, who)
    out.print(f"region-{storefront} abort asked by {who} (phase {state.phase})")
    exit_now(0)


@region_app.command("pause")
def pause(storefront: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Hold the Region switch of STOREFRONT before its next step (until it changes things)."""
    who = identity_or_default(identity)
    state = _update(storefront, names.PAUSE_UPDATE, reason, who)
    out.print(f"region-{storefront} paused by {who} (phase {state.phase})")
    exit_now(0)


@region_app.command("resume")
def resume(storefront: str, identity: IdentityOption = None, reason: ReasonOption = "") -> None:
    """Let a paused Region switch of STOREFRONT go on."""
    who = identity_or_default(identity)
    state = _update(storefront, names.RESUME_UPDATE, reason, who)
    out.print(f"region-{storefront} resumed by {who} (phase {state.phase})")
    exit_now(0)
