"""The coordinated database in one process: open, write, audit log, log(),
migrate, reads, nesting, threads.  Real files, real SQLite."""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import typing
from collections.abc import Iterator

import pytest
from _database_workers import open_db, replay, user_tables

import sqlite_session_safe as sss


@pytest.fixture
def db(tmp_path):
    d = open_db(str(tmp_path / "app.db"))
    d.migrate("CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL)", label="schema")
    yield d
    d.close()


def put(k, v):
    return lambda tx: tx.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))


def rows(db):
    with db.read() as r:
        return r.fetchall("SELECT k, v FROM kv ORDER BY k")


# -- open ----------------------------------------------------------------------


def test_trusted_mode_pragmas_and_capabilities(db):
    caps = db.capabilities()
    assert caps["mode"] == "trusted"
    assert caps["journal_mode"] == "delete"
    assert caps["synchronous"] == "FULL"
    assert caps["foreign_keys"] is True
    assert caps["sessions"] is True and caps["audit"] is True
    assert caps["log_position"] == 1 and len(caps["database_id"]) == 32
    assert caps["tables_without_primary_key"] == []
    with db.read() as r:
        assert r.fetchall("PRAGMA foreign_keys") == [(1,)]


def test_user_pragmas_on_top_of_safe_defaults(tmp_path):
    with sss.open(tmp_path / "p.db", pragmas={"cache_size": -4000, "synchronous": "EXTRA"}) as db:
        with db.read() as r:
            assert r.fetchall("PRAGMA cache_size") == [(-4000,)]
            assert r.fetchall("PRAGMA synchronous") == [(3,)]
    with pytest.raises(sss.InterfaceError, match="decided by the mode"):
        sss.open(tmp_path / "p.db", pragmas={"journal_mode": "wal"})
    with pytest.raises(sss.InterfaceError, match="bare word"):
        sss.open(tmp_path / "p.db", pragmas={"cache_size": "1; DROP TABLE x"})


def test_wrong_parameters_are_refused(tmp_path):
    with pytest.raises(sss.InterfaceError, match="mode must be one of"):
        sss.open(tmp_path / "x.db", mode="fast")
    with pytest.raises(sss.InterfaceError, match="nolock"):
        sss.open(tmp_path / "x.db", nolock=True)
    with pytest.raises(FileNotFoundError):
        sss.open(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(IsADirectoryError):
        sss.open(tmp_path)


def test_open_takes_the_parameters_of_database(tmp_path):
    """sss.open's parameters are Database's, written once: help(), the docs
    and type checkers see them all; a call that does not fit names sss.open's
    own name and opens nothing."""
    opened = inspect.signature(sss.open)
    constructor = inspect.signature(sss.Database)
    assert list(opened.parameters.values()) == list(constructor.parameters.values())
    assert [p.kind for p in opened.parameters.values()][:2] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(opened.parameters.values())[2:])
    hints = typing.get_type_hints(sss.open)
    assert hints["return"] is sss.Database and hints["timeout"] == float | None
    assert "linger: seconds to keep the write lock" in (sss.open.__doc__ or "")
    with pytest.raises(TypeError, match=r"^open_database\(\) got an unexpected keyword argument 'nosuch'"):
        sss.open(tmp_path / "x.db", nosuch=1)
    with pytest.raises(TypeError, match=r"^open_database\(\) too many positional arguments"):
        sss.open(tmp_path / "x.db", "trusted", 5.0)
    assert not (tmp_path / "x.db").exists()
    with sss.open(tmp_path / "x.db", "wal", timeout=5, linger=0.5) as db:
        assert (db.mode, db.timeout, db.linger) == ("wal", 5, 0.5)


def test_wal_mode_on_a_local_disk(tmp_path):
    with sss.open(tmp_path / "w.db", mode="wal") as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        assert db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'a')")).seq == 2
        assert db.capabilities()["journal_mode"] == "wal"
        assert db.capabilities()["network_filesystem"] is False


