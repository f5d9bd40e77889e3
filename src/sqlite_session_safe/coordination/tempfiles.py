"""Temporary files written next to their destination, named after their owner.

A backup (or any file written through a temporary name and a rename) that is
killed mid-copy leaves its temporary file behind.  Its name records who wrote
it::

    <dest>.sss-tmp-<host>-<pid>-<start>-<random>

``host`` is a digest of :func:`.procinfo.host_id` (same kernel boot and pid
namespace), ``pid`` the writer's process id, ``start`` a digest of its
:func:`.procinfo.process_start_token` (which changes when a pid is reused).
:func:`remove_dead` deletes such files (and the ``-journal``, ``-wal`` and
``-shm`` SQLite may have left beside them) only when that owner is *provably*
gone: the same host id as ours, and the pid dead or now belonging to a
process with another start token.  A file of a live process -- another backup
in progress in this process, another process, or a paused one -- is never
touched; nor is one from another host or from before a reboot (its host id
differs), whose owner cannot be judged from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator

from . import procinfo
from .db_errors import FileInUseError
from .errors import DatabaseDirectoryMissing
from .owner import fsync_dir

__all__ = ["temp_path", "remove_dead", "remove_with_sidecars", "replace_file", "fsync_file",
           "check_directory", "written_atomically", "MARKER"]

#: What every temporary name has between the destination's name and the owner.
MARKER = ".sss-tmp-"
#: SQLite's companions of a database file.
_SIDECARS = ("-journal", "-wal", "-shm")
#: A digest that stands for "unknown": never judged, never removed.
_UNKNOWN_HOST = "0" * 16
_UNKNOWN_START = "0" * 12
_NAME = re.compile(
    re.escape(MARKER)
    + r"(?P<host>[0-9a-f]{16})-(?P<pid>[0-9]{1,10})-(?P<start>[0-9a-f]{12})-[0-9a-f]{8}"
    + r"(?:-journal|-wal|-shm)?$"
)


def _digest(text: str, size: int, unknown: str) -> str:
    if not text:
        return unknown
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _own_tags() -> tuple[str, str]:
    return (_digest(procinfo.host_id(), 16, _UNKNOWN_HOST),
            _digest(procinfo.own_start_token(), 12, _UNKNOWN_START))


def temp_path(dest: str) -> str:
    """A fresh temporary name next to ``dest`` (an absolute path) that names
    this process as its owner."""
    host, start = _own_tags()
    return f"{dest}{MARKER}{host}-{os.getpid()}-{start}-{os.urandom(4).hex()}"


def _owner_gone(host: str, pid: int, start: str) -> bool:
    """True only when the process that wrote a temp name is provably gone."""
    own_host, _ = _own_tags()
    if host == _UNKNOWN_HOST or host != own_host:
        return False  # another host, another boot, or unknown: cannot judge
    state = procinfo.pid_state(pid)
    if state == "dead":
        return True
    if state == "alive" and start != _UNKNOWN_START:
        now = procinfo.process_start_token(pid)
        return bool(now) and _digest(now, 12, _UNKNOWN_START) != start  # pid reused
    return False


def remove_dead(directory: str) -> list[str]:
    """Delete the temporary files in ``directory`` whose owner is provably
    gone (see the module docstring); return the paths removed.

    Anything that cannot be listed or removed (permissions, a file another
    program holds open on Windows) is left for a later call.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    verdicts: dict[tuple[str, int, str], bool] = {}
    for name in sorted(names):
        found = _NAME.search(name)
        if found is None:
            continue
        owner = (found["host"], int(found["pid"]), found["start"])
        if owner not in verdicts:
            verdicts[owner] = _owner_gone(*owner)
        if not verdicts[owner]:
            continue
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def remove_with_sidecars(path: str) -> None:
    """Delete ``path`` and SQLite's ``-journal``/``-wal``/``-shm`` beside it."""
    for p in (path, *(path + s for s in _SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def check_directory(dest: str, what: str) -> None:
    """Raise :class:`DatabaseDirectoryMissing` naming ``dest``'s directory
    when it does not exist (rather than an error about a temporary name)."""
    parent = os.path.dirname(dest) or "."
    if not os.path.isdir(parent):
        raise DatabaseDirectoryMissing(
            2, f"the directory of {what} {dest!r} does not exist; create it first", parent)


def fsync_file(path: str) -> None:
    """Make a file's contents durable.

    Opened for writing: Windows' ``FlushFileBuffers`` (behind ``os.fsync``)
    refuses a read-only handle."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: How long a rename onto a file another program has open is retried: on
#: Windows, where that fails (a virus scanner or an indexer lets go within
#: moments; a viewer does not).  Elsewhere such a refusal is final.
REPLACE_RETRY_SECONDS = 1.0 if sys.platform == "win32" else 0.0


def replace_file(src: str, dest: str) -> None:
    """``os.replace(src, dest)`` and make the rename durable.

    On Windows a rename onto a file another program holds open fails with a
    sharing violation: retried for :data:`REPLACE_RETRY_SECONDS`, then
    :class:`FileInUseError` says so (``src`` is left for the caller to remove).
    """
    deadline = time.monotonic() + REPLACE_RETRY_SECONDS
    while True:
        try:
            os.replace(src, dest)
            break
        except PermissionError as e:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise FileInUseError(
                f"cannot replace {dest!r}: {e.strerror or e}; another program may have it open "
                "(close it, or write to another name)", e.errno, dest) from e
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(dest) or ".")


@contextlib.contextmanager
def written_atomically(dest: str | os.PathLike[str], what: str = "file") -> Iterator[str]:
    """Yield a temporary path to write ``dest``'s new contents to; on success
    it is fsynced and renamed onto ``dest``, on any exception removed.  Dead
    writers' temporary files in the same directory are removed first."""
    path = os.path.abspath(os.fspath(dest))
    check_directory(path, what)
    remove_dead(os.path.dirname(path))
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        replace_file(tmp, path)
    except BaseException:
        remove_with_sidecars(tmp)
        raise
