"""How results, steps and drill reports are printed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from rich.table import Table

from failover.cli.common import out

# Results after which traffic is on the run's target side, and those that left it where it
# was. Any other ending (failed, failed after the database switch) leaves it where it was
# only if the run never reached a switching step (the DNS record's or the target group's).
MOVED = ("failed_over", "failed_over_with_warnings")
STAYED = ("not_confirmed", "aborted", "rolled_back", "planned")
SWITCHING_STEPS = ("switch", "register")


class StatusRow(NamedTuple):
    """One cluster's line in `failover status`."""

    cluster: str
    active: str
    phase: str
    result: str
    when: str


def status_row(state: dict[str, Any]) -> StatusRow:
    """The line for one state from `failover_state` (or a {cluster, error} it could not
    read): the side with traffic, what the run is doing, how it ended, and when."""
    cluster = state["cluster"]
    if "error" in state:
        return StatusRow(cluster, "-", "-", f"error: {state['error']}", "-")
    if "status" in state:
        running = state["status"]
        steps = running.get("steps") or []
        return StatusRow(
            cluster,
            _moving(running.get("from_side"), running.get("to_side")),
            running.get("phase") or "-",
            "running",
            _when(steps[0]["started_at"]) if steps else "-",
        )
    if "result" in state:
        result = state["result"]
        outcome = result["result"]
        if outcome in MOVED:
            active = result.get("to_side") or "-"
        elif outcome in STAYED or not _switched(result.get("steps") or []):
            active = result.get("from_side") or "-"
        else:
            active = "unknown"
        return StatusRow(cluster, active, "done", outcome, _when(result["finished_at"]))
    # Closed without a result: failed, terminated, cancelled or timed out.
    ended = (state.get("workflow_status") or "unknown").lower()
    return StatusRow(cluster, "unknown", "done", f"workflow {ended}", "-")


def status_table(states: list[dict[str, Any]]) -> Table:
    """One row per state; on a narrow terminal the side and the result wrap, not the rest.
    `when`: a finished run's end, a running one's start."""
    table = Table(box=None, pad_edge=False)
    table.add_column("cluster", no_wrap=True)
    table.add_column("active")
    table.add_column("phase", no_wrap=True)
    table.add_column("result", overflow="fold")
    table.add_column("when (UTC)", no_wrap=True)
    for state in states:
        table.add_row(*status_row(state))
    return table


def print_status(states: list[dict[str, Any]], *, detail: bool) -> None:
    """The table; with `detail` (one cluster asked for), its run's reason and steps too."""
    out.print(status_table(states))
    for state in states if detail else []:
        data = state.get("result") or state.get("status")
        if data is not None:
            out.print(f"{state['workflow_id']} run {state['run_id']}")
            out.print(f"  reason: {data.get('reason')}")
            print_steps(data.get("steps", []))


def _switched(steps: list[dict[str, Any]]) -> bool:
    return any(step["name"] in SWITCHING_STEPS for step in steps)


def _moving(from_side: str | None, to_side: str | None) -> str:
    if from_side is None or to_side is None:
        return "-"
    return f"{from_side} → {to_side}"


def _when(timestamp: str) -> str:
    """An ISO timestamp from the JSON, as UTC to the second."""
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


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
