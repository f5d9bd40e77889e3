"""Parameter packing: Python values -> the packed form the C helpers bind.

A row of parameters is packed with ``marshal.dumps(row, 2)``, which runs in C;
``csrc/bind.c`` parses that and binds every value of the row in one cffi call.
This module holds the rules for what a parameter may be and the messages for
what it may not.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import BindingError, BindingOverflowError, TooBigError

__all__ = ["Parameters", "pack_row", "normalize_row", "coerce_value", "describe_bad_value", "SUPPORTED"]

#: What may be passed as parameters: a sequence (qmark ``?`` / numbered
#: ``?NNN``) or a mapping (named ``:name``, ``@name``, ``$name``).
Parameters = Sequence[Any] | Mapping[str, Any]

#: Exact types marshal packs the way SQLite stores them (memoryview only when
#: contiguous, so the fallback path below always copies views to bytes).
SUPPORTED = (type(None), int, float, str, bytes, bool, bytearray)
SUPPORTED_TEXT = "None, int, float, str, bytes, bytearray or memoryview"

_dumps = marshal.dumps


def coerce_value(value: Any) -> Any:
    """A value marshal can pack, for subclasses of the supported types
    (``IntEnum``, ``str`` subclasses, ...); TypeError for anything else.
    Shared by parameters and the results of user-defined functions."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, memoryview):
        return value.tobytes()  # non-contiguous views included
    raise TypeError(type(value).__qualname__)


def normalize_value(index: int, value: Any) -> Any:
    """:func:`coerce_value` for parameter ``index``, with a clear error."""
    try:
        return coerce_value(value)
    except TypeError:
        raise BindingError(describe_bad_value(index, value)) from None


def describe_bad_value(index: int, value: Any) -> str:
    return (
        f"parameter {index + 1} has unsupported type {type(value).__qualname__}: "
        f"SQLite stores {SUPPORTED_TEXT}"
    )


def normalize_row(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        v if type(v) in SUPPORTED else normalize_value(i, v) for i, v in enumerate(row)
    )


def pack_row(row: Sequence[Any]) -> bytes:
    """Pack one row of positional parameters."""
    try:
        return _dumps(row, 2)  # type: ignore[arg-type]  # marshal rejects the unsupported
    except (ValueError, BufferError):
        # Something marshal cannot pack as is: a subclass, or an unsupported type.
        row = normalize_row(row)
        try:
            return _dumps(row, 2)
        except ValueError:
            raise _too_big(row) from None


def pack_rows(rows: list[Any]) -> bytes:
    """Pack a chunk of rows for executemany; rows are tuples or lists."""
    try:
        return _dumps(rows, 2)
    except (ValueError, BufferError):
        rows = [normalize_row(row) for row in rows]
        try:
            return _dumps(rows, 2)
        except ValueError:
            raise _too_big(*rows) from None


#: marshal stores lengths in 32 bits; SQLite's own limit (SQLITE_MAX_LENGTH,
#: 1e9 bytes by default) is lower still.
_MARSHAL_MAX = 0x7FFFFFFF


def _too_big(*rows: Sequence[Any]) -> Exception:
    """The error for normalized rows marshal still refuses: a str or bytes
    value over 2 GiB, which SQLite would refuse as too big anyway."""
    for row in rows:
        for i, v in enumerate(row):
            if isinstance(v, (bytes, bytearray)) and len(v) > _MARSHAL_MAX or (
                isinstance(v, str) and len(v) > _MARSHAL_MAX // 4
                and len(v.encode("utf-8", "surrogatepass")) > _MARSHAL_MAX
            ):
                return TooBigError(f"string or blob too big (parameter {i + 1}: {len(v):,} "
                                   "bytes or characters, over SQLite's maximum of 1,000,000,000 bytes)")
    return BindingError("parameters could not be packed (marshal refused them)")


def overflow_error(index: int, value: Any) -> BindingOverflowError:
    return BindingOverflowError(
        f"parameter {index + 1}: int {value!r} does not fit SQLite's signed 64-bit INTEGER "
        "(-2**63 .. 2**63-1); store it as TEXT or BLOB"
    )


def as_sequence(params: Any) -> Sequence[Any]:
    """Reject what is not a parameter sequence, with a message that says why."""
    if isinstance(params, (tuple, list)):
        return params
    if isinstance(params, (str, bytes, bytearray, memoryview)):
        raise BindingError(
            f"parameters must be a sequence or a mapping, not {type(params).__name__} "
            "(wrap a single value in a tuple: (value,))"
        )
    if isinstance(params, Sequence):
        return tuple(params)
    raise BindingError(
        f"parameters must be a sequence or a mapping, not {type(params).__qualname__}"
    )
