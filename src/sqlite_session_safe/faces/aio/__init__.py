"""``import sqlite_session_safe.aio as aiosqlite``: an asyncio face.

* :func:`connect` -- aiosqlite's API (a drop-in) on this package's DB-API
  module, faster (one thread hop per call and per batch of rows, mostly
  without a wake-up), with real cancellation (``task.cancel()`` and
  ``asyncio.timeout`` interrupt the running SQL) and sessions
  (``await con.session()``).  See :mod:`.connection` and :mod:`.worker`.
* :func:`open` (also :func:`open_database`) -- the coordinated database
  (``sss.open_database``) as async calls:
  ``await db.write(fn)``, ``async with db.read() as r``, ``await
  db.migrate(sql)``, backups, undo; :func:`replicate` and :func:`follow`.
  See :mod:`.database`.

asyncio only (and anyio on its asyncio backend); trio is not supported.
"""

from __future__ import annotations

from ..dbapi import (
    PARSE_COLNAMES,
    PARSE_DECLTYPES,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Row,
    Warning,
    paramstyle,
    register_adapter,
    register_converter,
    sqlite_version,
    sqlite_version_info,
)
from .connection import Connection, Cursor, Result, Session, connect
from .database import Database, ReadTx, follow, open, replicate
from .worker import DEFAULT_SPIN

#: The aiosqlite release whose API this module follows.
__version__ = "0.22.1"

#: ``aio.open(path)`` under a name that does not hide the builtin ``open``:
#: ``open`` is left out of ``__all__`` so that ``from ... import *`` keeps it.
open_database = open

__all__ = [
    "__version__", "paramstyle", "register_adapter", "register_converter", "sqlite_version",
    "sqlite_version_info", "PARSE_COLNAMES", "PARSE_DECLTYPES",
    "connect", "Connection", "Cursor", "Row", "Result", "Session",
    "Warning", "Error", "DatabaseError", "IntegrityError", "ProgrammingError", "OperationalError",
    "NotSupportedError", "InterfaceError", "InternalError", "DataError",
    "open_database", "Database", "ReadTx", "replicate", "follow", "DEFAULT_SPIN",
]
