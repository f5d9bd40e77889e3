"""Bytes into and out of SQLite's session extension: its result codes as
exceptions, the blobs it allocates, the streaming xInput/xOutput callbacks,
and the C buffer the csrc walkers fill with marshalled change tuples.

The streaming callbacks (``sss_py_input`` / ``sss_py_output``) receive an
``ffi.new_handle`` of a :class:`Reader` or :class:`Writer`; an exception in
the user's file object is stored there, SQLite is told ``SQLITE_IOERR``, and
the caller re-raises the stored exception (:meth:`Reader.reraise`) once
SQLite has returned.  BaseException is caught on purpose: a
KeyboardInterrupt must not be lost inside C either.

Used by the other session-extension modules of the binding
(``session_handle``, ``changegroup``, ``changeset_iter``, ``changeset_ops``,
``changeset_apply``, ...); the sessions layer uses :class:`Reader`,
:class:`Writer` and the limits below.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from typing import Any

from .errors import ChangesetError
from .raw import NULL, error_from_code, ffi, lib

__all__ = [
    "MAX_BLOB",
    "STREAM_CHUNK",
    "check_rc",
    "output_blob",
    "Reader",
    "Writer",
    "OutputBuffer",
    "new_buffer",
    "decode",
]

#: The non-streaming C API takes sizes as ``int``: larger inputs go through the
#: streaming functions.  A module attribute (read at each call) so tests can
#: lower it.
MAX_BLOB = 0x7FFFFFFF

#: Chunk size for the streaming interfaces (SQLite's default is 1 KiB, which
#: would mean one Python callback per KiB).  Set once, before any session
#: object exists: sqlite3session_config is not thread-safe afterwards.
STREAM_CHUNK = 64 * 1024
_chunk = ffi.new("int *", STREAM_CHUNK)
lib.sqlite3session_config(lib.SQLITE_SESSION_CONFIG_STRMSIZE, _chunk)

_IOERR = lib.SQLITE_IOERR
_loads = marshal.loads

_CORRUPT_CODES = {lib.SQLITE_CORRUPT, lib.SQLITE_ERROR, lib.SQLITE_RANGE, lib.SQLITE_MISUSE,
                  lib.SQLITE_SCHEMA}


def check_rc(rc: int, what: str) -> None:
    """Raise for a failed changeset operation: corruption (and the misuse and
    range errors SQLite reports for malformed input) as ChangesetError, memory
    as MemoryError, anything else as the SQLiteError for the code."""
    if rc == lib.SQLITE_OK:
        return
    if rc == lib.SSS_ERR_NOMEM or rc == lib.SQLITE_NOMEM:
        raise MemoryError(f"{what}: out of memory")
    if (rc & 0xFF) in _CORRUPT_CODES:
        raise ChangesetError(f"{what}: the changeset is corrupt or malformed "
                             f"({ffi.string(lib.sqlite3_errstr(rc)).decode()})", rc)
    raise error_from_code(rc, what)


def _take_blob(size_ptr: Any, data_ptr: Any) -> bytes:
    """Copy an ``sqlite3_malloc``-ed output buffer into bytes and free it."""
    ptr = data_ptr[0]
    if ptr == NULL:
        return b""
    try:
        return ffi.unpack(ffi.cast("char *", ptr), size_ptr[0])  # type: ignore[no-any-return]
    finally:
        lib.sqlite3_free(ptr)


def output_blob(fn: Callable[..., int], *args: Any) -> tuple[int, bytes]:
    """``fn(*args, &n, &p)``, SQLite's convention for a function that returns
    a blob it allocated: the result code, and the blob copied (and freed;
    b"" when there is none)."""
    n = ffi.new("int *")
    p = ffi.new("void **")
    rc = fn(*args, n, p)
    return rc, _take_blob(n, p)


class _Stream:
    """What :class:`Reader` and :class:`Writer` share: the exception their
    file object raised inside a C call, kept for the caller."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def reraise(self) -> None:
        """Raise what the file object raised during the last C call, if anything."""
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class Reader(_Stream):
    """Feeds SQLite's xInput from a file object (``readinto`` or ``read``) or
    from an in-memory buffer.  ``tee``: a file object that also receives
    every chunk read (spooling an input that cannot seek)."""

    __slots__ = ("source", "view", "pos", "handle", "total", "tee")

    def __init__(self, source: Any, tee: Any = None) -> None:
        super().__init__()
        self.source = source
        self.view: memoryview | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.view = memoryview(source).cast("B")
        elif not (hasattr(source, "readinto") or hasattr(source, "read")):
            raise TypeError(f"expected a binary file object or bytes, not {type(source).__qualname__}")
        self.pos = 0
        self.total = 0
        self.tee = tee
        self.handle = ffi.new_handle(self)

    def fill(self, data: Any, size_ptr: Any) -> int:
        """xInput: up to ``*size_ptr`` bytes into ``data``; ``*size_ptr``
        set to the count (0 at the end)."""
        want = size_ptr[0]
        view = self.view
        if view is not None:
            chunk = view[self.pos : self.pos + want]
            n = len(chunk)
            ffi.memmove(data, chunk, n)
            self.pos += n
        else:
            target = ffi.buffer(data, want)
            readinto = getattr(self.source, "readinto", None)
            if readinto is not None:
                n = readinto(target) or 0
            else:
                chunk = self.source.read(want)
                if not isinstance(chunk, (bytes, bytearray)):
                    raise TypeError("the file object must be opened in binary mode")
                n = len(chunk)
                target[0:n] = chunk
            if not 0 <= n <= want:
                raise ValueError(f"readinto returned {n} for a {want}-byte buffer")
        self.total += n
        size_ptr[0] = n
        if self.tee is not None:
            self.tee.write(ffi.buffer(data, n))
        return int(lib.SQLITE_OK)


