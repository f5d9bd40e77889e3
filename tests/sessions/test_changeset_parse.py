"""Iteration reads changeset blobs with its own C parser (``sss_changeset_parse``)
instead of SQLite's iterator.  These tests hold the two to the same output,
and the same refusals, on real changesets and patchsets, on hand-made edge
cases of the wire format, and on thousands of mutated inputs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from _changeset_fuzz import corpus, mutate
from _changeset_wire import DELETE, EDGE_CASES, INSERT, header, integer, text

import sqlite_session_safe as sss
from sqlite_session_safe.binding.changeset_iter import ChangesetIter, parse_batches


def through_sqlite(data: bytes) -> list[Any] | type[BaseException]:
    """Every raw change as SQLite's iterator reads it, or the error class."""
    try:
        return [c for batch in ChangesetIter.over_bytes(data).batches("t") for c in batch]
    except sss.Error as exc:
        return type(exc)


def through_parser(data: bytes) -> list[Any] | type[BaseException]:
    try:
        return [c for batch in parse_batches(data, "t") for c in batch]
    except sss.Error as exc:
        return type(exc)


def assert_same(data: bytes) -> list[Any] | type[BaseException]:
    expected = through_sqlite(data)
    assert through_parser(data) == expected, data.hex()
    return expected


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Changesets and patchsets of every operation over varied tables and
    values, with more changes than one parser batch and sections that span
    batch boundaries."""
    path = tmp_path_factory.mktemp("parse") / "src.db"
    con = sss.connect(path)
    con.executescript("""
        CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL, b BLOB);
        CREATE TABLE w(a TEXT, b INTEGER, c, PRIMARY KEY(b, a)) WITHOUT ROWID;
        CREATE TABLE "odd ""name"" ☃"(k PRIMARY KEY, x);
    """)
    rng = random.Random(7)
    values: list[Any] = [None, 0, -1, 2**63 - 1, -(2**63), 2**31, 1.5, -0.0, float("inf"), "",
                         "ascii", "☃ snow", "x" * 300, "é" * 200, b"", b"\x00\xff", b"z" * 70_000]
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                    [(i, rng.choice(values), rng.random(), rng.choice(values)) for i in range(3000)])
    out = []
    with con.session() as s:
        with con.transaction():
            for i in range(2500):
                r = rng.random()
                if r < 0.3:
                    con.execute("UPDATE t SET v = ?, n = ? WHERE id = ?",
                                (rng.choice(values), rng.random(), i))
                elif r < 0.4:
                    con.execute("UPDATE t SET id = ? WHERE id = ?", (10_000 + i, i))
                elif r < 0.5:
                    con.execute("DELETE FROM t WHERE id = ?", (i,))
                elif r < 0.8:
                    con.execute("INSERT OR REPLACE INTO w VALUES (?, ?, ?)",
                                (f"a{i % 97}", i % 13, rng.choice(values)))
                else:
                    con.execute('INSERT OR REPLACE INTO "odd ""name"" ☃" VALUES (?, ?)',
                                (rng.choice(values[1:]), rng.choice(values)))
                if i % 500 == 0:
                    out += [bytes(s.changeset()), bytes(s.patchset())]
            out += [bytes(s.changeset()), bytes(s.patchset())]
    con.close()
    return out


def test_captured_changesets_and_patchsets_read_the_same(captured: list[bytes]) -> None:
    for data in captured:
        changes = assert_same(data)
        assert isinstance(changes, list) and changes


def test_iteration_uses_the_parser_and_gives_change_values(captured: list[bytes]) -> None:
    cs = sss.Changeset(captured[-2])
    changes = list(cs)
    assert [tuple(c) for c in changes] == through_sqlite(bytes(cs))
    assert all(isinstance(c, sss.Change) for c in changes)
    # Inversion still goes through SQLite's iterator and agrees with invert().
    assert list(cs.changes(invert=True)) == list(cs.invert())


@pytest.mark.parametrize("data", EDGE_CASES)
def test_wire_format_edge_cases(data: bytes) -> None:
    assert_same(data)


def test_batches_resume_inside_a_section() -> None:
    body = b"".join(INSERT + b"\0" + integer(i) + text(b"v" * (i % 300)) for i in range(5000))
    data = header(b"t", b"\x01\x00") + body + header(b"u", b"\x01", b"P") + DELETE + b"\0" + integer(9)
    changes = assert_same(data)
    assert isinstance(changes, list) and len(changes) == 5001


def test_mutated_inputs_read_the_same(tmp_path: Path) -> None:
    originals = corpus(tmp_path)
    rng = random.Random(20261121)
    refused = 0
    for _ in range(5000):
        result = assert_same(mutate(rng, rng.choice(originals), originals))
        refused += not isinstance(result, list)
    assert 0 < refused < 5000  # both kinds of input were exercised
