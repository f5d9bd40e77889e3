"""Facts about the SQLite library this package runs on."""

from __future__ import annotations

import functools
import sys

from .raw import NULL, lib, text

__all__ = [
    "sqlite_version",
    "sqlite_version_info",
    "sqlite_source_id",
    "compile_options",
    "file_lock_kind",
]


def sqlite_version() -> str:
    """The version of the vendored SQLite, e.g. ``"3.54.1"``.

    Calls ``sqlite3_libversion``."""
    return text(lib.sqlite3_libversion())


def sqlite_version_info() -> tuple[int, int, int]:
    """The SQLite version as a tuple of ints, e.g. ``(3, 54, 1)``.

    Calls ``sqlite3_libversion_number``."""
    n = lib.sqlite3_libversion_number()
    return (n // 1_000_000, n // 1000 % 1000, n % 1000)


def sqlite_source_id() -> str:
    """SQLite's check-in date and hash identifying the exact source.

    Calls ``sqlite3_sourceid``."""
    return text(lib.sqlite3_sourceid())


@functools.cache
def compile_options() -> tuple[str, ...]:
    """The options SQLite was compiled with, without the ``SQLITE_`` prefix,
    e.g. ``("ENABLE_SESSION", ..., "THREADSAFE=1")``.

    Calls ``sqlite3_compileoption_get``."""
    options = []
    i = 0
    while (opt := lib.sqlite3_compileoption_get(i)) != NULL:
        options.append(text(opt))
        i += 1
    return tuple(options)


def file_lock_kind() -> str:
    """Which operating system locks SQLite takes on database files:

    * ``"ofd"``: open file description locks (Linux).  They survive the close
      of any other descriptor of the file and exclude another SQLite library
      in the same process (the stdlib's ``sqlite3``, apsw) as they exclude
      another process;
    * ``"posix"``: POSIX record locks (macOS, the BSDs; Linux when
      ``SQLITE_SESSION_SAFE_LOCKS=posix``).  They belong to the process: a
      close of any descriptor of the file in this process, for example by the
      stdlib's ``sqlite3``, drops them;
    * ``"windows"``: ``LockFileEx`` locks, which belong to a file handle.
    """
    if sys.platform == "win32":
        return "windows"
    return "ofd" if lib.sss_lockshim_active() else "posix"
