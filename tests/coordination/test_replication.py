"""Replication: a replica follows a source's audit log exactly once.

Real files, real processes, real SIGKILL.  Sizes: the CI size by default;
``SSS_STRESS_SCALE=N`` multiplies the stress variants (e.g.
``SSS_STRESS_SCALE=10 pytest tests/coordination/test_replication.py -m stress``).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import pytest
from _database_workers import STRESS_SCALE, make_counter_db, mp_context, open_db, writer_loop
from _replication_workers import (
    assert_tiles,
    cursor_of,
    follower,
    replicate_once,
    replicated_ranges,
    replicator,
    source_id,
    tables,
)

import sqlite_session_safe as sss

posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


def _fill(path: str, writes: int) -> None:
    """``writes`` logged writes: each increments the counter and inserts item k."""
    make_counter_db(path)
    writer_loop(path, 0, -1, 16, stop_after=writes)


def _wait_caught_up(source: str, replica: str, limit: float = 120) -> None:
    sid = source_id(source)
    with sss.connect(source) as con:
        (target,) = con.execute("SELECT max(seq) FROM _sss_log").fetchone()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(replica) and cursor_of_safe(replica, sid) == target:
            return
        time.sleep(0.05)
    raise AssertionError(f"the follower did not reach seq {target} within {limit}s")


def cursor_of_safe(path: str, sid: str) -> int:
    try:
        return cursor_of(path, sid)
    except sss.SQLiteError:  # the follower has not created its cursor table yet
        return -1


# -- processes ---------------------------------------------------------------------


def _three_writers_one_follower(tmp_path, per: int) -> None:
    source, replica = str(tmp_path / "source.db"), str(tmp_path / "replica.db")
    make_counter_db(source)
    ctx = mp_context()
    stop = ctx.Event()
    f = ctx.Process(target=follower, args=(source, replica, stop))
    f.start()
    writers = [ctx.Process(target=writer_loop, args=(source, w, -1, 64, per)) for w in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(300)
        assert w.exitcode == 0
    try:
        _wait_caught_up(source, replica)
    finally:
        stop.set()
        f.join(60)
    assert f.exitcode == 0
    assert tables(replica) == tables(source)
    assert tables(replica)["counter"] == [(1, 3 * per)]
    sid = source_id(source)
    with sss.connect(replica) as con:
        assert_tiles(replicated_ranges(con, sid), 1 + 3 * per)
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_three_writers_while_a_follower_replicates(tmp_path):
    _three_writers_one_follower(tmp_path, 60)


@pytest.mark.stress
def test_three_writers_follower_stress(tmp_path):
    _three_writers_one_follower(tmp_path, 200 * STRESS_SCALE)


def _check_replica_prefix(replica: str, sid: str) -> int:
    """The replica is exactly the source as of its cursor: counter = data
    entries applied, items 1..n, its log's ranges tile 1..cursor."""
    with sss.connect(replica) as con:  # rolls back a killed replicator's hot journal
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        has_cursor = con.execute(
            "SELECT count(*) FROM sqlite_schema WHERE name = '_sss_replica'").fetchone()[0]
        # killed before its first step committed: no cursor table yet
        row = con.execute("SELECT seq FROM _sss_replica WHERE source_id = ?",
                          (sid,)).fetchone() if has_cursor else None
        cursor = 0 if row is None else row[0]
        if cursor == 0:
            return 0
        (n,) = con.execute("SELECT n FROM counter").fetchone()
        items = con.execute("SELECT k FROM item ORDER BY k").fetchall()
        assert n == cursor - 1  # entry 1 is the schema migration
        assert items == [(k,) for k in range(1, n + 1)]
        assert_tiles(replicated_ranges(con, sid), cursor)
    return cursor


