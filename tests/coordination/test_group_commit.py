"""Group commit: the writes of a Database's threads share transactions.

A write arriving while another's transaction is open runs in its turn, in a
savepoint of that transaction, with its own session, epoch step and log
entry; one COMMIT makes them all durable, and each write returns only after
it.  A write that raises rolls back only its own part.  Real files, real
threads, real processes; no assertion on time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _database_workers import replay, user_tables

import sqlite_session_safe as sss

MODES = ["trusted", "wal", "network"]


def _open(path, mode="trusted", **kw):
    db = sss.open(path, mode=mode, timeout=60, **kw)
    return db


def _setup(path, mode="trusted"):
    with _open(path, mode) as db:
        db.migrate("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
                   "INSERT INTO counter VALUES (1, 0);"
                   "CREATE TABLE item(id INTEGER PRIMARY KEY, who TEXT, n INTEGER)", label="schema")


def _wait_until(cond, limit=30.0):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def _queued(db) -> int:
    group = db._group
    return 0 if group is None else len(group.queue)


def _increment(who):
    def fn(tx):
        (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
        tx.execute("INSERT INTO item(who, n) VALUES (?, ?)", (who, n))
        return n
    return fn


@pytest.mark.parametrize("mode", MODES)
def test_threads_share_commits_without_losing_or_reordering(tmp_path, mode):
    path = str(tmp_path / "g.db")
    _setup(path, mode)
    start_copy = str(tmp_path / "start.db")
    threads, per = 8, 40
    results: dict[int, list[sss.WriteResult]] = {}
    with _open(path, mode) as db:
        start_seq = db.backup(start_copy).seq
        barrier = threading.Barrier(threads)

        def worker(i):
            barrier.wait()
            results[i] = [db.write(_increment(f"t{i}"), label=f"t{i}") for _ in range(per)]

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
            assert not t.is_alive()
        entries = list(db.log(since=start_seq))
        with db.read() as r:
            (n,) = r.fetchall("SELECT n FROM counter")[0]
            items = r.fetchall("SELECT who, n FROM item ORDER BY id")
    total = threads * per
    assert n == total
    every = [res for rs in results.values() for res in rs]
    # Each write: its own seq, consecutive together; the value it read is its
    # position in the order of commits (no lost update, no reordering).
    assert sorted(r.seq for r in every) == list(range(start_seq + 1, start_seq + total + 1))
    by_seq = {r.seq: r for r in every}
    assert [by_seq[e.seq].value for e in entries] == list(range(total))
    assert [e.label for e in entries] == [by_seq[e.seq].label for e in entries]
    assert items == [(by_seq[e.seq].label, by_seq[e.seq].value) for e in entries]
    epochs = [e.epoch for e in entries]
    assert epochs == sorted(set(epochs))  # a fenced step per write
    # The log replays to the data.
    replayed, _last = replay(path, start_copy)
    with sss.connect(path) as con:
        assert replayed == user_tables(con)


def test_a_failing_write_rolls_back_only_its_part(tmp_path):
    """The leader holds its turn until three more writes queue behind it; the
    second of those raises: the other three commit together, it does not."""
    path = str(tmp_path / "f.db")
    _setup(path)
    with _open(path) as db:
        release = threading.Event()
        outcome: dict[str, object] = {}

        def leader_fn(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('leader', 0)")
            release.wait(30)

        def failing(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('failing', 1)")
            raise ValueError("this write fails")

        def run(name, fn):
            try:
                outcome[name] = db.write(fn, label=name)
            except Exception as e:  # noqa: BLE001
                outcome[name] = e

        leader = threading.Thread(target=run, args=("leader", leader_fn))
        leader.start()
        # The only write so far opened the group: its turn is the leader's.
        _wait_until(lambda: db._group is not None and db._group.turn is not None
                    and db._group.turn is db._group.leader and db._group.in_txn)
        others = []
        for name, fn in (("a", _increment("a")), ("failing", failing), ("b", _increment("b"))):
            t = threading.Thread(target=run, args=(name, fn))
            t.start()
            others.append(t)
            queued = len(others)
            _wait_until(lambda queued=queued: _queued(db) == queued)
        release.set()
        for t in [leader, *others]:
            t.join(60)
        assert isinstance(outcome["failing"], ValueError)
        ok = [outcome[k] for k in ("leader", "a", "b")]
        assert all(isinstance(r, sss.WriteResult) for r in ok)
        assert len({r.owner for r in ok}) == 1  # one admission, one transaction
        assert [r.seq for r in ok] == [2, 3, 4]
        with db.read() as r:
            assert r.fetchall("SELECT who FROM item ORDER BY id") == [("leader",), ("a",), ("b",)]
            assert r.fetchall("SELECT n FROM counter") == [(2,)]
        assert [e.label for e in db.log(since=1)] == ["leader", "a", "b"]


def test_a_failing_leader_leaves_the_queued_writes_to_commit(tmp_path):
    path = str(tmp_path / "l.db")
    _setup(path)
    with _open(path) as db:
        release = threading.Event()
        outcome: dict[str, object] = {}

        def leader_fn(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('leader', 0)")
            release.wait(30)
            raise KeyError("the leader fails")

        def run(name, fn):
            try:
                outcome[name] = db.write(fn, label=name)
            except Exception as e:  # noqa: BLE001
                outcome[name] = e

        leader = threading.Thread(target=run, args=("leader", leader_fn))
        leader.start()
        _wait_until(lambda: db._group is not None and db._group.in_txn)
        others = []
        for name in ("a", "empty", "b"):
            fn = (lambda tx: None) if name == "empty" else _increment(name)
            t = threading.Thread(target=run, args=(name, fn))
            t.start()
            others.append(t)
            queued = len(others)
            _wait_until(lambda queued=queued: _queued(db) == queued)
        release.set()
        for t in [leader, *others]:
            t.join(60)
        assert isinstance(outcome["leader"], KeyError)
        assert outcome["empty"].seq is None and outcome["empty"].empty
        assert [outcome[k].seq for k in ("a", "b")] == [2, 3]
        with db.read() as r:
            assert r.fetchall("SELECT who FROM item ORDER BY id") == [("a",), ("b",)]
        assert db.inspect_lock() is None


def test_migration_and_data_writes_in_one_group(tmp_path):
    path = str(tmp_path / "m.db")
    _setup(path)
    with _open(path) as db:
        release = threading.Event()
        outcome: dict[str, object] = {}

        def leader_fn(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('leader', 0)")
            release.wait(30)

        def run(name, call):
            try:
                outcome[name] = call()
            except Exception as e:  # noqa: BLE001
                outcome[name] = e

        leader = threading.Thread(target=run, args=("leader", lambda: db.write(leader_fn)))
        leader.start()
        _wait_until(lambda: db._group is not None and db._group.in_txn)
        ts = [threading.Thread(target=run, args=("ddl", lambda: db.migrate(
            "CREATE TABLE extra(id INTEGER PRIMARY KEY, x)")))]
        ts[0].start()
        _wait_until(lambda: _queued(db) == 1)
        ts.append(threading.Thread(target=run, args=("after", lambda: db.write(
            lambda tx: tx.execute("INSERT INTO extra(x) VALUES ('x')")))))
        ts[1].start()
        _wait_until(lambda: _queued(db) == 2)
        release.set()
        for t in [leader, *ts]:
            t.join(60)
        assert [outcome[k].seq for k in ("leader", "ddl", "after")] == [2, 3, 4], outcome
        assert [e.kind for e in db.log(since=1)] == ["data", "ddl", "data"]


CHILD = """
import os, random, sys, threading
import sqlite_session_safe as sss
path, mode = sys.argv[1], sys.argv[2]
db = sss.open(path, mode=mode, timeout=60)
lock = threading.Lock()
def worker(i):
    rnd = random.Random(i)
    while True:
        def fn(tx):
            (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
            tx.execute("INSERT INTO item(who, n) VALUES (?, ?)", (f"p{os.getpid()}t{i}", n))
        r = db.write(fn)
        with lock:  # acknowledged: written only after db.write returned
            os.write(1, f"{r.seq}\\n".encode())
ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(6)]
os.write(1, b"ready\\n")  # before any write can print its seq
for t in ts:
    t.start()
