"""Streaming: changesets as binary file objects, in bounded memory.

The blob API takes sizes as C ``int`` and needs the whole changeset in one
buffer; these functions go through SQLite's ``*_strm`` interfaces instead,
reading and writing :data:`_native.STREAM_CHUNK`-sized pieces:

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

from ..binding.raw import ffi, lib
from . import _native
from ._native import STREAM_CHUNK, Reader, Writer, check_rc, decode, new_buffer
from .changeset import Change, iter_changes
from .errors import ChangesetError

__all__ = ["iterate_stream", "invert_stream", "concat_stream", "summarize_stream", "format_stream",
           "FORMAT_TEXT", "FORMAT_JSON", "FORMAT_JSON_ASCII", "FORMAT_CHUNK"]


def iterate_stream(source: BinaryIO | bytes, invert: bool = False) -> Iterator[Change]:
    """Iterate the changes of a changeset or patchset read from a binary file
    object (``invert=True``: as the inverse would hold them).

    Calls ``sqlite3changeset_start_v2_strm``, then ``sqlite3changeset_next`` per change."""
    reader = Reader(source)
    out = ffi.new("sqlite3_changeset_iter **")
    flags = lib.SQLITE_CHANGESETSTART_INVERT if invert else 0
    check_rc(lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, reader.handle, flags),
             "starting to read the stream")
    return iter_changes(out[0], reader, (reader,), "iterating a stream")


def summarize_stream(source: BinaryIO | bytes) -> tuple[int, list[tuple[str, int, bytes, int, int, int]]]:
    """Walk a changeset or patchset read from ``source`` to its end, in C
    (``sss_changeset_summary``, which skips the values instead of decoding
    them) and in bounded memory; return its number of changes and its table
    sections ``(table, ncol, pk flags, inserts, updates, deletes)``
    (consecutive changes with one table header are one section).  Corrupt or
    truncated input raises :class:`ChangesetError`."""
    reader = Reader(source)
    buf = new_buffer(64 * 1024)
    count = ffi.new("long long *")
    rc = lib.sss_changeset_summary(lib.sss_py_input, reader.handle, ffi.NULL, 0, buf, count)
    reader.reraise()
    if rc != lib.SQLITE_DONE:
        check_rc(rc, "reading the stream")
    return int(count[0]), decode(buf)


#: format_stream() modes: readable lines; JSON objects; JSON objects with
#: every non-ASCII character escaped.
FORMAT_TEXT = int(lib.SSS_FORMAT_TEXT)
FORMAT_JSON = int(lib.SSS_FORMAT_JSON)
FORMAT_JSON_ASCII = int(lib.SSS_FORMAT_JSON_ASCII)
#: Bytes of formatted text per chunk (whole changes: a chunk ends after the
#: change that reaches it).
FORMAT_CHUNK = 256 * 1024


def _not_utf8(data: bytes) -> ChangesetError:
    """The error decode() raises for text that is not UTF-8 (marshal decodes
    a change's text with "surrogatepass", as is done here)."""
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        return ChangesetError(f"the changeset holds text that is not valid UTF-8: {exc}")
    raise AssertionError("the C side found text that is not UTF-8: it is")  # pragma: no cover


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
    fmt = ffi.gc(lib.sss_format_new(mode, prefix, len(prefix)), lib.sss_format_free)
    if fmt == ffi.NULL:
        raise MemoryError("formatting changes: out of memory")
    out = ffi.new("sqlite3_changeset_iter **")
    readers: tuple[Reader, ...] = ()
    keep: Any = None
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) <= _native.MAX_BLOB:
        keep = ffi.from_buffer(source)
        rc = lib.sqlite3changeset_start_v2(out, len(keep), keep, 0)
    else:
        readers = (Reader(source),)
        rc = lib.sqlite3changeset_start_v2_strm(out, lib.sss_py_input, readers[0].handle, 0)
    check_rc(rc, "starting to read the changes")
    return _formatted(fmt, out[0], readers, keep, names, chunk)


def _formatted(fmt: Any, it: Any, readers: tuple[Reader, ...], keep: Any,
               names: Callable[[str, tuple[int, ...]], Sequence[str]], chunk: int) -> Iterator[str]:
    what = "formatting changes"
    buf = new_buffer(chunk + 64 * 1024)
    ncol = ffi.new("int *")
    pk = ffi.new("unsigned char **")
    bad_len = ffi.new("size_t *")
    done = False
    try:
        while True:
            rc = lib.sss_format_changes(fmt, it, chunk, buf)
            for r in readers:
                r.reraise()
            if buf.len:
                yield str(ffi.buffer(buf.data, buf.len), "utf-8", "surrogatepass")
            if rc == lib.SQLITE_ROW:
                continue
            if rc == lib.SQLITE_DONE:
                done = True
                return
            if rc == lib.SSS_FORMAT_NEED_NAMES:
                _give_names(fmt, names, ncol, pk)
            elif rc == lib.SSS_FORMAT_BAD_TEXT:
                bad = lib.sss_format_bad(fmt, bad_len)
                raise _not_utf8(ffi.unpack(bad, bad_len[0]))
            else:
                check_rc(rc, what)
    finally:
        frc = lib.sqlite3changeset_finalize(it)
        del keep
        if done:
            # Finalize reports an error the iterator met while finishing.
            for r in readers:
                r.reraise()
            check_rc(frc, what)


