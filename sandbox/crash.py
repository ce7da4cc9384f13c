"""Crash injection for durability tests: SIGKILL this worker at a chosen point.

`python -m sandbox.crash [worker options]` runs the real worker with a crash interceptor
added; the point comes from outside (FAILOVER_CRASH_AT), so no product code knows about
it. Its form is
`<activity>:<phase>[:<n>]`:
- `before`: as the n-th call of the activity starts (retries count), before it runs;
- `after`: when the n-th call has done its work but before it reports completion;
- `heartbeat`: at the activity's own n-th heartbeat (one with details: a poll in a wait).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

CRASH_ENV = "FAILOVER_CRASH_AT"
Phase = Literal["before", "after", "heartbeat"]
PHASES: tuple[Phase, ...] = ("before", "after", "heartbeat")


@dataclass(frozen=True)
class CrashPoint:
    activity: str
    phase: Phase
    nth: int = 1

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        parts = text.split(":")
        if len(parts) not in (2, 3) or parts[1] not in PHASES:
            raise ValueError(
                f"{CRASH_ENV}={text!r}: expected <activity>:<{'|'.join(PHASES)}>[:<n>]"
            )
        nth = 1
        if len(parts) == 3:
            if not parts[2].isdigit() or int(parts[2]) < 1:
                raise ValueError(f"{CRASH_ENV}={text!r}: n must be a whole number from 1")
            nth = int(parts[2])
        return cls(activity=parts[0], phase=parts[1], nth=nth)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.activity}:{self.phase}:{self.nth}"


def crash(point: CrashPoint) -> None:
    """Dies the way a lost host or OOM kill does: no cleanup, no reply to the server."""
    print(f"crash point {point} reached: SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class CrashInterceptor(Interceptor):
    def __init__(self, point: CrashPoint) -> None:
        self.point = point
        self.seen: Counter[tuple[str, str]] = Counter()

    def reached(self, activity_type: str, phase: Phase) -> None:
        if activity_type != self.point.activity or phase != self.point.phase:
            return
        self.seen[(activity_type, phase)] += 1
        if self.seen[(activity_type, phase)] == self.point.nth:
            crash(self.point)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CrashingInbound(next, self)


class _CrashingInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, crasher: CrashInterceptor) -> None:
        super().__init__(next)
        self.crasher = crasher

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_CrashingOutbound(outbound, self.crasher))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        self.crasher.reached(name, "before")
        result = await super().execute_activity(input)
        self.crasher.reached(name, "after")
        return result


class _CrashingOutbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, crasher: CrashInterceptor) -> None:
        super().__init__(next)
        self.crasher = crasher

    def heartbeat(self, *details: Any) -> None:
        super().heartbeat(*details)
        if details:  # the activity's own progress report, not the automatic keep-alive
            self.crasher.reached(activity.info().activity_type, "heartbeat")


def interceptor_from_env() -> CrashInterceptor | None:
    text = os.environ.get(CRASH_ENV)
    return CrashInterceptor(CrashPoint.parse(text)) if text else None


def main() -> None:
    """The worker's own command line, with the crash point from the environment added."""
    import typer

    import worker

    interceptor = interceptor_from_env()
    if interceptor is not None:
        worker.EXTRA_INTERCEPTORS.append(interceptor)
    typer.run(worker.main)


if __name__ == "__main__":
    main()
