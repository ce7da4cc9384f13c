"""Waiting on conditions with a deadline, never on a guessed sleep (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.05


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = 5.0
) -> None:
    """Poll an async condition until it holds; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """Poll a blocking condition until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
