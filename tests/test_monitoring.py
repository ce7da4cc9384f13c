"""The Prometheus rules, their promtool unit tests, the Grafana dashboard, and the monitors'
metrics behind them.

The names the rules and the dashboard query are checked against what real processes export
in tests/test_processes.py (the worker after a failover, and the alarm receiver), with the
helpers of tests/metric_names.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.common import (
    MetricAttributes,
    MetricCounter,
    MetricGauge,
    MetricGaugeFloat,
    MetricHistogram,
    MetricHistogramFloat,
    MetricHistogramTimedelta,
    MetricMeter,
)
from temporalio.testing import ActivityEnvironment

from activities.watch import ClusterWatchActivities
from failover import metrics
from failover.config import parse_config
from failover.models import ClusterWatch, WatchInput
from sandbox.net import free_port
from sandbox.search_sim import FaultMode, NodeFault, SimulatorFleet
from sandbox.stack import PRIMARY_SIM, STANDBY_SIM, route53_switch, sandbox_config
from sandbox.waiting import wait_for
from tests.metric_names import (
    DASHBOARD,
    HISTOGRAM_SUFFIXES,
    ROOT,
    RULES,
    RULES_TESTS,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    missing_metric_names,
    promql_metric_names,
    rules,
    sample_value,
    used_metric_names,
)

README = ROOT / "README.md"
RUNBOOK = "https://github.com/example/search-failover/blob/main/README.md#"
OUR_METRICS = {
    value
    for name, value in vars(metrics).items()
    if name.isupper() and isinstance(value, str) and not name.startswith("_")
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.fail("promtool is not installed: run `make system-packages` (Debian's prometheus)")
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=RULES.parent
    )


# --- the rules -----------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", RULES_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not."""
    cases = [
        case
        for test in yaml.safe_load(RULES_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it is quiet"


def github_slug(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    to hyphens, and -1, -2, … for repeats."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN").replace(
        " ", "-"
    )
    count = seen.get(text, 0)
    seen[text] = count + 1
    return text if count == 0 else f"{text}-{count}"


def readme_anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} (.+)", line)):
            # Inline code keeps its text in the anchor; links keep their text.
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).replace("`", "")
            anchors.add(github_slug(text, seen))
    return anchors


def test_github_slugs() -> None:
    markdown = (
        "# A\n## Two commands\n```sh\n# not a heading\n```\n## Alarms: CloudWatch (via SNS)\n"
    )
    markdown += "### `x_y` and z\n## Two commands\n"
    assert readme_anchors(markdown) == {
        "a",
        "two-commands",
        "alarms-cloudwatch-via-sns",
        "x_y-and-z",
        "two-commands-1",
    }


def test_every_alert_has_a_summary_and_a_runbook_in_the_readme() -> None:
    anchors = readme_anchors(README.read_text())
    links = [
        (rule["alert"], rule.get("annotations", {}).get("runbook_url", "")) for rule in rules()
    ]
    links += [(f"dashboard link {link['title']}", link["url"]) for link in dashboard()["links"]]
    for rule in rules():
        assert rule.get("annotations", {}).get("summary"), f"{rule['alert']}: no summary"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
    for what, url in links:
        assert url.startswith(RUNBOOK), f"{what}: runbook {url!r} is not {RUNBOOK}<anchor>"
        anchor = url.removeprefix(RUNBOOK)
        assert anchor in anchors, f"{what}: README.md has no heading with the anchor #{anchor}"


# --- the dashboard -------------------------------------------------------------------------


