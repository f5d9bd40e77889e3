"""Worker processes and checks for the replication, bundle and undo tests.

Workers are module-level functions (they also run under ``spawn``); each opens
its own databases, as a separate program would.
"""

from __future__ import annotations

import os
import re
from typing import Any

from _database_workers import open_db, user_tables

import sqlite_session_safe as sss

#: The label of a replica's log entry for replicated source entries.
_LABEL = re.compile(r"^replicate ([0-9a-f]{32}) (\d+)\.\.(\d+)$")


def follower(source: str, replica: str, stop, interval: float = 0.02) -> None:
    """sss.follow until ``stop`` is set."""
    db = open_db(replica)
    try:
        sss.follow(source, db, interval=interval, stop=stop, batch=16)
    finally:
        db.close()


def replicator(source: str, replica: str, batch: int, ready_fd: int) -> None:
    """One replicate() run to the end; writes a byte to ``ready_fd`` once
    both databases are open (so the killer knows the run is under way)."""
    db = open_db(replica)
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    sss.replicate(source, db, batch=batch)
    db.close()


def replicate_once(source: str, replica: str, batch: int, out) -> None:
    """replicate() once; report (applied, skipped)."""
    with open_db(replica) as db:
        r = sss.replicate(source, db, batch=batch)
    out.put((r.applied, r.skipped))


def replicated_ranges(con: sss.Connection, source_id: str) -> list[tuple[int, int]]:
    """The source seq ranges the replica's own log says it applied, in its order."""
    out = []
    for (label,) in con.execute("SELECT label FROM _sss_log ORDER BY seq"):
        m = _LABEL.match(label or "")
        if m and m.group(1) == source_id:
            out.append((int(m.group(2)), int(m.group(3))))
    return out


def assert_tiles(ranges: list[tuple[int, int]], last: int) -> None:
    """The ranges cover 1..last exactly once each, in order: no source entry
    applied twice, none skipped."""
    expected = 1
    for a, b in ranges:
        assert a == expected and b >= a, (ranges, expected)
        expected = b + 1
    assert expected == last + 1, (ranges, last)


def cursor_of(path: str, source_id: str) -> int:
    with sss.connect(path) as con:
        row = con.execute("SELECT seq FROM _sss_replica WHERE source_id = ?", (source_id,)).fetchone()
        return 0 if row is None else int(row[0])


def tables(path: str) -> dict[str, list[tuple[Any, ...]]]:
    with sss.connect(path) as con:
        return user_tables(con)


def source_id(path: str) -> str:
    with sss.connect(path) as con:
        (sid,) = con.execute("SELECT value FROM _sss_meta WHERE key = 'database_id'").fetchone()
        return str(sid)
