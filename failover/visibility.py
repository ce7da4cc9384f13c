"""What the Temporal Web UI shows about a failover: search attributes and summaries.

Four Keyword search attributes make every run filterable, e.g.
`FailoverCluster = "catalog-search" AND FailoverPhase = "awaiting_approval"`. The worker
registers them at start (the embedded dev server registers them itself). A server where
they are missing must not stop a failover: clients then start without them, and the
workflows only update attributes they were started with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

CLUSTER = SearchAttributeKey.for_keyword("FailoverCluster")
PHASE = SearchAttributeKey.for_keyword("FailoverPhase")
RESULT = SearchAttributeKey.for_keyword("FailoverResult")
TRIGGER = SearchAttributeKey.for_keyword("FailoverTrigger")
KEYS = (CLUSTER, PHASE, RESULT, TRIGGER)
# For `temporal server start-dev --search-attribute ...` and the docs.
DEV_SERVER_ARGS = tuple(
    arg for key in KEYS for arg in ("--search-attribute", f"{key.name}=Keyword")
)
T = TypeVar("T")


def attributes(
    cluster: str, *, trigger: str | None = None, phase: str = "starting"
) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(CLUSTER, cluster),
        SearchAttributePair(PHASE, phase),
    ]
    if trigger is not None:
        pairs.append(SearchAttributePair(TRIGGER, trigger))
    return TypedSearchAttributes(pairs)


async def register(client: Client) -> list[str]:
    """Adds the missing attributes to the client's namespace; returns those still missing
    (no permission, e.g. Temporal Cloud: create them with tcld or the console)."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = [key.name for key in KEYS if key.name not in listed.custom_attributes]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                },
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            log.warning(
                "search attributes %s not registered (%s); create them with: %s",
                ", ".join(missing),
                err.message,
                "; ".join(
                    f"temporal operator search-attribute create --name {name} --type Keyword"
                    for name in missing
                ),
            )
            return missing
    return []


async def start_with_fallback(
    start: Callable[[TypedSearchAttributes | None], Awaitable[T]], wanted: TypedSearchAttributes
) -> T:
    """Starts with the search attributes, or without them where the server lacks them:
    a failover must start even on a server nobody prepared."""
    try:
        return await start(wanted)
    except RPCError as err:
        if (
            err.status != RPCStatusCode.INVALID_ARGUMENT
            or "search attribute" not in err.message.lower()
        ):
            raise
        log.warning("starting without search attributes: %s", err.message)
        return await start(None)
