"""Lock protocol v2: writers admitted by an operating-system lock.

``trusted`` and ``wal`` modes are for file systems whose locks work (that is
what "trusted" means), so a writer waits for an exclusive OS lock on
``L/admit`` instead of building lock directories and watching heartbeats
(PROTOCOL.md §2A).  What that buys:

* hand-over in microseconds: the kernel wakes the next waiter the moment the
  lock is released (v1 polled, and each hand-over cost mkdir, fsyncs and
  renames: about 1.2 ms);
* no staleness: the kernel releases the lock of a process that dies, and
  never takes it from a live one.  A paused holder (SIGSTOP, a debugger) is
  simply waited for, as SQLite's own locks are, so there is no late COMMIT by
  a holder that was broken while paused;
* fencing, owner records and inspection stay: every write still
  compare-and-sets the epoch, the holder's record names it in timeout
  messages and in ``inspect_lock``.

The lock directory L becomes permanent and holds a *marker* (``owner.json``
with ``version`` 2), which v1 clients refuse as an unknown version: the two
protocols never mix on one file.  A v1 holder found at L when the marker is
first made is broken if it is stale by the v1 rules (its process is gone),
and refused otherwise.

Usage mirrors :class:`~.lock.DirectoryLock`'s write mode::

    lock = OSLock("state.sqlite")
    with lock.acquire(timeout=5):
        ...            # admitted writer
        lock.check()   # LockCompromised if the marker was removed meanwhile
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from types import EllipsisType, TracebackType

from ..binding.errors import Error
from . import interrupts, procinfo
from .errors import (
    LockCompromised,
    LockError,
    LockTimeout,
    ProtocolMismatch,
    lock_not_released,
    lock_not_taken,
)
from .lock.breaking import break_judged, remove_tree, rename_taken
from .lock.inspection import LockInfo, inspect_lock
from .lock.observe import DEFAULT_STALE_TIMEOUT, Observer, Seen, describe_owner, look, process_state, refusal
from .lock.paths import lock_paths
from .lock.waiting import DEFAULT_TIMEOUT, backoff, check_seconds, guarded, path_lock, wait_thread_lock
from .oslock import ADMIT_FILE, AdmitFile, admit_file, describe_os_holder
from .owner import OWNER_FILE, AdmissionRecord, MarkerRecord, fsync_dir

__all__ = ["OSLock", "ensure_marker"]


def _make_marker(lock_path: str, target: str) -> bool:
    """Build a complete v2 lock directory aside and rename it onto L.
    False when L is taken meanwhile (the caller looks again)."""
    tmp = f"{lock_path}.tmp-{secrets.token_hex(16)}"
    os.mkdir(tmp)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for name, data in ((OWNER_FILE, MarkerRecord.create(target).to_json_bytes()), (ADMIT_FILE, b"")):
            fd = os.open(os.path.join(tmp, name), flags, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(tmp)
        try:
            os.rename(tmp, lock_path)
        except OSError as e:
            if not rename_taken(e, lock_path):
                raise
            remove_tree(tmp)  # another client made L first
            return False
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_dir(os.path.dirname(lock_path))  # once per database: make the marker durable
    return True


def ensure_marker(db_path: str, lock_path: str, deadline: float | None,
                  stale_timeout: float = DEFAULT_STALE_TIMEOUT) -> AdmitFile:
    """Make sure L is a v2 lock directory; return this process's admission file.

    Raises:
        ProtocolMismatch: a live lock protocol v1 client (mode 'network', or
            an older version of the package) holds L.
        LockTimeout: L stays in a refused state (malformed, empty, ...) past
            the deadline; such states are never broken automatically.
    """
    observer = Observer(stale_timeout, True)
    attempt = 0
    while True:
        seen = look(lock_path)
        if seen.state == "os-lock":
            af = admit_file(lock_path)
            state, detail = af.problem()
            if not state:
                return af
            # A refused state (PROTOCOL.md §2A.6): wait, never repair.
            why = refusal(lock_path, Seen(state, detail=detail))
        elif seen.state == "absent":
            if _make_marker(lock_path, os.path.basename(db_path)):
                continue
            attempt = 0
            continue
        elif seen.state == "held":
            why = _v1_holder(db_path, lock_path, seen, observer)
            if not why:
                attempt = 0
                continue
        else:
            why = refusal(lock_path, seen)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise LockTimeout(f"timed out waiting for lock {lock_path!r}: {why}")
        pause = backoff(attempt)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - now))
        interrupts.checkpoint()
        time.sleep(pause)
        interrupts.checkpoint()
        attempt += 1


def _v1_holder(db_path: str, lock_path: str, seen: Seen, observer: Observer) -> str:
    """A v1 lock directory at L: break it if its owner is gone ("" : look
    again), else refuse the mix of protocols."""
    rec = seen.record
    assert rec is not None
    if rec.host_id and rec.host_id == procinfo.host_id() and process_state(rec) in ("dead", "reused"):
        stale, why = observer.judge(rec)
        if stale:
            break_judged(lock_path, rec, why)
            return ""
    raise ProtocolMismatch(
        f"cannot admit a writer to {db_path!r}: its lock directory is {describe_owner(rec)}, a "
        "client of lock protocol v1 (mode 'network', or an older sqlite-session-safe). This "
        "client uses protocol v2 (modes 'trusted' and 'wal': an operating-system lock). Every "
        "process must use one protocol per database file: open it with mode='network', or stop "
        "the v1 clients (and upgrade them) first"
    )


class OSLock:
    """The write lock of one database in lock protocol v2 (trusted, wal).

    Args:
        db_path: the database file (need not exist yet; its directory must).
        timeout: default seconds :meth:`acquire` waits; None waits forever.

    Threads of one process take it one at a time (first come, first served);
    other processes wait in the kernel.  A forked child never holds its
    parent's lock.  Same surface as :class:`~.lock.DirectoryLock` in write
    mode, minus what v2 has no use for (no heartbeat, no staleness).

    **Lease**: ``release(linger=s)`` keeps the OS lock for up to ``s`` more
    seconds, so that this object's next :meth:`acquire` needs no hand-over
    (and SQLite's page cache stays valid, since nobody else wrote); a keeper
    thread gives it up when the lease runs out, :meth:`end_linger` at once.
    Others wait (in the kernel) at most that long; the caller bounds how many
    leases follow each other (``Database`` does).
    """

    protocol = 2

    def __init__(self, db_path: str | os.PathLike[str], timeout: float | None = DEFAULT_TIMEOUT) -> None:
        check_seconds("timeout", timeout, allow_none=True, allow_zero=True)
        self.db_path, self.lock_path, _readers = lock_paths(db_path)
        self.timeout = timeout
        self._path_lock = path_lock(self.lock_path)
        self._object_lock = threading.Lock()
        self._admit: AdmitFile | None = None
        self._admit_file = admit_file(self.lock_path)
        self._record: AdmissionRecord | None = None
        self._held = False
        self._holder_thread: int | None = None
        self._pid = os.getpid()
        # The lease: changed under _lease_cv (the keeper thread ends it).
        self._lease_cv = threading.Condition(threading.Lock())
        self._lingering = False
        self._linger_until = 0.0
        self._keeper: threading.Thread | None = None

    # -- state ------------------------------------------------------------------

    @property
    def is_held(self) -> bool:
        """True while this object holds the lock (in this process)."""
        return self._held and self._pid == os.getpid()

    @property
    def is_lingering(self) -> bool:
        """True while a lease keeps the lock after ``release(linger=...)``."""
        return self._lingering and self.is_held

    @property
    def needs_release(self) -> bool:
        """True while this object was acquired (not lingering) and not yet
        released, in this process: :meth:`release` must run."""
        return self._held and not self._lingering and self._pid == os.getpid()

    @property
    def owner(self) -> AdmissionRecord | None:
        """This holder's record (its ``owner_id`` is new for each acquisition)."""
        return self._record if self.is_held else None

    def end_linger(self) -> None:
        """Give a lingering lease up now (no-op when not lingering)."""
        with self._lease_cv:
            self._end_lease_locked()

    def _end_lease_locked(self) -> None:
        if self._lingering and self._pid == os.getpid():
            self._lingering = False
            self._unlock_os()

    def _reclaim(self, me: int) -> bool:
        """Take a lingering lease back for a new holding (caller holds the
        object lock); False when it ended or the lock file was replaced."""
        with self._lease_cv:
            if not self._lingering:
                return False
            self._lingering = False
            af = self._admit
            if af is None or not af.is_current():
                self._unlock_os()
                return False
            self._holder_thread = me
            self._path_lock.thread = me
            return True

    def _keep(self) -> None:
        """The keeper thread: ends leases that ran out; exits when idle."""
        with self._lease_cv:
            while True:
                if not self._lingering:
                    if not self._lease_cv.wait(5.0) and not self._lingering:
                        self._keeper = None
                        return
                    continue
                left = self._linger_until - time.monotonic()
                if left <= 0:
                    self._end_lease_locked()
                else:
                    self._lease_cv.wait(left)

    # -- acquire / release ------------------------------------------------------

    @guarded
    def acquire(self, timeout: float | None | EllipsisType = ...) -> OSLock:
        """Wait for the lock (in the kernel); returns self (a context manager).

        Raises:
            LockTimeout: not admitted in time; the message names the holder.
            ProtocolMismatch: a lock protocol v1 client uses this database.
            LockError: this thread already holds it.
            LockPathError: the file system refused to make or open the lock
                directory or its files (errno named); nothing was changed.
        """
        if timeout is ...:
            timeout = self.timeout
        check_seconds("timeout", timeout, allow_none=True, allow_zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        if self._pid != os.getpid():
            self._forget_after_fork()
        if self._held and self._holder_thread == me:
            raise LockError(f"{self.lock_path}: already held by this thread (not reentrant)")
        if self._path_lock.thread == me:
            raise LockError(f"{self.lock_path}: this thread already holds this database's write lock "
                            "through another lock object (not reentrant)")
        if not wait_thread_lock(self._object_lock, deadline):
            raise LockTimeout(f"timed out waiting for {self.lock_path}: another thread holds it")
        if self._lingering and self._reclaim(me):
            return self
        try:
            if not self._path_lock.acquire(deadline):
                raise LockTimeout(f"timed out waiting for {self.lock_path}: another thread of this "
                                  f"process holds it ({describe_os_holder(self.lock_path)[1]})")
            self._path_lock.thread = me
            try:
                self._acquire_os(deadline)
            except BaseException:
                self._path_lock.release()
                raise
        except BaseException as e:
            self._object_lock.release()
            if isinstance(e, OSError) and not isinstance(e, Error):
                raise lock_not_taken(self.lock_path, e) from e
            raise
        self._holder_thread = me
        return self

    def _acquire_os(self, deadline: float | None) -> None:
        af = self._admit_file
        while True:
            if not af.is_open:
                # First use in this process, or after a forced break: make
                # sure L is a v2 lock directory (reads owner.json).  Later
                # acquisitions go straight to the lock; is_current() below
                # still proves it is the file at L.
                af = self._admit_file = ensure_marker(self.db_path, self.lock_path, deadline)
            if not af.lock(deadline):
                held, who = describe_os_holder(self.lock_path)
                raise LockTimeout(f"timed out waiting for lock {self.lock_path!r}: {who}")
            if af.is_current():
                break
            # L was removed or replaced (an operator's forced break) while we
            # waited: that lock admits nobody any more.  Start over.
            af.unlock()
            af.reopen()
        try:
            record = AdmissionRecord.create(os.path.basename(self.db_path))
            af.write_record(record)
        except BaseException:
            af.unlock()
            raise
        self._admit, self._record, self._held = af, record, True

    @guarded
    def release(self, linger: float = 0.0) -> None:
        """Give the lock up, or keep it as a lease for ``linger`` seconds
        (see the class docstring).

        Raises:
            LockError: not held by this object (or lingering already).
            LockPathError: unlocking the admission file failed (a dead
                network mount); this object no longer holds the lock; the OS
                lock goes with the descriptor when the object is closed.
        """
        check_seconds("linger", linger, allow_zero=True)
        if not self._held or self._pid != os.getpid() or self._lingering:
            raise LockError(f"{self.lock_path}: release() of a lock that is not held")
        self._holder_thread = None
        if linger > 0:
            with self._lease_cv:
                self._lingering = True
                self._linger_until = time.monotonic() + linger
                self._path_lock.thread = None
                if self._keeper is None:
                    self._keeper = threading.Thread(target=self._keep, daemon=True,
                                                    name=f"sss-lease {self.lock_path}")
                    self._keeper.start()
                else:
                    self._lease_cv.notify()
            self._object_lock.release()
            return
        try:
            self._unlock_os()
        except Error:
            raise
        except OSError as e:
            raise lock_not_released(
                self.lock_path, e,
                "the OS lock may stay taken until this lock object is closed or the process "
                "exits (the kernel drops it with the descriptor)") from e
        finally:
            self._object_lock.release()

    def _unlock_os(self) -> None:
        """Give the OS lock and the process-local mutex up."""
        af, self._admit = self._admit, None
        self._held = False
        try:
            if af is not None:
                af.unlock()
        finally:
            self._path_lock.release()

    def check(self) -> None:
        """Prove the lock is still ours (before COMMIT): held, and the
        admission file we hold is still the one at L (a forced break renames
        L away; a new L admits others).

        Raises:
            LockCompromised: the lock directory was removed or replaced.
            LockError: not held (or held by the parent of this forked child).
        """
        if not self._held or self._pid != os.getpid():
            raise LockError(f"{self.lock_path}: check() of a lock that is not held")
        af = self._admit
        if af is None or not af.is_current():
            raise LockCompromised(
                f"lock {self.lock_path!r} compromised: its admission file was removed or replaced "
                "(a forced break?) while this writer held it; nothing more may be committed under it")

    def inspect(self) -> LockInfo | None:
        """:func:`~.lock.inspect_lock` for this lock's database."""
        return inspect_lock(self.db_path)

    def __enter__(self) -> OSLock:
        return self if self.is_held and self._holder_thread == threading.get_ident() else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<OSLock {self.lock_path!r} {'held' if self.is_held else 'free'}>"

    def _forget_after_fork(self) -> None:
        # A forked child: the parent's holding is not ours (oslock.py closed
        # the child's copy of the descriptor).
        self._object_lock = threading.Lock()
        self._path_lock = path_lock(self.lock_path)
        self._admit, self._record, self._held = None, None, False
        self._admit_file = admit_file(self.lock_path)
        self._holder_thread = None
        self._lease_cv = threading.Condition(threading.Lock())
        self._lingering = False
        self._keeper = None
        self._pid = os.getpid()