def _kill_replicator(tmp_path, writes: int, kills: int, seed: int) -> None:
    source, replica = str(tmp_path / "source.db"), str(tmp_path / "replica.db")
    _fill(source, writes)
    sid = source_id(source)
    ctx = mp_context()
    rnd = random.Random(seed)
    cursors = []
    for _ in range(kills):
        r, w = os.pipe()
        p = ctx.Process(target=replicator, args=(source, replica, rnd.choice((1, 2, 3)), w))
        p.start()
        os.close(w)
        assert os.read(r, 1) == b"r"
        os.close(r)
        time.sleep(rnd.uniform(0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        cursors.append(_check_replica_prefix(replica, sid))
    assert cursors == sorted(cursors)  # never backwards
    # The test proves something only if kills landed mid-replication.
    assert any(0 < c < writes + 1 for c in cursors), cursors
    with open_db(replica) as db:
        report = sss.replicate(source, db)
    assert report.last_seq == writes + 1 and report.lag == 0
    assert report.applied == writes + 1 - cursors[-1]
    assert _check_replica_prefix(replica, sid) == writes + 1
    assert tables(replica) == tables(source)


@posix_signals
def test_sigkill_replicator_20_times(tmp_path):
    _kill_replicator(tmp_path, 600, 20, 6)


@posix_signals
@pytest.mark.stress
def test_sigkill_replicator_stress(tmp_path):
    _kill_replicator(tmp_path, 1000 * STRESS_SCALE, 40 * STRESS_SCALE, 7)


def test_two_replicators_into_one_replica_apply_each_entry_once(tmp_path):
    source, replica = str(tmp_path / "source.db"), str(tmp_path / "replica.db")
    _fill(source, 120)
    ctx = mp_context()
    out = ctx.Queue()
    procs = [ctx.Process(target=replicate_once, args=(source, replica, 1, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    # Together they applied every entry once; what one applied the other skipped.
    assert sum(applied for applied, _ in results) == 121
    assert tables(replica) == tables(source)
    with sss.connect(replica) as con:
        assert_tiles(replicated_ranges(con, source_id(source)), 121)


# -- in one process ------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    src = open_db(str(tmp_path / "source.db"))
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER)")
    src.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)",
                                        [(i, f"v{i}", i) for i in range(1, 6)]))
    rep = open_db(str(tmp_path / "replica.db"))
    assert sss.replicate(src, rep).applied == 2
    yield src, rep
    src.close()
    rep.close()


def _rows(db: sss.Database, sql: str = "SELECT * FROM t ORDER BY id") -> list[tuple]:
    with db.read() as r:
        return r.fetchall(sql)


def _state(db: sss.Database) -> tuple:
    """Everything a failed replication must leave unchanged."""
    with db.read() as r:
        return (r.fetchall("SELECT * FROM t ORDER BY id"), r.fetchall("SELECT * FROM _sss_replica"),
                r.seq)


def _conflicting(src: sss.Database, rep: sss.Database) -> int:
    """Local writes on the replica, then one source write touching the same
    rows: UPDATE of row 1 (DATA), INSERT of 100 (CONFLICT), UPDATE of row 2
    (NOTFOUND: deleted locally), and a clean UPDATE of row 3."""
    def local(tx):
        tx.execute("UPDATE t SET v = 'local' WHERE id = 1")
        tx.execute("INSERT INTO t VALUES (100, 'local', 0)")
        tx.execute("DELETE FROM t WHERE id = 2")
    rep.write(local, label="local")

    def remote(tx):
        tx.execute("UPDATE t SET v = 'remote' WHERE id IN (1, 2, 3)")
        tx.execute("INSERT INTO t VALUES (100, 'remote', 1)")
    return src.write(remote, label="remote").seq


def test_local_writes_default_policy_refuses_and_names_the_entry(pair):
    src, rep = pair
    seq = _conflicting(src, rep)
    before = _state(rep)
    with pytest.raises(sss.ReplicationConflict) as info:
        sss.replicate(src, rep)
    e = info.value
    assert isinstance(e, sss.ConflictAbort)
    assert e.seq == seq and e.source_id == source_id(src.path)
    assert f"entry {seq}" in str(e)
    found = {(r.type, r.table, r.pk): r for r in e.rows}
    assert set(found) == {("DATA", "t", (1,)), ("CONFLICT", "t", (100,)), ("NOTFOUND", "t", (2,))}
    assert found["DATA", "t", (1,)].expected == (1, "v1", sss.UNCHANGED)  # n not in the UPDATE
    assert found["DATA", "t", (1,)].found == (1, "local", 1)
    assert found["CONFLICT", "t", (100,)].found == (100, "local", 0)
    assert found["NOTFOUND", "t", (2,)].found is None
    assert _state(rep) == before  # nothing applied, cursor unchanged


def test_local_writes_omit(pair):
    src, rep = pair
    _conflicting(src, rep)
    report = sss.replicate(src, rep, on_conflict=sss.OMIT)
    assert report.applied == 1 and report.omitted == 3 and report.changes == 1
    assert {r.action for r in report.conflicts} == {"OMIT"}
    assert _rows(rep) == [(1, "local", 1), (3, "remote", 3), (4, "v4", 4),
                          (5, "v5", 5), (100, "local", 0)]


def test_local_writes_replace(pair):
    src, rep = pair
    _conflicting(src, rep)
    policy = {sss.ConflictType.DATA: sss.REPLACE, sss.ConflictType.CONFLICT: sss.REPLACE,
              sss.ConflictType.NOTFOUND: sss.OMIT}
    report = sss.replicate(src, rep, on_conflict=policy)
    assert report.applied == 1 and report.omitted == 1
    assert _rows(rep) == [(1, "remote", 1), (3, "remote", 3), (4, "v4", 4), (5, "v5", 5),
                          (100, "remote", 1)]


def test_local_writes_callable_and_per_table(pair):
    src, rep = pair
    _conflicting(src, rep)
    seen = []

    def decide(c: sss.Conflict):
        seen.append((c.type, c.change.key))
        return sss.REPLACE if c.type is sss.ConflictType.CONFLICT else sss.OMIT
    sss.replicate(src, rep, on_conflict=decide)
    assert sorted(t.name for t, _ in seen) == ["CONFLICT", "DATA", "NOTFOUND"]
    assert _rows(rep)[0] == (1, "local", 1) and _rows(rep)[-1] == (100, "remote", 1)
    # A per-table policy
    src.write(lambda tx: tx.execute("UPDATE t SET n = 50 WHERE id = 1"))
    rep.write(lambda tx: tx.execute("UPDATE t SET n = 60 WHERE id = 1"))
    report = sss.replicate(src, rep, on_conflict={"t": sss.OMIT})
    assert report.applied == 1 and _rows(rep)[0] == (1, "local", 60)


def test_all_omitted_still_moves_the_cursor(pair):
    src, rep = pair
    rep.write(lambda tx: tx.execute("DELETE FROM t WHERE id = 5"))
    seq = src.write(lambda tx: tx.execute("UPDATE t SET n = 0 WHERE id = 5")).seq
    position = rep.position()
    report = sss.replicate(src, rep, on_conflict=sss.OMIT)
    assert report.applied == 1 and report.last_seq == seq and report.changes == 0
    assert rep.position() == position  # no log entry for a write that changed nothing
    assert sss.replicate(src, rep).applied == 0  # and it is not applied again


def test_policy_errors_before_anything(tmp_path, pair):
    src, rep = pair
    with pytest.raises(sss.ConflictPolicyError):
        sss.replicate(src, rep, on_conflict=sss.REPLACE)
    with pytest.raises(sss.InterfaceError, match="batch"):
        sss.replicate(src, rep, batch=0)
    assert not (tmp_path / "never.db").exists()
    with pytest.raises(sss.ConflictPolicyError):
        sss.replicate(src, str(tmp_path / "never.db"), on_conflict={sss.ConflictType.NOTFOUND: sss.REPLACE})
    assert not (tmp_path / "never.db").exists()


def test_ddl_entries_followed_in_order_and_chained(tmp_path):
    a = open_db(str(tmp_path / "a.db"))
    a.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    a.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'x')"))
    a.migrate("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7; CREATE INDEX t_w ON t(w)")
    a.write(lambda tx: tx.execute("INSERT INTO t VALUES (2, 'y', 8)"))
    a.migrate("CREATE TABLE u(k TEXT PRIMARY KEY, t_id INTEGER REFERENCES t(id))")
    a.write(lambda tx: tx.execute("INSERT INTO u VALUES ('k', 2)"))
    b_path, c_path = str(tmp_path / "b.db"), str(tmp_path / "c.db")
    assert sss.replicate(a, b_path, batch=1).applied == 6
    # b keeps its own log: c follows b, not a
    assert sss.replicate(b_path, c_path).last_seq == sss.open(b_path).position()
    assert tables(c_path) == tables(b_path) == tables(a.path)
    with sss.connect(c_path) as con:
        assert con.execute("SELECT name FROM sqlite_schema WHERE name = 't_w'").fetchone()
        # c's cursor names b, not a: the source is b's own log
        assert [r[0] for r in con.execute("SELECT source_id FROM _sss_replica")] == [source_id(b_path)]
    a.close()


