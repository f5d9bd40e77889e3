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

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..binding.errors import BusyError, InterfaceError, LockedError
from ..sessions.apply import OnConflict
from . import audit, commits, wire
from .conflicts import ConflictRecorder
from .database import Database
from .errors import LockTimeout
from .jetstream import is_stream_url
from .log_errors import LogPruned, ReplicationError
from .replica_apply import (
    ReplicationReport,
    SourceReader,
    Tally,
    apply_entries,
    apply_group,
    check_batch,
    entry_groups,
    open_replica,
)
from .replica_cursor import (
    CURSOR_TABLE,
    ensure_cursor,
    read_cursor,
)
from .retention import pruned_through, register_replica
from .stream_replication import consume, publish

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


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class _Replication:
    """One source and one replica, opened once (for follow's many rounds)."""

    def __init__(self, source: Database | str | os.PathLike[str],
                 replica: Database | str | os.PathLike[str], on_conflict: OnConflict, batch: int) -> None:
        self.batch = check_batch(batch)
        self.recorder = ConflictRecorder(on_conflict)  # policy errors before anything opens
        self.src = SourceReader(source)
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

    def look(self, cursor: int, limit: int, check: bool = True) -> tuple[str, int, list[wire.Pending]]:
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
                pruned = pruned_through(con)
                if cursor < pruned:
                    raise LogPruned(
                        f"the replica's cursor for source {sid} is at seq {cursor}, but the source's "
                        f"log was pruned through {pruned}: entries {cursor + 1}..{pruned} are gone. "
                        "Re-seed the replica from a backup of the source (db.backup(path): a copy "
                        "starts at its own log position) and replicate from there", sid, cursor + 1,
                        pruned)
            # Large changesets are spooled to temporary files (bounded memory)
            # and applied from there, after the snapshot.
            entries = wire.read_pending(con, cursor, limit) if limit and position > cursor else []
        self.source_id = sid
        return sid, position, entries

    def run(self) -> ReplicationReport:
        """Apply what the source had at the first look; later entries are
        left for the next call (so a call always ends)."""
        sid, target, _ = self.look(0, 0, check=False)
        with self.db.read() as r:
            cursor = read_cursor(r.connection, sid)
        if not self.registered:
            register_replica(self.src, "file", self.db.path, sid)
            self.registered = True
        self.look(cursor, 0)  # a cursor below the source's prune point: LogPruned
        if cursor > target:
            raise ReplicationError(
                f"the replica's cursor for source {sid} is at seq {cursor}, but the source's log "
                f"ends at {target}: the source was restored from an older copy, or the replica "
                "followed another database with the same id", sid, cursor)
        tally = Tally()
        position = target
        if cursor < target:
            ensure_cursor(self.db, sid)
        while cursor < target:
            _, position, entries = self.look(cursor, min(self.batch, target - cursor))
            if not entries or entries[0].seq != cursor + 1:
                raise ReplicationError(
                    f"source {sid}'s log has no entry {cursor + 1} (its log holds "
                    f"{entries[0].seq if entries else 'nothing'} after {cursor}): the log was "
                    "altered", sid, cursor + 1)
            for group in entry_groups(entries, self.batch):
                cursor = apply_group(self.db, sid, group, self.recorder, tally)
        return tally.report(sid, cursor, position - cursor)


#: A database, or a path to one, or (for replicate/follow) a NATS stream URL.
Endpoint = Database | str | os.PathLike[str]


def _stream_side(source: Endpoint, replica: Endpoint) -> str | None:
    """Which side is a NATS stream URL: "source", "replica" or None."""
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
        return publish(source, str(replica), nats_options=nats_options, context=nats_context,  # type: ignore[no-any-return]
                       stream_config=stream_config)
    if side == "source":
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
        return publish(source, str(replica), nats_options=nats_options, context=nats_context,  # type: ignore[no-any-return]
                       stream_config=stream_config, follow=True, stop=stop,
                       poll=min(float(interval), 0.01), on_report=on_report)
    if side == "source":
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
            sid, position, _ = rep.look(0, 0, check=False)
            with rep.db.read() as rd:
                cursor = read_cursor(rd.connection, sid)
            total = ReplicationReport(sid, 0, cursor, position - cursor)
        return total
    finally:
        watch.close()
        rep.close()

