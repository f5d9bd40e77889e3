"""Bad input for the coordinated database: a read-only directory, a full
disk, a file that is not a database, tables without a primary key.  Each
must give a clear exception, never a crash, and lose nothing.

(``fn`` raising is in test_database.py.)  Read-only directories and full
disks use real mounts when running as root (root ignores directory
permissions); without permission to mount, those tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _database_workers import open_db, replay, user_tables

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.modes import filesystem_type, is_network_filesystem

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses Linux mounts")


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (root only)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {run.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _seed(path: str) -> None:
    with open_db(path) as db:
        db.migrate("CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB)")
        db.write(lambda tx: tx.execute("INSERT INTO kv VALUES ('a', x'01')"), label="seed")


def _state(path: str) -> tuple:
    with sss.connect(path) as con:
        return (con.execute("PRAGMA integrity_check").fetchall(),
                con.execute("SELECT k, v FROM kv ORDER BY k").fetchall(),
                con.execute("SELECT seq, kind, label FROM _sss_log ORDER BY seq").fetchall())


@contextlib.contextmanager
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a seeded database, then made read-only: by
    permissions for a normal user, by a read-only remount for root."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        _seed(str(d / "app.db"))
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)
        return
    with tmpfs(tmp_path / "ro", "4m") as d:
        _seed(str(d / "app.db"))
        run = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True, text=True)
        if run.returncode != 0:
            pytest.skip(f"remounting read-only is not permitted here: {run.stderr.strip()}")
        yield d


def test_read_only_directory(tmp_path):
    with read_only_directory(tmp_path) as d:
        path = str(d / "app.db")
        before = _state(path)
        with open_db(path) as db:
            with db.read() as r:  # reads still work
                assert r.fetchall("SELECT k FROM kv") == [("a",)]
            assert [e.label for e in db.log()] == [None, "seed"]
            with pytest.raises(sss.LockError, match="cannot be created") as info:
                db.write(lambda tx: tx.execute("INSERT INTO kv VALUES ('b', x'02')"))
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(sss.LockError, match="cannot be created"):
                db.migrate("CREATE TABLE other(id INTEGER PRIMARY KEY)")
        assert _state(path) == before  # nothing lost, nothing half-done
        assert sorted(os.listdir(d)) == ["app.db"]
        with pytest.raises(sss.CantOpenError, match="new.db"):
            sss.open(d / "new.db")


@linux_only
def test_full_disk(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as d:
        assert filesystem_type(d) == "tmpfs" and is_network_filesystem(d) is False
        path = str(d / "app.db")
        _seed(path)
        before = _state(path)
        # Fill the file system, then give back a little: enough for the lock
        # directory, far too little for the write below.
        filler = d / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - 64 * 1024))
        with open_db(path) as db:
            with pytest.raises((sss.FullError, sss.LockError)) as info:
                db.write(lambda tx: tx.execute("INSERT INTO kv VALUES ('big', ?)", (os.urandom(400_000),)))
            assert "full" in str(info.value).lower() or "space" in str(info.value).lower()
            assert db.inspect_lock() is None or db.lingering  # released, or kept as our lease
            assert _state(path) == before  # rolled back: data and log as before
            filler.unlink()
            res = db.write(lambda tx: tx.execute("INSERT INTO kv VALUES ('after', x'03')"))
            assert res.seq == 3  # the next write proceeds, the log has no gap
        assert _state(path)[0] == [("ok",)]


def test_not_a_database_file(tmp_path):
    for name, content in (("text.db", b"hello, I am a text file\n" * 50),
                          ("random.db", bytes(range(256)) * 16),
                          ("short.db", b"SQLite format 3\x00" + b"\xff" * 20)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises((sss.NotADBError, sss.CorruptError), match=name):
            sss.open(path)
        assert path.read_bytes() == content  # untouched
    assert sorted(os.listdir(tmp_path)) == ["random.db", "short.db", "text.db"]  # no lock left


def test_corrupt_database_is_refused_not_crashed(tmp_path):
    path = tmp_path / "c.db"
    _seed(str(path))
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # trash the second page (a table's b-tree)
    path.write_bytes(bytes(data))
    with pytest.raises(sss.SQLiteError):
        with open_db(str(path)) as db:
            db.write(lambda tx: tx.execute("INSERT INTO kv VALUES ('b', x'02')"))
            with db.read() as r:
                r.fetchall("SELECT * FROM kv")
    assert sss.inspect_lock(path) is None


def test_tables_without_primary_key(tmp_path):
    path = str(tmp_path / "nopk.db")
    start = str(tmp_path / "start.db")
    with open_db(path) as db:
        db.migrate("CREATE TABLE keyed(id INTEGER PRIMARY KEY, x); CREATE TABLE loose(a, b);"
                   "CREATE VIRTUAL TABLE search USING fts5(body)")
        db.backup(start)
        assert db.tables_without_primary_key() == ["loose"]
        assert db.capabilities()["tables_without_primary_key"] == ["loose"]
        with pytest.raises(sss.NoPrimaryKeyError, match="loose") as info:
            db.write(lambda tx: (tx.execute("INSERT INTO keyed VALUES (1, 'x')"),
                                 tx.execute("INSERT INTO loose VALUES (1, 2)")))
        assert info.value.tables == ("loose",)
        with db.read() as r:  # rolled back, both tables
            assert r.fetchall("SELECT count(*) FROM keyed") == [(0,)]
            assert r.fetchall("SELECT count(*) FROM loose") == [(0,)]
        # Writes to keyed tables (and FTS5, through its shadow tables) go on.
        db.write(lambda tx: (tx.execute("INSERT INTO keyed VALUES (1, 'x')"),
                             tx.execute("INSERT INTO search VALUES ('hello world')")))
        assert [e.seq for e in db.log()] == [1, 2]
    # Opting in: such tables are logged keyed by rowid and replay onto a copy.
    with open_db(path, rowid_tables=True) as db:
        res = db.write(lambda tx: tx.execute("INSERT INTO loose VALUES (1, 2)"))
        assert [(c.table, c.op) for c in res.changeset] == [("loose", "INSERT")]
    fresh = str(tmp_path / "replayed.db")
    shutil.copyfile(start, fresh)
    replayed, last = replay(path, fresh)
    assert last == 3
    with sss.connect(path) as con:
        assert replayed == user_tables(con)
        assert replayed["loose"] == [(1, 2)]
        with sss.connect(fresh) as copy:
            assert copy.execute("SELECT rowid FROM search WHERE search MATCH 'hello'").fetchall() == [(1,)]


@pytest.mark.parametrize("mode", ["trusted", "network", "wal"])
def test_bad_paths_raise_package_errors(tmp_path, mode):
    """A directory at the path, or a missing parent: an sss.Error that is
    also the OSError callers caught before (faults review D11)."""
    (tmp_path / "d.db").mkdir()
    with pytest.raises(sss.DatabasePathIsDirectory, match="is a directory") as e:
        sss.open(tmp_path / "d.db", mode=mode)
    assert isinstance(e.value, sss.Error) and isinstance(e.value, IsADirectoryError)
    with pytest.raises(sss.DatabaseDirectoryMissing, match="does not exist") as e:
        sss.open(tmp_path / "nope" / "x.db", mode=mode)
    assert isinstance(e.value, sss.DatabasePathError) and isinstance(e.value, FileNotFoundError)
    assert not (tmp_path / "nope").exists()
