"""The `failover` command as a user runs it: a separate process, its output parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "configs"
FAILOVER = str(Path(sys.executable).parent / "failover")


def run(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAILOVER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=None if env is None else os.environ | env,
    )


def test_the_commands_load_without_the_stack_behind_the_sandbox_commands() -> None:
    """Every `failover` command registers the sandbox's commands; an operator's `trigger`
    or `status` must not first import moto, the simulator and the demos (seconds)."""
    probe = (
        "import sys\n"
        "from failover.cli import add_plugin_commands, app\n"
        "add_plugin_commands(app)\n"
        "assert any(g.name == 'sandbox' for g in app.registered_groups), 'no sandbox commands'\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'moto', 'graphql', 'aiohttp'})\n"
        "heavy += sorted(m for m in sys.modules if m in ('sandbox.stack', 'sandbox.demo'))\n"
        "print(' '.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported by every command: {done.stdout}"


def test_help_says_what_the_tool_is_in_80_columns() -> None:
    done = run("--help", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert "Usage: failover [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert "Elasticsearch/OpenSearch" in done.stdout and "shared parts" not in done.stdout
    assert "--install-completion" in done.stdout and "<bool>" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


def test_the_completion_script_comes_without_the_stack_behind_the_sandbox_commands() -> None:
    """A shell asks for the script once, and `failover` itself on every Tab: as light as any
    other command."""
    probe = (
        "import sys\n"
        "from failover.cli import main\n"
        "sys.argv = ['failover', '--show-completion', 'bash']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'moto', 'graphql', 'aiohttp'})\n"
        "heavy += sorted(m for m in sys.modules if m in ('sandbox.stack', 'sandbox.demo'))\n"
        "print('heavy:', ' '.join(heavy))\n"
    )
    env = os.environ | {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    script, _, heavy = done.stdout.rpartition("heavy:")
    assert "complete -o default -F _failover_completion failover" in script
    assert "_FAILOVER_COMPLETE=complete_bash" in script
    assert heavy.strip() == "", f"imported for completion: {heavy}"


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
@pytest.mark.parametrize("mode", ["dns", "nlb"])
def test_demo_json_reports_a_verified_failover_and_a_recovered_storefront(mode: str) -> None:
    done = run("demo", "--mode", mode, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert report["result"] == "failed_over"
    assert report["mode"] == mode
    assert report["cluster"] == "catalog-search"
    assert (report["from"], report["to"]) == ("primary", "standby")
    assert report["workflow_id"] == "failover-catalog-search"
    # Read back from the server: what the Web UI filters on and shows in its list.
    attributes = report["search_attributes"]
    summary = attributes.pop("FailoverSummary")
    assert attributes == {
        "FailoverCluster": "catalog-search",
        "FailoverTrigger": "monitor",
        "FailoverPhase": "done",
        "FailoverResult": "failed_over",
    }
    assert summary.startswith("catalog-search: primary ⇄ standby (monitor: failing over: ")
    # Nobody triggered it: the monitor saw the primary down from a quorum of vantage points.
    assert report["trigger"] == "monitor"
    assert report["reason"].startswith("failing over: primary down from ")
    assert "(quorum 2)" in report["reason"]
    # Every primary node refuses: fast confirmation calls the side down after 1 s of
    # refusals (min_outage_seconds), before the three rounds at 1 s would; not much more.
    assert 1.0 <= report["detection_seconds"] < 6.0
    assert report["rto_seconds"] > report["detection_seconds"]
    names = [step["name"] for step in report["steps"]]
    if mode == "dns":
        assert report["switched_after"] == [report["to_value"]] == ["es-standby.shop.internal"]
        assert names == [
            "snapshot",
            "confirm",
            "preflight",
            "switch",
            "wait",
            "ttl_wait",
            "flush",
            "verify",
            "verify_indices",
            "verify_storefront",
            "promote",
            "verify_writes",
        ]
    else:
        assert ",".join(report["switched_after"]) == report["to_value"]
        assert all(t.startswith("127.0.2.") for t in report["switched_after"])
        assert names == [
            "snapshot",
            "confirm",
            "preflight",
            "register",
            "wait_healthy",
            "deregister",
            "drain",
            "flush",
            "verify",
            "verify_indices",
            "verify_storefront",
            "promote",
            "verify_writes",
        ]
    assert [f["name"] for f in report["flushed"]] == ["magento-redis", "magento-app", "varnish"]
    assert report["warnings"] == []
    # The outage poisoned the category page; after the flush it lists products again.
    assert report["poisoned_page_cached_during_outage"] is True
    assert report["poisoned_page_served_by_varnish"] is True
    assert report["category_page_fixed_after"] is True
    assert report["storefront_requests"]["failed"] > 0
    assert report["storefront_recovered_seconds"] > 0
    # RTO runs from the fault to the end of verify, so it covers every step before it.
    before_promotion = report["steps"][: names.index("promote")]
    assert report["rto_seconds"] >= sum(step["seconds"] for step in before_promotion) - 0.05
    # The standby's data: both store aliases and their replication lag were read, the
    # follower indices promoted, and a write through the switched name succeeded.
    data = report["standby_data"]
    assert data["preflight"] == "ok"
    assert any(line.startswith("standby magento2_product_1 → ") for line in data["readiness"])
    assert any(": syncing, lag 0 operations" in line for line in data["readiness"])
    assert sorted(data["promoted"]) == ["magento2_product_1_v1", "magento2_product_2_v1"]
    assert data["write_problem"] is None and data["promote_seconds"] > 0
    assert [s["outcome"] for s in report["steps"][-2:]] == ["ok", "ok"]
    assert report["ui_url"].endswith(
        f"/workflows/failover-catalog-search/{report['run_id']}/history"
    )


@pytest.mark.slow
def test_demo_drill_json_is_a_passing_measured_drill(tmp_path: Path) -> None:
    done = run("demo", "--drill", "--json", env={"FAILOVER_STATE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "pass", report["reason"]
    assert 0 < report["rto_seconds"] <= report["rto_target_seconds"]
    assert report["storefront_total_requests"] > 0
    assert report["storefront_failed_requests"] == 0
    assert [p["name"] for p in report["phases"]] == [
        "steady_state_before",
        "guardrails",
        "failover",
        "hold",
        "failback",
        "steady_state_after",
    ]
    assert report["failover"]["trigger"] == report["failback"]["trigger"] == "drill"
    assert report["record_after"] == ["es-primary.shop.internal"]
    assert Path(report["files"]["html"]).parent == tmp_path / "reports"
