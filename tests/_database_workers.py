"""Helpers for the coordinated-database tests: worker processes and checks.

Workers are module-level functions (they also run under ``spawn``); every
one opens its own ``sss.open`` Database, as a separate program would.
Small lock timings keep the signal tests fast: a stale timeout of 1.2 s with
a 0.3 s heartbeat.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from typing import Any

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.audit import log_position

STRESS_SCALE = max(1, round(float(os.environ.get("SSS_STRESS_SCALE", "1"))))
STALE = 1.2
BEAT = 0.3


def mp_context() -> multiprocessing.context.BaseContext:
    """fork where it exists (fast); spawn on Windows."""
    if sys.platform == "win32":
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("fork")


def open_db(path: str, **kw: Any) -> sss.Database:
    kw.setdefault("stale_timeout", STALE)
    kw.setdefault("heartbeat_interval", BEAT)
    kw.setdefault("timeout", 120)
    return sss.open(path, **kw)


def make_counter_db(path: str, **kw: Any) -> None:
    """A database with one counter row and a table of inserted items
    (``kw`` for :func:`open_db`, e.g. ``mode``)."""
    with open_db(path, **kw) as db:
        db.migrate(
            "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
            "INSERT INTO counter VALUES (1, 0);"
            "CREATE TABLE item(id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, k INTEGER NOT NULL, "
            "payload BLOB NOT NULL)",
            label="schema",
        )


def user_tables(con: sss.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every user table's rows in primary key order (the package's _sss_
    tables and SQLite's own left out)."""
    names = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE '\\_sss\\_%' ESCAPE '\\' ORDER BY name")]
    return {n: con.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}


def replay(log_source: str, start_copy: str, upto: int | None = None,
           mode: str = "trusted") -> tuple[dict[str, Any], int]:
    """Apply the audit log of ``log_source`` (opened in ``mode``) -- the
    entries after the copy's own log position, up to ``upto`` -- onto
    ``start_copy``, checking that the seqs are consecutive.  Returns (the
    copy's user tables, last seq applied)."""
    con = sss.connect(start_copy)
    try:
        applied = log_position(con)  # 0 for a copy taken before the log existed
        with open_db(log_source, mode=mode) as db:
            for entry in db.log(since=applied):
                if upto is not None and entry.seq > upto:
                    break
                assert entry.seq == applied + 1, (entry.seq, applied)
                entry.apply_to(con)
                applied = entry.seq
        return user_tables(con), applied
    finally:
        con.close()


def increment(tx: sss.WriteTx) -> int:
    """A read-modify-write done in Python, so a lost update would show."""
    (n,) = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
    return n + 1


# -- workers -------------------------------------------------------------------


def counter_worker(path: str, n: int, start, out) -> None:
    """n increments through db.write; report the seqs it got."""
    db = open_db(path)
    start.wait()
    seqs = [db.write(increment, label="inc").seq for _ in range(n)]
    db.close()
    out.put(seqs)


def writer_loop(path: str, writer: int, fd: int, payload: int, stop_after: int | None = None) -> None:
    """Write forever (or ``stop_after`` times): each write increments the
    counter and inserts an item.  Before each write it writes the counter
    value it intends to reach to ``fd`` (8 bytes), so a killer knows which
    write was in flight."""
    db = open_db(path)
    rnd = random.Random(writer * 7919 + os.getpid())
    done = 0
    while stop_after is None or done < stop_after:
        with db.read() as r:
            (n,) = r.execute("SELECT n FROM counter").fetchone()
        if fd >= 0:
            os.write(fd, (n + 1).to_bytes(8, "little"))

        def fn(tx: sss.WriteTx) -> None:
            k = increment(tx)
            tx.execute("INSERT INTO item(writer, k, payload) VALUES (?, ?, ?)",
                       (writer, k, rnd.randbytes(payload)))

        db.write(fn, label=f"w{writer}")
        done += 1
    db.close()


def paused_writer(path: str, pause_at: str, conn, mode: str = "trusted") -> None:
    """One write that stops at ``pause_at`` ("admitted": after admission,
    before BEGIN; "inside": inside fn) and waits for the parent, then
    reports what happened."""
    db = open_db(path, mode=mode)

    def announce() -> None:
        conn.send(("paused", db._lock.owner.owner_id))
        conn.recv()  # the parent SIGSTOPs us here, later SIGCONTs and says go

    if pause_at == "admitted":
        db._after_admission = announce

    def fn(tx: sss.WriteTx) -> None:
        tx.execute("UPDATE counter SET n = n + 100 WHERE id = 1")
        if pause_at == "inside":
            announce()

    try:
        res = db.write(fn, label="paused")
        conn.send(("committed", res.seq))
    except sss.LockCompromised as e:
        conn.send(("compromised", str(e)))
    except Exception as e:  # reported, so the test shows it
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        db.close()


def single_write(path: str, amount: int, out, mode: str = "trusted", timeout: float = 120) -> None:
    """One write adding ``amount`` to the counter; report its seq (or the
    error's class name and message)."""
    db = open_db(path, mode=mode, timeout=timeout)
    t0 = time.monotonic()
    try:
        res = db.write(lambda tx: tx.execute("UPDATE counter SET n = n + ? WHERE id = 1", (amount,)),
                       label="other")
        out.put((res.seq, time.monotonic() - t0))
    except sss.Error as e:
        out.put((type(e).__name__, str(e)))
    finally:
        db.close()
