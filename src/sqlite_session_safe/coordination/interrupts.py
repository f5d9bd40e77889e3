"""Ctrl-C that neither wedges a Database nor lies about a commit.

Python raises ``KeyboardInterrupt`` between almost any two bytecodes of the
main thread: between acquiring an internal lock and the ``try`` that would
release it, after ``COMMIT`` returned but before the caller learned that it
did, or inside a weakref callback run by garbage collection, where CPython
prints "Exception ignored" and drops it.  Each of those was seen in real
runs (a leaked write mutex that hung ``close()``, a committed write reported
as interrupted, a Ctrl-C that the process never acted on).

:class:`InterruptGuard` fixes this for the package's own critical sections:
while one is active, the SIGINT handler only *records* the signal, and the
package delivers it at a point of its choosing:

* in :func:`checkpoint`, which every wait loop calls between two short
  sleeps, so Ctrl-C still ends a long wait for the lock within milliseconds;
* at the end of the guarded section, after the state is consistent again:
  the handler the program had installed (normally Python's
  ``default_int_handler``) runs then, and the exception it raises carries
  :attr:`InterruptGuard.result` as its ``write`` attribute when a write had
  committed.

Inside :meth:`InterruptGuard.user_code` (the caller's function in a write,
the body of a ``with`` block) the signal is delivered at once as usual, so
user code stays interruptible; if it was delivered there and the user code
nevertheless returned normally (the exception was swallowed by a callback, or
caught), :meth:`InterruptGuard.swallowed` tells the write to roll back and
raise ``KeyboardInterrupt`` instead of committing.

Only the main thread ever receives ``KeyboardInterrupt`` from a signal, and
only a Python-level handler can be wrapped: in any other thread, or when
SIGINT is ignored or left to the operating system (``SIG_IGN``/``SIG_DFL``),
the guard does nothing.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

__all__ = ["InterruptGuard", "checkpoint", "wait_lock"]

# The C module under `signal`: the same calls without the enum wrapping (about
# 1 us per write instead of 6: this runs around every write).
_sig: Any = getattr(signal, "_signal", None) or signal

_MAIN_THREAD_ID = threading.main_thread().ident
#: The guard whose handler is installed right now (main thread only), so
#: nested sections and wait loops deeper in the call stack share it.
_active: InterruptGuard | None = None
#: Longest time a guarded wait sleeps before looking for a pending Ctrl-C.
CHECK_INTERVAL = 0.05


class InterruptGuard:
    """Defers SIGINT for the package's own bookkeeping (a context manager).

    ``with InterruptGuard() as guard:`` installs the deferring handler (when
    this is the main thread and a Python handler is installed), and on exit
    restores the previous handler and runs it for a signal that arrived
    meanwhile.  Nested guards reuse the outermost one.
    """

    __slots__ = ("_previous", "_pending", "_immediate", "_delivered", "_owner", "result")

    def __init__(self) -> None:
        self._previous: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self._immediate = False
        self._delivered = 0
        self._owner = False
        #: A committed ``WriteResult`` to attach (as ``.write``) to the
        #: ``KeyboardInterrupt`` delivered when the section ends.
        self.result: Any = None

    # -- the handler ------------------------------------------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._pending = (signum, frame)
        if self._immediate:
            self._deliver()

    def _deliver(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        previous = self._previous
        if not callable(previous):
            return
        self._delivered += 1
        try:
            previous(*pending)
        except BaseException as e:
            if self.result is not None and not hasattr(e, "write"):
                e.write = self.result  # type: ignore[attr-defined]
            raise

    # -- sections ---------------------------------------------------------------

    def __enter__(self) -> InterruptGuard:
        global _active
        if threading.get_ident() != _MAIN_THREAD_ID:
            return self
        if _active is not None:
            return _active  # nested: the outer guard decides
        previous = _sig.getsignal(signal.SIGINT)
        if not callable(previous):
            return self  # SIG_IGN / SIG_DFL / set from C: nothing to defer
        self._previous = previous
        _sig.signal(signal.SIGINT, self._handle)
        self._owner = True
        _active = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        if not self._owner:
            return
        self._owner = False
        _active = None
        try:
            _sig.signal(signal.SIGINT, self._previous)
        except (ValueError, TypeError):  # pragma: no cover - interpreter shutting down
            pass
        except BaseException as e:
            # signal.signal() runs the Python handlers of signals already
            # pending in C before it returns, and by then the handler is the
            # restored one: a Ctrl-C that arrived during the section's last
            # C call is raised here, by the program's own handler, not
            # deferred.  It is the section's pending Ctrl-C all the same,
            # and must say whether the write committed (seen in the chaos
            # test: a committed write reported as interrupted, then retried).
            self._pending = None
            self._delivered += 1
            if self.result is not None and not hasattr(e, "write"):
                e.write = self.result  # type: ignore[attr-defined]
            raise
        if self._pending is None:
            return
        if isinstance(exc, KeyboardInterrupt):
            self._pending = None  # already on its way
            if self.result is not None and not hasattr(exc, "write"):
                exc.write = self.result  # type: ignore[attr-defined]
            return
        self._deliver()  # raises (chained to exc, if any)

    def set_immediate(self, immediate: bool) -> bool:
        """Deliver SIGINT at once (``True``: the caller's own code runs now)
        or defer it (``False``: the package's bookkeeping runs).  Returns the
        previous setting, for nested sections to restore."""
        was, self._immediate = self._immediate, immediate
        # Never delivers here: the caller delivers a pending signal at a
        # checkpoint of its own (where it can undo what it began), and one
        # that arrives in between is raised at the end of the section.
        return was

    def delivered_since(self, mark: int) -> bool:
        """True when a KeyboardInterrupt was raised since :meth:`mark`."""
        return self._delivered != mark

    def mark(self) -> int:
        """A token for :meth:`delivered_since`."""
        return self._delivered

    def deliver_pending(self) -> None:
        """Deliver a pending Ctrl-C now, from whichever section asks (the
        module's :func:`checkpoint`, for the active guard)."""
        if self._pending is not None:
            self._deliver()

    def checkpoint(self) -> None:
        """Deliver a pending Ctrl-C now (at a point where state is consistent)."""
        if self._pending is not None and self._owner:
            self._deliver()


def checkpoint() -> None:
    """Deliver a pending, deferred Ctrl-C now, if a guard is active."""
    guard = _active
    if guard is not None:
        guard.deliver_pending()


def wait_lock(acquire: Callable[..., bool], timeout: float | None) -> bool:
    """``acquire(timeout=...)`` of a ``threading`` lock in short slices, with
    a :func:`checkpoint` between them, so a deferred Ctrl-C ends the wait.

    ``timeout`` None waits forever.  Returns whether the lock was acquired.
    """
    if _active is None:
        return acquire() if timeout is None else acquire(timeout=max(0.0, timeout))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        slice_ = CHECK_INTERVAL if deadline is None else min(CHECK_INTERVAL, deadline - time.monotonic())
        if acquire(timeout=max(0.0, slice_)):
            return True
        checkpoint()
        if deadline is not None and time.monotonic() >= deadline:
            return False
