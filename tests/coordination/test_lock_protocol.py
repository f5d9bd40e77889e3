"""The published protocol (PROTOCOL.md): its example files and conformance
cases (docs/protocol/examples/), the exact document rules of §1.1, the states
of §1.2, and the fencing epoch of §3 on stdlib sqlite3 connections.

Everything is real: files, directories, FIFOs, symlinks, processes."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest
from _source import find_source, source_path

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.admission import OSLock, ensure_marker
from sqlite_session_safe.coordination.audit import parse_committed_at, utc_now
from sqlite_session_safe.coordination.errors import (
    EpochMismatch,
    FencingError,
    LockRefused,
    LockTimeout,
    OwnerFormatError,
    ProtocolMismatch,
    UnknownProtocolVersion,
)
from sqlite_session_safe.coordination.fencing import (
    EPOCH_TABLE,
    admission_epoch,
    advance_epoch,
    ensure_epoch_table,
    read_epoch,
)
from sqlite_session_safe.coordination.lock import (
    DirectoryLock,
    break_stale_lock,
    inspect_lock,
    lock_paths,
)
from sqlite_session_safe.coordination.lock.observe import look
from sqlite_session_safe.coordination.owner import (
    ADMISSION_RECORD_BYTES,
    LOCK_PLACE,
    AdmissionRecord,
    MarkerRecord,
    OwnerRecord,
    parse_admission,
    parse_lock_document,
    parse_marker,
    parse_owner,
)

CLI = [sys.executable, "-m", "sqlite_session_safe.faces.cli"]


def _examples() -> str:
    return str(source_path("docs", "protocol", "examples"))


def _example(name: str) -> bytes:
    with open(os.path.join(_examples(), name), "rb") as f:
        return f.read()


def _cases() -> list[dict]:
    return json.loads(_example("cases.json"))["cases"]


def _case_ids() -> list[str]:
    # Collected before a test runs: without a source checkout the cases
    # themselves skip (source_path), so the ids come from the file if found.
    path = find_source("docs", "protocol", "examples", "cases.json")
    if path is None:
        return ["(no source checkout)"]
    with open(path, encoding="utf-8") as f:
        return [c["name"] for c in json.load(f)["cases"]]


def _case(name: str) -> dict:
    for case in _cases():
        if case["name"] == name:
            return case
    pytest.skip(f"no conformance case {name!r}")


# -- the example files and PROTOCOL.md --------------------------------------------


def test_every_example_is_named_in_protocol_md():
    text = source_path("PROTOCOL.md").read_text(encoding="utf-8")
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(_examples(), "*")))
    assert "cases.json" in names and len(names) > 20
    for name in names:
        assert f"`{name}`" in text, name


def test_every_refused_document_is_a_conformance_case_or_a_log_entry():
    used = {c["layout"]["directory"]["owner.json"].get("file") for c in _cases()
            if "directory" in c["layout"] and "owner.json" in c["layout"]["directory"]}
    for path in glob.glob(os.path.join(_examples(), "refused-*.json")):
        name = os.path.basename(path)
        assert name in used or name.startswith("refused-log-entry"), name


def test_valid_v1_examples_parse_and_round_trip():
    for name, mode in (("owner-write.json", "write"), ("owner-read-active.json", "read"),
                       ("owner-read-waiting.json", "read")):
        rec = parse_owner(_example(name))
        assert rec.version == 1 and rec.mode == mode and len(rec.owner_id) == 32
        assert parse_owner(rec.to_json_bytes()) == rec  # what we write parses back the same
    waiting = parse_owner(_example("owner-read-waiting.json"))
    assert waiting.phase == "waiting" and waiting.host_id == ""
    assert waiting.extra == {"future_optional_field": "ignored by v1 clients"}
    assert waiting.stale_timeout == 30.0


def test_marker_example_and_what_the_client_writes_agree():
    marker = parse_marker(_example("marker.json"))
    assert (marker.version, marker.admission, marker.target) == (2, "os-lock", "state.sqlite")
    assert parse_lock_document(_example("marker.json"), LOCK_PLACE) == marker
    ours = MarkerRecord.create("state.sqlite")
    assert set(json.loads(ours.to_json_bytes())) == set(json.loads(_example("marker.json")))
    with pytest.raises(UnknownProtocolVersion):
        parse_marker(_example("owner-write.json"))


def test_admit_record_example_is_exactly_one_slot():
    data = _example("admit-record.json")
    assert len(data) == ADMISSION_RECORD_BYTES == 1024
    text = data.decode("utf-8")
    assert text.rstrip(" ").endswith("}\n") and set(text[text.index("}\n") + 2:]) == {" "}
    rec = parse_admission(data)
    assert (rec.version, rec.mode, rec.pid, rec.owner_id) == (2, "write", 48213,
                                                             "3c9e1f0a7b2d4e6f8a1b3c5d7e9f0a2b")
    fields = set(json.loads(data))
    assert fields == set(json.loads(AdmissionRecord.create("state.sqlite").padded()))


def test_record_written_by_the_lock_is_a_slot_that_parses(tmp_path):
    db = str(tmp_path / "x.sqlite")
    with OSLock(db, timeout=5) as lock:
        raw = open(os.path.join(lock.lock_path, "admit"), "rb").read()
        assert len(raw) == ADMISSION_RECORD_BYTES
        assert parse_admission(raw) == lock.owner


def test_a_long_record_is_shortened_to_fit_its_slot():
    rec = AdmissionRecord.create("t" * 250)
    long = AdmissionRecord(owner_id=rec.owner_id, pid=rec.pid, host="h" * 700, host_id=rec.host_id,
                           process_start=rec.process_start, target="é" * 250, acquired_at=rec.acquired_at,
                           client="c" * 300)
    data = long.padded()
    assert len(data) == ADMISSION_RECORD_BYTES
    back = parse_admission(data)
    assert back.owner_id == rec.owner_id and back.host == "h" * 64 and back.target == "é" * 64


def test_record_written_by_directory_lock_matches_schema(tmp_path):
    with DirectoryLock(tmp_path / "x.sqlite") as lock:
        raw = open(os.path.join(lock.lock_path, "owner.json"), "rb").read()
        rec = parse_owner(raw)
        assert rec == lock.owner
        assert isinstance(rec, OwnerRecord)
        assert set(json.loads(_example("owner-write.json"))) == set(json.loads(raw))


# -- the conformance cases (PROTOCOL.md §1.2, cases.json) --------------------------


def _build(path: str, layout: dict) -> None:
    """Make ``layout`` (cases.json's small language) at ``path``."""
    if "file" in layout:
        data = _example(layout["file"])
        if "pad_to" in layout:
            data = data.ljust(layout["pad_to"], b" ")
        with open(path, "wb") as f:
            f.write(data)
    elif "bytes" in layout:
        with open(path, "wb") as f:
            f.write(layout["bytes"].encode("utf-8"))
    elif "directory" in layout:
        os.mkdir(path)
        for name, inner in layout["directory"].items():
            _build(os.path.join(path, name), inner)
    elif "symlink" in layout:
        os.symlink(layout["symlink"], path)
    elif layout.get("fifo"):
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        os.mkfifo(path)
    else:
        raise AssertionError(f"unknown layout {layout!r}")


def _plant(tmp_path, case: dict) -> tuple[str, str, str]:
    """(database path, the lock path the case is at, L)."""
    if "symlink" in json.dumps(case["layout"]) and sys.platform == "win32":
        pytest.skip("symlinks need privileges on Windows")
    db, lock_path, readers = lock_paths(tmp_path / "state.sqlite")
    if case["at"] == "L":
        at = lock_path
    else:
        assert case["at"].startswith("R/reader-")
        os.mkdir(readers)
        at = os.path.join(readers, case["at"][2:])
    _build(at, case["layout"])
    return db, at, lock_path


def _snapshot(path: str) -> list[tuple[str, int]]:
    """What is at ``path`` (names and types), but the announcements a waiter
    may add to a live holder's directory (§2.11)."""
    out = [("", os.lstat(path).st_mode)]
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                p = os.path.join(root, n)
                if not n.startswith("want-") or root != path or n in _BUILT_WANTS:
                    out.append((os.path.relpath(p, path), os.lstat(p).st_mode))
    return sorted(out)


_BUILT_WANTS = {"want-00000000000000000000000000000001"}  # cases.json's own


def _bounded(body, seconds: float = 60.0) -> None:
    """Run ``body`` on a daemon thread and fail if it does not end in time: a
    client that opens a FIFO at owner.json with a blocking open hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            body()
        except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
            outcome.append(e)
        else:
            outcome.append(None)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds}s (a blocking open of a FIFO?)"
    if outcome[0] is not None:
        raise outcome[0]


@pytest.mark.parametrize("name", _case_ids())
def test_conformance_case_state(tmp_path, name):
    _bounded(lambda: _case_state(tmp_path, _case(name)))


def _case_state(tmp_path, case: dict) -> None:
    db, at, _lock = _plant(tmp_path, case)
    seen = look(at)
    assert seen.state == case["state"], (seen.state, seen.detail)
    if case["at"] == "L":
        info = inspect_lock(db)
        if case["state"] == "os-lock":
            assert info is None  # nobody holds it
        else:
            assert info is not None and info.state == case["state"], info


REFUSED = ("symlink", "not-a-directory", "empty", "malformed", "unknown-version", "unreadable")


@pytest.mark.parametrize("name", _case_ids())
def test_conformance_case_is_waited_on_never_broken(tmp_path, name):
    """What each client does at each state: a refused state is held by
    someone else (both protocols wait, then time out naming it) and is never
    broken without force; the other protocol's lock is a protocol mismatch."""
    _bounded(lambda: _case_behaviour(tmp_path, _case(name)))


def _case_behaviour(tmp_path, case: dict) -> None:
    db, at, lock_path = _plant(tmp_path, case)
    before = _snapshot(at)
    state = case["state"]
    if case["at"] != "L":
        if state in REFUSED:  # a reader marker in a refused state counts as an active reader
            with pytest.raises(LockTimeout, match=re.escape(f"({state})")):
                DirectoryLock(db, timeout=0.2).acquire()
        assert _snapshot(at) == before
        return
    if state in REFUSED:
        for lock in (DirectoryLock(db, timeout=0.2), OSLock(db, timeout=0.2)):
            with pytest.raises(LockTimeout, match=re.escape(f"({state})")):
                lock.acquire()
        with pytest.raises(LockRefused):
            break_stale_lock(db)
    elif state == "held":  # a live v1 writer (another host): v1 waits, v2 refuses the mix
        with pytest.raises(LockTimeout, match="held for writing"):
            DirectoryLock(db, timeout=0.2).acquire()
        with pytest.raises(ProtocolMismatch, match="protocol v1"):
            OSLock(db, timeout=0.2).acquire()
    elif state == "os-lock":  # v2: v1 clients refuse at once; v2 writers get in
        with pytest.raises(ProtocolMismatch, match="protocol v2"):
            DirectoryLock(db, timeout=5).acquire()
        with pytest.raises(ProtocolMismatch):
            sss.open(db, "network")
        with OSLock(db, timeout=5) as lock:
            assert parse_admission(open(os.path.join(at, "admit"), "rb").read()) == lock.owner
        with pytest.raises(LockRefused, match="nothing stale"):
            break_stale_lock(db)
        return  # the record changed: that is what admission does
    assert _snapshot(at) == before


def test_forced_break_removes_every_refused_state(tmp_path):
    for case in _cases():
        if case["at"] != "L" or case["state"] not in REFUSED:
            continue
        if "fifo" in json.dumps(case) and not hasattr(os, "mkfifo"):
            continue
        sub = tmp_path / case["name"]
        sub.mkdir()
        db, at, _lock = _plant(sub, case)
        assert break_stale_lock(db, force=True) is True, case["name"]
        assert not os.path.lexists(at)
        with OSLock(db, timeout=5):
            pass


# -- §1.1 document rules, beyond the example files ---------------------------------


def _doc(**changes) -> bytes:
    doc = json.loads(_example("owner-write.json"))
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "text, ok",
    [
        ('"heartbeat": 42', True),
        ('"heartbeat": -0', True),  # an integer lexeme: the value 0
        ('"heartbeat": 42.0', False),
        ('"heartbeat": 4.2e1', False),
        ('"heartbeat": 42e0', False),
        ('"heartbeat": 9007199254740991', True),  # 2**53 - 1
        ('"heartbeat": 9007199254740992', False),
        ('"heartbeat": -1', False),
        ('"pid": 2147483647', True),
        ('"pid": 2147483648', False),
        ('"pid": 100000000000000000000', False),
        ('"pid": 0', False),
        ('"pid": true', False),
        ('"stale_timeout": 15', True),
        ('"stale_timeout": 1.5e1', True),
        ('"stale_timeout": 1e400', False),
        ('"stale_timeout": Infinity', False),
        ('"stale_timeout": -Infinity', False),
        ('"stale_timeout": NaN', False),
        ('"stale_timeout": 0', False),
        ('"stale_timeout": "15"', False),
    ],
)
def test_numbers_are_judged_by_their_lexeme_and_range(text, ok):
    key = text.split(":")[0]
    raw = re.sub(rf'{key}: [^,\n]+', text, json.dumps(json.loads(_example("owner-write.json"))))
    assert text in raw
    if ok:
        parse_owner(raw.encode())
    else:
        with pytest.raises(OwnerFormatError):
            parse_owner(raw.encode())


