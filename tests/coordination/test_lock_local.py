"""The directory lock inside one process tree: states, paths, threads, fork,
compromise detection, the reader/writer variant.  Real directories only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from _faults_rig import process_state, read_line, stop, wait_for
from _lock_workers import dead_pid, plant_lock, read_owner_json

from sqlite_session_safe.binding.errors import Error
from sqlite_session_safe.coordination.errors import (
    LockCompromised,
    LockError,
    LockRefused,
    LockTimeout,
)
from sqlite_session_safe.coordination.lock import (
    DirectoryLock,
    break_stale_lock,
    inspect_lock,
    lock_paths,
)
from sqlite_session_safe.coordination.lock.breaking import break_judged, tomb_name

FAST = dict(stale_timeout=0.6, heartbeat_interval=0.1)


def _in_thread(lock):
    """Try the lock from another thread; return the exception (or None)."""
    result = []

    def run():
        try:
            lock.acquire()
        except Exception as e:
            result.append(e)
        else:
            lock.release()
            result.append(None)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return result[0]


def test_lock_directory_is_not_sqlites_dotfile_name(tmp_path):
    db = tmp_path / "a.sqlite"
    with DirectoryLock(db) as lock:
        assert lock.lock_path == str(db) + ".sss-lock"
        assert not os.path.exists(str(db) + ".lock")
        assert os.path.isfile(os.path.join(lock.lock_path, "owner.json"))
    assert os.listdir(tmp_path) == []


def test_exceptions_derive_from_package_error():
    for cls in (LockError, LockTimeout, LockCompromised, LockRefused):
        assert issubclass(cls, Error)
    assert issubclass(LockTimeout, TimeoutError)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(mode="exclusive"), ValueError, "mode"),
        (dict(timeout=-1), ValueError, "timeout"),
        (dict(timeout="5"), TypeError, "timeout"),
        (dict(heartbeat_interval=0), ValueError, "heartbeat_interval"),
        (dict(stale_timeout=1.0, heartbeat_interval=0.5), ValueError, "3 x heartbeat_interval"),
        (dict(stale_timeout=float("nan")), ValueError, "stale_timeout"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        DirectoryLock(tmp_path / "x.sqlite", **kwargs)


@pytest.mark.parametrize(
    "path, exc",
    [
        ("", ValueError),
        (":memory:", ValueError),
        (b"x.db", TypeError),
        (42, TypeError),
        ("file:x.db?mode=ro", ValueError),
    ],
)
def test_bad_paths_are_named(path, exc):
    with pytest.raises(exc, match="db_path"):
        DirectoryLock(path)


def test_missing_directory_and_directory_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DirectoryLock(tmp_path / "nope" / "x.sqlite")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        DirectoryLock(tmp_path)


def test_heartbeat_advances_and_owner_is_reported(tmp_path):
    db = str(tmp_path / "h.sqlite")
    with DirectoryLock(db, **FAST) as lock:
        first = lock.owner.heartbeat
        time.sleep(0.45)
        lock.check()
        assert lock.owner.heartbeat > first
        doc = read_owner_json(db)
        assert doc["owner_id"] == lock.owner.owner_id
        assert doc["heartbeat"] == lock.owner.heartbeat
        assert doc["pid"] == os.getpid() and doc["version"] == 1
        info = inspect_lock(db)
        assert info.state == "held" and info.process == "alive"
        assert lock.owner.owner_id in str(info)
    assert lock.owner is None and not lock.is_held
    assert inspect_lock(db) is None


def test_release_and_check_when_not_held(tmp_path):
    lock = DirectoryLock(tmp_path / "n.sqlite")
    with pytest.raises(LockError, match="not held"):
        lock.release()
    with pytest.raises(LockError, match="not held"):
        lock.check()


def test_timeout_message_names_the_holder(tmp_path):
    db = tmp_path / "t.sqlite"
    with DirectoryLock(db) as holder:
        err = _in_thread(DirectoryLock(db, timeout=0.2))
        assert isinstance(err, LockTimeout)
        assert holder.owner.owner_id in str(err)


@pytest.mark.skipif(sys.platform == "win32", reason="checks the directory inode")
@pytest.mark.parametrize(
    "how", ["removed", "renamed-away", "replaced-by-other-owner", "recreated-with-same-content"]
)
def test_lock_directory_removed_or_replaced_is_detected(tmp_path, how):
    db = str(tmp_path / "r.sqlite")
    seen = threading.Event()
    calls = []
    lock = DirectoryLock(db, **FAST, on_compromised=lambda e: (calls.append(e), seen.set()))
    lock.acquire()
    path = lock.lock_path
    if how == "removed":
        shutil.rmtree(path)
    elif how == "renamed-away":
        os.rename(path, path + ".elsewhere")
    elif how == "replaced-by-other-owner":
        shutil.rmtree(path)
        plant_lock(db)
    else:
        saved = read_owner_json(db)
        shutil.rmtree(path)
        os.mkdir(path)
        with open(os.path.join(path, "owner.json"), "w") as f:
            import json

            json.dump(saved, f)
    # Detected by the heartbeat thread within one interval (plus slack) ...
    assert seen.wait(0.1 + 2.0)
    assert not lock.is_held
    # ... and by check(), every time.
    for _ in range(2):
        with pytest.raises(LockCompromised):
            lock.check()
    with pytest.raises(LockCompromised):
        lock.release()
    assert len(calls) == 1
    if how in ("replaced-by-other-owner", "recreated-with-same-content"):
        assert os.path.isdir(path)  # someone else's: left alone


def test_check_detects_removal_before_next_heartbeat(tmp_path):
    lock = DirectoryLock(tmp_path / "c.sqlite", stale_timeout=30, heartbeat_interval=10)
    lock.acquire()
    os.rename(lock.lock_path, lock.lock_path + ".gone")
    with pytest.raises(LockCompromised, match="removed or renamed"):
        lock.check()
    with pytest.raises(LockCompromised):
        lock.release()
    assert os.path.isdir(lock.lock_path + ".gone")


# -- states never broken automatically ---------------------------------------


def _make_state(db: str, state: str, tmp_path) -> None:
    _db, lock_path, _r = lock_paths(db)
    if state == "malformed":
        os.mkdir(lock_path)
        with open(os.path.join(lock_path, "owner.json"), "w") as f:
            f.write('{"protocol": "sqlite-session-safe.lock", "version": 1, "owner_id": ')
    elif state == "empty":
        os.mkdir(lock_path)
    elif state == "unknown-version":
        os.mkdir(lock_path)
        with open(os.path.join(lock_path, "owner.json"), "w") as f:
            f.write('{"protocol": "sqlite-session-safe.lock", "version": 3, "owner_id": "x"}')
    elif state == "symlink":
        # A symlink to a perfectly valid, even stale, lock directory.
        target = tmp_path / "elsewhere.sqlite"
        plant_lock(str(target), pid=dead_pid())
        os.symlink(str(target) + ".sss-lock", lock_path)
    elif state == "not-a-directory":
        with open(lock_path, "w") as f:
            f.write("not a lock")


STATES = {
    "malformed": "not valid JSON",
    "empty": "empty",
    "unknown-version": "version 3",
    "symlink": "symbolic link",
    "not-a-directory": "not a directory",
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_refused_states_are_never_broken_automatically(tmp_path, state):
    if state == "symlink" and not hasattr(os, "symlink"):
        pytest.skip("no symlinks")
    db = str(tmp_path / "s.sqlite")
    _make_state(db, state, tmp_path)
    _db, lock_path, _r = lock_paths(db)
    before = sorted(os.listdir(tmp_path))
    info = inspect_lock(db)
    assert info.state == state
    assert STATES[state] in info.message
    assert "never broken automatically" in info.message
    assert info.owner is None and not info.breakable_now
    with pytest.raises(LockTimeout, match=STATES[state]):
        DirectoryLock(db, timeout=0.3, **FAST).acquire()
    with pytest.raises(LockRefused, match="never broken automatically"):
        break_stale_lock(db)
    with pytest.raises(LockTimeout):
        DirectoryLock(db, mode="read", timeout=0.2, **FAST).acquire()
    assert sorted(n for n in os.listdir(tmp_path) if n != "s.sqlite.sss-readers") == before
    assert os.path.lexists(lock_path)
    # Only force breaks it, and never follows the symlink.
    assert break_stale_lock(db, force=True) is True
    assert not os.path.lexists(lock_path)
    if state == "symlink":
        assert os.path.isdir(str(tmp_path / "elsewhere.sqlite") + ".sss-lock")
    with DirectoryLock(db, timeout=1):
        pass


def test_break_stale_lock_rules(tmp_path):
    db = str(tmp_path / "b.sqlite")
    assert break_stale_lock(db) is False  # nothing there
    plant_lock(db, pid=dead_pid())
    assert inspect_lock(db).breakable_now
    assert break_stale_lock(db) is True  # dead pid on this host: at once
    assert inspect_lock(db) is None or inspect_lock(db).state == "free"
    live = DirectoryLock(db, **FAST)
    live.acquire()
    # A live owner's heartbeat moves while we watch: left alone.
    assert break_stale_lock(db, stale_timeout=0.6) is False
    live.check()
    assert break_stale_lock(db, force=True) is True
    with pytest.raises(LockCompromised):
        live.check()
    with pytest.raises(LockCompromised):
        live.release()
    plant_lock(db, pid=12345, same_host=False, stale_timeout=0.3)
    assert not inspect_lock(db).breakable_now
    t0 = time.monotonic()
    assert break_stale_lock(db, stale_timeout=0.3) is True  # watched for 0.3 s
    assert time.monotonic() - t0 < 0.3 + 3.0


def test_late_breaker_fails_against_the_tomb(tmp_path):
    """Two clients judged the same state stale.  The first broke it and took
    the lock; the second, already past its re-read, renames the lock path to
    the tomb name of the state it judged: that must fail and leave the new
    owner's lock alone."""
    db = str(tmp_path / "late.sqlite")
    stale = plant_lock(db, pid=dead_pid())
    with DirectoryLock(db, **FAST) as winner:
        assert os.path.isdir(tomb_name(winner.lock_path, stale))
        with pytest.raises(OSError):
            os.rename(winner.lock_path, tomb_name(winner.lock_path, stale))
        assert break_judged(winner.lock_path, stale, "late") is None
        winner.check()
    # The next release sweeps the tomb.
    assert [n for n in os.listdir(tmp_path) if "broken" in n] == []


