"""Replication throughput against re-running the same SQL with stdlib ``sqlite3``.

A source database gets ``--writes`` logged writes; each inserts ``--rows``
items, updates one of them and bumps a counter (``--rows + 2`` row changes).
Then, in the same run, on the same file system, with the same pragmas
(``journal_mode=DELETE``, ``synchronous=FULL``, ``foreign_keys=ON``):

  sss replicate   ``sss.replicate(source, replica, batch=B)`` into an empty
                  replica: snapshot reads of the source's log, changeset apply,
                  cursor + replica log entry, one admitted write per B entries.
  sss bundle      ``sss.import_bundle`` of a bundle ``db.export`` wrote (the
                  import: reading, verifying and applying it).
  stdlib          the statements every write ran, re-executed through stdlib
                  ``sqlite3`` on an empty copy of the schema, B writes per
                  transaction (the same number of commits as the replica).

Printed: seconds, row changes done (a changeset merges the UPDATE of a row
inserted in the same write into its INSERT, so it applies fewer), the source's
row changes reproduced per second, and the ratio sss / stdlib of that rate
(> 1: replicating changesets is faster than re-running the SQL).

    python bench/bench_replication.py                     # default sizes
    python bench/bench_replication.py --writes 300 --batch 16
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from typing import Any

import sqlite_session_safe as sss

PRAGMAS = ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")
SCHEMA = (
    "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO counter VALUES (1, 0);"
    "CREATE TABLE item(id INTEGER PRIMARY KEY, w INTEGER NOT NULL, name TEXT NOT NULL, "
    "qty INTEGER NOT NULL, payload BLOB);"
    "CREATE INDEX item_w ON item(w)"
)

Statement = tuple[str, tuple[Any, ...]]


def workload(w: int, rows: int) -> list[Statement]:
    """The statements of write ``w`` (deterministic, so both sides run the same)."""
    base = w * rows
    out: list[Statement] = [
        ("INSERT INTO item(id, w, name, qty, payload) VALUES (?, ?, ?, ?, ?)",
         (base + i + 1, w, f"item {base + i + 1}", i, bytes([w % 256]) * 64))
        for i in range(rows)
    ]
    out.append(("UPDATE item SET qty = qty + 1000 WHERE id = ?", (base + 1,)))
    out.append(("UPDATE counter SET n = n + 1 WHERE id = 1", ()))
    return out


def build_source(path: str, writes: int, rows: int) -> list[list[Statement]]:
    script = [workload(w, rows) for w in range(writes)]
    with sss.open(path) as db:
        db.migrate(SCHEMA)

        for stmts in script:
            def fn(tx: sss.WriteTx, stmts: list[Statement] = stmts) -> None:
                for sql, params in stmts:
                    tx.execute(sql, params)
            db.write(fn)
    return script


def bench_replicate(source: str, replica: str, batch: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = sss.replicate(source, replica, batch=batch)
    return time.perf_counter() - t0, report.changes


def bench_bundle(source: str, bundle: str, replica: str, batch: int) -> tuple[float, int]:
    with sss.open(source) as db:
        db.export(bundle)
    t0 = time.perf_counter()  # the import only (reading and verifying the file included)
    report = sss.import_bundle(replica, bundle, batch=batch)
    return time.perf_counter() - t0, report.changes


def bench_stdlib(path: str, script: list[list[Statement]], batch: int) -> tuple[float, int]:
    con = sqlite3.connect(path, isolation_level=None)
    for p in PRAGMAS:
        con.execute(p)
    con.executescript(SCHEMA)
    changes = 0
    t0 = time.perf_counter()
    for start in range(0, len(script), batch):
        con.execute("BEGIN IMMEDIATE")
        for stmts in script[start:start + batch]:
            for sql, params in stmts:
                changes += con.execute(sql, params).rowcount
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed, changes


def same_tables(a: str, b: str) -> bool:
    def dump(path: str) -> list[Any]:
        con = sqlite3.connect(path)
        try:
            return [con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("counter", "item")]
        finally:
            con.close()
    return dump(a) == dump(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=2000, help="logged writes on the source")
    ap.add_argument("--rows", type=int, default=8, help="items inserted per write")
    ap.add_argument("--batch", type=int, default=64, help="source writes per replica transaction")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    ap.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        source = os.path.join(d, "source.db")
        t0 = time.perf_counter()
        script = build_source(source, args.writes, args.rows)
        print(f"source: {args.writes} writes x {args.rows + 2} row changes, built in "
              f"{time.perf_counter() - t0:.2f} s; batch {args.batch}; best of {args.repeat}")
        results: dict[str, tuple[float, int]] = {}
        for run in range(args.repeat):
            for name, fn in (
                ("sss replicate", lambda r: bench_replicate(source, r, args.batch)),
                ("sss bundle", lambda r: bench_bundle(source, r + ".bundle", r, args.batch)),
                ("stdlib re-run SQL", lambda r: bench_stdlib(r, script, args.batch)),
            ):
                replica = os.path.join(d, f"{name.split()[0]}-{name.split()[1]}-{run}.db")
                elapsed, changes = fn(replica)
                assert same_tables(source, replica), f"{name}: replica differs from the source"
                if name not in results or elapsed < results[name][0]:
                    results[name] = (elapsed, changes)
        work = args.writes * (args.rows + 2)  # the source's row changes
        base_rate = work / results["stdlib re-run SQL"][0]
        print(f"{'':20} {'seconds':>9} {'changes':>9} {'changes/s':>11} {'ratio':>7}")
        for name, (elapsed, changes) in results.items():
            rate = work / elapsed
            print(f"{name:20} {elapsed:9.3f} {changes:9d} {rate:11.0f} {rate / base_rate:7.2f}")
        print(f"changes/s = the source's {work} row changes / seconds; ratio = that rate / stdlib's "
              "(> 1: faster than re-running the SQL)")


if __name__ == "__main__":
    main()