def test_nesting_32_deep_is_the_limit():
    nested: object = "x"
    for _ in range(31):
        nested = [nested]
    parse_owner(_doc(future=nested))  # the object + 31 arrays = 32
    with pytest.raises(OwnerFormatError, match="deep"):
        parse_owner(_doc(future=[nested]))
    deep = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(OwnerFormatError):  # never RecursionError
        parse_owner(deep)


def test_duplicate_names_are_refused_at_any_depth():
    base = _example("owner-write.json").decode()
    with pytest.raises(OwnerFormatError, match="twice"):
        parse_owner(base.replace('"pid": 48213,', '"pid": 48213, "pid": 48213,').encode())
    with pytest.raises(OwnerFormatError, match="twice"):
        parse_owner(base.replace('"pid": 48213,', '"pid": 48213, "x": {"a": 1, "a": 2},').encode())


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[1]", "not an object"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b" " * 70000, "limit"),
    ],
)
def test_non_documents_are_refused(data, words):
    with pytest.raises(OwnerFormatError, match=words):
        parse_owner(data)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.pop("owner_id"), "owner_id"),
        (lambda d: d.update(owner_id="9F2C4E1AB7D04C6F8E3A5B2C1D0E9F87"), "owner_id"),
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
        (lambda d: d.update(version=1.0), "version"),
        (lambda d: d.update(updated_at=None), "updated_at"),
        (lambda d: d.pop("target"), "target"),
    ],
)
def test_schema_violations_name_the_field(change, words):
    doc = json.loads(_example("owner-write.json"))
    change(doc)
    with pytest.raises(OwnerFormatError, match=words):
        parse_owner(json.dumps(doc).encode())


