"""The DB-API module against the stdlib ``sqlite3``: the same behaviour tests
run on both (the ``mod`` fixture), so every expectation is checked against the
real stdlib on this Python.  Deliberate differences are tested at the end,
on our module only."""

from __future__ import annotations

import sqlite3 as stdlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sqlite_session_safe as sss
import sqlite_session_safe.dbapi as ours

PY312 = sys.version_info >= (3, 12)


@pytest.fixture(params=["stdlib", "ours"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return stdlib if request.param == "stdlib" else ours


@pytest.fixture
def con(mod: ModuleType, tmp_path: Path) -> Iterator[Any]:
    c = mod.connect(tmp_path / "t.db")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE, x REAL)")
    c.commit()
    yield c
    c.close()


def stdlib_since(mod: ModuleType, version: tuple[int, int], what: str) -> None:
    """Skip for the stdlib on a Python older than ``version`` (ours has
    ``what`` on every supported Python)."""
    if mod is stdlib and sys.version_info < version:
        pytest.skip(f"the stdlib has {what} from Python {version[0]}.{version[1]}")


def unsupported_type_error(mod: ModuleType) -> type[Exception]:
    return mod.ProgrammingError if sys.version_info >= (3, 11) else mod.InterfaceError  # type: ignore[no-any-return]


# -- module surface -------------------------------------------------------------


def test_module_attributes(mod: ModuleType) -> None:
    assert mod.apilevel == "2.0"
    assert mod.paramstyle == "qmark"
    assert mod.threadsafety in (0, 1, 2, 3)
    assert isinstance(mod.sqlite_version, str)
    assert mod.sqlite_version_info == tuple(int(x) for x in mod.sqlite_version.split("."))
    assert (mod.PARSE_DECLTYPES, mod.PARSE_COLNAMES) == (1, 2)
    assert mod.Binary is memoryview
    assert mod.Date.__name__ == "date" and mod.Timestamp.__name__ == "datetime"
    assert mod.DateFromTicks(0).year in (1969, 1970)
    for name in ("SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE", "SQLITE_LIMIT_LENGTH",
                 "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CREATE_TABLE", "SQLITE_READ"):
        if hasattr(stdlib, name):  # limits and error codes from 3.11
            assert getattr(mod, name) == getattr(stdlib, name)
    assert callable(mod.enable_callback_tracebacks) and callable(mod.adapt)
    assert isinstance(mod.adapters, dict) and isinstance(mod.converters, dict)


def test_every_stdlib_name_exists_in_ours() -> None:
    missing = [n for n in dir(stdlib) if not n.startswith("_") and not hasattr(ours, n)]
    # modules the stdlib imports into its namespace
    assert set(missing) <= {"collections", "datetime", "time"}, missing


def test_exception_hierarchy(mod: ModuleType) -> None:
    assert issubclass(mod.Warning, Exception) and issubclass(mod.Error, Exception)
    assert issubclass(mod.InterfaceError, mod.Error)
    assert issubclass(mod.DatabaseError, mod.Error)
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError",
                 "ProgrammingError", "NotSupportedError"):
        assert issubclass(getattr(mod, name), mod.DatabaseError)
    c = mod.connect(":memory:")
    assert c.Error is mod.Error and c.OperationalError is mod.OperationalError
    c.close()


def test_complete_statement(mod: ModuleType) -> None:
    assert mod.complete_statement("select 1;")
    assert not mod.complete_statement("select 1")
    assert not mod.complete_statement("select ';")
    assert mod.complete_statement("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;")


# -- executing and fetching ------------------------------------------------------


