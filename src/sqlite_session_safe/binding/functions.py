"""User-defined SQL functions, aggregates, window functions and collations.

SQLite calls the C trampolines of ``csrc/functions.c``, which pack all the
argument values of one call into one marshal buffer and make one call into the
``extern "Python"`` callbacks below; those decode the arguments with
``marshal.loads`` (through a view over that buffer, re-made only when it
grows), run the user's callable, and hand the result back in a struct the
trampoline reads once the callback returns: ints and floats as such, text and
blobs packed by ``marshal.dumps``.  No further call into C is made per row.

An exception never escapes into SQLite: the callback records it in the
connection's :class:`~.callbacks.CallbackState` and makes SQLite fail (or, for
collations, which cannot fail, compares equal); the execute/fetch call that ran
the statement raises that exception object.  Every registration is kept alive
in ``_LIVE`` until SQLite calls its destructor (the function was replaced or
removed, the connection closed), so a statement still running never reaches a
freed object.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .callbacks import CallbackState
from .errors import BindingError, BindingOverflowError, DataError, InterfaceError, error_class_for
from .raw import NULL, ffi, lib, text
from .values import SUPPORTED_TEXT, coerce_value

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["create_function", "create_aggregate", "create_window_function", "create_collation"]

_loads = marshal.loads
_dumps = marshal.dumps
_buffer = ffi.buffer
_from_buffer = ffi.from_buffer
_from_handle = ffi.from_handle

# What a callback returns: which result field it filled, or which failure the
# trampoline reports to SQLite (in the stdlib's words; the Python caller
# raises the original exception instead).
_RES_NULL: int = lib.SSS_RES_NULL
_RES_INT: int = lib.SSS_RES_INT
_RES_FLOAT: int = lib.SSS_RES_FLOAT
_RES_PACKED: int = lib.SSS_RES_PACKED
_ERR_FUNCTION: int = lib.SSS_RES_ERR_FUNCTION
_ERR_BY_METHOD: dict[str, int] = {
    "__init__": lib.SSS_RES_ERR_INIT,
    "step": lib.SSS_RES_ERR_STEP,
    "inverse": lib.SSS_RES_ERR_INVERSE,
    "finalize": lib.SSS_RES_ERR_FINALIZE,
    "value": lib.SSS_RES_ERR_VALUE,
}


class _Registration:
    """One function, aggregate, window function or collation registered on a
    connection: what its callbacks need.  ``handle`` is what SQLite holds."""

    __slots__ = ("state", "target", "name", "kind", "handle", "instances", "io", "view", "keep",
                 "__weakref__")

    def __init__(self, state: CallbackState, target: Any, name: str, kind: str) -> None:
        self.state = state
        self.target = target
        self.name = name
        self.kind = kind
        #: Aggregates: one instance of the user's class per live group, keyed
        #: by the address of the group's SQLite aggregate context.
        self.instances: dict[int, Any] = {}
        #: The struct shared with the C trampoline (sss_fn_io).
        self.io: Any = ffi.new("sss_fn_io *")
        #: A view over the C argument buffer (re-made when it grows).
        self.view: Any = None
        #: The packed result the trampoline reads after the callback returns.
        self.keep: bytes = b""
        self.handle = ffi.new_handle(self)


#: Registrations SQLite may still call, released by its destructor.
_LIVE: set[_Registration] = set()


def _decode_args(reg: _Registration, moved: int) -> tuple[Any, ...]:
    if moved:
        io = reg.io
        reg.view = _buffer(io.args, io.cap)
    try:
        # marshal ignores the bytes past the end of the tuple
        return _loads(reg.view)  # type: ignore[no-any-return]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"an argument of {reg.kind} {reg.name!r} is TEXT that is not valid UTF-8 "
            f"({exc.reason} at byte {exc.start}); pass it as CAST(... AS BLOB)"
        ) from None


def _set_result(reg: _Registration, value: Any) -> int:
    """Put ``value`` into the result struct; returns which field holds it."""
    res = reg.io
    kind = type(value)
    if kind is int:
        try:
            res.i = value
        except OverflowError:
            raise BindingOverflowError(
                f"{reg.kind} {reg.name!r} returned int {value!r}, which does not fit SQLite's "
                "signed 64-bit INTEGER"
            ) from None
        return _RES_INT
    if kind is float:
        res.d = value
        return _RES_FLOAT
    if value is None:
        return _RES_NULL
    if kind is not str and kind is not bytes:
        return _set_result(reg, _normalize(reg, value))
    packed = reg.keep = _dumps(value, 2)
    res.data = _from_buffer(packed)
    res.len = len(packed)
    return _RES_PACKED


def _normalize(reg: _Registration, value: Any) -> Any:
    """Subclasses of the supported types as their base type (marshal packs
    only exact types); anything else is an error naming the function."""
    try:
        return coerce_value(value)
    except TypeError:
        raise _bad_result(reg, value) from None


def _bad_result(reg: _Registration, value: Any) -> BindingError:
    return BindingError(
        f"{reg.kind} {reg.name!r} returned unsupported type {type(value).__qualname__}: "
        f"it may return {SUPPORTED_TEXT}"
    )


# -- callbacks (called by csrc/functions.c) -----------------------------------


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_function(app: Any, moved: int) -> int:
    reg = _from_handle(app)
    st = reg.state
    st.depth += 1
    try:
        return _set_result(reg, reg.target(*_decode_args(reg, moved)))
    except BaseException as exc:
        st.fail(exc)
        return _ERR_FUNCTION
    finally:
        st.depth -= 1


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_step(app: Any, key: int, flags: int) -> int:
    reg = _from_handle(app)
    st = reg.state
    st.depth += 1
    method = "__init__"
    try:
        args = _decode_args(reg, flags & 4)
        if flags & 1:
            instance = reg.instances[key] = reg.target()
        else:
            instance = reg.instances.get(key)
            if instance is None:  # its __init__ failed: the statement is failing
                return 0
        method = "inverse" if flags & 2 else "step"
        getattr(instance, method)(*args)
        return 0
    except BaseException as exc:
        st.fail(exc)
        return _ERR_BY_METHOD[method]
    finally:
        st.depth -= 1


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_final(app: Any, key: int, final: int) -> int:
    reg = _from_handle(app)
    st = reg.state
    st.depth += 1
    method = "finalize" if final else "value"
    try:
        instance = reg.instances.pop(key, None) if final else reg.instances.get(key)
        if instance is None:  # its __init__ failed: the result stays NULL
            return _RES_NULL
        return _set_result(reg, getattr(instance, method)())
    except BaseException as exc:
        st.fail(exc)
        return _ERR_BY_METHOD[method]
    finally:
        st.depth -= 1


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_release(app: Any) -> None:
    # SQLite no longer holds the registration (also called on close).
    _LIVE.discard(_from_handle(app))


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_collation(app: Any, n1: int, s1: Any, n2: int, s2: Any) -> int:
    reg = _from_handle(app)
    st = reg.state
    st.depth += 1
    try:
        a = str(_buffer(s1, n1), "utf-8")
        b = str(_buffer(s2, n2), "utf-8")
        result = reg.target(a, b)
        if not isinstance(result, int):
            raise InterfaceError(
                f"collation {reg.name!r} returned {type(result).__qualname__}; "
                "it must return an int (negative, zero or positive)"
            )
        return 1 if result > 0 else -1 if result < 0 else 0
    except BaseException as exc:
        # SQLite cannot fail a comparison: compare equal, raise afterwards.
        st.fail(exc)
        return 0
    finally:
        st.depth -= 1


# -- registering ----------------------------------------------------------------

_KINDS = {
    "function": lib.SSS_FN_SCALAR,
    "aggregate": lib.SSS_FN_AGGREGATE,
    "window function": lib.SSS_FN_WINDOW,
}


def _check_name(kind: str, name: Any) -> bytes:
    if not isinstance(name, str):
        raise InterfaceError(f"{kind} name must be str, not {type(name).__qualname__}")
    if "\0" in name or not name:
        raise InterfaceError(f"{kind} name must be a non-empty str without NUL characters")
    return name.encode("utf-8")


def _register(con: Connection, kind: str, name: str, narg: int, target: Any, flags: int) -> None:
    bname = _check_name(kind, name)
    if type(narg) is not int:
        raise InterfaceError(f"narg must be an int, not {type(narg).__qualname__}")
    if target is not None and not callable(target):
        raise InterfaceError(
            f"{kind} {name!r}: expected a callable or None, not {type(target).__qualname__}"
        )
    with con.sss_hold() as db:
        most = lib.sqlite3_limit(db, lib.SQLITE_LIMIT_FUNCTION_ARG, -1)
        if not -1 <= narg <= most:
            raise InterfaceError(
                f"{kind} {name!r}: narg must be -1 (any number) or 0..{most}, not {narg}"
            )
        if target is None:
            rc = lib.sss_create_function(db, bname, narg, 0, NULL, NULL, _KINDS[kind])
        else:
            reg = _Registration(con.sss_callbacks, target, name, kind)
            _LIVE.add(reg)
            # On failure SQLite calls the destructor, which drops reg again.
            rc = lib.sss_create_function(db, bname, narg, flags, reg.handle, reg.io, _KINDS[kind])
        if rc != lib.SQLITE_OK:
            raise _registration_error(db, rc, kind, name)


def _registration_error(db: Any, rc: int, kind: str, name: str) -> Exception:
    message = text(lib.sqlite3_errmsg(db))
    if rc & 0xFF == lib.SQLITE_BUSY:
        # SQLite refuses to replace or remove what a running statement uses.
        message = f"cannot change {kind} {name!r} while a statement using it runs ({message})"
    else:
        message = f"cannot register {kind} {name!r}: {message}"
    return error_class_for(rc)(message, rc)


def create_function(
    con: Connection, name: str, narg: int, func: Callable[..., Any] | None, deterministic: bool
) -> None:
    """See :meth:`Connection.create_function`."""
    flags = lib.SQLITE_DETERMINISTIC if deterministic else 0
    _register(con, "function", name, narg, func, flags)


def create_aggregate(con: Connection, name: str, narg: int, aggregate_class: type | None) -> None:
    """See :meth:`Connection.create_aggregate`."""
    _register(con, "aggregate", name, narg, aggregate_class, 0)


def create_window_function(
    con: Connection, name: str, narg: int, aggregate_class: type | None
) -> None:
    """See :meth:`Connection.create_window_function`."""
    _register(con, "window function", name, narg, aggregate_class, 0)


def create_collation(con: Connection, name: str, func: Callable[[str, str], int] | None) -> None:
    """See :meth:`Connection.create_collation`."""
    bname = _check_name("collation", name)
    if func is not None and not callable(func):
        raise InterfaceError(
            f"collation {name!r}: expected a callable or None, not {type(func).__qualname__}"
        )
    with con.sss_hold() as db:
        utf8 = lib.SQLITE_UTF8
        if func is None:
            rc = lib.sqlite3_create_collation_v2(db, bname, utf8, NULL, NULL, NULL)
        else:
            reg = _Registration(con.sss_callbacks, func, name, "collation")
            _LIVE.add(reg)
            rc = lib.sqlite3_create_collation_v2(
                db, bname, utf8, reg.handle, lib.sss_py_collation, lib.sss_py_release
            )
            if rc != lib.SQLITE_OK:
                _LIVE.discard(reg)  # unlike functions, SQLite does not destroy it
        if rc != lib.SQLITE_OK:
            raise _registration_error(db, rc, "collation", name)
