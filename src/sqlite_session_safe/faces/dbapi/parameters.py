"""Parameters the way the stdlib ``sqlite3`` binds them, for what the native
hot path leaves alone.

The native ``execute`` binds a tuple or list of plain values (None, exact
int/float/str/bytes) itself; everything else falls back to the packed path,
and the DB-API cursor routes that fallback through :func:`bind_values`
first.  So plain parameters cost nothing here, and the rest gets the
stdlib's rules and errors word for word: any sequence (``len`` and
indexing) or any ``dict`` (a missing key goes through ``__missing__``),
adapters and ``__conform__``, ints beyond 64 bits (OverflowError), text
with lone surrogates (UnicodeEncodeError), non-contiguous buffers
(BufferError), and the messages of ``Modules/_sqlite/statement.c``.
"""

from __future__ import annotations

import sys
from typing import Any

from . import adaptation
from .errors import (
    UNSUPPORTED_PARAMETERS_ERROR,
    UNSUPPORTED_TYPE_ERROR,
    InterfaceError,
    ProgrammingError,
    warn_caller,
)

__all__ = [
    "bind_values",
    "value_for_sqlite",
    "UNSUPPORTED",
    "type_name",
    "warn_named_sequence",
]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_BASE_TYPES = (int, float, str, bytearray)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE


def type_name(value: Any) -> str:
    """``Py_TYPE(value)->tp_name``: ``"X"`` for a class defined in Python,
    ``"module.X"`` for a C type outside builtins."""
    cls = type(value)
    if cls.__flags__ & _HEAPTYPE or cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__}.{cls.__name__}"


#: What :func:`value_for_sqlite` returns for a type SQLite does not store.
UNSUPPORTED: Any = object()


def value_for_sqlite(value: Any) -> Any:
    """``value`` as a plain None/int/float/str/bytes the native layer binds
    as it is, with the stdlib's errors for what SQLite cannot take;
    :data:`UNSUPPORTED` for a type SQLite does not store (the caller words
    that error)."""
    if value is None:
        return None
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        text = str(value)
        if not text.isascii():
            text.encode("utf-8")  # UnicodeEncodeError for lone surrogates, as the stdlib
        return text
    try:
        view = memoryview(value)
    except TypeError:
        return UNSUPPORTED
    with view:
        if not view.c_contiguous:
            if sys.version_info < (3, 11):
                raise ValueError("could not convert BLOB to buffer")
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        return view.tobytes()


def _bind_one(value: Any, position: int) -> Any:
    if type(value) not in _BASE_TYPES or adaptation.base_types_adapted():
        value = adaptation.adapt(value, adaptation.PrepareProtocol, value)
    result = value_for_sqlite(value)
    if result is UNSUPPORTED:
        if sys.version_info >= (3, 11):
            raise UNSUPPORTED_TYPE_ERROR(
                f"Error binding parameter {position}: type '{type_name(value)}' is not supported"
            )
        raise UNSUPPORTED_TYPE_ERROR(f"Error binding parameter {position} - probably unsupported type.")
    return result


def bind_values(names: tuple[str | None, ...], params: Any) -> tuple[Any, ...]:
    """The values to bind for ``params`` to a statement whose parameters are
    ``names`` (:func:`~sqlite_session_safe.binding.capi.parameter_names`), by the stdlib's rules (see the
    module docstring), or the stdlib's exception."""
    if params is None:
        params = ()
    if isinstance(params, dict):
        values = []
        for position, name in enumerate(names, 1):
            if name is None:
                raise ProgrammingError(
                    f"Binding {position} has no name, but you supplied a dictionary "
                    "(which has only names)."
                )
            try:
                value = params[name[1:]]
            except LookupError:
                raise ProgrammingError(
                    f"You did not supply a value for binding parameter :{name[1:]}."
                ) from None
            if sys.version_info < (3, 11):
                try:
                    values.append(_bind_one(value, position))
                except InterfaceError:
                    raise InterfaceError(
                        f"Error binding parameter :{name[1:]} - probably unsupported type."
                    ) from None
            else:
                values.append(_bind_one(value, position))
        return tuple(values)
    if type(params) is tuple or type(params) is list or _is_sequence(params):
        count = len(params)
        if count != len(names):
            raise ProgrammingError(
                f"Incorrect number of bindings supplied. The current statement uses "
                f"{len(names)}, and there are {count} supplied."
            )
        if sys.version_info >= (3, 12):
            warn_named_sequence(names)
        base = 1 if sys.version_info >= (3, 11) else 0  # 3.10 counted parameters from 0
        return tuple(_bind_one(params[i], i + base) for i in range(count))
    raise UNSUPPORTED_PARAMETERS_ERROR("parameters are of unsupported type")


def warn_named_sequence(names: tuple[str | None, ...]) -> None:
    """Python 3.12's DeprecationWarning for a sequence given for named
    parameters (an error from 3.14), once per named parameter."""
    for position, name in enumerate(names, 1):
        if name is not None and not name.startswith("?"):
            warn_caller(
                f"Binding {position} ('{name}') is a named parameter, but you supplied a sequence "
                "which requires nameless (qmark) placeholders. Starting with Python 3.14 an "
                "sqlite3.ProgrammingError will be raised."
            )


def _is_sequence(obj: Any) -> bool:
    """``PySequence_Check``: indexable and not a dict."""
    return hasattr(type(obj), "__getitem__") and not isinstance(obj, dict)
