"""The exception hierarchy.

Every exception this package raises on purpose derives from :class:`Error`.
Errors reported by SQLite itself are :class:`SQLiteError` subclasses, one class
per primary result code (``SQLITE_BUSY`` -> :class:`BusyError`, ...), each
carrying the ``code``, ``extended_code`` and ``name`` SQLite gave.

This module is pure Python on purpose: the coordination layer (the directory
lock) imports :class:`Error` without needing the compiled SQLite module.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Error",
    "InterfaceError",
    "ClosedError",
    "ThreadingError",
    "BindingError",
    "BindingOverflowError",
    "DataError",
    "ChangesetError",
    "SQLiteError",
    "error_class_for",
    "PRIMARY_RESULT_CODES",
    "SQLError",
    "InternalError",
    "PermissionsError",
    "AbortError",
    "BusyError",
    "LockedError",
    "NoMemError",
    "ReadOnlyError",
    "InterruptError",
    "DiskIOError",
    "CorruptError",
    "NotFoundError",
    "FullError",
    "CantOpenError",
    "ProtocolError",
    "EmptyError",
    "SchemaChangeError",
    "TooBigError",
    "ConstraintError",
    "MismatchError",
    "MisuseError",
    "NoLFSError",
    "AuthError",
    "FormatError",
    "RangeError",
    "NotADBError",
]


class Error(Exception):
    """Base class of every exception raised by sqlite_session_safe."""

    #: For a row of ``executemany`` that failed after the rows before it ran:
    #: its index in the parameter rows (else None).
    row_index: int | None = None


class InterfaceError(Error):
    """The package's API was used in a way it does not allow."""


class ClosedError(InterfaceError):
    """A closed connection, cursor, session or backup was used."""


class ThreadingError(InterfaceError):
    """One connection was used from two threads at the same time."""


class BindingError(InterfaceError):
    """Parameters do not fit the statement: wrong count, unknown name, or a
    value of a type SQLite cannot store."""


class BindingOverflowError(BindingError, OverflowError):
    """An int parameter does not fit SQLite's signed 64-bit INTEGER."""


class DataError(Error, ValueError):
    """A stored value could not be converted, e.g. TEXT that is not valid UTF-8."""