def test_crud_description_rowcount_lastrowid(con: Any) -> None:
    cur = con.cursor()
    assert cur.lastrowid is None and cur.rowcount == -1 and cur.description is None
    assert cur.arraysize == 1 and cur.connection is con
    cur.execute("INSERT INTO t(name, x) VALUES (?, ?)", ("a", 1.5))
    assert cur.rowcount == 1 and cur.lastrowid == 1
    cur.executemany("INSERT INTO t(name, x) VALUES (?, ?)", [("b", 2.0), ("c", None)])
    assert cur.rowcount == 2
    assert cur.lastrowid == 1  # executemany leaves lastrowid alone
    cur.execute("UPDATE t SET x = 0 WHERE id > 1")
    assert cur.rowcount == 2
    cur.execute("SELECT id, name AS n, x FROM t ORDER BY id")
    assert cur.rowcount == -1
    assert [d[0] for d in cur.description] == ["id", "n", "x"]
    assert all(d[1:] == (None,) * 6 for d in cur.description)
    assert cur.fetchone() == (1, "a", 1.5)
    cur.arraysize = 2
    assert cur.fetchmany() == [(2, "b", 0.0), (3, "c", 0.0)]
    assert cur.fetchall() == [] and cur.fetchone() is None
    assert list(con.execute("SELECT name FROM t WHERE id < 3 ORDER BY id")) == [("a",), ("b",)]
    assert con.execute("SELECT count(*) FROM t").fetchmany(5) == [(3,)]
    cur.setinputsizes([1, 2])
    cur.setoutputsize(10)
    cur.setoutputsize(10, 1)


def test_parameter_styles(con: Any, mod: ModuleType) -> None:
    assert con.execute("SELECT ?, ?", (1, "x")).fetchone() == (1, "x")
    if mod is stdlib and (3, 12) <= sys.version_info < (3, 12, 4):
        # 3.12.0-3.12.3 took numbered parameters for named ones and warned
        # when they were bound from a sequence (CPython gh-117995, fixed in
        # 3.12.4 and 3.13.0, after 3.12.3 was out); SQLite, ours and every
        # other stdlib bind them by position, silently.
        with pytest.warns(DeprecationWarning, match="named parameter"):
            assert con.execute("SELECT ?2, ?1", [1, 2]).fetchone() == (2, 1)
    else:
        assert con.execute("SELECT ?2, ?1", [1, 2]).fetchone() == (2, 1)
    if mod is stdlib and sys.version_info >= (3, 14):
        # Named parameters bound from a sequence: deprecated in 3.12, an error from 3.14.
        with pytest.raises(stdlib.ProgrammingError, match="named parameter"):
            con.execute("SELECT :a", [1])
    elif mod is stdlib and sys.version_info >= (3, 12):
        with pytest.warns(DeprecationWarning, match="named parameter"):
            assert con.execute("SELECT :a", [1]).fetchone() == (1,)
    assert con.execute("SELECT :a, :b", {"a": 1, "b": b"\x00"}).fetchone() == (1, b"\x00")
    assert con.execute("SELECT ?", (memoryview(b"ab"),)).fetchone() == (b"ab",)
    assert con.execute("SELECT ?", (bytearray(b"ab"),)).fetchone() == (b"ab",)
    assert con.execute("SELECT ?", (True,)).fetchone() == (1,)
    assert con.execute("SELECT ?", (2**63 - 1,)).fetchone() == (2**63 - 1,)


def test_executescript_and_returns_cursor(con: Any) -> None:
    cur = con.executescript("INSERT INTO t(name) VALUES ('s1'); INSERT INTO t(name) VALUES ('s2');")
    assert cur.connection is con
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    cur = con.cursor()
    assert cur.executescript("SELECT 1;") is cur


def test_generator_for_executemany(con: Any) -> None:
    con.executemany("INSERT INTO t(name) VALUES (?)", ((f"g{i}",) for i in range(20000)))
    assert con.execute("SELECT count(*) FROM t").fetchone() == (20000,)


def test_connection_factory_and_cursor_factory(mod: ModuleType) -> None:
    class MyConnection(mod.Connection):  # type: ignore[name-defined,misc]
        pass

    class MyCursor(mod.Cursor):  # type: ignore[name-defined,misc]
        pass

    c = mod.connect(":memory:", factory=MyConnection)
    assert isinstance(c, MyConnection)
    cur = c.cursor(factory=MyCursor)
    assert isinstance(cur, MyCursor) and cur.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(TypeError):
        c.cursor(factory=lambda con: object())
    c.close()