threading.Event().wait()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("mode", ["trusted", "network"])
def test_sigkill_while_writes_wait_for_a_group_commit(tmp_path, mode):
    """Kill a process whose threads write in groups, many times: every write
    it acknowledged is in the log; the log equals the data; integrity ok."""
    path = str(tmp_path / "k.db")
    _setup(path, mode)
    start_copy = str(tmp_path / "start.db")
    with _open(path, mode) as db:
        start_seq = db.backup(start_copy).seq
    rnd = random.Random(17)
    acknowledged: list[int] = []
    for _ in range(8):
        p = subprocess.Popen([sys.executable, "-c", CHILD, path, mode],
                             stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"ready\n"
            time.sleep(rnd.uniform(0.05, 0.4))
        finally:
            os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=30)
        acknowledged += [int(x) for x in out.split()]
    assert acknowledged, "no write was acknowledged before the kills"
    with sss.connect(path) as con:  # rolls back a hot journal
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        seqs = [r[0] for r in con.execute("SELECT seq FROM _sss_log WHERE seq > ?", (start_seq,))]
        (n,) = con.execute("SELECT n FROM counter").fetchone()
    assert set(acknowledged) <= set(seqs)
    assert seqs == list(range(start_seq + 1, start_seq + 1 + len(seqs)))
    assert n == len(seqs)
    replayed, _ = replay(path, start_copy)
    with sss.connect(path) as con:
        assert replayed == user_tables(con)


