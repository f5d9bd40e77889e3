"""Large log entries reach replicas by streaming (replica_apply.py): applied
in bounded chunks with no session, the incoming changeset copied into the
replica's own log row.  The streamed path must leave exactly what the
session path leaves (data, a log that replays to the data, chained
replicas, undo), fall back to the session path whenever that would differ
(a conflict, a replica schema a session records otherwise), and keep a
large entry's peak memory well below its size, for bundles, file
replication and NATS streams.

``wire.LARGE_BODY`` is lowered here so that small entries take the streamed
path; the memory test uses a real large entry in a child process."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from _database_workers import BEAT, STALE, open_db
from _nats import NatsServer, require_nats

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import audit, wire

FALLBACK = "applied with a session"


@pytest.fixture
def streamed(monkeypatch):
    """Every data entry above 200 bytes takes the streamed path."""
    monkeypatch.setattr(wire, "LARGE_BODY", 200)


def _fill(src: sss.Database) -> None:
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);"
                "CREATE TABLE u(a TEXT, k INTEGER, w REAL, PRIMARY KEY (a, k)) WITHOUT ROWID",
                label="schema")
    rows = [(i, f"v{i}" * 3, bytes([i % 256]) * (i % 7)) for i in range(1, 400)]
    src.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)", rows))
    src.write(lambda tx: (tx.executemany("INSERT INTO u VALUES (?, ?, ?)",
                                         [(f"a{i % 5}", i, i / 3) for i in range(200)]),
                          tx.execute("UPDATE t SET v = 'upd', b = NULL WHERE id % 3 = 0")))
    src.write(lambda tx: tx.execute("INSERT INTO t VALUES (1000, 'small', NULL)"))  # stays in memory
    src.migrate("ALTER TABLE t ADD COLUMN n INTEGER", label="add n")
    src.write(lambda tx: (tx.execute("DELETE FROM t WHERE id BETWEEN 50 AND 150"),
                          tx.execute("UPDATE t SET n = id * 2 WHERE id > 300"),
                          tx.execute("DELETE FROM u WHERE k % 2 = 1")))


def _tables(db: sss.Database) -> dict[str, list[tuple]]:
    with db.read() as r:
        names = [n for (n,) in r.fetchall("SELECT name FROM sqlite_schema WHERE type = 'table' "
                                          "AND name NOT LIKE '\\_sss\\_%' ESCAPE '\\' ORDER BY name")]
        return {n: r.fetchall(f"SELECT * FROM {n} ORDER BY 1, 2") for n in names}


def _changes(cs: bytes | None) -> list[tuple]:
    """A changeset's changes as a sorted list (order and indirect flags aside)."""
    if cs is None:
        return []
    return sorted((c.table, c.op, repr(c.old), repr(c.new)) for c in sss.Changeset(cs))


def _log(db: sss.Database) -> list[audit.LogEntry]:
    return list(db.log())


def _id(db: sss.Database) -> str:
    with db.read() as r:
        sid = audit.database_id(r.connection)
    assert sid is not None
    return sid


def _replayed(db: sss.Database, tmp_path) -> dict[str, list[tuple]]:
    """The database's log replayed on an empty file: what `check` relies on."""
    path = str(tmp_path / f"replay-{uuid.uuid4().hex[:8]}.db")
    con = sss.Connection(path)
    try:
        for e in _log(db):
            e.apply_to(con)
        names = [n for (n,) in con.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND name NOT LIKE '\\_sss\\_%' ESCAPE '\\' ORDER BY name").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY 1, 2").fetchall() for n in names}
    finally:
        con.close()


def _import(src: sss.Database, rep: sss.Database, tmp_path, **kw) -> sss.ReplicationReport:
    bundle = str(tmp_path / f"b-{uuid.uuid4().hex[:8]}.bundle")
    src.export(bundle)
    return sss.import_bundle(rep, bundle, **kw)