def test_uri_and_cached_statements(mod: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    c = mod.connect(path, cached_statements=0)
    c.execute("CREATE TABLE u(a)")
    c.commit()
    c.close()
    ro = mod.connect(f"file:{path}?mode=ro", uri=True)
    assert ro.execute("SELECT count(*) FROM u").fetchone() == (0,)
    with pytest.raises(mod.OperationalError) as info:
        ro.execute("INSERT INTO u VALUES (1)")
    if mod is ours or sys.version_info >= (3, 11):  # sqlite_errorname from 3.11
        assert info.value.sqlite_errorname.startswith("SQLITE_READONLY")
    ro.close()


# -- errors: the class raised for each misuse --------------------------------------


def test_closed_connection_and_cursor(mod: ModuleType) -> None:
    c = mod.connect(":memory:")
    cur = c.cursor()
    cur.execute("SELECT 1")
    cur.close()
    with pytest.raises(mod.ProgrammingError):
        cur.fetchone()
    with pytest.raises(mod.ProgrammingError):
        cur.execute("SELECT 1")
    with pytest.raises(mod.ProgrammingError):
        cur.fetchall()
    open_cur = c.cursor()
    c.close()
    c.close()  # twice is fine
    for call in (lambda: c.execute("SELECT 1"), c.cursor, c.commit, c.rollback,
                 lambda: c.in_transaction, lambda: open_cur.execute("SELECT 1"),
                 lambda: c.executescript("SELECT 1;")):
        with pytest.raises(mod.ProgrammingError):
            call()


def test_parameter_misuse(con: Any, mod: ModuleType) -> None:
    with pytest.raises(mod.ProgrammingError):
        con.execute("SELECT ?, ?", (1,))
    with pytest.raises(mod.ProgrammingError):
        con.execute("SELECT ?", (1, 2))
    with pytest.raises(mod.ProgrammingError):
        con.execute("SELECT :a", {"b": 1})
    with pytest.raises(unsupported_type_error(mod)):
        con.execute("SELECT ?", (object(),))
    with pytest.raises(OverflowError):
        con.execute("SELECT ?", (2**63,))
    # sqlite3.Warning before Python 3.11
    with pytest.raises(mod.ProgrammingError if sys.version_info >= (3, 11) else mod.Warning):
        con.execute("SELECT 1; SELECT 2")
    with pytest.raises(TypeError):
        con.execute(42)
    with pytest.raises(mod.ProgrammingError):
        con.executemany("SELECT ?", [(1,)])


def test_sqlite_errors_by_class(con: Any, mod: ModuleType, tmp_path: Path) -> None:
    stdlib_since(mod, (3, 11), "sqlite_errorname")
    con.execute("INSERT INTO t(name) VALUES ('dup')")
    with pytest.raises(mod.IntegrityError) as info:
        con.execute("INSERT INTO t(name) VALUES ('dup')")
    assert info.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
    assert info.value.sqlite_errorcode == mod.SQLITE_CONSTRAINT_UNIQUE
    with pytest.raises(mod.IntegrityError) as info:
        con.execute("INSERT INTO t(id, name) VALUES (1, 'other')")
    assert info.value.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY"
    with pytest.raises(mod.OperationalError) as info:
        con.execute("SELECT * FROM no_such_table")
    assert info.value.sqlite_errorcode == mod.SQLITE_ERROR
    assert "no such table" in str(info.value)
    with pytest.raises(mod.OperationalError):
        con.execute("SELEKT 1")
    with pytest.raises(mod.DataError) as info:
        con.execute("SELECT randomblob(1100000000)")
    assert info.value.sqlite_errorname == "SQLITE_TOOBIG"
    con.commit()


def test_locked_database_is_operational_error(mod: ModuleType, tmp_path: Path) -> None:
    stdlib_since(mod, (3, 11), "sqlite_errorname")
    path = tmp_path / "l.db"
    a = mod.connect(path, isolation_level=None)
    b = mod.connect(path, timeout=0, isolation_level=None)
    a.execute("CREATE TABLE l(x)")
    a.execute("BEGIN IMMEDIATE")
    with pytest.raises(mod.OperationalError) as info:
        b.execute("BEGIN IMMEDIATE")
    assert info.value.sqlite_errorname.startswith("SQLITE_BUSY")
    a.execute("ROLLBACK")
    a.close()
    b.close()


def test_check_same_thread(mod: ModuleType, tmp_path: Path) -> None:
    c = mod.connect(tmp_path / "th.db")
    cur = c.execute("SELECT 1")
    errors: list[BaseException] = []

    def use(fn: Any) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    for fn in (lambda: c.execute("SELECT 1"), cur.fetchone, c.commit, c.cursor):
        t = threading.Thread(target=use, args=(fn,))
        t.start()
        t.join()
    assert len(errors) == 4 and all(isinstance(e, mod.ProgrammingError) for e in errors)
    c.close()
    free = mod.connect(tmp_path / "th.db", check_same_thread=False)
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(free.execute("SELECT 2").fetchone()))
    t.start()
    t.join()
    assert results == [(2,)]
    free.close()


