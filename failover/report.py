"""A drill's report as Markdown and as one self-contained HTML file with an SVG timeline.

Pure functions of the `DrillReport` that the drill workflow returns: the CLI renders a
finished drill's result with them, and the drill's last activity writes both files.
"""

from __future__ import annotations

import html
from datetime import datetime

from failover.models import DrillReport, StepTiming

OUTCOME_COLOURS = {
    "ok": "#2e7d32",
    "warning": "#f9a825",
    "refused": "#6d6d6d",
    "failed": "#c62828",
}
VERDICT_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "skipped": "#6d6d6d", "aborted": "#ef6c00"}


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _offset(at: datetime, origin: datetime) -> float:
    return (at - origin).total_seconds()


def headline(report: DrillReport) -> str:
    rto = _seconds(report.rto_seconds)
    predicted = report.rto_predicted
    beside = f", predicted {predicted.drill_seconds:.1f} s" if predicted is not None else ""
    return (
        f"Drill {report.verdict.upper()} for {report.cluster}: RTO {rto} "
        f"(target {report.rto_target_seconds:g} s{beside}), storefront "
        f"{report.storefront_failed_requests} failed of {report.storefront_total_requests}"
    )


def prediction_facts(report: DrillReport) -> list[str]:
    """The RTO predicted on the real system beside the one measured: the drill measures from
    its switch, so detection is left out of the comparison and named apart."""
    predicted = report.rto_predicted
    if predicted is None:
        return []
    detection = predicted.total_seconds - predicted.drill_seconds
    return [
        f"predicted on the real system, from config: {predicted.drill_seconds:.1f} s for the "
        f"same span (measured {_seconds(report.rto_seconds)}), {predicted.total_seconds:.1f} s "
        f"from a fault, with {detection:.1f} s to detect it and hand over",
        predicted.headline(),
    ]


def _step_rows(steps: list[StepTiming], origin: datetime) -> list[str]:
    rows = []
    for step in steps:
        detail = (step.detail or "").replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| {step.name} | +{_offset(step.started_at, origin):.2f} s | {step.seconds:.2f} s "
            f"| {step.outcome} | {detail} |"
        )
    return rows


def facts(report: DrillReport) -> list[str]:
    """The report's summary lines, plain text (Markdown list items, HTML list items)."""
    if report.storefront_failed_requests:
        recovered = f"last failure {_seconds(report.storefront_recovery_seconds)} after the switch"
    else:
        recovered = "none failed"
    lines = [
        f"workflow: {report.workflow_id}",
        f"started: {report.started_at.isoformat()}, finished: {report.finished_at.isoformat()}",
        f"verdict: {report.verdict}: {report.reason}",
        f"RTO (drill switch started → switch verified): {_seconds(report.rto_seconds)}, "
        f"target {report.rto_target_seconds:g} s",
        f"storefront: {report.storefront_failed_requests} failed of "
        f"{report.storefront_total_requests} requests ({recovered})",
    ]
    if report.confirmation_skipped:
        lines.append(
            "the failure confirmation was skipped: a drill switches a healthy primary on purpose"
        )
    return lines + prediction_facts(report)


def _prediction_rows(report: DrillReport) -> list[tuple[str, str, str]]:
    """(term, seconds, note) of the prediction; terms outside a drill's span say so."""
    predicted = report.rto_predicted
    if predicted is None:
        return []
    return [
        (
            term.name,
            f"{term.seconds:.1f} s",
            term.note if term.in_drill else f"{term.note} (not in a drill)",
        )
        for term in predicted.terms
    ]


def to_markdown(report: DrillReport) -> str:
    origin = report.started_at
    lines = [f"# {headline(report)}", "", *(f"- {fact}" for fact in facts(report))]
    lines += ["", "## Phases", "", "| phase | start | duration | outcome | detail |"]
    lines += ["| --- | --- | --- | --- | --- |", *_step_rows(report.phases, origin)]
    for title, run in (("Failover", report.failover), ("Failback", report.failback)):
        if run is None:
            continue
        lines += [
            "",
            f"## {title}: {run.result.value} ({run.from_side} → {run.to_side})",
            "",
            "| step | start | duration | outcome | detail |",
            "| --- | --- | --- | --- | --- |",
            *_step_rows(run.steps, origin),
        ]
    rows = _prediction_rows(report)
    if rows:
        lines += ["", "## Predicted RTO", "", "| term | seconds | from |", "| --- | --- | --- |"]
        for name, seconds, note in rows:
            cell = note.replace("|", "\\|")
            lines.append(f"| {name} | {seconds} | {cell} |")
    return "\n".join(lines) + "\n"