TRANSPORTS = {
    "file": lambda src, rep, tmp_path, **kw: sss.replicate(src, rep, **kw),
    "bundle": _import,
}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_streamed_equals_session_path(tmp_path, monkeypatch, caplog, transport):
    move = TRANSPORTS[transport]
    src = open_db(str(tmp_path / "src.db"))
    _fill(src)
    plain = open_db(str(tmp_path / "plain.db"))
    # The session path (default LARGE_BODY: nothing is large here), one
    # entry per step as the streamed path takes a large entry.
    move(src, plain, tmp_path, batch=1)
    monkeypatch.setattr(wire, "LARGE_BODY", 200)
    fast = open_db(str(tmp_path / "fast.db"))
    with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
        report = move(src, fast, tmp_path)
    assert FALLBACK not in caplog.text
    assert report.applied == 6 and report.lag == 0
    assert report.changes == sum(len(list(e.changeset or ())) for e in _log(src))
    data = _tables(src)
    assert _tables(plain) == _tables(fast) == data
    # The streamed entries' log rows hold the source's changesets byte for
    # byte; the session's hold the same changes.
    src_log, plain_log, fast_log = _log(src), _log(plain), _log(fast)
    assert len(plain_log) == len(fast_log)
    big = [e for e in src_log if e.kind == "data" and len(e.changeset or b"") > 200]
    assert len(big) == 3
    fast_data = [e for e in fast_log if e.kind == "data"]
    for s, f, p in zip([e for e in src_log if e.kind == "data"], fast_data,
                       [e for e in plain_log if e.kind == "data"], strict=True):
        assert f.label == p.label == f"replicate {_id(src)} {s.seq}..{s.seq}"
        assert _changes(f.changeset) == _changes(p.changeset) == _changes(s.changeset)
        if s in big:
            assert bytes(f.changeset) == bytes(s.changeset)
    assert [(e.kind, e.sql) for e in fast_log] == [(e.kind, e.sql) for e in plain_log]
    # Log replay = data, for both replicas.
    assert _replayed(fast, tmp_path) == _replayed(plain, tmp_path) == data
    # Chained: the streamed replica is a source in its turn (streamed again).
    chained = open_db(str(tmp_path / "chained.db"))
    move(fast, chained, tmp_path)
    assert _tables(chained) == data
    with fast.read() as r:
        assert r.fetchall("SELECT source_id, seq FROM _sss_replica") == [(_id(src), src_log[-1].seq)]
    # Undo by inverse of a streamed entry, then again: back and forth.
    last = fast_data[-1]
    before = _tables(fast)
    fast.undo(last.seq)
    assert _tables(fast) != before
    undone = _log(fast)[-1]
    fast.undo(undone.seq)
    assert _tables(fast) == before
    # Nothing is applied twice.
    again = move(src, fast, tmp_path)
    assert again.applied == 0
    for db in (src, plain, fast, chained):
        db.close()


def test_streamed_through_nats(tmp_path, streamed, caplog):
    binary = require_nats()
    server = None
    base = os.environ.get("SSS_NATS_URL", "").rstrip("/")
    if not base:
        server = NatsServer(binary, max_payload=64 * 1024)  # large entries span many messages
        base = server.url
    try:
        url = f"{base}/S{uuid.uuid4().hex[:12]}"
        src = open_db(str(tmp_path / "src.db"))
        _fill(src)
        sss.replicate(src, url)
        rep = open_db(str(tmp_path / "rep.db"))
        with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
            report = sss.replicate(url, rep)
        assert FALLBACK not in caplog.text
        assert report.applied == 6
        assert _tables(rep) == _tables(src) == _replayed(rep, tmp_path)
        for s, f in zip([e for e in _log(src) if e.kind == "data"],
                        [e for e in _log(rep) if e.kind == "data"], strict=True):
            assert _changes(f.changeset) == _changes(s.changeset)
        src.close()
        rep.close()
    finally:
        if server is not None:
            server.close()


def _pair(tmp_path, v: str = "TEXT NOT NULL"):
    """A source with 59 rows of t(id, v, n) and a replica brought up to
    date; ``v`` declares the v column."""
    src = open_db(str(tmp_path / "src.db"))
    src.migrate(f"CREATE TABLE t(id INTEGER PRIMARY KEY, v {v}, n INTEGER)")
    src.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)",
                                        [(i, f"v{i}", i) for i in range(1, 60)]))
    rep = open_db(str(tmp_path / "rep.db"))
    sss.replicate(src, rep)
    return src, rep


