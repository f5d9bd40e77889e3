"""sqlite_session_safe.aio as aiosqlite: the API, batching, concurrency,
cancellation and deadlines, user functions, interpreter exit.

Real files, real threads, real event loops.  Every wait is bounded
(``run(..., timeout)``; subprocesses have timeouts) so a hang fails a test.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from _source import source_path

import sqlite_session_safe as sss
import sqlite_session_safe.aio as aio
import sqlite_session_safe.dbapi as dbapi
from sqlite_session_safe.binding.raw import lib

#: Counts up without end: ``COUNT_UP + "SELECT x FROM c"`` is an endless result.
COUNT_UP = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
#: A query that never ends by itself.
FOREVER = COUNT_UP + "SELECT count(*) FROM c"


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run ``coro`` on a fresh event loop, failing (not hanging) after ``timeout``."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def posted(db: aio.Connection) -> int:
    """Jobs handed to the connection's worker so far (one per thread hop)."""
    return int(lib.sss_handoff_posted(db._worker._h))


# -- the aiosqlite API ------------------------------------------------------------


def test_connect_awaited_and_as_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "a.db"

    async def main() -> None:
        db = await aio.connect(path)
        assert isinstance(db, aio.Connection)
        await db.execute("CREATE TABLE t(x)")
        await db.close()
        await db.close()  # twice is fine
        async with aio.connect(str(path)) as db:
            assert await db.execute_fetchall("SELECT name FROM sqlite_schema") == [("t",)]
        async with aio.connect(str(path).encode()) as db:
            assert (await db.execute_fetchall("SELECT 1")) == [(1,)]

    run(main())


def test_calls_after_close_raise_value_error(tmp_path: Path) -> None:
    async def main() -> None:
        db = await aio.connect(tmp_path / "a.db")
        cur = await db.execute("SELECT 1, 2")
        await db.close()
        with pytest.raises(ValueError, match="Connection closed"):
            await db.execute("SELECT 1")
        with pytest.raises(ValueError, match="Connection closed"):
            await cur.fetchall()

    run(main())


def _scenario_source() -> str:
    return textwrap.dedent('''
    async def scenario(mod, path):
        out = []
        # aiosqlite's isolation_level setter needs check_same_thread=False
        async with mod.connect(path, check_same_thread=False) as db:
            await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, x REAL, b BLOB)")
            cur = await db.execute("INSERT INTO t(name, x, b) VALUES (?, ?, ?)",
                                   ("a", 1.5, b"\\x00\\x01"))
            out.append(("insert", cur.rowcount, cur.lastrowid, cur.description, db.in_transaction))
            await db.executemany("INSERT INTO t(name, x) VALUES (?, ?)",
                                 [(f"n{i}", i / 3) for i in range(200)])
            out.append(("total_changes", db.total_changes))
            await db.commit()
            out.append(("after commit", db.in_transaction))
            out.append(("execute_insert", await db.execute_insert("INSERT INTO t(name) VALUES ('z')")))
            await db.rollback()
            out.append(("rolled back", await db.execute_fetchall("SELECT count(*) FROM t")))
            async with db.execute("SELECT * FROM t ORDER BY id") as cur:
                out.append(("one", await cur.fetchone()))
                out.append(("many", await cur.fetchmany(3)))
                cur.arraysize = 2
                out.append(("many default", await cur.fetchmany()))
                out.append(("rest", len(await cur.fetchall()), await cur.fetchone()))
                out.append(("description", cur.description))
            cur = await db.execute("SELECT id, name FROM t WHERE id > ? ORDER BY id", (150,))
            out.append(("iterated", [row async for row in cur]))
            db.row_factory = mod.Row
            async with db.execute("SELECT id, name AS Label FROM t WHERE id = 2") as cur:
                row = await cur.fetchone()
                out.append(("row", row["label"], row[0], row.keys(), tuple(row)))
            db.row_factory = None
            db.text_factory = bytes
            out.append(("bytes", await db.execute_fetchall("SELECT name FROM t WHERE id = 1")))
            db.text_factory = str
            c2 = await db.cursor()
            await c2.execute("SELECT 1")
            out.append(("cursor", await c2.fetchall(), c2.rowcount))
            await c2.executescript("CREATE TABLE u(v); INSERT INTO u VALUES (1); INSERT INTO u VALUES (2);")
            out.append(("script", await db.execute_fetchall("SELECT * FROM u")))
            await c2.close()
            await db.create_function("twice", 1, lambda v: v * 2)
            out.append(("function", await db.execute_fetchall("SELECT twice(21)")))
            for sql in ("SELECT * FROM missing", "INSERT INTO t(id) VALUES (1)", "SELEC 1"):
                try:
                    await db.execute(sql)
                except mod.Error as e:
                    out.append(("error", type(e).__name__, str(e)))
            out.append(("dump", [line async for line in db.iterdump()][:4]))
            await db.set_progress_handler(lambda: 1, 1)
            try:
                await db.execute("SELECT count(*) FROM t")
            except mod.OperationalError as e:
                out.append(("progress", str(e)))
            await db.set_progress_handler(None, 1)
            out.append(("isolation", db.isolation_level))
            db.isolation_level = None
            await db.execute("INSERT INTO u VALUES (3)")
            out.append(("autocommit", db.in_transaction, db.isolation_level))
        return out
    ''')