def test_bad_connect_arguments(mod: ModuleType) -> None:
    with pytest.raises(ValueError):
        mod.connect(":memory:", isolation_level="SOMETIMES")
    c = mod.connect(":memory:")
    with pytest.raises(ValueError):
        c.isolation_level = "NEVER"
    with pytest.raises(TypeError):
        c.backup(object())
    c.close()


# -- transactions -------------------------------------------------------------------


def test_legacy_implicit_begin(con: Any, mod: ModuleType, tmp_path: Path) -> None:
    assert con.isolation_level == ""
    con.execute("SELECT * FROM t")
    assert not con.in_transaction
    con.execute("INSERT INTO t(name) VALUES ('a')")
    assert con.in_transaction
    other = mod.connect(tmp_path / "t.db")
    assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.commit()
    assert not con.in_transaction
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    con.execute("DELETE FROM t")
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    con.commit()
    con.commit()  # nothing open: fine
    other.close()


def test_isolation_level_none_and_setter(con: Any) -> None:
    con.execute("INSERT INTO t(name) VALUES ('a')")
    assert con.in_transaction
    con.isolation_level = None  # commits the pending transaction
    assert not con.in_transaction
    con.execute("INSERT INTO t(name) VALUES ('b')")
    assert not con.in_transaction
    con.isolation_level = "IMMEDIATE"
    con.execute("INSERT INTO t(name) VALUES ('c')")
    assert con.in_transaction
    con.rollback()
    assert [r[0] for r in con.execute("SELECT name FROM t ORDER BY id")] == ["a", "b"]


def test_executescript_commits_pending_transaction(con: Any) -> None:
    con.execute("INSERT INTO t(name) VALUES ('a')")
    con.executescript("INSERT INTO t(name) VALUES ('b');")
    assert not con.in_transaction
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_context_manager_commits_or_rolls_back_not_close(con: Any) -> None:
    with con as entered:
        assert entered is con
        con.execute("INSERT INTO t(name) VALUES ('a')")
    assert not con.in_transaction
    with pytest.raises(ZeroDivisionError):
        with con:
            con.execute("INSERT INTO t(name) VALUES ('b')")
            1 / 0  # noqa: B018
    assert con.execute("SELECT name FROM t").fetchall() == [("a",)]  # still open
    assert con.total_changes >= 2


def test_explicit_sql_transactions(con: Any) -> None:
    con.isolation_level = None
    con.execute("BEGIN")
    con.execute("INSERT INTO t(name) VALUES ('a')")
    con.execute("SAVEPOINT sp")
    con.execute("INSERT INTO t(name) VALUES ('b')")
    con.execute("ROLLBACK TO sp")
    con.execute("COMMIT")
    assert con.execute("SELECT name FROM t").fetchall() == [("a",)]


def autocommit_mod(mod: ModuleType) -> None:
    stdlib_since(mod, (3, 12), "autocommit")


