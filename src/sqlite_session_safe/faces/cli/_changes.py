"""Commands about changesets: ``show``, ``diff``, ``apply``."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import sqlite_session_safe as sss

from ...coordination import tempfiles
from ...coordination.audit import RESERVED_PREFIX
from ...coordination.bundles import MAGIC
from ...sessions.stream import summarize_stream
from ._base import (
    CONFLICT_CHOICES,
    CliError,
    ExitCode,
    Output,
    conflict_policy,
    open_db,
    raw_readonly,
    require_file,
)
from ._copies import show_bundle  # bundles: their own module
from ._render import changes_doc, count_changes, open_json, print_sql, show_changes, write_changes_json

__all__ = ["register", "read_changeset", "write_atomically"]


def read_changeset(path: str) -> sss.Changeset | sss.Patchset:
    """The changeset (or patchset) in the file at ``path``, validated: a
    corrupt or truncated file raises :class:`CliError` (bad input)."""
    require_file(path, "changeset file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        cs: sss.Changeset | sss.Patchset = sss.Patchset(data) if data[:1] == b"P" else sss.Changeset(data)
        cs.validate()
    except sss.ChangesetError as e:
        raise CliError(f"{path!r} is not a valid changeset: {e}", ExitCode.BAD_INPUT) from e
    return cs


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so
    ``path`` is either the old file or the whole new one."""
    with tempfiles.written_atomically(path, "the output file") as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def _names(path: str | None) -> Iterator[sss.Connection | None]:
    """A read-only connection to take column names from (None: positions)."""
    if path is None:
        yield None
        return
    with raw_readonly(path) as con:
        yield con


def _changeset_doc(cs: sss.Changeset | sss.Patchset, con: sss.Connection | None,
                   decode: bool = True) -> dict[str, Any]:
    counts = count_changes(cs)
    doc: dict[str, Any] = {
        "kind": "patchset" if isinstance(cs, sss.Patchset) else "changeset",
        "bytes": len(cs), "change_count": sum(counts.values()), "tables": counts,
    }
    if decode:
        doc["changes"] = changes_doc(cs, con)
    return doc


def _summary_line(doc: dict[str, Any]) -> str:
    tables = ", ".join(f"{t} {n}" for t, n in doc["tables"].items()) or "no tables"
    return f"{doc['kind']}, {doc['bytes']} bytes, {doc['change_count']} change(s): {tables}"


# -- show ---------------------------------------------------------------------


def _looks_like_changeset(data: bytes) -> bool:
    return data[:1] in (b"", b"T", b"P")


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    require_file(args.file, "file")
    if args.sql and args.db is None:
        raise CliError("--sql needs --db DATABASE: the statements name columns, and their names "
                       "come from that database", ExitCode.USAGE)
    with open(args.file, "rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3\0"):
        raise CliError(f"{args.file!r} is a SQLite database, not a changeset or bundle; to see its "
                       f"changes: sqlite-session-safe log {args.file} --changes", ExitCode.BAD_INPUT)
    if not _looks_like_changeset(head) and not head.startswith(MAGIC):
        raise CliError(f"{args.file!r} is neither a changeset (as 'diff -o' writes) nor a bundle (as "
                       "'export' writes); check that you gave the right file", ExitCode.BAD_INPUT)
    with _names(args.db) as con:
        if not _looks_like_changeset(head):
            return show_bundle(args, out, con)
        if args.sql and not out.json:
            print_sql(out, [read_changeset(args.file)], con, args.db)
        else:
            _show_streamed(args, out, con, head[:1])
    return ExitCode.OK


