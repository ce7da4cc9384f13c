"""Reading the switch (which side the record or the target group sends traffic to) and
judging the switched path: the record, the targets, the storefront."""

from __future__ import annotations

from collections.abc import Sequence

from failover.config import (
    Route53Switch,
    Target,
    normalise_record_value,
)
from failover.models import (
    Side,
    TargetState,
)


def active_side(values: Sequence[str], switch: Route53Switch) -> tuple[Side | None, str | None]:
    """Which side the record sends traffic to now, or a reason why that cannot be told."""
    if not values:
        return None, f"record {switch.record_name} {switch.record_type} does not exist"
    if len(values) != 1:
        return None, f"record {switch.record_name} holds {len(values)} values, expected one"
    value = normalise_record_value(values[0])
    if value == normalise_record_value(switch.primary_value):
        return "primary", None
    if value == normalise_record_value(switch.standby_value):
        return "standby", None
    return None, (
        f"record {switch.record_name} points at {values[0]!r}, which is neither the primary "
        f"nor the standby value; refusing to guess"
    )


def record_problem(record_values: Sequence[str], expected_value: str) -> str | None:
    """None when the record holds exactly the value we switched to."""
    if [normalise_record_value(v) for v in record_values] != [
        normalise_record_value(expected_value)
    ]:
        return f"verify failed: record holds {list(record_values)}, expected [{expected_value!r}]"
    return None


REGISTERED_STATES = frozenset({"initial", "healthy", "unhealthy", "unavailable"})


def _registered(states: Sequence[TargetState]) -> set[tuple[str, int]]:
    """Targets that take (or are about to take) new connections: not draining, not gone."""
    return {(s.id, s.port) for s in states if s.state in REGISTERED_STATES}


def _keys(targets: Sequence[Target]) -> set[tuple[str, int]]:
    return {t.key() for t in targets}


def _listed(keys: set[tuple[str, int]]) -> str:
    return ", ".join(f"{i}:{p}" for i, p in sorted(keys)) or "none"


def active_target_side(
    states: Sequence[TargetState], primary: Sequence[Target], standby: Sequence[Target]
) -> tuple[Side | None, str | None]:
    """Which target set the NLB sends traffic to now, or why that cannot be told."""
    registered = _registered(states)
    if registered == _keys(primary):
        return "primary", None
    if registered == _keys(standby):
        return "standby", None
    return None, (
        f"registered targets ({_listed(registered)}) are neither exactly the primary "
        f"({_listed(_keys(primary))}) nor the standby ({_listed(_keys(standby))}); "
        f"refusing to guess"
    )


def targets_problem(states: Sequence[TargetState], expected: Sequence[Target]) -> str | None:
    """None when exactly the expected targets are registered and all of them are healthy."""
    registered = _registered(states)
    if registered != _keys(expected):
        return (
            f"verify failed: registered targets are {_listed(registered)}, "
            f"expected {_listed(_keys(expected))}"
        )
    sick = [
        f"{s.id}:{s.port} {s.state}"
        for s in states
        if s.state in REGISTERED_STATES and s.state != "healthy"
    ]
    if sick:
        return f"verify failed: targets not healthy: {', '.join(sick)}"
    return None


def storefront_problem(
    *,
    search_status: int,
    search_body: object,
    category_status: int | None,
    category_body: str | None,
    broken_marker: str,
) -> str | None:
    """None when a storefront search returns products and the category page is not broken."""
    if search_status != 200 or not isinstance(search_body, dict):
        return f"storefront failed: GraphQL search answered HTTP {search_status}"
    errors = search_body.get("errors")
    if errors:
        message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
        return f"storefront failed: GraphQL search error: {message}"
    products = (search_body.get("data") or {}).get("products") or {}
    total = products.get("total_count")
    if not total:
        return f"storefront failed: GraphQL search returned {total!r} products"
    if category_status is not None:
        if category_status != 200:
            return f"storefront failed: category page answered HTTP {category_status}"
        if category_body is not None and broken_marker in category_body:
            return "storefront failed: category page still shows the page cached during the outage"
    return None
