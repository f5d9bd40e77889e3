"""Applying a source's log entries to a replica, exactly once: in admitted
writes of the replica, ``batch`` data entries per transaction, each DDL
entry on its own, the cursor moved in the same transaction
(:mod:`.replica_cursor`).  Shared by file replication (:mod:`.replication`),
the bundle import (:mod:`.bundle_import`) and the stream consumer
(:mod:`.stream_replication`); also the source side's snapshot reader."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator

from ..binding.capi import RESERVED_PREFIX
from ..binding.errors import InterfaceError
from ..sessions.apply import ApplyReport, OnConflict, apply_stream
from ..sessions.changeset import Changeset
from ..sessions.connection import Connection
from ..sessions.errors import ConflictAbort, SchemaMismatch
from ..sessions.group import ChangeGroup
from ..sessions.stream import summarize_stream
from . import audit
from .audit import LogEntry
from .conflicts import ConflictRecorder
from .database import Database, open_database
from .db_base import rollback_quietly
from .log_errors import ConflictRow, ReplicationConflict, ReplicationError, rows_text
from .replica_cursor import (
    NothingToDo,
    ensure_cursor,
    read_cursor,
    set_cursor,
)
from .wire import LargeEntry, Pending
from .write import WriteTx

log = logging.getLogger("sqlite_session_safe.replication")


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


class Tally:
    """Counts accumulated over the transactions of one call."""

    def __init__(self) -> None:
        self.applied = self.changes = self.omitted = self.transactions = self.skipped = 0
        self.conflicts: list[ConflictRow] = []

    def report(self, source_id: str, last_seq: int, lag: int) -> ReplicationReport:
        return ReplicationReport(source_id, self.applied, last_seq, max(0, lag), self.changes,
                                 self.omitted, tuple(self.conflicts), self.transactions,
                                 self.skipped)



# -- applying entries -------------------------------------------------------------


def entry_groups(entries: Iterable[Pending], batch: int) -> Iterator[list[Pending]]:
    """Consecutive data entries, at most ``batch`` per group; a DDL entry
    alone, and a large entry (applied by streaming) alone."""
    group: list[Pending] = []
    for e in entries:
        alone = e.kind == "ddl" or isinstance(e, LargeEntry)
        if alone or len(group) >= batch:
            if group:
                yield group
            group = []
        if alone:
            yield [e]
        else:
            group.append(e)
    if group:
        yield group


def _apply_one(con: Connection, e: LogEntry, source_id: str, recorder: ConflictRecorder,
               tally: Tally) -> None:
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
                  tally: Tally) -> bool:
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


def _check_start(source_id: str, start: int, first: int) -> None:
    """Refuse a step whose first entry is not the one after the cursor."""
    if first != start + 1:
        raise ReplicationError(
            f"entries of source {source_id} start at seq {first}, but the replica's "
            f"cursor is at {start}: entries {start + 1}..{first - 1} are missing (a "
            "gap); apply them first (replicate from the source, or an older bundle)",
            source_id, start + 1)


# -- large entries: streamed, no session -------------------------------------------
#
# The replica's log entry for a step is what its session recorded.  For a
# large entry the session would hold every changed row, and then the whole
# changeset, in memory (about five times the entry).  So a large entry
# (wire.LARGE_BODY) is applied by streaming, in bounded chunks, with no
# session, and its own changeset -- the incoming bytes -- is copied into the
# replica's log row (audit.StreamedBody).  That is only right when what the
# apply changed is exactly the incoming changeset, change for change.  The
# rule, checked here:
#
# * decided up front, else the session path: every table the changeset
#   touches exists in the replica with a declared primary key, the same
#   primary key, exactly the changeset's number of columns and no hidden or
#   generated ones (a session records the replica's own columns: a replica
#   table with more columns, or a rowid table, would be recorded otherwise),
#   under the same name, case included, with no ON CONFLICT REPLACE or
#   IGNORE clause (SQLite resolves those itself, without a conflict: a
#   change skipped, other rows deleted) and no COLLATE other than BINARY (a
#   row found or an old value matched through NOCASE may differ from the
#   entry's by case), and none is an _sss_ or sqlite_
#   table (a session never records those); and with PRAGMA foreign_keys on,
#   no foreign key of the replica has an ON DELETE / ON UPDATE action
#   (CASCADE, SET NULL, SET DEFAULT would change rows the changeset does not
#   name).  Triggers cannot add changes: every replay runs with the
#   replica's triggers off (audit.triggers_off).
# * found while applying: any conflict at all (DATA, NOTFOUND, CONFLICT,
#   CONSTRAINT, FOREIGN_KEY) aborts the streamed apply before the policy is
#   asked, and the whole step is rolled back and done again through the
#   session path, where the policy decides (OMIT and REPLACE change what is
#   applied).  Without a conflict every change was applied as it stands.
#
# What may still differ from what a session would have logged: the order of
# tables and rows, and the changes' indirect flags (the source's are kept),
# neither of which replay, inversion or chaining depend on; and values a
# replica column of another type affinity than the source's converts on
# insert (the log keeps the source's value; replaying the log converts it the
# same way).  The fallback costs the session path's memory.
#
# Memory: the apply reads and applies STREAM_APPLY_CHUNK changes at a time
# (a few MB).  The log row is appended with a zero-filled blob, which SQLite
# leaves unexpanded only as the last data of a record: ``changeset`` is the
# last column of a new _sss_log (PROTOCOL.md §5.2), and there the row adds
# a few MB; in a log made before, with sql and epoch after changeset, SQLite
# expands it and copies the record (a 200 MB entry: 382 MB).


class _Fallback(Exception):
    """The streamed apply does not apply: roll back, take the session path."""


#: Foreign keys with an action that changes other rows.
_FK_ACTIONS = (
    "SELECT 1 FROM sqlite_schema s, pragma_foreign_key_list(s.name) f WHERE s.type = 'table' "
    "AND (f.on_delete NOT IN ('NO ACTION', 'RESTRICT') "
    "OR f.on_update NOT IN ('NO ACTION', 'RESTRICT')) LIMIT 1"
)


#: A constraint whose conflicts SQLite resolves by itself, without asking
#: the apply's conflict handler: IGNORE skips a change, REPLACE deletes other
#: rows (or, for NOT NULL, stores the default).  (A false match in a string
#: literal only costs the session path.)
_SILENT_RESOLUTION = re.compile(r"\bON\s+CONFLICT\s+(REPLACE|IGNORE)\b", re.IGNORECASE)
#: A column with its own collation: the apply finds a row, and compares old
#: values, through it, so 'a' may match the entry's 'A' without a conflict
#: while a session would record 'a'.
_COLLATED = re.compile(r"\bCOLLATE\s+(?!BINARY\b)", re.IGNORECASE)


def _streamable(con: Connection, e: LargeEntry) -> bool:
    """Whether applying ``e`` without a session changes exactly ``e`` (the
    up-front half of the rule above)."""
    row = con.execute("PRAGMA foreign_keys").fetchone()
    if row and row[0] and con.execute(_FK_ACTIONS).fetchone():
        return False
    _, sections = summarize_stream(e.open())  # in C, bounded memory
    seen: set[str] = set()
    for table, ncol, pk, _, _, _ in sections:
        if table in seen:
            continue
        seen.add(table)
        if table.startswith(RESERVED_PREFIX) or table.lower().startswith("sqlite_"):
            return False
        row = con.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                          (table,)).fetchone()
        if row is None:
            return False  # missing, or named in another case (a session records the replica's)
        if _SILENT_RESOLUTION.search(str(row[0] or "")) or _COLLATED.search(str(row[0] or "")):
            return False
        cols = con.execute("SELECT pk, hidden FROM pragma_table_xinfo(?, 'main')", (table,)).fetchall()
        keys = [int(k) for k, _ in cols]
        if (len(cols) != ncol or any(hidden for _, hidden in cols) or not any(keys)
                or list(pk) != keys):
            return False
    return True


def _apply_streamed(db: Database, source_id: str, e: LargeEntry, tally: Tally) -> int | None:
    """Apply one large entry by streaming, in one admitted write of ``db``
    with no session, its log entry copied from the entry itself; returns
    the cursor afterwards, or None (nothing done) when the session path
    must do it (see the rule above)."""
    tx = WriteTx(db, f"replicate {source_id} {e.seq}..{e.seq}",
                 body=audit.StreamedBody(e.head.size, e.open))
    report: ApplyReport | None = None
    try:
        with tx:
            con = tx.connection
            start = read_cursor(con, source_id)
            if e.seq <= start:
                raise NothingToDo(start)
            _check_start(source_id, start, e.seq)
            if not _streamable(con, e):
                raise _Fallback
            try:
                with audit.triggers_off(con):
                    # The default policy ABORTs at the first conflict.
                    report = apply_stream(e.open(), con, strict=True)
            except (ConflictAbort, SchemaMismatch) as x:
                raise _Fallback from x  # the session path decides, or names the problem
            set_cursor(con, source_id, e.seq)
    except NothingToDo as skip:
        tally.skipped += 1
        return skip.cursor
    except _Fallback:
        log.info("replicating entry %s of source %s: applied with a session (a conflict, or the "
                 "replica's schema, see replica_apply.py)", e.seq, source_id)
        return None
    tally.applied += 1
    tally.transactions += 1
    tally.changes += report.total_applied
    return e.seq


def apply_group(db: Database, source_id: str, group: list[Pending],
                recorder: ConflictRecorder, tally: Tally) -> int:
    """Apply one group in one admitted write of ``db``; returns the cursor
    afterwards.  The cursor is read again under the write lock, so entries
    another replicator applied meanwhile are skipped, never applied twice.
    A group of one large entry is streamed when it can be (see above)."""
    if len(group) == 1 and isinstance(group[0], LargeEntry):
        done = _apply_streamed(db, source_id, group[0], tally)
        if done is not None:
            return done
    return _apply_logged(db, source_id, [e.load() if isinstance(e, LargeEntry) else e for e in group],
                         recorder, tally)


def _apply_logged(db: Database, source_id: str, group: list[LogEntry],
                  recorder: ConflictRecorder, tally: Tally) -> int:
    """:func:`apply_group` with a session recording what changed."""
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
                raise NothingToDo(start)
            _check_start(source_id, start, todo[0].seq)
            if kind == "ddl":
                tx.label = f"replicate {source_id} {todo[0].seq}..{todo[0].seq}"
                todo[0].apply_to(con)
                tx.value = todo[0].sql  # the replica's own log entry holds the same script
            else:
                tx.label = f"replicate {source_id} {todo[0].seq}..{todo[-1].seq}"
                if len(todo) == 1 or not _apply_merged(con, todo, recorder, tally):
                    for e in todo:
                        _apply_one(con, e, source_id, recorder, tally)
            set_cursor(con, source_id, todo[-1].seq)
    except NothingToDo as skip:
        tally.skipped += len(group)
        return skip.cursor
    tally.applied += len(todo)
    tally.skipped += len(group) - len(todo)
    tally.transactions += 1
    return todo[-1].seq


def apply_entries(db: Database, source_id: str, entries: Iterable[Pending], *,
                  on_conflict: OnConflict | ConflictRecorder = None, batch: int = 256,
                  lag_base: int | None = None) -> ReplicationReport:
    """Apply source log entries (in seq order) to the replica ``db``, exactly
    once: entries at or below the replica's cursor are skipped; an entry
    after cursor + 1 is a gap (:class:`ReplicationError`).  ``entries`` is
    consumed as it goes (one group of ``batch`` entries in memory at a time).
    What bundles, streams and :func:`replicate` share."""
    recorder = on_conflict if isinstance(on_conflict, ConflictRecorder) else ConflictRecorder(on_conflict)
    batch = check_batch(batch)
    tally = Tally()
    with db.read() as r:
        cursor = read_cursor(r.connection, source_id)
    last = cursor
    ensured = False
    for group in entry_groups(entries, batch):
        last = group[-1].seq
        if last <= cursor:
            tally.skipped += len(group)
            continue
        if not ensured:
            ensure_cursor(db, source_id)
            ensured = True
        cursor = apply_group(db, source_id, group, recorder, tally)
    return tally.report(source_id, cursor, (lag_base if lag_base is not None else last) - cursor)


def check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InterfaceError(f"batch must be an int >= 1, not {batch!r}")
    return batch


# -- source and replica -----------------------------------------------------------


class SourceReader:
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

