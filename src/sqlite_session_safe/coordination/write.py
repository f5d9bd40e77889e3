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
* **Threads**: writes are serialized on one write connection, and those
  that arrive together share one transaction and its COMMIT (group commit,
  :mod:`.group_commit`); reads run in parallel on one connection per thread.
"""

from __future__ import annotations

import copy
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from ..binding.connection import Transaction
from ..binding.cursor import Cursor
from ..binding.errors import InterfaceError
from ..binding.values import Parameters
from ..sessions.changeset import Changeset
from ..sessions.connection import Connection
from ..sessions.session import Session
from . import audit, procinfo, wire
from .db_base import SchemaInfo, scalar
from .db_errors import NoPrimaryKeyError, SchemaChangeInWrite
from .errors import LockCompromised
from .group_commit import GroupCommit, Part
from .interrupts import InterruptGuard
from .migration import refuse_transaction_control, run_script


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


def _rewound(f: IO[bytes]) -> IO[bytes]:
    f.seek(0)
    return f


class WriteState:
    """What the write path keeps for one write between its begin and its end
    (:class:`WriteTx` holds it and hands it to the path): its share of a
    group commit's transaction (its connection, owner, epoch, schema:
    group_commit.py), when the write asked to be admitted, its session, and
    the interrupt section a committed result is published on."""

    __slots__ = ("part", "t0", "session", "commit_empty", "section")

    def __init__(self, commit_empty: bool) -> None:
        self.part = Part()
        self.t0 = 0.0
        self.session: Session | None = None
        # Commit even when the changeset is empty (no log entry then): for
        # replication, whose cursor (an ``_sss_`` table, never recorded) must
        # move even when the replayed changes cancel out.
        self.commit_empty = commit_empty
        self.section = InterruptGuard()


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
                 commit_empty: bool = False, body: audit.StreamedBody | None = None) -> None:
        if label is not None and not isinstance(label, str):
            raise InterfaceError(f"label must be a str or None, not {type(label).__qualname__}")
        self._db = db
        self.label = label
        self.kind = kind
        #: The value reported as ``result.value`` (``db.write(fn)`` sets it to fn's return).
        self.value: Any = None
        #: The :class:`WriteResult`, once the block has committed.
        self.result: WriteResult | None = None
        # A data write that records no session: its log entry holds ``body``
        # instead, copied in without holding it in memory.  For replication's
        # streamed apply (replica_apply.py), whose caller vouches that the
        # body is exactly what the write changed; ``result.changeset`` is
        # then empty.
        self.body = body
        self._state = WriteState(commit_empty)
        # Ctrl-C handling for the admission (see __enter__ / interrupts.py).
        self._guard = self._state.section
        self._was_immediate = False
        self._mark = 0

    # -- what fn uses ---------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The write connection, for the package's own modules (replication,
        backups, undo, the CLI) that run SQL the write must not refuse (the
        statements of a migration, a replayed changeset).  Raises
        ``InterfaceError`` outside the write's block or fn."""
        con = self._state.part.con
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
        con = self._state.part.con
        if con is not None:
            con.interrupt()

    @property
    def epoch(self) -> int | None:
        """The fencing epoch this write will set."""
        return self._state.part.epoch

    @property
    def owner(self) -> str:
        """The lock ``owner_id`` this write was admitted under."""
        return self._state.part.owner

    # -- block form -----------------------------------------------------------

    def __enter__(self) -> WriteTx:
        state = self._state
        guard = self._guard = InterruptGuard()
        section = state.section = guard.__enter__()
        admitted = False
        try:
            self._db.sss_begin_write(self, state)
            admitted = True
            # A Ctrl-C that arrived during the admission: stop before fn runs.
            section.checkpoint()
        except BaseException as e:
            try:
                if admitted:
                    self._db.sss_abort_write(state)
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
        state = self._state
        section, guard = state.section, self._guard
        section.set_immediate(self._was_immediate)
        try:
            if exc_type is not None:
                self._db.sss_abort_write(state)
            elif section.delivered_since(self._mark):
                # Ctrl-C was raised inside the block, yet the block ended
                # normally: a callback swallowed it (CPython drops exceptions
                # raised in weakref callbacks and finalizers), or the caller
                # caught it.  Either way the user asked to stop: commit nothing.
                self._db.sss_abort_write(state)
                raise KeyboardInterrupt(
                    "Ctrl-C during the write did not propagate out of the write's code; "
                    "the write was rolled back, nothing was committed")
            else:
                self.result = self._db.sss_finish_write(self, state)
            # A Ctrl-C deferred meanwhile is raised here, carrying the
            # committed result as .write (interrupts.py).
            guard.__exit__(exc_type, exc, tb)
        except BaseException as e:
            guard.__exit__(type(e), e, e.__traceback__)
            raise
        finally:
            section.result = None


