"""The summary pass (``sss_changeset_summary``: a changeset's table sections
and their counts, read without decoding a value) is what ``show`` and the
apply plan run before anything else.  It reads the wire format itself, so
these tests hold it to SQLite's iterator: the same sections and counts, and
the same refusals, on real changesets and patchsets, on hand-made edge
cases, on mutated inputs, and whatever sizes the reads arrive in."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from _changeset_fuzz import corpus, mutate
from _changeset_wire import EDGE_CASES, INSERT, UPDATE, header, integer, text, varint

import sqlite_session_safe as sss
from sqlite_session_safe.binding.raw import ffi, lib
from sqlite_session_safe.sessions.apply_plan import summary
from sqlite_session_safe.sessions.stream import summarize_stream

Summary = tuple[int, list[tuple[str, int, bytes, int, int, int]]]
OPS = {lib.SQLITE_INSERT: 3, lib.SQLITE_UPDATE: 4, lib.SQLITE_DELETE: 5}


def through_sqlite(data: bytes) -> Summary | type[BaseException]:
    """The summary counted change by change with SQLite's own iterator
    (sqlite3changeset_next, _op and _pk; no value is read, as the scan reads
    none)."""
    pp = ffi.new("sqlite3_changeset_iter **")
    buf = ffi.from_buffer(data)
    if lib.sqlite3changeset_start_v2(pp, len(data), buf, 0) != lib.SQLITE_OK:
        return sss.ChangesetError
    it = pp[0]
    tab, ncol, op, ind = ffi.new("const char **"), ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
    pk, npk = ffi.new("unsigned char **"), ffi.new("int *")
    sections: list[list[Any]] = []
    count = 0
    try:
        while (rc := lib.sqlite3changeset_next(it)) == lib.SQLITE_ROW:
            if (lib.sqlite3changeset_op(it, tab, ncol, op, ind) != lib.SQLITE_OK
                    or lib.sqlite3changeset_pk(it, pk, npk) != lib.SQLITE_OK):
                return sss.ChangesetError
            try:  # names are read as values are: surrogatepass, else refused
                name = ffi.string(tab[0]).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                return sss.ChangesetError
            key = (name, ncol[0], bytes(ffi.buffer(pk[0], npk[0])))
            if not sections or tuple(sections[-1][:3]) != key:
                sections.append([*key, 0, 0, 0])
            sections[-1][OPS[op[0]]] += 1
            count += 1
    finally:
        frc = lib.sqlite3changeset_finalize(it)
    if rc != lib.SQLITE_DONE or frc != lib.SQLITE_OK:
        return sss.ChangesetError
    return count, [tuple(s) for s in sections]  # type: ignore[misc]


class Trickle(io.RawIOBase):
    """A file that hands out at most ``most`` bytes per read (a pipe, a
    socket), so the scan must carry records across reads."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data, self.pos, self.most = data, 0, most

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.most, len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def through_scan(data: bytes, source: Any) -> Summary | type[BaseException]:
    try:
        return summarize_stream(source)
    except sss.Error as exc:
        return type(exc)


def assert_same(data: bytes, rng: random.Random | None = None,
                most: int | None = None) -> Summary | type[BaseException]:
    expected = through_sqlite(data)
    assert through_scan(data, data) == expected, data.hex()
    assert through_scan(data, io.BytesIO(data)) == expected, data.hex()
    most = most or (rng or random.Random(len(data))).choice([1, 2, 3, 7, 64, 4096])
    assert through_scan(data, Trickle(data, most)) == expected, (most, data.hex())
    try:
        sections: Any = summary(data)
    except sss.Error as exc:
        sections = type(exc)
    if isinstance(expected, tuple):
        assert sections == (expected[1] if data else [])
    else:
        assert sections == expected
    return expected


@pytest.mark.parametrize("data", EDGE_CASES)
def test_wire_format_edge_cases(data: bytes) -> None:
    assert_same(data)


def test_real_changesets_and_patchsets(tmp_path: Path) -> None:
    for data in corpus(tmp_path):
        result = assert_same(data)
        assert isinstance(result, tuple) and result[0] > 0


def test_values_larger_than_a_read_are_skipped_across_reads() -> None:
    """Text and blob values bigger than the scan's 1 MB chunk, arriving in
    pieces: counted, not held."""
    big = b"\x04" + varint(3_000_000) + b"\xab" * 3_000_000
    data = (header(b"t", b"\x01\x00") + INSERT + b"\0" + integer(1) + big
            + INSERT + b"\0" + integer(2) + text(b"small")
            + header(b"t", b"\x01\x00") + UPDATE + b"\0" + integer(2) + big + b"\x00" + big)
    assert assert_same(data, most=70_001) == (3, [("t", 2, b"\x01\x00", 2, 1, 0)])
    cut = data[:-10]  # the last value ends early
    assert assert_same(cut, most=70_001) is sss.ChangesetError


def test_mutated_inputs_agree_with_sqlite(tmp_path: Path) -> None:
    originals = corpus(tmp_path)
    rng = random.Random(20261206)
    refused = 0
    for _ in range(3000):
        result = assert_same(mutate(rng, rng.choice(originals), originals), rng)
        refused += not isinstance(result, tuple)
    assert 0 < refused < 3000  # both kinds of input were exercised


def test_a_failing_read_is_reported_not_taken_for_the_end() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        summarize_stream(Broken())
