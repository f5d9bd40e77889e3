"""Replication: a replica follows a source's audit log, exactly once.

``sss.replicate(source, replica)`` reads the source's log entries after the
replica's cursor in a snapshot (no write lock on the source) and applies them
to the replica; the cursor ``(source database_id, seq)`` lives in the
replica's ``_sss_replica`` table and is updated **in the same transaction**
as the changes it covers, so a crash at any point leaves entries either
applied with their cursor or neither: every entry is applied exactly once,
and a restart resumes after the last committed one (PROTOCOL.md §6).

On the replica each step is an admitted write (its outer lock, its fencing
epoch), so a replica may also take local writes and may be written by
several replicators at once; conflicts with local writes follow the policy.
Consecutive data entries are applied ``batch`` at a time in one transaction
and logged in the replica's own audit log as one entry labelled
``replicate <source_id> <first>..<last>``; a DDL entry is run on its own, as
a migration entry of the replica.  So a replica keeps a log of its own
(replicas can be chained), whose seqs are its own, not the source's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..binding.connection import Connection
from ..binding.errors import BusyError, InterfaceError, LockedError
from ..sessions.apply import OnConflict
from ..sessions.changeset import Changeset
from ..sessions.errors import ConflictAbort, SchemaMismatch
from ..sessions.group import ChangeGroup
from . import audit, commits
from .audit import LogEntry
from .conflicts import ConflictRecorder
from .database import Database, open_database
from .db_base import rollback_quietly
from .errors import LockTimeout
from .log_errors import ConflictRow, LogPruned, ReplicationConflict, ReplicationError, rows_text
from .write import WriteTx

__all__ = [
    "CURSOR_TABLE",
    "ReplicationReport",
    "replicate",
    "follow",
    "apply_entries",
    "read_cursor",
    "open_replica",
]

log = logging.getLogger("sqlite_session_safe.replication")

#: The replica's cursor table (reserved prefix: never recorded, never replicated).
CURSOR_TABLE = "_sss_replica"
_CREATE_CURSOR = f"""CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} (
    source_id  TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    updated_at TEXT NOT NULL
)"""
_SET_CURSOR = (
    f"INSERT INTO {CURSOR_TABLE} (source_id, seq, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
)


@dataclasses.dataclass(frozen=True)
class ReplicationReport:
    """What a replication (or a bundle import) did.

    Attributes:
        source_id: the source's ``database_id``.
        applied: source entries applied by this call.
        last_seq: the replica's cursor afterwards (the last source seq applied,
            by this call or before it).
        lag: entries the source had beyond ``last_seq`` at its last look
            (0: up to date; for a bundle, entries of the bundle not applied).
        changes: row changes applied (REPLACEd ones included).
        omitted: row changes skipped because the policy said OMIT.
        conflicts: the conflicting rows the policy resolved (OMIT/REPLACE).
        transactions: replica transactions committed.
        skipped: entries that were already applied (bundle overlap, or
            another replicator was faster).
    """

    source_id: str
    applied: int
    last_seq: int
    lag: int
    changes: int = 0
    omitted: int = 0
    conflicts: tuple[ConflictRow, ...] = ()
    transactions: int = 0
    skipped: int = 0

    def __add__(self, other: ReplicationReport) -> ReplicationReport:
        """The sum of two consecutive reports (``last_seq`` and ``lag`` from the later)."""
        return ReplicationReport(
            other.source_id, self.applied + other.applied, other.last_seq, other.lag,
            self.changes + other.changes, self.omitted + other.omitted,
            self.conflicts + other.conflicts, self.transactions + other.transactions,
            self.skipped + other.skipped,
        )


class _Tally:
    """Counts accumulated over the transactions of one call."""

    def __init__(self) -> None:
        self.applied = self.changes = self.omitted = self.transactions = self.skipped = 0
        self.conflicts: list[ConflictRow] = []

    def report(self, source_id: str, last_seq: int, lag: int) -> ReplicationReport:
        return ReplicationReport(source_id, self.applied, last_seq, max(0, lag), self.changes,
                                 self.omitted, tuple(self.conflicts), self.transactions,
                                 self.skipped)


class _NothingToDo(Exception):
    """Raised inside a replica write to roll it back: its entries were
    already applied (by another replicator, or an overlapping bundle)."""

    def __init__(self, cursor: int) -> None:
        super().__init__(cursor)
        self.cursor = cursor


# -- the cursor ------------------------------------------------------------------


def _has_table(con: Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                       (name,)).fetchone() is not None


def _cursor_row(con: Connection, source_id: str) -> int | None:
    """The cursor row's seq, or None (no row, or no cursor table)."""
    if not _has_table(con, CURSOR_TABLE):
        return None
    row = con.execute(f"SELECT seq FROM {CURSOR_TABLE} WHERE source_id = ?", (source_id,)).fetchone()
    return None if row is None else int(row[0])