def test_records_must_fit_their_place():
    reader = _example("owner-read-active.json")
    owner_id = json.loads(reader)["owner_id"]
    assert parse_owner(reader, f"reader-{owner_id}").mode == "read"
    with pytest.raises(OwnerFormatError, match="not \"write\""):
        parse_owner(reader, LOCK_PLACE)
    with pytest.raises(OwnerFormatError, match="names owner"):
        parse_owner(reader, "reader-" + "0" * 32)
    writer = _example("owner-write.json")
    with pytest.raises(OwnerFormatError, match="not \"read\""):
        parse_owner(writer, "reader-" + json.loads(writer)["owner_id"])
    with pytest.raises(UnknownProtocolVersion):  # v2 exists only at L
        parse_lock_document(_example("marker.json"), "reader-" + "0" * 32)


def test_unknown_extra_fields_of_any_kind_are_ignored():
    rec = parse_owner(_doc(x_list=[1, {"y": None}], x_null=None, x_bool=True))
    assert rec.extra == {"x_list": [1, {"y": None}], "x_null": None, "x_bool": True}
    assert parse_marker(json.dumps(dict(json.loads(_example("marker.json")), x=[1])).encode()).target


# -- v1 details the text pins down ----------------------------------------------------


def test_readers_path_that_is_not_a_directory_holds_no_readers_and_refuses_readers(tmp_path):
    db, lock_path, readers = lock_paths(tmp_path / "state.sqlite")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _build(os.path.join(elsewhere, "reader-" + "0d3b7a9c5e1f4a2b8c6d0e1f2a3b4c5d"),
           {"directory": {"owner.json": {"file": "owner-read-active.json"}}})
    if sys.platform == "win32":
        pytest.skip("symlinks need privileges on Windows")
    os.symlink(str(elsewhere), readers)
    with DirectoryLock(db, timeout=2):  # the active marker behind the symlink does not count
        pass
    with pytest.raises(LockRefused, match="not a directory"):
        DirectoryLock(db, "read", timeout=2).acquire()


