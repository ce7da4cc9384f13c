"""Real Redis and Varnish processes on loopback for the storefront sandbox.

Cache poisoning after a search outage is a property of the real caches (Redis keeps the page
cache entry, Varnish keeps the object for its TTL plus grace), so the sandbox runs the real
daemons instead of fakes. Every process runs in its own process group and is stopped in
stop(), at interpreter exit, and (when started from the main thread) by the kernel if the
Python process dies, so none outlives a test session.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.net import free_port

__all__ = ["RedisServer", "ServiceError", "VarnishServer"]

LOOPBACK = "127.0.0.1"
VCL_TEMPLATE = Path(__file__).with_name("magento.vcl")
_REDIS_MISSING = "redis-server not found: apt-get install redis-server (make test installs it)"
_VARNISH_MISSING = "varnishd not found: apt-get install varnish (make test installs it)"
# Debian puts varnishd in /usr/sbin, which is not on a normal user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_POLL_S = 0.05
_PORT_ATTEMPTS = 3


class ServiceError(RuntimeError):
    """A sandbox service could not be started; the message carries the daemon's log tail."""


def _find_binary(name: str, missing: str) -> str:
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(_SBIN_DIRS)
    found = shutil.which(name, path=path)
    if found is None:
        raise ServiceError(missing)
    return found


