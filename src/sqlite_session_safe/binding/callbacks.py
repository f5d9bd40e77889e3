"""What SQLite's callbacks into Python share with their connection.

User functions, aggregates, collations, the authorizer, the progress handler
and the trace callback run *inside* a call into SQLite (a step, a prepare).
They must never let an exception escape into C, so each one stores it in the
connection's :class:`CallbackState` and tells SQLite to fail; the Python call
that ran the statement raises that very exception object once SQLite has
unwound (``take()``).

They may also run SQL on the same connection (the connection's lock is
re-entrant).  Rows are filled into a per-connection buffer, and a nested
execution must not write into the buffer an outer step is still filling, so
every callback raises ``depth`` while user code runs, and executions pick the
:class:`Scratch` (buffer, view, result struct) of the current depth.
"""

from __future__ import annotations

from typing import Any

from .errors import InterfaceError
from .raw import ffi, lib

__all__ = ["CallbackState", "Scratch"]

#: Initial size of a connection's row buffer; it grows (and moves) as needed.
INITIAL_BUFFER = 256 * 1024
#: Nested executions (SQL run from inside a callback) start smaller.
NESTED_BUFFER = 16 * 1024


class Scratch:
    """One row buffer, the view ``marshal.loads`` reads it through, and the
    result struct the C helpers report in."""

    __slots__ = ("out", "view", "res")

    def __init__(self, size: int) -> None:
        self.out: Any = ffi.gc(ffi.new("sss_buffer *"), lib.sss_buffer_free)
        if lib.sss_buffer_init(self.out, size):
            raise MemoryError("cannot allocate the row buffer")
        self.view: Any = None
        self.refresh()
        self.res: Any = ffi.new("sss_result *")

    def refresh(self) -> None:
        """(Re)make the view after the buffer grew.  marshal ignores the bytes
        past the end of a batch, so the view spans the whole capacity."""
        out = self.out
        self.view = ffi.buffer(out.data, out.cap)


class CallbackState:
    """Per-connection state shared with the callbacks (which hold this object,
    not the connection: no reference cycle keeps a dropped connection open)."""

    __slots__ = ("error", "depth", "forbidden", "top", "_nested")

    def __init__(self) -> None:
        #: The first exception a callback raised during the current call.
        self.error: BaseException | None = None
        #: How many callbacks are running user code right now (nesting).
        self.depth = 0
        #: Set while a callback that must not touch the connection runs
        #: (SQLite forbids it for the authorizer and the progress handler).
        self.forbidden: str | None = None
        #: The scratch of depth 0: every execution outside callbacks.
        self.top = Scratch(INITIAL_BUFFER)
        self._nested: list[Scratch] = []

    def fail(self, exc: BaseException) -> None:
        """Record a callback's exception (the first one wins: later ones are
        usually consequences of it)."""
        if self.error is None:
            self.error = exc

    def take(self) -> BaseException:
        """The recorded exception, cleared (raise it)."""
        exc = self.error
        self.error = None
        assert exc is not None
        return exc

    def scratch(self) -> Scratch:
        """The scratch of the current depth."""
        depth = self.depth
        if not depth:
            return self.top
        if self.forbidden is not None:
            raise InterfaceError(f"cannot run SQL on the connection from inside {self.forbidden}")
        nested = self._nested
        while len(nested) < depth:
            nested.append(Scratch(NESTED_BUFFER))
        return nested[depth - 1]
