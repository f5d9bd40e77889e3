"""The admission file of lock protocol v2 and its operating-system lock.

In ``trusted`` and ``wal`` modes the file system's locks are trusted by
definition, so a writer is admitted by an exclusive OS lock on
``L/admit`` (PROTOCOL.md §2A): the kernel hands it to the next waiter the
moment it is released, and releases it itself when its holder dies, so there
is no heartbeat, no staleness and nothing to break.  This module holds the
mechanics: one descriptor per admission file and process, the kernel wait
(with a timeout and Ctrl-C, which a blocking ``fcntl`` cannot have), and the
holder's record at the start of the file.

The C side is ``csrc/sss_oslock.c`` (open file description locks on Linux,
POSIX record locks elsewhere, ``LockFileEx`` on Windows).
"""

from __future__ import annotations

import errno
import os

try:
    import mmap as _mmap
except ImportError:  # pragma: no cover - platforms without mmap
    _mmap = None  # type: ignore[assignment]
import stat
import threading
import time
from typing import Any

from ..binding.oslock import os_lock, os_lock_probe, os_lock_wait, os_unlock
from . import interrupts, procinfo
from .errors import OwnerFormatError
from .owner import ADMISSION_RECORD_BYTES, AdmissionRecord, parse_admission

__all__ = ["ADMIT_FILE", "AdmitFile", "admit_file", "probe", "Probe", "describe_os_holder"]

#: The admission file's name inside the lock directory L.
ADMIT_FILE = "admit"


def _os_error(rc: int, what: str, path: str) -> OSError:
    return OSError(rc, f"{what}: {os.strerror(rc)}", path)