def _is_copy(con: Connection, source_id: str) -> bool:
    """A copy of the source not yet replicating: its own id is the source's
    and it has no cursor row for it."""
    return audit.database_id(con) == source_id and _cursor_row(con, source_id) is None


def read_cursor(con: Connection, source_id: str) -> int:
    """The last seq of ``source_id`` applied to the database ``con`` is on.

    Without a cursor row: a database whose own ``database_id`` is
    ``source_id`` is a copy of the source (a backup), positioned at its own
    log position; any other starts at 0.
    """
    seq = _cursor_row(con, source_id)
    if seq is not None:
        return seq
    if audit.database_id(con) == source_id:
        return audit.log_position(con)
    return 0


def _set_cursor(con: Connection, source_id: str, seq: int) -> None:
    """Move the cursor (inside the replica's write).  A copy of the source
    that applies its first entry gets a new ``database_id``: from here on its
    log diverges from the source's, so it must not pass for the source."""
    if _is_copy(con, source_id):
        con.execute(f"UPDATE {audit.META_TABLE} SET value = ? WHERE key = 'database_id'",
                    (os.urandom(16).hex(),))
    con.execute(_SET_CURSOR, (source_id, seq, audit.utc_now()))


def _ensure_cursor(db: Database, source_id: str) -> None:
    """Make sure ``db`` has its cursor table and, for a copy of the source
    (its own ``database_id`` is ``source_id``), a cursor row at its own log
    position, before the first replicated write appends to its log.

    A missing table is created by an admitted migration write whose log entry
    holds only the ``CREATE TABLE`` (the package's tables are created, never
    filled, by replay: cursor rows are never recorded).  A data write could not
    do it (a schema change there is refused).  A copy gets a new
    ``database_id`` in the same transaction: its log diverges from the
    source's from here on, so it must not pass for the source."""
    with db.read() as r:
        has_table = _has_table(r.connection, CURSOR_TABLE)
        if has_table and not _is_copy(r.connection, source_id):
            return
    # commit_empty: as kind "data", commit the cursor row and log nothing.
    tx = WriteTx(db, "replica cursor table" if not has_table else f"replica of {source_id}",
                 kind="ddl" if not has_table else "data", commit_empty=True)
    try:
        with tx:
            con = tx.connection
            copy = _is_copy(con, source_id)
            if _has_table(con, CURSOR_TABLE) and not copy:
                raise _NothingToDo(0)  # another replicator was first: log nothing
            start = read_cursor(con, source_id)  # before the table exists: a copy's own position
            con.execute(_CREATE_CURSOR)
            if copy:
                _set_cursor(con, source_id, start)
            tx.value = _CREATE_CURSOR  # the migration entry's SQL (kind "ddl")
    except _NothingToDo:
        pass


# -- applying entries -------------------------------------------------------------


def _groups(entries: Iterable[LogEntry], batch: int) -> Iterator[list[LogEntry]]:
    """Consecutive data entries, at most ``batch`` per group; a DDL entry alone."""
    group: list[LogEntry] = []
    for e in entries:
        if e.kind == "ddl" or len(group) >= batch:
            if group:
                yield group
            group = []
        if e.kind == "ddl":
            yield [e]
        else:
            group.append(e)
    if group:
        yield group


def _apply_one(con: Connection, e: LogEntry, source_id: str, recorder: ConflictRecorder,
               tally: _Tally) -> None:
    try:
        report = e.apply_to(con, recorder)
    except ConflictAbort as x:
        rows = recorder.take()
        raise ReplicationConflict(
            f"replicating entry {e.seq} of source {source_id}: {x.conflict} resolved with ABORT "
            f"({rows_text(rows)}); rolled back, the replica and its cursor are unchanged",
            x.conflict, source_id, e.seq, rows) from x
    except SchemaMismatch as x:
        raise ReplicationError(f"replicating entry {e.seq} of source {source_id}: {x}",
                               source_id, e.seq) from x
    rows = recorder.take()
    if recorder.refuse and rows:
        raise ReplicationConflict(
            f"replicating entry {e.seq} of source {source_id}: {len(rows)} conflicting row(s) "
            f"with the replica's own changes: {rows_text(rows)}; nothing applied, the replica and "
            "its cursor are unchanged (pass on_conflict=sss.OMIT, a per-type dict, or a callable "
            "to resolve them)", None, source_id, e.seq, rows)
    tally.conflicts.extend(rows)
    if report is not None:
        tally.changes += report.total_applied
        tally.omitted += report.total_omitted


