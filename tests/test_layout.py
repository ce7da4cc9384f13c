"""The runtime stands on its own: it never imports the sandbox or the tests, and a plain
`pip install .` (no extras) starts the worker and the CLI.

Every test environment installs the extras, so without these checks a runtime import of a
sandbox-only library (moto, dnslib) or of the sandbox itself would pass every other test
and fail in a container or a Lambda package at import.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ["failover", "workflows", "activities"]
RUNTIME_FILES = [
    ROOT / "worker.py",
    *sorted(path for package in RUNTIME for path in (ROOT / package).rglob("*.py")),
]
FORBIDDEN = ("sandbox", "tests")
NOT_SHIPPED = (".git", ".venv", ".state", "build", "*.egg-info", "__pycache__", "*_cache", "tests")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (inside functions too), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check below can fail: a lazy import is an import too."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from sandbox.stack import Sandbox\n    import tests.x\n")
    assert imported_modules(module) == [(2, "sandbox.stack"), (3, "tests.x")]


def test_the_runtime_never_imports_the_sandbox_or_the_tests() -> None:
    assert len(RUNTIME_FILES) > 20, "the runtime's files were not found"
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in RUNTIME_FILES
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert offending == []


IMPORT_EVERY_MODULE = """
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
names = ["worker"] + sorted(
    ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    for package in ("failover", "workflows", "activities")
    for p in (root / package).rglob("*.py")
)
for name in names:
    importlib.import_module(name)
print(len(names), "modules imported")
"""


@pytest.mark.slow
def test_a_plain_install_starts_the_worker_and_the_cli(tmp_path: Path) -> None:
    """A fresh virtualenv, `pip install .` without extras, then the two entry points."""
    # A copy of the source: an in-tree build would leave build/ behind, whose stale files a
    # later install could pick up.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # Run from elsewhere, so only what was installed can be imported.
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=outside,
            timeout=120,
        )

    for absent in ("moto", "dnslib", "pytest"):
        probe = run(python, "-c", f"import {absent}")
        assert probe.returncode != 0, f"{absent} is installed without extras"
    site = run(
        python,
        "-c",
        "import failover, pathlib; print(pathlib.Path(failover.__file__).parent.parent)",
    )
    assert site.returncode == 0, site.stderr
    imported = run(python, "-c", IMPORT_EVERY_MODULE, site.stdout.strip())
    assert imported.returncode == 0, imported.stderr[-3000:]
    worker_help = run(python, "-m", "worker", "--help")
    assert worker_help.returncode == 0, worker_help.stderr[-3000:]
    assert "--config" in worker_help.stdout
    cli_help = run(env_dir / "bin" / "failover", "--help")
    assert cli_help.returncode == 0, cli_help.stderr[-3000:]
    assert "failover" in cli_help.stdout.lower()
    # The sandbox's commands come with its extras only (the search_failover.cli entry point).
    assert run(env_dir / "bin" / "failover", "sandbox", "--help").returncode == 2
