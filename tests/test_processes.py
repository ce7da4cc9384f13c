"""Real processes, as operators run them: the sandbox, a separate worker, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sandbox.net import free_port
from sandbox.stack import SANDBOX_AWS_ENV
from sandbox.waiting import wait_until
from tests.metric_names import missing_metric_names, sample_value, used_metric_names

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    process.send_signal(sig)
    return process.wait(timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return clean | SANDBOX_AWS_ENV | {"FAILOVER_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def sandbox(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    log = (tmp_path / "sandbox.log").open("w")
    process = subprocess.Popen(
        [
            BIN / "failover",
            "sandbox",
            "up",
            "--no-worker",
            "--port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    info_file = Path(env["FAILOVER_STATE_DIR"]) / "sandbox.json"
    try:
        # A deadline, not a wait: on a busy 2-core machine the stack can take half a minute.
        info = wait_until(
            lambda: info_file.exists() and json.loads(info_file.read_text()), "sandbox.json", 90
        )
        yield info | {"process": process}
    finally:
        if process.poll() is None:
            assert stop(process, signal.SIGINT) == 0
        log.close()


def spawn_worker(
    args: list[str | Path], env: dict[str, str], log_path: Path
) -> subprocess.Popen[str]:
    """`python worker.py ARGS`, its stdout and stderr in log_path."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, ROOT / "worker.py", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "failover", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_operator_flow_with_a_separate_worker(
    sandbox: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    worker_env = env | {"TEMPORAL_ADDRESS": sandbox["temporal"]["address"]}
    worker_log = tmp_path / "worker.log"
    worker = spawn_worker(["--config", sandbox["config_path"]], worker_env, worker_log)
    try:
        wait_until(
            lambda: "monitor running: monitor-catalog-search" in worker_log.read_text(),
            "the worker to poll and start the monitor",
        )

        # The monitor watches from three vantage points in two processes: the worker's own
        # queue here, and probe workers b and c inside the sandbox process.
        def watching() -> dict[str, Any] | None:
            done = cli(env, "monitor", "status", "catalog-search", "--json")
            assert done.returncode == 0, done.stderr
            state = json.loads(done.stdout)
            return state if len(state["watches"]) == 3 else None

        state = wait_until(watching, "watches from every vantage point")
        assert state["quorum"] == 2 and state["state"]["active"] == "primary"
        assert {w["primary"] for w in state["watches"].values()} == {"healthy"}
        missing = cli(env, "monitor", "status", "no-such-cluster")
        assert missing.returncode == 2 and "no such monitor" in missing.stderr

        # Paused: the monitor takes no action by itself, an operator's trigger still works.
        paused = cli(env, "monitor", "pause", "catalog-search", "--reason", "drill prep",
                     "--identity", "ops@example")  # fmt: skip
        assert paused.returncode == 0, paused.stderr
        assert "monitor-catalog-search paused by ops@example: drill prep" in paused.stdout
        again = cli(env, "monitor", "pause", "catalog-search")
        assert again.returncode == 1
        assert "refused: already paused by ops@example (drill prep)" in again.stderr

        bad = cli(env, "sandbox", "fault", "es-primary", "all", "melting")
        assert bad.returncode == 2 and "unknown mode 'melting'" in bad.stderr
        fault = cli(env, "sandbox", "fault", "es-primary", "all", "down")
        assert fault.returncode == 0, fault.stderr
        assert {n["mode"] for n in json.loads(fault.stdout)["nodes"]} == {"down"}

        started = cli(env, "trigger", "catalog-search", "--reason", "test", "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["workflow_id"] == "failover-catalog-search"

        def finished() -> dict[str, Any] | None:
            done = cli(env, "status", "catalog-search", "--json")
            assert done.returncode == 0, done.stderr
            state = json.loads(done.stdout)
            return state if "result" in state else None

        state = wait_until(finished, "the failover to finish")
        assert state["result"]["result"] == "failed_over"
        assert state["result"]["to_side"] == "standby"
        assert state["result"]["trigger"] == "manual"

        def monitor_saw_it() -> dict[str, Any] | None:
            done = cli(env, "monitor", "status", "catalog-search", "--json")
            state = json.loads(done.stdout)["state"]
            return state if state["active"] == "standby" else None

        monitor = wait_until(monitor_saw_it, "the monitor to see the standby active")
        assert not [e for e in monitor["events"] if e["kind"] == "failover_started"]
        resumed = cli(env, "monitor", "resume", "catalog-search")
        assert resumed.returncode == 0 and "resumed by" in resumed.stdout

        listed = cli(env, "status")
        row = re.compile(r"^catalog-search\s+standby\s+done\s+failed_over\s", re.M)
        assert listed.returncode == 0 and row.search(listed.stdout), listed.stdout
    finally:
        code = stop(worker)
    assert code == 0, worker_log.read_text()
    assert "worker stopped" in worker_log.read_text()


def test_worker_starts_the_embedded_server_and_exits_cleanly(
    env: dict[str, str], tmp_path: Path
) -> None:
    port, ui_port = free_port(), free_port()
    worker_env = env | {
        "FAILOVER_TEMPORAL_PORT": str(port),
        "FAILOVER_TEMPORAL_UI_PORT": str(ui_port),
    }
    log_path = tmp_path / "worker.log"
    worker = spawn_worker([], worker_env, log_path)
    try:
        wait_until(lambda: "Temporal Web UI" in log_path.read_text(), "the UI URL")
        text = log_path.read_text()
        assert f"http://127.0.0.1:{ui_port}/namespaces/default/workflows" in text
        connection = json.loads((Path(env["FAILOVER_STATE_DIR"]) / "temporal.json").read_text())
        assert connection["address"] == f"127.0.0.1:{port}"
        status = cli(env, "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout) == []
    finally:
        code = stop(worker)
    assert code == 0, log_path.read_text()
    assert not (Path(env["FAILOVER_STATE_DIR"]) / "temporal.json").exists()


def _with_receiver(config_path: str, tmp_path: Path, port: int) -> Path:
    """The sandbox's config plus an alarm mapping and a receiver on `port`."""
    raw = yaml.safe_load(Path(config_path).read_text())
    raw["clusters"][0]["alarms"] = {"alertmanager": [{"alertname": "SearchClusterDown"}]}
    raw["receiver"] = {"port": port, "alertmanager": {"bearer_token_env": "TEST_AM_TOKEN"}}
    path = tmp_path / "with-receiver.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _alert(status: str) -> dict[str, Any]:
    labels = {"alertname": "SearchClusterDown"}
    return {
        "version": "4",
        "status": status,
        "alerts": [{"status": status, "labels": labels, "annotations": {}}],
    }


def test_worker_with_the_receiver_takes_alerts_and_exits_cleanly(
    sandbox: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    """`worker.py --receiver`: an Alertmanager alert reaches the monitor, which starts a
    failover; the cluster is healthy, so that run confirms nothing and moves nothing."""
    port = free_port()
    config = _with_receiver(sandbox["config_path"], tmp_path, port)
    worker_env = env | {
        "TEMPORAL_ADDRESS": sandbox["temporal"]["address"],
        "TEST_AM_TOKEN": "am-process-token",
    }
    worker_log = tmp_path / "worker.log"
    worker = spawn_worker(["--config", config, "--receiver"], worker_env, worker_log)
    url = f"http://127.0.0.1:{port}/alarms/alertmanager"
    token = {"Authorization": "Bearer am-process-token"}
    try:
        wait_until(lambda: "alarm receiver on" in worker_log.read_text(), "the receiver")
        refused = httpx.post(url, json=_alert("firing"))
        assert refused.status_code == 401
        answer = httpx.post(url, json=_alert("firing"), headers=token)
        assert answer.status_code == 202, answer.text
        assert answer.json()["deliveries"] == {"catalog-search": "monitor-catalog-search signalled"}

        def finished() -> dict[str, Any] | None:
            done = cli(env, "status", "catalog-search", "--json")
            state = json.loads(done.stdout) if done.returncode == 0 else {}
            return state if "result" in state else None

        state = wait_until(finished, "the alarm's failover to finish")
        assert state["result"]["trigger"] == "alarm"
        assert state["result"]["result"] == "not_confirmed"
        resolved = httpx.post(url, json=_alert("resolved"), headers=token)
        assert resolved.status_code == 202 and resolved.json()["status"] == "recorded"

        def monitor_events() -> list[str] | None:
            done = cli(env, "monitor", "status", "catalog-search", "--json")
            kinds = [e["kind"] for e in json.loads(done.stdout)["state"]["events"]]
            return kinds if "alarm_resolved" in kinds else None

        kinds = wait_until(monitor_events, "the monitor to record the resolved alert")
        assert kinds.count("failover_started") == 1
    finally:
        code = stop(worker)
    text = worker_log.read_text()
    assert code == 0, text
    assert "alarm rejected: endpoint=alertmanager" in text and "status=401" in text
    assert "am-process-token" not in text


def test_receiver_command_refuses_a_missing_secret_and_stops_cleanly(
    sandbox: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    config = _with_receiver(sandbox["config_path"], tmp_path, port)
    missing = cli(env, "receiver", "--config", str(config))
    assert missing.returncode == 2
    assert "environment variable TEST_AM_TOKEN is not set" in missing.stderr
    log_path = tmp_path / "receiver.log"
    with log_path.open("w") as log:
        receiver = subprocess.Popen(
            [BIN / "failover", "receiver", "--config", config],
            env=env | {"TEST_AM_TOKEN": "t0ken-value"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: f"127.0.0.1:{port}" in log_path.read_text(), "the receiver")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/alarms/alertmanager",
            json=_alert("firing"),
            headers={"Authorization": "Bearer wrong"},
        )
        assert answer.status_code == 403
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        code = stop(receiver)
    assert code == 0, log_path.read_text()


def json_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_drill_commands_end_to_end(
    sandbox: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    """plan, drill run, report, schedule, list, trigger, delete and failback as an operator
    types them, against the sandbox and a separate worker."""
    worker_env = env | {"TEMPORAL_ADDRESS": sandbox["temporal"]["address"]}
    worker_log = tmp_path / "worker.log"
    worker = spawn_worker(["--config", sandbox["config_path"]], worker_env, worker_log)
    try:
        wait_until(lambda: "worker polling" in worker_log.read_text(), "the worker")
        plan = cli(env, "plan", "catalog-search", "--json")
        assert plan.returncode == 0, plan.stderr
        assert json.loads(plan.stdout)["record"]["to_value"] == "es-standby.shop.internal"

        ran = cli(env, "drill", "run", "catalog-search", "--hold", "0", "--json")
        report = json.loads(ran.stdout) if ran.stdout.strip() else {}
        assert ran.returncode == 0, (report.get("verdict"), report.get("reason"), ran.stderr)
        assert report["verdict"] == "pass" and report["rto_seconds"] > 0
        page = tmp_path / "report.html"
        fetched = cli(env, "drill", "report", report["workflow_id"], "--html", str(page))
        assert fetched.returncode == 0, fetched.stderr
        assert "<svg" in page.read_text() and "PASS" in page.read_text()

        made = cli(
            env, "drill", "schedule", "catalog-search", "--every", "7d", "--paused", "--hold", "0"
        )
        assert made.returncode == 0 and "every 7d (paused)" in made.stdout
        bad = cli(env, "drill", "schedule", "catalog-search", "--every", "weekly")
        assert bad.returncode == 2 and "a number and a unit" in bad.stderr
        listed = json_of(cli(env, "drill", "list", "--json"))
        assert {"id": "drill-catalog-search", "paused": True} | {
            "next": listed["schedules"][0]["next"]
        } in listed["schedules"]
        assert cli(env, "drill", "trigger", "catalog-search").returncode == 0

        def scheduled_drill_done() -> list[dict[str, Any]] | None:
            drills = json_of(cli(env, "drill", "list", "--json"))["drills"]
            # Scheduled runs are named by Temporal: drill-<cluster>-<RFC 3339 time>.
            done = [d for d in drills if ":" in d["id"] and d["status"] == "COMPLETED"]
            return done or None

        wait_until(scheduled_drill_done, "the triggered drill to finish")
        assert cli(env, "drill", "delete", "catalog-search").returncode == 0
        gone = cli(env, "drill", "pause", "catalog-search")
        assert gone.returncode == 2 and "no drill schedule for catalog-search" in gone.stderr

        # The primary is active again after the drills: a failback has nothing to do.
        back = cli(env, "failback", "catalog-search", "--json")
        assert back.returncode == 1
        assert json.loads(back.stdout)["result"] == "aborted"
        assert "already active" in json.loads(back.stdout)["reason"]
    finally:
        code = stop(worker)
    assert code == 0, worker_log.read_text()


class _DeletedWebhook(BaseHTTPRequestHandler):
    """A chat webhook that was deleted: every post is answered 410 Gone, for good."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(410)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def deleted_webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DeletedWebhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/deleted"
    finally:
        server.shutdown()
        server.server_close()


def test_worker_metrics_and_json_logs_after_a_failover(
    sandbox: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    """`/metrics` on the worker (the SDK's own and ours: results, step durations, probes,
    failed notifications, the monitor's rounds) after its monitor failed over, and on the
    alarm receiver: every metric the Prometheus rules and the Grafana dashboard query is
    exported by one of them."""
    address = f"127.0.0.1:{free_port()}"
    receiver_address = f"127.0.0.1:{free_port()}"
    receiver_port = free_port()
    config = _with_receiver(sandbox["config_path"], tmp_path, receiver_port)
    raw = yaml.safe_load(config.read_text())
    raw["clusters"][0]["notify"] = {"webhook_url_env": "TEST_WEBHOOK_URL"}
    config.write_text(yaml.safe_dump(raw))
    worker_log = tmp_path / "worker.log"
    receiver_log = tmp_path / "receiver.log"
    with deleted_webhook() as webhook_url:
        worker_env = env | {
            "TEMPORAL_ADDRESS": sandbox["temporal"]["address"],
            "TEST_WEBHOOK_URL": webhook_url,
        }
        # With its monitor: it watches from this worker's vantage point (and the sandbox's
        # two probe workers), so the monitor's metrics are here too.
        worker = spawn_worker(
            ["--config", config, "--metrics-address", address, "--log-format", "json"],
            worker_env,
            worker_log,
        )
        with receiver_log.open("w") as log:
            receiver = subprocess.Popen(
                [BIN / "failover", "receiver", "--config", config],
                env=env
                | {"TEST_AM_TOKEN": "t0ken-value", "FAILOVER_METRICS_ADDRESS": receiver_address},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_until(lambda: "worker polling" in worker_log.read_text(), "the worker")
            wait_until(lambda: f":{receiver_port}" in receiver_log.read_text(), "the receiver")
            refused = httpx.post(
                f"http://127.0.0.1:{receiver_port}/alarms/alertmanager",
                json=_alert("firing"),
                headers={"Authorization": "Bearer wrong"},
            )
            assert refused.status_code == 403
            assert cli(env, "sandbox", "fault", "es-primary", "all", "down").returncode == 0

            def finished() -> bool:
                done = cli(env, "status", "catalog-search", "--json")
                return done.returncode == 0 and "result" in json.loads(done.stdout)

            wait_until(finished, "the monitor's failover to finish")

            def scraped() -> str | None:
                text = httpx.get(f"http://{address}/metrics").text
                ours = ("failover_results{", "failover_notifications_failed{")
                return text if all(name in text for name in ours) else None

            text = wait_until(scraped, "our metrics on /metrics")
            receiver_text = httpx.get(f"http://{receiver_address}/metrics").text
        finally:
            code = stop(worker)
            receiver_code = stop(receiver)
    assert code == 0, worker_log.read_text()
    assert receiver_code == 0, receiver_log.read_text()
    lines = text.splitlines()
    [result] = [line for line in lines if line.startswith("failover_results{")]
    assert 'cluster="catalog-search"' in result and 'result="failed_over"' in result
    assert 'trigger="monitor"' in result and result.endswith(" 1")
    assert any(
        line.startswith("failover_step_seconds_count{") and 'step="switch"' in line
        for line in lines
    )
    assert any(line.startswith("search_probes{") and 'outcome="failed"' in line for line in lines)
    assert any(line.startswith("temporal_workflow_completed") for line in lines)  # the SDK's
    # The deleted webhook: "switching" and the result, each failed for good.
    failed = sample_value(text, "failover_notifications_failed", cluster="catalog-search")
    assert failed is not None and failed >= 1
    # This worker's own vantage point sees the dead primary, and the standby serving.
    seen = {"cluster": "catalog-search", "vantage": "search-failover"}
    assert sample_value(text, "monitor_side_up", **seen, side="primary") == 0
    assert sample_value(text, "monitor_side_up", **seen, side="standby") == 1
    assert sample_value(receiver_text, "alarms", endpoint="alertmanager", status="403") == 1
    # Every name the alerts and the dashboard query is exported.
    assert not missing_metric_names(used_metric_names(), [text, receiver_text])
    # --log-format json: one object a line; a run's lines carry its workflow id and cluster.
    records = [json.loads(line) for line in worker_log.read_text().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    runs = [r for r in records if r.get("workflow_id") == "failover-catalog-search"]
    assert runs and all(r["cluster"] == "catalog-search" for r in runs)
    assert any("failed_over" in r["message"] for r in runs)
    # The webhook URL is a secret: no log line names it (httpx logs each request's URL).
    assert webhook_url not in worker_log.read_text()
