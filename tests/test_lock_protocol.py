"""The published protocol: example owner.json files, schema validation, and
the fencing epoch (on stdlib sqlite3 connections)."""

from __future__ import annotations

import glob
import json
import os
import sqlite3
import threading

import pytest
from _lock_workers import EXAMPLES

from sqlite_session_safe.coordination.errors import (
    EpochMismatch,
    FencingError,
    OwnerFormatError,
    UnknownProtocolVersion,
)
from sqlite_session_safe.coordination.fencing import (
    EPOCH_TABLE,
    advance_epoch,
    ensure_epoch_table,
    read_epoch,
)
from sqlite_session_safe.coordination.lock import DirectoryLock, inspect_lock
from sqlite_session_safe.coordination.owner import OwnerRecord, parse_owner

PROTOCOL_MD = os.path.join(os.path.dirname(__file__), os.pardir, "PROTOCOL.md")


def _example(name: str) -> bytes:
    with open(os.path.join(EXAMPLES, name), "rb") as f:
        return f.read()


def test_examples_exist_and_valid_ones_parse():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.json")))
    valid = [n for n in names if n.startswith("owner-")]
    assert len(valid) >= 3
    for name in valid:
        rec = parse_owner(_example(name))
        assert rec.version == 1 and len(rec.owner_id) == 32
        # what we write parses back to the same record
        assert parse_owner(rec.to_json_bytes()) == rec
    waiting = parse_owner(_example("owner-read-waiting.json"))
    assert waiting.mode == "read" and waiting.phase == "waiting"
    assert waiting.extra == {"future_optional_field": "ignored by v1 clients"}
    assert waiting.stale_timeout == 30.0


def test_refused_examples_are_refused():
    with pytest.raises(UnknownProtocolVersion, match="version 2"):
        parse_owner(_example("refused-unknown-version.json"))
    with pytest.raises(OwnerFormatError, match="owner_id"):
        parse_owner(_example("refused-malformed.json"))


def test_examples_are_all_named_in_protocol_md():
    text = open(PROTOCOL_MD, encoding="utf-8").read()
    for path in glob.glob(os.path.join(EXAMPLES, "*.json")):
        assert os.path.basename(path) in text


def test_example_planted_as_lock_is_inspected(tmp_path):
    db = tmp_path / "state.sqlite"
    os.mkdir(str(db) + ".sss-lock")
    with open(os.path.join(str(db) + ".sss-lock", "owner.json"), "wb") as f:
        f.write(_example("owner-write.json"))
    info = inspect_lock(db)
    assert info.state == "held" and info.process == "other-host"
    assert "build-07.example.org" in info.message


def _good() -> dict:
    return json.loads(_example("owner-write.json"))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.pop("owner_id"), "owner_id"),
        (lambda d: d.update(pid=0), "pid"),
        (lambda d: d.update(pid=True), "pid"),
        (lambda d: d.update(heartbeat=-1), "heartbeat"),
        (lambda d: d.update(heartbeat=1.5), "heartbeat"),
        (lambda d: d.update(mode="exclusive"), "mode"),
        (lambda d: d.update(phase="waiting"), "phase"),
        (lambda d: d.update(stale_timeout=0), "stale_timeout"),
        (lambda d: d.update(heartbeat_interval="1"), "heartbeat_interval"),
        (lambda d: d.update(protocol="proper-lockfile"), "protocol"),
        (lambda d: d.update(host_id=None), "host_id"),
        (lambda d: d.update(version="1"), "version"),
    ],
)
def test_schema_violations_name_the_field(change, words):
    doc = _good()
    change(doc)
    with pytest.raises(OwnerFormatError, match=words):
        parse_owner(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"[1]", "not an object"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b" " * 70000, "limit"),
    ],
)
def test_non_documents_are_refused(data, words):
    with pytest.raises(OwnerFormatError, match=words):
        parse_owner(data)


def test_record_written_by_lock_matches_schema(tmp_path):
    with DirectoryLock(tmp_path / "x.sqlite") as lock:
        raw = open(os.path.join(lock.lock_path, "owner.json"), "rb").read()
        rec = parse_owner(raw)
        assert rec == lock.owner
        assert isinstance(rec, OwnerRecord)
        assert set(_good()) == set(json.loads(raw))


# -- fencing epoch ---------------------------------------------------------------


def _con(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def test_epoch_table_is_reserved_and_idempotent(tmp_path):
    assert EPOCH_TABLE.startswith("_sss_")
    con = _con(tmp_path / "e.db")
    ensure_epoch_table(con)
    ensure_epoch_table(con)
    assert read_epoch(con) == 0
    with pytest.raises(sqlite3.IntegrityError):
        con.execute(f"INSERT INTO {EPOCH_TABLE} VALUES (2, 0)")


def test_epoch_compare_and_set_inside_transaction(tmp_path):
    path = tmp_path / "e.db"
    a, b = _con(path), _con(path)
    ensure_epoch_table(a)
    a.execute("CREATE TABLE t(x)")
    # holder A reads the epoch at admission ...
    e_a = read_epoch(a)
    # ... loses its lock; holder B writes one transaction
    b.execute("BEGIN IMMEDIATE")
    e_b = advance_epoch(b, read_epoch(b))
    b.execute("INSERT INTO t VALUES ('b')")
    b.execute("COMMIT")
    assert e_b == 1
    # A's next write transaction must fail its compare-and-set and roll back.
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(EpochMismatch) as info:
        advance_epoch(a, e_a)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert "roll back" in str(info.value)
    a.execute("ROLLBACK")
    assert a.execute("SELECT x FROM t").fetchall() == [("b",)]
    assert read_epoch(a) == 1


def test_epoch_errors_are_clear(tmp_path):
    con = _con(tmp_path / "none.db")
    with pytest.raises(FencingError, match="ensure_epoch_table"):
        read_epoch(con)
    ensure_epoch_table(con)
    with pytest.raises(FencingError, match="inside the write transaction"):
        advance_epoch(con, 0)  # autocommit: would fence nothing
    with pytest.raises(TypeError, match="expected"):
        advance_epoch(con, "0")


def test_epoch_with_lock_many_threads_no_lost_update(tmp_path):
    """The intended use: lock, BEGIN IMMEDIATE, CAS, write, check, COMMIT."""
    db = str(tmp_path / "f.db")
    con = _con(db)
    ensure_epoch_table(con)
    con.execute("CREATE TABLE c(n)")
    con.execute("INSERT INTO c VALUES (0)")
    con.close()

    def worker():
        c = _con(db)
        lock = DirectoryLock(db, timeout=60)
        for _ in range(25):
            with lock:
                c.execute("BEGIN IMMEDIATE")
                advance_epoch(c, read_epoch(c))
                c.execute("UPDATE c SET n = n + 1")
                lock.check()
                c.execute("COMMIT")
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = _con(db)
    assert c.execute("SELECT n FROM c").fetchone() == (100,)
    assert read_epoch(c) == 100
