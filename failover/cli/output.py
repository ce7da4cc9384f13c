"""How results, steps and drill reports are printed."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from failover.cli.common import out


def print_state(state: dict[str, Any]) -> None:
    if "error" in state:
        out.print(f"{state['cluster']}: {state['error']}")
        return
    data = state.get("result") or state.get("status") or {}
    headline = data.get("result") or f"running, phase {data.get('phase')}"
    direction = f"{data.get('from_side')} → {data.get('to_side')}"
    out.print(f"{state['cluster']}: {headline} ({direction}) {state['workflow_id']}", style="bold")
    out.print(f"  reason: {data.get('reason')}")
    print_steps(data.get("steps", []))


def print_steps(steps: list[dict[str, Any]], rto: float | None = None) -> None:
    table = Table("step", "seconds", "outcome", "detail", box=None, pad_edge=False)
    for step in steps:
        detail = step.get("detail") or ""
        table.add_row(step["name"], f"{step['seconds']:.3f}", step["outcome"], detail)
    out.print(table)
    if rto is not None:
        out.print(f"RTO (fault → verified switch): {rto:.3f} s", style="bold")


def print_report(report: Any) -> None:
    from failover.report import headline

    out.print(headline(report), style="bold")
    out.print(f"  {report.verdict}: {report.reason}")
    print_steps([p.model_dump() for p in report.phases])
    for title, run in (("failover", report.failover), ("failback", report.failback)):
        if run is not None:
            out.print(f"{title}: {run.result.value} ({run.from_side} → {run.to_side})")
            print_steps([s.model_dump() for s in run.steps])
    for run in report.plans:
        if run.plan is not None:
            for line in run.plan.lines():
                out.print(f"  {line}")
    if report.files is not None:
        out.print(f"report: {report.files.markdown}, {report.files.html}")
