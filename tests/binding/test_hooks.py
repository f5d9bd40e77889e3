"""Authorizer, progress handler, trace callback, limits and extension loading
on the native connection, compared with the stdlib sqlite3 module where the
semantics coincide."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _source import source_path

import sqlite_session_safe as sss

LONG_QUERY = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) "
              "SELECT count(*) FROM c")


class Boom(Exception):
    pass


@pytest.fixture
def mem() -> Any:
    c = sss.connect(":memory:")
    c.execute("CREATE TABLE t(a INTEGER, secret TEXT)")
    c.execute("INSERT INTO t VALUES (1, 'hidden')")
    yield c
    c.close()


# -- authorizer -------------------------------------------------------------------


def test_constants_match_stdlib() -> None:
    for name in ("SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE", "SQLITE_CREATE_INDEX", "SQLITE_READ",
                 "SQLITE_SELECT", "SQLITE_RECURSIVE", "SQLITE_LIMIT_LENGTH",
                 "SQLITE_LIMIT_VARIABLE_NUMBER", "SQLITE_LIMIT_WORKER_THREADS"):
        if hasattr(sqlite3, name):
            assert getattr(sss, name) == getattr(sqlite3, name), name
        assert name in sss.__all__


def test_authorizer_sees_actions_like_stdlib(mem: sss.Connection) -> None:
    std = sqlite3.connect(":memory:", isolation_level=None)
    std.execute("CREATE TABLE t(a INTEGER, secret TEXT)")
    calls: dict[str, list[tuple[Any, ...]]] = {"ours": [], "std": []}
    for key, c in (("ours", mem), ("std", std)):
        c.set_authorizer(lambda *args, key=key: calls[key].append(args) or sss.SQLITE_OK)  # type: ignore[misc]
        c.execute("SELECT a FROM t WHERE secret = 'x'").fetchall()
        c.execute("CREATE INDEX ia ON t(a)")
    assert calls["ours"] == calls["std"]
    assert (sss.SQLITE_READ, "t", "secret", "main", None) in calls["ours"]
    assert any(call[0] == sss.SQLITE_CREATE_INDEX for call in calls["ours"])
    std.close()


def test_authorizer_deny_and_ignore(mem: sss.Connection) -> None:
    def policy(action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None) -> int:
        if action == sss.SQLITE_READ and arg2 == "secret":
            return sss.SQLITE_IGNORE  # the column reads as NULL
        if action == sss.SQLITE_DELETE:
            return sss.SQLITE_DENY
        return sss.SQLITE_OK

    mem.set_authorizer(policy)
    assert mem.execute("SELECT a, secret FROM t").fetchall() == [(1, None)]
    with pytest.raises(sss.AuthError, match="not authorized"):
        mem.execute("DELETE FROM t")
    mem.set_authorizer(None)
    assert mem.execute("SELECT a, secret FROM t").fetchall() == [(1, "hidden")]
    mem.execute("DELETE FROM t")


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_authorizer_exception_denies_and_is_raised(mem: sss.Connection, exc_type: type) -> None:
    raised = exc_type("no")

    def auth(*args: Any) -> int:
        if args[0] == sss.SQLITE_DELETE:
            raise raised
        return sss.SQLITE_OK

    mem.set_authorizer(auth)
    with pytest.raises(exc_type) as info:
        mem.execute("DELETE FROM t")
    assert info.value is raised
    with pytest.raises(exc_type):
        mem.executescript("SELECT 1; DELETE FROM t;")
    mem.set_authorizer(lambda *a: "yes")  # type: ignore[arg-type,return-value]
    with pytest.raises(sss.InterfaceError, match="authorizer returned str"):
        mem.execute("SELECT 1")
    mem.set_authorizer(None)
    assert mem.execute("SELECT count(*) FROM t").fetchone() == (1,)  # nothing deleted


def test_authorizer_cannot_use_its_connection(mem: sss.Connection) -> None:
    mem.set_authorizer(lambda *a: mem.execute("SELECT 1") and sss.SQLITE_OK)
    with pytest.raises(sss.InterfaceError, match="inside an authorizer"):
        mem.execute("SELECT a FROM t")
    mem.set_authorizer(lambda *a: mem.in_transaction and sss.SQLITE_OK)
    with pytest.raises(sss.InterfaceError, match="inside an authorizer"):
        mem.execute("SELECT a FROM t")
    mem.set_authorizer(None)
    assert mem.execute("SELECT a FROM t").fetchall() == [(1,)]


# -- progress handler -------------------------------------------------------------


def test_progress_handler_interrupts(mem: sss.Connection) -> None:
    calls = 0

    def progress() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 5

    mem.set_progress_handler(progress, 1000)
    with pytest.raises(sss.InterruptError):
        mem.execute(LONG_QUERY)
    assert calls == 5
    mem.set_progress_handler(None, 0)
    assert mem.execute("SELECT count(*) FROM t").fetchone() == (1,)


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_progress_handler_exception(mem: sss.Connection, exc_type: type) -> None:
    raised = exc_type("stop")

    def progress() -> None:
        raise raised

    mem.set_progress_handler(progress, 100)
    with pytest.raises(exc_type) as info:
        mem.execute(LONG_QUERY).fetchall()
    assert info.value is raised
    mem.set_progress_handler(None, 0)
    assert not mem.in_transaction
    assert mem.execute("SELECT 2").fetchone() == (2,)


def test_progress_handler_cannot_use_its_connection(mem: sss.Connection) -> None:
    mem.set_progress_handler(lambda: mem.execute("SELECT 1") and False, 100)
    with pytest.raises(sss.InterfaceError, match="inside a progress handler"):
        mem.execute(LONG_QUERY)
    mem.set_progress_handler(None, 0)


def test_progress_handler_thread_interrupt_and_other_thread(mem: sss.Connection) -> None:
    """Another thread using the connection while the handler runs gets
    ThreadingError; interrupt() from it works."""
    inside = threading.Event()
    errors: list[BaseException] = []

    def progress() -> int:
        inside.set()
        return 0

    def other() -> None:
        inside.wait(10)
        try:
            mem.execute("SELECT 1")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        mem.interrupt()

    mem.set_progress_handler(progress, 1000)
    t = threading.Thread(target=other)
    t.start()
    with pytest.raises(sss.InterruptError):
        mem.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sss.ThreadingError)


# -- trace ------------------------------------------------------------------------


def test_trace_receives_statements_like_stdlib(tmp_path: Path) -> None:
    ours, theirs = [], []  # type: ignore[var-annotated]
    con = sss.connect(tmp_path / "a.db")
    std = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    for c, seen in ((con, ours), (std, theirs)):
        c.set_trace_callback(seen.append)
        c.execute("CREATE TABLE t(a, b)")
        c.execute("INSERT INTO t VALUES (?, ?)", (1, "it's"))
        c.execute("SELECT * FROM t WHERE a = ?", (1,)).fetchall()
        c.executescript("BEGIN;UPDATE t SET a = 2;COMMIT;")
        c.set_trace_callback(None)
        c.execute("SELECT 1")
    assert ours == theirs
    assert "INSERT INTO t VALUES (1, 'it''s')" in ours
    con.close()
    std.close()


def test_trace_exception_raised_after_statement(mem: sss.Connection) -> None:
    raised = Boom("trace")

    def trace(sql: str) -> None:
        raise raised

    mem.set_trace_callback(trace)
    with pytest.raises(Boom) as info:
        mem.execute("INSERT INTO t VALUES (2, 'x')")
    assert info.value is raised
    with pytest.raises(Boom):
        with mem.transaction():
            pass
    mem.set_trace_callback(None)
    assert mem.execute("SELECT count(*) FROM t").fetchone() == (2,)  # the insert ran


def test_trace_may_run_sql(mem: sss.Connection) -> None:
    seen: list[Any] = []

    def trace(sql: str) -> None:
        if "count" not in sql:
            seen.append(mem.execute("SELECT count(*) FROM t").fetchone())

    mem.set_trace_callback(trace)
    assert mem.execute("SELECT a FROM t").fetchall() == [(1,)]
    mem.set_trace_callback(None)
    assert seen == [(1,)]


def test_hook_arguments_checked(mem: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError):
        mem.set_authorizer(1)  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError):
        mem.set_progress_handler(len, "10")  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError):
        mem.set_trace_callback("print")  # type: ignore[arg-type]


def test_hooks_on_closed_connection() -> None:
    con = sss.connect(":memory:")
    con.close()
    for call in (lambda: con.set_authorizer(None), lambda: con.set_progress_handler(None, 0),
                 lambda: con.set_trace_callback(None), lambda: con.getlimit(0),
                 lambda: con.enable_load_extension(True)):
        with pytest.raises(sss.ClosedError):
            call()


# -- limits -----------------------------------------------------------------------


def test_limits(mem: sss.Connection) -> None:
    previous = mem.getlimit(sss.SQLITE_LIMIT_LENGTH)
    assert previous == 1_000_000_000  # SQLite's default
    assert mem.setlimit(sss.SQLITE_LIMIT_LENGTH, 100) == previous
    assert mem.getlimit(sss.SQLITE_LIMIT_LENGTH) == 100
    with pytest.raises(sss.TooBigError):
        mem.execute("SELECT ?", ("x" * 200,))
    assert mem.setlimit(sss.SQLITE_LIMIT_LENGTH, previous) == 100
    mem.setlimit(sss.SQLITE_LIMIT_VARIABLE_NUMBER, 2)
    with pytest.raises(sss.SQLError, match="too many SQL variables"):
        mem.execute("SELECT ?, ?, ?", (1, 2, 3))
    assert mem.setlimit(sss.SQLITE_LIMIT_VARIABLE_NUMBER, -1) == 2  # negative: only read
    assert mem.getlimit(sss.SQLITE_LIMIT_VARIABLE_NUMBER) == 2
    with pytest.raises(sss.InterfaceError, match="unknown limit category"):
        mem.getlimit(99)
    with pytest.raises(sss.InterfaceError):
        mem.setlimit(sss.SQLITE_LIMIT_LENGTH, "1")  # type: ignore[arg-type]


# -- extensions -------------------------------------------------------------------

EXTENSION_C = r"""
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1
#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT
#endif
static void half(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sqlite3_result_double(ctx, sqlite3_value_double(argv[0]) / 2);
}
EXPORT int sqlite3_half_init(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
    SQLITE_EXTENSION_INIT2(api);
    (void)err;
    return sqlite3_create_function(db, "half", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, 0, half, 0, 0);
}
EXPORT int refuse_init(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
    SQLITE_EXTENSION_INIT2(api);
    (void)db;
    *err = sqlite3_mprintf("refused on purpose");
    return SQLITE_ERROR;
}
"""


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or sys.platform == "win32":
        pytest.skip("no C compiler found to build the test extension")
    d = tmp_path_factory.mktemp("ext")
    (d / "half.c").write_text(EXTENSION_C)
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    out = d / f"half{suffix}"
    if sys.platform == "darwin":
        flags = ["-dynamiclib", "-undefined", "dynamic_lookup"]
    else:
        flags = ["-shared", "-fPIC"]
    headers = source_path("vendor", "sqlite")  # sqlite3ext.h of the vendored release
    subprocess.run([cc, *flags, "-I", str(headers), str(d / "half.c"), "-o", str(out)], check=True)
    return out


def test_load_extension(mem: sss.Connection, extension: Path) -> None:
    with pytest.raises(sss.SQLError, match="not authorized"):
        mem.load_extension(str(extension))  # off by default
    mem.enable_load_extension(True)
    mem.load_extension(str(extension))  # entry point guessed: sqlite3_half_init
    assert mem.execute("SELECT half(5)").fetchone() == (2.5,)
    with pytest.raises(sss.SQLError, match="refused on purpose"):
        mem.load_extension(extension, entrypoint="refuse_init")  # type: ignore[arg-type]
    with pytest.raises(sss.SQLError, match="no_such_init"):
        mem.load_extension(str(extension), entrypoint="no_such_init")
    with pytest.raises(sss.SQLError):
        mem.load_extension(str(extension.with_name("missing.so")))
    mem.enable_load_extension(False)
    with pytest.raises(sss.SQLError, match="not authorized"):
        mem.load_extension(str(extension))
    with pytest.raises(sss.InterfaceError):
        mem.load_extension(42)  # type: ignore[arg-type]
    # the SQL function follows the same switch
    with pytest.raises(sss.SQLError, match="not authorized"):
        mem.execute("SELECT load_extension(?)", (str(extension),))
