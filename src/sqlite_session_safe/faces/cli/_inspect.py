"""Commands that look at a database: ``info``, ``lock``, ``log``, ``check``."""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import sqlite_session_safe as sss

from ...coordination import audit, wire
from ...coordination.audit import LOG_FORMAT, LOG_TABLE, META_TABLE, parse_committed_at
from ...coordination.lock import lock_paths
from ...coordination.retention import PRUNED_KEY
from ._base import (
    CliError,
    ExitCode,
    Output,
    confirm,
    has_log,
    open_db,
    raw_readonly,
    require_file,
    whole_number,
)
from ._render import (
    SPOOL_ABOVE,
    entry_doc,
    lock_doc,
    lock_message,
    open_json,
    show_entry,
    show_lock,
    spool,
    write_entry_json,
)

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
    with open_db(args, args.database, looking=True) as db:
        caps = db.capabilities()
        log = _log_stats(db, caps["database_id"])
    lock = sss.inspect_lock(args.database)
    doc = {
        "command": "info",
        "path": caps["path"],
        "mode": caps["mode"],
        "file_size": os.path.getsize(caps["path"]),
        "log": log,
        "lock": lock_doc(lock, args.database),
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
                      if log["present"] else "none (no write through sqlite-session-safe yet)"),
        ("no primary key", caps["tables_without_primary_key"]),
        ("filesystem", f"{caps['filesystem_type']}"
                       + (" (network)" if caps["network_filesystem"] else "")),
        ("sessions", caps["sessions"]),
        ("sqlite", caps["sqlite_version"]),
    ])
    show_lock(out, lock, args.database)
    return ExitCode.OK


# -- lock ---------------------------------------------------------------------


def _require_database_or_lock(path: str) -> None:
    """``lock`` also works on the lock directory a deleted database left."""
    if os.path.exists(path) or any(os.path.lexists(p) for p in lock_paths(path)[1:]):
        if os.path.isdir(path):
            require_file(path)
        return
    raise CliError(f"database {path!r} does not exist, and no lock directory is beside it",
                   ExitCode.BAD_INPUT)


def cmd_lock(args: argparse.Namespace, out: Output) -> int:
    _require_database_or_lock(args.database)
    info = sss.inspect_lock(args.database)
    if not args.break_lock:
        out.document({"command": "lock", "lock": lock_doc(info, args.database), "broken": False})
        show_lock(out, info, args.database)
        return ExitCode.OK
    if info is None:
        out.document({"command": "lock", "lock": lock_doc(info, args.database), "broken": False})
        out.line("lock: free; nothing to break")
        return ExitCode.OK
    if info.state == "held" and info.process == "alive" and not args.force:
        assert info.owner is not None
        raise CliError(
            f"refusing to break a live lock: process {info.owner.pid} on this host holds it; wait "
            "for it, or stop that process; add --force only if you are sure it is not writing",
            ExitCode.LOCKED)
    if info.state not in ("held", "free") and not args.force:
        raise CliError(f"{lock_message(info, args.database)}", ExitCode.LOCKED)
    if not args.yes:
        if not confirm(f"Break the lock of {args.database}? {lock_message(info, args.database)}",
                       err=out.err):
            raise CliError("lock not broken: not confirmed (answer y, or pass --yes)", ExitCode.FAILED)
    if not args.force and info.process == "other-host":
        out.note(f"watching the holder's heartbeat for up to {args.stale_timeout:g}s before breaking")
    broken = sss.break_stale_lock(args.database, force=args.force, stale_timeout=args.stale_timeout)
    after = sss.inspect_lock(args.database)
    if not broken and after is not None and after.state == "held":
        raise CliError("lock not broken: its holder is alive (its heartbeat moved); "
                       f"{lock_message(after, args.database)}", ExitCode.LOCKED)
    out.document({"command": "lock", "lock": lock_doc(after, args.database), "broken": broken,
                  "before": lock_doc(info, args.database)})
    out.line("lock broken" if broken else "nothing was broken")
    show_lock(out, after, args.database)
    return ExitCode.OK


# -- log ----------------------------------------------------------------------

_BATCH = 256
#: Entry bodies held in memory per snapshot; a body larger than this is
#: copied to a temporary file (in bounded memory) and formatted from there.
_BATCH_BYTES = SPOOL_ABOVE

#: An entry ``log`` shows, and its changes when they were spooled to a file.
Shown = tuple[sss.LogEntry, BinaryIO | None]


