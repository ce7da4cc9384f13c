"""Log lines from outside text: one record is one line, and every character shows.

`logs.escape` is applied where request text is logged; the text and JSON formatters escape
each message again, as a safety net for a call that forgot.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from failover import logs

# Each of these, raw in a log file, forges a line, moves the cursor or reorders what a
# reader sees; each must come out as the escape `repr` writes.
HOSTILE = {
    "newline": ("a\nalarm accepted: forged", r"a\nalarm accepted: forged"),
    "carriage return": ("a\ralarm accepted: forged", r"a\ralarm accepted: forged"),
    "crlf": ("a\r\nforged", r"a\r\nforged"),
    "NUL": ("a\x00b", r"a\x00b"),
    "ANSI escape": ("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
    "bidi override": ("arn:\u202etxt.exe", r"arn:\u202etxt.exe"),
    "bidi isolates": ("\u2066a\u2069\u2067b\u2068", r"\u2066a\u2069\u2067b\u2068"),
    "bidi embeddings and marks": (
        "\u202a\u202b\u202c\u202d\u200e\u200f",
        r"\u202a\u202b\u202c\u202d\u200e\u200f",
    ),
    "C1 next line": ("a\x85b", r"a\x85b"),
    "C1 CSI": ("\x9b31m", r"\x9b31m"),
    "line separator": ("a\u2028b\u2029c", r"a\u2028b\u2029c"),
    "tab and DEL": ("a\tb\x7f", r"a\tb\x7f"),
    "zero width and BOM": ("a\u200bb\ufeff", r"a\u200bb\ufeff"),
}
ORDINARY = [
    "arn:aws:sns:us-east-1:123456789012:search-alarms",
    "catalog-search-red",
    "bad signature: does not verify",
    r"127\.0\.0\.1:[0-9]+ and C:\temp\new",  # backslashes are not doubled
    "naïve café — 搜索 ✓",  # printable text outside ASCII is kept
    "",
]


@pytest.mark.parametrize("raw, escaped", HOSTILE.values(), ids=HOSTILE.keys())
def test_escape_writes_what_repr_writes(raw: str, escaped: str) -> None:
    assert logs.escape(raw) == escaped
    assert logs.escape(raw).isprintable()
    assert logs.escape(logs.escape(raw)) == escaped  # escaping twice changes nothing


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert logs.escape(text) == text


def test_escape_takes_any_object() -> None:
    assert logs.escape(ValueError("x\ny")) == r"x\ny"
    assert logs.escape({"c": "x\ny"}) == r"{'c': 'x\ny'}"  # repr escaped it already
    assert logs.escape(None) == "None"


@pytest.fixture
def captured() -> Iterator[dict[str, io.StringIO]]:
    """A logger writing through both formatters `logs.configure` uses."""
    logger = logging.getLogger("tests.log_escaping")
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = []
    for log_format, stream in streams.items():
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(log_format))  # type: ignore[arg-type]
        handler.addFilter(logs.RunContext())
        handlers.append(handler)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield streams
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True


@pytest.mark.parametrize("raw, escaped", HOSTILE.values(), ids=HOSTILE.keys())
def test_formatters_escape_a_message_nobody_escaped(
    captured: dict[str, io.StringIO], raw: str, escaped: str
) -> None:
    """The safety net: an argument or an f-string that reached a log call raw."""
    logger = logging.getLogger("tests.log_escaping")
    logger.warning("alarm rejected: reason=topic not allowed: %s", raw)
    logger.warning(f"unescaped f-string {raw}")
    text = captured["text"].getvalue()
    assert text.splitlines() == [
        f"alarm rejected: reason=topic not allowed: {escaped}",
        f"unescaped f-string {escaped}",
    ]
    assert text.count("\n") == 2 and text.replace("\n", "").isprintable()
    lines = captured["json"].getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 3
    for line in lines[:-1]:
        assert line.isascii() and line.isprintable()  # ensure_ascii: \uXXXX for the rest
    messages = [json.loads(line)["message"] for line in lines[:-1]]
    assert messages == text.splitlines()  # what `jq -r .message` shows is the same line


def test_escaped_arguments_are_not_escaped_again(captured: dict[str, io.StringIO]) -> None:
    logger = logging.getLogger("tests.log_escaping")
    logger.warning("reason=%s", logs.escape("a\nb\\c"))
    assert captured["text"].getvalue() == "reason=a\\nb\\c\n"
    assert json.loads(captured["json"].getvalue())["message"] == "reason=a\\nb\\c"


def test_a_traceback_keeps_its_lines(captured: dict[str, io.StringIO]) -> None:
    """The line structure the logging module means: the message, then the traceback."""
    logger = logging.getLogger("tests.log_escaping")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed for %s", "x\ny")
    text = captured["text"].getvalue().splitlines()
    assert text[0] == r"failed for x\ny"
    assert text[1] == "Traceback (most recent call last):"
    assert text[-1] == "RuntimeError: boom"
    [line] = captured["json"].getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == r"failed for x\ny"
    assert record["exc_info"].endswith("RuntimeError: boom")


def test_json_lines_keep_the_run_fields(captured: dict[str, io.StringIO]) -> None:
    logger = logging.getLogger("tests.log_escaping")
    logger.info("step done", extra={"temporal_activity": {"workflow_id": "failover-catalog"}})
    record = json.loads(captured["json"].getvalue())
    assert record["message"] == "step done"
    assert record["workflow_id"] == "failover-catalog" and record["cluster"] == "catalog"
    assert {"time", "level", "logger"} <= record.keys()


def test_configure_installs_the_escaping_formatters() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for log_format, kind in (("text", logs.TextFormatter), ("json", logs.JsonLineFormatter)):
            logs.configure(log_format)  # type: ignore[arg-type]
            [handler] = root.handlers
            assert isinstance(handler.formatter, kind)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_a_lone_surrogate_is_escaped_too() -> None:
    """Formatted directly, not logged: pytest's own log capture keeps the raw record, and
    pytest-xdist cannot send text that is not valid UTF-8 to its controller."""
    raw = "a" + chr(0xD800) + "b"
    assert logs.escape(raw) == r"a\ud800b"
    record = logging.LogRecord(
        "tests.log_escaping", logging.WARNING, __file__, 1, "alarm rejected: %s", (raw,), None
    )
    assert logs.formatter("text").format(record) == r"alarm rejected: a\ud800b"
    line = logs.formatter("json").format(record)
    assert line.isascii() and json.loads(line)["message"] == r"alarm rejected: a\ud800b"