class ChangesetError(Error):
    """A changeset or patchset is corrupt or malformed, or cannot be used the
    way it was asked to (e.g. inverting a patchset)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        #: The SQLite result code behind it, when SQLite reported it.
        self.code = code


class SQLiteError(Error):
    """An error reported by SQLite.

    Attributes:
        code: the primary result code (``extended_code & 0xFF``).
        extended_code: the extended result code SQLite reported.
        name: the primary code's name, e.g. ``"SQLITE_BUSY"``.
        extended_name: the extended code's name, e.g. ``"SQLITE_BUSY_SNAPSHOT"``
            (equal to ``name`` when SQLite gave no extended detail).
        errmsg: SQLite's own message (``sqlite3_errmsg``), without the
            context this package adds to ``str(exc)`` (where in the SQL, which
            file); the DB-API module reports it alone, as the stdlib does.
    """

    #: Primary result code this class stands for (set on each subclass).
    primary_code: int = 1

    def __init__(
        self,
        message: str,
        extended_code: int | None = None,
        extended_name: str | None = None,
        *,
        errmsg: str | None = None,
    ) -> None:
        super().__init__(message)
        self.errmsg: str = message if errmsg is None else errmsg
        if extended_code is None:
            extended_code = self.primary_code
        self.extended_code: int = extended_code
        self.code: int = extended_code & 0xFF
        self.name: str = PRIMARY_RESULT_CODES.get(self.code, f"SQLITE_{self.code}")
        self.extended_name: str = extended_name or self.name

    def __reduce__(self) -> Any:
        # pickles across processes (multiprocessing) intact
        return (_rebuild, (type(self), str(self), self.extended_code, self.extended_name, self.errmsg))


class SQLError(SQLiteError):
    """SQLite reported SQLITE_ERROR."""

    primary_code = 1


class InternalError(SQLiteError):
    """SQLite reported SQLITE_INTERNAL."""

    primary_code = 2


class PermissionsError(SQLiteError):
    """SQLite reported SQLITE_PERM."""

    primary_code = 3


class AbortError(SQLiteError):
    """SQLite reported SQLITE_ABORT."""

    primary_code = 4


class BusyError(SQLiteError):
    """SQLite reported SQLITE_BUSY."""

    primary_code = 5


class LockedError(SQLiteError):
    """SQLite reported SQLITE_LOCKED."""

    primary_code = 6


class NoMemError(SQLiteError, MemoryError):
    """SQLite reported SQLITE_NOMEM.  Also a :class:`MemoryError`, as the
    stdlib module raises for it, so ``except MemoryError`` catches it."""

    primary_code = 7


class ReadOnlyError(SQLiteError):
    """SQLite reported SQLITE_READONLY."""

    primary_code = 8


class InterruptError(SQLiteError):
    """SQLite reported SQLITE_INTERRUPT."""

    primary_code = 9


class DiskIOError(SQLiteError):
    """SQLite reported SQLITE_IOERR."""

    primary_code = 10


class CorruptError(SQLiteError):
    """SQLite reported SQLITE_CORRUPT."""

    primary_code = 11


class NotFoundError(SQLiteError):
    """SQLite reported SQLITE_NOTFOUND."""

    primary_code = 12


class FullError(SQLiteError):
    """SQLite reported SQLITE_FULL."""

    primary_code = 13


class CantOpenError(SQLiteError):
    """SQLite reported SQLITE_CANTOPEN."""

    primary_code = 14


class ProtocolError(SQLiteError):
    """SQLite reported SQLITE_PROTOCOL: its own file-locking protocol failed
    (e.g. WAL locks kept changing under it).  Also ``sss.SQLiteProtocolError``,
    the clearer name.

    Not this package's lock protocol (PROTOCOL.md): its errors are
    :class:`~sqlite_session_safe.LockError` subclasses
    (:class:`~sqlite_session_safe.LockRefused`,
    :class:`~sqlite_session_safe.ProtocolMismatch`,
    :class:`~sqlite_session_safe.OwnerFormatError`,
    :class:`~sqlite_session_safe.UnknownProtocolVersion`).
    """

    primary_code = 15


class EmptyError(SQLiteError):
    """SQLite reported SQLITE_EMPTY."""

    primary_code = 16


class SchemaChangeError(SQLiteError):
    """SQLite reported SQLITE_SCHEMA."""

    primary_code = 17


class TooBigError(SQLiteError):
    """SQLite reported SQLITE_TOOBIG."""

    primary_code = 18


class ConstraintError(SQLiteError):
    """SQLite reported SQLITE_CONSTRAINT."""

    primary_code = 19


class MismatchError(SQLiteError):
    """SQLite reported SQLITE_MISMATCH."""

    primary_code = 20


class MisuseError(SQLiteError):
    """SQLite reported SQLITE_MISUSE."""

    primary_code = 21


class NoLFSError(SQLiteError):
    """SQLite reported SQLITE_NOLFS."""

    primary_code = 22


class AuthError(SQLiteError):
    """SQLite reported SQLITE_AUTH."""

    primary_code = 23


class FormatError(SQLiteError):
    """SQLite reported SQLITE_FORMAT."""

    primary_code = 24


class RangeError(SQLiteError):
    """SQLite reported SQLITE_RANGE."""

    primary_code = 25


class NotADBError(SQLiteError):
    """SQLite reported SQLITE_NOTADB."""

    primary_code = 26


#: primary code -> SQLite's name for it
PRIMARY_RESULT_CODES: dict[int, str] = {
    1: "SQLITE_ERROR",
    2: "SQLITE_INTERNAL",
    3: "SQLITE_PERM",
    4: "SQLITE_ABORT",
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    7: "SQLITE_NOMEM",
    8: "SQLITE_READONLY",
    9: "SQLITE_INTERRUPT",
    10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT",
    12: "SQLITE_NOTFOUND",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
    16: "SQLITE_EMPTY",
    17: "SQLITE_SCHEMA",
    18: "SQLITE_TOOBIG",
    19: "SQLITE_CONSTRAINT",
    20: "SQLITE_MISMATCH",
    21: "SQLITE_MISUSE",
    22: "SQLITE_NOLFS",
    23: "SQLITE_AUTH",
    24: "SQLITE_FORMAT",
    25: "SQLITE_RANGE",
    26: "SQLITE_NOTADB",
}

def _rebuild(cls: type[SQLiteError], message: str, code: int, name: str, errmsg: str) -> SQLiteError:
    return cls(message, code, name, errmsg=errmsg)


_CLASS_BY_CODE: dict[int, type[SQLiteError]] = {
    cls.primary_code: cls for cls in SQLiteError.__subclasses__()
}


def error_class_for(extended_code: int) -> type[SQLiteError]:
    """The exception class for a (primary or extended) SQLite result code."""
    return _CLASS_BY_CODE.get(extended_code & 0xFF, SQLiteError)
