"""The `failover` help as an operator reads it at 80 columns, the status table, and shell
completion: every page rendered the way the CLI renders it (Typer's CliRunner)."""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.cells import cell_len
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from failover.cli import add_plugin_commands, app
from failover.cli.output import StatusRow, status_row, status_table

COLUMNS = 80
# A break is early when the next word would have fitted on the line. Click wraps help to
# the terminal's width less 2; the same 2 columns cover a separator of two spaces (Click
# puts two before "[default: …]"), so a break counted early here is early in any case.
WRAP_WIDTH = COLUMNS - 2
MARGIN = 2
HEADING = re.compile(r"^[A-Z][A-Za-z ]*:$")
# A definition list's entry: its term (option, argument or command), then its text.
ENTRY = re.compile(r"^  (?P<term>\S+(?: \S+)*)(?: {2,}(?P<text>\S.*))?$")


def full_app() -> typer.Typer:
    """The app as `failover` runs it: with the sandbox's plugin commands."""
    if not any(group.name == "sandbox" for group in app.registered_groups):
        add_plugin_commands(app)
    return app


def command_paths() -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group below `failover`, and `failover` itself."""

    def walk(path: tuple[str, ...], command: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk((*path, name), sub)

    yield from walk((), get_command(full_app()))


PATHS = [path for path, _ in command_paths()]


def render_help(path: tuple[str, ...]) -> str:
    done = CliRunner().invoke(
        full_app(), [*path, "--help"], env={"COLUMNS": str(COLUMNS)}, prog_name="failover"
    )
    assert done.exit_code == 0, done.output
    return done.output


def command_at(path: tuple[str, ...]) -> Any:
    return dict(command_paths())[path]


# --- reading a rendered page -------------------------------------------------------------


def description(page: str) -> list[list[str]]:
    """The help text under the usage line, as paragraphs of rendered lines."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Usage:"))
    paragraphs: list[list[str]] = []
    current: list[str] = []
    past_usage = False
    for line in lines[start + 1 :]:
        if HEADING.match(line):
            break
        if not line.strip():
            past_usage = True
            if current:
                paragraphs.append(current)
                current = []
        elif past_usage:
            current.append(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def sections(page: str) -> dict[str, list[str]]:
    """Each section ("Options", "Commands", …) and its lines."""
    found: dict[str, list[str]] = {}
    heading: str | None = None
    for line in page.splitlines():
        if HEADING.match(line):
            heading = line[:-1]
            found[heading] = []
        elif heading is not None and line.strip():
            found[heading].append(line)
    return found


def entries(section: list[str]) -> list[tuple[str, list[str]]]:
    """A definition list's entries: each term, and the rendered lines of its text (the
    first one whole, with the term in front, when the text starts on the term's line)."""
    found: list[tuple[str, list[str]]] = []
    for line in section:
        match = ENTRY.match(line)
        if match is not None:
            found.append((match["term"], [line] if match["text"] else []))
        else:
            assert found and line.startswith("   "), f"not part of an entry: {line!r}"
            found[-1][1].append(line)
    return found


def joined(lines: list[str]) -> str:
    """Rendered lines as the one line of text they wrap (a break after a hyphen was inside
    a word)."""
    text = ""
    for line in (line.strip() for line in lines):
        gap = "" if not text or re.search(r"\w-$", text) else " "
        text += gap + line
    return " ".join(text.split())


def early_breaks(lines: list[str]) -> list[str]:
    """Line breaks a greedy wrap would not have made: the next line's first word fitted.
    That is a hard line break of the source text surviving into the help."""
    early = []
    for line, following in itertools.pairwise(lines):
        word = following.split()[0]
        gap = 0 if re.search(r"\w-$", line) else 1
        if cell_len(line.rstrip()) + gap + cell_len(word) + MARGIN <= WRAP_WIDTH:
            early.append(f"{line.strip()!r} / {following.strip()!r}")
    return early


def paragraphs_of(help_text: str) -> list[str]:
    return [" ".join(p.split()) for p in inspect.cleandoc(help_text).split("\n\n") if p.strip()]


# --- the checks themselves ---------------------------------------------------------------


def test_a_hard_line_break_from_a_docstring_counts_as_an_early_break() -> None:
    # As `failover --help` listed accept-stale before: the docstring's own line break.
    listed = [
        "  accept-stale  Accept the standby's data as it is for the failover of CLUSTER",
        "                now running (before",
        "                its preflight); the result records who accepted what.",
    ]
    assert early_breaks(listed) == [
        "'now running (before' / 'its preflight); the result records who accepted what.'"
    ]
    assert early_breaks(listed[:2]) == []


def test_a_break_inside_a_hyphenated_word_is_joined_without_a_space() -> None:
    assert joined(["  not re-", "  seeded); needs --reason"]) == "not re-seeded); needs --reason"
    assert joined(["  a - b", "  c"]) == "a - b c"


# --- every page ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "failover")
def test_every_help_page_fits_80_columns_and_reads_as_its_docstring(
    path: tuple[str, ...],
) -> None:
    page = render_help(path)
    too_wide = [line for line in page.splitlines() if cell_len(line) > COLUMNS]
    assert not too_wide, f"wider than {COLUMNS} columns: {too_wide}"

    rendered = description(page)
    # Paragraphs stay paragraphs, each one the docstring's own words, re-wrapped.
    assert [joined(lines) for lines in rendered] == paragraphs_of(command_at(path).help or "")
    for lines in rendered:
        assert not early_breaks(lines), f"broken mid-line: {early_breaks(lines)}"
        assert all(line.startswith("  ") for line in lines)

    for name, lines in sections(page).items():
        for term, text in entries(lines):
            assert not early_breaks(text), f"{name} {term}: broken mid-line: {early_breaks(text)}"


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "failover")
def test_flags_read_as_flags_and_values_show_what_they_take(path: tuple[str, ...]) -> None:
    options = dict(entries(sections(render_help(path))["Options"]))
    for option in command_at(path).params:
        if not option.opts[0].startswith("-"):
            continue
        term = next(t for t in options if option.opts[0] in t.replace(",", " ").split())
        # What follows the names: the value's placeholder (`<str>`, or a metavar).
        value = [w for w in term.replace(",", " ").split() if not w.startswith("-") and w != "/"]
        if option.is_flag:
            assert not value, f"a flag shown with a value: {term}"
        else:
            assert value, f"no value shown for {term}"
    assert "--help" in options


