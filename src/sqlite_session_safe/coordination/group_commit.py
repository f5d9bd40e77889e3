"""Group commit: the writes of one Database's threads share write transactions.

A write that arrives while another one's transaction is open joins it and
runs, in its turn and on its own thread, in a savepoint of that transaction
(with its own session, epoch step and log entry); the last part to finish
commits for all of them, and each write returns once that COMMIT has landed.
One COMMIT (one set of fsyncs) for many writes.  A write that raises rolls
back only its own part.  Order: parts run, get their seqs and commit in
arrival order; a write returns committed only after the COMMIT that made it
durable.  A lone write is a group of one, without a savepoint.

This module holds the shared transaction: admission (the process mutex, the
outer lock, the write connection, the epoch to fence from), ``BEGIN
IMMEDIATE``, each part's savepoint and epoch step, the lock check and
``COMMIT``, the lease kept afterwards, and the outcome every part waits for.
What one write does inside its part (its session, the schema check, its
changeset and log entry, its result) is :mod:`.write`'s.  The two meet in a
:class:`Part`: the write path calls, in order, ``sss_enter_group`` (its
turn, admitted, its part begun), ``sss_keep_part`` or ``sss_undo_part``,
``sss_end_turn``, and, for a kept part, ``sss_await_group`` (``sss_`` names:
the write path's interface, left out of the reference, since a Database is
a GroupCommit).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

from ..binding.errors import BusyError, InterfaceError
from ..sessions.connection import Connection
from . import audit, commits, interrupts
from .db_base import DatabaseBase, SchemaInfo, rollback_quietly
from .db_errors import CommitOutcomeUnknown, GroupRolledBack
from .errors import EpochMismatch, LockCompromised, LockTimeout
from .fencing import (
    admission_epoch,
    advance_epoch,
    catch_up_epoch,
    ensure_epoch_table,
    read_epoch,
)

log = logging.getLogger("sqlite_session_safe.database")

#: In trusted and wal modes a run of leases (``linger``) keeps the lock for at
#: most this long (seconds) before handing it over: the OS lock does not tell
#: its holder that someone waits, so this bounds their wait.
MAX_TENURE = 0.05

#: A group commit takes at most this many writes (parts) into one transaction;
#: later arrivals wait for the next one.
MAX_GROUP = 256
#: The savepoint each part after the first runs in.
PART_SAVEPOINT = "_sss_write_part"


@dataclass(eq=False, slots=True)
class Part:
    """One write's share of a group's transaction: what the write path
    (:mod:`.write`) and the group commit both read.  The group commit sets
    the fields while the write's turn begins and ends; the write reads them
    during its turn, on its own thread."""

    #: The group it queued in (set once its turn has come).
    group: Group | None = None
    #: The write connection, during its turn only.
    con: Connection | None = None
    #: The lock ``owner_id`` it was admitted under.
    owner: str = ""
    #: The fencing epoch its log entry carries (the one it sets).
    epoch: int | None = None
    #: The schema as its part began.
    info: SchemaInfo | None = None
    #: Monotonic time its turn began (0: not admitted).
    admitted: float = 0.0
    #: Its part runs in :data:`PART_SAVEPOINT` (not the transaction's first).
    savepoint: bool = False
    #: Its log entry's seq, once kept in the transaction (None: no entry).
    seq: int | None = None


class Group:
    """One write transaction shared by the writes of a Database's threads.

    Changed only under ``Database._gate``, except by the thread whose turn
    it is (``turn``), which alone uses the connection."""

    __slots__ = ("leader", "queue", "turn", "accepting", "failed", "mutex", "locked", "lost",
                 "admitted", "owner", "con", "epoch", "stored_epoch", "in_txn", "fresh_info", "parts",
                 "broken",
                 "done", "landed", "error")

    def __init__(self, leader: Part) -> None:
        self.leader = leader
        self.queue: collections.deque[Part] = collections.deque()
        self.turn: Part | None = None
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
        #: Parts in the transaction, waiting for its COMMIT.
        self.parts: list[Part] = []
        #: Set when SQLite rolled the shared transaction back under a part.
        self.broken: BaseException | None = None
        #: The outcome, published to every part once ``done``: whether the
        #: COMMIT landed, and the error that ended the group (if any).
        self.done = self.landed = False
        self.error: BaseException | None = None


class GroupCommit(DatabaseBase):
    """The shared write transactions of a :class:`~.database.Database`; the
    write path (:class:`~.write.WritePath`) builds on it."""

    #: The open group commit (changed under ``_gate``).
    _group: Group | None = None

    def sss_enter_group(self, part: Part, deadline: float | None) -> Group:
        """Queue for a turn in the open group (or open one), then, on our
        turn, the admission (if the group has none yet) and our part of the
        transaction.  Raises with nothing left behind."""
        while True:
            self._check_usable()
            group = self._join_group(part, deadline)
            if group.leader is part or not group.failed:
                break
            # The group we queued in ended before our turn: start over.
        part.group = group
        try:
            if not group.admitted:
                self._admit_group(group, deadline)
            self._begin_part(group, part)
        except BaseException:
            self.sss_end_turn(part)
            raise
        return group

    def _join_group(self, part: Part, deadline: float | None) -> Group:
        """Queue in the open group (and wait for our turn), or open a new one
        with us as its leader."""
        with self._gate:
            group = self._group
            if group is None or not group.accepting or len(group.queue) >= MAX_GROUP:
                group = self._group = Group(leader=part)
                group.turn = part
                return group
            group.queue.append(part)
            try:
                while group.turn is not part and not group.failed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LockTimeout(
                            f"timed out waiting for {self.lock_path!r}: other writes of this "
                            "process are ahead of this one")
                    self._gate.wait(interrupts.CHECK_INTERVAL if remaining is None
                                    else min(remaining, interrupts.CHECK_INTERVAL))
                    interrupts.checkpoint()
            except BaseException:
                if part in group.queue:
                    group.queue.remove(part)
                raise
            return group

    def _admit_group(self, group: Group, deadline: float | None) -> None:
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

    def _open_group_transaction(self, group: Group) -> None:
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

    def _begin_part(self, group: Group, part: Part) -> None:
        """Our turn: our part of the group's transaction starts (a savepoint
        when earlier parts are in it), fenced by its own epoch step."""
        part.admitted = time.monotonic()
        part.owner = group.owner
        if not group.in_txn:
            self._open_group_transaction(group)
        con = group.con
        assert con is not None and group.epoch is not None
        part.con = con
        try:
            if group.parts:
                con.execute(f"SAVEPOINT {PART_SAVEPOINT}")
                part.savepoint = True
                # The transaction's first part compare-and-set the epoch; a
                # later part takes the next one for its entry, and the row
                # catches up once before COMMIT (_commit_group).
                part.epoch = group.epoch + 1
            else:
                part.epoch = group.stored_epoch = self._advance_epoch(con, group.epoch)
            part.info = group.fresh_info or self._schema(con)
            group.fresh_info = None
        except BaseException:
            self.sss_undo_part(part)
            raise

    def sss_undo_part(self, part: Part) -> None:
        """Roll our part back: our savepoint, or the whole transaction when
        we are its only part so far."""
        con, group = part.con, part.group
        if con is None or group is None:
            return
        if part.savepoint:
            part.savepoint = False
            try:
                con.execute(f"ROLLBACK TO {PART_SAVEPOINT}")
                con.execute(f"RELEASE {PART_SAVEPOINT}")
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

    def sss_keep_part(self, part: Part, seq: int | None, schema_unchanged: bool) -> None:
        """Our part is done and stays in the transaction, to commit with it;
        ``seq`` is its log entry.  ``schema_unchanged``: ``part.info`` still
        holds, so the next part needs no PRAGMA."""
        group, con = part.group, part.con
        assert group is not None and con is not None
        if part.savepoint:
            con.execute(f"RELEASE {PART_SAVEPOINT}")
            part.savepoint = False
        group.epoch = part.epoch
        if schema_unchanged:
            group.fresh_info = part.info
        part.seq = seq
        group.parts.append(part)

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

    def sss_end_turn(self, part: Part) -> None:
        """Our turn is over: hand it to the next queued write, or, as the
        last part, commit the group (or end it when nothing is to commit)."""
        part.con = None
        group = part.group
        if group is None:
            return  # never got a turn
        with self._gate:
            if group.turn is not part:
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

    def _commit_group(self, group: Group) -> None:
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
            try:
                if landed and group.epoch is not None:
                    self._lease_epoch = (group.owner, group.epoch)
                lost = group.lost or isinstance(error, LockCompromised)
                if group.locked:
                    self._release_lock(failed=not landed, lost=lost)
                if con is not None and self._writer is None:
                    con.close()  # network mode: close-to-open
            finally:
                # Whatever failed above, the mutex and the outcome are released
                # (else the next write waits out its timeout and close() hangs).
                self._finish_group(group, landed, error)

    def _finish_group(self, group: Group, landed: bool, error: BaseException | None) -> None:
        """Release the process's write mutex and publish the outcome."""
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

    def sss_await_group(self, group: Group) -> None:
        """Wait until the group has ended (``group.landed``, ``group.error``)."""
        with self._gate:
            while not group.done:
                # Not interruptible: our part is in the transaction and commits
                # with it or not at all; a Ctrl-C is raised once that is known.
                self._gate.wait(interrupts.CHECK_INTERVAL)

    def _commit_landed(self, group: Group, con: Connection) -> bool:
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
        seq = last_part.seq
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
                        (seq, group.owner, last_part.epoch or 0)).fetchone()
                    return bool(row and row[0])
                if read_epoch(probe) != last_part.epoch:
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
            f"be told ({last}); look for owner {group.owner} epoch {last_part.epoch} in the audit "
            "log or the epoch table before retrying it"
        ) from last

    def _release_lock(self, failed: bool, lost: bool = False) -> None:
        # needs_release, not is_held: a lock found lost (is_held False) must
        # still be released, which only resets this object (nothing at the
        # lock path is touched), or every later write of this Database fails
        # with "already held by this thread" (seen in the chaos test: a
        # replica whose lock was judged stale while its process starved).
        if not self._lock.needs_release:
            return
        # Linger (keep a lease) only after a write that went through, while
        # this Database is open and the lock was not found lost: the lease
        # ends in close(), at process exit, or when someone waits.  A failed
        # write releases at once, as documented.
        linger = 0.0 if self._closed or lost or failed else self.linger
        if linger and self.protocol == 2 and time.monotonic() - self._tenure[1] >= MAX_TENURE:
            # An OS-lock holder does not see who waits: bound how long a run
            # of leases keeps the others out.
            linger = 0.0
        # A loss found now came after check() passed before COMMIT; a failed
        # write's own exception already says what happened.
        self._give_up_lock(linger, "a write")
