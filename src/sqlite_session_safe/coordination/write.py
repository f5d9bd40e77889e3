"""The write path of the coordinated database: ``db.write``, ``db.migrate``.

Any number of cooperating processes (and threads) write one SQLite file
safely; every write comes back as a changeset and lands in an audit log that
can never disagree with the data.  PROTOCOL.md ("Coordinated database",
"Audit log") is the contract; this is its reference implementation.

One admitted write (:meth:`Database.write`), in order:

1. the process-local write mutex (threads of this process, one at a time);
2. the outer directory lock (``DirectoryLock``, mode "write");
3. read the fencing epoch ``e`` (right after admission, outside any
   transaction, so a write committed by someone else between our admission
   and our transaction makes the compare-and-set below fail);
4. ``BEGIN IMMEDIATE``;
5. the epoch compare-and-set ``e -> e + 1``; zero rows: commit nothing;
6. a session over every table except the package's ``_sss_`` tables;
7. ``fn(tx)``;
8. the schema must be unchanged (DDL goes through :meth:`Database.migrate`);
   the changeset is taken; a change to a table without a primary key is
   refused (unless ``rowid_tables=True``);
9. an empty changeset commits nothing (rolled back, no entry, ``seq`` None);
   otherwise the entry is appended to ``_sss_log`` in the same transaction;
10. ``lock.check()``: a lost lock commits nothing (``LockCompromised``);
11. ``COMMIT``; release the lock (or keep it as a lease, below); release the
    mutex.

**Lease** (``linger``, PROTOCOL.md §2.11): after a write the outer lock is
kept for ``linger`` seconds, so the next write of this Database is admitted
without re-acquiring it (the directory lock's mkdir, fsyncs and renames cost
more than the SQLite commit itself).  A waiter announces itself and the lease
ends at once when idle, or at the end of the current write.  Fencing stays
per write: a write under a lease uses the epoch its predecessor in the same
tenure set (never re-read), compare-and-sets it and checks the lock before
COMMIT, so a holder broken while paused commits nothing.  A lease found lost
while idle is simply dropped: the next write acquires anew.

Any exception on the way (``KeyboardInterrupt`` included) rolls back, releases
the lock and logs nothing.

Decisions (documented in PROTOCOL.md):

* **Empty writes** commit nothing: no log entry, ``result.seq is None``,
  ``result.empty`` True, the epoch unchanged.
* **Nesting**: a write inside a write on the same thread raises
  ``InterfaceError`` (it would deadlock on the lock or silently merge two
  writes into one entry); use savepoints (``tx.savepoint()``) inside one
  write instead.  Another thread's write waits for this one.  A write inside
  a ``db.read()`` block of the same thread is refused too (its COMMIT would
  wait on that thread's own read lock).
* **Threads**: writes are serialized on one write connection; reads run in
  parallel on one connection per thread.
"""

from __future__ import annotations

import collections
import copy
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..binding.connection import Transaction
from ..binding.cursor import Cursor
from ..binding.errors import BusyError, InterfaceError
from ..binding.values import Parameters
from ..sessions.changeset import Changeset
from ..sessions.connection import Connection
from ..sessions.session import Session
from . import audit, commits, interrupts, procinfo
from .db_base import DatabaseBase, SchemaInfo, rollback_quietly, scalar
from .db_errors import (
    CommitOutcomeUnknown,
    GroupRolledBack,
    NoPrimaryKeyError,
    SchemaChangeInWrite,
)
from .errors import EpochMismatch, LockCompromised, LockTimeout
from .fencing import (
    admission_epoch,
    advance_epoch,
    catch_up_epoch,
    ensure_epoch_table,
    read_epoch,
)
from .interrupts import InterruptGuard
from .migration import refuse_transaction_control, run_script

log = logging.getLogger("sqlite_session_safe.database")

#: In trusted and wal modes a run of leases (``linger``) keeps the lock for at
#: most this long (seconds) before handing it over: the OS lock does not tell
#: its holder that someone waits, so this bounds their wait.
MAX_TENURE = 0.05


@dataclass(frozen=True)
class WriteTiming:
    """Seconds spent by one write, on this process's monotonic clock.

    Attributes:
        wait: waiting for admission (thread mutex + the outer lock).
        held: from admission to release (transaction, fn, commit).
        total: the whole call.
    """

    wait: float
    held: float
    total: float


