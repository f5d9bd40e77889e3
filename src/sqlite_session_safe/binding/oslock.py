"""The operating system's exclusive file lock (``csrc/sss_oslock.c``).

Typed wrappers for the coordination layer's lock protocol v2 (it never
touches ``lib`` itself).  Each returns an ``errno`` value where the C call
does: 0 for success, ``errno.EAGAIN`` when another descriptor or process
holds the lock.  The blocking call runs without the GIL (cffi releases it).
"""

from __future__ import annotations

from .raw import ffi, lib

__all__ = ["os_lock", "os_lock_wait", "os_unlock", "os_lock_probe", "os_lock_per_descriptor"]


def os_lock(fd: int, wait: bool) -> int:
    """Take the exclusive lock of the whole file ``fd``: block in the
    kernel until granted (``wait``) or fail at once with EAGAIN.  Calls
    ``sss_oslock_lock`` (``fcntl(F_OFD_SETLK[W])`` on Linux, ``fcntl(F_SETLK[W])``
    on other POSIX systems, ``LockFileEx`` on Windows)."""
    return int(lib.sss_oslock_lock(fd, 1 if wait else 0))


def os_lock_wait(fd: int, timeout: float) -> int:
    """Wait for the lock of ``fd`` in this thread, in the kernel, for at most
    ``timeout`` seconds (``sss_oslock_wait``: a blocking ``fcntl`` ended by a
    per-call timer signal).  0: taken; EAGAIN: the time ran out or a signal
    (Ctrl-C) arrived; ENOSYS: not available here (wait in another thread)."""
    return int(lib.sss_oslock_wait(fd, max(1, int(timeout * 1000))))


def os_unlock(fd: int) -> int:
    """Give the lock of ``fd`` up (``sss_oslock_unlock``)."""
    return int(lib.sss_oslock_unlock(fd))


def os_lock_probe(fd: int) -> tuple[int, bool, int]:
    """(errno, held by another descriptor or process, that holder's pid or 0),
    without taking the lock where the system can tell (``F_OFD_GETLK`` /
    ``F_GETLK``; Windows takes it for an instant)."""
    held, pid = ffi.new("int *"), ffi.new("int *")
    rc = int(lib.sss_oslock_probe(fd, held, pid))
    return rc, bool(held[0]), int(pid[0])


def os_lock_per_descriptor() -> bool:
    """True when locks belong to a descriptor (Linux open file description
    locks, Windows), False when they belong to the process (POSIX record
    locks: closing any descriptor of the file drops them)."""
    return bool(lib.sss_oslock_per_descriptor())