def test_autocommit_false(mod: ModuleType, tmp_path: Path) -> None:
    autocommit_mod(mod)
    c = mod.connect(tmp_path / "a.db", autocommit=False)
    assert c.autocommit is False and c.in_transaction
    c.execute("CREATE TABLE a(x)")
    c.commit()
    assert c.in_transaction
    c.execute("INSERT INTO a VALUES (1)")
    c.rollback()
    assert c.in_transaction and c.execute("SELECT count(*) FROM a").fetchone() == (0,)
    c.autocommit = True
    assert not c.in_transaction
    c.execute("INSERT INTO a VALUES (2)")
    c.rollback()  # does nothing in autocommit mode
    assert c.execute("SELECT count(*) FROM a").fetchone() == (1,)
    c.autocommit = mod.LEGACY_TRANSACTION_CONTROL
    assert c.autocommit == mod.LEGACY_TRANSACTION_CONTROL == -1
    with pytest.raises(ValueError):
        c.autocommit = 5
    c.close()


def test_autocommit_false_close_rolls_back(mod: ModuleType, tmp_path: Path) -> None:
    autocommit_mod(mod)
    c = mod.connect(tmp_path / "r.db", autocommit=False)
    c.execute("CREATE TABLE r(x)")
    c.commit()
    c.execute("INSERT INTO r VALUES (1)")
    c.close()
    c = mod.connect(tmp_path / "r.db")
    assert c.execute("SELECT count(*) FROM r").fetchone() == (0,)
    c.close()


# -- rows, factories, types ---------------------------------------------------------


def test_row(con: Any, mod: ModuleType) -> None:
    con.execute("INSERT INTO t(name, x) VALUES ('a', 1.0)")
    con.row_factory = mod.Row
    row = con.execute("SELECT id, name AS Name, x FROM t").fetchone()
    assert isinstance(row, mod.Row)
    assert row[0] == 1 and row[-1] == 1.0 and row["name"] == "a" and row["NAME"] == "a"
    assert row[1:] == ("a", 1.0)
    assert row.keys() == ["id", "Name", "x"] and len(row) == 3 and list(row) == [1, "a", 1.0]
    again = con.execute("SELECT id, name AS Name, x FROM t").fetchone()
    assert row == again and hash(row) == hash(again) and not (row != again)
    with pytest.raises(IndexError):
        row["nope"]
    with pytest.raises(IndexError):
        row[5]
    cur = con.cursor()
    cur.row_factory = None
    assert cur.execute("SELECT 1").fetchone() == (1,)
    con.row_factory = lambda cursor, r: {d[0]: v for d, v in zip(cursor.description, r, strict=False)}
    assert con.execute("SELECT 1 AS one").fetchall() == [{"one": 1}]
    assert list(con.execute("SELECT 2 AS two")) == [{"two": 2}]
    with pytest.raises(TypeError):
        mod.Row(object(), (1,))


def test_text_factory(con: Any) -> None:
    con.execute("INSERT INTO t(name) VALUES ('hé')")
    con.text_factory = bytes
    assert con.execute("SELECT name, 1, NULL FROM t").fetchone() == ("hé".encode(), 1, None)
    con.text_factory = lambda b: b.decode().upper()
    assert con.execute("SELECT name FROM t").fetchone() == ("HÉ",)
    con.text_factory = str
    assert con.execute("SELECT name FROM t").fetchone() == ("hé",)


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Conforming:
    def __conform__(self, protocol: Any) -> str:
        return "conformed"


