"""The fencing epoch: a counter inside the database that every admitted write
transaction compare-and-sets (PROTOCOL.md, "Fencing epoch").

A holder that lost its lock without noticing (paused past the stale timeout,
say) may still try to commit.  The directory lock can't stop that by itself;
the epoch can: each write transaction runs

    UPDATE _sss_lock_epoch SET epoch = e + 1 WHERE id = 1 AND epoch = e

with the ``e`` the holder read, and rolls back when no row changed, because
then another holder has written since.  Call :func:`advance_epoch` inside the
write transaction, before COMMIT, together with ``DirectoryLock.check()``.

The functions take any connection whose ``execute(sql, params)`` returns a
cursor with ``fetchone()`` and ``rowcount``: the stdlib ``sqlite3`` module's
and this package's own.  They never open, commit or roll back a transaction.
"""

from __future__ import annotations

from typing import Any, Protocol

from .errors import EpochMismatch, FencingError

__all__ = [
    "EPOCH_TABLE",
    "EPOCH_COLUMN",
    "ensure_epoch_table",
    "read_epoch",
    "advance_epoch",
]

#: The table (``_sss_`` is the package's reserved prefix: never captured by
#: sessions, never replicated) and its one counter column.
EPOCH_TABLE = "_sss_lock_epoch"
EPOCH_COLUMN = "epoch"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {EPOCH_TABLE} ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), "
    f"{EPOCH_COLUMN} INTEGER NOT NULL CHECK ({EPOCH_COLUMN} >= 0))"
)
_SEED = f"INSERT OR IGNORE INTO {EPOCH_TABLE} (id, {EPOCH_COLUMN}) VALUES (1, 0)"
_READ = f"SELECT {EPOCH_COLUMN} FROM {EPOCH_TABLE} WHERE id = 1"
_CAS = f"UPDATE {EPOCH_TABLE} SET {EPOCH_COLUMN} = ? + 1 WHERE id = 1 AND {EPOCH_COLUMN} = ?"


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """What the fencing functions need from a connection."""

    def execute(self, sql: str, params: Any = ..., /) -> _Cursor: ...


def _require_transaction(con: Any, what: str) -> None:
    # Outside a transaction the compare-and-set would commit on its own and
    # fence nothing; connections that can tell us, must be inside one.
    if getattr(con, "in_transaction", True) is False:
        raise FencingError(
            f"{what} must run inside the write transaction (BEGIN IMMEDIATE first); "
            "the connection has no open transaction"
        )


def ensure_epoch_table(con: Connection) -> None:
    """Create the epoch table with epoch 0 if it is missing (idempotent).

    Run it inside a write transaction (or in autocommit mode at set-up time);
    it never commits by itself.
    """
    con.execute(_CREATE, ())
    con.execute(_SEED, ())


def read_epoch(con: Connection) -> int:
    """The current epoch.

    Raises:
        FencingError: the table or its row is missing, or holds a non-integer.
    """
    try:
        row = con.execute(_READ, ()).fetchone()
    except Exception as e:
        if "no such table" in str(e):
            raise FencingError(
                f"the database has no {EPOCH_TABLE} table: call ensure_epoch_table() first"
            ) from e
        raise
    if row is None:
        raise FencingError(f"{EPOCH_TABLE} has no row with id = 1: call ensure_epoch_table()")
    value = row[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FencingError(f"{EPOCH_TABLE}.{EPOCH_COLUMN} holds {value!r}, not an integer")
    return value


def advance_epoch(con: Connection, expected: int) -> int:
    """Compare-and-set the epoch from ``expected`` to ``expected + 1``.

    Call it inside the write transaction, before COMMIT.  Returns the new
    epoch, which is the ``expected`` of this holder's next transaction.

    Raises:
        EpochMismatch: no row changed -- another holder wrote since
            ``expected`` was read.  Roll the transaction back; commit nothing.
        FencingError: not inside a transaction (when the connection tells).
    """
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise TypeError(f"expected must be a non-negative int epoch, not {expected!r}")
    _require_transaction(con, "advance_epoch()")
    cur = con.execute(_CAS, (expected, expected))
    if cur.rowcount != 1:
        try:
            actual: int | None = read_epoch(con)
        except FencingError:
            actual = None
        raise EpochMismatch(
            f"fencing epoch is {actual}, this holder expected {expected}: another holder "
            "wrote since; roll back and commit nothing",
            expected,
            actual,
        )
    return expected + 1
