"""Every activity heartbeats while it runs, whatever it does.

With a heartbeat timeout on every activity, a worker that dies mid-activity is noticed
within that timeout instead of the activity's start-to-close timeout (30 s for an AWS
call, minutes for a wait), which is most of the time a crashed failover loses.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from failover.names import (
    STOREFRONT_PROBE_LOOP_ACTIVITY,
    WAIT_CACHE_DATASTORE_ACTIVITY,
    WAIT_CAPACITY_ACTIVITY,
    WAIT_DATABASE_ACTIVITY,
    WAIT_FOLLOWERS_SYNCED_ACTIVITY,
    WATCH_CLUSTER_ACTIVITY,
)

# The SDK sends at most one heartbeat per 80% of the heartbeat timeout; beating more often
# than that costs nothing and keeps the gap short after a slow event-loop turn.
BEAT_EVERY_SECONDS = 0.5
# Activities that heartbeat their own progress details; an empty beat would overwrite them.
SELF_HEARTBEATING = frozenset(
    {
        WATCH_CLUSTER_ACTIVITY,
        STOREFRONT_PROBE_LOOP_ACTIVITY,
        WAIT_FOLLOWERS_SYNCED_ACTIVITY,
        WAIT_CAPACITY_ACTIVITY,
        WAIT_DATABASE_ACTIVITY,
        WAIT_CACHE_DATASTORE_ACTIVITY,
    }
)


class _HeartbeatingActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.heartbeat_timeout is None or info.activity_type in SELF_HEARTBEATING:
            return await super().execute_activity(input)
        beating = asyncio.create_task(self._beat())
        try:
            return await super().execute_activity(input)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    @staticmethod
    async def _beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(BEAT_EVERY_SECONDS)


class AutoHeartbeat(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HeartbeatingActivity(next)