def test_lone_write_runs_without_a_savepoint(tmp_path):
    """A group of one is a plain transaction (no SAVEPOINT statement)."""
    path = str(tmp_path / "s.db")
    _setup(path)
    seen: list[str] = []
    with _open(path) as db:
        db.write(lambda tx: None)  # the write connection exists now
        db._writer.set_trace_callback(seen.append)
        db.write(_increment("solo"))
        db._writer.set_trace_callback(None)
    assert not any("_sss_write_part" in s for s in seen), seen
    assert any(s == "COMMIT" for s in seen)


def test_timeout_while_queued_behind_a_long_write(tmp_path):
    path = str(tmp_path / "t.db")
    _setup(path)
    with sss.open(path, timeout=0.5) as db:
        release = threading.Event()
        leader = threading.Thread(target=lambda: db.write(lambda tx: release.wait(30)))
        leader.start()
        _wait_until(lambda: db._group is not None and db._group.in_txn)
        with pytest.raises(sss.LockTimeout, match="ahead of this one"):
            db.write(_increment("late"))
        release.set()
        leader.join(30)
        assert db.write(_increment("next")).seq == 2


def test_interrupted_member_in_child_process(tmp_path):
    """Ctrl-C in the main thread while it waits in the queue: it leaves the
    queue, commits nothing, and the others go on."""
    path = str(tmp_path / "i.db")
    _setup(path)
    code = textwrap.dedent(f"""
        import os, signal, threading, time
        import sqlite_session_safe as sss
        db = sss.open({path!r}, timeout=60)
        release = threading.Event()
        def slow(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('slow', 0)")
            release.wait(30)
        t = threading.Thread(target=lambda: db.write(slow))
        t.start()
        while db._group is None or not db._group.in_txn:
            time.sleep(0.001)
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        threading.Timer(0.6, release.set).start()
        try:
            db.write(lambda tx: tx.execute("INSERT INTO item(who, n) VALUES ('main', 1)"))
            print("main committed")
        except KeyboardInterrupt as e:
            print("main interrupted", getattr(e, "write", None) is not None)
        t.join(30)
        print("rows", [r[0] for r in db.read().__enter__().execute("SELECT who FROM item")])
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "main interrupted False" in p.stdout, (p.stdout, p.stderr)
    assert "rows ['slow']" in p.stdout


def test_an_interrupt_that_rolls_back_the_shared_transaction_fails_the_group(tmp_path):
    """SQLite rolls back the whole transaction when a write statement is
    interrupted: the earlier part waiting for the group's COMMIT learns that
    nothing of it committed (GroupRolledBack), the log still equals the data,
    and the next write works."""
    path = str(tmp_path / "i.db")
    _setup(path)
    with _open(path) as db:
        release, running = threading.Event(), threading.Event()
        outcome: dict[str, object] = {}
        txs: dict[str, sss.WriteTx] = {}

        def leader_fn(tx):
            tx.execute("INSERT INTO item(who, n) VALUES ('leader', 0)")
            release.wait(30)

        def endless(tx):
            txs["b"] = tx
            tx.execute("INSERT INTO item(who, n) VALUES ('b', 1)")
            running.set()
            tx.execute("INSERT INTO item(who, n) WITH RECURSIVE c(x) AS "
                       "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'loop', x FROM c")

        def run(name, fn):
            try:
                outcome[name] = db.write(fn, label=name)
            except Exception as e:  # noqa: BLE001
                outcome[name] = e

        leader = threading.Thread(target=run, args=("leader", leader_fn))
        leader.start()
        _wait_until(lambda: db._group is not None and db._group.in_txn)
        b = threading.Thread(target=run, args=("b", endless))
        b.start()
        _wait_until(lambda: _queued(db) == 1)
        release.set()
        assert running.wait(30)
        time.sleep(0.05)
        txs["b"].interrupt()
        leader.join(60)
        b.join(60)
        assert isinstance(outcome["b"], sss.InterruptError)
        assert isinstance(outcome["leader"], sss.GroupRolledBack)
        assert getattr(outcome["leader"], "write", None) is None
        assert list(db.log(since=1)) == []
        with db.read() as r:
            assert r.fetchall("SELECT count(*) FROM item") == [(0,)]
        assert db.write(_increment("after")).seq == 2
