"""Writing a drill's report as Markdown and HTML where people can open it."""

from __future__ import annotations

from pathlib import Path

from temporalio import activity

from failover.client.temporal import state_dir
from failover.models import ReportFiles, WriteReportInput
from failover.report import to_html, to_markdown


class ReportActivities:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory

    @activity.defn(name="write_drill_report")
    async def write_drill_report(self, request: WriteReportInput) -> ReportFiles:
        """`<dir>/<workflow id>.md` and `.html`; written again whole on a retry."""
        directory = Path(request.directory) if request.directory else None
        directory = directory or self.directory or state_dir() / "reports"
        directory.mkdir(parents=True, exist_ok=True)
        report = request.report
        markdown = directory / f"{report.workflow_id}.md"
        page = directory / f"{report.workflow_id}.html"
        markdown.write_text(to_markdown(report), encoding="utf-8")
        page.write_text(to_html(report), encoding="utf-8")
        return ReportFiles(markdown=str(markdown), html=str(page))