def test_release_sweeps_released_leftovers_and_tombs(tmp_path):
    db, lock_path, _r = lock_paths(tmp_path / "state.sqlite")
    leftovers = [f"{lock_path}.released-{'a' * 32}", f"{lock_path}.broken-{'b' * 32}-7"]
    for p in leftovers:
        os.mkdir(p)
        with open(os.path.join(p, "want-" + "c" * 32), "wb"):
            pass
    keep = f"{lock_path}.tmp-{'d' * 32}"  # an acquirer's directory: never swept
    os.mkdir(keep)
    with DirectoryLock(db, timeout=2):
        pass
    assert not any(os.path.lexists(p) for p in leftovers)
    assert os.path.isdir(keep)
    assert not [n for n in os.listdir(tmp_path) if ".released-" in n]


def test_marker_race_leaves_no_temporary_directories(tmp_path):
    for round_ in range(10):
        db, lock_path, _r = lock_paths(tmp_path / f"r{round_}.sqlite")
        start = threading.Barrier(6)
        errors: list[BaseException] = []

        def make(db: str, lock_path: str, start: threading.Barrier, errors: list[BaseException]) -> None:
            try:
                start.wait(5)
                ensure_marker(db, lock_path, None)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=make, args=(db, lock_path, start, errors)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert look(lock_path).state == "os-lock"
        assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


