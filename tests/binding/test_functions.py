"""User-defined functions, aggregates, window functions and collations on the
native connection, compared with the stdlib sqlite3 module where the
semantics coincide."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import sqlite_session_safe as sss

VALUES: list[Any] = [None, 0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 1.5, -0.0,
                     float("inf"), "", "abc", "é€😀", "a\0b", "x" * 300, b"", b"\x00\xff", b"y" * 70000]


@pytest.fixture
def mem() -> Any:
    c = sss.connect(":memory:")
    yield c
    c.close()


def both(db_path: Path) -> tuple[sss.Connection, sqlite3.Connection]:
    return sss.connect(db_path), sqlite3.connect(db_path.with_suffix(".std"))


# -- scalar functions -------------------------------------------------------------


def test_every_value_type_round_trips_like_stdlib(mem: sss.Connection) -> None:
    std = sqlite3.connect(":memory:")
    seen: list[Any] = []

    def ident(x: Any) -> Any:
        seen.append(x)
        return x

    for c in (mem, std):
        c.create_function("ident", 1, ident)
        c.execute("CREATE TABLE t(v)")
        c.executemany("INSERT INTO t VALUES (?)", [(v,) for v in VALUES])
    ours = mem.execute("SELECT ident(v), typeof(ident(v)) FROM t ORDER BY rowid").fetchall()
    theirs = std.execute("SELECT ident(v), typeof(ident(v)) FROM t ORDER BY rowid").fetchall()
    assert ours == theirs
    assert [row[0] for row in ours] == VALUES
    # the function saw exactly the values as rows come back
    assert seen[: 2 * len(VALUES)] == [v for v in VALUES for _ in range(2)]
    std.close()


def test_results_of_subclasses_and_buffers(mem: sss.Connection) -> None:
    class MyInt(int):
        pass

    class MyStr(str):
        pass

    results = iter([True, MyInt(7), MyStr("s"), bytearray(b"ba"), memoryview(b"abcdef")[::2], 2.5])
    mem.create_function("next_result", 0, lambda: next(results))
    mem.execute("CREATE TABLE r(v)")
    for _ in range(6):
        mem.execute("INSERT INTO r VALUES (next_result())")
    assert mem.execute("SELECT v, typeof(v) FROM r ORDER BY rowid").fetchall() == [
        (1, "integer"), (7, "integer"), ("s", "text"), (b"ba", "blob"), (b"ace", "blob"), (2.5, "real")]


@pytest.mark.parametrize("bad", [[1], {"a": 1}, object(), 1j, (1, 2)])
def test_unsupported_result_raises_binding_error_naming_function(mem: sss.Connection, bad: Any) -> None:
    mem.create_function("bad_result", 0, lambda: bad)
    with pytest.raises(sss.BindingError, match="bad_result.*unsupported type"):
        mem.execute("SELECT bad_result()")
    assert mem.execute("SELECT 1").fetchall() == [(1,)]  # still usable


def test_result_int_overflow(mem: sss.Connection) -> None:
    mem.create_function("huge", 0, lambda: 2**64)
    with pytest.raises(sss.BindingOverflowError, match="huge"):
        mem.execute("SELECT huge()")


def test_narg_and_any_count(mem: sss.Connection) -> None:
    mem.create_function("nargs", -1, lambda *a: len(a))
    mem.create_function("two", 2, lambda a, b: a + b)
    assert mem.execute("SELECT nargs(), nargs(1, 2, 3), two(1, 2)").fetchone() == (0, 3, 3)
    with pytest.raises(sss.SQLError, match="wrong number of arguments"):
        mem.execute("SELECT two(1)")
    with pytest.raises(sss.InterfaceError, match="narg"):
        mem.create_function("f", 10_000, len)
    with pytest.raises(sss.InterfaceError, match="narg"):
        mem.create_function("f", -2, len)
    with pytest.raises(sss.InterfaceError, match="callable"):
        mem.create_function("f", 1, 42)  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError, match="name"):
        mem.create_function(3, 1, len)  # type: ignore[arg-type]


def test_remove_and_replace(mem: sss.Connection) -> None:
    mem.create_function("f", 1, lambda x: x + 1)
    assert mem.execute("SELECT f(1)").fetchone() == (2,)
    mem.create_function("f", 1, lambda x: x + 2)
    assert mem.execute("SELECT f(1)").fetchone() == (3,)
    mem.create_function("f", 1, None)
    with pytest.raises(sss.SQLError, match="no such function"):
        mem.execute("SELECT f(1)")


def test_deterministic_function_in_index_expression(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.create_function("lower_det", 1, lambda s: s.lower(), deterministic=True)
    con.create_function("lower_any", 1, lambda s: s.lower())
    con.execute("CREATE TABLE t(s TEXT)")
    con.execute("CREATE INDEX t_lower ON t(lower_det(s))")
    with pytest.raises(sss.SQLError, match="non-deterministic"):
        con.execute("CREATE INDEX t_bad ON t(lower_any(s))")
    con.executemany("INSERT INTO t VALUES (?)", [("AbC",), ("xyz",)])
    plan = con.execute("EXPLAIN QUERY PLAN SELECT s FROM t WHERE lower_det(s) = 'abc'").fetchall()
    assert any("t_lower" in str(row) for row in plan)
    assert con.execute("SELECT s FROM t WHERE lower_det(s) = 'abc'").fetchall() == [("AbC",)]
    con.close()


# -- exceptions -------------------------------------------------------------------


class Boom(Exception):
    pass


def test_exception_is_raised_unchanged_and_statement_reset(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    err = Boom("at 500")

    def f(x: int) -> int:
        if x == 500:
            raise err
        return x

    con.create_function("f", 1, f)
    cur = con.execute("SELECT f(x) FROM t")
    with pytest.raises(Boom) as info:
        cur.fetchall()
    assert info.value is err
    # nothing holds the read transaction, the connection works, the cursor is done
    assert not con.in_transaction
    assert cur.fetchall() == []
    with pytest.raises(Boom):
        con.execute("UPDATE t SET x = f(x) + 1")
    assert con.execute("SELECT sum(x) FROM t").fetchone() == (sum(range(1000)),)  # rolled back
    with pytest.raises(Boom):
        con.executemany("INSERT INTO t VALUES (f(?))", [(1,), (500,), (2,)])
    with pytest.raises(Boom):
        con.executescript("SELECT 1; SELECT f(500); SELECT 2")
    with pytest.raises(Boom), con.transaction():
        con.execute("INSERT INTO t VALUES (f(500))")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1001,)  # executemany's first row
    con.close()


def test_keyboard_interrupt_in_function(mem: sss.Connection) -> None:
    def stop(x: int) -> int:
        if x == 3:
            raise KeyboardInterrupt
        return x

    mem.create_function("stop", 1, stop)
    with pytest.raises(KeyboardInterrupt):
        mem.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 10) "
                    "SELECT stop(x) FROM c").fetchall()
    assert mem.execute("SELECT stop(1)").fetchone() == (1,)


def test_invalid_utf8_argument(mem: sss.Connection) -> None:
    mem.create_function("f", 1, lambda x: x)
    with pytest.raises(sss.DataError, match="UTF-8"):
        mem.execute("SELECT f(CAST(x'ff' AS TEXT))")
    assert mem.execute("SELECT f(x'ff')").fetchone() == (b"\xff",)


# -- re-entrancy ------------------------------------------------------------------


def test_function_querying_same_connection_while_rows_fill(db_path: Path) -> None:
    """A function that runs SQL on its own connection, called for every row of
    an outer SELECT whose rows are large enough to grow the row buffer."""
    con = sss.connect(db_path)
    con.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, payload BLOB)")
    con.execute("CREATE TABLE small(id INTEGER PRIMARY KEY, v TEXT)")
    n = 300
    con.executemany("INSERT INTO big VALUES (?, ?)", [(i, bytes([i % 256]) * 20_000) for i in range(n)])
    con.executemany("INSERT INTO small VALUES (?, ?)", [(i, f"v{i}" * 50) for i in range(n)])

    def lookup(i: int) -> str:
        rows = con.execute("SELECT v, length(v) FROM small WHERE id IN (?, ?)", (i, (i + 1) % n)).fetchall()
        return "|".join(v for v, _ in rows)

    con.create_function("lookup", 1, lookup)
    rows = con.execute("SELECT id, payload, lookup(id) FROM big ORDER BY id").fetchall()
    assert len(rows) == n
    for i, payload, joined in rows:
        assert payload == bytes([i % 256]) * 20_000
        assert set(joined.split("|")) == {f"v{i}" * 50, f"v{(i + 1) % n}" * 50}
    # nested deeper: the function runs SQL that calls the function again
    def depth(d: int) -> int:
        return 0 if d == 0 else 1 + int(con.execute("SELECT depth(?)", (d - 1,)).fetchone()[0])

    con.create_function("depth", 1, depth)
    assert con.execute("SELECT depth(5)").fetchone() == (5,)
    con.close()


def test_replacing_a_function_while_it_runs(mem: sss.Connection) -> None:
    def f(x: int) -> int:
        # SQLite refuses to change a function a running statement uses.
        with pytest.raises(sss.BusyError, match="while a statement using it runs"):
            mem.create_function("f", 1, None)
        return x

    mem.create_function("f", 1, f)
    assert mem.execute("SELECT f(1)").fetchone() == (1,)
    # a different function, registered from inside a running one, is fine
    mem.create_function("g", 1, lambda x: mem.create_function("h", 0, lambda: 7) or x)
    assert mem.execute("SELECT g(1)").fetchone() == (1,)
    assert mem.execute("SELECT h()").fetchone() == (7,)


def test_other_thread_while_function_runs(mem: sss.Connection) -> None:
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def slow(x: int) -> int:
        inside.set()
        release.wait(10)
        return x

    mem.create_function("slow", 1, slow)

    def other() -> None:
        inside.wait(10)
        for call in (lambda: mem.execute("SELECT 1"),
                     lambda: mem.create_function("z", 0, lambda: 1),
                     lambda: mem.set_trace_callback(None)):
            try:
                call()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
        release.set()

    t = threading.Thread(target=other)
    t.start()
    assert mem.execute("SELECT slow(1)").fetchone() == (1,)
    t.join()
    assert len(errors) == 3 and all(isinstance(e, sss.ThreadingError) for e in errors)


def test_closed_connection(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.close()
    with pytest.raises(sss.ClosedError):
        con.create_function("f", 1, len)
    with pytest.raises(sss.ClosedError):
        con.create_aggregate("a", 1, object)


def test_registrations_released_on_close() -> None:
    from sqlite_session_safe.binding import functions

    before = len(functions._LIVE)
    con = sss.connect(":memory:")
    for i in range(20):
        con.create_function(f"f{i}", 1, lambda x: x)
    con.create_function("f0", 1, lambda x: x)  # replaces one
    assert len(functions._LIVE) == before + 20
    con.close()
    assert len(functions._LIVE) == before


# -- aggregates -------------------------------------------------------------------


class MySum:
    def __init__(self) -> None:
        self.total: Any = 0

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += value

    def finalize(self) -> Any:
        return self.total


class WindowSum(MySum):
    inverses = 0

    def inverse(self, value: Any) -> None:
        type(self).inverses += 1
        if value is not None:
            self.total -= value

    def value(self) -> Any:
        return self.total


def _fill_groups(c: Any) -> None:
    c.execute("CREATE TABLE g(k TEXT, v)")
    c.executemany("INSERT INTO g VALUES (?, ?)",
                  [(k, v) for k in "abc" for v in (1, 2.5, None, 10)] + [("d", None)])


def test_aggregate_groups_match_stdlib(mem: sss.Connection) -> None:
    std = sqlite3.connect(":memory:")
    for c in (mem, std):
        c.create_aggregate("mysum", 1, MySum)
        _fill_groups(c)
    for sql in ("SELECT k, mysum(v) FROM g GROUP BY k ORDER BY k",
                "SELECT mysum(v) FROM g WHERE k = 'zzz'",  # no row: NULL, no instance
                "SELECT mysum(v), count(*) FROM g"):
        assert mem.execute(sql).fetchall() == std.execute(sql).fetchall()
    assert mem.execute("SELECT mysum(v) FROM g WHERE k = 'zzz'").fetchone() == (None,)
    std.close()


def test_window_function_uses_inverse_and_matches_stdlib(mem: sss.Connection) -> None:
    mem.create_window_function("wsum", 1, WindowSum)
    mem.execute("CREATE TABLE w(x INTEGER)")
    mem.executemany("INSERT INTO w VALUES (?)", [(i,) for i in range(1, 21)])
    sql = ("SELECT x, wsum(x) OVER (ORDER BY x ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING), "
           "sum(x) OVER (ORDER BY x ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) FROM w ORDER BY x")
    WindowSum.inverses = 0
    rows = mem.execute(sql).fetchall()
    assert all(ours == builtin for _, ours, builtin in rows)
    assert WindowSum.inverses > 0  # the frame slid: rows left it through inverse()
    if hasattr(sqlite3.Connection, "create_window_function"):
        std = sqlite3.connect(":memory:")
        std.create_window_function("wsum", 1, WindowSum)
        std.execute("CREATE TABLE w(x INTEGER)")
        std.executemany("INSERT INTO w VALUES (?)", [(i,) for i in range(1, 21)])
        assert std.execute(sql).fetchall() == rows
        std.close()
    # partitions: one instance each
    got = mem.execute("SELECT x % 2, wsum(x) OVER (PARTITION BY x % 2) FROM w WHERE x <= 4 "
                      "ORDER BY x").fetchall()
    assert got == [(1, 4), (0, 6), (1, 4), (0, 6)]
    # a plain aggregate call of a window function works too
    assert mem.execute("SELECT wsum(x) FROM w").fetchone() == (210,)
    mem.create_window_function("wsum", 1, None)
    with pytest.raises(sss.SQLError, match="no such function"):
        mem.execute("SELECT wsum(x) OVER () FROM w")


@pytest.mark.parametrize("where", ["__init__", "step", "finalize", "value", "inverse"])
@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_exceptions_from_aggregate_methods(
    mem: sss.Connection, where: str, exc_type: type[BaseException]
) -> None:
    raised = exc_type(where)

    class Agg(WindowSum):
        def __init__(self) -> None:
            if where == "__init__":
                raise raised
            super().__init__()

    def fail(self: Any, *args: Any) -> Any:
        raise raised

    if where != "__init__":
        setattr(Agg, where, fail)
    mem.create_window_function("agg", 1, Agg)
    mem.execute("CREATE TABLE w(x)")
    mem.executemany("INSERT INTO w VALUES (?)", [(i,) for i in range(50)])
    sql = ("SELECT agg(x) OVER (ORDER BY x ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM w"
           if where in ("value", "inverse") else "SELECT agg(x) FROM w")
    with pytest.raises(exc_type) as info:
        mem.execute(sql).fetchall()
    assert info.value is raised
    assert not mem.in_transaction
    assert mem.execute("SELECT count(*) FROM w").fetchone() == (50,)


def test_aggregate_without_methods(mem: sss.Connection) -> None:
    mem.create_aggregate("noagg", 1, object)
    with pytest.raises(AttributeError, match="step"):
        mem.execute("SELECT noagg(1)")


def test_aggregate_instances_released(mem: sss.Connection) -> None:
    from sqlite_session_safe.binding import functions

    mem.create_aggregate("mysum", 1, MySum)
    _fill_groups(mem)
    mem.execute("SELECT k, mysum(v) FROM g GROUP BY k").fetchall()
    # a cursor abandoned in the middle: SQLite still finalizes the groups
    cur = mem.execute("SELECT k, mysum(v) FROM g GROUP BY k")
    cur.fetchone()
    cur.close()
    regs = [r for r in functions._LIVE if r.state is mem.sss_callbacks]
    assert regs and all(not r.instances for r in regs)


# -- collations -------------------------------------------------------------------


def _reverse(a: str, b: str) -> int:
    return (a < b) - (a > b)


def test_collation_orders_like_stdlib(mem: sss.Connection) -> None:
    std = sqlite3.connect(":memory:")
    words = ["pear", "Apple", "banana", "é", "apple", "", "Zed"]
    for c in (mem, std):
        c.create_collation("reverse", _reverse)
        c.create_collation("nocase_py", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
        c.execute("CREATE TABLE w(s TEXT)")
        c.executemany("INSERT INTO w VALUES (?)", [(w,) for w in words])
    for sql in ("SELECT s FROM w ORDER BY s COLLATE reverse",
                "SELECT s FROM w ORDER BY s COLLATE nocase_py, s",
                "SELECT count(*) FROM w WHERE s = 'APPLE' COLLATE nocase_py"):
        assert mem.execute(sql).fetchall() == std.execute(sql).fetchall()
    mem.create_collation("reverse", None)
    with pytest.raises(sss.SQLError, match="no such collation"):
        mem.execute("SELECT s FROM w ORDER BY s COLLATE reverse")
    std.close()


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_collation_exception_raised_after_statement(mem: sss.Connection, exc_type: type) -> None:
    raised = exc_type("compare")

    def bad(a: str, b: str) -> int:
        raise raised

    mem.create_collation("bad", bad)
    mem.execute("CREATE TABLE w(s TEXT)")
    mem.executemany("INSERT INTO w VALUES (?)", [("b",), ("a",), ("c",)])
    with pytest.raises(exc_type) as info:
        mem.execute("SELECT s FROM w ORDER BY s COLLATE bad").fetchall()
    assert info.value is raised
    mem.create_collation("bad", lambda a, b: "x")  # type: ignore[arg-type,return-value]
    with pytest.raises(sss.InterfaceError, match="must return an int"):
        mem.execute("SELECT s FROM w ORDER BY s COLLATE bad").fetchall()
    assert mem.execute("SELECT count(*) FROM w").fetchone() == (3,)


def test_collation_bad_arguments(mem: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError):
        mem.create_collation("c", "not callable")  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError):
        mem.create_collation("a\0b", _reverse)
