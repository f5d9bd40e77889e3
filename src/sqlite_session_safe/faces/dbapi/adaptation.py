"""Adapters (Python value -> SQLite value) and converters (SQLite value ->
Python value), as in the stdlib ``sqlite3`` module.

``adapters`` maps ``(type, PrepareProtocol)`` to a callable; ``converters``
maps an upper-cased type name to a callable that receives the stored value
as ``bytes``.  Both are the module's own dicts (not the stdlib's): what is
registered here does not leak into ``sqlite3`` and the other way round.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ProgrammingError, warn_caller

__all__ = [
    "PrepareProtocol",
    "adapters",
    "converters",
    "adapt",
    "register_adapter",
    "register_converter",
    "adapt_parameters",
    "base_types_adapted",
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
    "Binary",
]


class PrepareProtocol:
    """The protocol object adapters are registered for (PEP 246 style): an
    object's ``__conform__(PrepareProtocol)`` may return its SQLite value."""


adapters: dict[tuple[type, Any], Callable[[Any], Any]] = {}
converters: dict[str, Callable[[bytes], Any]] = {}

#: Exact types bound as they are unless an adapter was registered for one of
#: them (the stdlib's ``BaseTypeAdapted`` flag).
_BASE_TYPES = frozenset({int, float, str, bytearray})
#: Read by the connection and cursor modules on every execute:
#: ``base_adapted``, whether an adapter was registered for a base type (then
#: every value goes through :func:`adapt`); ``version`` counts registrations.
ADAPTER_STATE = {"base_adapted": False, "version": 0}

_MISSING = object()


def register_adapter(type_: type, adapter: Callable[[Any], Any], /) -> None:
    """Adapt values of exactly ``type_`` with ``adapter(value)`` when binding."""
    if type_ in _BASE_TYPES:
        ADAPTER_STATE["base_adapted"] = True
    adapters[(type_, PrepareProtocol)] = adapter
    ADAPTER_STATE["version"] += 1


def register_converter(typename: str, converter: Callable[[bytes], Any], /) -> None:
    """Convert columns declared (or named, see PARSE_COLNAMES) ``typename``
    with ``converter(bytes)``; the name is matched case-insensitively."""
    if not isinstance(typename, str):
        raise TypeError(f"register_converter() argument 1 must be str, not {type(typename).__name__}")
    converters[typename.upper()] = converter
    ADAPTER_STATE["version"] += 1


def adapt(obj: Any, proto: Any = PrepareProtocol, alt: Any = _MISSING, /) -> Any:
    """Adapt ``obj`` for ``proto``: a registered adapter, ``proto.__adapt__``,
    ``obj.__conform__(proto)``, else ``alt`` (or ProgrammingError)."""
    adapter = adapters.get((type(obj), proto))
    if adapter is not None:
        return adapter(obj)
    hook = getattr(proto, "__adapt__", None)
    if hook is not None:
        try:
            result = hook(obj)
        except TypeError:
            result = None
        if result is not None:
            return result
    conform = getattr(obj, "__conform__", None)
    if conform is not None:
        try:
            result = conform(proto)
        except TypeError:
            result = None
        if result is not None:
            return result
    if alt is not _MISSING:
        return alt
    raise ProgrammingError("can't adapt")


def base_types_adapted() -> bool:
    """Whether an adapter is registered for int, float, str or bytearray:
    then every parameter goes through :func:`adapt` (else plain values of
    those types are bound as they are)."""
    return bool(ADAPTER_STATE["base_adapted"])


def _adapt_value(value: Any) -> Any:
    t = type(value)
    if t in _BASE_TYPES and not ADAPTER_STATE["base_adapted"]:
        return value
    if value is None or t is bytes:
        return value
    return adapt(value, PrepareProtocol, value)


def needs_adapting(params: Any) -> bool:
    """Whether binding ``params`` must go through the adapters first: an
    adapter for a base type is registered (then every value is looked up,
    like the stdlib does)."""
    return bool(ADAPTER_STATE["base_adapted"]) and bool(params)


def adapt_parameters(params: Any) -> Any:
    """``params`` with every value adapted (a new tuple or dict), or the same
    object when nothing changed."""
    if isinstance(params, Mapping):
        out = {k: _adapt_value(v) for k, v in params.items()}
        same = all(out[k] is params[k] for k in out)
        return params if same else out
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes, bytearray)):
        adapted = tuple(_adapt_value(v) for v in params)
        same = all(a is b for a, b in zip(adapted, params, strict=False))
        return params if same else adapted
    return params


# -- the DB-API type constructors (PEP 249) ------------------------------------

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = memoryview


def DateFromTicks(ticks: float) -> datetime.date:
    """PEP 249: the local date of a POSIX timestamp."""
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    """PEP 249: the local time of day of a POSIX timestamp."""
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    """PEP 249: the local date and time of a POSIX timestamp."""
    return Timestamp(*time.localtime(ticks)[:6])


# -- the default adapters and converters (deprecated in 3.12, as in the stdlib) -

def _deprecated(what: str) -> None:
    if sys.version_info >= (3, 12):
        warn_caller(
            f"The default {what} is deprecated as of Python 3.12; see the sqlite3 documentation "
            "for suggested replacement recipes"
        )


def _adapt_date(val: datetime.date) -> str:
    _deprecated("date adapter")
    return val.isoformat()


def _adapt_datetime(val: datetime.datetime) -> str:
    _deprecated("datetime adapter")
    return val.isoformat(" ")


def _convert_date(val: bytes) -> datetime.date:
    _deprecated("date converter")
    return datetime.date(*map(int, val.split(b"-")))


def _convert_timestamp(val: bytes) -> datetime.datetime:
    _deprecated("timestamp converter")
    datepart, timepart = val.split(b" ")
    year, month, day = map(int, datepart.split(b"-"))
    timepart_full = timepart.split(b".")
    hours, minutes, seconds = map(int, timepart_full[0].split(b":"))
    microseconds = int(f"{timepart_full[1].decode():0<6.6}") if len(timepart_full) == 2 else 0
    return datetime.datetime(year, month, day, hours, minutes, seconds, microseconds)


register_adapter(datetime.date, _adapt_date)
register_adapter(datetime.datetime, _adapt_datetime)
register_converter("date", _convert_date)
register_converter("timestamp", _convert_timestamp)
