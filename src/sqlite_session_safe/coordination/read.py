"""The read path of the coordinated database: ``with db.read() as r:``, a
consistent snapshot on this thread's read connection (behind the shared
reader lock in network mode), and the audit log read in snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from ..binding.cursor import Cursor, Row
from ..binding.errors import InterfaceError
from ..binding.values import Parameters
from ..sessions.connection import Connection
from . import audit
from .db_base import DatabaseBase, rollback_quietly
from .errors import LockError
from .interrupts import InterruptGuard
from .lock import (
    DirectoryLock,
)


class ReadTx:
    """A consistent snapshot: ``with db.read() as r:``.

    Every statement in the block sees the database as of the block's start
    (SQLite's read transaction).  :attr:`seq` is the audit log position of
    that snapshot.  Read-only: writing raises ``ReadOnlyError``.
    """

    def __init__(self, db: ReadPath) -> None:
        self._db = db
        self._con: Connection | None = None
        self._lock: DirectoryLock | None = None
        self._outer: ReadTx | None = None
        #: The audit log position this snapshot shows (0 without a log).
        self.seq = 0
        self._guard = self._section = InterruptGuard()
        self._was_immediate = False
        self._mark = 0

    @property
    def connection(self) -> Connection:
        """The snapshot's connection, for the package's own modules
        (backups, replication, bundles).  Raises ``InterfaceError`` outside
        the read's block."""
        con = self._con
        if con is None:
            raise InterfaceError("this read is not active (use r only inside its block)")
        return con

    def execute(self, sql: str, params: Parameters | None = None) -> Cursor:
        """Run one (read-only) statement in the snapshot."""
        return self.connection.execute(sql, params)

    def fetchall(self, sql: str, params: Parameters | None = None) -> list[Row]:
        """``execute(sql, params).fetchall()``."""
        return self.execute(sql, params).fetchall()

    def interrupt(self) -> None:
        """Stop the statement this read is running, from any thread (it
        raises ``InterruptError``).  Does nothing when no statement runs."""
        con = self._con
        if con is not None:
            con.interrupt()

    def __enter__(self) -> ReadTx:
        guard = self._guard = InterruptGuard()
        section = guard.__enter__()
        begun = False
        try:
            self._db._begin_read(self)
            begun = True
            section.checkpoint()  # a Ctrl-C that arrived while the read began
        except BaseException as e:
            try:
                if begun:
                    self._db._end_read(self, True)
            finally:
                guard.__exit__(type(e), e, e.__traceback__)
            raise
        self._was_immediate = section.set_immediate(True)  # the block is the caller's code
        self._section = section
        self._mark = section.mark()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        section = self._section
        section.set_immediate(self._was_immediate)
        try:
            self._db._end_read(self, exc_type is not None)
            if exc_type is None and section.delivered_since(self._mark):
                # Raised inside the block and swallowed there (see WriteTx).
                raise KeyboardInterrupt("Ctrl-C during the read did not propagate out of its block")
            self._guard.__exit__(exc_type, exc, tb)
        except BaseException as e:
            self._guard.__exit__(type(e), e, e.__traceback__)
            raise



class ReadPath(DatabaseBase):
    """The reads of a :class:`~.database.Database`."""

    # -- reads --------------------------------------------------------------------

    def read(self) -> ReadTx:
        """``with db.read() as r:`` -- a consistent snapshot.  No outer lock
        in trusted and wal modes; the shared (reader) lock in network mode.
        A read nested in a read of the same thread shares its snapshot."""
        return ReadTx(self)

    def _begin_read(self, r: ReadTx) -> None:
        self._check_usable()
        outer: ReadTx | None = getattr(self._local, "read", None)
        if outer is not None:  # nested: the same snapshot
            r._outer, r._con, r.seq = outer, outer._con, outer.seq
            return
        if self.read_lock and getattr(self._local, "writing", False):
            raise InterfaceError("in network mode a read cannot run inside a write of the same "
                                 "thread (the reader lock waits for the write lock); use tx.execute")
        if self.read_lock:
            lock = DirectoryLock(self.path, "read", timeout=self.timeout,
                                 stale_timeout=self.stale_timeout,
                                 heartbeat_interval=self.heartbeat_interval)
            try:
                lock.acquire()
            except OSError as e:
                raise LockError(f"cannot take the reader lock of {self.path!r}: {e}") from e
            r._lock = lock
            try:
                con = self._connect(query_only=True)
            except BaseException:
                lock.release()
                raise
        else:
            con = self._reader()
        try:
            con.execute("BEGIN DEFERRED")
            # The first read takes SQLite's shared lock: the snapshot starts here.
            r.seq = audit.log_position(con)
        except BaseException:
            rollback_quietly(con)
            self._drop_read_connection(r, con)
            raise
        r._con = con
        self._local.read = r

    def _end_read(self, r: ReadTx, failed: bool) -> None:
        if r._outer is not None:
            r._con = None
            return
        con, r._con = r._con, None
        self._local.read = None
        if con is None:
            return
        try:
            rollback_quietly(con)  # read-only: ending it either way releases the shared lock
        finally:
            self._drop_read_connection(r, con)

    def _drop_read_connection(self, r: ReadTx, con: Connection) -> None:
        lock, r._lock = r._lock, None
        if lock is None:
            return
        con.close()
        # Raises LockCompromised if the reader lock was lost mid-read: what
        # was read may then mix two states (network mode without SQLite locks).
        lock.release()

    def log(self, since: int = 0) -> Iterator[audit.LogEntry]:
        """The audit log entries with ``seq > since``, in order.

        Read in batches, each in its own short snapshot, so iterating never
        holds a read lock while the caller works.
        """
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise InterfaceError(f"since must be an int >= 0, not {since!r}")
        while True:
            with self.read() as r:
                rows = audit.read_entries(r.connection, since, 256)
            yield from rows
            if len(rows) < 256:
                return
            since = rows[-1].seq

    def position(self) -> int:
        """The current audit log position (the last seq; 0 when empty)."""
        with self.read() as r:
            return r.seq