def _show_streamed(args: argparse.Namespace, out: Output, con: sss.Connection | None, head: bytes) -> None:
    """``show`` of a changeset file of any size in bounded memory: a C pass
    counts the changes per table (the summary line comes first), then the
    changes are read from the file, formatted in C and printed a chunk at a
    time."""
    with open(args.file, "rb") as f:
        try:
            count, sections = summarize_stream(f)
        except sss.ChangesetError as e:
            raise CliError(f"{args.file!r} is not a valid changeset: {e}", ExitCode.BAD_INPUT) from e
        tables: dict[str, int] = {}
        for table, _, _, ins, upd, dels in sections:
            tables[table] = tables.get(table, 0) + ins + upd + dels
        doc = {"kind": "patchset" if head == b"P" else "changeset", "bytes": os.fstat(f.fileno()).st_size,
               "change_count": count, "tables": tables}
        f.seek(0)
        if out.json:
            # One JSON object, written as the changes are formatted.
            open_json(out, {"command": "show", "file": args.file, **doc}, "changes")
            write_changes_json(out, f, con)
            out.write("]}\n")
            out.flush()
            return
        out.line(f"{args.file}: {_summary_line(doc)}")
        out.flush()
        show_changes(out, f, con)


# -- diff ---------------------------------------------------------------------

_USER_TABLES = r"""
SELECT name FROM {schema}.sqlite_schema
WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
  AND name NOT LIKE '{reserved}%' ESCAPE '\'
  AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%'
ORDER BY name
"""


def _tables(con: sss.Connection, schema: str) -> list[str]:
    reserved = RESERVED_PREFIX.replace("_", "\\_")
    return [r[0] for r in con.execute(_USER_TABLES.format(schema=schema, reserved=reserved))]


def _has_primary_key(con: sss.Connection, table: str) -> bool:
    rows = con.execute("SELECT pk FROM pragma_table_info(?, 'main')", (table,)).fetchall()
    return any(r[0] for r in rows)


def cmd_diff(args: argparse.Namespace, out: Output) -> int:
    require_file(args.source)
    with raw_readonly(args.target) as con:
        con.execute("ATTACH DATABASE ? AS sss_from", (os.path.abspath(require_file(args.source)),))
        here, there = _tables(con, "main"), _tables(con, "sss_from")
        skipped: dict[str, str] = {}
        for name in sorted(set(here) ^ set(there)):
            where = args.target if name in here else args.source
            skipped[name] = f"only in {where} (a changeset cannot create or drop tables)"
        wanted = [t for t in here if t in there]
        if args.table:
            unknown = sorted(set(args.table) - set(wanted))
            if unknown:
                raise CliError(f"table(s) not in both databases: {', '.join(unknown)}", ExitCode.BAD_INPUT)
            wanted = [t for t in wanted if t in args.table]
            skipped = {t: why for t, why in skipped.items() if t in args.table}
        diffed = []
        for name in wanted:
            if not _has_primary_key(con, name):
                skipped[name] = "no PRIMARY KEY (the session module cannot match its rows)"
            else:
                diffed.append(name)
        with sss.Session(con, tables=diffed) as session:
            for name in list(diffed):
                try:
                    session.diff("sss_from", name)
                except sss.SchemaChangeError as e:
                    skipped[name] = f"columns or primary key differ: {e}"
                    diffed.remove(name)
            cs = session.changeset()
        if not diffed:
            why = "; ".join(f"{t}: {reason}" for t, reason in sorted(skipped.items())[:5])
            raise CliError(f"nothing to compare: no table is in both databases with the same "
                           f"columns and a primary key ({why or 'neither has tables'})",
                           ExitCode.BAD_INPUT)
        doc = _changeset_doc(cs, con, decode=args.output is None)
        if args.output is not None:
            write_atomically(args.output, bytes(cs))
        out.document({"command": "diff", "from": args.source, "to": args.target, "output": args.output,
                      "tables_compared": diffed, "skipped": skipped, **doc})
        if doc["change_count"]:
            out.line(f"changes turning {args.source} into {args.target}: {_summary_line(doc)}")
        else:
            out.line(f"no differences in the {len(diffed)} table(s) compared: {', '.join(diffed)}")
        for name, why in sorted(skipped.items()):
            out.line(f"  skipped {name}: {why}")
        if args.output is not None:
            out.line(f"written to {args.output}")
        else:
            show_changes(out, cs, con)
    return ExitCode.FAILED if args.exit_code and doc["change_count"] else ExitCode.OK


