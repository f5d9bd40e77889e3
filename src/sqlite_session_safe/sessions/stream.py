"""Streaming: changesets as binary file objects, in bounded memory.

The blob API takes sizes as C ``int`` and needs the whole changeset in one
buffer; these functions go through SQLite's ``*_strm`` interfaces instead,
reading and writing :data:`_native.STREAM_CHUNK`-sized pieces:

* :func:`iterate_stream` and :func:`invert_stream` use memory independent of
  the changeset's size;
* :func:`concat_stream` lifts the 2 GiB limit, but SQLite combines the inputs
  in a hash of their rows, so its memory grows with the number of rows;
* :func:`apply_stream` (in :mod:`.apply`) applies in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from ..binding.raw import ffi, lib
from ._native import Reader, Writer, check_rc
from .changeset import Change, iter_changes
from .errors import ChangesetError

__all__ = ["iterate_stream", "invert_stream", "concat_stream"]


def iterate_stream(source: BinaryIO | bytes, invert: bool = False) -> Iterator[Change]:
    """Iterate the changes of a changeset or patchset read from a binary file
    object (``invert=True``: as the inverse would hold them)."""
    reader = Reader(source)
    out = ffi.new("sqlite3_changeset_iter **")
    flags = lib.SQLITE_CHANGESETSTART_INVERT if invert else 0
    check_rc(lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, reader.handle, flags),
             "starting to read the stream")
    return iter_changes(out[0], reader, (reader,), "iterating a stream")


def invert_stream(source: BinaryIO | bytes, dest: BinaryIO) -> int:
    """Write the inverse of the changeset read from ``source`` to ``dest``;
    returns the number of bytes written.

    sqlite3changeset_invert() trusts its input (a table header of zero
    columns, for one, makes it fail as "out of memory"), so a seekable source
    is first read through the hardened iterator: corruption then raises
    :class:`ChangesetError` before anything is written.  A source that cannot
    seek is inverted in one pass, and SQLite's NOMEM is reported as
    ChangesetError too, since on such input that is what it means.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        for _ in iterate_stream(source):
            pass
    start = _tell(source)
    if start is not None:
        for _ in iterate_stream(source):
            pass
        source.seek(start)  # type: ignore[union-attr]
    reader, writer = Reader(source), Writer(dest)
    rc = lib.sqlite3changeset_invert_strm(lib.sss_py_input, reader.handle,
                                          lib.sss_py_output, writer.handle)
    reader.reraise()
    writer.reraise()
    if rc == lib.SQLITE_NOMEM:
        raise ChangesetError("inverting a stream: SQLite reported out of memory, which for a "
                             "changeset it cannot parse means corrupt input", rc)
    check_rc(rc, "inverting a stream")
    return writer.total


def _tell(source: object) -> int | None:
    """The position of a seekable file object, else None."""
    try:
        if source.seekable():  # type: ignore[attr-defined]
            return int(source.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass
    return None


def concat_stream(a: BinaryIO | bytes, b: BinaryIO | bytes, dest: BinaryIO) -> int:
    """Write changeset ``a`` followed by ``b`` (both changesets or both
    patchsets) to ``dest`` as one; returns the number of bytes written."""
    reader_a, reader_b, writer = Reader(a), Reader(b), Writer(dest)
    rc = lib.sqlite3changeset_concat_strm(lib.sss_py_input, reader_a.handle,
                                          lib.sss_py_input, reader_b.handle,
                                          lib.sss_py_output, writer.handle)
    for r in (reader_a, reader_b, writer):
        r.reraise()
    check_rc(rc, "concatenating streams")
    return writer.total
