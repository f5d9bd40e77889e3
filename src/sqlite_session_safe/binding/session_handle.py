"""Sessions: an ``sqlite3_session`` handle with typed methods, and its table
filter.  The sessions layer's ``Session`` adds the lifetime rules (every
call holds the connection, deletion before the connection closes).

Every method that takes ``db`` (the ``sqlite3 *`` of
:meth:`Connection.sss_hold`) expects the caller to hold the connection.
"""

from __future__ import annotations

from typing import Any, Protocol

from .changeset_io import Writer, output_blob
from .errors import SQLiteError, error_class_for
from .raw import NULL, ensure, error_from_db, ffi, lib, text

__all__ = ["SessionHandle", "TableChooser"]

#: The C table filter behind ``skip_reserved`` (csrc/sss_session_filter.c).
_SKIP_RESERVED = ffi.addressof(lib, "sss_session_filter_unreserved")
#: The C filter in front of a Python one (csrc/sss_filter_cache.c): asks it
#: once per table.
_FILTER_CACHE_CALL = ffi.addressof(lib, "sss_filter_cache_call")


class TableChooser(Protocol):
    """What a session's Python table filter calls: ``filter_table(name)``
    with the table name as SQLite gives it (UTF-8 bytes); 1 records the
    table, 0 does not.  It must not raise (SQLite cannot unwind it)."""

    def filter_table(self, name: bytes) -> int: ...