@pytest.mark.parametrize(
    "path",
    [path for path, command in command_paths() if getattr(command, "commands", None)],
    ids=lambda path: " ".join(path) or "failover",
)
def test_command_lists_give_each_command_its_whole_first_sentence(
    path: tuple[str, ...],
) -> None:
    listed = dict(entries(sections(render_help(path))["Commands"]))
    group = command_at(path)
    assert list(listed) == [name for name, c in group.commands.items() if not c.hidden]
    for name, lines in listed.items():
        summary = joined(lines)[len(name) :].strip()
        first = paragraphs_of(group.commands[name].help or "")[0]
        assert first.startswith(summary), f"{name}: {summary!r} is not from {first!r}"
        assert summary == first or summary.endswith("."), f"{name}: cut short: {summary!r}"
        assert not summary.endswith(("e.g.", "i.e.", "...")), f"{name}: cut short: {summary!r}"


def test_the_top_level_help_says_what_the_tool_is() -> None:
    paragraphs = [joined(lines) for lines in description(render_help(()))]
    assert "Elasticsearch/OpenSearch" in paragraphs[0]
    assert "standby" in paragraphs[0] and "DR Region" in paragraphs[0]
    assert "TEMPORAL_ADDRESS" in paragraphs[1] and "Exit codes" in paragraphs[1]
    assert "shared parts" not in render_help(())


# --- the status table ----------------------------------------------------------------------


def step(name: str, started_at: str = "2025-03-04T10:20:00+00:00") -> dict[str, Any]:
    return {"name": name, "started_at": started_at, "seconds": 0.1, "outcome": "ok"}


def finished(cluster: str, outcome: str, steps: list[str]) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "workflow_id": f"failover-{cluster}",
        "run_id": "run-1",
        "workflow_status": "COMPLETED",
        "result": {
            "result": outcome,
            "from_side": "primary",
            "to_side": "standby",
            "reason": "primary down",
            "finished_at": "2025-03-04T11:15:42.5+01:00",
            "steps": [step(name) for name in steps],
        },
    }


RUNNING = {
    "cluster": "blog-search",
    "workflow_id": "failover-blog-search",
    "run_id": "run-2",
    "workflow_status": "RUNNING",
    "status": {
        "phase": "awaiting_approval",
        "from_side": "primary",
        "to_side": "standby",
        "reason": "manual trigger",
        "steps": [step("snapshot", "2025-03-04T10:20:00Z"), step("confirm")],
    },
}


