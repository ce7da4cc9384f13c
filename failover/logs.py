"""Log lines an operator can search: text, or one JSON object per line with the cluster and
the workflow id on every line that belongs to a run."""

from __future__ import annotations

import logging
import re
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
# failover-<c>, monitor-<c>, drill-<c>-<time>, plan-<c>-<hex>: the cluster is in the id.
WORKFLOW_ID = re.compile(
    r"^(?:failover|monitor|drill|plan)-(?P<cluster>[a-z0-9][a-z0-9-]*?)"
    r"(?:-\d{8}T\d{6}Z|-\d{4}-\d\d-\d\dT[\d:]+Z|-(?:primary|standby)-[0-9a-f]{8}|-[0-9a-f]{8})?$"
)


def cluster_of(workflow_id: str) -> str | None:
    match = WORKFLOW_ID.match(workflow_id)
    return match.group("cluster") if match else None


class RunContext(logging.Filter):
    """Lifts the workflow id out of the SDK's `temporal_workflow`/`temporal_activity` extras
    and adds the cluster it names."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = getattr(record, "temporal_workflow", None) or getattr(
            record, "temporal_activity", None
        )
        if isinstance(context, dict) and "workflow_id" in context:
            record.workflow_id = context["workflow_id"]
            cluster = cluster_of(context["workflow_id"])
            if cluster is not None and not hasattr(record, "cluster"):
                record.cluster = cluster
        return True


def configure(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RunContext())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
