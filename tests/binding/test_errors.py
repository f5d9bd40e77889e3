"""Bad input gets a clear exception naming the problem; nothing crashes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import sqlite_session_safe as sss

LONG_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000000) "
    "SELECT count(*) FROM c"
)


def test_error_hierarchy_and_attributes(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v NOT NULL UNIQUE)")
    con.execute("INSERT INTO t(v) VALUES (1)")
    with pytest.raises(sss.ConstraintError) as info:
        con.execute("INSERT INTO t(v) VALUES (1)")
    err = info.value
    assert isinstance(err, sss.SQLiteError) and isinstance(err, sss.Error)
    assert err.code == 19 and err.name == "SQLITE_CONSTRAINT"
    assert err.extended_code == 2067 and err.extended_name == "SQLITE_CONSTRAINT_UNIQUE"
    assert "UNIQUE constraint failed: t.v" in str(err)
    with pytest.raises(sss.ConstraintError) as info:
        con.execute("INSERT INTO t(v) VALUES (NULL)")
    assert info.value.extended_name == "SQLITE_CONSTRAINT_NOTNULL"


def test_every_primary_code_has_its_own_class() -> None:
    classes = {sss.error_class_for(code) for code in sss.PRIMARY_RESULT_CODES}
    assert len(classes) == len(sss.PRIMARY_RESULT_CODES)
    assert sss.error_class_for(5 | (2 << 8)) is sss.BusyError  # SQLITE_BUSY_SNAPSHOT


def test_out_of_memory_is_also_a_memory_error() -> None:
    # As in the stdlib module, which raises MemoryError for SQLITE_NOMEM.
    err = sss.error_class_for(7)("out of memory", 7)
    assert isinstance(err, sss.NoMemError) and isinstance(err, sss.SQLiteError)
    assert isinstance(err, MemoryError)


def test_syntax_error_names_the_spot(con: sss.Connection) -> None:
    with pytest.raises(sss.SQLError, match=r'near "FROM": syntax error .*at offset 14') as info:
        con.execute("SELECT 1 FROM FROM t")
    assert info.value.name == "SQLITE_ERROR"


def test_unknown_table_and_column(con: sss.Connection) -> None:
    with pytest.raises(sss.SQLError, match="no such table: missing"):
        con.execute("SELECT * FROM missing")


@pytest.mark.parametrize(
    "sql, params, message",
    [
        ("SELECT ?, ?", (1,), "statement takes 2 parameters, 1 given"),
        ("SELECT ?", (1, 2), "statement takes 1 parameter, 2 given"),
        ("SELECT ?", None, "statement takes 1 parameter, 0 given"),
        ("SELECT 1", (1,), "statement takes 0 parameters, 1 given"),
        ("SELECT :a", {"b": 1}, "no value for named parameter :a"),
        ("SELECT ?", {"a": 1}, "positional parameters"),
        ("SELECT ?", "x", "not str"),
        ("SELECT ?", 5, "not int"),
        ("SELECT ?", (object(),), "parameter 1 has unsupported type object"),
        ("SELECT ?, ?", (1, [1, 2]), "parameter 2 has unsupported type list"),
        ("SELECT ?", ({"a": 1},), "parameter 1 has unsupported type dict"),
        ("SELECT ?", (1j,), "parameter 1 has unsupported type complex"),
        ("SELECT ?", ((1, 2),), "parameter 1 has unsupported type tuple"),
    ],
)
def test_bad_parameters(con: sss.Connection, sql: str, params: object, message: str) -> None:
    with pytest.raises(sss.BindingError, match=message):
        con.execute(sql, params)  # type: ignore[arg-type]
    assert con.execute("SELECT 1").fetchone() == (1,)


def test_named_parameters_all_prefixes(con: sss.Connection) -> None:
    row = con.execute("SELECT :a, @b, $c, :a", {"a": 1, "b": 2, "c": 3, "unused": 4}).fetchone()
    assert row == (1, 2, 3, 1)
    assert con.execute("SELECT ?2, ?1", (1, 2)).fetchone() == (2, 1)


def test_bad_executemany_rows(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(a, b)")
    with pytest.raises(sss.BindingError, match="executemany row 1: statement takes 2 parameters, 1 given"):
        con.executemany("INSERT INTO t VALUES (?, ?)", [(1, 2), (3,)])
    with pytest.raises(sss.BindingError, match="executemany row 0"):
        con.executemany("INSERT INTO t VALUES (?, ?)", [5])
    with pytest.raises(sss.InterfaceError, match="return no rows"):
        con.executemany("SELECT ?", [(1,)])
    with pytest.raises(sss.BindingError, match="row 1: expected a mapping"):
        con.executemany("INSERT INTO t VALUES (:a, :b)", [{"a": 1, "b": 2}, (1, 2)])


def test_more_than_one_statement(con: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError, match="one statement at a time"):
        con.execute("SELECT 1; SELECT 2")
    # trailing whitespace and comments are fine
    assert con.execute("SELECT 1; -- done\n  /* really */ ").fetchone() == (1,)
    assert con.execute("-- nothing but a comment").fetchall() == []


def test_sql_type_and_nul(con: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError, match="SQL must be str"):
        con.execute(b"SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError, match="NUL character"):
        con.execute("SELECT 1\x00")


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is a plain text file, not a database\n" * 100)
    with pytest.raises(sss.NotADBError, match="file is not a database.*notes.txt"):
        sss.connect(path)
    assert path.read_bytes().startswith(b"this is a plain text file")  # untouched


def test_cannot_open_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(sss.CantOpenError, match="unable to open database file"):
        sss.connect(tmp_path / "no" / "such" / "dir.db")


def test_readonly_connection_refuses_writes(db_path: Path) -> None:
    with sss.connect(db_path) as con:
        con.execute("CREATE TABLE t(x)")
    with sss.connect(db_path, readonly=True) as ro:
        assert ro.readonly
        with pytest.raises(sss.ReadOnlyError, match="readonly"):
            ro.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sss.CantOpenError):
        sss.connect(db_path.with_name("missing.db"), readonly=True)


def test_bad_connect_arguments(tmp_path: Path) -> None:
    with pytest.raises(sss.InterfaceError, match="path must be"):
        sss.connect(42)  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError, match="timeout"):
        sss.connect(tmp_path / "x.db", timeout=-1)
    with pytest.raises(sss.InterfaceError, match="NUL"):
        sss.connect("a\x00b")
    with pytest.raises(sss.SQLError, match="no such vfs"):
        sss.connect(tmp_path / "x.db", vfs="no-such-vfs")


def test_use_after_close(db_path: Path) -> None:
    con = sss.connect(db_path)
    cur = con.execute("SELECT 1 UNION ALL SELECT 2")
    con.close()
    con.close()  # closing twice is fine
    assert con.closed
    for action in (
        lambda: con.execute("SELECT 1"),
        lambda: con.executemany("SELECT 1", []),
        lambda: con.executescript("SELECT 1"),
        lambda: con.cursor(),
        lambda: cur.execute("SELECT 1"),
        lambda: cur.fetchall(),
        lambda: con.in_transaction,
        lambda: con.transaction().__enter__(),
        lambda: con.serialize(),
        lambda: con.backup(db_path.with_name("b.db")),
    ):
        with pytest.raises(sss.ClosedError, match="closed"):
            action()
    con.interrupt()  # harmless on a closed connection


def test_closed_cursor(con: sss.Connection) -> None:
    cur = con.execute("SELECT 1 UNION ALL SELECT 2")
    cur.close()
    with pytest.raises(sss.ClosedError, match="closed cursor"):
        cur.execute("SELECT 1")


def test_interrupt_a_long_query_from_another_thread(con: sss.Connection) -> None:
    errors: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            con.execute(LONG_QUERY).fetchall()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        con.interrupt()
        t.join(0.05)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], sss.InterruptError), errors
    assert errors[0].name == "SQLITE_INTERRUPT"
    assert con.execute("SELECT 2").fetchone() == (2,)  # usable afterwards


def test_two_threads_at_once_is_a_clear_error(con: sss.Connection) -> None:
    """While one thread is inside SQLite on a connection, another thread's call
    fails at once with ThreadingError, and the first thread's work is intact."""
    seen: list[BaseException] = []
    first_result: list[object] = []
    inside = threading.Event()

    def long_running() -> None:
        inside.set()
        try:
            first_result.append(con.execute(LONG_QUERY).fetchone())
        except sss.InterruptError:
            first_result.append("interrupted")

    t = threading.Thread(target=long_running)
    t.start()
    inside.wait()
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline and t.is_alive():
        try:
            con.execute("SELECT 1")
        except sss.ThreadingError as exc:
            seen.append(exc)
        for action in (con.close, lambda: con.executescript("SELECT 1"), lambda: con.in_transaction):
            try:
                action()
            except sss.ThreadingError as exc:
                seen.append(exc)
    # SQLite forgets an interrupt that arrives before the statement starts, so
    # keep asking until the thread has stopped.
    while t.is_alive() and time.monotonic() < deadline:
        con.interrupt()
        t.join(0.05)
    assert seen, "the second thread never met the first inside SQLite"
    assert "another thread" in str(seen[0])
    assert first_result == ["interrupted"]
    assert not con.closed
    assert con.execute("SELECT 3").fetchone() == (3,)


def test_connection_can_move_between_threads(con: sss.Connection) -> None:
    con.execute("CREATE TABLE t(x)")
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(con.execute("INSERT INTO t VALUES (1)").rowcount))
    t.start()
    t.join()
    assert results == [1]
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_busy_database_reports_busy(db_path: Path) -> None:
    a = sss.connect(db_path, timeout=0)
    b = sss.connect(db_path, timeout=0.05)
    try:
        a.execute("CREATE TABLE t(x)")
        a.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sss.BusyError, match="database is locked"):
            b.execute("SELECT * FROM t")
        a.execute("ROLLBACK")
        assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        a.close()
        b.close()
