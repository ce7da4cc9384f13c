"""Where a load balancer stand-in sends new connections: what moto says of a target group.

The NLB and ALB stand-ins route the same way: round robin over the `healthy` targets; with
none healthy, fail open to the targets a real load balancer falls back on (which differ per
kind); refreshed every `refresh_seconds`, and a refresh that fails keeps the last routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Target = tuple[str, int]
# Maps a registered target (id, port) to the address to connect to; None leaves it out.
TargetAddress = Callable[[str, int], Target | None]


@dataclass(frozen=True)
class Routing:
    targets: tuple[Target, ...]
    fail_open: bool


class TargetRouting:
    """The routing half of a load balancer stand-in; the stand-in serves connections.

    `elbv2_factory` is called once at start; its client is used from a worker thread, one
    call at a time. `fails_open_to(state)` says which states a group with no healthy target
    falls back on.
    """

    def __init__(
        self,
        elbv2_factory: Callable[[], Any],
        target_group_arn: str,
        *,
        refresh_seconds: float,
        fails_open_to: Callable[[str], bool],
        address: TargetAddress | None = None,
        log: logging.Logger,
    ) -> None:
        self._elbv2_factory = elbv2_factory
        self.target_group_arn = target_group_arn
        self.refresh_seconds = refresh_seconds
        self.refreshes = 0
        self.refresh_failures = 0
        self._fails_open_to = fails_open_to
        self._address = address or (lambda target_id, port: (target_id, port))
        self._log = log
        self._client: Any = None
        self._routing = Routing((), fail_open=False)
        self._states: dict[Target, str] = {}
        self._round_robin = itertools.count()
        self._refresh_failing = False
        self._refresher: asyncio.Task[None] | None = None

    def routing_name(self) -> str:
        """How the logs name this load balancer."""
        return "load balancer stand-in"

    def routable_targets(self) -> list[Target]:
        """Where new connections go, per the last successful refresh."""
        return list(self._routing.targets)

    @property
    def fail_open(self) -> bool:
        return self._routing.fail_open

    def target_states(self) -> dict[Target, str]:
        """Every target of the last successful refresh and the state moto reported."""
        return dict(self._states)

    async def refresh(self) -> None:
        """Read target health now and route by it; raises if the call fails."""
        answer = await asyncio.to_thread(
            self._client.describe_target_health, TargetGroupArn=self.target_group_arn
        )
        states: dict[Target, str] = {}
        for description in answer["TargetHealthDescriptions"]:
            target = description["Target"]
            address = self._address(target["Id"], int(target["Port"]))
            if address is not None:
                states[address] = description["TargetHealth"]["State"]
        healthy = tuple(t for t, state in states.items() if state == "healthy")
        fallback = tuple(t for t, state in states.items() if self._fails_open_to(state))
        routing = Routing(healthy, False) if healthy else Routing(fallback, bool(fallback))
        if routing != self._routing:
            self._log.info(
                "%s now routes to %s%s",
                self.routing_name(),
                [f"{ip}:{port}" for ip, port in routing.targets] or "nothing",
                " (fail open: no healthy target)" if routing.fail_open else "",
            )
        self._states = states
        self._routing = routing
        self.refreshes += 1

    def next_target(self) -> Target | None:
        targets = self._routing.targets
        if not targets:
            return None
        return targets[next(self._round_robin) % len(targets)]

    async def start_routing(self) -> None:
        """Read target health once (errors propagate), then keep refreshing."""
        self._client = await asyncio.to_thread(self._elbv2_factory)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def stop_routing(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # any failure: keep the last routing, say so once
                self.refresh_failures += 1
                if not self._refresh_failing:
                    self._log.warning(
                        "%s cannot read target health (%s); keeping last routing %s",
                        self.routing_name(),
                        exc,
                        self.routable_targets(),
                    )
                self._refresh_failing = True
            else:
                if self._refresh_failing:
                    self._log.info("%s reads target health again", self.routing_name())
                self._refresh_failing = False
