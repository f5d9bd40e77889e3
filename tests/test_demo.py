"""The README's first quick-start command runs the demo: it must tell the
whole story and end in "ok" (it checks its own results and exits non-zero
when one is wrong: a lost update, a replica that differs from its source)."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_the_whole_story() -> None:
    proc = subprocess.run([sys.executable, "-m", "sqlite_session_safe"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    for title in ("SQLite build", "Sessions: capture, inverse, replay",
                  "Two processes writing through sss.open", "The audit log",
                  "A replica brought up to date", "Undo"):
        assert f"== {title} ==" in out
    assert "replica equals source: True" in out
    assert "replicating again applies 0 entries" in out
    assert "the replica follows the undo (1 entry): equals source: True" in out
    assert out.rstrip().endswith("ok")
