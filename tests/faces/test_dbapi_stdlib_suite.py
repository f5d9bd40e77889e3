"""CPython's own ``sqlite3`` test suite, run against ``sqlite_session_safe.dbapi``
(issue 14): the module is a drop-in for the stdlib's.

The tests are the interpreter's own (``Lib/test/test_sqlite3``, or
``Lib/sqlite3/test`` on 3.10), run by ``tests/_stdlib_sqlite3_runner.py`` in a
subprocess twice: with the stdlib module (the baseline) and with ours in its
place.  Ours must pass at least 98% of what the stdlib passes, and every test
that fails only with ours must be one of :data:`DIFFERENCES`, the known
differences the README lists with their reasons.

The default suite runs the current interpreter.  ``SSS_STDLIB_SUITE_PYTHONS``
(paths joined with ``os.pathsep``) adds other interpreters that have the
package installed: ``.ci/stdlib-sqlite3-pythons`` builds it for every Python
3.10-3.13 on the machine and runs this file with them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _source import source_path

RUNNER = Path(__file__).resolve().parents[1] / "_stdlib_sqlite3_runner.py"
NO_TESTS = 3  # the runner's exit status for a Python without its test package
MIN_RATIO = 0.98

#: Tests of the stdlib's suite that fail with our module, by id (file,
#: class, method as the runner reports them), and why.  The README's
#: "Differences from the stdlib" lists the same.
DIFFERENCES: dict[str, str] = {
    "test_dbapi.ConnectionTests.test_connection_reinit": (
        "calling __init__ again on an open connection closes it first, finalizing its "
        "statements: an old cursor cannot go on reading the old database"
    ),
    "test_hooks.TraceCallbackTests.test_trace_too_much_expanded_sql": (
        "when SQLite cannot expand a traced statement's parameters the callback gets the "
        "statement as written, but no DataError is reported to sys.unraisablehook"
    ),
    # Python 3.10 only (its test files are named without "test_")
    "transactions.TransactionTests.test_rollback_cursor_consistency": (
        "3.10 only: rollback() does not reset the connection's cursors (3.11 stopped doing it too)"
    ),
    "regression.RegressionTests.test_cursor_registration": (
        "3.10 only: rollback() does not reset the connection's cursors (3.11 stopped doing it too)"
    ),
    "regression.RecursiveUseOfCursors.test_recursive_cursor_close": (
        "3.10 only: converters run when a row is fetched, not for the first row inside "
        "execute() (3.10 fetched it ahead), so the recursive use is refused at fetch time"
    ),
    "regression.RecursiveUseOfCursors.test_recursive_cursor_init": (
        "3.10 only: as test_recursive_cursor_close"
    ),
}


def interpreters() -> list[str]:
    extra = os.environ.get("SSS_STDLIB_SUITE_PYTHONS", "")
    return [sys.executable, *(p for p in extra.split(os.pathsep) if p)]


def run_suite(python: str, module: str | None = None) -> dict[str, Any]:
    """The runner's report for ``python`` (the stdlib, or ``module`` in its place)."""
    cmd = [python, "-X", "faulthandler", str(RUNNER)] + (["--module", module] if module else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == NO_TESTS:
        pytest.skip(f"{python}: {json.loads(lines[-1])['error']}")
    assert proc.returncode == 0 and lines, (
        f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    )
    return json.loads(lines[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("python", interpreters())
def test_cpython_sqlite3_suite_passes_with_our_module(python: str) -> None:
    stdlib = run_suite(python)
    ours = run_suite(python, "sqlite_session_safe.dbapi")
    only_ours = sorted(set(ours["failed"]) - set(stdlib["failed"]))
    print(
        f"Python {ours['python']}: test_sqlite3 passes {ours['passed']} with "
        f"sqlite_session_safe.dbapi, {stdlib['passed']} with the stdlib "
        f"({ours['passed'] / stdlib['passed']:.1%}); failing with ours only: {only_ours}"
    )
    unexplained = {test: ours["details"][test] for test in only_ours if test not in DIFFERENCES}
    assert not unexplained, "failures not in DIFFERENCES (fix them, or list them with a reason)"
    assert ours["passed"] >= MIN_RATIO * stdlib["passed"]


def test_readme_lists_every_difference() -> None:
    text = source_path("README.md").read_text(encoding="utf-8")
    missing = [test for test in DIFFERENCES if re.escape(test.rsplit(".", 1)[-1]) not in text]
    assert not missing, f"README.md does not list: {missing}"