class AdmitFile:
    """This process's descriptor of one admission file, and the kernel wait.

    Only the thread holding the process-local mutex of the database (see
    ``lock/waiting.py``, ``PathLock``) calls :meth:`lock` and :meth:`unlock`: the
    OS lock belongs to the descriptor (POSIX: to the process), not to a
    thread.  A wait the caller gives up (timeout, Ctrl-C) goes on in its
    waiter thread; if it is granted after nobody wants it any more, it is
    given back at once.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._view: Any = None  # the mmap of the record, once written (POSIX)
        self._ident: tuple[int, int] | None = None
        self._mutex = threading.Lock()
        self._granted = threading.Event()
        self._wanted = False
        self._held = False
        self._waiter: threading.Thread | None = None
        self._wait_error = 0

    # -- the descriptor ---------------------------------------------------------

    def fd(self) -> int:
        """The open descriptor (opened on first use; close-on-exec, as every
        descriptor Python opens).

        Raises:
            FileNotFoundError: there is no admission file.
            OwnerFormatError: it is not a regular file (a symlink, a
                directory, a FIFO: opened without following or blocking).
            OSError: it cannot be opened for reading and writing.
        """
        if self._fd is None:
            flags = (os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
            try:
                fd = os.open(self.path, flags)
            except FileNotFoundError:
                raise
            except OSError:
                path = self.path
                if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
                    raise OwnerFormatError(f"{path!r} is not a regular file") from None
                raise
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise OwnerFormatError(f"{self.path!r} is not a regular file")
            self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        return self._fd

    @property
    def is_open(self) -> bool:
        """True once the descriptor is open (the file was found at L)."""
        return self._fd is not None

    def problem(self) -> tuple[str, str]:
        """("", "") when the admission file can be used, else a refused
        state of PROTOCOL.md §1.2 and why: ``malformed`` (missing, or not
        a regular file) or ``unreadable`` (it cannot be opened)."""
        try:
            if not self.is_current():
                self.reopen()  # L was replaced since we opened it (a forced break)
            self.fd()
        except FileNotFoundError:
            return "malformed", "the lock directory is a protocol v2 marker without its admit file"
        except OwnerFormatError:
            return "malformed", "its admit file is not a regular file"
        except OSError as e:
            return "unreadable", f"its admit file cannot be opened: {e}"
        return "", ""

    def is_current(self) -> bool:
        """True when our descriptor is still the file at :attr:`path` (the
        lock directory was not removed or replaced by a forced break)."""
        if self._ident is None:
            return False
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def reopen(self) -> None:
        """Forget the descriptor (not while held or while a wait is in flight)."""
        with self._mutex:
            if self._held or self._waiter is not None:
                return
            self._close_locked()

    def _close_locked(self) -> None:
        view, self._view = self._view, None
        if view is not None:
            view.close()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = self._ident = None

    # -- locking ----------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the OS lock if it is free right now."""
        rc = os_lock(self.fd(), False)
        if rc == 0:
            self._held = True
            return True
        if rc == errno.EAGAIN:
            return False
        raise _os_error(rc, "cannot lock the admission file", self.path)

    def lock(self, deadline: float | None) -> bool:
        """Wait for the OS lock until ``deadline`` (monotonic; None: forever).

        The wait happens in the kernel, in a waiter thread (a blocking fcntl
        cannot time out), so a release wakes us at once; this thread looks at
        the deadline and for Ctrl-C every few milliseconds.
        """
        if self.try_lock():
            return True
        if self.direct_wait and self._waiter is None:
            got = self._lock_in_this_thread(deadline)
            if got is not None:
                return got
        with self._mutex:
            self._wanted = True
            if self._held:  # an earlier, abandoned wait was granted meanwhile
                return True
            if self._waiter is None:
                self._granted.clear()
                self._wait_error = 0
                fd = self.fd()
                self._waiter = threading.Thread(target=self._wait, args=(fd,),
                                                name=f"sss-admission-wait {self.path}", daemon=True)
                self._waiter.start()
        try:
            while True:
                slice_ = interrupts.CHECK_INTERVAL
                if deadline is not None:
                    slice_ = min(slice_, deadline - time.monotonic())
                if self._granted.wait(max(0.0, slice_)):
                    with self._mutex:
                        if self._held:
                            return True
                        rc, self._wait_error = self._wait_error, 0
                    if rc:
                        raise _os_error(rc, "waiting for the admission file's lock failed", self.path)
                    # granted and already given back (a race with an abandon): wait again
                    return self.lock(deadline)
                interrupts.checkpoint()
                if deadline is not None and time.monotonic() >= deadline:
                    with self._mutex:
                        if self._held:
                            return True
                        self._wanted = False
                    return False
        except BaseException:
            with self._mutex:
                self._wanted = False
                held = self._held
            if held:
                self.unlock()
            raise

    def _lock_in_this_thread(self, deadline: float | None) -> bool | None:
        """Wait in the kernel in the calling thread (Linux), in slices of
        CHECK_INTERVAL so the deadline and Ctrl-C are looked at; None when
        the platform cannot (then a waiter thread waits instead)."""
        fd = self.fd()
        while True:
            slice_ = interrupts.CHECK_INTERVAL
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    return False
            rc = os_lock_wait(fd, slice_)
            if rc == 0:
                self._held = True
                return True
            if rc == errno.ENOSYS:
                AdmitFile.direct_wait = False
                return None
            if rc not in (errno.EAGAIN, errno.EINTR):
                raise _os_error(rc, "waiting for the admission file's lock failed", self.path)
            interrupts.checkpoint()

    #: Whether :meth:`_lock_in_this_thread` works here (found out on first use).
    direct_wait = True

    def _wait(self, fd: int) -> None:
        while True:
            rc = os_lock(fd, True)
            if rc != errno.EINTR:
                break
        with self._mutex:
            self._waiter = None
            if rc != 0:
                self._wait_error = rc
            elif self._wanted:
                self._held = True
            else:
                os_unlock(fd)  # nobody waits for it any more
            self._granted.set()

    def unlock(self) -> None:
        """Give the OS lock up."""
        with self._mutex:
            self._held = False
            self._wanted = False
            fd = self._fd
        if fd is not None:
            os_unlock(fd)

    @property
    def held(self) -> bool:
        return self._held

    # -- the holder's record ----------------------------------------------------

    def write_record(self, record: AdmissionRecord) -> None:
        """Put the holder's record at the start of the file (no fsync).

        On POSIX through a shared memory map of the record's bytes: readers
        (``pread``) see it at once, as with ``write``, but a store into a
        mapped page does not update the file's mtime each time, so the
        COMMIT's fsync that follows does not also journal the admission
        file's inode (measured: a ``pwrite`` here cost ~40 us per write on
        ext4).  Windows keeps ``write``: the lock covers the file there.
        """
        data = record.padded()
        fd = self.fd()
        if _mmap is not None and os.name == "posix":
            view = self._view
            if view is None:
                if os.fstat(fd).st_size < ADMISSION_RECORD_BYTES:
                    os.ftruncate(fd, ADMISSION_RECORD_BYTES)
                view = self._view = _mmap.mmap(fd, ADMISSION_RECORD_BYTES)
            view[:ADMISSION_RECORD_BYTES] = data
            return
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's descriptor and lock are not ours.
        Closing our copy never releases the parent's lock (the open file
        description stays open in the parent)."""
        self._mutex = threading.Lock()
        self._granted = threading.Event()
        self._wanted = self._held = False
        self._waiter = None
        self._close_locked()


_registry_lock = threading.Lock()
# Strong references: a process keeps its one descriptor of an admission file
# open for good.  With POSIX record locks (everywhere but Linux and Windows)
# closing *any* descriptor of a file drops every lock the process holds on
# it, so nothing here ever opens a second one (PROTOCOL.md §2A.4).
_files: dict[str, AdmitFile] = {}


def admit_file(lock_dir: str) -> AdmitFile:
    """The process's one :class:`AdmitFile` for the lock directory ``lock_dir``."""
    path = os.path.join(lock_dir, ADMIT_FILE)
    with _registry_lock:
        af = _files.get(path)
        if af is None:
            af = _files[path] = AdmitFile(path)
        return af


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for af in list(_files.values()):
        af.forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Probe:
    """What :func:`probe` found: whether the OS lock is held, the pid the
    system names (POSIX record locks only, else 0), and the last record
    written into the file (the holder's, when held; a past holder's, or None,
    when free)."""

    __slots__ = ("held", "pid", "record", "detail")

    def __init__(self, held: bool, pid: int, record: AdmissionRecord | None, detail: str) -> None:
        self.held, self.pid, self.record, self.detail = held, pid, record, detail


