"""``Blob``: incremental BLOB I/O (``con.blobopen``), the native blob with
the stdlib's checks, error classes and messages (Python 3.11's
``sqlite3.Blob``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...binding import errors as native
from ...binding.blob import Blob as NativeBlob
from .errors import ProgrammingError, translate

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Blob"]

_INT_MAX = (1 << 31) - 1
_new_object = object.__new__


def _buffer(data: Any) -> memoryview:
    """A bytes-like argument as the stdlib takes it (PyBUF_SIMPLE): a
    non-contiguous view is a BufferError, not copied."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    return view


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    """The native method after the stdlib's checks, with DB-API errors."""

    def call(self: Blob, *args: Any) -> Any:
        self._check()
        try:
            return method(self, *args)
        except native.Error as exc:
            raise translate(exc) from None

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class Blob(NativeBlob):
    """An open BLOB: ``read``/``write``/``seek``/``tell``, ``len()``,
    indexing and slicing, a context manager (stdlib 3.11 semantics).  Made
    by :meth:`Connection.blobopen`; it cannot be created directly."""

    _dbapi_con: Connection

    def __new__(cls, *args: object, **kwargs: object) -> Blob:
        raise TypeError(f"cannot create '{cls.__module__}.{cls.__qualname__}' instances")

    @classmethod
    def sss_open(
        cls, con: Connection, table: str, column: str, row: int, readonly: bool, name: str
    ) -> Blob:
        self: Blob = _new_object(cls)
        self._dbapi_con = con
        NativeBlob.__init__(self, con, table, column, row, readonly, name)
        return self

    def _check(self) -> None:
        """The stdlib's order: the connection (thread, open), then the blob."""
        con = self._dbapi_con
        con.sss_check_thread()
        con.sss_check_open_dbapi()
        if self.closed:
            raise ProgrammingError("Cannot operate on a closed blob.")

    read = _checked(NativeBlob.read)
    tell = _checked(NativeBlob.tell)
    __len__ = _checked(NativeBlob.__len__)
    close = _checked(NativeBlob.close)

    def write(self, data: Any, /) -> None:
        """Write ``data`` at the current position (the blob cannot grow)."""
        view = _buffer(data)
        self._check()
        try:
            NativeBlob.write(self, view)
        except native.Error as exc:
            raise translate(exc) from None

    def seek(self, offset: int, origin: int = os.SEEK_SET, /) -> None:
        """Move to ``offset`` from ``origin`` (``os.SEEK_SET``/``CUR``/``END``)."""
        self._check()
        if origin == os.SEEK_CUR and offset > _INT_MAX - self.tell() or \
                origin == os.SEEK_END and offset > _INT_MAX - len(self):
            raise OverflowError("seek offset results in overflow")
        NativeBlob.seek(self, offset, origin)

    def __getitem__(self, key: int | slice) -> int | bytes:
        self._check()
        if isinstance(key, int) and not -sys.maxsize - 1 <= key <= sys.maxsize:
            raise IndexError(f"cannot fit '{type(key).__name__}' into an index-sized integer")
        try:
            return NativeBlob.__getitem__(self, key)
        except native.Error as exc:
            raise translate(exc) from None

    def __setitem__(self, key: int | slice, value: Any) -> None:
        self._check()
        if isinstance(key, slice):
            value = _buffer(value)
        try:
            NativeBlob.__setitem__(self, key, value)
        except native.Error as exc:
            raise translate(exc) from None

    def __delitem__(self, key: object) -> None:
        self._check()
        what = "slice" if isinstance(key, slice) else "item"
        raise TypeError(f"Blob doesn't support {what} deletion")

    def __enter__(self) -> Blob:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Not a sequence: `in`, iteration and concatenation are refused, as in
    # the stdlib (rather than falling back to __getitem__).
    __iter__ = None