def test_network_mode_reopens_and_takes_the_reader_lock(tmp_path):
    path = tmp_path / "n.db"
    with sss.open(path, mode="network", stale_timeout=3, heartbeat_interval=0.5) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        res = db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'a')"))
        assert res.seq == 2 and db._writer is None  # no connection kept between admissions
        with db.read() as r:
            info = sss.inspect_lock(path)
            assert info.state == "free" and len(info.readers) == 1  # our reader marker
            assert r.fetchall("SELECT x FROM t") == [("a",)]
        assert sss.inspect_lock(path) is None
        with db.read():
            with pytest.raises(sss.InterfaceError, match="inside a db.read"):
                db.write(lambda tx: None)


@contextlib.contextmanager
def _write_lock_held_by_another_thread(path: os.PathLike[str]) -> Iterator[None]:
    """The database's directory write lock, held by another thread (a lock
    is not reentrant within one) for the duration of the block."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with sss.DirectoryLock(str(path), "write", stale_timeout=60):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        yield
    finally:
        done.set()
        holder.join(30)


def test_network_mode_open_reads_the_file_only_once_admitted(tmp_path):
    """Where SQLite's own locks do not reach the other clients (protocol 1),
    an unlocked read at open could take a writer's live journal for hot and
    roll it back: sss.open waits for the write lock before reading the file."""
    path = tmp_path / "n.db"
    with sss.open(path, mode="network") as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    with _write_lock_held_by_another_thread(path):
        with pytest.raises(sss.LockTimeout):
            sss.open(path, mode="network", timeout=0.3)
    with sss.open(path, mode="network", timeout=5) as db:
        assert db.capabilities()["reader_lock"] is True


_KILLED_MID_COMMIT = r"""
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size = 2")  # spill: the journal is synced and pages overwritten
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE t SET b = zeroblob(3000)")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs SIGKILL and a POSIX journal")
def test_network_mode_open_touches_no_journal_before_admission(tmp_path):
    """Over a network file system a writer's live journal looks hot to another
    client (SQLite's locks do not reach it), and any read of the file, even
    the schema load of ``PRAGMA synchronous``, rolls it back, undoing that
    writer's COMMIT in flight: seen over two sshfs mounts as a lost update in
    a run where one writer's open failed (DiskIOError) and was retried.  A
    hot journal left by a writer killed mid-transaction stands in for the
    live one: while another process holds the write lock, sss.open must not
    touch it; once admitted, SQLite's recovery rolls it back as usual."""
    import subprocess
    import sys

    path = tmp_path / "n.db"
    with sss.open(path, mode="network") as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        db.write(lambda tx: tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) "
            "INSERT INTO t SELECT i, randomblob(3000) FROM n"))
        with db.read() as r:
            before = r.fetchall("SELECT id, b FROM t ORDER BY id")
    run = subprocess.run([sys.executable, "-c", _KILLED_MID_COMMIT, str(path)], timeout=60)
    assert run.returncode == -9
    journal = str(path) + "-journal"
    with open(journal, "rb") as f:
        assert f.read(8) == bytes.fromhex("d9d505f920a163d7")  # synced: hot
    with _write_lock_held_by_another_thread(path):
        with pytest.raises(sss.LockTimeout):
            sss.open(path, mode="network", timeout=0.3)
        assert os.path.exists(journal), "sss.open read the file (and rolled a journal back) unadmitted"
    with sss.open(path, mode="network", timeout=5) as db:
        assert not os.path.exists(journal)
        with db.read() as r:
            assert r.fetchall("SELECT id, b FROM t ORDER BY id") == before
            assert r.fetchall("PRAGMA integrity_check") == [("ok",)]


def test_network_mode_nolock(tmp_path):
    with pytest.raises(sss.InterfaceError, match="unsafe_nolock=True"):
        sss.open(tmp_path / "n.db", mode="network", nolock=True)
    with pytest.raises(sss.InterfaceError, match="unsafe_nolock=True"):
        sss.open(tmp_path / "n.db", mode="network", nolock=True, unsafe_nolock=1)
    with sss.open(tmp_path / "n.db", mode="network", nolock=True, unsafe_nolock=True) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'a')"))
        assert db.capabilities()["sqlite_locks"] is False
        assert [e.seq for e in db.log()] == [1, 2]


# -- writes and the log ------------------------------------------------------------


