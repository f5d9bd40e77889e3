"""The coordinated database across real processes: counter, SIGKILL, SIGSTOP,
backups while others write.

Sizes are the ones issue 5 names; SSS_STRESS_SCALE=N multiplies the stress
variants.  Time appears only as bounds the lock protocol defines.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time

import pytest
from _database_workers import (
    STALE,
    STRESS_SCALE,
    counter_worker,
    make_counter_db,
    mp_context,
    open_db,
    paused_writer,
    replay,
    single_write,
    user_tables,
    writer_loop,
)

import sqlite_session_safe as sss

posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


def _counter_run(tmp_path, procs: int, per: int) -> None:
    path = str(tmp_path / "counter.db")
    make_counter_db(path)
    start_copy = str(tmp_path / "start.db")
    with open_db(path) as db:
        start_seq = db.backup(start_copy).seq
    ctx = mp_context()
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=counter_worker, args=(path, per, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    start.set()
    seqs = [s for _ in workers for s in out.get(timeout=600)]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    total = procs * per
    # Every write got its own seq; together they are consecutive.
    assert sorted(seqs) == list(range(start_seq + 1, start_seq + total + 1))
    with open_db(path) as db:
        with db.read() as r:
            assert r.fetchall("SELECT n FROM counter") == [(total,)]
            assert r.seq == start_seq + total
        entries = list(db.log(since=start_seq))
        assert [e.seq for e in entries] == list(range(start_seq + 1, start_seq + total + 1))
        assert {e.kind for e in entries} == {"data"} and {e.label for e in entries} == {"inc"}
        # At least one admission per process; with the lease a process may
        # write several times under one admission when nobody waited.
        assert procs <= len({e.owner for e in entries}) <= total
        assert db.inspect_lock() is None
    # Replaying the log onto the starting copy gives the same tables.
    replayed, last = replay(path, start_copy)
    assert last == start_seq + total
    with sss.connect(path) as con:
        assert replayed == user_tables(con)


def test_four_processes_250_increments_each(tmp_path):
    _counter_run(tmp_path, 4, 250)


@pytest.mark.stress
def test_eight_processes_counter_stress(tmp_path):
    _counter_run(tmp_path, 8, 250 * STRESS_SCALE)


def _integrity(path: str) -> list[tuple]:
    with sss.connect(path) as con:  # a hot journal left by a killed writer is rolled back here
        return con.execute("PRAGMA integrity_check").fetchall()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@posix_signals
def test_sigkill_writer_at_random_moments(tmp_path):
    path = str(tmp_path / "killed.db")
    make_counter_db(path)
    start_copy = str(tmp_path / "start.db")
    with open_db(path) as db:
        db.backup(start_copy)
    ctx = mp_context()
    rnd = random.Random(20240605)
    expected = 0  # the counter value the last check saw
    for trial in range(30):
        r, w = os.pipe()
        p = ctx.Process(target=writer_loop, args=(path, trial, w, 32768))
        p.start()
        os.close(w)
        first = os.read(r, 8)  # its first write is under way
        assert len(first) == 8
        time.sleep(rnd.uniform(0, 0.04))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        announced = first + _read_all(r)
        in_flight = int.from_bytes(announced[-8:], "little")
        assert _integrity(path) == [("ok",)]
        with sss.connect(path) as con:
            (n,) = con.execute("SELECT n FROM counter").fetchone()
            items = con.execute("SELECT k FROM item ORDER BY k").fetchall()
            data_entries = con.execute(
                "SELECT count(*), max(seq) FROM _sss_log WHERE kind = 'data'").fetchone()
        # Exactly before or after the write that was in flight.
        assert n in (in_flight - 1, in_flight), (trial, n, in_flight)
        # The log agrees with the data: one entry per committed write, no more.
        assert items == [(k,) for k in range(1, n + 1)]
        assert data_entries[0] == n and (n == 0 or data_entries[1] == n + 1)
        expected = n
        # The next writer proceeds (the dead holder's lock is broken at once).
        with open_db(path, timeout=STALE * 10) as db:
            assert db.write(lambda tx: tx.execute("SELECT 1")).empty
    with open_db(path) as db:
        assert db.inspect_lock() is None
    replayed, last = replay(path, start_copy)
    assert last == expected + 1
    with sss.connect(path) as con:
        assert replayed == user_tables(con)


def _wait_for_new_owner(path: str, old_owner: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        info = sss.inspect_lock(path)
        if info is not None and info.owner is not None and info.owner.owner_id != old_owner:
            return
        time.sleep(0.02)
    raise AssertionError(f"no other writer took the lock within {limit}s")


@posix_signals
@pytest.mark.parametrize("pause_at", ["admitted", "inside"])
def test_writer_paused_past_stale_timeout_commits_nothing(tmp_path, pause_at):
    """Network mode (lock directories): a paused holder is judged stale and
    broken; when it resumes, it commits nothing."""
    path = str(tmp_path / "paused.db")
    make_counter_db(path, mode="network")
    ctx = mp_context()
    parent, child = ctx.Pipe()
    a = ctx.Process(target=paused_writer, args=(path, pause_at, child, "network"))
    a.start()
    what, a_owner = parent.recv()
    assert what == "paused"
    os.kill(a.pid, signal.SIGSTOP)
    try:
        out = ctx.Queue()
        b = ctx.Process(target=single_write, args=(path, 1, out, "network"))
        b.start()
        if pause_at == "admitted":
            # A holds only the directory lock: B judges it stale after the
            # stale timeout, breaks it and commits while A is stopped.
            b_seq, _took = out.get(timeout=STALE * 20)
            b.join(30)
            assert b_seq == 2
        else:
            # A is inside its transaction (SQLite's RESERVED lock): B breaks
            # the directory lock, then waits on SQLite until A gives up.
            _wait_for_new_owner(path, a_owner, STALE * 20)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    parent.send("go")
    outcome, detail = parent.recv()
    a.join(30)
    assert outcome == "compromised", detail
    assert "nothing was committed" in detail
    if pause_at == "inside":
        b_seq, _took = out.get(timeout=60)
        b.join(30)
        assert b_seq == 2
    assert _integrity(path) == [("ok",)]
    with open_db(path, mode="network") as db:
        with db.read() as r:
            assert r.fetchall("SELECT n FROM counter") == [(1,)]  # B's +1, never A's +100
        entries = list(db.log())
        assert [(e.seq, e.label) for e in entries] == [(1, "schema"), (2, "other")]
        assert a_owner not in {e.owner for e in entries}
        assert db.inspect_lock() is None



@posix_signals
@pytest.mark.parametrize("mode", ["trusted", "wal"])
@pytest.mark.parametrize("pause_at", ["admitted", "inside"])
def test_paused_holder_of_an_os_lock_is_waited_for_never_broken(tmp_path, mode, pause_at):
    """Trusted and wal modes (lock protocol v2): the kernel never takes the
    lock from a live process, so a paused holder is waited for, whatever the
    stale timeout.  The waiter's timeout names the holder; after SIGCONT the
    holder commits, and the next writer gets in.  Nothing is lost."""
    path = str(tmp_path / "paused.db")
    make_counter_db(path, mode=mode)
    ctx = mp_context()
    parent, child = ctx.Pipe()
    a = ctx.Process(target=paused_writer, args=(path, pause_at, child, mode))
    a.start()
    what, a_owner = parent.recv()
    assert what == "paused"
    os.kill(a.pid, signal.SIGSTOP)
    try:
        out = ctx.Queue()
        # Several stale timeouts (1.2 s) long: a v1 lock would have been broken.
        b = ctx.Process(target=single_write, args=(path, 1, out, mode, STALE * 4))
        b.start()
        kind, message = out.get(timeout=60)
        b.join(30)
        assert kind == "LockTimeout", message
        assert f"pid {a.pid}" in message and a_owner in message
    finally:
        os.kill(a.pid, signal.SIGCONT)
    parent.send("go")
    outcome, detail = parent.recv()
    a.join(30)
    assert outcome == "committed" and detail == 2, detail
    c = ctx.Process(target=single_write, args=(path, 1, out, mode))
    c.start()
    assert out.get(timeout=60)[0] == 3
    c.join(30)
    assert _integrity(path) == [("ok",)]
    with open_db(path, mode=mode) as db:
        with db.read() as r:
            assert r.fetchall("SELECT n FROM counter") == [(101,)]
        assert [(e.seq, e.label) for e in db.log()] == [(1, "schema"), (2, "paused"), (3, "other")]
        assert db.inspect_lock() is None


def test_backup_while_two_processes_write(tmp_path):
    path = str(tmp_path / "busy.db")
    make_counter_db(path)
    start_copy = str(tmp_path / "start.db")
    with open_db(path) as db:
        db.backup(start_copy)
    ctx = mp_context()
    writers = [ctx.Process(target=writer_loop, args=(path, i, -1, 2048)) for i in (1, 2)]
    for p in writers:
        p.start()
    try:
        with open_db(path) as db:
            while db.position() < 20:  # both are writing
                time.sleep(0.01)
            calls = []
            results = [db.backup(str(tmp_path / "b1.db"), progress=lambda rem, tot: calls.append((rem, tot))),
                       db.vacuum_into(str(tmp_path / "v1.db")),
                       db.copy_under_lock(str(tmp_path / "c1.db")),
                       db.backup(str(tmp_path / "b2.db"))]
            assert calls and calls[-1][0] == 0
            assert db.position() > results[0].seq  # the writers went on meanwhile
    finally:
        for p in writers:
            p.kill()
            p.join()
    for res in results:
        assert res.integrity == "ok" and res.seq >= 20 and os.path.exists(res.path)
        assert _integrity(res.path) == [("ok",)]
        fresh = str(tmp_path / f"start-{os.path.basename(res.path)}")
        shutil.copyfile(start_copy, fresh)  # replay changes its target: one copy per check
        replayed, last = replay(path, fresh, upto=res.seq)
        assert last == res.seq
        with sss.connect(res.path) as con:
            assert user_tables(con) == replayed, res.method
    # No temporary copy left behind (killed writers may leave lock leftovers: not ours).
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n and not n.startswith("busy.db")]
