"""Outer lock speed: DirectoryLock (lock protocol v1, network mode) and OSLock
(v2, trusted and wal modes) beside tox-dev/filelock's FileLock and SoftFileLock.

Same file system (one temporary directory, or ``--dir``), same run:

  uncontended  acquire + release of a free lock, one process (median and mean per cycle)
  hand-off     8 processes each take the lock ``--per`` times, holding it for a
               moment, all on one lock: acquisitions per second over the whole run

Each lock uses its library's defaults for polling.  Prints times and ratios
(DirectoryLock / other; below 1.0 means DirectoryLock is faster).  Note what is
not equal: DirectoryLock fsyncs a complete owner.json on every acquisition and
runs a heartbeat thread; FileLock is an OS lock (flock) that can't be broken
or inspected; SoftFileLock has no stale detection beyond a dead local pid.

    python bench/bench_lock.py                 # default sizes
    python bench/bench_lock.py --cycles 200 --per 50   # quick
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from sqlite_session_safe.coordination.admission import OSLock
from sqlite_session_safe.coordination.lock import DirectoryLock

try:
    from filelock import FileLock, SoftFileLock
except ImportError:  # filelock is in the "bench" extra
    FileLock = SoftFileLock = None


def make_lock(kind: str, db: str):
    if kind == "DirectoryLock":
        return DirectoryLock(db, timeout=600)
    if kind == "OSLock":  # its own file: v1 and v2 refuse each other on one database
        return OSLock(db + "-v2", timeout=600)
    if kind == "FileLock":
        return FileLock(db + ".filelock", timeout=600)
    return SoftFileLock(db + ".softlock", timeout=600)


def uncontended(kind: str, db: str, cycles: int) -> list[float]:
    lock = make_lock(kind, db)
    for _ in range(20):  # warm up
        with lock:
            pass
    times = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        lock.acquire()
        lock.release()
        times.append(time.perf_counter() - t0)
    return times


def _handoff_worker(kind: str, db: str, per: int, start, out) -> None:
    lock = make_lock(kind, db)
    start.wait()
    for _ in range(per):
        with lock:
            time.sleep(0.0002)  # a short critical section
    out.put(os.getpid())


def handoff(kind: str, db: str, procs: int, per: int) -> float:
    ctx = multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_handoff_worker, args=(kind, db, per, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.3)  # let every worker reach the start line
    t0 = time.perf_counter()
    start.set()
    for _ in workers:
        out.get()
    elapsed = time.perf_counter() - t0
    for w in workers:
        w.join()
    return procs * per / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000, help="uncontended acquire+release cycles")
    ap.add_argument("--procs", type=int, default=8, help="processes in the hand-off run")
    ap.add_argument("--per", type=int, default=100, help="acquisitions per process in the hand-off run")
    ap.add_argument("--dir", default=None, help="directory (file system) to lock in")
    args = ap.parse_args()
    kinds = ["DirectoryLock", "OSLock"] + (["FileLock", "SoftFileLock"] if FileLock else [])
    if FileLock is None:
        print("filelock not installed: pip install filelock (only DirectoryLock measured)")
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        db = os.path.join(d, "bench.sqlite")
        print(f"directory: {d}  python {sys.version.split()[0]}  cpus {os.cpu_count()}")
        lat: dict[str, list[float]] = {}
        thr: dict[str, float] = {}
        for kind in kinds:
            lat[kind] = uncontended(kind, db, args.cycles)
        for kind in kinds:
            thr[kind] = handoff(kind, db, args.procs, args.per)
    fmt: Callable[[float], str] = lambda s: f"{s * 1e6:9.1f} us"  # noqa: E731
    print(f"\nuncontended acquire+release, {args.cycles} cycles")
    base = lat["DirectoryLock"]
    for kind in kinds:
        med, mean = statistics.median(lat[kind]), statistics.fmean(lat[kind])
        ratio = statistics.median(base) / med
        print(f"  {kind:14s} median {fmt(med)}  mean {fmt(mean)}  DirectoryLock/this {ratio:6.2f}")
    print(f"\nhand-off, {args.procs} processes x {args.per} acquisitions (0.2 ms critical section)")
    for kind in kinds:
        ratio = thr["DirectoryLock"] / thr[kind]
        print(f"  {kind:14s} {thr[kind]:9.1f} acquisitions/s  DirectoryLock/this {ratio:6.2f}")


if __name__ == "__main__":
    main()
