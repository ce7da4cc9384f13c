"""The ways a simulated node can fail, and the error the fault control API answers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultMode(StrEnum):
    """Every way a node can misbehave; the values are what the control API accepts."""

    HEALTHY = "healthy"
    DOWN = "down"
    HANG = "hang"
    SLOW = "slow"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    RED = "red"
    YELLOW = "yellow"
    FLAPPING = "flapping"
    UNAUTHORIZED = "unauthorized"
    WRONG_CLUSTER = "wrong_cluster"


_FAULT_FIELDS = ("mode", "slow_ms", "flap_period_s")


@dataclass
class NodeFault:
    """The fault injected into one node; validated on creation so bad input fails early."""

    mode: FaultMode = FaultMode.HEALTHY
    slow_ms: int = 2000
    flap_period_s: float = 2.0

    def __post_init__(self) -> None:
        try:
            self.mode = FaultMode(self.mode)
        except (ValueError, TypeError):
            allowed = ", ".join(FaultMode)
            raise ValueError(f"invalid mode {self.mode!r}; expected one of: {allowed}") from None
        slow = self.slow_ms
        if isinstance(slow, float) and slow.is_integer():
            slow = int(slow)
        if isinstance(slow, bool) or not isinstance(slow, int) or slow < 0:
            raise ValueError(
                f"invalid slow_ms {self.slow_ms!r}: expected a non-negative integer (milliseconds)"
            )
        self.slow_ms = slow
        period = self.flap_period_s
        if (
            isinstance(period, bool)
            or not isinstance(period, int | float)
            or not math.isfinite(period)
            or period <= 0
        ):
            raise ValueError(
                f"invalid flap_period_s {self.flap_period_s!r}: expected a positive number "
                "of seconds"
            )
        self.flap_period_s = float(period)

    @classmethod
    def from_dict(cls, data: Any) -> NodeFault:
        """Build from a control-API body; ValueError names the offending field or value."""
        if not isinstance(data, Mapping):
            raise ValueError('fault must be a JSON object like {"mode": "down"}')
        unknown = sorted(str(key) for key in data if key not in _FAULT_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FAULT_FIELDS)}"
            )
        if "mode" not in data:
            raise ValueError("missing field 'mode'")
        return cls(**{key: data[key] for key in _FAULT_FIELDS if key in data})

    def to_dict(self) -> dict[str, Any]:
        """The control-API representation."""
        return {
            "mode": str(self.mode),
            "slow_ms": self.slow_ms,
            "flap_period_s": self.flap_period_s,
        }


class FaultControlError(RuntimeError):
    """The control API refused a fault (or was unreachable); carries the server's message."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
