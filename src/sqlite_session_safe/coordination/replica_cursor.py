"""The replica's cursor (PROTOCOL.md §6): the last applied ``(source
database_id, seq)``, kept in the replica's ``_sss_replica`` table and moved
in the same transaction as the changes it covers.  Read by replication, the
bundle import, the stream consumer and log retention."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..sessions.connection import Connection
from . import audit
from .write import WriteTx

if TYPE_CHECKING:
    from .database import Database

#: The replica's cursor table (reserved prefix: never recorded, never replicated).
CURSOR_TABLE = "_sss_replica"
_CREATE_CURSOR = f"""CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} (
    source_id  TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    updated_at TEXT NOT NULL
)"""
_SET_CURSOR = (
    f"INSERT INTO {CURSOR_TABLE} (source_id, seq, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
)


class NothingToDo(Exception):
    """Raised inside a replica write to roll it back: its entries were
    already applied (by another replicator, or an overlapping bundle)."""

    def __init__(self, cursor: int) -> None:
        super().__init__(cursor)
        self.cursor = cursor



def has_table(con: Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                       (name,)).fetchone() is not None


def _cursor_row(con: Connection, source_id: str) -> int | None:
    """The cursor row's seq, or None (no row, or no cursor table)."""
    if not has_table(con, CURSOR_TABLE):
        return None
    row = con.execute(f"SELECT seq FROM {CURSOR_TABLE} WHERE source_id = ?", (source_id,)).fetchone()
    return None if row is None else int(row[0])


def is_copy(con: Connection, source_id: str) -> bool:
    """A copy of the source not yet replicating: its own id is the source's
    and it has no cursor row for it."""
    return audit.database_id(con) == source_id and _cursor_row(con, source_id) is None


def read_cursor(con: Connection, source_id: str) -> int:
    """The last seq of ``source_id`` applied to the database ``con`` is on.

    Without a cursor row: a database whose own ``database_id`` is
    ``source_id`` is a copy of the source (a backup), positioned at its own
    log position; any other starts at 0.
    """
    seq = _cursor_row(con, source_id)
    if seq is not None:
        return seq
    if audit.database_id(con) == source_id:
        return audit.log_position(con)
    return 0


def set_cursor(con: Connection, source_id: str, seq: int) -> None:
    """Move the cursor (inside the replica's write).  A copy of the source
    that applies its first entry gets a new ``database_id``: from here on its
    log diverges from the source's, so it must not pass for the source."""
    if is_copy(con, source_id):
        con.execute(f"UPDATE {audit.META_TABLE} SET value = ? WHERE key = 'database_id'",
                    (os.urandom(16).hex(),))
    con.execute(_SET_CURSOR, (source_id, seq, audit.utc_now()))


def ensure_cursor(db: Database, source_id: str) -> None:
    """Make sure ``db`` has its cursor table and, for a copy of the source
    (its own ``database_id`` is ``source_id``), a cursor row at its own log
    position, before the first replicated write appends to its log.

    A missing table is created by an admitted migration write whose log entry
    holds only the ``CREATE TABLE`` (the package's tables are created, never
    filled, by replay: cursor rows are never recorded).  A data write could not
    do it (a schema change there is refused).  A copy gets a new
    ``database_id`` in the same transaction: its log diverges from the
    source's from here on, so it must not pass for the source."""
    with db.read() as r:
        exists = has_table(r.connection, CURSOR_TABLE)
        if exists and not is_copy(r.connection, source_id):
            return
    # commit_empty: as kind "data", commit the cursor row and log nothing.
    tx = WriteTx(db, "replica cursor table" if not exists else f"replica of {source_id}",
                 kind="ddl" if not exists else "data", commit_empty=True)
    try:
        with tx:
            con = tx.connection
            copy = is_copy(con, source_id)
            if has_table(con, CURSOR_TABLE) and not copy:
                raise NothingToDo(0)  # another replicator was first: log nothing
            start = read_cursor(con, source_id)  # before the table exists: a copy's own position
            con.execute(_CREATE_CURSOR)
            if copy:
                set_cursor(con, source_id, start)
            tx.value = _CREATE_CURSOR  # the migration entry's SQL (kind "ddl")
    except NothingToDo:
        pass

