"""The per-query hot path (``_hotpath``, csrc/hotpath/hotpath.c) against the
marshal path it replaces for execute()'s first rows (csrc/bind.c, rows.c) and
against the stdlib ``sqlite3``: the same values, the same errors, the same
behaviour under callbacks, threads, interrupts and closing."""

from __future__ import annotations

import math
import os
import sqlite3 as stdlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqlite_session_safe as sss
import sqlite_session_safe.dbapi as dbapi
from sqlite_session_safe import _hotpath, _native
from sqlite_session_safe.binding.cursor import FIRST_BATCH_ROWS


class Params(tuple):  # type: ignore[type-arg]
    """A tuple subclass: the hot path leaves it to the marshal path."""


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    st.binary(),
)
ROWS = st.lists(VALUES, min_size=1, max_size=6)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and -0.0 differs from 0.0 (types too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


@pytest.fixture(scope="module")
def cons() -> Any:
    ours = sss.connect(":memory:")
    theirs = stdlib.connect(":memory:", isolation_level=None)
    face = dbapi.connect(":memory:", isolation_level=None)
    yield ours, theirs, face
    ours.close()
    theirs.close()
    face.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=ROWS)
def test_values_round_trip_like_the_marshal_path_and_the_stdlib(cons: Any, row: list[Any]) -> None:
    ours, theirs, face = cons
    sql = "SELECT " + ", ".join("?" for _ in row)
    hot = ours.execute(sql, tuple(row)).fetchone()
    assert _same(hot, ours.execute(sql, list(row)).fetchone())
    assert _same(hot, ours.execute(sql, Params(row)).fetchone())  # the marshal path
    assert _same(hot, theirs.execute(sql, tuple(row)).fetchone())
    assert _same(hot, face.execute(sql, tuple(row)).fetchone())
    named = "SELECT " + ", ".join(f":p{i}" for i in range(len(row)))
    assert _same(hot, ours.execute(named, {f"p{i}": v for i, v in enumerate(row)}).fetchone())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROWS.map(lambda r: (r + [None] * 6)[:6]), min_size=0, max_size=FIRST_BATCH_ROWS + 40))
def test_stored_rows_across_the_first_batch(cons: Any, rows: list[list[Any]]) -> None:
    """Rows read back from a table: the first batch comes from the hot path,
    the rest from the marshal path; both agree with the stdlib."""
    ours, theirs, _ = cons
    for con in (ours, theirs):
        con.execute("DROP TABLE IF EXISTS r")
        con.execute("CREATE TABLE r(a, b, c, d, e, f)")
        con.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)", rows)
    mine = ours.execute("SELECT * FROM r ORDER BY rowid").fetchall()
    assert _same(tuple(mine), tuple(theirs.execute("SELECT * FROM r ORDER BY rowid").fetchall()))
    assert _same(tuple(mine), tuple(ours.execute("SELECT * FROM r ORDER BY rowid")))


def test_big_ints_surrogates_and_subclasses_take_the_marshal_path() -> None:
    con = sss.connect(":memory:")
    for bad in (2**63, -(2**63) - 1):
        with pytest.raises(sss.BindingOverflowError) as hot:
            con.execute("SELECT ?", (bad,))
        with pytest.raises(sss.BindingOverflowError) as packed:
            con.execute("SELECT ?", Params((bad,)))
        assert str(hot.value) == str(packed.value)
    # A lone surrogate is stored the way marshal encodes it ("surrogatepass").
    assert con.execute("SELECT ?", ("a\ud800b",)).fetchone() == ("a\ud800b",)
    assert con.execute("SELECT CAST(? AS BLOB)", ("\ud800",)).fetchone() == (b"\xed\xa0\x80",)

    class Text(str):
        pass

    assert con.execute("SELECT ?, ?, ?", (Text("x"), True, bytearray(b"ab"))).fetchone() == ("x", 1, b"ab")
    with pytest.raises(sss.BindingError, match="parameter 2 has unsupported type object"):
        con.execute("SELECT ?, ?", (1, object()))
    with pytest.raises(sss.BindingError, match="takes 2 parameters, 1 given"):
        con.execute("SELECT ?, ?", (1,))
    with pytest.raises(sss.BindingError, match="takes 1 parameter, 0 given"):
        con.execute("SELECT ?")
    # Every failure above returned its statement to the cache, unharmed.
    assert con.execute("SELECT ?, ?", (1, 2)).fetchone() == (1, 2)
    con.close()