def test_adapters_and_converters(mod: ModuleType, tmp_path: Path) -> None:
    mod.register_adapter(Point, lambda p: f"{p.x};{p.y}")
    mod.register_converter("POINT", lambda b: Point(*map(float, b.split(b";"))))
    mod.register_converter("intlist", lambda b: [int(x) for x in b.split(b",")])
    mod.register_converter("num", lambda b: ("num", b))
    try:
        c = mod.connect(tmp_path / "p.db", detect_types=mod.PARSE_DECLTYPES | mod.PARSE_COLNAMES)
        c.execute("CREATE TABLE p(p point, l INTLIST, n NUM(10), plain)")
        c.execute("INSERT INTO p VALUES (?, ?, ?, ?)", (Point(1, 2), "1,2", 7, 7))
        c.executemany("INSERT INTO p VALUES (?, ?, ?, ?)", [(Point(3, 4), "3", 1.5, "x")])
        rows = c.execute("SELECT * FROM p").fetchall()
        assert rows == [(Point(1, 2), [1, 2], ("num", b"7"), 7), (Point(3, 4), [3], ("num", b"1.5"), "x")]
        cur = c.execute('SELECT plain AS "v [intlist]", p AS "q [num]" FROM p LIMIT 1')
        assert cur.fetchone() == ([7], ("num", b"1;2"))
        assert [d[0] for d in cur.description] == ["v", "q"]
        assert c.execute("SELECT NULL AS \"n [intlist]\"").fetchone() == (None,)
        assert c.execute("SELECT ?", (Conforming(),)).fetchone() == ("conformed",)
        assert mod.adapt(Point(5, 6)) == "5;6"
        assert mod.adapt(Conforming()) == "conformed"
        with pytest.raises(mod.ProgrammingError):
            mod.adapt(object())
        assert mod.adapt(object(), mod.PrepareProtocol, "alt") == "alt"
        c.close()
    finally:
        mod.adapters.pop((Point, mod.PrepareProtocol), None)
        for name in ("POINT", "INTLIST", "NUM"):
            mod.converters.pop(name, None)


def test_adapter_for_a_base_type(mod: ModuleType) -> None:
    mod.register_adapter(int, lambda v: v * 10)
    try:
        c = mod.connect(":memory:")
        assert c.execute("SELECT ?", (4,)).fetchone() == (40,)
        c.execute("CREATE TABLE b(x)")
        c.executemany("INSERT INTO b VALUES (?)", [(1,), (2,)])
        assert c.execute("SELECT x FROM b ORDER BY x").fetchall() == [(10,), (20,)]
        c.close()
    finally:
        mod.adapters.pop((int, mod.PrepareProtocol), None)


# -- whole-database operations ------------------------------------------------------


def make_dump_db(c: Any) -> None:
    c.executescript("""
        CREATE TABLE "we""ird" (id INTEGER PRIMARY KEY, "co l" TEXT, b BLOB, r REAL);
        CREATE TABLE seq(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        CREATE INDEX ix ON "we""ird"("co l");
        CREATE VIEW v AS SELECT * FROM seq;
        CREATE TRIGGER tr AFTER INSERT ON seq BEGIN SELECT 1; END;
        INSERT INTO "we""ird" VALUES (1, 'it''s', x'00ff', 1.5), (2, NULL, NULL, -0.25);
        INSERT INTO seq(v) VALUES ('a'), ('b');
    """)


def test_iterdump_matches_the_stdlib_and_restores(tmp_path: Path) -> None:
    theirs = stdlib.connect(":memory:")
    mine = ours.connect(":memory:")
    make_dump_db(theirs)
    make_dump_db(mine)
    dump = list(mine.iterdump())
    assert dump == list(theirs.iterdump())
    restored = ours.connect(":memory:")
    restored.executescript("\n".join(dump))
    assert restored.execute("SELECT * FROM seq").fetchall() == [(1, "a"), (2, "b")]
    restored.execute("INSERT INTO seq(v) VALUES ('c')")
    assert restored.execute("SELECT max(id) FROM seq").fetchone() == (3,)
    mine.row_factory = ours.Row  # the dump does not depend on it
    assert list(mine.iterdump()) == dump
    native = sss.connect(":memory:")
    native.deserialize(mine.serialize())
    assert list(native.iterdump()) == dump  # one implementation, on the native connection too
    native.close()


