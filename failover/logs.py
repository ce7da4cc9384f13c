"""Log lines an operator can search: text, or one JSON object per line with the cluster and
the workflow id on every line that belongs to a run.

One record makes one line. Text from outside (an alarm's name, an SNS TopicArn, a header)
can hold a newline, a carriage return, NUL, an ANSI escape or a bidi control that would
forge a second line or hide part of one, so it is passed through `escape` where it is
logged, and both formatters escape each record's message again as a safety net.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
# failover-<c>, monitor-<c>, drill-<c>-<time>, plan-<c>-<hex>: the cluster is in the id.
WORKFLOW_ID = re.compile(
    r"^(?:failover|monitor|drill|plan)-(?P<cluster>[a-z0-9][a-z0-9-]*?)"
    r"(?:-\d{8}T\d{6}Z|-\d{4}-\d\d-\d\dT[\d:]+Z|-(?:primary|standby)-[0-9a-f]{8}|-[0-9a-f]{8})?$"
)


def escape(value: object) -> str:
    r"""`value` as text that stays on one line and shows every character it holds.

    What `repr` escapes in a string (the characters that are not printable: C0 and C1
    controls, DEL, line and paragraph separators, bidi and other format characters, lone
    surrogates, spaces other than ' ') is written as `repr` writes it: `\n`, `\x1b`,
    `\u202e`. Everything else is left as it is, backslashes included, so ordinary text reads
    as sent and escaping twice changes nothing.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
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


class TextFormatter(logging.Formatter):
    """The message on one line, escaped. A traceback, when there is one, follows on lines
    of its own, as the logging module writes it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


class JsonLineFormatter(JsonFormatter):
    """JSON escapes control characters already (and, with `ensure_ascii`, everything that is
    not ASCII); the message is escaped as for text too, so a reader that decodes it (`jq -r`)
    sees the same one line."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        message = log_data.get("message")
        if isinstance(message, str):
            log_data["message"] = escape(message)
        return log_data


def formatter(log_format: LogFormat = "text") -> logging.Formatter:
    if log_format == "json":
        return JsonLineFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=True,
        )
    return TextFormatter("%(message)s")


def configure(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RunContext())
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request's URL at INFO, and a webhook's URL is its secret.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
