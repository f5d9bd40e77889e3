"""The log's columns are addressed by name: new logs put ``changeset`` last
(SQLite then never builds a large entry's zero-filled row in memory), and
logs made with the older column order (``changeset`` between ``kind`` and
``sql``) keep working as they are, never migrated (PROTOCOL.md §5.2)."""

from __future__ import annotations

import pytest
from _cli import run_json
from _database_workers import open_db, user_tables
from _log_workload import SCHEMA, WRITES

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import wire

#: _sss_log as earlier revisions created it.
OLD_LOG = """CREATE TABLE _sss_log (
    seq          INTEGER PRIMARY KEY,
    committed_at TEXT NOT NULL,
    owner        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    label        TEXT,
    kind         TEXT NOT NULL CHECK (kind IN ('data', 'ddl')),
    changeset    BLOB,
    sql          TEXT,
    epoch        INTEGER NOT NULL,
    CHECK ((kind = 'data') = (changeset IS NOT NULL)),
    CHECK ((kind = 'ddl') = (sql IS NOT NULL))
)"""


def _old_layout(path: str, database_id: str) -> None:
    """An empty database with the log's tables as earlier revisions made them."""
    with sss.connect(path) as con:
        con.executescript(f"{OLD_LOG};"
                          "CREATE TABLE _sss_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                          f"INSERT INTO _sss_meta VALUES ('database_id', '{database_id}'),"
                          " ('log_format', '1')")


def _columns(path: str) -> list[str]:
    with sss.connect(path) as con:
        return [r[1] for r in con.execute("PRAGMA table_info(_sss_log)")]


def test_new_logs_put_the_changeset_last(tmp_path):
    path = str(tmp_path / "new.db")
    with open_db(path) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    assert _columns(path) == ["seq", "committed_at", "owner", "host", "pid", "label", "kind", "sql",
                              "epoch", "changeset"]


@pytest.mark.parametrize("large", [False, True])
def test_a_log_with_the_older_column_order_works_unchanged(tmp_path, monkeypatch, large):
    """Written (small and streamed entries), replicated from and into,
    exported and imported, undone and checked, without being migrated."""
    if large:
        monkeypatch.setattr(wire, "LARGE_BODY", 100)
    old = str(tmp_path / "old.db")
    _old_layout(old, "00112233445566778899aabbccddeeff")
    order = _columns(old)
    assert order.index("changeset") == 7
    db = open_db(old)
    db.migrate(SCHEMA, label="schema")
    results = [db.write(fn) for fn in WRITES]
    try:
        assert [bytes(e.changeset) for e in list(db.log())[1:]] == [bytes(r.changeset) for r in results]
        with db.read() as r:
            want = user_tables(r.connection)
        # A replica whose own log has the older order too.
        rep_path = str(tmp_path / "rep.db")
        _old_layout(rep_path, "ffeeddccbbaa99887766554433221100")
        rep = open_db(rep_path)
        sss.replicate(db, rep)
        with rep.read() as r:
            assert user_tables(r.connection) == want
        # And from it, into a new replica with the new order.
        sss.replicate(rep, str(tmp_path / "new.db"))
        with sss.connect(str(tmp_path / "new.db")) as c:
            assert user_tables(c) == want
        rep.close()
        bundle = str(tmp_path / "old.bundle")
        db.export(bundle)
        sss.import_bundle(str(tmp_path / "imported.db"), bundle)
        with sss.connect(str(tmp_path / "imported.db")) as c:
            assert user_tables(c) == want
        db.undo(results[-1].seq)
        db.undo(db.position())
        with db.read() as r:
            assert user_tables(r.connection) == want
        for path in (old, rep_path, str(tmp_path / "new.db"), str(tmp_path / "imported.db")):
            doc = run_json("check", path)
            assert doc["ok"], (path, doc["problems"])
        assert _columns(old) == order and _columns(rep_path) == order  # never migrated
        assert _columns(str(tmp_path / "new.db"))[-1] == "changeset"
    finally:
        db.close()
