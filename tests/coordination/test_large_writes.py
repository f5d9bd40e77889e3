"""A write whose changeset is larger than ``wire.LARGE_BODY`` is logged
without holding its changeset in memory: the log row is appended with a
zero-filled blob of the changeset's size, then SQLite's streamed output is
copied into it in C (write.SessionBody, csrc/sss_session_blob.c).  The entry
must hold exactly what the session would have given (the same bytes as the
in-memory path), the result must carry it, and replay, replication and undo
must work from it.

``wire.LARGE_BODY`` is lowered so that small writes take the streamed path;
the memory tests use real large writes in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from _cli import run_json
from _database_workers import open_db, user_tables
from _log_workload import SCHEMA, WRITES

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import audit, wire


def _build(path: str, large: int, monkeypatch: pytest.MonkeyPatch) -> tuple[sss.Database, list]:
    monkeypatch.setattr(wire, "LARGE_BODY", large)
    db = open_db(path)
    db.migrate(SCHEMA, label="schema")
    return db, [db.write(fn) for fn in WRITES]


def _entries(db: sss.Database) -> list[bytes | None]:
    return [None if e.changeset is None else bytes(e.changeset) for e in db.log()]


def test_streamed_entries_are_the_in_memory_entries(tmp_path, monkeypatch):
    held, held_results = _build(str(tmp_path / "held.db"), 1 << 62, monkeypatch)
    stored: list[int] = []
    store = audit.StreamedBody.store
    monkeypatch.setattr(audit.StreamedBody, "store",
                        lambda self, con, seq: (stored.append(seq), store(self, con, seq))[1])
    streamed, results = _build(str(tmp_path / "streamed.db"), 100, monkeypatch)
    assert stored == [r.seq for r in results]  # every write took the streamed path
    try:
        assert _entries(streamed) == _entries(held)
        for got, want, entry in zip(results, held_results, list(streamed.log())[1:], strict=True):
            assert bytes(got.changeset) == bytes(want.changeset) == bytes(entry.changeset)
            assert type(got.changeset) is sss.Changeset and got.seq == entry.seq
            assert (got.committed_at, got.epoch, got.owner) == (entry.committed_at, entry.epoch, entry.owner)
        with streamed.read() as r, held.read() as h:
            assert user_tables(r.connection) == user_tables(h.connection)
    finally:
        held.close()
        streamed.close()


def test_streamed_entry_is_what_a_plain_session_records(tmp_path, monkeypatch):
    """The same statements under a plain session on a plain copy."""
    monkeypatch.setattr(wire, "LARGE_BODY", 100)
    db = open_db(str(tmp_path / "a.db"))
    db.migrate(SCHEMA)
    con = sss.connect(str(tmp_path / "plain.db"))
    con.executescript(SCHEMA)
    try:
        for fn in WRITES:
            result = db.write(fn)
            with con.transaction("immediate"), con.session() as s:
                fn(con)
                assert bytes(result.changeset) == bytes(s.changeset())
    finally:
        db.close()
        con.close()


def test_streamed_entries_replay_replicate_and_undo(tmp_path, monkeypatch):
    db, results = _build(str(tmp_path / "src.db"), 100, monkeypatch)
    try:
        with db.read() as r:
            want = user_tables(r.connection)
        # Replay the log on an empty database.
        target = sss.connect(str(tmp_path / "replay.db"))
        for e in db.log():
            e.apply_to(target)
        assert user_tables(target) == want
        target.close()
        # Replicate (file), then chain from the replica, whose own entries
        # are large too.
        rep = open_db(str(tmp_path / "rep.db"))
        sss.replicate(db, rep)
        with rep.read() as r:
            assert user_tables(r.connection) == want
        chained = str(tmp_path / "chained.db")
        sss.replicate(rep, chained)
        with sss.connect(chained) as c:
            assert user_tables(c) == want
        rep.close()
        # Undo the last write (itself a large write: its inverse).
        with db.read() as r:
            before = user_tables(r.connection)
        last = results[-1].seq
        db.undo(last)
        db.undo(db.position())  # the undo of the undo
        with db.read() as r:
            assert user_tables(r.connection) == before
        assert run_json("check", db.path)["ok"]
    finally:
        db.close()


def _insert_then_delete(keep: int):
    return lambda tx: (
        tx.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "tmp", b"y" * 40) for i in range(500, 900)]),
        tx.execute("DELETE FROM t WHERE id >= ?", (500 + keep,)))


def test_many_rows_changed_back(tmp_path, monkeypatch):
    """A write that inserts many rows and deletes them again has a small
    changeset, logged from memory as usual; one whose changes all cancel
    out is an empty write and commits nothing."""
    monkeypatch.setattr(wire, "LARGE_BODY", 5000)
    db = open_db(str(tmp_path / "a.db"))
    db.migrate(SCHEMA)
    try:
        epoch = db.write(lambda tx: tx.execute("UPDATE t SET v = 'x' WHERE id = 1")).epoch
        assert epoch is not None
        position = db.position()
        result = db.write(_insert_then_delete(0))
        assert result.empty and result.seq is None and result.epoch is None and not result.changeset
        assert db.position() == position
        small = db.write(_insert_then_delete(2))
        assert small.seq == position + 1 and small.epoch == epoch + 1
        assert [(c.op, c.new[0]) for c in small.changeset] == [("INSERT", 500), ("INSERT", 501)]
        assert bytes(list(db.log())[-1].changeset) == bytes(small.changeset)
    finally:
        db.close()


def test_group_commit_parts_stream_their_own_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(wire, "LARGE_BODY", 100)
    db = open_db(str(tmp_path / "a.db"))
    db.migrate(SCHEMA)
    results: dict[int, sss.WriteResult] = {}
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        barrier.wait(timeout=30)
        rows = [(10_000 * (n + 1) + i, f"w{n}", b"z" * n) for i in range(200)]
        results[n] = db.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)", rows))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(results) == 4
        by_seq = {e.seq: e for e in db.log()}
        for n, r in results.items():
            assert bytes(by_seq[r.seq].changeset) == bytes(r.changeset)
            assert {c.new[1] for c in r.changeset} == {f"w{n}"} and len(list(r.changeset)) == 200
        assert run_json("check", db.path)["ok"]
    finally:
        db.close()


def test_a_large_write_to_a_table_without_primary_key(tmp_path, monkeypatch):
    monkeypatch.setattr(wire, "LARGE_BODY", 100)
    nopk = [("a" * 20, str(i)) for i in range(100)]
    keyed = [(i, "v" * 20) for i in range(100)]
    db = open_db(str(tmp_path / "a.db"))
    db.migrate("CREATE TABLE k(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE nopk(a TEXT, b TEXT)")
    try:
        position = db.position()
        with pytest.raises(sss.NoPrimaryKeyError, match="nopk"):
            db.write(lambda tx: (tx.executemany("INSERT INTO nopk VALUES (?, ?)", nopk),
                                 tx.executemany("INSERT INTO k VALUES (?, ?)", keyed)))
        assert db.position() == position
        with db.read() as r:
            assert r.fetchall("SELECT count(*) FROM nopk") == [(0,)] == r.fetchall("SELECT count(*) FROM k")
    finally:
        db.close()
    with open_db(str(tmp_path / "a.db"), rowid_tables=True) as db:
        r = db.write(lambda tx: tx.executemany("INSERT INTO nopk VALUES (?, ?)", nopk))
        assert bytes(list(db.log())[-1].changeset) == bytes(r.changeset) and len(list(r.changeset)) == 100


# -- memory: a real large write in a child process -------------------------------------

#: The changeset's size in the memory test (MB).
ENTRY_MB = 40

_CHILD = r"""
import json, sys
import sqlite_session_safe as sss
from sqlite_session_safe.coordination import wire

