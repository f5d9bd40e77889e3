"""Changesets and patchsets as values: iteration, transforms, groups,
rebasing, validation, presentation, streaming."""

from __future__ import annotations

import io
import json
import os
import pickle
import tracemalloc
from pathlib import Path

import pytest

import sqlite_session_safe as sss
from sqlite_session_safe.binding import changeset_io

SCHEMA = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL, b BLOB)"


def capture(con: sss.Connection, *statements: str) -> tuple[sss.Changeset, sss.Patchset]:
    with con.session() as s:
        for sql in statements:
            con.execute(sql)
        return s.changeset(), s.patchset()


@pytest.fixture
def db(con: sss.Connection) -> sss.Connection:
    con.execute(SCHEMA)
    con.execute("INSERT INTO t VALUES (1, 'a', 1.0, NULL), (2, 'b', NULL, x'00')")
    return con


def test_changes_have_values_unchanged_and_flags(db: sss.Connection) -> None:
    cs, ps = capture(db, "UPDATE t SET v = NULL WHERE id = 1", "DELETE FROM t WHERE id = 2",
                     "INSERT INTO t VALUES (3, 'c', 2.5, x'ff')")
    by_op = {c.op: c for c in cs}
    upd = by_op["UPDATE"]
    assert upd.table == "t" and upd.pk == (1, 0, 0, 0) and upd.indirect is False
    assert upd.old == (1, "a", sss.UNCHANGED, sss.UNCHANGED)
    assert upd.new == (sss.UNCHANGED, None, sss.UNCHANGED, sss.UNCHANGED)  # NULL is not UNCHANGED
    assert by_op["DELETE"].old == (2, "b", None, b"\x00") and by_op["DELETE"].new is None
    assert by_op["INSERT"].new == (3, "c", 2.5, b"\xff") and by_op["INSERT"].old is None
    assert by_op["INSERT"].key == (3,) and upd.pk_columns == (0,)
    pdel = {c.op: c for c in ps}["DELETE"]
    assert pdel.old == (2, sss.UNCHANGED, sss.UNCHANGED, sss.UNCHANGED)


def test_changes_stay_valid_after_iteration(db: sss.Connection) -> None:
    with db.transaction():
        db.executemany("INSERT INTO t VALUES (?, ?, NULL, NULL)", [(i, f"v{i}") for i in range(10, 10_010)])
    cs, _ = capture(db, "UPDATE t SET v = v || '!' WHERE id >= 10")
    changes = list(cs)  # several C batches
    assert len(changes) == 10_000
    assert sorted(c.new[1] for c in changes) == sorted(f"v{i}!" for i in range(10, 10_010))
    it = iter(cs)
    first = next(it)
    rest = list(it)
    assert first.op == "UPDATE" and len(rest) == 9_999


def test_change_is_a_value() -> None:
    c = sss.Change("t", "INSERT", None, (1, "x"), (1, 0))
    assert pickle.loads(pickle.dumps(c)) == c
    assert c.table == "t" and c.new == (1, "x") and not c.indirect
    for bad in [("t", "MERGE", None, (1,), (1,)), ("t", "INSERT", (1,), (1,), (1,)),
                ("t", "DELETE", (1,), (1,), (1,)), ("t", "UPDATE", None, (1,), (1,)),
                ("t", "INSERT", None, (1, 2), (1,)), ("", "INSERT", None, (1,), (1,))]:
        with pytest.raises(sss.InterfaceError):
            sss.Change(*bad)


def test_from_changes_round_trips(db: sss.Connection) -> None:
    cs, ps = capture(db, "UPDATE t SET v = 'z' WHERE id = 1", "DELETE FROM t WHERE id = 2",
                     "INSERT INTO t VALUES (-5, '☃', -1e300, x'')")
    assert sss.Changeset.from_changes(list(cs)) == cs
    assert sss.Patchset.from_changes(list(ps)) == ps


def test_bytes_behaviour_and_kinds(db: sss.Connection) -> None:
    cs, ps = capture(db, "INSERT INTO t VALUES (3, 'c', NULL, NULL)")
    assert isinstance(cs, bytes) and bytes(cs) == cs and hash(cs) == hash(bytes(cs))
    assert type(cs + b"") is bytes
    db.execute("CREATE TABLE blobs(x BLOB)")
    db.execute("INSERT INTO blobs VALUES (?)", (cs,))
    assert db.execute("SELECT x FROM blobs").fetchone()[0] == bytes(cs)
    with pytest.raises(sss.ChangesetError, match="patchset"):
        sss.Changeset(bytes(ps))
    with pytest.raises(sss.ChangesetError, match="changeset"):
        sss.Patchset(bytes(cs))
    with pytest.raises(sss.ChangesetError):
        ps.invert()
    with pytest.raises(sss.ChangesetError):
        list(ps.changes(invert=True))
    with pytest.raises(sss.InterfaceError):
        cs.concat(ps)  # type: ignore[arg-type]
    assert list(sss.Changeset()) == [] and sss.Changeset().invert() == b""