def test_sqlite_bind_errors_match_the_marshal_path() -> None:
    con = sss.connect(":memory:")
    con.setlimit(_native.lib.SQLITE_LIMIT_LENGTH, 10)  # binding 100 bytes: SQLITE_TOOBIG
    with pytest.raises(sss.Error) as hot:
        con.execute("SELECT ?", ("x" * 100,))
    with pytest.raises(sss.Error) as packed:
        con.execute("SELECT ?", Params(("x" * 100,)))
    assert type(hot.value) is type(packed.value)
    assert str(hot.value) == str(packed.value)
    con.close()


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "bad.db")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)")
    con.executemany("INSERT INTO t(s) VALUES (?)", [("ok",)] * (FIRST_BATCH_ROWS + 10))
    con.execute("INSERT INTO t(s) VALUES (CAST(x'ff61' AS TEXT))")
    (bad,) = con.execute("SELECT max(id) FROM t").fetchall()[0]
    con.executemany("INSERT INTO t(s) VALUES (?)", [("ok",)] * (FIRST_BATCH_ROWS + 10))
    # In the first batch (hot path) and in a later one (marshal path): the same error.
    with pytest.raises(sss.DataError) as hot:
        con.execute("SELECT s FROM t WHERE id = ?", (bad,))
    cur = con.execute("SELECT s FROM t ORDER BY id")
    with pytest.raises(sss.DataError) as later:
        cur.fetchall()
    assert str(hot.value) == str(later.value)
    assert "not valid UTF-8" in str(hot.value)
    # Inside a first batch with more rows after it: the statement was still
    # active when decoding failed.
    with pytest.raises(sss.DataError) as middle:
        con.execute("SELECT s FROM t WHERE id >= ? ORDER BY id", (bad - 3,))
    assert str(middle.value) == str(hot.value)
    # None left a statement holding the read lock: another connection can
    # write at once (it would need the lock gone to commit).
    other = sss.connect(tmp_path / "bad.db", timeout=0)
    other.execute("INSERT INTO t(s) VALUES ('other')")
    other.close()
    assert con.execute("SELECT CAST(s AS BLOB) FROM t WHERE id = ?", (bad,)).fetchone() == (b"\xffa",)
    con.close()


def test_reentrant_point_queries_from_a_user_function() -> None:
    con = sss.connect(":memory:")
    con.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO kv VALUES (?, ?)", [(i, f"v{i}") for i in range(200)])

    def lookup(k: int) -> str:
        # The outer statement is stepping: this nested query runs the same SQL
        # (a second statement is prepared: the first is checked out).
        row = con.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()
        assert row is not None
        return str(row[0]) + "!"

    con.create_function("lookup", 1, lookup)
    rows = con.execute("SELECT k, lookup(k) FROM kv WHERE k = ?", (7,)).fetchall()
    assert rows == [(7, "v7!")]
    many = con.execute("SELECT lookup(k) FROM kv ORDER BY k").fetchall()
    assert many == [(f"v{i}!",) for i in range(200)]
    con.close()


def test_exception_from_a_user_function_in_the_first_batch() -> None:
    con = sss.connect(":memory:")

    def boom(x: int) -> int:
        raise KeyError(x)

    con.create_function("boom", 1, boom)
    with pytest.raises(KeyError):
        con.execute("SELECT boom(?)", (3,))
    assert con.execute("SELECT ?", (1,)).fetchone() == (1,)
    face = dbapi.connect(":memory:")
    face.create_function("boom", 1, boom)
    with pytest.raises(dbapi.OperationalError) as info:
        face.execute("SELECT boom(?)", (3,))
    assert isinstance(info.value.__cause__, KeyError)
    con.close()
    face.close()


def test_a_second_thread_is_refused_while_a_step_runs() -> None:
    """The GIL is released during the step; the connection's lock still keeps
    a second thread out (never two threads inside SQLite on one connection)."""
    con = sss.connect(":memory:")
    inside = threading.Event()
    release = threading.Event()
    seen: list[BaseException] = []

    def wait(x: int) -> int:
        inside.set()
        release.wait(10)
        return x

    con.create_function("wait", 1, wait)

    def other() -> None:
        inside.wait(10)
        try:
            con.execute("SELECT ?", (1,))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            seen.append(exc)
        finally:
            release.set()

    t = threading.Thread(target=other)
    t.start()
    assert con.execute("SELECT wait(?)", (5,)).fetchone() == (5,)
    t.join()
    assert len(seen) == 1 and isinstance(seen[0], sss.ThreadingError)
    con.close()


