"""The Windows-only branches that can run here, on real files and processes.

* The lock without directory descriptors (Windows has no ``O_DIRECTORY`` nor
  ``dir_fd``): owner.json heartbeats written by path, takeover noticed,
  writers in two processes losing no update.
* Renames Windows refuses while another process has a file open: the lock's
  release, the breaking of a stale lock and a backup's final rename retry (there: a sharing violation;
  here: an immutable file or directory, cleared while they wait).
* Text output on a code page, and EINVAL on a closed pipe: test_cli_newcomer.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _lock_workers import dead_pid, plant_lock

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import tempfiles
from sqlite_session_safe.coordination.lock import breaking
from sqlite_session_safe.coordination.lock import holding as lock_module

# The lock and owner.json code paths Windows takes: no directory descriptors.
_NO_DIR_FD = """
from sqlite_session_safe.coordination import owner
from sqlite_session_safe.coordination.lock import holding as lock
lock._HAS_DIR_FD = False
lock._LISTDIR_FD = False
owner._HAS_DIR_FD = False
"""

_HEARTBEAT = _NO_DIR_FD + """
import json, os, sys, time
import sqlite_session_safe as sss
db = sys.argv[1]
held = sss.DirectoryLock(db, "write", timeout=30, heartbeat_interval=0.05, stale_timeout=5)
held.acquire()
assert held._dir_fd is None  # really the path-based branch
owner_json = os.path.join(db + ".sss-lock", "owner.json")
first = json.load(open(owner_json))["heartbeat"]
time.sleep(0.5)
beats = json.load(open(owner_json))["heartbeat"]
held.check()
print("beats", beats - first, flush=True)
sys.stdin.readline()  # meanwhile another process takes the lock over
try:
    held.check()
    print("not noticed", flush=True)
except sss.LockCompromised:
    print("compromised", flush=True)
"""

_REPLACED = _NO_DIR_FD + """
import os, shutil, sys
import sqlite_session_safe as sss
db = sys.argv[1]
held = sss.DirectoryLock(db, "write", timeout=30, heartbeat_interval=5, stale_timeout=60)
held.acquire()
# the lock directory is swapped for another one holding the very same owner.json
shutil.copytree(db + ".sss-lock", db + ".sss-lock.copy")
os.rename(db + ".sss-lock", db + ".sss-lock.old")
os.rename(db + ".sss-lock.copy", db + ".sss-lock")
try:
    held.check()
    print("not noticed", flush=True)
except sss.LockCompromised as e:
    print("compromised:", e, flush=True)
"""

_WRITER = _NO_DIR_FD + """
import sys
import sqlite_session_safe as sss
with sss.open(sys.argv[1], timeout=60, linger=0) as db:
    for _ in range(int(sys.argv[2])):
        db.write(lambda tx: tx.execute("UPDATE c SET n = n + 1 WHERE id = 1"))
