"""db.undo(seq): the inverse of a logged write, as a new logged write."""

from __future__ import annotations

import pytest
from _database_workers import open_db
from _replication_workers import tables

import sqlite_session_safe as sss


@pytest.fixture
def db(tmp_path):
    d = open_db(str(tmp_path / "app.db"))
    d.migrate(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);"
        "CREATE TABLE other(id INTEGER PRIMARY KEY, x);"
        "CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);"
        "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN "
        "INSERT INTO audit(what) VALUES ('ins ' || new.id); END;",
        label="schema",
    )
    d.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)",
                                      [(i, f"v{i}", i) for i in range(1, 6)]), label="seed")
    yield d
    d.close()


def _snapshot(db: sss.Database) -> dict:
    return tables(db.path)


def test_round_trip(db):
    before = _snapshot(db)

    def mixed(tx):
        tx.execute("INSERT INTO t VALUES (10, 'new', 0)")  # the trigger adds an audit row
        tx.execute("UPDATE t SET v = 'changed', n = NULL WHERE id = 2")
        tx.execute("DELETE FROM t WHERE id = 3")
    n = db.write(mixed, label="mixed").seq
    db.write(lambda tx: tx.execute("INSERT INTO other VALUES (1, 'unrelated')"))
    assert _snapshot(db) != before
    res = db.undo(n)
    assert res.label == f"undo {n}" and res.seq == n + 2 and res.value == ()
    after = _snapshot(db)
    # t and audit are as before entry n (the trigger's row removed too, and the
    # trigger did not fire again for the re-inserted row 3); other is untouched.
    assert after["t"] == before["t"] and after["audit"] == before["audit"]
    assert after["other"] == [(1, "unrelated")]
    entry = list(db.log(since=n + 1))[0]
    assert (entry.seq, entry.kind, entry.label) == (n + 2, "data", f"undo {n}")
    assert bytes(entry.changeset) == bytes(res.changeset)
    # Undoing the undo redoes the write.
    db.undo(res.seq, label="redo")
    redone = _snapshot(db)
    assert redone["t"] == [(1, "v1", 1), (2, "changed", None), (4, "v4", 4), (5, "v5", 5),
                           (10, "new", 0)]
    assert list(db.log())[-1].label == "redo"


def test_conflict_reports_rows_and_changes_nothing(db):
    n = db.write(lambda tx: tx.execute("UPDATE t SET v = 'n' WHERE id IN (1, 2)")).seq
    db.write(lambda tx: tx.execute("UPDATE t SET v = 'later' WHERE id = 1"))
    db.write(lambda tx: tx.execute("DELETE FROM t WHERE id = 2"))
    before, position = _snapshot(db), db.position()
    with pytest.raises(sss.UndoConflict) as info:
        db.undo(n)
    e = info.value
    assert isinstance(e, sss.ConflictAbort) and e.seq == n
    rows = sorted(e.rows, key=lambda r: r.pk)
    assert [(r.table, r.pk, r.type, r.expected, r.found) for r in rows] == [
        ("t", (1,), "DATA", (1, "n", sss.UNCHANGED), (1, "later", 1)),
        ("t", (2,), "NOTFOUND", (2, "n", sss.UNCHANGED), None),
    ]
    assert "2 row(s) changed since entry" in str(e) and "'later'" in str(e)
    assert _snapshot(db) == before and db.position() == position  # nothing changed or logged


def test_conflict_policies(db):
    n = db.write(lambda tx: tx.execute("UPDATE t SET v = 'n' WHERE id IN (1, 2, 3)")).seq
    db.write(lambda tx: tx.execute("UPDATE t SET v = 'later' WHERE id = 1"))
    # OMIT: undo what can be undone, leave the rows changed later alone
    res = db.undo(n, on_conflict=sss.OMIT)
    assert [(r.pk, r.action) for r in res.value] == [((1,), "OMIT")]
    assert _snapshot(db)["t"][:3] == [(1, "later", 1), (2, "v2", 2), (3, "v3", 3)]
    # REPLACE on DATA: the undo wins over the later write
    m = db.write(lambda tx: tx.execute("UPDATE t SET n = 100 WHERE id = 4")).seq
    db.write(lambda tx: tx.execute("UPDATE t SET n = 200 WHERE id = 4"))
    db.undo(m, on_conflict={sss.ConflictType.DATA: sss.REPLACE})
    assert _snapshot(db)["t"][3] == (4, "v4", 4)
    # ABORT through a callable: UndoConflict with the rows seen
    k = db.write(lambda tx: tx.execute("UPDATE t SET n = 1 WHERE id = 5")).seq
    db.write(lambda tx: tx.execute("UPDATE t SET n = 2 WHERE id = 5"))
    with pytest.raises(sss.UndoConflict) as info:
        db.undo(k, on_conflict=lambda c: sss.ABORT)
    assert [(r.pk, r.action) for r in info.value.rows] == [((5,), "ABORT")]
    # A policy SQLite cannot run is refused before anything
    with pytest.raises(sss.ConflictPolicyError):
        db.undo(k, on_conflict=sss.REPLACE)


def test_undo_refusals(db, tmp_path):
    position = db.position()
    with pytest.raises(sss.UndoError, match="is a migration") as info:
        db.undo(1)
    assert info.value.reason == "ddl" and info.value.seq == 1
    with pytest.raises(sss.UndoError, match="has no entry 99") as info:
        db.undo(99)
    assert info.value.reason == "unknown"
    for bad in (0, -1, "2", True, None):
        with pytest.raises(sss.InterfaceError, match="seq"):
            db.undo(bad)
    # An entry without changes (another client's, written directly).
    with sss.connect(db.path) as con:
        con.execute("INSERT INTO _sss_log (seq, committed_at, owner, host, pid, label, kind, changeset, "
                    "sql, epoch) VALUES (?, '2026-01-01T00:00:00.000000Z', 'x', 'h', 1, NULL, 'data', "
                    "x'', NULL, 0)", (position + 1,))
    with pytest.raises(sss.UndoError, match="holds no changes") as info:
        db.undo(position + 1)
    assert info.value.reason == "empty"
    assert db.position() == position + 1  # no undo was logged


def test_undo_then_replicate(db, tmp_path):
    n = db.write(lambda tx: tx.execute("DELETE FROM t WHERE id > 3")).seq
    db.undo(n)
    replica = str(tmp_path / "replica.db")
    sss.replicate(db, replica)
    assert tables(replica) == _snapshot(db)