def _give_names(fmt: Any, names: Callable[[str, tuple[int, ...]], Sequence[str]], ncol: Any,
                pk: Any) -> None:
    """Hand the formatter the column names of the section it waits at."""
    raw = ffi.string(lib.sss_format_table(fmt, ncol, pk))
    try:
        table = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise _not_utf8(raw) from None
    flags = tuple(ffi.unpack(pk[0], ncol[0]))
    cols = [str(c) for c in names(table, flags)[:ncol[0]]]
    if len(cols) < ncol[0]:
        raise ValueError(f"names() gave {len(cols)} names for the {ncol[0]} columns of {table!r}")
    first: dict[str, int] = {}
    groups = [first.setdefault(c, i) for i, c in enumerate(cols)]
    if any("\0" in c for c in cols):
        raise ValueError(f"a column name of {table!r} holds a NUL character")
    packed = b"".join(c.encode("utf-8", "surrogatepass") + b"\0" for c in cols)
    dups = ffi.new("int[]", groups) if len(first) < len(cols) else ffi.NULL
    rc = lib.sss_format_names(fmt, packed, len(packed), dups)
    if rc == lib.SSS_ERR_FORMAT:  # pragma: no cover - the names are checked above
        raise ValueError(f"formatting changes: the names of {table!r} were refused")
    check_rc(rc, "formatting changes")


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


class _TeeReader(Reader):
    """A Reader that also copies what it reads to ``tee`` (spooling an input
    that cannot seek, during the pass that first reads it)."""

    __slots__ = ("tee",)

    def __init__(self, source: Any, tee: Any) -> None:
        super().__init__(source)
        self.tee = tee

    def fill(self, data: Any, size_ptr: Any) -> int:
        rc = super().fill(data, size_ptr)
        self.tee.write(ffi.buffer(data, size_ptr[0]))
        return rc


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
        reader = _TeeReader(self.source, spool)
        self.source, self.start = spool, 0
        return reader


def _concat(a: _Input, b: _Input, writer: Writer, memory_limit: int, stack: ExitStack) -> None:
    if (a.size is not None and b.size is not None
            and (a.size + b.size) * (_MIN_CHANGE + CHANGE_OVERHEAD) <= memory_limit * _MIN_CHANGE):
        _concat_one_group(a.reader(), b.reader(), writer)
        return
    state = ffi.gc(lib.sss_concat_new(), lib.sss_concat_free)
    if state == ffi.NULL:
        raise MemoryError("concatenating streams: out of memory")
    spool_memory = max(STREAM_CHUNK, memory_limit // 8)
    nbytes = 0
    for source in (a, b):
        reader = source.first_reader(stack, spool_memory)
        rc = lib.sss_concat_scan(state, lib.sss_py_input, reader.handle)
        reader.reraise()
        _check_concat(state, rc)
        nbytes += reader.total
    nchanges = lib.sss_concat_changes(state)
    k = concat_partitions(nbytes, nchanges, memory_limit)
    if k == 1:
        _concat_one_group(a.reader(), b.reader(), writer)
        return
    if k > MAX_CONCAT_PASSES:
        raise ValueError(
            f"memory_limit={memory_limit} is too small for {nbytes} bytes holding {nchanges} "
            f"changes: it would take {k} passes over the inputs (at most {MAX_CONCAT_PASSES})")
    counts = ffi.new("long long[2]")
    added = 0
    for part in range(k):
        reader_a, reader_b = a.reader(), b.reader()
        rc = lib.sss_concat_partition(state, k, part, lib.sss_py_input, reader_a.handle,
                                      lib.sss_py_input, reader_b.handle,
                                      lib.sss_py_output, writer.handle, counts)
        for r in (reader_a, reader_b, writer):
            r.reraise()
        _check_concat(state, rc)
        if counts[0] != nchanges:
            raise ChangesetError(f"concatenating streams: an input changed between passes "
                                 f"({counts[0]} changes read, {nchanges} at first)")
        added += counts[1]
    if added != nchanges:  # every change belongs to exactly one partition
        raise ChangesetError(f"concatenating streams: an input changed between passes "
                             f"({added} changes in the partitions, {nchanges} read at first)")


def _concat_one_group(reader_a: Reader, reader_b: Reader, writer: Writer) -> None:
    """SQLite's own streaming concat: one change group for everything."""
    rc = lib.sqlite3changeset_concat_strm(lib.sss_py_input, reader_a.handle,
                                          lib.sss_py_input, reader_b.handle,
                                          lib.sss_py_output, writer.handle)
    for r in (reader_a, reader_b, writer):
        r.reraise()
    check_rc(rc, "concatenating streams")


def _check_concat(state: Any, rc: int) -> None:
    """Raise for a refused scan or partition with the reason the C side
    recorded; other codes as check_rc does."""
    if rc == lib.SQLITE_OK:
        return
    reason = lib.sss_concat_reason(state)
    name_ptr = lib.sss_concat_table(state)
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


def _truncate(dest: Any, start: int) -> None:
    """Drop what was written to ``dest`` after ``start`` (best effort: the
    original exception is the one to report)."""
    try:
        dest.seek(start)
        dest.truncate()
    except (AttributeError, OSError, ValueError):
        pass