class SessionHandle:
    """An ``sqlite3_session*`` on database ``schema`` of connection handle
    ``db``.

    Calls ``sqlite3session_create``; :meth:`delete` calls ``sqlite3session_delete``."""

    __slots__ = ("ptr", "handle", "filter_cache")

    def __init__(self, db: Any, schema: str) -> None:
        self.ptr: Any = None
        self.handle: Any = None
        self.filter_cache: Any = None
        out = ffi.new("sqlite3_session **")
        ensure(lib.sqlite3session_create(db, schema.encode(), out), db, "creating a session")
        self.ptr = out[0]

    @property
    def closed(self) -> bool:
        """True once :meth:`delete` ran."""
        return self.ptr is None

    def object_config(self, db: Any, rowid: bool, track_size: bool) -> None:
        """Record tables without a PRIMARY KEY by rowid; keep a running
        changeset size.

        Calls ``sqlite3session_object_config`` (``SQLITE_SESSION_OBJCONFIG_ROWID``,
        ``SQLITE_SESSION_OBJCONFIG_SIZE``)."""
        flag = ffi.new("int *", 1 if rowid else 0)
        _check(lib.sqlite3session_object_config(self.ptr, lib.SQLITE_SESSION_OBJCONFIG_ROWID, flag),
               db, "configuring rowid tracking")
        flag[0] = 1 if track_size else 0
        _check(lib.sqlite3session_object_config(self.ptr, lib.SQLITE_SESSION_OBJCONFIG_SIZE, flag),
               db, "configuring size tracking")

    def filter_with(self, chooser: TableChooser) -> None:
        """Ask ``chooser.filter_table(name)`` whether to record a table, once
        per table: a C cache answers SQLite's later calls for it.

        Calls ``sqlite3session_table_filter``."""
        self.handle = ffi.new_handle(chooser)
        cache = ffi.gc(ffi.new("sss_filter_cache *"), lib.sss_filter_cache_clear)
        cache.ask = lib.sss_py_session_filter
        cache.ctx = self.handle
        self.filter_cache = cache
        lib.sqlite3session_table_filter(self.ptr, _FILTER_CACHE_CALL, cache)

    def skip_reserved(self) -> None:
        """Record no table whose name starts with the package's reserved
        prefix, decided in C.

        Calls ``sqlite3session_table_filter``."""
        lib.sqlite3session_table_filter(self.ptr, _SKIP_RESERVED, NULL)

    def attach(self, db: Any, table: str | None) -> None:
        """Record ``table`` (None: every table, also ones created later).

        Calls ``sqlite3session_attach``."""
        if table is None:
            _check(lib.sqlite3session_attach(self.ptr, NULL), db, "attaching all tables")
        else:
            _check(lib.sqlite3session_attach(self.ptr, table.encode("utf-8")), db,
                   f"attaching table {table!r}")

    def enable(self, value: int) -> bool:
        """Set recording on (1) or off (0), or only ask (-1); the setting afterwards.

        Calls ``sqlite3session_enable``."""
        return bool(lib.sqlite3session_enable(self.ptr, value))

    def indirect(self, value: int) -> bool:
        """Set the indirect flag (1 / 0), or only ask (-1); the flag afterwards.

        Calls ``sqlite3session_indirect``."""
        return bool(lib.sqlite3session_indirect(self.ptr, value))

    def is_empty(self) -> bool:
        """Calls ``sqlite3session_isempty``."""
        return bool(lib.sqlite3session_isempty(self.ptr))

    def memory_used(self) -> int:
        """Calls ``sqlite3session_memory_used``."""
        return int(lib.sqlite3session_memory_used(self.ptr))

    def changeset_size(self) -> int:
        """Calls ``sqlite3session_changeset_size``."""
        return int(lib.sqlite3session_changeset_size(self.ptr))

    def changeset(self, db: Any, patchset: bool = False) -> bytes:
        """The changes recorded so far (``patchset``: as a patchset).

        Calls ``sqlite3session_changeset`` / ``sqlite3session_patchset``."""
        fn = lib.sqlite3session_patchset if patchset else lib.sqlite3session_changeset
        rc, blob = output_blob(fn, self.ptr)
        if rc != lib.SQLITE_OK:
            raise _session_error(db, rc, f"generating the {'patchset' if patchset else 'changeset'}")
        return blob

    def changeset_stream(self, db: Any, writer: Writer, patchset: bool = False) -> None:
        """Write the changes recorded so far to ``writer``.

        Calls ``sqlite3session_changeset_strm`` / ``sqlite3session_patchset_strm``."""
        fn = lib.sqlite3session_patchset_strm if patchset else lib.sqlite3session_changeset_strm
        rc = fn(self.ptr, lib.sss_py_output, writer.handle)
        writer.reraise()
        if rc != lib.SQLITE_OK:
            raise _session_error(db, rc, f"streaming the {'patchset' if patchset else 'changeset'}")

    def diff(self, db: Any, from_schema: str, table: str) -> None:
        """Record the changes that turn ``table`` of ``from_schema`` into
        this session's ``table``.

        Calls ``sqlite3session_diff``."""
        err = ffi.new("char **")
        rc = lib.sqlite3session_diff(self.ptr, from_schema.encode("utf-8"), table.encode("utf-8"), err)
        message = text(err[0]) if err[0] != NULL else ""
        if err[0] != NULL:
            lib.sqlite3_free(err[0])
        if rc != lib.SQLITE_OK:
            if message:
                raise error_class_for(rc)(f"{message} (diff of {table!r} from {from_schema!r})", rc)
            raise error_from_db(db, rc, f"diff of {table!r} from {from_schema!r}")

    def delete(self) -> None:
        """Delete the session (twice is fine); the caller holds the connection.

        Calls ``sqlite3session_delete``."""
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.sqlite3session_delete(ptr)
            if self.filter_cache is not None:  # SQLite no longer calls it
                lib.sss_filter_cache_clear(self.filter_cache)


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_session_filter(ctx: Any, table: Any) -> int:
    chooser = ffi.from_handle(ctx)
    return int(chooser.filter_table(ffi.string(table)))  # never raises


def _check(rc: int, db: Any, context: str) -> None:
    if rc != lib.SQLITE_OK:
        raise error_from_db(db, rc, context)


def _session_error(db: Any, rc: int, context: str) -> SQLiteError:
    if rc == lib.SQLITE_SCHEMA or rc & 0xFF == lib.SQLITE_SCHEMA:
        return error_from_db(db, rc, f"{context}: a recorded table's schema changed during the "
                                     "session (e.g. DROP COLUMN); SQLite cannot write its changes")
    return error_from_db(db, rc, context)
