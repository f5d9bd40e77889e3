"""User functions, aggregates, window functions, collations, authorizer,
progress handler, trace callback, limits and blobs through the DB-API
connection, against the stdlib ``sqlite3`` and ours (the ``mod`` fixture)."""

from __future__ import annotations

import sqlite3 as stdlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import sqlite_session_safe.dbapi as ours


def stdlib_since(mod: ModuleType, version: tuple[int, int], what: str) -> None:
    """Skip for the stdlib on a Python older than ``version`` (ours has
    ``what`` on every supported Python)."""
    if mod is stdlib and sys.version_info < version:
        pytest.skip(f"the stdlib has {what} from Python {version[0]}.{version[1]}")


@pytest.fixture(params=["stdlib", "ours"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return stdlib if request.param == "stdlib" else ours


@pytest.fixture
def con(mod: ModuleType) -> Iterator[Any]:
    c = mod.connect(":memory:")
    c.execute("CREATE TABLE t(x INTEGER, s TEXT)")
    c.executemany("INSERT INTO t VALUES (?, ?)", [(1, "b"), (2, "a"), (3, "C")])
    c.commit()
    yield c
    c.close()


def test_create_function(con: Any, mod: ModuleType) -> None:
    con.create_function("double", 1, lambda v: v * 2, deterministic=True)
    con.create_function("blobby", 0, lambda: b"\x00\x01")
    assert con.execute("SELECT double(x) FROM t ORDER BY x").fetchall() == [(2,), (4,), (6,)]
    assert con.execute("SELECT double('ab'), blobby()").fetchone() == ("abab", b"\x00\x01")
    con.create_function("double", 1, None)
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT double(1)")
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT blobby(1)").fetchall()  # wrong argument count: SQL error


def boom(*args: Any) -> Any:
    raise ValueError("boom")


def test_function_exception_and_bad_result(con: Any, mod: ModuleType) -> None:
    con.create_function("boom", -1, boom)
    con.create_function("bad", 0, lambda: object())
    with pytest.raises(mod.OperationalError) as info:
        con.execute("SELECT boom(x) FROM t").fetchall()
    assert str(info.value) == "user-defined function raised exception"
    with pytest.raises(mod.OperationalError) as info:
        con.execute("SELECT bad()").fetchall()
    assert "user-defined function raised exception" in str(info.value)
    # the connection is fine afterwards
    assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_callback_tracebacks(con: Any, mod: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    stdlib_since(mod, (3, 11), "sys.unraisablehook for callback tracebacks")
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    con.create_function("boom", 0, boom)
    mod.enable_callback_tracebacks(True)
    try:
        with pytest.raises(mod.OperationalError):
            con.execute("SELECT boom()").fetchall()
    finally:
        mod.enable_callback_tracebacks(False)
    assert len(seen) == 1 and isinstance(seen[0], ValueError)
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT boom()").fetchall()
    assert len(seen) == 1


def test_ours_chains_the_original_exception() -> None:
    c = ours.connect(":memory:")
    c.create_function("boom", 0, boom)
    with pytest.raises(ours.OperationalError) as info:
        c.execute("SELECT boom()")
    assert isinstance(info.value.__cause__, ValueError) and str(info.value.__cause__) == "boom"
    c.close()


class Sum:
    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int) -> None:
        self.total += value

    def finalize(self) -> int:
        return self.total


class WindowSum(Sum):
    def inverse(self, value: int) -> None:
        self.total -= value

    def value(self) -> int:
        return self.total


class BadStep(Sum):
    def step(self, value: int) -> None:
        raise KeyError(value)


def test_aggregates_and_window_functions(con: Any, mod: ModuleType) -> None:
    stdlib_since(mod, (3, 11), "window functions")
    con.create_aggregate("mysum", 1, Sum)
    assert con.execute("SELECT mysum(x) FROM t").fetchone() == (6,)
    con.create_window_function("winsum", 1, WindowSum)
    rows = con.execute(
        "SELECT x, winsum(x) OVER (ORDER BY x ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t"
    ).fetchall()
    assert rows == [(1, 1), (2, 3), (3, 5)]
    con.create_aggregate("badsum", 1, BadStep)
    with pytest.raises(mod.OperationalError) as info:
        con.execute("SELECT badsum(x) FROM t").fetchall()
    assert "'step' method raised error" in str(info.value)


def test_collation(con: Any, mod: ModuleType) -> None:
    con.create_collation("nocase_rev", lambda a, b: (b.lower() > a.lower()) - (b.lower() < a.lower()))
    assert [r[0] for r in con.execute("SELECT s FROM t ORDER BY s COLLATE nocase_rev")] == ["C", "b", "a"]
    con.create_collation("broken", boom)
    with pytest.raises(ValueError):  # the collation's own exception, unchanged
        con.execute("SELECT s FROM t ORDER BY s COLLATE broken").fetchall()
    con.create_collation("not_int", lambda a, b: "x")  # compares equal
    assert len(con.execute("SELECT s FROM t ORDER BY s COLLATE not_int").fetchall()) == 3
    with pytest.raises(TypeError):
        con.create_collation("x", 42)
    con.create_collation("nocase_rev", None)
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT s FROM t ORDER BY s COLLATE nocase_rev")


def test_authorizer(con: Any, mod: ModuleType) -> None:
    stdlib_since(mod, (3, 11), "SQLITE_* authorizer action constants")
    def deny_s(action: int, arg1: Any, arg2: Any, db: Any, trigger: Any) -> int:
        if action == mod.SQLITE_READ and arg2 == "s":
            return mod.SQLITE_DENY
        return mod.SQLITE_OK

    con.set_authorizer(deny_s)
    assert con.execute("SELECT x FROM t WHERE x = 1").fetchone() == (1,)
    with pytest.raises(mod.DatabaseError) as info:
        con.execute("SELECT s FROM t")
    assert info.value.sqlite_errorname == "SQLITE_AUTH"
    con.set_authorizer(lambda *a: mod.SQLITE_IGNORE if a[0] == mod.SQLITE_READ and a[2] == "s" else 0)
    assert con.execute("SELECT s FROM t WHERE x = 1").fetchone() == (None,)
    con.set_authorizer(boom)
    with pytest.raises(mod.DatabaseError):
        con.execute("SELECT x FROM t")
    con.set_authorizer(None)
    assert con.execute("SELECT s FROM t WHERE x = 1").fetchone() == ("b",)


def test_progress_handler_and_trace(con: Any, mod: ModuleType) -> None:
    calls: list[int] = []
    con.set_progress_handler(lambda: calls.append(1), 10)
    con.execute("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 1000) "
                "SELECT count(*) FROM r").fetchall()
    assert calls
    con.set_progress_handler(lambda: 1, 1)
    with pytest.raises(mod.OperationalError) as info:
        con.execute("SELECT count(*) FROM t").fetchall()
    assert "interrupted" in str(info.value)
    con.set_progress_handler(boom, 1)
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT count(*) FROM t").fetchall()
    con.set_progress_handler(None, 1)
    traced: list[str] = []
    con.set_trace_callback(traced.append)
    con.execute("SELECT 42")
    con.set_trace_callback(boom)
    con.execute("SELECT 43")  # errors in the trace callback are ignored
    con.set_trace_callback(None)
    assert "SELECT 42" in traced


def test_limits(con: Any, mod: ModuleType) -> None:
    stdlib_since(mod, (3, 11), "limits")
    old = con.getlimit(mod.SQLITE_LIMIT_LENGTH)
    assert con.setlimit(mod.SQLITE_LIMIT_LENGTH, 100) == old
    assert con.getlimit(mod.SQLITE_LIMIT_LENGTH) == 100
    with pytest.raises(mod.DataError):
        con.execute("SELECT ?", ("x" * 200,))
    con.setlimit(mod.SQLITE_LIMIT_LENGTH, old)
    with pytest.raises(mod.ProgrammingError):
        con.getlimit(1000)


def test_blobopen(con: Any, mod: ModuleType) -> None:
    stdlib_since(mod, (3, 11), "blobopen")
    con.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("INSERT INTO b VALUES (1, zeroblob(8))")
    con.commit()
    with con.blobopen("b", "data", 1) as blob:
        assert isinstance(blob, mod.Blob)
        blob.write(b"abcd")
        blob.seek(0)
        assert blob.read(2) == b"ab" and blob.tell() == 2 and len(blob) == 8
        assert blob[0] == ord("a") and blob[1:3] == b"bc"
        blob[7] = ord("z")
        with pytest.raises(ValueError):
            blob.write(b"x" * 20)
        with pytest.raises(IndexError):
            blob[8]
    with pytest.raises(mod.ProgrammingError):
        blob.read()
    assert con.execute("SELECT data FROM b").fetchone() == (b"abcd\x00\x00\x00z",)
    with pytest.raises(mod.OperationalError):
        con.blobopen("nope", "data", 1)
    with con.blobopen("b", "data", 1, readonly=True) as blob:
        with pytest.raises(mod.OperationalError):
            blob.write(b"q")