def test_same_results_as_aiosqlite(tmp_path: Path) -> None:
    aiosqlite = pytest.importorskip("aiosqlite")
    namespace: dict[str, Any] = {}
    exec(_scenario_source(), namespace)
    scenario = namespace["scenario"]
    had_dump = hasattr(sqlite3, "dump")
    theirs = run(scenario(aiosqlite, str(tmp_path / "theirs.db")))
    if not had_dump and hasattr(sqlite3, "dump"):
        # The stdlib's iterdump imported its submodule sqlite3.dump, which
        # test_dbapi_surface would take for a name missing from ours.
        del sqlite3.dump
    ours = run(scenario(aio, str(tmp_path / "ours.db")))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if a[0] == "error":  # same class; the DB-API module may add context to the message
            assert a[1] == b[1] and a[2].startswith(b[2]), (a, b)
        else:
            assert a == b


def test_module_surface_covers_aiosqlite() -> None:
    aiosqlite = pytest.importorskip("aiosqlite")
    missing = [n for n in aiosqlite.__all__ if not hasattr(aio, n)]
    assert missing == []
    for cls_name in ("Connection", "Cursor"):
        theirs = {n for n in dir(getattr(aiosqlite, cls_name)) if not n.startswith("_")}
        ours = set(dir(getattr(aio, cls_name)))
        assert sorted(theirs - ours) == []
    # The private parts other libraries touch (SQLAlchemy's dialect, aiosqlite's tests).
    unstarted = aio.Connection(lambda: None, 64)
    for name in ("_conn", "_execute", "_connect", "_running", "_connection", "_tx", "_thread"):
        assert hasattr(aio.Connection, name) or name in vars(unstarted), name
    assert issubclass(aio.IntegrityError, sqlite3.IntegrityError)


def test_backup_into_async_dbapi_and_stdlib_targets(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "src.db") as src, aio.connect(":memory:") as dst:
            await src.execute("CREATE TABLE t(x)")
            await src.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
            await src.commit()
            await src.backup(dst)
            assert await dst.execute_fetchall("SELECT count(*) FROM t") == [(100,)]
            plain = dbapi.connect(tmp_path / "plain.db", check_same_thread=False)
            await src.backup(plain)
            assert plain.execute("SELECT sum(x) FROM t").fetchall() == [(4950,)]
            plain.close()
            stdlib = sqlite3.connect(":memory:", check_same_thread=False)
            steps: list[int] = []
            await src.backup(stdlib, pages=1, progress=lambda status, remaining, total: steps.append(total))
            assert stdlib.execute("SELECT count(*) FROM t").fetchall() == [(100,)]
            assert steps
            stdlib.close()

    run(main())


