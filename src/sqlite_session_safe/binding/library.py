"""Facts about the SQLite library this package runs on."""

from __future__ import annotations

import functools

from .raw import NULL, lib, text

__all__ = ["sqlite_version", "sqlite_version_info", "sqlite_source_id", "compile_options"]


def sqlite_version() -> str:
    """The version of the vendored SQLite, e.g. ``"3.54.1"``."""
    return text(lib.sqlite3_libversion())


def sqlite_version_info() -> tuple[int, int, int]:
    """The SQLite version as a tuple of ints, e.g. ``(3, 54, 1)``."""
    n = lib.sqlite3_libversion_number()
    return (n // 1_000_000, n // 1000 % 1000, n % 1000)


def sqlite_source_id() -> str:
    """SQLite's check-in date and hash identifying the exact source."""
    return text(lib.sqlite3_sourceid())


@functools.cache
def compile_options() -> tuple[str, ...]:
    """The options SQLite was compiled with, without the ``SQLITE_`` prefix,
    e.g. ``("ENABLE_SESSION", ..., "THREADSAFE=1")``."""
    options = []
    i = 0
    while (opt := lib.sqlite3_compileoption_get(i)) != NULL:
        options.append(text(opt))
        i += 1
    return tuple(options)
