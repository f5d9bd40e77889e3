"""Exceptions of the coordination layer (directory lock and fencing epoch).

All derive from :class:`sqlite_session_safe.binding.errors.Error`, which is a
pure-Python module: importing this one never loads the compiled SQLite module.
"""

from __future__ import annotations

from ..binding.errors import Error

__all__ = [
    "LockError",
    "LockTimeout",
    "LockCompromised",
    "LockRefused",
    "OwnerFormatError",
    "UnknownProtocolVersion",
    "ProtocolMismatch",
    "FencingError",
    "EpochMismatch",
    "DatabasePathError",
    "DatabaseDirectoryMissing",
    "DatabasePathIsDirectory",
]


class LockError(Error):
    """Base class of every error about the outer directory lock.

    Also raised for misuse: releasing a lock that is not held, acquiring a lock
    twice from one thread, checking a lock in a forked child, and so on.
    """


class LockTimeout(LockError, TimeoutError):
    """The wait for the lock ran out; the message says who holds it."""


class LockCompromised(LockError):
    """The lock this process held is no longer provably its own.

    Its lock directory was removed, replaced or re-owned, or its heartbeat was
    late enough that another client may already have judged it stale.  The
    process must not commit anything more under this lock.
    """


class LockRefused(LockError):
    """The lock path is in a state this client must never break automatically.

    A malformed or missing ``owner.json``, an empty lock directory, an unknown
    protocol version, a symlink or a non-directory at the lock path all mean
    "held by someone else".  Inspect it, then break it with ``force=True`` only
    if you are sure no process uses it.
    """


class ProtocolMismatch(LockRefused):
    """The database is coordinated by the other lock protocol.

    ``trusted`` and ``wal`` modes admit writers with an operating-system lock
    (lock protocol v2); ``network`` mode uses lock directories with
    heartbeats (v1).  Every process must use one of them for a given file;
    the message says which one the file uses and how to switch.
    """


class OwnerFormatError(LockError):
    """An ``owner.json`` document does not follow the lock protocol v1 schema."""


class UnknownProtocolVersion(OwnerFormatError):
    """An ``owner.json`` names a protocol version this client does not speak."""


class FencingError(LockError):
    """The fencing epoch inside the database could not be used as required."""


class EpochMismatch(FencingError):
    """The compare-and-set of the fencing epoch changed no row.

    Another holder wrote to the database since this one read the epoch: this
    transaction must be rolled back and nothing of it committed.
    """

    def __init__(self, message: str, expected: int, actual: int | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[type[EpochMismatch], tuple[str, int, int | None]]:
        # keep the attributes when pickled across processes
        return (type(self), (str(self), self.expected, self.actual))


class DatabasePathError(Error, OSError):
    """The path given for a database file cannot be one, or its directory
    cannot be reached (``errno`` says why, e.g. ENOTCONN for a network mount
    whose client died).

    Also an :class:`OSError` (``errno``, ``filename``), so code that caught
    the built-in errors keeps working.
    """


class DatabaseDirectoryMissing(DatabasePathError, FileNotFoundError):
    """The directory that should hold the database file does not exist."""


class DatabasePathIsDirectory(DatabasePathError, IsADirectoryError):
    """The database path names a directory, not a file."""
