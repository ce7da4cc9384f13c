"""Is the standby's data fit for the storefront: Magento's aliases, document counts and
replication, judged against the other side (read now, or as the monitor last saw it).

Patroni refuses to promote a replica more than `maximum_lag_on_failover` behind; these are
that rule for a search cluster, plus Magento's own aliases, which no replication status
shows: a reindex moves `<prefix>_product_<store>` to `_v<N+1>` on the leader, and a
follower can keep pointing at the old version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from failover.config import MagentoIndices, ReplicationSettings
from failover.models import (
    AliasState,
    DataRecord,
    DataSnapshot,
    FollowerState,
    Side,
    other_side,
)

# Stable reason prefixes.
ALIAS_MISSING = "alias missing"
ALIAS_STALE = "alias stale"
REPLICATION_LAG = "replication lag"
TOO_FEW_DOCUMENTS = "too few documents"
NOT_RESEEDED = "not re-seeded"
INDICES_UNREADABLE = "indices unreadable"
# What `--accept-stale` may override: the standby answers, its data is behind.
ACCEPTABLE = (ALIAS_MISSING, ALIAS_STALE, REPLICATION_LAG, TOO_FEW_DOCUMENTS, NOT_RESEEDED)

_VERSION = re.compile(r"_v(\d+)$")


def index_version(index: str) -> int | None:
    """`magento2_product_1_v7` → 7; None for an index without Magento's version suffix."""
    match = _VERSION.search(index)
    return int(match.group(1)) if match else None


def _seen(reference: DataSnapshot, now: float) -> str:
    age = now - reference.read_at
    return " (read now)" if age < 5 else f" (last known, read {age:.0f} s ago)"


def alias_refusals(
    live: DataSnapshot, reference: DataSnapshot | None, magento: MagentoIndices, now: float
) -> list[str]:
    """Every alias the storefront searches must be on the standby, pointing at the same
    index version as on the other side, with about as many documents."""
    refusals: list[str] = []
    for name in magento.alias_names():
        mine = live.alias(name) or AliasState(alias=name)
        theirs = reference.alias(name) if reference is not None else None
        if not mine.indices:
            pointed = ""
            if reference is not None and theirs is not None and theirs.indices:
                pointed = f"; on the {reference.side} it points at {', '.join(theirs.indices)}"
            refusals.append(f"{ALIAS_MISSING}: {name} is not on the {live.side}{pointed}")
            continue
        if reference is None or theirs is None or not theirs.indices:
            continue
        seen = _seen(reference, now)
        if set(mine.indices) != set(theirs.indices):
            mine_version = max(index_version(i) or 0 for i in mine.indices)
            theirs_version = max(index_version(i) or 0 for i in theirs.indices)
            if theirs_version >= mine_version:
                refusals.append(
                    f"{ALIAS_STALE}: {name} points at {', '.join(mine.indices)} on the "
                    f"{live.side}, at {', '.join(theirs.indices)} on the {reference.side}{seen}"
                )
                continue
        if (
            theirs.documents
            and mine.documents is not None
            and mine.documents < magento.min_document_ratio * theirs.documents
        ):
            refusals.append(
                f"{TOO_FEW_DOCUMENTS}: {name} holds {mine.documents} documents on the "
                f"{live.side}, {theirs.documents} on the {reference.side}{seen} "
                f"(min_document_ratio {magento.min_document_ratio:g})"
            )
    return refusals


def _is_follower(state: FollowerState | None) -> bool:
    return state is not None and state.status != "not_following"


def _follows(snapshot: DataSnapshot | None) -> bool:
    """Whether that side's storefront indices replicate from elsewhere (it is a follower)."""
    return snapshot is not None and any(_is_follower(f) for f in snapshot.followers)