def test_write_returns_value_changeset_seq_label_timing(db):
    res = db.write(lambda tx: (put("a", 1)(tx), "done")[1], label="first")
    assert res.value == "done" and res.label == "first" and res.kind == "data"
    assert res.seq == 2 and res.epoch == 2 and not res.empty
    assert [(c.table, c.op, c.new) for c in res.changeset] == [("kv", "INSERT", ("a", 1))]
    assert res.timing.total >= res.timing.held >= 0 and res.timing.wait >= 0
    assert len(res.owner) == 32 and res.committed_at.endswith("Z")


def test_block_form_sets_result(db):
    with db.write(label="blk") as tx:
        tx.execute("INSERT INTO kv VALUES ('b', 2)")
        tx.value = 42
    assert tx.result.seq == 2 and tx.result.value == 42 and tx.result.label == "blk"
    assert rows(db) == [("b", 2)]
    with pytest.raises(sss.InterfaceError, match="not active"):
        tx.execute("SELECT 1")


def test_log_entries_hold_everything(db):
    db.write(put("a", 1), label="one")
    db.write(put("a", 2), label="two")
    entries = list(db.log())
    assert [(e.seq, e.kind, e.label) for e in entries] == [(1, "ddl", "schema"), (2, "data", "one"),
                                                          (3, "data", "two")]
    ddl, one, two = entries
    assert ddl.sql.startswith("CREATE TABLE kv") and ddl.changeset is None
    assert list(two.changeset)[0].old == ("a", 1)
    assert {e.pid for e in entries} == {os.getpid()}
    assert [e.epoch for e in entries] == [1, 2, 3]
    assert one.committed <= two.committed
    assert [e.seq for e in db.log(since=2)] == [3]
    # The log never records itself or the epoch table.
    assert all(not c.table.startswith("_sss_") for e in entries[1:] for c in e.changeset)


def test_log_is_read_in_batches_past_256(db):
    for i in range(300):
        db.write(put(f"k{i:03d}", i))
    assert [e.seq for e in db.log(since=10)] == list(range(11, 302))


def test_empty_write_commits_nothing(db):
    res = db.write(lambda tx: tx.execute("UPDATE kv SET v = 0 WHERE k = 'nope'"))
    assert res.empty and res.seq is None and res.epoch is None
    assert [e.seq for e in db.log()] == [1]
    with db.read() as r:
        assert r.fetchall("SELECT epoch FROM _sss_lock_epoch") == [(1,)]


def test_fn_raising_rolls_back_and_logs_nothing(db):
    db.write(put("a", 1))

    def bad(tx):
        tx.execute("UPDATE kv SET v = 99")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        db.write(bad)
    assert rows(db) == [("a", 1)] and [e.seq for e in db.log()] == [1, 2]
    assert db.inspect_lock() is None or db.lingering  # released, or kept as our lease
    assert db.write(put("b", 2)).seq == 3  # the next write proceeds


def test_keyboard_interrupt_rolls_back_and_releases(db):
    def interrupted(tx):
        tx.execute("INSERT INTO kv VALUES ('x', 1)")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        db.write(interrupted)
    with pytest.raises(KeyboardInterrupt):
        with db.write() as tx:
            tx.execute("INSERT INTO kv VALUES ('y', 1)")
            raise KeyboardInterrupt
    assert rows(db) == [] and (db.inspect_lock() is None or db.lingering)
    assert db.write(put("z", 1)).seq == 2


def test_constraint_error_in_fn_rolls_back(db):
    db.write(put("a", 1))
    with pytest.raises(sss.ConstraintError):
        db.write(lambda tx: (tx.execute("INSERT INTO kv VALUES ('b', 1)"),
                             tx.execute("INSERT INTO kv VALUES ('a', 2)")))
    assert rows(db) == [("a", 1)]


def test_savepoint_inside_a_write(db):
    def fn(tx):
        tx.execute("INSERT INTO kv VALUES ('kept', 1)")
        with pytest.raises(ValueError):
            with tx.savepoint():
                tx.execute("INSERT INTO kv VALUES ('dropped', 1)")
                raise ValueError
    res = db.write(fn)
    assert [c.new[0] for c in res.changeset] == ["kept"] and rows(db) == [("kept", 1)]


