"""Exceptions of replication, bundles and undo (all derive from ``sss.Error``).

Pure Python, like the other error modules: importing it never loads the
compiled SQLite module.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..binding.errors import Error, InterfaceError
from ..sessions.errors import ConflictAbort

if TYPE_CHECKING:
    from ..sessions.apply import Conflict

__all__ = [
    "ConflictRow",
    "ReplicationError",
    "ReplicationConflict",
    "BundleError",
    "StreamError",
    "ReplicationTimeout",
    "LogPruned",
    "UndoError",
    "UndoConflict",
]


@dataclasses.dataclass(frozen=True)
class ConflictRow:
    """One row that did not match what a replayed change expected.

    Attributes:
        table: the table.
        op: the change's operation (``"INSERT"``, ``"UPDATE"``, ``"DELETE"``),
            or None for a foreign key conflict (which concerns the whole apply).
        type: the conflict type's name (``"DATA"``, ``"NOTFOUND"``,
            ``"CONFLICT"``, ``"CONSTRAINT"``, ``"FOREIGN_KEY"``).
        pk: the row's primary key values (as the change holds them).
        expected: the row the change expected to find (its old values; None
            for an INSERT, which expects no row).  Columns a changeset leaves
            out of an UPDATE are ``sss.UNCHANGED``.
        found: the row found instead (None when there is none, or when SQLite
            does not report it: NOTFOUND, CONSTRAINT).
        action: what the policy decided (``"OMIT"``, ``"REPLACE"``, ``"ABORT"``).
    """

    table: str | None
    op: str | None
    type: str
    pk: tuple[Any, ...]
    expected: tuple[Any, ...] | None
    found: tuple[Any, ...] | None
    action: str

    def __str__(self) -> str:
        if self.table is None:
            return f"{self.type}: foreign key violations"
        return (f"{self.type} on {self.op} in {self.table!r} key {self.pk!r}: expected "
                f"{self.expected!r}, found {self.found!r}")


def rows_text(rows: tuple[ConflictRow, ...], limit: int = 5) -> str:
    text = "; ".join(str(r) for r in rows[:limit])
    if len(rows) > limit:
        text += f"; and {len(rows) - limit} more"
    return text


class ReplicationError(Error):
    """Replication or a bundle import cannot go on: the source has no audit
    log, the replica's cursor is ahead of the source's log, a bundle starts
    after the cursor (a gap), the source and replica are one database, the
    source's identity changed, or a source entry could not be applied.
    Nothing of the failing step was committed.

    Attributes:
        source_id: the source's ``database_id`` (None if unknown).
        seq: the source entry concerned (None if not about one entry).
    """

    def __init__(self, message: str, source_id: str | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.source_id = source_id
        self.seq = seq

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.source_id, self.seq))


class ReplicationConflict(ConflictAbort):
    """A replicated source entry met rows on the replica that differ from
    what it expected (local writes on the replica), and the policy said ABORT
    (the default).  The replica's transaction was rolled back: the entry and
    the cursor are as before.

    Attributes:
        source_id, seq: the source entry.
        rows: every conflicting row of that entry (see :class:`ConflictRow`).
        conflict: the :class:`~sss.Conflict` that stopped it.
    """

    def __init__(self, message: str, conflict: Conflict | None = None, source_id: str | None = None,
                 seq: int | None = None, rows: tuple[ConflictRow, ...] = ()) -> None:
        super().__init__(message, conflict)
        self.source_id = source_id
        self.seq = seq
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.conflict, self.source_id, self.seq, self.rows))


class StreamError(ReplicationError):
    """Replication through a NATS JetStream stream cannot go on: the client
    (``nats-py``) is not installed, the server cannot be reached or refused
    a request, the stream holds another database's log or a message that is
    not a well-formed entry, or the stream was recreated or truncated so that
    entries the replica needs are gone.  Nothing of the failing step was
    committed.

    Attributes: as :class:`ReplicationError`; ``stream``: the stream's name.
    """

    def __init__(self, message: str, source_id: str | None = None, seq: int | None = None,
                 stream: str = "") -> None:
        super().__init__(message, source_id, seq)
        self.stream = stream

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.source_id, self.seq, self.stream))


class ReplicationTimeout(ReplicationError, TimeoutError):
    """``wait_replicated`` ran out of time before enough replicas
    acknowledged the entry.

    Attributes: as :class:`ReplicationError`; ``wanted``: how many replicas
    were asked for; ``acked``: the replica ids that had acknowledged it.
    """

    def __init__(self, message: str, source_id: str | None = None, seq: int | None = None,
                 wanted: int = 0, acked: tuple[str, ...] = ()) -> None:
        ReplicationError.__init__(self, message, source_id, seq)
        self.wanted = wanted
        self.acked = acked

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.source_id, self.seq, self.wanted, self.acked))


class LogPruned(ReplicationError):
    """The entries a replica (or an export, or an undo) needs were pruned
    from the source's log (``Database.prune_log``).  Re-seed the replica from
    a backup of the source (``db.backup(path)``: a copy starts at its own
    log position) and replicate from there.

    Attributes: as :class:`ReplicationError` (``seq``: the first entry
    needed); ``pruned_through``: the last pruned seq.
    """

    def __init__(self, message: str, source_id: str | None = None, seq: int | None = None,
                 pruned_through: int = 0) -> None:
        super().__init__(message, source_id, seq)
        self.pruned_through = pruned_through

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.source_id, self.seq, self.pruned_through))


class BundleError(Error):
    """A bundle file is not a valid bundle: wrong magic, unknown format
    version, truncated, failed checksum, or malformed inside.  Checked before
    anything is applied: nothing was changed.

    Attributes:
        path: the bundle file.
        reason: ``"magic"``, ``"version"``, ``"truncated"``, ``"checksum"``,
            ``"malformed"`` or ``"io"``.
    """

    def __init__(self, message: str, path: str = "", reason: str = "malformed") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path, self.reason))


class UndoError(InterfaceError):
    """``db.undo(seq)`` was asked for something it cannot undo: no such entry
    (``reason="unknown"``), a migration (``"ddl"``: a schema change has no
    changeset to invert), or an entry without changes (``"empty"``).
    Nothing was changed.

    Attributes:
        seq: the entry asked for.
        reason: see above.
    """

    def __init__(self, message: str, seq: int = 0, reason: str = "unknown") -> None:
        super().__init__(message)
        self.seq = seq
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.seq, self.reason))


class UndoConflict(ConflictAbort):
    """Undoing entry ``seq`` met rows that later writes changed, and the
    policy said ABORT (the default).  Nothing was changed and nothing logged.

    Attributes:
        seq: the entry whose undo was refused.
        rows: every conflicting row (table, pk, expected, found), see
            :class:`ConflictRow`.
        conflict: the :class:`~sss.Conflict` that stopped it.
    """

    def __init__(self, message: str, conflict: Conflict | None = None, seq: int = 0,
                 rows: tuple[ConflictRow, ...] = ()) -> None:
        super().__init__(message, conflict)
        self.seq = seq
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.conflict, self.seq, self.rows))
