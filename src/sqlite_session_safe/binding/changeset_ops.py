"""Changesets in, changesets out: inverting and concatenating, in memory or
streaming, and the partitioned concatenation of ``csrc/sss_concat.c`` that
keeps a streaming concat's memory bounded.
"""

from __future__ import annotations

from . import changeset_io as _io
from .changeset_io import Reader, Writer, check_rc, output_blob
from .errors import ChangesetError
from .raw import ffi, lib

__all__ = ["invert", "invert_stream", "concat", "concat_stream", "ConcatState"]


def invert(data: bytes, what: str = "inverting a changeset") -> bytes:
    """The changeset that undoes ``data`` (which the caller has validated:
    SQLite's invert trusts its input).

    Calls ``sqlite3changeset_invert`` (``sqlite3changeset_invert_strm`` past
    :data:`changeset_io.MAX_BLOB`)."""
    if len(data) > _io.MAX_BLOB:
        writer = Writer()
        invert_stream(Reader(data), writer, what)
        return bytes(writer.buffer)
    rc, blob = output_blob(lib.sqlite3changeset_invert, len(data), ffi.from_buffer(data))
    check_rc(rc, what)
    return blob


def invert_stream(reader: Reader, writer: Writer, what: str, nomem_is_corrupt: bool = False) -> None:
    """Write the inverse of what ``reader`` reads to ``writer``.
    ``nomem_is_corrupt``: SQLite's NOMEM means input it could not parse (the
    input was not validated first), reported as :class:`ChangesetError`.

    Calls ``sqlite3changeset_invert_strm``."""
    rc = lib.sqlite3changeset_invert_strm(lib.sss_py_input, reader.handle,
                                          lib.sss_py_output, writer.handle)
    reader.reraise()
    writer.reraise()
    if nomem_is_corrupt and rc == lib.SQLITE_NOMEM:
        raise ChangesetError(f"{what}: SQLite reported out of memory, which for a "
                             "changeset it cannot parse means corrupt input", rc)
    check_rc(rc, what)


def concat(a: bytes, b: bytes, what: str) -> bytes:
    """``a`` followed by ``b`` as one changeset (or patchset).

    Calls ``sqlite3changeset_concat`` (``sqlite3changeset_concat_strm`` past
    :data:`changeset_io.MAX_BLOB`)."""
    if len(a) + len(b) > _io.MAX_BLOB:
        writer = Writer()
        concat_stream(Reader(a), Reader(b), writer, what)
        return bytes(writer.buffer)
    rc, blob = output_blob(lib.sqlite3changeset_concat, len(a), ffi.from_buffer(a),
                           len(b), ffi.from_buffer(b))
    check_rc(rc, what)
    return blob


def concat_stream(reader_a: Reader, reader_b: Reader, writer: Writer, what: str) -> None:
    """Write what ``reader_a`` then ``reader_b`` read to ``writer`` as one
    (SQLite's own streaming concat: one change group for everything).

    Calls ``sqlite3changeset_concat_strm``."""
    rc = lib.sqlite3changeset_concat_strm(lib.sss_py_input, reader_a.handle,
                                          lib.sss_py_input, reader_b.handle,
                                          lib.sss_py_output, writer.handle)
    for r in (reader_a, reader_b, writer):
        r.reraise()
    check_rc(rc, what)


class ConcatState:
    """The state of a partitioned concatenation (``sss_concat_new``, freed
    with the object): a scan of both inputs (:meth:`scan`), then one
    :meth:`partition` pass per partition.  Refusals raise
    :class:`ChangesetError` with the reason the C side recorded."""

    __slots__ = ("ptr",)

    def __init__(self) -> None:
        self.ptr = ffi.gc(lib.sss_concat_new(), lib.sss_concat_free)
        if self.ptr == ffi.NULL:
            raise MemoryError("concatenating streams: out of memory")

    def scan(self, reader: Reader) -> None:
        """Read one input to its end, counting and checking its changes
        (``sss_concat_scan``)."""
        rc = lib.sss_concat_scan(self.ptr, lib.sss_py_input, reader.handle)
        reader.reraise()
        self._check(rc)

    def changes(self) -> int:
        """How many changes the scans saw (``sss_concat_changes``)."""
        return int(lib.sss_concat_changes(self.ptr))

    def partition(self, k: int, part: int, reader_a: Reader, reader_b: Reader,
                  writer: Writer) -> tuple[int, int]:
        """Concatenate partition ``part`` of ``k`` of the inputs into
        ``writer`` (``sss_concat_partition``: per partition,
        ``sqlite3changegroup_add_change`` and ``sqlite3changegroup_output_strm``);
        returns (changes read, changes in this partition)."""
        counts = ffi.new("long long[2]")
        rc = lib.sss_concat_partition(self.ptr, k, part, lib.sss_py_input, reader_a.handle,
                                      lib.sss_py_input, reader_b.handle,
                                      lib.sss_py_output, writer.handle, counts)
        for r in (reader_a, reader_b, writer):
            r.reraise()
        self._check(rc)
        return int(counts[0]), int(counts[1])

    def _check(self, rc: int) -> None:
        """Raise for a refused scan or partition with the reason the C side
        recorded; other codes as check_rc does."""
        if rc == lib.SQLITE_OK:
            return
        reason = lib.sss_concat_reason(self.ptr)
        name_ptr = lib.sss_concat_table(self.ptr)
        table = ffi.string(name_ptr).decode("utf-8", "replace") if name_ptr != ffi.NULL else None
        if reason == lib.SSS_CONCAT_SCHEMA:
            raise ChangesetError(f"concatenating streams: table {table!r} has a different number of "
                                 f"columns or primary key in different changes (changesets of "
                                 f"different schemas cannot be combined)", rc)
        if reason == lib.SSS_CONCAT_MIXED:
            raise ChangesetError(f"concatenating streams: cannot combine changeset and patchset "
                                 f"changes (at table {table!r})", rc)
        if reason == lib.SSS_CONCAT_CHANGED:
            raise ChangesetError("concatenating streams: an input changed between passes "
                                 f"(a change to table {table!r} the first pass did not see)", rc)
        check_rc(rc, "concatenating streams")
