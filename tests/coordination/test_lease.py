"""The write lease (``sss.open(..., linger=...)``, PROTOCOL.md §2.11), with
real processes and real signals.

Leases belong to lock protocol v1 (lock directories: network mode); in
trusted and wal modes (v2, an operating-system lock) taking the lock costs
microseconds and ``linger`` is ignored.  So every database here is opened in
network mode unless a test says otherwise.

A holder keeps the outer lock for ``linger`` seconds after a write; a waiter
announces itself with ``want-<owner_id>`` in the lock directory and the
holder hands over at once when idle, or at the end of its current write.
Lingers here are long (minutes) and the waiters' timeouts short, so a
hand-over that did not happen fails the test with LockTimeout instead of
merely making it slow.  No assertion is on time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from _database_workers import STALE, increment, mp_context, replay, user_tables
from _database_workers import make_counter_db as _make_counter_db
from _database_workers import open_db as _open_db

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.lock import WANT_PREFIX, DirectoryLock

posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

LONG = 600.0  # a linger no test waits out


def open_db(path: str, **kw):
    kw.setdefault("mode", "network")
    return _open_db(path, **kw)


def make_counter_db(path: str) -> None:
    _make_counter_db(path, mode="network")


def _log(path: str) -> list[tuple[int, str | None, str]]:
    with open_db(path) as db:
        return [(e.seq, e.label, e.owner) for e in db.log()]


def _counter(path: str) -> int:
    with sss.connect(path) as con:
        return con.execute("SELECT n FROM counter").fetchone()[0]


# -- workers (module level: they run in child processes) ----------------------


def _lingering_holder(path: str, conn, stale_timeout: float = STALE, heartbeat: float = 0.3) -> None:
    """Write once, report the owner, then linger; on each "write" message
    write again and report (label, owner) or the error."""
    db = open_db(path, linger=LONG, stale_timeout=stale_timeout, heartbeat_interval=heartbeat)
    res = db.write(increment, label="h1")
    conn.send(("lingering", res.owner))
    n = 1
    while (msg := conn.recv()) != "stop":
        assert msg == "write"
        n += 1
        try:
            res = db.write(increment, label=f"h{n}")
            conn.send(("committed", res.owner, res.seq))
        except sss.LockCompromised as e:
            conn.send(("compromised", str(e), None))
    db.close()
    conn.send(("closed", None))


def _one_write(path: str, label: str, timeout: float, out) -> None:
    db = open_db(path, timeout=timeout)
    try:
        res = db.write(increment, label=label)
        out.put(("ok", res.seq, res.owner))
    except Exception as e:  # reported, so the test shows it
        out.put(("error", f"{type(e).__name__}: {e}", None))
    finally:
        db.close()


def _busy_holder(path: str, stop, ready, out) -> None:
    """Write back to back under the lease until told to stop."""
    db = open_db(path, linger=LONG)
    done = 0
    while not stop.is_set():
        db.write(increment, label="busy")
        done += 1
        if done == 3:
            ready.set()
    db.close()
    out.put(done)


def _counter_writer(path: str, n: int, start, out) -> None:
    db = open_db(path, linger=LONG, timeout=120)
    start.wait()
    out.put([db.write(increment, label=f"p{os.getpid()}").seq for _ in range(n)])
    db.close()


def _network_reader(path: str, out) -> None:
    db = open_db(path, mode="network", timeout=20)
    try:
        with db.read() as r:
            out.put(("ok", r.fetchall("SELECT n FROM counter")[0][0]))
    except Exception as e:
        out.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        db.close()


# -- tests ----------------------------------------------------------------------


def test_default_linger_per_mode(tmp_path):
    assert sss.DEFAULT_LINGER == {"trusted": 0.0, "wal": 0.0, "network": 0.0}
    with open_db(str(tmp_path / "t0.db"), mode="trusted") as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        assert not db.lingering and db.inspect_lock() is None  # v2: no lease by default
    with open_db(str(tmp_path / "t.db"), mode="trusted", linger=5) as db:
        assert db.linger == 5  # v2 keeps the OS lock as a lease when asked (bounded)
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        assert db.lingering
    with open_db(str(tmp_path / "n.db")) as db:
        assert db.linger == 0  # network: no lease unless asked for
    with open_db(str(tmp_path / "n2.db"), linger=5) as db:
        assert db.linger == 5
    with pytest.raises(sss.InterfaceError, match="linger"):
        open_db(str(tmp_path / "x.db"), linger=-1)
    with pytest.raises(sss.InterfaceError, match="linger"):
        open_db(str(tmp_path / "x.db"), linger=float("nan"))


def test_lease_admits_next_write_without_reacquiring(tmp_path):
    path = str(tmp_path / "l.db")
    make_counter_db(path)
    with open_db(path, linger=LONG) as db:
        a = db.write(increment)
        assert db.lingering and db.inspect_lock().owner.owner_id == a.owner
        b = db.write(increment)
        assert b.owner == a.owner and b.epoch == a.epoch + 1  # one tenure, fenced per write
        db.release_lease()
        assert not db.lingering and db.inspect_lock() is None
        c = db.write(increment)
        assert c.owner != a.owner and c.epoch == b.epoch + 1
    # close() ended the lease
    assert sss.inspect_lock(path) is None
    with open_db(path, linger=0) as db:
        db.write(increment)
        assert not db.lingering and db.inspect_lock() is None  # linger=0: released every write
    assert _counter(path) == 4


def test_waiter_gets_the_lock_from_an_idle_lingering_holder(tmp_path):
    path = str(tmp_path / "w.db")
    make_counter_db(path)
    ctx = mp_context()
    parent, child = ctx.Pipe()
    h = ctx.Process(target=_lingering_holder, args=(path, child))
    h.start()
    what, h_owner = parent.recv()
    assert what == "lingering"
    info = sss.inspect_lock(path)
    assert info is not None and info.owner.owner_id == h_owner  # held while idle
    out = ctx.Queue()
    # The waiter's timeout is far shorter than the holder's linger: only a
    # hand-over lets it in.
    w = ctx.Process(target=_one_write, args=(path, "waiter", 30.0, out))
    w.start()
    status, seq, w_owner = out.get(timeout=120)
    w.join(30)
    assert status == "ok", seq
    parent.send("write")  # the holder's next write: after the waiter's
    what, owner2, seq2 = parent.recv()
    assert what == "committed" and owner2 != h_owner and seq2 == seq + 1
    parent.send("stop")
    assert parent.recv()[0] == "closed"
    h.join(30)
    assert [label for _s, label, _o in _log(path)] == ["schema", "h1", "waiter", "h2"]
    assert _counter(path) == 3


def test_waiter_gets_in_while_the_holder_keeps_writing(tmp_path):
    path = str(tmp_path / "b.db")
    make_counter_db(path)
    ctx = mp_context()
    stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    h = ctx.Process(target=_busy_holder, args=(path, stop, ready, out))
    h.start()
    try:
        assert ready.wait(120)
        w = ctx.Process(target=_one_write, args=(path, "waiter", 30.0, out))
        w.start()
        status, w_seq, _owner = out.get(timeout=120)
        w.join(30)
        assert status == "ok", w_seq
        # The holder goes on writing after the hand-over.
        while _log(path)[-1][0] <= w_seq and h.is_alive():
            threading.Event().wait(0.01)
    finally:
        stop.set()
    done = out.get(timeout=120)
    h.join(30)
    labels = [label for _s, label, _o in _log(path)]
    i = labels.index("waiter")
    assert "busy" in labels[:i] and "busy" in labels[i + 1:]  # admitted mid-stream
    assert _counter(path) == done + 1


def test_two_processes_alternate_under_the_lease(tmp_path):
    path = str(tmp_path / "alt.db")
    make_counter_db(path)
    start_copy = str(tmp_path / "start.db")
    with open_db(path) as db:
        start_seq = db.backup(start_copy).seq
    ctx = mp_context()
    start, out = ctx.Event(), ctx.Queue()
    per = 100
    procs = [ctx.Process(target=_counter_writer, args=(path, per, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    seqs = sorted(s for _ in procs for s in out.get(timeout=300))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert seqs == list(range(start_seq + 1, start_seq + 2 * per + 1))  # no gap, no duplicate
    assert _counter(path) == 2 * per  # no lost update
    entries = _log(path)[start_seq:]
    assert len({label for _s, label, _o in entries}) == 2
    replayed, last = replay(path, start_copy)
    assert last == start_seq + 2 * per
    with sss.connect(path) as con:
        assert replayed == user_tables(con)
    assert sss.inspect_lock(path) is None  # both closed: leases released


@posix_signals
def test_sigkill_while_lingering_next_writer_proceeds(tmp_path):
    path = str(tmp_path / "k.db")
    make_counter_db(path)
    ctx = mp_context()
    parent, child = ctx.Pipe()
    # A long stale timeout: only the dead-pid rule can let the next writer in
    # within its timeout.
    h = ctx.Process(target=_lingering_holder, args=(path, child, 300.0, 1.0))
    h.start()
    what, h_owner = parent.recv()
    assert what == "lingering" and sss.inspect_lock(path).owner.owner_id == h_owner
    os.kill(h.pid, signal.SIGKILL)
    h.join(30)
    out = ctx.Queue()
    w = ctx.Process(target=_one_write, args=(path, "next", 30.0, out))
    w.start()
    status, seq, _owner = out.get(timeout=120)
    w.join(30)
    assert status == "ok", seq
    with sss.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert [label for _s, label, _o in _log(path)] == ["schema", "h1", "next"]
    assert _counter(path) == 2


@posix_signals
def test_lingering_holder_stopped_past_stale_timeout_reacquires_cleanly(tmp_path):
    """SIGSTOP an idle lease holder past the stale timeout; another process
    breaks the lock and commits; after SIGCONT the first one's next write
    finds its lease lost, acquires anew (new owner, fresh epoch) and commits
    on top of the other's write: nothing is lost or overwritten."""
    path = str(tmp_path / "s.db")
    make_counter_db(path)
    ctx = mp_context()
    parent, child = ctx.Pipe()
    h = ctx.Process(target=_lingering_holder, args=(path, child))
    h.start()
    what, h_owner = parent.recv()
    assert what == "lingering"
    os.kill(h.pid, signal.SIGSTOP)
    try:
        out = ctx.Queue()
        w = ctx.Process(target=_one_write, args=(path, "other", STALE * 50, out))
        w.start()
        status, seq, _owner = out.get(timeout=STALE * 60)
        w.join(30)
        assert status == "ok", seq
    finally:
        os.kill(h.pid, signal.SIGCONT)
    parent.send("write")
    what, owner2, seq2 = parent.recv()
    assert what == "committed", owner2
    assert owner2 != h_owner and seq2 == seq + 1
    parent.send("stop")
    assert parent.recv()[0] == "closed"
    h.join(30)
    assert [label for _s, label, _o in _log(path)] == ["schema", "h1", "other", "h2"]
    assert _counter(path) == 3
    with sss.connect(path) as con:
        epochs = [r[0] for r in con.execute("SELECT epoch FROM _sss_log ORDER BY seq")]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)


