"""Opening a coordinated database: the mode's checks, the write lock it is
admitted by, its connections (one write connection, one read connection per
thread) and what writes need to know about the schema.  The base class of
:class:`~.database.Database`, shared by the write path (:mod:`.write`) and
the read path (:mod:`.read`)."""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..binding.errors import ClosedError, InterfaceError
from ..sessions.connection import Connection
from . import audit, commits
from .admission import OSLock
from .db_errors import (
    WalOnNetworkFilesystem,
)
from .errors import LockCompromised, LockPathError
from .fencing import (
    EPOCH_TABLE,
)
from .interrupts import InterruptGuard
from .lock import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_STALE_TIMEOUT,
    DirectoryLock,
    lock_paths,
    refuse_os_lock_marker,
)
from .modes import MODES, ModeSpec, filesystem_type, is_network_filesystem, pragma_statements

log = logging.getLogger("sqlite_session_safe.database")

Mode = Literal["trusted", "network", "wal"]

#: Default ``linger`` (seconds the write lock is kept after a write) per mode:
#: 0 everywhere.  In trusted and wal modes (lock protocol v2) taking the OS
#: lock costs microseconds, so a lease saves little, and its holder cannot
#: see who waits (a run of leases is bounded by :data:`MAX_TENURE`).  In
#: network mode a lease saves the lock directory's mkdir, fsyncs and renames,
#: but a holder crashed while lingering costs every client on another host
#: the stale timeout.  So it is off unless asked for.
DEFAULT_LINGER: dict[str, float] = {"trusted": 0.0, "wal": 0.0, "network": 0.0}

#: User tables without a primary key (SQLite's session module cannot record
#: their rows), leaving out SQLite's and this package's own tables.
NO_PK_TABLES = r"""
SELECT m.name FROM sqlite_schema AS m
WHERE m.type = 'table'
  AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
  AND m.name NOT LIKE '\_sss\_%' ESCAPE '\'
  AND coalesce(m.sql, '') NOT LIKE 'CREATE VIRTUAL%'
  AND NOT EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE pk > 0)
ORDER BY m.name
"""



def scalar(con: Connection, sql: str) -> Any:
    """The first column of the one row ``sql`` returns (a PRAGMA, a count)."""
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return row[0]


def rollback_quietly(con: Connection) -> None:
    """Roll back if a transaction is open (SQLite may have already, e.g.
    after SQLITE_FULL); never raises over the error being handled."""
    try:
        if not con.closed and con.in_transaction:
            con.execute("ROLLBACK")
    except Exception:
        pass



@dataclass
class SchemaInfo:
    """What the writes need to know about the schema (``DatabaseBase._schema``)."""

    version: int
    has_log: bool
    has_epoch: bool
    no_pk: frozenset[str]



