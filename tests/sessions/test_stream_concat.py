"""concat_stream in bounded memory: the changes split by (table, primary key)
into partitions, each concatenated in a change group of its own.

The partitioned output must hold the same changes as ``Changeset.concat``
(compared as a multiset of raw changes, since their order differs) and apply
to the same state; one partition must be byte for byte SQLite's streaming
concat; a schema mismatch or a changeset mixed with a patchset anywhere in the
inputs is refused before anything is written, whichever partitions the rows
fall into; corrupt input never yields output; inputs that cannot seek are
spooled; and the memory used stays far below the inputs' size."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from _stream_concat_fuzz import OneWay, multiset, raw_changes
from conftest import STRESS_SCALE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_changeset_props import Dbs, programs, run, state, two_writes

import sqlite_session_safe as sss
from sqlite_session_safe.binding.changeset_io import Reader, Writer
from sqlite_session_safe.binding.raw import lib
from sqlite_session_safe.sessions import stream

HERE = Path(__file__).resolve().parents[1]  # the worker scripts are in tests/
PREFIX = b"already in dest;"


def limit_for(a: bytes, b: bytes, nchanges: int, parts: int) -> int:
    """A memory_limit for which concat_stream uses about ``parts`` partitions."""
    need = len(a) + len(b) + stream.CHANGE_OVERHEAD * nchanges
    return max(1, -(-need // parts))


def partitions(a: bytes, b: bytes, limit: int) -> int:
    n = sum(1 for _ in sss.iterate_stream(a)) + sum(1 for _ in sss.iterate_stream(b))
    return stream.concat_partitions(len(a) + len(b), n, limit)


def sqlite_concat_strm(a: bytes, b: bytes) -> bytes:
    """sqlite3changeset_concat_strm's output, called directly."""
    ra, rb, w = Reader(a), Reader(b), Writer()
    rc = lib.sqlite3changeset_concat_strm(lib.sss_py_input, ra.handle, lib.sss_py_input, rb.handle,
                                          lib.sss_py_output, w.handle)
    assert rc == lib.SQLITE_OK
    return bytes(w.buffer)


def concat(a: Any, b: Any, limit: int) -> bytes:
    out = io.BytesIO()
    n = sss.concat_stream(a, b, out, memory_limit=limit)
    assert n == len(out.getvalue())
    return out.getvalue()


def section_tables(data: bytes) -> list[bytes]:
    """The table name of each section that holds changes, in order."""
    sections: dict[int, bytes] = {}
    for section, header, _change in raw_changes(data):
        sections.setdefault(section, header[3])
    return list(sections.values())


# -- hypothesis: random DML --------------------------------------------------

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=programs, first=programs, second=programs, parts=st.integers(3, 20),
       seekable=st.booleans())
def test_partitioned_equals_concat(seed: list, first: list, second: list, parts: int,
                                   seekable: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Dbs(Path(tmp))
        src = dbs.open()
        run(src, seed)
        start_image = src.serialize()
        a, pa, b, pb = two_writes(src, first, second)
        for x, y, expected in ((a, b, a.concat(b)), (pa, pb, pa.concat(pb))):
            n = x.validate() + y.validate()
            limit = limit_for(x, y, n, parts)
            k = partitions(x, y, limit)
            assert n == 0 or 3 <= k <= parts
            inputs = (io.BytesIO(x), io.BytesIO(y)) if seekable else (OneWay(x), OneWay(y))
            got = type(x)(concat(*inputs, limit))
            assert multiset(got) == multiset(expected)
            # Each partition writes its tables in the order one group does.
            order = section_tables(expected)
            sections = section_tables(got)
            assert [t for t in order if t in sections] == order
            combined = dbs.open(start_image)
            got.apply(combined)
            assert state(combined) == state(src)
            combined.close()
        src.close()


# -- one partition: SQLite's own output ----------------------------------------

@pytest.fixture
def pair(tmp_path: Path) -> tuple[sss.Changeset, sss.Changeset]:
    con = sss.connect(tmp_path / "src.db")
    con.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
                      "CREATE TABLE u(a TEXT, b INTEGER, w, PRIMARY KEY(b, a)) WITHOUT ROWID;")
    with con.session() as s:
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(300)])
        con.executemany("INSERT INTO u VALUES (?, ?, ?)", [(f"k{i}", i % 7, i) for i in range(200)])
        a = s.changeset()
    with con.session() as s:
        con.execute("UPDATE t SET v = v || '!' WHERE id % 3 = 0")
        con.execute("DELETE FROM t WHERE id % 5 = 0")
        con.execute("INSERT INTO t VALUES (1000, 'new')")
        con.execute("UPDATE u SET w = -w WHERE b = 2")
        con.execute("DELETE FROM u WHERE b = 3")
        b = s.changeset()
    con.close()
    return a, b


