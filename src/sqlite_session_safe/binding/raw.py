"""The thin layer over the cffi module: ``ffi``, ``lib`` and turning SQLite
result codes into exceptions (PyNaCl's ``ensure()`` pattern).

Everything above this module calls SQLite through ``lib`` and reports failures
through :func:`ensure` or :func:`error_from_db`, so there is one place that
decides what an error looks like.
"""

from __future__ import annotations

import os
from typing import Any

from .._native import ffi, lib
from .errors import PRIMARY_RESULT_CODES, SQLiteError, error_class_for

__all__ = ["ffi", "lib", "ensure", "error_from_db", "error_from_code", "text", "NULL", "stdlib_vfs_find"]

NULL = ffi.NULL

#: Set to ``posix`` to keep SQLite's POSIX record locks on Linux instead of
#: open file description locks (csrc/sss_lockshim.c; README, "Using the
#: stdlib sqlite3 on the same file in the same process").
LOCKS_ENV = "SQLITE_SESSION_SAFE_LOCKS"


def _extended_code_names() -> dict[int, str]:
    """Extended result code -> name, read from the constants in sqlite3.h."""
    names: dict[int, str] = {code: name for code, name in PRIMARY_RESULT_CODES.items()}
    prefixes = {name + "_": code for code, name in PRIMARY_RESULT_CODES.items()}
    for attr in dir(lib):
        for prefix, code in prefixes.items():
            if attr.startswith(prefix):
                value = getattr(lib, attr)
                if isinstance(value, int) and value & 0xFF == code and value > 0xFF:
                    names.setdefault(value, attr)
    return names


EXTENDED_CODE_NAMES = _extended_code_names()


def text(ptr: Any) -> str:
    """A C string from SQLite as str (SQLite's strings are UTF-8)."""
    if ptr == NULL:
        return ""
    return ffi.string(ptr).decode("utf-8", "replace")  # type: ignore[no-any-return]


def error_from_code(rc: int, context: str | None = None) -> SQLiteError:
    """An exception for a result code when no connection can explain it."""
    return _make(rc, text(lib.sqlite3_errstr(rc)), context)


def _make(rc: int, errmsg: str, context: str | None) -> SQLiteError:
    message = f"{errmsg} ({context})" if context else errmsg
    return error_class_for(rc)(message, rc, EXTENDED_CODE_NAMES.get(rc), errmsg=errmsg)


def error_from_db(db: Any, rc: int | None = None, context: str | None = None) -> SQLiteError:
    """The exception describing the last error on connection handle ``db``.

    ``rc`` is the code the failing call returned; when the connection's error
    state disagrees with it (some APIs do not set the connection's error), the
    message comes from ``sqlite3_errstr(rc)`` instead.
    """
    extended = lib.sqlite3_extended_errcode(db)
    if rc is not None and (extended & 0xFF) != (rc & 0xFF):
        return error_from_code(rc, context)
    return _make(extended, text(lib.sqlite3_errmsg(db)), context)


def ensure(rc: int, db: Any = None, context: str | None = None) -> None:
    """Raise the matching :class:`SQLiteError` unless ``rc`` is ``SQLITE_OK``."""
    if rc != lib.SQLITE_OK:
        raise error_from_db(db, rc, context) if db is not None else error_from_code(rc)


def stdlib_vfs_find() -> Any:
    """``sqlite3_vfs_find`` of the SQLite that the stdlib's ``sqlite3`` uses
    (its libsqlite3), or NULL when that cannot be found."""
    try:
        import _sqlite3
    except ImportError:
        return NULL
    import ctypes

    try:
        found = ctypes.CDLL(getattr(_sqlite3, "__file__", None)).sqlite3_vfs_find
    except (OSError, AttributeError):  # linked in without exported symbols
        return NULL
    return ffi.cast("void *", ctypes.cast(found, ctypes.c_void_p).value or 0)


# Before anything can open a database: SQLite's locks must be of one kind for
# the life of the process.  The stdlib's SQLite gets the shim too, so that our
# closes no longer drop its locks; where it cannot, it keeps POSIX locks.
if os.environ.get(LOCKS_ENV, "").strip().lower() != "posix":
    ensure(lib.sss_lockshim_install())
    lib.sss_lockshim_install_foreign(stdlib_vfs_find())
