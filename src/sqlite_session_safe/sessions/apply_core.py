"""One ``sqlite3changeset_apply_v2`` call (step 4 of :mod:`.apply`'s
docstring) and the state its callbacks reach: the conflict policy's
decisions, the counts, the rejected changes.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..binding.raw import NULL, error_from_db, ffi, lib, text
from ._native import check_rc, decode, new_buffer, take_blob
from .apply_plan import Plan, summary
from .change import Change
from .errors import ConflictAbort
from .options import ApplyOptions
from .policy import Action, Conflict, ConflictType, Policy
from .report import ApplyReport

if TYPE_CHECKING:
    from ..binding.connection import Connection
    from .changeset import ChangesetBase

__all__ = ["ApplyContext", "apply_flags", "run_apply", "finish_report", "apply_whole"]


class ApplyContext:
    """State SQLite's callbacks reach through ``ffi.new_handle(self)``."""

    def __init__(self, policy: Policy, keep: dict[str, bool], collect_rejected: bool) -> None:
        self.policy = policy
        self.keep = keep
        self.handle = ffi.new_handle(self)
        self.error: BaseException | None = None
        self.abort: Conflict | None = None
        self.omitted: Counter[tuple[str, str]] = Counter()
        self.replaced: Counter[tuple[str, str]] = Counter()
        self.conflicts: Counter[ConflictType] = Counter()
        self.buf = new_buffer(64 * 1024)
        self.last_replace: tuple[Any, ...] | None = None
        #: Streaming applies: FOREIGN_KEY conflicts of chunks before the last
        #: are not final (later chunks may fix them): OMIT them silently.
        self.fk_interim = False
        self.fk_seen = False
        #: Whether SQLite must call the table filter (some table is excluded).
        self.needs_filter = False
        self.group: Any = None
        if collect_rejected:
            out = ffi.new("sqlite3_changegroup **")
            check_rc(lib.sqlite3changegroup_new(out), "collecting rejected changes")
            self.group = ffi.gc(out[0], lib.sqlite3changegroup_delete)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def filter_table(self, table: Any) -> int:
        """sss_py_apply_filter: decisions were made before the apply."""
        return 1 if self.keep.get(text(table), True) else 0

    def on_conflict(self, ctype_code: int, it: Any) -> int:
        if self.error is not None:
            return int(Action.ABORT)
        ctype = ConflictType(ctype_code)
        if ctype is ConflictType.FOREIGN_KEY:
            self.fk_seen = True
            if self.fk_interim:
                return int(Action.OMIT)
            n = ffi.new("int *")
            lib.sqlite3changeset_fk_conflicts(it, n)
            conflict = Conflict(ctype, None, None, int(n[0]))
        else:
            rc = lib.sss_change_describe(it, ctype_code, self.buf)
            if rc != lib.SQLITE_OK:
                check_rc(rc, "reading a conflicting change")
            raw = decode(self.buf)
            conflict = Conflict(ctype, tuple.__new__(Change, raw[:6]), raw[6])
        self.conflicts[ctype] += 1
        action = self.policy.resolve(conflict)
        change = conflict.change
        if change is not None:
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
                    self.omitted[key] += 1
                    if self.group is not None:
                        check_rc(lib.sqlite3changegroup_add_change(self.group, it),
                                 "collecting a rejected change")
        if action is Action.ABORT:
            self.abort = conflict
        return int(action)

    def rejected(self, kind: type[ChangesetBase]) -> ChangesetBase | None:
        if self.group is None:
            return None
        n = ffi.new("int *")
        p = ffi.new("void **")
        rc = lib.sqlite3changegroup_output(self.group, n, p)
        blob = take_blob(n, p)
        check_rc(rc, "collecting rejected changes")
        return kind(blob)


def apply_flags(options: ApplyOptions, no_savepoint: bool) -> int:
    """The ``SQLITE_CHANGESETAPPLY_*`` flags for ``options``."""
    flags = 0
    if no_savepoint:
        flags |= lib.SQLITE_CHANGESETAPPLY_NOSAVEPOINT
    if options.invert:
        flags |= lib.SQLITE_CHANGESETAPPLY_INVERT
    if options.ignore_noop:
        flags |= lib.SQLITE_CHANGESETAPPLY_IGNORENOOP
    if options.fk_noaction:
        flags |= lib.SQLITE_CHANGESETAPPLY_FKNOACTION
    return flags


def run_apply(ctx: ApplyContext, cdb: Any, data: bytes, flags: int, want_rebase: bool) -> bytes | None:
    """One sqlite3changeset_apply_v2 call; raises for anything but success."""
    rebase_n = ffi.new("int *") if want_rebase else NULL
    rebase_p = ffi.new("void **") if want_rebase else NULL
    xfilter = lib.sss_py_apply_filter if ctx.needs_filter else NULL
    rc = lib.sqlite3changeset_apply_v2(cdb, len(data), ffi.from_buffer(data), xfilter,
                                       lib.sss_py_apply_conflict, ctx.handle, rebase_p, rebase_n,
                                       flags)
    rebase = take_blob(rebase_n, rebase_p) if want_rebase else None
    if ctx.error is not None:
        err, ctx.error = ctx.error, None
        raise err
    if rc == lib.SQLITE_OK:
        return rebase
    if ctx.abort is not None and (rc == lib.SQLITE_ABORT or rc & 0xFF == lib.SQLITE_CONSTRAINT):
        raise ConflictAbort(f"{ctx.abort}: resolved with ABORT; the apply was rolled back",
                            ctx.abort)
    if rc & 0xFF in (lib.SQLITE_CORRUPT, lib.SQLITE_RANGE):
        check_rc(rc, "applying")
    raise error_from_db(cdb, rc, "applying a changeset")


def finish_report(report: ApplyReport, ctx: ApplyContext, kind: type[ChangesetBase]) -> None:
    report.omitted.update(ctx.omitted)
    report.replaced.update(+ctx.replaced)
    report.conflicts.update(ctx.conflicts)
    for key, n in report.changes.items():
        applied = n - report.skipped.get(key, 0) - ctx.omitted.get(key, 0)
        if applied:
            report.applied[key] = applied
    report.rejected = ctx.rejected(kind)


def apply_whole(cs: ChangesetBase, con: Connection, options: ApplyOptions) -> ApplyReport:
    """Apply ``cs`` (at most ``MAX_BLOB`` bytes) in one call; ``options``
    are already reconciled with it (see ``ChangesetBase.apply``)."""
    report = ApplyReport()
    kind = type(cs)
    with con.hold() as cdb:
        plan = Plan(con, summary(cs), options, report)
        ctx = ApplyContext(options.policy, plan.keep, options.collect_rejected)
        ctx.needs_filter = plan.needs_filter
        if not cs:
            report.rejected = ctx.rejected(kind)
            report.rebase = b"" if options.rebase else None
            return report
        report.rebase = run_apply(ctx, cdb, cs, apply_flags(options, options.no_savepoint), options.rebase)
        if options.rebase and report.rebase is None:
            report.rebase = b""
        finish_report(report, ctx, kind)
    return report
