"""The pass over a changeset before it is applied (steps 2 and 3 of
:mod:`.apply`'s docstring): its table sections and their counts, the table
filter's decisions, and strict mode's schema checks.  Nothing is applied
here, so an error found here leaves the target as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..binding.changeset_iter import Section, summarize
from ..binding.errors import InterfaceError
from .errors import SchemaMismatch
from .options import ApplyOptions
from .policy import TableFilter
from .report import ApplyReport

if TYPE_CHECKING:
    from ..binding.connection import Connection

__all__ = ["Plan", "summary"]


def _key(table: str, op: str) -> tuple[str, str]:
    return (table, op)


def summary(data: bytes) -> list[Section]:
    """The table sections of ``data`` (see sss_changeset_summary)."""
    if not data:
        return []
    return summarize(data, "reading the changeset")[1]


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


class Plan:
    """What the pre-pass found: counts (added to ``report``), the table
    decisions (``keep``: table -> apply it), problems (raised in strict mode,
    else added to ``report``)."""

    def __init__(self, con: Connection, sections: list[Any], options: ApplyOptions,
                 report: ApplyReport) -> None:
        self.keep = _table_decisions(options.tables, options.filter, (s[0] for s in sections))
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
            if options.strict:
                raise SchemaMismatch(f"{message}; nothing was applied (strict=False leaves it to "
                                     "SQLite)", table, reason)
            if not sqlite_skips:
                continue  # SQLite applies it anyway (by rowid)
            report.mismatched.setdefault(table, reason)
            for op, n in counts:
                if n:
                    report.skipped[_key(table, op)] += n
        self.needs_filter = not all(self.keep.values())
