"""Helpers for the lock tests: worker processes and planted lock states.

Workers are plain module-level functions so they also run under the
``spawn`` start method.  Everything touches real directories and processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time

from sqlite_session_safe.coordination import procinfo
from sqlite_session_safe.coordination.errors import LockCompromised, LockTimeout
from sqlite_session_safe.coordination.lock import DirectoryLock, lock_paths
from sqlite_session_safe.coordination.owner import OwnerRecord, new_owner_id

STRESS_SCALE = max(1, round(float(os.environ.get("SSS_STRESS_SCALE", "1"))))


def mp_context() -> multiprocessing.context.BaseContext:
    """fork where it exists (fast, and exercises the at-fork handling)."""
    if sys.platform == "win32":
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("fork")


def dead_pid() -> int:
    """A pid of this host whose process has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant_lock(
    db: str,
    *,
    pid: int | None = None,
    same_host: bool = True,
    stale_timeout: float = 60.0,
    heartbeat_interval: float = 1.0,
    heartbeat: int = 0,
) -> OwnerRecord:
    """Put a complete lock directory in place as a crashed client would leave
    it (built aside and renamed in, like a real client does)."""
    _db, lock_path, _r = lock_paths(db)
    rec = OwnerRecord.create(
        mode="write",
        target=os.path.basename(db),
        heartbeat_interval=heartbeat_interval,
        stale_timeout=stale_timeout,
    )
    rec = dataclasses.replace(
        rec,
        pid=pid if pid is not None else rec.pid,
        host="planted-host",
        host_id=procinfo.host_id() if same_host else "other:" + new_owner_id(),
        process_start="linux:1" if same_host else "",
        heartbeat=heartbeat,
    )
    tmp = f"{lock_path}.plant-{rec.owner_id}"
    os.mkdir(tmp)
    with open(os.path.join(tmp, "owner.json"), "wb") as f:
        f.write(rec.to_json_bytes())
    os.rename(tmp, lock_path)
    return rec


def read_owner_json(db: str) -> dict:
    _db, lock_path, _r = lock_paths(db)
    with open(os.path.join(lock_path, "owner.json"), encoding="utf-8") as f:
        return json.load(f)


# -- workers -----------------------------------------------------------------


def counter_worker(db: str, counter: str, marker: str, n: int, seed: int, start, out) -> None:
    """n acquisitions, each a non-atomic read-modify-write of a counter file,
    with an O_EXCL occupancy marker that fails if two holders overlap."""
    rnd = random.Random(seed)
    lock = DirectoryLock(db, timeout=300, stale_timeout=20.0, heartbeat_interval=0.5)
    overlaps = 0
    start.wait()
    for _ in range(n):
        with lock:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                mine = True
            except FileExistsError:
                overlaps += 1
                mine = False
            with open(counter, encoding="ascii") as f:
                value = int(f.read() or "0")
            if rnd.random() < 0.5:
                time.sleep(rnd.uniform(0, 0.002))  # widen the race window
            with open(counter, "w", encoding="ascii") as f:
                f.write(str(value + 1))
            if mine:
                os.unlink(marker)
    out.put(overlaps)


def hold_forever(db: str, stale_timeout: float, heartbeat_interval: float, conn) -> None:
    """Acquire, report the owner id, then sleep until killed."""
    lock = DirectoryLock(db, timeout=30, stale_timeout=stale_timeout, heartbeat_interval=heartbeat_interval)
    lock.acquire()
    conn.send(lock.owner.owner_id)
    while True:
        time.sleep(3600)


