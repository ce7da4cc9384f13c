"""The `failover` command as a user runs it: a separate process, its output parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "configs"
FAILOVER = str(Path(sys.executable).parent / "failover")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAILOVER, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_config_check_valid_exits_0() -> None:
    done = run("config", "check", str(CONFIGS / "valid.yaml"))
    assert done.returncode == 0, done.stderr
    assert "valid (1 cluster(s): catalog-search)" in done.stdout


def test_config_check_prints_every_error_and_exits_2() -> None:
    done = run("config", "check", str(CONFIGS / "many-errors.yaml"))
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    assert lines[-1].endswith("8 error(s)")
    assert sum("many-errors.yaml: clusters[0]." in line for line in lines) == 8
    assert any("primary.auth.basic.password: secret values" in line for line in lines)


@pytest.mark.slow
def test_demo_json_reports_a_verified_failover() -> None:
    done = run("demo", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert report["result"] == "failed_over"
    assert report["cluster"] == "catalog-search"
    assert (report["from"], report["to"]) == ("primary", "standby")
    assert report["record_after"] == [report["to_value"]] == ["es-standby.shop.internal"]
    assert report["workflow_id"] == "failover-catalog-search"
    names = [step["name"] for step in report["steps"]]
    assert names == ["snapshot", "confirm", "preflight", "switch", "wait", "verify"]
    assert all(step["seconds"] >= 0 for step in report["steps"])
    # RTO runs from the fault to the end of verify, so it covers every step.
    assert report["rto_seconds"] >= sum(step["seconds"] for step in report["steps"]) - 0.05
    assert report["ui_url"].endswith(
        f"/workflows/failover-catalog-search/{report['run_id']}/history"
    )