def test_invert_and_concat_semantics(tmp_path: Path, db: sss.Connection) -> None:
    start = db.serialize()
    a, _ = capture(db, "UPDATE t SET v = 'A' WHERE id = 1", "INSERT INTO t VALUES (3, 'c', NULL, NULL)")
    b, _ = capture(db, "DELETE FROM t WHERE id = 3", "UPDATE t SET n = 9 WHERE id = 2")
    end = db.execute("SELECT * FROM t ORDER BY id").fetchall()
    ab = a.concat(b)
    assert {(c.op, c.key) for c in ab} == {("UPDATE", (1,)), ("UPDATE", (2,))}  # insert+delete cancel
    other = sss.connect(tmp_path / "o.db")
    other.deserialize(start)
    ab.apply(other)
    assert other.execute("SELECT * FROM t ORDER BY id").fetchall() == end
    ab.invert().apply(other)
    db.deserialize(start)
    assert other.execute("SELECT * FROM t ORDER BY id").fetchall() == db.execute(
        "SELECT * FROM t ORDER BY id").fetchall()
    assert list(a.changes(invert=True)) == list(a.invert())
    other.close()


def test_changegroup(db: sss.Connection) -> None:
    a, pa = capture(db, "INSERT INTO t VALUES (3, 'c', NULL, NULL)")
    b, pb = capture(db, "UPDATE t SET v = 'C' WHERE id = 3")
    with sss.ChangeGroup() as g:
        g.add(a)
        g.add(b)
        assert g.output() == a.concat(b)
        with pytest.raises(sss.InterfaceError):
            g.add(pa)
    with pytest.raises(sss.ClosedError):
        g.output()
    g2 = sss.ChangeGroup()
    for change in a:
        g2.add_change(change)
    g2.add_change(("t", "INSERT", None, (4, "d", None, None), (1, 0, 0, 0)))
    assert [c.key for c in g2.output()] == [(3,), (4,)] or sorted(c.key for c in g2.output()) == [(3,), (4,)]
    f = io.BytesIO()
    g2.output_stream(f)
    assert f.getvalue() == g2.output()
    g2.close()
    pg = sss.ChangeGroup(patchset=True)
    pg.add(pa)
    pg.add_stream(io.BytesIO(pb), patchset=True)
    assert pg.output() == pa.concat(pb) and isinstance(pg.output(), sss.Patchset)
    pg.close()


def test_changegroup_with_schema(db: sss.Connection) -> None:
    a, _ = capture(db, "INSERT INTO t VALUES (3, 'c', NULL, NULL)")
    g = sss.ChangeGroup(schema=db)
    g.add(a)
    db.execute("CREATE TABLE two(a PRIMARY KEY, b)")
    bad = sss.Changeset.from_changes([sss.Change("t", "INSERT", None, (1, 2), (0, 1))])
    with pytest.raises(sss.InterfaceError, match="schema"):
        g.add(bad)
    g2 = sss.ChangeGroup(schema=db)
    db.close()  # closes the group with it
    with pytest.raises(sss.ClosedError):
        g2.output()


def test_rebaser(tmp_path: Path) -> None:
    """Local and remote both insert key 1; remote applied with OMIT locally;
    the local change rebased becomes an UPDATE to the local value."""
    paths = {name: tmp_path / f"{name}.db" for name in ("local", "remote")}
    css = {}
    for name, value in (("local", "v-local"), ("remote", "v-remote")):
        with sss.connect(paths[name]) as c:
            c.execute("CREATE TABLE t1(a PRIMARY KEY, b)")
            with c.session() as s:
                c.execute("INSERT INTO t1 VALUES (1, ?)", (value,))
                css[name] = s.changeset()
    with sss.connect(paths["local"]) as c:
        report = css["remote"].apply(c, on_conflict={sss.ConflictType.CONFLICT: sss.OMIT}, rebase=True)
        assert report.conflicts[sss.ConflictType.CONFLICT] == 1 and report.rebase
    r = sss.Rebaser()
    r.configure(report.rebase)
    rebased = r.rebase(css["local"])
    (change,) = list(rebased)
    assert change.op == "UPDATE" and change.new[1] == "v-local" and change.old[1] == "v-remote"
    out = io.BytesIO()
    r.rebase_stream(io.BytesIO(css["local"]), out)
    assert out.getvalue() == rebased
    r.close()


def test_validate(db: sss.Connection) -> None:
    cs, ps = capture(db, "INSERT INTO t VALUES (3, 'c', NULL, NULL)", "DELETE FROM t WHERE id = 1")
    assert cs.validate() == 2 and ps.validate() == 2
    with pytest.raises(sss.ChangesetError):
        sss.Changeset(bytes(cs)[:-3]).validate()
    bad_text = bytes(cs).replace(b"\x03\x01c", b"\x03\x01\xff")
    with pytest.raises(sss.ChangesetError, match="UTF-8"):
        sss.Changeset(bad_text).validate()


