"""Sessions: record the changes made through a connection as a changeset.

Lifetime
--------
A ``sqlite3_session`` must be deleted before its connection closes, and must
not be deleted while SQLite may be calling into it.  The C handle therefore
lives in a :class:`_SessionCore` registered with the connection (which deletes
it first thing when it closes, whatever order the user closes things in), and
every call that touches it holds the connection (``con.sss_hold()``), so it never
races a statement.  A Session dropped without ``close()`` is deleted by its
finalizer when the connection is free; if the connection is busy at that
moment (another thread, or this thread inside SQLite), deletion is deferred to
the connection's close instead of risking a free under SQLite's feet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.changeset_io import Writer
from ..binding.errors import ClosedError, InterfaceError
from ..binding.session_handle import SessionHandle
from .changeset import Changeset, Patchset

if TYPE_CHECKING:
    from types import TracebackType

    from ..binding.connection import Connection

__all__ = ["Session", "SessionFilter"]

#: ``filter(table_name) -> bool``: whether to record changes to that table.
SessionFilter = Callable[[str], object]

#: Cores whose Session was garbage-collected while the connection was busy:
#: kept alive (the connection deletes them when it closes).
_ORPHANS: set[_SessionCore] = set()
_ORPHANS_LOCK = threading.Lock()


class _SessionCore:
    """The C session handle and what SQLite's callbacks need."""

    __slots__ = ("con", "session", "filter", "error", "rejected", "__weakref__")

    def __init__(self, con: Connection, filter: SessionFilter | None) -> None:
        self.con = con
        self.session: SessionHandle | None = None
        self.filter = filter
        #: An exception the table filter raised: the capture is incomplete.
        self.error: BaseException | None = None
        #: Tables the filter said no to: SQLite asks again on every change to
        #: an unattached table, the user's filter is asked once.  The C cache
        #: in front of this (``SessionHandle.filter_with``) answers those
        #: calls without entering Python; this set only covers a name it
        #: failed to store.
        self.rejected: set[bytes] = set()

    def filter_table(self, name: bytes) -> int:
        """Called by SQLite (through ``SessionHandle.filter_with``); never raises."""
        if self.error is not None:
            return 0
        if name in self.rejected:
            return 0
        try:
            if self.filter(name.decode("utf-8", "replace")):  # type: ignore[misc]
                return 1
        except BaseException as exc:
            self.error = exc
            return 0
        self.rejected.add(name)
        return 0

    def delete(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.delete()
        with _ORPHANS_LOCK:
            _ORPHANS.discard(self)

    def close_before_connection(self) -> None:
        self.delete()


class Session:
    """Records changes to tables of one database of a connection.

    Made by ``con.session(...)``.  Use it as a context manager, or call
    :meth:`close`; closing the connection closes it too.

    Args:
        con: the connection whose changes to record.
        tables: table names to record; None records every table, including
            ones created later (``filter`` can narrow that down).
        filter: with ``tables=None``, ``filter(name)`` decides, once per table
            on its first change, whether to record it.  An exception it raises
            is re-raised by the next :meth:`changeset` / :meth:`patchset`
            call, since the capture is then incomplete.
        indirect: mark the recorded changes as indirect.
        rowid: also record tables without a PRIMARY KEY, keyed by rowid (the
            changeset then has an extra first column, ``_rowid_``).
        db: the database to record ("main", "temp" or an attached name).
        skip_reserved: with ``tables=None`` and no ``filter``, do not record
            the package's own tables (names starting with ``_sss_``: a
            coordinated database's audit log, fencing epoch and replica
            cursor).  Decided in C, without a call into Python.
        track_size: enable :attr:`changeset_size`.  Off by default: SQLite
            then keeps a running total, which made a 100,000-row insert about
            10% slower in bench/bench_sessions.py.

    Calls ``sqlite3session_create`` (and, as the options ask,
    ``sqlite3session_attach``, ``sqlite3session_table_filter``,
    ``sqlite3session_object_config``, ``sqlite3session_indirect``).
    """

    def __init__(
        self,
        con: Connection,
        tables: Iterable[str] | None = None,
        filter: SessionFilter | None = None,
        indirect: bool = False,
        rowid: bool = False,
        db: str = "main",
        track_size: bool = False,
        skip_reserved: bool = False,
    ) -> None:
        if isinstance(tables, str):
            raise InterfaceError("tables must be a list of table names, not a str "
                                 "(wrap a single name in a list)")
        table_list = None if tables is None else list(tables)
        if filter is not None and table_list is not None:
            raise InterfaceError("filter only applies with tables=None (it chooses among all tables); "
                                 "with an explicit list, only the listed tables are recorded")
        if filter is not None and not callable(filter):
            raise InterfaceError(f"filter must be callable, not {type(filter).__qualname__}")
        if skip_reserved and (filter is not None or table_list is not None):
            raise InterfaceError("skip_reserved is a filter of its own: it only applies with "
                                 "tables=None and no filter")
        _refuse_reentry(con, "create a session")
        self._con = con
        self._track_size = bool(track_size)
        core = self._core = _SessionCore(con, filter)
        with con.sss_hold() as cdb:
            session = core.session = SessionHandle(cdb, db)
            con.sss_add_dependent(core)
            try:
                session.object_config(cdb, rowid, track_size)
                if indirect:
                    session.indirect(1)
                if filter is not None:
                    session.filter_with(core)
                elif skip_reserved:
                    session.skip_reserved()
                if table_list is None:
                    session.attach(cdb, None)
                else:
                    for name in table_list:
                        self._attach(cdb, session, name)
            except BaseException:
                core.delete()
                raise

    # -- configuration ------------------------------------------------------

    def attach(self, table: str | None = None) -> None:
        """Also record ``table`` (None: every table, including later ones).
        Attaching a table that does not exist yet is allowed.

        Calls ``sqlite3session_attach``."""
        with self._use() as (cdb, session):
            if table is None:
                session.attach(cdb, None)
            else:
                self._attach(cdb, session, table)

    @staticmethod
    def _attach(cdb: Any, session: SessionHandle, table: str) -> None:
        if not isinstance(table, str) or "\0" in table:
            raise InterfaceError(f"a table name must be a str without NUL, not {table!r}")
        session.attach(cdb, table)

    @property
    def enabled(self) -> bool:
        """Whether changes are being recorded (a disabled session keeps what
        it has recorded and ignores new changes).

        Calls ``sqlite3session_enable``."""
        with self._use() as (_, session):
            return session.enable(-1)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        with self._use() as (_, session):
            session.enable(1 if value else 0)

    @property
    def indirect(self) -> bool:
        """Whether changes recorded from now on are marked indirect.

        Calls ``sqlite3session_indirect``."""
        with self._use() as (_, session):
            return session.indirect(-1)

    @indirect.setter
    def indirect(self, value: bool) -> None:
        with self._use() as (_, session):
            session.indirect(1 if value else 0)

    # -- state --------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        """True when no change has been recorded.  (False does not promise a
        non-empty changeset: a row changed and changed back records nothing.)

        Calls ``sqlite3session_isempty``."""
        with self._use() as (_, session):
            return session.is_empty()

    @property
    def memory_used(self) -> int:
        """Bytes of heap memory the session uses.

        Calls ``sqlite3session_memory_used``."""
        with self._use() as (_, session):
            return session.memory_used()

    @property
    def changeset_size(self) -> int:
        """The size in bytes :meth:`changeset` would return now.

        Calls ``sqlite3session_changeset_size``."""
        if not self._track_size:
            raise InterfaceError("changeset_size needs a session made with track_size=True")
        with self._use() as (_, session):
            return session.changeset_size()

    @property
    def closed(self) -> bool:
        """True once the session is closed (by :meth:`close` or its connection)."""
        return self._core.session is None

    @property
    def connection(self) -> Connection:
        """The connection whose changes this session records."""
        return self._con

    # -- output -------------------------------------------------------------

    def changeset(self) -> Changeset:
        """The changes recorded so far, as a :class:`Changeset`.

        Calls ``sqlite3session_changeset``."""
        return Changeset(self._output(False))

    def patchset(self) -> Patchset:
        """The changes recorded so far, as a :class:`Patchset`.

        Calls ``sqlite3session_patchset``."""
        return Patchset(self._output(True))

    def _output(self, patchset: bool) -> bytes:
        with self._use() as (cdb, session):
            self._raise_filter_error()
            return session.changeset(cdb, patchset)

    def changeset_stream(self, file: BinaryIO) -> int:
        """Write the changeset to a binary file object in chunks, without
        building it in memory (for changesets past memory or 2 GiB).
        Returns the number of bytes written.

        Calls ``sqlite3session_changeset_strm``."""
        return self._stream(file, False)

    def patchset_stream(self, file: BinaryIO) -> int:
        """Write the patchset to a binary file object in chunks; returns the
        number of bytes written.

        Calls ``sqlite3session_patchset_strm``."""
        return self._stream(file, True)

    def _stream(self, file: BinaryIO, patchset: bool) -> int:
        writer = Writer(file)
        with self._use() as (cdb, session):
            self._raise_filter_error()
            session.changeset_stream(cdb, writer, patchset)
        return writer.total

    def diff(self, from_schema: str, table: str) -> None:
        """Record the changes that would turn ``table`` in the attached
        database ``from_schema`` into ``table`` in this session's database
        (both tables need the same columns and primary key).

        Calls ``sqlite3session_diff``."""
        with self._use() as (cdb, session):
            session.diff(cdb, from_schema, table)

    def _raise_filter_error(self) -> None:
        err = self._core.error
        if err is not None:
            # Raised on every call from now on: the capture stays incomplete.
            raise err

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Delete the session (closing twice is fine).

        Calls ``sqlite3session_delete``."""
        core = self._core
        if core.session is None:
            return
        con = self._con
        if con.closed:  # the connection deleted it already
            core.delete()
            return
        _refuse_reentry(con, "close a session")
        with con.sss_hold():
            core.delete()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or core.session is None:
            return
        # Never from inside SQLite on this thread (the lock is re-entrant), and
        # never while another thread is in it: defer to the connection's close.
        if not core.con.sss_run_if_free(core.delete):
            with _ORPHANS_LOCK:
                _ORPHANS.add(core)

    def __repr__(self) -> str:
        return f"<sss.Session on {self._con.path!r} {'closed' if self.closed else 'open'}>"

    def _use(self) -> _UseSession:
        return _UseSession(self._con, self._core)


class _UseSession:
    """``with session._use() as (db, handle):`` the connection held, the session open."""

    __slots__ = ("core", "using")

    def __init__(self, con: Connection, core: _SessionCore) -> None:
        self.core = core
        self.using = con.sss_hold()

    def __enter__(self) -> tuple[Any, SessionHandle]:
        cdb = self.using.__enter__()
        session = self.core.session
        if session is None:
            self.using.__exit__(None, None, None)
            raise ClosedError("cannot use a closed session")
        return cdb, session

    def __exit__(self, *exc: object) -> None:
        self.using.__exit__(*exc)


def _refuse_reentry(con: Connection, what: str) -> None:
    """Creating or deleting a session from inside a callback SQLite is running
    on this connection (a session filter runs inside SQLite's pre-update
    hook) could free what SQLite is using: refuse it."""
    if con.sss_held_here():
        raise InterfaceError(f"cannot {what} from inside a callback running on its connection")

