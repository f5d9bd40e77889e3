"""``Connection.getconfig`` / ``setconfig`` and the ``SQLITE_DBCONFIG_*``
constants (Python 3.12's ``sqlite3``): the DB-API face against the stdlib
where the stdlib has them (the ``mod`` fixture; on older Pythons ours alone,
against the documented semantics), and the native connection."""

from __future__ import annotations

import sqlite3 as stdlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import sqlite_session_safe as sss
import sqlite_session_safe.dbapi as ours

# Python 3.12's names and values (the values are SQLite's, fixed in sqlite3.h).
STDLIB_312 = {
    "SQLITE_DBCONFIG_DEFENSIVE": 1010,
    "SQLITE_DBCONFIG_DQS_DDL": 1014,
    "SQLITE_DBCONFIG_DQS_DML": 1013,
    "SQLITE_DBCONFIG_ENABLE_FKEY": 1002,
    "SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER": 1004,
    "SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION": 1005,
    "SQLITE_DBCONFIG_ENABLE_QPSG": 1007,
    "SQLITE_DBCONFIG_ENABLE_TRIGGER": 1003,
    "SQLITE_DBCONFIG_ENABLE_VIEW": 1015,
    "SQLITE_DBCONFIG_LEGACY_ALTER_TABLE": 1012,
    "SQLITE_DBCONFIG_LEGACY_FILE_FORMAT": 1016,
    "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE": 1006,
    "SQLITE_DBCONFIG_RESET_DATABASE": 1009,
    "SQLITE_DBCONFIG_TRIGGER_EQP": 1008,
    "SQLITE_DBCONFIG_TRUSTED_SCHEMA": 1017,
    "SQLITE_DBCONFIG_WRITABLE_SCHEMA": 1011,
}
STDLIB_HAS_CONFIG = hasattr(stdlib.Connection, "getconfig")


@pytest.fixture(params=["stdlib", "ours"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "stdlib":
        if not STDLIB_HAS_CONFIG:
            pytest.skip("the stdlib has getconfig/setconfig from Python 3.12")
        return stdlib
    return ours


@pytest.fixture
def con(mod: ModuleType) -> Iterator[Any]:
    c = mod.connect(":memory:")
    yield c
    c.close()


def test_constants(mod: ModuleType) -> None:
    for name, value in STDLIB_312.items():
        assert getattr(mod, name) == value
        assert mod is stdlib or name in mod.__all__  # the stdlib has no __all__ from 3.13
    for name, value in STDLIB_312.items():
        assert getattr(sss, name) == value


@pytest.mark.parametrize("name", sorted(STDLIB_312))
def test_every_option_switches_both_ways(con: Any, mod: ModuleType, name: str) -> None:
    op = getattr(mod, name)
    before = con.getconfig(op)
    assert type(before) is bool
    assert con.setconfig(op, not before) is None
    assert con.getconfig(op) is (not before)
    con.setconfig(op, before)
    assert con.getconfig(op) is before
    con.setconfig(op)  # enable defaults to True
    assert con.getconfig(op) is True
    con.setconfig(op, 0)  # any truth value
    assert con.getconfig(op) is False
    con.setconfig(op, "yes")
    assert con.getconfig(op) is True


def test_options_take_effect(con: Any, mod: ModuleType) -> None:
    con.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE c(p REFERENCES p(id))")
    con.setconfig(mod.SQLITE_DBCONFIG_ENABLE_FKEY, False)
    con.execute("INSERT INTO c VALUES (1)")  # no parent: allowed
    con.rollback()
    con.setconfig(mod.SQLITE_DBCONFIG_ENABLE_FKEY, True)
    with pytest.raises(mod.IntegrityError):
        con.execute("INSERT INTO c VALUES (1)")
    con.rollback()
    con.execute("CREATE VIEW v AS SELECT 1")
    con.setconfig(mod.SQLITE_DBCONFIG_ENABLE_VIEW, False)
    with pytest.raises(mod.OperationalError):
        con.execute("SELECT * FROM v")
    con.setconfig(mod.SQLITE_DBCONFIG_ENABLE_VIEW, True)
    assert con.execute("SELECT * FROM v").fetchall() == [(1,)]
    # Double-quoted string literals in DML (our build turns them off by default).
    con.setconfig(mod.SQLITE_DBCONFIG_DQS_DML, True)
    assert con.execute('SELECT "no such column"').fetchone() == ("no such column",)
    con.setconfig(mod.SQLITE_DBCONFIG_DQS_DML, False)
    with pytest.raises(mod.OperationalError):
        con.execute('SELECT "no such column"')


def test_bad_options(con: Any, mod: ModuleType) -> None:
    for op in (-1, 0, 1000, 1001, 99999):  # MAINDBNAME and LOOKASIDE are no switches
        with pytest.raises(ValueError, match=f"unknown config 'op': {op}"):
            con.getconfig(op)
        with pytest.raises(ValueError, match=f"unknown config 'op': {op}"):
            con.setconfig(op, True)
    for bad in ("1002", 1002.0, None):
        with pytest.raises(TypeError):
            con.getconfig(bad)
        with pytest.raises(TypeError):
            con.setconfig(bad)
    with pytest.raises(TypeError):
        con.getconfig(op=mod.SQLITE_DBCONFIG_ENABLE_FKEY)
    with pytest.raises(TypeError):
        con.setconfig(mod.SQLITE_DBCONFIG_ENABLE_FKEY, enable=True)


def test_closed_connection_and_other_thread(mod: ModuleType) -> None:
    c = mod.connect(":memory:")
    errors: list[BaseException] = []

    def other() -> None:
        for method in (c.getconfig, c.setconfig):
            try:
                method(mod.SQLITE_DBCONFIG_ENABLE_FKEY)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 2 and all(isinstance(e, mod.ProgrammingError) for e in errors)
    c.close()
    with pytest.raises(mod.ProgrammingError, match="closed database"):
        c.getconfig(mod.SQLITE_DBCONFIG_ENABLE_FKEY)
    with pytest.raises(mod.ProgrammingError, match="closed database"):
        c.setconfig(mod.SQLITE_DBCONFIG_ENABLE_FKEY)


def test_native_connection() -> None:
    c = sss.connect(":memory:")
    fkey = sss.SQLITE_DBCONFIG_ENABLE_FKEY
    assert c.getconfig(fkey) is False
    assert c.setconfig(fkey) is True  # returns the setting afterwards
    assert c.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert c.setconfig(fkey, False) is False
    assert c.execute("PRAGMA foreign_keys").fetchone() == (0,)
    # Options SQLite added after Python 3.12's list switch too.
    comments = sss.SQLITE_DBCONFIG_ENABLE_COMMENTS
    assert c.getconfig(comments) is True
    assert c.setconfig(comments, False) is False and c.getconfig(comments) is False
    with pytest.raises(sss.InterfaceError, match="unknown boolean SQLITE_DBCONFIG option 1023"):
        c.getconfig(1023)  # FP_DIGITS: a number, not a switch
    with pytest.raises(sss.InterfaceError, match="must be an int"):
        c.setconfig("x")  # type: ignore[arg-type]
    c.close()
    with pytest.raises(sss.ClosedError):
        c.getconfig(fkey)
