"""A caller always learns whether its write committed.

* COMMIT that reports an error although the write is durable (seen over
  sshfs as SQLITE_IOERR): the exception carries the committed result as
  ``.write``, resolved from the log, so a retry never applies it twice.
* COMMIT that really failed (SQLITE_BUSY: a reader kept its lock): nothing
  committed, no ``.write``.
* A writer paused between its last lock check and COMMIT in network mode,
  resumed after its lock was broken (faults review D7): its late COMMIT is
  serialized by SQLite's lock with its successor's transaction, and the
  successor then proceeds on top of it instead of being refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import sqlite_session_safe as sss


def _db(tmp_path, **kw):
    db = sss.open(tmp_path / "t.db", **kw)
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    return db


def test_commit_error_after_a_durable_commit_carries_the_result(tmp_path, monkeypatch):
    db = _db(tmp_path)
    orig = sss.Connection.execute

    def execute(self, sql, *a, **k):
        r = orig(self, sql, *a, **k)
        if sql == "COMMIT":
            # What sshfs did: the commit reached the disk, the reply said I/O error.
            raise sss.DiskIOError("disk I/O error")
        return r

    monkeypatch.setattr(sss.Connection, "execute", execute)
    with pytest.raises(sss.DiskIOError) as e:
        db.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('a')"), label="a")
    monkeypatch.undo()
    w = e.value.write
    assert w is not None and w.seq == 2 and w.label == "a" and w.epoch == 2
    assert [(x.seq, x.label) for x in db.log(since=1)] == [(2, "a")]
    # The Database knows it committed: the next write is not refused.
    assert db.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('b')")).seq == 3
    db.close()


def test_commit_error_without_a_log_is_resolved_by_the_epoch(tmp_path, monkeypatch):
    db = sss.open(tmp_path / "n.db", audit=False)
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    orig = sss.Connection.execute

    def execute(self, sql, *a, **k):
        r = orig(self, sql, *a, **k)
        if sql == "COMMIT":
            raise sss.DiskIOError("disk I/O error")
        return r

    monkeypatch.setattr(sss.Connection, "execute", execute)
    with pytest.raises(sss.DiskIOError) as e:
        db.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('a')"))
    monkeypatch.undo()
    assert e.value.write is not None and e.value.write.seq is None
    with db.read() as r:
        assert r.fetchall("SELECT v FROM t") == [("a",)]
    db.close()


def test_commit_that_failed_reports_nothing_committed(tmp_path):
    """COMMIT needs an exclusive lock (rollback journal): a reader holding
    its shared lock past the busy timeout makes it fail for real."""
    db = _db(tmp_path, busy_timeout=0.2)
    reader = sss.connect(tmp_path / "t.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchall()
    try:
        with pytest.raises(sss.BusyError) as e:
            db.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('a')"))
        assert getattr(e.value, "write", None) is None
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert list(db.log(since=1)) == []
    assert db.lingering is False  # a failed write keeps no lease
    assert db.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('b')")).seq == 2
    with db.read() as r:
        assert r.fetchall("SELECT v FROM t") == [("b",)]
    db.close()


PAUSED_BEFORE_COMMIT = """
import os, signal, sys
import sqlite_session_safe as sss
db = sss.open(sys.argv[1], mode="network", stale_timeout=1.0, heartbeat_interval=0.3,
              timeout=30)
orig = db._lock.check
armed = [True]
def check():
    orig()
    if armed[0]:
        armed[0] = False
        print("paused", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)   # the last check passed; COMMIT is next
db._lock.check = check
def fn(tx):
    v = tx.execute("SELECT n FROM c WHERE id = 1").fetchone()[0]
    tx.execute("UPDATE c SET n = ? WHERE id = 1", (v + 1,))
    tx.execute("INSERT INTO t(who, v) VALUES ('A', ?)", (v,))
try:
    r = db.write(fn, label="A")
    print("A committed", r.seq, flush=True)
except sss.Error as e:
    print("A failed", type(e).__name__, e, flush=True)
db.close()
"""

SUCCESSOR = """
import sys, time
import sqlite_session_safe as sss
db = sss.open(sys.argv[1], mode="network", stale_timeout=1.0, heartbeat_interval=0.3,
              timeout=30)
def fn(tx):
    v = tx.execute("SELECT n FROM c WHERE id = 1").fetchone()[0]
    tx.execute("UPDATE c SET n = ? WHERE id = 1", (v + 1,))
    tx.execute("INSERT INTO t(who, v) VALUES ('B', ?)", (v,))
print("B starts", flush=True)
try:
    r = db.write(fn, label="B")
    print("B committed", r.seq, flush=True)
except sss.Error as e:
    print("B failed", type(e).__name__, e, flush=True)
db.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGSTOP/SIGCONT")
def test_network_late_commit_then_successor_proceeds(tmp_path):
    path = str(tmp_path / "late.db")
    with sss.open(path, mode="network") as db:
        db.migrate("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER);"
                   "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, v INTEGER);"
                   "INSERT INTO c VALUES (1, 0)")
    a = subprocess.Popen([sys.executable, "-c", PAUSED_BEFORE_COMMIT, path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = None
    try:
        assert a.stdout.readline().strip() == "paused"
        deadline = time.monotonic() + 10
        while _proc_state(a.pid) != "T":
            assert time.monotonic() < deadline, "A never stopped"
            time.sleep(0.01)
        b = subprocess.Popen([sys.executable, "-c", SUCCESSOR, path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert b.stdout.readline().strip() == "B starts"
        # B breaks A's lock after the 1 s stale timeout, then waits in BEGIN
        # IMMEDIATE for A's RESERVED lock.  Give it time to get there.
        time.sleep(3.0)
        assert b.poll() is None, b.communicate()
    finally:
        os.kill(a.pid, signal.SIGCONT)
    a_out, a_err = a.communicate(timeout=30)
    b_out, b_err = b.communicate(timeout=30)
    assert "A committed 2" in a_out, (a_out, a_err)
    assert "B committed 3" in b_out, (b_out, b_err)
    with sss.connect(path) as con:
        assert con.execute("SELECT n FROM c").fetchone()[0] == 2
        assert con.execute("SELECT who, v FROM t ORDER BY id").fetchall() == [("A", 0), ("B", 1)]
        log = con.execute("SELECT seq, label, epoch FROM _sss_log ORDER BY seq").fetchall()
        assert [(s, lbl) for s, lbl, _ in log] == [(1, None), (2, "A"), (3, "B")]
        epochs = [e for *_, e in log]
        assert epochs == sorted(set(epochs))
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
