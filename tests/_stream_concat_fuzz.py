"""Fuzz worker for concat_stream: mutated and truncated changesets (the
mutations of ``_changeset_fuzz``) concatenated in one group and in several
partitions, from seekable and from non-seekable inputs.

Run as ``python _stream_concat_fuzz.py SEED COUNT WORKDIR``; prints ``ok
<outcome counts>`` and exits 0, or exits 1 naming the input (a crash shows as
a signal).  For each input pair it checks:

* the only exceptions are ChangesetError (and ValueError for too many
  passes, which the limits here never reach);
* after an exception, ``dest`` holds exactly what it held before;
* when the single group and the partitions both succeed, they hold the same
  changes (as a multiset: the order differs);
* the partitions never accept what the single group refuses (they may
  refuse more: SQLite's value-decoding iterator, which the partitioned path
  reads with, checks some records more closely than concat's own reader).
"""

from __future__ import annotations

import io
import random
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from _changeset_fuzz import corpus, mutate

import sqlite_session_safe as sss
from sqlite_session_safe.sessions.stream import CHANGE_OVERHEAD

PREFIX = b"keep me"


class OneWay(io.RawIOBase):
    """A readable stream that cannot seek (as a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b):  # type: ignore[no-untyped-def]
        return self._data.readinto(b)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        b = data[pos + i]
        if i == 8:
            return (value << 8) | b, pos + 9
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos + i + 1
    raise AssertionError("unreachable")


Header = tuple[int, int, bytes, bytes]   # kind, column count, pk flags, name


def raw_changes(data: bytes) -> Iterator[tuple[int, Header, bytes]]:
    """(section number, table header, the change's bytes) for each change of
    a changeset or patchset SQLite wrote, in order.  Read from the raw format
    (sqlite3.c, "CHANGESET FORMAT"), which also checks that every field has
    a type SQLite writes: an output carrying garbage fails here."""
    pos, section, header = 0, -1, None
    while pos < len(data):
        if data[pos] in b"TP":
            kind = data[pos]
            ncol, pos = _varint(data, pos + 1)
            pk = data[pos:pos + ncol]
            end = data.index(0, pos + ncol)
            header = (kind, ncol, pk, data[pos + ncol:end])
            section += 1
            pos = end + 1
            continue
        assert header is not None, "a change before any table header"
        kind, ncol, pk = header[0], header[1], header[2]
        start, op = pos, data[pos]
        pos += 2
        if op == 23 and kind == ord("T"):
            fields = 2 * ncol
        elif op == 9 and kind == ord("P"):
            fields = sum(1 for f in pk if f)
        else:
            assert op in (9, 18, 23), f"op {op}"
            fields = ncol
        for _ in range(fields):
            t = data[pos]
            pos += 1
            if t in (1, 2):
                pos += 8
            elif t in (3, 4):
                n, pos = _varint(data, pos)
                pos += n
            else:
                assert t in (0, 5), f"field type {t}"
        assert pos <= len(data), "truncated"
        yield section, header, data[start:pos]


def multiset(data: bytes) -> Counter[tuple[Header, bytes]]:
    """The changes as a multiset of (table header, the change's bytes):
    independent of their order and of how they are split into sections."""
    return Counter((header, change) for _, header, change in raw_changes(data))


def run(a: bytes, b: bytes, limit: int, seekable: bool) -> tuple[str, bytes | None]:
    dest = io.BytesIO()
    dest.write(PREFIX)
    src_a: object = io.BytesIO(a) if seekable else OneWay(a)
    src_b: object = io.BytesIO(b) if seekable else OneWay(b)
    try:
        sss.concat_stream(src_a, src_b, dest, memory_limit=limit)  # type: ignore[arg-type]
    except sss.ChangesetError as exc:
        if dest.getvalue() != PREFIX:
            raise AssertionError(f"dest holds {dest.getvalue()!r} after {exc!r}") from None
        return "ChangesetError", None
    out = dest.getvalue()
    assert out.startswith(PREFIX)
    return "ok", out[len(PREFIX):]


def main() -> int:
    seed, count, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    rng = random.Random(seed)
    seeds = corpus(workdir)
    outcomes: Counter[str] = Counter()
    for i in range(count):
        a = rng.choice(seeds)
        # Mostly the same kind: a changeset with a patchset is refused at once.
        b = mutate(rng, a if rng.random() < 0.9 else rng.choice(seeds), seeds)
        if rng.random() < 0.5:
            a, b = b, a
        need = len(a) + len(b) + CHANGE_OVERHEAD * 4
        try:
            whole, out_whole = run(a, b, 1 << 30, True)
            parts, out_parts = run(a, b, max(1, need // rng.randint(3, 12)), rng.random() < 0.7)
            outcomes[f"whole:{whole},parts:{parts}"] += 1
            if whole == parts == "ok":
                assert out_whole is not None and out_parts is not None
                assert multiset(out_whole) == multiset(out_parts), "different changes"
            elif parts == "ok":
                raise AssertionError("the partitions accepted what one group refused")
        except BaseException:
            print(f"FAILED on input {i}: a={a.hex()} b={b.hex()}", flush=True)
            traceback.print_exc()
            return 1
    print("ok", dict(sorted(outcomes.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
