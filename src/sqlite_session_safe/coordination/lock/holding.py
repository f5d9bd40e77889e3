"""Holding a directory lock (lock protocol v1): our directory at the lock
path, its heartbeats, the lease kept after a release and its hand-over to
waiters, proving the lock is still ours, and giving it up.  The keeper
thread heartbeats every held lock.  :class:`LockHolding` is the base of
:class:`~.directory_lock.DirectoryLock`, which adds how the lock is waited
for and acquired."""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import NoReturn

from .. import procinfo
from ..errors import (
    LockCompromised,
    LockError,
)
from ..owner import (
    OWNER_FILE,
    OwnerRecord,
    write_owner_file,
)
from .breaking import (
    SHARING_RETRY,
    remove_tree,
    rename_taken,
    sweep_tombs,
)
from .observe import (
    look,
    process_state,
)
from .waiting import (
    guarded,
    path_lock,
)

log = logging.getLogger("sqlite_session_safe.lock")

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

#: Renames of a built lock directory onto L that fail with nothing at L
#: before the failure counts as real (see _install).
_RENAME_TRIES = 3
_HAS_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_WANT_NAME = re.compile(r"want-([0-9a-f]{32})\Z")
_LISTDIR_FD = os.listdir in os.supports_fd

if hasattr(time, "CLOCK_BOOTTIME"):
    # The holder's own lease clock counts suspend too (CLOCK_MONOTONIC does
    # not on Linux): after a laptop sleeps, the holder must doubt its lock.
    def lease_clock() -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

else:
    lease_clock = time.monotonic


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


def _keeper_main(ref: weakref.ReferenceType[LockHolding], ctl: _KeeperCtl) -> None:
    """Heartbeats and lease expiry of one lock, across its acquisitions (one
    thread per lock object, not one per acquisition)."""
    while True:
        lk = ref()
        if lk is None:
            with ctl.cv:
                ctl.thread = None
            return
        wait = lk.sss_keeper_step()
        del lk  # never keep the lock alive while sleeping
        with ctl.cv:
            if not ctl.kick:
                ctl.cv.wait(KEEPER_IDLE_EXIT if wait is None else max(0.0, wait))
                if wait is None and not ctl.kick:
                    ctl.thread = None  # idle: a later acquisition starts a new one
                    return
            ctl.kick = False


_live_locks: weakref.WeakSet[LockHolding] = weakref.WeakSet()
# Held locks stay referenced (their keeper holds only a weak reference): a
# lock dropped without release keeps heartbeating, as before, and a lease
# keeps lingering until it ends.
_holding: set[LockHolding] = set()


def _after_fork_in_child() -> None:
    # No lock of the parent is ours: forget every holding.
    _holding.clear()
    for lk in list(_live_locks):
        lk.sss_forget_after_fork()


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



class LockHolding:
    """The holding side of a :class:`~.directory_lock.DirectoryLock`: the
    state of one tenure and the code that keeps it (heartbeat, lease,
    verification, release).  The configuration below is set by
    ``DirectoryLock.__init__`` before it calls ``super().__init__()``."""

    db_path: str
    lock_path: str
    readers_path: str
    mode: str
    stale_timeout: float
    heartbeat_interval: float
    on_compromised: Callable[[LockCompromised], object] | None

    def __init__(self) -> None:
        self._path_lock = path_lock(self.lock_path) if self.mode == "write" else None
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

    # -- our directory ------------------------------------------------------

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
        started = lease_clock()
        for attempt in range(_RENAME_TRIES):
            try:
                os.rename(tmp, dest)
                break
            except OSError as e:
                if rename_taken(e, dest):
                    return False
                # Nothing at dest now.  Over sshfs a collision is a bare EPERM,
                # and the holder we collided with may have left before our
                # look: only a failure that repeats with dest free is real.
                if attempt == _RENAME_TRIES - 1:
                    raise
                started = lease_clock()
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

    def sss_keeper_step(self) -> float | None:
        """For the keeper thread (``_keeper_main``; the package's own, not the
        reference).  One turn of the keeper: heartbeat when due; end a lease that ran
        out or is wanted.  Returns seconds until the next turn (None: idle)."""
        notify = False
        wait: float | None = None
        with self._state_lock:
            if self._held and self._compromised is None and self._pid == os.getpid():
                now = lease_clock()
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
                            else self._next_beat - lease_clock())
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
            elif lease_clock() - self._last_beat >= self.stale_timeout - self.heartbeat_interval:
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
        started = lease_clock()  # visibility may begin as soon as we start
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
        overdue = lease_clock() - self._last_beat
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

    def sss_forget_after_fork(self) -> None:
        """For the fork handler (the package's own, not the reference): in a
        forked child, drop what the parent held without releasing it."""
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


