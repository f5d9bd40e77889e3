"""``Blob``: incremental BLOB I/O (``con.blobopen``), the native blob with
the stdlib's error classes."""

from __future__ import annotations

from typing import Any

from ...binding import errors as native
from ...binding.blob import Blob as NativeBlob
from .errors import ProgrammingError, translate

__all__ = ["Blob"]


def _translated(method: Any) -> Any:
    def call(self: Blob, *args: Any) -> Any:
        try:
            return method(self, *args)
        except native.ClosedError as exc:
            if "blob" in str(exc):
                raise ProgrammingError("Cannot operate on a closed blob.") from None
            raise translate(exc) from None
        except native.Error as exc:
            raise translate(exc) from None

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class Blob(NativeBlob):
    """An open BLOB: ``read``/``write``/``seek``/``tell``, ``len()``,
    indexing and slicing, a context manager (stdlib 3.11 semantics)."""

    read = _translated(NativeBlob.read)
    write = _translated(NativeBlob.write)
    seek = _translated(NativeBlob.seek)
    tell = _translated(NativeBlob.tell)
    __len__ = _translated(NativeBlob.__len__)
    __getitem__ = _translated(NativeBlob.__getitem__)
    __setitem__ = _translated(NativeBlob.__setitem__)
    __enter__ = _translated(NativeBlob.__enter__)
    close = _translated(NativeBlob.close)