def test_backup(mod: ModuleType, con: Any) -> None:
    con.executemany("INSERT INTO t(name) VALUES (?)", [(str(i),) for i in range(500)])
    con.commit()
    dest = mod.connect(":memory:")
    calls: list[tuple[int, int, int]] = []
    con.backup(dest, pages=1, progress=lambda status, left, total: calls.append((status, left, total)))
    assert dest.execute("SELECT count(*) FROM t").fetchone() == (500,)
    assert calls and calls[-1][1] == 0 and calls[-1][0] == mod.SQLITE_DONE
    assert all(c[0] == mod.SQLITE_OK for c in calls[:-1])
    dest.close()
    with pytest.raises(mod.ProgrammingError):
        con.backup(dest)


def test_serialize_deserialize(mod: ModuleType, con: Any) -> None:
    stdlib_since(mod, (3, 11), "serialize")
    con.execute("INSERT INTO t(name) VALUES ('s')")
    con.commit()
    data = con.serialize()
    assert data[:16] == b"SQLite format 3\x00"
    other = mod.connect(":memory:")
    other.deserialize(data)
    assert other.execute("SELECT name FROM t").fetchall() == [("s",)]
    with pytest.raises(mod.DatabaseError):
        other.deserialize(b"not a database" * 100)
        other.execute("SELECT * FROM t")
    other.close()


def test_interrupt(mod: ModuleType) -> None:
    c = mod.connect(":memory:", check_same_thread=False)
    timer = threading.Timer(0.2, c.interrupt)
    timer.start()
    with pytest.raises(mod.OperationalError) as info:
        c.execute("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
                  "SELECT count(*) FROM r").fetchall()
    assert "interrupt" in str(info.value)
    timer.join()
    c.close()
    with pytest.raises(mod.ProgrammingError):
        c.interrupt()


# -- ours only: beyond the stdlib, and deliberate differences -------------------------


def test_session_on_a_dbapi_connection(tmp_path: Path) -> None:
    c = ours.connect(tmp_path / "s.db")
    c.execute("CREATE TABLE s(id INTEGER PRIMARY KEY, v)")
    with c.session() as session:
        c.execute("INSERT INTO s VALUES (1, 'x')")
        c.commit()
        changeset = session.changeset()
    assert isinstance(session, sss.Session)
    assert [(ch.op, ch.new) for ch in changeset] == [("INSERT", (1, "x"))]
    replica = ours.connect(":memory:")
    replica.execute("CREATE TABLE s(id INTEGER PRIMARY KEY, v)")
    changeset.apply(replica)
    assert replica.execute("SELECT * FROM s").fetchall() == [(1, "x")]
    assert isinstance(c, sss.Connection)  # every native API accepts it
    c.close()


def test_difference_not_a_database_fails_at_connect(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)
    theirs = stdlib.connect(path)  # the stdlib fails only at the first query
    with pytest.raises(stdlib.DatabaseError):
        theirs.execute("SELECT 1 FROM sqlite_master")
    theirs.close()
    with pytest.raises(ours.DatabaseError) as info:
        ours.connect(path)
    assert info.value.sqlite_errorname == "SQLITE_NOTADB"


def test_difference_invalid_utf8_text(tmp_path: Path) -> None:
    # The stdlib hands undecodable TEXT to a bytes text_factory; ours decodes
    # rows in C and reports it (read such values with CAST(col AS BLOB)).
    c = ours.connect(":memory:")
    c.text_factory = bytes
    with pytest.raises(ours.OperationalError):
        c.execute("SELECT CAST(x'ff' AS TEXT)").fetchall()
    assert c.execute("SELECT CAST(CAST(x'ff' AS TEXT) AS BLOB)").fetchone() == (b"\xff",)
    c.close()


def test_difference_threadsafety_and_concurrent_use() -> None:
    # One connection serves one thread at a time: threadsafety 1.
    assert ours.threadsafety == 1


def test_errors_are_package_and_stdlib_errors() -> None:
    assert issubclass(ours.Error, sss.Error)
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        assert issubclass(getattr(ours, name), getattr(stdlib, name))
    assert not issubclass(stdlib.Error, ours.Error)
    c = ours.connect(":memory:")
    with pytest.raises(sss.Error):
        c.execute("SELECT * FROM missing")
    c.close()
