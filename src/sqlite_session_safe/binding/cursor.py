"""Cursors: run one statement and hand out its rows.

``execute`` binds, steps and builds the first small batch of rows in one call
to the C extension ``_hotpath`` (``csrc/hotpath/hotpath.c``), so a point query
costs one C call and no intermediate encoding.  Later batches (iteration,
``fetchall``) come from one cffi call that steps the statement many times with
the GIL released once and writes the rows in marshal format
(``csrc/rows.c``); ``marshal.loads`` turns a batch into a list of tuples in C.
Parameters ``_hotpath`` does not bind itself (subclasses, huge ints, ...) take
the marshal path too (``csrc/bind.c``), which raises the precise errors.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any, NoReturn

from .. import _hotpath
from .errors import BindingError, ClosedError, DataError, Error, InterfaceError
from .raw import error_from_db, ffi, lib
from .statement import Statement
from .values import (
    Parameters,
    as_sequence,
    describe_bad_value,
    overflow_error,
    pack_row,
    pack_rows,
)

if TYPE_CHECKING:
    from .callbacks import Scratch
    from .connection import Connection

__all__ = ["Cursor", "Row"]

Row = tuple[Any, ...]

#: First batch filled by execute(): enough for point queries and small results
#: without stepping far ahead of a caller that only wants fetchone().
FIRST_BATCH_ROWS = 64
#: Later batches (iteration, fetchmany, fetchall).
BATCH_ROWS = 4096
#: A batch stops growing past this many bytes, bounding memory for wide rows.
BATCH_BYTES = 1 << 20
#: executemany packs and runs this many rows per cffi call.
EXECUTEMANY_CHUNK = 8192

_loads = marshal.loads
_ROW = lib.SQLITE_ROW
_DONE = lib.SQLITE_DONE
_OK = lib.SQLITE_OK
_ERR_COUNT = lib.SSS_ERR_COUNT
_ERR_TYPE = lib.SSS_ERR_TYPE
_ERR_OVERFLOW = lib.SSS_ERR_OVERFLOW
_ERR_FORMAT = lib.SSS_ERR_FORMAT
_ERR_NOMEM = lib.SSS_ERR_NOMEM
_ERR_RETURNS_ROWS = lib.SSS_ERR_RETURNS_ROWS
_BUFFER_MOVED = lib.SSS_BUFFER_MOVED
_REPREPARED = lib.SSS_REPREPARED
_EMPTY: list[Row] = []

# The hot path calls the SQLite linked into _native, through its function
# table: never a second copy of SQLite (see csrc/sss_api.h).
_hotpath.init(int(ffi.cast("uintptr_t", lib.sss_sqlite_api())), lib.sss_sqlite_api_size())
_hot_execute = _hotpath.execute
_FALLBACK = _hotpath.FALLBACK


class Cursor:
    """Runs statements on a :class:`Connection` and iterates their rows as tuples.

    A cursor holds at most one active statement. Reading a result to its end
    resets the statement at once, so finished queries never hold SQLite's read
    lock.
    """

    # Class-level defaults instead of __slots__: creating a cursor (once per
    # Connection.execute call) then sets a single attribute.
    _stmt: Statement | None = None  # only while rows remain to be stepped
    _rows: list[Row] = _EMPTY
    _pos = 0
    _more = False
    _closed = False
    _description: tuple[tuple[Any, ...], ...] | None = None
    #: Rows changed by the last INSERT/UPDATE/DELETE/REPLACE, else -1.
    rowcount = -1
    #: ``sqlite3_last_insert_rowid()`` after the last statement that wrote.
    lastrowid: int | None = None
    #: Default size for :meth:`fetchmany`.
    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        # Connection.execute builds cursors without calling this (hot path):
        # keep every other default at class level, not here.
        self.connection = connection

    # -- running statements ------------------------------------------------

    def execute(self, sql: str, params: Parameters | None = None) -> Cursor:
        """Run one SQL statement with optional parameters; returns this cursor.

        ``params`` is a sequence for ``?`` / ``?NNN`` placeholders or a mapping
        for ``:name`` / ``@name`` / ``$name`` ones.

        Calls ``sqlite3_prepare_v3`` (statements are cached per connection),
        then, in one C call, ``sqlite3_bind_*``, ``sqlite3_step`` and
        ``sqlite3_column_*`` for the first rows.
        """
        # This is the hot path of every query: the statement cache is inlined
        # on purpose.
        con = self.connection
        lock = con.sss_lock
        if not lock.acquire(False):
            con.sss_raise_busy()
        try:
            if self._closed or con.sss_db is None:
                self._raise_closed()
            if self._stmt is not None:
                self._release()
            cb = con.sss_callbacks
            if cb.depth:
                cb.scratch()  # refuses SQL inside a callback that must not run any
            cache = con.statements
            if cache.dropped:  # dropped by another thread while we held the connection
                cache.finalize_pending()
            idle = cache.idle_by_sql
            cached = idle.pop(sql, None)
            fresh = cached is None
            stmt = Statement(con, sql) if cached is None else cached
            addr = stmt.addr
            if not addr:  # empty statement: nothing to run
                cache.checkin(stmt)
                self._rows, self._pos, self._more, self._description = _EMPTY, 0, False, None
                self.rowcount = -1
                return self
            try:
                if stmt.is_dml and con.sss_begin is not None and lib.sqlite3_get_autocommit(con.sss_db):
                    con.sss_implicit_begin()  # the DB-API face's legacy transactions
                if type(params) is dict:
                    params = stmt.mapping_to_row(params)
                rc, rows, changes, last = _hot_execute(
                    addr, params if params else None, FIRST_BATCH_ROWS, BATCH_BYTES
                )
                if rc == _FALLBACK:  # nothing ran: see sss_execute_packed
                    rc, rows, changes, last = self.sss_execute_packed(stmt, params)
            except BaseException as exc:
                # A failed implicit BEGIN, bad parameters, or text that is not
                # UTF-8.  The statement may have stepped (the marshal path
                # leaves it running): reset it so it holds no read lock, then
                # back to the cache.  A window function's finalize() runs in
                # that reset; what it raises is dropped, since this error is
                # the one to report (left in cb it would surface from the
                # next, unrelated query).
                lib.sqlite3_reset(stmt.handle)
                cb.error = None
                cache.checkin(stmt)
                self._rows, self._pos, self._more = _EMPTY, 0, False
                if isinstance(exc, UnicodeDecodeError):
                    raise _bad_text_error(exc) from None
                raise
            if cb.error is not None:
                self._callback_failed(stmt)
            if rc == _DONE:
                idle[sql] = stmt  # back to the cache (cache.checkin, inlined)
                # Only a new statement can grow the cache: one taken out of it
                # goes back in its place.
                if fresh and len(idle) > cache.size:
                    cache.evict_oldest()
                self._more = False
            elif rc == _ROW:
                self._stmt = stmt
                self._more = True
            else:
                if rc & _REPREPARED:
                    stmt.describe()
                    rc &= ~_REPREPARED
                if rc == _ROW:
                    self._stmt = stmt
                    self._more = True
                else:
                    cache.checkin(stmt)
                    self._more = False
                    if rc != _DONE:
                        self._rows, self._pos = _EMPTY, 0
                        raise self._error(rc, stmt, params, None)
            self._description = stmt.description
            self._rows = _EMPTY if rows is None else rows
            self._pos = 0
            if changes is None:  # a read-only statement
                self.rowcount = -1
            else:
                self.rowcount = changes if stmt.is_dml else -1
                self.lastrowid = last
            return self
        finally:
            lock.release()

    def sss_execute_packed(self, stmt: Statement, params: Any) -> tuple[int, Any, Any, Any]:
        """execute() through the marshal path, for the parameters the hot path
        leaves to it: pack, bind, step (csrc/bind.c, csrc/rows.c).  Returns
        what ``_hotpath.execute`` returns.  For the package's own layers: the
        DB-API cursor overrides it to adapt its parameters first."""
        if not params:
            packed = b""
        elif type(params) is tuple or type(params) is list:
            packed = pack_row(params)
        else:
            packed = stmt.pack(params)
        stmt.bound = packed  # the C side binds SQLITE_STATIC into these bytes
        con = self.connection
        scr = con.sss_callbacks.scratch()
        res = scr.res
        rc = lib.sss_execute(stmt.handle, packed, len(packed), FIRST_BATCH_ROWS, BATCH_BYTES, scr.out, res)
        if rc < 0 or rc & _BUFFER_MOVED:  # moved, or may have on errors
            scr.refresh()
            if rc < 0:  # could not bind (nothing ran), or out of memory
                raise self._error(rc, stmt, params, res)
            rc &= ~_BUFFER_MOVED
        rows = None
        if stmt.column_count and (rc & 0xFF == _ROW or rc & 0xFF == _DONE):
            rows = _loads(scr.view)
        if lib.sqlite3_stmt_readonly(stmt.handle):
            return rc, rows, None, None
        return rc, rows, res.changes, res.last_rowid

    def _after_unusual_rc(self, rc: int, stmt: Statement, scr: Scratch) -> int:
        """Handle the flags that ride on a helper's return code besides ROW or
        DONE: the row buffer moved (or may have, on errors), or the statement
        was re-prepared after a schema change."""
        scr.refresh()
        if rc >= 0:
            if rc & _REPREPARED:
                stmt.describe()
            rc &= ~(_BUFFER_MOVED | _REPREPARED)
        return rc

    def _callback_failed(self, stmt: Statement) -> NoReturn:
        """A user function or hook raised while the statement ran: reset the
        statement, then raise that exception itself."""
        self._stmt = None
        self._rows, self._pos, self._more = _EMPTY, 0, False
        con = self.connection
        lib.sqlite3_reset(stmt.handle)
        con.statements.checkin(stmt)
        raise con.sss_callbacks.take()

    def executemany(self, sql: str, seq_of_params: Iterable[Parameters]) -> Cursor:
        """Run a statement that returns no rows once for every parameter row.

        Rows are packed and run in chunks of one cffi call each. ``rowcount`` is
        the total of rows changed.  Not atomic by itself: wrap it in
        :meth:`Connection.transaction` to make it all-or-nothing.

        Calls ``sqlite3_bind_*``, ``sqlite3_step`` and ``sqlite3_reset`` per row, in C.
        """
        con = self.connection
        with con.sss_hold():
            if self._closed:
                self._raise_closed()
            if self._stmt is not None:
                self._release()
            self._rows, self._pos, self._more, self._description = _EMPTY, 0, False, None
            stmt = con.statements.checkout(con, sql)
            try:
                if stmt.is_dml and con.sss_begin is not None and lib.sqlite3_get_autocommit(con.sss_db):
                    con.sss_implicit_begin()
                if stmt.column_count:
                    raise InterfaceError(
                        "executemany() runs statements that return no rows; "
                        "use execute() in a loop for statements that return rows"
                    )
                total = 0
                done = 0
                cb = con.sss_callbacks
                res = cb.scratch().res
                rows_iter = iter(seq_of_params)
                while True:
                    chunk = list(islice(rows_iter, EXECUTEMANY_CHUNK))
                    if not chunk:
                        break
                    if stmt.handle is None:
                        continue
                    if stmt.param_names and isinstance(chunk[0], Mapping):
                        chunk = [self._row_from_mapping(stmt, row, done + i) for i, row in enumerate(chunk)]
                    packed = pack_rows(chunk)
                    rc = lib.sss_execute_many(stmt.handle, packed, len(packed), res)
                    if cb.error is not None:  # the statement is reset already
                        raise cb.take()
                    if rc != _OK:
                        bad = res.bad_row
                        row = chunk[bad] if 0 <= bad < len(chunk) else None
                        err = self._error(rc, stmt, row, res, row_index=done + max(bad, 0))
                        if isinstance(err, Error):
                            err.row_index = done + max(bad, 0)
                        raise err
                    total += res.changes
                    done += len(chunk)
                self.rowcount = total if stmt.is_dml else -1
                if done and not stmt.readonly:
                    self.lastrowid = res.last_rowid
            finally:
                con.statements.checkin(stmt)
            return self

    @staticmethod
    def _row_from_mapping(stmt: Statement, row: Any, index: int) -> list[Any]:
        if not isinstance(row, Mapping):
            raise BindingError(
                f"row {index}: expected a mapping like the first row, got {type(row).__qualname__}"
            )
        return stmt.mapping_to_row(row)

    # -- fetching ----------------------------------------------------------

    def _bad_text(self, exc: UnicodeDecodeError) -> None:
        self._release()
        self._rows, self._pos, self._more = _EMPTY, 0, False
        raise _bad_text_error(exc) from None

    def _fill(self, max_rows: int) -> list[Row]:
        """Step the active statement for the next batch of rows."""
        con = self.connection
        with con.sss_hold():
            stmt = self._stmt
            assert stmt is not None
            cb = con.sss_callbacks
            scr = cb.top if not cb.depth else cb.scratch()
            rc = lib.sss_fill_rows(stmt.handle, max_rows, BATCH_BYTES, scr.out, scr.res)
            if rc != _ROW and rc != _DONE:
                rc = self._after_unusual_rc(rc, stmt, scr)
            if cb.error is not None:
                self._callback_failed(stmt)
            if rc != _ROW:
                self._more = False
                self._stmt = None
                con.statements.checkin(stmt)
                if rc != _DONE:
                    raise self._error(rc, stmt, None, scr.res)
            try:
                return _loads(scr.view)  # type: ignore[no-any-return]
            except UnicodeDecodeError as exc:
                self._bad_text(exc)
                raise  # unreachable: _bad_text raises

    def __iter__(self) -> Iterator[Row]:
        return self

    def __next__(self) -> Row:
        if self.connection.sss_db is None:
            self._raise_closed()
        pos = self._pos
        rows = self._rows
        if pos < len(rows):
            self._pos = pos + 1
            return rows[pos]
        while self._more:
            self._rows = rows = self._fill(BATCH_ROWS)
            if rows:
                self._pos = 1
                return rows[0]
        self._pos = 0
        self._rows = _EMPTY
        raise StopIteration

    def fetchone(self) -> Row | None:
        """The next row, or None when there are no more.

        Calls ``sqlite3_step`` and ``sqlite3_column_*`` in C, a batch of rows at a time."""
        if self.connection.sss_db is None:
            self._raise_closed()
        pos = self._pos
        rows = self._rows
        if pos < len(rows):
            self._pos = pos + 1
            return rows[pos]
        try:
            return self.__next__()
        except StopIteration:
            return None

    def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to ``size`` more rows (default :attr:`arraysize`).

        Calls ``sqlite3_step`` and ``sqlite3_column_*`` in C, a batch of rows at a time."""
        if self.connection.sss_db is None:
            self._raise_closed()
        if size is None:
            size = self.arraysize
        result = self._rows[self._pos : self._pos + size]
        self._pos += len(result)
        while len(result) < size and self._more:
            self._rows = self._fill(max(size - len(result), 1))
            take = self._rows[: size - len(result)]
            result.extend(take)
            self._pos = len(take)
        return result

    def fetchall(self) -> list[Row]:
        """All remaining rows.

        Calls ``sqlite3_step`` and ``sqlite3_column_*`` in C, a batch of rows at a time."""
        if self.connection.sss_db is None:
            self._raise_closed()
        rows = self._rows
        pos = self._pos
        result = rows[pos:] if pos else rows
        if result is _EMPTY:
            result = []
        self._rows, self._pos = _EMPTY, 0
        while self._more:
            result.extend(self._fill(1 << 30))
        return result

    # -- state -------------------------------------------------------------

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        """Column names (as DB-API 7-tuples) of the last query, else None.

        Calls ``sqlite3_column_name`` (when the statement is prepared)."""
        return self._description

    def close(self) -> None:
        """Release the statement; using the cursor afterwards raises ClosedError.

        Calls ``sqlite3_reset``."""
        if self._stmt is not None and self.connection.sss_db is not None:
            with self.connection.sss_hold():
                self._release()
        self._rows, self._pos, self._more = _EMPTY, 0, False
        self._closed = True

    def _release(self) -> None:
        """Reset the active statement and return it to the cache (lock held)."""
        stmt = self._stmt
        self._stmt = None
        self._more = False
        if stmt is not None and stmt.handle is not None:
            lib.sqlite3_reset(stmt.handle)
            # Resetting a statement in the middle of an aggregate makes SQLite
            # call its finalize(); what that raises concerns a result nobody
            # will read (the stdlib ignores it too).
            self.connection.sss_callbacks.error = None
            self.connection.statements.checkin(stmt)

    def _raise_closed(self) -> None:
        what = "cursor" if self._closed else "connection"
        raise ClosedError(f"cannot use a closed {what}")

    def _error(
        self, rc: int, stmt: Statement, params: Any, res: Any, row_index: int | None = None
    ) -> Exception:
        """The exception for a failed helper call, naming the parameter or row."""
        where = f"executemany row {row_index}: " if row_index is not None else ""
        if rc == _ERR_COUNT:
            given = "0" if not params else _count(params)
            return BindingError(
                f"{where}statement takes {stmt.param_count} parameter"
                f"{'s' if stmt.param_count != 1 else ''}, {given} given"
            )
        if rc in (_ERR_TYPE, _ERR_OVERFLOW):
            index = res.bad_index
            row = _as_row(stmt, params)
            value = row[index] if row is not None and 0 <= index < len(row) else None
            if rc == _ERR_OVERFLOW:
                err: Exception = overflow_error(index, value)
                if where:
                    err.args = (where + err.args[0],)
                return err
            return BindingError(where + describe_bad_value(index, value))
        if rc == _ERR_FORMAT:
            return BindingError(
                f"{where}parameters must be a sequence or a mapping, not {type(params).__qualname__}"
            )
        if rc == _ERR_RETURNS_ROWS:
            return InterfaceError("executemany() runs statements that return no rows")
        if rc == _ERR_NOMEM:
            return MemoryError("out of memory while reading rows")
        err = error_from_db(self.connection.sss_db, rc)
        if where:
            err.args = (where + err.args[0],)
        return err

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bad_text_error(exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"a TEXT value is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
        "read it as bytes with CAST(column AS BLOB)"
    )


def _count(params: Any) -> str:
    try:
        return str(len(params))
    except TypeError:
        return "a non-sequence"


def _as_row(stmt: Statement, params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        try:
            return stmt.mapping_to_row(params)
        except BindingError:
            return None
    try:
        return as_sequence(params)
    except BindingError:
        return None