def test_dbapi_thread_check_and_closed_connection(tmp_path: Path) -> None:
    con = dbapi.connect(tmp_path / "t.db")
    con.execute("CREATE TABLE t(x)")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            con.execute("SELECT ?", (1,))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], dbapi.ProgrammingError)
    assert "same thread" in str(errors[0])
    cur = con.cursor()
    con.close()
    with pytest.raises(dbapi.ProgrammingError, match="closed database"):
        con.execute("SELECT ?", (1,))
    with pytest.raises(dbapi.ProgrammingError, match="closed database"):
        cur.execute("SELECT ?", (1,))
    native = sss.connect(":memory:")
    ncur = native.cursor()
    native.close()
    with pytest.raises(sss.ClosedError):
        ncur.execute("SELECT ?", (1,))


def test_interrupt_reaches_a_point_query_in_the_hot_path() -> None:
    con = sss.connect(":memory:")
    done = threading.Event()

    def interrupter() -> None:
        # Runs while the main thread is inside sqlite3_step: only possible
        # because the hot path releases the GIL around it.
        while not done.wait(0.01):
            con.interrupt()

    t = threading.Thread(target=interrupter)
    t.start()
    try:
        with pytest.raises(sss.InterruptError):
            con.execute(
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
                "SELECT count(*) FROM r WHERE i = ?",
                (-1,),
            )
    finally:
        done.set()
        t.join()
    assert con.execute("SELECT ?", (2,)).fetchone() == (2,)
    con.close()


def test_schema_change_refreshes_the_description() -> None:
    con = sss.connect(":memory:")
    con.execute("CREATE TABLE t(a)")
    con.execute("INSERT INTO t VALUES (1)")
    sql = "SELECT * FROM t WHERE a = ?"
    cur = con.execute(sql, (1,))
    assert [d[0] for d in cur.description or ()] == ["a"] and cur.fetchall() == [(1,)]
    con.execute("ALTER TABLE t ADD COLUMN b DEFAULT 'x'")
    cur = con.execute(sql, (1,))  # the cached statement is re-prepared on step
    assert [d[0] for d in cur.description or ()] == ["a", "b"]
    assert cur.fetchall() == [(1, "x")]
    con.close()


def test_rowcount_and_lastrowid_through_the_hot_path(tmp_path: Path) -> None:
    for mod in (stdlib, dbapi):
        con = mod.connect(tmp_path / f"{mod.__name__}.db")
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        cur = con.execute("INSERT INTO t(x) VALUES (?)", (1,))
        assert (cur.rowcount, cur.lastrowid) == (1, 1)
        assert con.in_transaction  # the implicit BEGIN of legacy mode
        con.commit()
        cur = con.execute("UPDATE t SET x = ? WHERE id > ?", (2, 0))
        assert cur.rowcount == 1 and con.in_transaction
        con.rollback()
        assert con.execute("SELECT x FROM t").fetchone() == (1,)
        assert not con.in_transaction
        # A statement that fails to prepare issues no BEGIN.
        with pytest.raises(mod.OperationalError):
            con.execute("INSERT INTO missing VALUES (?)", (1,))
        assert not con.in_transaction
        con.executemany("INSERT INTO t(x) VALUES (?)", [(3,), (4,)])
        assert con.in_transaction
        con.commit()
        con.close()


def test_one_sqlite_in_the_process() -> None:
    """_hotpath calls _native's SQLite; it carries no engine of its own."""
    magic = b"SQLite format 3"  # the database header string, compiled into the engine
    assert magic in Path(_native.__file__).read_bytes()
    assert magic not in Path(_hotpath.__file__).read_bytes()
    with pytest.raises(ImportError, match="different builds"):
        _hotpath.init(1, 3)


def test_hotpath_refuses_to_run_before_init() -> None:
    # A fresh process that loads the extension without the package (whose
    # import runs init()).
    code = (
        "import importlib.machinery, importlib.util, sys\n"
        "loader = importlib.machinery.ExtensionFileLoader('_hotpath', sys.argv[1])\n"
        "spec = importlib.util.spec_from_file_location('_hotpath', sys.argv[1], loader=loader)\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "loader.exec_module(m)\n"
        "try:\n"
        "    m.execute(0, None, 1, 1)\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, _hotpath.__file__], capture_output=True, text=True, check=True
    )
    assert "refused: " in out.stdout and "init() has not run" in out.stdout


