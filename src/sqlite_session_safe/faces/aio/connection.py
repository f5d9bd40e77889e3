"""The aiosqlite-compatible async connection and cursor, on the DB-API face.

``connect()`` returns a :class:`Connection` that is awaitable and an async
context manager; it runs a :mod:`sqlite_session_safe.dbapi` connection on its
own :class:`~.worker.Worker` thread, so everything underneath behaves as the
stdlib ``sqlite3`` module does.  Differences from aiosqlite that matter for
speed, all invisible to code written for it:

* ``execute()`` runs the statement *and* fetches the first rows (up to 64,
  the binding's own first batch) in one hop; ``fetchone()``/``fetchmany()``/
  iteration serve those from memory and fetch later rows ``BATCH_ROWS`` at a
  time in one hop each; ``fetchall()`` is one hop whatever the size (the
  per-row work is in C).  A point query under ``async with db.execute(...)``
  is one hop where aiosqlite makes three (execute, fetchone, close).
* A hop itself mostly needs no wake-up of either thread (see :mod:`.worker`).

Cancelling a task that awaits a call interrupts the SQL it runs and waits
for it to stop, so the connection stays usable; see :mod:`.worker`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3 as _stdlib
import tempfile
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from itertools import islice
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from ...binding import capi
from ...binding.cursor import BATCH_ROWS, FIRST_BATCH_ROWS
from ...binding.cursor import Cursor as NativeCursor
from ...sessions.changeset import Changeset, Patchset
from ...sessions.session import Session as SyncSession
from .. import dbapi
from .worker import CLOSED_MESSAGE, DEFAULT_SPIN, ClosedWorker, Job, Worker

__all__ = ["Connection", "Cursor", "Session", "Result", "connect", "execute_job", "close_job"]

T = TypeVar("T")
_DUMP_BATCH = 1024
_worker_names = iter(range(1, 1 << 62))


class Result(Coroutine[Any, Any, T], Generic[T]):
    """What ``execute()``, ``cursor()``, ``session()`` ... return, as in
    aiosqlite: await it for the object, or use it as ``async with`` (the
    cursor or session is closed at the end of the block)."""

    __slots__ = ("_coro", "_obj")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        """Coroutine protocol: forwarded to the call's coroutine."""
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Coroutine protocol: forwarded to the call's coroutine."""
        if val is None:
            return self._coro.throw(typ)
        if tb is None:
            return self._coro.throw(typ, val)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        """Coroutine protocol: forwarded to the call's coroutine (the call is
        not made)."""
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    async def __aenter__(self) -> T:
        self._obj = await self._coro
        return self._obj

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        obj: Any = self._obj
        if type(obj) is Cursor:
            if not obj.sss_close_now():
                await obj.close()
        elif isinstance(obj, (Cursor, Session)):
            await obj.close()


# -- jobs run on the worker: module functions, so a job holds no async object --


def execute_job(con: Any, sql: str, parameters: Any) -> tuple[Any, list[Any] | None]:
    """On the worker: run a statement and fetch its first rows (one hop)."""
    cur = con.execute(sql, parameters)
    if cur.description is None:
        return cur, None
    return cur, cur.fetchmany(FIRST_BATCH_ROWS)


def _cursor_execute(cur: Any, sql: str, parameters: Any) -> tuple[Any, list[Any] | None]:
    cur.execute(sql, parameters)
    if cur.description is None:
        return cur, None
    return cur, cur.fetchmany(FIRST_BATCH_ROWS)


def _execute_fetchall(con: Any, sql: str, parameters: Any) -> list[Any]:
    return con.execute(sql, parameters).fetchall()  # type: ignore[no-any-return]


def _execute_insert(con: Any, sql: str, parameters: Any) -> Any:
    cur = con.execute(sql, parameters)
    cur.execute("SELECT last_insert_rowid()")
    return cur.fetchone()


def close_job(result: tuple[Any, Any]) -> None:
    """On the worker: close the cursor of an execute nobody will read."""
    result[0].close()


