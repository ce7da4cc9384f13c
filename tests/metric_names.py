"""The metric names the Prometheus rules and the Grafana dashboard query, and the names a
`/metrics` page exports: the drift test checks every name queried is exported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "failover-dashboard.json"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Words of PromQL that look like names: binary operators, modifiers, literals.
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "atan2",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_MATCHERS = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
# A name not preceded by a name character, a digit or a dot (so not the `m` of `5m`, nor the
# `e3` of `1e3`), and whether a call follows it.
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_SAMPLE_NAME = re.compile(r"[A-Za-z_:][\w:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: what is left once strings, label matchers,
    ranges, label lists (by, on, …), Grafana variables, functions and keywords are gone."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    return {
        m.group(1)
        for m in _NAME.finditer(text)
        if m.group(2) is None and m.group(1).lower() not in KEYWORDS
    }


def rules() -> list[dict[str, Any]]:
    """Every rule of rules.yaml, alerting or recording."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, also those inside collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel's targets."""
    return [
        target["expr"]
        for panel in dashboard_panels(board)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def dashboard_variable_metrics(board: dict[str, Any]) -> set[str]:
    """Metrics the templating variables read their values from (`label_values(metric, …)`)."""
    names: set[str] = set()
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        names |= set(re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", text))
    return names


def used_metric_names() -> set[str]:
    """Every metric name the rules and the dashboard query."""
    names = dashboard_variable_metrics(dashboard())
    for expr in [rule["expr"] for rule in rules()] + dashboard_queries(dashboard()):
        names |= promql_metric_names(expr)
    return names


def missing_metric_names(used: Iterable[str], scrapes: Iterable[str]) -> set[str]:
    """The names in `used` that none of the `/metrics` pages export. A histogram's
    `_bucket`, `_sum` and `_count` count as exported with the histogram."""
    samples: set[str] = set()
    histograms: set[str] = set()
    for text in scrapes:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                if kind.strip() == "histogram":
                    histograms.add(name)
            elif line and not line.startswith("#"):
                match = _SAMPLE_NAME.match(line)
                if match:
                    samples.add(match.group())

    def exported(name: str) -> bool:
        return name in samples or any(
            name.endswith(suffix) and name.removesuffix(suffix) in histograms
            for suffix in HISTOGRAM_SUFFIXES
        )

    return {name for name in used if not exported(name)}


def sample_value(page: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` on a `/metrics` page whose labels include
    `labels`; None when there is none."""
    found = []
    for line in page.splitlines():
        match = re.match(rf"{re.escape(name)}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1).split(",") for k, v in labels.items()):
            found.append(float(match.group(2)))
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else None
