"""What SQLite's open file description locks cost (csrc/sss_lockshim.c).

The package's SQLite takes its file locks through a shim on Linux (README,
"Using the stdlib sqlite3 on the same file in the same process");
``SQLITE_SESSION_SAFE_LOCKS=posix`` turns it off for a process.  This runs
the same loops in child processes with the shim off ("posix") and on
("ofd"), alternating, ``--rounds`` times each, and prints the CPU time per
operation (user + system of the child: less sensitive to a shared machine
than wall time) as min / median / max, and the ratio of the medians:

  point    one autocommit point query (a read transaction: 4 lock calls)
  write    one autocommit INSERT with synchronous=OFF (lock calls, and the
           journal's open and close, which the shim also sees; no fsync, so
           the locks are not hidden behind the disk)
  connect  open a connection, read one row, close (the lock descriptor is
           opened and closed with the connection)
  wal      one autocommit point query in WAL mode (-shm locks)

    python bench/bench_locks.py                 # default sizes
    python bench/bench_locks.py --rounds 3 --n 20000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOADS = ("point", "write", "connect", "wal")


def child(workload: str, d: str, n: int) -> float:
    """CPU seconds per operation of ``workload``, in this process."""
    import sqlite_session_safe as sss

    path = os.path.join(d, f"{workload}.db")
    con = sss.connect(path)
    if workload == "wal":
        con.execute("PRAGMA journal_mode = wal")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)")
    con.execute("DELETE FROM t")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(1000)])
    con.execute("PRAGMA synchronous = OFF")
    start = time.process_time()
    if workload in ("point", "wal"):
        for i in range(n):
            con.execute("SELECT v FROM t WHERE id = ?", (i % 1000,)).fetchone()
    elif workload == "write":
        for i in range(n):
            con.execute("INSERT INTO t(v) VALUES (?)", (i,))
    else:
        for i in range(n):
            c = sss.connect(path)
            c.execute("SELECT v FROM t WHERE id = ?", (i % 1000,)).fetchone()
            c.close()
    elapsed = time.process_time() - start
    con.close()
    return elapsed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=20_000, help="operations per child (connect: n / 10)")
    ap.add_argument("--dir", default=None, help="where the database files go (default: a temp dir)")
    ap.add_argument("--child", nargs=3, metavar=("WORKLOAD", "DIR", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    if not sys.platform.startswith("linux"):
        sys.exit("the shim exists on Linux only")
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for workload in WORKLOADS:
                n = args.n // 10 if workload == "connect" else args.n
                for kind in ("posix", "ofd"):
                    env = dict(os.environ, SQLITE_SESSION_SAFE_LOCKS=kind)
                    out = subprocess.run([sys.executable, __file__, "--child", workload, d, str(n)],
                                         env=env, capture_output=True, text=True, check=True)
                    results.setdefault((workload, kind), []).append(json.loads(out.stdout))
        print(f"CPU microseconds per operation, {args.rounds} rounds (min / median / max); "
              f"Python {sys.version.split()[0]}")
        print(f"{'workload':10} {'posix':>24} {'ofd':>24} {'ofd/posix':>10}")
        for workload in WORKLOADS:
            cells = []
            for kind in ("posix", "ofd"):
                v = [x * 1e6 for x in results[(workload, kind)]]
                cells.append(f"{min(v):6.2f} /{statistics.median(v):6.2f} /{max(v):6.2f}")
            medians = [statistics.median(results[(workload, kind)]) for kind in ("posix", "ofd")]
            ratio = medians[1] / medians[0]
            print(f"{workload:10} {cells[0]:>24} {cells[1]:>24} {ratio:10.3f}")


if __name__ == "__main__":
    main()