def test_one_partition_is_sqlites_output(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    expected = sqlite_concat_strm(a, b)
    assert expected == a.concat(b)
    n = a.validate() + b.validate()
    # The default limit: small inputs skip the counting pass.
    assert concat(io.BytesIO(a), io.BytesIO(b), stream.DEFAULT_CONCAT_MEMORY) == expected
    # A limit that makes the counting pass run, and find that one group fits.
    exact = len(a) + len(b) + stream.CHANGE_OVERHEAD * n
    assert stream.concat_partitions(len(a) + len(b), n, exact) == 1
    assert (len(a) + len(b)) * (stream._MIN_CHANGE + stream.CHANGE_OVERHEAD) > exact * stream._MIN_CHANGE
    assert concat(io.BytesIO(a), io.BytesIO(b), exact) == expected
    assert concat(OneWay(a), OneWay(b), exact) == expected
    # One more byte of need: two partitions, and no longer the same bytes.
    assert stream.concat_partitions(len(a) + len(b), n, exact - 1) == 2
    two = concat(io.BytesIO(a), io.BytesIO(b), exact - 1)
    assert two != expected and multiset(two) == multiset(expected)


def test_partitions_reach_past_one_section_per_table(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    n = a.validate() + b.validate()
    for parts in (2, 5, 13):
        got = concat(io.BytesIO(a), io.BytesIO(b), limit_for(a, b, n, parts))
        names = section_tables(got)
        assert len(names) == 2 * parts  # every partition holds rows of both tables
        assert names == [b"t", b"u"] * parts
        assert multiset(got) == multiset(a.concat(b))
        assert sss.Changeset(got).validate() == len(list(a.concat(b)))


def test_inputs_read_from_their_position_and_files(tmp_path: Path,
                                                   pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    pa, pb = tmp_path / "a.bin", tmp_path / "b.bin"
    pa.write_bytes(b"junk" + a)
    pb.write_bytes(b"more junk" + b)
    limit = limit_for(a, b, a.validate() + b.validate(), 6)
    with open(pa, "rb") as fa, open(pb, "rb") as fb, open(tmp_path / "out", "w+b") as out:
        fa.seek(4)
        fb.seek(9)
        out.write(PREFIX)
        n = sss.concat_stream(fa, fb, out, memory_limit=limit)
    data = (tmp_path / "out").read_bytes()
    assert data.startswith(PREFIX) and len(data) == len(PREFIX) + n
    assert multiset(data[len(PREFIX):]) == multiset(a.concat(b))


def test_real_pipes(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    """Inputs from os.pipe(), written by threads: spooled while first read."""
    a, b = pair
    limit = limit_for(a, b, a.validate() + b.validate(), 7)
    files = []
    for data in (a, b):
        r, w = os.pipe()

        def feed(fd: int = w, payload: bytes = data) -> None:
            with open(fd, "wb") as f:
                f.write(payload)

        threading.Thread(target=feed, daemon=True).start()
        files.append(open(r, "rb"))
    try:
        assert not files[0].seekable()
        got = concat(files[0], files[1], limit)
    finally:
        for f in files:
            f.close()
    assert multiset(got) == multiset(a.concat(b))


def test_table_names_differing_in_case_share_one_spelling() -> None:
    """SQLite matches table names case-insensitively and keeps the first
    spelling: so does every partition."""
    a = sss.Changeset.from_changes(sss.Change("Item", "INSERT", None, (i, i), (1, 0)) for i in range(60))
    b = sss.Changeset.from_changes(sss.Change("ITEM", "UPDATE", (i, i), (sss.UNCHANGED, -i), (1, 0))
                                   for i in range(0, 120, 2))
    expected = a.concat(b)
    got = concat(io.BytesIO(a), io.BytesIO(b), limit_for(a, b, 120, 8))
    assert set(section_tables(got)) == {b"Item"}
    assert multiset(got) == multiset(expected)


# -- refusals ------------------------------------------------------------------

def schema_pair(tmp_path: Path, second_schema: str) -> tuple[sss.Changeset, sss.Changeset]:
    """A big changeset for t(id, x) and one row of a t of another schema."""
    out = []
    for i, schema in enumerate(("CREATE TABLE t(id INTEGER PRIMARY KEY, x)", second_schema)):
        con = sss.connect(tmp_path / f"s{i}.db")
        con.execute(schema)
        cols = len(con.execute("SELECT * FROM t").description)
        with con.session() as s:
            rows = range(400) if i == 0 else range(7, 8)
            con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * cols)})",
                            [(r,) + (r,) * (cols - 1) for r in rows])
            out.append(s.changeset())
        con.close()
    return out[0], out[1]