def _big_conflicting_write(src, rep):
    rep.write(lambda tx: (tx.execute("UPDATE t SET v = 'local' WHERE id = 1"),
                          tx.execute("INSERT INTO t VALUES (100, 'local', 0)")), label="local")
    return src.write(lambda tx: (tx.execute("UPDATE t SET v = 'remote' || id"),
                                 tx.execute("INSERT INTO t VALUES (100, 'remote', 1)")), label="remote")


def test_a_conflict_falls_back_to_the_session_path(tmp_path, streamed, caplog):
    src, rep = _pair(tmp_path)
    w = _big_conflicting_write(src, rep)
    assert len(w.changeset) > wire.LARGE_BODY
    before = (_tables(rep), len(_log(rep)))
    # Default policy: refused, naming every conflicting row; nothing changed.
    with pytest.raises(sss.ReplicationConflict) as info:
        sss.replicate(src, rep)
    assert info.value.seq == w.seq and len(info.value.rows) == 2
    assert (_tables(rep), len(_log(rep))) == before
    # OMIT: the session path applies everything else and logs what it did.
    with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
        report = sss.replicate(src, rep, on_conflict=sss.OMIT)
    assert FALLBACK in caplog.text
    assert report.applied == 1 and report.omitted == 2 and len(report.conflicts) == 2
    rows = dict((i, v) for i, v, _ in _tables(rep)["t"])
    assert rows[1] == "local" and rows[100] == "local" and rows[2] == "remote2"
    entry = _log(rep)[-1]
    logged = _changes(entry.changeset)
    assert len(logged) == len(_changes(w.changeset)) - 2  # the omitted rows are not in it
    assert _replayed(rep, tmp_path) == _tables(rep)
    rep.undo(entry.seq)
    assert dict((i, v) for i, v, _ in _tables(rep)["t"])[2] == "v2"
    src.close()
    rep.close()


@pytest.mark.parametrize("schema", [
    "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 7",       # more columns: recorded with them
    "CREATE TABLE child(id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t(id) ON DELETE CASCADE);"
    "INSERT INTO child VALUES (1, 5)",                      # a cascade changes rows not in the entry
])
def test_a_replica_schema_that_records_otherwise_falls_back(tmp_path, streamed, caplog, schema):
    src, rep = _pair(tmp_path)
    rep.migrate(schema)
    w = src.write(lambda tx: tx.execute("DELETE FROM t WHERE id <= 30"))
    assert len(w.changeset) > wire.LARGE_BODY
    with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
        sss.replicate(src, rep)
    assert FALLBACK in caplog.text
    entry = _log(rep)[-1]
    with rep.read() as r:
        assert r.fetchall("SELECT count(*) FROM t") == [(29,)]
        if "child" in schema:
            assert r.fetchall("SELECT count(*) FROM child") == [(0,)]
            assert "child" in {c.table for c in entry.changeset}
    # What the session recorded: replaying the replica's log gives its data.
    assert _replayed(rep, tmp_path) == _tables(rep)
    src.close()
    rep.close()


@pytest.mark.parametrize("clause", ["IGNORE", "REPLACE"])
def test_a_constraint_resolved_by_sqlite_itself_falls_back(tmp_path, streamed, caplog, clause):
    """UNIQUE ... ON CONFLICT IGNORE / REPLACE: SQLite skips the change (or
    deletes the other row) without a conflict for the apply to see, so only
    a session knows what changed."""
    src = open_db(str(tmp_path / "src.db"))
    src.migrate(f"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE ON CONFLICT {clause}, n INTEGER)")
    src.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'one', 1)"))
    rep = open_db(str(tmp_path / "rep.db"))
    sss.replicate(src, rep)
    rep.write(lambda tx: tx.execute("INSERT INTO t VALUES (100, 'dup', 0)"), label="local")
    rows = [(i, "dup" if i == 200 else f"v{i}", i) for i in range(200, 260)]
    w = src.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)", rows))
    assert len(w.changeset) > wire.LARGE_BODY
    before = _tables(rep)
    with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
        sss.replicate(src, rep)
    assert FALLBACK in caplog.text
    assert _replayed(rep, tmp_path) == _tables(rep)
    if clause == "IGNORE":
        # The log holds what changed on the replica (the source's changeset
        # claims row 200 inserted): its inverse undoes it.  (Under REPLACE,
        # the inverse's own inserts replace rows again: not checked here.)
        rep.undo(_log(rep)[-1].seq)
        assert _tables(rep) == before
    src.close()
    rep.close()


