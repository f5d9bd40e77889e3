"""Commands that look at a database: ``info``, ``lock``, ``log``, ``check``."""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Any

import sqlite_session_safe as sss

from ...coordination.audit import LOG_FORMAT, LOG_TABLE, META_TABLE, parse_committed_at
from ...coordination.retention import PRUNED_KEY
from ._base import CliError, ExitCode, Output, confirm, has_log, open_db, raw_readonly, require_file
from ._render import entry_doc, lock_doc, show_entry, show_lock

__all__ = ["register"]


# -- info ---------------------------------------------------------------------


def _log_stats(db: sss.Database, database_id: str | None) -> dict[str, Any]:
    if not has_log(db):
        return {"present": False, "entries": 0, "first_seq": None, "last_seq": 0, "bytes": 0,
                "database_id": None}
    with db.read() as r:
        row = r.execute(
            f"SELECT count(*), min(seq), coalesce(sum(length(changeset)), 0) "
            f"+ coalesce(sum(length(CAST(sql AS BLOB))), 0) FROM {LOG_TABLE} WHERE seq <= ?",
            (r.seq,)).fetchone()
        assert row is not None
        last = r.seq
    return {"present": True, "entries": int(row[0]), "first_seq": row[1], "last_seq": last,
            "bytes": int(row[2]), "database_id": database_id}


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database) as db:
        caps = db.capabilities()
        log = _log_stats(db, caps["database_id"])
    lock = sss.inspect_lock(args.database)
    doc = {
        "command": "info",
        "path": caps["path"],
        "mode": caps["mode"],
        "file_size": os.path.getsize(caps["path"]),
        "log": log,
        "lock": lock_doc(lock),
        "tables_without_primary_key": caps["tables_without_primary_key"],
        "capabilities": caps,
    }
    out.document(doc)
    out.fields([
        ("database", caps["path"]),
        ("mode", f"{caps['mode']} (journal_mode={caps['journal_mode']}, "
                 f"synchronous={caps['synchronous']})"),
        ("file size", f"{doc['file_size']} bytes"),
        ("database id", log["database_id"]),
        ("audit log", f"{log['entries']} entries, position {log['last_seq']}, {log['bytes']} bytes"
                      if log["present"] else "none (no write through sss.open yet)"),
        ("no primary key", caps["tables_without_primary_key"]),
        ("filesystem", f"{caps['filesystem_type']}"
                       + (" (network)" if caps["network_filesystem"] else "")),
        ("sessions", caps["sessions"]),
        ("sqlite", caps["sqlite_version"]),
    ])
    show_lock(out, lock)
    return ExitCode.OK


# -- lock ---------------------------------------------------------------------


def cmd_lock(args: argparse.Namespace, out: Output) -> int:
    require_file(args.database)
    info = sss.inspect_lock(args.database)
    if not args.break_lock:
        out.document({"command": "lock", "lock": lock_doc(info), "broken": False})
        show_lock(out, info)
        return ExitCode.OK
    if info is None:
        out.document({"command": "lock", "lock": lock_doc(info), "broken": False})
        out.line("lock: free; nothing to break")
        return ExitCode.OK
    if info.state == "held" and info.process == "alive" and not args.force:
        raise CliError(
            f"refusing to break a live lock: {info.message}; stop that process, or add --force if "
            "you are sure it is not writing", ExitCode.LOCKED)
    if info.state not in ("held", "free") and not args.force:
        raise CliError(f"{info.message} (add --force to remove it)", ExitCode.LOCKED)
    if not args.yes:
        if not confirm(f"Break the lock of {args.database}? {info.message}.", err=out.err):
            raise CliError("lock not broken: not confirmed (answer y, or pass --yes)", ExitCode.FAILED)
    if not args.force and info.process == "other-host":
        out.note(f"watching the holder's heartbeat for up to {args.stale_timeout:g}s before breaking")
    broken = sss.break_stale_lock(args.database, force=args.force, stale_timeout=args.stale_timeout)
    after = sss.inspect_lock(args.database)
    if not broken and after is not None and after.state == "held":
        raise CliError(f"lock not broken: its holder is alive (its heartbeat moved): {after.message}",
                       ExitCode.LOCKED)
    out.document({"command": "lock", "lock": lock_doc(after), "broken": broken, "before": lock_doc(info)})
    out.line("lock broken" if broken else "nothing was broken")
    show_lock(out, after)
    return ExitCode.OK