# -- paths ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["with space.sqlite", "données ünïcode 数据.sqlite", "emoji 🗄.db"])
def test_unusual_names(tmp_path, name):
    d = tmp_path / "dir with spaces é"
    d.mkdir()
    db = d / name
    with DirectoryLock(db, **FAST) as lock:
        assert os.path.isdir(str(db) + ".sss-lock")
        assert inspect_lock(db).owner.owner_id == lock.owner.owner_id
        assert read_owner_json(str(db))["target"] == name
        assert isinstance(_in_thread(DirectoryLock(db, timeout=0.1)), LockTimeout)
    assert os.listdir(d) == []


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symlinks")
def test_spellings_of_one_path_share_one_lock(tmp_path, monkeypatch):
    real = tmp_path / "real dir"
    real.mkdir()
    (tmp_path / "linked parent").symlink_to(real, target_is_directory=True)
    (real / "db.sqlite").write_bytes(b"")
    (tmp_path / "db-link.sqlite").symlink_to(real / "db.sqlite")
    monkeypatch.chdir(real)
    spellings = [
        str(real / "db.sqlite"),
        str(tmp_path / "linked parent" / "db.sqlite"),
        str(tmp_path / "db-link.sqlite"),
        "db.sqlite",
        os.path.join("..", "linked parent", ".", "db.sqlite"),
    ]
    locks = [DirectoryLock(s, timeout=0.2, **FAST) for s in spellings]
    assert len({lk.lock_path for lk in locks}) == 1
    assert locks[0].lock_path == os.path.realpath(real / "db.sqlite") + ".sss-lock"
    with locks[1]:
        for s in spellings:
            assert inspect_lock(s).owner.owner_id == locks[1].owner.owner_id
        # From another thread (same process) and from this thread: refused.
        with pytest.raises(LockError, match="not reentrant"):
            locks[3].acquire()
        assert isinstance(_in_thread(locks[4]), LockTimeout)
    assert os.listdir(tmp_path / "linked parent") == ["db.sqlite"]


