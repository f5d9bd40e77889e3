"""The directory lock itself (lock protocol v1): :class:`DirectoryLock`, its
public API and how it is waited for and acquired (writer and reader
variants, breaking stale holders on the way).  Holding it (heartbeats,
lease, verification, release) is :mod:`.holding`."""

from __future__ import annotations

import logging
import os
import random
import stat
import threading
import time
from collections.abc import Callable
from types import EllipsisType, TracebackType

from ...binding.errors import Error
from .. import interrupts
from ..errors import (
    LockCompromised,
    LockError,
    LockRefused,
    LockTimeout,
    lock_not_released,
    lock_not_taken,
)
from ..owner import (
    OwnerRecord,
)
from .breaking import (
    break_judged,
    remove_tree,
)
from .holding import LockHolding, lease_clock
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
    wait_thread_lock,
)

log = logging.getLogger("sqlite_session_safe.lock")

#: Backoff cap once a waiter has announced itself to the holder (a
#: ``want-<owner_id>`` file in the lock directory, PROTOCOL.md §2.11): the
#: holder hands over promptly, so poll faster than an unannounced waiter.
ANNOUNCED_BACKOFF_MAX = 0.004


class DirectoryLock(LockHolding):
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
        super().__init__()

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

    @property
    def needs_release(self) -> bool:
        """True while this object was acquired (not lingering) and not yet
        released, in this process, *including* after the lock was found lost:
        :meth:`release` must still run then, or this object stays taken and
        its next :meth:`acquire` refuses ("already held by this thread")."""
        return self._held and not self._lingering and self._pid == os.getpid()

    def wanted(self) -> bool:
        """True when someone waits for this lock: a ``want-`` announcement in
        our lock directory, or another lock object of this process queued for
        the same database.  False when not held."""
        if not self._held or self._pid != os.getpid():
            return False
        return self._wanted_by() is not None

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
            LockPathError: the file system refused to make the lock
                directory (errno named: EROFS, ENOSPC, ENOTCONN, ...);
                nothing was changed.
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
        except BaseException as e:
            self._release_thread_locks()
            if isinstance(e, OSError) and not isinstance(e, Error):
                raise lock_not_taken(self.lock_path, e) from e
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
            LockPathError: the file system refused to rename the lock
                directory away (ENOTCONN: a dead network mount); this object
                no longer holds the lock, and the directory left behind is
                judged stale like a dead holder's.
        """
        self._refuse_if_forked()
        check_seconds("linger", linger, allow_zero=True)
        if not self._held or self._lingering:
            raise LockError(f"{self.lock_path}: release() of a lock that is not held")
        keep = start_polling = False
        refused: OSError | None = None
        try:
            with self._state_lock:
                wanted_by = self._wanted_by()
                if linger > 0 and self._compromised is None and wanted_by is None:
                    keep = True
                    self._lingering = True
                    self._linger_until = lease_clock() + linger
                    start_polling = not self._lease_mode
                    self._lease_mode = True
                    self._holder_thread = None
                    if self._path_lock is not None:
                        self._path_lock.thread = None
                else:
                    try:
                        self._end_tenure_locked(wanted_by, release_path_lock=False)
                    except Error:
                        raise
                    except OSError as e:
                        refused = e
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
        if refused is not None:
            # The directory could not be renamed away (ENOTCONN: a network
            # mount whose client died).  This object is reset all the same:
            # its heartbeats stopped, so the directory ages like a dead
            # holder's.
            raise lock_not_released(
                self.lock_path, refused,
                "the lock directory left at the lock path is no longer heartbeated: other "
                "clients judge it stale after their stale timeout and break it") from refused

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

