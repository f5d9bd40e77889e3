"""Prepared statements and the per-connection statement cache."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import BindingError, InterfaceError
from .raw import NULL, error_from_db, ffi, lib, text
from .values import as_sequence, pack_row

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Statement", "StatementCache"]

# stdlib sqlite3 counts rowcount for these statements only (PEP 249 "DML").
#: Matches SQL that starts (after comments) with INSERT, UPDATE, DELETE or
#: REPLACE: a statement that sets ``rowcount`` (the DB-API faces use it too).
DML_PATTERN = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I | re.S)

_PREPARE_FLAGS = lib.SQLITE_PREPARE_PERSISTENT


def _syntax_context(sql: str, sql_bytes: bytes, db: Any) -> str | None:
    """Where in the SQL the error is, when SQLite knows (sqlite3_error_offset)."""
    offset = lib.sqlite3_error_offset(db)
    if offset < 0:
        return None
    char_offset = len(sql_bytes[:offset].decode("utf-8", "replace"))
    snippet = sql[char_offset : char_offset + 30]
    return f"at offset {char_offset}: {snippet!r} in {sql[:200]!r}"


class Statement:
    """One prepared ``sqlite3_stmt`` and what is known about it.

    ``handle`` is an ``ffi.gc`` pointer that finalizes itself when dropped; the
    connection finalizes every statement explicitly when it closes.
    """

    __slots__ = (
        "__weakref__",
        "handle",
        "addr",
        "sql",
        "column_count",
        "param_count",
        "param_names",
        "is_dml",
        "readonly",
        "bound",
        "description",
    )

    handle: Any
    #: the handle's address for the C hot path (``_hotpath``); 0 when there is
    #: no statement (empty SQL) or it was finalized
    addr: int
    sql: str
    column_count: int
    param_count: int
    param_names: tuple[str | None, ...]
    is_dml: bool
    readonly: bool
    #: keeps the bytes that SQLITE_STATIC bindings point into alive
    bound: bytes | None
    #: DB-API 7-tuples, name first, for statements that return rows
    description: tuple[tuple[Any, ...], ...] | None

    def __init__(self, con: Connection, sql: str) -> None:
        if not isinstance(sql, str):
            raise InterfaceError(f"SQL must be str, not {type(sql).__qualname__}")
        if "\0" in sql:
            raise InterfaceError("SQL contains a NUL character")
        db = con.sss_db
        sql_bytes = sql.encode("utf-8", con.sql_encoding_errors)
        out = ffi.new("sqlite3_stmt **")
        tail = ffi.new("const char **")
        source = ffi.from_buffer(sql_bytes)
        rc = lib.sqlite3_prepare_v3(db, source, len(sql_bytes), _PREPARE_FLAGS, out, tail)
        cb = con.sss_callbacks
        if cb.error is not None:  # the authorizer raised (and denied)
            if out[0] != NULL:
                lib.sqlite3_finalize(out[0])
            raise cb.take()
        if rc != lib.SQLITE_OK:
            raise error_from_db(db, rc, _syntax_context(sql, sql_bytes, db))
        # None, not a NULL cdata, for an empty statement: the hot path tests it
        # with `is None`, which is far cheaper than a cdata comparison.
        handle = ffi.gc(out[0], con.statements.finalize_dropped) if out[0] != NULL else None
        consumed = int(ffi.cast("uintptr_t", tail[0])) - int(ffi.cast("uintptr_t", source))
        if consumed < len(sql_bytes):
            try:
                _reject_second_statement(db, sql_bytes[consumed:], handle)
            finally:
                cb.error = None  # the authorizer, on SQL that is refused anyway
        self.handle = handle
        self.addr = int(ffi.cast("uintptr_t", handle)) if handle is not None else 0
        self.sql = sql
        self.bound = None
        self.description = None
        if handle is None:  # empty SQL or only comments: runs, returns nothing
            self.column_count = self.param_count = 0
            self.param_names = ()
            self.is_dml = False
            self.readonly = True
            return
        self.param_count = lib.sqlite3_bind_parameter_count(handle)
        self.param_names = tuple(
            (text(name)[1:] if name != NULL else None)
            for name in (
                lib.sqlite3_bind_parameter_name(handle, i) for i in range(1, self.param_count + 1)
            )
        )
        self.is_dml = bool(DML_PATTERN.match(sql))
        self.describe()
        con.statements.track(self)

    def describe(self) -> None:
        """(Re)read what SQLite says about the statement's result: on prepare,
        and again after SQLite re-prepared it for a schema change."""
        handle = self.handle
        self.column_count = lib.sqlite3_column_count(handle)
        self.readonly = bool(lib.sqlite3_stmt_readonly(handle))
        self.description = (
            tuple(
                (text(lib.sqlite3_column_name(handle, i)), None, None, None, None, None, None)
                for i in range(self.column_count)
            )
            if self.column_count
            else None
        )

    def pack(self, params: Any) -> bytes:
        """Pack ``params`` for this statement (sequence or mapping)."""
        if isinstance(params, Mapping):
            return pack_row(self.mapping_to_row(params))
        return pack_row(as_sequence(params))

    def mapping_to_row(self, params: Mapping[str, Any]) -> list[Any]:
        """The values of ``params`` in the order of the statement's named
        parameters.  A list: the hot path binds lists of values for named
        parameters directly, and sends tuples (a sequence given for named
        parameters) to the packed path (csrc/hotpath/hotpath.c)."""
        names = self.param_names
        if None in names:
            raise BindingError(
                "statement uses positional parameters (?) but a mapping was given; "
                "pass a sequence, or use named parameters (:name)"
            )
        try:
            return [params[name] for name in names]  # type: ignore[index]
        except KeyError as exc:
            raise BindingError(
                f"no value for named parameter :{exc.args[0]} "
                f"(the statement uses {', '.join(':' + str(n) for n in names)})"
            ) from None

    def finalize(self) -> None:
        if self.handle is not None:
            ffi.release(self.handle)  # calls sqlite3_finalize now, never again
        self.handle = None
        self.addr = 0
        self.bound = None


def _reject_second_statement(db: Any, rest: bytes, first: Any) -> None:
    """execute() runs one statement; a second one (not just whitespace or a
    comment) after the first is an error rather than silently ignored."""
    out = ffi.new("sqlite3_stmt **")
    rc = lib.sqlite3_prepare_v3(db, rest, len(rest), 0, out, ffi.NULL)
    if rc == lib.SQLITE_OK and out[0] == NULL:
        return
    if out[0] != NULL:
        lib.sqlite3_finalize(out[0])
    if first is not None:
        ffi.release(first)
    raise InterfaceError(
        "execute() runs one statement at a time; use executescript() for several "
        f"(found more SQL after the first statement: {rest.decode('utf-8', 'replace')[:60]!r})"
    )


class StatementCache:
    """Prepared statements by SQL text, least recently used evicted first.

    A statement is taken out of the cache while a cursor uses it and put back
    when the cursor is done, so two cursors never share one ``sqlite3_stmt``.
    Every statement ever prepared is tracked weakly so that closing the
    connection can finalize them all before ``sqlite3_close``.
    """

    __slots__ = ("idle_by_sql", "size", "_all", "_lock", "dropped")

    def __init__(self, size: int, lock: Any) -> None:
        import weakref

        self.idle_by_sql: dict[str, Statement] = {}
        self.size = size
        self._all: weakref.WeakSet[Statement] = weakref.WeakSet()
        #: the connection's lock (``_hotpath.TryLock``)
        self._lock = lock
        #: statements dropped while another thread was using the connection:
        #: finalized by the next call that holds it (:meth:`finalize_pending`)
        self.dropped: list[Any] = []

    def finalize_dropped(self, handle: Any) -> None:
        """The ``ffi.gc`` finalizer of every statement handle.

        A statement's last reference can go in any thread (or in the cyclic
        garbage collector), also while another thread is inside
        ``sqlite3_step`` on this connection with the GIL released; the
        connection is opened NOMUTEX, so finalizing there would race it.  Only
        a thread that can take the connection's lock finalizes; otherwise the
        handle waits in :attr:`dropped` for the thread that holds it.
        """
        lock = self._lock
        if lock.acquire(False):
            try:
                lib.sqlite3_finalize(handle)
            finally:
                lock.release()
        else:
            self.dropped.append(handle)

    def finalize_pending(self) -> None:
        """Finalize the statements left in :attr:`dropped` (the caller holds
        the connection's lock)."""
        dropped = self.dropped
        while dropped:
            lib.sqlite3_finalize(dropped.pop())

    def track(self, stmt: Statement) -> None:
        self._all.add(stmt)

    def checkout(self, con: Connection, sql: str) -> Statement:
        if self.dropped:
            self.finalize_pending()
        stmt = self.idle_by_sql.pop(sql, None)
        if stmt is None:
            stmt = Statement(con, sql)
        return stmt

    def idle(self, sql: str) -> Statement | None:
        """The idle cached statement for ``sql`` (left in the cache), or None;
        the caller holds the connection."""
        return self.idle_by_sql.get(sql)

    def checkin(self, stmt: Statement) -> None:
        """Return an idle (reset) statement to the cache."""
        idle = self.idle_by_sql
        if self.size <= 0 or stmt.handle is None or stmt.sql in idle:
            stmt.finalize()
            return
        idle[stmt.sql] = stmt
        if len(idle) > self.size:
            self.evict_oldest()

    def evict_oldest(self) -> None:
        idle = self.idle_by_sql
        if idle:
            idle.pop(next(iter(idle))).finalize()

    def clear(self) -> None:
        """Finalize every statement, idle or in use (the connection is closing)."""
        self.finalize_pending()
        for stmt in list(self._all):
            stmt.finalize()
        self.idle_by_sql.clear()
        self._all.clear()

    def __len__(self) -> int:
        return len(self.idle_by_sql)