def _window(db: sss.Database, lo: int, hi: int) -> list[Shown]:
    """The entries ``lo < seq <= hi``, oldest first, read in one snapshot:
    at most _BATCH of them, their bodies in memory at most _BATCH_BYTES (but
    one entry always)."""
    out: list[Shown] = []
    held = 0
    with db.read() as r:
        con = r.connection
        for head in wire.iter_heads(con, lo, hi, _BATCH):
            if len(out) >= _BATCH or (out and held + head.size > _BATCH_BYTES):
                break
            if head.kind == "data" and head.size > _BATCH_BYTES:
                out.append((head.entry(), spool(wire.iter_body(con, head))))
                continue
            entries = audit.read_entries(con, head.seq - 1, 1)
            held += head.size
            out.extend((e, None) for e in entries if e.seq == head.seq)
    return out


def _selected(db: sss.Database, since: int, newest: int | None, reverse: bool,
              top: int) -> Iterator[Shown]:
    """The entries ``log`` shows, oldest first (newest first with
    ``reverse``): those after ``since``, only the last ``newest`` of them,
    up to ``top`` (the log position when the command started).  Read in
    windows, so memory does not grow with the log nor with an entry."""
    with db.read() as r:
        bottom = since  # entries with bottom < seq <= top
        if newest is not None and top > since:
            row = None if newest == 0 else r.execute(
                f"SELECT seq FROM {LOG_TABLE} WHERE seq > ? AND seq <= ? ORDER BY seq DESC "
                "LIMIT 1 OFFSET ?", (since, top, newest - 1)).fetchone()
            bottom = top if newest == 0 else since if row is None else int(row[0]) - 1
    if not reverse:
        while bottom < top:
            window = _window(db, bottom, top)
            if not window:
                return
            yield from window
            bottom = window[-1][0].seq
        return
    while top > bottom:
        # Newest first: back from the top _BATCH entries at a time, read in
        # groups of at most _BATCH_BYTES of bodies (or one larger entry).
        start = max(bottom, top - _BATCH)
        with db.read() as r:
            heads = list(wire.iter_heads(r.connection, start, top, _BATCH))
        group: list[wire.EntryHead] = []
        size = 0
        for head in [*reversed(heads), None]:
            if group and (head is None or size + head.size > _BATCH_BYTES):
                yield from reversed(_window(db, group[-1].seq - 1, group[0].seq))
                group, size = [], 0
            if head is not None:
                group.append(head)
                size += head.size
        top = start


def cmd_log(args: argparse.Namespace, out: Output) -> int:
    with open_db(args, args.database, looking=True) as db, raw_readonly(args.database) as names:
        position = db.position()
        entries = itertools.islice(_selected(db, args.since, args.newest, args.reverse, position),
                                   args.limit)
        # Nothing is kept: each entry is written (its changes formatted in C
        # as they are written) before the next is read, so memory stays
        # bounded by one entry, in text and in JSON.
        if out.json:
            open_json(out, {"command": "log", "position": position, "since": args.since}, "entries")
        shown = 0
        for entry, body in entries:
            try:
                if out.json:
                    out.write(", " if shown else "")
                    write_entry_json(out, entry, names, args.changes, body)
                else:
                    show_entry(out, entry, entry_doc(entry, names, False, body), names, args.changes,
                               body)
            finally:
                if body is not None:
                    body.close()
            shown += 1
        if out.json:
            out.write("]}\n")
            out.flush()
    if not shown:
        if args.limit == 0 or args.newest == 0:
            out.line(f"nothing shown (asked for 0 entries); log position {position}")
        elif position == 0:
            out.line("the audit log is empty (no write through sqlite-session-safe yet)")
        else:
            out.line(f"no entries after seq {args.since} (log position {position})")
    return ExitCode.OK


# -- check --------------------------------------------------------------------

_DAMAGE = (sss.CorruptError, sss.NotADBError)


def _integrity(r: Any) -> list[str]:
    """``PRAGMA integrity_check``'s lines.  When a damaged page stops the
    whole-database check, each table is checked on its own, so the report
    still says which tables are readable."""
    try:
        # One problem per line (SQLite may put several lines in one row).
        return [line for row in r.execute("PRAGMA integrity_check") for line in str(row[0]).splitlines()]
    except _DAMAGE as e:
        lines = [f"the whole-database check stopped: {e}"]
    try:
        tables = [str(row[0]) for row in r.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]
    except _DAMAGE as e:
        return [*lines, f"the schema cannot be read: {e}"]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        try:
            found = [str(row[0]) for row in r.execute(f"PRAGMA integrity_check({quoted})")]
        except _DAMAGE as e:
            found = [f"unreadable: {e}"]
        lines.extend(f"table {table}: {line}" for line in found if line != "ok")
    return lines