def test_a_collated_column_falls_back(tmp_path, streamed, caplog):
    """Under NOCASE the apply matches the replica's 'V5' for the entry's old
    'v5' without a conflict; the log must hold 'V5', so undo restores it."""
    src, rep = _pair(tmp_path, v="TEXT COLLATE NOCASE")
    rep.write(lambda tx: tx.execute("UPDATE t SET v = 'V5' WHERE id = 5"), label="local")
    w = src.write(lambda tx: tx.execute("UPDATE t SET v = 'x' || id"))
    assert len(w.changeset) > wire.LARGE_BODY
    before = _tables(rep)
    with caplog.at_level(logging.INFO, "sqlite_session_safe.replication"):
        sss.replicate(src, rep)
    assert FALLBACK in caplog.text
    rep.undo(_log(rep)[-1].seq)
    assert _tables(rep) == before
    src.close()
    rep.close()


# -- memory: a large entry applied in a child process, its peak RSS measured ------

#: The entry's size in the memory test (MB): large enough to dwarf the
#: process's own memory, small enough to run in a few seconds.
ENTRY_MB = 40

#: The child's peak RSS in KiB: VmHWM on Linux (getrusage's ru_maxrss keeps
#: the peak of the process that forked it across exec, so a child of a big
#: pytest would report pytest's), else ru_maxrss.
_CHILD = r"""
import json, resource, sys
import sqlite_session_safe as sss

def peak_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

kind, source, replica, audit = sys.argv[1:5]
rep = sss.open(replica, audit=audit == "audit")
base = peak_kb()
if kind == "bundle":
    report = sss.import_bundle(rep, source)
else:
    report = sss.replicate(source, rep)
rep.close()
print(json.dumps({"applied": report.applied, "base_kb": base, "peak_kb": peak_kb()}))
"""


@pytest.fixture(scope="module")
def big_source(tmp_path_factory):
    """A source whose second entry is an ENTRY_MB changeset (plus a bundle of it)."""
    d = tmp_path_factory.mktemp("big")
    src = open_db(str(d / "src.db"))
    src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    row = "x" * 90
    n = ENTRY_MB * 1024 * 1024 // 100
    w = src.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?)", ((i, row) for i in range(n))))
    size = len(w.changeset)
    del w
    src.export(str(d / "src.bundle"))
    src.close()
    return d, size