HOLD_AND_INSPECT = """
import sys
import sqlite_session_safe as sss
from sqlite_session_safe.coordination.admission import OSLock
lock = OSLock(sys.argv[1], timeout=30)
lock.acquire()
for _ in range(3):
    info = sss.inspect_lock(sys.argv[1])   # through the process's own descriptor
    assert info.state == "held" and info.owner.owner_id == lock.owner.owner_id, info
print("ready", flush=True)
sys.stdin.readline()
lock.release()
"""


def test_inspecting_while_holding_never_drops_the_lock(tmp_path):
    """With POSIX record locks, closing any descriptor of the admission file
    drops the process's lock on it (§2A.4): inspection must not open one."""
    db = str(tmp_path / "state.sqlite")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_INSPECT, db], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with pytest.raises(LockTimeout, match="held for writing by owner"):
            OSLock(db, timeout=0.3).acquire()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(30) == 0


# -- §3 fencing epoch -----------------------------------------------------------------


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
    e_a = admission_epoch(a)
    # ... loses its lock; holder B writes one transaction
    e_b0 = admission_epoch(b)
    b.execute("BEGIN IMMEDIATE")
    e_b = advance_epoch(b, e_b0)
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


def test_fresh_database_absent_table_is_epoch_zero_and_fences(tmp_path):
    """G20: on a database without the epoch table the first writer's CAS from
    0 succeeds, and a writer that read 0 before someone else committed the
    first epoch fails, as any other late reader."""
    path = tmp_path / "fresh.db"
    a, b = _con(path), _con(path)
    assert admission_epoch(a) == 0 and admission_epoch(b) == 0  # both "admitted" in turn
    b.execute("BEGIN IMMEDIATE")
    assert advance_epoch(b, 0) == 1  # creates the table inside b's transaction
    b.execute("COMMIT")
    a.execute("BEGIN IMMEDIATE")
    with pytest.raises(EpochMismatch) as info:
        advance_epoch(a, 0)
    assert info.value.actual == 1
    a.execute("ROLLBACK")
    # a table without its row is 0 as well, and the CAS seeds it
    c = _con(tmp_path / "norow.db")
    c.execute(f"CREATE TABLE {EPOCH_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
              "epoch INTEGER NOT NULL CHECK (epoch >= 0))")
    assert admission_epoch(c) == 0
    c.execute("BEGIN IMMEDIATE")
    assert advance_epoch(c, 0) == 1
    c.execute("COMMIT")
    assert read_epoch(c) == 1


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_paused_writer_on_a_fresh_database_is_fenced_by_the_epoch(tmp_path):
    """G20 with real processes: on a database without the package's tables, a
    network-mode writer paused after its admission (it read e = 0) is broken;
    its successor creates the tables and commits epoch 1.  The resumed writer's
    compare-and-set from 0 fails (and its lock is gone): nothing of it lands.
    Before e = 0 was specified, the epoch was read inside its transaction and
    the compare-and-set could not fail there."""
    from _database_workers import mp_context, paused_writer, single_write

    path = str(tmp_path / "fresh.db")
    con = _con(path)
    con.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    con.execute("INSERT INTO counter VALUES (1, 0)")
    con.close()
    ctx = mp_context()
    parent, child = ctx.Pipe()
    a = ctx.Process(target=paused_writer, args=(path, "admitted", child, "network"))
    a.start()
    try:
        assert parent.poll(60)
        what, a_owner = parent.recv()
        assert what == "paused"
        os.kill(a.pid, signal.SIGSTOP)
        try:
            out = ctx.Queue()
            b = ctx.Process(target=single_write, args=(path, 1, out, "network"))
            b.start()
            b_seq, _took = out.get(timeout=60)
            b.join(30)
            assert b_seq == 1
        finally:
            os.kill(a.pid, signal.SIGCONT)
        parent.send("go")
        assert parent.poll(60)
        outcome, detail = parent.recv()
        assert outcome == "compromised" and "expected 0" in detail, detail
    finally:
        a.join(30)
        if a.is_alive():
            a.kill()
    con = _con(path)
    assert con.execute("SELECT n FROM counter").fetchall() == [(1,)]
    assert con.execute("SELECT seq, owner != ?, epoch FROM _sss_log", (a_owner,)).fetchall() == [(1, 1, 1)]
    assert read_epoch(con) == 1


