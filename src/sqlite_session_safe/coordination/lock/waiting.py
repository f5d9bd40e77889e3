"""Waiting for a lock: polling backoff, argument checks for seconds, Ctrl-C
handling around lock operations, and the process-local serialization of
threads on one lock path (a forked child starts with none held)."""

from __future__ import annotations

import collections
import functools
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .. import interrupts

DEFAULT_TIMEOUT = 60.0
#: Polling backoff while waiting: first sleep, cap, growth factor; each sleep
#: is scaled by a random factor in [0.5, 1) so waiters don't move in step.
BACKOFF_INITIAL = 0.001
BACKOFF_MAX = 0.025
BACKOFF_FACTOR = 2.0


#: The exponent at which BACKOFF_INITIAL * BACKOFF_FACTOR**n first reaches
#: BACKOFF_MAX: attempts past it sleep BACKOFF_MAX.  Capping n (rather than
#: computing the power and then the minimum) keeps a wait of any length from
#: overflowing a float (2.0**1024 does, after ~1024 polls).
_BACKOFF_CAP_EXPONENT = math.ceil(math.log(BACKOFF_MAX / BACKOFF_INITIAL, BACKOFF_FACTOR))


def backoff(attempt: int) -> float:
    """Seconds to sleep before poll number ``attempt`` (any int >= 0)."""
    n = min(attempt, _BACKOFF_CAP_EXPONENT)
    return min(BACKOFF_MAX, BACKOFF_INITIAL * BACKOFF_FACTOR**n) * random.uniform(0.5, 1.0)


class PathLock:
    """Serializes the threads of this process on one lock path, first come
    first served: a lock object that just gave the lock up (a lease handed
    over, see :meth:`DirectoryLock.release`) queues behind the waiters, and a
    lingering holder sees them in :attr:`queue`."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.held = False
        self.queue: collections.deque[object] = collections.deque()
        #: The thread that holds it for a write (None while a lease lingers).
        self.thread: int | None = None

    def acquire(self, deadline: float | None) -> bool:
        with self.cond:
            if not self.held and not self.queue:
                self.held = True
                return True
            me = object()
            self.queue.append(me)
            try:
                while self.held or self.queue[0] is not me:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    # In slices: a deferred Ctrl-C ends the wait (interrupts.py).
                    self.cond.wait(interrupts.CHECK_INTERVAL if remaining is None
                                   else min(remaining, interrupts.CHECK_INTERVAL))
                    interrupts.checkpoint()
                self.held = True
                return True
            finally:
                self.queue.remove(me)
                self.cond.notify_all()  # the next in line may be first now

    def release(self) -> None:
        with self.cond:
            self.held = False
            self.thread = None
            self.cond.notify_all()



_registry_lock = threading.Lock()
_path_locks: weakref.WeakValueDictionary[str, PathLock] = weakref.WeakValueDictionary()


def path_lock(lock_path: str) -> PathLock:
    """The one :class:`PathLock` of this process for ``lock_path``."""
    with _registry_lock:
        pl = _path_locks.get(lock_path)
        if pl is None:
            pl = _path_locks[lock_path] = PathLock()
        return pl


def _after_fork_in_child() -> None:
    # Only the forking thread survives: every internal lock may be held by a
    # thread that no longer exists.  Registered before directory_lock's hook
    # (imported first), so the lock objects reset there find a fresh registry.
    global _registry_lock, _path_locks
    _registry_lock = threading.Lock()
    _path_locks = weakref.WeakValueDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(method: _F) -> _F:
    """Run ``method`` with Ctrl-C deferred to its wait checkpoints and its end
    (interrupts.py): an interrupt never lands between taking an internal lock
    or making the lock directory and the code that undoes it."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        with interrupts.InterruptGuard():
            return method(*args, **kwargs)

    return cast(_F, run)


_PLAIN_NUMBERS = (float, int)


def check_seconds(name: str, value: object, allow_none: bool = False, allow_zero: bool = False) -> None:
    if type(value) in _PLAIN_NUMBERS and (0 < value < math.inf or (allow_zero and value == 0)):  # type: ignore[operator]
        return  # the usual case, decided cheaply: this runs on every acquire and release
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} seconds, not {value!r}")


def wait_thread_lock(lock: threading.Lock, deadline: float | None) -> bool:
    return interrupts.wait_lock(lock.acquire, None if deadline is None else deadline - time.monotonic())
