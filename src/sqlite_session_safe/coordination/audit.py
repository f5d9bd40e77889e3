"""The audit log: one row per admitted write, inside the database itself.

Every admitted write appends its entry in the same transaction as its data
changes, so the log and the data can never disagree: both commit or neither
does (PROTOCOL.md, "Audit log").  The log's tables carry the package's
reserved ``_sss_`` prefix, which the write session never records.

Tables::

    _sss_log(seq, committed_at, owner, host, pid, label, kind, sql, epoch, changeset)
    _sss_meta(key, value)      -- database_id, log_format

``seq`` is 1, 2, 3, ... without gaps: a write that rolls back takes no seq.

Every statement names the log's columns: their order is not part of the
format (PROTOCOL.md §5.2).  Logs created by earlier revisions have
``changeset`` between ``kind`` and ``sql``; new ones have it last, because
SQLite keeps a ``zeroblob()`` unexpanded only when it is the last field of
a record, and a large entry is appended as a zeroblob and then filled with
incremental BLOB I/O (:class:`StreamedBody`): as the last column it costs a
few MB, in the middle SQLite builds the whole zero-filled record in memory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..binding.capi import RESERVED_PREFIX
from ..binding.connection import Connection
from ..binding.dbconfig import SQLITE_DBCONFIG_ENABLE_TRIGGER
from ..sessions.apply import ApplyReport, OnConflict, apply
from ..sessions.changeset import Changeset
from ..sessions.errors import ChangesetError
from .log_errors import ReplicationError
from .migration import run_script

__all__ = [
    "LOG_TABLE",
    "META_TABLE",
    "LOG_FORMAT",
    "RESERVED_PREFIX",
    "LogEntry",
    "StreamedBody",
    "read_changeset",
    "triggers_off",
    "has_log",
    "ensure_log",
    "append_entry",
    "read_entries",
    "log_position",
    "database_id",
    "utc_now",
    "COMMITTED_AT",
    "parse_committed_at",
]

LOG_TABLE = "_sss_log"
META_TABLE = "_sss_meta"
#: Version of the log's tables, stored in _sss_meta: their columns by name,
#: with their types and constraints.  Not their order: both column orders of
#: _sss_log (``changeset`` last, or between ``kind`` and ``sql``) are format 1.
LOG_FORMAT = 1

_CREATE_LOG = f"""CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    seq          INTEGER PRIMARY KEY,
    committed_at TEXT NOT NULL,
    owner        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    label        TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('data', 'ddl')),
    sql          TEXT,
    epoch        INTEGER NOT NULL,
    changeset    BLOB,
    CHECK ((kind = 'data') = (changeset IS NOT NULL)),
    CHECK ((kind = 'ddl') = (sql IS NOT NULL))
)"""
_CREATE_META = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_APPEND = (
    f"INSERT INTO {LOG_TABLE} (seq, committed_at, owner, host, pid, label, kind, changeset, sql, epoch) "
    f"VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM {LOG_TABLE}), ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The same entry with a zero-filled changeset of a known size, written
# afterwards with incremental BLOB I/O (StreamedBody).
_APPEND_ZEROBLOB = (
    f"INSERT INTO {LOG_TABLE} (seq, committed_at, owner, host, pid, label, kind, changeset, sql, epoch) "
    f"VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM {LOG_TABLE}), ?, ?, ?, ?, ?, ?, zeroblob(?), ?, ?)"
)
_SELECT = (
    f"SELECT seq, committed_at, owner, host, pid, label, kind, changeset, sql, epoch FROM {LOG_TABLE} "
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)


#: ``committed_at`` exactly (PROTOCOL.md §5.2): UTC with microseconds,
#: upper-case ``T`` and ``Z``, 27 characters, so text order is time order.
COMMITTED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def parse_committed_at(text: object) -> _dt.datetime:
    """A ``committed_at`` value as an aware UTC datetime.

    Raises:
        ValueError: ``text`` is not exactly ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
            with a real date and time.
    """
    if not isinstance(text, str) or not COMMITTED_AT.fullmatch(text):
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds (informational only: hosts' clocks differ)."""
    # isoformat() is several times cheaper than strftime(), and this runs on
    # every write; "+00:00" -> "Z" keeps the documented form.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True)
