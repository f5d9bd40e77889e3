"""Where a database's lock lives: the lock directory L = ``<db>.sss-lock`` and
the readers directory R = ``<db>.sss-readers`` (PROTOCOL.md §1.1), named
from the database path resolved with ``realpath``, so every spelling of
one file shares one lock."""

from __future__ import annotations

import errno
import os
import re
import stat

from ..errors import (
    DatabaseDirectoryMissing,
    DatabasePathError,
    DatabasePathIsDirectory,
    os_error_text,
)

#: ``<db>`` + this is the lock directory.  Not ``.lock``: SQLite's
#: ``unix-dotfile`` VFS takes ``<db>.lock`` and never breaks it.
LOCK_SUFFIX = ".sss-lock"
#: ``<db>`` + this holds the reader markers of the reader/writer variant.
READERS_SUFFIX = ".sss-readers"

#: A reader marker's name in R: ``reader-`` + its owner id.
READER_NAME = re.compile(r"reader-[0-9a-f]{32}\Z")


def canonical_db(db_path: str | os.PathLike[str]) -> str:
    if isinstance(db_path, bytes):
        raise TypeError("db_path must be str or os.PathLike[str], not bytes")
    try:
        path = os.fspath(db_path)
    except TypeError:
        raise TypeError(f"db_path must be str or os.PathLike[str], not {type(db_path).__name__}") from None
    if not isinstance(path, str):
        raise TypeError("db_path must be str or os.PathLike[str], not bytes")
    if path == "" or path == ":memory:" or path.startswith("file:"):
        raise ValueError(
            f"db_path {path!r} is not a database file path (in-memory databases and "
            "URIs have no file to lock; pass the file's path)"
        )
    if "\x00" in path:
        raise ValueError("db_path contains a NUL character")
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    try:
        parent_is_dir = stat.S_ISDIR(os.stat(parent).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        parent_is_dir = False
    except OSError as e:
        # Not "missing": a directory that cannot be reached (ENOTCONN: a
        # network mount whose client died; EACCES; EIO) is named as such.
        raise DatabasePathError(
            e.errno, f"the directory of database {path!r} cannot be reached ({os_error_text(e)})",
            parent) from e
    if not parent_is_dir:
        raise DatabaseDirectoryMissing(
            errno.ENOENT, f"the directory of database {path!r} does not exist; create it first", parent
        )
    if os.path.isdir(real):
        raise DatabasePathIsDirectory(
            errno.EISDIR, f"database path {path!r} is a directory, not a database file", real
        )
    return real


def lock_paths(db_path: str | os.PathLike[str]) -> tuple[str, str, str]:
    """(canonical database path, lock directory path, readers directory path).

    Two spellings of one file (relative, through symlinks) give the same paths,
    because the database path is resolved with ``os.path.realpath``.
    """
    db = canonical_db(db_path)
    return db, db + LOCK_SUFFIX, db + READERS_SUFFIX



def reader_markers(readers_dir: str) -> list[str]:
    """The reader markers in R.  An R that is not a real directory (a
    symlink, a file) holds none: readers refuse to use it (PROTOCOL.md §2.9),
    so no compliant reader is active through it."""
    try:
        if not stat.S_ISDIR(os.lstat(readers_dir).st_mode):
            return []
        names = os.listdir(readers_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(readers_dir, n) for n in names if READER_NAME.match(n)]