_LIVE: set[_ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Last line of defence: stop whatever a crashed test left running."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for service in live:
        with contextlib.suppress(Exception):
            service.stop()


class _ManagedProcess:
    """One daemon in its own process group, logging to a file in its workdir."""

    name = "service"
    stop_timeout_s = 5.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).resolve()
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self, argv: list[str]) -> None:
        """Start argv in a new session; with setpriv, the kernel kills it if we die.

        PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only used for
        the main thread (a worker thread of asyncio.to_thread may exit before the tests end).
        """
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {shlex.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _spawn_until_ready(
        self, argv: Callable[[], list[str]], *, fixed_ports: bool, timeout_s: float
    ) -> bool:
        """Spawns argv() (which picks its ports) and waits for _wait_ready; when the ports were
        picked here and one was taken meanwhile, tries again with fresh ones."""
        attempts = 1 if fixed_ports else _PORT_ATTEMPTS
        for attempt in range(attempts):
            self._spawn(argv())
            if self._wait_ready(timeout_s):
                return True
            if attempt + 1 < attempts and "Address already in use" in self.log_tail():
                self.stop()
                continue
            break
        return False

    def _wait_ready(self, timeout_s: float) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _exited(self) -> bool:
        return self._proc is None or self._proc.poll() is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, message: str) -> ServiceError:
        """Stop the half-started daemon and build an error that shows its log."""
        self.stop()
        tail = self.log_tail()
        return ServiceError(f"{message}\n--- {self.log_path}:\n{tail}" if tail else message)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL the whole process group (forked children included)."""
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._kill_group(proc.pid)
                    proc.wait(timeout=self.stop_timeout_s)
        finally:
            # The group id is the leader's pid (start_new_session); it also holds children
            # the leader forked, e.g. varnishd's cache child or a VCL compiler.
            self._kill_group(proc.pid)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


class RedisServer(_ManagedProcess):
    """A throwaway redis-server: no persistence, loopback only, foreground."""

    name = "redis"

    def __init__(self, *, port: int = 0, workdir: Path) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("RedisServer.url is known after start()")
        return f"redis://{LOOPBACK}:{self.port}"

    def start(self, *, timeout_s: float = 5.0) -> None:
        """Start and wait for PING; a port taken meanwhile is retried when port=0."""
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        binary = _find_binary("redis-server", _REDIS_MISSING)

        def argv() -> list[str]:
            self.port = self._requested_port or free_port(LOOPBACK)
            return [
                binary,
                "--port", str(self.port),
                "--bind", LOOPBACK,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--daemonize", "no",
                "--logfile", "",
            ]  # fmt: skip

        if self._spawn_until_ready(
            argv, fixed_ports=bool(self._requested_port), timeout_s=timeout_s
        ):
            return
        raise self._fail(f"redis-server did not answer PING on port {self.port} in {timeout_s}s")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        # No client-side retries: each poll is one quick attempt.
        client = redis.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while time.monotonic() < deadline and not self._exited():
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return True
                time.sleep(_POLL_S)
            return False
        finally:
            client.close()


class VarnishServer(_ManagedProcess):
    """varnishd in the foreground with sandbox/magento.vcl in front of one backend.

    As root, varnishd's default jail (-j unix) drops to the `varnish`/`vcache` users, which
    cannot read a VCL or work directory under pytest's 0700 /tmp/pytest-of-root; `-j none`
    keeps every process as the caller. The thread pool and shared log are shrunk so a test
    instance starts fast and stays small.
    """

    name = "varnishd"

    def __init__(
        self,
        *,
        backend_host: str,
        backend_port: int,
        workdir: Path,
        port: int = 0,
        admin_port: int = 0,
    ) -> None:
        super().__init__(workdir)
        self.backend_host = backend_host
        self.backend_port = backend_port
        self._requested_port = port
        self._requested_admin_port = admin_port
        self.port = port
        self.admin_port = admin_port
        self.vcl_path = self.workdir / "magento.vcl"
        self.instance_dir = self.workdir / "varnishd-instance"

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("VarnishServer.url is known after start()")
        return f"http://{LOOPBACK}:{self.port}"

    def render_vcl(self) -> str:
        """Magento's VCL with the backend filled in, the way varnish:vcl:generate does."""
        return (
            VCL_TEMPLATE.read_text()
            .replace("/* {{ host }} */", self.backend_host)
            .replace("/* {{ port }} */", str(self.backend_port))
        )

    def start(self, *, timeout_s: float = 20.0) -> None:
        """Compile the VCL, start varnishd and wait until the VCL answers HTTP.

        The readiness request is a PURGE without headers, answered by the VCL itself (400),
        so start() never waits on the backend, which may share the caller's event loop. The
        backend turns healthy with the first good probe (.initial = threshold - 1); until
        then Varnish answers 503.
        """
        if self.running:
            raise RuntimeError(f"varnishd is already running on port {self.port}")
        binary = _find_binary("varnishd", _VARNISH_MISSING)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vcl_path.write_text(self.render_vcl())

        def argv() -> list[str]:
            self.port = self._requested_port or free_port(LOOPBACK)
            self.admin_port = self._requested_admin_port or free_port(LOOPBACK)
            return [
                binary,
                "-F",
                "-j", "none",
                "-a", f"{LOOPBACK}:{self.port}",
                "-T", f"{LOOPBACK}:{self.admin_port}",
                "-f", str(self.vcl_path),
                "-n", str(self.instance_dir),
                "-s", "malloc,32m",
                "-p", "thread_pools=1",
                "-p", "thread_pool_min=10",
                "-p", "thread_pool_max=200",
                "-p", "vsl_space=4M",
                "-p", "syslog_cli_traffic=off",
            ]  # fmt: skip

        fixed = bool(self._requested_port and self._requested_admin_port)
        if self._spawn_until_ready(argv, fixed_ports=fixed, timeout_s=timeout_s):
            return
        raise self._fail(
            f"varnishd did not answer HTTP on {LOOPBACK}:{self.port} within {timeout_s}s"
        )

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._exited():
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=1.0)
            try:
                conn.request("PURGE", "/")
                response = conn.getresponse()
                response.read()
                # Only our VCL answers a bare PURGE with 400: not some other server's port.
                if response.status == 400:
                    return True
                time.sleep(_POLL_S)
            except (OSError, http.client.HTTPException):
                time.sleep(_POLL_S)
            finally:
                conn.close()
        return False

    async def wait_backend_healthy(self, timeout_s: float = 10.0) -> None:
        """Waits until the health probe has marked the backend healthy (Varnish answers 503
        before that). Async, because the backend may run in the caller's event loop."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.url}/health_check.php")
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._fail(f"varnishd saw no healthy backend within {timeout_s}s")
                await asyncio.sleep(_POLL_S)

    def admin(self, *args: str, timeout_s: float = 5.0) -> str:
        """Run a varnishadm CLI command (e.g. "backend.list") against this instance."""
        varnishadm = _find_binary("varnishadm", _VARNISH_MISSING)
        done = subprocess.run(
            [varnishadm, "-n", str(self.instance_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"varnishadm {' '.join(args)} failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()}"
            )
        return done.stdout
