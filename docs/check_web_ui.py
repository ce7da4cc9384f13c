"""Follow, filter, approve and abort a failover in the Temporal Web UI, in headless Chromium.

    apt-get install -y chromium                      # Debian's Chromium
    .venv/bin/pip install -e '.[ui-check]'           # Playwright (drives Debian's Chromium)
    .venv/bin/python docs/check_web_ui.py [--screenshots docs]

It starts the sandbox (its own dev server and Web UI; no monitors, so nothing but this
script starts a failover), kills every node of the primary and starts a failover of a
cluster with `require_approval`. Then, as an operator does in the Web UI:

1. The workflow list, filtered by the query in its URL
   (`FailoverCluster = "…" AND FailoverPhase = "awaiting_approval"`), with the columns
   FailoverPhase, FailoverTrigger and FailoverSummary added (Run ID and End removed) through
   *Configure Columns*:
   the row must show the run's summary and its phase (screenshot `ui-workflow-list.png`).
2. The run's page, *More Actions → Send an Update → approve* with an identity: the run
   must fail over, record who approved, and the record must point at the standby
   (screenshot of the filled dialog: `ui-send-update.png`).
3. A failback, the same fault again, and *Send an Update → abort*: the run must end
   aborted by that identity with the record back on, and left on, the primary.

Exit 0 when every check holds, 1 naming the check that failed, 2 when Chromium or
Playwright is missing. UI 2.54 quirk, seen here: with the focus in the Data editor, the
first click on Submit only leaves the editor; the dialog submits on the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chromium import FLAGS, chromium_path

from failover.client.operations import start_failback, start_or_attach_failover
from failover.config import ClusterConfig, parse_config
from failover.models import FailoverResult, FailoverStatus, Outcome
from failover.visibility import PHASE, SUMMARY, TRIGGER
from sandbox.search_sim import FaultMode, NodeFault
from sandbox.stack import PRIMARY_SIM, Sandbox
from sandbox.waiting import wait_for

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # checked in main(), with the install command
    async_playwright = None  # type: ignore[assignment]

VIEWPORT = {"width": 2200, "height": 640}
COLUMNS = (PHASE.name, TRIGGER.name, SUMMARY.name)
ALARM = "CloudWatch alarm es-catalog-red"
DEADLINE_S = 60.0
UI_TIMEOUT_MS = 15_000


class CheckFailed(Exception):
    """One of the checks did not hold; the message says which and what was seen."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def approving(sandbox: Sandbox) -> ClusterConfig:
    assert sandbox.config is not None
    raw = sandbox.config.model_dump(mode="json")
    raw["clusters"][0] |= {"require_approval": True, "approval_timeout_seconds": 900}
    return parse_config(raw).clusters[0]


async def failover_awaiting_approval(sandbox: Sandbox, cluster: ClusterConfig) -> Any:
    """The primary down, and a failover from an alarm waiting for an operator."""
    assert sandbox.fleet is not None and sandbox.client is not None
    sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.DOWN))
    await sandbox.fleet.clusters[PRIMARY_SIM].settle()
    handle = await start_or_attach_failover(
        sandbox.client, cluster, task_queue=cluster_queue(sandbox), reason=ALARM, trigger="alarm"
    )

    async def awaiting() -> bool:
        status = await handle.query("status", result_type=FailoverStatus)
        return status.phase == "awaiting_approval"

    await wait_for(awaiting, what="phase awaiting_approval", timeout_s=DEADLINE_S)
    return handle


def cluster_queue(sandbox: Sandbox) -> str:
    assert sandbox.config is not None
    return sandbox.config.task_queue


async def list_page_shows_the_summary(
    page: Page, ui_url: str, cluster: ClusterConfig, run_id: str, expected_summary: str
) -> None:
    query = f'FailoverCluster = "{cluster.name}" AND FailoverPhase = "awaiting_approval"'
    await page.goto(f"{ui_url}/namespaces/default/workflows?query={quote(query)}")
    await page.get_by_role("button", name="Configure Columns").click()
    for column in COLUMNS:
        await page.get_by_role("button", name=f"Add {column} column").click()
    for column in ("Run ID", "End"):  # room for the summary on one screen
        await page.get_by_role("button", name=f"Remove {column} column").click()
    close = page.get_by_test_id("drawer-close-button")
    await close.click()
    await close.wait_for(state="hidden")
    row = page.locator("tbody tr", has=page.locator(f'a[href*="{run_id}"]'))
    # Visibility is eventually consistent: the list may need a refresh to see the run.
    for _ in range(int(DEADLINE_S)):
        if await row.count():
            break
        await page.wait_for_timeout(1000)
        await page.get_by_role("button", name="Refresh").click()
    check(await row.count() == 1, f"the filtered list shows the run: {query}")
    headers = [h.strip() for h in await page.locator("thead th").all_inner_texts()]
    cells = [c.strip() for c in await row.first.locator("td").all_inner_texts()]
    by_header = dict(zip(headers, cells, strict=False))
    print(f"list row: {json.dumps({k: v for k, v in by_header.items() if k})}")
    check(
        by_header.get(SUMMARY.name) == expected_summary,
        f"the summary column shows {expected_summary!r}: saw {by_header.get(SUMMARY.name)!r}",
    )
    check(by_header.get(PHASE.name) == "awaiting_approval", "the phase column")
    check(by_header.get(TRIGGER.name) == "alarm", "the trigger column")