class LogEntry:
    """One committed write, as the audit log holds it.

    Attributes:
        seq: position in the log (1, 2, 3, ... without gaps).
        committed_at: RFC 3339 UTC wall time on the writer's host, taken just
            before COMMIT; informational (hosts' clocks differ).
        owner: the lock ``owner_id`` of the admitted writer.
        host: the writer's host name.
        pid: the writer's process id.
        label: the label the write was given, or None.
        kind: ``"data"`` (a changeset) or ``"ddl"`` (a migration's SQL).
        changeset: the write's changes (kind "data"), else None.
        sql: the migration script (kind "ddl"), else None.
        epoch: the fencing epoch the write set.
    """

    seq: int
    committed_at: str
    owner: str
    host: str
    pid: int
    label: str | None
    kind: str
    changeset: Changeset | None
    sql: str | None
    epoch: int

    @property
    def committed(self) -> _dt.datetime:
        """:attr:`committed_at` as an aware datetime."""
        return parse_committed_at(self.committed_at)

    def apply_to(self, con: Connection, on_conflict: OnConflict = None) -> ApplyReport | None:
        """Replay this entry on ``con``: apply the changeset (strict: a
        conflict aborts, a table of another shape raises ``SchemaMismatch``),
        or run the migration's statements.  Runs inside the caller's
        transaction if one is open; the apply itself is all-or-nothing.
        Returns the apply's report (None for a migration)."""
        if self.kind == "data":
            assert self.changeset is not None
            # The changeset already holds what the source's triggers did;
            # letting the target's triggers fire again would do it twice.
            with triggers_off(con):
                return apply(self.changeset, con, on_conflict=on_conflict, strict=True)
        else:
            assert self.sql is not None
            if con.in_transaction:
                run_script(con, self.sql)
            else:
                with con.transaction("immediate"):
                    run_script(con, self.sql)
            return None


@contextlib.contextmanager
def triggers_off(con: Connection) -> Iterator[None]:
    """``con``'s triggers off inside the block (a replayed changeset already
    holds what the source's triggers did; firing the target's would do it
    twice), as they were afterwards."""
    previous = con.getconfig(SQLITE_DBCONFIG_ENABLE_TRIGGER)
    con.setconfig(SQLITE_DBCONFIG_ENABLE_TRIGGER, False)
    try:
        yield
    finally:
        con.setconfig(SQLITE_DBCONFIG_ENABLE_TRIGGER, previous)


#: Bytes copied at a time into a streamed entry's changeset.
STREAM_COPY = 1 << 20


@dataclass(frozen=True)
class StreamedBody:
    """A data entry's changeset that is not in memory: ``size`` bytes that
    ``open()`` reads from their start (each call a fresh reader with
    ``read``).  :func:`append_entry` stores it in bounded memory: the row
    gets a zero-filled blob of that size, then the bytes are copied in with
    incremental BLOB I/O, :data:`STREAM_COPY` at a time."""

    size: int
    open: Callable[[], IO[bytes]]

    def store(self, con: Connection, seq: int) -> None:
        """Copy the body into the changeset of ``_sss_log`` row ``seq``."""
        reader = self.open()
        done = 0
        with con.blobopen(LOG_TABLE, "changeset", seq) as blob:
            while done < self.size:
                piece = reader.read(min(STREAM_COPY, self.size - done))
                if not piece:
                    break
                blob.write(piece)
                done += len(piece)
        if done != self.size or reader.read(1):
            # The log must hold exactly what was applied: never commit less.
            raise ReplicationError(
                f"the changeset of log entry {seq} should be {self.size} bytes, but its source "
                f"gave {'more' if done == self.size else done} (changed while applied?); rolled back")


