"""Long waits (issue 12, point 1; faults.md D1): a waiter waits until it is
admitted or until its own timeout, then raises ``LockTimeout`` naming the
holder or the refused state; never ``OverflowError`` or another non-
``sss.Error``, whatever the length of the wait.

Each test runs its scenarios at once, each in its own processes (holders,
waiters and the CLI are separate programs), so a test takes about as long as
its longest wait: the default one about 8 s (waits of 6-7 s: every waiter
died of OverflowError after about 4 s), the stress one about 45 s (waits of
25 s, and paused holders outwaited past the default 15 s stale timeout).
Times bound the waits; nothing asserts on them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _faults_rig import WORKERS, finish, process_state, read_line, run_json, spawn, stop, wait_for
from _faults_workers import holder_cmd, log_matches_data, make_t

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.lock import inspect_lock, lock_paths

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

CLI = [sys.executable, "-m", "sqlite_session_safe.faces.cli"]


def run_all(scenarios: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run the scenarios concurrently; fail naming every one that failed."""
    with ThreadPoolExecutor(len(scenarios)) as pool:
        futures = {name: pool.submit(fn) for name, fn in scenarios.items()}
    failed, results = [], {}
    for name, fut in futures.items():
        try:
            results[name] = fut.result()
        except BaseException as e:  # noqa: BLE001 -- collected and reported below
            failed.append(f"{name}: {type(e).__name__}: {e}")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in results.items()))
    assert not failed, "\n".join(failed)
    return results