def test_backup_copy_becomes_a_replica(tmp_path):
    src = open_db(str(tmp_path / "source.db"))
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    for i in range(5):
        src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, ?)", (i, i)))
    copy = str(tmp_path / "copy.db")
    assert src.backup(copy).seq == 6
    src.write(lambda tx: tx.execute("UPDATE t SET v = 'new'"))
    report = sss.replicate(src, copy)
    assert report.applied == 1 and report.last_seq == 7  # only what the copy lacked
    assert tables(copy) == tables(src.path)
    # The copy's log diverges from here on: it got an identity of its own.
    assert source_id(copy) != source_id(src.path)
    assert sss.replicate(src, copy).applied == 0
    # A copy of that replica (it has a cursor table already) follows the replica.
    with open_db(copy) as mid:
        copy2 = str(tmp_path / "copy2.db")
        position = mid.backup(copy2).seq
        mid.write(lambda tx: tx.execute("DELETE FROM t WHERE id = 0"), label="local on mid")
        report = sss.replicate(mid, copy2)
        assert (report.applied, report.last_seq) == (1, position + 1)
        assert tables(copy2) == tables(copy)
        assert source_id(copy2) not in (source_id(copy), source_id(src.path))
        with sss.connect(copy2) as con:  # it also keeps mid's cursor on src
            assert dict(con.execute("SELECT source_id, seq FROM _sss_replica").fetchall()) == {
                source_id(src.path): 7, source_id(copy): position + 1}
    src.close()