class DatabaseBase:
    """How a :class:`~.database.Database` is opened and holds its lock and
    connections; the write and read paths build on it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: Mode = "trusted",
        *,
        timeout: float | None = 60.0,
        audit: bool = True,
        pragmas: dict[str, object] | None = None,
        busy_timeout: float | None = None,
        stale_timeout: float = DEFAULT_STALE_TIMEOUT,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        nolock: bool = False,
        rowid_tables: bool = False,
        linger: float | None = None,
        unsafe_nolock: bool = False,
    ) -> None:
        self._closed = True  # until fully opened: close() and __del__ do nothing
        if mode not in MODES:
            raise InterfaceError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if nolock and mode != "network":
            raise InterfaceError("nolock=True is only for mode='network' (where every reader "
                                 "and writer takes the outer lock)")
        if nolock and unsafe_nolock is not True:
            raise InterfaceError(
                "nolock=True turns SQLite's own locks off, and then nothing serializes the COMMIT "
                "of a writer that was paused past the stale timeout with its successor's: the late "
                "COMMIT can erase writes the successor already reported committed (PROTOCOL.md §4). "
                "Pass unsafe_nolock=True as well to accept that risk")
        self.spec: ModeSpec = MODES[mode]
        self.mode: str = mode
        self.audit = bool(audit)
        self.nolock = bool(nolock)
        self.rowid_tables = bool(rowid_tables)
        if linger is None:
            linger = DEFAULT_LINGER.get(mode, 0.0)
        if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not 0 <= linger < float("inf"):
            raise InterfaceError(f"linger must be seconds >= 0, not {linger!r}")
        #: Seconds the write lock is kept after a write (0: released each time).
        self.linger = float(linger)
        # (owner_id, epoch) of the last commit under the current lock tenure:
        # the next write under the same tenure compare-and-sets from it.
        self._lease_epoch: tuple[str, int] | None = None
        # (owner_id, monotonic start) of the current run of leases (v2).
        self._tenure: tuple[str, float] = ("", 0.0)
        self.timeout = timeout
        self.stale_timeout = float(stale_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        if busy_timeout is None:
            busy_timeout = 60.0 if timeout is None else timeout
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or busy_timeout < 0:
            raise InterfaceError(f"busy_timeout must be seconds >= 0, not {busy_timeout!r}")
        self.busy_timeout = float(busy_timeout)
        self._pragmas = pragma_statements(pragmas)
        self.path, self.lock_path, _readers = lock_paths(path)
        if self.spec.local_only and is_network_filesystem(self.path):
            raise WalOnNetworkFilesystem(
                f"mode='wal' refused for {self.path!r}: it is on a network file system "
                f"({filesystem_type(self.path)}), where SQLite's WAL index (shared memory) does not "
                "work across hosts; use mode='network'"
            )
        # One lock object for this Database's writes (used by one thread at a
        # time, under _write_mutex): an OS lock in trusted and wal modes (lock
        # protocol v2), a lock directory with heartbeats in network mode (v1).
        # Trusted mode on a network file system also uses v1: whether another
        # host's clients see an OS lock depends on the file system and its
        # mount options (two sshfs mounts never do), while a directory rename
        # is atomic on every one of them.
        self._lock: OSLock | DirectoryLock
        #: The lock protocol that admits this Database's writers: 2 (OS lock)
        #: or 1 (lock directory).  PROTOCOL.md §5.1.
        self.protocol = self.spec.protocol
        #: Open a fresh write connection for every admission (close-to-open
        #: consistency): network mode, and trusted mode on a network file
        #: system, whose client caches may serve a connection kept open stale
        #: pages (seen over sshfs: lost updates).
        self.reopen_per_admission = self.spec.reopen
        #: Readers take the outer lock (a reader lock directory): network
        #: mode, and trusted mode on a network file system.  Where SQLite's
        #: own locks do not reach another client, an unlocked reader that
        #: finds a writer's journal takes it for hot and rolls it back,
        #: undoing that writer's COMMIT.
        self.read_lock = self.spec.read_lock
        if self.protocol == 2 and is_network_filesystem(self.path):
            self.protocol = 1
            self.reopen_per_admission = True
            self.read_lock = True
        if self.protocol == 2:
            self._lock = OSLock(self.path, timeout=timeout)
        else:
            self._lock = DirectoryLock(
                self.path, "write", timeout=timeout, stale_timeout=stale_timeout,
                heartbeat_interval=heartbeat_interval,
            )
            refuse_os_lock_marker(self.path, self.lock_path)
        self._write_mutex = threading.Lock()
        # The file's identity for in-process commit notices (commits.py),
        # taken at the first commit (the file may not exist before).
        self._commit_key: commits.FileKey | None = None
        # Group commit (group_commit.py): the open group is changed under _gate.
        self._gate = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        self._pid = os.getpid()
        self._info: SchemaInfo | None = None
        #: Called (no arguments) right after admission, before BEGIN: a
        #: fault-injection point for the tests (pause/kill a writer there).
        self._after_admission: Callable[[], object] | None = None
        self._writer: Connection | None = None
        with InterruptGuard():  # Ctrl-C never leaves the lock or a connection behind
            con = self._open_prepared()  # fails here for a non-database file
            if self.reopen_per_admission:
                con.close()  # network mode: a fresh connection per admission
            else:
                self._writer = con
            self._closed = False

    # -- connections --------------------------------------------------------------

    def _connect(self, query_only: bool = False) -> Connection:
        if self.nolock:
            uri = "file:" + urllib.parse.quote(self.path) + "?nolock=1"
            con = Connection(uri, uri=True, timeout=self.busy_timeout)
        else:
            con = Connection(self.path, timeout=self.busy_timeout)
        try:
            for statement in self._pragmas:
                con.execute(statement)
            if query_only:
                # Not SQLITE_OPEN_READONLY: a reader must be able to roll back
                # the hot journal a killed writer left behind.
                con.execute("PRAGMA query_only = ON")
        except BaseException:
            con.close()
            raise
        return con

    def _open_prepared(self) -> Connection:
        """The first connection, prepared: refuse audit=False on an audited
        database; put the file in the mode's journal mode (under the write
        lock, only when it differs).

        With lock protocol 1 (network mode, trusted mode on a network file
        system) all of it runs under the write lock, connecting included (its
        ``PRAGMA synchronous`` loads the schema): reading the file there
        without the outer lock could take another client's live journal for
        hot and roll it back (SQLite's own locks do not reach that client),
        undoing a COMMIT in flight -- seen over two sshfs mounts as a lost
        update when a writer opened while the other committed."""
        if self.protocol != 1:
            return self._prepared(locked=False)
        self._admitted_lock()
        try:
            return self._prepared(locked=True)
        finally:
            self._give_up_lock(0.0, "opening the database")

    def _give_up_lock(self, linger: float, at_the_end_of: str) -> None:
        """Release the write lock (or keep it ``linger`` seconds as a lease).

        A loss or a file-system refusal found at release is logged, not
        raised: the work done under the lock is over and its outcome stands
        (a write's COMMIT came after check() passed, covered by SQLite's own
        lock; an open wrote nothing of the caller's), so raising would only
        turn a finished success into a reported failure -- seen in the chaos
        test as ``sss.open`` failing with LockCompromised in a process that
        was stopped past the stale timeout while it opened.  The lock object
        is reset either way; what is left at the lock path ages like a dead
        holder's and is broken as stale."""
        try:
            self._lock.release(linger=linger)
        except LockCompromised as e:
            log.warning("write lock of %s lost at the end of %s: %s", self.path, at_the_end_of, e)
        except LockPathError as e:
            log.warning("write lock of %s not released at the end of %s: %s", self.path, at_the_end_of, e)

    def _prepared(self, locked: bool) -> Connection:
        con = self._connect()
        try:
            self._prepare_admitted(con, locked=locked)
        except BaseException:
            con.close()
            raise
        return con

    def _prepare_admitted(self, con: Connection, locked: bool) -> None:
        if not self.audit and audit.has_log(con):
            raise InterfaceError(
                f"{self.path!r} keeps an audit log ({audit.LOG_TABLE}); writing it with audit=False "
                "would let writes bypass the log, so the log would disagree with the data"
            )
        want = self.spec.journal_mode
        current = str(scalar(con, "PRAGMA journal_mode")).lower()
        if current == want:
            return
        if locked:
            got = str(scalar(con, f"PRAGMA journal_mode = {want}")).lower()
        else:
            lock = self._admitted_lock()
            try:
                got = str(scalar(con, f"PRAGMA journal_mode = {want}")).lower()
            finally:
                lock.release()
        if got != want:
            raise InterfaceError(
                f"cannot switch {self.path!r} from journal_mode={current} to {want} (mode "
                f"{self.mode!r}): another connection has it open; every process must open it "
                "in the same mode"
            )

    def _admitted_lock(self) -> OSLock | DirectoryLock:
        """The outer write lock, acquired.  A lock path the file system
        refuses (read-only directory, full disk, dead network mount) raises
        the lock's LockPathError, which names the errno and says nothing was
        written."""
        self._lock.acquire()
        return self._lock

    def _check_usable(self) -> None:
        if self._closed:
            raise ClosedError(f"database {self.path!r} is closed")
        if os.getpid() != self._pid:
            raise InterfaceError(
                "a Database does not survive fork(): its connections and lock belong to the "
                f"parent (pid {self._pid}); call sss.open() again in the child"
            )

    def _reader(self) -> Connection:
        """This thread's read connection (trusted and wal modes)."""
        con: Connection | None = getattr(self._local, "reader", None)
        if con is None or con.closed:
            con = self._connect(query_only=True)
            self._local.reader = con
            with self._readers_lock:
                self._readers.append(con)
        return con

    def _schema(self, con: Connection) -> SchemaInfo:
        """What the writes need to know about the schema, cached by
        schema_version (so a write costs one PRAGMA, not a scan)."""
        version = int(scalar(con, "PRAGMA schema_version"))
        info = self._info
        if info is None or info.version != version:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN (?, ?)",
                (audit.LOG_TABLE, EPOCH_TABLE))}
            no_pk = frozenset(r[0] for r in con.execute(NO_PK_TABLES))
            info = self._info = SchemaInfo(version, audit.LOG_TABLE in names, EPOCH_TABLE in names, no_pk)
        return info

