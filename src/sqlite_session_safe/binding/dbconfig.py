"""Boolean connection settings: ``sqlite3_db_config`` with the
``SQLITE_DBCONFIG_*`` verbs that take an int and an int pointer (foreign keys,
triggers, views, defensive mode, ...), as the stdlib ``sqlite3`` module's
``Connection.getconfig`` / ``setconfig`` offer them since Python 3.12.

The constants are the verbs Python 3.12 exports, then the boolean verbs
SQLite added later (this package's SQLite knows them).  Verbs that are not
on/off switches (``MAINDBNAME``, ``LOOKASIDE``, ``FP_DIGITS``) are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InterfaceError
from .raw import error_from_db, ffi, lib

if TYPE_CHECKING:
    from .connection import Connection

#: The option names, exported by the package and by the DB-API module.
__all__ = [
    "SQLITE_DBCONFIG_DEFENSIVE",
    "SQLITE_DBCONFIG_DQS_DDL",
    "SQLITE_DBCONFIG_DQS_DML",
    "SQLITE_DBCONFIG_ENABLE_FKEY",
    "SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER",
    "SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION",
    "SQLITE_DBCONFIG_ENABLE_QPSG",
    "SQLITE_DBCONFIG_ENABLE_TRIGGER",
    "SQLITE_DBCONFIG_ENABLE_VIEW",
    "SQLITE_DBCONFIG_LEGACY_ALTER_TABLE",
    "SQLITE_DBCONFIG_LEGACY_FILE_FORMAT",
    "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE",
    "SQLITE_DBCONFIG_RESET_DATABASE",
    "SQLITE_DBCONFIG_TRIGGER_EQP",
    "SQLITE_DBCONFIG_TRUSTED_SCHEMA",
    "SQLITE_DBCONFIG_WRITABLE_SCHEMA",
    "SQLITE_DBCONFIG_STMT_SCANSTATUS",
    "SQLITE_DBCONFIG_REVERSE_SCANORDER",
    "SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE",
    "SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE",
    "SQLITE_DBCONFIG_ENABLE_COMMENTS",
]

# Python 3.12 sqlite3 module's options (spelled out so type checkers see them).
SQLITE_DBCONFIG_DEFENSIVE: int = lib.SQLITE_DBCONFIG_DEFENSIVE
SQLITE_DBCONFIG_DQS_DDL: int = lib.SQLITE_DBCONFIG_DQS_DDL
SQLITE_DBCONFIG_DQS_DML: int = lib.SQLITE_DBCONFIG_DQS_DML
SQLITE_DBCONFIG_ENABLE_FKEY: int = lib.SQLITE_DBCONFIG_ENABLE_FKEY
SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER: int = lib.SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER
SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION: int = lib.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION
SQLITE_DBCONFIG_ENABLE_QPSG: int = lib.SQLITE_DBCONFIG_ENABLE_QPSG
SQLITE_DBCONFIG_ENABLE_TRIGGER: int = lib.SQLITE_DBCONFIG_ENABLE_TRIGGER
SQLITE_DBCONFIG_ENABLE_VIEW: int = lib.SQLITE_DBCONFIG_ENABLE_VIEW
SQLITE_DBCONFIG_LEGACY_ALTER_TABLE: int = lib.SQLITE_DBCONFIG_LEGACY_ALTER_TABLE
SQLITE_DBCONFIG_LEGACY_FILE_FORMAT: int = lib.SQLITE_DBCONFIG_LEGACY_FILE_FORMAT
SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: int = lib.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
SQLITE_DBCONFIG_RESET_DATABASE: int = lib.SQLITE_DBCONFIG_RESET_DATABASE
SQLITE_DBCONFIG_TRIGGER_EQP: int = lib.SQLITE_DBCONFIG_TRIGGER_EQP
SQLITE_DBCONFIG_TRUSTED_SCHEMA: int = lib.SQLITE_DBCONFIG_TRUSTED_SCHEMA
SQLITE_DBCONFIG_WRITABLE_SCHEMA: int = lib.SQLITE_DBCONFIG_WRITABLE_SCHEMA
# Boolean options SQLite added later.
SQLITE_DBCONFIG_STMT_SCANSTATUS: int = lib.SQLITE_DBCONFIG_STMT_SCANSTATUS
SQLITE_DBCONFIG_REVERSE_SCANORDER: int = lib.SQLITE_DBCONFIG_REVERSE_SCANORDER
SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE: int = lib.SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE
SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE: int = lib.SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE
SQLITE_DBCONFIG_ENABLE_COMMENTS: int = lib.SQLITE_DBCONFIG_ENABLE_COMMENTS

#: The names Python 3.12's ``sqlite3`` module exports.
STDLIB_OPTIONS: tuple[str, ...] = tuple(__all__[:16])
#: name -> verb, for every boolean option accepted.
OPTIONS: dict[str, int] = {name: globals()[name] for name in __all__}
_KNOWN = frozenset(OPTIONS.values())


def _verb(op: object) -> int:
    if type(op) is not int:
        raise InterfaceError(
            f"the option must be an int (a SQLITE_DBCONFIG_* constant), not {type(op).__name__}"
        )
    if op not in _KNOWN:
        raise InterfaceError(
            f"unknown boolean SQLITE_DBCONFIG option {op} (use the SQLITE_DBCONFIG_* constants)"
        )
    return op


def _db_config(con: Connection, op: int, value: int) -> bool:
    """``sqlite3_db_config(db, op, value, &out)``: -1 only reads; returns the
    setting after the call."""
    out = ffi.new("int *")
    with con.sss_hold() as db:
        rc = lib.sqlite3_db_config(db, op, ffi.cast("int", value), out)
        if rc != lib.SQLITE_OK:
            raise error_from_db(db, rc, f"sqlite3_db_config({op})")
    return bool(out[0])


def getconfig(con: Connection, op: int) -> bool:
    """Whether boolean option ``op`` is on for ``con``."""
    return _db_config(con, _verb(op), -1)


def setconfig(con: Connection, op: int, enable: bool) -> bool:
    """Turn boolean option ``op`` on or off (``enable`` by truth value);
    returns the setting SQLite reports afterwards."""
    verb = _verb(op)
    return _db_config(con, verb, 1 if enable else 0)
