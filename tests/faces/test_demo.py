"""The README's first quick-start command runs the demo: it must tell the
whole story and end in "ok" (it checks its own results and exits non-zero
when one is wrong: a lost update, a replica that differs from its source),
explain its terms, and run where stdout is not UTF-8 (Windows' code pages)."""

from __future__ import annotations

import os
import subprocess
import sys


def demo(**env: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", "sqlite_session_safe"],
                          capture_output=True, timeout=180, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr == b"", proc.stderr[-2000:]  # no warning, no traceback (also from the writers)
    return proc


def test_demo_runs_the_whole_story() -> None:
    out = demo().stdout.decode("utf-8")
    for title in ("SQLite build", "Sessions: capture, inverse, replay",
                  "Two processes writing through sss.open", "The audit log",
                  "A replica brought up to date", "Undo"):
        assert f"== {title} ==" in out
    assert "replica equals source: True" in out
    assert "replicating again applies 0 entries" in out
    assert "the replica follows the undo (1 entry): equals source: True" in out
    assert out.rstrip().endswith("ok")


def test_demo_explains_what_it_prints() -> None:
    out = demo().stdout.decode("utf-8")
    opening = out.split("== Round trip")[0].splitlines()
    assert all(len(line) <= 80 for line in opening), opening
    assert "seq is its position in that log" in out
    assert "The epoch is a fencing counter" in out
    assert "'=' marks a column it left unchanged" in out
    assert "cursor (the last seq it applied)" in out
    # every statement of the migration, whole
    assert "CREATE TABLE deposit(id INTEGER PRIMARY KEY, who TEXT NOT NULL, amount INTEGER NOT NULL);" in out


def test_demo_on_a_cp1252_stdout() -> None:
    """Windows writes redirected output in the ANSI code page."""
    out = demo(PYTHONIOENCODING="cp1252", PYTHONUTF8="0").stdout
    assert b"second note \\U0001f600" in out and out.rstrip().endswith(b"ok")


def test_demo_into_a_reader_that_stops_early() -> None:
    """``python -m sqlite_session_safe | head -1``: the demo stops quietly
    with 141 (as a command killed by SIGPIPE), no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "sqlite_session_safe"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away
        err = proc.stderr.read()
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert err == b"", err[-2000:]
    assert code == 141
