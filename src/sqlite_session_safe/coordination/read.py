"""The read path of the coordinated database: ``with db.read() as r:``, a
consistent snapshot on this thread's read connection (behind the shared
reader lock in network mode), and the audit log read in snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Snapshot:
    """One read's hold on the database, from :meth:`ReadPath.sss_begin_read` to
    :meth:`ReadPath.sss_end_read`: the connection in its read transaction, the
    audit log position it shows, the reader lock (network mode), and whether
    it is an outer read's snapshot shared by a nested read (which ends
    nothing)."""

    con: Connection
    seq: int
    lock: DirectoryLock | None = None
    nested: bool = False


class ReadTx:
    """A consistent snapshot: ``with db.read() as r:``.

    Every statement in the block sees the database as of the block's start
    (SQLite's read transaction).  :attr:`seq` is the audit log position of
    that snapshot.  Read-only: writing raises ``ReadOnlyError``.
    """

    def __init__(self, db: ReadPath) -> None:
        self._db = db
        self._snapshot: Snapshot | None = None
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
        snapshot = self._snapshot
        if snapshot is None:
            raise InterfaceError("this read is not active (use r only inside its block)")
        return snapshot.con

    def execute(self, sql: str, params: Parameters | None = None) -> Cursor:
        """Run one (read-only) statement in the snapshot."""
        return self.connection.execute(sql, params)

    def fetchall(self, sql: str, params: Parameters | None = None) -> list[Row]:
        """``execute(sql, params).fetchall()``."""
        return self.execute(sql, params).fetchall()

    def interrupt(self) -> None:
        """Stop the statement this read is running, from any thread (it
        raises ``InterruptError``).  Does nothing when no statement runs."""
        snapshot = self._snapshot
        if snapshot is not None:
            snapshot.con.interrupt()

    def __enter__(self) -> ReadTx:
        guard = self._guard = InterruptGuard()
        section = guard.__enter__()
        try:
            self._snapshot = self._db.sss_begin_read()
            self.seq = self._snapshot.seq
            section.checkpoint()  # a Ctrl-C that arrived while the read began
        except BaseException as e:
            try:
                self._end()
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
            self._end()
            if exc_type is None and section.delivered_since(self._mark):
                # Raised inside the block and swallowed there (see WriteTx).
                raise KeyboardInterrupt("Ctrl-C during the read did not propagate out of its block")
            self._guard.__exit__(exc_type, exc, tb)
        except BaseException as e:
            self._guard.__exit__(type(e), e, e.__traceback__)
            raise

    def _end(self) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            self._db.sss_end_read(snapshot)



class ReadPath(DatabaseBase):
    """The reads of a :class:`~.database.Database`."""

    # -- reads --------------------------------------------------------------------

    def read(self) -> ReadTx:
        """``with db.read() as r:`` -- a consistent snapshot.  No outer lock
        in trusted and wal modes; the shared (reader) lock in network mode.
        A read nested in a read of the same thread shares its snapshot."""
        return ReadTx(self)

    def sss_begin_read(self) -> Snapshot:
        """Begin a read on this thread (:class:`ReadTx` does): its own
        snapshot, or the snapshot of the read it is nested in."""
        self._check_usable()
        outer: Snapshot | None = getattr(self._local, "read", None)
        if outer is not None:  # nested: the same snapshot
            return Snapshot(outer.con, outer.seq, nested=True)
        if self.read_lock and getattr(self._local, "writing", False):
            raise InterfaceError("in network mode a read cannot run inside a write of the same "
                                 "thread (the reader lock waits for the write lock); use tx.execute")
        lock: DirectoryLock | None = None
        if self.read_lock:
            lock = DirectoryLock(self.path, "read", timeout=self.timeout,
                                 stale_timeout=self.stale_timeout,
                                 heartbeat_interval=self.heartbeat_interval)
            try:
                lock.acquire()
            except OSError as e:
                raise LockError(f"cannot take the reader lock of {self.path!r}: {e}") from e
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
            seq = audit.log_position(con)
        except BaseException:
            rollback_quietly(con)
            self._drop_read_connection(con, lock)
            raise
        snapshot = Snapshot(con, seq, lock)
        self._local.read = snapshot
        return snapshot

    def sss_end_read(self, snapshot: Snapshot) -> None:
        """End a read :meth:`sss_begin_read` began, whether it failed or not."""
        if snapshot.nested:
            return
        self._local.read = None
        try:
            rollback_quietly(snapshot.con)  # read-only: ending it either way releases the shared lock
        finally:
            self._drop_read_connection(snapshot.con, snapshot.lock)

    def _drop_read_connection(self, con: Connection, lock: DirectoryLock | None) -> None:
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