def test_sessions_give_changesets_off_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
            async with db.session() as s:
                await db.execute("INSERT INTO t VALUES (1, 'x')")
                await db.execute("INSERT INTO t VALUES (2, 'y')")
                await db.commit()
                changeset = await s.changeset()
                assert await s.run(lambda session: session.is_empty) is False
                patchset = await s.patchset()
            assert s.closed
            assert [(c.table, c.op, c.new) for c in changeset] == [("t", "INSERT", (1, "x")),
                                                                   ("t", "INSERT", (2, "y"))]
            assert isinstance(patchset, sss.Patchset)
            other = sss.connect(tmp_path / "b.db")
            other.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
            changeset.apply(other)
            assert other.execute("SELECT * FROM t ORDER BY id").fetchall() == [(1, "x"), (2, "y")]
            other.close()

    run(main())


def test_run_and_row_factory_per_cursor(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            assert await db.run(lambda con, n: con.execute("SELECT ?", (n,)).fetchone(), 5) == (5,)
            cur = await db.cursor()
            cur.row_factory = aio.Row
            await cur.execute("SELECT 1 AS one")
            row = await cur.fetchone()
            assert isinstance(row, aio.Row) and row["one"] == 1

    run(main())


# -- batches and hops -----------------------------------------------------------------


def test_rows_come_back_one_hop_per_batch(tmp_path: Path) -> None:
    from sqlite_session_safe.binding.cursor import BATCH_ROWS, FIRST_BATCH_ROWS

    n = 3 * BATCH_ROWS + 100

    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.execute("CREATE TABLE t(x INTEGER PRIMARY KEY)")
            await db.execute(f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
                             "INSERT INTO t SELECT x FROM c")
            await db.commit()
            before = posted(db)
            async with db.execute("SELECT x FROM t WHERE x = 7") as cur:
                assert await cur.fetchone() == (7,)
                assert await cur.fetchone() is None
            assert posted(db) - before == 1  # execute + first rows + close: one hop

            before = posted(db)
            seen = [row[0] async for row in await db.execute("SELECT x FROM t ORDER BY x")]
            assert seen == list(range(1, n + 1))
            hops = posted(db) - before
            assert hops == 1 + -(-(n - FIRST_BATCH_ROWS) // BATCH_ROWS)  # execute, then one per batch

            before = posted(db)
            cur = await db.execute("SELECT x FROM t")
            assert len(await cur.fetchall()) == n
            assert posted(db) - before == 2  # execute, then the rest in one

    run(main())


# -- many tasks, several connections ------------------------------------------------------


def test_many_tasks_on_one_connection_are_serialized(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db", isolation_level=None) as db:
            await db.execute("PRAGMA synchronous = OFF")  # about ordering, not durability
            await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, task INTEGER, k INTEGER)")

            async def task(i: int) -> list[int]:
                seen = []
                for k in range(40):
                    await db.execute("INSERT INTO t(task, k) VALUES (?, ?)", (i, k))
                    (count,) = (await db.execute_fetchall("SELECT count(*) FROM t WHERE task = ?", (i,)))[0]
                    seen.append(count)
                return seen

            results = await asyncio.gather(*(task(i) for i in range(30)))
            # Each task sees its own inserts in order, whatever the interleaving.
            assert all(seen == list(range(1, 41)) for seen in results)
            rows = await db.execute_fetchall("SELECT task, k FROM t ORDER BY id")
            assert len(rows) == 30 * 40
            for i in range(30):
                assert [k for t, k in rows if t == i] == list(range(40))

    run(main())


def test_several_connections_increment_without_lost_updates(tmp_path: Path) -> None:
    path = tmp_path / "a.db"

    async def main() -> None:
        async with aio.connect(path) as db:
            await db.execute("CREATE TABLE counter(n INTEGER)")
            await db.execute("INSERT INTO counter VALUES (0)")
            await db.commit()

        async def worker() -> None:
            async with aio.connect(path, timeout=30, isolation_level=None) as db:
                for _ in range(50):
                    await db.execute("BEGIN IMMEDIATE")
                    (n,) = (await db.execute_fetchall("SELECT n FROM counter"))[0]
                    await db.execute("UPDATE counter SET n = ?", (n + 1,))
                    await db.execute("COMMIT")

        await asyncio.gather(*(worker() for _ in range(4)))
        async with aio.connect(path) as db:
            assert await db.execute_fetchall("SELECT n FROM counter") == [(200,)]

    run(main(), timeout=120)


def test_one_connection_from_several_threads_and_loops(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.execute("CREATE TABLE t(x)")
            await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
            await db.commit()
            results: dict[int, Any] = {}

            def in_thread(k: int) -> None:
                async def query() -> Any:
                    return [await db.execute_fetchall("SELECT sum(x) FROM t") for _ in range(50)]
                results[k] = asyncio.run(query())

            threads = [threading.Thread(target=in_thread, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                await asyncio.sleep(0.01)
            assert results == {k: [[(45,)]] * 50 for k in range(4)}

    run(main())


def test_fast_calls_still_let_other_tasks_and_timeouts_run(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            t = asyncio.ensure_future(ticker())
            for _ in range(3000):
                await db.execute_fetchall("SELECT 1")
            t.cancel()
            assert ticks > 0
            with pytest.raises(asyncio.TimeoutError):
                async def busy() -> None:
                    while True:
                        await db.execute_fetchall("SELECT 1")
                await asyncio.wait_for(busy(), 0.2)

    run(main())


# -- cancellation and deadlines ------------------------------------------------------------


def test_cancelling_a_running_query_interrupts_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.execute("CREATE TABLE t(x)")
            await db.execute("INSERT INTO t VALUES (1)")
            task = asyncio.ensure_future(db.execute_fetchall(FOREVER))
            await asyncio.sleep(0.2)
            assert not task.done()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 10  # bound, not a timing claim
            # Usable at once, the transaction untouched.
            assert db.in_transaction
            assert await db.execute_fetchall("SELECT count(*) FROM t") == [(1,)]
            await db.commit()
            assert await db.execute_fetchall("SELECT x FROM t") == [(1,)]

    run(main())


def test_deadlines_raise_timeout_error_and_leave_the_connection_usable(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(db.execute_fetchall(FOREVER), 0.2)
            assert await db.execute_fetchall("SELECT 1") == [(1,)]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(db.execute(FOREVER), 0.1)
            if sys.version_info >= (3, 11):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        async for _ in await db.execute(COUNT_UP + "SELECT x FROM c"):
                            pass
            assert await db.execute_fetchall("SELECT 2") == [(2,)]

    run(main())


def test_cancelling_a_statement_waiting_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "a.db"

    async def main() -> None:
        async with aio.connect(path, isolation_level=None) as holder, \
                aio.connect(path, isolation_level=None, timeout=60) as waiter:
            await holder.execute("CREATE TABLE t(x)")
            await holder.execute("BEGIN IMMEDIATE")
            task = asyncio.ensure_future(waiter.execute("BEGIN IMMEDIATE"))
            await asyncio.sleep(0.3)
            assert not task.done()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 10  # not the 60 s busy timeout
            assert not waiter.in_transaction
            await holder.execute("INSERT INTO t VALUES (1)")
            await holder.execute("COMMIT")
            await waiter.execute("BEGIN IMMEDIATE")
            await waiter.execute("INSERT INTO t VALUES (2)")
            await waiter.execute("COMMIT")
            assert await holder.execute_fetchall("SELECT x FROM t ORDER BY x") == [(1,), (2,)]

    run(main())


def test_a_cancelled_call_that_has_not_started_never_runs(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.execute("CREATE TABLE t(x)")
            await db.commit()
            long = asyncio.ensure_future(db.execute_fetchall(FOREVER))
            await asyncio.sleep(0.1)
            queued = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(0.1)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            await db.interrupt()
            with pytest.raises(aio.OperationalError, match="interrupt"):
                await long
            await db.commit()
            assert await db.execute_fetchall("SELECT count(*) FROM t") == [(0,)]

    run(main())


def test_cancelling_a_write_statement_rolls_its_transaction_back(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db", isolation_level=None) as db:
            await db.execute("CREATE TABLE t(x)")
            await db.execute("BEGIN")
            await db.execute("INSERT INTO t VALUES (-1)")
            task = asyncio.ensure_future(db.execute("INSERT INTO t " + COUNT_UP + "SELECT x FROM c"))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # SQLite's rule for an interrupted write statement: the whole open
            # transaction is rolled back (sqlite3VdbeHalt), consistently.
            assert not db.in_transaction
            assert await db.execute_fetchall("SELECT x FROM t") == []
            assert await db.execute_fetchall("PRAGMA integrity_check") == [("ok",)]

    run(main())


def test_cancelling_a_cursor_fetch_between_batches(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            cur = await db.execute(COUNT_UP + "SELECT x FROM c WHERE x % 1000 = 0")
            task = asyncio.ensure_future(cur.fetchmany(5000))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await cur.close()
            assert await db.execute_fetchall("SELECT 3") == [(3,)]
            cur2 = await db.cursor()
            task = asyncio.ensure_future(cur2.execute(FOREVER))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await cur2.execute("SELECT 4")
            assert await cur2.fetchall() == [(4,)]

    run(main())


def test_a_cancellation_does_not_leave_the_connection_interrupted(tmp_path: Path) -> None:
    """SQLite keeps an interrupt pending while any statement of the
    connection is active: a cursor with unread rows would make every later
    statement fail.  After a cancellation such cursors are reset (their next
    fetch says "interrupted") and new statements run at once."""
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            open_cursor = await db.execute(COUNT_UP.replace("FROM c)", "FROM c WHERE x < 10000)")
                                           + "SELECT x FROM c")
            assert await open_cursor.fetchone() == (1,)
            small = await db.execute("SELECT 1 UNION ALL SELECT 2")  # fully in memory
            task = asyncio.ensure_future(db.execute_fetchall(FOREVER))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await db.execute_fetchall("SELECT 1") == [(1,)]
            assert await small.fetchall() == [(1,), (2,)]
            assert len(await open_cursor.fetchmany(63)) == 63  # what it held already
            with pytest.raises(aio.OperationalError, match="interrupted"):
                await open_cursor.fetchone()
            await open_cursor.close()

    run(main())


# -- user functions -----------------------------------------------------------------


def test_exceptions_inside_user_functions(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def explode(x: Any) -> Any:
        if x == 3:
            raise Boom("three")
        return x

    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            await db.create_function("explode", 1, explode)
            with pytest.raises(aio.OperationalError) as info:
                await db.execute_fetchall("SELECT explode(value) FROM json_each('[1,2,3,4]')")
            assert isinstance(info.value.__cause__, Boom)
            assert await db.execute_fetchall("SELECT explode(2)") == [(2,)]
            calls: list[int] = []
            await db.create_function("record", 1, lambda x: calls.append(threading.get_ident()) or x)
            await db.execute_fetchall("SELECT record(1)")
            assert calls == [db._thread.ident]  # user functions run on the worker thread

    run(main())


def test_exceptions_in_callbacks_are_not_lost(tmp_path: Path) -> None:
    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            def handler() -> int:
                raise RuntimeError("progress")
            await db.set_progress_handler(handler, 1)
            with pytest.raises(aio.OperationalError):
                await db.execute_fetchall("SELECT 1")
            await db.set_progress_handler(None, 1)
            assert await db.execute_fetchall("SELECT 1") == [(1,)]

    run(main())


# -- lifetime --------------------------------------------------------------------------


def test_garbage_collected_connection_warns_and_stops_its_thread(tmp_path: Path) -> None:
    async def main() -> threading.Thread:
        db = await aio.connect(tmp_path / "a.db")
        await db.execute_fetchall("SELECT 1")
        thread = db._thread
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del db
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        return thread

    thread = run(main())
    thread.join(10)
    assert not thread.is_alive()


EXIT_SCRIPT = '''
import asyncio, sys
import sqlite_session_safe.aio as aio

KEEP = []

async def main(path, how):
    if how == "database":
        db = await aio.open(path)
        KEEP.append(db)
        await db.migrate("CREATE TABLE IF NOT EXISTS t(x PRIMARY KEY)")
        await db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
        async with db.read() as r:
            await r.fetchall("SELECT * FROM t")
        print("done", flush=True)
        return
    db = await aio.connect(path)
    KEEP.append(db)
    await db.execute("CREATE TABLE IF NOT EXISTS t(x)")
    await db.commit()
    await db.execute("INSERT INTO t VALUES (1)")  # left uncommitted
    if how == "running":
        asyncio.ensure_future(db.execute_fetchall(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"))
        await asyncio.sleep(0.2)
    print("done", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


@pytest.mark.parametrize("how", ["idle", "running", "database"])
def test_an_unclosed_connection_never_keeps_the_interpreter_alive(tmp_path: Path, how: str) -> None:
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    path = tmp_path / "a.db"
    proc = subprocess.run([sys.executable, str(script), str(path), how],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    # The uncommitted insert was rolled back (the committed write kept),
    # cleanly: no journal left over.
    con = sss.connect(path)
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(1 if how == "database" else 0,)]
    con.close()
    assert not Path(str(path) + "-journal").exists()


def test_stop_without_close_and_after_the_loop_closed(tmp_path: Path) -> None:
    async def main() -> aio.Connection:
        db = await aio.connect(tmp_path / "a.db")
        await db.stop()
        db2 = await aio.connect(tmp_path / "a.db")
        return db2

    loop = asyncio.new_event_loop()
    db = loop.run_until_complete(main())
    loop.close()
    assert db.stop() is None  # no loop running: nothing to await
    db._thread.join(10)
    assert not db._thread.is_alive()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_forked_child_gets_an_error_not_a_hang(tmp_path: Path) -> None:
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent('''
        import asyncio, os, sys
        import sqlite_session_safe.aio as aio

        async def main():
            db = await aio.connect(sys.argv[1])
            await db.execute_fetchall("SELECT 1")
            pid = os.fork()
            if pid == 0:
                async def child():
                    try:
                        await db.execute_fetchall("SELECT 1")
                    except ValueError as e:
                        os._exit(7 if "closed" in str(e).lower() else 8)
                    os._exit(9)
                asyncio.run(child())
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            await db.close()

        asyncio.run(main())
    '''))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "a.db")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child 7"


def test_wrong_spin_is_refused() -> None:
    with pytest.raises(ValueError, match="spin"):
        aio.connect(":memory:", spin=-1)


def test_the_readme_example_runs(tmp_path: Path) -> None:
    readme = source_path("README.md").read_text(encoding="utf-8")
    section = readme.split("## Async: `sqlite_session_safe.aio`", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "interrupted; still usable: 1" in proc.stdout
    assert "[('item', 'INSERT', (1, 'a')), ('item', 'INSERT', (2, 'b'))]" in proc.stdout
    con = sss.connect(tmp_path / "replica.sqlite")
    assert con.execute("SELECT * FROM kv").fetchall() == [("x", 1)]
    con.close()
