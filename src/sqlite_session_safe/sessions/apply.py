"""Applying changesets: conflict policies, strict schema checks, reports.

How an apply runs
-----------------
1. The policy is checked: REPLACE is only valid for DATA and CONFLICT
   conflicts, so any other pairing is rejected before anything happens.
2. A C pass over the changeset (``sss_changeset_summary``) lists its table
   sections with their column counts, primary keys and change counts; it
   fails with :class:`ChangesetError` on corrupt data, before anything is
   applied.  The table filter (``tables`` / ``filter``) is evaluated here, once
   per table, so an exception it raises also happens before anything is
   applied.
3. Strict mode compares every kept table with the target's schema by the same
   rules SQLite uses (the table exists, has at least as many columns, the same
   primary key); a difference raises :class:`SchemaMismatch` (SQLite itself
   would skip the table and only log it).
4. ``sqlite3changeset_apply_v2`` runs inside its own savepoint.  Conflicts call
   back into Python (``sss_py_apply_conflict``); an exception in the user's
   callable, or an invalid action, is stored, SQLite is told ABORT, it rolls
   its savepoint back, and the exception is re-raised as itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.errors import InterfaceError
from ..binding.raw import NULL, error_from_db, ffi, lib, text
from . import _native
from ._native import Reader, check_rc, decode, new_buffer, take_blob
from .changeset import Change, Changeset, Patchset, _ChangesetBase, _iter_start
from .errors import ConflictAbort, ConflictPolicyError, SchemaMismatch

if TYPE_CHECKING:
    from ..binding.connection import Connection

__all__ = [
    "Action",
    "OMIT",
    "REPLACE",
    "ABORT",
    "ConflictType",
    "Conflict",
    "ApplyReport",
    "apply",
    "apply_stream",
    "OnConflict",
    "TableFilter",
]


class Action(IntEnum):
    """What to do about a conflict (SQLite's SQLITE_CHANGESET_* actions)."""

    #: Skip the change (for FOREIGN_KEY: commit despite the violations).
    OMIT = 0
    #: Overwrite the conflicting row (DATA, CONFLICT only).
    REPLACE = 1
    #: Roll the whole apply back and raise :class:`ConflictAbort`.
    ABORT = 2


OMIT = Action.OMIT
REPLACE = Action.REPLACE
ABORT = Action.ABORT


class ConflictType(IntEnum):
    """Why a change could not be applied as is."""

    #: UPDATE/DELETE: the row exists but its values differ from the change's old values.
    DATA = 1
    #: UPDATE/DELETE: no row with the change's primary key.
    NOTFOUND = 2
    #: INSERT: a row with the same primary key exists.
    CONFLICT = 3
    #: A constraint (UNIQUE, NOT NULL, CHECK, foreign key on DELETE) failed.
    CONSTRAINT = 4
    #: At the end: the applied changes leave foreign key violations.
    FOREIGN_KEY = 5


_REPLACEABLE = frozenset({ConflictType.DATA, ConflictType.CONFLICT})


@dataclasses.dataclass(frozen=True)
class Conflict:
    """One conflict, as a conflict callable sees it.

    ``change`` is the change being applied (None for FOREIGN_KEY, which is
    about the whole apply); ``conflicting`` is the target row's current values
    for DATA and CONFLICT, else None; ``fk_conflicts`` is the number of
    foreign key violations for FOREIGN_KEY, else None.
    """

    type: ConflictType
    change: Change | None
    conflicting: tuple[Any, ...] | None = None
    fk_conflicts: int | None = None

    @property
    def table(self) -> str | None:
        """The table of the conflicting change (None for FOREIGN_KEY)."""
        return None if self.change is None else self.change.table

    @property
    def op(self) -> str | None:
        """``"INSERT"``, ``"UPDATE"`` or ``"DELETE"`` (None for FOREIGN_KEY)."""
        return None if self.change is None else self.change.op

    @property
    def old(self) -> tuple[Any, ...] | None:
        """The change's old values (None for an INSERT and for FOREIGN_KEY)."""
        return None if self.change is None else self.change.old

    @property
    def new(self) -> tuple[Any, ...] | None:
        """The change's new values (None for a DELETE and for FOREIGN_KEY)."""
        return None if self.change is None else self.change.new

    def __str__(self) -> str:
        if self.change is None:
            return f"{self.type.name} conflict ({self.fk_conflicts} foreign key violations)"
        c = self.change
        return f"{self.type.name} conflict on {c.op} in {c.table!r} (key {c.key!r})"


ActionLike = Action | int
#: ``on_conflict``: one action, a mapping, or a callable ``(Conflict) -> action``.
OnConflict = ActionLike | Mapping[Any, Any] | Callable[[Conflict], ActionLike] | None
#: ``filter(table_name) -> bool``: whether to apply that table's changes.
TableFilter = Callable[[str], object]


def _key(table: str, op: str) -> tuple[str, str]:
    return (table, op)


@dataclasses.dataclass
class ApplyReport:
    """What an apply did, per ``(table, op)``.

    * ``changes``: the changes the changeset holds;
    * ``applied``: changes applied (those whose conflict was REPLACEd included,
      and with ``ignore_noop`` those that were already in place);
    * ``omitted``: changes skipped by a conflict resolved with OMIT;
    * ``replaced``: changes applied by REPLACE over a conflicting row;
    * ``skipped``: changes of tables excluded by ``tables`` / ``filter``, or
      (``strict=False``) of tables the target lacks or has a different shape of;
    * ``conflicts``: conflicts met, per :class:`ConflictType`;
    * ``mismatched``: table -> reason, the tables skipped for their schema
      (only with ``strict=False``);
    * ``rejected``: with ``collect_rejected=True``, the omitted changes as a
      changeset (or patchset), e.g. to keep or retry them; else None;
    * ``rebase``: with ``rebase=True``, SQLite's rebase data for a
      :class:`Rebaser` (b"" when there was nothing to rebase); else None.
    """

    changes: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    applied: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    omitted: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    replaced: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    conflicts: Counter[ConflictType] = dataclasses.field(default_factory=Counter)
    mismatched: dict[str, str] = dataclasses.field(default_factory=dict)
    rejected: _ChangesetBase | None = None
    rebase: bytes | None = None

    @property
    def total_applied(self) -> int:
        """All applied changes, over every table and operation."""
        return sum(self.applied.values())

    @property
    def total_omitted(self) -> int:
        """All omitted changes, over every table and operation."""
        return sum(self.omitted.values())

    def by_table(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{table: {op: {"changes": n, "applied": n, ...}}}`` for display."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name in ("changes", "applied", "omitted", "replaced", "skipped"):
            for (table, op), n in getattr(self, name).items():
                out.setdefault(table, {}).setdefault(op, {})[name] = n
        return out


# -- the policy -------------------------------------------------------------


def _action(value: Any, where: str) -> Action:
    try:
        if isinstance(value, bool):
            raise ValueError
        return Action(value)
    except (ValueError, TypeError):
        raise ConflictPolicyError(f"{where}: {value!r} is not an action (sss.OMIT, sss.REPLACE, "
                                  "sss.ABORT)") from None


def _conflict_type(value: Any, where: str) -> ConflictType:
    try:
        if isinstance(value, bool):
            raise ValueError
        return ConflictType(value)
    except (ValueError, TypeError):
        raise ConflictPolicyError(f"{where}: {value!r} is not a conflict type "
                                  "(sss.ConflictType.DATA, NOTFOUND, CONFLICT, CONSTRAINT, "
                                  "FOREIGN_KEY)") from None


def _check_pair(ctype: ConflictType, action: Action, where: str) -> None:
    if action is Action.REPLACE and ctype not in _REPLACEABLE:
        raise ConflictPolicyError(
            f"{where}: REPLACE is not valid for {ctype.name} conflicts (only for DATA and "
            "CONFLICT); SQLite would roll the apply back with SQLITE_MISUSE")


_ALL_TYPES = tuple(ConflictType)
_WHOLE_REPLACE_HINT = ("REPLACE cannot apply to every conflict type: write "
                       "{sss.ConflictType.DATA: sss.REPLACE, sss.ConflictType.CONFLICT: sss.REPLACE}")


class _Policy:
    """A validated ``on_conflict``."""

    def __init__(self, spec: OnConflict) -> None:
        self.callable: Callable[[Conflict], Any] | None = None
        self.by_type: dict[ConflictType, Action] = {}
        self.by_table: dict[str, dict[ConflictType, Action]] = {}
        self.default = Action.ABORT
        if spec is None:
            return
        if isinstance(spec, Mapping):
            for key, value in spec.items():
                if isinstance(key, str):
                    self.by_table[key] = self._table_entry(key, value)
                else:
                    ctype = _conflict_type(key, "on_conflict key")
                    action = _action(value, f"on_conflict[{ctype.name}]")
                    _check_pair(ctype, action, f"on_conflict[{ctype.name}]")
                    self.by_type[ctype] = action
            return
        if callable(spec) and not isinstance(spec, (int, Action)):
            self.callable = spec
            return
        action = _action(spec, "on_conflict")
        if action is Action.REPLACE:
            raise ConflictPolicyError(f"on_conflict=REPLACE: {_WHOLE_REPLACE_HINT}")
        self.default = action

    @staticmethod
    def _table_entry(table: str, value: Any) -> dict[ConflictType, Action]:
        where = f"on_conflict[{table!r}]"
        if isinstance(value, Mapping):
            entry: dict[ConflictType, Action] = {}
            for k, v in value.items():
                ctype = _conflict_type(k, f"{where} key")
                if ctype is ConflictType.FOREIGN_KEY:
                    raise ConflictPolicyError(f"{where}: FOREIGN_KEY conflicts concern the whole "
                                              "apply, not one table: set it at the top level")
                action = _action(v, f"{where}[{ctype.name}]")
                _check_pair(ctype, action, f"{where}[{ctype.name}]")
                entry[ctype] = action
            return entry
        action = _action(value, where)
        if action is Action.REPLACE:
            raise ConflictPolicyError(f"{where}=REPLACE: {_WHOLE_REPLACE_HINT}")
        return {t: action for t in _ALL_TYPES if t is not ConflictType.FOREIGN_KEY}

    def resolve(self, conflict: Conflict) -> Action:
        if self.callable is not None:
            result = self.callable(conflict)
            where = f"the on_conflict callable for a {conflict.type.name} conflict"
            action = _action(result, where)
            _check_pair(conflict.type, action, where)
            return action
        table = conflict.table
        if table is not None:
            entry = self.by_table.get(table)
            if entry is not None and conflict.type in entry:
                return entry[conflict.type]
        return self.by_type.get(conflict.type, self.default)


# -- one apply call -----------------------------------------------------------


class _ApplyContext:
    """State SQLite's callbacks reach through ``ffi.new_handle(self)``."""

    def __init__(self, policy: _Policy, keep: dict[str, bool], collect_rejected: bool) -> None:
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

    def rejected(self, kind: type[_ChangesetBase]) -> _ChangesetBase | None:
        if self.group is None:
            return None
        n = ffi.new("int *")
        p = ffi.new("void **")
        rc = lib.sqlite3changegroup_output(self.group, n, p)
        blob = take_blob(n, p)
        check_rc(rc, "collecting rejected changes")
        return kind(blob)


def _flags(no_savepoint: bool, invert: bool, ignore_noop: bool, fk_noaction: bool) -> int:
    flags = 0
    if no_savepoint:
        flags |= lib.SQLITE_CHANGESETAPPLY_NOSAVEPOINT
    if invert:
        flags |= lib.SQLITE_CHANGESETAPPLY_INVERT
    if ignore_noop:
        flags |= lib.SQLITE_CHANGESETAPPLY_IGNORENOOP
    if fk_noaction:
        flags |= lib.SQLITE_CHANGESETAPPLY_FKNOACTION
    return flags


def _summary(data: bytes) -> list[tuple[str, int, bytes, int, int, int]]:
    """The table sections of ``data`` (see sss_changeset_summary)."""
    if not data:
        return []
    it, readers = _iter_start(data, False)
    buf = new_buffer(64 * 1024)
    count = ffi.new("long long *")
    try:
        rc = lib.sss_changeset_summary(it, buf, count)
    finally:
        frc = lib.sqlite3changeset_finalize(it)
    for r in readers:
        r.reraise()
    if rc != lib.SQLITE_DONE:
        check_rc(rc, "reading the changeset")
    check_rc(frc, "reading the changeset")
    return decode(buf)  # type: ignore[no-any-return]


def _schema_problem(con: Connection, table: str, ncol: int, pk: bytes) -> tuple[str, str, bool] | None:
    """Why ``table`` does not fit the target (None when it does): reason,
    message, and whether SQLite itself skips the table for it (the rules of
    sessionChangesetApply() / sessionTableInfo() in sqlite3.c)."""
    if table.lower() == "sqlite_stat1":
        exists = con.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").fetchone()
        target_pk = [1, 2, 0] if exists else []
    else:
        rows = con.execute("SELECT pk, hidden FROM pragma_table_xinfo(?, 'main')", (table,)).fetchall()
        target_pk = [p for p, hidden in rows if hidden == 0]
        if target_pk and not any(target_pk):
            # No declared key: SQLite applies by rowid, reading the
            # changeset's first column as _rowid_.  A changeset recorded by
            # rowid has exactly one column more than the table; anything else
            # is a changeset of a keyed table whose values would land one
            # column off: SQLite accepts that, strict mode does not.
            if ncol != len(target_pk) + 1:
                return "primary key", (f"table {table!r} has no PRIMARY KEY in the target, and the "
                                       f"changeset ({ncol} columns) was not recorded by rowid from "
                                       f"its {len(target_pk)} columns"), False
            target_pk = [1, *target_pk]  # a rowid table: _rowid_ is the key
    if not target_pk:
        return "missing", f"the target database has no table {table!r}", True
    if len(target_pk) < ncol:
        return "columns", (f"table {table!r} has {len(target_pk)} columns in the target, the "
                           f"changeset records {ncol}"), True
    min_cols = max((i + 1 for i, p in enumerate(target_pk) if p), default=0)
    if ncol < min_cols or list(pk) != target_pk[:ncol]:
        return "primary key", (f"table {table!r} has a different primary key in the target "
                               f"(target {_pk_text(target_pk)}, changeset {_pk_text(list(pk))})"), True
    return None


def _pk_text(pk: list[int]) -> str:
    cols = [(p, i) for i, p in enumerate(pk) if p]
    return "columns " + ", ".join(str(i) for _, i in sorted(cols)) if cols else "none"


def _coerce(changeset: Any) -> _ChangesetBase:
    if isinstance(changeset, _ChangesetBase):
        return changeset
    if isinstance(changeset, (bytes, bytearray, memoryview)):
        data = bytes(changeset)
        return Patchset(data) if data[:1] == b"P" else Changeset(data)
    raise TypeError(f"expected a Changeset, Patchset or bytes, not {type(changeset).__qualname__}")


def _table_decisions(
    tables: Iterable[str] | None, filter: TableFilter | None, names: Iterable[str]
) -> dict[str, bool]:
    wanted = None
    if tables is not None:
        if isinstance(tables, str):
            raise InterfaceError("tables must be a list of names, not a str")
        wanted = set(tables)
    keep: dict[str, bool] = {}
    for name in names:
        if name in keep:
            continue
        ok = wanted is None or name in wanted
        if ok and filter is not None:
            ok = bool(filter(name))  # raises before anything is applied
        keep[name] = ok
    return keep


class _Plan:
    """What the pre-pass found: counts, decisions, problems."""

    def __init__(self, con: Connection, sections: list[Any], tables: Iterable[str] | None,
                 filter: TableFilter | None, strict: bool, report: ApplyReport) -> None:
        self.keep = _table_decisions(tables, filter, (s[0] for s in sections))
        checked: dict[tuple[str, int, bytes], tuple[str, str, bool] | None] = {}
        for table, ncol, pk, n_ins, n_upd, n_del in sections:
            counts = (("INSERT", n_ins), ("UPDATE", n_upd), ("DELETE", n_del))
            for op, n in counts:
                if n:
                    report.changes[_key(table, op)] += n
            if not self.keep[table]:
                for op, n in counts:
                    if n:
                        report.skipped[_key(table, op)] += n
                continue
            sig = (table, ncol, pk)
            if sig not in checked:
                checked[sig] = _schema_problem(con, table, ncol, pk)
            problem = checked[sig]
            if problem is None:
                continue
            reason, message, sqlite_skips = problem
            if strict:
                raise SchemaMismatch(f"{message}; nothing was applied (strict=False leaves it to "
                                     "SQLite)", table, reason)
            if not sqlite_skips:
                continue  # SQLite applies it anyway (by rowid)
            report.mismatched.setdefault(table, reason)
            for op, n in counts:
                if n:
                    report.skipped[_key(table, op)] += n
        self.needs_filter = not all(self.keep.values())


def _run_apply(ctx: _ApplyContext, cdb: Any, data: bytes, flags: int, want_rebase: bool) -> bytes | None:
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


def _finish_report(report: ApplyReport, ctx: _ApplyContext, kind: type[_ChangesetBase]) -> None:
    report.omitted.update(ctx.omitted)
    report.replaced.update(+ctx.replaced)
    report.conflicts.update(ctx.conflicts)
    for key, n in report.changes.items():
        applied = n - report.skipped.get(key, 0) - ctx.omitted.get(key, 0)
        if applied:
            report.applied[key] = applied
    report.rejected = ctx.rejected(kind)


def apply(
    changeset: _ChangesetBase | bytes,
    con: Connection,
    on_conflict: OnConflict = None,
    tables: Iterable[str] | None = None,
    filter: TableFilter | None = None,
    no_savepoint: bool = False,
    invert: bool = False,
    ignore_noop: bool = False,
    fk_noaction: bool = False,
    strict: bool = True,
    collect_rejected: bool = False,
    rebase: bool = False,
) -> ApplyReport:
    """Apply a changeset or patchset to ``con``'s main database.

    Args:
        on_conflict: ``sss.OMIT`` or ``sss.ABORT`` for every conflict; a dict
            with :class:`ConflictType` keys (per type) and/or table-name keys
            (an action, or a per-type dict, for that table); or a callable
            ``(Conflict) -> action``.  Unlisted conflicts ABORT (the default).
            REPLACE is only valid for DATA and CONFLICT: other pairings raise
            :class:`ConflictPolicyError` before anything is applied (a callable
            returning one raises it after the apply was rolled back).
        tables: apply only these tables' changes.
        filter: ``filter(table) -> bool``: apply only tables it accepts
            (called once per table, before anything is applied).
        no_savepoint: do not wrap the apply in a savepoint: an abort then
            leaves the changes made so far in place (roll your own transaction
            back to undo them).
        invert: apply the inverse (changesets only).
        ignore_noop: do not report conflicts for changes already in place.
        fk_noaction: treat foreign key actions as NO ACTION while applying.
        strict: raise :class:`SchemaMismatch` (applying nothing) when the
            target lacks a table or its shape differs; False skips such tables
            silently, as SQLite does, and lists them in the report.
        collect_rejected: put the changes omitted by conflicts into
            ``report.rejected``.
        rebase: return SQLite's rebase data in ``report.rebase``.

    Raises:
        ConflictAbort: a conflict was resolved with ABORT (rolled back).
        ChangesetError: the changeset is corrupt (nothing applied).
        SchemaMismatch: strict mode and the target's schema differs.

    An exception raised by ``on_conflict`` or ``filter`` comes out as itself,
    with the target as it was before.

    Calls ``sqlite3changeset_apply_v2``.
    """
    cs = _coerce(changeset)
    if invert:
        cs._require_invertible()
    policy = _Policy(on_conflict)
    if filter is not None and not callable(filter):
        raise InterfaceError(f"filter must be callable, not {type(filter).__qualname__}")
    if invert and collect_rejected:
        # SQLite cannot collect changes from an inverting iterator: invert first.
        assert isinstance(cs, Changeset)  # patchsets were refused above
        cs, invert = cs.invert(), False
    report = ApplyReport()
    kind = type(cs)
    if len(cs) > _native.MAX_BLOB:
        with _Source(cs) as source:
            return _apply_chunks(source, con, policy, tables, filter, no_savepoint, invert,
                                 ignore_noop, fk_noaction, strict, collect_rejected, rebase, kind)
    with con._use() as cdb:
        plan = _Plan(con, _summary(cs), tables, filter, strict, report)
        ctx = _ApplyContext(policy, plan.keep, collect_rejected)
        ctx.needs_filter = plan.needs_filter
        if not cs:
            report.rejected = ctx.rejected(kind)
            report.rebase = b"" if rebase else None
            return report
        report.rebase = _run_apply(ctx, cdb, cs, _flags(no_savepoint, invert, ignore_noop, fk_noaction),
                                   rebase)
        if rebase and report.rebase is None:
            report.rebase = b""
        _finish_report(report, ctx, kind)
    return report


# -- streaming ---------------------------------------------------------------

#: Changes per chunk when applying a stream.
STREAM_APPLY_CHUNK = 20_000


class _Source:
    """A stream iterator over a Reader, finalized on exit."""

    def __init__(self, source: Any) -> None:
        self.reader = Reader(source)
        out = ffi.new("sqlite3_changeset_iter **")
        rc = lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, self.reader.handle, 0)
        check_rc(rc, "starting to read the stream")
        self.it = out[0]

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.it is not None:
            lib.sqlite3changeset_finalize(self.it)
            self.it = None

    def next_chunk(self, max_changes: int) -> tuple[bytes, bool]:
        """Up to max_changes changes as one blob, and whether the end was reached."""
        grp_out = ffi.new("sqlite3_changegroup **")
        check_rc(lib.sqlite3changegroup_new(grp_out), "reading the stream")
        grp = grp_out[0]
        try:
            n = ffi.new("int *")
            rc = lib.sss_changegroup_fill(self.it, grp, max_changes, n)
            self.reader.reraise()
            if rc != lib.SQLITE_ROW and rc != lib.SQLITE_DONE:
                check_rc(rc, "reading the stream")
            size = ffi.new("int *")
            p = ffi.new("void **")
            orc = lib.sqlite3changegroup_output(grp, size, p)
            blob = take_blob(size, p)
            check_rc(orc, "reading the stream")
            return blob, rc == lib.SQLITE_DONE
        finally:
            lib.sqlite3changegroup_delete(grp)


def _apply_chunks(source: _Source, con: Connection, policy: _Policy, tables: Iterable[str] | None,
                  filter: TableFilter | None, no_savepoint: bool, invert: bool, ignore_noop: bool,
                  fk_noaction: bool, strict: bool, collect_rejected: bool, want_rebase: bool,
                  kind: type[_ChangesetBase] | None) -> ApplyReport:
    report = ApplyReport()
    rebases: list[bytes] = []
    flags = _flags(True, invert, ignore_noop, fk_noaction)
    with con._use() as cdb:
        if not no_savepoint:
            _exec(cdb, "SAVEPOINT sss_apply_stream")
        try:
            keep: dict[str, bool] = {}
            ctx = _ApplyContext(policy, keep, collect_rejected)
            chunk, done = source.next_chunk(STREAM_APPLY_CHUNK)
            while chunk:
                if kind is None:
                    kind = Patchset if chunk[:1] == b"P" else Changeset
                nxt, nxt_done = (b"", True) if done else source.next_chunk(STREAM_APPLY_CHUNK)
                # A chunk's sections are checked (schema, filter) before it is
                # applied; the outer savepoint makes a failure undo them all.
                plan = _Plan(con, _summary(chunk), tables, filter, strict, report)
                keep.update(plan.keep)
                ctx.needs_filter = plan.needs_filter
                ctx.fk_interim = bool(nxt)
                r = _run_apply(ctx, cdb, chunk, flags, want_rebase)
                if r:
                    rebases.append(r)
                chunk, done = nxt, nxt_done
            if ctx.fk_seen and not ctx.fk_interim:
                _final_fk_check(ctx, cdb, con)
            _finish_report(report, ctx, kind or Changeset)
        except BaseException:
            if not no_savepoint:
                _exec(cdb, "ROLLBACK TO sss_apply_stream; RELEASE sss_apply_stream", check=False)
            raise
        if not no_savepoint:
            _exec(cdb, "RELEASE sss_apply_stream")
    report.rebase = b"".join(rebases) if want_rebase else None
    return report


def _final_fk_check(ctx: _ApplyContext, cdb: Any, con: Connection) -> None:
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


def _exec(cdb: Any, sql: str, check: bool = True) -> None:
    rc = lib.sqlite3_exec(cdb, sql.encode(), NULL, NULL, NULL)
    if check and rc != lib.SQLITE_OK:
        raise error_from_db(cdb, rc, sql)


def apply_stream(
    source: BinaryIO | bytes,
    con: Connection,
    on_conflict: OnConflict = None,
    tables: Iterable[str] | None = None,
    filter: TableFilter | None = None,
    no_savepoint: bool = False,
    invert: bool = False,
    ignore_noop: bool = False,
    fk_noaction: bool = False,
    strict: bool = True,
    collect_rejected: bool = False,
    rebase: bool = False,
) -> ApplyReport:
    """Apply a changeset or patchset read from a binary file object, in
    bounded memory (for changesets larger than memory or 2 GiB).

    The stream is read and applied in chunks of :data:`STREAM_APPLY_CHUNK`
    changes inside one savepoint, so it is all-or-nothing like :func:`apply`,
    with the same arguments.  Differences: each chunk is checked (schema,
    filter) just before it is applied, so a mismatch late in the stream is
    found after earlier chunks were applied (and rolled back);
    ``collect_rejected`` keeps the rejected changes in memory; a FOREIGN_KEY
    conflict left by an earlier chunk is
    decided at the end with ``PRAGMA foreign_key_check``, which counts every
    violation in the database, including ones that were there before.

    Calls ``sqlite3changeset_start_v2_strm``, then per chunk
    ``sqlite3changegroup_add_change`` and ``sqlite3changeset_apply_v2``.
    """
    policy = _Policy(on_conflict)
    if filter is not None and not callable(filter):
        raise InterfaceError(f"filter must be callable, not {type(filter).__qualname__}")
    if invert and collect_rejected:
        raise InterfaceError("apply_stream cannot collect rejected changes while inverting: "
                             "invert the stream first (invert_stream)")
    with _Source(source) as src:
        return _apply_chunks(src, con, policy, tables, filter, no_savepoint, invert, ignore_noop,
                             fk_noaction, strict, collect_rejected, rebase, None)

