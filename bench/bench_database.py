"""Coordinated writes (``sss.open``) against stdlib ``sqlite3`` doing the same work.

Same file system (a temporary directory, or ``--dir``), same pragmas
(``journal_mode=DELETE``, ``synchronous=FULL``, ``foreign_keys=ON``), same run:

  single     one write, one process: read a counter, write it back + 1.
             sss: ``db.write(fn)`` with the default lease (``linger``: the outer
             lock is kept between writes, so a write is admitted without
             re-acquiring it) = BEGIN IMMEDIATE + epoch CAS + session + audit
             log entry + lock check + COMMIT.  "sss-linger0": ``linger=0``,
             the outer lock acquired and released around every write.
             stdlib: BEGIN IMMEDIATE + the same two statements + COMMIT.
             Also sss with ``audit=False`` (no log entry), to show what the log costs,
             and "lock+stdlib": the bare DirectoryLock acquire/release around the
             stdlib write, to show what the outer lock alone costs.
             Two floors, run through this package's connection with no outer
             lock and no Database layer, show what the design itself costs:
             "floor-session" is the stdlib write plus a session and its
             changeset() (what capturing the write costs at least);
             "floor-audit" adds the epoch compare-and-set and the log insert
             (what a fenced, logged write costs at least: every extra page is
             written to the journal and the file, and fsynced).
             Median and mean per write; ratio sss / stdlib (target <= 1.15).
  contended  ``--procs`` processes each do ``--per`` of those writes on one file.
             sss: admitted writes, with the default lease and with linger=0
             (with waiters present the lease is handed over after every write).  stdlib: BEGIN IMMEDIATE with
             busy_timeout=``--busy-ms``; a "database is locked" error is counted
             and the write retried.  Throughput (writes/s over the whole run), the
             ratio sss / stdlib, stdlib's locked errors, and sss's admission wait
             (p50, p99 of ``WriteResult.timing.wait``).

    python bench/bench_database.py                   # default sizes
    python bench/bench_database.py --writes 100 --per 50   # quick
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import audit, fencing
from sqlite_session_safe.coordination.lock import DirectoryLock

PRAGMAS = ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")
SCHEMA = "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"


def increment_sss(tx: sss.WriteTx) -> None:
    (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))


def stdlib_connect(path: str, busy_ms: int) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000)
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


def setup(path: str, audit: bool = True) -> None:
    with sss.open(path, audit=audit) as db:
        db.migrate(SCHEMA + "; INSERT OR IGNORE INTO counter VALUES (1, 0)")


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
            epoch[0] = fencing.advance_epoch(con, epoch[0])
        with con.session(skip_reserved=True) as s:
            (n,) = con.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            con.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
            changeset = s.changeset()
        if epoch is not None:
            audit.append_entry(con, owner="0" * 32, host="bench", pid=os.getpid(), label=None,
                               kind="data", changeset=bytes(changeset), sql=None, epoch=epoch[0])


def setup_stdlib(path: str) -> None:
    con = stdlib_connect(path, 5000)
    con.execute(SCHEMA)
    con.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")
    con.close()


# -- single -----------------------------------------------------------------------


def single(workdir: str, writes: int, rounds: int) -> dict[str, list[float]]:
    names = ("sss", "sss-linger0", "sss-noaudit", "stdlib")
    paths = {k: os.path.join(workdir, f"single-{k}.db") for k in names}
    setup(paths["sss"])
    setup(paths["sss-linger0"])
    setup(paths["sss-noaudit"], audit=False)
    setup_stdlib(paths["stdlib"])
    db = sss.open(paths["sss"])
    db_linger0 = sss.open(paths["sss-linger0"], linger=0)
    db_noaudit = sss.open(paths["sss-noaudit"], audit=False)
    con = stdlib_connect(paths["stdlib"], 5000)
    lock = DirectoryLock(paths["stdlib"])
    floor_session = floor_connect(os.path.join(workdir, "single-floor-session.db"))
    floor_audit = floor_connect(os.path.join(workdir, "single-floor-audit.db"))
    epoch = [fencing.read_epoch(floor_audit)]

    def locked_stdlib() -> None:
        with lock:
            increment_stdlib(con)

    runs = {
        "sss": lambda: db.write(increment_sss),
        "sss-linger0": lambda: db_linger0.write(increment_sss),
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
    db.close()
    db_linger0.close()
    db_noaudit.close()
    con.close()
    floor_session.close()
    floor_audit.close()
    return times


# -- contended --------------------------------------------------------------------


def _worker_sss(path: str, per: int, linger: float | None, start, out) -> None:
    db = sss.open(path, timeout=600, linger=linger)
    start.wait()
    waits = [db.write(increment_sss).timing.wait for _ in range(per)]
    db.close()
    out.put(waits)


def _worker_stdlib(path: str, per: int, busy_ms: int, start, out) -> None:
    con = stdlib_connect(path, busy_ms)
    start.wait()
    locked = 0
    done = 0
    while done < per:
        try:
            increment_stdlib(con)
            done += 1
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            locked += 1
    con.close()
    out.put(locked)


def contended(workdir: str, kind: str, procs: int, per: int, busy_ms: int,
              linger: float | None = None) -> tuple[float, list]:
    path = os.path.join(workdir, f"contended-{kind}-{linger}.db")
    if kind == "sss":
        setup(path)
    else:
        setup_stdlib(path)
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    start, out = ctx.Event(), ctx.Queue()
    args = (path, per, linger) if kind == "sss" else (path, per, busy_ms)
    target = _worker_sss if kind == "sss" else _worker_stdlib
    workers = [ctx.Process(target=target, args=(*args, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.3)  # let them all open their databases
    t0 = time.perf_counter()
    start.set()
    results = [out.get() for _ in workers]
    elapsed = time.perf_counter() - t0
    for w in workers:
        w.join()
    con = sqlite3.connect(path)
    (n,) = con.execute("SELECT n FROM counter").fetchone()
    con.close()
    assert n == procs * per, (kind, n)  # no lost update on either side
    return procs * per / elapsed, results


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="directory for the databases (default: a temporary one)")
    ap.add_argument("--writes", type=int, default=600, help="single: writes per variant")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--per", type=int, default=100, help="contended: writes per process")
    ap.add_argument("--busy-ms", type=int, default=5000, help="stdlib busy_timeout")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sss-bench-") as workdir:
        print(f"SQLite {sss.sqlite_version()} (sss) / {sqlite3.sqlite_version} (stdlib); dir {workdir}")
        t = single(workdir, args.writes, args.rounds)
        print(f"\nsingle write, {args.writes} each (ms):")
        for name, v in t.items():
            med, mean = statistics.median(v) * 1e3, statistics.mean(v) * 1e3
            print(f"  {name:12s} median {med:7.3f}  mean {mean:7.3f}")
        print(f"  (sss: default lease, linger {sss.DEFAULT_LINGER['trusted']:g}s; "
              "sss-linger0: linger=0, lock taken per write)")
        for name in ("sss", "sss-linger0", "sss-noaudit", "lock+stdlib", "floor-session", "floor-audit"):
            ratio_med = statistics.median(t[name]) / statistics.median(t["stdlib"])
            ratio_mean = statistics.mean(t[name]) / statistics.mean(t["stdlib"])
            print(f"  ratio {name}/stdlib: median {ratio_med:.3f}  mean {ratio_mean:.3f}  (target <= 1.15)")
        print(f"\ncontended: {args.procs} processes x {args.per} writes")
        ours = {}
        for label, linger in (("sss", None), ("sss-linger0", 0.0)):
            ours[label], waits = contended(workdir, "sss", args.procs, args.per, args.busy_ms, linger)
            flat = [w for ws in waits for w in ws]
            print(f"  {label:12s} {ours[label]:8.1f} writes/s   admission wait p50 "
                  f"{pct(flat, 0.5) * 1e3:.2f} ms, p99 {pct(flat, 0.99) * 1e3:.2f} ms, "
                  f"max {max(flat) * 1e3:.2f} ms")
        theirs, locked = contended(workdir, "stdlib", args.procs, args.per, args.busy_ms)
        print(f"  {'stdlib':12s} {theirs:8.1f} writes/s   'database is locked' errors: {sum(locked)} "
              f"(busy_timeout {args.busy_ms} ms; each retried)")
        for label, value in ours.items():
            print(f"  throughput ratio {label}/stdlib: {value / theirs:.3f}")


if __name__ == "__main__":
    main()
