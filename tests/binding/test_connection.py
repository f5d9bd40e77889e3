"""Connection and cursor behaviour: results, transactions, backup, serialize."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import sqlite_session_safe as sss
from sqlite_session_safe.binding import cursor as cursor_module


@pytest.fixture
def filled(con: sss.Connection) -> sss.Connection:
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
    with con.transaction():  # one fsync, not 10,000
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(10_000)])
    return con


def test_cursor_results_in_batches(filled: sss.Connection) -> None:
    # more rows than one batch, read every way a cursor allows
    cur = filled.execute("SELECT id FROM t ORDER BY id")
    assert cur.description == (("id", None, None, None, None, None, None),)
    assert cur.fetchone() == (0,)
    assert cur.fetchmany(3) == [(1,), (2,), (3,)]
    cur.arraysize = 100
    assert len(cur.fetchmany()) == 100
    rest = list(cur)
    assert rest[0] == (104,) and rest[-1] == (9999,) and len(rest) == 10_000 - 104
    assert cur.fetchone() is None
    assert cur.fetchall() == []
    assert cur.fetchmany(5) == []
    assert filled.execute("SELECT id FROM t").fetchall() == [(i,) for i in range(10_000)]
    cur = filled.execute("SELECT id FROM t ORDER BY id")
    assert cur.fetchmany(cursor_module.FIRST_BATCH_ROWS + 10) == [
        (i,) for i in range(cursor_module.FIRST_BATCH_ROWS + 10)
    ]


def test_rowcount_and_lastrowid(filled: sss.Connection) -> None:
    cur = filled.execute("UPDATE t SET name = 'x' WHERE id < 10")
    assert cur.rowcount == 10
    assert filled.execute("DELETE FROM t WHERE id >= 9990").rowcount == 10
    cur = filled.execute("INSERT INTO t(name) VALUES ('new')")
    assert cur.rowcount == 1 and cur.lastrowid == 9990
    assert filled.execute("SELECT 1").rowcount == -1
    assert filled.execute("CREATE TABLE u(x)").rowcount == -1
    cur = filled.executemany("INSERT INTO u VALUES (?)", [(1,), (2,), (3,)])
    assert cur.rowcount == 3
    assert filled.changes == 1 and filled.total_changes >= 10_000
    cur = filled.execute("INSERT INTO t(name) VALUES ('r') RETURNING id, name")
    assert cur.fetchall() == [(9991, "r")]


def test_executemany_accepts_iterators_and_mappings(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(a, b)")
    n = cursor_module.EXECUTEMANY_CHUNK * 2 + 5  # several chunks
    with con.transaction():
        con.executemany("INSERT INTO t VALUES (?, ?)", ((i, str(i)) for i in range(n)))
    con.executemany("INSERT INTO t VALUES (:a, :b)", [{"a": -1, "b": "x"}, {"b": "y", "a": -2}])
    assert con.execute("SELECT count(*), min(a) FROM t").fetchone() == (n + 2, -2)
    assert con.executemany("INSERT INTO t VALUES (?, ?)", []).rowcount == 0


def test_statement_cache_reuses_and_bounds(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "c.db", cached_statements=4)
    for i in range(20):
        con.execute(f"SELECT {i}").fetchall()
    assert len(con.statements) == 4
    stmt = con.statements.idle("SELECT 19")
    con.execute("SELECT 19")
    assert con.statements.idle("SELECT 19") is stmt
    # two live cursors on the same SQL do not share a statement
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    a = con.execute("SELECT x FROM t ORDER BY x")
    b = con.execute("SELECT x FROM t ORDER BY x")
    assert [next(a), next(a)] == [(0,), (1,)]
    assert next(b) == (0,)
    assert len(a.fetchall()) == 998 and len(b.fetchall()) == 999
    con.close()


def test_schema_change_between_executions(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(a)")
    con.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT * FROM t").fetchall() == [(1,)]
    con.execute("ALTER TABLE t ADD COLUMN b DEFAULT 2")
    cur = con.execute("SELECT * FROM t")
    assert cur.fetchall() == [(1, 2)]
    assert [d[0] for d in cur.description] == ["a", "b"]


def test_transactions_and_savepoints(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(x)")
    with con.transaction("immediate"):
        assert con.in_transaction
        con.execute("INSERT INTO t VALUES (1)")
        with con.transaction():
            con.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(ValueError):
            with con.transaction():
                con.execute("INSERT INTO t VALUES (3)")
                raise ValueError("inner block fails")
    assert not con.in_transaction
    assert con.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    with pytest.raises(KeyboardInterrupt):
        with con.transaction("exclusive"):
            con.execute("INSERT INTO t VALUES (4)")
            raise KeyboardInterrupt
    assert not con.in_transaction
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    with pytest.raises(sss.InterfaceError, match="deferred, immediate, exclusive"):
        con.transaction("serializable")  # type: ignore[arg-type]


def test_failed_commit_rolls_back(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE c(p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sss.ConstraintError, match="FOREIGN KEY"):
        with con.transaction():
            con.execute("INSERT INTO c VALUES (42)")
    assert not con.in_transaction
    assert con.execute("SELECT count(*) FROM c").fetchone() == (0,)
    con.close()


def test_executescript(con: sss.Connection) -> None:
    con.executescript("CREATE TABLE a(x); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);")
    assert con.execute("SELECT sum(x) FROM a").fetchone() == (3,)
    with pytest.raises(sss.SQLError, match="no such table: nope"):
        con.executescript("INSERT INTO a VALUES (3); INSERT INTO nope VALUES (1);")
    assert con.execute("SELECT count(*) FROM a").fetchone() == (3,)  # no implicit transaction


def test_backup_to_path_and_connection_with_progress(filled: sss.Connection, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    filled.backup(tmp_path / "copy.db", pages=5, progress=lambda r, t: calls.append((r, t)))
    assert len(calls) > 2 and calls[-1][0] == 0 and all(t == calls[0][1] for _, t in calls)
    with sss.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (10_000,)
    target = sss.connect(":memory:")
    filled.backup(target)
    assert target.execute("SELECT max(id) FROM t").fetchone() == (9999,)
    with pytest.raises(sss.InterfaceError, match="into itself"):
        filled.backup(filled)
    with pytest.raises(sss.InterfaceError, match="pages"):
        filled.backup(target, pages=0)
    target.close()


def test_backup_while_another_connection_writes(
    filled: sss.Connection, db_path: Path, tmp_path: Path
) -> None:
    writer = sss.connect(db_path)
    written = []

    def progress(remaining: int, total: int) -> None:
        if len(written) < 3:
            writer.execute("INSERT INTO t(name) VALUES ('during backup')")
            written.append(remaining)

    filled.backup(tmp_path / "live.db", pages=2, progress=progress)
    writer.close()
    with sss.connect(tmp_path / "live.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # the backup restarts after a write by another connection: it ends current
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (10_003,)


def test_serialize_and_deserialize(filled: sss.Connection) -> None:
    image = filled.serialize()
    assert image.startswith(b"SQLite format 3\x00")
    mem = sss.connect(":memory:")
    empty = mem.serialize()  # an empty database still has its header page
    assert empty.startswith(b"SQLite format 3\x00") and len(empty) <= 4096
    mem.deserialize(image)
    assert mem.execute("SELECT count(*) FROM t").fetchone() == (10_000,)
    mem.execute("INSERT INTO t(name) VALUES ('grows')")  # resizeable
    ro = sss.connect(":memory:")
    ro.deserialize(image, readonly=True)
    with pytest.raises(sss.ReadOnlyError):
        ro.execute("INSERT INTO t(name) VALUES ('no')")
    with pytest.raises(sss.SQLiteError):
        ro.deserialize(b"definitely not a database image" * 200)
    mem.close()
    ro.close()


def test_uri_and_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u.db"
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")
        assert con.filename == str(path.resolve())
        assert "Connection" in repr(con) and "open" in repr(con)
    with sss.connect(f"file:{path}?mode=ro", uri=True) as con:
        assert con.readonly
    monkeypatch.chdir(tmp_path)
    with sss.connect("file:u.db?mode=ro", uri=False) as con:  # a plain (odd) file name
        assert not con.readonly
    assert (tmp_path / "file:u.db?mode=ro").exists()


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    path = tmp_path / "dir with spaces" / "données ünïcode 📁.db"
    path.parent.mkdir()
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES ('ok')")
    assert path.exists()
    with sss.connect(str(path).encode()) as con:
        assert con.execute("SELECT x FROM t").fetchone() == ("ok",)


def test_interop_stdlib_reads_ours_and_we_read_stdlibs(tmp_path: Path) -> None:
    rows = [(1, 1.5, "text ☃", b"\x00blob"), (2, None, "", b"")]
    ours = tmp_path / "ours.db"
    with sss.connect(ours) as con:
        con.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b REAL, c TEXT, d BLOB)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    std = sqlite3.connect(ours)
    assert std.execute("SELECT * FROM t ORDER BY a").fetchall() == rows
    assert std.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    std.close()
    theirs = tmp_path / "theirs.db"
    std = sqlite3.connect(theirs)
    std.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b REAL, c TEXT, d BLOB)")
    std.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    std.commit()
    std.close()
    with sss.connect(theirs) as con:
        assert con.execute("SELECT * FROM t ORDER BY a").fetchall() == rows


def test_interop_with_apsw(tmp_path: Path) -> None:
    apsw = pytest.importorskip("apsw")
    rows = [(1, 2.5, "apsw ☃", b"\x01"), (2, None, None, None)]
    ours = tmp_path / "ours.db"
    with sss.connect(ours) as con:
        con.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b, c, d)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    a = apsw.Connection(str(ours))
    assert list(a.execute("SELECT * FROM t ORDER BY a")) == rows
    a.execute("INSERT INTO t VALUES (3, 3.0, 'from apsw', x'ff')")
    a.close()
    with sss.connect(ours) as con:
        assert con.execute("SELECT * FROM t WHERE a = 3").fetchone() == (3, 3.0, "from apsw", b"\xff")


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"), reason="needs POSIX signals")
def test_sigint_during_a_bulk_write_rolls_back(con: sss.Connection) -> None:
    """A real SIGINT in the middle of executemany inside a transaction: the
    KeyboardInterrupt propagates, nothing of the transaction is kept, and the
    connection works afterwards."""
    import signal
    import threading

    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES ('before')")
    main = threading.main_thread().ident
    produced = 0
    fired = threading.Event()

    def rows():  # type: ignore[no-untyped-def]
        nonlocal produced
        while True:
            produced += 1
            if produced == 50_000 and not fired.is_set():
                fired.set()
                signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]
            yield (produced,)

    with pytest.raises(KeyboardInterrupt):
        with con.transaction("immediate"):
            con.executemany("INSERT INTO t VALUES (?)", rows())
    assert fired.is_set()
    assert not con.in_transaction
    assert con.execute("SELECT x FROM t").fetchall() == [("before",)]
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_statement_dropped_by_another_thread_waits_for_the_holder(tmp_path: Path) -> None:
    """A cursor's last reference can go in another thread while this one is
    inside sqlite3_step (GIL released, NOMUTEX connection): that thread must
    not finalize the statement under the stepping one; the connection's next
    call, by the thread holding it, does."""
    import threading

    con = sss.connect(tmp_path / "drop.db")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    box = [con.execute("SELECT x FROM t WHERE x > ?", (1,))]  # running, rows left
    assert box[0].fetchone() is not None
    seen: list[int] = []

    def drop() -> None:
        box.clear()  # the last reference: its statement handle is released here
        seen.append(len(con.statements.dropped))

    def inside_step(x: int) -> int:
        t = threading.Thread(target=drop)
        t.start()
        t.join()
        return x

    con.create_function("inside_step", 1, inside_step)
    assert con.execute("SELECT inside_step(count(*)) FROM t").fetchone() == (1000,)
    assert seen == [1]  # left for the holder, not finalized by the dropping thread
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert con.statements.dropped == []  # the holder's next call finalized it
    con.close()


def test_statement_dropped_in_its_own_thread_is_finalized_at_once(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "own.db")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    cur = con.execute("SELECT x FROM t WHERE x > ?", (1,))
    assert cur.fetchone() is not None
    del cur
    assert con.statements.dropped == []
    other = sss.connect(tmp_path / "own.db", timeout=0)
    other.execute("INSERT INTO t VALUES (99)")  # no read lock left behind
    other.close()
    con.close()
