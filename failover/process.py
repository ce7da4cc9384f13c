"""What every entry point does with its process: stop on SIGINT or SIGTERM, and exit at
once when done."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import uvicorn

# How long an HTTP server (the alarm receiver, the codec server) may take to listen.
SERVER_STARTUP_SECONDS = 10.0


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets; call it inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def exit_now(code: int) -> NoReturn:
    """Flush and exit at once: temporalio's runtime can crash the interpreter at teardown
    (code 134) after all the work is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def serve_until_started(
    server: uvicorn.Server, what: str, within_seconds: float = SERVER_STARTUP_SECONDS
) -> asyncio.Task[None]:
    """Starts `server` in this event loop and returns its task once it listens; raises why
    it could not start (e.g. the port is taken), or that it did not in `within_seconds`."""
    serving = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + within_seconds
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError(f"the {what} stopped before it started")
        if asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the {what} did not start within {within_seconds:g} s")
        await asyncio.sleep(0.01)
    return serving
