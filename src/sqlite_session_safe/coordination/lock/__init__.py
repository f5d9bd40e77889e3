"""The outer directory lock (lock protocol v1, see PROTOCOL.md).

One writer per database file across processes and hosts, on file systems whose
byte-range locks can't be trusted.  The lock is a directory next to the
database, ``<db>.sss-lock``, always holding a complete ``owner.json``: it is
built under a unique temporary name and renamed into place, so no process ever
sees it half made.  Its holder rewrites ``owner.json`` with a growing heartbeat
counter; an observer that sees the same (owner id, counter) for the stale
timeout on its *own* monotonic clock may break it, by renaming it to a name
derived from exactly that state and then checking what it renamed.

The reader/writer variant (network mode) adds reader markers under
``<db>.sss-readers/``: a writer holding the lock directory waits for active
readers to leave, and defers to readers that are already waiting.

Usage::

    with DirectoryLock("state.sqlite") as lock:
        ...               # admitted writer
        lock.check()      # raises LockCompromised if the lock was lost

The modules, one idea each: :mod:`.paths` (where L and R are),
:mod:`.observe` (classifying a lock path, the staleness rule),
:mod:`.breaking` (breaking a stale lock, sweeping tombs),
:mod:`.waiting` (backoff, Ctrl-C handling, process-local serialization),
:mod:`.directory_lock` (:class:`DirectoryLock`: its API, acquiring),
:mod:`.holding` (heartbeat, lease, verification, release) and
:mod:`.inspection` (:func:`inspect_lock`).  This package re-exports the
public names.
"""

from __future__ import annotations

from .breaking import break_stale_lock
from .directory_lock import Acquired, DirectoryLock
from .holding import WANT_PREFIX
from .inspection import LockInfo, inspect_lock
from .observe import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_STALE_TIMEOUT, refuse_os_lock_marker
from .paths import LOCK_SUFFIX, READERS_SUFFIX, lock_paths
from .waiting import DEFAULT_TIMEOUT

__all__ = [
    "DirectoryLock",
    "Acquired",
    "LockInfo",
    "inspect_lock",
    "break_stale_lock",
    "lock_paths",
    "LOCK_SUFFIX",
    "READERS_SUFFIX",
    "DEFAULT_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_STALE_TIMEOUT",
    "WANT_PREFIX",
    "refuse_os_lock_marker",
]