def test_as_dicts_json_sql(db: sss.Connection) -> None:
    cs, _ = capture(db, "UPDATE t SET v = 'it''s' WHERE id = 1", "DELETE FROM t WHERE id = 2",
                    "INSERT INTO t VALUES (3, NULL, 1e999, x'0102')")
    dicts = cs.as_dicts(db)
    by_op = {d["op"]: d for d in dicts}
    assert by_op["UPDATE"] == {"table": "t", "op": "UPDATE", "indirect": False, "pk": ["id"],
                               "old": {"id": 1, "v": "a"}, "new": {"v": "it's"}}
    assert cs.as_dicts()[0]["pk"] == ["0"]
    parsed = json.loads(cs.to_json(db))
    ins = [d for d in parsed if d["op"] == "INSERT"][0]
    assert ins["new"] == {"id": 3, "v": None, "n": {"$real": "inf"}, "b": {"$blob": "0102"}}
    sql = cs.to_sql(db)
    assert "UPDATE \"t\" SET \"v\" = 'it''s' WHERE \"id\" = 1;" in sql
    with pytest.raises(sss.InterfaceError):
        cs.to_sql()
    # The SQL reproduces the change on a copy of the start.
    other = sss.connect(":memory:")
    other.execute(SCHEMA)
    other.execute("INSERT INTO t VALUES (1, 'a', 1.0, NULL), (2, 'b', NULL, x'00')")
    for stmt in cs.to_sql(columns={"t": ["id", "v", "n", "b"]}):
        other.execute(stmt)
    assert other.execute("SELECT * FROM t ORDER BY id").fetchall() == db.execute(
        "SELECT * FROM t ORDER BY id").fetchall()
    other.close()


def test_streaming_iterate_invert_concat(tmp_path: Path, db: sss.Connection) -> None:
    with db.transaction():
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                       [(i, "x" * 50, i / 3, None) for i in range(10, 5010)])
    a, _ = capture(db, "UPDATE t SET v = 'y' WHERE id % 2 = 0")
    b, _ = capture(db, "DELETE FROM t WHERE id % 3 = 0")
    pa, pb = tmp_path / "a.cs", tmp_path / "b.cs"
    pa.write_bytes(a)
    pb.write_bytes(b)
    with open(pa, "rb") as f:
        assert list(sss.iterate_stream(f)) == list(a)
    with open(pa, "rb") as f:
        assert list(sss.iterate_stream(f, invert=True)) == list(a.invert())
    out = io.BytesIO()
    with open(pa, "rb") as f:
        assert sss.invert_stream(f, out) == len(a.invert())
    assert out.getvalue() == a.invert()
    out = io.BytesIO()
    with open(pa, "rb") as fa, open(pb, "rb") as fb:
        sss.concat_stream(fa, fb, out)
    assert out.getvalue() == a.concat(b)


def test_stream_read_error_is_raised_as_itself() -> None:
    class Flaky(io.RawIOBase):
        def readinto(self, b):  # type: ignore[no-untyped-def]
            raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        list(sss.iterate_stream(Flaky()))
    with pytest.raises(ConnectionResetError):
        sss.invert_stream(Flaky(), io.BytesIO())


def test_stream_iteration_memory_is_bounded(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "big.db")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    path = tmp_path / "big.cs"
    with con.session() as s:
        with con.transaction():
            con.executemany("INSERT INTO t VALUES (?, randomblob(1000))", [(i,) for i in range(40_000)])
        with open(path, "wb") as f:
            s.changeset_stream(f)
    con.close()
    assert path.stat().st_size > 40_000_000
    # Python-side allocations (tracemalloc) and the whole process (RSS, which
    # includes SQLite's own buffers) both stay far below the 40 MB stream.
    tracemalloc.start()
    count = 0
    base = rss_bytes()
    rss_peak = base
    with open(path, "rb") as f:
        for _ in sss.iterate_stream(f):
            count += 1
            if count % 2000 == 0:
                rss_peak = max(rss_peak, rss_bytes())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 40_000
    assert peak < 8_000_000, peak  # batches, not the 40 MB changeset
    if base:
        assert rss_peak - base < 20_000_000, rss_peak - base


def rss_bytes() -> int:
    """Current resident set size (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def test_large_blob_routes_through_streaming(monkeypatch: pytest.MonkeyPatch, db: sss.Connection) -> None:
    """Past the C API's int limit the same methods use the *_strm functions;
    lowering the limit exercises that path on small data."""
    a, _ = capture(db, "INSERT INTO t VALUES (3, 'c', NULL, NULL)", "UPDATE t SET v = 'q' WHERE id = 1")
    b, _ = capture(db, "DELETE FROM t WHERE id = 2")
    expected = (list(a), a.invert(), a.concat(b))
    monkeypatch.setattr(changeset_io, "MAX_BLOB", 8)
    assert (list(a), a.invert(), a.concat(b)) == expected
    other = sss.connect(":memory:")
    other.execute(SCHEMA)
    other.execute("INSERT INTO t VALUES (1, 'a', 1.0, NULL), (2, 'b', NULL, x'00')")
    report = a.apply(other)
    assert report.total_applied == 2
    assert other.execute("SELECT v FROM t WHERE id IN (1, 3) ORDER BY id").fetchall() == [("q",), ("c",)]
    other.close()
