"""Connections: open a database, run SQL, transactions, backup, serialize.

Thread contract
---------------
A :class:`Connection` may be used from any thread, but by one thread at a
time.  Every call into SQLite holds the connection's lock for its duration; a
second thread that calls in while another is inside gets :class:`ThreadingError`
at once (never a crash, never a corrupted statement).  :meth:`Connection.interrupt`
is the one exception: it is meant to be called from another thread.  For
parallel reads, open one connection per thread (the coordinated
``sss.open`` database does this for you).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from .._hotpath import TryLock
from . import blob as _blob
from . import dbconfig as _dbconfig
from . import functions as _functions
from . import hooks as sss_hooks
from .callbacks import CallbackState
from .cursor import Cursor
from .dump import iterdump as _iterdump
from .errors import ClosedError, InterfaceError, ThreadingError
from .raw import NULL, ensure, error_from_code, error_from_db, ffi, lib, text
from .statement import StatementCache
from .values import Parameters

__all__ = ["Connection", "Dependent", "Holding", "Transaction", "TransactionKind"]

TransactionKind = Literal["deferred", "immediate", "exclusive"]
_C = TypeVar("_C", bound="Connection")
_KINDS = ("deferred", "immediate", "exclusive")
_new_object = object.__new__


class Dependent(Protocol):
    """An object (session, change group, blob) that must be closed before its
    connection: :meth:`Connection.sss_add_dependent` registers it, and closing the
    connection calls its ``close_before_connection()`` first."""

    def close_before_connection(self) -> None: ...


class Connection:
    """A connection to one SQLite database, on the package's own SQLite build.

    Statements run in autocommit mode unless you open a transaction, with
    :meth:`transaction` (preferred) or plain ``BEGIN``/``COMMIT`` SQL.

    Calls ``sqlite3_open_v2`` (opening) and ``sqlite3_close_v2`` (:meth:`close`).
    """

    # Members named sss_... are for the package's own layers (the cursor,
    # statements, blobs, hooks of this layer; the DB-API face): plain
    # attributes where a query reads them, left out of the reference
    # (docs/README.md).
    #
    # SQL the cursor runs (connection lock held) before a DML statement
    # (INSERT/UPDATE/DELETE/REPLACE) outside a transaction: the DB-API face's
    # implicit BEGIN (legacy transaction control).  None: nothing, SQLite's
    # own autocommit.  Decided on the prepared statement, so a SELECT costs
    # one attribute test.
    sss_begin: str | None = None
    #: Whether ``"text"`` may be a string literal where no column of that
    #: name exists (SQLite's legacy double-quoted strings).  The engine is
    #: built with them available, as the stdlib's SQLite is; native
    #: connections turn them off (a misspelt column is an error, not a
    #: string), the DB-API face keeps them, as ``sqlite3`` does.
    double_quoted_strings: bool = False
    #: How SQL text with lone surrogates is encoded for SQLite: passed
    #: through by native connections (as their values are); the DB-API face
    #: refuses it ("strict": UnicodeEncodeError), as ``sqlite3`` does.
    sql_encoding_errors: str = "surrogatepass"

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        readonly: bool = False,
        uri: bool = False,
        vfs: str | None = None,
        timeout: float = 5.0,
        cached_statements: int = 128,
    ) -> None:
        # The sqlite3 * handle, None once closed; set last: a failed __init__
        # leaves a closed object.
        self.sss_db: Any = None
        # Only ever tried (acquire(False)), re-entered by callbacks that run SQL
        # on this connection; atomic under the GIL (csrc/hotpath/hotpath.c),
        # about a quarter of threading.RLock's cost on every query.
        self.sss_lock = TryLock()
        self._close_lock = threading.Lock()  # orders close() against interrupt()
        self._dependents: weakref.WeakSet[Any] = weakref.WeakSet()
        self.sss_tx_depth = 0
        # Row buffers, and what callbacks into Python (user functions, hooks)
        # share with the connection; allocated before opening, so a failure
        # here leaves nothing to close.
        self.sss_callbacks = CallbackState()
        # Python objects behind the hooks SQLite holds a pointer to
        # (authorizer, progress handler, trace callback), by kind.
        self.sss_hooks: dict[str, Any] = {}
        if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
            name = os.fsencode(path)
        else:
            raise InterfaceError(f"path must be str, bytes or os.PathLike, not {type(path).__qualname__}")
        if b"\0" in name:
            raise InterfaceError("database path contains a NUL character")
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise InterfaceError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        self.path: str = os.fsdecode(name)
        flags = lib.SQLITE_OPEN_READONLY if readonly else lib.SQLITE_OPEN_READWRITE | lib.SQLITE_OPEN_CREATE
        # NOMUTEX: every call into SQLite on this connection already holds
        # self.sss_lock (see "Thread contract"), so SQLite's own per-connection
        # mutex would only repeat that exclusion, once per column read.
        # sqlite3_interrupt() needs neither.
        flags |= lib.SQLITE_OPEN_EXRESCODE | lib.SQLITE_OPEN_NOMUTEX
        if uri:
            flags |= lib.SQLITE_OPEN_URI
        out = ffi.new("sqlite3 **")
        rc = lib.sqlite3_open_v2(name, out, flags, vfs.encode() if vfs else NULL)
        db = out[0]
        if rc != lib.SQLITE_OK:
            context = f"opening {self.path!r}"
            err = error_from_db(db, rc, context) if db != NULL else error_from_code(rc, context)
            lib.sqlite3_close_v2(db)
            raise err
        lib.sqlite3_extended_result_codes(db, 1)
        lib.sqlite3_busy_timeout(db, int(timeout * 1000))
        if not self.double_quoted_strings:
            for verb in (lib.SQLITE_DBCONFIG_DQS_DML, lib.SQLITE_DBCONFIG_DQS_DDL):
                lib.sqlite3_db_config(db, verb, ffi.cast("int", 0), NULL)
        # Read the header now, so a file that is not a database fails here with
        # a message naming the file, not at some later query.
        rc = lib.sqlite3_exec(db, b"PRAGMA schema_version", NULL, NULL, NULL)
        if rc != lib.SQLITE_OK:
            err = error_from_db(db, rc, f"opening {self.path!r}")
            lib.sqlite3_close_v2(db)
            raise err
        #: The prepared statements of this connection, idle ones cached by SQL
        #: text (for the layers above: :meth:`StatementCache.idle`).
        self.statements = StatementCache(cached_statements, self.sss_lock)
        self.sss_db = db

    # One output buffer and result struct per connection and nesting depth
    # (see callbacks.py): only the thread holding sss_lock uses them, and rows
    # are decoded before it is released.  These name the outermost ones.

    @property
    def _out(self) -> Any:
        return self.sss_callbacks.top.out

    @property
    def _view(self) -> Any:
        return self.sss_callbacks.top.view

    @property
    def _res(self) -> Any:
        return self.sss_callbacks.top.res

    def _refresh_view(self) -> None:
        """(Re)make the view over the outermost row buffer after it grew."""
        self.sss_callbacks.top.refresh()

    # -- running SQL --------------------------------------------------------

    def cursor(self) -> Cursor:
        """A new :class:`Cursor` on this connection."""
        self._check_open()
        return Cursor(self)

    def execute(self, sql: str, params: Parameters | None = None) -> Cursor:
        """Run one statement on a new cursor and return the cursor.

        Calls ``sqlite3_prepare_v3`` (statements are cached), then ``sqlite3_bind_*``,
        ``sqlite3_step`` and ``sqlite3_column_*`` in C."""
        # A point query's hot path: building the cursor with object.__new__
        # skips the Python frame of Cursor.__init__ (~0.1 us of ~2.2 us).
        cursor = _new_object(Cursor)
        cursor.connection = self
        return cursor.execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Iterable[Parameters]) -> Cursor:
        """Run one statement per parameter row (see :meth:`Cursor.executemany`).

        Calls ``sqlite3_prepare_v3``, then ``sqlite3_bind_*``, ``sqlite3_step`` and
        ``sqlite3_reset`` per row, in C."""
        return Cursor(self).executemany(sql, seq_of_params)

    def executescript(self, sql: str) -> None:
        """Run several statements separated by semicolons, without parameters.

        No transaction is opened for you: wrap the script in BEGIN/COMMIT or
        use :meth:`transaction` if it must be all-or-nothing.

        Calls ``sqlite3_exec``.
        """
        if not isinstance(sql, str):
            raise InterfaceError(f"SQL must be str, not {type(sql).__qualname__}")
        if "\0" in sql:
            raise InterfaceError("SQL contains a NUL character")
        with self.sss_hold() as db:
            script = sql.encode("utf-8", self.sql_encoding_errors)
            self.sss_ensure(lib.sqlite3_exec(db, script, NULL, NULL, NULL), db)

    def transaction(self, kind: TransactionKind = "deferred") -> Transaction:
        """A context manager for a transaction: COMMIT on success, ROLLBACK on
        any exception (KeyboardInterrupt included).  Nested blocks become
        savepoints, rolled back on their own.

        Calls ``sqlite3_exec`` (``BEGIN`` / ``SAVEPOINT``, then ``COMMIT`` /
        ``RELEASE`` or ``ROLLBACK``)."""
        if not isinstance(kind, str) or kind.lower() not in _KINDS:
            raise InterfaceError(f"transaction kind must be one of {', '.join(_KINDS)}; got {kind!r}")
        return Transaction(self, kind.lower())

    # -- state ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.sss_db is None

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open (SQLite is not in autocommit mode).

        Calls ``sqlite3_get_autocommit``."""
        with self.sss_hold() as db:
            return bool(lib.sqlite3_get_autocommit(db) == 0)

    @property
    def total_changes(self) -> int:
        """Rows changed by INSERT/UPDATE/DELETE since the connection opened.

        Calls ``sqlite3_total_changes64``."""
        with self.sss_hold() as db:
            return int(lib.sqlite3_total_changes64(db))

    @property
    def changes(self) -> int:
        """Rows changed by the most recent INSERT/UPDATE/DELETE.

        Calls ``sqlite3_changes64``."""
        with self.sss_hold() as db:
            return int(lib.sqlite3_changes64(db))

    @property
    def last_insert_rowid(self) -> int:
        """The rowid of the most recent successful INSERT on this connection
        (0 if none).

        Calls ``sqlite3_last_insert_rowid``."""
        with self.sss_hold() as db:
            return int(lib.sqlite3_last_insert_rowid(db))

    @property
    def readonly(self) -> bool:
        """True when the main database is read-only.

        Calls ``sqlite3_db_readonly``."""
        with self.sss_hold() as db:
            return bool(lib.sqlite3_db_readonly(db, b"main") == 1)

    @property
    def filename(self) -> str:
        """The database file's absolute path ('' for in-memory and temp databases).

        Calls ``sqlite3_db_filename``."""
        with self.sss_hold() as db:
            return text(lib.sqlite3_db_filename(db, b"main"))

    # -- whole-database operations ------------------------------------------

    def backup(
        self,
        target: str | os.PathLike[str] | Connection,
        pages: int = -1,
        progress: Callable[[int, int], object] | None = None,
        name: str = "main",
        target_name: str = "main",
        sleep: float = 0.05,
    ) -> None:
        """Copy this database into ``target`` (a path or a Connection) with
        SQLite's online backup API.

        ``pages`` pages are copied per step (-1: all at once); between steps the
        source is unlocked, so other connections can write, and the backup
        restarts automatically if they do. ``progress(remaining, total)`` is
        called after every step. A step that meets a lock waits ``sleep``
        seconds and tries again.

        Calls ``sqlite3_backup_init``, ``sqlite3_backup_step``,
        ``sqlite3_backup_remaining``, ``sqlite3_backup_pagecount``,
        ``sqlite3_backup_finish``.
        """
        if not isinstance(pages, int) or pages == 0:
            raise InterfaceError(f"pages must be a positive int or -1 for all; got {pages!r}")
        if isinstance(target, Connection):
            self.sss_backup_into(target, pages, progress, name, target_name, sleep)
            return
        dest = Connection(target)
        try:
            self.sss_backup_into(dest, pages, progress, name, target_name, sleep)
        finally:
            dest.close()

    def sss_backup_into(
        self,
        dest: Connection,
        pages: int,
        progress: Callable[[int, int], object] | None,
        name: str,
        target_name: str,
        sleep: float,
    ) -> None:
        """For the package's own layers (:meth:`backup`; the DB-API face's,
        with its own progress): copy into the open connection ``dest``."""
        if dest is self:
            raise InterfaceError("cannot back up a connection into itself")
        with self.sss_hold() as src_db, dest.sss_hold() as dest_db:
            backup = lib.sqlite3_backup_init(dest_db, target_name.encode(), src_db, name.encode())
            if backup == NULL:
                raise error_from_db(dest_db, None, "starting backup")
            try:
                while True:
                    rc = lib.sqlite3_backup_step(backup, pages)
                    if progress is not None:
                        progress(lib.sqlite3_backup_remaining(backup), lib.sqlite3_backup_pagecount(backup))
                    if rc == lib.SQLITE_DONE:
                        break
                    if rc in (lib.SQLITE_BUSY, lib.SQLITE_LOCKED) or rc & 0xFF in (
                        lib.SQLITE_BUSY,
                        lib.SQLITE_LOCKED,
                    ):
                        time.sleep(sleep)
                    elif rc != lib.SQLITE_OK:
                        break
            finally:
                rc = lib.sqlite3_backup_finish(backup)
            ensure(rc, dest_db, "backup")

    def serialize(self, name: str = "main") -> bytes:
        """The database as bytes, exactly as it would be stored in a file.

        Calls ``sqlite3_serialize``."""
        with self.sss_hold() as db:
            size = ffi.new("sqlite3_int64 *")
            data = lib.sqlite3_serialize(db, name.encode(), size, 0)
            if data == NULL:
                if size[0] == 0 and lib.sqlite3_errcode(db) == lib.SQLITE_OK:
                    return b""
                raise error_from_db(db, lib.SQLITE_NOMEM, f"serializing {name!r}")
            try:
                return ffi.unpack(ffi.cast("char *", data), size[0])  # type: ignore[no-any-return]
            finally:
                lib.sqlite3_free(data)

    def deserialize(self, data: bytes, name: str = "main", readonly: bool = False) -> None:
        """Replace database ``name`` with the database file image ``data``.

        The connection then works on an in-memory copy; the file it was opened
        on is not touched.

        Calls ``sqlite3_deserialize``."""
        view = memoryview(data).cast("B")
        with self.sss_hold() as db:
            size = len(view)
            buf = lib.sqlite3_malloc64(max(size, 1))
            if buf == NULL:
                raise MemoryError("cannot allocate the deserialized database")
            ffi.memmove(buf, view, size)
            flags = lib.SQLITE_DESERIALIZE_FREEONCLOSE | lib.SQLITE_DESERIALIZE_RESIZEABLE
            if readonly:
                flags |= lib.SQLITE_DESERIALIZE_READONLY
            # On failure SQLite frees buf itself (FREEONCLOSE).
            image = ffi.cast("unsigned char *", buf)
            rc = lib.sqlite3_deserialize(db, name.encode(), image, size, size, flags)
            ensure(rc, db, f"deserializing into {name!r}")
            self.statements.clear()  # prepared against the old schema
            rc = lib.sqlite3_exec(db, b"PRAGMA schema_version", NULL, NULL, NULL)
            self.sss_ensure(rc, db, "the deserialized data")

    def iterdump(self, *, filter: str | None = None) -> Iterator[str]:  # noqa: A002
        """The main database as SQL statements, one at a time, in the stdlib
        ``sqlite3`` module's dump format (see :mod:`.dump`); ``filter``: only
        the objects whose name is LIKE this pattern."""
        return _iterdump(self, filter)

    def interrupt(self) -> None:
        """Make the statement running on this connection (in another thread)
        stop with :class:`InterruptError` as soon as it can.

        Calls ``sqlite3_interrupt``."""
        with self._close_lock:
            if self.sss_db is not None:
                lib.sqlite3_interrupt(self.sss_db)

    # -- user functions, collations, hooks (binding/functions.py, hooks.py) ---

    def create_function(
        self, name: str, narg: int, func: Callable[..., Any] | None, *, deterministic: bool = False
    ) -> None:
        """Make ``func`` callable from SQL as ``name(...)`` with ``narg``
        arguments (-1: any number); ``func=None`` removes it.

        Arguments arrive as None/int/float/str/bytes, like row values; the
        result may be None, int, float, str, bytes, bytearray or memoryview.
        An exception ``func`` raises stops the statement and is raised, as is,
        by the execute/fetch call that ran it.  ``deterministic=True`` lets
        SQLite use the function in indexes and factor out repeated calls.

        Calls ``sqlite3_create_function_v2``.
        """
        _functions.create_function(self, name, narg, func, deterministic)

    def create_aggregate(self, name: str, narg: int, aggregate_class: type | None) -> None:
        """Register an aggregate: for each group SQLite makes
        ``aggregate_class()``, calls ``step(*args)`` per row and
        ``finalize()`` for the result.  None removes it.

        Calls ``sqlite3_create_function_v2``."""
        _functions.create_aggregate(self, name, narg, aggregate_class)

    def create_window_function(self, name: str, narg: int, aggregate_class: type | None) -> None:
        """Register an aggregate window function: like :meth:`create_aggregate`,
        plus ``inverse(*args)`` (a row leaves the frame) and ``value()`` (the
        current result).  None removes it.

        Calls ``sqlite3_create_window_function``."""
        _functions.create_window_function(self, name, narg, aggregate_class)

    def create_collation(self, name: str, func: Callable[[str, str], int] | None) -> None:
        """Register collation ``name``: ``func(a, b)`` returns a negative
        number, zero or a positive number.  None removes it.

        Calls ``sqlite3_create_collation_v2``."""
        _functions.create_collation(self, name, func)

    def set_authorizer(
        self, func: Callable[[int, str | None, str | None, str | None, str | None], int] | None
    ) -> None:
        """Have ``func(action, arg1, arg2, db_name, trigger_or_view)`` approve
        every action while statements are prepared: return ``SQLITE_OK``,
        ``SQLITE_DENY`` (the statement fails) or ``SQLITE_IGNORE``.  An
        exception denies and is raised.  None removes it.

        Calls ``sqlite3_set_authorizer``."""
        sss_hooks.set_authorizer(self, func)

    def set_progress_handler(self, func: Callable[[], object] | None, n: int) -> None:
        """Call ``func()`` every ``n`` virtual machine instructions of a running
        statement; a true result (or an exception, which is raised) interrupts
        the statement.  None removes it.

        Calls ``sqlite3_progress_handler``."""
        sss_hooks.set_progress_handler(self, func, n)

    def set_trace_callback(self, func: Callable[[str], object] | None) -> None:
        """Call ``func(sql)`` as each statement starts, with its SQL (parameters
        expanded when SQLite can).  None removes it.

        Calls ``sqlite3_trace_v2`` (and ``sqlite3_expanded_sql`` per statement)."""
        sss_hooks.set_trace_callback(self, func)

    def enable_load_extension(self, enabled: bool) -> None:
        """Allow (or forbid again) :meth:`load_extension` and SQL's
        ``load_extension()``.  Off by default.

        Calls ``sqlite3_enable_load_extension``."""
        sss_hooks.enable_load_extension(self, enabled)

    def load_extension(self, path: str, *, entrypoint: str | None = None) -> None:
        """Load the SQLite extension library at ``path`` (``entrypoint``:
        its init function, guessed from the file name when None).

        Calls ``sqlite3_load_extension``."""
        sss_hooks.load_extension(self, path, entrypoint)

    def blobopen(
        self, table: str, column: str, row: int, *, readonly: bool = False, name: str = "main"
    ) -> _blob.Blob:
        """Open the BLOB in ``table.column`` of row ``row`` (its rowid) for
        incremental reads and writes; see :class:`Blob`.

        Calls ``sqlite3_blob_open``."""
        return _blob.Blob(self, table, column, row, readonly, name)

    def getlimit(self, category: int) -> int:
        """SQLite's current limit ``category`` (``SQLITE_LIMIT_LENGTH``, ...).

        Calls ``sqlite3_limit``."""
        return sss_hooks.limit(self, category, -1)

    def setlimit(self, category: int, limit: int) -> int:
        """Set limit ``category`` (a negative ``limit`` leaves it unchanged;
        SQLite caps it at the compile-time maximum); returns the previous
        value.

        Calls ``sqlite3_limit``."""
        return sss_hooks.limit(self, category, limit)

    def getconfig(self, op: int) -> bool:
        """Whether boolean option ``op`` (a ``SQLITE_DBCONFIG_*`` constant,
        e.g. ``SQLITE_DBCONFIG_ENABLE_FKEY``) is on for this connection.

        Calls ``sqlite3_db_config``."""
        return _dbconfig.getconfig(self, op)

    def setconfig(self, op: int, enable: bool = True) -> bool:
        """Turn boolean option ``op`` (a ``SQLITE_DBCONFIG_*`` constant) on or
        off; returns the setting afterwards.  Unknown options raise
        :class:`InterfaceError`.

        Calls ``sqlite3_db_config``."""
        return _dbconfig.setconfig(self, op, enable)

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the connection.  Sessions, backups and statements made from it
        are closed first; an open transaction is rolled back.  Closing twice is
        fine; any other use afterwards raises :class:`ClosedError`.

        Calls ``sqlite3_close_v2`` (after ``sqlite3_finalize`` on its statements)."""
        if self.sss_db is None:
            return
        if self.sss_lock.is_owned():
            # This thread is inside a call on this connection (a callback from
            # SQLite, e.g. a session filter or conflict handler): closing now
            # would free what SQLite is still using.
            raise InterfaceError("cannot close a connection from inside a callback running on it")
        if not self.sss_lock.acquire(False):
            self.sss_raise_busy()
        try:
            for dependent in list(self._dependents):
                dependent.close_before_connection()
            self._dependents.clear()
            self.statements.clear()
            with self._close_lock:
                db, self.sss_db = self.sss_db, None
            if db is not None:
                # close_v2 cannot fail on busy: anything left makes it a zombie
                # that SQLite frees when the last handle goes.
                lib.sqlite3_close_v2(db)
            # Finalizing statements stopped in the middle of an aggregate ran
            # its finalize(): nobody reads that result (nor what it raised).
            self.sss_callbacks.error = None
            self.sss_hooks.clear()
        finally:
            self.sss_lock.release()

    def __del__(self) -> None:
        try:
            if getattr(self, "sss_db", None) is not None:
                self.close()
        except Exception:
            pass

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.sss_db is None else "open"
        return f"<sqlite_session_safe.Connection {self.path!r} {state}>"

    # -- for the layers above (sessions, coordination) ----------------------

    def sss_ensure(self, rc: int, db: Any, context: str | None = None) -> None:
        """For the package's own layers: like :func:`ensure`, but an exception a callback raised during the
        call comes first: it is the cause of SQLite's error, if any."""
        if self.sss_callbacks.error is not None:
            raise self.sss_callbacks.take()
        ensure(rc, db, context)

    def sss_add_dependent(self, obj: Dependent) -> None:
        """For the package's own layers: register ``obj`` (held weakly) to be closed before this connection
        closes: :meth:`close` calls its ``close_before_connection()``."""
        self._dependents.add(obj)

    def sss_implicit_begin(self) -> None:
        """For the package's own layers: run :attr:`sss_begin` (the cursor
        found a DML statement in autocommit)."""
        sql = self.sss_begin
        assert sql is not None
        with self.sss_hold() as db:
            self.sss_ensure(lib.sqlite3_exec(db, sql.encode(), NULL, NULL, NULL), db, sql)

    def _check_open(self) -> Any:
        db = self.sss_db
        if db is None:
            raise ClosedError("cannot use a closed connection")
        return db

    def sss_raise_busy(self) -> None:
        """For the package's own layers: the error for a connection another
        thread is inside (``sss_lock`` not acquired)."""
        raise ThreadingError(
            "this connection is being used by another thread right now; a connection "
            "serves one thread at a time (open one connection per thread)"
        )

    def sss_held_here(self) -> bool:
        """For the package's own layers: True when this thread is inside a call on this connection (e.g.
        in a callback SQLite is running): freeing what SQLite uses, or
        closing, must wait."""
        return bool(self.sss_lock.is_owned())

    def sss_run_if_free(self, fn: Callable[[], object]) -> bool:
        """For the package's own layers: run ``fn()`` holding the connection, unless a thread (this one
        included) is inside a call on it; returns whether it ran.  For
        finalizers, which must neither wait nor run under SQLite's feet."""
        lock = self.sss_lock
        if lock.is_owned() or not lock.acquire(False):
            return False
        try:
            fn()
        finally:
            lock.release()
        return True

    def sss_hold(self) -> Holding:
        """For the package's own layers: hold the connection for one operation: ``with con.sss_hold() as db:``
        gives the ``sqlite3 *`` handle (opaque above the binding: only passed
        back to binding functions).  Raises :class:`ThreadingError` when
        another thread is inside, :class:`ClosedError` when closed; re-entered
        by callbacks that run on this thread."""
        return Holding(self)