def test_dashboard_panels_have_a_datasource_and_targets() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cluster"]["type"] == "query"
    assert variables["cluster"]["datasource"]["uid"] == "${datasource}"
    panels = [p for p in dashboard_panels(board) if p["type"] != "row"]
    assert len(panels) >= 6
    ids = [p["id"] for p in dashboard_panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}"
    # The cluster row repeats for each selected cluster.
    assert any(p["type"] == "row" and p.get("repeat") == "cluster" for p in board["panels"])


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables replaced by what Grafana sends)."""
    grafana = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "6h", "$cluster": "c"}
    queries = dashboard_queries(dashboard())
    recorded = []
    for n, expr in enumerate(queries):
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        recorded.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_covers_health_latency_failovers_and_alarms() -> None:
    queries = " ".join(dashboard_queries(dashboard()))
    for name in (
        metrics.MONITOR_SIDE_UP,
        f"{metrics.MONITOR_PROBE_SECONDS}_bucket",
        metrics.FAILOVER_RESULTS,
        f"{metrics.STEP_SECONDS}_sum",
        metrics.ALARMS,
    ):
        assert name in queries
    assert "histogram_quantile(0.5," in queries and "histogram_quantile(0.99," in queries
    json.loads(DASHBOARD.read_text())


# --- the names -----------------------------------------------------------------------------


def test_metric_names_are_found_in_promql() -> None:
    assert promql_metric_names(
        'sum by (cluster, le) (rate(monitor_probe_seconds_bucket{cluster="$cluster",'
        'side=~"a|b"}[$__rate_interval])) / on (cluster) group_left (x) up offset 15m'
    ) == {"monitor_probe_seconds_bucket", "up"}
    assert promql_metric_names(
        "histogram_quantile(0.99, x_bucket) > 1e3 and max_over_time(y[1h:5m]) unless z > bool inf"
    ) == {"x_bucket", "y", "z"}
    assert promql_metric_names('label_replace(a, "dst", "$1", "src", "(.*)") or sum(b) by (le)')
    assert promql_metric_names('count without (vantage) (c{v="or"})') == {"c"}


def test_the_exported_names_count_histogram_parts() -> None:
    page = (
        "# HELP h seconds\n# TYPE h histogram\n"
        'h_bucket{le="1"} 1\nh_sum 0.5\nh_count 1\n'
        '# TYPE c counter\nc{cluster="a"} 3\n'
    )
    assert missing_metric_names({"h_bucket", "h_count", "c", "d", "c_count"}, [page]) == {
        "d",
        "c_count",
    }


def test_the_rules_and_dashboard_use_only_our_metrics() -> None:
    """Every name queried is one of failover/metrics.py's (a histogram by its parts)."""
    used = used_metric_names()
    assert {metrics.MONITOR_ROUNDS, metrics.FAILOVER_RESULTS, metrics.ALARMS} <= used
    unknown = {
        name
        for name in used
        if name not in OUR_METRICS
        and not any(
            name == f"{ours}{suffix}" for ours in OUR_METRICS for suffix in HISTOGRAM_SUFFIXES
        )
    }
    assert not unknown, f"not in failover/metrics.py: {sorted(unknown)}"


# --- the monitors' instruments -------------------------------------------------------------


