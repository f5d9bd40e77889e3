"""Plumbing shared by the sessions modules: blobs out of SQLite, iterators,
and the readers/writers behind the streaming APIs.

The streaming callbacks (``sss_py_input`` / ``sss_py_output``) receive an
``ffi.new_handle`` of a :class:`Reader` or :class:`Writer`; an exception in
the user's file object is stored there, SQLite is told ``SQLITE_IOERR``, and
the caller re-raises the stored exception once SQLite has returned.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterator
from typing import Any

from ..binding.raw import NULL, error_from_code, ffi, lib
from .errors import ChangesetError

__all__ = [
    "MAX_BLOB",
    "take_blob",
    "Reader",
    "Writer",
    "check_rc",
    "walk_batches",
    "parse_batches",
    "STREAM_CHUNK",
    "start_iter",
]

#: The non-streaming C API takes sizes as ``int``: larger inputs go through the
#: streaming functions.  A module attribute so tests can lower it.
MAX_BLOB = 0x7FFFFFFF

#: Chunk size for the streaming interfaces (SQLite's default is 1 KiB, which
#: would mean one Python callback per KiB).  Set once, before any session
#: object exists: sqlite3session_config is not thread-safe afterwards.
STREAM_CHUNK = 64 * 1024
_chunk = ffi.new("int *", STREAM_CHUNK)
lib.sqlite3session_config(lib.SQLITE_SESSION_CONFIG_STRMSIZE, _chunk)

#: Changes per walk batch, and the byte size at which a batch stops early.
#: Small enough that a batch's objects die young (cheap for the cyclic GC),
#: large enough that the per-call cost is negligible.
WALK_BATCH = 1024
WALK_BYTES = 1 << 20

_loads = marshal.loads

_CORRUPT_CODES = {lib.SQLITE_CORRUPT, lib.SQLITE_ERROR, lib.SQLITE_RANGE, lib.SQLITE_MISUSE,
                  lib.SQLITE_SCHEMA}


def take_blob(size_ptr: Any, data_ptr: Any) -> bytes:
    """Copy an ``sqlite3_malloc``-ed output buffer into bytes and free it."""
    ptr = data_ptr[0]
    if ptr == NULL:
        return b""
    try:
        return ffi.unpack(ffi.cast("char *", ptr), size_ptr[0])  # type: ignore[no-any-return]
    finally:
        lib.sqlite3_free(ptr)


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


class Reader:
    """Feeds SQLite's xInput from a file object (``readinto`` or ``read``) or
    from an in-memory buffer."""

    __slots__ = ("source", "view", "pos", "error", "handle", "total")

    def __init__(self, source: Any) -> None:
        self.source = source
        self.view: memoryview | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.view = memoryview(source).cast("B")
        elif not (hasattr(source, "readinto") or hasattr(source, "read")):
            raise TypeError(f"expected a binary file object or bytes, not {type(source).__qualname__}")
        self.pos = 0
        self.total = 0
        self.error: BaseException | None = None
        self.handle = ffi.new_handle(self)

    def fill(self, data: Any, size_ptr: Any) -> int:
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
        return int(lib.SQLITE_OK)

    def reraise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class Writer:
    """Receives SQLite's xOutput chunks: appends them to a file object's
    ``write`` (or to an in-memory bytearray when ``target`` is None)."""

    __slots__ = ("target", "buffer", "error", "handle", "total")

    def __init__(self, target: Any = None) -> None:
        if target is not None and not hasattr(target, "write"):
            raise TypeError(f"expected a binary file object, not {type(target).__qualname__}")
        self.target = target
        self.buffer = bytearray()
        self.error: BaseException | None = None
        self.total = 0
        self.handle = ffi.new_handle(self)

    def write(self, data: Any, n: int) -> int:
        chunk = ffi.buffer(data, n)
        if self.target is None:
            self.buffer += chunk
        else:
            self.target.write(bytes(chunk))
        self.total += n
        return int(lib.SQLITE_OK)

    def reraise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err


def new_buffer(cap: int = WALK_BYTES + 64 * 1024) -> Any:
    """A C output buffer freed with the returned object."""
    buf = ffi.gc(ffi.new("sss_buffer *"), lib.sss_buffer_free)
    if lib.sss_buffer_init(buf, cap):
        raise MemoryError("cannot allocate a changeset buffer")
    return buf


def decode(buf: Any) -> Any:
    """marshal.loads over a filled C buffer; text that is not UTF-8 becomes
    ChangesetError (a changeset's values are only as good as its source)."""
    try:
        return _loads(ffi.buffer(buf.data, buf.len))
    except UnicodeDecodeError as exc:
        raise ChangesetError(f"the changeset holds text that is not valid UTF-8: {exc}") from None
    except (EOFError, ValueError, TypeError) as exc:  # never expected: our own writer
        raise ChangesetError(f"cannot decode a change: {exc}") from None


def _batches(fill: Callable[[Any, Any], int], what: str,
             readers: tuple[Reader, ...] = ()) -> Iterator[list[Any]]:
    """The batch loop both walkers share: ``fill(buf, n)`` writes the next
    batch into ``buf`` (its count into ``n[0]``) and returns SQLITE_ROW while
    more may follow, SQLITE_DONE at the end, or an error code."""
    buf = new_buffer()
    n = ffi.new("int *")
    while True:
        rc = fill(buf, n)
        for r in readers:
            r.reraise()
        if rc != lib.SQLITE_ROW and rc != lib.SQLITE_DONE:
            check_rc(rc, what)
        if n[0]:
            yield decode(buf)
        if rc == lib.SQLITE_DONE:
            return


def walk_batches(it: Any, what: str, readers: tuple[Reader, ...] = (),
                 keepalive: Any = None) -> Iterator[list[Any]]:
    """Yield lists of raw change tuples from an open iterator, finalizing it at
    the end (or when the consumer stops early).  ``keepalive`` is the data the
    iterator reads: referenced here until the iterator is finalized."""
    try:
        yield from _batches(lambda buf, n: lib.sss_changeset_walk(it, WALK_BATCH, WALK_BYTES, buf, n),
                            what, readers)
    finally:
        rc = lib.sqlite3changeset_finalize(it)
        del keepalive
    # Only reached after a complete walk: finalize reports any error the
    # iterator met (they are sticky), e.g. corruption found while finishing.
    for r in readers:
        r.reraise()
    if rc != lib.SQLITE_OK:
        check_rc(rc, what)


def parse_batches(data: bytes, what: str) -> Iterator[list[Any]]:
    """Yield lists of raw change tuples read straight from an in-memory
    changeset or patchset (``sss_changeset_parse``): the same tuples, and the
    same errors, as :func:`walk_batches` over SQLite's iterator, without
    building an ``sqlite3_value`` per field."""
    state = ffi.new("sss_parse_state *")
    source = ffi.from_buffer(data)  # held by the closure while the walk runs
    size = len(data)

    def fill(buf: Any, n: Any) -> int:
        return int(lib.sss_changeset_parse(source, size, state, WALK_BATCH, WALK_BYTES, buf, n))

    return _batches(fill, what)


def start_iter(data: bytes, invert: bool) -> tuple[Any, tuple[Reader, ...]]:
    """An iterator over ``data``: the blob API, or the streaming one past 2 GiB."""
    out = ffi.new("sqlite3_changeset_iter **")
    flags = lib.SQLITE_CHANGESETSTART_INVERT if invert else 0
    if len(data) <= MAX_BLOB:
        rc = lib.sqlite3changeset_start_v2(out, len(data), ffi.from_buffer(data), flags)
        readers: tuple[Reader, ...] = ()
    else:
        reader = Reader(data)
        rc = lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, reader.handle, flags)
        readers = (reader,)
    check_rc(rc, "starting to iterate")
    return out[0], readers