def test_refusals(tmp_path, pair):
    src, rep = pair
    with pytest.raises(sss.ReplicationError, match="same database"):
        sss.replicate(src, src.path)
    plain = str(tmp_path / "plain.db")
    with sss.connect(plain) as con:
        con.execute("CREATE TABLE x(id INTEGER PRIMARY KEY)")
    with pytest.raises(sss.ReplicationError, match="no audit log"):
        sss.replicate(plain, rep)
    with pytest.raises(sss.ReplicationError, match="does not exist"):
        sss.replicate(str(tmp_path / "missing.db"), rep)
    # The source restored from an older copy: the replica is ahead of it.
    old = str(tmp_path / "old.db")
    src.backup(old)
    src.write(lambda tx: tx.execute("DELETE FROM t WHERE id = 1"))
    sss.replicate(src, rep)
    before = _state(rep)
    with pytest.raises(sss.ReplicationError, match="older copy") as info:
        sss.replicate(old, rep)
    assert info.value.source_id == source_id(src.path)
    assert _state(rep) == before
    # A source table of another shape on the replica (strict apply).
    s3, r3 = open_db(str(tmp_path / "s3.db")), open_db(str(tmp_path / "r3.db"))
    s3.migrate("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)")
    s3.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 1)"))
    r3.migrate("CREATE TABLE t(id INTEGER, v, PRIMARY KEY (v))")
    with pytest.raises(sss.ReplicationError, match="entry 2 .*primary key") as info:
        sss.replicate(s3, r3)
    assert info.value.seq == 2 and isinstance(info.value.__cause__, sss.SchemaMismatch)
    assert cursor_of(r3.path, source_id(s3.path)) == 1  # the DDL entry before it stays applied
    s3.close()
    r3.close()


