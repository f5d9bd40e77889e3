"""User-defined function speed: sqlite_session_safe against stdlib sqlite3 and apsw,
same run, same data.

Workloads:
  scalar      SELECT f(x) FROM t over --rows rows, f a one-argument Python function
  scalar3     SELECT g(x, y, s) FROM t: three arguments of three types
  aggregate   SELECT mysum(x) FROM t with a sum-like Python aggregate class

Each workload runs ``--repeat`` times per library, interleaved, and the best
time counts.  Prints times and ratios (ours / theirs; below 1.0 means faster).

    python bench/bench_functions.py                 # 200,000 rows
    python bench/bench_functions.py --rows 20000    # quick
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_session_safe as sss

try:
    import apsw
except ImportError:  # apsw is in the "bench" and "test" extras
    apsw = None


def double(x: int) -> int:
    return x * 2


def three(x: int, y: float, s: str) -> int:
    return x + len(s)


class MySum:
    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int) -> None:
        self.total += value

    def finalize(self) -> int:
        return self.total


def _apsw_aggregate() -> tuple[Any, Callable[..., None], Callable[..., int]]:
    # apsw's aggregate protocol: a factory returning (context, step, final).
    def step(ctx: list[int], value: int) -> None:
        ctx[0] += value

    def final(ctx: list[int]) -> int:
        return ctx[0]

    return [0], step, final


def connect(name: str, path: str) -> Any:
    if name == "sqlite_session_safe":
        con: Any = sss.connect(path)
        con.create_function("f", 1, double, deterministic=False)
        con.create_function("g", 3, three)
        con.create_aggregate("mysum", 1, MySum)
    elif name == "stdlib sqlite3":
        con = sqlite3.connect(path, isolation_level=None)
        con.create_function("f", 1, double)
        con.create_function("g", 3, three)
        con.create_aggregate("mysum", 1, MySum)
    else:
        con = apsw.Connection(path)
        con.create_scalar_function("f", double, 1)
        con.create_scalar_function("g", three, 3)
        con.create_aggregate_function("mysum", _apsw_aggregate, 1)
    return con


def query(con: Any, sql: str) -> list[Any]:
    if apsw is not None and isinstance(con, apsw.Connection):
        return list(con.execute(sql))
    return con.execute(sql).fetchall()  # type: ignore[no-any-return]


WORKLOADS = {
    "scalar": "SELECT f(x) FROM t",
    "scalar3": "SELECT g(x, y, s) FROM t",
    "aggregate": "SELECT mysum(x) FROM t",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    names = ["sqlite_session_safe", "stdlib sqlite3"] + (["apsw"] if apsw is not None else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        setup = sss.connect(path)
        setup.execute("CREATE TABLE t(x INTEGER, y REAL, s TEXT)")
        with setup.transaction():
            setup.executemany("INSERT INTO t VALUES (?, ?, ?)",
                              [(i, i / 3, f"row {i}") for i in range(args.rows)])
        setup.close()
        cons = {name: connect(name, path) for name in names}
        expected: dict[str, list[Any]] = {}
        best: dict[tuple[str, str], float] = {}
        for workload, sql in WORKLOADS.items():
            for _ in range(args.repeat):
                for name in names:
                    gc.collect()
                    t = time.perf_counter()
                    rows = query(cons[name], sql)
                    elapsed = time.perf_counter() - t
                    # every library computes the same result
                    assert expected.setdefault(workload, rows) == rows, (workload, name)
                    key = (workload, name)
                    best[key] = min(best.get(key, float("inf")), elapsed)
        for con in cons.values():
            con.close()

    print(f"{args.rows:,} rows, best of {args.repeat}")
    for workload in WORKLOADS:
        ours = best[(workload, "sqlite_session_safe")]
        line = f"{workload:10s} ours {ours * 1000:8.1f} ms ({ours / args.rows * 1e9:5.0f} ns/row)"
        for name in names[1:]:
            theirs = best[(workload, name)]
            line += f" | {name} {theirs * 1000:8.1f} ms, ratio {ours / theirs:4.2f}"
        print(line)


if __name__ == "__main__":
    main()
