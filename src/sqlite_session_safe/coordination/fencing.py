"""The fencing epoch: a counter inside the database that every admitted write
transaction compare-and-sets (PROTOCOL.md §3).

A holder that lost its lock without noticing (a v1 holder paused past the
stale timeout, say) may still try to commit.  The lock can't stop that by
itself; the epoch can.  The whole sequence, for any client:

    lock acquired
    e = admission_epoch(con)          # outside any transaction; 0 on a fresh database
    BEGIN IMMEDIATE
    advance_epoch(con, e)             # UPDATE ... SET epoch = e + 1 WHERE epoch = e
    ... the write ...
    lock.check(); COMMIT

:func:`advance_epoch` raises :class:`EpochMismatch` when no row changed:
another holder committed since ``e`` was read; roll back.  On a database
that keeps an audit log (``_sss_log``) it refuses to run for a lock-only
writer, whose commit would bypass the log (PROTOCOL.md §5.2).

The functions take any connection whose ``execute(sql, params)`` returns a
cursor with ``fetchone()`` and ``rowcount``: the stdlib ``sqlite3`` module's
and this package's own.  They never open, commit or roll back a transaction.
"""

from __future__ import annotations

from typing import Any, Protocol

from .audit import LOG_TABLE
from .errors import EpochMismatch, FencingError

__all__ = [
    "EPOCH_TABLE",
    "EPOCH_COLUMN",
    "ensure_epoch_table",
    "read_epoch",
    "admission_epoch",
    "advance_epoch",
    "catch_up_epoch",
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
_HAS_LOG = "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?"
_CATCH_UP = f"UPDATE {EPOCH_TABLE} SET {EPOCH_COLUMN} = ? WHERE id = 1 AND {EPOCH_COLUMN} = ?"


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


def _epoch_row(con: Connection) -> tuple[bool, int | None]:
    """(table exists, value of row 1 or None)."""
    try:
        row = con.execute(_READ, ()).fetchone()
    except Exception as e:
        if "no such table" in str(e):
            return False, None
        raise
    if row is None:
        return True, None
    value = row[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FencingError(f"{EPOCH_TABLE}.{EPOCH_COLUMN} holds {value!r}, not a non-negative integer")
    return True, value


def read_epoch(con: Connection) -> int:
    """The current epoch.

    Raises:
        FencingError: the table or its row is missing, or holds a non-integer.
    """
    exists, value = _epoch_row(con)
    if not exists:
        raise FencingError(f"the database has no {EPOCH_TABLE} table: call ensure_epoch_table() first")
    if value is None:
        raise FencingError(f"{EPOCH_TABLE} has no row with id = 1: call ensure_epoch_table()")
    return value


def admission_epoch(con: Connection) -> int:
    """The epoch a writer fences from, read right after its admission and
    outside any transaction (PROTOCOL.md §3): the table's value, or 0 when
    the table or its row does not exist yet (a fresh database).  Then a
    racing writer that created the table and committed first makes this
    writer's compare-and-set from 0 fail, as any other commit would.

    Raises:
        FencingError: inside a transaction (there the read fences nothing:
            nobody else can commit while it is open), or the value is not a
            non-negative integer.
    """
    if getattr(con, "in_transaction", False) is True:
        raise FencingError(
            "admission_epoch() must run outside any transaction, right after the lock is "
            "acquired and before BEGIN IMMEDIATE; read inside the transaction it would fence nothing")
    _exists, value = _epoch_row(con)
    return 0 if value is None else value


def advance_epoch(con: Connection, expected: int, *, logged: bool = False) -> int:
    """Compare-and-set the epoch from ``expected`` to ``expected + 1``.

    Call it inside the write transaction, right after ``BEGIN IMMEDIATE``.
    Returns the new epoch, which is the ``expected`` of this holder's next
    transaction under the same lock tenure.  On a fresh database (no table,
    or no row) it creates the table with epoch 0 first, so ``expected`` 0
    succeeds exactly when nobody has committed an epoch yet.

    Args:
        logged: True only for a writer that appends this transaction's entry
            to the audit log itself (the coordinated database, PROTOCOL.md
            §5.3).  Otherwise a database that keeps a log is refused: a
            commit made with the lock alone would be missing from the log.

    Raises:
        EpochMismatch: no row changed -- another holder wrote since
            ``expected`` was read.  Roll the transaction back; commit nothing.
        FencingError: not inside a transaction (when the connection tells),
            or, without ``logged``, the database keeps an audit log.
    """
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise TypeError(f"expected must be a non-negative int epoch, not {expected!r}")
    _require_transaction(con, "advance_epoch()")
    if not logged and con.execute(_HAS_LOG, (LOG_TABLE,)).fetchone() is not None:
        raise FencingError(
            f"the database keeps an audit log ({LOG_TABLE}): every write to it must append its log "
            "entry in the same transaction (PROTOCOL.md §5.2), which a writer with only the lock "
            "and the epoch does not do. Write it through sss.open(path).write(...)")
    try:
        cur = con.execute(_CAS, (expected, expected))
        changed = cur.rowcount == 1
    except Exception as e:
        if "no such table" not in str(e):
            raise
        changed = False
    if not changed and expected == 0:
        # A fresh database: create the table with epoch 0 (inside this
        # transaction) and try again.  If someone committed an epoch first,
        # the row is there already, holds more than 0, and this fails too.
        ensure_epoch_table(con)
        changed = con.execute(_CAS, (0, 0)).rowcount == 1
    if not changed:
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


def catch_up_epoch(con: Connection, stored: int, new: int) -> None:
    """Set the epoch from ``stored`` to ``new`` (> stored) in one step,
    inside the write transaction that already compare-and-set it to
    ``stored``.  For group commit (PROTOCOL.md §3): the first part of a
    transaction compare-and-sets the epoch; each later part in it takes the
    next epoch for its log entry, and the row is brought up to the last of
    them once, before COMMIT, instead of once per part.

    Raises:
        EpochMismatch: the row no longer holds ``stored`` (impossible inside
            one transaction unless something else wrote the table in it).
    """
    if not (isinstance(stored, int) and isinstance(new, int) and new > stored >= 0):
        raise TypeError(f"catch_up_epoch needs 0 <= stored < new, not {stored!r} -> {new!r}")
    _require_transaction(con, "catch_up_epoch()")
    if con.execute(_CATCH_UP, (new, stored)).rowcount != 1:
        raise EpochMismatch(
            f"fencing epoch changed inside this transaction (expected {stored}); commit nothing",
            stored, None)
