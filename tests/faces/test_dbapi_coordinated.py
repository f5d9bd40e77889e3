"""``dbapi.connect(path, coordinated=True)``: ordinary DB-API code (implicit
BEGIN, commit/rollback) becomes one admitted, audited write per transaction.
Real processes write through coordinated DB-API connections; no lost update,
and the audit log holds exactly one entry per committed transaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _database_workers import STRESS_SCALE, make_counter_db, mp_context, user_tables

import sqlite_session_safe as sss
import sqlite_session_safe.dbapi as dbapi
from sqlite_session_safe.sessions.changeset import Changeset


@pytest.fixture
def path(tmp_path: Path) -> str:
    p = str(tmp_path / "c.db")
    make_counter_db(p)
    return p


def connect(path: str, **kw: object) -> dbapi.CoordinatedConnection:
    kw.setdefault("stale_timeout", 1.2)
    kw.setdefault("heartbeat_interval", 0.3)
    return dbapi.connect(path, coordinated=True, **kw)  # type: ignore[no-any-return]


def test_a_transaction_is_one_logged_write(path: str) -> None:
    con = connect(path, label="dbapi")
    before = con.db.position()
    assert con.execute("SELECT n FROM counter").fetchone() == (0,)
    assert not con.in_transaction  # reads outside a transaction take no write
    con.execute("UPDATE counter SET n = n + 1")
    assert con.in_transaction
    con.execute("INSERT INTO item VALUES (1, 0, 0, x'01')")
    assert con.execute("SELECT n FROM counter").fetchone() == (1,)  # sees its own write
    con.commit()
    assert not con.in_transaction
    write = con.last_write
    assert write is not None and write.seq == before + 1 and write.label == "dbapi"
    entries = list(con.db.log(since=before))
    assert [e.seq for e in entries] == [before + 1]
    logged = Changeset(entries[0].changeset)
    assert sorted((c.table, c.op) for c in logged) == [("counter", "UPDATE"), ("item", "INSERT")]
    assert bytes(logged) == bytes(write.changeset)
    con.close()


def test_rollback_logs_nothing_and_frees_the_lock(path: str) -> None:
    a = connect(path)
    b = connect(path, timeout=0.5)
    before = a.db.position()
    a.execute("UPDATE counter SET n = 100")
    a.rollback()
    b.execute("UPDATE counter SET n = n + 1")  # admitted: a released the lock
    b.commit()
    assert a.execute("SELECT n FROM counter").fetchone() == (1,)
    assert a.db.position() == before + 1
    a.close()
    b.close()


def test_context_manager_and_empty_write(path: str) -> None:
    con = connect(path)
    before = con.db.position()
    with con:
        con.execute("UPDATE counter SET n = n WHERE id = 999")  # changes nothing
    assert con.last_write is not None and con.last_write.seq is None
    assert con.db.position() == before
    with pytest.raises(ZeroDivisionError):
        with con:
            con.execute("UPDATE counter SET n = 5")
            1 / 0  # noqa: B018
    assert con.execute("SELECT n FROM counter").fetchone() == (0,)
    con.close()


def test_autocommit_modes(path: str) -> None:
    con = connect(path, isolation_level=None)
    before = con.db.position()
    con.execute("UPDATE counter SET n = n + 1")
    assert not con.in_transaction
    con.executemany("INSERT INTO item VALUES (?, 0, 0, x'00')", [(10,), (11,)])
    assert con.db.position() == before + 2  # one write per statement
    con.close()
    con = connect(path, autocommit=False)
    row = con.execute("SELECT n FROM counter").fetchone()  # the write starts here
    assert con.in_transaction
    con.execute("UPDATE counter SET n = ?", (row[0] + 1,))
    con.commit()
    assert con.execute("SELECT n FROM counter").fetchone() == (2,)
    con.rollback()
    con.close()


def test_row_factory_and_converters(path: str) -> None:
    con = connect(path, detect_types=dbapi.PARSE_COLNAMES)
    con.row_factory = dbapi.Row
    row = con.execute('SELECT n AS "n [text]", id FROM counter').fetchone()
    assert row["id"] == 1 and row["n"] == 0
    con.close()


def test_unsupported_statements_are_refused_before_running(path: str) -> None:
    con = connect(path)
    for sql in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "VACUUM", "ATTACH 'x' AS x",
                "CREATE TABLE x(a)", "DROP TABLE item", "PRAGMA foreign_keys = OFF"):
        with pytest.raises(dbapi.NotSupportedError):
            con.execute(sql)
    with pytest.raises(dbapi.NotSupportedError):
        con.executescript("SELECT 1;")
    with pytest.raises(dbapi.NotSupportedError):
        con.create_function("f", 0, lambda: 1)
    with pytest.raises(dbapi.NotSupportedError):
        con.iterdump()
    con.execute("UPDATE counter SET n = 1")
    con.execute("SAVEPOINT s")  # inside a write: fine
    con.execute("UPDATE counter SET n = 2")
    con.execute("ROLLBACK TO s")
    con.commit()
    assert con.execute("SELECT n FROM counter").fetchone() == (1,)
    result = con.migrate("CREATE TABLE extra(id INTEGER PRIMARY KEY)", label="ddl")
    assert result.kind == "ddl" and result.seq == con.db.position()
    con.execute("INSERT INTO extra VALUES (1)")
    con.commit()
    with pytest.raises(dbapi.IntegrityError):
        con.execute("INSERT INTO extra VALUES (1)")
    con.rollback()
    con.close()
    with pytest.raises(dbapi.ProgrammingError):
        con.execute("SELECT 1")


def _worker(path: str, writer: int, count: int, autocommit: object) -> None:
    con = dbapi.connect(path, coordinated=True, label=f"w{writer}", autocommit=autocommit,
                        stale_timeout=5, heartbeat_interval=0.5, timeout=60)
    for k in range(count):
        if autocommit is False:
            # read-modify-write in Python: one atomic write with autocommit=False
            (n,) = con.execute("SELECT n FROM counter").fetchone()
            con.execute("UPDATE counter SET n = ?", (n + 1,))
        else:
            con.execute("UPDATE counter SET n = n + 1")
        con.execute("INSERT INTO item VALUES (NULL, ?, ?, ?)", (writer, k, os.urandom(8)))
        con.commit()
    con.close()


@pytest.mark.parametrize("autocommit", [dbapi.LEGACY_TRANSACTION_CONTROL, False])
def test_processes_no_lost_update_and_log_matches(path: str, autocommit: object, tmp_path: Path) -> None:
    writers, count = 4, 40 * STRESS_SCALE
    ctx = mp_context()
    before = sss.open(path).position()
    procs = [ctx.Process(target=_worker, args=(path, w, count, autocommit)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    db = sss.open(path)
    with db.read() as r:
        assert r.fetchall("SELECT n FROM counter") == [(writers * count,)]
        assert r.fetchall("SELECT count(*) FROM item") == [(writers * count,)]
    entries = list(db.log(since=before))
    assert len(entries) == writers * count
    assert sorted({e.label for e in entries}) == [f"w{w}" for w in range(writers)]
    # Replaying the log onto a copy of the starting state gives the same data.
    replica = sss.connect(tmp_path / "replica.db")
    replica.executescript(
        "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
        "INSERT INTO counter VALUES (1, 0);"
        "CREATE TABLE item(id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, k INTEGER NOT NULL, "
        "payload BLOB NOT NULL)")
    for entry in entries:
        entry.apply_to(replica)
    with db.read() as r:
        assert user_tables(replica) == user_tables(r.connection)
    replica.close()
    db.close()