class WritePath(GroupCommit):
    """The writes of a :class:`~.database.Database`: what one write does
    inside its part of a shared transaction (:mod:`.group_commit`)."""

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


    # -- one write's part: its session, its changeset, its log entry --------------
    #
    # The group commit (group_commit.py) runs the shared transaction; each
    # write brings its own part to it: a session from the start of its turn,
    # then the schema check, the changeset and the log entry; it keeps the
    # part in the transaction (or rolls it back), ends its turn, and waits
    # for the COMMIT.

    # These sss_ methods are for WriteTx (the package's own layers), not the
    # reference (a Database is a WritePath).

    def sss_begin_write(self, tx: WriteTx, state: WriteState) -> None:
        """Admit the write ``tx`` (its part of a group) and start its session."""
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
        state.t0 = time.monotonic()
        deadline = None if self.timeout is None else state.t0 + self.timeout
        local.writing = True
        try:
            self.sss_enter_group(state.part, deadline)
        except BaseException:
            local.writing = False
            raise
        if tx.kind == "data" and tx.body is None:
            info = state.part.info
            assert info is not None
            try:
                state.session = Session(tx.connection, skip_reserved=True, rowid=bool(info.no_pk))
            except BaseException:
                self.sss_abort_write(state)
                raise

    def sss_finish_write(self, tx: WriteTx, state: WriteState) -> WriteResult:
        """Record ``tx``'s changeset and log entry, keep its part in the
        group's transaction and wait for the COMMIT: its result, or the
        COMMIT's error."""
        part = state.part
        group = part.group
        assert group is not None
        con = tx.connection
        try:
            try:
                if not con.in_transaction:
                    raise InterfaceError("the write's transaction was ended inside it (COMMIT/ROLLBACK "
                                         "through another path?); its work may be lost")
                info = part.info
                assert info is not None
                version = int(scalar(con, "PRAGMA schema_version"))
                if tx.kind == "data" and version != info.version:
                    raise SchemaChangeInWrite(
                        "a write changed the schema (CREATE/ALTER/DROP...); a changeset cannot carry "
                        "DDL, so schema changes go through db.migrate(sql), which logs them in order; "
                        "rolled back"
                    )
                seq: int | None = None
                at: str | None = None
                # In memory up to wire.LARGE_BODY, past that an unnamed
                # temporary file: a large changeset is never one piece of memory.
                with tempfile.SpooledTemporaryFile(max_size=wire.LARGE_BODY) as spool:
                    taken = self._take_changeset(state, info, spool)
                    # Done recording: the log entry below is not the session's business.
                    _close_session(state)
                    if isinstance(taken, audit.StreamedBody):
                        # Copied from the spool into the log row, then read
                        # back for the result now that the session's memory
                        # is freed: one copy of the changeset at a time.
                        seq, at = _append(tx, part, taken)
                        changeset = audit.read_changeset(con, seq)
                        self._refuse_no_pk(changeset, info)
                    else:
                        changeset = taken
                        if tx.kind == "data" and not changeset and tx.body is None and not state.commit_empty:
                            # Empty write: nothing to record, so nothing to commit.
                            self.sss_undo_part(part)
                            return _result(tx, state, changeset, None, None, committed=False)
                        body = tx.body if tx.body is not None else bytes(changeset) if changeset else None
                        if self.audit and (tx.kind == "ddl" or body is not None):
                            seq, at = _append(tx, part, body)
                # A data write checked the schema unchanged above: the next
                # part needs no PRAGMA.
                self.sss_keep_part(part, seq, schema_unchanged=tx.kind == "data")
            except BaseException:
                _close_session(state)
                self.sss_undo_part(part)
                raise
        finally:
            self._local.writing = False
            self.sss_end_turn(part)
        self.sss_await_group(group)
        # The group's outcome: our result, or the COMMIT's error (carrying our
        # result as ``.write`` when it landed anyway).
        result = _result(tx, state, changeset, seq, at, committed=True) if group.landed else None
        if result is not None:
            state.section.result = result
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

    def sss_abort_write(self, state: WriteState) -> None:
        """Roll the write's part back and end its turn (nothing if it was
        never admitted)."""
        part = state.part
        if part.group is None:
            return
        try:
            _close_session(state)
            self.sss_undo_part(part)
        finally:
            self._local.writing = False
            self.sss_end_turn(part)

    def _take_changeset(self, state: WriteState, info: SchemaInfo,
                        spool: tempfile.SpooledTemporaryFile[bytes]) -> Changeset | audit.StreamedBody:
        """The write's changeset, in memory; or, when it is to be logged and
        is larger than ``wire.LARGE_BODY``, in ``spool``'s temporary file,
        as the body to copy into the log row (never one piece of memory).

        It is not streamed straight into the log row: SQLite generates a
        changeset inside a savepoint, which it cannot open while a blob is
        open for writing on the connection, and reopening the blob for each
        piece walks the row's overflow pages from its start every time
        (quadratic in the entry's size).  Nor is its size asked first:
        SQLite's running size estimate (``track_size``) costs 5-15 % more
        per changed row, the spool one copy of a small changeset."""
        session = state.session
        if session is None:
            return Changeset(b"")
        if not self.audit:
            changeset = session.changeset()
        else:
            session.changeset_stream(spool)  # type: ignore[arg-type]  # write() is all it needs
            size = spool.tell()
            if size > wire.LARGE_BODY:  # rolled over to its file
                return audit.StreamedBody(size, functools.partial(_rewound, spool))
            spool.seek(0)
            changeset = Changeset(spool.read())
        self._refuse_no_pk(changeset, info)
        return changeset

    def _refuse_no_pk(self, changeset: Changeset, info: SchemaInfo) -> None:
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


def _append(tx: WriteTx, part: Part, body: bytes | audit.StreamedBody | None) -> tuple[int, str]:
    """Append the write's log entry (``body``: its changeset, for data)."""
    return audit.append_entry(
        tx.connection, owner=part.owner, host=procinfo.host_name(), pid=os.getpid(),
        label=tx.label, kind=tx.kind, changeset=body if tx.kind == "data" else None,
        sql=tx.value if tx.kind == "ddl" else None, epoch=part.epoch or 0,
    )


def _result(tx: WriteTx, state: WriteState, changeset: Changeset, seq: int | None, at: str | None,
            committed: bool) -> WriteResult:
    part = state.part
    now = time.monotonic()
    admitted = part.admitted or now
    timing = WriteTiming(wait=admitted - state.t0, held=now - admitted, total=now - state.t0)
    return WriteResult(
        value=tx.value, changeset=changeset, seq=seq, label=tx.label, kind=tx.kind,
        epoch=part.epoch if committed else None, owner=part.owner, committed_at=at, timing=timing,
    )


def _close_session(state: WriteState) -> None:
    session, state.session = state.session, None
    if session is not None:
        session.close()
