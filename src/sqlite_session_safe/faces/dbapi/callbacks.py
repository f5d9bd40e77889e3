"""User callables (functions, aggregates, window functions, collations,
authorizer, progress handler, trace callback) on a DB-API connection: the
stdlib's behaviour on top of the native connection's one implementation.

The native connection raises a callable's exception unchanged from the
execute/fetch call that ran it.  The stdlib instead raises
``OperationalError("user-defined function raised exception")`` (and reports
the original through ``sys.unraisablehook`` when
``enable_callback_tracebacks(True)``).  So the callables are wrapped: an
exception they raise becomes a :class:`CallbackFailed` carrying the stdlib's
message, which :func:`~.errors.translate` turns into that OperationalError,
with the original exception as ``__cause__``.  Authorizers, progress
handlers and trace callbacks never raise in the stdlib: their wrappers deny,
interrupt or ignore, as it does.  A collation's exception propagates
unchanged, as in the stdlib.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ...binding import errors as native
from ...binding.raw import lib

__all__ = [
    "enable_callback_tracebacks",
    "CallbackFailed",
    "wrap_function",
    "wrap_aggregate",
    "wrap_collation",
    "wrap_authorizer",
    "wrap_progress",
    "wrap_trace",
]

_state = {"tracebacks": False}


def enable_callback_tracebacks(flag: bool, /) -> None:
    """Whether exceptions raised in user callbacks are also reported through
    ``sys.unraisablehook`` (off by default, as in the stdlib)."""
    _state["tracebacks"] = bool(flag)


class CallbackFailed(native.Error):
    """A user callable raised: ``message`` is the stdlib's text for it and
    ``__cause__`` the original exception."""


def _report(exc: BaseException, what: Any) -> None:
    if _state["tracebacks"]:
        sys.unraisablehook(_Unraisable(exc, what))  # type: ignore[arg-type]


class _Unraisable:
    """The argument ``sys.unraisablehook`` expects."""

    def __init__(self, exc: BaseException, obj: Any) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in user-defined callback"
        self.object = obj


def _failed(message: str, exc: Exception, obj: Any) -> CallbackFailed:
    _report(exc, obj)
    failed = CallbackFailed(message)
    failed.__cause__ = exc
    return failed


def wrap_function(func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return func(*args)
        except Exception as exc:
            raise _failed("user-defined function raised exception", exc, func) from exc

    return call


def wrap_aggregate(cls: type, window: bool) -> type:
    """A class SQLite's aggregate protocol can drive that reports failures of
    the user's methods the way the stdlib words them."""

    def method(name: str) -> Callable[..., Any]:
        def run(self: Any, *args: Any) -> Any:
            try:
                return getattr(self._inner, name)(*args)
            except Exception as exc:
                raise _failed(f"user-defined aggregate's '{name}' method raised error", exc, cls) from exc

        run.__name__ = name
        return run

    def init(self: Any) -> None:
        try:
            self._inner = cls()
        except Exception as exc:
            raise _failed("user-defined aggregate's '__init__' method raised error", exc, cls) from exc

    namespace: dict[str, Any] = {"__init__": init, "step": method("step"), "finalize": method("finalize")}
    if window:
        namespace["inverse"] = method("inverse")
        namespace["value"] = method("value")
    return type(f"DBAPI{cls.__name__}", (), namespace)


def wrap_collation(func: Callable[[str, str], Any]) -> Callable[[str, str], int]:
    def compare(a: str, b: str) -> int:
        # An exception propagates unchanged (as in the stdlib); a result that
        # is not an int compares equal.
        result = func(a, b)
        if not isinstance(result, int):
            return 0
        return 1 if result > 0 else -1 if result < 0 else 0

    return compare


def wrap_authorizer(func: Callable[..., Any]) -> Callable[..., int]:
    def authorize(*args: Any) -> int:
        try:
            result = func(*args)
        except Exception as exc:
            _report(exc, func)
            return int(lib.SQLITE_DENY)
        if type(result) is not int:
            return int(lib.SQLITE_DENY)  # the stdlib denies on a non-int result
        return result

    return authorize


def wrap_progress(func: Callable[[], Any]) -> Callable[[], bool]:
    def progress() -> bool:
        try:
            return bool(func())
        except Exception as exc:
            _report(exc, func)
            return True  # abort the statement

    return progress


def wrap_trace(func: Callable[[str], Any]) -> Callable[[str], None]:
    def trace(sql: str) -> None:
        try:
            func(sql)
        except Exception as exc:
            _report(exc, func)

    return trace