def test_trylock() -> None:
    lock = _hotpath.TryLock()
    assert not lock.is_owned()
    assert lock.acquire(False) and lock.acquire(False)  # re-entrant
    assert lock.is_owned()
    seen: list[object] = []

    def other() -> None:
        seen.append(lock.acquire(False))
        seen.append(lock.is_owned())
        try:
            lock.release()
        except RuntimeError as exc:
            seen.append(str(exc))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [False, False, "cannot release un-acquired lock"]
    lock.release()
    assert lock.is_owned()
    lock.release()
    assert not lock.is_owned()
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()
    with pytest.raises(ValueError, match="only tried"):
        lock.acquire(True)
    # Free again: another thread may take it now.
    t = threading.Thread(target=lambda: seen.append(lock.acquire(False)))
    t.start()
    t.join()
    assert seen[-1] is True and not lock.is_owned()


def test_statement_cache_stays_bounded_with_nested_and_repeated_sql() -> None:
    con = sss.connect(":memory:", cached_statements=3)
    con.create_function("inner", 1, lambda x: con.execute("SELECT ? + 1", (x,)).fetchall()[0][0])
    for i in range(30):
        sql = f"SELECT inner(?) + {i % 7}"
        assert con.execute(sql, (i,)).fetchone() == (i + 1 + i % 7,)
        assert con.execute("SELECT ? + 1", (i,)).fetchone() == (i + 1,)
        assert len(con.statements) <= 3
    con.close()


class _WindowSum:
    """A user window function; SQLite calls finalize() when a statement is
    reset while its frame is open."""

    finalized = 0
    fail = False

    def __init__(self) -> None:
        self.total = 0

    def step(self, x: int) -> None:
        self.total += x

    def inverse(self, x: int) -> None:
        self.total -= x

    def value(self) -> int:
        return self.total

    def finalize(self) -> int:
        # Ordinary Python calls: each would raise SystemError if this ran
        # with an exception already set.
        type(self).finalized += len(str(sorted([3, 1, 2])))
        if type(self).fail:
            raise ValueError("finalize failed")
        return self.total


_WINDOW_SQL = "SELECT wsum(x) OVER (ORDER BY id ROWS 1 PRECEDING), s FROM t WHERE id > ?"


def _window_table(con: Any) -> int:
    """A table whose 5th row has TEXT that is not UTF-8, with more rows after
    the first batch (so the statement is still running when decoding fails)."""
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x, s)")
    con.executemany("INSERT INTO t(x, s) VALUES (?, 'ok')", [(i,) for i in range(FIRST_BATCH_ROWS + 30)])
    con.execute("UPDATE t SET s = CAST(x'ff61' AS TEXT) WHERE id = 5")
    con.create_window_function("wsum", 1, _WindowSum)
    return FIRST_BATCH_ROWS + 30


def test_bad_text_resets_a_running_window_function_cleanly() -> None:
    """The reset after a decode error makes SQLite call the window function's
    finalize(), which must not run with the UnicodeDecodeError pending (it
    failed with SystemError, and the call returned NULL without an exception)."""
    con = sss.connect(":memory:")
    n = _window_table(con)
    _WindowSum.finalized, _WindowSum.fail = 0, False
    with pytest.raises(sss.DataError, match="not valid UTF-8"):
        con.execute(_WINDOW_SQL, (0,))
    assert _WindowSum.finalized > 0  # the reset above did run finalize()
    rows = con.execute(_WINDOW_SQL, (5,)).fetchall()
    assert len(rows) == n - 5 and rows[:2] == [(5, "ok"), (5 + 6, "ok")]  # x = id - 1
    con.close()


def test_error_in_finalize_during_that_reset_is_not_raised_later() -> None:
    con = sss.connect(":memory:")
    _window_table(con)
    _WindowSum.finalized, _WindowSum.fail = 0, True
    try:
        with pytest.raises(sss.DataError):
            con.execute(_WINDOW_SQL, (0,))
        assert _WindowSum.finalized > 0
    finally:
        _WindowSum.fail = False
    assert con.execute("SELECT ?", (1,)).fetchone() == (1,)
    con.close()


