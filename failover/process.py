"""What every entry point does with its process: stop on SIGINT or SIGTERM, and exit at
once when done."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import NoReturn


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
