"""The DB-API 2.0 exception hierarchy (PEP 249), and the translation of the
native binding's exceptions into it.

The classes mirror the stdlib ``sqlite3`` module's one for one, and derive
from the stdlib class of the same name too (``except sqlite3.IntegrityError``
catches ours); ``Error`` also derives from the package's own
:class:`sqlite_session_safe.Error`, so ``except sss.Error`` catches them.

:func:`translate` decides which DB-API class a native exception becomes; the
choices follow CPython's ``Modules/_sqlite/util.c`` (which SQLite result code
maps to which class) and the stdlib's messages for the same misuse.
"""

from __future__ import annotations

import builtins
import os
import sys
import warnings
from typing import Any

from ...binding import errors as native
from ...coordination import errors as lock_errors

__all__ = [
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "translate",
    "decode_error",
    "sql_encode_error",
    "PACKAGE_DIR",
    "warn_caller",
    "UNSUPPORTED_TYPE_ERROR",
    "UNSUPPORTED_PARAMETERS_ERROR",
    "NUL_IN_QUERY_ERROR",
    "SECOND_STATEMENT_ERROR",
    "cause",
]

try:
    # The stdlib classes as extra bases: code that catches ``sqlite3.Error``
    # (or a library whose dialect names the stdlib module, e.g. SQLAlchemy's
    # with ``creator=``) catches ours too.
    import sqlite3 as _std
except ImportError:  # a Python built without _sqlite3
    _std = None  # type: ignore[assignment]


def _also(name: str) -> tuple[type, ...]:
    return (getattr(_std, name),) if _std is not None else ()


class Warning(*_also("Warning")):  # type: ignore[misc]  # noqa: A001 - the DB-API name
    """Important warnings (PEP 249); unused by SQLite, kept for the API."""


class Error(native.Error, *_also("Error")):  # type: ignore[misc]
    """Base class of the DB-API exceptions.

    Attributes:
        sqlite_errorcode: SQLite's (extended) result code, or None when the
            error did not come from SQLite.
        sqlite_errorname: its name, e.g. ``"SQLITE_CONSTRAINT_UNIQUE"``.
    """

    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None


class InterfaceError(Error, *_also("InterfaceError")):  # type: ignore[misc]
    """Misuse of the module's interface."""


class DatabaseError(Error, *_also("DatabaseError")):  # type: ignore[misc]
    """Errors related to the database."""


class DataError(DatabaseError, *_also("DataError")):  # type: ignore[misc]
    """Problems with the processed data (value too big, ...)."""


class OperationalError(DatabaseError, *_also("OperationalError")):  # type: ignore[misc]
    """Errors in the database's operation (locked, no such table, I/O, ...)."""


class IntegrityError(DatabaseError, *_also("IntegrityError")):  # type: ignore[misc]
    """A constraint failed."""


class InternalError(DatabaseError, *_also("InternalError")):  # type: ignore[misc]
    """SQLite reported an internal error."""


class ProgrammingError(DatabaseError, *_also("ProgrammingError")):  # type: ignore[misc]
    """Wrong use of the API: closed objects, wrong parameter counts, bad SQL use."""


class NotSupportedError(DatabaseError, *_also("NotSupportedError")):  # type: ignore[misc]
    """An API or mode the database does not support."""


# Primary result code -> DB-API class (CPython Modules/_sqlite/util.c).
_BY_CODE: dict[int, type[Exception]] = {
    2: InternalError,  # SQLITE_INTERNAL
    12: InternalError,  # SQLITE_NOTFOUND
    7: MemoryError,  # SQLITE_NOMEM
    11: DatabaseError,  # SQLITE_CORRUPT
    18: DataError,  # SQLITE_TOOBIG
    19: IntegrityError,  # SQLITE_CONSTRAINT
    20: IntegrityError,  # SQLITE_MISMATCH
    21: InterfaceError,  # SQLITE_MISUSE
    25: InterfaceError,  # SQLITE_RANGE
}
for _code in (1, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 16, 17):
    # ERROR PERM ABORT BUSY LOCKED READONLY INTERRUPT IOERR FULL CANTOPEN
    # PROTOCOL EMPTY SCHEMA
    _BY_CODE[_code] = OperationalError

# Classes the stdlib changed in Python 3.11 (bpo-44092 and friends).
_PY311 = sys.version_info >= (3, 11)
#: A parameter of an unsupported type.
UNSUPPORTED_TYPE_ERROR: type[Error] = ProgrammingError if _PY311 else InterfaceError
#: Parameters that are neither a sequence nor a dict.
UNSUPPORTED_PARAMETERS_ERROR: type[Exception] = ProgrammingError if _PY311 else ValueError
#: SQL with a NUL character.
NUL_IN_QUERY_ERROR: type[Exception] = ProgrammingError if _PY311 else ValueError
#: execute() given more than one statement.
SECOND_STATEMENT_ERROR: type[Exception] = ProgrammingError if _PY311 else Warning


