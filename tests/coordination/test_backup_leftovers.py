"""Temporary copies of killed backups are removed by the next backup, never
the copy of a backup still running (issue 12, point 8; faults review D9).

Real processes, really SIGKILLed or SIGSTOPped mid-copy, on real files.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import procinfo, tempfiles

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL/SIGSTOP")

# A backup that stops after its first step: prints "copying" (its temporary
# copy then exists), then waits for a line on stdin before going on.
_BACKUP = """
import sys
import sqlite_session_safe as sss
first = True
def progress(remaining, total):
    global first
    if first:
        first = False
        print("copying", flush=True)
        sys.stdin.readline()
with sss.open(sys.argv[1], timeout=60) as db:
    r = db.backup(sys.argv[2], pages=int(sys.argv[3]), progress=progress)
    print("done", r.integrity, r.seq, flush=True)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("leftovers") / "src.sqlite"
    with sss.open(path) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, b TEXT)")
        db.write(lambda tx: tx.executemany("INSERT INTO t(b) VALUES (?)", [("x" * 40,)] * 20_000))
    return path


def temps(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if tempfiles.MARKER in n)


def start_backup(source: Path, dest: Path, pages: int = 4) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _BACKUP, str(source), str(dest), str(pages)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "copying\n":
        proc.kill()
        proc.wait(30)
        pytest.fail(f"backup child said {line!r}")
    return proc


def finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0, out
    return out


def killed_mid_copy(source: Path, dest: Path) -> int:
    proc = start_backup(source, dest)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return proc.pid


_LOOP = """
import sys, sqlite_session_safe as sss
db = sss.open(sys.argv[1], timeout=60)
print("ready", flush=True)
while True:
    db.backup(sys.argv[2], pages=4)
"""


def killed_at_random(source: Path, dest: Path) -> int:
    """R6 of the review: a backup loop killed at a random moment."""
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(source), str(dest)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    threading.Event().wait(random.uniform(0.05, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return proc.pid


def test_killed_backups_leave_temps_that_the_next_backup_removes(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.sqlite"
    for kill in (killed_mid_copy, killed_at_random, killed_mid_copy, killed_at_random, killed_mid_copy):
        pid = kill(source, dest)
        left = temps(tmp_path)
        # the temps of earlier kills were removed by this process's backup
        assert all(f"-{pid}-" in n for n in left), (pid, left)
        if kill is killed_mid_copy:
            assert [n for n in left if not n.endswith("-journal")], left
    # a backup to another name in the same directory removes them too
    other = tmp_path / "other.sqlite"
    pid = killed_mid_copy(source, other)
    assert temps(tmp_path) and all(n.startswith(f"other.sqlite{tempfiles.MARKER}") for n in temps(tmp_path))

    with sss.open(source) as db:
        result = db.backup(dest)
    assert result.integrity == "ok"
    assert temps(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["copy.sqlite"]


def test_temps_of_live_backups_are_never_removed(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.sqlite"
    running = start_backup(source, dest)           # alive, mid-copy
    paused = start_backup(source, dest)            # alive but stopped
    paused.send_signal(signal.SIGSTOP)
    killed_mid_copy(source, dest)                  # dead
    dead_pid_temps = set(temps(tmp_path))
    # and a backup in a thread of this very process, held mid-copy
    gate, started = threading.Event(), threading.Event()
    thread_result: list[object] = []

    def held(remaining: int, total: int) -> None:
        started.set()
        gate.wait(60)

    with sss.open(source) as db:
        worker = threading.Thread(
            target=lambda: thread_result.append(db.backup(dest, pages=4, progress=held)))
        worker.start()
        try:
            assert started.wait(60)
            live = {n for n in temps(tmp_path)
                    if any(f"-{p}-" in n for p in (running.pid, paused.pid, os.getpid()))}
            assert len([n for n in live if not n.endswith("-journal")]) == 3, temps(tmp_path)
            result = db.backup(tmp_path / "another.sqlite")   # a backup: removes dead temps only
            assert result.integrity == "ok"
            after = set(temps(tmp_path))
            assert live <= after, (live, after)              # live ones untouched
            assert after == live                             # the killed one's are gone
            assert dead_pid_temps - live and not (dead_pid_temps - live) & after
        finally:
            gate.set()
            worker.join(60)
    paused.send_signal(signal.SIGCONT)
    for proc in (running, paused):
        assert finish(proc).startswith("done ok")
    assert len(thread_result) == 1 and isinstance(thread_result[0], sss.BackupResult)
    assert temps(tmp_path) == []
    with sss.connect(dest, readonly=True) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (20_000,)


def _name(dest: Path, host: str, pid: int, start: str) -> Path:
    def digest(text: str, size: int) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:size] if text else "0" * size
    return Path(f"{dest}{tempfiles.MARKER}{digest(host, 16)}-{pid}-{digest(start, 12)}-0badcafe")


def test_owner_judged_by_host_pid_and_start_token(tmp_path: Path) -> None:
    """Names as another process would leave them: a reused pid counts as
    gone; another host, an unknown host or a live pid never do."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = procinfo.host_id()
        token = procinfo.process_start_token(sleeper.pid)
        assert host and token
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True, timeout=60)
        dead_pid = int(dead.stdout)
        dest = tmp_path / "x.sqlite"
        cases = {
            _name(dest, host, sleeper.pid, token): True,           # alive: kept
            _name(dest, host, sleeper.pid, token + "0"): False,    # pid reused: removed
            _name(dest, host, sleeper.pid, ""): True,              # unknown token, pid alive: kept
            _name(dest, host, dead_pid, token): False,             # dead: removed
            _name(dest, "other-host", dead_pid, token): True,      # another host: kept
            _name(dest, "", dead_pid, token): True,                # unknown host: kept
        }
        for path in cases:
            path.write_bytes(b"partial copy")
            Path(f"{path}-journal").write_bytes(b"journal")
        removed = tempfiles.remove_dead(str(tmp_path))
        for path, kept in cases.items():
            assert path.exists() == kept, path.name
            assert Path(f"{path}-journal").exists() == kept
        assert len(removed) == 4
    finally:
        sleeper.kill()
        sleeper.wait(30)


def test_missing_directory_names_the_directory(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "no" / "such" / "copy.db"
    with sss.open(source) as db:
        for copy in (db.backup, db.vacuum_into, db.copy_under_lock):
            with pytest.raises(sss.DatabaseDirectoryMissing) as info:
                copy(dest)
            assert str(tmp_path / "no" / "such") in str(info.value)
            assert tempfiles.MARKER not in str(info.value)


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0,
                    reason="needs chattr and root for an immutable destination")
def test_destination_that_cannot_be_replaced(source: Path, tmp_path: Path) -> None:
    """A rename onto the destination refused (on Windows: another program has
    it open; here: an immutable file) is a FileInUseError; nothing is left."""
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"yesterday's copy")
    if subprocess.run(["chattr", "+i", str(dest)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        with sss.open(source) as db, pytest.raises(sss.FileInUseError) as info:
            db.backup(dest)
        assert str(dest) in str(info.value) and "another program" in str(info.value)
        assert isinstance(info.value, PermissionError)
    finally:
        subprocess.run(["chattr", "-i", str(dest)], check=True)
    assert dest.read_bytes() == b"yesterday's copy"
    assert temps(tmp_path) == []
