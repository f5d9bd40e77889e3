"""Property tests (hypothesis): for random DML on a source database,
applying its changeset to a copy of the start gives the source, applying the
inverse afterwards gives the start, and applying concat(a, b) equals applying
a then b.  Real database files, with durability relaxed for speed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqlite_session_safe as sss

SCHEMA = """
CREATE TABLE a(id INTEGER PRIMARY KEY, x, y);
CREATE TABLE b(k TEXT, n INTEGER, z, PRIMARY KEY(k, n)) WITHOUT ROWID;
"""

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
a_keys = st.integers(min_value=0, max_value=15)
b_keys = st.tuples(st.sampled_from(["p", "q", "r", "☃"]), st.integers(min_value=0, max_value=3))

ops = st.one_of(
    st.tuples(st.just("INSERT OR REPLACE INTO a VALUES (?, ?, ?)"), st.tuples(a_keys, values, values)),
    st.tuples(st.just("UPDATE a SET x = ? WHERE id = ?"), st.tuples(values, a_keys)),
    st.tuples(st.just("UPDATE a SET id = ? WHERE id = ?"), st.tuples(a_keys, a_keys)),
    st.tuples(st.just("DELETE FROM a WHERE id = ?"), st.tuples(a_keys)),
    st.tuples(st.just("INSERT OR REPLACE INTO b VALUES (?, ?, ?)"),
              b_keys.flatmap(lambda k: st.tuples(st.just(k[0]), st.just(k[1]), values))),
    st.tuples(st.just("UPDATE b SET z = ? WHERE k = ?"), st.tuples(values, st.sampled_from(["p", "q"]))),
    st.tuples(st.just("DELETE FROM b WHERE n = ?"), st.tuples(st.integers(0, 3))),
)
programs = st.lists(ops, max_size=25)


class Dbs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def open(self, image: bytes | None = None) -> sss.Connection:
        self.n += 1
        con = sss.connect(self.root / f"db{self.n}.db")
        con.executescript("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;")
        if image is None:
            con.executescript(SCHEMA)
        else:
            con.deserialize(image)
        return con


def state(con: sss.Connection) -> tuple:
    # Compared by type and value: 1 and 1.0 must not be confused.
    def norm(rows: list) -> list:
        return sorted((tuple((type(v).__name__, v) for v in r) for r in rows), key=repr)
    return (norm(con.execute("SELECT * FROM a").fetchall()), norm(con.execute("SELECT * FROM b").fetchall()))


def run(con: sss.Connection, program: list) -> None:
    for sql, params in program:
        try:
            con.execute(sql, params)
        except sss.ConstraintError:
            pass  # e.g. a primary key update onto an existing key


def two_writes(
    src: sss.Connection, first: list, second: list
) -> tuple[sss.Changeset, sss.Patchset, sss.Changeset, sss.Patchset]:
    """Run two programs on ``src``, each under its own session: (changeset,
    patchset) of the first, then of the second."""
    with src.session() as s1:
        run(src, first)
        a, pa = s1.changeset(), s1.patchset()
    with src.session() as s2:
        run(src, second)
        b, pb = s2.changeset(), s2.patchset()
    return a, pa, b, pb


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=programs, program=programs)
def test_apply_then_invert(seed: list, program: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Dbs(Path(tmp))
        src = dbs.open()
        run(src, seed)
        start_image, start = src.serialize(), state(src)
        with src.session() as s:
            run(src, program)
            cs, ps = s.changeset(), s.patchset()
        assert cs.validate() == len(list(cs)) == ps.validate()
        copy = dbs.open(start_image)
        report = cs.apply(copy)
        assert state(copy) == state(src)
        assert report.total_applied == sum(report.changes.values())
        cs.invert().apply(copy)
        assert state(copy) == start
        patched = dbs.open(start_image)
        ps.apply(patched)
        assert state(patched) == state(src)
        for c in (src, copy, patched):
            c.close()


@SETTINGS
@given(seed=programs, first=programs, second=programs)
def test_concat_equals_sequence(seed: list, first: list, second: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = Dbs(Path(tmp))
        src = dbs.open()
        run(src, seed)
        start_image = src.serialize()
        a, pa, b, pb = two_writes(src, first, second)
        sequential = dbs.open(start_image)
        a.apply(sequential)
        b.apply(sequential)
        combined = dbs.open(start_image)
        a.concat(b).apply(combined)
        patched = dbs.open(start_image)
        pa.concat(pb).apply(patched)
        assert state(sequential) == state(combined) == state(patched) == state(src)
        for c in (src, sequential, combined, patched):
            c.close()