class _Conflicted(Exception):
    """Rolls back the savepoint of a merged apply that met a conflict."""


def _apply_merged(con: Connection, entries: list[LogEntry], recorder: ConflictRecorder,
                  tally: _Tally) -> bool:
    """Apply the group's changesets combined into one (one SQLite apply
    instead of one per entry: the per-call cost dominates small entries).
    Returns False, with nothing applied, if any conflict arose: the caller
    then applies entry by entry, so that the policy sees each source change
    and an error can name its entry."""
    group = ChangeGroup()
    try:
        for e in entries:
            assert e.changeset is not None
            group.add(e.changeset)
        merged = Changeset(group.output())
    finally:
        group.close()
    step = dataclasses.replace(entries[-1], changeset=merged)
    try:
        with con.transaction():  # a savepoint inside the replica's write
            try:
                report = step.apply_to(con, recorder)
            except (ConflictAbort, SchemaMismatch) as x:
                raise _Conflicted from x  # retried entry by entry, which names the entry
            if recorder.take():
                raise _Conflicted
    except _Conflicted:
        recorder.take()
        return False
    if report is not None:
        tally.changes += report.total_applied
    return True


def _apply_group(db: Database, source_id: str, group: list[LogEntry],
                 recorder: ConflictRecorder, tally: _Tally) -> int:
    """Apply one group in one admitted write of ``db``; returns the cursor
    afterwards.  The cursor is read again under the write lock, so entries
    another replicator applied meanwhile are skipped, never applied twice."""
    kind = group[0].kind
    # commit_empty: the cursor must commit even when the changes cancel out on
    # the replica (an insert and its delete, all omitted by the policy).
    tx = WriteTx(db, f"replicate {source_id} {group[0].seq}..{group[-1].seq}", kind=kind,
                 commit_empty=True)
    try:
        with tx:
            con = tx.connection
            start = read_cursor(con, source_id)
            todo = [e for e in group if e.seq > start]
            if not todo:
                raise _NothingToDo(start)
            if todo[0].seq != start + 1:
                raise ReplicationError(
                    f"entries of source {source_id} start at seq {todo[0].seq}, but the replica's "
                    f"cursor is at {start}: entries {start + 1}..{todo[0].seq - 1} are missing (a "
                    "gap); apply them first (replicate from the source, or an older bundle)",
                    source_id, start + 1)
            if kind == "ddl":
                tx.label = f"replicate {source_id} {todo[0].seq}..{todo[0].seq}"
                todo[0].apply_to(con)
                tx.value = todo[0].sql  # the replica's own log entry holds the same script
            else:
                tx.label = f"replicate {source_id} {todo[0].seq}..{todo[-1].seq}"
                if len(todo) == 1 or not _apply_merged(con, todo, recorder, tally):
                    for e in todo:
                        _apply_one(con, e, source_id, recorder, tally)
            _set_cursor(con, source_id, todo[-1].seq)
    except _NothingToDo as skip:
        tally.skipped += len(group)
        return skip.cursor
    tally.applied += len(todo)
    tally.skipped += len(group) - len(todo)
    tally.transactions += 1
    return todo[-1].seq


def apply_entries(db: Database, source_id: str, entries: Iterable[LogEntry], *,
                  on_conflict: OnConflict | ConflictRecorder = None, batch: int = 256,
                  lag_base: int | None = None) -> ReplicationReport:
    """Apply source log entries (in seq order) to the replica ``db``, exactly
    once: entries at or below the replica's cursor are skipped; an entry
    after cursor + 1 is a gap (:class:`ReplicationError`).  ``entries`` is
    consumed as it goes (one group of ``batch`` entries in memory at a time).
    What bundles, streams and :func:`replicate` share."""
    recorder = on_conflict if isinstance(on_conflict, ConflictRecorder) else ConflictRecorder(on_conflict)
    batch = _check_batch(batch)
    tally = _Tally()
    with db.read() as r:
        cursor = read_cursor(r.connection, source_id)
    last = cursor
    ensured = False
    for group in _groups(entries, batch):
        last = group[-1].seq
        if last <= cursor:
            tally.skipped += len(group)
            continue
        if not ensured:
            _ensure_cursor(db, source_id)
            ensured = True
        cursor = _apply_group(db, source_id, group, recorder, tally)
    return tally.report(source_id, cursor, (lag_base if lag_base is not None else last) - cursor)


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InterfaceError(f"batch must be an int >= 1, not {batch!r}")
    return batch


