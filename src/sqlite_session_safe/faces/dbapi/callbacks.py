"""User callables (functions, aggregates, collations, authorizer, progress
handler, trace callback) on a DB-API connection: the stdlib's behaviour on top
of the native connection's one implementation.

``enable_callback_tracebacks(True)`` makes an exception raised inside a
callback print through ``sys.unraisablehook`` as well, like the stdlib.
"""

from __future__ import annotations

__all__ = ["enable_callback_tracebacks", "tracebacks_enabled"]

_state = {"tracebacks": False}


def enable_callback_tracebacks(flag: bool, /) -> None:
    """Whether exceptions raised in user callbacks are also reported through
    ``sys.unraisablehook`` (off by default, as in the stdlib)."""
    _state["tracebacks"] = bool(flag)


def tracebacks_enabled() -> bool:
    return _state["tracebacks"]
