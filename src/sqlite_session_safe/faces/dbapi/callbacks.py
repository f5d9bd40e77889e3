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
from ...binding.constants import SQLITE_DENY
from .errors import DataError, ProgrammingError, with_code
from .parameters import UNSUPPORTED, type_name, value_for_sqlite

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
_INT_MIN = -(1 << 31)
_INT_MAX = (1 << 31) - 1


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


def _failed(message: str, exc: Exception, obj: Any) -> BaseException:
    """What the failed callable makes the statement raise (the stdlib's
    ``set_sqlite_error``): MemoryError for a MemoryError, DataError "string
    or blob too big" for an OverflowError (SQLite's SQLITE_NOMEM and
    SQLITE_TOOBIG), else OperationalError with ``message``."""
    _report(exc, obj)
    failed: BaseException
    if not _PY311:  # 3.10: every failure is the same OperationalError
        failed = CallbackFailed(message)
    elif isinstance(exc, MemoryError):
        failed = MemoryError()
    elif isinstance(exc, OverflowError):
        failed = with_code(DataError, "string or blob too big", 18, "SQLITE_TOOBIG")
    else:
        failed = CallbackFailed(message)
    failed.__cause__ = exc
    return failed


_INT64 = 1 << 63


def result_value(value: Any) -> Any:
    """A user function's result as SQLite gets it from the stdlib
    (``_pysqlite_set_result``): None, int (64-bit, else OverflowError),
    float, str (UTF-8, else UnicodeEncodeError), a contiguous buffer (else
    BufferError) as bytes; anything else is an error."""
    t = type(value)
    if value is None or t is float or t is bytes or t is str and value.isascii() or \
            t is int and -_INT64 <= value < _INT64:
        return value  # the common results, as they are
    result = value_for_sqlite(value)
    if result is UNSUPPORTED:
        raise ProgrammingError(f"User function returned unsupported type '{type_name(value)}'")
    return result


def wrap_function(func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return result_value(func(*args))
        except Exception as exc:
            raise _failed("user-defined function raised exception", exc, func) from exc

    return call


#: Python 3.11 tells a missing aggregate method from one that raised.
_PY311 = sys.version_info >= (3, 11)
_NOT_DEFINED = "not defined" if _PY311 else "raised error"


def wrap_aggregate(cls: type, window: bool) -> type:
    """A class SQLite's aggregate protocol can drive that reports failures of
    the user's methods the way the stdlib words them."""

    def failed(name: str, exc: Exception) -> BaseException:
        how = _NOT_DEFINED if isinstance(exc, AttributeError) else "raised error"
        return _failed(f"user-defined aggregate's '{name}' method {how}", exc, cls)

    def step(self: Any, *args: Any) -> None:
        try:
            method = self._inner.step
        except AttributeError as exc:
            if not _PY311:
                raise  # 3.10: the AttributeError itself comes out of execute()
            raise failed("step", exc) from exc
        try:
            method(*args)
        except Exception as exc:
            raise _failed("user-defined aggregate's 'step' method raised error", exc, cls) from exc

    def inverse(self: Any, *args: Any) -> None:
        try:
            self._inner.inverse(*args)
        except Exception as exc:
            raise failed("inverse", exc) from exc

    def value(self: Any) -> Any:
        try:
            return result_value(self._inner.value())
        except Exception as exc:
            raise failed("value", exc) from exc

    def finalize(self: Any) -> Any:
        try:
            return result_value(self._inner.finalize())
        except Exception as exc:
            if window:
                # SQLite does not report an error of a window function's
                # final call to the statement; the stdlib only reports it
                # (enable_callback_tracebacks).
                _report(exc, cls)
                return None
            raise failed("finalize", exc) from exc

    def init(self: Any) -> None:
        try:
            self._inner = cls()
        except Exception as exc:
            raise _failed("user-defined aggregate's '__init__' method raised error", exc, cls) from exc

    namespace: dict[str, Any] = {"__init__": init, "step": step, "finalize": finalize}
    if window:
        namespace["inverse"] = inverse
        namespace["value"] = value
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
            return SQLITE_DENY
        if not isinstance(result, int) or not _INT_MIN <= result <= _INT_MAX:
            return SQLITE_DENY  # the stdlib denies on a non-int result, or one beyond C int
        return int(result)

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
