"""A DB-API 2.0 (PEP 249) module with the stdlib ``sqlite3`` module's surface
(as of Python 3.12), on this package's SQLite build.

``import sqlite_session_safe.dbapi as sqlite3`` lets code written for the
stdlib module run unchanged; a connection also reaches sessions
(``con.session()``) and, with ``connect(..., coordinated=True)``, admitted
and audited writes.  The layout: ``errors`` (exception hierarchy and the
translation of native errors), ``adaptation`` (adapters, converters, type
constructors), ``row``, ``cursor``, ``connection`` (transactions),
``coordinated``, ``constants``.
"""

from __future__ import annotations

import sys as _sys
import warnings as _warnings
from typing import Any as _Any

from ...binding import capi as _capi
from ...binding.library import sqlite_version as _sqlite_version
from . import constants as _constants
from .adaptation import (
    Binary,
    Date,
    DateFromTicks,
    PrepareProtocol,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    adapt,
    adapters,
    converters,
    register_adapter,
    register_converter,
)
from .blob import Blob
from .callbacks import enable_callback_tracebacks
from .connecting import connect
from .connection import LEGACY_TRANSACTION_CONTROL, Connection
from .coordinated import CoordinatedConnection, CoordinatedCursor
from .cursor import PARSE_COLNAMES, PARSE_DECLTYPES, Cursor
from .errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from .row import Row

apilevel = "2.0"
#: Threads may share the module but not a connection: one connection serves
#: one thread at a time (a second thread calling in meanwhile gets
#: ProgrammingError rather than waiting), see the README.
threadsafety = 1
paramstyle = "qmark"
sqlite_version: str = _sqlite_version()
sqlite_version_info: tuple[int, int, int] = tuple(int(x) for x in sqlite_version.split("."))  # type: ignore[assignment]
#: The stdlib module's own version numbers (deprecated there since 3.12:
#: then read through module_attribute(), with the stdlib's warning).
_VERSION = "2.6.0"
_VERSION_INFO = (2, 6, 0)
if _sys.version_info < (3, 12):
    version = _VERSION
    version_info = _VERSION_INFO


def module_attribute(module: str, name: str) -> _Any:
    """The names the stdlib module serves from its module ``__getattr__``,
    with its DeprecationWarning (pointing at the code that reads them):
    ``version``/``version_info`` since 3.12, ``OptimizedUnicode`` before
    3.12.  The public modules' ``__getattr__`` call this directly."""
    if _sys.version_info >= (3, 12) and name in ("version", "version_info"):
        _warnings.warn(f"{name} is deprecated and will be removed in Python 3.14",
                       DeprecationWarning, stacklevel=3)
        return _VERSION if name == "version" else _VERSION_INFO
    if _sys.version_info < (3, 12) and name == "OptimizedUnicode":
        _warnings.warn("OptimizedUnicode is deprecated and will be removed in Python 3.12; "
                       "it has been an alias for 'str' since Python 3.3",
                       DeprecationWarning, stacklevel=3)
        return str
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str) -> _Any:
    return module_attribute(__name__, name)


if _sys.version_info < (3, 12):

    def enable_shared_cache(enable: int) -> None:
        """Turn SQLite's shared-cache mode on or off for connections opened
        afterwards, process-wide (deprecated, as in the stdlib: open
        ``file:...?cache=shared`` URIs instead)."""
        _warnings.warn("enable_shared_cache is deprecated and will be removed in Python 3.12; "
                       "open the database with the cache=shared URI parameter instead",
                       DeprecationWarning, stacklevel=2)
        if not _capi.enable_shared_cache(bool(enable)):
            raise OperationalError("Changing the shared_cache flag failed")


def complete_statement(statement: str, /) -> bool:
    """True when ``statement`` holds one or more complete SQL statements
    (ends with a semicolon outside strings, comments and triggers)."""
    if not isinstance(statement, str):
        raise TypeError(f"complete_statement() argument 1 must be str, not {type(statement).__name__}")
    return _capi.complete_statement(statement.encode("utf-8", "surrogatepass"))


globals().update(_constants.CONSTANTS)

__all__ = [
    "apilevel", "threadsafety", "paramstyle", "sqlite_version", "sqlite_version_info",
    *(("version", "version_info", "enable_shared_cache") if _sys.version_info < (3, 12) else ()),
    "connect", "Connection", "Cursor", "Row", "Blob", "PrepareProtocol",
    "CoordinatedConnection", "CoordinatedCursor",
    "LEGACY_TRANSACTION_CONTROL", "PARSE_DECLTYPES", "PARSE_COLNAMES",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "register_adapter", "register_converter", "adapters", "converters", "adapt",
    "complete_statement", "enable_callback_tracebacks",
    "Binary", "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks",
    *_constants.NAMES,
]