def read_changeset(con: Connection, seq: int) -> Changeset:
    """The changeset of ``_sss_log`` row ``seq`` in one copy, read with
    incremental BLOB I/O (a SELECT holds SQLite's copy of the value and the
    binding's at once)."""
    with con.blobopen(LOG_TABLE, "changeset", seq, readonly=True) as blob:
        data = blob.read_whole(Changeset)
    if data[:1] not in (b"", b"T"):
        raise ChangesetError(f"the changeset of log entry {seq} is not a changeset")
    return data


def _table_exists(con: Connection, name: str) -> bool:
    row = con.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def has_log(con: Connection) -> bool:
    """Whether the database keeps an audit log (its ``_sss_log`` table exists)."""
    return _table_exists(con, LOG_TABLE)


def ensure_log(con: Connection) -> None:
    """Create the log's tables and meta rows if missing (inside the caller's
    write transaction; idempotent)."""
    con.execute(_CREATE_LOG)
    con.execute(_CREATE_META)
    con.execute(f"INSERT OR IGNORE INTO {META_TABLE} (key, value) VALUES ('database_id', ?)",
                (os.urandom(16).hex(),))
    con.execute(f"INSERT OR IGNORE INTO {META_TABLE} (key, value) VALUES ('log_format', ?)",
                (str(LOG_FORMAT),))


def append_entry(
    con: Connection,
    *,
    owner: str,
    host: str,
    pid: int,
    label: str | None,
    kind: str,
    changeset: bytes | StreamedBody | None,
    sql: str | None,
    epoch: int,
) -> tuple[int, str]:
    """Append one entry (inside the caller's write transaction, which must
    hold SQLite's write lock so that ``max(seq) + 1`` is unique).  Returns
    (seq, committed_at).  A :class:`StreamedBody` changeset is copied in
    without holding it in memory."""
    at = utc_now()
    if isinstance(changeset, StreamedBody):
        # In a log whose changeset column is last (§5.2) SQLite never builds
        # the zero-filled blob in memory; in an older log it does.
        cur = con.execute(_APPEND_ZEROBLOB, (at, owner, host, pid, label, kind, changeset.size, sql,
                                             epoch))
    else:
        cur = con.execute(_APPEND, (at, owner, host, pid, label, kind, changeset, sql, epoch))
    seq = cur.lastrowid
    assert seq is not None
    if isinstance(changeset, StreamedBody):
        changeset.store(con, seq)
    return seq, at


def _entry(row: tuple[Any, ...]) -> LogEntry:
    seq, at, owner, host, pid, label, kind, blob, sql, epoch = row
    return LogEntry(seq, at, owner, host, pid, label, kind,
                    Changeset(blob) if blob is not None else None, sql, epoch)


def read_entries(con: Connection, since: int = 0, limit: int = 256) -> list[LogEntry]:
    """Up to ``limit`` entries with ``seq > since``, in order ([] without a log)."""
    if not has_log(con):
        return []
    return [_entry(r) for r in con.execute(_SELECT, (since, limit))]


def iter_entries(con: Connection, since: int = 0, batch: int = 256) -> Iterator[LogEntry]:
    """All entries after ``since``, read ``batch`` at a time."""
    while True:
        rows = read_entries(con, since, batch)
        yield from rows
        if len(rows) < batch:
            return
        since = rows[-1].seq


def log_position(con: Connection) -> int:
    """The last seq in the log (0 when empty or without a log)."""
    if not has_log(con):
        return 0
    row = con.execute(f"SELECT coalesce(max(seq), 0) FROM {LOG_TABLE}").fetchone()
    assert row is not None  # an aggregate always returns one row
    return int(row[0])


def database_id(con: Connection) -> str | None:
    """The random id the log was created with (None without a log)."""
    if not _table_exists(con, META_TABLE):
        return None
    row = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'database_id'").fetchone()
    return None if row is None else str(row[0])