class Writer(_Stream):
    """Receives SQLite's xOutput chunks: appends them to a file object's
    ``write`` (or to the in-memory :attr:`buffer` when ``target`` is None)."""

    __slots__ = ("target", "buffer", "handle", "total")

    def __init__(self, target: Any = None) -> None:
        super().__init__()
        if target is not None and not hasattr(target, "write"):
            raise TypeError(f"expected a binary file object, not {type(target).__qualname__}")
        self.target = target
        self.buffer = bytearray()
        self.total = 0
        self.handle = ffi.new_handle(self)

    def write(self, data: Any, n: int) -> int:
        """xOutput: ``n`` bytes at ``data``."""
        chunk = ffi.buffer(data, n)
        if self.target is None:
            self.buffer += chunk
        else:
            self.target.write(bytes(chunk))
        self.total += n
        return int(lib.SQLITE_OK)


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


#: An ``sss_buffer *`` (csrc/sss.h): a growing C output buffer, freed with
#: the object.  Opaque above the binding.
OutputBuffer = Any


def new_buffer(cap: int) -> OutputBuffer:
    """A C output buffer of initial capacity ``cap``, freed with the returned
    object (``sss_buffer_init``, ``sss_buffer_free``)."""
    buf = ffi.gc(ffi.new("sss_buffer *"), lib.sss_buffer_free)
    if lib.sss_buffer_init(buf, cap):
        raise MemoryError("cannot allocate a changeset buffer")
    return buf


def decode(buf: OutputBuffer) -> Any:
    """marshal.loads over a filled C buffer; text that is not UTF-8 becomes
    ChangesetError (a changeset's values are only as good as its source)."""
    try:
        return _loads(ffi.buffer(buf.data, buf.len))
    except UnicodeDecodeError as exc:
        raise ChangesetError(f"the changeset holds text that is not valid UTF-8: {exc}") from None
    except (EOFError, ValueError, TypeError) as exc:  # never expected: our own writer
        raise ChangesetError(f"cannot decode a change: {exc}") from None