async def send_update(
    page: Page, workflow_url: str, name: str, payload: dict[str, str], shot: Path | None
) -> None:
    """More Actions → Send an Update, as an operator fills it in."""
    await page.goto(workflow_url)
    await page.get_by_role("button", name="More Actions").first.click()
    await page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.locator("dialog[open]")
    await dialog.get_by_test_id("update-select-button").click()
    await dialog.get_by_role("option", name=name, exact=True).click()
    await dialog.locator(".cm-content").click()
    await page.keyboard.insert_text(json.dumps(payload))
    await page.keyboard.press("Tab")  # leave the editor: see the quirk in the docstring
    if shot is not None:
        await page.screenshot(path=str(shot))
    async with page.expect_response(lambda r: f"/update/{name}" in r.url) as answer:
        await dialog.get_by_test_id("confirm-modal-button").click()
    response = await answer.value
    check(response.ok, f"the Web UI's {name} update answered {response.status}")
    await dialog.wait_for(state="detached", timeout=UI_TIMEOUT_MS)


async def result_of(handle: Any) -> FailoverResult:
    async with asyncio.timeout(DEADLINE_S):
        return await handle.result()


async def run_checks(browser: Browser, sandbox: Sandbox, screenshots: Path | None) -> None:
    assert sandbox.info is not None and sandbox.client is not None
    endpoint = sandbox.info.temporal
    assert endpoint.ui_url is not None
    cluster = approving(sandbox)
    page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    page.set_default_timeout(UI_TIMEOUT_MS)

    # 1. Follow and filter.
    handle = await failover_awaiting_approval(sandbox, cluster)
    description = await handle.describe()
    summary = await description.static_summary()
    expected = f"{cluster.name}: primary ⇄ standby (alarm: {ALARM})"
    check(summary == expected, f"the run's static summary is {expected!r}: {summary!r}")
    assert summary is not None
    await list_page_shows_the_summary(page, endpoint.ui_url, cluster, description.run_id, summary)
    if screenshots is not None:
        await page.screenshot(path=str(screenshots / "ui-workflow-list.png"))
    print(f"list page: the summary column shows {summary!r}")

    # 2. Approve from the UI.
    url = endpoint.workflow_url(handle.id, description.run_id)
    assert url is not None
    approver = "ui-operator@example.com"
    shot = screenshots / "ui-send-update.png" if screenshots is not None else None
    await send_update(page, url, "approve", {"identity": approver, "reason": "standby ok"}, shot)
    result = await result_of(handle)
    check(result.result == Outcome.FAILED_OVER, f"approved run failed over: {result.reason}")
    check(result.approved_by == approver, f"approved_by is {approver}: {result.approved_by}")
    record = await asyncio.to_thread(sandbox.read_record_values)
    check(record == [cluster.switch.standby_value], f"record on the standby: {record}")
    print(f"approve from the UI: {result.result.value}, approved_by {result.approved_by}")

    # 3. Back to the primary; the same fault; abort from the UI.
    assert sandbox.fleet is not None
    sandbox.fleet.set_fault(PRIMARY_SIM, None, NodeFault(FaultMode.HEALTHY))
    await sandbox.fleet.clusters[PRIMARY_SIM].settle()
    back = await start_failback(
        sandbox.client, cluster, task_queue=cluster_queue(sandbox), reason="check_web_ui"
    )
    check((await result_of(back)).result == Outcome.FAILED_OVER, "the failback")
    handle = await failover_awaiting_approval(sandbox, cluster)
    run_id = (await handle.describe()).run_id
    url = endpoint.workflow_url(handle.id, run_id)
    assert url is not None
    aborter = "ui-abort@example.com"
    await send_update(page, url, "abort", {"identity": aborter, "reason": "false alarm"}, None)
    result = await result_of(handle)
    check(result.result == Outcome.ABORTED, f"aborted run: {result.result.value}")
    check(f"by {aborter}: false alarm" in result.reason, f"abort reason: {result.reason}")
    record = await asyncio.to_thread(sandbox.read_record_values)
    check(record == [cluster.switch.primary_value], f"record left on the primary: {record}")
    print(f"abort from the UI: {result.result.value} ({result.reason})")


async def main_async(screenshots: Path | None) -> None:
    chromium = chromium_path()
    if async_playwright is None:
        print("Playwright is not installed: pip install -e '.[ui-check]'", file=sys.stderr)
        raise SystemExit(2)
    directory = Path(tempfile.mkdtemp(prefix="failover-ui-check-"))
    sandbox = Sandbox(directory, monitors=False)
    await sandbox.start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=FLAGS, headless=True
            )
            try:
                await run_checks(browser, sandbox, screenshots)
            finally:
                await browser.close()
    finally:
        await sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, help="folder for the screenshots")
    args = parser.parse_args()
    code = 0
    try:
        asyncio.run(main_async(args.screenshots))
        print("web UI check: ok")
    except CheckFailed as failed:
        print(f"web UI check failed: {failed}", file=sys.stderr)
        code = 1
    except SystemExit as leaving:
        code = int(leaving.code or 0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # temporalio can crash at interpreter exit (sdk-python issue 300)


if __name__ == "__main__":
    main()