def test_epoch_errors_are_clear(tmp_path):
    con = _con(tmp_path / "none.db")
    with pytest.raises(FencingError, match="ensure_epoch_table"):
        read_epoch(con)
    ensure_epoch_table(con)
    with pytest.raises(FencingError, match="inside the write transaction"):
        advance_epoch(con, 0)  # autocommit: would fence nothing
    with pytest.raises(TypeError, match="expected"):
        advance_epoch(con, "0")
    con.execute("BEGIN IMMEDIATE")
    with pytest.raises(FencingError, match="outside any transaction"):
        admission_epoch(con)  # read inside, it would fence nothing
    con.execute("ROLLBACK")


def test_lock_only_writer_is_refused_on_a_logged_database(tmp_path):
    """G26: DirectoryLock/OSLock + advance_epoch + raw SQL cannot commit
    into a database that keeps an audit log (its commits would be missing
    from the log, and check could not tell)."""
    db = str(tmp_path / "logged.db")
    with sss.open(db) as d:
        d.migrate("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    con = _con(db)
    for lock in (OSLock(db, timeout=5), DirectoryLock(db, timeout=5)):
        if isinstance(lock, DirectoryLock):
            lock_path = lock_paths(db)[1]
            break_stale_lock(db, force=True)  # the v2 marker: switch protocols (§2A.8)
            assert not os.path.lexists(lock_path)
        with lock:
            e = admission_epoch(con)
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t (n) VALUES (1)")
            with pytest.raises(FencingError, match="keeps an audit log"):
                advance_epoch(con, e)
            con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    # a writer that appends the entry itself says so
    con.execute("BEGIN IMMEDIATE")
    e = read_epoch(con)
    assert advance_epoch(con, e, logged=True) == e + 1
    con.execute("ROLLBACK")


def test_epoch_with_lock_many_threads_no_lost_update(tmp_path):
    """The intended use (§3): lock, read e outside, BEGIN IMMEDIATE, CAS,
    write, check, COMMIT."""
    db = str(tmp_path / "f.db")
    con = _con(db)
    con.execute("CREATE TABLE c(n)")
    con.execute("INSERT INTO c VALUES (0)")
    con.close()

    def worker(lock_class):
        c = _con(db)
        lock = lock_class(db, timeout=60)
        for _ in range(25):
            with lock:
                e = admission_epoch(c)
                c.execute("BEGIN IMMEDIATE")
                advance_epoch(c, e)
                c.execute("UPDATE c SET n = n + 1")
                lock.check()
                c.execute("COMMIT")
        c.close()

    threads = [threading.Thread(target=worker, args=(OSLock,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    c = _con(db)
    assert c.execute("SELECT n FROM c").fetchone() == (100,)
    assert read_epoch(c) == 100


# -- §5.2 committed_at and the log entry example ------------------------------------


def test_committed_at_is_spelled_exactly():
    now = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now)
    assert parse_committed_at(now).tzinfo is not None
    for bad in ("2026-06-06T12:00:42Z", "2026-06-06T12:00:42.013Z", "2026-06-06t12:00:42.013527z",
                "2026-06-06T12:00:42.013527+00:00", "2026-02-30T12:00:42.013527Z",
                "2026-06-06T12:00:60.000000Z", "2026-06-06 12:00:42.013527Z", 5, None):
        with pytest.raises(ValueError):
            parse_committed_at(bad)


def _logged_copy_with_entry(tmp_path, name: str) -> str:
    """A database made the way the example was (a migration, an insert),
    then the example entry appended with its change, as a writer in another
    language would."""
    entry = json.loads(_example(name))
    db = str(tmp_path / "log.db")
    with sss.open(db) as d:
        d.migrate("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        d.write(lambda tx: tx.execute("INSERT INTO counter (id, n) VALUES (1, 41)"))
        assert d.position() == entry["seq"] - 1
    con = _con(db)
    with OSLock(db, timeout=5) as lock:  # a §3 writer that appends its own entry
        e = admission_epoch(con)
        assert e + 1 == entry["epoch"]
        con.execute("BEGIN IMMEDIATE")
        advance_epoch(con, e, logged=True)
        sss.Changeset(bytes.fromhex(entry["changeset"])).validate()
        con.execute("UPDATE counter SET n = 42 WHERE id = 1")
        con.execute("INSERT INTO _sss_log (seq, committed_at, owner, host, pid, label, kind, changeset, "
                    "sql, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (entry["seq"], entry["committed_at"], entry["owner"], entry["host"], entry["pid"],
                     entry["label"], entry["kind"], bytes.fromhex(entry["changeset"]), entry["sql"],
                     entry["epoch"]))
        lock.check()
        con.execute("COMMIT")
    con.close()
    return db


def test_log_entry_example_passes_check_and_replays(tmp_path):
    db = _logged_copy_with_entry(tmp_path, "log-entry.json")
    proc = subprocess.run([*CLI, "check", db, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sss.open(db) as d:
        entry = list(d.log())[-1]
    assert entry.committed_at == json.loads(_example("log-entry.json"))["committed_at"]
    target = sss.connect(str(tmp_path / "replay.db"))
    target.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    target.execute("INSERT INTO counter VALUES (1, 41)")
    entry.apply_to(target)
    assert target.execute("SELECT n FROM counter").fetchall() == [(42,)]


def test_check_reports_a_committed_at_of_another_spelling(tmp_path):
    db = _logged_copy_with_entry(tmp_path, "refused-log-entry-committed-at.json")
    proc = subprocess.run([*CLI, "check", db, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    assert any("committed_at" in p and "YYYY-MM-DDTHH:MM:SS.ffffffZ" in p for p in problems), problems