def test_follow_survives_a_busy_source(tmp_path):
    path = str(tmp_path / "source.db")
    src = open_db(path, busy_timeout=0.05)
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    rep = open_db(str(tmp_path / "replica.db"))
    stop = threading.Event()
    reports = []
    t = threading.Thread(target=lambda: reports.append(
        sss.follow(src, rep, interval=0.01, stop=stop, on_report=reports.append)))
    blocker = sss.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")  # readers of the source get SQLITE_BUSY meanwhile
    t.start()
    try:
        time.sleep(0.3)
        assert t.is_alive()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for i in range(3):
        src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?)", (i,)))
    deadline = time.monotonic() + 30
    while rep_cursor(rep, src) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(30)
    total = reports[-1]
    assert total.last_seq == 4 and total.applied == 4 and total.lag == 0
    assert sum(r.applied for r in reports[:-1]) == 4  # on_report saw each round that applied
    assert _rows(rep, "SELECT * FROM t") == [(0,), (1,), (2,)]
    # stop already set: no round, the report says where things stand
    assert sss.follow(src, rep, stop=stop).last_seq == 4
    src.close()
    rep.close()


def rep_cursor(rep: sss.Database, src: sss.Database) -> int:
    with rep.read() as r:
        try:
            row = r.execute("SELECT seq FROM _sss_replica").fetchone()
        except sss.SQLiteError:
            return 0
    return 0 if row is None else row[0]


def test_conflict_inside_a_batch_names_its_entry(pair):
    """A batch is applied as one combined changeset; a conflict sends it back
    to entry-by-entry application, so the error names the entry and the
    policy sees each source change."""
    src, rep = pair
    rep.write(lambda tx: tx.execute("UPDATE t SET v = 'local' WHERE id = 4"))
    seqs = [src.write(lambda tx, i=i: tx.execute("UPDATE t SET n = n + 1 WHERE id = ?", (i,))).seq
            for i in (1, 2, 4, 5)]
    src.write(lambda tx: tx.execute("UPDATE t SET v = 'remote' WHERE id = 4"))  # the conflict
    src.write(lambda tx: tx.execute("UPDATE t SET n = 0 WHERE id = 3"))
    before = _state(rep)
    with pytest.raises(sss.ReplicationConflict) as info:
        sss.replicate(src, rep, batch=10)
    assert info.value.seq == seqs[-1] + 1
    assert [(r.pk, r.expected, r.found) for r in info.value.rows] == [
        ((4,), (4, "v4", sss.UNCHANGED), (4, "local", 5))]
    assert _state(rep) == before
    report = sss.replicate(src, rep, batch=10, on_conflict=sss.OMIT)
    assert report.applied == 6 and report.transactions == 1 and report.omitted == 1
    assert _rows(rep) == [(1, "v1", 2), (2, "v2", 3), (3, "v3", 0), (4, "local", 5), (5, "v5", 6)]
    assert tables(rep.path)["t"] == _rows(rep)


def test_follow_wakes_at_an_in_process_commit(tmp_path):
    """A Database of the follower's own process wakes ``follow`` at once:
    with interval=60, only the in-process notice can bring the write to the
    replica within the test's bounded wait; other processes' commits still
    come at the next round."""
    src = sss.open(tmp_path / "src.db")
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    replica = tmp_path / "replica.db"
    sss.replicate(src, replica)
    stop = threading.Event()
    t = threading.Thread(target=sss.follow, args=(str(tmp_path / "src.db"), replica),
                         kwargs={"interval": 60.0, "stop": stop})
    t.start()
    try:
        time.sleep(0.5)  # the first round is over: follow waits
        src.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'x')"))
        deadline = time.monotonic() + 20
        rows: list[tuple[object, ...]] = []
        while time.monotonic() < deadline:
            with sss.connect(replica, readonly=True) as con:
                rows = [tuple(r) for r in con.execute("SELECT * FROM t")]
            if rows:
                break
            time.sleep(0.05)
        assert rows == [(1, "x")]
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    src.close()