def paused_holder(db: str, stale_timeout: float, heartbeat_interval: float, conn) -> None:
    """Acquire; after being stopped and continued, report what check(),
    release() and the on_compromised callback did."""
    calls: list[str] = []
    lock = DirectoryLock(
        db,
        timeout=30,
        stale_timeout=stale_timeout,
        heartbeat_interval=heartbeat_interval,
        on_compromised=lambda e: calls.append(str(e)),
    )
    lock.acquire()
    conn.send(lock.owner.owner_id)
    conn.recv()  # "go": sent after SIGSTOP ... SIGCONT
    results = []
    for _ in range(3):
        try:
            lock.check()
            results.append("check-passed")
        except LockCompromised as e:
            results.append("compromised: " + str(e))
        time.sleep(heartbeat_interval)
    try:
        lock.release()
        results.append("release-ok")
    except LockCompromised:
        results.append("release-compromised")
    conn.send({"results": results, "callbacks": calls, "is_held": lock.is_held})


class _Records(logging.Handler):
    """Keeps the package's warnings (a breaker says whom it broke and why)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:300])


def breaker_worker(db: str, rounds: list[tuple[str, float, float, float]], barrier, out) -> None:
    """One of many racing breakers.  Per round: wait at the barrier for the
    planted stale lock, try to acquire, wait until everyone has tried, then
    (if won) prove the lock is still ours -- recording what ``check()`` said
    and who is at the lock path -- and release.

    Reports one dict per round: won, owner id, when it was admitted
    (CLOCK_MONOTONIC, shared by all processes of the host), the check
    result (True or the LockCompromised message), the owner at the lock path
    right before the check, and the package's warnings during the round.
    Every barrier wait is bounded; a broken (aborted) barrier ends the worker."""
    records = _Records()
    logging.getLogger("sqlite_session_safe").addHandler(records)
    try:
        for kind, timeout, stale, hb in rounds:
            barrier.wait(120)
            records.messages.clear()
            lock = DirectoryLock(db, timeout=timeout, stale_timeout=stale, heartbeat_interval=hb)
            try:
                lock.acquire()
                won, admitted = True, time.monotonic()
                owner = lock.owner.owner_id if lock.owner else None
            except LockTimeout:
                won, admitted, owner = False, None, None
            barrier.wait(120)  # all attempts over: nobody else may still acquire
            check: bool | str | None = None
            at_path = None
            if won:
                try:
                    at_path = read_owner_json(db)["owner_id"]
                except (OSError, ValueError, KeyError) as e:
                    at_path = f"unreadable: {type(e).__name__}"
                try:
                    lock.check()
                    check = True
                except LockCompromised as e:
                    check = str(e)
                try:
                    lock.release()
                except LockCompromised:
                    pass  # documented: a compromised holder touches nothing at the lock path
            out.put({
                "kind": kind, "pid": os.getpid(), "won": won,
                "owner": owner,
                "admitted": admitted, "check": check, "at_path": at_path,
                "log": list(records.messages),
            })
            barrier.wait(120)  # released: the parent may plant the next round
    except threading.BrokenBarrierError:
        return  # the parent gave up (a failed round): end quietly


def rw_worker(db: str, d: str, mode: str, n: int, seed: int, start, out) -> None:
    """Reader/writer mix: writers hold an O_EXCL ``writer`` file, readers a
    ``reading-<pid>`` file; each checks it never sees the other kind."""
    rnd = random.Random(seed)
    lock = DirectoryLock(db, mode=mode, timeout=300, stale_timeout=20.0, heartbeat_interval=0.5)
    writer_file = os.path.join(d, "writer")
    violations = max_readers = 0
    start.wait()
    for _ in range(n):
        with lock:
            if mode == "write":
                os.close(os.open(writer_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                if any(x.startswith("reading-") for x in os.listdir(d)):
                    violations += 1
                time.sleep(rnd.uniform(0, 0.003))
                os.unlink(writer_file)
            else:
                mine = os.path.join(d, f"reading-{os.getpid()}")
                open(mine, "w").close()
                time.sleep(rnd.uniform(0, 0.003))
                names = os.listdir(d)
                violations += "writer" in names
                max_readers = max(max_readers, sum(x.startswith("reading-") for x in names))
                os.unlink(mine)
        time.sleep(rnd.uniform(0, 0.002))
    out.put({"mode": mode, "done": n, "violations": violations, "max_readers": max_readers})
