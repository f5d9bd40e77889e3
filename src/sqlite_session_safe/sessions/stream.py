"""Streaming: changesets as binary file objects, in bounded memory.

The blob API takes sizes as C ``int`` and needs the whole changeset in one
buffer; these functions go through SQLite's ``*_strm`` interfaces instead,
reading and writing ``binding.changeset_io.STREAM_CHUNK``-sized pieces:

* :func:`iterate_stream` and :func:`invert_stream` use memory independent of
  the changeset's size;
* :func:`concat_stream` combines the inputs in change groups whose memory
  stays near its ``memory_limit``: past it, the changes are split by (table,
  primary key) into partitions concatenated one after another (see
  ``csrc/sss_concat.c``);
* :func:`apply_stream` (in :mod:`.apply`) applies in bounded chunks;
* :func:`format_stream` writes the changes as readable lines or JSON, in C
  (``csrc/sss_format.c``), a chunk of text at a time.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any, BinaryIO

from ..binding import changeset_ops
from ..binding.changeset_format import FORMAT_JSON, FORMAT_JSON_ASCII, FORMAT_TEXT, Formatter
from ..binding.changeset_io import STREAM_CHUNK, Reader, Writer
from ..binding.changeset_iter import ChangesetIter, Section, summarize
from ..binding.changeset_ops import ConcatState
from .changeset import Change, iter_changes
from .errors import ChangesetError

__all__ = ["iterate_stream", "invert_stream", "concat_stream", "summarize_stream", "format_stream",
           "FORMAT_TEXT", "FORMAT_JSON", "FORMAT_JSON_ASCII", "FORMAT_CHUNK"]


def iterate_stream(source: BinaryIO | bytes, invert: bool = False) -> Iterator[Change]:
    """Iterate the changes of a changeset or patchset read from a binary file
    object (``invert=True``: as the inverse would hold them).

    Calls ``sqlite3changeset_start_v2_strm``, then ``sqlite3changeset_next`` per change."""
    it = ChangesetIter.over_reader(Reader(source), invert)
    return iter_changes(it, "iterating a stream")


def summarize_stream(source: BinaryIO | bytes) -> tuple[int, list[Section]]:
    """Walk a changeset or patchset read from ``source`` to its end, in C
    (``sss_changeset_summary``, which skips the values instead of decoding
    them) and in bounded memory; return its number of changes and its table
    sections ``(table, ncol, pk flags, inserts, updates, deletes)``
    (consecutive changes with one table header are one section).  Corrupt or
    truncated input raises :class:`ChangesetError`."""
    # Bytes in memory are read where they are, not copied through a Reader.
    data = source if isinstance(source, bytes) else Reader(source)
    return summarize(data, "reading the stream")


# format_stream() modes (binding.changeset_format): FORMAT_TEXT readable
# lines; FORMAT_JSON JSON objects; FORMAT_JSON_ASCII JSON objects with every
# non-ASCII character escaped.
#: Bytes of formatted text per chunk (whole changes: a chunk ends after the
#: change that reaches it).
FORMAT_CHUNK = 256 * 1024


def format_stream(source: BinaryIO | bytes, names: Callable[[str, tuple[int, ...]], Sequence[str]],
                  mode: int = FORMAT_TEXT, indent: str = "",
                  chunk: int = FORMAT_CHUNK) -> Iterator[str]:
    """The changes of a changeset or patchset (bytes, or read from a binary
    file object) formatted in C, as text chunks of about ``chunk``
    characters, each ending with a whole change.

    ``mode`` :data:`FORMAT_TEXT`: one line per change as ``show`` prints it
    (``INSERT t (id=1, v='a')``), each starting with ``indent``;
    :data:`FORMAT_JSON` / :data:`FORMAT_JSON_ASCII`: the JSON objects of
    :func:`change_dicts` as ``json.dumps`` writes them (``ensure_ascii``
    False / True), separated by ", ".  ``names(table, pk)`` gives a table's
    column names (at least one per column), asked once per table section.
    Memory stays bounded by ``chunk`` and the largest change.  Corrupt input
    and text that is not UTF-8 raise :class:`ChangesetError` after the
    changes before it were yielded."""
    if mode not in (FORMAT_TEXT, FORMAT_JSON, FORMAT_JSON_ASCII):
        raise ValueError(f"unknown format mode {mode!r}")
    prefix = indent.encode("utf-8", "surrogatepass")
    fmt = Formatter(mode, prefix)
    if isinstance(source, (bytes, bytearray, memoryview)):
        it = ChangesetIter.over_bytes(source, what="starting to read the changes")
    else:
        it = ChangesetIter.over_reader(Reader(source), what="starting to read the changes")
    return fmt.run(it, names, chunk)


def invert_stream(source: BinaryIO | bytes, dest: BinaryIO) -> int:
    """Write the inverse of the changeset read from ``source`` to ``dest``;
    returns the number of bytes written.

    sqlite3changeset_invert() trusts its input (a table header of zero
    columns, for one, makes it fail as "out of memory"), so a seekable source
    is first read through the hardened iterator: corruption then raises
    :class:`ChangesetError` before anything is written.  A source that cannot
    seek is inverted in one pass, and SQLite's NOMEM is reported as
    ChangesetError too, since on such input that is what it means.

    Calls ``sqlite3changeset_invert_strm``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        for _ in iterate_stream(source):
            pass
    start = _tell(source)
    if start is not None:
        for _ in iterate_stream(source):
            pass
        source.seek(start)  # type: ignore[union-attr]
    writer = Writer(dest)
    changeset_ops.invert_stream(Reader(source), writer, "inverting a stream", nomem_is_corrupt=True)
    return writer.total