# -- source and replica -----------------------------------------------------------


class _Source:
    """Snapshot reads of the source: a Database's ``read()``, or for a path
    a plain query-only connection (never the write lock; the file's journal
    mode is left as it is)."""

    def __init__(self, source: Database | str | os.PathLike[str]) -> None:
        self.db: Database | None = None
        self.con: Connection | None = None
        if isinstance(source, Database):
            self.db = source
            self.path = source.path
        elif isinstance(source, (str, os.PathLike)):
            path = os.path.realpath(os.fspath(source))
            if not os.path.isfile(path):
                raise ReplicationError(f"source database {path!r} does not exist")
            self.path = path
            self.con = Connection(path, timeout=60.0)
            self.con.execute("PRAGMA query_only = ON")
        else:
            raise InterfaceError(f"source must be a Database or a path, not {type(source).__qualname__}")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        if self.db is not None:
            with self.db.read() as r:
                yield r.connection
            return
        con = self.con
        assert con is not None
        con.execute("BEGIN DEFERRED")
        try:
            yield con
        finally:
            rollback_quietly(con)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


def _journal_mode(path: str) -> str:
    con = Connection(path, timeout=60.0)
    try:
        row = con.execute("PRAGMA journal_mode").fetchone()
        return str(row[0]).lower() if row else "delete"
    finally:
        con.close()


def open_replica(replica: Database | str | os.PathLike[str]) -> tuple[Database, bool]:
    """The replica as a Database, and whether it was opened here (and must be
    closed by the caller).  A path is opened with ``sss.open`` in mode
    ``"wal"`` if the file already is in WAL mode, else ``"trusted"``; for
    ``"network"`` pass a Database opened that way."""
    if isinstance(replica, Database):
        return replica, False
    if not isinstance(replica, (str, os.PathLike)):
        raise InterfaceError(f"replica must be a Database or a path, not {type(replica).__qualname__}")
    path = os.fspath(replica)
    wal = os.path.isfile(path) and _journal_mode(path) == "wal"
    return open_database(path, "wal" if wal else "trusted"), True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class _Replication:
    """One source and one replica, opened once (for follow's many rounds)."""

    def __init__(self, source: Database | str | os.PathLike[str],
                 replica: Database | str | os.PathLike[str], on_conflict: OnConflict, batch: int) -> None:
        self.batch = _check_batch(batch)
        self.recorder = ConflictRecorder(on_conflict)  # policy errors before anything opens
        self.src = _Source(source)
        try:
            self.db, self.owned = open_replica(replica)
        except BaseException:
            self.src.close()
            raise
        self.source_id: str | None = None
        self.registered = False
        if _same_file(self.src.path, self.db.path):
            self.close()
            raise ReplicationError(f"source and replica are the same database ({self.db.path!r})")

    def close(self) -> None:
        try:
            self.src.close()
        finally:
            if self.owned:
                self.db.close()

    def _look(self, cursor: int, limit: int, check: bool = True) -> tuple[str, int, list[LogEntry]]:
        """One snapshot of the source: its id, position, entries after
        ``cursor`` (``check``: LogPruned if they were pruned)."""
        with self.src.snapshot() as con:
            sid = audit.database_id(con)
            if sid is None:
                raise ReplicationError(f"source {self.src.path!r} keeps no audit log: nothing to "
                                       "replicate (open it with sss.open and write through it)")
            if self.source_id is not None and sid != self.source_id:
                raise ReplicationError(
                    f"source {self.src.path!r} changed identity (database_id {self.source_id} -> "
                    f"{sid}): it was replaced by another database", sid)
            position = audit.log_position(con)
            if check and cursor < position:
                from .retention import pruned_through

                pruned = pruned_through(con)
                if cursor < pruned:
                    raise LogPruned(
                        f"the replica's cursor for source {sid} is at seq {cursor}, but the source's "
                        f"log was pruned through {pruned}: entries {cursor + 1}..{pruned} are gone. "
                        "Re-seed the replica from a backup of the source (db.backup(path): a copy "
                        "starts at its own log position) and replicate from there", sid, cursor + 1,
                        pruned)
            entries = audit.read_entries(con, cursor, limit) if limit and position > cursor else []
        self.source_id = sid
        return sid, position, entries

    def run(self) -> ReplicationReport:
        """Apply what the source had at the first look; later entries are
        left for the next call (so a call always ends)."""
        sid, target, _ = self._look(0, 0, check=False)
        with self.db.read() as r:
            cursor = read_cursor(r.connection, sid)
        if not self.registered:
            from .retention import register_replica

            register_replica(self.src, "file", self.db.path, sid)
            self.registered = True
        self._look(cursor, 0)  # a cursor below the source's prune point: LogPruned
        if cursor > target:
            raise ReplicationError(
                f"the replica's cursor for source {sid} is at seq {cursor}, but the source's log "
                f"ends at {target}: the source was restored from an older copy, or the replica "
                "followed another database with the same id", sid, cursor)
        tally = _Tally()
        position = target
        if cursor < target:
            _ensure_cursor(self.db, sid)
        while cursor < target:
            _, position, entries = self._look(cursor, min(self.batch, target - cursor))
            if not entries or entries[0].seq != cursor + 1:
                raise ReplicationError(
                    f"source {sid}'s log has no entry {cursor + 1} (its log holds "
                    f"{entries[0].seq if entries else 'nothing'} after {cursor}): the log was "
                    "altered", sid, cursor + 1)
            for group in _groups(entries, self.batch):
                cursor = _apply_group(self.db, sid, group, self.recorder, tally)
        return tally.report(sid, cursor, position - cursor)