def _paused_lease_writer(path: str, conn) -> None:
    """Write once (taking a lease), then a second write under the lease that
    stops inside fn until the parent says go."""
    db = open_db(path, linger=LONG)
    first = db.write(increment, label="first")

    def fn(tx: sss.WriteTx) -> None:
        tx.execute("UPDATE counter SET n = n + 100 WHERE id = 1")
        conn.send(("paused", first.owner, tx.owner))
        conn.recv()

    try:
        db.write(fn, label="paused")
        conn.send(("committed", ""))
    except sss.LockCompromised as e:
        conn.send(("compromised", str(e)))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        db.close()


@posix_signals
def test_write_under_a_lease_paused_past_stale_timeout_commits_nothing(tmp_path):
    path = str(tmp_path / "p.db")
    make_counter_db(path)
    ctx = mp_context()
    parent, child = ctx.Pipe()
    a = ctx.Process(target=_paused_lease_writer, args=(path, child))
    a.start()
    what, first_owner, owner = parent.recv()
    assert what == "paused" and owner == first_owner  # admitted under the lease
    os.kill(a.pid, signal.SIGSTOP)
    try:
        out = ctx.Queue()
        b = ctx.Process(target=_one_write, args=(path, "other", STALE * 50, out))
        b.start()
        # B breaks the directory lock after the stale timeout, then waits on
        # SQLite's lock until A gives up.
        deadline_loops = 0
        while True:
            info = sss.inspect_lock(path)
            if info is not None and info.owner is not None and info.owner.owner_id != owner:
                break
            deadline_loops += 1
            assert deadline_loops < 6000, "no other writer took the lock"
            threading.Event().wait(0.02)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    parent.send("go")
    outcome, detail = parent.recv()
    a.join(30)
    assert outcome == "compromised", detail
    assert "nothing was committed" in detail
    status, seq, _o = out.get(timeout=120)
    b.join(30)
    assert status == "ok", seq
    assert [label for _s, label, _o in _log(path)] == ["schema", "first", "other"]
    assert _counter(path) == 2  # never A's +100


