"""Lock protocol v2 (trusted and wal modes): admission by an OS lock.

Real files, real processes, real signals; bounded waits everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _lock_workers import dead_pid, mp_context, plant_lock

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.admission import OSLock
from sqlite_session_safe.coordination.lock import DirectoryLock, inspect_lock, lock_paths
from sqlite_session_safe.coordination.owner import (
    AdmissionRecord,
    UnknownProtocolVersion,
    parse_admission,
    parse_marker,
    parse_owner,
)

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

HOLD = """
import sys, time
from sqlite_session_safe.coordination.admission import OSLock
lock = OSLock(sys.argv[1], timeout=30)
lock.acquire()
print(lock.owner.owner_id, flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


def _holder(db: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([sys.executable, "-c", HOLD, db], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, p.stdout.readline().strip()


def test_marker_and_admission_file_and_inspection(tmp_path):
    db = str(tmp_path / "a.db")
    lock = OSLock(db, timeout=5)
    with lock.acquire():
        _db, L, _r = lock_paths(db)
        assert sorted(os.listdir(L)) == ["admit", "owner.json"]
        marker = parse_marker(open(os.path.join(L, "owner.json"), "rb").read())
        assert marker.version == 2 and marker.admission == "os-lock" and marker.target == "a.db"
        info = inspect_lock(db)
        assert info is not None and info.state == "held" and info.protocol == 2
        assert info.owner.owner_id == lock.owner.owner_id and info.owner.pid == os.getpid()
        assert info.process == "alive" and not info.breakable_now
        record = parse_admission(open(os.path.join(L, "admit"), "rb").read())
        assert record == lock.owner
        lock.check()
    assert inspect_lock(db) is None  # the record of a past holder is not a holding
    # A v1 client reads the marker as an unknown version: refused, never mixed.
    with pytest.raises(UnknownProtocolVersion):
        parse_owner(open(os.path.join(L, "owner.json"), "rb").read())


def test_record_template_matches_the_json_encoder():
    rec = AdmissionRecord.create("db%s.sqlite")
    again = dataclasses.replace(AdmissionRecord.create("db%s.sqlite"), owner_id="f" * 32)
    for r in (rec, again):
        assert json.loads(r.padded()) == json.loads(r.to_json_bytes())
        assert len(r.padded()) == 1024 and parse_admission(r.padded()) == r


@posix
def test_waiter_is_admitted_when_the_holder_leaves_and_names_it_meanwhile(tmp_path):
    db = str(tmp_path / "w.db")
    holder, owner = _holder(db)
    try:
        with pytest.raises(sss.LockTimeout) as e:
            OSLock(db).acquire(timeout=0.3)
        assert owner in str(e.value) and f"pid {holder.pid}" in str(e.value)
        got = threading.Event()
        lock = OSLock(db)

        def wait() -> None:
            lock.acquire(timeout=30)
            got.set()

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.2)
        assert not got.is_set()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert got.wait(30)
        t.join(30)
        lock.release()
    finally:
        holder.kill()
        holder.wait()


@posix
def test_an_abandoned_wait_gives_the_lock_back(tmp_path):
    """A waiter that timed out keeps waiting in the kernel (a blocking fcntl
    cannot be cancelled); when it is granted, nobody wants it, and it is
    released at once: another process gets in."""
    db = str(tmp_path / "ab.db")
    holder, _owner = _holder(db)
    try:
        with pytest.raises(sss.LockTimeout):
            OSLock(db).acquire(timeout=0.2)  # its waiter thread stays blocked
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        third = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from sqlite_session_safe.coordination.admission import OSLock
            with OSLock({db!r}).acquire(timeout=20):
                print("admitted")
        """)], capture_output=True, text=True, timeout=60)
        assert third.stdout.strip() == "admitted", third.stderr
    finally:
        holder.kill()
        holder.wait()


@posix
def test_sigkilled_holder_is_replaced_at_once(tmp_path):
    db = str(tmp_path / "k.db")
    holder, owner = _holder(db)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with OSLock(db).acquire(timeout=10) as lock:
        assert lock.owner.owner_id != owner


def test_threads_of_one_process_take_turns(tmp_path):
    db = str(tmp_path / "t.db")
    inside, overlaps, done = [0], [0], []
    guard = threading.Lock()

    def work() -> None:
        lock = OSLock(db, timeout=60)
        for _ in range(50):
            with lock.acquire():
                with guard:
                    inside[0] += 1
                    overlaps[0] += inside[0] > 1
                time.sleep(0.0005)
                with guard:
                    inside[0] -= 1
        done.append(1)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(done) == 4 and overlaps == [0]


def test_same_thread_cannot_take_it_twice(tmp_path):
    db = str(tmp_path / "r.db")
    a, b = OSLock(db), OSLock(db)
    with a.acquire():
        with pytest.raises(sss.LockError, match="not reentrant"):
            b.acquire(timeout=1)


def _child_tries(db, out):
    try:
        with OSLock(db).acquire(timeout=0.5):
            out.put("admitted")
    except sss.LockTimeout:
        out.put("timeout")


@posix
def test_forked_child_does_not_inherit_the_lock(tmp_path):
    db = str(tmp_path / "f.db")
    ctx = mp_context()
    out = ctx.Queue()
    with OSLock(db).acquire():
        p = ctx.Process(target=_child_tries, args=(db, out))
        p.start()
        assert out.get(timeout=30) == "timeout"  # a new descriptor in the child: it waits
        p.join(30)
    p = ctx.Process(target=_child_tries, args=(db, out))
    p.start()
    assert out.get(timeout=30) == "admitted"
    p.join(30)


@posix
def test_parent_killed_while_a_forked_child_lives_releases_the_lock(tmp_path):
    """The child closes its inherited copy of the admission descriptor, so
    it never keeps the dead parent's lock."""
    db = str(tmp_path / "pk.db")
    code = textwrap.dedent(f"""
        import os, sys, time
        from sqlite_session_safe.coordination.admission import OSLock
        lock = OSLock({db!r}).acquire()
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        print("holding", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "holding"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        with OSLock(db).acquire(timeout=10):
            pass
    finally:
        subprocess.run(["pkill", "-f", db], check=False)


def test_live_v1_holder_is_refused_dead_one_is_broken(tmp_path):
    db = str(tmp_path / "v1.db")
    v1 = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from sqlite_session_safe.coordination.lock import DirectoryLock
        with DirectoryLock({db!r}, timeout=5):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert v1.stdout.readline().strip() == "held"
        with pytest.raises(sss.ProtocolMismatch, match="lock protocol v1"):
            OSLock(db).acquire(timeout=1)
    finally:
        v1.stdin.write("\n")
        v1.stdin.close()
        v1.wait(30)
    plant_lock(db, pid=dead_pid(), same_host=True)
    with OSLock(db).acquire(timeout=5):
        assert inspect_lock(db).protocol == 2


def test_refused_state_at_L_is_waited_on_never_broken(tmp_path):
    db = str(tmp_path / "e.db")
    os.mkdir(db + ".sss-lock")  # an empty lock directory: no compliant client leaves it
    with pytest.raises(sss.LockTimeout, match="empty"):
        OSLock(db).acquire(timeout=0.3)
    assert os.listdir(db + ".sss-lock") == []


def test_network_mode_refuses_a_v2_database_and_vice_versa(tmp_path):
    a = str(tmp_path / "a.db")
    with sss.open(a) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    with pytest.raises(sss.ProtocolMismatch, match="mode='trusted' or 'wal'"):
        sss.open(a, mode="network")
    with pytest.raises(sss.ProtocolMismatch):
        DirectoryLock(a, timeout=1).acquire()
    b = str(tmp_path / "b.db")
    with sss.open(b, mode="network") as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, sqlite_session_safe as sss
        with sss.open({b!r}, mode="network") as db:
            with db.write() as tx:  # a network writer holds the v1 lock directory
                tx.execute("INSERT INTO t DEFAULT VALUES")
                print("writing", flush=True)
                sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        with pytest.raises(sss.ProtocolMismatch, match="mode='network'"):
            sss.open(b).write(lambda tx: tx.execute("INSERT INTO t DEFAULT VALUES"))
    finally:
        writer.stdin.write("\n")
        writer.stdin.close()
        writer.wait(30)


@pytest.mark.parametrize("mode", ["trusted", "network"])
def test_forced_break_of_the_marker_compromises_the_holder(tmp_path, mode):
    """A holder whose lock is broken mid-write commits nothing, and the same
    Database writes again (network mode: the directory lock found lost is
    still released, else every later write failed with "already held by
    this thread" -- a replicator wedged so in the chaos test)."""
    db = str(tmp_path / "fb.db")
    with sss.open(db, mode) as first:
        first.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        with pytest.raises(sss.LockCompromised, match="nothing was committed"):
            with first.write() as tx:
                tx.execute("INSERT INTO t(v) VALUES ('lost')")
                assert sss.break_stale_lock(db, force=True) is True  # an operator's decision
        # The next write makes a new marker and goes on.
        assert first.write(lambda tx: tx.execute("INSERT INTO t(v) VALUES ('next')")).seq == 2
        with first.read() as r:
            assert r.fetchall("SELECT v FROM t") == [("next",)]


def test_break_stale_lock_refuses_a_v2_marker_without_force(tmp_path):
    db = str(tmp_path / "b.db")
    OSLock(db).acquire().release()
    with pytest.raises(sss.LockRefused, match="operating-system lock"):
        sss.break_stale_lock(db)


def test_lease_keeps_the_os_lock_and_ends_by_itself(tmp_path):
    """release(linger=s): the next acquire of the same object is taken back
    without a hand-over; the lease ends on its own after s, or at once with
    end_linger(); meanwhile another process waits (in the kernel)."""
    db = str(tmp_path / "lease.db")
    lock = OSLock(db)
    lock.acquire()
    first = lock.owner.owner_id
    lock.release(linger=30)
    assert lock.is_lingering and inspect_lock(db).owner.owner_id == first
    with lock.acquire():  # taken back: same tenure
        assert lock.owner.owner_id == first and not lock.is_lingering
    lock.acquire()  # the with block released it (no linger)
    lock.release(linger=30)
    other = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite_session_safe as sss
        from sqlite_session_safe.coordination.admission import OSLock
        try:
            OSLock({db!r}).acquire(timeout=0.3)
            print("admitted")
        except sss.LockTimeout:
            print("waited")
    """)], capture_output=True, text=True, timeout=60)
    assert other.stdout.strip() == "waited", other.stderr
    lock.end_linger()
    assert not lock.is_lingering and inspect_lock(db) is None
    lock.acquire()
    lock.release(linger=0.2)
    deadline = time.monotonic() + 10
    while inspect_lock(db) is not None:  # the keeper thread ends it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not lock.is_lingering


def test_database_lease_in_trusted_mode_is_bounded(tmp_path, monkeypatch):
    import sqlite_session_safe.coordination.group_commit as group_commit

    # The run of leases may last MAX_TENURE (50 ms): longer than a few writes
    # on a slow disk, so the test sets it, first long, then over.
    monkeypatch.setattr(group_commit, "MAX_TENURE", 3600.0)
    path = str(tmp_path / "t.db")
    with sss.open(path, linger=30) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        a = db.write(lambda tx: tx.execute("INSERT INTO t DEFAULT VALUES"))
        assert db.lingering
        b = db.write(lambda tx: tx.execute("INSERT INTO t DEFAULT VALUES"))
        assert b.owner == a.owner and b.epoch == a.epoch + 1  # one tenure, fenced per write
        monkeypatch.setattr(group_commit, "MAX_TENURE", 0.0)  # the run of leases is over: hand over
        db.write(lambda tx: tx.execute("INSERT INTO t DEFAULT VALUES"))
        assert not db.lingering and db.inspect_lock() is None
        db.write(lambda tx: tx.execute("INSERT INTO t DEFAULT VALUES"))
    assert sss.inspect_lock(path) is None  # close() ended the lease
