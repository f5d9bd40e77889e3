"""Binding speed: sqlite_session_safe against stdlib sqlite3 and apsw, same run, same data.

Workloads (issue 2):
  fetchall    read 1,000,000 rows of (int, float, ~20-char text, 16-byte blob)
  executemany insert the same 1,000,000 rows in one transaction
  point       100,000 point queries by primary key (execute + fetchone)

Each workload runs ``--repeat`` times per library, interleaved, and the best
time counts. Prints times and ratios (ours / theirs; below 1.0 means faster).

    python bench/bench_binding.py            # full size
    python bench/bench_binding.py --rows 100000 --points 10000   # quick
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_session_safe as sss

try:
    import apsw
except ImportError:  # apsw is in the "bench" and "test" extras
    apsw = None

SCHEMA = "CREATE TABLE t(id INTEGER PRIMARY KEY, x REAL, name TEXT, data BLOB)"
INSERT = "INSERT INTO t VALUES (?, ?, ?, ?)"
SELECT_ALL = "SELECT id, x, name, data FROM t"
SELECT_ONE = "SELECT id, x, name, data FROM t WHERE id = ?"


def make_rows(n: int) -> list[tuple[int, float, str, bytes]]:
    rnd = random.Random(42)
    return [(i, rnd.random() * 1e6, f"name-{rnd.getrandbits(48):015x}", rnd.randbytes(16)) for i in range(n)]


class Library:
    def __init__(self, name: str, connect: Callable[[str], object]):
        self.name = name
        self.connect = connect


def libraries() -> list[Library]:
    libs = [
        Library("sqlite_session_safe", lambda p: sss.connect(p)),
        Library("stdlib sqlite3", lambda p: sqlite3.connect(p, isolation_level=None)),
    ]
    if apsw is not None:
        libs.append(Library("apsw", lambda p: apsw.Connection(p)))
    return libs


def run_fetchall(con: object, _rows: list, _points: list) -> float:
    t = time.perf_counter()
    result = (
        con.execute(SELECT_ALL).fetchall()
        if not isinstance(con, _apsw_con())
        else list(con.execute(SELECT_ALL))
    )
    elapsed = time.perf_counter() - t
    assert len(result) == len(_rows)
    return elapsed


def run_executemany(con: object, rows: list, _points: list) -> float:
    con.execute("DROP TABLE IF EXISTS t")
    con.execute(SCHEMA)
    t = time.perf_counter()
    con.execute("BEGIN")
    if isinstance(con, _apsw_con()):
        con.cursor().executemany(INSERT, rows)
    else:
        con.executemany(INSERT, rows)
    con.execute("COMMIT")
    return time.perf_counter() - t


def run_point(con: object, _rows: list, points: list) -> float:
    execute = con.execute
    t = time.perf_counter()
    if isinstance(con, _apsw_con()):
        for key in points:
            execute(SELECT_ONE, (key,)).fetchone()
    else:
        for key in points:
            execute(SELECT_ONE, (key,)).fetchone()
    return time.perf_counter() - t


def _apsw_con() -> type:
    return apsw.Connection if apsw is not None else type(None)


WORKLOADS = {
    "executemany": run_executemany,
    "fetchall": run_fetchall,
    "point": run_point,
}


def workload_args(
    argv: list[str] | None, description: str | None
) -> tuple[argparse.Namespace, list[tuple[int, float, str, bytes]], list[int]]:
    """The command line shared with bench_dbapi, the rows to insert and the
    keys to look up (the same in every run)."""
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the database files go (default: a temp dir)")
    args = ap.parse_args(argv)
    rnd = random.Random(7)
    return args, make_rows(args.rows), [rnd.randrange(args.rows) for _ in range(args.points)]


def main(argv: list[str] | None = None) -> int:
    args, rows, points = workload_args(argv, __doc__)
    libs = libraries()
    print(
        f"SQLite: ours {sss.sqlite_version()}, stdlib {sqlite3.sqlite_version}, "
        f"apsw {apsw.sqlite_lib_version() if apsw else 'not installed'}; Python {sys.version.split()[0]}"
    )
    print(f"rows={args.rows:,} points={args.points:,} repeat={args.repeat} (best of)")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        best: dict[tuple[str, str], float] = {}
        cons = {}
        for lib in libs:
            path = str(Path(tmp) / f"{lib.name.split()[-1]}.db")
            cons[lib.name] = lib.connect(path)
        for name in WORKLOADS:  # executemany first: it creates the data the others read
            for _ in range(args.repeat):
                for lib in libs:
                    gc.collect()
                    elapsed = WORKLOADS[name](cons[lib.name], rows, points)
                    key = (name, lib.name)
                    best[key] = min(best.get(key, float("inf")), elapsed)
        for con in cons.values():
            con.close()

    ours = libs[0].name
    header = f"{'workload':<12}" + "".join(f"{lib.name:>22}" for lib in libs)
    header += "".join(f"{'ours/' + lib.name.split()[-1]:>18}" for lib in libs[1:])
    print(header)
    for name in WORKLOADS:
        line = f"{name:<12}" + "".join(f"{best[(name, lib.name)]:>21.3f}s" for lib in libs)
        line += "".join(f"{best[(name, ours)] / best[(name, lib.name)]:>18.2f}" for lib in libs[1:])
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