@pytest.mark.parametrize("schema", [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, x, y)",          # a column more
    "CREATE TABLE t(id, x, PRIMARY KEY(id, x))",             # another primary key
])
def test_schema_mismatch_refused_across_partitions(tmp_path: Path, schema: str) -> None:
    a, b = schema_pair(tmp_path, schema)
    with pytest.raises(sss.ChangesetError):
        a.concat(b)
    for x, y in ((a, b), (b, a)):
        # The default limit takes SQLite's single group at once; the others
        # count first (the check is then this module's), and 4 and 19 split.
        for limit in [stream.DEFAULT_CONCAT_MEMORY] + [limit_for(x, y, 401, k) for k in (1, 4, 19)]:
            dest = io.BytesIO()
            dest.write(PREFIX)
            with pytest.raises(sss.ChangesetError) as info:
                sss.concat_stream(io.BytesIO(x), io.BytesIO(y), dest, memory_limit=limit)
            assert info.value.code == lib.SQLITE_SCHEMA
            if limit != stream.DEFAULT_CONCAT_MEMORY:
                assert "table 't' has a different number of columns" in str(info.value)
            assert dest.getvalue() == PREFIX
    # Within one input too: two sections of t that disagree.
    with pytest.raises(sss.ChangesetError, match="different number of columns"):
        sss.concat_stream(io.BytesIO(a + b), io.BytesIO(b""), io.BytesIO(), memory_limit=1000)


def test_changeset_with_patchset_refused(pair: tuple[sss.Changeset, sss.Changeset],
                                         tmp_path: Path) -> None:
    a, b = pair
    con = sss.connect(tmp_path / "p.db")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    with con.session() as s:
        con.executemany("INSERT INTO t VALUES (?, 'p')", [(i,) for i in range(2000, 2100)])
        p = s.patchset()
    con.close()
    n = a.validate() + p.validate()
    for x, y in ((a, p), (p, a), (a + p, b"")):
        for limit in (stream.DEFAULT_CONCAT_MEMORY, limit_for(x, y, n, 9)):
            dest = io.BytesIO(PREFIX)
            dest.seek(0, io.SEEK_END)
            with pytest.raises(sss.ChangesetError) as info:
                sss.concat_stream(io.BytesIO(x), io.BytesIO(y), dest, memory_limit=limit)
            assert dest.getvalue() == PREFIX
            if limit != stream.DEFAULT_CONCAT_MEMORY:
                assert "cannot combine changeset and patchset" in str(info.value)


def test_patchsets_concatenate(pair: tuple[sss.Changeset, sss.Changeset], tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "p.db")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    with con.session() as s:
        con.executemany("INSERT INTO t VALUES (?, 'p')", [(i,) for i in range(300)])
        pa = s.patchset()
    with con.session() as s:
        con.execute("UPDATE t SET v = 'q' WHERE id % 2 = 0")
        con.execute("DELETE FROM t WHERE id % 3 = 0")
        pb = s.patchset()
    con.close()
    got = concat(OneWay(pa), io.BytesIO(pb), limit_for(pa, pb, pa.validate() + pb.validate(), 11))
    assert got[:1] == b"P"
    assert multiset(got) == multiset(pa.concat(pb))


