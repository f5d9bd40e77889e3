"""A workload for the log's tests: a schema and writes of every kind."""

from __future__ import annotations

SCHEMA = ("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);"
          "CREATE TABLE u(a TEXT, k INTEGER, w REAL, PRIMARY KEY (a, k)) WITHOUT ROWID;"
          "INSERT INTO t VALUES (1, 'one', NULL), (2, 'two', x'00ff'), (3, 'three', NULL)")

#: Writes of every kind: inserts, updates, deletes, WITHOUT ROWID, blobs, and
#: ones whose size SQLite overestimates (rows inserted then changed or
#: deleted again in the same write).
WRITES = [
    lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)",
                              [(i, f"v{i}" * 5, bytes([i % 256]) * (i % 9)) for i in range(10, 400)]),
    lambda tx: tx.executemany("INSERT INTO u VALUES (?, ?, ?)",
                              [(f"a{i % 7}", i, i / 3) for i in range(300)]),
    lambda tx: (tx.execute("UPDATE t SET v = v || '!', b = NULL WHERE id % 3 = 0"),
                tx.execute("DELETE FROM u WHERE k % 2 = 1")),
    lambda tx: (tx.executemany("INSERT INTO t VALUES (?, ?, ?)",
                               [(i, "gone", b"x" * 50) for i in range(1000, 1300)]),
                tx.execute("DELETE FROM t WHERE id >= 1000 AND id % 2 = 0"),
                tx.execute("UPDATE t SET v = 'back' WHERE id >= 1000")),
    lambda tx: tx.execute("DELETE FROM t WHERE id BETWEEN 50 AND 150"),
]
