"""Reading the changes of a changeset or patchset: SQLite's
``sqlite3_changeset_iter`` (over bytes or a stream) walked in C a batch at
a time (``csrc/sss_changeset.c``), and the direct parser of in-memory
changesets.  A batch is a list of raw change tuples
``(table, op, old, new, pk, indirect)``; the sessions layer makes them
``Change`` values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from . import changeset_io as _io
from .changegroup import ChangeGroupHandle
from .changeset_io import OutputBuffer, Reader, check_rc, decode, new_buffer
from .raw import ffi, lib

__all__ = ["ChangesetIter", "parse_batches", "summarize", "Section", "WALK_BATCH", "WALK_BYTES"]

#: Changes per walk batch, and the byte size at which a batch stops early.
#: Small enough that a batch's objects die young (cheap for the cyclic GC),
#: large enough that the per-call cost is negligible.
WALK_BATCH = 1024
WALK_BYTES = 1 << 20

#: A table section of a changeset: ``(table, ncol, pk flags, inserts,
#: updates, deletes)`` (consecutive changes under one table header).
Section = tuple[str, int, bytes, int, int, int]


class ChangesetIter:
    """An open ``sqlite3_changeset_iter*``: over in-memory data
    (:meth:`over_bytes`) or a :class:`Reader` (:meth:`over_reader`).  Each
    reading method finalizes it when done (``sqlite3changeset_finalize``)."""

    __slots__ = ("ptr", "readers", "keep")

    def __init__(self, ptr: Any, readers: tuple[Reader, ...], keep: Any) -> None:
        self.ptr = ptr
        self.readers = readers
        #: What the iterator reads: referenced until it is finalized.
        self.keep = keep

    @classmethod
    def over_bytes(cls, data: Any, invert: bool = False,
                   what: str = "starting to iterate") -> ChangesetIter:
        """An iterator over the bytes-like ``data``: ``sqlite3changeset_start_v2``,
        or ``sqlite3changeset_start_v2_strm`` past :data:`changeset_io.MAX_BLOB`.
        ``invert``: the changes as the inverse changeset would hold them."""
        out = ffi.new("sqlite3_changeset_iter **")
        flags = lib.SQLITE_CHANGESETSTART_INVERT if invert else 0
        source = ffi.from_buffer(data)
        if len(source) <= _io.MAX_BLOB:
            rc = lib.sqlite3changeset_start_v2(out, len(source), source, flags)
            check_rc(rc, what)
            return cls(out[0], (), (data, source))
        return cls.over_reader(Reader(data), invert, what)

    @classmethod
    def over_reader(cls, reader: Reader, invert: bool = False,
                    what: str = "starting to read the stream") -> ChangesetIter:
        """An iterator over what ``reader`` reads: ``sqlite3changeset_start_v2_strm``."""
        out = ffi.new("sqlite3_changeset_iter **")
        flags = lib.SQLITE_CHANGESETSTART_INVERT if invert else 0
        rc = lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, reader.handle, flags)
        check_rc(rc, what)
        return cls(out[0], (reader,), reader)

    def reraise(self) -> None:
        """Raise what a reader's source raised during the last C call."""
        for r in self.readers:
            r.reraise()

    def finalize(self) -> int:
        """``sqlite3changeset_finalize`` (once): the result code, which
        reports an error the iterator met (they are sticky)."""
        ptr, self.ptr = self.ptr, None
        if ptr is None:
            return int(lib.SQLITE_OK)
        rc = int(lib.sqlite3changeset_finalize(ptr))
        self.keep = None
        return rc

    def batches(self, what: str) -> Iterator[list[Any]]:
        """Lists of raw change tuples, finalizing the iterator at the end (or
        when the consumer stops early).  Calls ``sss_changeset_walk``, which
        calls ``sqlite3changeset_next`` and ``sqlite3changeset_op`` /
        ``_old`` / ``_new`` / ``_pk`` per change, in C."""
        it = self.ptr
        try:
            yield from _batches(
                lambda buf, n: lib.sss_changeset_walk(it, WALK_BATCH, WALK_BYTES, buf, n),
                what, self.readers)
        finally:
            rc = self.finalize()
        # Only reached after a complete walk: finalize reports any error the
        # iterator met, e.g. corruption found while finishing.
        self.reraise()
        if rc != lib.SQLITE_OK:
            check_rc(rc, what)

    def next_chunk(self, max_changes: int, what: str = "reading the stream") -> tuple[bytes, bool]:
        """Up to ``max_changes`` changes as one blob (through a change group:
        ``sss_changegroup_fill``, ``sqlite3changegroup_output``), and whether
        the end was reached.  The iterator stays open."""
        group = ChangeGroupHandle(what)
        try:
            done = self.fill_group(group, max_changes, what)
            return group.output(what), done
        finally:
            group.delete()

    def fill_group(self, group: ChangeGroupHandle, max_changes: int, what: str) -> bool:
        """Add up to ``max_changes`` changes to ``group``
        (``sss_changegroup_fill``); True at the end."""
        n = ffi.new("int *")
        rc = lib.sss_changegroup_fill(self.ptr, group.ptr, max_changes, n)
        self.reraise()
        if rc != lib.SQLITE_ROW and rc != lib.SQLITE_DONE:
            check_rc(rc, what)
        return bool(rc == lib.SQLITE_DONE)


def _batches(fill: Callable[[OutputBuffer, Any], int], what: str,
             readers: tuple[Reader, ...] = ()) -> Iterator[list[Any]]:
    """The batch loop both walkers share: ``fill(buf, n)`` writes the next
    batch into ``buf`` (its count into ``n[0]``) and returns SQLITE_ROW while
    more may follow, SQLITE_DONE at the end, or an error code."""
    buf = new_buffer(WALK_BYTES + 64 * 1024)
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


def summarize(source: bytes | Reader, what: str) -> tuple[int, list[Section]]:
    """Read a changeset or patchset (bytes, or what a :class:`Reader`
    reads) to its end in C, skipping the values instead of decoding them
    (``sss_changeset_summary``): the number of changes and the table
    sections.  Corrupt or truncated input raises ChangesetError."""
    buf = new_buffer(64 * 1024)
    count = ffi.new("long long *")
    if isinstance(source, Reader):
        rc = lib.sss_changeset_summary(lib.sss_py_input, source.handle, ffi.NULL, 0, buf, count)
        source.reraise()
    else:
        view = ffi.from_buffer(source)
        rc = lib.sss_changeset_summary(ffi.NULL, ffi.NULL, view, len(source), buf, count)
    if rc != lib.SQLITE_DONE:
        check_rc(rc, what)
    return int(count[0]), decode(buf)


def parse_batches(data: bytes, what: str) -> Iterator[list[Any]]:
    """Lists of raw change tuples read straight from an in-memory changeset
    or patchset (``sss_changeset_parse``): the same tuples, and the same
    errors, as :meth:`ChangesetIter.batches` over SQLite's iterator, without
    building an ``sqlite3_value`` per field."""
    state = ffi.new("sss_parse_state *")
    source = ffi.from_buffer(data)  # held by the closure while the walk runs
    size = len(data)

    def fill(buf: OutputBuffer, n: Any) -> int:
        return int(lib.sss_changeset_parse(source, size, state, WALK_BATCH, WALK_BYTES, buf, n))

    return _batches(fill, what)