def test_corrupt_and_truncated_inputs(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    limit = limit_for(a, b, a.validate() + b.validate(), 5)
    bad = [b[: len(b) // 2], b[:-1], b"T", b"X" + b[1:], a[:3] + b"\xff" + a[4:]]
    # An unknown value type where a NULL was: SQLite's iterator reads it as
    # NULL, its concat refuses it; so must the partitions, or the byte would
    # reach the output.
    rows = sss.Changeset.from_changes(sss.Change("t", "INSERT", None, (i, None), (1, 0))
                                      for i in range(5000, 5100))
    null_at = 6 + 50 * 12 + 11   # header 6 bytes, 12 per change, NULL after op, flag, id
    assert rows[null_at] == 5
    bad.append(rows[:null_at] + b"\x12" + rows[null_at + 1:])
    assert len(list(sss.Changeset(bad[-1]))) == 100
    for data in bad:
        for x, y in ((a, data), (data, a)):
            for lim in (stream.DEFAULT_CONCAT_MEMORY, limit):
                for wrap in (io.BytesIO, OneWay):
                    dest = io.BytesIO()
                    dest.write(PREFIX)
                    with pytest.raises(sss.ChangesetError):
                        sss.concat_stream(wrap(x), wrap(y), dest, memory_limit=lim)
                    assert dest.getvalue() == PREFIX


def test_fuzz_in_a_child_process(tmp_path: Path) -> None:
    """Mutated and truncated changesets (the mutations of the changeset fuzz)
    in one group and in partitions: only ChangesetError, dest untouched
    after it, and the same changes whenever both succeed."""
    worker = HERE / "_stream_concat_fuzz.py"
    proc = subprocess.run([sys.executable, str(worker), "7", "6000", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("ok ")
    assert "whole:ok,parts:ok" in proc.stdout and "whole:ChangesetError,parts:ChangesetError" in proc.stdout


# -- file objects that fail -------------------------------------------------

class FailsLater(io.RawIOBase):
    """Reads ``data`` normally ``good_reads`` times over, then fails."""

    def __init__(self, data: bytes, good_reads: int) -> None:
        self._data = io.BytesIO(data)
        self._passes = 0
        self._good = good_reads

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0 and pos == 0:
            self._passes += 1
        return self._data.seek(pos, whence)

    def tell(self) -> int:
        return self._data.tell()

    def readinto(self, b: Any) -> int:
        if self._passes > self._good:
            raise ConnectionResetError("the disk went away")
        return self._data.readinto(b)


def test_read_error_in_a_later_pass_truncates_dest(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    limit = limit_for(a, b, a.validate() + b.validate(), 6)
    for good in (1, 2, 4):  # the scan (and size probe) reads first; fail in a partition pass
        dest = io.BytesIO()
        dest.write(PREFIX)
        with pytest.raises(ConnectionResetError):
            sss.concat_stream(FailsLater(a, good), io.BytesIO(b), dest, memory_limit=limit)
        assert dest.getvalue() == PREFIX


class WriteOnly(io.RawIOBase):
    def __init__(self, fail_after: int) -> None:
        self.data = bytearray()
        self.fail_after = fail_after

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if len(self.data) >= self.fail_after:
            raise BrokenPipeError("reader gone")
        self.data += bytes(b)
        return len(b)


def test_unseekable_dest_keeps_the_prefix_written(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    """A dest that cannot seek cannot be truncated: it keeps what was written
    before the error (documented)."""
    a, b = pair
    limit = limit_for(a, b, a.validate() + b.validate(), 6)
    dest = WriteOnly(fail_after=1)
    with pytest.raises(BrokenPipeError):
        sss.concat_stream(io.BytesIO(a), io.BytesIO(b), dest, memory_limit=limit)
    assert 0 < len(dest.data) < len(a.concat(b))


def test_bad_arguments(pair: tuple[sss.Changeset, sss.Changeset]) -> None:
    a, b = pair
    for bad in (0, -1, True, 1.5, "1"):
        with pytest.raises(ValueError, match="memory_limit"):
            sss.concat_stream(io.BytesIO(a), io.BytesIO(b), io.BytesIO(), memory_limit=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sss.concat_stream("a.cs", io.BytesIO(b), io.BytesIO())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sss.concat_stream(io.BytesIO(a), io.BytesIO(b), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="passes over the inputs"):
        sss.concat_stream(io.BytesIO(a), io.BytesIO(b), io.BytesIO(), memory_limit=1)
    assert concat(io.BytesIO(b""), io.BytesIO(b""), 1) == b""


# -- memory ------------------------------------------------------------------

def measure(tmp_path: Path, rows: int, size: int, limit: int) -> dict[str, int]:
    worker = HERE / "_stream_concat_memory.py"
    subprocess.run([sys.executable, str(worker), "make", str(tmp_path), str(rows), str(size)],
                   check=True, timeout=600)
    a, b = tmp_path / "a.cs", tmp_path / "b.cs"
    proc = subprocess.run([sys.executable, str(worker), "concat", str(a), str(b),
                           str(tmp_path / "out.cs"), str(limit)],
                          capture_output=True, text=True, timeout=1200, check=True)
    result: dict[str, int] = json.loads(proc.stdout)
    # The output holds what the single group holds (compared in a
    # streamed form: sizes and change counts).
    with open(a, "rb") as fa, open(b, "rb") as fb:
        single = io.BytesIO()
        sss.concat_stream(fa, fb, single, memory_limit=1 << 62)
    with open(tmp_path / "out.cs", "rb") as f:
        got = multiset(f.read())
    assert got == multiset(single.getvalue())
    return result


def test_memory_is_bounded(tmp_path: Path) -> None:
    """~20 MB of input with a 2 MiB limit: the peak RSS grows by far less
    than the input (SQLite's single group grows by about the input)."""
    r = measure(tmp_path, 60_000, 100, 2 << 20)
    assert r["input"] > 20_000_000
    assert r["partitions"] > 8
    assert r["after"] - r["before"] < r["input"] // 2, r


@pytest.mark.stress
def test_memory_is_bounded_large(tmp_path: Path) -> None:
    """~200 MB x SSS_STRESS_SCALE with a 16 MiB limit."""
    r = measure(tmp_path, int(600_000 * STRESS_SCALE), 100, 16 << 20)
    assert r["input"] > 200_000_000 * STRESS_SCALE
    assert r["after"] - r["before"] < r["input"] // 4, r