def replication_refusals(
    live: DataSnapshot,
    reference: DataSnapshot | None,
    recorded: DataSnapshot | None,
    replication: ReplicationSettings,
    now: float,
) -> list[str]:
    """The standby's follower indices must be fed from the other side and close behind it.

    `recorded` is the monitor's record of this side: once the leader is gone, a follower
    reports frozen checkpoints that look caught up, so only the record (kept while the
    leader was healthy) says whether it was beyond the limits, and since when.
    """
    if not replication.enabled:
        return []
    side, leader = live.side, other_side(live.side)
    refusals: list[str] = []
    for index in [i for a in live.aliases for i in a.indices]:
        state = live.follower(index)
        if state is None or not _is_follower(state):
            if _follows(reference):
                continue  # the other side follows this one: this side is the leader
            refusals.append(
                f"{NOT_RESEEDED}: {index} on the {side} is not replicating from the {leader}, "
                f"so writes made on the {leader} are missing; run `failover reseed` first"
            )
            continue
        before = recorded.follower(index) if recorded is not None else None
        why = f" ({state.reason})" if state.reason else ""
        if before is not None and before.stale_since is not None:
            refusals.append(
                f"{REPLICATION_LAG}: {index} on the {side} ({state.status}{why}) has been "
                f"beyond the limits for {now - before.stale_since:.0f} s, as the monitor saw "
                f"it with the {leader} healthy (max_lag_seconds {replication.max_lag_seconds:g}, "
                f"max_lag_operations {replication.max_lag_operations})"
            )
            continue
        never_judged = before is None or (before.fresh_at is None and before.stale_since is None)
        if state.status in ("paused", "failed") and never_judged:
            refusals.append(
                f"{REPLICATION_LAG}: {index} replication {state.status}{why} on the {side}, "
                f"since when unknown (the monitor has no reading of it)"
            )
            continue
        checkpoints = [c for c in (state.leader_checkpoint, before and before.leader_checkpoint)]
        known = [c for c in checkpoints if c is not None]
        if known and state.follower_checkpoint is not None:
            behind = max(known) - state.follower_checkpoint
            if behind > replication.max_lag_operations:
                refusals.append(
                    f"{REPLICATION_LAG}: {index} on the {side} is {behind} operations behind "
                    f"the {leader} (max_lag_operations {replication.max_lag_operations})"
                )
    return refusals


def readiness_refusals(
    live: DataSnapshot,
    reference: DataSnapshot | None,
    recorded: DataSnapshot | None,
    magento: MagentoIndices,
    replication: ReplicationSettings,
    now: float,
) -> list[str]:
    """Everything that makes `live` (the side traffic would move to) unfit; [] when fit."""
    if live.error is not None:
        return [f"{INDICES_UNREADABLE}: {live.side}: {live.error}"]
    return alias_refusals(live, reference, magento, now) + replication_refusals(
        live, reference, recorded, replication, now
    )


def data_refusal(refusals: Sequence[str], accepted: bool) -> str | None:
    """The preflight's verdict on the data: the first refusal, unless an operator accepted
    the data refusals for this run (a standby that cannot be read is never accepted)."""
    if not refusals:
        return None
    if accepted and all(r.startswith(ACCEPTABLE) for r in refusals):
        return None
    return f"preflight failed: {'; '.join(refusals)}"


def readiness_lines(live: DataSnapshot, magento: MagentoIndices) -> list[str]:
    """What the timeline and the result show of a side's data: aliases, counts, lag."""
    lines: list[str] = []
    for name in magento.alias_names():
        alias = live.alias(name)
        if alias is None or not alias.indices:
            lines.append(f"{live.side} {name}: missing")
            continue
        docs = f", {alias.documents} documents" if alias.documents is not None else ""
        lines.append(f"{live.side} {name} → {', '.join(alias.indices)}{docs}")
    for state in live.followers:
        if state.status == "not_following":
            continue
        lag = state.lag_operations
        lines.append(
            f"{live.side} {state.index}: {state.status}"
            + (f", lag {lag} operations" if lag is not None else "")
            + (f" (checkpoint {state.follower_checkpoint})" if state.follower_checkpoint else "")
        )
    return lines


# --- the monitor's record -------------------------------------------------------------------


