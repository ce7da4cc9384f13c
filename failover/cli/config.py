"""`failover config check`."""

from __future__ import annotations

from pathlib import Path

from failover.cli.common import config_app, out
from failover.config import ConfigError, load_config
from failover.process import exit_now


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
