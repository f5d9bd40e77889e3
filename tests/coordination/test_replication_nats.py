"""Replication through a real NATS JetStream server (nats-server -js):
publish a source's log to a stream, apply a stream to replicas, exactly
once whatever is killed when; acknowledgements and wait_replicated."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from _database_workers import open_db
from _nats import NatsServer, admin, require_nats
from _replication_workers import assert_tiles, replicated_ranges, source_id, tables

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import jetstream, stream_replication

WORKERS = os.path.join(os.path.dirname(__file__), os.pardir, "_nats_workers.py")


@pytest.fixture(scope="module")
def server_url():
    """CI's server (SSS_NATS_URL), else one of our own for this module."""
    binary = require_nats()
    if os.environ.get("SSS_NATS_URL"):
        yield os.environ["SSS_NATS_URL"].rstrip("/")
        return
    server = NatsServer(binary)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def url(server_url):
    return f"{server_url}/T{uuid.uuid4().hex[:12]}"


def _source(path, n=5):
    db = open_db(str(path))
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)", label="schema")
    for i in range(1, n + 1):
        db.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"v{i}", None)))
    return db


def _stream_entries(url):
    """(seq, chunk) of every entry message the stream holds, in order."""
    target = jetstream.parse_target(url)

    async def read(js):
        info = await js.stream_info(target.stream)
        out = []
        for s in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                m = await js.get_msg(target.stream, s)
            except Exception:
                continue
            if m.subject == target.log_subject:
                out.append((int(m.headers["Sss-Seq"]), m.headers["Sss-Chunk"]))
        return out

    return admin(url.rsplit("/", 1)[0], read)


def test_round_trip_ddl_in_order_and_idempotent(tmp_path, url):
    src = _source(tmp_path / "src.db")
    src.migrate("ALTER TABLE t ADD COLUMN n INTEGER NOT NULL DEFAULT 0", label="add n")
    src.write(lambda tx: tx.execute("UPDATE t SET n = id * 10"))
    pub = sss.replicate(src, url)
    assert (pub.applied, pub.last_seq) == (8, 8)
    assert sss.replicate(src, url).applied == 0  # nothing twice
    replica = str(tmp_path / "replica.db")
    r = sss.replicate(url, replica)
    assert (r.applied, r.last_seq, r.lag) == (8, 8, 0)
    assert tables(replica) == tables(src.path)
    assert sss.replicate(url, replica).applied == 0
    assert [s for s, _ in _stream_entries(url)] == list(range(1, 9))
    # the replica keeps its own log: it can be a source in turn (chaining)
    second = str(tmp_path / "second.db")
    sss.replicate(replica, second)
    assert tables(second) == tables(src.path)
    src.close()


def test_large_entries_are_chunked_and_reassembled(tmp_path, url):
    src = _source(tmp_path / "src.db", 1)
    big = os.urandom(2_500_000)  # over the server's 1 MiB max_payload
    src.write(lambda tx: tx.execute("INSERT INTO t VALUES (100, 'big', ?)", (big,)))
    sss.replicate(src, url)
    chunks = [c for s, c in _stream_entries(url) if s == 3]
    assert len(chunks) == 3 and chunks[0].startswith("0/3")
    replica = str(tmp_path / "replica.db")
    sss.replicate(url, replica)
    assert tables(replica) == tables(src.path)
    src.close()


def test_follower_joining_late_and_resuming(tmp_path, url):
    src = _source(tmp_path / "src.db", 30)
    sss.replicate(src, url)
    early = str(tmp_path / "early.db")
    sss.replicate(url, early)
    for i in range(31, 61):
        src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, 'late', NULL)", (i,)))
    sss.replicate(src, url)
    late = str(tmp_path / "late.db")
    assert sss.replicate(url, late).applied == 61  # from the stream's start
    r = sss.replicate(url, early)  # from its cursor (found by binary search), not from 1
    assert (r.applied, r.skipped) == (30, 0)
    assert tables(late) == tables(early) == tables(src.path)
    src.close()


def test_follow_pushes_and_wait_replicated(tmp_path, url):
    import threading

    src = _source(tmp_path / "src.db", 2)
    sss.replicate(src, url)  # the stream exists before anyone waits on it
    stop = threading.Event()
    replica = str(tmp_path / "replica.db")
    threads = [threading.Thread(target=sss.follow, args=(src.path, url), kwargs={"stop": stop}),
               threading.Thread(target=sss.follow, args=(url, replica), kwargs={"stop": stop})]
    for t in threads:
        t.start()
    try:
        w = src.write(lambda tx: tx.execute("INSERT INTO t VALUES (50, 'x', NULL)"))
        acked = sss.wait_replicated(url, w.seq, 1, timeout=30)
        assert len(acked) == 1
        assert tables(replica) == tables(src.path)
        with pytest.raises(sss.ReplicationTimeout) as info:
            sss.wait_replicated(url, w.seq, 2, timeout=0.5)
        assert info.value.acked == acked and info.value.wanted == 2
        assert "1 of the 2" in str(info.value)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    src.close()


