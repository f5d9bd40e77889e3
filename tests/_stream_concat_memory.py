"""Memory worker for concat_stream, run in a fresh process so that its peak
RSS is concat_stream's own.

``python _stream_concat_memory.py make DIR ROWS SIZE``: writes DIR/a.cs (ROWS
inserts of SIZE-byte blobs) and DIR/b.cs (an update of every row and a delete
of every tenth) with the streaming session output, so this process never holds
a changeset either.

``python _stream_concat_memory.py concat A B OUT LIMIT``: concatenates A and B
into OUT with ``memory_limit=LIMIT`` (0: SQLite's single group, whatever the
size) and prints one JSON line: the peak RSS before and after
(``ru_maxrss``, bytes), the seconds taken, the partitions used and the bytes
written.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import sqlite_session_safe as sss
from sqlite_session_safe.sessions import stream


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB


def make(root: Path, rows: int, size: int) -> None:
    con = sss.connect(root / "src.db")
    con.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                      "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, n INTEGER);")
    for name, sql in (("a.cs", f"WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                               f"WHERE i < {rows}) INSERT INTO t SELECT i, randomblob({size}), i FROM k"),
                      ("b.cs", f"UPDATE t SET v = randomblob({size}), n = n + 1;"
                               "DELETE FROM t WHERE id % 10 = 0")):
        with con.session() as s:
            with con.transaction():
                con.executescript(sql)
            with open(root / name, "wb") as f:
                s.changeset_stream(f)
    con.close()


def concat(a: Path, b: Path, out: Path, limit: int) -> None:
    before = peak_rss()
    nbytes = a.stat().st_size + b.stat().st_size
    t0 = time.perf_counter()
    with open(a, "rb") as fa, open(b, "rb") as fb, open(out, "wb") as fo:
        if limit:
            written = sss.concat_stream(fa, fb, fo, memory_limit=limit)
        else:
            written = sss.concat_stream(fa, fb, fo, memory_limit=1 << 62)
    seconds = time.perf_counter() - t0
    after = peak_rss()
    parts = 1
    if limit:  # counted after the peak was read
        parts = stream.concat_partitions(nbytes, count(a) + count(b), limit)
    print(json.dumps({"before": before, "after": after, "seconds": round(seconds, 3),
                      "partitions": parts, "input": nbytes, "written": written}))


def count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in sss.iterate_stream(f))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        concat(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
