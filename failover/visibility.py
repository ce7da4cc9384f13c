"""What the Temporal Web UI shows about a failover: search attributes and summaries.

Four Keyword search attributes make every run filterable, e.g.
`FailoverCluster = "catalog-search" AND FailoverPhase = "awaiting_approval"`. A fifth, the
Text `FailoverSummary`, carries the run's static summary: the Web UI's workflow list reads
only search attributes, never user metadata, so this is how the summary gets a column there.
The worker registers them at start (the embedded dev server registers them itself). A server
where they are missing must not stop a failover: clients then start without the summary, or
without any, and the workflows only update attributes they were started with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

CLUSTER = SearchAttributeKey.for_keyword("FailoverCluster")
PHASE = SearchAttributeKey.for_keyword("FailoverPhase")
RESULT = SearchAttributeKey.for_keyword("FailoverResult")
TRIGGER = SearchAttributeKey.for_keyword("FailoverTrigger")
SUMMARY = SearchAttributeKey.for_text("FailoverSummary")
KEYS = (CLUSTER, PHASE, RESULT, TRIGGER, SUMMARY)
# The name `temporal operator search-attribute create --type` and the dev server take.
TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.TEXT: "Text",
}
# For `temporal server start-dev --search-attribute ...` and the docs.
DEV_SERVER_ARGS = tuple(
    arg
    for key in KEYS
    for arg in ("--search-attribute", f"{key.name}={TYPE_NAMES[key.indexed_value_type]}")
)
T = TypeVar("T")


def attributes(
    cluster: str,
    *,
    trigger: str | None = None,
    phase: str = "starting",
    summary: str | None = None,
) -> TypedSearchAttributes:
    """A run's attributes at start; `summary` is the run's static summary, for the list."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(CLUSTER, cluster),
        SearchAttributePair(PHASE, phase),
    ]
    if trigger is not None:
        pairs.append(SearchAttributePair(TRIGGER, trigger))
    if summary is not None:
        pairs.append(SearchAttributePair(SUMMARY, summary))
    return TypedSearchAttributes(pairs)


async def register(client: Client) -> list[str]:
    """Adds the missing attributes to the client's namespace; returns those still missing
    (no permission, e.g. Temporal Cloud: create them with tcld or the console)."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = [key for key in KEYS if key.name not in listed.custom_attributes]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={key.name: int(key.indexed_value_type) for key in missing},
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            log.warning(
                "search attributes %s not registered (%s); create them with: %s",
                ", ".join(key.name for key in missing),
                err.message,
                "; ".join(create_command(key) for key in missing),
            )
            return [key.name for key in missing]
    return []


def create_command(key: SearchAttributeKey[Any]) -> str:
    kind = TYPE_NAMES[key.indexed_value_type]
    return f"temporal operator search-attribute create --name {key.name} --type {kind}"


async def start_with_fallback(
    start: Callable[[TypedSearchAttributes | None], Awaitable[T]], wanted: TypedSearchAttributes
) -> T:
    """Starts with the search attributes, or with fewer where the server lacks some: first
    without the summary (the attribute added last), then without any. A failover must
    start even on a server nobody prepared."""
    fewer: list[TypedSearchAttributes] = [wanted]
    if wanted.get(SUMMARY) is not None:
        fewer.append(
            TypedSearchAttributes([p for p in wanted.search_attributes if p.key != SUMMARY])
        )
    for attributes in fewer:
        try:
            return await start(attributes)
        except RPCError as err:
            if not _unknown_attribute(err):
                raise
            log.warning("starting with fewer search attributes: %s", err.message)
    return await start(None)


def _unknown_attribute(err: RPCError) -> bool:
    return (
        err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message.lower()
    )