def fold_data(
    previous: DataSnapshot | None,
    reading: DataSnapshot,
    replication: ReplicationSettings,
    *,
    leader_healthy: bool,
) -> DataSnapshot:
    """One reading folded into what the monitor keeps of a side.

    A reading that failed keeps the last good one. A follower's `fresh_at` moves on only
    while its leader is healthy and it has caught up or is catching up: once the leader is
    gone, frozen checkpoints look caught up and must not make the follower look fresh.
    `stale_since` is set once it is beyond the limits (lag, or not fresh for too long).
    """
    if reading.error is not None:
        return previous if previous is not None else reading
    now = reading.read_at
    followers: list[FollowerState] = []
    for state in reading.followers:
        before = previous.follower(state.index) if previous is not None else None
        fresh_at = before.fresh_at if before is not None else None
        stale_since = before.stale_since if before is not None else None
        if leader_healthy and state.status in ("syncing", "bootstrapping"):
            lag = state.lag_operations
            advancing = (
                before is not None
                and before.follower_checkpoint is not None
                and state.follower_checkpoint is not None
                and state.follower_checkpoint > before.follower_checkpoint
            )
            if lag == 0 or advancing or fresh_at is None:
                fresh_at = now
        if leader_healthy and state.status != "not_following":
            beyond = (state.lag_operations or 0) > replication.max_lag_operations or (
                fresh_at is None or now - fresh_at > replication.max_lag_seconds
            )
            if not beyond:
                stale_since = None
            elif stale_since is None:
                stale_since = fresh_at if fresh_at is not None else now
        followers.append(
            state.model_copy(update={"fresh_at": fresh_at, "stale_since": stale_since})
        )
    return reading.model_copy(update={"followers": followers})


def data_key(record: DataRecord | None) -> tuple[object, ...]:
    """What of the data, when it changes, the watch reports to the monitor: aliases and
    what they point at, replication status, whether a follower is beyond the limits and
    the cluster-wide status. Counts and checkpoints ride along with the next report, so a
    shop's steady writes add nothing to history."""
    if record is None:
        return ()
    key: list[object] = []
    for snapshot in (record.primary, record.standby):
        if snapshot is None:
            key.append(None)
            continue
        aliases = tuple((a.alias, tuple(sorted(a.indices))) for a in snapshot.aliases)
        followers = tuple(
            (f.index, f.status, f.stale_since is not None) for f in snapshot.followers
        )
        key.append((aliases, followers, snapshot.cluster_status, snapshot.error is None))
    return tuple(key)


def cluster_status_note(snapshot: DataSnapshot | None) -> str | None:
    """A red or yellow cluster whose storefront indices are fine: a note, not a failover."""
    if snapshot is None or snapshot.error is not None:
        return None
    if snapshot.cluster_status in ("red", "yellow"):
        return (
            f"cluster status {snapshot.cluster_status} outside the storefront's indices "
            f"(they answer; an index Magento never reads is no reason to fail over)"
        )
    return None


def promotion_refusal(*, trigger: str, dry_run: bool, promote: bool) -> str | None:
    """Promotion cannot be undone: never in a drill (replication must survive it) or a
    dry run; only where the config asks for it."""
    if not promote:
        return "promotion off (replication.promote: false): the standby stays read-only"
    if dry_run:
        return "dry run: nothing promoted"
    if trigger == "drill":
        return "drill: replication kept, the standby stays read-only (Magento's writes pause)"
    return None


def latest(*snapshots: DataSnapshot | None) -> DataSnapshot | None:
    """The most recent good reading among these."""
    good = [s for s in snapshots if s is not None and s.error is None]
    return max(good, key=lambda s: s.read_at) if good else None


def reference_for(
    target: Side, live_other: DataSnapshot | None, record: DataRecord | None
) -> DataSnapshot | None:
    """What the target is judged against: the other side read now if it answers, else the
    monitor's last good reading of it."""
    recorded = record.side(other_side(target)) if record is not None else None
    return latest(live_other, recorded)
