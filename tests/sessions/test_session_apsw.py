"""Byte-for-byte agreement with apsw's session (same SQLite 3.54.1): the same
operations give the same changesets and patchsets; each side applies the
other's; invert and concat give the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

import sqlite_session_safe as sss

apsw = pytest.importorskip("apsw")

SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL, b BLOB);
CREATE TABLE w(a TEXT, b INTEGER, c, PRIMARY KEY(b, a)) WITHOUT ROWID;
CREATE TABLE u(k TEXT PRIMARY KEY, x);
"""

# Each workload: statements run in order after SCHEMA.
WORKLOADS = {
    "inserts": [
        "INSERT INTO t VALUES (1, 'one', 1.5, x'00ff'), (2, NULL, -0.0, NULL), "
        "(3, 'três ☃', 1e308, x'')",
        "INSERT INTO t VALUES (9223372036854775807, 'max', NULL, NULL), "
        "(-9223372036854775808, 'min', 2, 'x')",
    ],
    "updates": [
        "INSERT INTO t VALUES (1, 'a', 1, NULL), (2, 'b', 2, NULL), (3, 'c', 3, NULL)",
        "UPDATE t SET v = 'A' WHERE id = 1",
        "UPDATE t SET n = n * 10, b = x'01' WHERE id >= 2",
    ],
    "deletes": [
        "INSERT INTO t VALUES (1, 'a', 1, NULL), (2, 'b', 2, NULL)",
        "DELETE FROM t WHERE id = 1",
    ],
    "pk_updates": [
        "INSERT INTO t VALUES (1, 'a', 1, NULL), (2, 'b', 2, NULL)",
        "UPDATE t SET id = id + 100",
        "UPDATE u SET k = 'z' WHERE k = 'nothing'",
    ],
    "without_rowid": [
        "INSERT INTO w VALUES ('x', 1, 'c1'), ('y', 1, 'c2'), ('x', 2, NULL)",
        "UPDATE w SET c = 'changed' WHERE a = 'x' AND b = 1",
        "UPDATE w SET a = 'q' WHERE b = 2",
        "DELETE FROM w WHERE a = 'y'",
    ],
    "several_tables": [
        "INSERT INTO t VALUES (1, 'a', 1, NULL)",
        "INSERT INTO w VALUES ('x', 1, 'c1')",
        "INSERT INTO u VALUES ('k1', 1), ('k2', x'beef')",
        "UPDATE u SET x = 2 WHERE k = 'k1'",
        "DELETE FROM t",
    ],
}

# Rows present before the session starts (so updates/deletes see old rows).
SEED = [
    "INSERT INTO u VALUES ('pre', 'existing')",
    "INSERT INTO w VALUES ('pre', 0, 'existing')",
]


def record_ours(path: Path, statements: list[str]) -> tuple[sss.Changeset, sss.Patchset]:
    con = sss.connect(path)
    try:
        con.executescript(SCHEMA + ";".join(SEED))
        with con.session() as s:
            for sql in statements:
                con.execute(sql)
            con.execute("UPDATE u SET x = 'changed' WHERE k = 'pre'")
            con.execute("DELETE FROM w WHERE a = 'pre'")
            return s.changeset(), s.patchset()
    finally:
        con.close()


def record_apsw(path: Path, statements: list[str]) -> tuple[bytes, bytes]:
    con = apsw.Connection(str(path))
    try:
        con.execute(SCHEMA + ";".join(SEED))
        s = apsw.Session(con, "main")
        s.attach()
        for sql in statements:
            con.execute(sql)
        con.execute("UPDATE u SET x = 'changed' WHERE k = 'pre'")
        con.execute("DELETE FROM w WHERE a = 'pre'")
        out = s.changeset(), s.patchset()
        s.close()
        return out
    finally:
        con.close()


def dump(con_execute) -> list[tuple]:  # type: ignore[no-untyped-def]
    rows = []
    for table in ("t", "w", "u"):
        rows.append((table, sorted(map(tuple, con_execute(f"SELECT * FROM {table}")), key=repr)))
    return rows


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_same_bytes_as_apsw(tmp_path: Path, name: str) -> None:
    statements = WORKLOADS[name]
    ours_cs, ours_ps = record_ours(tmp_path / "ours.db", statements)
    apsw_cs, apsw_ps = record_apsw(tmp_path / "apsw.db", statements)
    assert bytes(ours_cs) == apsw_cs
    assert bytes(ours_ps) == apsw_ps
    assert len(ours_cs) > 0
    assert bytes(ours_cs.invert()) == apsw.Changeset.invert(apsw_cs)
    assert bytes(ours_cs.concat(ours_cs.invert())) == apsw.Changeset.concat(
        apsw_cs, apsw.Changeset.invert(apsw_cs))
    assert bytes(ours_ps.concat(ours_ps)) == apsw.Changeset.concat(apsw_ps, apsw_ps)


def _start_db(path: Path) -> None:
    con = sss.connect(path)
    con.executescript(SCHEMA + ";".join(SEED))
    con.close()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
@pytest.mark.parametrize("kind", ["changeset", "patchset"])
def test_cross_apply(tmp_path: Path, name: str, kind: str) -> None:
    statements = WORKLOADS[name]
    ours = record_ours(tmp_path / "ours.db", statements)[kind == "patchset"]
    theirs = record_apsw(tmp_path / "apsw.db", statements)[kind == "patchset"]
    with sss.connect(tmp_path / "ours.db") as con:
        expected = dump(lambda sql: con.execute(sql).fetchall())

    # apsw applies ours
    _start_db(tmp_path / "a.db")
    acon = apsw.Connection(str(tmp_path / "a.db"))
    apsw.Changeset.apply(bytes(ours), acon)
    assert dump(lambda sql: acon.execute(sql).fetchall()) == expected
    acon.close()

    # we apply apsw's (plain bytes, detected as changeset or patchset)
    _start_db(tmp_path / "b.db")
    with sss.connect(tmp_path / "b.db") as con:
        report = sss.apply(theirs, con)
        assert dump(lambda sql: con.execute(sql).fetchall()) == expected
        assert report.total_omitted == 0
        assert sum(report.changes.values()) == report.total_applied > 0


def test_iteration_matches_apsw(tmp_path: Path) -> None:
    ours_cs, ours_ps = record_ours(tmp_path / "ours.db", WORKLOADS["several_tables"] + WORKLOADS["updates"])
    for data in (ours_cs, ours_ps):
        theirs = []
        for c in apsw.Changeset.iter(bytes(data)):
            old = None if c.old is None else tuple(sss.UNCHANGED if v is apsw.no_change else v for v in c.old)
            new = None if c.new is None else tuple(sss.UNCHANGED if v is apsw.no_change else v for v in c.new)
            theirs.append((c.name, c.opcode, old, new, c.indirect))
        ops = {"INSERT": apsw.SQLITE_INSERT, "UPDATE": apsw.SQLITE_UPDATE, "DELETE": apsw.SQLITE_DELETE}
        ours = [(c.table, ops[c.op], c.old, c.new, c.indirect) for c in data]
        assert ours == theirs
        assert len(ours) >= 8