class Holding:
    """Context manager behind :meth:`Connection.sss_hold` (cheaper than contextlib)."""

    __slots__ = ("con",)

    def __init__(self, con: Connection) -> None:
        self.con = con

    def __enter__(self) -> Any:
        con = self.con
        if not con.sss_lock.acquire(False):
            con.sss_raise_busy()
        db = con.sss_db
        if db is None or con.sss_callbacks.forbidden is not None:
            con.sss_lock.release()
            if db is None:
                raise ClosedError("cannot use a closed connection")
            raise InterfaceError(f"cannot use the connection from inside {con.sss_callbacks.forbidden}")
        return db

    def __exit__(self, *exc: object) -> None:
        con = self.con
        con.sss_lock.release()
        cb = con.sss_callbacks
        if cb.error is not None and cb.depth == 0:
            # A callback raised during an operation that did not look for it
            # (e.g. a trigger calling a user function while a changeset is
            # applied): its exception is the one to see, not lost.
            raise cb.take()


class Transaction:
    """``with con.transaction(kind):`` — see :meth:`Connection.transaction`."""

    __slots__ = ("con", "kind", "_savepoint")

    def __init__(self, con: Connection, kind: str) -> None:
        self.con = con
        self.kind = kind
        self._savepoint: str | None = None

    def __enter__(self) -> Connection:
        con = self.con
        with con.sss_hold() as db:
            if lib.sqlite3_get_autocommit(db):
                sql = f"BEGIN {self.kind.upper()}"
            else:
                self._savepoint = f"sss_savepoint_{con.sss_tx_depth}"
                sql = f"SAVEPOINT {self._savepoint}"
            con.sss_ensure(lib.sqlite3_exec(db, sql.encode(), NULL, NULL, NULL), db, sql)
            con.sss_tx_depth += 1
        return con

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        con = self.con
        with con.sss_hold() as db:
            con.sss_tx_depth -= 1
            sp = self._savepoint
            cb = con.sss_callbacks
            if exc_type is None:
                sql = f"RELEASE {sp}" if sp else "COMMIT"
                rc = lib.sqlite3_exec(db, sql.encode(), NULL, NULL, NULL)
                if rc == lib.SQLITE_OK and cb.error is None:
                    return
                # Do not leave a half-open transaction behind a failed COMMIT.
                err = cb.take() if cb.error is not None else error_from_db(db, rc, sql)
                _rollback(db, sp)
                cb.error = None  # what a callback raised during the rollback
                raise err
            _rollback(db, sp)
            cb.error = None  # an exception is already on its way out


def _rollback(db: Any, savepoint: str | None) -> None:
    if savepoint:
        sql = f"ROLLBACK TO {savepoint}; RELEASE {savepoint}"
    elif lib.sqlite3_get_autocommit(db):
        return  # SQLite already rolled back (e.g. after SQLITE_FULL)
    else:
        sql = "ROLLBACK"
    lib.sqlite3_exec(db, sql.encode(), NULL, NULL, NULL)