# -- apply --------------------------------------------------------------------


def apply_report_doc(report: sss.ApplyReport) -> dict[str, Any]:
    """An ApplyReport as the JSON the apply-like commands print."""
    return {
        "applied": report.total_applied,
        "omitted": report.total_omitted,
        "replaced": sum(report.replaced.values()),
        "conflicts": {t.name: n for t, n in report.conflicts.items()},
        "by_table": report.by_table(),
    }


def cmd_apply(args: argparse.Namespace, out: Output) -> int:
    cs = read_changeset(args.file)
    policy = conflict_policy(args.on_conflict)
    with open_db(args, args.database) as db:
        def run(tx: sss.WriteTx) -> sss.ApplyReport:
            # The apply runs on the admitted write's own connection, so the
            # write's session records what it changed into the audit log.
            return cs.apply(tx.connection, on_conflict=policy)

        result = db.write(run, label=args.label)
    report: sss.ApplyReport = result.value
    doc = {"command": "apply", "database": args.database, "file": args.file, "seq": result.seq,
           **apply_report_doc(report)}
    out.document(doc)
    seq = f"logged as seq {result.seq}" if result.seq is not None else "nothing changed, nothing logged"
    out.line(f"applied {doc['applied']} change(s), omitted {doc['omitted']}, "
             f"replaced {doc['replaced']}; {seq}")
    for name, n in doc["conflicts"].items():
        out.line(f"  {n} {name} conflict(s) ({args.on_conflict})")
    return ExitCode.OK


# -- registration ---------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "show", parents=[common], help="decode a changeset, patchset or bundle file",
        description="Decode a changeset or patchset file (as written by diff -o, or "
                    "bytes(changeset)), or a bundle file (export), one change per line. Column "
                    "names come from --db; without it columns are numbered.")
    p.add_argument("file", help="the changeset, patchset or bundle file")
    p.add_argument("--db", metavar="DATABASE", help="take column names from this database")
    p.add_argument("--sql", action="store_true",
                   help="print only SQL statements (in one transaction, UTF-8), ready to pipe into "
                        "the sqlite3 shell; needs --db")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "diff", parents=[common], help="the changeset that turns one database into another",
        description="Compute, with SQLite's session diff, the changeset that turns FROM into TO, "
                    "table by table (tables in both, with the same columns and primary key). "
                    "Write it to a file with -o, or print it. Tables only in one database, or "
                    "without a primary key, are listed as skipped; when no table can be compared "
                    "it fails (exit 4).")
    p.add_argument("source", metavar="FROM", help="the database the changes start from")
    p.add_argument("target", metavar="TO", help="the database they lead to")
    p.add_argument("-o", "--output", metavar="FILE", help="write the changeset to FILE")
    p.add_argument("--table", action="append", metavar="NAME", help="only this table (repeatable)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit with 1 when there are differences (0 when none)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "apply", parents=[common], help="apply a changeset file as one logged write",
        description="Apply a changeset (or patchset) file to a database as one admitted write: "
                    "under the lock, recorded in the audit log. Conflicts follow --on-conflict: "
                    "abort (default: nothing changes, exit 1), omit (skip conflicting changes), "
                    "replace (overwrite differing or existing rows, skip missing ones). The "
                    "changeset must fit the database's tables (else exit 4).")
    p.add_argument("database", help="the database file")
    p.add_argument("file", help="the changeset file")
    p.add_argument("--on-conflict", choices=CONFLICT_CHOICES, default="abort")
    p.add_argument("--label", help="the audit log entry's label (default: apply)", default="apply")
    p.set_defaults(func=cmd_apply)