def test_bad_text_through_the_marshal_fallback_leaves_no_lock(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "bad.db")
    _window_table(con)
    with pytest.raises(sss.DataError):
        con.execute("SELECT s FROM t WHERE id >= ? ORDER BY id", Params((1,)))
    other = sss.connect(tmp_path / "bad.db", timeout=0)
    try:
        other.execute("INSERT INTO t(x, s) VALUES (0, 'other')")  # BusyError while a read is open
    finally:
        other.close()
        con.close()


@pytest.mark.skipif(sys.maxsize < 2**32, reason="a 2 GiB bytes object needs a 64-bit address space")
def test_values_over_2gib_raise_sqlites_too_big_error() -> None:
    """Beyond SQLITE_MAX_LENGTH the hot path reports SQLite's own error, as
    for any value over the length limit; falling back to the marshal path
    raised ValueError("unmarshallable object"): marshal cannot pack 2 GiB."""
    huge = bytes(2**31 + 1)  # calloc'ed: no page of it is touched
    con = sss.connect(":memory:")
    face = dbapi.connect(":memory:")
    try:
        for params in ((huge,), [huge], {"v": huge}):
            with pytest.raises(sss.TooBigError, match="string or blob too big"):
                con.execute("SELECT length(:v)", params)
        with pytest.raises(dbapi.DataError, match="string or blob too big"):
            face.execute("SELECT length(?)", (huge,))
        # The marshal path (executemany, a tuple subclass, a memoryview), whose
        # format cannot hold 2 GiB, says the same instead of "unmarshallable".
        con.execute("CREATE TABLE big(b)")
        for run in (lambda: con.executemany("INSERT INTO big VALUES (?)", [(b"x",), (huge,)]),
                    lambda: con.execute("SELECT length(?)", Params((huge,))),
                    lambda: con.execute("SELECT length(?)", (memoryview(huge),))):
            with pytest.raises(sss.TooBigError, match="string or blob too big"):
                run()
        assert con.execute("SELECT count(*) FROM big").fetchone() == (0,)
        # The statement was left unharmed and goes on binding as before.
        assert con.execute("SELECT length(:v)", (b"ab",)).fetchone() == (2,)
    finally:
        con.close()
        face.close()


_OOM_CHILD = r"""
import resource, sys
import sqlite_session_safe as sss
path, size = sys.argv[1], int(sys.argv[2])
con = sss.connect(path)
con.execute("CREATE TABLE t(x)")
con.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])

def address_space():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()

# SQLite materializes the zeroblob (size), the hot path copies it into its
# batch (size), then builds the bytes object (size): the limits below make
# one stage after the other fail.
for slack in (0.5, 1.5, 2.5, 0.5, 1.5, 2.5):
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + int(size * slack), resource.RLIM_INFINITY))
    try:
        cur = con.execute("SELECT zeroblob(?) FROM t", (size,))  # the first batch: one row
        outcome = "rows %d" % len(cur.fetchmany(1)[0][0])
        cur.close()
    except (MemoryError, sss.NoMemError) as exc:  # Python's, or SQLite's (SQLITE_NOMEM)
        outcome = "%s: %s" % (type(exc).__name__, exc)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    # Whatever failed, no statement was left holding the read lock.
    other = sss.connect(path, timeout=0)
    other.execute("INSERT INTO t VALUES (4)")
    other.execute("DELETE FROM t WHERE x = 4")
    other.close()
    print(outcome)
print("after:", con.execute("SELECT length(zeroblob(?)) FROM t", (size,)).fetchall())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux only")
@pytest.mark.skipif(
    "asan" in os.environ.get("LD_PRELOAD", ""), reason="AddressSanitizer reserves terabytes of address space"
)
def test_out_of_memory_while_building_the_first_batch(tmp_path: Path) -> None:
    """Out of memory at each stage of a first batch (SQLite's copy, the C-side
    batch, the Python objects): MemoryError, the statement reset, the
    connection still usable; the C-side failure carries the marshal path's
    message."""
    size = 32 << 20
    out = subprocess.run(
        # -S as this process was run (README's AddressSanitizer recipe): the
        # child then imports the same copy of the package.
        [sys.executable, *(["-S"] if sys.flags.no_site else []), "-c", _OOM_CHILD]
        + [str(tmp_path / "oom.db"), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == f"after: {[(size,)] * 3}"
    outcomes = lines[:-1]
    assert len(outcomes) == 6
    kinds = {o.split(":")[0] for o in outcomes}
    assert kinds <= {"MemoryError", "NoMemError", f"rows {size}"}, outcomes
    assert "MemoryError: out of memory while reading rows" in outcomes, outcomes
