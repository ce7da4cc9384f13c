"""`failover`: the operator's command line.

Every command that talks to Temporal finds it through TEMPORAL_ADDRESS, or through the
state folder of a running local stack. Exit codes: 0 success, 1 the operation ran but
did not succeed (e.g. a demo that did not fail over), 2 bad input or configuration.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

# Each command module adds its commands to the apps in common when imported, in the order
# `failover --help` lists them: the operator's commands first, the codec server after them.
from failover.cli import config, drill, failover, monitor, region  # noqa: F401

# isort: split
from failover.cli import codec  # noqa: F401
from failover.cli.common import app

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