# -- log ----------------------------------------------------------------------


def cmd_log(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database) as db, raw_readonly(args.database) as names:
        entries = itertools.islice(db.log(since=args.since), args.limit)
        docs = []
        for entry in entries:
            # Text output keeps nothing and decodes each entry's changes as
            # they are printed: memory stays bounded by one entry.
            doc = entry_doc(entry, names, args.changes and out.json)
            if out.json:
                docs.append(doc)
            show_entry(out, entry, doc, names, args.changes)
        position = db.position()
    out.document({"command": "log", "position": position, "since": args.since, "entries": docs})
    if not docs:
        out.line(f"no entries after seq {args.since} (log position {position})")
    return ExitCode.OK


# -- check --------------------------------------------------------------------

_BATCH = 256


def _check_log(r: sss.ReadTx, problems: list[str]) -> dict[str, Any]:
    """Log consistency inside one snapshot; appends to ``problems``."""
    row = r.execute(f"SELECT count(*), min(seq), max(seq) FROM {LOG_TABLE}").fetchone()
    assert row is not None
    count, first, last = int(row[0]), row[1], row[2]
    meta: dict[str, Any] = dict(r.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    # A pruned log (Database.prune_log) holds pruned+1..last; the newest entry is never pruned.
    pruned = int(meta.get(PRUNED_KEY, 0)) if str(meta.get(PRUNED_KEY, "0")).isdigit() else -1
    if pruned < 0:
        problems.append(f"{PRUNED_KEY} is {meta.get(PRUNED_KEY)!r}, not a seq")
        pruned = 0
    if count and (first != pruned + 1 or last != pruned + count):
        problems.append(f"log seqs are not {pruned + 1}..{pruned + count} without gaps (first {first}, "
                        f"last {last}, {count} entries, pruned through {pruned})")
    if pruned and not count:
        problems.append(f"the log was pruned through {pruned} but holds no entry (the newest must stay)")
    if not meta.get("database_id"):
        problems.append(f"{META_TABLE} has no database_id")
    if meta.get("log_format") != str(LOG_FORMAT):
        problems.append(f"log_format is {meta.get('log_format')!r}, expected '{LOG_FORMAT}'")
    changes = 0
    previous_seq, previous_epoch = pruned, -1
    since = 0
    while True:
        rows = r.execute(
            f"SELECT seq, kind, changeset, sql, epoch, committed_at FROM {LOG_TABLE} "
            "WHERE seq > ? ORDER BY seq LIMIT ?", (since, _BATCH)).fetchall()
        for seq, kind, blob, sql, epoch, at in rows:
            if seq != previous_seq + 1:
                problems.append(f"seq {seq} follows seq {previous_seq}: entries are missing")
            previous_seq = seq
            if not isinstance(epoch, int) or epoch <= previous_epoch:
                problems.append(f"entry {seq}: epoch {epoch!r} does not increase (previous {previous_epoch})")
            else:
                previous_epoch = epoch
            try:
                parse_committed_at(at)
            except ValueError:
                problems.append(f"entry {seq}: committed_at {at!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ "
                                "(PROTOCOL.md §5.2)")
            if kind == "data":
                try:
                    changes += sss.Changeset(blob or b"").validate()
                except (sss.ChangesetError, TypeError) as e:
                    problems.append(f"entry {seq}: its changeset does not parse: {e}")
            elif kind == "ddl":
                if not isinstance(sql, str) or not sql.strip():
                    problems.append(f"entry {seq}: a ddl entry without SQL")
            else:
                problems.append(f"entry {seq}: unknown kind {kind!r}")
        if len(rows) < _BATCH:
            break
        since = rows[-1][0]
    try:
        epoch_now = sss.read_epoch(r)
    except sss.FencingError as e:
        epoch_now = None
        if count:
            problems.append(str(e))
    if epoch_now is not None and previous_epoch > epoch_now:
        problems.append(f"the fencing epoch {epoch_now} is behind the log's last epoch {previous_epoch}")
    return {"entries": count, "first_seq": first, "last_seq": last or 0, "changes": changes,
            "epoch": epoch_now, "pruned_through": pruned}


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    problems: list[str] = []
    log: dict[str, Any] | None = None
    integrity: list[str] = []
    try:
        with open_db(args, args.database) as db:
            with db.read() as r:
                integrity = [str(row[0]) for row in r.execute("PRAGMA integrity_check")]
                if integrity != ["ok"]:
                    problems.extend(f"integrity_check: {line}" for line in integrity[:20])
                fk = r.execute("PRAGMA foreign_key_check").fetchall()
                problems.extend(f"foreign key: row {row[1]} of {row[0]} has no parent in {row[2]}"
                                for row in fk[:20])
                present = r.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                                    (LOG_TABLE,)).fetchone() is not None
                if present:
                    log = _check_log(r, problems)
    except sss.CorruptError as e:
        problems.append(f"the database is corrupt: {e}")
    ok = not problems
    out.document({"command": "check", "ok": ok, "integrity": integrity, "log": log, "problems": problems})
    out.line(f"integrity_check: {'ok' if integrity == ['ok'] else 'FAILED'}")
    if log is None:
        out.line("audit log: none")
    else:
        out.line(f"audit log: {log['entries']} entries, {log['changes']} changes, epoch {log['epoch']}")
    for problem in problems:
        out.line(f"problem: {problem}")
    out.line("check: ok" if ok else f"check: FAILED ({len(problems)} problem(s))")
    return ExitCode.OK if ok else ExitCode.FAILED


