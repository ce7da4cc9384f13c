"""The CLI's shared parts: the Typer apps, the consoles, the options, and running a
coroutine against Temporal with clear errors.

The app's help is APP_HELP, not this docstring: it tells an operator what the tool is."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from failover.client.temporal import state_dir
from failover.config import AppConfig, ConfigError, load_config
from failover.process import exit_now

APP_HELP = """Fail the Elasticsearch/OpenSearch cluster behind a Magento 2 storefront over to
its standby, or the whole storefront to its DR Region, verified and durable (Temporal
workflows); watch the clusters, drill the failover, and steer a run.

Commands that talk to Temporal find it through TEMPORAL_ADDRESS, or the state folder of a
running local stack (failover sandbox up). Exit codes: 0 success, 1 the operation ran but
did not succeed, 2 bad input or configuration.
"""

# Longer than any first sentence: Click's short help then stops at the sentence's end.
WHOLE_SENTENCE = 1_000


class CommandGroup(TyperGroup):
    """Lists each command with its whole first sentence, wrapped, where Click would cut it
    to one line with "..."."""

    # ctx and formatter: Click's Context and HelpFormatter (the Click that Typer ships).
    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=WHOLE_SENTENCE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(help: str) -> typer.Typer:
    """A group of commands (`failover drill …`), its help in the same plain layout."""
    return typer.Typer(cls=CommandGroup, no_args_is_help=True, help=help)


# Plain Click help (rich_markup_mode=None), for every command below this app: Typer's
# panels keep the docstrings' line breaks in the command lists and give every flag a type
# column (`--json <bool>`); Click re-wraps paragraphs and shows flags as flags.
app = typer.Typer(cls=CommandGroup, no_args_is_help=True, rich_markup_mode=None, help=APP_HELP)


config_app = command_group("Check configuration files.")


monitor_app = command_group("The always-on monitors (one workflow per cluster).")


app.add_typer(config_app, name="config")


app.add_typer(monitor_app, name="monitor")


drill_app = command_group("Failover drills: run one, schedule them, read their reports.")


app.add_typer(drill_app, name="drill")


region_app = command_group(
    "Region switches of a whole storefront: switch, plan, drill, status, and steer one."
)


app.add_typer(region_app, name="region")


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


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        exit_now(2)


def load_app_config(config: Path | None) -> AppConfig:
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


def cluster_of(app_config: AppConfig, name: str) -> Any:
    try:
        return app_config.cluster(name)
    except ConfigError as exc:
        err.print(f"error: {exc}")
        exit_now(2)


ClusterArgument = Annotated[str, typer.Argument(help="cluster name from config")]


ReasonOption = Annotated[str, typer.Option(help="why; recorded in the monitor")]


IdentityOption = Annotated[
    str | None, typer.Option(help="who is acting (default: user@host)", show_default=False)
]


def identity_or_default(identity: str | None) -> str:
    import getpass
    import socket

    return identity or f"{getpass.getuser()}@{socket.gethostname()}"


MISSING_MONITOR = "no such monitor is running (start it: failover monitor start)"


def run_rpc(coro: Coroutine[Any, Any, T], missing: str = MISSING_MONITOR) -> T:
    """Like run_async, and a workflow that does not exist is a clear error, not a traceback; so
    is an update the workflow refused."""
    from temporalio.service import RPCError, RPCStatusCode

    from failover.client.operations import UpdateRefused

    try:
        return run_async(coro)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            err.print(f"error: {missing}")
        else:
            err.print(f"error: {exc.message}")
        exit_now(2)
    except UpdateRefused as exc:
        err.print(f"error: refused: {exc}")
        exit_now(1)
