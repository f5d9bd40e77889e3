"""Fuzz: mutated and truncated changesets fed to iterate, validate, invert,
concat, change groups, the streaming functions and apply (three policies)
must end in the package's own exceptions (ChangesetError, a clean
ConflictAbort / SchemaMismatch, or an SQLiteError from SQLite) — never a
crash, a hang or a stray Python exception.  The worker runs in a child
process so that a crash is reported as such.  ``test_fuzz_bounded`` runs
20,000 inputs; the stress-marked one 100,000 x SSS_STRESS_SCALE (deselect it
with ``-m 'not stress'``; SSS_STRESS_SCALE=20 is a two-million-input run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Multiplier for the stress size (as in conftest.py).
STRESS_SCALE = float(os.environ.get("SSS_STRESS_SCALE", "1"))

WORKER = Path(__file__).resolve().parents[1] / "_changeset_fuzz.py"


def run_worker(tmp_path: Path, seed: int, count: int, timeout: float) -> str:
    workdir = tmp_path / f"seed{seed}"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, str(WORKER), str(seed), str(count), str(workdir)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("ok "), proc.stdout
    return proc.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_bounded(tmp_path: Path, seed: int) -> None:
    out = run_worker(tmp_path, seed, 10_000, timeout=120)
    # The mutations reach past the header checks: corrupt inputs are caught
    # by SQLite's parser, and some still apply cleanly.
    assert "validate:ChangesetError" in out and "apply-omit:ok" in out


@pytest.mark.stress
def test_fuzz_large(tmp_path: Path) -> None:
    count = int(100_000 * STRESS_SCALE)
    for seed in range(100, 104):
        run_worker(tmp_path, seed, count // 4, timeout=600 * STRESS_SCALE)
