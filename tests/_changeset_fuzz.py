"""Fuzz worker: feed mutated and truncated changesets to every entry point.

Run as ``python _changeset_fuzz.py SEED COUNT WORKDIR``; prints a summary line
``ok <outcome counts>`` and exits 0, or dies (a crash shows as a signal).  A
Python exception other than the package's own errors is a failure: it is
printed with the input that caused it and the exit code is 1.
"""

from __future__ import annotations

import io
import random
import sys
import traceback
from collections import Counter
from pathlib import Path

import sqlite_session_safe as sss

SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL, b BLOB);
CREATE TABLE w(a TEXT, b INTEGER, c, PRIMARY KEY(b, a)) WITHOUT ROWID;
CREATE TABLE u(k TEXT PRIMARY KEY, x UNIQUE);
"""


def corpus(workdir: Path) -> list[bytes]:
    con = sss.connect(workdir / "src.db")
    con.executescript(SCHEMA + "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF;")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                    [(i, f"v{i}" * (i % 4), i / 7, bytes([i]) * (i % 3)) for i in range(20)])
    out = []
    with con.session() as s:
        con.execute("UPDATE t SET v = 'changed', n = NULL WHERE id % 3 = 0")
        con.execute("DELETE FROM t WHERE id % 5 = 0")
        con.execute("INSERT INTO w VALUES ('a', 1, 'x'), ('☃', 2, 3.5)")
        con.execute("INSERT INTO u VALUES ('k', x'00ff')")
        con.execute("UPDATE t SET id = id + 100 WHERE id = 1")
        out += [bytes(s.changeset()), bytes(s.patchset())]
    con.close()
    return out


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        if not b:
            b += bytes([rng.randrange(256)])
        pos = rng.randrange(len(b))
        if kind == 0:
            b[pos] = rng.randrange(256)
        elif kind == 1:
            b[pos] = rng.choice([0, 1, 2, 3, 4, 5, 0x09, 0x12, 0x17, 0x7F, 0x80, 0xFF, ord("T"), ord("P")])
        elif kind == 2:
            del b[pos:]
        elif kind == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 4:
            end = min(len(b), pos + rng.randint(1, 16))
            del b[pos:end]
        elif kind == 5:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            b[pos:] = other[cut:]
        else:
            b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def exercise(data: bytes, original: bytes, target: sss.Connection, outcomes: Counter) -> None:
    kind = sss.Patchset if data[:1] == b"P" else sss.Changeset
    try:
        cs = kind(data)
    except sss.ChangesetError:
        outcomes["rejected-header"] += 1
        cs = sss.Changeset(b"T" + data) if data[:1] != b"T" else sss.Changeset(data)
    steps = [
        ("validate", lambda: cs.validate()),
        ("iterate", lambda: list(cs)),
        ("invert", lambda: cs.invert() if isinstance(cs, sss.Changeset) else None),
        ("concat", lambda: cs.concat(kind(original)) if original[:1] == data[:1] else None),
        ("group", lambda: _group(cs)),
        ("stream-iterate", lambda: list(sss.iterate_stream(io.BytesIO(bytes(cs))))),
        ("stream-invert", lambda: sss.invert_stream(io.BytesIO(bytes(cs)), io.BytesIO())
         if isinstance(cs, sss.Changeset) else None),
        ("apply-omit", lambda: cs.apply(target, on_conflict=sss.OMIT, strict=False)),
        ("apply-strict", lambda: cs.apply(target, on_conflict=lambda c: sss.OMIT)),
        ("apply-abort", lambda: cs.apply(target)),
    ]
    for name, step in steps:
        try:
            step()
            outcomes[f"{name}:ok"] += 1
        except (sss.ChangesetError, sss.ConflictAbort, sss.SchemaMismatch) as exc:
            outcomes[f"{name}:{type(exc).__name__}"] += 1
        except sss.SQLiteError as exc:
            # Values of the wrong type for a column (e.g. text for an
            # INTEGER PRIMARY KEY) fail inside SQLite: a clean error.
            outcomes[f"{name}:{exc.name}"] += 1
        except sss.InterfaceError as exc:  # e.g. a change group's schema mismatch
            outcomes[f"{name}:{type(exc).__name__}"] += 1


def _group(cs: sss.Changeset | sss.Patchset) -> None:
    with sss.ChangeGroup() as g:
        g.add(cs)
        g.add(cs)
        g.output()


def main() -> int:
    seed, count, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    rng = random.Random(seed)
    seeds = corpus(workdir)
    target = sss.connect(workdir / "target.db")
    target.executescript(SCHEMA + "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF;")
    outcomes: Counter[str] = Counter()
    for i in range(count):
        original = rng.choice(seeds)
        data = mutate(rng, original, seeds)
        try:
            exercise(data, original, target, outcomes)
        except BaseException:
            print(f"FAILED on input {i}: {data.hex()}", flush=True)
            traceback.print_exc()
            return 1
    check = target.execute("PRAGMA integrity_check").fetchall()
    target.close()
    if check != [("ok",)]:
        print(f"FAILED integrity_check: {check}")
        return 1
    print("ok", dict(sorted(outcomes.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
