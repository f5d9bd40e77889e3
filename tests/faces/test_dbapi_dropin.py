"""What real applications rely on (issue 14), checked against the stdlib
``sqlite3`` of the running Python: the same misuse raises the same class with
the same message, word for word; ``dbapi2``; double-quoted strings; shared
cache; ``compile_options``; ``Row``'s repr; the SQL shell."""

from __future__ import annotations

import importlib
import re
import sqlite3 as stdlib
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sqlite_session_safe as sss
import sqlite_session_safe.dbapi as ours

HAS_LIMITS = hasattr(stdlib.Connection, "setlimit")  # the stdlib's, from Python 3.11
LIMIT_SQL_LENGTH = ours.SQLITE_LIMIT_SQL_LENGTH
LIMIT_VARIABLE_NUMBER = ours.SQLITE_LIMIT_VARIABLE_NUMBER


def outcome(mod: ModuleType, action: Callable[[Any], Any]) -> tuple[str, str]:
    """(exception class name, message) of ``action(connection)``, or ("ok", repr(result))."""
    con = mod.connect(":memory:")
    con.execute("CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT UNIQUE)")
    con.execute("INSERT INTO t VALUES (1, 'a')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = action(con)
            if hasattr(result, "fetchall"):
                result = result.fetchall()
        return "ok", repr(result)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    finally:
        con.close()


def _many_variables(con: Any) -> Any:
    # past both builds' limit (the stdlib's SQLite may allow 250,000)
    if HAS_LIMITS:
        con.setlimit(LIMIT_VARIABLE_NUMBER, 10)
        return con.execute(f"SELECT {','.join('?' * 11)}", (1,) * 11)
    n = 250_001
    return con.execute(f"SELECT {','.join('?' * n)}", (1,) * n)


class Unsupported:
    pass


class Sequence:
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> str:
        return "seq"


class Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "missing"


CASES: dict[str, Callable[[Any], Any]] = {
    "too many SQL variables": _many_variables,
    "too many bindings": lambda c: c.execute("SELECT ?", (1, 2)),
    "too few bindings": lambda c: c.execute("SELECT ?, ?", (1,)),
    "no bindings": lambda c: c.execute("SELECT ?"),
    "missing named": lambda c: c.execute("SELECT :x, :y", {"x": 1}),
    "dict for qmark": lambda c: c.execute("SELECT ?", {"x": 1}),
    "unsupported parameters": lambda c: c.execute("SELECT ?", 42),
    "unsupported type": lambda c: c.execute("SELECT ?", (Unsupported(),)),
    "unsupported type named": lambda c: c.execute("SELECT :x", {"x": Unsupported()}),
    "int overflow": lambda c: c.execute("SELECT ?", (1 << 64,)),
    "surrogate parameter": lambda c: c.execute("SELECT ?", ("\ud800",)),
    "non-contiguous buffer": lambda c: c.execute("SELECT ?", (memoryview(b"abcd")[::2],)),
    "custom sequence": lambda c: c.execute("SELECT ?", Sequence()),
    "dict subclass __missing__": lambda c: c.execute("SELECT :x", Missing()),
    "executemany wrong count": lambda c: c.executemany("INSERT INTO t(y) VALUES (?)", [("b",), ("c", 1)]),
    "executemany missing name": lambda c: c.executemany("INSERT INTO t(y) VALUES (:y)", [{"z": 1}]),
    "executemany overflow": lambda c: c.executemany("INSERT INTO t(y) VALUES (?)", [(1 << 64,)]),
    "executemany select": lambda c: c.executemany("SELECT ?", [(1,)]),
    "syntax error": lambda c: c.execute("SELECT FROM FROM t"),
    "no such table": lambda c: c.execute("SELECT * FROM nope"),
    "no such column": lambda c: c.execute("SELECT nope FROM t"),
    "unique constraint": lambda c: c.execute("INSERT INTO t VALUES (2, 'a')"),
    "primary key constraint": lambda c: c.execute("INSERT INTO t VALUES (1, 'b')"),
    "two statements": lambda c: c.execute("SELECT 1; SELECT 2"),
    "trailing unclosed comment": lambda c: c.execute("SELECT 1; /* to the end"),
    "NUL in SQL": lambda c: c.execute("SELECT 1\0"),
    "surrogate in SQL": lambda c: c.execute("SELECT '\ud800'"),
    "SQL not str": lambda c: c.execute(42),
    "SQL too long": lambda c: (c.setlimit(LIMIT_SQL_LENGTH, 10), c.execute("SELECT 1 AS abcdefgh"))
    if HAS_LIMITS else None,
    "closed cursor": lambda c: (lambda cur: (cur.close(), cur.execute("SELECT 1")))(c.cursor()),
    "closed connection": lambda c: (c.close(), c.execute("SELECT 1")),
    "not UTF-8": lambda c: c.execute("SELECT CAST(x'61ff62' AS TEXT) AS col"),
    "double-quoted literal": lambda c: c.execute('SELECT "not a column"'),
    "function raises": lambda c: (c.create_function("f", 0, lambda: 1 / 0), c.execute("SELECT f()")),
    "function returns big int": lambda c: (c.create_function("f", 0, lambda: 1 << 64),
                                           c.execute("SELECT f()")),
    "function returns object": lambda c: (c.create_function("f", 0, object), c.execute("SELECT f()")),
    "bad narg": lambda c: c.create_function("f", -100, len),
    "isolation level": lambda c: setattr(c, "isolation_level", "SOMETIMES"),
    "executescript too long": lambda c: (c.setlimit(LIMIT_SQL_LENGTH, 10),
                                         c.executescript("SELECT 1 AS abcdefgh;"))
    if HAS_LIMITS else None,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_outcome_as_the_stdlib(case: str) -> None:
    """The class and message (word for word) are the stdlib's; the native
    API keeps its own, richer messages."""
    assert outcome(ours, CASES[case]) == outcome(stdlib, CASES[case])


def test_native_messages_stay_rich() -> None:
    con = sss.connect(":memory:")
    with pytest.raises(sss.SQLError, match=r"syntax error \(at offset 7: "):
        con.execute("SELECT FROM FROM t")
    with pytest.raises(sss.BindingError, match="statement takes 1 parameter, 2 given"):
        con.execute("SELECT ?", (1, 2))
    con.close()


def test_dbapi2_submodule() -> None:
    assert ours.dbapi2 is importlib.import_module("sqlite_session_safe.dbapi.dbapi2")
    from sqlite_session_safe.dbapi import dbapi2

    assert dbapi2.connect is ours.connect and dbapi2.Row is ours.Row
    assert set(stdlib.dbapi2.__all__ if hasattr(stdlib.dbapi2, "__all__") else ()) <= set(dir(dbapi2))
    missing = [n for n in dir(stdlib.dbapi2) if not n.startswith("_") and not hasattr(dbapi2, n)]
    assert set(missing) <= {"collections", "datetime", "time"}, missing


def test_compile_options_applications_probe() -> None:
    options = set(sss.compile_options())
    assert {"ENABLE_FTS3", "ENABLE_FTS4", "ENABLE_FTS5", "ENABLE_RTREE", "ENABLE_MATH_FUNCTIONS"} <= options
    con = ours.connect(":memory:")
    assert {row[0] for row in con.execute("PRAGMA compile_options")} == options
    con.close()


def test_row_repr_is_the_stdlibs() -> None:
    con = ours.connect(":memory:")
    con.row_factory = ours.Row
    row = con.execute("SELECT 1 AS a").fetchone()
    assert re.fullmatch(r"<sqlite3\.Row object at 0x[0-9a-f]+>", repr(row))
    con.close()


def test_shared_cache_between_dbapi_connections() -> None:
    uri = "file:dropin_shared?mode=memory&cache=shared"
    a, b = ours.connect(uri, uri=True), ours.connect(uri, uri=True)
    with a:
        a.execute("CREATE TABLE catalog(name)")
        a.execute("INSERT INTO catalog VALUES ('x')")
    assert b.execute("SELECT name FROM catalog").fetchall() == [("x",)]
    a.close()
    b.close()


def test_double_quoted_strings_as_the_stdlib(tmp_path: Path) -> None:
    for mod in (stdlib, ours):
        con = mod.connect(tmp_path / f"{mod.__name__}.db")
        con.execute("CREATE TABLE t(x)")
        con.execute('INSERT INTO t VALUES ("optimize")')  # sqlite-utils does this
        assert con.execute("SELECT x FROM t WHERE x = \"optimize\"").fetchall() == [("optimize",)]
        con.close()


@pytest.mark.parametrize("argv, out, code", [
    ([":memory:", "SELECT 1, 'a'"], "(1, 'a')\n", 0),
    (["-v"], f"SQLite version {ours.sqlite_version}\n", 0),
])
def test_sql_shell(argv: list[str], out: str, code: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "sqlite_session_safe.dbapi", *argv],
                          capture_output=True, text=True, timeout=60)
    assert (proc.stdout, proc.returncode) == (out, code), proc.stderr


def test_sql_shell_reports_errors_and_reads_stdin() -> None:
    proc = subprocess.run([sys.executable, "-m", "sqlite_session_safe.dbapi", ":memory:", "SELEC 1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "OperationalError (SQLITE_ERROR): near" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sqlite_session_safe.dbapi"],
                          input="CREATE TABLE t(x);\nINSERT INTO t\nVALUES (7);\nSELECT x FROM t;\n.quit\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "(7,)\n" in proc.stdout, proc.stderr
    assert "Connected to a transient in-memory database" in proc.stderr
