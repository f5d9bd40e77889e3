"""Commands that copy a database or its changes elsewhere, or take a change
back: ``backup``, ``replicate``, ``prune``, ``export``, ``import``, ``undo``; and
bundles for ``show``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlite_session_safe as sss

from ...coordination.jetstream import is_stream_url
from ._base import (
    CONFLICT_CHOICES,
    CliError,
    ExitCode,
    Output,
    ProgressBar,
    conflict_policy,
    open_db,
    require_file,
    whole_number,
)
from ._render import SPOOL_ABOVE, entry_doc, open_json, print_sql, show_entry, spool, write_entry_json

__all__ = ["register", "show_bundle"]


# -- backup -------------------------------------------------------------------

_METHODS = ("backup", "vacuum-into", "copy-under-lock")


def cmd_backup(args: argparse.Namespace, out: Output) -> int:
    bar = ProgressBar(args.progress, "backup", out.err)
    with open_db(args, args.database) as db:
        try:
            if args.method == "backup":
                result = db.backup(args.dest, progress=bar, pages=args.pages)
            elif args.method == "vacuum-into":
                result = db.vacuum_into(args.dest)
            else:
                result = db.copy_under_lock(args.dest)
        finally:
            bar.finish()
    doc = {"command": "backup", "database": args.database, "path": result.path, "method": result.method,
           "seq": result.seq, "integrity": result.integrity, "size": result.size,
           "duration": round(result.duration, 6)}
    out.document(doc)
    out.line(f"backup written to {result.path}: {result.size} bytes, log position {result.seq}, "
             f"integrity_check {result.integrity} ({result.method}, {result.duration:.2f}s)")
    return ExitCode.OK


# -- replication, bundles, undo --------------------------------------------------


def _policy(name: str) -> Any:
    """``--on-conflict`` for replicate/import/undo: ``abort`` is their
    default (None), which refuses listing every conflicting row."""
    return None if name == "abort" else conflict_policy(name)


def report_doc(report: sss.ReplicationReport) -> dict[str, Any]:
    """A ReplicationReport as JSON (``conflicts``: one object per row)."""
    doc = dataclasses.asdict(report)
    doc["conflicts"] = [dataclasses.asdict(row) for row in report.conflicts]
    return doc


def _report_line(report: sss.ReplicationReport) -> str:
    extra = ""
    if report.omitted or report.conflicts:
        extra = f", {report.omitted} change(s) omitted, {len(report.conflicts)} conflict(s) resolved"
    if report.skipped:
        extra += f", {report.skipped} already applied"
    return (f"applied {report.applied} entr{'y' if report.applied == 1 else 'ies'} "
            f"({report.changes} change(s)){extra}; replica at seq {report.last_seq}, lag {report.lag}")


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM (``--follow`` ends cleanly after the
    round in progress, its cursor committed)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _endpoint(args: argparse.Namespace, value: str, create: bool = False) -> Iterator[Any]:
    """A database opened as the other commands open it, or a NATS stream URL
    as it is (replicate and follow connect to it themselves)."""
    if is_stream_url(value):
        yield value
        return
    with open_db(args, value, create=create) as db:
        yield db


def cmd_replicate(args: argparse.Namespace, out: Output) -> int:
    policy = _policy(args.on_conflict)
    stream = {"nats_context": args.nats_context}
    with _endpoint(args, args.source) as source, _endpoint(args, args.replica, create=True) as replica:
        if not args.follow:
            report = sss.replicate(source, replica, on_conflict=policy, batch=args.batch, **stream)
            out.document({"command": "replicate", "source": args.source, "replica": args.replica,
                          "follow": False, **report_doc(report)})
            out.line(_report_line(report))
            return ExitCode.OK

        def on_report(r: sss.ReplicationReport) -> None:
            out.document({"command": "replicate", "round": True, **report_doc(r)})
            out.line(_report_line(r))
            out.out.flush()

        with _stop_on_signals() as stop:
            how = "as entries arrive" if is_stream_url(args.source) else (
                "on every commit" if is_stream_url(args.replica) else f"every {args.interval:g}s")
            out.note(f"following {args.source} {how}; Ctrl-C or SIGTERM stops")
            total = sss.follow(source, replica, interval=args.interval, stop=stop, on_conflict=policy,
                               batch=args.batch, on_report=on_report, **stream)
    out.document({"command": "replicate", "source": args.source, "replica": args.replica,
                  "follow": True, "round": False, **report_doc(total)})
    out.line(f"stopped; in total {_report_line(total)}")
    return ExitCode.OK


def cmd_prune(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database) as db:
        for location in args.register or ():
            db.register_replica(location, "stream" if is_stream_url(location) else "file")
        for location in args.unregister or ():
            db.unregister_replica(location, "stream" if is_stream_url(location) else "file")
        report = db.prune_log(older_than=args.older_than, through=args.through, dry_run=args.dry_run)
    out.document({"command": "prune", "database": args.database, **dataclasses.asdict(report)})
    verb = "would remove" if report.dry_run else "removed"
    out.line(f"{verb} {report.removed} entr{'y' if report.removed == 1 else 'ies'} "
             f"({report.bytes_removed} bytes); log pruned through {report.pruned_through}, position "
             f"{report.position}, {report.log_bytes} bytes left")
    for name, seq in sorted(report.replicas.items()):
        out.line(f"  {name[len('replica '):]}: "
                 + (f"applied through {seq}" if seq is not None else "unreadable (holds back pruning)"))
    if not report.replicas and args.older_than is None and args.through is None:
        out.line("  no registered replicas: nothing is pruned without --older-than or --through")
    return ExitCode.OK


def cmd_export(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database) as db:
        report = db.export(args.file, since=args.since)
    out.document({"command": "export", "database": args.database, **dataclasses.asdict(report)})
    out.line(f"exported {report.entries} entr{'y' if report.entries == 1 else 'ies'} "
             f"(seq {report.first_seq}..{report.last_seq}) to {report.path}: {report.size} bytes, "
             f"sha256 {report.sha256}")
    return ExitCode.OK


def cmd_import(args: argparse.Namespace, out: Output) -> int:
    require_file(args.file, "bundle")
    with open_db(args, args.replica, create=True) as replica:
        report = sss.import_bundle(replica, args.file, on_conflict=_policy(args.on_conflict),
                                   batch=args.batch)
    out.document({"command": "import", "replica": args.replica, "file": args.file, **report_doc(report)})
    out.line(_report_line(report))
    return ExitCode.OK


def cmd_undo(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database) as db:
        try:
            result = db.undo(args.seq, on_conflict=_policy(args.on_conflict), label=args.label)
        except sss.UndoError as e:
            if e.reason == "ddl":
                raise CliError(
                    f"entry {args.seq} is a migration (a schema change), which has no changeset to "
                    "invert; write the reverse schema change and run it with "
                    f"'sqlite-session-safe sql {args.database} --migrate \"...\"'", ExitCode.BAD_INPUT) from e
            raise
    rows = list(result.value or ())
    doc = {"command": "undo", "database": args.database, "undone": args.seq, "seq": result.seq,
           "change_count": sum(1 for _ in result.changeset), "label": result.label,
           "conflicts": [dataclasses.asdict(r) for r in rows]}
    out.document(doc)
    if result.seq is None:
        out.line(f"undo {args.seq}: nothing left to change (every change was omitted); nothing logged")
    else:
        out.line(f"undid entry {args.seq} with {doc['change_count']} change(s), logged as seq {result.seq}")
    for row in rows:
        out.line(f"  conflict resolved: {row}")
    return ExitCode.OK


def show_bundle(args: argparse.Namespace, out: Output, con: sss.Connection | None) -> int:
    """``show`` for a bundle file (anything that is not a changeset is read
    as one: a file that is neither is refused with the bundle's reason).
    The bundle is verified first, then read one entry at a time."""
    with sss.open_bundle(args.file) as bundle:
        if args.sql and not out.json:
            print_sql(out, (e.changeset if e.changeset is not None else e.sql or ""
                            for e in bundle.entries()), con, args.db)
            return ExitCode.OK
        count = bundle.last_seq - bundle.first_seq + 1
        head = {"command": "show", "file": args.file, "kind": "bundle", "version": bundle.version,
                "source_id": bundle.source_id, "first_seq": bundle.first_seq,
                "last_seq": bundle.last_seq, "created_at": bundle.created_at, "sha256": bundle.sha256}
        out.line(f"{args.file}: bundle v{bundle.version} from database {bundle.source_id}, "
                 f"{count} entries (seq {bundle.first_seq}..{bundle.last_seq}), "
                 f"created {bundle.created_at}, sha256 {bundle.sha256} (verified)")
        # One entry at a time, its changes formatted as written; a large
        # one through a temporary file rather than in memory.
        if out.json:
            open_json(out, head, "entries")
        for i, (entry_head, window) in enumerate(bundle.heads()):
            body = None
            if entry_head.kind == "data" and entry_head.size > SPOOL_ABOVE:
                body = spool(iter(functools.partial(window.read, 1 << 20), b""))
                entry = entry_head.entry()
            else:
                data = window.read(entry_head.size)
                entry = entry_head.entry(sss.Changeset(data)) if entry_head.kind == "data" else \
                    entry_head.entry(None, data.decode("utf-8"))
            try:
                if out.json:
                    out.write(", " if i else "")
                    write_entry_json(out, entry, con, True, body)
                else:
                    show_entry(out, entry, entry_doc(entry, con, False, body), con, True, body)
            finally:
                if body is not None:
                    body.close()
        if out.json:
            out.write("]}\n")
            out.flush()
    return ExitCode.OK


# -- registration ---------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "backup", parents=[common], help="a checked copy of the database (with a progress bar)",
        description="Copy the database into DEST while writers go on, then check the copy with "
                    "PRAGMA integrity_check; DEST appears only once the copy is complete and "
                    "checked. Methods: backup (SQLite's online backup API, the default), "
                    "vacuum-into (a compacted copy), copy-under-lock (a byte copy taken while "
                    "holding the write lock). Progress goes to stderr: a bar when stderr is a "
                    "terminal.")
    p.add_argument("database", help="the database file")
    p.add_argument("dest", help="the copy to write (replaced atomically)")
    p.add_argument("--method", choices=_METHODS, default="backup")
    p.add_argument("--pages", type=int, default=256, metavar="N",
                   help="pages per backup step (method backup; -1: all at once)")
    p.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                   help="auto: a bar when stderr is a terminal, else nothing; plain: a line per 10%%")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "replicate", parents=[common], help="bring a replica up to date with a source (--follow)",
        description="Apply the source's audit log entries after the replica's cursor to the "
                    "replica, exactly once (the cursor moves in the same transaction as each "
                    "apply; an interrupted run resumes where it stopped). Migrations are replayed "
                    "in order, so a new replica file can start empty. --follow keeps going every "
                    "--interval seconds until Ctrl-C or SIGTERM; with --json it prints one JSON "
                    "line per round that applied something and a final total. Rows the replica "
                    "changed itself are conflicts: --on-conflict abort (default: refuse, naming "
                    "every conflicting row, exit 1), omit, or replace.")
    p.add_argument("source", help="the source database (keeps an audit log), or a NATS stream URL "
                                  "nats://host:4222/STREAM to follow")
    p.add_argument("replica", help="the replica database (created if missing), or a NATS stream URL "
                                   "to publish to (created if missing)")
    p.add_argument("--follow", action="store_true", help="keep replicating until stopped")
    p.add_argument("--nats-context", metavar="NAME",
                   help="a nats CLI context (servers, credentials, TLS) for a stream URL")
    p.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                   help="poll interval for --follow (default 0.5)")
    p.add_argument("--batch", type=int, default=256, metavar="N", help="entries per replica transaction")
    p.add_argument("--on-conflict", choices=CONFLICT_CHOICES, default="abort")
    p.set_defaults(func=cmd_replicate)

    p = sub.add_parser(
        "prune", parents=[common], help="remove audit log entries every replica has applied",
        description="Remove the audit log entries every registered replica has applied (replicate "
                    "registers the file and stream replicas of a source it opens), plus those older "
                    "than --older-than seconds and those up to --through, whatever the replicas. The "
                    "newest entry always stays. A replica that needs a pruned entry is refused "
                    "(LogPruned, exit 1): re-seed it from a backup. The file keeps its size (SQLite "
                    "reuses the freed pages); 'backup --method vacuum-into' writes a compact copy.")
    p.add_argument("database", help="the database file")
    p.add_argument("--older-than", type=float, metavar="SECONDS", help="also prune entries this old")
    p.add_argument("--through", type=int, metavar="SEQ", help="also prune entries up to SEQ")
    p.add_argument("--register", action="append", metavar="REPLICA",
                   help="register a replica file or stream URL first (repeatable)")
    p.add_argument("--unregister", action="append", metavar="REPLICA",
                   help="forget a registered replica first (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser(
        "export", parents=[common], help="write log entries to a portable bundle file",
        description="Write the audit log entries after --since to a bundle file (PROTOCOL.md "
                    "section 7: versioned, checksummed), for 'import' on another machine.")
    p.add_argument("database", help="the database file")
    p.add_argument("file", help="the bundle file to write (replaced atomically)")
    p.add_argument("--since", type=whole_number, default=0, metavar="SEQ", help="only entries after SEQ")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", parents=[common], help="apply a bundle file to a replica, exactly once",
        description="Verify a bundle file whole (a truncated or tampered file is refused, exit 4, "
                    "nothing changed), then apply its entries after the replica's cursor for the "
                    "bundle's source: importing twice applies nothing the second time; a bundle "
                    "that starts after the cursor (a gap) is refused.")
    p.add_argument("replica", help="the replica database (created if missing)")
    p.add_argument("file", help="the bundle file")
    p.add_argument("--batch", type=int, default=256, metavar="N", help="entries per replica transaction")
    p.add_argument("--on-conflict", choices=CONFLICT_CHOICES, default="abort")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "undo", parents=[common], help="apply the inverse of a log entry as a new write",
        description="Undo audit log entry SEQ: its inverse is applied as a new logged write. Rows "
                    "that later writes changed are conflicts: --on-conflict abort (default: refuse, "
                    "listing every such row, exit 1, nothing changed), omit (leave those rows), "
                    "or replace (overwrite them). A migration cannot be undone (exit 4).")
    p.add_argument("database", help="the database file")
    p.add_argument("seq", type=whole_number, help="the entry to undo (its seq, as 'log' shows)")
    p.add_argument("--on-conflict", choices=CONFLICT_CHOICES, default="abort")
    p.add_argument("--label", help='the new entry\'s label (default "undo SEQ")')
    p.set_defaults(func=cmd_undo)
