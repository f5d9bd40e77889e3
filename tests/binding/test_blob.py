"""Incremental BLOB I/O (Connection.blobopen / sss.Blob), checked against the
stdlib's sqlite3.Blob (Python 3.11+) operation by operation."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import sqlite_session_safe as sss

DATA = bytes(range(256)) * 4  # 1024 bytes
HAS_STD_BLOB = hasattr(sqlite3.Connection, "blobopen")


def _open(kind: str, path: Path) -> Any:
    con: Any = sss.connect(path) if kind == "sss" else sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB, note TEXT)")
    con.execute("INSERT INTO b VALUES (1, ?, 'n')", (DATA,))
    con.execute("INSERT INTO b VALUES (2, zeroblob(10), 'n')")
    return con


KINDS = ["sss", pytest.param("std", marks=pytest.mark.skipif(not HAS_STD_BLOB, reason="Python < 3.11"))]


@pytest.fixture(params=KINDS)
def con(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    c = _open(request.param, tmp_path / f"{request.param}.db")
    yield c
    c.close()


def test_read_seek_tell(con: Any) -> None:
    with con.blobopen("b", "data", 1) as blob:
        assert len(blob) == 1024
        if isinstance(blob, sss.Blob):
            assert blob.len() == 1024
        assert blob.read(10) == DATA[:10]
        assert blob.tell() == 10
        assert blob.read(0) == b""
        blob.seek(-4, os.SEEK_END)
        assert blob.read() == DATA[-4:]
        assert blob.read() == b""  # at the end
        blob.seek(100)
        blob.seek(-50, os.SEEK_CUR)
        assert blob.tell() == 50
        assert blob.read(2000) == DATA[50:]  # clipped to the end
        blob.seek(1024)
        for bad in (-1, 1025):
            with pytest.raises(ValueError):
                blob.seek(bad)
        with pytest.raises(ValueError):
            blob.seek(0, 7)
        assert blob.tell() == 1024  # failed seeks do not move


def test_write(con: Any) -> None:
    with con.blobopen("b", "data", 2) as blob:
        blob.write(b"abc")
        blob.write(bytearray(b"de"))
        if isinstance(blob, sss.Blob):
            blob.write(memoryview(b"XfYgZ")[1::2])  # the stdlib refuses non-contiguous views
        else:
            blob.write(b"fg")
        assert blob.tell() == 7
        with pytest.raises(ValueError, match="data longer than blob length"):
            blob.write(b"1234")  # would grow the blob
        assert blob.tell() == 7
        blob.write(b"123")
        with pytest.raises(ValueError):
            blob.write(b"!")
    assert con.execute("SELECT data FROM b WHERE id = 2").fetchone() == (b"abcdefg123",)


def test_indexing_and_slices(con: Any) -> None:
    with con.blobopen("b", "data", 1) as blob:
        blob.seek(7)
        assert blob[0] == 0 and blob[255] == 255 and blob[-1] == 255
        assert blob[10:20] == DATA[10:20]
        assert blob[-10:] == DATA[-10:]
        assert blob[::100] == DATA[::100]
        ours = isinstance(blob, sss.Blob)
        if ours:  # the stdlib (3.11) fails negative steps with SystemError
            assert blob[900:100:-37] == DATA[900:100:-37]
            assert blob[::-1] == DATA[::-1]
        assert blob[5:5] == b"" and blob[20:10] == b""
        assert blob.tell() == 7  # indexing does not move the position
        with pytest.raises(IndexError):
            blob[1024]
        with pytest.raises(IndexError):
            blob[-1025]
        with pytest.raises(TypeError):
            blob["x"]
        blob[0] = 200
        blob[-1] = 1
        blob[10:13] = b"xyz"
        blob[100:110:3] = b"ABCD"
        if ours:
            blob[1000:990:-5] = b"QR"
        expected = bytearray(DATA)
        expected[0], expected[-1] = 200, 1
        expected[10:13] = b"xyz"
        expected[100:110:3] = b"ABCD"
        if ours:
            expected[1000:990:-5] = b"QR"
        assert blob[:] == bytes(expected)
        with pytest.raises(ValueError):
            blob[0] = 256
        with pytest.raises(ValueError):
            blob[0] = -1
        with pytest.raises(TypeError):
            blob[0] = b"a"
        with pytest.raises(IndexError):
            blob[0:3] = b"ab"  # slices cannot change the size
        with pytest.raises(IndexError):
            blob[0:6:2] = b"abcd"
        with pytest.raises(TypeError):
            del blob[0]
        assert blob[:] == bytes(expected)


def test_readonly_and_open_errors(con: Any) -> None:
    with con.blobopen("b", "data", 1, readonly=True) as blob:
        assert blob.read(3) == DATA[:3]
        with pytest.raises((sss.ReadOnlyError, sqlite3.OperationalError)):
            blob.write(b"x")
    for args in (("nope", "data", 1), ("b", "nope", 1), ("b", "data", 99)):
        with pytest.raises((sss.SQLError, sqlite3.OperationalError)):
            con.blobopen(*args)
    with pytest.raises((sss.SQLError, sqlite3.OperationalError)):
        con.blobopen("b", "data", 1, name="other")


def test_expired_blob(con: Any) -> None:
    blob = con.blobopen("b", "data", 1)
    con.execute("UPDATE b SET data = x'00' WHERE id = 1")
    with pytest.raises((sss.AbortError, sqlite3.OperationalError)):
        blob.read()
    blob.close()


# -- our own lifetime rules -----------------------------------------------------------


def test_close_and_use_after_close(tmp_path: Path) -> None:
    con = _open("sss", tmp_path / "a.db")
    blob = con.blobopen("b", "data", 1)
    blob.close()
    blob.close()  # twice is fine
    for call in (blob.read, lambda: blob.write(b"x"), blob.tell, lambda: blob.seek(0), blob.len,  # noqa: E501
                 lambda: blob[0], lambda: blob.__setitem__(0, 1), lambda: len(blob)):
        with pytest.raises(sss.ClosedError, match="closed blob"):
            call()
    with pytest.raises(sss.ClosedError):
        blob.__enter__()
    con.close()


def test_blob_closed_before_its_connection(tmp_path: Path) -> None:
    con = _open("sss", tmp_path / "a.db")
    blobs = [con.blobopen("b", "data", 1) for _ in range(3)]
    con.close()  # closes the blobs first (otherwise the connection stays a zombie)
    assert all(b.closed for b in blobs)
    with pytest.raises(sss.ClosedError):
        blobs[0].read()
    # the file is really released: another connection can change the schema
    other = sss.connect(tmp_path / "a.db")
    other.execute("DROP TABLE b")
    other.close()


def test_dropped_blob_is_closed(tmp_path: Path) -> None:
    con = _open("sss", tmp_path / "a.db")
    other = sss.connect(tmp_path / "a.db", timeout=0)
    kept = con.blobopen("b", "data", 1)  # an open blob holds a read lock ...
    with pytest.raises(sss.BusyError):
        other.execute("BEGIN EXCLUSIVE")
    del kept  # ... until it is dropped
    for _ in range(100):
        con.blobopen("b", "data", 1).read(1)  # never closed explicitly
    other.execute("BEGIN EXCLUSIVE")
    other.execute("ROLLBACK")
    other.close()
    con.close()


def test_blob_changes_are_captured_by_sessions(tmp_path: Path) -> None:
    con = _open("sss", tmp_path / "a.db")
    with con.session() as s:
        with con.blobopen("b", "data", 2) as blob:
            blob.write(b"hello")
        changes = list(s.changeset())
    assert len(changes) == 1 and changes[0].op == "UPDATE"
    con.close()


def test_blobopen_bad_arguments(tmp_path: Path) -> None:
    con = _open("sss", tmp_path / "a.db")
    with pytest.raises(sss.InterfaceError):
        con.blobopen("b", "data", "1")  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError):
        con.blobopen("b\0", "data", 1)
    with pytest.raises(sss.SQLError, match="cannot open value of type"):
        con.blobopen("b", "id", 1)
    con.close()


def test_read_whole_makes_the_type_asked_for_in_one_piece(tmp_path: Path) -> None:
    """sss only: the whole blob as a new bytes (or subclass) object, filled
    by SQLite directly, whatever the position; each call a new object."""
    con = _open("sss", tmp_path / "w.db")
    try:
        con.execute("INSERT INTO b VALUES (3, x'', 'empty')")
        with con.blobopen("b", "data", 1) as blob:
            blob.seek(100)
            whole = blob.read_whole(bytes)
            assert type(whole) is bytes and whole == DATA and blob.tell() == 100
            cs = blob.read_whole(sss.Changeset)  # no __new__ check: the caller vouches
            assert type(cs) is sss.Changeset and bytes(cs) == DATA
            assert blob.read_whole(bytes) is not whole and hash(whole) == hash(DATA)
        with con.blobopen("b", "data", 3) as blob:
            assert blob.read_whole(bytes) == b""
        with pytest.raises(sss.ClosedError):
            blob.read_whole(bytes)
    finally:
        con.close()
