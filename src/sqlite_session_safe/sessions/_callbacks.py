"""The ``extern "Python"`` callbacks SQLite's session module calls.

Each receives as its context an ``ffi.new_handle`` of the Python object that
serves the call.  None of them may let an exception escape into SQLite: they
store it on that object (which makes SQLite stop: an I/O error for streams,
ABORT for conflicts, "skip" plus abort for filters) and the Python caller
re-raises it once SQLite has unwound.  BaseException is caught on purpose: a
KeyboardInterrupt must not be lost inside C either.
"""

from __future__ import annotations

from typing import Any

from ..binding.raw import ffi, lib

_IOERR = lib.SQLITE_IOERR
_ABORT = lib.SQLITE_CHANGESET_ABORT


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_input(ctx: Any, data: Any, size_ptr: Any) -> int:
    reader = ffi.from_handle(ctx)
    try:
        return int(reader.fill(data, size_ptr))
    except BaseException as exc:
        reader.error = exc
        size_ptr[0] = 0
        return int(_IOERR)


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_output(ctx: Any, data: Any, n: int) -> int:
    writer = ffi.from_handle(ctx)
    try:
        return int(writer.write(data, n))
    except BaseException as exc:
        writer.error = exc
        return int(_IOERR)


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_session_filter(ctx: Any, table: Any) -> int:
    core = ffi.from_handle(ctx)
    return int(core.filter_table(table))  # never raises


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_apply_filter(ctx: Any, table: Any) -> int:
    apply_ctx = ffi.from_handle(ctx)
    return int(apply_ctx.filter_table(table))  # never raises


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_apply_conflict(ctx: Any, conflict_type: int, it: Any) -> int:
    apply_ctx = ffi.from_handle(ctx)
    try:
        return int(apply_ctx.on_conflict(conflict_type, it))
    except BaseException as exc:
        apply_ctx.fail(exc)
        return int(_ABORT)
