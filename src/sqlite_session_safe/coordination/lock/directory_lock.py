"""The directory lock itself (lock protocol v1): :class:`DirectoryLock`, its
acquisition, heartbeats, leases and release, and the keeper thread that
heartbeats a held lock."""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import EllipsisType, TracebackType
from typing import NoReturn

from .. import interrupts, procinfo
from ..errors import (
    LockCompromised,
    LockError,
    LockRefused,
    LockTimeout,
)
from ..owner import (
    OWNER_FILE,
    OwnerRecord,
    write_owner_file,
)
from .breaking import (
    break_judged,
    remove_tree,
    rename_taken,
    sweep_tombs,
)
from .inspection import (
    LockInfo,
    inspect_lock,
)
from .observe import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_STALE_TIMEOUT,
    Observer,
    Seen,
    describe_owner,
    look,
    process_state,
    protocol_mismatch,
    refusal,
)
from .paths import (
    lock_paths,
    reader_markers,
)
from .waiting import (
    DEFAULT_TIMEOUT,
    backoff,
    check_seconds,
    guarded,
    path_lock,
    wait_thread_lock,
)

log = logging.getLogger("sqlite_session_safe.lock")

#: Backoff cap once a waiter has announced itself to the holder (a
#: ``want-<owner_id>`` file in the lock directory, PROTOCOL.md §2.11): the
#: holder hands over promptly, so poll faster than an unannounced waiter.
ANNOUNCED_BACKOFF_MAX = 0.004
#: A holder keeping leases looks for announced waiters this often while
#: lingering (seconds).  Busy, it looks at the end of each holding instead; the
#: keeper thread then wakes at this pace for the whole tenure rather than being
#: woken at every write (a thread wake costs more than the poll).
LINGER_POLL = 0.005
#: After handing over to announced waiters, the former holder's next acquire
#: leaves the free lock to them for at most this long (seconds), unless they
#: took it, gave up or died first.
HANDOVER_WAIT = 1.0
#: A keeper (heartbeat) thread with no lock to keep exits after this long idle.
KEEPER_IDLE_EXIT = 5.0
#: Name prefix of a waiter's announcement inside the lock directory.
WANT_PREFIX = "want-"
#: Windows refuses to rename a directory while a process has a file in it open
#: (a waiter reading owner.json, a virus scanner): release retries for this
#: long (seconds) instead of failing.  Elsewhere such a refusal is final.
SHARING_RETRY = 2.0 if sys.platform == "win32" else 0.0

_HAS_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_WANT_NAME = re.compile(r"want-([0-9a-f]{32})\Z")
_LISTDIR_FD = os.listdir in os.supports_fd

if hasattr(time, "CLOCK_BOOTTIME"):
    # The holder's own lease clock counts suspend too (CLOCK_MONOTONIC does
    # not on Linux): after a laptop sleeps, the holder must doubt its lock.
    def _lease_clock() -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

else:
    _lease_clock = time.monotonic


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _KeeperCtl:
    """Wakes one lock's keeper thread; holds no reference to the lock, so
    an unreferenced, unheld lock can be collected and its keeper exits."""

    __slots__ = ("cv", "kick", "thread")

    def __init__(self) -> None:
        self.cv = threading.Condition(threading.Lock())
        self.kick = False
        self.thread: threading.Thread | None = None


def _keeper_main(ref: weakref.ReferenceType[DirectoryLock], ctl: _KeeperCtl) -> None:
    """Heartbeats and lease expiry of one lock, across its acquisitions (one
    thread per lock object, not one per acquisition)."""
    while True:
        lk = ref()
        if lk is None:
            with ctl.cv:
                ctl.thread = None
            return
        wait = lk._keeper_step()
        del lk  # never keep the lock alive while sleeping
        with ctl.cv:
            if not ctl.kick:
                ctl.cv.wait(KEEPER_IDLE_EXIT if wait is None else max(0.0, wait))
                if wait is None and not ctl.kick:
                    ctl.thread = None  # idle: a later acquisition starts a new one
                    return
            ctl.kick = False


_live_locks: weakref.WeakSet[DirectoryLock] = weakref.WeakSet()
# Held locks stay referenced (their keeper holds only a weak reference): a
# lock dropped without release keeps heartbeating, as before, and a lease
# keeps lingering until it ends.
_holding: set[DirectoryLock] = set()


