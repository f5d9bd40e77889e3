"""Exceptions of the coordination layer (directory lock and fencing epoch).

All derive from :class:`sqlite_session_safe.binding.errors.Error`, which is a
pure-Python module: importing this one never loads the compiled SQLite module.
"""

from __future__ import annotations

import errno

from ..binding.errors import Error

__all__ = [
    "LockError",
    "LockTimeout",
    "LockCompromised",
    "LockRefused",
    "LockPathError",
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


class LockPathError(LockError, OSError):
    """The file system refused an operation on the lock path (``errno`` and
    ``filename`` say which and where: EROFS, ENOSPC, EACCES, or ENOTCONN for a
    network mount whose client died).

    Raised by ``acquire``: nothing was changed, the lock was not taken.
    Raised by ``release``: the lock object no longer holds the lock; what is
    left at the lock path is no longer kept alive, so other clients judge it
    stale after their stale timeout and break it, as they do a dead holder's.

    Also an :class:`OSError`, so code that caught the built-in error keeps
    working.
    """

    def __str__(self) -> str:
        # The message names the errno and the path already; OSError's own
        # form would repeat both ("[Errno 107] ...: 'path'").
        return self.strerror if self.strerror is not None else super().__str__()


def os_error_text(e: OSError) -> str:
    """``"ENOTCONN: Transport endpoint is not connected, on '/m/app.db.sss-lock'"``.

    The errno's name comes first because the remedies differ (a read-only
    directory, a full disk, a dead network mount); then the OS's words and
    the path it refused, when it named one.
    """
    code = errno.errorcode.get(e.errno or 0, f"errno {e.errno}")
    where = f", on {e.filename!r}" if e.filename else ""
    return f"{code}: {e.strerror or e}{where}"


def lock_not_taken(lock_path: str, e: OSError) -> LockPathError:
    """The LockPathError of an ``acquire`` the file system refused."""
    return LockPathError(
        e.errno,
        f"cannot take the lock {lock_path!r}: the lock path cannot be created or opened "
        f"({os_error_text(e)}); nothing was written; a lock needs a writable, reachable "
        "directory with free space",
        e.filename)


def lock_not_released(lock_path: str, e: OSError, what_is_left: str) -> LockPathError:
    """The LockPathError of a ``release`` the file system refused;
    ``what_is_left`` says what becomes of the lock path."""
    return LockPathError(
        e.errno,
        f"release of lock {lock_path!r} failed ({os_error_text(e)}): this object no longer "
        f"holds the lock; {what_is_left}",
        e.filename)


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
