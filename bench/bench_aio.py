"""Async speed: ``sqlite_session_safe.aio`` against aiosqlite, same run, same
data, same code (both driven through aiosqlite's API only).

Workloads (issue 15), on the table and rows of bench/bench_binding.py:
  insert       10,000 single-row INSERTs, ``await db.execute(...)`` each, then
               one commit (the implicit BEGIN makes them one transaction)
  point        100,000 point queries by primary key, as aiosqlite's README
               writes them: ``async with db.execute(...) as cur: await cur.fetchone()``
  point-2      the same as ``cur = await db.execute(...); await cur.fetchone()``
  point-all    the same as ``await db.execute_fetchall(...)`` (one hop in both)
  fetchall     ``await (await db.execute(SELECT_ALL)).fetchall()`` of 1,000,000 rows
  gather       100 tasks x 1,000 point queries on one connection, concurrently
  hop          100,000 calls of a function that does nothing: the thread hop alone

Each workload runs ``--repeat`` times per module, interleaved.  The machine
may be shared: every time is printed (min / median / max), and the ratio
aiosqlite / ours is given for the minimum and the median (above 1.0: ours is
faster).  ``--spin 0`` measures this module without its fast path.

    python bench/bench_aio.py                                   # full size
    python bench/bench_aio.py --rows 100000 --points 10000      # quick
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_binding import INSERT, SCHEMA, SELECT_ALL, SELECT_ONE, make_rows

import sqlite_session_safe.aio as ours

try:
    import aiosqlite
except ImportError:  # in the "test" and "bench" extras
    aiosqlite = None


async def run_insert(db: Any, rows: list[Any], _points: list[int]) -> float:
    await db.execute("DROP TABLE IF EXISTS ins")
    await db.execute(SCHEMA.replace(" t(", " ins("))
    await db.commit()
    sql = INSERT.replace(" t ", " ins ")
    execute = db.execute
    t = time.perf_counter()
    for row in rows:
        await execute(sql, row)
    await db.commit()
    return time.perf_counter() - t


async def run_point(db: Any, _rows: list[Any], points: list[int]) -> float:
    execute = db.execute
    t = time.perf_counter()
    for key in points:
        async with execute(SELECT_ONE, (key,)) as cur:
            await cur.fetchone()
    return time.perf_counter() - t


async def run_point2(db: Any, _rows: list[Any], points: list[int]) -> float:
    execute = db.execute
    t = time.perf_counter()
    for key in points:
        cur = await execute(SELECT_ONE, (key,))
        await cur.fetchone()
    return time.perf_counter() - t


async def run_point_all(db: Any, _rows: list[Any], points: list[int]) -> float:
    execute_fetchall = db.execute_fetchall
    t = time.perf_counter()
    for key in points:
        await execute_fetchall(SELECT_ONE, (key,))
    return time.perf_counter() - t


async def run_fetchall(db: Any, rows: list[Any], _points: list[int]) -> float:
    t = time.perf_counter()
    cur = await db.execute(SELECT_ALL)
    result = await cur.fetchall()
    await cur.close()
    elapsed = time.perf_counter() - t
    assert len(result) == len(rows), (len(result), len(rows))
    return elapsed


async def run_gather(db: Any, _rows: list[Any], points: list[int]) -> float:
    async def task(keys: list[int]) -> None:
        for key in keys:
            async with db.execute(SELECT_ONE, (key,)) as cur:
                await cur.fetchone()

    keys = points[:100_000]
    chunks = [keys[i::100] for i in range(100)]
    t = time.perf_counter()
    await asyncio.gather(*(task(c) for c in chunks))
    return time.perf_counter() - t


def _noop(*_: Any) -> None:
    return None


async def run_hop(db: Any, _rows: list[Any], points: list[int]) -> float:
    # One thread hop and nothing else: aiosqlite's _execute(fn) against ours run(fn).
    call = db.run if hasattr(db, "run") else db._execute
    t = time.perf_counter()
    for _ in points:
        await call(_noop)
    return time.perf_counter() - t


Run = Callable[[Any, list[Any], list[int]], Awaitable[float]]
WORKLOADS: dict[str, tuple[Run, str]] = {
    "insert": (run_insert, "inserts"),
    "point": (run_point, "points"),
    "point-2": (run_point2, "points"),
    "point-all": (run_point_all, "points"),
    "fetchall": (run_fetchall, "rows"),
    "gather": (run_gather, "gather"),
    "hop": (run_hop, "points"),
}


async def load(path: str, rows: list[Any]) -> None:
    async with ours.connect(path) as db:
        await db.execute(SCHEMA)
        await db.executemany(INSERT, rows)
        await db.commit()


def stats(times: list[float]) -> tuple[float, float, float]:
    return min(times), statistics.median(times), max(times)


async def main_async(args: argparse.Namespace) -> int:
    modules: list[tuple[str, ModuleType, dict[str, Any]]] = [("sss.aio", ours, {"spin": args.spin})]
    if aiosqlite is not None:
        modules.append(("aiosqlite", aiosqlite, {}))
    else:
        print("aiosqlite is not installed: timing this module only")
    print(f"Python {sys.version.split()[0]}; aiosqlite {getattr(aiosqlite, '__version__', '-')}; "
          f"spin={args.spin}")
    print(f"rows={args.rows:,} inserts={args.inserts:,} points={args.points:,} repeat={args.repeat}")
    rows = make_rows(max(args.rows, args.inserts))
    rnd = random.Random(7)
    points = [rnd.randrange(args.rows) for _ in range(args.points)]
    sizes = {"rows": rows[:args.rows], "inserts": rows[:args.inserts], "points": rows[:args.rows],
             "gather": rows[:args.rows]}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = str(Path(tmp) / "bench.db")
        await load(path, rows[:args.rows])
        dbs = {name: await mod.connect(path, **kw) for name, mod, kw in modules}
        for workload in args.workloads:
            run, size = WORKLOADS[workload]
            for _ in range(args.repeat):
                for name, _mod, _kw in modules:
                    gc.collect()
                    elapsed = await run(dbs[name], sizes[size], points)
                    times.setdefault((workload, name), []).append(elapsed)
        for db in dbs.values():
            await db.close()
    print(f"\n{'workload':<10} {'module':<10} {'min s':>9} {'median s':>9} {'max s':>9}   "
          f"aiosqlite/ours (min, median)")
    for workload in args.workloads:
        for name, _mod, _kw in modules:
            lo, med, hi = stats(times[(workload, name)])
            ratio = ""
            if name == "sss.aio" and ("aiosqlite" in dict((n, 1) for n, _, _ in modules)):
                a_lo, a_med, _ = stats(times[(workload, "aiosqlite")])
                ratio = f"   {a_lo / lo:5.2f}x  {a_med / med:5.2f}x"
            print(f"{workload:<10} {name:<10} {lo:9.4f} {med:9.4f} {hi:9.4f}{ratio}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (fetchall reads them all)")
    ap.add_argument("--inserts", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--spin", type=float, default=ours.DEFAULT_SPIN)
    ap.add_argument("--dir", default=None, help="where the database file goes (default: a temp dir)")
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help=f"any of {', '.join(WORKLOADS)} (default: all)")
    args = ap.parse_args(argv)
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    args.workloads = args.workloads or list(WORKLOADS)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
