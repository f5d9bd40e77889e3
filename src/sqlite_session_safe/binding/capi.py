"""Typed functions for the few SQLite and csrc calls the layers above the
binding make directly (the sessions layer, the DB-API and async faces).

The cffi module's ``lib`` and ``ffi`` are untyped (``Any``), so a call through
them is not checked.  They stay inside ``binding/``: code above imports the
typed names of this module, of the binding's classes, and of the session
extension's wrappers (``session_handle``, ``changegroup``, ``changeset_io``,
``changeset_iter``, ``changeset_ops``, ``changeset_format``,
``changeset_apply``) instead, and ``tests/structure/test_cffi_confined.py``
fails when it does not.
Handles (``sqlite3 *``, ``sqlite3_stmt *``) are opaque here: the layers above
get them from :meth:`Connection.sss_hold` and ``Statement.handle`` and only pass
them back.

The aio worker's hand-off functions are bound once as module attributes with
a declared type, not wrapped: they run several times per call on the
event loop's fast path, where a Python-level wrapper would cost more than
the C call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .raw import NULL, error_from_db, ffi, lib, text

__all__ = [
    "Handle",
    "enable_shared_cache",
    "complete_statement",
    "constant",
    "RESERVED_PREFIX",
    "parameter_names",
    "column_decltypes",
    "statement_end",
    "is_interrupted",
    "exec_sql",
    "in_transaction",
    "total_changes",
    "new_busy_handler",
    "install_busy_handler",
    "new_handoff",
    "handoff_post",
    "handoff_post_wait",
    "handoff_wait",
    "handoff_claim",
    "handoff_idle",
    "handoff_done",
    "handoff_done_idle",
    "handoff_posted",
]

#: An opaque C pointer (``sqlite3 *``, ``sqlite3_stmt *``, a csrc struct).
Handle = Any


def enable_shared_cache(enable: bool) -> bool:
    """``sqlite3_enable_shared_cache``: True when SQLite accepted the change."""
    return bool(lib.sqlite3_enable_shared_cache(1 if enable else 0) == lib.SQLITE_OK)


def complete_statement(sql: bytes) -> bool:
    """``sqlite3_complete``: ``sql`` (UTF-8) ends a complete statement."""
    return bool(lib.sqlite3_complete(sql))


def constant(name: str) -> int | None:
    """The value of ``SQLITE_*`` constant ``name`` in the vendored
    ``sqlite3.h`` cdef, or None when the cdef does not declare it."""
    value = getattr(lib, name, None)
    return int(value) if isinstance(value, int) else None


#: Tables whose names start with this belong to the package: never recorded
#: by a write's session, never replicated.  Defined in C
#: (csrc/sss_session_filter.c), where the write session's filter uses it;
#: re-exported by ``coordination.audit``.
RESERVED_PREFIX: Final[str] = ffi.string(lib.sss_reserved_prefix).decode("ascii")


def parameter_names(stmt: Handle) -> tuple[str | None, ...]:
    """``sqlite3_bind_parameter_name`` for every parameter of prepared
    statement ``stmt``: the name as written (``:x``, ``?3``), None for ``?``."""
    names: list[str | None] = []
    for i in range(1, lib.sqlite3_bind_parameter_count(stmt) + 1):
        name = lib.sqlite3_bind_parameter_name(stmt, i)
        names.append(None if name == NULL else text(name))
    return tuple(names)


def column_decltypes(stmt: Handle, count: int) -> list[str]:
    """``sqlite3_column_decltype`` of the first ``count`` result columns of
    prepared statement ``stmt`` ('' for an expression)."""
    return [text(lib.sqlite3_column_decltype(stmt, i)) for i in range(count)]


def statement_end(
    db: Handle, data: bytes, start: int = 0, context: str = "splitting SQL into statements"
) -> tuple[int, bool]:
    """Where the first SQL statement of ``data[start:]`` ends.

    Compiles it with ``sqlite3_prepare_v3`` on connection ``db`` (and
    finalizes it at once) and returns ``(end, found)``: ``end`` is the byte
    offset in ``data`` just after the statement, ``found`` is False when
    only whitespace, comments or an empty ``;`` were there.

    Raises:
        SQLiteError: the statement does not compile (``context`` says what
            was being done, in the message).
    """
    source = ffi.from_buffer(data)
    stmt = ffi.new("sqlite3_stmt **")
    tail = ffi.new("const char **")
    rc = lib.sqlite3_prepare_v3(db, source + start, len(data) - start, 0, stmt, tail)
    if rc != lib.SQLITE_OK:
        raise error_from_db(db, rc, context)
    end = int(ffi.cast("uintptr_t", tail[0])) - int(ffi.cast("uintptr_t", source))
    found = stmt[0] != NULL
    if found:
        lib.sqlite3_finalize(stmt[0])
    return end, found


def exec_sql(db: Handle, sql: str, check: bool = True) -> None:
    """``sqlite3_exec`` of ``sql`` (one or more statements, no results) on
    ``db``, which the caller holds.

    Raises:
        SQLiteError: a statement failed (unless ``check`` is False: then
            the failure is ignored, e.g. a rollback on the way out).
    """
    rc = lib.sqlite3_exec(db, sql.encode(), NULL, NULL, NULL)
    if check and rc != lib.SQLITE_OK:
        raise error_from_db(db, rc, sql)


def is_interrupted(db: Handle) -> bool:
    """``sqlite3_is_interrupted``: an interrupt is pending on ``db``."""
    return bool(lib.sqlite3_is_interrupted(db))


def in_transaction(db: Handle) -> bool:
    """Not ``sqlite3_get_autocommit``: ``db`` has a transaction open."""
    return bool(lib.sqlite3_get_autocommit(db) == 0)


def total_changes(db: Handle) -> int:
    """``sqlite3_total_changes64``: rows changed since ``db`` opened."""
    return int(lib.sqlite3_total_changes64(db))


def new_busy_handler() -> Handle:
    """A zeroed ``sss_busy`` (csrc/sss_aio.h), freed when the returned
    object is collected; it must outlive the connection it is installed on."""
    return ffi.new("sss_busy *")


def install_busy_handler(busy: Handle, db: Handle, timeout_ms: int) -> None:
    """``sss_busy_install``: an interruptible busy handler on ``db`` that waits
    up to ``timeout_ms`` for a lock."""
    lib.sss_busy_install(busy, db, int(timeout_ms))


def new_handoff() -> Handle:
    """A zeroed ``sss_handoff`` (csrc/sss_aio.h), freed when collected."""
    return ffi.new("sss_handoff *")


# The hand-off protocol of csrc/sss_aio.h (each function is documented there).
handoff_post: Final[Callable[[Handle], int]] = lib.sss_handoff_post
handoff_post_wait: Final[Callable[[Handle, int], int]] = lib.sss_handoff_post_wait
handoff_wait: Final[Callable[[Handle, int], int]] = lib.sss_handoff_wait
handoff_claim: Final[Callable[[Handle], int]] = lib.sss_handoff_claim
handoff_idle: Final[Callable[[Handle, int, int], int]] = lib.sss_handoff_idle
handoff_done: Final[Callable[[Handle], int]] = lib.sss_handoff_done
handoff_done_idle: Final[Callable[[Handle, int, int], int]] = lib.sss_handoff_done_idle
handoff_posted: Final[Callable[[Handle], int]] = lib.sss_handoff_posted
