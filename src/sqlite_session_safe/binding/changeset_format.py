"""Changes formatted as text in C (``csrc/sss_format.c``): readable lines or
JSON objects, a chunk of text at a time, with the column names asked of
Python once per table section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .changeset_io import check_rc, new_buffer
from .changeset_iter import ChangesetIter
from .errors import ChangesetError
from .raw import ffi, lib

__all__ = ["FORMAT_TEXT", "FORMAT_JSON", "FORMAT_JSON_ASCII", "Formatter", "ColumnNames"]

#: Formatter modes: readable lines; JSON objects; JSON objects with every
#: non-ASCII character escaped.
FORMAT_TEXT = int(lib.SSS_FORMAT_TEXT)
FORMAT_JSON = int(lib.SSS_FORMAT_JSON)
FORMAT_JSON_ASCII = int(lib.SSS_FORMAT_JSON_ASCII)

#: ``names(table, pk flags)``: a table's column names (at least one per column).
ColumnNames = Callable[[str, tuple[int, ...]], Sequence[str]]


def not_utf8(data: bytes) -> ChangesetError:
    """The error decoding a change raises for text that is not UTF-8 (marshal
    decodes a change's text with "surrogatepass", as is done here)."""
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        return ChangesetError(f"the changeset holds text that is not valid UTF-8: {exc}")
    raise AssertionError("the C side found text that is not UTF-8: it is")  # pragma: no cover


class Formatter:
    """An ``sss_format`` state (freed with the object) for one walk over
    changes: ``mode`` one of the ``FORMAT_*`` constants, each text line
    starting with ``prefix``."""

    __slots__ = ("ptr",)

    def __init__(self, mode: int, prefix: bytes) -> None:
        self.ptr = ffi.gc(lib.sss_format_new(mode, prefix, len(prefix)), lib.sss_format_free)
        if self.ptr == ffi.NULL:
            raise MemoryError("formatting changes: out of memory")

    def run(self, it: ChangesetIter, names: ColumnNames, chunk: int) -> Iterator[str]:
        """The changes of ``it`` as text chunks of about ``chunk`` characters,
        each ending with a whole change; finalizes ``it`` at the end
        (``sss_format_changes``, which calls ``sqlite3changeset_next`` per change)."""
        what = "formatting changes"
        fmt = self.ptr
        buf = new_buffer(chunk + 64 * 1024)
        ncol = ffi.new("int *")
        pk = ffi.new("unsigned char **")
        bad_len = ffi.new("size_t *")
        done = False
        try:
            while True:
                rc = lib.sss_format_changes(fmt, it.ptr, chunk, buf)
                it.reraise()
                if buf.len:
                    yield str(ffi.buffer(buf.data, buf.len), "utf-8", "surrogatepass")
                if rc == lib.SQLITE_ROW:
                    continue
                if rc == lib.SQLITE_DONE:
                    done = True
                    return
                if rc == lib.SSS_FORMAT_NEED_NAMES:
                    self._give_names(names, ncol, pk)
                elif rc == lib.SSS_FORMAT_BAD_TEXT:
                    bad = lib.sss_format_bad(fmt, bad_len)
                    raise not_utf8(ffi.unpack(bad, bad_len[0]))
                else:
                    check_rc(rc, what)
        finally:
            frc = it.finalize()
            if done:
                # Finalize reports an error the iterator met while finishing.
                it.reraise()
                check_rc(frc, what)

    def _give_names(self, names: ColumnNames, ncol: Any, pk: Any) -> None:
        """Hand the formatter the column names of the section it waits at."""
        fmt = self.ptr
        raw = ffi.string(lib.sss_format_table(fmt, ncol, pk))
        try:
            table = raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise not_utf8(raw) from None
        n = ncol[0]
        flags = tuple(ffi.unpack(pk[0], n))
        cols = [str(c) for c in names(table, flags)[:n]]
        if len(cols) < n:
            raise ValueError(f"names() gave {len(cols)} names for the {n} columns of {table!r}")
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