#: A database, or a path to one, or (for replicate/follow) a NATS stream URL.
Endpoint = Database | str | os.PathLike[str]


def _stream_side(source: Endpoint, replica: Endpoint) -> str | None:
    """Which side is a NATS stream URL: "source", "replica" or None."""
    from .jetstream import is_stream_url

    if is_stream_url(source) and is_stream_url(replica):
        raise InterfaceError("source and replica cannot both be streams (a stream is copied by "
                             "NATS itself: use a stream mirror)")
    if is_stream_url(source):
        return "source"
    if is_stream_url(replica):
        return "replica"
    return None


def replicate(source: Endpoint, replica: Endpoint, *, on_conflict: OnConflict = None, batch: int = 256,
              nats_options: Mapping[str, Any] | None = None, nats_context: str | None = None,
              stream_config: Mapping[str, Any] | None = None) -> ReplicationReport:
    """Bring ``replica`` up to date with ``source``'s audit log, exactly once.

    Applies the source entries after the replica's cursor, as the source
    had them when the call began (entries written meanwhile are left for the
    next call), ``batch`` data entries per replica transaction; each
    transaction also moves the cursor, so a crash anywhere loses or repeats
    nothing.  The source is read in snapshots, never under its write lock.

    Either side may be a NATS JetStream stream, ``nats://host:4222/STREAM``
    (PROTOCOL.md §9): to a stream, the source's entries after the stream's
    last one are published, exactly once (the stream is created if missing);
    from a stream, its entries are applied through the replica's cursor as
    from a source database (same conflict policies, DDL, chaining), and the
    replica acknowledges its cursor on the stream (:func:`wait_replicated`).

    Args:
        source, replica: a :class:`Database`, a path (the source must exist
            and keep an audit log; a replica path is opened with ``sss.open``),
            or a stream URL (see :class:`~.jetstream.StreamTarget` for its
            query parameters: ``context``, ``creds``, ``ca``, ...).
        on_conflict: how to resolve rows the replica changed itself, as in
            :meth:`Changeset.apply`.  Default: refuse with
            :class:`ReplicationConflict` naming the entry and every
            conflicting row; the replica is unchanged.
        batch: data entries per replica transaction (>= 1).  A batch is
            applied as one combined changeset (one SQLite apply: much faster
            for small entries); any conflict rolls that back and applies the
            entries one by one.  So changes that cancel out within a batch
            (a row inserted then deleted) are not checked against the
            replica's rows; ``batch=1`` checks every change.

    Raises:
        ReplicationConflict: see ``on_conflict``.
        ReplicationError: no audit log in the source, the replica's cursor is
            ahead of the source, source and replica are one file, a source
            entry does not fit the replica's schema.
        LogPruned: entries the replica needs were pruned from the source's
            log (or are no longer in the stream): re-seed it from a backup.
        StreamError: the stream cannot be reached, holds another database's
            log, or was recreated or truncated under the replica.
        LockTimeout, LockCompromised: the replica's write lock.

    ``nats_options`` are passed to ``nats.connect`` (``user_credentials``,
    ``tls``, ``token``, ...); ``nats_context`` names a nats CLI context;
    ``stream_config`` holds the fields of the stream a publisher creates
    (``max_age``, ``max_bytes``, ``num_replicas``, ``storage``, ...: nats-py's
    ``StreamConfig``).
    """
    side = _stream_side(source, replica)
    if side == "replica":
        from .jetstream import publish

        return publish(source, str(replica), nats_options=nats_options, context=nats_context,  # type: ignore[no-any-return]
                       stream_config=stream_config)
    if side == "source":
        from .jetstream import consume

        return consume(str(source), replica, on_conflict=on_conflict, batch=batch,  # type: ignore[no-any-return]
                       nats_options=nats_options, context=nats_context)
    rep = _Replication(source, replica, on_conflict, batch)
    try:
        return rep.run()
    finally:
        rep.close()


