"""Worker programs and invariant checks for the fault tests.

Each worker is a separate program (``python _faults_workers.py ROLE ARGS``),
started by the tests with real signals in mind; it prints one JSON object as
its last stdout line.  The checks at the bottom run in the test process.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _database_workers import replay, user_tables  # noqa: E402
from _faults_hooks import BeforeCommit, InterruptsInside, RenameCollision, pause_here  # noqa: E402

import sqlite_session_safe as sss  # noqa: E402


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:400]


def report(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


# -- the weak-lock writers (sshfs) ------------------------------------------------


def make_counter(path: str, mode: str) -> int:
    """A database in ``mode`` holding ``c(id, v)`` = (1, 0); returns its log position."""
    with sss.open(path, mode=mode) as db:
        res = db.migrate("CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
                         "INSERT INTO c VALUES (1, 0)", label="schema")
    return int(res.seq)


def role_inc(path: str, n: str, mode: str) -> None:
    """n read-modify-write increments through ``sss.open(...).write``, each
    retried (up to 100 times, 10 ms apart) when it raised without
    committing.  Reports each success's seq and the value it read, and every
    exception (a correct package raises none here)."""
    done: list[tuple[int, int, float]] = []
    errors: list[str] = []

    def inc(tx: sss.WriteTx) -> int:
        (v,) = tx.execute("SELECT v FROM c WHERE id = 1").fetchone()
        tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
        return int(v)

    t0 = time.monotonic()
    for _attempt in range(100):  # opening over sshfs can fail too (reported, retried)
        try:
            db = sss.open(path, mode=mode, timeout=120)
            break
        except Exception as e:  # noqa: BLE001
            errors.append("open: " + describe(e))
            time.sleep(0.01)
    else:
        report({"done": done, "errors": errors, "elapsed": time.monotonic() - t0})
        return
    with db:
        for _ in range(int(n)):
            for _attempt in range(100):
                try:
                    r = db.write(inc, label="inc")
                except Exception as e:  # noqa: BLE001 -- OverflowError too: reported, then retried
                    errors.append(describe(e))
                    r = getattr(e, "write", None)  # committed after all (contract: exc.write)
                    if r is None:
                        time.sleep(0.01)
                        continue
                done.append((r.seq, r.value, r.timing.wait if r.timing else 0.0))
                break
            else:
                break  # 100 failures in a row: give up, the report says so
    report({"done": done, "errors": errors, "elapsed": time.monotonic() - t0})


def role_dead_mount(path: str, mode: str) -> None:
    """One increment, then "ready"; after a line on stdin (the test has killed
    the mount's sshfs by then) two more tries and a close.  Reports what each
    raised: the type, whether it is an ``sss.Error``, the message, the errno of
    its cause and whether it carries a committed ``write``."""
    def inc(tx: sss.WriteTx) -> int:
        (v,) = tx.execute("SELECT v FROM c WHERE id = 1").fetchone()
        tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
        return int(v)

    def outcome(e: BaseException | None) -> dict[str, Any] | None:
        if e is None:
            return None
        cause = e.__cause__
        return {"type": type(e).__name__, "sss": isinstance(e, sss.Error), "message": str(e),
                "errno": getattr(cause, "errno", None), "committed": getattr(e, "write", None) is not None}

    db = sss.open(path, mode=mode, timeout=10)
    db.write(inc)
    print("ready", flush=True)
    sys.stdin.readline()
    tries: list[dict[str, Any] | None] = []
    for _ in range(2):
        try:
            db.write(inc)
            tries.append(None)
        except Exception as e:  # noqa: BLE001 -- reported, the test judges it
            tries.append(outcome(e))
    closed: dict[str, Any] | None = None
    try:
        db.close()
    except Exception as e:  # noqa: BLE001
        closed = outcome(e)
    report({"tries": tries, "close": closed})


def role_commit_on_dead_mount(path: str, mode: str, sshfs_pid: str, server_journal: str) -> None:
    """One increment; during the next one's COMMIT, the mount's sshfs
    (``sshfs_pid``) is SIGKILLed the moment the journal disappears on the
    server (``server_journal``, the export's view): the commit point has
    passed there, and the reply may or may not reach SQLite first.  Reports
    whether that write succeeded, or what it raised."""
    import threading

    def inc(tx: sss.WriteTx) -> int:
        (v,) = tx.execute("SELECT v FROM c WHERE id = 1").fetchone()
        tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
        return int(v)

    def kill_at_commit_point() -> None:
        def watch() -> None:
            end = time.monotonic() + 30
            while os.path.exists(server_journal) and time.monotonic() < end:
                pass
            os.kill(int(sshfs_pid), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()

    db = sss.open(path, mode=mode, timeout=10)
    db.write(inc)
    hook = BeforeCommit(kill_at_commit_point).install()
    out: dict[str, Any] = {"type": None}
    try:
        db.write(inc)
    except Exception as e:  # noqa: BLE001 -- reported, the test judges it
        out = {"type": type(e).__name__, "sss": isinstance(e, sss.Error), "message": str(e),
               "committed": getattr(e, "write", None) is not None,
               "cause": describe(e.__cause__) if e.__cause__ else None}
    out["fired"] = hook.fired
    try:
        db.close()
    except Exception as e:  # noqa: BLE001
        out["close"] = describe(e)
    report(out)


def role_release_on_dead_mount(path: str, mode: str, sshfs_pid: str) -> None:
    """One increment whose lock release meets a dead mount: the mount's sshfs
    (``sshfs_pid``) is SIGKILLed just before the rename that releases the
    lock directory (after COMMIT).  Then one more write and close().
    Reports each outcome (a hang is the test's timeout)."""
    def inc(tx: sss.WriteTx) -> int:
        (v,) = tx.execute("SELECT v FROM c WHERE id = 1").fetchone()
        tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
        return int(v)

    def attempt() -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            r = db.write(inc)
            return {"ok": r.value, "took": time.monotonic() - t0}
        except Exception as e:  # noqa: BLE001 -- reported, the test judges it
            return {"type": type(e).__name__, "sss": isinstance(e, sss.Error), "message": str(e),
                    "committed": getattr(e, "write", None) is not None, "took": time.monotonic() - t0}

    db = sss.open(path, mode=mode, timeout=30)
    fired = _kill_before_release_rename(path, sshfs_pid)
    first = attempt()
    second = attempt()
    t0 = time.monotonic()
    try:
        db.close()
        closed = "ok"
    except Exception as e:  # noqa: BLE001
        closed = describe(e)
    report({"fired": bool(fired), "first": first, "second": second, "close": closed,
            "close_took": time.monotonic() - t0})


def _wait_dead(path: str) -> None:
    """Until every access through the mount of ``path`` fails (ENOTCONN)."""
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            os.stat(os.path.dirname(path))
        except OSError:
            return
        time.sleep(0.01)


def _kill_before_release_rename(path: str, sshfs_pid: str) -> list[bool]:
    """From now on, the first rename that releases a lock directory first
    SIGKILLs the mount's sshfs (``sshfs_pid``) and waits until the mount is
    dead: the lock was verified, the rename meets ENOTCONN.  Returns a list
    that holds True once that happened."""
    real_rename = os.rename
    fired: list[bool] = []

    def rename(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        if not fired and ".sss-lock.released-" in os.fspath(dst):
            fired.append(True)
            os.kill(int(sshfs_pid), signal.SIGKILL)
            _wait_dead(path)
        real_rename(src, dst, *args, **kw)

    os.rename = rename  # type: ignore[assignment]
    return fired


def role_lock_release_on_dead_mount(path: str, sshfs_pid: str) -> None:
    """A DirectoryLock used directly whose mount dies as it is released
    (after the release verified it, before the rename): what release() and
    the next acquire() raise, and whether the object still claims the lock.
    Reports each outcome."""
    def outcome(call: Callable[[], object]) -> dict[str, Any]:
        try:
            call()
            return {"ok": True}
        except Exception as e:  # noqa: BLE001 -- reported, the test judges it
            return {"type": type(e).__name__, "sss": isinstance(e, sss.Error), "message": str(e),
                    "errno": getattr(e, "errno", None), "oserror": isinstance(e, OSError)}

    lock = sss.DirectoryLock(path, timeout=5)
    lock.acquire()
    fired = _kill_before_release_rename(path, sshfs_pid)
    release = outcome(lock.release)
    held = lock.is_held
    again = outcome(lambda: lock.acquire(timeout=2))
    report({"fired": bool(fired), "release": release, "held_after": held, "again": again})


def role_raw(path: str, n: str) -> None:
    """The control: the same increments with the stdlib sqlite3 and
    ``BEGIN IMMEDIATE`` (SQLite's own locks only)."""
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    retries = 0
    t0 = time.monotonic()
    for _ in range(int(n)):
        while True:
            try:
                con.execute("BEGIN IMMEDIATE")
                (v,) = con.execute("SELECT v FROM c WHERE id = 1").fetchone()
                con.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
                con.execute("COMMIT")
                break
            except sqlite3.OperationalError:
                retries += 1
                try:
                    con.execute("ROLLBACK")
                except sqlite3.OperationalError:
                    pass
                time.sleep(0.001)
    con.close()
    report({"retries": retries, "elapsed": time.monotonic() - t0})


# -- lock collision over sshfs (D2) ----------------------------------------------

_HOLD_SNIPPET = r"""
import sys, time, sqlite_session_safe as sss
lock = sss.DirectoryLock(sys.argv[1], timeout=30)
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.check()
lock.release()
print("released", flush=True)
"""

_HOLD_WRITE_SNIPPET = r"""
import sys, time, sqlite_session_safe as sss
db = sss.open(sys.argv[1], mode="network", timeout=30)
def slow(tx):
    tx.execute("UPDATE c SET v = v + 1 WHERE id = 1")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    return "holder"
db.write(slow, label="holder")
db.close()
print("released", flush=True)
"""


def role_collide(kind: str, mine: str, other: str, hold: str, when: str = "holding") -> None:
    """Take the lock of ``mine`` (``kind`` = ``lock``: a DirectoryLock;
    ``write``: ``sss.open(mode="network").write``) while the first rename
    onto the lock path is made to collide with a holder that takes the lock
    of ``other`` (the same file through another mount) and keeps it for
    ``hold`` seconds.  ``when`` = ``left``: the failed rename's error reaches
    the lock only after the holder has released (it then looks at a free
    lock path).  Reports the rename's errno and the outcome."""
    holder: list[subprocess.Popen[str]] = []
    snippet = _HOLD_SNIPPET if kind == "lock" else _HOLD_WRITE_SNIPPET

    def take_lock() -> None:
        p = subprocess.Popen([sys.executable, "-c", snippet, other, hold],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        holder.append(p)
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "held":
            err = p.stderr.read() if p.stderr else ""
            raise RuntimeError(f"holder did not take the lock: {line!r} {err}")

    from sqlite_session_safe.coordination.lock import lock_paths

    def holder_left() -> None:
        assert holder and holder[0].stdout is not None
        line = holder[0].stdout.readline().strip()
        if line != "released":
            raise RuntimeError(f"holder did not release: {line!r}")
        end = time.monotonic() + 30  # and this mount's caches say so too
        while os.path.lexists(lock_paths(mine)[1]):
            if time.monotonic() > end:
                raise RuntimeError("the released lock path stayed visible through this mount")
            time.sleep(0.05)

    hook = RenameCollision(lock_paths(mine)[1], take_lock,
                           holder_left if when == "left" else None).install()
    t0 = time.monotonic()
    doc: dict[str, Any] = {}
    try:
        if kind == "lock":
            with sss.DirectoryLock(mine, timeout=60):
                doc["outcome"] = "admitted"
        else:
            with sss.open(mine, mode="network", timeout=60) as db:
                r = db.write(lambda tx: tx.execute("UPDATE c SET v = v + 1 WHERE id = 1"), label="waiter")
                doc["outcome"] = "admitted"
                doc["seq"] = r.seq
    except BaseException as e:  # noqa: BLE001 -- the report is the point
        doc["outcome"] = "raised"
        doc["error"] = describe(e)
        doc["sss_error"] = isinstance(e, sss.Error)
    doc["waited"] = time.monotonic() - t0
    hook.uninstall()
    doc["rename"] = hook.outcome
    for p in holder:
        out, err = p.communicate(timeout=60)
        done = ["released"] if when == "left" else []  # read by holder_left already
        doc["holder"] = {"rc": p.returncode, "stdout": done + out.split(), "stderr": err[-2000:]}
    report(doc)


# -- long waits (D1) --------------------------------------------------------------

_HOLDERS = {
    # Holds through a plain DirectoryLock for HOLD seconds.
    "lock": _HOLD_SNIPPET,
    # Holds inside sss.open(MODE).write for HOLD seconds.
    "write": r"""
import sys, time, sqlite_session_safe as sss
db = sss.open(sys.argv[1], mode=sys.argv[3], timeout=30)
def slow(tx):
    tx.execute("INSERT INTO t(who) VALUES ('holder')")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
db.write(slow, label="holder")
db.close()
print("released", flush=True)
""",
}


def holder_cmd(kind: str, path: str, hold: float, mode: str = "trusted") -> list[str]:
    """A holder process: ``lock`` (DirectoryLock) or ``write`` (inside
    ``db.write``); prints ``held``, holds ``hold`` seconds, releases, prints
    ``released``."""
    return [sys.executable, "-c", _HOLDERS[kind], path, str(hold), mode]


def make_t(path: str, mode: str) -> None:
    """A database in ``mode`` with one table ``t(id, who)``."""
    with sss.open(path, mode=mode) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)", label="schema")


def role_wait(kind: str, path: str, mode: str, timeout: str) -> None:
    """Wait for the write lock of ``path`` (``lock``: DirectoryLock; ``write``:
    ``sss.open(mode).write``) with ``timeout``; report how it ended."""
    t0 = time.monotonic()
    doc: dict[str, Any] = {}
    try:
        if kind == "lock":
            with sss.DirectoryLock(path, timeout=float(timeout)):
                doc["outcome"] = "admitted"
        else:
            with sss.open(path, mode=mode, timeout=float(timeout)) as db:
                r = db.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('waiter')"), label="waiter")
                doc["outcome"] = "admitted"
                doc["seq"] = r.seq
    except BaseException as e:  # noqa: BLE001 -- the report is the point
        doc.update(outcome="raised", type=type(e).__name__, error=describe(e),
                   sss_error=isinstance(e, sss.Error))
    doc["waited"] = time.monotonic() - t0
    report(doc)


def role_paused_holder(path: str, mode: str, where: str = "inside") -> None:
    """A holder with the default stale timeout (15 s) that prints ``held``
    at ``where`` and then reads a line (the parent stops it in between, later
    continues it and sends a line).  ``where``: ``inside`` its write function
    (inside SQLite's write transaction), ``admitted`` (admitted, before the
    transaction begins), ``lock`` (a plain DirectoryLock, no database) or
    ``opening`` (inside ``sss.open``, which holds the write lock while it
    connects under lock protocol 1; a 1 s stale timeout).  Reports what
    happened to its write (or whether ``check()`` still passed)."""
    doc: dict[str, Any] = {}
    if where == "opening":
        from sqlite_session_safe.coordination.db_base import DatabaseBase

        prepared = DatabaseBase._prepared

        def paused(self: DatabaseBase, locked: bool) -> Any:
            pause_here()
            return prepared(self, locked)

        DatabaseBase._prepared = paused  # type: ignore[method-assign]
        try:
            db = sss.open(path, mode=mode, timeout=30, stale_timeout=1, heartbeat_interval=0.3)
        except Exception as e:  # noqa: BLE001
            report({"outcome": "raised", "error": describe(e)})
            return
        DatabaseBase._prepared = prepared  # type: ignore[method-assign]
        with db:
            r = db.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('opened')"), label="opened")
        report({"outcome": "opened", "seq": r.seq})
        return
    if where == "lock":
        lock = sss.DirectoryLock(path, timeout=30)
        lock.acquire()
        pause_here()
        try:
            lock.check()
            lock.release()
            doc.update(outcome="kept")
        except Exception as e:  # noqa: BLE001
            doc.update(outcome="raised", error=describe(e))
        report(doc)
        return
    with sss.open(path, mode=mode, timeout=30) as db:
        if where == "admitted":
            db._after_admission = pause_here

        def fn(tx: sss.WriteTx) -> None:
            tx.execute("INSERT INTO t(who) VALUES ('paused')")
            if where == "inside":
                pause_here()

        try:
            r = db.write(fn, label="paused")
            doc.update(outcome="committed", seq=r.seq)
        except Exception as e:  # noqa: BLE001
            w = getattr(e, "write", None)
            doc.update(outcome="raised", error=describe(e), committed_seq=w.seq if w else None)
    report(doc)


# -- chaos ------------------------------------------------------------------------

CHAOS_STALE = 1.0
CHAOS_BEAT = 0.3


def chaos_open(path: str, mode: str) -> sss.Database:
    return sss.open(path, mode=mode, timeout=60, stale_timeout=CHAOS_STALE,
                    heartbeat_interval=CHAOS_BEAT)


def make_chaos_db(path: str, mode: str) -> None:
    """``counter`` (one row) and ``item``: each write adds 1 to the counter
    and inserts an item carrying its writer's unique token and the counter
    value it set (``k``)."""
    with chaos_open(path, mode) as db:
        db.migrate(
            "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
            "INSERT INTO counter VALUES (1, 0);"
            "CREATE TABLE item(id INTEGER PRIMARY KEY, token TEXT NOT NULL, k INTEGER NOT NULL, "
            "payload BLOB NOT NULL)",
            label="schema",
        )


def _append(fd: int, doc: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(doc) + "\n").encode())
    os.fsync(fd)


def role_chaos_writer(path: str, mode: str, writer: str, incarnation: str, stop_file: str,
                      acks: str) -> None:
    """Write until ``stop_file`` exists: each write increments the counter,
    inserts an item with a token unique to this logical write, and sometimes
    inserts a second row.  After ``db.write`` returns (or raises an exception
    carrying ``exc.write``) it appends {seq, token, rowid} to ``acks``,
    fsynced.  A write that raised without committing is retried with the
    same token (so a write that did commit although reported otherwise shows
    as a duplicate token).  A KeyboardInterrupt is handled like any other
    failure and the same Database keeps writing."""
    intr = InterruptsInside().install()
    rnd = random.Random()
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    counts = {"ok": 0, "interrupted": 0, "interrupted_committed": 0, "errors": 0}
    errors: list[str] = []
    print("ready", flush=True)  # from here on a SIGINT is the package's business
    db = chaos_open(path, mode)
    i = 0
    while not os.path.exists(stop_file):
        i += 1
        token = f"w{writer}.{incarnation}.{i}"
        extra = rnd.random() < 0.3
        payload = rnd.randbytes(rnd.choice((10, 100, 2000)))

        def fn(tx: sss.WriteTx, token: str = token, extra: bool = extra, payload: bytes = payload) -> int:
            (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
            cur = tx.execute("INSERT INTO item(token, k, payload) VALUES (?, ?, ?)", (token, n + 1, payload))
            rowid = cur.lastrowid
            if extra:
                tx.execute("INSERT INTO item(token, k, payload) VALUES (?, 0, x'')", (token + ".x",))
            return int(rowid)

        failed: list[str] = []  # what the earlier attempts of this logical write raised
        while not os.path.exists(stop_file):
            try:
                r = db.write(fn, label=f"w{writer}")
            except BaseException as e:  # noqa: BLE001 -- KeyboardInterrupt included, by design
                interrupted = isinstance(e, KeyboardInterrupt)
                failed.append(describe(e)[:200])
                # where it came from, for a test that finds this process hung later
                where = "".join(traceback.format_exception(e) if interrupted or len(failed) == 1
                                else traceback.format_exception_only(e))[-3000:]
                print(f"write {token} raised (committed: {getattr(e, 'write', None) is not None}):\n"
                      f"{where}", file=sys.stderr, flush=True)
                r = getattr(e, "write", None)
                if interrupted:
                    counts["interrupted"] += 1
                    counts["interrupted_committed"] += r is not None
                elif not isinstance(e, Exception):
                    raise  # SystemExit and the like
                else:
                    counts["errors"] += 1
                    if len(errors) < 20:
                        errors.append(describe(e))
                if r is None:
                    time.sleep(0.005)
                    continue  # not committed: try the same logical write again
            else:
                counts["ok"] += 1
            _append(fd, {"seq": r.seq, "token": token, "rowid": r.value, "retried_after": failed})
            break
        intr.pending = 0  # a Ctrl-C between writes: nothing to do
    db.close()
    os.close(fd)
    report({"writer": writer, "counts": counts, "errors": errors,
            "interrupts_delivered": intr.delivered})


def _looping(what: str, stop_file: str, step: Callable[[], object]) -> None:
    """Run ``step`` until ``stop_file`` exists.  A KeyboardInterrupt ends the
    program (exit 130) like a Ctrl-C would; the test restarts it."""
    counts = {"ok": 0, "errors": 0}
    errors: list[str] = []
    print("ready", flush=True)
    try:
        while not os.path.exists(stop_file):
            try:
                step()
                counts["ok"] += 1
            except Exception as e:  # noqa: BLE001 -- reported
                counts["errors"] += 1
                if len(errors) < 20:
                    errors.append(describe(e))
                time.sleep(0.01)
    except KeyboardInterrupt:
        report({"role": what, "counts": counts, "errors": errors, "interrupted": True})
        sys.exit(130)
    report({"role": what, "counts": counts, "errors": errors})


def role_opener(path: str, mode: str, kind: str, stop_file: str) -> None:
    """Open and close ``path`` in a loop until ``stop_file`` exists: with
    ``sss.open`` (``kind`` "sss"), or (``kind`` "unlocked", the control) with
    the stdlib and the schema load that ``PRAGMA synchronous`` does, without
    any outer lock."""
    def step() -> None:
        if kind == "sss":
            sss.open(path, mode=mode, timeout=60).close()
        else:
            con = sqlite3.connect(path)
            try:
                con.execute("PRAGMA synchronous = FULL")
            finally:
                con.close()

    _looping("opener", stop_file, step)


def role_chaos_replicator(src: str, replica: str, mode: str, stop_file: str) -> None:
    """``sss.replicate(source, replica)`` in a loop."""
    with chaos_open(src, mode) as s, chaos_open(replica, mode) as r:
        _looping("replicator", stop_file, lambda: sss.replicate(s, r, batch=random.choice((1, 8, 256))))


def role_chaos_backup(src: str, dest: str, mode: str, stop_file: str) -> None:
    """``db.backup(dest)`` in a loop."""
    with chaos_open(src, mode) as db:
        _looping("backup", stop_file, lambda: db.backup(dest, pages=random.choice((16, -1))))


# -- checks (run in the test process) ---------------------------------------------


def integrity(path: str) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def log_matches_data(path: str, start_copy: str, mode: str) -> int:
    """Replay ``path``'s log (a database used in ``mode``) onto a fresh copy
    of ``start_copy``; assert the result equals ``path``'s tables.  Returns
    the last seq replayed."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fresh = os.path.join(d, "replayed.db")
        shutil.copy(start_copy, fresh)
        replayed, last = replay(path, fresh, mode=mode)
    con = sss.connect(path)
    try:
        data = user_tables(con)
    finally:
        con.close()
    assert replayed == data, "the log replayed onto the start copy differs from the data"
    return last


ROLES: dict[str, Callable[..., None]] = {
    "inc": role_inc,
    "raw": role_raw,
    "dead-mount": role_dead_mount,
    "commit-on-dead-mount": role_commit_on_dead_mount,
    "release-on-dead-mount": role_release_on_dead_mount,
    "lock-release-on-dead-mount": role_lock_release_on_dead_mount,
    "opener": role_opener,
    "collide": role_collide,
    "wait": role_wait,
    "paused-holder": role_paused_holder,
    "chaos-writer": role_chaos_writer,
    "chaos-replicator": role_chaos_replicator,
    "chaos-backup": role_chaos_backup,
}


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A test that finds a worker hung sends SIGUSR1 first: every thread's stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        ROLES[sys.argv[1]](*sys.argv[2:])
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)  # a Ctrl-C outside the loops that handle it (e.g. while opening)
    except BaseException:
        traceback.print_exc()
        sys.exit(3)
