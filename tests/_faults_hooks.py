"""Fault-injection points for the fault tests, used inside a worker process only.

Each one wraps a public function (``os.rename``) or installs a signal handler
in the worker's own process, to put a fault at an exact place; the package
itself is never changed.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def pause_here() -> None:
    """A pause point: say ``held`` on stdout, then wait for a line on stdin.
    The test stops the process (SIGSTOP) once it has read ``held`` and sends
    the line after SIGCONT.  Used as ``db._after_admission`` (the package's
    own test hook) or called inside a write function."""
    print("held", flush=True)
    sys.stdin.readline()


class RenameCollision:
    """Make the first rename of a prepared lock directory onto the lock path
    collide with a holder that took the lock through another path (another
    sshfs mount of the same export).

    The lock builds its directory under a temporary name and renames it onto
    ``<db>.sss-lock`` (PROTOCOL.md §2.3).  On the first such rename,
    ``take_lock()`` is called (it must return once the other holder has the
    lock on the server); then the real rename runs, and its outcome is kept
    in ``self.outcome`` (``"ok"`` or the errno name, e.g. ``"EPERM"``).
    If the rename fails, ``after_failure()`` (when given) runs before the
    error reaches the lock: e.g. wait until the holder has left, so the lock
    looks at a free lock path (the holder left between rename and look).
    """

    def __init__(self, lock_path: str, take_lock: Callable[[], None],
                 after_failure: Callable[[], None] | None = None) -> None:
        self.lock_path = lock_path
        self.take_lock = take_lock
        self.after_failure = after_failure
        self.outcome: str | None = None
        self._real = os.rename

    def install(self) -> RenameCollision:
        os.rename = self._rename  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        os.rename = self._real  # type: ignore[assignment]

    def _rename(self, src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        if self.outcome is None and os.fspath(dst) == self.lock_path:
            self.outcome = "pending"
            self.take_lock()
            try:
                self._real(src, dst, *args, **kw)
            except OSError as e:
                self.outcome = errno.errorcode.get(e.errno or 0, str(e.errno))
                if self.after_failure is not None:
                    self.after_failure()
                raise
            self.outcome = "ok"
            return
        self._real(src, dst, *args, **kw)


class InterruptsInside:
    """Deliver SIGINT as KeyboardInterrupt only while the process runs inside
    the package (a package frame is on the stack: the package's own code, or
    a function it called back, such as a write function); one that arrives
    while only the worker's own bookkeeping runs is counted in ``pending``
    and otherwise ignored.

    Without this, a SIGINT arriving just as ``db.write`` returns surfaces in
    the worker between the return and the assignment of its result, and the
    worker could not tell that its write committed: a limit of the harness,
    not of the package.  Interrupts that reach the package are untouched.
    """

    def __init__(self) -> None:
        import sqlite_session_safe

        self.package = os.path.dirname(os.path.abspath(sqlite_session_safe.__file__)) + os.sep
        self.pending = 0
        self.delivered = 0

    def install(self) -> InterruptsInside:
        signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        f = frame
        while f is not None:
            if f.f_code.co_filename.startswith(self.package):
                self.delivered += 1
                raise KeyboardInterrupt
            f = f.f_back
        self.pending += 1


class BeforeCommit:
    """Call ``fault()`` once, just before the first ``COMMIT`` the package
    executes after :meth:`install` (the real COMMIT then runs and meets
    whatever the fault did, e.g. a network mount whose client was killed)."""

    def __init__(self, fault: Callable[[], None]) -> None:
        from sqlite_session_safe.binding.connection import Connection

        self.cls = Connection
        self.fault = fault
        self.fired = False
        self._real = Connection.execute

    def install(self) -> BeforeCommit:
        real, hook = self._real, self

        def execute(con: Any, sql: str, *args: Any, **kw: Any) -> Any:
            if not hook.fired and sql.strip().upper() == "COMMIT":
                hook.fired = True
                hook.fault()
            return real(con, sql, *args, **kw)

        self.cls.execute = execute  # type: ignore[method-assign]
        return self