def _tell(source: object) -> int | None:
    """The position of a seekable file object, else None."""
    try:
        if source.seekable():  # type: ignore[attr-defined]
            return int(source.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass
    return None


#: concat_stream()'s default memory_limit.
DEFAULT_CONCAT_MEMORY = 256 * 1024 * 1024

#: What a change group holds per change besides the change's own bytes: its
#: SessionChange (32 bytes), the allocator's header, and up to four hash
#: slots of 8 bytes while the table doubles (sqlite3.c, sessionGrowHash()).
CHANGE_OVERHEAD = 112

#: The smallest change on the wire (op, indirect flag, one integer field):
#: inputs smaller than memory_limit / (1 + CHANGE_OVERHEAD / this) cannot
#: need more than one group, and skip the scan.
_MIN_CHANGE = 11

#: More passes than this over the inputs is refused as a too small limit.
MAX_CONCAT_PASSES = 4096


def concat_partitions(nbytes: int, nchanges: int, memory_limit: int) -> int:
    """How many partitions (passes) :func:`concat_stream` uses for inputs of
    ``nbytes`` bytes holding ``nchanges`` changes: enough that each
    partition's change group, estimated at the changes' bytes plus
    :data:`CHANGE_OVERHEAD` per change, fits in ``memory_limit``."""
    need = nbytes + CHANGE_OVERHEAD * nchanges
    return max(1, -(-need // memory_limit))


def concat_stream(a: BinaryIO | bytes, b: BinaryIO | bytes, dest: BinaryIO, *,
                  memory_limit: int = DEFAULT_CONCAT_MEMORY) -> int:
    """Write changeset ``a`` followed by ``b`` (both changesets or both
    patchsets) to ``dest`` as one; returns the number of bytes written.

    The result holds what :meth:`Changeset.concat` gives: changes to the same
    (table, primary key) combined, ``a`` then ``b``.  The inputs are read from
    their current positions.

    Memory: SQLite's own streaming concat keeps every change in one change
    group, so its memory grows with the inputs.  Here the group is kept near
    ``memory_limit`` bytes (default 256 MiB): when the inputs could need more
    (estimated from their size, then from a first pass that counts their
    changes), the changes are split by a hash of (table, primary key) into
    K = :func:`concat_partitions` partitions, each concatenated in a group of
    its own and written after the previous one.  The output is then the same
    set of changes in another order: a table may have several sections,
    which iteration, apply and change groups all accept.  K = 1 writes
    exactly what ``sqlite3changeset_concat_strm`` writes.  Costs with K > 1:
    K + 1 reads of each input.  A single change larger than the limit cannot
    be split, and more than :data:`MAX_CONCAT_PASSES` partitions is refused
    with ValueError.

    Inputs: bytes, or binary file objects.  Several passes need to seek back:
    an input that cannot seek (a pipe, a socket) is copied, while it is
    first read, to a temporary file (kept in memory up to an eighth of the
    limit) and read from there afterwards.

    Errors: a table whose column count or primary key differs between
    changes anywhere in the inputs, changeset changes mixed with patchset
    changes, and corrupt or truncated input raise :class:`ChangesetError`
    (these are found by the first pass, before anything is written); an
    exception from a file object is raised as itself.  When anything is
    raised, a ``dest`` that can seek is truncated back to the position it
    had on entry; one that cannot may hold part of the output.

    Calls ``sqlite3changeset_concat_strm`` (one partition) or, per partition,
    ``sqlite3changegroup_add_change`` and ``sqlite3changegroup_output_strm``.
    """
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit <= 0:
        raise ValueError(f"memory_limit must be a positive number of bytes, not {memory_limit!r}")
    writer = Writer(dest)
    start = _tell(dest)
    try:
        with ExitStack() as stack:
            _concat(_Input(a), _Input(b), writer, memory_limit, stack)
    except BaseException:
        if start is not None:
            _truncate(dest, start)
        raise
    return writer.total


class _Input:
    """One input of concat_stream: something that can be read again from
    the same start, and its size when known before reading."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.start: int | None = None
        self.size: int | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.size = memoryview(source).nbytes
            return
        Reader(source)  # the type check, before anything is read
        self.start = _tell(source)
        if self.start is not None:
            end = source.seek(0, io.SEEK_END)
            source.seek(self.start)
            self.size = int(end) - self.start

    def reader(self) -> Reader:
        """A Reader from the input's start."""
        if self.start is not None:
            self.source.seek(self.start)
        return Reader(self.source)

    def first_reader(self, stack: ExitStack, spool_memory: int) -> Reader:
        """The reader of the first pass: an input that cannot seek is spooled
        as it is read, and read from the spool afterwards."""
        if self.size is not None:
            return self.reader()
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=spool_memory))
        reader = Reader(self.source, tee=spool)
        self.source, self.start = spool, 0
        return reader


def _concat(a: _Input, b: _Input, writer: Writer, memory_limit: int, stack: ExitStack) -> None:
    if (a.size is not None and b.size is not None
            and (a.size + b.size) * (_MIN_CHANGE + CHANGE_OVERHEAD) <= memory_limit * _MIN_CHANGE):
        _concat_one_group(a.reader(), b.reader(), writer)
        return
    state = ConcatState()
    spool_memory = max(STREAM_CHUNK, memory_limit // 8)
    nbytes = 0
    for source in (a, b):
        reader = source.first_reader(stack, spool_memory)
        state.scan(reader)
        nbytes += reader.total
    nchanges = state.changes()
    k = concat_partitions(nbytes, nchanges, memory_limit)
    if k == 1:
        _concat_one_group(a.reader(), b.reader(), writer)
        return
    if k > MAX_CONCAT_PASSES:
        raise ValueError(
            f"memory_limit={memory_limit} is too small for {nbytes} bytes holding {nchanges} "
            f"changes: it would take {k} passes over the inputs (at most {MAX_CONCAT_PASSES})")
    added = 0
    for part in range(k):
        read, in_part = state.partition(k, part, a.reader(), b.reader(), writer)
        if read != nchanges:
            raise ChangesetError(f"concatenating streams: an input changed between passes "
                                 f"({read} changes read, {nchanges} at first)")
        added += in_part
    if added != nchanges:  # every change belongs to exactly one partition
        raise ChangesetError(f"concatenating streams: an input changed between passes "
                             f"({added} changes in the partitions, {nchanges} read at first)")


def _concat_one_group(reader_a: Reader, reader_b: Reader, writer: Writer) -> None:
    """SQLite's own streaming concat: one change group for everything."""
    changeset_ops.concat_stream(reader_a, reader_b, writer, "concatenating streams")


def _truncate(dest: Any, start: int) -> None:
    """Drop what was written to ``dest`` after ``start`` (best effort: the
    original exception is the one to report)."""
    try:
        dest.seek(start)
        dest.truncate()
    except (AttributeError, OSError, ValueError):
        pass