def timeline_svg(report: DrillReport, *, width: int = 960) -> str:
    """Phases on the first lane; the failover's and failback's steps below them."""
    origin = report.started_at
    total = max(_offset(report.finished_at, origin), 0.001)
    label_width, lane_height, top = 110, 34, 30
    scale = (width - label_width - 20) / total
    lanes: list[tuple[str, list[StepTiming]]] = [("drill", report.phases)]
    if report.failover is not None:
        lanes.append(("failover", report.failover.steps))
    if report.failback is not None:
        lanes.append(("failback", report.failback.steps))
    height = top + lane_height * len(lanes) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="drill timeline" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{label_width}" y="16" font-size="12">0 s</text>',
        f'<text x="{width - 20}" y="16" font-size="12" text-anchor="end">{total:.1f} s</text>',
    ]
    for index, (lane, steps) in enumerate(lanes):
        y = top + index * lane_height
        parts.append(f'<text x="4" y="{y + 20}" font-weight="bold">{html.escape(lane)}</text>')
        for step in steps:
            x = label_width + _offset(step.started_at, origin) * scale
            bar = max(step.seconds * scale, 2.0)
            colour = OUTCOME_COLOURS.get(step.outcome, "#1565c0")
            title = html.escape(f"{step.name}: {step.seconds:.2f} s, {step.outcome}")
            parts.append(
                f'<rect class="phase" x="{x:.1f}" y="{y + 4}" width="{bar:.1f}" '
                f'height="{lane_height - 10}" fill="{colour}" rx="3"><title>{title}</title></rect>'
            )
            if bar > 40:
                name = html.escape(step.name)
                parts.append(f'<text x="{x + 4:.1f}" y="{y + 21}" fill="#fff">{name}</text>')
    axis_y = top + lane_height * len(lanes) + 8
    parts.append(
        f'<line x1="{label_width}" y1="{axis_y}" x2="{width - 20}" y2="{axis_y}" stroke="#999"/>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(report: DrillReport) -> str:
    colour = VERDICT_COLOURS[report.verdict]
    items = "".join(f"<li>{html.escape(fact)}</li>" for fact in facts(report))
    tables = []
    origin = report.started_at
    for title, steps in (
        ("Phases", report.phases),
        ("Failover", report.failover.steps if report.failover else []),
        ("Failback", report.failback.steps if report.failback else []),
    ):
        if not steps:
            continue
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td>+{_offset(s.started_at, origin):.2f} s</td>"
            f"<td>{s.seconds:.2f} s</td><td>{html.escape(s.outcome)}</td>"
            f"<td>{html.escape(s.detail or '')}</td></tr>"
            for s in steps
        )
        tables.append(
            f"<h2>{title}</h2><table><tr><th>step</th><th>start</th><th>duration</th>"
            f"<th>outcome</th><th>detail</th></tr>{rows}</table>"
        )
    predicted = _prediction_rows(report)
    if predicted:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{seconds}</td><td>{html.escape(note)}</td></tr>"
            for name, seconds, note in predicted
        )
        tables.append(
            f"<h2>Predicted RTO</h2><table><tr><th>term</th><th>seconds</th><th>from</th></tr>"
            f"{rows}</table>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(headline(report))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.verdict {{ display: inline-block; padding: .2em .6em; color: #fff; background: {colour};
  border-radius: 4px; font-weight: bold; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: 13px; }}
</style></head>
<body>
<h1><span class="verdict">{report.verdict.upper()}</span> {html.escape(report.cluster)} drill</h1>
<ul>{items}</ul>
<h2>Timeline</h2>
{timeline_svg(report)}
{"".join(tables)}
</body></html>
"""
