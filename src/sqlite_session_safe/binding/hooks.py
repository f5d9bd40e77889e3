"""Connection hooks: authorizer, progress handler, trace callback; extension
loading and limits.

The hooks are ``extern "Python"`` callbacks handed to SQLite directly, with
an ``ffi.new_handle`` of a :class:`_Hook` as context; the connection keeps the
hook object (``con.sss_hooks``) for as long as SQLite holds the pointer.  As with
user functions (see ``functions.py``), an exception never escapes into C: it
is recorded on the connection, SQLite is made to stop (the authorizer denies,
the progress handler interrupts; a trace callback cannot stop anything), and
the execute/fetch call raises the original exception.

SQLite forbids the authorizer and the progress handler to use their
connection; while they run, using it raises :class:`InterfaceError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .callbacks import CallbackState
from .errors import InterfaceError, error_class_for
from .raw import NULL, ensure, ffi, lib, text

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "set_authorizer",
    "set_progress_handler",
    "set_trace_callback",
    "enable_load_extension",
    "load_extension",
    "limit",
]

_from_handle = ffi.from_handle
_DENY = lib.SQLITE_DENY
_TRACE_STMT = lib.SQLITE_TRACE_STMT


class _Hook:
    """A user callable SQLite calls through ``handle``."""

    __slots__ = ("state", "func", "handle")

    def __init__(self, state: CallbackState, func: Callable[..., Any]) -> None:
        self.state = state
        self.func = func
        self.handle = ffi.new_handle(self)


def _opt_text(ptr: Any) -> str | None:
    return None if ptr == NULL else text(ptr)


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_authorizer(app: Any, action: int, a1: Any, a2: Any, a3: Any, a4: Any) -> int:
    hook = _from_handle(app)
    st = hook.state
    st.depth += 1
    outer, st.forbidden = st.forbidden, "an authorizer callback"
    try:
        result = hook.func(action, _opt_text(a1), _opt_text(a2), _opt_text(a3), _opt_text(a4))
        if not isinstance(result, int):
            raise InterfaceError(
                f"the authorizer returned {type(result).__qualname__}; it must return "
                "SQLITE_OK, SQLITE_DENY or SQLITE_IGNORE"
            )
        return int(result)
    except BaseException as exc:
        st.fail(exc)
        return int(_DENY)
    finally:
        st.forbidden = outer
        st.depth -= 1


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_progress(app: Any) -> int:
    hook = _from_handle(app)
    st = hook.state
    st.depth += 1
    outer, st.forbidden = st.forbidden, "a progress handler"
    try:
        return 1 if hook.func() else 0
    except BaseException as exc:
        st.fail(exc)
        return 1  # interrupt: the statement stops, the exception is raised
    finally:
        st.forbidden = outer
        st.depth -= 1


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_trace(mask: int, app: Any, stmt: Any, sql: Any) -> int:
    if mask != _TRACE_STMT:
        return 0
    hook = _from_handle(app)
    st = hook.state
    st.depth += 1
    try:
        # Like the stdlib: the SQL with its parameters expanded, else as written.
        expanded = lib.sqlite3_expanded_sql(stmt)
        if expanded != NULL:
            try:
                statement = text(expanded)
            finally:
                lib.sqlite3_free(expanded)
        else:
            statement = text(ffi.cast("char *", sql))
        hook.func(statement)
    except BaseException as exc:
        st.fail(exc)  # cannot stop SQLite here: raised once the call returns
    finally:
        st.depth -= 1
    return 0


def _check_callable(what: str, func: Any) -> None:
    if func is not None and not callable(func):
        raise InterfaceError(f"{what} must be a callable or None, not {type(func).__qualname__}")


def set_authorizer(
    con: Connection, func: Callable[[int, str | None, str | None, str | None, str | None], int] | None
) -> None:
    """See :meth:`Connection.set_authorizer`."""
    _check_callable("the authorizer", func)
    with con.sss_hold() as db:
        if func is None:
            rc = lib.sqlite3_set_authorizer(db, NULL, NULL)
            hook = None
        else:
            hook = _Hook(con.sss_callbacks, func)
            rc = lib.sqlite3_set_authorizer(db, lib.sss_py_authorizer, hook.handle)
        ensure(rc, db, "setting the authorizer")
        # Replaced only now that SQLite no longer points at the old one.
        con.sss_hooks["authorizer"] = hook


def set_progress_handler(con: Connection, func: Callable[[], object] | None, n: int) -> None:
    """See :meth:`Connection.set_progress_handler`."""
    _check_callable("the progress handler", func)
    if type(n) is not int:
        raise InterfaceError(f"n must be an int (instructions between calls), not {type(n).__qualname__}")
    with con.sss_hold() as db:
        if func is None:
            lib.sqlite3_progress_handler(db, 0, NULL, NULL)
            hook = None
        else:
            hook = _Hook(con.sss_callbacks, func)
            lib.sqlite3_progress_handler(db, n, lib.sss_py_progress, hook.handle)
        con.sss_hooks["progress"] = hook


def set_trace_callback(con: Connection, func: Callable[[str], object] | None) -> None:
    """See :meth:`Connection.set_trace_callback`."""
    _check_callable("the trace callback", func)
    with con.sss_hold() as db:
        if func is None:
            rc = lib.sqlite3_trace_v2(db, 0, NULL, NULL)
            hook = None
        else:
            hook = _Hook(con.sss_callbacks, func)
            rc = lib.sqlite3_trace_v2(db, _TRACE_STMT, lib.sss_py_trace, hook.handle)
        ensure(rc, db, "setting the trace callback")
        con.sss_hooks["trace"] = hook


def enable_load_extension(con: Connection, enabled: bool) -> None:
    """See :meth:`Connection.enable_load_extension`."""
    with con.sss_hold() as db:
        ensure(lib.sqlite3_enable_load_extension(db, 1 if enabled else 0), db, "enable_load_extension")


def load_extension(con: Connection, path: str | os.PathLike[str], entrypoint: str | None) -> None:
    """See :meth:`Connection.load_extension`."""
    if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise InterfaceError(f"extension path must be str or os.PathLike, not {type(path).__qualname__}")
    name = os.fsencode(path)
    if entrypoint is not None and not isinstance(entrypoint, str):
        raise InterfaceError(f"entrypoint must be str or None, not {type(entrypoint).__qualname__}")
    if b"\0" in name or (entrypoint is not None and "\0" in entrypoint):
        raise InterfaceError("extension path and entrypoint must not contain NUL characters")
    with con.sss_hold() as db:
        errmsg = ffi.new("char **")
        entry = entrypoint.encode() if entrypoint is not None else NULL
        rc = lib.sqlite3_load_extension(db, name, entry, errmsg)
        if rc != lib.SQLITE_OK:
            message = text(errmsg[0]) or text(lib.sqlite3_errstr(rc))
            lib.sqlite3_free(errmsg[0])
            raise error_class_for(rc)(f"loading extension {os.fsdecode(name)!r}: {message}", rc)


def limit(con: Connection, category: int, value: int) -> int:
    """``sqlite3_limit``: sets limit ``category`` to ``value`` (negative: only
    read it) and returns its previous value."""
    if type(category) is not int or type(value) is not int:
        raise InterfaceError("limit category and value must be ints")
    with con.sss_hold() as db:
        previous = int(lib.sqlite3_limit(db, category, value))
    if previous < 0:
        raise InterfaceError(f"unknown limit category {category} (use the SQLITE_LIMIT_* constants)")
    return previous
