"""Statements and connections are released: memory does not grow with use."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

import sqlite_session_safe as sss


def rss_bytes() -> int:
    if sys.platform.startswith("linux"):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource  # peak, not current: still catches steady growth

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@pytest.mark.skipif(sys.platform == "win32", reason="RSS measured through /proc or getrusage")
def test_no_growth_over_100k_executes(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "m.db")
    con.execute("PRAGMA synchronous = OFF")  # memory is under test here, not fsync
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"v{i}", b"x" * 100) for i in range(1000)])

    def workload(n: int) -> None:
        for i in range(n):
            con.execute("SELECT v, b FROM t WHERE id = ?", (i % 1000,)).fetchone()
            if i % 10 == 0:
                con.execute("UPDATE t SET v = ? WHERE id = ?", (f"u{i}", i % 1000))
            if i % 100 == 0:  # statements that fall out of the cache are finalized
                con.execute(f"SELECT {i % 500} + id FROM t LIMIT 1").fetchall()
            if i % 1000 == 0:  # cursors abandoned mid-result
                cur = con.execute("SELECT * FROM t")
                cur.fetchone()

    workload(20_000)  # warm up caches and allocator pools
    gc.collect()
    before = rss_bytes()
    workload(100_000)
    gc.collect()
    grown = rss_bytes() - before
    con.close()
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 100,000 executes"


@pytest.mark.skipif(sys.platform == "win32", reason="RSS measured through /proc or getrusage")
def test_no_growth_over_many_connections(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")

    def cycle(n: int) -> None:
        for i in range(n):
            con = sss.connect(path)
            con.execute("SELECT * FROM t").fetchall()
            cur = con.execute("SELECT 1 UNION ALL SELECT 2")  # left open on purpose
            cur.fetchone()
            if i % 2:
                con.close()
            # odd ones are closed explicitly, even ones by garbage collection

    cycle(500)
    gc.collect()
    before = rss_bytes()
    cycle(3000)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 3000 connections"