# -- threads and fork ------------------------------------------------------------


def test_threads_of_one_process_are_serialized(tmp_path):
    db = str(tmp_path / "th.sqlite")
    shared = DirectoryLock(db, timeout=60)
    inside = []
    overlaps = []
    count = [0]

    def work(lock):
        for _ in range(50):
            with lock:
                inside.append(1)
                if len(inside) != 1:
                    overlaps.append(len(inside))
                v = count[0]
                time.sleep(0.0002)
                count[0] = v + 1
                inside.pop()

    threads = [
        threading.Thread(target=work, args=(lk,))
        for lk in (shared, shared, DirectoryLock(db, timeout=60), DirectoryLock(db, timeout=60))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert count[0] == 200
    assert inspect_lock(db) is None


def test_same_thread_reacquire_is_an_error(tmp_path):
    lock = DirectoryLock(tmp_path / "re.sqlite")
    with lock:
        with pytest.raises(LockError, match="not reentrant"):
            lock.acquire()
    with lock.acquire(timeout=1) as same:
        assert same is lock and lock.is_held
    assert not lock.is_held


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_neither_owns_nor_heartbeats(tmp_path):
    db = str(tmp_path / "fork.sqlite")
    lock = DirectoryLock(db, **FAST)
    report = tmp_path / "child.txt"
    with lock:
        owner = lock.owner.owner_id
        pid = os.fork()
        if pid == 0:  # child
            lines = []
            try:
                lines.append(f"is_held={lock.is_held} owner={lock.owner}")
                for op in (lock.check, lock.release):
                    try:
                        op()
                        lines.append(f"{op.__name__}=ok")
                    except LockError as e:
                        lines.append(f"{op.__name__}={type(e).__name__}:{e}")
                try:
                    lock.acquire(timeout=0.3)
                    lines.append("acquire=ok")
                except LockTimeout:
                    lines.append("acquire=LockTimeout")
                time.sleep(0.3)
            finally:
                report.write_text("\n".join(lines))
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        lines = report.read_text().splitlines()
        assert lines[0] == "is_held=False owner=None"
        assert lines[1].startswith("check=LockError") and "forked child" in lines[1]
        assert lines[2].startswith("release=LockError") and "forked child" in lines[2]
        assert lines[3] == "acquire=LockTimeout"
        # Still ours, heartbeat written only by us, directory untouched.
        lock.check()
        time.sleep(0.25)
        lock.check()
        assert read_owner_json(db)["owner_id"] == owner
        assert read_owner_json(db)["pid"] == os.getpid()
    assert inspect_lock(db) is None


# -- reader/writer variant ---------------------------------------------------------


def test_writer_waits_for_active_reader_and_new_readers_wait_for_writer(tmp_path):
    db = str(tmp_path / "rw.sqlite")
    r1 = DirectoryLock(db, mode="read", **FAST)
    r2 = DirectoryLock(db, mode="read", **FAST)
    with r1, r2:  # readers share
        info = inspect_lock(db)
        assert info.state == "free" and len(info.readers) == 2
        with pytest.raises(LockTimeout, match="reader marker"):
            DirectoryLock(db, timeout=0.3, **FAST).acquire()
        assert not os.path.exists(str(db) + ".sss-lock")  # gave up cleanly
    with DirectoryLock(db, **FAST):
        with pytest.raises(LockTimeout, match="held for writing"):
            DirectoryLock(db, mode="read", timeout=0.3, **FAST).acquire()
    assert inspect_lock(db) is None


_SECOND_WRITER = """
import sys
from sqlite_session_safe.coordination.lock import DirectoryLock
lock = DirectoryLock(sys.argv[1], timeout=10, stale_timeout=10, heartbeat_interval=1)
print("acquiring", flush=True)
with lock:
    with open(sys.argv[2], "a") as f:
        f.write("writer2\\n")
"""


def test_waiting_reader_goes_before_the_next_writer(tmp_path):
    """A reader waiting for a held write lock goes before a writer that came
    after it (PROTOCOL.md §2.3 step 2.1: a writer that has seen a reader
    waiting lets it in first).  The second writer is another process, so it
    polls -- and sees the reader waiting -- while the first writer holds the
    lock.  (A second writer in the same process waits on the process's own
    mutex instead and looks at the readers only after the release, racing
    the reader's own wake-up: under load the reader, turned active in that
    instant, then yields to it as §2.3 says, which made this test flaky.)
    A long stale timeout: nobody here may be judged stale under load."""
    db = str(tmp_path / "fair.sqlite")
    order = str(tmp_path / "order")
    slow = dict(stale_timeout=10, heartbeat_interval=1)
    w1 = DirectoryLock(db, **slow)
    w1.acquire()
    reader = DirectoryLock(db, mode="read", timeout=10, **slow)

    def read() -> None:
        with reader:
            with open(order, "a") as f:
                f.write("reader\n")
            time.sleep(0.2)

    t_r = threading.Thread(target=read)
    t_r.start()
    p = None
    try:
        def reader_waits() -> bool:  # its marker says so
            info = inspect_lock(db)
            return info is not None and bool(info.readers) and info.readers[0].owner.phase == "waiting"

        wait_for(reader_waits, 10, "the reader's marker to say 'waiting'")
        p = subprocess.Popen([sys.executable, "-c", _SECOND_WRITER, db, order],
                             stdout=subprocess.PIPE, text=True)
        assert read_line(p, 30) == "acquiring"
        # Sleeping between polls: it has looked at the readers at least once.
        wait_for(lambda: process_state(p.pid) == "S", 10, "the second writer to wait")
        w1.release()
        assert p.wait(20) == 0
    finally:
        if w1.is_held:
            w1.release()
        t_r.join(10)
        if p is not None:
            stop(p)
    assert not t_r.is_alive()
    with open(order) as f:
        assert f.read().split() == ["reader", "writer2"]
    assert inspect_lock(db) is None


def test_stale_reader_marker_is_broken_by_writer(tmp_path):
    db = str(tmp_path / "sr.sqlite")
    r = DirectoryLock(db, mode="read", **FAST)
    r.acquire()
    marker = r._path
    # Simulate a crashed reader on this host: its process is gone.
    import dataclasses

    from sqlite_session_safe.coordination.owner import write_owner_file

    write_owner_file(marker, dataclasses.replace(r.owner, pid=dead_pid()))
    r._stop_heartbeat()
    with DirectoryLock(db, timeout=5, **FAST):
        assert not os.path.exists(marker)
    with pytest.raises(LockCompromised):
        r.release()


def test_backoff_is_bounded_for_any_number_of_polls():
    """The poll number grows without bound over a long wait; the sleep must
    stay within the cap and never overflow (faults review D1)."""
    from sqlite_session_safe.coordination.lock import waiting as lock_module

    for attempt in (0, 1, 5, 6, 1023, 1024, 1025, 10**6, 10**18):
        pause = lock_module.backoff(attempt)
        assert 0 < pause <= lock_module.BACKOFF_MAX


def test_rename_failure_counts_as_taken_only_when_something_is_there(tmp_path):
    """sshfs reports a rename onto a non-empty directory as EPERM: any
    failure while the destination exists means 'taken'; with nothing there it
    is a real error (faults review D2)."""
    import errno

    from sqlite_session_safe.coordination.lock import breaking as lock_module

    dest = tmp_path / "L"
    eperm = PermissionError(errno.EPERM, "Operation not permitted")
    assert not lock_module.rename_taken(eperm, str(dest))
    dest.mkdir()
    assert lock_module.rename_taken(eperm, str(dest))
    assert lock_module.rename_taken(OSError(errno.ENOTEMPTY, "not empty"), str(tmp_path / "absent"))
