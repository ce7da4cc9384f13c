"""Planned switches and dry runs: who may skip confirmation, and exactly what a failover
would change and check."""

from __future__ import annotations

from collections.abc import Sequence

from failover.config import (
    ClusterConfig,
    NlbSwitch,
    RedisCache,
    Route53Switch,
    SsmCache,
    VarnishCache,
)
from failover.decisions.probe import switch_target_request
from failover.models import (
    FailoverPlan,
    RecordChange,
    Side,
    other_side,
)

# --- planned switches, dry runs and drills ---------------------------------------------------

CONFIRMATION_REQUIRED = "confirmation required"
ALREADY_ACTIVE = "already active"
# Runs that may skip confirming the active side is down: drills, failbacks, and a Region
# switch's search failover (the switch confirmed its Region's outage).
PLANNED_TRIGGERS = ("drill", "failback", "region")
# Switches after which the monitor need not hold still: planned and verified, nothing died.
NO_COOLDOWN_TRIGGERS = ("drill", "failback")


def skip_confirmation_refusal(trigger: str) -> str | None:
    """Only a drill or a failback moves traffic off a side that is not down."""
    if trigger in PLANNED_TRIGGERS:
        return None
    return (
        f"{CONFIRMATION_REQUIRED}: a {trigger} failover must confirm the active side is down; "
        f"only drills, failbacks and Region switches may skip it"
    )


def planned_switch_refusal(active: Side, to_side: Side | None) -> str | None:
    if to_side is not None and active == to_side:
        return f"{ALREADY_ACTIVE}: the {to_side} already takes the traffic; nothing to do"
    return None


def _cache_plan(cache: object) -> str:
    if isinstance(cache, RedisCache):
        dbs = [cache.db] + ([cache.page_cache_db] if cache.page_cache_db is not None else [])
        where = f"{cache.host}:{cache.port}"
        return f"redis {cache.name}: FLUSHDB of db {', '.join(map(str, dbs))} on {where}"
    if isinstance(cache, VarnishCache):
        servers = ", ".join(str(s) for s in cache.servers)
        return (
            f"varnish {cache.name}: PURGE X-Magento-Tags-Pattern {cache.tags_pattern} on {servers}"
        )
    assert isinstance(cache, SsmCache)
    return (
        f"ssm {cache.name}: `{cache.command}` in {cache.magento_root} on instances tagged "
        f"{cache.tag_key}={cache.tag_value}"
    )


def failover_plan(
    cluster: ClusterConfig,
    *,
    active: Side,
    record_values: Sequence[str] = (),
    skip_confirmation: bool,
    monitor_confirmed: bool = False,
) -> FailoverPlan:
    """Exactly what a failover from `active` would change and check, given the switch as
    read from AWS now."""
    target = other_side(active)
    probe = cluster.probe
    if skip_confirmation:
        confirmation = "skipped (a planned switch: drill or failback)"
    else:
        rounds = 1 if monitor_confirmed else probe.failure_threshold
        confirmation = (
            f"{rounds} probe round(s) of the {active}, {probe.interval_seconds:g} s apart; "
            f"any healthy round stops the failover"
        )
    plan = FailoverPlan(
        cluster=cluster.name, from_side=active, to_side=target, confirmation=confirmation
    )
    switch = cluster.switch
    if isinstance(switch, Route53Switch):
        value = {"primary": switch.primary_value, "standby": switch.standby_value}
        plan.record = RecordChange(
            name=switch.record_name,
            type=switch.record_type,
            from_value=record_values[0] if record_values else value[active],
            to_value=value[target],
            ttl=switch.ttl,
        )
    else:
        assert isinstance(switch, NlbSwitch)
        targets = {"primary": switch.primary_targets, "standby": switch.standby_targets}
        plan.register_targets = [f"{t.id}:{t.port}" for t in targets[target]]
        plan.deregister_targets = [f"{t.id}:{t.port}" for t in targets[active]]
    plan.caches = [_cache_plan(c) for stage in cluster.flush_stages() for c in stage]
    plan.checks = [f"preflight: every node of the {target} answers"]
    pointed = switch_target_request(cluster, target)
    if pointed is not None:
        names = ", ".join(f"{e.name}:{e.port}" for e in pointed.endpoints)
        plan.checks.append(f"preflight: {names} answers as the {target} cluster")
    plan.checks += [
        "switch is in place in AWS (record or targets)",
        f"the {target}'s nodes answer, up to {probe.verify_attempts} attempts",
    ]
    if cluster.verify.search_path is not None:
        plan.checks.append(f"search answers through {cluster.verify.search_path.url}")
    if cluster.verify.storefront is not None:
        storefront = cluster.verify.storefront
        plan.checks.append(
            f"storefront search {storefront.search_term!r} at {storefront.url} finds products"
        )
    plan.checks.append("on a failed verify: roll back and flush again")
    return plan
