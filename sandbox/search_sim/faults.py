"""The ways a simulated node (or its data) can fail, and the error the fault control API
answers."""

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


# --------------------------------------------------------------------------- data faults

_REPLICATION_KINDS = ("pause", "fail", "resume", "lag", "sync")
_HEALTH_STATUSES = ("red", "yellow", None)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# action -> field -> (required, check, what the field must be)
DATA_ACTIONS: dict[str, dict[str, tuple[bool, Any, str]]] = {
    "replication_fault": {
        "kind": (
            True,
            lambda v: v in _REPLICATION_KINDS,
            f"one of {', '.join(_REPLICATION_KINDS)}",
        ),
        "index": (False, lambda v: v is None or _text(v), "an index name or null (all followers)"),
        "operations": (False, _count, "a non-negative integer"),
    },
    "write_documents": {
        "index_or_alias": (True, _text, "an index or alias name"),
        "count": (True, _count, "a non-negative integer"),
    },
    "reindex_store": {"store": (True, _count, "a store id (non-negative integer)")},
    "drop_alias": {"alias": (True, _text, "an alias name")},
    "point_alias": {
        "alias": (True, _text, "an alias name"),
        "index": (True, _text, "an index name"),
    },
    "set_index_health": {
        "index": (True, _text, "an index or alias name"),
        "status": (True, lambda v: v in _HEALTH_STATUSES, "red, yellow or null"),
    },
}


def parse_data_action(payload: Any) -> tuple[str, dict[str, Any]]:
    """A control-API data action `{"action": ..., **params}`; ValueError names the field."""
    if not isinstance(payload, Mapping):
        raise ValueError('body must be a JSON object like {"action": "write_documents", ...}')
    action = payload.get("action")
    if action is None:
        raise ValueError("missing field 'action'")
    if action not in DATA_ACTIONS:
        raise ValueError(f"invalid action {action!r}; expected one of: {', '.join(DATA_ACTIONS)}")
    spec = DATA_ACTIONS[action]
    params = {k: v for k, v in payload.items() if k != "action"}
    if action == "write_documents" and "index" in params and "index_or_alias" not in params:
        params["index_or_alias"] = params.pop("index")  # the CLI's --index
    unknown = sorted(str(k) for k in params if k not in spec)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} for {action}; allowed: {', '.join(spec)}"
        )
    for name, (required, check, what) in spec.items():
        if name not in params:
            if required:
                raise ValueError(f"missing field {name!r} for {action}")
            continue
        if not check(params[name]):
            raise ValueError(f"invalid {name} {params[name]!r}: expected {what}")
    return action, params