@dataclass(frozen=True)
class WriteResult:
    """What an admitted write did.

    Attributes:
        value: what ``fn`` returned (``tx.value`` for the block form).
        changeset: the write's changes (empty for an empty write or a migration).
        seq: the write's position in the audit log; None when nothing was
            logged (an empty write, or ``audit=False``).
        label: the label given.
        kind: ``"data"`` (db.write) or ``"ddl"`` (db.migrate).
        epoch: the fencing epoch this write set (None if it committed nothing).
        owner: the lock ``owner_id`` it was admitted under.
        committed_at: RFC 3339 UTC wall time of its log entry, or None.
        timing: see :class:`WriteTiming`.
        attempts: how many tries it took (optimistic writes; else 1).
    """

    value: Any
    changeset: Changeset
    seq: int | None
    label: str | None
    kind: str
    epoch: int | None
    owner: str
    committed_at: str | None
    timing: WriteTiming
    attempts: int = 1

    @property
    def empty(self) -> bool:
        """True when the write changed nothing and so committed nothing."""
        return self.kind == "data" and not self.changeset


#: A group commit takes at most this many writes (parts) into one transaction;
#: later arrivals wait for the next one.
MAX_GROUP = 256
#: The savepoint each part after the first runs in.
_PART_SAVEPOINT = "_sss_write_part"


class _Group:
    """One write transaction shared by the writes of a Database's threads
    (group commit; see "the write path" in :class:`Database`).

    Changed only under ``Database._gate``, except by the thread whose turn
    it is (``turn``), which alone uses the connection."""

    __slots__ = ("leader", "queue", "turn", "accepting", "failed", "mutex", "locked", "lost",
                 "admitted", "owner", "con", "epoch", "stored_epoch", "in_txn", "fresh_info", "parts",
                 "broken",
                 "done", "landed", "error")

    def __init__(self, leader: WriteTx) -> None:
        self.leader = leader
        self.queue: collections.deque[WriteTx] = collections.deque()
        self.turn: WriteTx | None = None
        self.accepting = True
        #: Ended before the queued writes got a turn: they start over.
        self.failed = False
        self.mutex = self.locked = self.lost = False
        self.admitted = False
        self.owner = ""
        self.con: Connection | None = None
        #: The epoch the next part compare-and-sets from (or takes the next of).
        self.epoch: int | None = None
        #: The epoch the row holds inside the open transaction (set by the
        #: first part's compare-and-set).
        self.stored_epoch: int | None = None
        self.in_txn = False
        #: The schema as read right after BEGIN, for the part that starts next
        #: (saves it a PRAGMA); later parts read it again (a migration may
        #: have run before them).
        self.fresh_info: SchemaInfo | None = None
        #: Writes whose part is in the transaction, waiting for its COMMIT.
        self.parts: list[WriteTx] = []
        #: Set when SQLite rolled the shared transaction back under a part.
        self.broken: BaseException | None = None
        self.done = self.landed = False
        self.error: BaseException | None = None