def _forked_child_checks(db: sss.Database, parent_owner: str, parent_pid: int, out) -> None:
    try:
        assert not db.lingering and not db._lock.is_held  # nothing inherited
        with pytest.raises(sss.InterfaceError, match="fork"):
            db.write(increment)
        info = sss.inspect_lock(db.path)
        assert info.owner.owner_id == parent_owner and info.owner.pid == parent_pid  # untouched
        db.close()  # the child's close must not release the parent's lease
        info = sss.inspect_lock(db.path)
        assert info.owner.owner_id == parent_owner
        with open_db(db.path, timeout=30.0) as own:  # its own admission: the parent hands over
            res = own.write(increment, label="child")
        out.put(("ok", res.seq))
    except BaseException as e:  # reported, so the test shows it
        out.put(("error", f"{type(e).__name__}: {e}"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_never_inherits_a_lease(tmp_path):
    path = str(tmp_path / "f.db")
    make_counter_db(path)
    ctx = mp_context()
    with open_db(path, linger=LONG) as db:
        first = db.write(increment, label="parent")
        assert db.lingering
        out = ctx.Queue()
        c = ctx.Process(target=_forked_child_checks, args=(db, first.owner, os.getpid(), out))
        c.start()
        status, detail = out.get(timeout=120)
        c.join(30)
        assert status == "ok", detail
        assert not db.lingering  # handed over to the child
        again = db.write(increment, label="parent-again")
        assert again.owner != first.owner
    assert [label for _s, label, _o in _log(path)] == ["schema", "parent", "child", "parent-again"]


def test_process_exit_releases_the_lease(tmp_path):
    path = str(tmp_path / "e.db")
    make_counter_db(path)
    code = textwrap.dedent(f"""
        import sqlite_session_safe as sss
        db = sss.open({path!r}, mode="network", linger={LONG})
        db.write(lambda tx: tx.execute("UPDATE counter SET n = n + 1"))
        assert db.lingering
        # no close(): the interpreter's exit must end the lease
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert sss.inspect_lock(path) is None
    assert _counter(path) == 1


def test_another_database_in_this_process_gets_the_lease(tmp_path):
    path = str(tmp_path / "two.db")
    make_counter_db(path)
    with open_db(path, linger=LONG) as db1, open_db(path, linger=LONG, timeout=30.0) as db2:
        a = db1.write(increment, label="one")
        assert db1.lingering
        b = db2.write(increment, label="two")  # db1's lease is handed over
        assert b.owner != a.owner and not db1.lingering and db2.lingering
        c = db1.write(increment, label="one-again")
        assert c.owner not in (a.owner, b.owner)
    assert _counter(path) == 3


def test_network_reader_gets_in_while_a_writer_lingers(tmp_path):
    path = str(tmp_path / "net.db")
    with open_db(path, mode="network", linger=LONG) as db:
        db.migrate("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
                   "INSERT INTO counter VALUES (1, 0)")
        db.write(increment)
        assert db.lingering  # asked for explicitly in network mode
        ctx = mp_context()
        out = ctx.Queue()
        r = ctx.Process(target=_network_reader, args=(path, out))
        r.start()
        status, value = out.get(timeout=120)
        r.join(30)
        assert status == "ok" and value == 1, value
        assert not db.lingering  # the reader's announcement ended the lease
        with db.read() as rd:  # this Database's own reads take the reader lock too
            assert rd.fetchall("SELECT n FROM counter") == [(1,)]


def test_only_well_formed_want_markers_end_a_lease(tmp_path):
    db = str(tmp_path / "m.sqlite")
    lock = DirectoryLock(db, heartbeat_interval=0.2, stale_timeout=1.0)
    lock.acquire()
    owner = lock.owner.owner_id
    lock.release(linger=LONG)
    assert lock.is_lingering and not lock.wanted()
    # Garbled or foreign names never count: at worst they are ignored.
    for junk in ("want-", "want-XYZ", "want-" + "A" * 32, "wanted", "want-" + "0" * 31):
        open(os.path.join(lock.lock_path, junk), "w").close()
    assert not lock.wanted()
    lock.acquire()  # reclaimed: same owner
    assert lock.owner.owner_id == owner
    lock.release(linger=LONG)
    open(os.path.join(lock.lock_path, WANT_PREFIX + "0" * 32), "w").close()
    assert lock.wanted()
    lock.acquire()  # wanted: handed over, acquired anew
    assert lock.owner.owner_id != owner
    lock.release()
    assert sss.inspect_lock(db) is None
    assert not [n for n in os.listdir(tmp_path) if n.startswith("m.sqlite.sss-lock")]