def _check_log(r: Any, problems: list[str]) -> dict[str, Any]:
    """Log consistency inside one snapshot; appends to ``problems``.  A
    damaged log is reported as far as it can be read."""
    seen: dict[str, Any] = {"entries": None, "first_seq": None, "last_seq": 0, "changes": 0,
                            "epoch": None, "pruned_through": 0, "readable": True}
    try:
        _read_log(r, problems, seen)
    except _DAMAGE as e:
        seen["readable"] = False
        problems.append(f"the audit log is damaged: readable up to seq {seen['last_seq']}, then: {e}")
    return seen


def _read_log(r: Any, problems: list[str], seen: dict[str, Any]) -> None:
    row = r.execute(f"SELECT count(*), min(seq), max(seq) FROM {LOG_TABLE}").fetchone()
    assert row is not None
    count, first, last = int(row[0]), row[1], row[2]
    seen.update(entries=count, first_seq=first)
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
    previous_seq, previous_epoch = pruned, -1
    seen["last_seq"] = pruned
    since = 0
    while True:
        rows = r.execute(
            f"SELECT seq, kind, changeset, sql, epoch, committed_at FROM {LOG_TABLE} "
            "WHERE seq > ? ORDER BY seq LIMIT ?", (since, _BATCH)).fetchall()
        for seq, kind, blob, sql, epoch, at in rows:
            if seq != previous_seq + 1:
                problems.append(f"seq {seq} follows seq {previous_seq}: entries are missing")
            previous_seq = seen["last_seq"] = seq
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
                    seen["changes"] += sss.Changeset(blob or b"").validate()
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
    seen["epoch"] = epoch_now
    seen["pruned_through"] = pruned


def _run_checks(r: Any, problems: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """(integrity_check's lines, the log's summary or None) for one reader."""
    integrity = _integrity(r)
    if integrity != ["ok"]:
        problems.extend(f"integrity_check: {line}" for line in integrity[:20])
        if len(integrity) > 20:
            problems.append(f"integrity_check: ... and {len(integrity) - 20} more line(s) (see --json)")
    try:
        fk = r.execute("PRAGMA foreign_key_check").fetchall()
        problems.extend(f"foreign key: row {row[1]} of {row[0]} has no parent in {row[2]}"
                        for row in fk[:20])
    except _DAMAGE as e:
        problems.append(f"foreign_key_check could not run: {e}")
    try:
        present = r.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                            (LOG_TABLE,)).fetchone() is not None
    except _DAMAGE:
        present = True  # unknown: try to read it anyway
    return integrity, _check_log(r, problems) if present else None


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    problems: list[str] = []
    try:
        with open_db(args, args.database, looking=True) as db, db.read() as r:
            integrity, log = _run_checks(r, problems)
    except _DAMAGE:
        # Too damaged to open as a coordinated database: look with a plain
        # read-only connection instead.
        with raw_readonly(args.database) as con:
            integrity, log = _run_checks(con, problems)
    ok = not problems
    out.document({"command": "check", "ok": ok, "integrity": integrity, "log": log, "problems": problems})
    out.line(f"integrity_check: {'ok' if integrity == ['ok'] else 'FAILED'}")
    if log is None:
        out.line("audit log: none")
    elif log["entries"] is None:
        out.line("audit log: present, unreadable")
    else:
        damaged = "" if log["readable"] else f" (readable up to seq {log['last_seq']})"
        out.line(f"audit log: {log['entries']} entries, {log['changes']} changes, "
                 f"epoch {log['epoch']}{damaged}")
    for problem in problems:
        out.line(f"problem: {problem}")
    if ok:
        out.line("check: ok")
    else:
        out.line(f"check: FAILED ({len(problems)} problem(s)); restore from a backup if the data is "
                 "damaged ('backup' makes checked copies)")
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
                    "writer, changes per table). The seq is an entry's position in the log: 1, "
                    "2, 3, ... in commit order. --changes decodes every change with column "
                    "names from the database's current schema. 'log DB --newest 10' shows the "
                    "last ten; --reverse lists newest first.")
    p.add_argument("database", help="the database file")
    p.add_argument("--since", type=whole_number, default=0, metavar="SEQ", help="only entries after SEQ")
    p.add_argument("--newest", type=whole_number, default=None, metavar="N",
                   help="only the newest N entries (shown oldest first unless --reverse)")
    p.add_argument("--reverse", action="store_true", help="newest entries first")
    p.add_argument("--limit", type=whole_number, default=None, metavar="N",
                   help="at most N entries, counted in the order shown")
    p.add_argument("--changes", action="store_true", help="decode each entry's changes")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser(
        "check", parents=[common], help="integrity_check plus audit log consistency",
        description="Run PRAGMA integrity_check and foreign_key_check, then check the audit log: "
                    "seqs 1..n without gaps, every changeset parses, epochs increase, times "
                    "parse, the fencing epoch is not behind the log. Exit 1 on any problem.")
    p.add_argument("database", help="the database file")
    p.set_defaults(func=cmd_check)