class Holder:
    """A holder process (see ``_faults_workers.holder_cmd``), stopped on exit."""

    def __init__(self, kind: str, path: str, hold: float, mode: str = "trusted") -> None:
        self.proc = subprocess.Popen(holder_cmd(kind, path, hold, mode), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.pid = self.proc.pid
        line = read_line(self.proc, 60)
        assert line == "held", line

    def released(self, timeout: float) -> None:
        """Wait for the holder to have released and exited cleanly."""
        rc, out, err = finish(self.proc, timeout)
        assert rc == 0 and out.split() == ["released"], (rc, out, err[-2000:])

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()


def _db(tmp_path: Any, name: str, mode: str, rows: int = 0) -> str:
    path = str(tmp_path / name)
    make_t(path, mode)
    if rows:
        with sss.open(path, mode=mode) as db:
            db.write(lambda tx: tx.executemany("INSERT INTO t(who) VALUES (?)", [("seed",)] * rows),
                     label="seed")
    return path


def _admitted_after_holder(tmp_path: Any, kind: str, mode: str, hold: float) -> Callable[[], Any]:
    """A waiter (``kind`` lock or write) on a live holder of the same kind
    that holds ``hold`` seconds: admitted once the holder leaves."""

    def scenario() -> Any:
        path = _db(tmp_path, f"{kind}-{mode}-{hold:g}.db", mode) if kind == "write" else \
            str(tmp_path / f"plain-{hold:g}.db")
        with Holder(kind, path, hold, mode) as h:
            doc = run_json("wait", kind, path, mode, 4 * hold + 60, timeout=5 * hold + 120)
            h.released(60)
        assert doc["outcome"] == "admitted", doc
        if kind == "write":
            with sss.connect(path) as con:
                assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == ["holder", "waiter"]
        assert inspect_lock(path) is None
        return f"admitted after {doc['waited']:.1f} s"

    return scenario


def _cli(*args: str, timeout: float) -> tuple[int, str, str]:
    p = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(p, timeout)


def _cli_admitted_after_holder(tmp_path: Any, hold: float) -> Callable[[], Any]:
    """``sqlite-session-safe --timeout T undo DB 2`` while a writer holds the
    lock for ``hold`` seconds (T well beyond it): exit 0 once the holder leaves."""

    def scenario() -> Any:
        path = _db(tmp_path, f"cli-{hold:g}.db", "trusted", rows=1)
        with Holder("write", path, hold) as h:
            rc, out, err = _cli("undo", path, "2", "--timeout", str(4 * hold + 60),
                                timeout=5 * hold + 120)
            h.released(60)
        assert rc == 0 and "Traceback" not in err, (rc, out, err[-2000:])
        with sss.connect(path) as con:
            assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == ["holder"]
        return "exit 0"

    return scenario


def _cli_times_out_on_holder(tmp_path: Any, timeout: float) -> Callable[[], Any]:
    """The CLI's ``--timeout`` against a holder that stays: exit 3
    (``LockTimeout``, no traceback) once its own timeout has passed."""

    def scenario() -> Any:
        path = _db(tmp_path, f"cli-timeout-{timeout:g}.db", "trusted", rows=1)
        with Holder("write", path, timeout + 120):
            rc, out, err = _cli("undo", path, "2", "--timeout", str(timeout), timeout=timeout + 120)
        timed_out = "timed out waiting for lock" in err
        assert rc == 3 and timed_out and "Traceback" not in err, (rc, out, err[-2000:])
        return "exit 3, LockTimeout"

    return scenario


def _refused_state(tmp_path: Any, kind: str, timeout: float) -> Callable[[], Any]:
    """A regular file at the lock path (a state no client leaves): the waiter
    waits its whole timeout, then raises LockTimeout naming the state."""

    def scenario() -> Any:
        if kind == "cli":
            path = _db(tmp_path, f"refused-cli-{timeout:g}.db", "network", rows=1)
        elif kind == "write":
            path = _db(tmp_path, f"refused-write-{timeout:g}.db", "network")
        else:
            path = str(tmp_path / f"refused-lock-{timeout:g}.db")
        with open(lock_paths(path)[1], "w") as f:
            f.write("not a lock")
        if kind == "cli":
            rc, out, err = _cli("--mode", "network", "undo", path, "2", "--timeout", str(timeout),
                                timeout=timeout + 120)
            timed_out = "timed out waiting for lock" in err
            assert rc == 3 and timed_out and "not-a-directory" in err, (rc, out, err[-2000:])
            assert "Traceback" not in err
            return "exit 3, LockTimeout (not-a-directory)"
        doc = run_json("wait", kind, path, "network", timeout, timeout=timeout + 120)
        assert doc["outcome"] == "raised" and doc["type"] == "LockTimeout", doc
        assert "not-a-directory" in doc["error"], doc
        assert doc["waited"] >= timeout, doc
        return f"LockTimeout after {doc['waited']:.1f} s"

    return scenario


def _paused_trusted_holder(tmp_path: Any, timeout: float) -> Callable[[], Any]:
    """Trusted mode: a holder stopped (SIGSTOP) inside its write.  A waiter
    with a short timeout waits it out and raises LockTimeout naming the
    holder (lock protocol v2 never breaks a live paused holder; v1 breaks it
    after the stale timeout, 15 s by default, longer than this wait).  After
    SIGCONT the holder's write commits and a new waiter gets in; nothing is
    lost."""

    def scenario() -> Any:
        path = _db(tmp_path, f"paused-trusted-{timeout:g}.db", "trusted")
        start = path + ".start"
        with sss.open(path) as db:
            db.backup(start)
        with PausedHolder(path, "trusted", "inside") as h:
            doc = run_json("wait", "write", path, "trusted", timeout, timeout=timeout + 120)
            assert doc["outcome"] == "raised" and doc["type"] == "LockTimeout", doc
            assert f"pid {h.pid}" in doc["error"], doc
            held = h.resume()
        assert held["outcome"] == "committed", held
        after = run_json("wait", "write", path, "trusted", 60, timeout=120)
        assert after["outcome"] == "admitted", after
        with sss.connect(path) as con:
            assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == ["paused", "waiter"]
        log_matches_data(path, start, "trusted")
        return f"LockTimeout after {doc['waited']:.1f} s naming pid {h.pid}; holder committed after SIGCONT"

    return scenario




# -- default size: waits of ~7 s (every waiter died of OverflowError after ~4 s: D1) -----------


def test_long_waits(tmp_path):
    run_all({
        "DirectoryLock on a DirectoryLock holder (7 s)": _admitted_after_holder(tmp_path, "lock", "", 7),
        "trusted db.write on a writer (7 s)": _admitted_after_holder(tmp_path, "write", "trusted", 7),
        "network db.write on a writer (7 s)": _admitted_after_holder(tmp_path, "write", "network", 7),
        "CLI --timeout 88 undo on a writer (7 s)": _cli_admitted_after_holder(tmp_path, 7),
        "CLI --timeout 7 undo on a writer that stays": _cli_times_out_on_holder(tmp_path, 7),
        "trusted db.write (timeout 7) on a paused writer": _paused_trusted_holder(tmp_path, 7),
        "refused state: DirectoryLock, timeout 6": _refused_state(tmp_path, "lock", 6),
        "refused state: network db.write, timeout 6": _refused_state(tmp_path, "write", 6),
        "refused state: CLI --timeout 6": _refused_state(tmp_path, "cli", 6),
    })


class PausedHolder:
    """A holder stopped (SIGSTOP) at a pause point (``_faults_workers``
    role ``paused-holder``); continued and reaped on exit."""

    def __init__(self, path: str, mode: str, where: str) -> None:
        self.proc = subprocess.Popen([sys.executable, WORKERS, "paused-holder", path, mode, where],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.pid = self.proc.pid
        self.report: dict[str, Any] = {}
        try:
            assert read_line(self.proc, 60) == "held"
            os.kill(self.pid, signal.SIGSTOP)
            wait_for(lambda: process_state(self.pid) == "T", 10, "the holder to stop")
        except BaseException:
            stop(self.proc)
            raise

    def resume(self) -> dict[str, Any]:
        """SIGCONT, let it go on, wait for its report."""
        os.kill(self.pid, signal.SIGCONT)
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        rc, out, err = finish(self.proc, 60)
        assert rc == 0, (rc, out, err[-2000:])
        self.report = json.loads(out.strip().splitlines()[-1])
        return self.report

    def __enter__(self) -> PausedHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def _network_db(tmp_path: Any, name: str) -> tuple[str, str]:
    path = _db(tmp_path, name, "network")
    start = path + ".start"
    with sss.open(path, mode="network") as db:
        db.backup(start)
    return path, start


def _outwait_paused_network_holder(tmp_path: Any, where: str) -> Callable[[], Any]:
    """Network mode, default 15 s stale timeout: a holder stopped at
    ``where`` (``admitted``: before its transaction; ``lock``: a plain
    DirectoryLock) is outwaited by a waiter with the default settings (60 s
    timeout): it breaks the stale lock after ~15 s and is admitted.  The
    holder, continued, finds its lock lost and commits nothing."""

    def scenario() -> Any:
        if where == "lock":
            path, start = str(tmp_path / "paused-lock.db"), ""
        else:
            path, start = _network_db(tmp_path, f"paused-{where}.db")
        with PausedHolder(path, "network", where) as h:
            doc = run_json("wait", "lock" if where == "lock" else "write", path, "network", 60, timeout=180)
            held = h.resume()
        assert doc["outcome"] == "admitted", doc
        assert held["outcome"] == "raised" and "LockCompromised" in held["error"], held
        assert held.get("committed_seq") is None, held
        if start:
            with sss.connect(path) as con:
                assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == ["waiter"]
            log_matches_data(path, start, "network")
        return f"admitted after {doc['waited']:.1f} s; the continued holder: {held['error'][:60]}"

    return scenario


def test_an_open_whose_lock_is_broken_while_it_is_stopped_still_opens(tmp_path: Any) -> None:
    """Network mode: ``sss.open`` holds the write lock while it connects.  A
    process stopped there past its stale timeout (1 s) has its lock broken by
    a writer, which commits; continued, it finds its lock lost at release.
    The open wrote nothing of the caller's, so it succeeds (the loss is
    logged) and its next write commits after the other's; the log replays to
    the data.  Before: sss.open raised LockCompromised (seen in the chaos
    stress run, network round 5)."""
    path, start = _network_db(tmp_path, "paused-open.db")
    with PausedHolder(path, "network", "opening") as h:
        with sss.open(path, mode="network", timeout=30, stale_timeout=1, heartbeat_interval=0.3) as db:
            db.write(lambda tx: tx.execute("INSERT INTO t(who) VALUES ('waiter')"), label="waiter")
        held = h.resume()
    assert held["outcome"] == "opened", held
    with sss.connect(path) as con:
        assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == ["waiter", "opened"]
    log_matches_data(path, start, "network")


def _paused_inside_transaction(tmp_path: Any, resume_after: float | None) -> Callable[[], Any]:
    """Network mode: the holder is stopped inside its write, so it also holds
    SQLite's write lock on the file.  The waiter breaks the stale directory
    lock after ~15 s but cannot begin its transaction while the stopped
    process holds SQLite's lock.

    ``resume_after`` seconds (past the stale timeout): the holder is continued,
    finds its lock lost, rolls back; the waiter (60 s timeout) is then admitted.
    None: the holder stays stopped; the waiter (timeout 25 s) raises
    LockTimeout at its own timeout (not BusyError after its busy timeout)."""

    def scenario() -> Any:
        path, start = _network_db(tmp_path, f"paused-inside-{resume_after}.db")
        with PausedHolder(path, "network", "inside") as h:
            timeout = 60 if resume_after else 25
            waiter = spawn("wait", "write", path, "network", timeout)
            try:
                if resume_after:
                    time.sleep(resume_after)
                    held = h.resume()
                rc, out, err = finish(waiter, timeout + 120)
            finally:
                stop(waiter)
            assert rc == 0, (rc, err[-2000:])
            doc = json.loads(out.strip().splitlines()[-1])
            if not resume_after:
                held = h.resume()
        if resume_after:
            assert doc["outcome"] == "admitted", doc
            assert held["outcome"] == "raised" and "LockCompromised" in held["error"], held
            assert held.get("committed_seq") is None, held
            expect = ["waiter"]
        else:
            assert doc["outcome"] == "raised" and doc["type"] == "LockTimeout", \
                f"after {doc['waited']:.1f} s (timeout {timeout}): {doc}"
            assert held["outcome"] in ("raised", "committed"), held
            expect = ["paused"] if held["outcome"] == "committed" else []
        with sss.connect(path) as con:
            assert [r[0] for r in con.execute("SELECT who FROM t ORDER BY id")] == expect
        log_matches_data(path, start, "network")
        return f"waiter {doc['outcome']} after {doc['waited']:.1f} s; holder {held['outcome']}"

    return scenario


# -- stress: waits over 20 s ------------------------------------------------------------------


@pytest.mark.stress
def test_long_waits_stress(tmp_path):
    run_all({
        "DirectoryLock on a DirectoryLock holder (25 s)": _admitted_after_holder(tmp_path, "lock", "", 25),
        "trusted db.write on a writer (25 s)": _admitted_after_holder(tmp_path, "write", "trusted", 25),
        "network db.write on a writer (25 s)": _admitted_after_holder(tmp_path, "write", "network", 25),
        "CLI --timeout 160 undo on a writer (25 s)": _cli_admitted_after_holder(tmp_path, 25),
        "refused state: DirectoryLock, timeout 25": _refused_state(tmp_path, "lock", 25),
        "refused state: network db.write, timeout 25": _refused_state(tmp_path, "write", 25),
        "refused state: CLI --timeout 25": _refused_state(tmp_path, "cli", 25),
        "network, paused after admission, default 15 s stale timeout":
            _outwait_paused_network_holder(tmp_path, "admitted"),
        "network DirectoryLock paused, default 15 s stale timeout":
            _outwait_paused_network_holder(tmp_path, "lock"),
        "network, paused in its transaction, continued after 20 s":
            _paused_inside_transaction(tmp_path, 20.0),
        "network db.write (timeout 25), holder paused in its transaction for good":
            _paused_inside_transaction(tmp_path, None),
    })