def test_transaction_control_inside_a_write_is_refused(db):
    for sql in ("COMMIT", "  begin", "ROLLBACK", "VACUUM", "ATTACH 'x.db' AS x", "end transaction"):
        with pytest.raises(sss.InterfaceError, match="cannot run inside an admitted write"):
            db.write(lambda tx, sql=sql: (tx.execute("INSERT INTO kv VALUES ('a', 1)"), tx.execute(sql)))
    assert rows(db) == [] and [e.seq for e in db.log()] == [1]


def test_nested_write_is_refused_and_the_outer_one_survives(db):
    def outer(tx):
        tx.execute("INSERT INTO kv VALUES ('outer', 1)")
        with pytest.raises(sss.InterfaceError, match="cannot nest"):
            db.write(put("inner", 1))
        return "ok"

    assert db.write(outer).value == "ok"
    assert rows(db) == [("outer", 1)]


def test_read_inside_a_write_sees_the_committed_state(db):
    db.write(put("a", 1))

    def fn(tx):
        tx.execute("UPDATE kv SET v = 2")
        with db.read() as r:
            return r.fetchall("SELECT v FROM kv")

    assert db.write(fn).value == [(1,)]
    with db.read():
        with pytest.raises(sss.InterfaceError, match="inside a db.read"):
            db.write(put("b", 1))


def test_schema_change_inside_a_write_is_refused(db):
    with pytest.raises(sss.SchemaChangeInWrite, match="db.migrate"):
        db.write(lambda tx: tx.execute("CREATE TABLE other(id INTEGER PRIMARY KEY)"))
    assert db.tables_without_primary_key() == []
    with db.read() as r:
        assert r.fetchall("SELECT name FROM sqlite_schema WHERE name = 'other'") == []


def test_audit_false_keeps_no_log_and_is_refused_on_an_audited_database(tmp_path, db):
    with sss.open(tmp_path / "plain.db", audit=False) as plain:
        plain.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        res = plain.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
        assert res.seq is None and len(res.changeset) > 0
        assert list(plain.log()) == [] and plain.capabilities()["log_position"] == 0
        with plain.read() as r:
            assert r.fetchall("SELECT name FROM sqlite_schema WHERE name LIKE '_sss_log'") == []
    with pytest.raises(sss.InterfaceError, match="keeps an audit log"):
        sss.open(db.path, audit=False)


# -- migrate -------------------------------------------------------------------------


def test_migrate_logs_ddl_in_order_with_data_and_replays(tmp_path):
    path = str(tmp_path / "m.db")
    start = str(tmp_path / "start.db")
    with open_db(path) as db:
        db.backup(start)
        db.migrate("CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT); CREATE INDEX a_x ON a(x);", label="v1")
        db.write(lambda tx: tx.execute("INSERT INTO a VALUES (1, 'one')"))
        db.migrate("ALTER TABLE a ADD COLUMN y INTEGER NOT NULL DEFAULT 7; PRAGMA user_version = 2")
        db.write(lambda tx: tx.execute("UPDATE a SET y = 8 WHERE id = 1"))
        db.migrate("CREATE TRIGGER a_t AFTER INSERT ON a BEGIN UPDATE a SET y = y + 1; END")
        db.write(lambda tx: tx.execute("INSERT INTO a(id, x) VALUES (2, 'two')"))
        assert [e.kind for e in db.log()] == ["ddl", "data", "ddl", "data", "ddl", "data"]
        with pytest.raises(sss.InterfaceError, match="COMMIT cannot run"):
            db.migrate("CREATE TABLE b(id INTEGER PRIMARY KEY); COMMIT; "
                       "CREATE TABLE c(id INTEGER PRIMARY KEY)")
        with pytest.raises(sss.SQLError):
            db.migrate("CREATE TABLE b(id INTEGER PRIMARY KEY); CREATE TABLE nonsense(")
        assert db.capabilities()["log_position"] == 6  # the failed migrations left nothing
        with db.read() as r:
            assert r.fetchall("SELECT name FROM sqlite_schema WHERE name IN ('b', 'c')") == []
    replayed, last = replay(path, start)
    assert last == 6
    with sss.connect(path) as con:
        assert replayed == user_tables(con)
        assert replayed["a"] == [(1, "one", 9), (2, "two", 8)]
    with sss.connect(start) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (2,)