class WriteTx:
    """The inside of one admitted write: ``tx`` in ``db.write(fn)`` and in
    ``with db.write() as tx:``.

    Run SQL with :meth:`execute` / :meth:`executemany`; roll part of the
    work back with ``with tx.savepoint(): ...``.  Transaction control
    (``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``VACUUM``, ``ATTACH``) is refused:
    the package commits the write together with its log entry.  After the
    block, :attr:`result` holds the :class:`WriteResult`.
    """

    def __init__(self, db: WritePath, label: str | None, kind: str = "data", *,
                 commit_empty: bool = False) -> None:
        if label is not None and not isinstance(label, str):
            raise InterfaceError(f"label must be a str or None, not {type(label).__qualname__}")
        self._db = db
        self.label = label
        self.kind = kind
        #: The value reported as ``result.value`` (``db.write(fn)`` sets it to fn's return).
        self.value: Any = None
        #: The :class:`WriteResult`, once the block has committed.
        self.result: WriteResult | None = None
        self._con: Connection | None = None
        self._session: Session | None = None
        self._info: SchemaInfo | None = None
        self._epoch: int | None = None
        self._owner = ""
        self._t0 = 0.0
        self._admitted = 0.0
        # Commit even when the changeset is empty (no log entry then): for
        # replication, whose cursor (an ``_sss_`` table, never recorded) must
        # move even when the replayed changes cancel out.
        self._commit_empty = commit_empty
        # Group commit (Database._begin_write): the group this write is part
        # of, whether its part runs in a savepoint, and (changeset, seq,
        # committed_at) once its part is in the transaction.
        self._group: _Group | None = None
        self._savepoint = False
        self._part: tuple[Changeset, int | None, str | None] | None = None
        # Ctrl-C handling for the admission (see __enter__ / interrupts.py).
        self._guard = InterruptGuard()
        self._section = self._guard
        self._was_immediate = False
        self._mark = 0

    # -- what fn uses ---------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The write connection, for the package's own modules (replication,
        backups, undo, the CLI) that run SQL the write must not refuse (the
        statements of a migration, a replayed changeset).  Raises
        ``InterfaceError`` outside the write's block or fn."""
        con = self._con
        if con is None:
            raise InterfaceError("this write is not active (use tx only inside its block or fn)")
        return con

    def execute(self, sql: str, params: Parameters | None = None) -> Cursor:
        """Run one statement inside the write."""
        con = self.connection
        refuse_transaction_control(sql)
        return con.execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Iterable[Parameters]) -> Cursor:
        """Run one statement once per parameter row inside the write."""
        con = self.connection
        refuse_transaction_control(sql)
        return con.executemany(sql, seq_of_params)

    def savepoint(self) -> Transaction:
        """``with tx.savepoint():`` -- a nested part of the write that an
        exception rolls back on its own (the write goes on)."""
        return self.connection.transaction()

    def interrupt(self) -> None:
        """Stop the statement this write is running, from any thread: it
        raises ``InterruptError`` inside ``fn`` and, unless fn catches it, the
        write rolls back with nothing committed.  Does nothing when no
        statement runs (the async face uses it to cancel a write).  SQLite
        rolls back the whole transaction when a write statement is
        interrupted: in a group commit, the other parts of the group too."""
        con = self._con
        if con is not None:
            con.interrupt()

    @property
    def epoch(self) -> int | None:
        """The fencing epoch this write will set."""
        return self._epoch

    @property
    def owner(self) -> str:
        """The lock ``owner_id`` this write was admitted under."""
        return self._owner

    # -- block form -----------------------------------------------------------

    def __enter__(self) -> WriteTx:
        guard = self._guard = InterruptGuard()
        section = self._section = guard.__enter__()
        admitted = False
        try:
            self._db._begin_write(self)
            admitted = True
            # A Ctrl-C that arrived during the admission: stop before fn runs.
            section.checkpoint()
        except BaseException as e:
            try:
                if admitted:
                    self._db._abort_write(self)
            finally:
                guard.__exit__(type(e), e, e.__traceback__)
            raise
        # The block (or fn) is the caller's code: Ctrl-C interrupts it at once.
        self._was_immediate = section.set_immediate(True)
        self._mark = section.mark()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        section, guard = self._section, self._guard
        section.set_immediate(self._was_immediate)
        try:
            if exc_type is not None:
                self._db._abort_write(self)
            elif section.delivered_since(self._mark):
                # Ctrl-C was raised inside the block, yet the block ended
                # normally: a callback swallowed it (CPython drops exceptions
                # raised in weakref callbacks and finalizers), or the caller
                # caught it.  Either way the user asked to stop: commit nothing.
                self._db._abort_write(self)
                raise KeyboardInterrupt(
                    "Ctrl-C during the write did not propagate out of the write's code; "
                    "the write was rolled back, nothing was committed")
            else:
                self.result = self._db._finish_write(self)
            # A Ctrl-C deferred meanwhile is raised here, carrying the
            # committed result as .write (interrupts.py).
            guard.__exit__(exc_type, exc, tb)
        except BaseException as e:
            guard.__exit__(type(e), e, e.__traceback__)
            raise
        finally:
            section.result = None



