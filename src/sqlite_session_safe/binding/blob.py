"""Incremental BLOB I/O: :class:`Blob`, made by ``Connection.blobopen``.

The semantics are those of the stdlib's ``sqlite3.Blob`` (Python 3.11+): a
file-like object over one BLOB value whose size is fixed (writes cannot grow
or shrink it), with ``read``/``write``/``seek``/``tell``, ``len()``, and
indexing by ints and slices, which do not move the position.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ClosedError, InterfaceError
from .raw import ensure, error_from_db, ffi, lib

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Blob"]

B = TypeVar("B", bound=bytes)


class Blob:
    """An open BLOB: see :meth:`Connection.blobopen`.

    Closed by :meth:`close`, by leaving a ``with`` block, or when its
    connection closes; using it afterwards raises :class:`ClosedError`.
    If the row is changed or deleted meanwhile, SQLite reports the blob as
    expired (:class:`AbortError`) on the next access.

    Calls ``sqlite3_blob_open`` and ``sqlite3_blob_bytes`` when opened.
    """

    def __init__(
        self, con: Connection, table: str, column: str, row: int, readonly: bool, name: str
    ) -> None:
        self._ptr: Any = None
        for what, value in (("table", table), ("column", column), ("name", name)):
            if not isinstance(value, str) or "\0" in value:
                raise InterfaceError(f"blobopen: {what} must be a str without NUL characters")
        if type(row) is not int:
            raise InterfaceError(f"blobopen: row must be an int (a rowid), not {type(row).__qualname__}")
        self._con = con
        self._offset = 0
        with con.sss_hold() as db:
            out = ffi.new("sqlite3_blob **")
            rc = lib.sqlite3_blob_open(
                db, name.encode(), table.encode(), column.encode(), row, 0 if readonly else 1, out
            )
            if rc != lib.SQLITE_OK:
                raise error_from_db(db, rc, f"opening the blob in {table}.{column} of row {row}")
            self._ptr = out[0]
            self._size = int(lib.sqlite3_blob_bytes(self._ptr))
            con.sss_add_dependent(self)

    # -- file-like ------------------------------------------------------------

    def read(self, length: int = -1) -> bytes:
        """Up to ``length`` bytes from the current position (all the rest when
        negative); the position moves past them.

        Calls ``sqlite3_blob_read``."""
        if type(length) is not int:
            raise TypeError(f"length must be an int, not {type(length).__qualname__}")
        self._check_open()
        remaining = self._size - self._offset
        if length < 0 or length > remaining:
            length = remaining
        data = self._read_at(self._offset, length)
        self._offset += length
        return data

    def read_whole(self, cls: type[B]) -> B:
        """The whole blob as a new ``cls`` (a subclass of ``bytes``, made
        without its ``__new__``), whatever the position, in one copy:
        SQLite reads straight into the new object.  (``bytes`` itself: an
        ordinary read.)

        Calls ``sqlite3_blob_read``."""
        self._check_open()
        if cls is bytes:  # bytes(n) may one day be shared: never written in place
            return self._read_at(0, self._size)  # type: ignore[return-value]
        # An instance of a subclass is always a new object, zero-filled
        # (calloc: untouched pages cost nothing) and shared with nobody, so
        # filling it in place before returning it is the only write it ever
        # sees; read() and then cls(data) would hold two copies at once, and
        # a large log entry is hundreds of MB.
        data = bytes.__new__(cls, self._size)
        if self._size:
            with self._con.sss_hold() as db:
                self._check_open()
                target = ffi.from_buffer("char[]", data)
                ensure(lib.sqlite3_blob_read(self._ptr, target, self._size, 0), db, "reading the blob")
        return data

    def write(self, data: Any) -> None:
        """Write the bytes-like ``data`` at the current position and move past
        it.  A blob's size is fixed: writing past its end is a ValueError.

        Calls ``sqlite3_blob_write``."""
        view = _bytes_view(data)
        self._check_open()
        if len(view) > self._size - self._offset:
            raise ValueError("data longer than blob length")
        self._write_at(self._offset, view)
        self._offset += len(view)

    def seek(self, offset: int, origin: int = os.SEEK_SET) -> None:
        """Move the position to ``offset`` relative to ``origin``
        (``os.SEEK_SET``, ``os.SEEK_CUR`` or ``os.SEEK_END``)."""
        if type(offset) is not int or type(origin) is not int:
            raise TypeError("offset and origin must be ints")
        self._check_open()
        if origin == os.SEEK_SET:
            base = 0
        elif origin == os.SEEK_CUR:
            base = self._offset
        elif origin == os.SEEK_END:
            base = self._size
        else:
            raise ValueError("'origin' should be os.SEEK_SET, os.SEEK_CUR, or os.SEEK_END")
        target = base + offset
        if not 0 <= target <= self._size:
            raise ValueError("offset out of blob range")
        self._offset = target

    def tell(self) -> int:
        """The current position."""
        self._check_open()
        return self._offset

    def len(self) -> int:  # noqa: A003 - the name the contract asks for
        """The blob's size in bytes.

        The size comes from ``sqlite3_blob_bytes`` when the blob is opened."""
        self._check_open()
        return self._size

    def __len__(self) -> int:
        return self.len()

    # -- indexing -------------------------------------------------------------

    def __getitem__(self, key: int | slice) -> int | bytes:
        self._check_open()
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            span = range(start, stop, step)
            if not span:
                return b""
            if step == 1:
                return self._read_at(start, stop - start)
            low = min(span)
            chunk = self._read_at(low, max(span) - low + 1)
            # Indices relative to the chunk; for a negative step the chunk's
            # first byte is the slice's last, so the slice runs to its start.
            rel_stop = stop - low
            return chunk[start - low : rel_stop if rel_stop >= 0 else None : step]
        return self._read_at(self._index(key), 1)[0]

    def __setitem__(self, key: int | slice, value: Any) -> None:
        self._check_open()
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            span = range(start, stop, step)
            view = _bytes_view(value)
            if len(view) != len(span):
                raise IndexError("Blob slice assignment is wrong size")
            if not span:
                return
            if step == 1:
                self._write_at(start, view)
                return
            low = min(span)
            chunk = bytearray(self._read_at(low, max(span) - low + 1))
            rel_stop = stop - low
            chunk[start - low : rel_stop if rel_stop >= 0 else None : step] = view
            self._write_at(low, memoryview(chunk))
            return
        index = self._index(key)
        if not isinstance(value, int):
            raise TypeError(f"'{type(value).__qualname__}' object cannot be interpreted as an integer")
        if not 0 <= value <= 255:
            raise ValueError("byte must be in range(0, 256)")
        self._write_at(index, memoryview(bytes((value,))))

    def __delitem__(self, key: object) -> None:
        raise TypeError("Blob doesn't support item deletion")

    def _index(self, key: Any) -> int:
        if not isinstance(key, int):
            raise TypeError(f"Blob indices must be integers, not {type(key).__qualname__}")
        index = key + self._size if key < 0 else key
        if not 0 <= index < self._size:
            raise IndexError("Blob index out of range")
        return int(index)

    # -- I/O --------------------------------------------------------------------

    def _read_at(self, offset: int, n: int) -> bytes:
        if n <= 0:
            return b""
        buf = ffi.new("char[]", n)
        with self._con.sss_hold() as db:
            self._check_open()
            ensure(lib.sqlite3_blob_read(self._ptr, buf, n, offset), db, "reading the blob")
        return ffi.buffer(buf, n)[:]  # type: ignore[no-any-return]

    def _write_at(self, offset: int, view: memoryview) -> None:
        if not len(view):
            return
        with self._con.sss_hold() as db:
            self._check_open()
            source = ffi.from_buffer(view)
            ensure(lib.sqlite3_blob_write(self._ptr, source, len(view), offset), db, "writing the blob")

    # -- lifetime ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the blob is closed (by :meth:`close` or its connection)."""
        return self._ptr is None

    def close(self) -> None:
        """Close the blob.  Closing twice is fine.

        Calls ``sqlite3_blob_close``."""
        if self._ptr is None:
            return
        if self._con.closed:  # the connection closed it already
            self._ptr = None
            return
        with self._con.sss_hold():
            self.close_before_connection()

    def close_before_connection(self) -> None:
        """Close the blob; the caller holds the connection (its
        :meth:`~Connection.close` calls this first).

        Calls ``sqlite3_blob_close``."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.sqlite3_blob_close(ptr)

    def _check_open(self) -> None:
        if self._ptr is None:
            raise ClosedError("cannot use a closed blob")
        if self._con.closed:
            self._ptr = None
            raise ClosedError("cannot use a blob of a closed connection")

    def __enter__(self) -> Blob:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped unclosed: close now if the connection is free, else leave
        # the handle to the connection, which closes it before it closes.
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        con = self._con
        if con.sss_lock.acquire(False):
            try:
                if con.sss_db is not None and con.sss_callbacks.depth == 0:
                    self.close_before_connection()
                    return
            finally:
                con.sss_lock.release()
        if con.sss_db is not None:
            _orphans(con).ptrs.append(ptr)
            self._ptr = None

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"{self._size} bytes at {self._offset}"
        return f"<sqlite_session_safe.Blob {state}>"


def _bytes_view(data: Any) -> memoryview:
    """A flat byte view of a bytes-like object (non-contiguous ones copied)."""
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B")


class _Orphans:
    """Blob handles dropped while their connection was busy; closed with it."""

    __slots__ = ("ptrs", "__weakref__")

    def __init__(self) -> None:
        self.ptrs: list[Any] = []

    def close_before_connection(self) -> None:
        ptrs, self.ptrs = self.ptrs, []
        for ptr in ptrs:
            lib.sqlite3_blob_close(ptr)


_ORPHANS: weakref.WeakKeyDictionary[Any, _Orphans] = weakref.WeakKeyDictionary()


def _orphans(con: Connection) -> _Orphans:
    holder = _ORPHANS.get(con)
    if holder is None:
        holder = _ORPHANS[con] = _Orphans()
        con.sss_add_dependent(holder)
    return holder
