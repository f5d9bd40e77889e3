"""Exceptions of the coordinated database (``sss.open``).

The lock's own errors (``LockCompromised``, ``LockTimeout``, ...) live in
:mod:`.errors`; these are about writes, the audit log and backups.
"""

from __future__ import annotations

from ..binding.errors import Error, InterfaceError

__all__ = [
    "OptimisticWriteFailed",
    "ConflictError",
    "NoPrimaryKeyError",
    "SchemaChangeInWrite",
    "WalOnNetworkFilesystem",
    "BackupCheckFailed",
    "CommitOutcomeUnknown",
    "GroupRolledBack",
    "FileInUseError",
]


class OptimisticWriteFailed(Error):
    """An optimistic write gave up: its declared preconditions kept changing
    between its baseline read and its admission, ``attempts`` times.

    Raised by :meth:`Database.optimistic_write`.  Its older name
    ``ConflictError`` stays an alias; it has nothing to do with the conflicts
    of applying a changeset (:class:`ConflictAbort` and its subclasses).

    Attributes:
        attempts: how many times it was tried.
        reason: what differed on the last attempt.
    """

    def __init__(self, message: str, attempts: int, reason: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.reason = reason

    def __reduce__(self) -> tuple[type[OptimisticWriteFailed], tuple[str, int, str]]:
        # keep the attributes when pickled across processes
        return (type(self), (str(self), self.attempts, self.reason))



#: The older name of :class:`OptimisticWriteFailed` (kept: same class).
ConflictError = OptimisticWriteFailed

class NoPrimaryKeyError(InterfaceError):
    """A write changed rows of a table without a PRIMARY KEY.

    SQLite's session module cannot identify such rows, so the audit log would
    miss them.  The write was rolled back.  Give the table a primary key, or
    open the database with ``rowid_tables=True`` to record such tables keyed
    by rowid (replay then needs identical rowids on the target).

    Attributes:
        tables: the tables concerned.
    """

    def __init__(self, message: str, tables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.tables = tables

    def __reduce__(self) -> tuple[type[NoPrimaryKeyError], tuple[str, tuple[str, ...]]]:
        return (type(self), (str(self), self.tables))


class SchemaChangeInWrite(InterfaceError):
    """A ``db.write`` changed the schema (CREATE/ALTER/DROP ...).  A changeset
    cannot carry DDL, so schema changes go through ``db.migrate(sql)``, which
    logs the statements in order with the data changes.  Rolled back."""


class WalOnNetworkFilesystem(InterfaceError):
    """``mode="wal"`` was asked for on a network file system: SQLite's WAL
    index is shared memory, which does not work across hosts."""


class BackupCheckFailed(Error):
    """A backup's ``PRAGMA integrity_check`` did not say ``ok``.

    Attributes:
        path: the backup file.
        problems: what integrity_check reported (first 20 lines).
    """

    def __init__(self, message: str, path: str, problems: tuple[str, ...]) -> None:
        super().__init__(message)
        self.path = path
        self.problems = problems

    def __reduce__(self) -> tuple[type[BackupCheckFailed], tuple[str, str, tuple[str, ...]]]:
        return (type(self), (str(self), self.path, self.problems))


class CommitOutcomeUnknown(Error):
    """COMMIT reported an error, and the database could not be read to tell
    whether the write committed anyway (its log entry, or the fencing epoch).

    Rare: it needs a second failure right after the first (the file system
    went away).  Do not retry the write blindly: look for the owner and epoch
    named in the message in the audit log first.
    """


class GroupRolledBack(Error):
    """This write shared its transaction with other writes of the same
    Database (group commit), and SQLite rolled that whole transaction back
    when a later one failed in a way SQLite does not confine to a savepoint
    (``sqlite3_interrupt``, disk full, an I/O error).  Nothing of this write
    was committed; it may be retried.
    """


class FileInUseError(Error, PermissionError):
    """A finished copy could not be renamed onto its destination: on Windows,
    another program holds the destination open.  Nothing was replaced; the
    copy was removed."""