def _close(obj: Any) -> None:
    obj.close()


def _run(fn: Callable[..., Any], target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(target, *args, **kwargs)


def _next_lines(lines: Any) -> list[str]:
    return list(islice(lines, _DUMP_BATCH))


def _params(parameters: Any) -> Any:
    return () if parameters is None else parameters


class _Pending:
    """The async cursors of one connection whose statement is still active
    (rows beyond their batch), and its sqlite3 handle."""

    __slots__ = ("cursors", "handle")

    def __init__(self) -> None:
        self.cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self.handle: Any = None


def _clear_interrupt(pending: _Pending) -> None:
    """On the worker, after a statement was interrupted for a cancellation.

    SQLite interrupts a connection, not a statement, and keeps the interrupt
    pending until no statement of the connection is active: a cursor left
    with unread rows would make every later statement fail.  So such
    cursors are reset here (each raises OperationalError("interrupted") when
    it next needs rows, as SQLite would have made it), and the connection
    works again at once."""
    handle = pending.handle
    if handle is None or not capi.is_interrupted(handle):
        return
    for cur in list(pending.cursors):
        cur.sss_reset_interrupted()
    pending.cursors.clear()


class Connection:
    """An async connection: aiosqlite's ``Connection``, on this package's
    DB-API module.  Make one with :func:`connect`."""

    Warning = dbapi.Warning
    Error = dbapi.Error
    InterfaceError = dbapi.InterfaceError
    DatabaseError = dbapi.DatabaseError
    DataError = dbapi.DataError
    OperationalError = dbapi.OperationalError
    IntegrityError = dbapi.IntegrityError
    InternalError = dbapi.InternalError
    ProgrammingError = dbapi.ProgrammingError
    NotSupportedError = dbapi.NotSupportedError

    def __init__(
        self,
        connector: Callable[[], Any],
        iter_chunk_size: int,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        spin: float = DEFAULT_SPIN,
    ) -> None:
        if loop is not None:
            warnings.warn("aiosqlite.Connection no longer uses the `loop` parameter",
                          DeprecationWarning, stacklevel=2)
        self._running = True
        self._connection: Any = None
        self._connector = connector
        self.sss_iter_chunk_size = iter_chunk_size
        self._worker = Worker(f"sss-aio-{next(_worker_names)}", spin)
        #: The worker thread (SQLAlchemy's aiosqlite dialect sets ``daemon``
        #: on it before it starts; it is a daemon anyway).
        self._thread = self._worker.thread
        #: aiosqlite's request queue, for code that puts ``(future, fn)`` on
        #: it directly (SQLAlchemy's dialect does).
        self._tx = _RequestQueue(self._worker)
        # SQLite points to it until the worker closes the connection, which
        # may be after this object is gone (garbage collected unclosed).
        self._busy = capi.new_busy_handler()
        self._worker.keep.append(self._busy)
        # The sqlite3 handle, for the state properties read from the event
        # loop thread while the worker may be running SQL (plain int reads).
        self._handle: Any = None
        self._pending = _Pending()
        self._worker.after_interrupt = functools.partial(_clear_interrupt, self._pending)
        self._level: tuple[str | None] | None = None  # an isolation_level set not applied yet
        self._interrupt: Callable[[], object] | None = None

    # -- lifetime -----------------------------------------------------------

    def _open(self) -> Any:
        """On the worker: open, and make lock waits interruptible."""
        con = self._connector()
        if isinstance(con, dbapi.Connection):
            timeout_ms = con.execute("PRAGMA busy_timeout").fetchone()[0]
            with con.sss_hold() as db:
                capi.install_busy_handler(self._busy, db, int(timeout_ms))
                self._handle = self._pending.handle = db
        return con

    async def _connect(self) -> Connection:
        if self._connection is None:
            try:
                con = await self._worker.call(self._open, discard=_close)
            except BaseException:
                self.stop()
                self._connection = None
                raise
            self._connection = con
            self._interrupt = con.interrupt
            self._worker.at_exit = con.close
            self._worker.interrupt_at_exit = con.interrupt
        return self

    def __await__(self) -> Generator[Any, None, Connection]:
        self._worker.start()
        return self._connect().__await__()

    async def __aenter__(self) -> Connection:
        return await self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish the queued calls, then close the connection and end its
        thread (an open transaction is rolled back).  Closing twice is fine."""
        con = self._connection
        if con is None:
            return
        # Let tasks already scheduled make their calls first (as with
        # aiosqlite, where every call is queued before the close).
        await asyncio.sleep(0)
        if self._connection is not con:
            return  # closed meanwhile
        self._handle = self._pending.handle = None
        try:
            await self._worker.call(con.close)
        finally:
            self._connection = None
            future = self.stop()
            if future is not None:
                await future

    def stop(self) -> asyncio.Future[Any] | None:
        """End the worker thread after the queued calls, closing the
        connection (aiosqlite's ``stop()``); returns a future for that, or
        None when no event loop is running.  Prefer :meth:`close`."""
        self._running = False
        self._handle = self._pending.handle = None
        con, self._connection = self._connection, None
        try:
            future: asyncio.Future[Any] | None = asyncio.get_running_loop().create_future()
        except RuntimeError:
            future = None
        if self._worker.stopping:
            if future is not None:
                future.set_result(None)
            return future
        self._worker.stop(None if con is None else con.close, future)
        return future

    def __del__(self) -> None:
        if getattr(self, "_connection", None) is None:
            return
        warnings.warn(
            f"{self!r} was deleted before being closed. "
            "Please use 'async with' or '.close()' to close the connection properly.",
            ResourceWarning, stacklevel=1,
        )
        # No future: the event loop may be gone already.
        self._running = False
        self._handle = self._pending.handle = None
        con, self._connection = self._connection, None
        if not self._worker.stopping:
            self._worker.stop(con.close)

    def __repr__(self) -> str:
        state = "open" if self._connection is not None else "closed"
        return f"<sqlite_session_safe.aio.Connection {state}>"

    # -- calls ----------------------------------------------------------------

    @property
    def _conn(self) -> Any:
        """The DB-API connection (``sqlite_session_safe.dbapi.Connection``)."""
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    def _check(self) -> Any:
        con = self._connection
        if not self._running or con is None:
            raise ClosedWorker(CLOSED_MESSAGE)
        return con

    # sss_ members: for this face's cursors, sessions and results (the
    # package's own, not the reference).

    def sss_alive(self) -> bool:
        return self._running and self._connection is not None

    def sss_track(self, cursor: Cursor) -> None:
        """``cursor`` keeps an active statement (see :func:`_clear_interrupt`)."""
        self._pending.cursors.add(cursor)

    def _start(self, fn: Callable[..., Any], args: tuple[Any, ...], with_connection: bool = False,
               discard: Callable[[Any], object] | None = None) -> Job:
        """Post ``fn(*args)`` (``fn(dbapi_connection, *args)`` with
        ``with_connection``) to the worker.  The job is done already when its
        ``fut`` is None (the fast path); else ``await worker.finish(job)``."""
        con = self._connection
        if not self._running or con is None:
            raise ClosedWorker(CLOSED_MESSAGE)
        job = Job(fn, (con, *args) if with_connection else args)
        job.interrupt = self._interrupt
        job.discard = discard
        self._worker.post(job)
        return job

    async def sss_call(self, fn: Callable[..., Any], *args: Any,
                    discard: Callable[[Any], object] | None = None) -> Any:
        """``fn(*args)`` on the worker; cancellation interrupts the SQL."""
        job = self._start(fn, args, False, discard)
        if job.fut is None:
            return job.outcome()
        return await self._worker.finish(job)

    async def _call_con(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(dbapi_connection, *args)`` on the worker (the connection is
        checked when awaited, as aiosqlite does)."""
        job = self._start(fn, args, True)
        if job.fut is None:
            return job.outcome()
        return await self._worker.finish(job)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """aiosqlite's ``_execute``: ``fn(*args, **kwargs)`` on the worker."""
        if kwargs:
            return await self.sss_call(lambda: fn(*args, **kwargs))
        return await self.sss_call(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(connection, *args, **kwargs)`` on the worker thread, with the
        DB-API connection: for anything this face does not wrap.  Its result
        must not hold statements that need the worker later (fetch inside fn)."""
        con = self._check()
        return await self._worker.call(_run, fn, con, args, kwargs,  # type: ignore[no-any-return]
                                       interrupt=con.interrupt)

    def execute(self, sql: str, parameters: Any = None) -> Result[Cursor]:
        """Run one statement; the cursor holds its first rows already."""
        return Result(self._execute_cursor(sql, parameters))

    async def _execute_cursor(self, sql: str, parameters: Any) -> Cursor:
        job = self._start(execute_job, (sql, () if parameters is None else parameters), True, close_job)
        if job.fut is None:
            cur, rows = job.outcome()
        else:
            cur, rows = await self._worker.finish(job)
        return Cursor(self, cur, rows)

    def execute_insert(self, sql: str, parameters: Any = None) -> Result[Any]:
        """Run an INSERT; returns the row ``(last_insert_rowid(),)``."""
        return Result(self._call_con(_execute_insert, sql, _params(parameters)))

    def execute_fetchall(self, sql: str, parameters: Any = None) -> Result[list[Any]]:
        """Run a query and return all its rows (one hop)."""
        return Result(self._call_con(_execute_fetchall, sql, _params(parameters)))

    def executemany(self, sql: str, parameters: Iterable[Any]) -> Result[Cursor]:
        """Run a statement once per parameter row (one hop)."""
        return Result(self._executemany(sql, parameters))

    async def _executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        cur = await self.sss_call(self._check().executemany, sql, parameters)
        return Cursor(self, cur, None)

    def executescript(self, sql_script: str) -> Result[Cursor]:
        """Run several statements (as the stdlib's ``executescript``)."""
        return Result(self._executescript(sql_script))

    async def _executescript(self, sql_script: str) -> Cursor:
        cur = await self.sss_call(self._check().executescript, sql_script)
        return Cursor(self, cur, None)

    def cursor(self) -> Result[Cursor]:
        """A new cursor."""
        return Result(self._cursor())

    async def _cursor(self) -> Cursor:
        con = self._check()
        if isinstance(con, dbapi.Connection):
            return Cursor(self, con.cursor(), None)  # no SQL: no hop needed
        return Cursor(self, await self.sss_call(con.cursor), None)

    async def commit(self) -> None:
        """Commit the open transaction."""
        await self.sss_call(self._check().commit)

    async def rollback(self) -> None:
        """Roll back the open transaction."""
        await self.sss_call(self._check().rollback)

    async def interrupt(self) -> None:
        """Interrupt the statement running now (if any)."""
        self._conn.interrupt()

    # -- state (read from the event loop thread) --------------------------------

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open (read without a hop)."""
        handle = self._handle
        if handle is not None:
            return capi.in_transaction(handle)
        return bool(self._conn.in_transaction)

    @property
    def total_changes(self) -> int:
        """Rows changed since the connection opened (read without a hop)."""
        handle = self._handle
        if handle is not None:
            return capi.total_changes(handle)
        return int(self._conn.total_changes)

    @property
    def isolation_level(self) -> str | None:
        """As the stdlib's; setting None (autocommit) commits an open
        transaction, on the worker, before any later call."""
        if self._level is not None:
            return self._level[0]
        return self._conn.isolation_level  # type: ignore[no-any-return]

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        con = self._conn
        if value is not None and isinstance(con, dbapi.Connection):
            con.isolation_level = value  # checks it; runs no SQL
            return
        # None commits an open transaction (legacy mode): that is SQL, so it
        # runs on the worker, before any later call.
        self._level = (value,)
        self._worker.submit(self._apply_level, con, value)

    def _apply_level(self, con: Any, value: str | None) -> None:
        try:
            con.isolation_level = value
        finally:
            self._level = None

    @property
    def row_factory(self) -> Any:
        """The row factory of cursors made from now on (e.g. :class:`Row`)."""
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._conn.row_factory = factory

    @property
    def text_factory(self) -> Any:
        """How TEXT values are returned (as the stdlib's)."""
        return self._conn.text_factory

    @text_factory.setter
    def text_factory(self, factory: Any) -> None:
        self._conn.text_factory = factory

    # -- functions and hooks (they run on the worker thread) ---------------------

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any],
                              deterministic: bool = False) -> None:
        """Make ``func`` callable from SQL; it runs on the worker thread."""
        con = self._check()
        await self.sss_call(lambda: con.create_function(name, num_params, func, deterministic=deterministic))

    async def create_aggregate(self, name: str, num_params: int, aggregate_class: type | None) -> None:
        """Register an aggregate class (it runs on the worker thread)."""
        await self.sss_call(self._check().create_aggregate, name, num_params, aggregate_class)

    async def create_window_function(self, name: str, num_params: int, aggregate_class: type | None) -> None:
        """Register an aggregate window function class (it runs on the worker
        thread)."""
        await self.sss_call(self._check().create_window_function, name, num_params, aggregate_class)

    async def create_collation(self, name: str, func: Callable[[str, str], Any] | None) -> None:
        """Register a collation (it runs on the worker thread)."""
        await self.sss_call(self._check().create_collation, name, func)

    async def set_authorizer(self, authorizer_callback: Callable[..., int] | None) -> None:
        """Set (None: remove) the authorizer (it runs on the worker thread)."""
        await self.sss_call(self._check().set_authorizer, authorizer_callback)

    async def set_progress_handler(self, handler: Callable[[], Any] | None, n: int) -> None:
        """Set (None: remove) the progress handler, called every ``n``
        instructions (on the worker thread)."""
        await self.sss_call(self._check().set_progress_handler, handler, n)

    async def set_trace_callback(self, handler: Callable[[str], Any] | None) -> None:
        """Set (None: remove) the trace callback (it runs on the worker thread)."""
        await self.sss_call(self._check().set_trace_callback, handler)

    async def enable_load_extension(self, value: bool) -> None:
        """Allow (or forbid again) loading SQLite extensions."""
        await self.sss_call(self._check().enable_load_extension, value)

    async def load_extension(self, path: str) -> None:
        """Load the SQLite extension library at ``path``."""
        await self.sss_call(self._check().load_extension, path)

    # -- whole database ------------------------------------------------------------

    async def iterdump(self) -> AsyncIterator[str]:
        """The database as SQL text (the stdlib's format), a batch of lines
        per hop."""
        lines = await self.sss_call(self._check().iterdump)
        try:
            while True:
                batch = await self.sss_call(_next_lines, lines)
                for line in batch:
                    yield line
                if len(batch) < _DUMP_BATCH:
                    return
        finally:
            if self.sss_alive():
                await self.sss_call(lines.close)  # left early: end its statements now

    async def backup(
        self,
        target: Connection | Any,
        *,
        pages: int = 0,
        progress: Callable[[int, int, int], object] | None = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copy this database into ``target``: another async connection, a
        ``sqlite_session_safe.dbapi`` connection, or a stdlib ``sqlite3``
        connection (through a temporary file: two SQLite libraries cannot
        share a backup).  The target must not be in use meanwhile."""
        if isinstance(target, Connection):
            target = target._conn
        await self.sss_call(_backup, self._check(), target, pages, progress, name, sleep)

    async def serialize(self, *, name: str = "main") -> bytes:
        """The database ``name`` as bytes, as it would be stored in a file."""
        return await self.sss_call(lambda: self._check().serialize(name=name))  # type: ignore[no-any-return]

    async def deserialize(self, data: bytes, *, name: str = "main") -> None:
        """Replace the database ``name`` with the file image ``data``."""
        con = self._check()
        await self.sss_call(lambda: con.deserialize(data, name=name))

    # -- beyond aiosqlite ------------------------------------------------------------

    def session(self, tables: Iterable[str] | None = None, filter: Callable[[str], bool] | None = None,
                indirect: bool = False, rowid: bool = False, **options: Any) -> Result[Session]:
        """Start recording this connection's changes (``sss.Session``): await
        it, or ``async with con.session() as s:``; ``await s.changeset()``."""
        return Result(self._session(tables, filter, indirect, rowid, options))

    async def _session(self, tables: Iterable[str] | None, filter: Callable[[str], bool] | None,
                       indirect: bool, rowid: bool, options: dict[str, Any]) -> Session:
        con = self._check()
        sync = await self.sss_call(lambda: con.session(tables=tables, filter=filter, indirect=indirect,
                                                    rowid=rowid, **options), discard=_close)
        return Session(self, sync)


def _backup(con: Any, target: Any, pages: int, progress: Any, name: str, sleep: float) -> None:
    if isinstance(target, dbapi.Connection):
        con.backup(target, pages=pages, progress=progress, name=name, sleep=sleep)
        return
    if not isinstance(target, _stdlib.Connection):
        raise TypeError(f"backup() target must be a Connection, not {type(target).__name__}")
    fd, path = tempfile.mkstemp(suffix=".sqlite")
    os.close(fd)
    try:
        copy = dbapi.connect(path)
        try:
            con.backup(copy, name=name)
        finally:
            copy.close()
        source = _stdlib.connect(path)
        try:
            source.backup(target, pages=pages, progress=progress, sleep=sleep)
        finally:
            source.close()
    finally:
        os.unlink(path)


class CursorOwner(Protocol):
    """What runs an async cursor's statements: a :class:`Connection`, or an
    async ``ReadTx`` (database.py)."""

    sss_iter_chunk_size: int

    def sss_alive(self) -> bool:
        """Whether statements can still run (else the cursor is finished)."""

    def sss_track(self, cursor: Cursor) -> None:
        """``cursor`` keeps an active statement."""

    async def sss_call(self, fn: Callable[..., Any], *args: Any,
                       discard: Callable[[Any], object] | None = None) -> Any:
        """``fn(*args)`` on the owner's worker."""


class Cursor:
    """An async cursor (aiosqlite's ``Cursor``).  It keeps a batch of rows
    in memory: fetches are served from it and refilled one hop per batch.

    Its owner is the :class:`Connection` (or an async ``ReadTx``) whose
    worker runs its statements (a :class:`CursorOwner`)."""

    __slots__ = ("iter_chunk_size", "_conn", "_cursor", "_rows", "_pos", "_more", "_closed",
                 "_interrupted", "__weakref__")

    def __init__(self, conn: CursorOwner, cursor: Any, rows: list[Any] | None = None) -> None:
        self.iter_chunk_size = conn.sss_iter_chunk_size
        self._conn = conn
        self._cursor = cursor
        self._closed = False
        self._interrupted = False
        self._set_rows(rows, FIRST_BATCH_ROWS)

    def _set_rows(self, rows: list[Any] | None, asked: int) -> None:
        if rows is None:
            self._rows: list[Any] = []
            self._more = False
        else:
            self._rows = rows
            self._more = more = len(rows) >= asked  # fewer rows than asked: the statement finished
            if more:
                self._conn.sss_track(self)
        self._pos = 0

    def _check(self) -> None:
        if not self._conn.sss_alive():
            raise ClosedWorker(CLOSED_MESSAGE)
        if self._closed:
            raise dbapi.ProgrammingError("Cannot operate on a closed cursor.")

    def _check_interrupted(self) -> None:
        if self._interrupted:  # see _clear_interrupt
            self._more = False
            raise dbapi.OperationalError("interrupted")

    async def _fill(self, n: int) -> None:
        self._check_interrupted()
        rows = await self._conn.sss_call(self._cursor.fetchmany, n)
        self._set_rows(rows, n)

    # -- running statements ---------------------------------------------------

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        """Run one statement on this cursor; returns the cursor."""
        self._check()
        _, rows = await self._conn.sss_call(_cursor_execute, self._cursor, sql, _params(parameters),
                                         discard=close_job)
        self._set_rows(rows, FIRST_BATCH_ROWS)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        """Run a statement once per parameter row; returns the cursor."""
        self._check()
        await self._conn.sss_call(self._cursor.executemany, sql, parameters)
        self._set_rows(None, 0)
        return self

    async def executescript(self, sql_script: str) -> Cursor:
        """Run several statements (as the stdlib's ``executescript``); returns
        the cursor."""
        self._check()
        await self._conn.sss_call(self._cursor.executescript, sql_script)
        self._set_rows(None, 0)
        return self

    # -- fetching -------------------------------------------------------------

    async def fetchone(self) -> Any:
        """The next row, or None."""
        self._check()
        pos = self._pos
        rows = self._rows
        if pos >= len(rows):
            if not self._more:
                return None
            await self._fill(BATCH_ROWS)
            pos, rows = 0, self._rows
            if not rows:
                return None
        self._pos = pos + 1
        return rows[pos]

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to ``size`` rows (default ``arraysize``)."""
        self._check()
        if size is None:
            size = self._cursor.arraysize
        pos = self._pos
        rows = self._rows
        out = rows[pos:pos + size]
        self._pos = pos + len(out)
        while len(out) < size and self._more:
            await self._fill(max(size - len(out), BATCH_ROWS))
            take = self._rows[:size - len(out)]
            out.extend(take)
            self._pos = len(take)
        return out

    async def fetchall(self) -> list[Any]:
        """All remaining rows (one hop for those not in memory yet)."""
        self._check()
        rows = self._rows
        out = rows[self._pos:] if self._pos else rows
        if self._more:
            self._check_interrupted()
            rest = await self._conn.sss_call(self._cursor.fetchall)
            out = out + rest if out else rest
        self._rows, self._pos, self._more = [], 0, False
        return out

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            self._check()
            pos = self._pos
            rows = self._rows
            if pos < len(rows):
                self._pos = pos + 1
                yield rows[pos]
                continue
            if not self._more:
                return
            await self._fill(max(self.iter_chunk_size, BATCH_ROWS))

    def sss_reset_interrupted(self) -> None:
        """For :func:`_clear_interrupt` (the package's own, not the
        reference; on the worker): drop the unread rows of a statement its
        connection's interrupt ended."""
        if self._more and not self._closed:
            self._interrupted = True
            self._cursor.close()

    def sss_close_now(self) -> bool:
        """Close without a hop when no statement is left (True), else leave
        it to :meth:`close`."""
        if self._closed:
            return True
        if self._more or not isinstance(self._cursor, NativeCursor) or not self._conn.sss_alive():
            return False
        self._closed = True
        self._rows, self._pos = [], 0
        self._cursor.close()  # its statement is finished: this runs no SQL
        return True

    async def close(self) -> None:
        """Close the cursor (resetting its statement if rows remain)."""
        if self.sss_close_now():
            return
        self._closed = True
        self._rows, self._pos, self._more = [], 0, False
        if self._conn.sss_alive():  # rows remain (or not our cursor): close it on the worker
            await self._conn.sss_call(self._cursor.close)

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- state ----------------------------------------------------------------

    @property
    def rowcount(self) -> int:
        """Rows changed by the last INSERT/UPDATE/DELETE, else -1."""
        return self._cursor.rowcount  # type: ignore[no-any-return]

    @property
    def lastrowid(self) -> int | None:
        """The rowid of the last row inserted through this cursor."""
        return self._cursor.lastrowid  # type: ignore[no-any-return]

    @property
    def arraysize(self) -> int:
        """Default number of rows for :meth:`fetchmany`."""
        return self._cursor.arraysize  # type: ignore[no-any-return]

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        """Column names (DB-API 7-tuples) of the last query, else None."""
        return self._cursor.description  # type: ignore[no-any-return]

    @property
    def row_factory(self) -> Any:
        """The row factory of this cursor."""
        return self._cursor.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._cursor.row_factory = factory

    @property
    def connection(self) -> Any:
        """The DB-API connection underneath (aiosqlite returns the sqlite3 one)."""
        return self._cursor.connection


class Session:
    """A session on an async connection (``await con.session()``): the
    native :class:`sqlite_session_safe.Session`, its calls run on the
    connection's worker."""

    __slots__ = ("_conn", "sync")

    def __init__(self, conn: Connection, sync: SyncSession) -> None:
        self._conn = conn
        #: The synchronous Session (use it only through :meth:`run`).
        self.sync = sync

    async def changeset(self) -> Changeset:
        """The changes recorded so far, as a changeset."""
        return await self._conn.sss_call(self.sync.changeset)  # type: ignore[no-any-return]

    async def patchset(self) -> Patchset:
        """The changes recorded so far, as a patchset."""
        return await self._conn.sss_call(self.sync.patchset)  # type: ignore[no-any-return]

    async def attach(self, table: str | None = None) -> None:
        """Also record ``table`` (None: every table)."""
        await self._conn.sss_call(self.sync.attach, table)

    async def diff(self, from_schema: str, table: str) -> None:
        """Record the changes that would turn ``table`` of the attached database
        ``from_schema`` into this database's."""
        await self._conn.sss_call(self.sync.diff, from_schema, table)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` on the worker (properties such as
        ``is_empty`` and ``memory_used``, streams)."""
        return await self._conn.sss_call(_run, fn, self.sync, args, kwargs)  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        """True once the session is closed."""
        return self.sync.closed

    async def close(self) -> None:
        """Delete the session (on the worker)."""
        if self.sync.closed or self._conn._connection is None:
            return
        await self._conn.sss_call(self.sync.close)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _RequestQueue:
    """aiosqlite's ``Connection._tx`` for code that uses it directly:
    ``put_nowait((future, fn))`` runs ``fn()`` on the worker and sets the
    future."""

    __slots__ = ("_worker",)

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, fn = item
        self._worker.submit(fn, future=future)

    put = put_nowait

    def empty(self) -> bool:
        return self._worker.idle


def connect(
    database: str | bytes | os.PathLike[str] | Any,
    *,
    iter_chunk_size: int = 64,
    loop: asyncio.AbstractEventLoop | None = None,
    spin: float = DEFAULT_SPIN,
    **kwargs: Any,
) -> Connection:
    """Open an async connection (aiosqlite's ``connect``): ``await`` it or
    use ``async with``.  ``kwargs`` go to ``sqlite_session_safe.dbapi.connect``
    (``timeout``, ``detect_types``, ``isolation_level``, ``uri``,
    ``autocommit``, ...).  ``spin``: seconds a call waits for a quick result
    before yielding to the event loop (0: always yield at once), see
    :mod:`sqlite_session_safe.faces.aio.worker`."""
    if loop is not None:
        warnings.warn("aiosqlite.connect() no longer uses the `loop` parameter",
                      DeprecationWarning, stacklevel=2)
    kwargs["check_same_thread"] = False  # the worker runs it; state is read from the loop

    def connector() -> Any:
        if isinstance(database, str):
            location: Any = database
        elif isinstance(database, bytes):
            location = database.decode("utf-8")
        elif isinstance(database, os.PathLike):
            location = os.fspath(database)
        else:
            location = str(database)
        return dbapi.connect(location, **kwargs)

    return Connection(connector, iter_chunk_size, spin=spin)
