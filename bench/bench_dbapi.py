"""DB-API speed: ``sqlite_session_safe.dbapi`` against the stdlib ``sqlite3``
(same run, same data, same code: both are driven through the DB-API only).

Workloads (the foundation's three, bench/bench_binding.py):
  fetchall    read 1,000,000 rows of (int, float, ~20-char text, 16-byte blob)
  executemany insert the same 1,000,000 rows in one transaction
  point       100,000 point queries by primary key (execute + fetchone)

Each workload runs ``--repeat`` times per module, interleaved; the best time
counts.  Prints times and the ratio ours / stdlib (below 1.0: faster).

    python bench/bench_dbapi.py                                   # full size
    python bench/bench_dbapi.py --rows 100000 --points 10000      # quick
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

# The same table, rows and queries as the binding benchmark (bench/ is
# sys.path[0] when run as a script).
from bench_binding import INSERT, SCHEMA, SELECT_ALL, SELECT_ONE, workload_args

import sqlite_session_safe.dbapi as dbapi


def run_executemany(con: Any, rows: list[Any], _points: list[int]) -> float:
    con.execute("DROP TABLE IF EXISTS t")
    con.execute(SCHEMA)
    con.commit()
    t = time.perf_counter()
    con.executemany(INSERT, rows)  # the implicit BEGIN makes it one transaction
    con.commit()
    return time.perf_counter() - t


def run_fetchall(con: Any, rows: list[Any], _points: list[int]) -> float:
    t = time.perf_counter()
    result = con.execute(SELECT_ALL).fetchall()
    elapsed = time.perf_counter() - t
    assert len(result) == len(rows)
    return elapsed


def run_point(con: Any, _rows: list[Any], points: list[int]) -> float:
    execute = con.execute
    t = time.perf_counter()
    for key in points:
        execute(SELECT_ONE, (key,)).fetchone()
    return time.perf_counter() - t


WORKLOADS = {"executemany": run_executemany, "fetchall": run_fetchall, "point": run_point}


def main(argv: list[str] | None = None) -> int:
    args, rows, points = workload_args(argv, __doc__)
    modules: list[tuple[str, ModuleType]] = [("dbapi", dbapi), ("stdlib", sqlite3)]
    print(f"SQLite: ours {dbapi.sqlite_version}, stdlib {sqlite3.sqlite_version}; "
          f"Python {sys.version.split()[0]}")
    print(f"rows={args.rows:,} points={args.points:,} repeat={args.repeat} (best of)")
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cons = {name: mod.connect(str(Path(tmp) / f"{name}.db")) for name, mod in modules}
        for workload, run in WORKLOADS.items():  # executemany first: it makes the data
            for _ in range(args.repeat):
                for name, _mod in modules:
                    gc.collect()
                    elapsed = run(cons[name], rows, points)
                    key = (workload, name)
                    best[key] = min(best.get(key, float("inf")), elapsed)
        for con in cons.values():
            con.close()
    print(f"{'workload':<12}{'dbapi':>12}{'stdlib':>12}{'dbapi/stdlib':>14}")
    for workload in WORKLOADS:
        ours, theirs = best[(workload, "dbapi")], best[(workload, "stdlib")]
        print(f"{workload:<12}{ours:>11.3f}s{theirs:>11.3f}s{ours / theirs:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
