"""Commands that look at the data itself: ``sql``, ``tables``, ``schema``.

``sql`` only reads unless told otherwise: ``--write`` runs the statement as
one admitted write (under the lock, recorded in the audit log), ``--migrate``
runs a schema change as a logged migration.  A write that bypassed the log
would make the log disagree with the data.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlite_session_safe as sss

from ...coordination.audit import RESERVED_PREFIX
from ._base import CliError, ExitCode, Output, open_db
from ._render import literal

__all__ = ["register"]

#: Rows the table layout measures before printing (later rows keep the widths).
_MEASURE = 1000


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return literal(value)


def _aligned(value: Any, width: int) -> str:
    text = _cell(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return text.rjust(width) if numeric else text.ljust(width)


def print_table(out: Output, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Rows as aligned columns (numbers to the right), a header and a count;
    returns the number of rows.  Widths come from the first rows, so a huge
    result streams instead of waiting for its end."""
    it = iter(rows)
    head = list(itertools.islice(it, _MEASURE))
    widths = [len(c) for c in columns]
    for row in head:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(_cell(value)))
    out.line("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    out.line("  ".join("-" * w for w in widths))
    count = 0
    for row in itertools.chain(head, it):
        out.line("  ".join(_aligned(v, w) for v, w in zip(row, widths, strict=True)).rstrip())
        count += 1
    out.line(f"({count} row{'' if count == 1 else 's'})")
    return count


def _json_rows(out: Output, doc: dict[str, Any], columns: Sequence[str],
               rows: Iterable[Sequence[Any]]) -> None:
    """One JSON object whose ``rows`` array is written row by row."""
    if len(set(columns)) != len(columns):
        twice = sorted({c for c in columns if list(columns).count(c) > 1})
        raise CliError(f"the result has more than one column named {', '.join(map(repr, twice))}: "
                       "name them apart with AS (JSON rows are objects keyed by column name)",
                       ExitCode.USAGE)
    opening = out.dumps({**doc, "columns": list(columns), "rows": []})
    assert opening.endswith("[]}")
    out.write(opening[:-2])
    for i, row in enumerate(rows):
        out.write(("" if i == 0 else ", ") + out.dumps(dict(zip(columns, row, strict=True))))
    out.write("]}\n")
    out.flush()


def _params(pairs: list[list[str]] | None) -> dict[str, str]:
    return {name.lstrip(":@$"): value for name, value in (pairs or [])}


def _columns(cursor: sss.Cursor) -> list[str]:
    return [d[0] for d in cursor.description or ()]


def _show_rows(out: Output, doc: dict[str, Any], columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    if out.json:
        _json_rows(out, doc, columns, rows)
    elif columns:
        print_table(out, columns, rows)


_READ_ONLY = ("'sql' only reads unless told to write: --write runs the statement as one logged "
              "write (under the lock, in the audit log); --migrate runs a schema change (CREATE, "
              "ALTER, DROP) as a logged migration")


def cmd_sql(args: argparse.Namespace, out: Output) -> int:
    try:
        return _sql(args, out)
    except sss.SQLError as e:  # a mistake in the statement (syntax, no such table, ...)
        raise CliError(f"{e}; 'sqlite-session-safe tables {args.database}' lists the tables and their "
                       "columns", ExitCode.USAGE) from e


def _sql(args: argparse.Namespace, out: Output) -> int:
    params = _params(args.param)
    if args.write and args.migrate:
        raise CliError("--write and --migrate exclude each other: --migrate is for schema changes",
                       ExitCode.USAGE)
    doc: dict[str, Any] = {"command": "sql", "database": args.database}
    if not (args.write or args.migrate):
        with open_db(args, args.database, looking=True) as db, db.read() as r:
            try:
                cursor = r.execute(args.query, params)
                _show_rows(out, {**doc, "seq": None}, _columns(cursor), cursor)
            except sss.ReadOnlyError as e:
                raise CliError(f"this statement changes the database: {_READ_ONLY}", ExitCode.USAGE) from e
        return ExitCode.OK
    label = args.label or ("sql" if args.write else "migration")
    with open_db(args, args.database) as db:
        if args.migrate:
            result = db.migrate(args.query, label=label)
            columns: list[str] = []
            rows: list[Sequence[Any]] = []
        else:
            def run(tx: sss.WriteTx) -> tuple[list[str], list[Sequence[Any]]]:
                cursor = tx.execute(args.query, params)
                return _columns(cursor), list(cursor.fetchall())  # RETURNING rows, if any

            try:
                result = db.write(run, label=label)
            except sss.SchemaChangeInWrite as e:
                raise CliError("this statement changes the schema: run it with --migrate instead of "
                               "--write (a schema change is logged as a migration)", ExitCode.USAGE) from e
            columns, rows = result.value
    changes = sum(1 for _ in result.changeset)
    doc.update(seq=result.seq, change_count=changes, label=label)
    _show_rows(out, doc, columns, rows)
    if result.seq is None:
        out.line("nothing changed, nothing logged")
    else:
        what = "migration" if args.migrate else f"{changes} change(s)"
        out.line(f"logged as seq {result.seq} ({what}, label {label!r})")
    if out.json and not columns:
        out.document({**doc, "columns": [], "rows": []})
    return ExitCode.OK


# -- tables, schema -------------------------------------------------------------


def _objects(r: sss.ReadTx, everything: bool) -> Iterator[tuple[str, str, str, str | None]]:
    """(type, name, table, sql) of the schema, tables first; without
    ``everything`` neither SQLite's own nor this package's (``_sss_``)."""
    reserved = RESERVED_PREFIX.replace("_", "\\_")
    hide = "" if everything else (
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name NOT LIKE ? ESCAPE '\\'")
    params = () if everything else (reserved + "%",)
    yield from r.execute(
        f"SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE 1 {hide} "
        "ORDER BY tbl_name, CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 ELSE 2 END, name",
        params)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def cmd_tables(args: argparse.Namespace, out: Output) -> int:
    found: list[dict[str, Any]] = []
    with open_db(args, args.database, looking=True) as db, db.read() as r:
        for kind, name, _table, sql in list(_objects(r, args.all)):
            if kind not in ("table", "view"):
                continue
            virtual = kind == "table" and str(sql or "").upper().startswith("CREATE VIRTUAL")
            info = r.execute("SELECT name, pk FROM pragma_table_info(?)", (name,)).fetchall()
            pk = [str(c) for c, n in sorted(((c, n) for c, n in info if n), key=lambda x: x[1])]
            count = None
            if args.count:
                row = r.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()
                count = int(row[0]) if row is not None else None
            found.append({"name": name, "type": "virtual table" if virtual else kind,
                          "columns": [str(c) for c, _ in info], "primary_key": pk, "rows": count})
    out.document({"command": "tables", "database": args.database, "tables": found})
    if not found:
        out.line("no tables")
        return ExitCode.OK
    header = ["name", "type", *(["rows"] if args.count else []), "primary key", "columns"]
    rows = []
    for t in found:
        if t["type"] != "table":
            key = "-"
        else:
            key = ", ".join(t["primary_key"]) or "(none: writes to it are not recorded)"
        rows.append([t["name"], t["type"], *([t["rows"]] if args.count else []), key,
                     ", ".join(t["columns"])])
    print_table(out, header, rows)
    return ExitCode.OK


def cmd_schema(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database, looking=True) as db, db.read() as r:
        objects = [o for o in _objects(r, args.all or bool(args.table)) if o[3]]
    if args.table:
        known = {o[2] for o in objects}
        unknown = [t for t in args.table if t not in known]
        if unknown:
            raise CliError(f"no table named {', '.join(map(repr, unknown))} in {args.database!r}; "
                           f"'sqlite-session-safe tables {args.database}' lists them", ExitCode.BAD_INPUT)
        objects = [o for o in objects if o[2] in args.table]
    out.document({"command": "schema", "database": args.database,
                  "objects": [{"type": k, "name": n, "table": t, "sql": q} for k, n, t, q in objects]})
    if not out.json:
        out.binary_safe()  # SQL for the sqlite3 shell: UTF-8 whatever the code page
    for _kind, _name, _table, sql in objects:
        out.line(f"{sql};")
    return ExitCode.OK


# -- registration ---------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sql", parents=[common], help="run a query and print its rows (a table, or --json)",
        description="Run one SQL statement and print its rows as a table (numbers aligned right, "
                    "NULL as NULL, BLOBs as x'..'), or with --json as one object whose 'rows' are "
                    "objects keyed by column name. Only reads, in a consistent snapshot; "
                    "--write runs a statement that changes rows as one write under the lock, "
                    "recorded in the audit log, and --migrate runs schema changes (CREATE, ALTER, "
                    "DROP) as a logged migration.")
    p.add_argument("database", help="the database file")
    p.add_argument("query", metavar="SQL", help="the statement, e.g. \"SELECT * FROM item LIMIT 5\"")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a value for :NAME in the statement (repeatable; passed as text)")
    p.add_argument("--write", action="store_true", help="run it as one logged write")
    p.add_argument("--migrate", action="store_true", help="run a schema change as a logged migration")
    p.add_argument("--label", help="the audit log entry's label (default: sql, or migration)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser(
        "tables", parents=[common], help="list tables and views, their columns and primary keys",
        description="List the tables and views (not this package's own _sss_ tables unless "
                    "--all): columns and primary key. Writes to a table without a primary key "
                    "cannot be recorded in the audit log (SQLite's sessions need one).")
    p.add_argument("database", help="the database file")
    p.add_argument("--count", action="store_true", help="also count each table's rows")
    p.add_argument("--all", action="store_true", help="include sqlite_ and _sss_ tables")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "schema", parents=[common], help="print the CREATE statements (SQL for sqlite3)",
        description="Print the schema as SQL, one statement per object ending in ';' (tables, "
                    "then their indexes, triggers and views), UTF-8, ready for the sqlite3 shell. "
                    "Name tables to see only theirs.")
    p.add_argument("database", help="the database file")
    p.add_argument("table", nargs="*", help="only these tables (and their indexes and triggers)")
    p.add_argument("--all", action="store_true", help="include this package's _sss_ tables")
    p.set_defaults(func=cmd_schema)