def _after_fork_in_child() -> None:
    # No lock of the parent is ours: forget every holding.
    _holding.clear()
    for lk in list(_live_locks):
        lk._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _end_leases_at_exit() -> None:
    # A lease must not outlive its process by the stale timeout on other
    # hosts: release every lingering lock at interpreter exit.
    for lk in list(_holding):
        try:
            lk.end_linger()
        except Exception:  # noqa: BLE001 - best effort while exiting
            pass


atexit.register(_end_leases_at_exit)


class DirectoryLock:
    """The outer lock of one database file (lock protocol v1).

    Args:
        db_path: the database file (need not exist yet; its directory must).
            Resolved with ``realpath`` now, so every spelling shares one lock.
        mode: ``"write"`` (one holder; waits for active readers to leave) or
            ``"read"`` (a shared reader marker, for network mode).
        timeout: default seconds :meth:`acquire` waits; ``None`` waits forever.
        stale_timeout: seconds an observer must see this holder's heartbeat
            unchanged before breaking it; advertised in ``owner.json``.
        heartbeat_interval: seconds between heartbeats; at most a third of
            ``stale_timeout``.
        on_compromised: called once, from the heartbeat thread or from
            :meth:`check`, with the :class:`LockCompromised` when the lock is lost.
        same_host_shortcut: judge a same-host owner whose process is gone as
            stale at once (default).  ``False`` waits for the stale timeout
            like for an owner on another host.

    Threads of one process take a write lock one at a time; a forked child
    neither owns nor heartbeats a lock its parent holds.

    **Lease**: ``release(linger=s)`` keeps the lock for up to ``s`` more
    seconds (heartbeating) so that the next :meth:`acquire` of this object
    is admitted at once, without re-acquiring; a waiter (another process,
    another lock object of this process, a network-mode reader) announces
    itself and the holder then releases at once when idle, or at the end of
    its current tenure (PROTOCOL.md §2.11).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        mode: str = "write",
        timeout: float | None = DEFAULT_TIMEOUT,
        stale_timeout: float = DEFAULT_STALE_TIMEOUT,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        *,
        on_compromised: Callable[[LockCompromised], object] | None = None,
        same_host_shortcut: bool = True,
    ) -> None:
        if mode not in ("write", "read"):
            raise ValueError(f'mode must be "write" or "read", not {mode!r}')
        check_seconds("timeout", timeout, allow_none=True, allow_zero=True)
        check_seconds("heartbeat_interval", heartbeat_interval)
        check_seconds("stale_timeout", stale_timeout)
        if stale_timeout < 3 * heartbeat_interval * (1 - 1e-9):  # 0.3 vs 3 x 0.1
            raise ValueError(
                f"stale_timeout ({stale_timeout:g}s) must be at least 3 x heartbeat_interval "
                f"({heartbeat_interval:g}s), so a holder is never judged stale between heartbeats"
            )
        self.db_path, self.lock_path, self.readers_path = lock_paths(db_path)
        self.mode = mode
        self.timeout = timeout
        self.stale_timeout = float(stale_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.on_compromised = on_compromised
        self.same_host_shortcut = same_host_shortcut
        self._path_lock = path_lock(self.lock_path) if mode == "write" else None
        self._object_lock = threading.Lock()  # one acquisition of this object at a time
        self._state_lock = threading.Lock()  # keeper (heartbeat, lease end) vs the holder
        self._ctl = _KeeperCtl()
        self._has_path_lock = False
        # After handing the lock over to announced waiters: their owner ids
        # and until when (monotonic) our next acquire leaves the lock to them.
        self._handover: tuple[frozenset[str], float] | None = None
        self._reset_state()
        _live_locks.add(self)

    def _reset_state(self) -> None:
        self._held = False
        self._lingering = False
        self._linger_until = 0.0
        self._announced = ""  # the owner id whose lock directory holds our want- file
        self._holder_thread: int | None = None
        self._pid = os.getpid()
        self._forked_from: int | None = None
        self._path = ""  # our directory: the lock dir, or our reader marker
        self._record: OwnerRecord | None = None
        self._dir_fd: int | None = None
        self._dir_id: tuple[int, int] | None = None
        self._last_beat = 0.0
        self._next_beat = 0.0
        self._beats_stopped = False
        self._lease_mode = False  # the keeper polls for waiters (a lease was kept this tenure)
        self._owner_stat: tuple[int, int, int] | None = None  # what we last wrote at owner.json
        self._compromised: LockCompromised | None = None
        self._notified = False
        self._notify_lock = threading.Lock()
        self._tombs: list[str] = []

    # -- public API ---------------------------------------------------------

    @property
    def is_held(self) -> bool:
        """True while this process holds the lock and has not found it lost
        (also while a lease lingers)."""
        return self._held and self._compromised is None and self._pid == os.getpid()

    @property
    def is_lingering(self) -> bool:
        """True while the lock is kept after ``release(linger=...)``: the next
        :meth:`acquire` of this object is admitted without re-acquiring."""
        return self._lingering and self.is_held

    def wanted(self) -> bool:
        """True when someone waits for this lock: a ``want-`` announcement in
        our lock directory, or another lock object of this process queued for
        the same database.  False when not held."""
        if not self._held or self._pid != os.getpid():
            return False
        return self._wanted_by() is not None

    @guarded
    def end_linger(self) -> None:
        """Release a lingering lease now (no-op when not lingering).

        A lease found lost is logged (and ``on_compromised`` called), not
        raised: no write was in progress under it."""
        if not self._lingering or self._pid != os.getpid():
            return
        with self._state_lock:
            if self._lingering:
                self._end_tenure_locked(None)
        self._notify()

    @property
    def owner(self) -> OwnerRecord | None:
        """This holder's current ``owner.json`` record, or None when not held."""
        return self._record if self._held and self._pid == os.getpid() else None

    @guarded
    def acquire(self, timeout: float | None | EllipsisType = ...) -> Acquired:
        """Wait for the lock.

        Returns a handle that is itself a context manager releasing the lock,
        so both ``lock.acquire(); ...; lock.release()`` and
        ``with lock.acquire(timeout=5): ...`` work; attribute access on the
        handle reaches the lock.

        Raises:
            LockTimeout: the wait ran out (the message says who holds it).
            LockError: this thread already holds it through this object or
                another one for the same database.
        """
        if timeout is ...:
            timeout = self.timeout
        check_seconds("timeout", timeout, allow_none=True, allow_zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        if self._held and self._holder_thread == me and self._pid == os.getpid():
            raise LockError(f"{self.lock_path}: already held by this thread (not reentrant)")
        if self._path_lock is not None and self._path_lock.thread == me:
            raise LockError(
                f"{self.lock_path}: this thread already holds this database's write lock "
                "through another DirectoryLock (not reentrant)"
            )
        if not wait_thread_lock(self._object_lock, deadline):
            raise LockTimeout(f"timed out waiting for {self.lock_path}: another thread holds it")
        try:
            if self._lingering and self._reclaim(me):
                return Acquired(self)
            if self._path_lock is not None:
                if not self._path_lock.acquire(deadline):
                    seen = look(self.lock_path)
                    holder = f": {describe_owner(seen.record)}" if seen.record else ""
                    raise LockTimeout(
                        f"timed out waiting for {self.lock_path}: another thread of this "
                        f"process holds it{holder}"
                    )
                self._path_lock.thread = me
                self._has_path_lock = True
            self._reset_state()
            if self.mode == "write":
                self._acquire_write(deadline)
            else:
                self._acquire_read(deadline)
            self._holder_thread = me
        except BaseException:
            self._release_thread_locks()
            raise
        return Acquired(self)

    @guarded
    def release(self, linger: float = 0.0) -> None:
        """Give the lock up: rename the directory away, then delete it.

        Args:
            linger: seconds to keep holding the lock (heartbeating) in case
                this object acquires it again: that :meth:`acquire` is then
                admitted at once.  The lease ends early, at once, when a
                waiter announces itself (:meth:`wanted`); :meth:`end_linger`,
                process exit and the lease running out release it.  0 (the
                default) releases now.

        Raises:
            LockError: not held (or held by the parent of this forked child).
            LockCompromised: the lock had been lost; nothing at the lock path
                was touched, since it may be someone else's now.
        """
        self._refuse_if_forked()
        check_seconds("linger", linger, allow_zero=True)
        if not self._held or self._lingering:
            raise LockError(f"{self.lock_path}: release() of a lock that is not held")
        keep = start_polling = False
        try:
            with self._state_lock:
                wanted_by = self._wanted_by()
                if linger > 0 and self._compromised is None and wanted_by is None:
                    keep = True
                    self._lingering = True
                    self._linger_until = _lease_clock() + linger
                    start_polling = not self._lease_mode
                    self._lease_mode = True
                    self._holder_thread = None
                    if self._path_lock is not None:
                        self._path_lock.thread = None
                else:
                    self._end_tenure_locked(wanted_by, release_path_lock=False)
        finally:
            if keep:
                self._object_lock.release()
                if start_polling:
                    self._kick()
            else:
                with self._state_lock:
                    self._finish_locked()
                self._release_thread_locks()
        if self._compromised is not None:
            self._notify()
            raise LockCompromised(str(self._compromised))

    def check(self) -> None:
        """Prove the lock is still ours right now (call it before COMMIT).

        Raises:
            LockCompromised: the lock directory was removed, replaced or
                re-owned, or our heartbeat is overdue.
            LockError: not held, or held by the parent of this forked child.
        """
        self._refuse_if_forked()
        if not self._held:
            raise LockError(f"{self.lock_path}: check() of a lock that is not held")
        if self._compromised is None:
            with self._state_lock:
                if self._compromised is None:
                    try:
                        self._verify_locked()
                    except LockCompromised:
                        pass
        if self._compromised is not None:
            self._notify()
            raise LockCompromised(str(self._compromised))

    def inspect(self) -> LockInfo | None:
        """:func:`inspect_lock` for this lock's database."""
        return inspect_lock(self.db_path)

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except LockCompromised:
            if exc is None:
                raise  # the block's work was not exclusive: say so
            # else: the block's own exception is already on its way

    def __repr__(self) -> str:
        state = "held" if self.is_held else ("compromised" if self._compromised else "free")
        return f"<DirectoryLock {self.lock_path!r} mode={self.mode} {state}>"

    # -- acquiring ----------------------------------------------------------

    def _new_record(self, phase: str) -> OwnerRecord:
        return OwnerRecord.create(
            mode=self.mode,
            phase=phase,
            target=os.path.basename(self.db_path),
            heartbeat_interval=self.heartbeat_interval,
            stale_timeout=self.stale_timeout,
        )

    def _build(self, tmp: str, rec: OwnerRecord) -> None:
        """Make ``tmp`` a complete lock directory (not yet visible as a lock)."""
        os.mkdir(tmp)
        try:
            if _HAS_DIR_FD:
                self._dir_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
                st = os.fstat(self._dir_fd)
                self._dir_id = (st.st_dev, st.st_ino)
            else:
                # Windows: no directory descriptor, but the directory's file
                # id still tells ours from a successor's (check, release).
                st = os.lstat(tmp)
                if st.st_ino:
                    self._dir_id = (st.st_dev, st.st_ino)
            self._owner_stat = _stat_key(write_owner_file(tmp, rec, self._dir_fd))
        except BaseException:
            self._close_fd()
            remove_tree(tmp)
            raise
        self._record = rec

    def _install(self, tmp: str, dest: str) -> bool:
        """Rename the built directory to ``dest``; False if ``dest`` is taken."""
        # The lease starts before the rename (PROTOCOL.md §2.3): an observer
        # may see the new owner.json, and start its count, the moment the
        # rename takes effect.  The heartbeat-0 write into ``tmp`` does not
        # count: nobody observes it there.
        started = _lease_clock()
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if rename_taken(e, dest):
                return False
            raise
        # No fsync of the parent here: if a crash loses this rename, the lock
        # is simply free afterwards, and its holder died anyway.
        with self._state_lock:
            self._path = dest
            self._held = True
            self._last_beat = started
            self._next_beat = self._last_beat + self.heartbeat_interval
        _holding.add(self)
        self._kick()
        return True

    def _break_if_stale(self, path: str, seen: Seen, observer: Observer) -> bool:
        """Judge ``seen`` (a valid owner at ``path``); break it if stale."""
        assert seen.record is not None
        stale, why = observer.judge(seen.record)
        if not stale:
            return False
        tomb = break_judged(path, seen.record, why)
        if tomb is not None and path != self.lock_path:
            # A reader marker's name is never reused, so its tomb can go as
            # soon as we are done.  Tombs of the lock directory stay until the
            # next release (see sweep_tombs).
            self._tombs.append(tomb)
        return True

    def _acquire_write(self, deadline: float | None) -> None:
        rec = self._new_record("active")
        tmp = f"{self.lock_path}.tmp-{rec.owner_id}"
        self._build(tmp, rec)
        observer = Observer(self.stale_timeout, self.same_host_shortcut)
        readers: dict[str, Observer] = {}
        # Reader markers seen waiting: each goes first until it has left, even
        # after it turned "active" (else a writer polling in the instant it
        # turns could overtake it: PROTOCOL.md §2.3 step 2.1).
        owed: set[str] = set()
        attempt = 0
        why = ""
        try:
            while True:
                # Readers not starved: a reader already waiting goes first.
                blocker = self._readers_blocking(readers, waiting=True, owed=owed)
                if blocker:
                    why = blocker
                else:
                    seen = look(self.lock_path)
                    if seen.state == "absent":
                        if self._handover_pending():
                            why = "handing the lock over to a waiter that announced itself"
                        elif self._install(tmp, self.lock_path):
                            break
                        else:
                            continue
                    elif seen.state == "held":
                        assert seen.record is not None
                        self._handover = None  # someone took it
                        if self._break_if_stale(self.lock_path, seen, observer):
                            attempt = 0
                            continue
                        self._announce(seen.record)
                        why = describe_owner(seen.record)
                    elif seen.state == "os-lock":
                        raise protocol_mismatch(self.db_path, "take the write lock")
                    else:
                        why = refusal(self.lock_path, seen)
                attempt = self._wait_or_timeout(deadline, attempt, why)
            # We hold the lock directory: new readers now wait.  Writer
            # preferred: wait for the active readers to leave.
            while blocker := self._readers_blocking(readers, waiting=False):
                attempt = self._wait_or_timeout(deadline, attempt, blocker)
        except BaseException:
            if not self._held:
                remove_tree(tmp)
            self._abandon()
            raise

    def _readers_blocking(self, observers: dict[str, Observer], waiting: bool,
                          owed: set[str] | None = None) -> str:
        """Describe a live reader in the given phase (waiting or active), or "".

        With ``owed``, the markers seen waiting are added to it, and a marker
        already in it blocks in any phase.  Stale markers are broken on the
        way; a marker in a refused state counts as an active reader (never
        broken automatically).
        """
        for path in reader_markers(self.readers_path):
            seen = look(path)
            if seen.state == "absent":
                continue
            if seen.state != "held":
                if not waiting:
                    return refusal(path, seen)
                continue
            rec = seen.record
            assert rec is not None
            if owed is not None and rec.phase == "waiting":
                owed.add(path)
            if (rec.phase == "waiting") != waiting and (owed is None or path not in owed):
                continue
            obs = observers.setdefault(path, Observer(self.stale_timeout, self.same_host_shortcut))
            if self._break_if_stale(path, seen, obs):
                continue
            return f"reader marker {path!r} is {describe_owner(rec)}"
        return ""

    def _acquire_read(self, deadline: float | None) -> None:
        try:
            os.mkdir(self.readers_path)
        except FileExistsError:
            pass
        st = os.lstat(self.readers_path)
        if not stat.S_ISDIR(st.st_mode):
            raise LockRefused(
                f"readers path {self.readers_path!r} is not a directory (a symlink or a file); "
                "compliant clients never make it one: remove it by hand"
            )
        observer = Observer(self.stale_timeout, self.same_host_shortcut)
        attempt = 0
        phase = ""
        try:
            while True:
                seen = look(self.lock_path)
                if seen.state == "absent":
                    phase = self._set_phase(phase, "active")
                    # Re-check after announcing ourselves active: a writer that
                    # took the lock meanwhile either sees our marker or we see it.
                    if look(self.lock_path).state == "absent":
                        return
                    phase = self._set_phase(phase, "waiting")
                    continue
                if seen.state == "held":
                    assert seen.record is not None
                    if self._break_if_stale(self.lock_path, seen, observer):
                        attempt = 0
                        continue
                    why = describe_owner(seen.record)
                elif seen.state == "os-lock":
                    raise protocol_mismatch(self.db_path, "take the reader lock")
                else:
                    why = refusal(self.lock_path, seen)
                phase = self._set_phase(phase, "waiting")
                if seen.record is not None:
                    self._announce(seen.record)  # a lingering writer lets us in
                attempt = self._wait_or_timeout(deadline, attempt, why)
        except BaseException:
            self._abandon()
            raise

    def _set_phase(self, current: str, phase: str) -> str:
        """Create our reader marker in ``phase``, or rewrite it to ``phase``."""
        if current == phase:
            return phase
        if not current:
            rec = self._new_record(phase)
            tmp = os.path.join(self.readers_path, f"tmp-{rec.owner_id}")
            self._build(tmp, rec)
            marker = os.path.join(self.readers_path, f"reader-{rec.owner_id}")
            if not self._install(tmp, marker):  # the name is ours alone
                remove_tree(tmp)
                raise LockError(f"reader marker {marker!r} already exists")
            return phase
        with self._state_lock:
            self._verify_locked()
            self._write_next(phase)
        return phase

    def _wait_or_timeout(self, deadline: float | None, attempt: int, why: str) -> int:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise LockTimeout(f"timed out waiting for lock {self.lock_path!r}: {why}")
        if self._compromised is not None:
            raise LockCompromised(str(self._compromised))
        pause = backoff(attempt)
        if self._announced or self._handover is not None:
            # The holder hands over as soon as it sees our announcement (or
            # we wait for the waiter we handed over to): poll faster.
            pause = min(pause, ANNOUNCED_BACKOFF_MAX * random.uniform(0.5, 1.0))
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - now))
        interrupts.checkpoint()
        time.sleep(pause)
        interrupts.checkpoint()
        return attempt + 1

    # -- holding ------------------------------------------------------------

    def _kick(self) -> None:
        """Wake this lock's keeper thread (starting it if there is none)."""
        ctl = self._ctl
        with ctl.cv:
            ctl.kick = True
            if ctl.thread is None:
                ctl.thread = threading.Thread(
                    target=_keeper_main, args=(weakref.ref(self), ctl),
                    name=f"sss-lock-keeper {self.lock_path}", daemon=True,
                )
                ctl.thread.start()
            ctl.cv.notify()

    def _keeper_step(self) -> float | None:
        """One turn of the keeper: heartbeat when due; end a lease that ran
        out or is wanted.  Returns seconds until the next turn (None: idle)."""
        notify = False
        wait: float | None = None
        with self._state_lock:
            if self._held and self._compromised is None and self._pid == os.getpid():
                now = _lease_clock()
                if self._lingering:
                    wanted_by = self._wanted_by()
                    if wanted_by is not None or now >= self._linger_until:
                        self._end_tenure_locked(wanted_by)
                        notify = self._compromised is not None
                if (self._held and self._compromised is None and not self._beats_stopped
                        and now >= self._next_beat):
                    self._next_beat = now + self.heartbeat_interval
                    try:
                        self._verify_locked()
                        self._write_next(None)
                    except LockCompromised:
                        notify = True
                    except OSError as e:
                        # Could not write this beat (disk full, network).  The
                        # lease check at the next beat or check() decides.
                        log.warning("heartbeat of %s failed: %s", self._path, e)
                if self._held and self._compromised is None:
                    wait = (self.heartbeat_interval if self._beats_stopped
                            else self._next_beat - _lease_clock())
                    if self._lease_mode:
                        wait = min(wait, LINGER_POLL)
                    if self._lingering:
                        wait = min(wait, self._linger_until - now)
        if notify:
            self._notify()
        return wait

    def _wanted_by(self) -> frozenset[str] | None:
        """The owner ids announced in our lock directory (``want-<id>``), an
        empty set when only another lock object of this process waits, or
        None when nobody waits.  A name that is not exactly ``want-`` + 32
        lowercase hex digits is ignored: markers only ever make a holder
        leave early, never make anyone break anything."""
        if not self._held or not self._path:
            return None
        try:
            if self._dir_fd is not None and _LISTDIR_FD:
                names = os.listdir(self._dir_fd)
            else:
                names = os.listdir(self._path)
        except OSError:
            names = []
        ids = frozenset(m.group(1) for n in names if (m := _WANT_NAME.match(n)))
        pl = self._path_lock
        if ids or (pl is not None and pl.queue):
            return ids
        return None

    def _reclaim(self, me: int) -> bool:
        """Take back a lingering lease for a new holding (caller holds
        ``_object_lock``).  False when the lease ended, was lost, or is
        wanted by a waiter: then acquire normally."""
        with self._state_lock:
            if not self._lingering or not self._held:
                return False
            lost = ""
            if self._compromised is not None or self._pid != os.getpid():
                lost = "compromised"
            elif _lease_clock() - self._last_beat >= self.stale_timeout - self.heartbeat_interval:
                # Paused (SIGSTOP, suspend) while lingering: an observer may
                # have broken us.  Nothing was at stake; acquire anew.
                lost = "lease ran out"
            elif self._dir_id is not None:
                try:
                    st = os.lstat(self._path)
                    if (st.st_dev, st.st_ino) != self._dir_id:
                        lost = "the lock directory was replaced"
                except OSError:
                    lost = "the lock directory was removed or renamed away"
            if lost:
                if self._compromised is None:
                    self._compromised = LockCompromised(
                        f"lock {self._path!r} lost while its lease lingered ({lost}); "
                        "no write was in progress, acquiring anew")
                    log.warning("%s", self._compromised)
                self._end_tenure_locked(None)
            else:
                wanted_by = self._wanted_by()
                if wanted_by is not None:
                    self._end_tenure_locked(wanted_by)
                else:
                    self._lingering = False
                    self._holder_thread = me
                    if self._path_lock is not None:
                        self._path_lock.thread = me
                    return True
        self._notify()
        return False

    def _end_tenure_locked(self, wanted_by: frozenset[str] | None, release_path_lock: bool = True) -> None:
        """Release our directory (unless compromised) and forget the holding;
        the caller holds ``_state_lock``.  ``wanted_by``: announced waiters we
        hand over to (our next acquire leaves them the lock, see
        :meth:`_handover_pending`)."""
        self._lingering = False
        if wanted_by:
            self._handover = (wanted_by, time.monotonic() + HANDOVER_WAIT)
        if self._held and self._compromised is None:
            try:
                self._verify_locked()
                self._remove_own_dir()
            except LockCompromised:
                pass  # recorded in self._compromised
            else:
                if self.mode == "write":
                    sweep_tombs(self.lock_path)
        self._finish_locked()
        if release_path_lock:
            self._release_path_lock()

    def _handover_pending(self) -> bool:
        """True while a waiter we handed the lock over to may still take it:
        its temporary lock directory exists and its process is not known to
        be dead, and HANDOVER_WAIT has not passed.  Without this, the former
        holder's next write would usually win the free lock again (it needs
        no backoff sleep to notice) and the waiter would starve."""
        if self._handover is None:
            return False
        ids, until = self._handover
        if time.monotonic() < until:
            for owner_id in ids:
                seen = look(f"{self.lock_path}.tmp-{owner_id}")
                rec = seen.record
                if seen.state == "absent":
                    continue
                if rec is not None and rec.host_id and rec.host_id == procinfo.host_id():
                    if process_state(rec) in ("dead", "reused"):
                        continue
                return True
        self._handover = None
        return False

    def _announce(self, holder: OwnerRecord) -> None:
        """Tell the holder we wait: create ``L/want-<our owner_id>`` (empty).
        Best effort: a holder that never sees it just releases later."""
        if self._record is None or self._announced == holder.owner_id:
            return
        self._announced = holder.owner_id
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        name = WANT_PREFIX + self._record.owner_id
        try:
            if _HAS_DIR_FD:
                dfd = os.open(self.lock_path, flags)  # never through a symlink at L
                try:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
                finally:
                    os.close(dfd)
            else:
                fd = os.open(os.path.join(self.lock_path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as e:
            log.debug("could not announce a waiter in %s: %s", self.lock_path, e)

    def _write_next(self, phase: str | None) -> None:
        assert self._record is not None
        nxt = self._record.next_heartbeat(phase)
        started = _lease_clock()  # visibility may begin as soon as we start
        # The file is fsynced before it replaces the old one (never a torn
        # owner.json); whether the directory entry survives a crash doesn't
        # matter, since old and new are both complete.
        self._owner_stat = _stat_key(write_owner_file(self._path, nxt, self._dir_fd, sync_dir=False))
        self._record = nxt
        self._last_beat = started

    def _compromise(self, why: str) -> NoReturn:
        self._compromised = LockCompromised(f"lock {self._path!r} compromised: {why}")
        log.error("%s", self._compromised)
        raise self._compromised

    def _verify_locked(self) -> None:
        """Raise LockCompromised unless our directory, with our owner.json,
        is still at our path and our heartbeat lease has not run out.
        Caller holds ``_state_lock``."""
        rec = self._record
        assert rec is not None
        overdue = _lease_clock() - self._last_beat
        if overdue >= self.stale_timeout - self.heartbeat_interval:
            # An observer may already judge us stale: we can't prove we are
            # still the only holder even if our directory is still in place.
            self._compromise(
                f"last heartbeat {overdue:.2f}s ago, too close to the stale timeout "
                f"{self.stale_timeout:g}s (process paused or starved?)"
            )
        if self._dir_id is not None:
            try:
                st = os.lstat(self._path)
            except FileNotFoundError:
                self._compromise("the lock directory was removed or renamed away")
            except OSError as e:
                self._compromise(f"cannot stat the lock directory: {e}")
            if (st.st_dev, st.st_ino) != self._dir_id:
                self._compromise("the lock directory was replaced by another one")
            if self._owner_stat is not None and _HAS_DIR_FD:
                # Our directory is in place (same inode, kept from reuse by
                # our descriptor); owner.json in it is still the very file we
                # wrote if inode, size and mtime are unchanged: no need to
                # read and parse it.  Anything else: read it (below).
                try:
                    st = os.stat(OWNER_FILE, dir_fd=self._dir_fd, follow_symlinks=False)
                    if _stat_key(st) == self._owner_stat:
                        return
                except OSError:
                    pass
        seen = look(self._path)
        if seen.state == "absent":
            self._compromise("the lock directory was removed or renamed away")
        if seen.record is None:
            self._compromise(f"the lock path is now {seen.state}: {seen.detail}")
        if seen.record.owner_id != rec.owner_id:
            self._compromise(f"owner.json now names owner {seen.record.owner_id}")
        if seen.record.heartbeat != rec.heartbeat:
            self._compromise(f"owner.json heartbeat is {seen.record.heartbeat}, we wrote {rec.heartbeat}")

    def _notify(self) -> None:
        """Call on_compromised once per acquisition (never under _state_lock)."""
        with self._notify_lock:
            if self._notified or self._compromised is None:
                return
            self._notified = True
        cb = self.on_compromised
        if cb is not None:
            try:
                cb(self._compromised)
            except Exception:
                log.exception("on_compromised callback of %s raised", self.lock_path)

    def _remove_own_dir(self) -> None:
        """Rename our directory away, check it was ours, delete it."""
        gone = f"{self._path}.released-{self._record.owner_id if self._record else 'x'}"
        deadline = time.monotonic() + SHARING_RETRY
        while True:
            try:
                os.rename(self._path, gone)
                break
            except FileNotFoundError:
                self._compromise("the lock directory vanished before release")
            except PermissionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.002)
        if self._dir_id is not None:
            try:
                st = os.lstat(gone)
            except FileNotFoundError:
                return  # already swept by the next holder's release: released
            if (st.st_dev, st.st_ino) != self._dir_id:
                # Lost in the instant between the check and the rename; its
                # real holder finds out at its next heartbeat.
                log.error("release of %s renamed another owner's lock", self._path)
                self._compromised = LockCompromised(
                    f"lock {self._path!r} compromised: taken over just before release"
                )
                remove_tree(gone)
                return
        # No parent fsync: a lost release only looks like a dead owner.  Our
        # directory normally holds just owner.json: unlink it through our
        # descriptor and rmdir, instead of a whole rmtree walk.
        if self._dir_fd is not None and _HAS_DIR_FD:
            try:
                os.unlink(OWNER_FILE, dir_fd=self._dir_fd)
                os.rmdir(gone)
                return
            except OSError:
                pass  # want- files of waiters, a left temp file: remove all
        remove_tree(gone)

    def _close_fd(self) -> None:
        if self._dir_fd is not None:
            try:
                os.close(self._dir_fd)
            except OSError:
                pass
            self._dir_fd = None

    def _abandon(self) -> None:
        """An acquisition failed part way: take back what we put in place."""
        with self._state_lock:
            if self._held and self._compromised is None:
                try:
                    self._remove_own_dir()
                except LockCompromised:
                    pass
            self._finish_locked()

    def _finish_locked(self) -> None:
        """Forget the holding (after release, failure or compromise); the
        caller holds ``_state_lock``, so the keeper never beats through a
        closed descriptor.  Idempotent."""
        self._held = False
        self._lingering = False
        self._close_fd()
        for tomb in self._tombs:
            remove_tree(tomb)
        self._tombs = []
        self._holder_thread = None
        _holding.discard(self)

    def _stop_heartbeat(self) -> None:
        """Stop heartbeating this holding (a crashed holder, for the tests)."""
        with self._state_lock:
            self._beats_stopped = True

    def _release_path_lock(self) -> None:
        if self._has_path_lock and self._path_lock is not None:
            self._has_path_lock = False
            self._path_lock.release()

    def _release_thread_locks(self) -> None:
        self._release_path_lock()
        if self._object_lock.locked():
            self._object_lock.release()

    def _refuse_if_forked(self) -> None:
        if self._forked_from is not None and not self._held:
            raise LockError(
                f"{self.lock_path}: this lock was acquired by process {self._forked_from}; "
                f"a forked child (pid {os.getpid()}) neither owns nor releases it"
            )

    def _forget_after_fork(self) -> None:
        was = self._pid if self._held else None
        self._close_fd()  # closes the child's copy only
        self._path_lock = path_lock(self.lock_path) if self.mode == "write" else None
        self._has_path_lock = False
        self._object_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ctl = _KeeperCtl()  # the keeper thread did not survive the fork
        self._handover = None
        self._reset_state()
        self._forked_from = was


class Acquired:
    """What :meth:`DirectoryLock.acquire` returns: ``with`` releases the lock."""

    __slots__ = ("lock",)

    def __init__(self, lock: DirectoryLock) -> None:
        self.lock = lock

    def __enter__(self) -> DirectoryLock:
        return self.lock

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.lock.__exit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> object:
        return getattr(self.lock, name)