class WritePath(DatabaseBase):
    """The writes of a :class:`~.database.Database`: admission, group commit,
    the audit log entry, the lease."""

    #: The open group commit (changed under ``_gate``).
    _group: _Group | None = None

    # -- writes -------------------------------------------------------------------

    def write(
        self, fn: Callable[[WriteTx], Any] | None = None, label: str | None = None
    ) -> Any:
        """One admitted write.

        ``db.write(fn, label=...)`` runs ``fn(tx)`` inside the write and
        returns a :class:`WriteResult` (``.value`` is fn's return).
        ``with db.write(label=...) as tx:`` does the same for a block;
        ``tx.result`` holds the WriteResult afterwards.

        Raises:
            LockCompromised: the lock was lost before COMMIT; nothing committed.
            LockTimeout: not admitted within ``timeout``.
            SchemaChangeInWrite: fn changed the schema (use :meth:`migrate`).
            NoPrimaryKeyError: fn changed a table without a primary key.
            InterfaceError: a write nested in a write (or in a read) of this thread.

        Whatever ``fn`` raises comes out as itself, after the write rolled
        back.  An exception that escapes after the COMMIT itself landed (an
        error reported for a COMMIT that is durable, a Ctrl-C during COMMIT)
        carries the committed :class:`WriteResult` as ``exc.write``.
        """
        tx = WriteTx(self, label)
        if fn is None:
            return tx
        if not callable(fn):
            raise InterfaceError(f"fn must be callable, not {type(fn).__qualname__}")
        with tx:
            tx.value = fn(tx)
        assert tx.result is not None
        return tx.result

    def migrate(self, sql: str, label: str | None = None) -> WriteResult:
        """A schema change, admitted like a write and logged as one ``"ddl"``
        entry holding ``sql``, in order with the data changes.

        The statements run in order inside the write transaction; replay runs
        the same text, so it must be deterministic (no ``random()``, no
        ``CURRENT_TIMESTAMP`` in data it writes).  Data changes a migration
        makes are replayed by re-running it, not through a changeset.
        Transaction control statements are refused.
        """
        if not isinstance(sql, str):
            raise InterfaceError(f"SQL must be str, not {type(sql).__qualname__}")
        tx = WriteTx(self, label, kind="ddl")
        with tx:
            run_script(tx.connection, sql)
            tx.value = sql
        assert tx.result is not None
        return tx.result

    # -- the write path: admission, group commit ------------------------------------
    #
    # The writes of this Database's threads share transactions (group commit):
    # a write that arrives while another one's transaction is open joins it and
    # runs, in its turn and on its own thread, in a savepoint of that
    # transaction (with its own session, epoch step and log entry); the last
    # part to finish commits for all of them, and each write returns once that
    # COMMIT has landed.  One COMMIT (one set of fsyncs) for many writes.  A
    # write that raises rolls back only its own part.  Order: parts run, get
    # their seqs and commit in arrival order; a write returns committed only
    # after the COMMIT that made it durable.  A lone write is a group of one,
    # without a savepoint.

    def _begin_write(self, tx: WriteTx) -> None:
        self._check_usable()
        local = self._local
        if getattr(local, "writing", False):
            raise InterfaceError(
                "a write cannot nest in another write of the same thread (it would be a second "
                "admission inside the first); put the work in one write, using tx.savepoint()"
            )
        if getattr(local, "read", None) is not None:
            raise InterfaceError(
                "a write cannot start inside a db.read() block of the same thread: its COMMIT "
                "would wait for this thread's own read lock; finish the read first"
            )
        tx._t0 = time.monotonic()
        deadline = None if self.timeout is None else tx._t0 + self.timeout
        while True:
            self._check_usable()
            group = self._join_group(tx, deadline)
            if group.leader is tx or not group.failed:
                tx._group = group
                break
            # The group we queued in ended before our turn: start over.
        local.writing = True
        try:
            if not group.admitted:
                self._admit_group(group, tx, deadline)
            self._begin_part(group, tx)
        except BaseException:
            local.writing = False
            self._end_part(group, tx, committed_part=False)
            raise

    def _join_group(self, tx: WriteTx, deadline: float | None) -> _Group:
        """Queue in the open group (and wait for our turn), or open a new one
        with us as its leader."""
        with self._gate:
            group = self._group
            if group is None or not group.accepting or len(group.queue) >= MAX_GROUP:
                group = self._group = _Group(leader=tx)
                group.turn = tx
                return group
            group.queue.append(tx)
            try:
                while group.turn is not tx and not group.failed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LockTimeout(
                            f"timed out waiting for {self.lock_path!r}: other writes of this "
                            "process are ahead of this one")
                    self._gate.wait(interrupts.CHECK_INTERVAL if remaining is None
                                    else min(remaining, interrupts.CHECK_INTERVAL))
                    interrupts.checkpoint()
            except BaseException:
                if tx in group.queue:
                    group.queue.remove(tx)
                raise
            return group

    def _admit_group(self, group: _Group, tx: WriteTx, deadline: float | None) -> None:
        """The leader's admission: the process mutex, the outer lock, the
        write connection, the epoch to fence from, BEGIN IMMEDIATE."""
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not interrupts.wait_lock(self._write_mutex.acquire, remaining):
                raise LockTimeout(f"timed out waiting for {self.lock_path!r}: another thread of this "
                                  "process is using this database's write lock")
            group.mutex = True
            lock = self._admitted_lock()
            group.locked = True
            assert lock.owner is not None
            group.owner = lock.owner.owner_id
            if self._tenure[0] != group.owner:  # a new acquisition, not a lease taken back
                self._tenure = (group.owner, time.monotonic())
            if self._writer is not None:
                group.con = self._writer
            else:  # network mode: a fresh connection per admission
                group.con = self._connect()
                if deadline is not None:
                    # SQLite's own busy wait (BEGIN IMMEDIATE behind a holder
                    # paused inside its transaction) ends with the write's own
                    # deadline, not a whole timeout later.
                    remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
                    group.con.execute(f"PRAGMA busy_timeout = {remaining_ms}")
            # Read the epoch now, outside the transaction: a commit by anyone
            # else between our admission and our BEGIN then fails the CAS.
            # Under a lease (same tenure as the last commit) the epoch that
            # commit set is the one to expect: re-reading it would accept a
            # commit made by whoever broke us while we lingered.
            lease = self._lease_epoch
            if lease is not None and lease[0] == group.owner:
                group.epoch = lease[1]
            else:
                group.epoch = admission_epoch(group.con)  # 0 on a fresh database
            if self._after_admission is not None:
                self._after_admission()
            group.admitted = True
        except BaseException as e:
            group.lost = isinstance(e, LockCompromised)
            raise

    def _open_group_transaction(self, group: _Group) -> None:
        con = group.con
        assert con is not None
        try:
            con.execute("BEGIN IMMEDIATE")
        except BusyError as e:
            raise LockTimeout(
                f"timed out waiting for {self.path!r}: admitted by the outer lock, but SQLite's own "
                "write lock stayed held by another connection (a writer paused inside its "
                "transaction after its lock was broken, or a program that does not take part in "
                f"the lock protocol): {e}") from e
        group.in_txn = True
        try:
            info = self._schema(con)
            if not info.has_epoch or (self.audit and not info.has_log):
                ensure_epoch_table(con)
                if self.audit:
                    audit.ensure_log(con)
                info = self._schema(con)
            if not self.audit and info.has_log:
                raise InterfaceError(
                    f"{self.path!r} keeps an audit log now; this Database was opened with "
                    "audit=False and must not write it"
                )
            group.fresh_info = info
        except BaseException:
            rollback_quietly(con)
            group.in_txn = False
            raise

    def _begin_part(self, group: _Group, tx: WriteTx) -> None:
        """Our turn: our part of the group's transaction starts (a savepoint
        when earlier parts are in it), fenced by its own epoch step."""
        tx._admitted = time.monotonic()
        tx._owner = group.owner
        if not group.in_txn:
            self._open_group_transaction(group)
        con = group.con
        assert con is not None and group.epoch is not None
        tx._con = con
        try:
            if group.parts:
                con.execute(f"SAVEPOINT {_PART_SAVEPOINT}")
                tx._savepoint = True
                # The transaction's first part compare-and-set the epoch; a
                # later part takes the next one for its entry, and the row
                # catches up once before COMMIT (_commit_group).
                tx._epoch = group.epoch + 1
            else:
                tx._epoch = group.stored_epoch = self._advance_epoch(con, group.epoch)
            info = tx._info = group.fresh_info or self._schema(con)
            group.fresh_info = None
            if tx.kind == "data":
                tx._session = Session(con, skip_reserved=True, rowid=bool(info.no_pk))
        except BaseException:
            self._undo_part(group, tx)
            raise

    def _undo_part(self, group: _Group, tx: WriteTx) -> None:
        """Roll our part back: our savepoint, or the whole transaction when
        we are its only part so far."""
        self._close_session(tx)
        con = tx._con
        if con is None:
            return
        if tx._savepoint:
            tx._savepoint = False
            try:
                con.execute(f"ROLLBACK TO {_PART_SAVEPOINT}")
                con.execute(f"RELEASE {_PART_SAVEPOINT}")
                return
            except Exception:  # noqa: BLE001 - SQLite rolled the whole transaction back (FULL, IOERR)
                pass
        rollback_quietly(con)
        group.in_txn = con.in_transaction if not con.closed else False
        if group.parts and not group.in_txn:
            # The transaction went with earlier parts in it: they fail too.
            group.broken = GroupRolledBack(
                "SQLite rolled back the write transaction this write shared with other writes of "
                "this Database (group commit) when a later one of them failed (interrupted, disk "
                "full or an I/O error); nothing of it was committed")

    def _advance_epoch(self, con: Connection, epoch: int) -> int:
        """The fencing compare-and-set from ``epoch`` (inside BEGIN IMMEDIATE).

        When it fails, someone committed since ``epoch`` was read.  If our
        own lock still verifies, nobody broke it, so that commit came from a
        holder that had *already* lost the lock (paused between its last
        check and its COMMIT, PROTOCOL.md §4): its COMMIT is done (SQLite's
        lock, which we now hold, serialized it), and we are the rightful
        holder.  We proceed on top of it: read the epoch again, inside our
        transaction, where nobody else can move it.  Without SQLite's locks
        (``unsafe_nolock``) nothing serializes that late COMMIT with ours:
        refuse instead.
        """
        try:
            return advance_epoch(con, epoch, logged=True)
        except EpochMismatch as e:
            if not self.nolock:
                try:
                    self._lock.check()
                except LockCompromised:
                    pass
                else:
                    log.warning(
                        "%s: the fencing epoch moved from %d to %s between this write's admission "
                        "and its transaction although this holder's lock is intact: a former holder "
                        "committed late; proceeding after that commit", self.path, epoch, e.actual)
                    return advance_epoch(con, read_epoch(con), logged=True)
            raise LockCompromised(
                f"write to {self.path!r} refused: {e} (another holder committed between "
                "this write's admission and its transaction); nothing was committed"
            ) from e

    def _finish_write(self, tx: WriteTx) -> WriteResult:
        group = tx._group
        assert group is not None
        con = tx.connection
        in_group = False
        try:
            try:
                if not con.in_transaction:
                    raise InterfaceError("the write's transaction was ended inside it (COMMIT/ROLLBACK "
                                         "through another path?); its work may be lost")
                info = tx._info
                assert info is not None
                version = int(scalar(con, "PRAGMA schema_version"))
                if tx.kind == "data" and version != info.version:
                    raise SchemaChangeInWrite(
                        "a write changed the schema (CREATE/ALTER/DROP...); a changeset cannot carry "
                        "DDL, so schema changes go through db.migrate(sql), which logs them in order; "
                        "rolled back"
                    )
                changeset = self._take_changeset(tx, info)
                # Done recording: the log entry below is not the session's business.
                self._close_session(tx)
                if tx.kind == "data" and not changeset and not tx._commit_empty:
                    # Empty write: nothing to record, so nothing to commit.
                    self._undo_part(group, tx)
                    return self._result(tx, changeset, None, None, committed=False)
                seq: int | None = None
                at: str | None = None
                if self.audit and (tx.kind == "ddl" or changeset):
                    seq, at = audit.append_entry(
                        con, owner=tx._owner, host=procinfo.host_name(), pid=os.getpid(),
                        label=tx.label, kind=tx.kind,
                        changeset=bytes(changeset) if tx.kind == "data" else None,
                        sql=tx.value if tx.kind == "ddl" else None, epoch=tx._epoch or 0,
                    )
                if tx._savepoint:
                    con.execute(f"RELEASE {_PART_SAVEPOINT}")
                    tx._savepoint = False
            except BaseException:
                self._undo_part(group, tx)
                raise
            group.epoch = tx._epoch
            if tx.kind == "data":
                group.fresh_info = info  # checked unchanged above: the next part needs no PRAGMA
            group.parts.append(tx)
            tx._part = (changeset, seq, at)
            in_group = True
        finally:
            self._end_part(group, tx, committed_part=in_group)
        return self._await_commit(group, tx)

    def _abort_write(self, tx: WriteTx) -> None:
        group = tx._group
        if group is None:
            return
        try:
            self._undo_part(group, tx)
        finally:
            self._end_part(group, tx, committed_part=False)

    def _end_part(self, group: _Group, tx: WriteTx, committed_part: bool) -> None:
        """Our turn is over: hand it to the next queued write, or, as the
        last part, commit the group (or end it when nothing is to commit)."""
        self._local.writing = False
        tx._con = None
        with self._gate:
            if group.turn is not tx:
                return  # never got a turn (failed while queued)
            if group.admitted and group.broken is None and group.queue:
                group.turn = group.queue.popleft()
                self._gate.notify_all()
                return
            group.accepting = False
            group.turn = None
            if self._group is group:
                self._group = None
            if group.queue:
                # Not admitted, or its transaction broke: the writes still
                # queued start over in a group of their own.
                group.failed = True
                group.queue.clear()
            self._gate.notify_all()
        self._commit_group(group)

    def _commit_group(self, group: _Group) -> None:
        """COMMIT the group's transaction (if any part is in it), release the
        lock and the connection, and publish the outcome to every part."""
        landed = False
        error: BaseException | None = None
        con = group.con
        try:
            if group.broken is not None:
                # SQLite abandoned the shared transaction under a failing part
                # (interrupt, disk full, I/O error): no part of it commits.
                if con is not None and group.in_txn:
                    rollback_quietly(con)
                group.in_txn = False
                error = group.broken
            elif group.parts and group.in_txn:
                assert con is not None
                try:
                    if group.epoch != group.stored_epoch:
                        assert group.epoch is not None and group.stored_epoch is not None
                        catch_up_epoch(con, group.stored_epoch, group.epoch)
                    self._lock.check()  # LockCompromised: roll back, commit nothing
                    con.execute("COMMIT")
                    landed = True
                except BaseException as e:
                    error = e
                    landed = not isinstance(e, LockCompromised) and self._commit_landed(group, con)
                    if not landed:
                        rollback_quietly(con)
                group.in_txn = False
            elif con is not None and group.in_txn:
                rollback_quietly(con)
                group.in_txn = False
                error = group.broken
        except BaseException as e:  # _commit_landed could not tell (CommitOutcomeUnknown)
            error = e
        finally:
            if landed and group.epoch is not None:
                self._lease_epoch = (group.owner, group.epoch)
            lost = group.lost or isinstance(error, LockCompromised)
            if group.locked:
                self._release_lock(failed=not landed, lost=lost)
            if con is not None and self._writer is None:
                con.close()  # network mode: close-to-open
            if group.mutex:
                self._write_mutex.release()
            with self._gate:
                group.landed, group.error, group.done = landed, error, True
                self._gate.notify_all()
            if landed:
                # Followers in this process wake now, not at their next poll.
                if self._commit_key is None:
                    self._commit_key = commits.file_key(self.path)
                commits.committed(self._commit_key)

    def _await_commit(self, group: _Group, tx: WriteTx) -> WriteResult:
        """Wait for the group's COMMIT; our result, or the COMMIT's error
        (carrying our result as ``.write`` when it landed anyway)."""
        with self._gate:
            while not group.done:
                # Not interruptible: our part is in the transaction and commits
                # with it or not at all; a Ctrl-C is raised once that is known.
                self._gate.wait(interrupts.CHECK_INTERVAL)
        assert tx._part is not None
        changeset, seq, at = tx._part
        result = self._result(tx, changeset, seq, at, committed=group.landed) if group.landed else None
        if result is not None:
            tx._section.result = result
        if group.error is None:
            if result is None:  # pragma: no cover - every path that commits nothing sets error
                raise InterfaceError("the write's transaction ended without a COMMIT; nothing was committed")
            return result
        error = copy.copy(group.error)  # one exception object per waiting thread
        if result is not None:
            error.write = result  # type: ignore[attr-defined]
        elif isinstance(error, LockCompromised) and "nothing was committed" not in str(error):
            error = LockCompromised(f"{error}; the write was rolled back, nothing was committed")
        raise error from group.error

    def _commit_landed(self, group: _Group, con: Connection) -> bool:
        """After COMMIT raised: did it commit anyway?

        SQLite reports some errors after the commit point (an I/O error
        deleting the journal over a network file system, say), and a caller
        that retried such a write would apply it twice.  So ask the database:
        a transaction still open means COMMIT did not happen (rolled back by
        the caller); otherwise the last part's log entry (its seq with this
        admission's owner and epoch) is there or not.  Without a log, the
        epoch tells, as long as our lock is intact (nobody else can have set
        that epoch).  Raises :class:`CommitOutcomeUnknown` when the database
        can't be read.
        """
        try:
            if con.in_transaction:
                return False
        except Exception:  # noqa: BLE001 - a closed or broken connection: ask a fresh one
            pass
        last_part = group.parts[-1]
        assert last_part._part is not None
        seq = last_part._part[1]
        last: BaseException | None = None
        for attempt in range(3):
            probe: Connection | None = None
            try:
                # Opening the probe can fail too (a network mount whose client
                # died): that is "cannot tell", never a plain error, which
                # would say the write did not commit.
                probe = con if attempt == 0 and not con.closed else self._connect(query_only=True)
                if seq is not None:
                    row = probe.execute(
                        f"SELECT count(*) FROM {audit.LOG_TABLE} WHERE seq = ? AND owner = ? AND epoch = ?",
                        (seq, group.owner, last_part._epoch or 0)).fetchone()
                    return bool(row and row[0])
                if read_epoch(probe) != last_part._epoch:
                    return False
                self._lock.check()
                return True
            except LockCompromised as e:
                last = e
                break
            except Exception as e:  # noqa: BLE001 - try again with a fresh connection
                last = e
            finally:
                if probe is not None and probe is not con:
                    probe.close()
        raise CommitOutcomeUnknown(
            f"COMMIT of a write to {self.path!r} reported an error and whether it committed cannot "
            f"be told ({last}); look for owner {group.owner} epoch {last_part._epoch} in the audit "
            "log or the epoch table before retrying it"
        ) from last

    def _take_changeset(self, tx: WriteTx, info: SchemaInfo) -> Changeset:
        session = tx._session
        if session is None:
            return Changeset(b"")
        changeset = session.changeset()
        if info.no_pk and not self.rowid_tables and changeset:
            touched = tuple(sorted({c.table for c in changeset} & info.no_pk))
            if touched:
                raise NoPrimaryKeyError(
                    f"the write changed table(s) without a PRIMARY KEY: {', '.join(touched)}. "
                    "SQLite's session module cannot identify their rows, so the audit log would "
                    "miss them; rolled back. Give them a primary key, or open with "
                    "rowid_tables=True to record them by rowid",
                    touched,
                )
        return changeset

    def _result(self, tx: WriteTx, changeset: Changeset, seq: int | None, at: str | None,
                committed: bool) -> WriteResult:
        now = time.monotonic()
        admitted = tx._admitted or now
        timing = WriteTiming(wait=admitted - tx._t0, held=now - admitted, total=now - tx._t0)
        return WriteResult(
            value=tx.value, changeset=changeset, seq=seq, label=tx.label, kind=tx.kind,
            epoch=tx._epoch if committed else None, owner=tx._owner, committed_at=at, timing=timing,
        )

    def _close_session(self, tx: WriteTx) -> None:
        session, tx._session = tx._session, None
        if session is not None:
            session.close()

    def _release_lock(self, failed: bool, lost: bool = False) -> None:
        if not self._lock.is_held or self._lock.is_lingering:
            return
        try:
            # Linger (keep a lease) only after a write that went through,
            # while this Database is open and the lock was not found lost: the
            # lease ends in close(), at process exit, or when someone waits.
            # A failed write releases at once, as documented.
            linger = 0.0 if self._closed or lost or failed else self.linger
            if linger and self.protocol == 2 and time.monotonic() - self._tenure[1] >= MAX_TENURE:
                # An OS-lock holder does not see who waits: bound how long a
                # run of leases keeps the others out.
                linger = 0.0
            self._lock.release(linger=linger)
        except LockCompromised as e:
            # check() passed just before COMMIT; a loss found now came after
            # it, and SQLite's own lock covered the COMMIT itself.  A failed
            # write's own exception already says what happened.
            log.warning("write lock of %s lost at the end of a write: %s", self.path, e)