class CountingMeter(MetricMeter):
    """A real meter that notes every instrument made through it."""

    def __init__(self, inner: MetricMeter, created: list[str] | None = None) -> None:
        self.inner = inner
        self.created = [] if created is None else created

    def create_counter(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricCounter:
        self.created.append(name)
        return self.inner.create_counter(name, description, unit)

    def create_histogram(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricHistogram:
        self.created.append(name)
        return self.inner.create_histogram(name, description, unit)

    def create_histogram_float(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricHistogramFloat:
        self.created.append(name)
        return self.inner.create_histogram_float(name, description, unit)

    def create_histogram_timedelta(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricHistogramTimedelta:
        self.created.append(name)
        return self.inner.create_histogram_timedelta(name, description, unit)

    def create_gauge(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricGauge:
        self.created.append(name)
        return self.inner.create_gauge(name, description, unit)

    def create_gauge_float(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricGaugeFloat:
        self.created.append(name)
        return self.inner.create_gauge_float(name, description, unit)

    def with_additional_attributes(self, additional_attributes: MetricAttributes) -> MetricMeter:
        return CountingMeter(
            self.inner.with_additional_attributes(additional_attributes), self.created
        )


async def watch(env: ActivityEnvironment, request: WatchInput) -> ClusterWatch:
    return await env.run(ClusterWatchActivities().watch_cluster, request)


async def test_a_watch_makes_its_instruments_once_and_counts_every_round(
    fleet: SimulatorFleet,
) -> None:
    """Rounds by verdict, each side's usability and the probe latency, per vantage point;
    the instruments are made when a watch starts, never per round."""
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics.prometheus_runtime(address)
    meter = CountingMeter(runtime.metric_meter)
    env = ActivityEnvironment()
    env.metric_meter = meter
    raw = sandbox_config(
        aws_endpoint="http://127.0.0.1:1",
        switch=route53_switch("Z0METRICS"),
        primary_nodes=fleet.clusters[PRIMARY_SIM].node_urls,
        standby_nodes=fleet.clusters[STANDBY_SIM].node_urls,
        probe_interval=0.05,
        magento=False,
    )
    raw["clusters"][0]["name"] = "metrics-search"
    cluster = parse_config(raw).clusters[0]
    vantage = "probe-metrics"
    healthy = ClusterWatch(vantage=vantage)
    # Nothing changes: the watch probes until its deadline.
    first = await watch(
        env, WatchInput(cluster=cluster, vantage=vantage, last=healthy, max_seconds=0.6)
    )
    assert first.states() == ("healthy", "healthy") and first.rounds >= 5
    fleet.set_fault(STANDBY_SIM, None, NodeFault(FaultMode.DOWN))
    try:
        await fleet.clusters[STANDBY_SIM].settle()
        # The standby's first failing round is a change (suspect): the watch returns.
        second = await watch(
            env, WatchInput(cluster=cluster, vantage=vantage, last=first, max_seconds=5)
        )
    finally:
        fleet.set_fault(STANDBY_SIM, None, NodeFault(FaultMode.HEALTHY))
        await fleet.clusters[STANDBY_SIM].settle()
    assert second.standby.state == "suspect" and second.rounds == first.rounds + 1

    made = [metrics.MONITOR_ROUNDS, metrics.MONITOR_SIDE_UP, metrics.MONITOR_PROBE_SECONDS]
    assert sorted(meter.created) == sorted(made * 2), "instruments made other than per watch"
    labels = {"cluster": "metrics-search", "vantage": vantage}
    page = ""

    async def exported() -> bool:
        nonlocal page
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"http://{address}/metrics")).text
        return sample_value(page, metrics.MONITOR_ROUNDS, side="standby", verdict="failing") == 1

    await wait_for(exported, what="the watch's metrics on /metrics")
    rounds = metrics.MONITOR_ROUNDS
    assert sample_value(page, rounds, **labels, side="primary", verdict="healthy") == second.rounds
    assert sample_value(page, rounds, **labels, side="standby", verdict="healthy") == first.rounds
    assert sample_value(page, rounds, **labels, side="standby", verdict="failing") == 1
    assert sample_value(page, rounds, **labels, side="primary", verdict="failing") is None
    assert sample_value(page, metrics.MONITOR_SIDE_UP, **labels, side="primary") == 1
    assert sample_value(page, metrics.MONITOR_SIDE_UP, **labels, side="standby") == 0
    latency = f"{metrics.MONITOR_PROBE_SECONDS}_count"
    assert sample_value(page, latency, **labels, side="standby") == second.rounds
    # The buckets fit a LAN's milliseconds, not the SDK's 50 ms and up.
    first_bucket = sample_value(
        page, f"{metrics.MONITOR_PROBE_SECONDS}_bucket", **labels, side="primary", le="0.001"
    )
    assert first_bucket is not None
    slowest = sample_value(
        page, f"{metrics.MONITOR_PROBE_SECONDS}_bucket", **labels, side="primary", le="+Inf"
    )
    assert slowest == second.rounds