# -- optimistic ----------------------------------------------------------------------


def test_optimistic_write_applies_when_preconditions_hold(db):
    db.write(put("a", 10))

    def compute(ctx):
        [(v,)] = ctx.expect("SELECT v FROM kv WHERE k = 'a'")
        return lambda tx: tx.execute("UPDATE kv SET v = ? WHERE k = 'a'", (v * 2,))

    res = db.optimistic_write(compute, label="double")
    assert res.attempts == 1 and res.seq == 3 and rows(db) == [("a", 20)]


def test_optimistic_write_retries_after_a_conflict(db):
    db.write(put("a", 10))
    seen = []

    def compute(ctx):
        [(v,)] = ctx.expect("SELECT v FROM kv WHERE k = 'a'")
        seen.append(v)
        if ctx.attempt == 1:
            # Another writer changes the row between baseline and admission.
            t = threading.Thread(target=db.write, args=(put("a", 11),))
            t.start()
            t.join()
        return lambda tx: tx.execute("UPDATE kv SET v = ? WHERE k = 'a'", (v + 100,))

    res = db.optimistic_write(compute, backoff=0.001)
    assert res.attempts == 2 and seen == [10, 11] and rows(db) == [("a", 111)]


def test_optimistic_write_gives_up_with_conflict_error(db):
    db.write(put("a", 0))
    counter = iter(range(1, 100))

    def compute(ctx):
        ctx.expect("SELECT v FROM kv WHERE k = 'a'")
        t = threading.Thread(target=db.write, args=(put("a", next(counter)),))
        t.start()
        t.join()
        return lambda tx: tx.execute("UPDATE kv SET v = -1")

    with pytest.raises(sss.ConflictError) as info:
        db.optimistic_write(compute, attempts=3, backoff=0.001)
    assert info.value.attempts == 3 and "now returns [(3,)]" in info.value.reason
    assert rows(db) == [("a", 3)]
    with pytest.raises(sss.InterfaceError, match="callable apply"):
        db.optimistic_write(lambda ctx: 5)


# -- threads -------------------------------------------------------------------------


def test_threads_share_a_database(db):
    db.write(put("n", 0))
    errors = []

    def work():
        try:
            for _ in range(50):
                db.write(lambda tx: tx.execute("UPDATE kv SET v = v + 1 WHERE k = 'n'"))
                with db.read() as r:
                    r.fetchall("SELECT * FROM kv")
        except BaseException as e:  # collected: a failure in a thread must fail the test
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rows(db) == [("n", 200)]
    assert [e.seq for e in db.log()] == list(range(1, 203))
    assert len(db._readers) >= 2  # reads ran on per-thread connections


def test_reads_are_snapshots(db):
    db.write(put("a", 1))
    with db.read() as r:
        first = r.fetchall("SELECT v FROM kv")
        t = threading.Thread(target=db.write, args=(put("b", 2),))
        t.start()
        t.join(0.3)  # its COMMIT waits for our shared lock (rollback journal)
        assert r.fetchall("SELECT v FROM kv") == first and r.seq == 2
        with db.read() as inner:
            assert inner.seq == 2  # nested reads share the snapshot
    t.join()
    assert rows(db) == [("a", 1), ("b", 2)]


def test_closed_and_forked_use_is_refused(tmp_path):
    db = open_db(str(tmp_path / "c.db"))
    db.close()
    db.close()
    with pytest.raises(sss.ClosedError):
        db.write(lambda tx: None)
    with open_db(str(tmp_path / "c.db")) as db2:
        pid = os.fork() if hasattr(os, "fork") else None
        if pid == 0:  # the child: the parent's Database must not be used
            try:
                db2.write(lambda tx: None)
            except sss.InterfaceError:
                os._exit(0)
            os._exit(1)
        if pid is not None:
            assert os.waitpid(pid, 0)[1] == 0