#: Errors after which follow() waits and tries again: the source or the
#: replica is busy (a long write, a checkpoint, a lock held past the timeout).
_TRANSIENT = (BusyError, LockedError, LockTimeout)


def follow(source: Endpoint, replica: Endpoint, *, interval: float = 0.5,
           stop: threading.Event | None = None, on_conflict: OnConflict = None, batch: int = 256,
           on_report: Callable[[ReplicationReport], object] | None = None,
           nats_options: Mapping[str, Any] | None = None, nats_context: str | None = None,
           stream_config: Mapping[str, Any] | None = None) -> ReplicationReport:
    """Replicate continuously: :func:`replicate` every ``interval`` seconds
    (at once again while behind) until ``stop`` is set.

    A busy source or replica (``BusyError``, ``LockedError``, ``LockTimeout``)
    is logged and retried after ``interval``; any other error ends the loop
    and is raised (the cursor keeps what was committed).  ``on_report(r)`` is
    called after each round that applied something.  Returns the total of
    all rounds.

    A commit to the source by a :class:`Database` of the same process wakes
    the loop at once (no wait for the next round); commits by other
    processes are seen within ``interval``.

    With a stream on either side (see :func:`replicate`): publishing wakes
    on every commit to the source (at once for a Database of this process;
    for others it watches ``PRAGMA data_version``, every
    ``min(interval, 0.01)`` s); following receives entries as the server
    pushes them (an ordered push consumer), no polling.
    """
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
        raise InterfaceError(f"interval must be seconds >= 0, not {interval!r}")
    stop = stop if stop is not None else threading.Event()
    side = _stream_side(source, replica)
    if side == "replica":
        from .jetstream import publish

        return publish(source, str(replica), nats_options=nats_options, context=nats_context,  # type: ignore[no-any-return]
                       stream_config=stream_config, follow=True, stop=stop,
                       poll=min(float(interval), 0.01), on_report=on_report)
    if side == "source":
        from .jetstream import consume

        return consume(str(source), replica, on_conflict=on_conflict, batch=batch,  # type: ignore[no-any-return]
                       nats_options=nats_options, context=nats_context, follow=True, stop=stop,
                       interval=max(float(interval), 0.05), on_report=on_report)
    rep = _Replication(source, replica, on_conflict, batch)
    # A Database of this process that writes the source wakes the loop at
    # once; other processes' commits are seen at the next round.
    watch = commits.Watch(rep.src.path)
    try:
        total: ReplicationReport | None = None
        while not stop.is_set():
            watch.clear()
            try:
                r = rep.run()
            except _TRANSIENT as e:
                log.info("replication of %s: busy (%s); retrying in %.3g s", rep.src.path, e, interval)
                stop.wait(interval)
                continue
            total = r if total is None else total + r
            if r.applied and on_report is not None:
                on_report(r)
            if r.lag == 0:
                watch.wait(interval, stop)
        if total is None:  # stopped before the first round: report where things stand
            sid, position, _ = rep._look(0, 0, check=False)
            with rep.db.read() as rd:
                cursor = read_cursor(rd.connection, sid)
            total = ReplicationReport(sid, 0, cursor, position - cursor)
        return total
    finally:
        watch.close()
        rep.close()