@pytest.mark.parametrize(
    ("state", "row"),
    [
        (
            finished("catalog-search", "failed_over", ["snapshot", "switch", "verify"]),
            StatusRow("catalog-search", "standby", "done", "failed_over", "2025-03-04 10:15:42"),
        ),
        (
            finished("catalog-search", "rolled_back", ["switch", "verify", "rollback"]),
            StatusRow("catalog-search", "primary", "done", "rolled_back", "2025-03-04 10:15:42"),
        ),
        # Failed before any switching step: traffic never left the primary.
        (
            finished("catalog-search", "failed", ["snapshot", "preflight"]),
            StatusRow("catalog-search", "primary", "done", "failed", "2025-03-04 10:15:42"),
        ),
        # Failed after the NLB's targets were registered: where traffic is, nobody knows.
        (
            finished("catalog-search", "failed", ["snapshot", "register"]),
            StatusRow("catalog-search", "unknown", "done", "failed", "2025-03-04 10:15:42"),
        ),
        (
            RUNNING,
            StatusRow(
                "blog-search",
                "primary → standby",
                "awaiting_approval",
                "running",
                "2025-03-04 10:20:00",
            ),
        ),
        (
            {"cluster": "b2b-search", "error": "workflow not found"},
            StatusRow("b2b-search", "-", "-", "error: workflow not found", "-"),
        ),
        (
            {
                "cluster": "old",
                "workflow_id": "failover-old",
                "run_id": "r",
                "workflow_status": "TERMINATED",
            },
            StatusRow("old", "unknown", "done", "workflow terminated", "-"),
        ),
    ],
)
def test_a_status_row_says_where_traffic_is_and_how_the_run_ended(
    state: dict[str, Any], row: StatusRow
) -> None:
    assert status_row(state) == row


def rendered_table(states: list[dict[str, Any]]) -> list[str]:
    console = Console(width=COLUMNS, record=True, color_system=None)
    console.print(status_table(states))
    return console.export_text().rstrip("\n").splitlines()


def test_the_status_table_has_one_line_per_cluster_within_80_columns() -> None:
    preflight = RUNNING | {"status": RUNNING["status"] | {"phase": "preflight"}}
    lines = rendered_table([finished("catalog-search", "failed_over", ["switch"]), preflight])
    assert [line.split() for line in lines] == [
        ["cluster", "active", "phase", "result", "when", "(UTC)"],
        ["catalog-search", "standby", "done", "failed_over", "2025-03-04", "10:15:42"],
        [
            "blog-search",
            "primary",
            "→",
            "standby",
            "preflight",
            "running",
            "2025-03-04",
            "10:20:00",
        ],
    ]
    assert max(cell_len(line.rstrip()) for line in lines) <= COLUMNS


def test_long_values_wrap_inside_their_column_rather_than_past_80_columns() -> None:
    lines = rendered_table([finished("catalog-search", "failed_over_with_warnings", []), RUNNING])
    assert max(cell_len(line.rstrip()) for line in lines) <= COLUMNS
    starts = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    assert [lines[i].split()[0] for i in starts] == ["cluster", "catalog-search", "blog-search"]

    def column(header: str, following: str, row: int) -> str:
        left, right = lines[0].index(header), lines[0].index(following)
        end = starts[row + 1] if row + 1 < len(starts) else len(lines)
        return "".join(line[left:right].strip() for line in lines[starts[row] : end])

    assert column("result", "when", 1) == "failed_over_with_warnings"
    assert column("phase", "result", 2) == "awaiting_approval"
    assert column("active", "phase", 2) == "primary →standby"


# --- shell completion --------------------------------------------------------------------


def test_the_help_offers_shell_completion() -> None:
    options = dict(entries(sections(render_help(()))["Options"]))
    assert {"--install-completion", "--show-completion"} <= set(options)


@pytest.mark.parametrize(
    ("shell", "hook"),
    [
        ("bash", "complete -o default -F _failover_completion failover"),
        ("zsh", "compdef _failover_completion failover"),
        ("fish", "complete --command failover"),
    ],
)
def test_show_completion_prints_the_script_for_a_shell(
    monkeypatch: pytest.MonkeyPatch, shell: str, hook: str
) -> None:
    # Typer's switch for naming the shell rather than detecting it; read as the app builds.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    done = CliRunner().invoke(full_app(), ["--show-completion", shell], prog_name="failover")
    assert done.exit_code == 0, done.output
    assert hook in done.output
    assert f"_FAILOVER_COMPLETE=complete_{shell}" in done.output


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("failover dr", {"drill"}),
        ("failover drill ", {"run", "schedule", "list", "report", "abort"}),
        ("failover sandbox ", {"up", "fault", "data"}),
        ("failover status --", {"--json", "--help"}),
    ],
)
def test_completion_answers_with_the_commands_and_options(words: str, expected: set[str]) -> None:
    env = {
        "_FAILOVER_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    done = CliRunner().invoke(full_app(), [], env=env, prog_name="failover")
    assert done.exit_code == 0, done.output
    assert expected <= set(done.output.split()), done.output