def peak_kb():
    with open("/proc/self/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0]

path, held, mb = sys.argv[1], sys.argv[2] == "held", int(sys.argv[3])
if held:
    wire.LARGE_BODY = 1 << 62
rows = mb * 1024 * 1024 // 100
with sss.open(path) as db:
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    row = "x" * 90
    base = peak_kb()
    w = db.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?)", ((i, row) for i in range(rows))))
    peak = peak_kb()
    entry = list(db.log())[-1]
    same = bytes(entry.changeset) == bytes(w.changeset)
print(json.dumps({"size": len(w.changeset), "grew_kb": peak - base, "same": same}))
"""


def _write_child(path: str, held: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, path, "held" if held else "streamed", str(ENTRY_MB)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_a_large_write_is_logged_in_bounded_memory(tmp_path):
    """The write's peak growth: its session (about 1.2 x the changeset for
    these rows) and the result's copy of the changeset (1 x), never the
    changeset built, copied, bound and made into a record (about 5 x)."""
    streamed = _write_child(str(tmp_path / "streamed.db"), held=False)
    held = _write_child(str(tmp_path / "held.db"), held=True)
    size = streamed["size"]
    assert streamed["same"] and held["same"] and held["size"] == size > wire.LARGE_BODY
    grew, grew_held = streamed["grew_kb"] * 1024, held["grew_kb"] * 1024
    assert grew < 3 * size, f"grew by {grew >> 20} MB writing a {size >> 20} MB changeset"
    assert grew < grew_held * 0.7, (grew >> 20, grew_held >> 20)