"""


def test_lock_without_directory_descriptors(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    holder = subprocess.Popen([sys.executable, "-c", _HEARTBEAT, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        beats = holder.stdout.readline().split()
        assert beats[:1] == ["beats"] and int(beats[1]) >= 3, beats  # heartbeats written by path
        # a breaker renames the lock away and another client takes it
        os.rename(f"{db}.sss-lock", f"{db}.sss-lock.gone")
        other = sss.DirectoryLock(db, "write", timeout=30)
        other.acquire()
        try:
            out, err = holder.communicate("\n", timeout=60)
        finally:
            other.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0, err
    assert out.splitlines() == ["compromised"], out
    assert sss.inspect_lock(db) is None


def test_replaced_lock_directory_is_noticed_without_descriptors(tmp_path: Path) -> None:
    """Without a directory descriptor the directory's file id still tells
    the holder's own directory from a copy put in its place."""
    proc = subprocess.run([sys.executable, "-c", _REPLACED, str(tmp_path / "x.db")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("compromised:") and "replaced by another one" in proc.stdout, proc.stdout


def test_writers_without_directory_descriptors_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with sss.open(db) as d:
        d.migrate("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES (1, 0)")
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(n)], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with sss.open(db) as d, d.read() as r:
        assert r.execute("SELECT n FROM c").fetchone() == (2 * n,)
        assert r.seq == 1 + 2 * n


def _immutable(path: Path) -> bool:
    if shutil.which("chattr") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _mutable_later(path: Path, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: subprocess.run(["chattr", "-i", str(path)], check=True))
    timer.start()
    return timer


@pytest.mark.skipif(sys.platform == "win32", reason="simulates Windows' refusal with chattr")
def test_release_retries_a_refused_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What release does on Windows while a waiter has owner.json open."""
    monkeypatch.setattr(lock_module, "SHARING_RETRY", 10.0)
    db = tmp_path / "r.db"
    held = sss.DirectoryLock(db, "write", timeout=30)
    held.acquire()
    lock_dir = tmp_path / "r.db.sss-lock"
    if not _immutable(lock_dir):
        held.release()
        pytest.skip("needs chattr, root and a file system with the immutable flag")
    timer = _mutable_later(lock_dir, 0.3)
    try:
        held.release()  # the rename fails until the flag is cleared, then succeeds
    finally:
        timer.join()
        subprocess.run(["chattr", "-i", str(lock_dir)], capture_output=True)
    assert not lock_dir.exists() and sss.inspect_lock(db) is None


@pytest.mark.skipif(sys.platform == "win32", reason="simulates Windows' refusal with chattr")
def test_breaking_a_stale_lock_retries_a_refused_rename(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a writer does on Windows when the stale lock it breaks has a file
    open in it (another waiter reading owner.json): it breaks it once the
    rename is allowed, instead of failing with PermissionError."""
    monkeypatch.setattr(breaking, "SHARING_RETRY", 10.0)
    db = tmp_path / "s.db"
    crashed = plant_lock(str(db), pid=dead_pid())  # a dead writer on this host: stale at once
    lock_dir = tmp_path / "s.db.sss-lock"
    if not _immutable(lock_dir):
        pytest.skip("needs chattr, root and a file system with the immutable flag")
    timer = _mutable_later(lock_dir, 0.3)
    taker = sss.DirectoryLock(db, "write", timeout=30)
    try:
        taker.acquire()  # the rename fails until the flag is cleared, then succeeds
    finally:
        timer.join()
        subprocess.run(["chattr", "-i", str(lock_dir)], capture_output=True)
    try:
        info = sss.inspect_lock(db)
        assert info is not None and info.owner is not None
        assert info.owner.pid == os.getpid() and info.owner.owner_id != crashed.owner_id
    finally:
        taker.release()
    assert sss.inspect_lock(db) is None


@pytest.mark.skipif(sys.platform == "win32", reason="simulates Windows' refusal with chattr")
def test_backup_retries_a_refused_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a backup does on Windows while a virus scanner has the old copy open."""
    monkeypatch.setattr(tempfiles, "REPLACE_RETRY_SECONDS", 10.0)
    src = tmp_path / "src.db"
    with sss.open(src) as d:
        d.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        d.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"yesterday")
    if not _immutable(dest):
        pytest.skip("needs chattr, root and a file system with the immutable flag")
    timer = _mutable_later(dest, 0.3)
    try:
        with sss.open(src) as d:
            result = d.backup(dest)
    finally:
        timer.join()
        subprocess.run(["chattr", "-i", str(dest)], capture_output=True)
    assert result.integrity == "ok" and result.seq == 2
    assert [n for n in os.listdir(tmp_path) if tempfiles.MARKER in n] == []
    with sss.connect(dest, readonly=True) as con:
        assert con.execute("SELECT id FROM t").fetchall() == [(1,)]


@pytest.mark.skipif(sys.platform != "win32", reason="Windows' volume information (GetVolumeInformationW)")
def test_filesystem_type_on_windows(tmp_path: Path) -> None:
    """``info`` and ``capabilities()`` name the file system there too (the
    wheels workflow's Windows jobs run this: a local NTFS or ReFS drive)."""
    from sqlite_session_safe.coordination.modes import filesystem_type, is_network_filesystem

    assert filesystem_type(tmp_path) in {"NTFS", "ReFS"}
    assert filesystem_type(tmp_path / "not-yet" / "app.db") == filesystem_type(tmp_path)
    assert is_network_filesystem(tmp_path) is False
    with sss.open(tmp_path / "app.db") as db:
        assert db.capabilities()["filesystem_type"] == filesystem_type(tmp_path)


def test_owner_json_is_read_back_as_written(tmp_path: Path) -> None:
    """The path-based owner.json writer produces what the protocol reads."""
    from sqlite_session_safe.coordination import owner

    d = tmp_path / "lockdir"
    d.mkdir()
    rec = owner.OwnerRecord.create(mode="write", phase="active", target="x.db",
                                   heartbeat_interval=1.0, stale_timeout=15.0)
    saved = owner._HAS_DIR_FD
    owner._HAS_DIR_FD = False
    try:
        owner.write_owner_file(str(d), rec)
        owner.write_owner_file(str(d), rec.next_heartbeat(None), sync_dir=False)
    finally:
        owner._HAS_DIR_FD = saved
    again = owner.parse_owner(owner.read_owner_bytes(str(d)))
    assert again.owner_id == rec.owner_id and again.heartbeat == rec.heartbeat + 1
    assert sorted(os.listdir(d)) == ["owner.json"]  # no temp file left
    assert json.loads((d / "owner.json").read_bytes())["owner_id"] == rec.owner_id


@pytest.mark.parametrize("path", [r"\\server\share\x.db", r"\\?\UNC\server\share\x.db",
                                  r"\\.\UNC\server\share\x.db"])
def test_unc_paths_are_remote(path: str) -> None:
    from sqlite_session_safe.coordination import modes

    assert modes._windows_remote(path) is True


def test_extended_length_local_path_is_not_taken_for_remote(tmp_path: Path) -> None:
    """realpath can give \\\\?\\C:\\... for a long local path: wal mode must
    not be refused there as if it were a network share."""
    from sqlite_session_safe.coordination import modes

    if sys.platform == "win32":
        assert modes._windows_remote("\\\\?\\" + str(tmp_path)) is False
    else:  # it goes on to ask Windows for the drive's type (there is no ctypes.windll here)
        with pytest.raises(AttributeError):
            modes._windows_remote(r"\\?\C:\data\x.db")