# -- registration ---------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "info", parents=[common], help="mode, lock holder, audit log size and position, capabilities",
        description="Show how a database is set up: its mode and journal settings, the audit log "
                    "(entries, last seq, size), who holds its lock, the tables a session cannot "
                    "record (no primary key), and what this build can do.")
    p.add_argument("database", help="the database file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "lock", parents=[common], help="show the lock's holder; --break a stale lock",
        description="Show who holds the database's lock (PROTOCOL.md). With --break, break it: "
                    "asks for confirmation on the terminal unless --yes. A lock whose holder is "
                    "a live process on this host is never broken without --force; a holder on "
                    "another host is broken only once its heartbeat has stood still for the stale "
                    "timeout (this may wait that long).")
    p.add_argument("database", help="the database file")
    p.add_argument("--break", dest="break_lock", action="store_true", help="break the lock")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true",
                   help="break even a live lock or one in a malformed state (dangerous: a live "
                        "holder may then commit over another writer)")
    p.add_argument("--stale-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="how long a heartbeat must stand still to count as stale (default 15)")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser(
        "log", parents=[common], help="list audit log entries (--changes: decoded)",
        description="List the audit log: one line per admitted write (seq, time, kind, label, "
                    "writer, changes per table). --changes decodes every change with column "
                    "names from the database's current schema.")
    p.add_argument("database", help="the database file")
    p.add_argument("--since", type=_positive, default=0, metavar="SEQ", help="only entries after SEQ")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="at most N entries")
    p.add_argument("--changes", action="store_true", help="decode each entry's changes")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser(
        "check", parents=[common], help="integrity_check plus audit log consistency",
        description="Run PRAGMA integrity_check and foreign_key_check, then check the audit log: "
                    "seqs 1..n without gaps, every changeset parses, epochs increase, times "
                    "parse, the fencing epoch is not behind the log. Exit 1 on any problem.")
    p.add_argument("database", help="the database file")
    p.set_defaults(func=cmd_check)


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value
