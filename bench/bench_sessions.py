"""Session speed: sqlite_session_safe against apsw (same SQLite 3.54.1), same
run, same data.

Workloads (issue 3):
  capture  insert N rows in one transaction, with a session recording all
           tables and without one; the ratio is the session's overhead
           (ours: with / without; apsw's too, for comparison)
  apply    apply an N-row INSERT changeset to an empty copy of the table
           (ours / apsw)
  iterate  iterate an N-change changeset, reading table, op, old and new of
           every change (ours / apsw)

Each workload runs ``--repeat`` times per library, interleaved; the best time
counts.  Ratios below 1.0 mean ours is faster.  Targets: capture overhead
<= 1.2x, apply and iterate <= 1.0x apsw.

    python bench/bench_sessions.py               # N = 100,000
    python bench/bench_sessions.py --rows 20000  # quick
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw

# The same table and rows as the binding benchmark.
from bench_binding import INSERT, SCHEMA, make_rows  # bench/ is sys.path[0] when run as a script

import sqlite_session_safe as sss

PRAGMAS = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class Case:
    """Fresh database files per run, so every run does the same work."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def path(self) -> str:
        self.n += 1
        return str(self.root / f"db{self.n}.db")


def capture_ours(case: Case, rows: list, session: bool) -> tuple[float, float]:
    """(seconds for the write transaction, seconds for changeset())."""
    con = sss.connect(case.path())
    con.executescript(PRAGMAS + SCHEMA)
    s = con.session() if session else None
    gc.collect()
    t0 = time.perf_counter()
    with con.transaction():
        con.executemany(INSERT, rows)
    t1 = time.perf_counter()
    if s is not None:
        s.changeset()
    t2 = time.perf_counter()
    con.close()
    return t1 - t0, t2 - t1


def capture_apsw(case: Case, rows: list, session: bool) -> tuple[float, float]:
    con = apsw.Connection(case.path())
    list(con.execute(PRAGMAS + SCHEMA))  # apsw runs the rest as it is iterated
    s = None
    if session:
        s = apsw.Session(con, "main")
        s.attach()
    gc.collect()
    t0 = time.perf_counter()
    with con:
        con.executemany(INSERT, rows)
    t1 = time.perf_counter()
    if s is not None:
        s.changeset()
        s.close()
    t2 = time.perf_counter()
    con.close()
    return t1 - t0, t2 - t1


def time_capture(case: Case, rows: list, repeat: int) -> dict[str, tuple[float, float]]:
    """Interleaved: each repetition runs all four variants once; per variant
    the best write time and the best changeset() time."""
    variants: dict[str, tuple[Callable[..., tuple[float, float]], bool]] = {
        "ours+session": (capture_ours, True),
        "ours": (capture_ours, False),
        "apsw+session": (capture_apsw, True),
        "apsw": (capture_apsw, False),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(repeat):
        for name, (fn, session) in variants.items():
            times[name].append(fn(case, rows, session))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}


def changeset_of(case: Case, rows: list) -> bytes:
    con = sss.connect(case.path())
    con.executescript(PRAGMAS + SCHEMA)
    with con.session() as s:
        with con.transaction():
            con.executemany(INSERT, rows)
        cs = bytes(s.changeset())
    con.close()
    return cs


def time_apply(case: Case, cs: bytes, n: int, repeat: int) -> tuple[float, float]:
    def prepare_ours() -> object:
        con = sss.connect(case.path())
        con.executescript(PRAGMAS + SCHEMA)
        return con

    def prepare_apsw() -> object:
        con = apsw.Connection(case.path())
        list(con.execute(PRAGMAS + SCHEMA))  # apsw runs the rest as it is iterated
        return con

    ours_cs = sss.Changeset(cs)
    t_ours, t_apsw = [], []
    for _ in range(repeat):
        con = prepare_ours()
        gc.collect()
        t0 = time.perf_counter()
        report = ours_cs.apply(con)  # type: ignore[arg-type]
        t_ours.append(time.perf_counter() - t0)
        assert report.total_applied == n
        con.close()  # type: ignore[attr-defined]
        acon = prepare_apsw()
        gc.collect()
        t0 = time.perf_counter()
        apsw.Changeset.apply(cs, acon)
        t_apsw.append(time.perf_counter() - t0)
        acon.close()  # type: ignore[attr-defined]
    return min(t_ours), min(t_apsw)


def time_iterate(cs: bytes, repeat: int) -> tuple[float, float]:
    ours_cs = sss.Changeset(cs)

    def ours() -> int:
        n = 0
        for c in ours_cs:
            _ = c.table, c.op, c.old, c.new
            n += 1
        return n

    def theirs() -> int:
        n = 0
        for c in apsw.Changeset.iter(cs):
            _ = c.name, c.op, c.old, c.new
            n += 1
        return n

    assert ours() == theirs()
    t_ours, t_apsw = [], []
    for _ in range(repeat):
        t_ours.append(best(ours, 1))
        t_apsw.append(best(theirs, 1))
    return min(t_ours), min(t_apsw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rows = make_rows(args.rows)
    print(f"sqlite_session_safe {sss.__version__} on SQLite {sss.sqlite_version()}; "
          f"apsw {apsw.apsw_version()}; Python {sys.version.split()[0]}; N = {args.rows:,}")
    with tempfile.TemporaryDirectory(prefix="sss-bench-") as tmp:
        case = Case(Path(tmp))
        cap = time_capture(case, rows, args.repeat)
        extra: dict[str, float] = {}
        for lib_name in ("ours", "apsw"):
            plain, (write, cs_time) = cap[lib_name], cap[lib_name + "+session"]
            extra[lib_name] = write - plain[0]
            print(f"capture  {lib_name}: write {plain[0]*1e3:7.1f} ms without a session, {write*1e3:7.1f} ms "
                  f"with -> {write/plain[0]:.2f}x; + changeset() {cs_time*1e3:6.1f} ms -> "
                  f"{(write + cs_time)/plain[0]:.2f}x" + ("  (target <= 1.2x)" if lib_name == "ours" else ""))
        # The ratio divides by each library's own session-less write, so a
        # faster plain write makes the same session cost look bigger: print
        # the session's own cost too (nearly all of it is spent inside
        # SQLite's pre-update hook and session code, the same in both).
        print("         the session's own cost: " + ", ".join(
            f"{name} {t*1e3:.1f} ms ({t/args.rows*1e9:.0f} ns/row)" for name, t in extra.items())
              + f" -> ours/apsw {extra['ours']/extra['apsw']:.2f}")
        cs = changeset_of(case, rows)
        print(f"         changeset: {len(cs):,} bytes")
        t_ours, t_apsw = time_apply(case, cs, args.rows, args.repeat)
        print(f"apply    ours {t_ours*1e3:8.1f} ms   apsw {t_apsw*1e3:8.1f} ms   "
              f"ours/apsw {t_ours/t_apsw:.2f}  (target <= 1.0)")
        t_ours, t_apsw = time_iterate(cs, args.repeat)
        print(f"iterate  ours {t_ours*1e3:8.1f} ms   apsw {t_apsw*1e3:8.1f} ms   "
              f"ours/apsw {t_ours/t_apsw:.2f}  (target <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
