"""Undo: ``db.undo(seq)`` applies the inverse of a logged write as a new one.

The entry's changeset is inverted (INSERT <-> DELETE, old <-> new values) and
applied inside an admitted write, which is logged like any other (label
``"undo <seq>"`` by default).  The inverse expects every row as entry ``seq``
left it; a row a later write changed is a conflict.  By default any conflict
refuses the undo with :class:`UndoConflict`, which lists every conflicting
row (table, primary key, expected, found), and nothing is changed; a policy
(as ``Changeset.apply`` takes it) resolves them instead.  Like replay, the
apply runs with the target's triggers off: the entry's changeset already
holds what triggers did, so its inverse undoes that too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..binding.errors import InterfaceError
from ..sessions.apply import OnConflict
from ..sessions.errors import ConflictAbort
from . import audit
from .conflicts import ConflictRecorder
from .log_errors import UndoConflict, UndoError, rows_text
from .write import WriteResult, WriteTx

if TYPE_CHECKING:
    from .database import Database

__all__ = ["undo_entry"]


def undo_entry(db: Database, seq: int, on_conflict: OnConflict = None,
               label: str | None = None) -> WriteResult:
    """Apply the inverse of log entry ``seq`` of ``db`` as a new logged write.

    Returns the write's :class:`WriteResult`; its ``value`` is the tuple of
    conflicting rows the policy resolved (empty without conflicts).  An undo
    whose changes were all omitted by the policy is an empty write: nothing
    committed, ``seq`` None.

    Raises:
        UndoError: no entry ``seq``, a migration (``kind="ddl"``), or an
            entry without changes.  Nothing changed.
        UndoConflict: rows changed since entry ``seq`` and the policy is the
            default (or said ABORT); ``rows`` lists them.  Nothing changed.
        ConflictPolicyError: an invalid ``on_conflict`` (before anything).
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InterfaceError(f"seq must be an int >= 1, not {seq!r}")
    recorder = ConflictRecorder(on_conflict)

    def fn(tx: WriteTx) -> object:
        con = tx.connection
        found = audit.read_entries(con, seq - 1, 1)
        if not found or found[0].seq != seq:
            raise UndoError(f"undo {seq}: the audit log of {db.path!r} has no entry {seq} (it ends "
                            f"at {audit.log_position(con)})", seq, "unknown")
        entry = found[0]
        if entry.kind == "ddl":
            raise UndoError(f"undo {seq}: entry {seq} is a migration (DDL); a schema change has no "
                            "changeset to invert: write the reverse migration with db.migrate",
                            seq, "ddl")
        if not entry.changeset:
            raise UndoError(f"undo {seq}: entry {seq} holds no changes", seq, "empty")
        inverse = dataclasses.replace(entry, changeset=entry.changeset.invert())
        try:
            inverse.apply_to(con, recorder)
        except ConflictAbort as x:
            rows = recorder.take()
            raise UndoConflict(f"undo {seq}: {x.conflict} resolved with ABORT ({rows_text(rows)}); "
                               "nothing was changed", x.conflict, seq, rows) from x
        rows = recorder.take()
        if recorder.refuse and rows:
            raise UndoConflict(
                f"undo {seq}: {len(rows)} row(s) changed since entry {seq}: {rows_text(rows)}; "
                "nothing was changed (pass on_conflict=sss.OMIT to skip them, or "
                "{sss.ConflictType.DATA: sss.REPLACE} to overwrite)", None, seq, rows)
        return rows

    result: WriteResult = db.write(fn, label=f"undo {seq}" if label is None else label)
    return result