#: This package's files: a warning the stdlib raises from C (attributed to
#: the calling Python code) skips them to point at the caller, however deep
#: in the package it is raised (``warnings.warn(skip_file_prefixes=...)``,
#: Python 3.12+, which is where these warnings exist).
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def warn_caller(message: str, category: type[builtins.Warning] = DeprecationWarning) -> None:
    """Warn as the stdlib does from C: attributed to the first frame outside
    this package (the application's call), however deep in the package the
    warning is raised."""
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, skip_file_prefixes=(PACKAGE_DIR,))
    else:  # these warnings are the stdlib's of 3.12+; older ones are one level up
        warnings.warn(message, category, stacklevel=3)


def with_code(cls: type[Error], message: str, code: int | None, name: str | None) -> Error:
    err = cls(message)
    err.sqlite_errorcode = code
    err.sqlite_errorname = name
    return err


def decode_error(exc: BaseException, description: Any) -> OperationalError:
    """The stdlib's error for TEXT that is not UTF-8: "Could not decode to
    UTF-8 column 'name' with text '...'".  The native error was raised while
    handling the UnicodeDecodeError (its ``__context__``), which holds the
    text and, from the hot path, the column's index (``sss_column``)."""
    failed = exc.__context__
    if isinstance(failed, UnicodeDecodeError):
        column = getattr(failed, "sss_column", None)
        if column is None and description is not None and len(description) == 1:
            column = 0
        if column is not None and description is not None and column < len(description):
            text = bytes(failed.object).decode("utf-8", "replace")
            return OperationalError(
                f"Could not decode to UTF-8 column '{description[column][0]}' with text '{text}'"
            )
    return OperationalError("Could not decode to UTF-8")


def sql_encode_error(exc: UnicodeEncodeError, sql: object) -> BaseException:
    """SQL text with lone surrogates: UnicodeEncodeError, as the stdlib
    raises since 3.11; 3.10 raised its Warning "SQL is of wrong type"."""
    if sys.version_info < (3, 11) and exc.object is sql:
        return Warning("SQL is of wrong type ('str'). Must be string.")
    return exc


def cause(exc: BaseException) -> BaseException | None:
    """What the translated exception is chained to: the user's own exception
    for a failed callback, else nothing (the stdlib's errors are unchained)."""
    if type(exc).__name__ == "CallbackFailed":
        return exc.__cause__
    return None


def translate(exc: BaseException, sql: Any = None, description: Any = None) -> BaseException:
    """The DB-API exception for a native one (returned, not raised), with the
    stdlib's class and message.  ``description``: the cursor's, when reading
    rows (to name the column of text that is not UTF-8).

    Exceptions that are not the package's own (a user callable's, a
    KeyboardInterrupt) come back unchanged.
    """
    if isinstance(exc, Error):
        return exc
    if isinstance(exc, native.SQLiteError):
        cls = _BY_CODE.get(exc.code, DatabaseError)
        if cls is MemoryError:
            return MemoryError()  # the stdlib's PyErr_NoMemory()
        # SQLite's own text, as the stdlib reports it (the native message adds
        # where in the SQL, which file, ...).
        message = exc.errmsg
        if exc.code == 18 and message == "statement too long":
            message = "query string is too large"  # the stdlib checks the SQL length itself
        return with_code(cls, message, exc.extended_code, exc.extended_name)  # type: ignore[arg-type]
    if type(exc).__name__ == "CallbackFailed":  # callbacks.py; it imports this module
        return with_code(OperationalError, str(exc), None, None)
    if isinstance(exc, native.BindingError) and " returned " in str(exc):
        # a user function's result SQLite cannot store (stdlib: the same error)
        return OperationalError("user-defined function raised exception")
    if isinstance(exc, native.BindingOverflowError):
        # stdlib: a plain OverflowError for an int beyond 64 bits
        return OverflowError(str(exc))
    if isinstance(exc, native.BindingError):
        text = str(exc)
        if "unsupported type" in text:
            return UNSUPPORTED_TYPE_ERROR(text)
        return ProgrammingError(text)
    if isinstance(exc, native.ClosedError):
        text = str(exc)
        if "cursor" in text:
            return ProgrammingError("Cannot operate on a closed cursor.")
        return ProgrammingError("Cannot operate on a closed database.")
    if isinstance(exc, native.ThreadingError):
        return ProgrammingError(str(exc))
    if isinstance(exc, native.InterfaceError):
        text = str(exc)
        if sql is not None and not isinstance(sql, str) and "must be str" in text:
            return TypeError(text)
        if "NUL character" in text:
            return NUL_IN_QUERY_ERROR("the query contains a null character")
        if text.startswith("execute() runs one statement at a time"):
            return SECOND_STATEMENT_ERROR("You can only execute one statement at a time.")
        return ProgrammingError(text)
    if isinstance(exc, native.DataError):
        return decode_error(exc, description)
    if isinstance(exc, lock_errors.LockTimeout):
        return OperationalError(f"database is locked: {exc}")
    if isinstance(exc, native.Error):
        return OperationalError(str(exc))
    return exc
