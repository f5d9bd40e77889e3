"""One ``sqlite3changeset_apply_v2`` call (step 4 of :mod:`.apply`'s
docstring) and the state its callbacks reach: the conflict policy's
decisions, the counts, the rejected changes.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..binding.changeset_apply import (
    APPLY_FKNOACTION,
    APPLY_IGNORENOOP,
    APPLY_INVERT,
    APPLY_NOSAVEPOINT,
    ApplyCall,
)
from .apply_plan import Plan, summary
from .change import Change
from .errors import ConflictAbort
from .options import ApplyOptions
from .policy import Action, Conflict, ConflictType, Policy
from .report import ApplyReport

if TYPE_CHECKING:
    from ..binding.connection import Connection
    from .changeset import ChangesetBase

__all__ = ["ApplyContext", "apply_flags", "finish_report", "apply_whole"]

_tuple_new = tuple.__new__


class ApplyContext(ApplyCall):
    """The conflict policy's decisions and the counts of one apply (or of
    the chunks of a streaming one); the C side is ``binding.changeset_apply``."""

    def __init__(self, policy: Policy, keep: dict[str, bool], collect_rejected: bool) -> None:
        super().__init__(keep, collect_rejected)
        self.policy = policy
        self.abort: Conflict | None = None
        self.omitted: Counter[tuple[str, str]] = Counter()
        self.replaced: Counter[tuple[str, str]] = Counter()
        self.conflicts: Counter[ConflictType] = Counter()
        self.last_replace: tuple[Any, ...] | None = None

    def on_fk_conflict(self, count: int) -> int:
        conflict = Conflict(ConflictType.FOREIGN_KEY, None, None, count)
        self.conflicts[ConflictType.FOREIGN_KEY] += 1
        action = self.policy.resolve(conflict)
        if action is Action.ABORT:
            self.abort = conflict
        return int(action)

    def on_conflict(self, ctype_code: int, raw: tuple[Any, ...]) -> int:
        ctype = ConflictType(ctype_code)
        change = _tuple_new(Change, raw[:6])
        conflict = Conflict(ctype, change, raw[6])
        self.conflicts[ctype] += 1
        action = self.policy.resolve(conflict)
        key = (change.table, change.op)
        ident = (key, change.old, change.new)
        if action is Action.REPLACE:
            self.replaced[key] += 1
            self.last_replace = ident
        else:
            if ctype is ConflictType.CONSTRAINT and self.last_replace == ident:
                # SQLite retried a REPLACEd INSERT and it failed again:
                # this decision is the change's final outcome.
                self.replaced[key] -= 1
            self.last_replace = None
            if action is Action.OMIT:
                self.omitted[key] += 1  # ApplyCall collects it when asked to
        if action is Action.ABORT:
            self.abort = conflict
        return int(action)

    def abort_error(self) -> ConflictAbort:
        return ConflictAbort(f"{self.abort}: resolved with ABORT; the apply was rolled back",
                             self.abort)

    def rejected_as(self, kind: type[ChangesetBase]) -> ChangesetBase | None:
        blob = self.rejected()
        return None if blob is None else kind(blob)


def apply_flags(options: ApplyOptions, no_savepoint: bool) -> int:
    """The ``SQLITE_CHANGESETAPPLY_*`` flags for ``options``."""
    flags = 0
    if no_savepoint:
        flags |= APPLY_NOSAVEPOINT
    if options.invert:
        flags |= APPLY_INVERT
    if options.ignore_noop:
        flags |= APPLY_IGNORENOOP
    if options.fk_noaction:
        flags |= APPLY_FKNOACTION
    return flags


def finish_report(report: ApplyReport, ctx: ApplyContext, kind: type[ChangesetBase]) -> None:
    report.omitted.update(ctx.omitted)
    report.replaced.update(+ctx.replaced)
    report.conflicts.update(ctx.conflicts)
    for key, n in report.changes.items():
        applied = n - report.skipped.get(key, 0) - ctx.omitted.get(key, 0)
        if applied:
            report.applied[key] = applied
    report.rejected = ctx.rejected_as(kind)


def apply_whole(cs: ChangesetBase, con: Connection, options: ApplyOptions) -> ApplyReport:
    """Apply ``cs`` (at most ``MAX_BLOB`` bytes) in one call; ``options``
    are already reconciled with it (see ``ChangesetBase.apply``)."""
    report = ApplyReport()
    kind = type(cs)
    with con.sss_hold() as cdb:
        plan = Plan(con, summary(cs), options, report)
        ctx = ApplyContext(options.policy, plan.keep, options.collect_rejected)
        ctx.needs_filter = plan.needs_filter
        if not cs:
            report.rejected = ctx.rejected_as(kind)
            report.rebase = b"" if options.rebase else None
            return report
        report.rebase = ctx.apply(cdb, cs, apply_flags(options, options.no_savepoint), options.rebase)
        if options.rebase and report.rebase is None:
            report.rebase = b""
        finish_report(report, ctx, kind)
    return report