def _spawn(*args):
    return subprocess.Popen([sys.executable, WORKERS, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_wait_replicated_with_a_dead_follower(tmp_path, url):
    src = _source(tmp_path / "src.db", 3)
    sss.replicate(src, url)
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sss.replicate(url, a)
    sss.replicate(url, b)
    follower = _spawn("follow", url, b)  # b follows; a's process is gone
    try:
        w = src.write(lambda tx: tx.execute("INSERT INTO t VALUES (70, 'x', NULL)"))
        sss.replicate(src, url)
        assert len(sss.wait_replicated(url, w.seq, 1, timeout=30)) == 1
        follower.send_signal(signal.SIGKILL)
        follower.wait(10)
        w2 = src.write(lambda tx: tx.execute("INSERT INTO t VALUES (71, 'x', NULL)"))
        sss.replicate(src, url)
        t0 = time.monotonic()
        with pytest.raises(sss.ReplicationTimeout, match="0 of the 1"):
            sss.wait_replicated(url, w2.seq, 1, timeout=1.0)
        assert time.monotonic() - t0 < 20  # it gave up, it did not hang
        # both acknowledged the earlier entry (a by its one-shot replicate)
        assert len(sss.wait_replicated(url, w.seq - 1, 2, timeout=10)) == 2
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(10)
    src.close()


def _kill_rounds(procs, rnd, rounds):
    """Kill and restart every process at random points, ``rounds`` times."""
    kills = 0
    for _ in range(rounds):
        time.sleep(rnd.uniform(0.05, 0.8))
        for i, (args, p) in enumerate(procs):
            if rnd.random() < 0.6:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
                kills += 1
                procs[i] = (args, _spawn(*args))
    return kills


@pytest.mark.parametrize("seed", [1, 2])
def test_publisher_and_followers_killed_at_random(tmp_path, url, seed):
    """A writer keeps writing (data, DDL, an entry of several chunks) while
    a publisher and two followers, each its own process, are SIGKILLed at
    random points and restarted.  Afterwards every replica equals the source,
    every source entry is in the stream exactly once and was applied exactly
    once by each replica."""
    rnd = random.Random(seed)
    src_path = str(tmp_path / "src.db")
    src = _source(src_path, 1)
    replicas = [str(tmp_path / f"r{i}.db") for i in range(2)]
    procs = [(("publish", src_path, url), None)] + [(("follow", url, r), None) for r in replicas]
    procs = [(args, _spawn(*args)) for args, _ in procs]
    try:
        writes = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            i = 1000 + writes
            if writes == 40:
                src.migrate("CREATE TABLE u(k INTEGER PRIMARY KEY, x TEXT)", label="mid ddl")
            elif writes == 60:
                blob = os.urandom(2_200_000)
                src.write(lambda tx, b=blob: tx.execute("INSERT INTO t VALUES (999999, 'big', ?)", (b,)))
            else:
                src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, ?, NULL)", (i, "w")))
                if writes > 40:
                    src.write(lambda tx, i=i: tx.execute("INSERT OR REPLACE INTO u VALUES (?, 'x')",
                                                         (i % 7,)))
            writes += 1
            if writes % 15 == 0:
                kills = _kill_rounds(procs, rnd, 1)
        kills = _kill_rounds(procs, rnd, 6)
    finally:
        for _, p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
    last = src.position()
    # finish with one-shot runs (as a restarted process would)
    sss.replicate(src, url)
    for r in replicas:
        sss.replicate(url, r)
    seqs = [s for s, c in _stream_entries(url) if c.startswith("0/")]
    assert seqs == list(range(1, last + 1))  # in the stream once each, in order
    sid = source_id(src_path)
    for r in replicas:
        assert tables(r) == tables(src_path)
        with sss.connect(r) as con:
            assert_tiles(replicated_ranges(con, sid), last)  # each entry applied once
    assert kills >= 3
    src.close()


def test_stream_recreated_or_truncated_is_a_clear_error(tmp_path, url):
    src = _source(tmp_path / "src.db", 10)
    sss.replicate(src, url)
    replica = str(tmp_path / "replica.db")
    sss.replicate(url, replica)
    name = jetstream.parse_target(url).stream
    server = url.rsplit("/", 1)[0]
    # truncated: the stream's first entries are gone; a new follower cannot start
    admin(server, lambda js: js.purge_stream(name, seq=5))
    with pytest.raises(sss.LogPruned, match="entries 1..4 are no longer in it"):
        sss.replicate(url, str(tmp_path / "new.db"))
    # recreated empty: the replica followed it up to 11 and now it holds nothing of its source
    admin(server, lambda js: js.delete_stream(name))

    async def recreate(js):
        from nats.js.api import StreamConfig

        await js.add_stream(StreamConfig(name=name, subjects=[f"sss.{name}.>"], allow_rollup_hdrs=True))

    admin(server, recreate)
    with pytest.raises(sss.StreamError, match="recreated or truncated") as info:
        sss.replicate(url, replica)
    assert "up to entry 11" in str(info.value) and isinstance(info.value, sss.ReplicationError)
    # republished from the source: the replica goes on, applying nothing twice
    sss.replicate(src, url)
    assert sss.replicate(url, replica).applied == 0
    src.write(lambda tx: tx.execute("INSERT INTO t VALUES (11, 'x', NULL)"))
    sss.replicate(src, url)
    assert sss.replicate(url, replica).applied == 1
    assert tables(replica) == tables(src.path)
    src.close()


def test_another_databases_log_and_malformed_messages(tmp_path, url):
    a = _source(tmp_path / "a.db", 1)
    b = _source(tmp_path / "b.db", 1)
    sss.replicate(a, url)
    with pytest.raises(sss.StreamError, match="holds the log of database"):
        sss.replicate(b, url)
    target = jetstream.parse_target(url)
    admin(url.rsplit("/", 1)[0], lambda js: js.publish(target.log_subject, b"junk"))
    with pytest.raises(sss.StreamError, match="not a log entry"):
        sss.replicate(url, str(tmp_path / "r.db"))
    a.close()
    b.close()


def test_unreachable_server_and_missing_stream(tmp_path, server_url):
    from _nats import free_port

    src = _source(tmp_path / "src.db", 1)
    with pytest.raises(sss.StreamError, match="cannot connect"):
        sss.replicate(src, f"nats://127.0.0.1:{free_port()}/S")
    with pytest.raises(sss.StreamError, match="no such stream"):
        sss.replicate(f"{server_url}/NOPE{uuid.uuid4().hex[:6]}", str(tmp_path / "r.db"))
    src.close()


def test_cli_replicate_to_and_from_a_stream(tmp_path, url):
    src = _source(tmp_path / "src.db", 4)
    src.close()
    cli = [sys.executable, "-m", "sqlite_session_safe.faces.cli", "--json"]
    out = subprocess.run([*cli, "replicate", str(tmp_path / "src.db"), url], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*cli, "replicate", url, str(tmp_path / "r.db")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert tables(str(tmp_path / "r.db")) == tables(str(tmp_path / "src.db"))
    # --follow on a stream ends cleanly on SIGTERM
    p = subprocess.Popen([*cli, "replicate", url, str(tmp_path / "f.db"), "--follow"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(tmp_path / "f.db"):
        time.sleep(0.1)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert '"round": false' in stdout


# -- no server needed ------------------------------------------------------------


def test_parse_target_urls_contexts_and_options(tmp_path, monkeypatch):
    t = jetstream.parse_target("nats://u:p%40ss@h1:4222,h2:4223/APP?subject=my.app")
    assert t.servers == ("nats://h1:4222", "nats://h2:4223") and t.stream == "APP"
    assert (t.log_subject, t.ack_subject) == ("my.app.log", "my.app.ack")
    assert dict(t.options)["password"] == "p@ss" and "p@ss" not in str(t)
    assert str(t) == "nats://h1:4222,h2:4223/APP"
    ctxdir = tmp_path / "nats" / "context"
    ctxdir.mkdir(parents=True)
    (ctxdir / "prod.json").write_text('{"url": "nats://ctx:4222", "user": "cu", "password": "cp",'
                                      ' "creds": "~/x.creds"}')
    (tmp_path / "nats" / "context.txt").write_text("prod")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    t = jetstream.parse_target("nats:///APP")  # servers from the selected context
    assert t.servers == ("nats://ctx:4222",)
    opts = dict(t.options)
    assert opts["user"] == "cu" and opts["user_credentials"].endswith("x.creds")
    t = jetstream.parse_target("nats://h:1/APP?context=prod", nats_options={"user": "override"})
    assert dict(t.options)["user"] == "override" and t.servers == ("nats://h:1",)
    assert "tls" in dict(jetstream.parse_target("tls://h:1/APP").options)
    for bad in ("nats://h:1/", "nats://h:1/a.b", "nats://h:1/A?bogus=1", "http://h/A"):
        with pytest.raises(sss.InterfaceError):
            jetstream.parse_target(bad)
    with pytest.raises(sss.StreamError, match="context 'nope' not found"):
        jetstream.parse_target("nats://h:1/A?context=nope")
    with pytest.raises(sss.InterfaceError, match="both be streams"):
        sss.replicate("nats://h:1/A", "nats://h:1/B")


def test_publisher_wakes_at_an_in_process_commit(tmp_path, url):
    """A Database of the follower's own process wakes the publisher at once:
    with a 60 s poll, only the in-process notice can publish the entry
    within the test's bounded wait."""
    import threading

    src = _source(tmp_path / "src.db", 1)
    sss.replicate(src, url)
    stop = threading.Event()
    t = threading.Thread(target=stream_replication.publish, args=(src.path, url),
                         kwargs={"follow": True, "stop": stop, "poll": 60.0})
    t.start()
    try:
        time.sleep(0.5)  # the publisher's first round is over: it waits
        w = src.write(lambda tx: tx.execute("INSERT INTO t VALUES (60, 'x', NULL)"))
        sid = source_id(src.path)
        deadline = time.monotonic() + 20
        while jetstream.last_published(url, sid) < w.seq and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jetstream.last_published(url, sid) == w.seq
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    src.close()
