"""Commit notices within one process.

A follower of a database (``sss.follow`` from a file, publishing to a NATS
stream) learns of new commits by polling the file (``PRAGMA data_version``,
the replica's cursor against the source's log position): that is the only
way to see another process's commits.  A :class:`Database` of the *same*
process tells its followers at once instead: after each COMMIT it calls
:func:`committed`, which sets the event of every :class:`Watch` on that
file, so a follower in the process wakes without waiting for its next poll.

Files are named by (device, inode), so every path to one file (relative,
through a symlink) is the same file.
"""

from __future__ import annotations

import os
import threading

__all__ = ["FileKey", "file_key", "committed", "Watch"]

#: A file's identity: (st_dev, st_ino).
FileKey = tuple[int, int]

_lock = threading.Lock()
_watches: dict[FileKey, set[threading.Event]] = {}


def file_key(path: str | os.PathLike[str]) -> FileKey | None:
    """The identity of the file at ``path`` (None if it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def committed(key: FileKey | None) -> None:
    """Wake every watch on the file ``key`` (a COMMIT to it just landed)."""
    if key is None or not _watches:  # the common case: nobody follows in-process
        return
    with _lock:
        events = tuple(_watches.get(key, ()))
    for event in events:
        event.set()


class Watch:
    """Waits for a commit to one file by a Database of this process, or a
    timeout (the caller's poll interval, for the other processes' commits)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.key = file_key(path)
        self.event = threading.Event()
        if self.key is not None:
            with _lock:
                _watches.setdefault(self.key, set()).add(self.event)

    def clear(self) -> None:
        """Forget earlier notices: call before looking at the file, so a
        commit after the look still wakes the next :meth:`wait`."""
        self.event.clear()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a notice (True) or for ``stop``
        to be set (it is looked at every 50 ms at least)."""
        step = 0.05 if stop is not None else timeout
        remaining = timeout
        while True:
            if self.event.wait(min(step, remaining) if remaining > 0 else 0):
                return True
            remaining -= step
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False

    def close(self) -> None:
        if self.key is not None:
            with _lock:
                events = _watches.get(self.key)
                if events is not None:
                    events.discard(self.event)
                    if not events:
                        del _watches[self.key]

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
