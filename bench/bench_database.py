"""Coordinated writes (``sss.open``) against stdlib ``sqlite3`` doing the same work.

Same file system (a temporary directory, or ``--dir``), same pragmas
(``synchronous=FULL``, ``foreign_keys=ON``; rollback journal unless said), same
run.  Every workload is a read-modify-write of one counter row: read it, write
it back + 1.  Four measures, each printed with its ratio to the stdlib and the
target (issue 13):

  single     one write, one process, interleaved rounds; median per write.
             sss: ``db.write(fn)`` = admission (the OS lock) + BEGIN IMMEDIATE +
             epoch CAS + session + audit log entry + lock check + COMMIT.
             stdlib: BEGIN IMMEDIATE + the same two statements + COMMIT.
             Also: sss with ``audit=False``; "lock+stdlib" (the bare OS lock
             around the stdlib write); two floors through this package's
             connection with no outer lock and no Database layer:
             "floor-session" (the stdlib write plus a session and its
             changeset()) and "floor-audit" (plus the epoch CAS and the log
             insert: what a fenced, logged write costs at least).
             Target: sss / stdlib <= 1.15.
  processes  ``--procs`` processes x ``--per`` writes, one Database (or one
             stdlib connection, busy_timeout ``--busy-ms``) per process.
             Throughput over the whole run; sss's admission wait (p50, p99 of
             ``WriteResult.timing.wait``) against the stdlib's write latency
             (p50, p99 of one write from its first BEGIN to its COMMIT,
             retries included) and its "database is locked" errors (each
             retried).  Target: ratio >= 1.0, sss p99 wait <= stdlib p99
             latency, 0 busy errors on our side.
  threads    one Database shared by ``--procs`` threads x ``--per`` writes (group
             commit) against as many stdlib threads, each with its own
             connection.  Target: ratio >= 3.0.
  wal        as "processes", in WAL mode on both sides.  Target: >= 1.0.

    python bench/bench_database.py                        # default sizes
    python bench/bench_database.py --writes 200 --per 50  # quick
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import audit, fencing

PRAGMAS = ("PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")
SCHEMA = "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"


def increment_sss(tx: sss.WriteTx) -> None:
    (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))


def stdlib_connect(path: str, busy_ms: int, journal: str = "delete") -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000, check_same_thread=False)
    con.execute(f"PRAGMA journal_mode={journal}")
    for p in PRAGMAS:
        con.execute(p)
    return con


def increment_stdlib(con: sqlite3.Connection) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        (n,) = con.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        con.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def stdlib_write_retrying(con: sqlite3.Connection) -> tuple[float, int]:
    """One stdlib write, retried on "database is locked": (latency, errors)."""
    t0 = time.perf_counter()
    errors = 0
    while True:
        try:
            increment_stdlib(con)
            return time.perf_counter() - t0, errors
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            errors += 1


def setup(path: str, mode: str = "trusted", audit_log: bool = True) -> None:
    with sss.open(path, mode=mode, audit=audit_log) as db:  # type: ignore[arg-type]
        db.migrate(SCHEMA + "; INSERT OR IGNORE INTO counter VALUES (1, 0)")


def setup_stdlib(path: str, journal: str = "delete") -> None:
    con = stdlib_connect(path, 5000, journal)
    con.execute(SCHEMA)
    con.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")
    con.close()


def floor_connect(path: str) -> sss.Connection:
    """A database set up like a coordinated one (epoch and log tables),
    written through the plain connection."""
    setup(path)
    with sss.open(path) as db:  # one write, so the log and epoch tables exist
        db.write(increment_sss)
    con = sss.connect(path)
    con.executescript("; ".join(PRAGMAS))
    return con


def floor_write(con: sss.Connection, epoch: list[int] | None) -> None:
    """The statements a coordinated write runs, without the lock or the
    Database layer: session + (with ``epoch``) fencing and the log entry."""
    with con.transaction("immediate"):
        if epoch is not None:
            epoch[0] = fencing.advance_epoch(con, epoch[0], logged=True)  # it logs below
        with con.session(skip_reserved=True) as s:
            (n,) = con.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            con.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
            changeset = s.changeset()
        if epoch is not None:
            audit.append_entry(con, owner="0" * 32, host="bench", pid=os.getpid(), label=None,
                               kind="data", changeset=bytes(changeset), sql=None, epoch=epoch[0])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- single -----------------------------------------------------------------------


def single(workdir: str, writes: int, rounds: int) -> dict[str, list[float]]:
    path = {k: os.path.join(workdir, f"single-{k}.db") for k in ("sss", "noaudit", "lock", "stdlib")}
    setup(path["sss"])
    setup(path["noaudit"], audit_log=False)
    setup_stdlib(path["stdlib"])
    setup_stdlib(path["lock"])
    db = sss.open(path["sss"])
    db_noaudit = sss.open(path["noaudit"], audit=False)
    con = stdlib_connect(path["stdlib"], 5000)
    con_locked = stdlib_connect(path["lock"], 5000)
    lock = sss.OSLock(path["lock"])
    floor_session = floor_connect(os.path.join(workdir, "single-floor-session.db"))
    floor_audit = floor_connect(os.path.join(workdir, "single-floor-audit.db"))
    epoch = [fencing.read_epoch(floor_audit)]

    def locked_stdlib() -> None:
        with lock.acquire():
            increment_stdlib(con_locked)

    runs: dict[str, Callable[[], object]] = {
        "sss": lambda: db.write(increment_sss),
        "sss-noaudit": lambda: db_noaudit.write(increment_sss),
        "lock+stdlib": locked_stdlib,
        "floor-session": lambda: floor_write(floor_session, None),
        "floor-audit": lambda: floor_write(floor_audit, epoch),
        "stdlib": lambda: increment_stdlib(con),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm up
        for _ in range(20):
            fn()
    per_round = max(1, writes // rounds)
    for _ in range(rounds):  # interleaved, so disk/cache drift hits all alike
        for name, fn in runs.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    for c in (db, db_noaudit, con, con_locked, floor_session, floor_audit):
        c.close()
    return times


# -- processes ----------------------------------------------------------------------


def _proc_sss(path: str, mode: str, per: int, start, out) -> None:  # type: ignore[no-untyped-def]
    db = sss.open(path, mode=mode, timeout=600)  # type: ignore[arg-type]
    start.wait()
    waits = [db.write(increment_sss).timing.wait for _ in range(per)]
    db.close()
    out.put((waits, 0))


def _proc_stdlib(path: str, journal: str, per: int, busy_ms: int, start, out) -> None:  # type: ignore[no-untyped-def]
    con = stdlib_connect(path, busy_ms, journal)
    start.wait()
    results = [stdlib_write_retrying(con) for _ in range(per)]
    con.close()
    out.put(([lat for lat, _ in results], sum(e for _, e in results)))


def processes(workdir: str, kind: str, mode: str, procs: int, per: int,
              busy_ms: int) -> tuple[float, list[float], int]:
    """(writes/s, per-write waits or latencies, busy errors)."""
    path = os.path.join(workdir, f"procs-{kind}-{mode}.db")
    journal = "wal" if mode == "wal" else "delete"
    if kind == "sss":
        setup(path, mode)
    else:
        setup_stdlib(path, journal)
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    start, out = ctx.Event(), ctx.Queue()
    if kind == "sss":
        workers = [ctx.Process(target=_proc_sss, args=(path, mode, per, start, out)) for _ in range(procs)]
    else:
        workers = [ctx.Process(target=_proc_stdlib, args=(path, journal, per, busy_ms, start, out))
                   for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # let them all open their databases
    t0 = time.perf_counter()
    start.set()
    results = [out.get() for _ in workers]
    elapsed = time.perf_counter() - t0
    for w in workers:
        w.join()
    _check(path, procs * per)
    return procs * per / elapsed, [x for r in results for x in r[0]], sum(r[1] for r in results)


def _check(path: str, expected: int) -> None:
    con = sqlite3.connect(path)
    (n,) = con.execute("SELECT n FROM counter").fetchone()
    con.close()
    assert n == expected, (path, n, expected)  # no lost update on either side


# -- threads ------------------------------------------------------------------------


def threads(workdir: str, kind: str, count: int, per: int, busy_ms: int) -> tuple[float, list[float], int]:
    path = os.path.join(workdir, f"threads-{kind}.db")
    barrier = threading.Barrier(count + 1)
    results: list[tuple[list[float], int]] = []
    if kind == "sss":
        setup(path)
        db = sss.open(path, timeout=600)

        def work() -> None:
            barrier.wait()
            results.append(([db.write(increment_sss).timing.wait for _ in range(per)], 0))
    else:
        setup_stdlib(path)

        def work() -> None:
            con = stdlib_connect(path, busy_ms)
            barrier.wait()
            r = [stdlib_write_retrying(con) for _ in range(per)]
            con.close()
            results.append(([lat for lat, _ in r], sum(e for _, e in r)))

    ts = [threading.Thread(target=work) for _ in range(count)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    if kind == "sss":
        db.close()
    _check(path, count * per)
    return count * per / elapsed, [x for r in results for x in r[0]], sum(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="directory for the databases (default: a temporary one)")
    ap.add_argument("--writes", type=int, default=600, help="single: writes per variant")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--procs", type=int, default=8, help="processes (and threads) writing at once")
    ap.add_argument("--per", type=int, default=200, help="writes per process or thread")
    ap.add_argument("--busy-ms", type=int, default=5000, help="stdlib busy_timeout")
    ap.add_argument("--only", choices=("single", "processes", "threads", "wal"), action="append",
                    help="run only these measures (repeatable)")
    args = ap.parse_args()
    only = set(args.only or ("single", "processes", "threads", "wal"))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sss-bench-") as workdir:
        print(f"SQLite {sss.sqlite_version()} (sss) / {sqlite3.sqlite_version} (stdlib); dir {workdir}")
        if "single" in only:
            t = single(workdir, args.writes, args.rounds)
            print(f"\nsingle write, {args.writes} each, interleaved (ms):")
            for name, v in t.items():
                print(f"  {name:14s} median {statistics.median(v) * 1e3:7.3f}  "
                      f"mean {statistics.mean(v) * 1e3:7.3f}  p99 {pct(v, 0.99) * 1e3:7.3f}")
            base = statistics.median(t["stdlib"])
            for name in t:
                if name != "stdlib":
                    target = "  (target <= 1.15)" if name == "sss" else ""
                    print(f"  ratio {name}/stdlib median: {statistics.median(t[name]) / base:.3f}{target}")
        for label, mode, key in (("processes", "trusted", "processes"), ("wal", "wal", "wal")):
            if key not in only:
                continue
            print(f"\n{label}: {args.procs} processes x {args.per} writes ({mode})")
            ours, waits, _ = processes(workdir, "sss", mode, args.procs, args.per, args.busy_ms)
            theirs, lat, errors = processes(workdir, "stdlib", mode, args.procs, args.per, args.busy_ms)
            print(f"  sss     {ours:8.1f} writes/s  admission wait p50 {pct(waits, .5) * 1e3:.2f} ms, "
                  f"p99 {pct(waits, .99) * 1e3:.2f} ms")
            print(f"  stdlib  {theirs:8.1f} writes/s  write latency p50 {pct(lat, .5) * 1e3:.2f} ms, "
                  f"p99 {pct(lat, .99) * 1e3:.2f} ms; 'database is locked' errors {errors} "
                  f"(busy_timeout {args.busy_ms} ms, retried)")
            print(f"  ratio sss/stdlib: {ours / theirs:.3f}  (target >= 1.0; p99 wait "
                  f"{'<=' if pct(waits, .99) <= pct(lat, .99) else '>'} stdlib p99 latency)")
        if "threads" in only:
            print(f"\nthreads: {args.procs} threads x {args.per} writes, one Database vs a stdlib "
                  "connection per thread")
            ours, waits, _ = threads(workdir, "sss", args.procs, args.per, args.busy_ms)
            theirs, lat, errors = threads(workdir, "stdlib", args.procs, args.per, args.busy_ms)
            print(f"  sss     {ours:8.1f} writes/s  admission wait p50 {pct(waits, .5) * 1e3:.2f} ms, "
                  f"p99 {pct(waits, .99) * 1e3:.2f} ms")
            print(f"  stdlib  {theirs:8.1f} writes/s  write latency p50 {pct(lat, .5) * 1e3:.2f} ms, "
                  f"p99 {pct(lat, .99) * 1e3:.2f} ms; 'database is locked' errors {errors}")
            print(f"  ratio sss/stdlib: {ours / theirs:.3f}  (target >= 3.0)")


if __name__ == "__main__":
    main()
