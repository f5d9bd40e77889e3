"""Applying a stream in bounded memory: read a chunk of changes at a
time, check it (:class:`~.apply_plan.Plan`) and apply it, all inside one
savepoint.  Used by :func:`~sqlite_session_safe.apply_stream` and, past
the C API's 2 GiB, by ``Changeset.apply``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..binding.capi import exec_sql
from ..binding.changeset_io import Reader
from ..binding.changeset_iter import ChangesetIter
from .apply_core import ApplyContext, apply_flags, finish_report
from .apply_plan import Plan, summary
from .errors import ConflictAbort
from .options import ApplyOptions
from .policy import Action, Conflict, ConflictType
from .report import ApplyReport

if TYPE_CHECKING:
    from ..binding.connection import Connection
    from .changeset import ChangesetBase

__all__ = ["STREAM_APPLY_CHUNK", "Source", "apply_chunks"]

#: Changes per chunk when applying a stream.
STREAM_APPLY_CHUNK = 20_000


class Source:
    """A stream iterator over a Reader, finalized on exit."""

    def __init__(self, source: Any) -> None:
        self.it = ChangesetIter.over_reader(Reader(source))

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.it.finalize()

    def next_chunk(self, max_changes: int) -> tuple[bytes, bool]:
        """Up to max_changes changes as one blob, and whether the end was reached."""
        return self.it.next_chunk(max_changes)


def apply_chunks(source: Source, con: Connection, options: ApplyOptions,
                 kind_of: Callable[[bytes], type[ChangesetBase]]) -> ApplyReport:
    """Apply ``source`` chunk by chunk (see the module docstring).
    ``kind_of(first_chunk)`` is the class of ``report.rejected`` (called with
    b"" for an empty stream)."""
    kind: type[ChangesetBase] | None = None
    report = ApplyReport()
    rebases: list[bytes] = []
    flags = apply_flags(options, True)
    no_savepoint, want_rebase = options.no_savepoint, options.rebase
    with con.sss_hold() as cdb:
        if not no_savepoint:
            exec_sql(cdb, "SAVEPOINT sss_apply_stream")
        try:
            keep: dict[str, bool] = {}
            ctx = ApplyContext(options.policy, keep, options.collect_rejected)
            chunk, done = source.next_chunk(STREAM_APPLY_CHUNK)
            while chunk:
                if kind is None:
                    kind = kind_of(chunk)
                nxt, nxt_done = (b"", True) if done else source.next_chunk(STREAM_APPLY_CHUNK)
                # A chunk's sections are checked (schema, filter) before it is
                # applied; the outer savepoint makes a failure undo them all.
                plan = Plan(con, summary(chunk), options, report)
                keep.update(plan.keep)
                ctx.needs_filter = plan.needs_filter
                ctx.fk_interim = bool(nxt)
                r = ctx.apply(cdb, chunk, flags, want_rebase)
                if r:
                    rebases.append(r)
                chunk, done = nxt, nxt_done
            if ctx.fk_seen and not ctx.fk_interim:
                _final_fk_check(ctx, cdb, con)
            finish_report(report, ctx, kind or kind_of(b""))
        except BaseException:
            if not no_savepoint:
                exec_sql(cdb, "ROLLBACK TO sss_apply_stream; RELEASE sss_apply_stream", check=False)
            raise
        if not no_savepoint:
            exec_sql(cdb, "RELEASE sss_apply_stream")
    report.rebase = b"".join(rebases) if want_rebase else None
    return report


def _final_fk_check(ctx: ApplyContext, cdb: Any, con: Connection) -> None:
    """A chunk before the last left foreign key violations; SQLite's own check
    only sees the last chunk's, so count what remains in the database now and
    put it to the policy as SQLite would."""
    row = con.execute("PRAGMA foreign_keys").fetchone()
    if not row or not row[0]:
        return
    n = len(con.execute("PRAGMA foreign_key_check").fetchall())
    if not n:
        return
    conflict = Conflict(ConflictType.FOREIGN_KEY, None, None, n)
    ctx.conflicts[ConflictType.FOREIGN_KEY] += 1
    if ctx.policy.resolve(conflict) is not Action.OMIT:
        raise ConflictAbort(f"{conflict}: resolved with ABORT; the apply was rolled back", conflict)