def _child_peak(kind: str, source: str, replica: str, audit: bool = True) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, source, replica,
                          "audit" if audit else "no-audit"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_bounded(result: dict, size: int, replica: str, bound: int, audit: bool = True) -> None:
    grew = (result["peak_kb"] - result["base_kb"]) * 1024
    assert result["applied"] == 2
    assert grew < bound, (f"peak RSS grew by {grew >> 20} MB applying a {size >> 20} MB entry "
                          f"(bound {bound >> 20} MB)")
    db = sss.open(replica, audit=audit)
    try:
        with db.read() as r:
            assert r.fetchall("SELECT count(*) FROM t") == [(ENTRY_MB * 1024 * 1024 // 100,)]
            if audit:
                assert r.fetchall("SELECT max(length(changeset)) FROM _sss_log") == [(size,)]
    finally:
        db.close()


#: What the streamed apply may add to the peak whatever the entry's size:
#: its chunks, SQLite's page cache, a NATS client's buffers (measured: 13 MB
#: for a file, about 15 more from a stream).
FIXED = 48 << 20


def _logged_bound(size: int) -> int:
    """The peak growth allowed for a replica that keeps a log.  The session
    path takes about 5.5 x the entry (measured: 242 MB for a 43 MB one).
    Streamed, the log row costs no more than the apply: it is appended with
    a zero-filled blob, which SQLite leaves unexpanded because ``changeset``
    is the last column of the replica's new ``_sss_log``, then filled with
    incremental BLOB I/O (before that column was last: 2 x the entry)."""
    return FIXED


@pytest.mark.parametrize("kind", ["bundle", "file"])
def test_large_entry_applies_in_bounded_memory(big_source, tmp_path, kind):
    d, size = big_source
    source = str(d / ("src.bundle" if kind == "bundle" else "src.db"))
    replica = str(tmp_path / "rep.db")
    _assert_bounded(_child_peak(kind, source, replica), size, replica, _logged_bound(size))


@pytest.mark.parametrize("kind", ["bundle", "file"])
def test_streamed_apply_itself_is_bounded(big_source, tmp_path, kind):
    """Without a log row to write (audit=False), applying the entry costs
    a bounded amount whatever its size: the chunks, SQLite's page cache."""
    d, size = big_source
    source = str(d / ("src.bundle" if kind == "bundle" else "src.db"))
    replica = str(tmp_path / "rep.db")
    _assert_bounded(_child_peak(kind, source, replica, audit=False), size, replica, FIXED, audit=False)


def test_large_entry_from_nats_in_bounded_memory(big_source, tmp_path):
    binary = require_nats()
    d, size = big_source
    server = None
    base = os.environ.get("SSS_NATS_URL", "").rstrip("/")
    if not base:
        server = NatsServer(binary)
        base = server.url
    try:
        url = f"{base}/M{uuid.uuid4().hex[:12]}"
        sss.replicate(str(d / "src.db"), url)
        replica = str(tmp_path / "rep.db")
        _assert_bounded(_child_peak("nats", url, replica), size, replica, _logged_bound(size))
    finally:
        if server is not None:
            server.close()


_KILLED = r"""
import sys
import sqlite_session_safe as sss
kind, source, replica, stale, beat = sys.argv[1:6]
rep = sss.open(replica, stale_timeout=float(stale), heartbeat_interval=float(beat), timeout=120)
print("r", flush=True)
if kind == "bundle":
    sss.import_bundle(rep, source)
else:
    sss.replicate(source, rep)
rep.close()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_a_streamed_apply_applies_it_once(big_source, tmp_path):
    """A replicator killed at random points of a large entry's streamed apply
    (bundle or file) leaves it applied with its cursor and one log entry, or
    not at all; the next run completes it."""
    d, size = big_source
    replica = str(tmp_path / "rep.db")
    rows = ENTRY_MB * 1024 * 1024 // 100
    rnd = random.Random(16)
    seen = set()
    for _ in range(4):
        kind = rnd.choice(("bundle", "file"))
        source = str(d / ("src.bundle" if kind == "bundle" else "src.db"))
        p = subprocess.Popen([sys.executable, "-c", _KILLED, kind, source, replica, str(STALE), str(BEAT)],
                             stdout=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"r\n"
            # Kill once the replica's file has grown by a random share of
            # the entry: its pages spill while the transaction is open, and
            # it commits only after the data and the log row (> 2 x the
            # entry) are written, so the kill lands mid-apply whatever the
            # machine's speed.
            start = os.path.getsize(replica)
            threshold = start + rnd.uniform(0.05, 0.6) * size
            deadline = time.monotonic() + 120
            while p.poll() is None and os.path.getsize(replica) < threshold and time.monotonic() < deadline:
                time.sleep(0.005)
            p.send_signal(signal.SIGKILL)
        finally:
            p.wait(30)
        with open_db(replica) as db, db.read() as r:
            names = {n for (n,) in r.fetchall("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            cursor = (r.fetchall("SELECT coalesce(max(seq), 0) FROM _sss_replica")[0][0]
                      if "_sss_replica" in names else 0)
            count = r.fetchall("SELECT count(*) FROM t")[0][0] if "t" in names else 0
            logged = (r.fetchall("SELECT length(changeset) FROM _sss_log WHERE label LIKE 'replicate % 2..2'")
                      if "_sss_log" in names else [])
        seen.add(cursor)
        assert (count, logged) == ((rows, [(size,)]) if cursor == 2 else (0, []))
    assert seen & {0, 1}, seen  # proves something only if a kill landed before the entry's commit
    with open_db(replica) as db:
        report = sss.replicate(str(d / "src.db"), db)
        assert report.last_seq == 2 and report.applied == (0 if 2 in seen else 1 if 1 in seen else 2)
        with db.read() as r:
            assert r.fetchall("SELECT count(*) FROM t") == [(rows,)]
            assert r.fetchall("SELECT length(changeset) FROM _sss_log WHERE label LIKE 'replicate % 2..2'") \
                == [(size,)]