def probe(lock_dir: str) -> Probe:
    """Look at a v2 lock without taking it (inspection, timeout messages),
    through the process's own descriptor of the admission file."""
    af = admit_file(lock_dir)
    state, why = af.problem()
    if state:
        return Probe(False, 0, None, why)
    fd = af.fd()
    held, pid = af.held, 0  # POSIX locks never conflict with the same process: ask our own state
    if not held:
        rc, held, pid = os_lock_probe(fd)
        if rc:
            return Probe(False, 0, None, f"cannot test the lock: {os.strerror(rc)}")
    try:
        if hasattr(os, "pread"):
            data = os.pread(fd, ADMISSION_RECORD_BYTES, 0)
        else:  # Windows: a region another handle has locked cannot be read
            os.lseek(fd, 0, os.SEEK_SET)
            data = os.read(fd, ADMISSION_RECORD_BYTES)
    except OSError:
        data = b""
    record: AdmissionRecord | None = None
    detail = ""
    if data.strip():
        try:
            record = parse_admission(data)
        except OwnerFormatError as e:
            detail = f"the admission record cannot be read: {e}"
    return Probe(held, pid, record, detail)


def describe_os_holder(lock_dir: str) -> tuple[bool, str]:
    """(held?, a sentence naming the holder) for a v2 lock, from its
    admission file."""
    p = probe(lock_dir)
    if not p.held:
        return False, "free" + (f" ({p.detail})" if p.detail else "")
    rec = p.record
    if rec is None:
        who = f"pid {p.pid}" if p.pid else "a process that has not written its record yet"
        return True, f"held for writing by {who}" + (f" ({p.detail})" if p.detail else "")
    if rec.host_id and rec.host_id == procinfo.host_id():
        state = procinfo.owner_process_state(rec.pid, rec.process_start)
        where = f"pid {rec.pid} on this host ({rec.host}), process {state}"
    else:
        where = f"pid {rec.pid} on host {rec.host!r}"
    return True, (f"held for writing by owner {rec.owner_id} ({where}) since {rec.acquired_at}; "
                  "an operating-system lock: released by the kernel when that process ends")
