"""sqlite_session_safe.aio.open: the coordinated database from asyncio.

Writes, reads, migrations, undo, backups, replication; the event loop never
waits for the outer lock; cancellation and deadlines commit nothing (or
report the write that committed); the audit log always equals the data.
Real files, real threads; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _database_workers import increment, replay, user_tables

import sqlite_session_safe as sss
import sqlite_session_safe.aio as aio

COUNT_UP = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
FOREVER = "SELECT count(*) FROM (" + COUNT_UP + "SELECT x FROM c)"
SCHEMA = ("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
          "INSERT INTO counter VALUES (1, 0);"
          "CREATE TABLE item(id INTEGER PRIMARY KEY, k INTEGER NOT NULL)")


def run(coro: Any, timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def fresh(tmp_path: Path) -> tuple[str, str]:
    """A new database path, and an empty copy of it to replay the log onto."""
    path = str(tmp_path / "db.sqlite")
    start = str(tmp_path / "start.sqlite")
    sss.connect(start).close()
    return path, start


def assert_log_equals_data(path: str, start: str) -> int:
    replayed, last = replay(path, start)
    con = sss.connect(path)
    try:
        assert replayed == user_tables(con)
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    return last


def items(path: str) -> list[tuple[Any, ...]]:
    con = sss.connect(path)
    try:
        return con.execute("SELECT * FROM item ORDER BY id").fetchall()
    finally:
        con.close()


def put(k: int) -> Any:
    def fn(tx: sss.WriteTx) -> int:
        tx.execute("INSERT INTO item(k) VALUES (?)", (k,))
        return k
    return fn


async def ticker(counter: list[int]) -> None:
    while True:
        counter[0] += 1
        await asyncio.sleep(0.005)


def test_write_read_migrate_and_log(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            m = await db.migrate(SCHEMA, label="schema")
            assert m.kind == "ddl" and m.seq == 1
            w = await db.write(put(7), label="seven")
            assert isinstance(w, sss.WriteResult)
            assert (w.value, w.seq, w.label) == (7, 2, "seven")
            assert [(c.table, c.op, c.new) for c in w.changeset] == [("item", "INSERT", (1, 7))]
            empty = await db.write(lambda tx: None)
            assert empty.seq is None and empty.empty
            async with db.read() as r:
                assert r.seq == 2
                assert await r.fetchall("SELECT k FROM item") == [(7,)]
                cur = await r.execute("SELECT id, k FROM item")
                assert [row async for row in cur] == [(1, 7)]
                assert await r.fetchone("SELECT n FROM counter") == (0,)
            assert [e.seq async for e in db.log()] == [1, 2]
            assert await db.position() == 2
            assert (await db.capabilities())["log_position"] == 2
            assert not db.closed and db.mode == "trusted"
        assert db.closed
        with pytest.raises(ValueError):
            await db.write(put(1))

    run(main())
    assert assert_log_equals_data(path, start) == 2


def test_fn_runs_on_the_writer_thread_and_the_loop_keeps_running(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            ticks = [0]
            t = asyncio.ensure_future(ticker(ticks))
            threads: list[int] = []

            def slow(tx: sss.WriteTx) -> None:
                threads.append(threading.get_ident())
                time.sleep(0.3)
                tx.execute("INSERT INTO item(k) VALUES (1)")

            await db.write(slow)
            t.cancel()
            assert ticks[0] > 5
            assert threads == [db.sss_writer.thread.ident]

    run(main())


@contextlib.contextmanager
def write_lock_held(path: str) -> Iterator[threading.Event]:
    """A thread of this process writing through its own sss.Database stays
    inside its write (holding the outer lock) until the event yielded is
    set (at the latest when the block ends)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sss.open(path, linger=0) as other:
            def fn(tx: sss.WriteTx) -> None:
                tx.execute("INSERT INTO item(k) VALUES (-1)")
                holding.set()
                release.wait(30)
            other.write(fn, label="holder")

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(30)
        yield release
    finally:
        release.set()
        t.join(30)


def with_schema(tmp_path: Path) -> tuple[str, str]:
    path, start = fresh(tmp_path)
    with sss.open(path) as db:
        db.migrate(SCHEMA)
    return path, start


def test_waiting_for_the_outer_lock_never_blocks_the_loop(tmp_path: Path) -> None:
    path, start = with_schema(tmp_path)

    async def main(release: threading.Event) -> None:
        async with aio.open(path, linger=0) as db:
            ticks = [0]
            t = asyncio.ensure_future(ticker(ticks))
            write = asyncio.ensure_future(db.write(put(5)))
            await asyncio.sleep(0.3)
            assert not write.done() and ticks[0] > 5  # waiting, and the loop runs
            release.set()
            w = await write
            t.cancel()
            assert w.seq == 3

    with write_lock_held(path) as release:
        run(main(release))
    assert [k for _, k in items(path)] == [-1, 5]
    assert_log_equals_data(path, start)


def test_many_concurrent_writes_keep_the_log_equal_to_the_data(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)

            async def writer(i: int) -> list[int]:
                return [(await db.write(increment, label=f"w{i}")).value for _ in range(10)]

            values = await asyncio.gather(*(writer(i) for i in range(20)))
            flat = sorted(v for vs in values for v in vs)
            assert flat == list(range(1, 201))  # no lost update, none twice
            async with db.read() as r:
                assert await r.fetchall("SELECT n FROM counter") == [(200,)]

    run(main(), timeout=180)
    assert assert_log_equals_data(path, start) == 201


def test_an_exception_in_fn_commits_nothing(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)

            def fails(tx: sss.WriteTx) -> None:
                tx.execute("INSERT INTO item(k) VALUES (1)")
                raise KeyError("no")

            with pytest.raises(KeyError):
                await db.write(fails)
            with pytest.raises(sss.ConstraintError):
                await db.write(lambda tx: tx.execute("INSERT INTO item(id, k) VALUES (1, 1), (1, 2)"))

            async def not_plain(tx: sss.WriteTx) -> None:
                pass

            with pytest.raises(sss.InterfaceError, match="plain function"):
                await db.write(not_plain)
            assert await db.position() == 1

    run(main())
    assert items(path) == []
    assert_log_equals_data(path, start)


# -- cancellation and deadlines -------------------------------------------------------


def test_cancelling_a_queued_write_commits_nothing(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            gate = threading.Event()

            def blocker(tx: sss.WriteTx) -> None:
                tx.execute("INSERT INTO item(k) VALUES (1)")
                gate.wait(30)

            first = asyncio.ensure_future(db.write(blocker))
            await asyncio.sleep(0.1)
            queued = asyncio.ensure_future(db.write(put(2)))
            await asyncio.sleep(0.1)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await queued
            assert not hasattr(info.value, "write")
            gate.set()
            await first
            assert await db.write(put(3))

    run(main())
    assert [k for _, k in items(path)] == [1, 3]
    assert_log_equals_data(path, start)


def test_cancelling_a_write_waiting_for_admission_commits_nothing(tmp_path: Path) -> None:
    path, start = with_schema(tmp_path)

    async def main(release: threading.Event) -> None:
        async with aio.open(path, linger=0) as db:
            write = asyncio.ensure_future(db.write(put(9)))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            write.cancel()
            with pytest.raises(asyncio.CancelledError):
                await write
            assert time.monotonic() - started < 5  # at once, not when admitted
            release.set()
            # The abandoned write is admitted after the holder, then rolls back.
            w = await db.write(put(10))
            assert w.seq == 3

    with write_lock_held(path) as release:
        run(main(release))
    assert [k for _, k in items(path)] == [-1, 10]
    assert_log_equals_data(path, start)


def test_cancelling_a_write_mid_statement_interrupts_and_rolls_back(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            await db.write(put(1))

            def endless(tx: sss.WriteTx) -> None:
                tx.execute("INSERT INTO item(k) VALUES (2)")
                tx.execute("INSERT INTO item(k) " + COUNT_UP + "SELECT x FROM c")

            write = asyncio.ensure_future(db.write(endless))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            write.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await write
            assert time.monotonic() - started < 10
            assert not hasattr(info.value, "write")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(db.write(endless), 0.3)
            w = await db.write(put(3))  # usable at once
            assert w.seq == 3

    run(main())
    assert [k for _, k in items(path)] == [1, 3]
    assert_log_equals_data(path, start)


def test_fn_that_swallows_the_interrupt_still_commits_nothing(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)

            def stubborn(tx: sss.WriteTx) -> str:
                try:
                    tx.execute(FOREVER).fetchall()
                except sss.Error:
                    pass
                tx.execute("INSERT INTO item(k) VALUES (99)")
                time.sleep(0.2)  # Python work the cancellation cannot interrupt
                return "returned"

            write = asyncio.ensure_future(db.write(stubborn))
            await asyncio.sleep(0.3)
            write.cancel()
            with pytest.raises(asyncio.CancelledError):
                await write
            assert await db.position() == 1

    run(main())
    assert items(path) == []
    assert_log_equals_data(path, start)


def test_cancellation_during_commit_reports_the_committed_write(tmp_path: Path) -> None:
    """The task is cancelled while the write is between fn and COMMIT (a
    temporary trigger on the log insert signals that moment): the write
    commits, and the CancelledError carries its WriteResult."""
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            loop = asyncio.get_running_loop()
            committing = threading.Event()
            seen: list[asyncio.Task[Any]] = []

            def on_log() -> int:
                if seen:
                    loop.call_soon_threadsafe(seen[0].cancel)
                    committing.set()
                    time.sleep(0.3)  # the cancellation arrives while the write commits
                return 0

            def setup(tx: sss.WriteTx) -> None:
                con = tx.execute("SELECT 1").connection
                con.create_function("on_log", 0, on_log)
                tx.execute("CREATE TEMP TRIGGER signal AFTER INSERT ON main._sss_log "
                           "BEGIN SELECT on_log(); END")
                tx.execute("INSERT INTO item(k) VALUES (0)")

            await db.write(setup)
            caught: list[BaseException] = []

            async def writer() -> None:
                try:
                    await db.write(put(42), label="late")
                except asyncio.CancelledError as e:
                    caught.append(e)  # seen inside the task (Python 3.10's Task re-makes it outside)
                    raise

            task = asyncio.ensure_future(writer())
            seen.append(task)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert committing.is_set()
            write = caught[0].write  # type: ignore[attr-defined]
            assert isinstance(write, sss.WriteResult)
            assert (write.value, write.label, write.seq) == (42, "late", 3)
            assert await db.position() == 3

    run(main())
    assert [k for _, k in items(path)] == [0, 42]
    assert_log_equals_data(path, start)


def test_cancelling_a_long_read_interrupts_it(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            async with db.read() as r:
                q = asyncio.ensure_future(r.fetchall(FOREVER))
                await asyncio.sleep(0.2)
                q.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await q
                assert await r.fetchall("SELECT n FROM counter") == [(0,)]
            with pytest.raises(asyncio.TimeoutError):
                async def reading() -> None:
                    async with db.read() as r:
                        await r.fetchall(FOREVER)
                await asyncio.wait_for(reading(), 0.2)
            await db.write(put(1))
            async with db.read() as r:
                assert await r.fetchall("SELECT k FROM item") == [(1,)]

    run(main())


def test_reads_are_snapshots_and_run_in_parallel(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            await db.write(put(1))
            async with db.read() as r1:
                # Its COMMIT waits for r1's shared lock (rollback journal).
                write = asyncio.ensure_future(db.write(put(2)))
                await asyncio.sleep(0.3)
                assert await r1.fetchall("SELECT k FROM item") == [(1,)] and r1.seq == 2
            await write
            async with db.read() as r2:
                assert await r2.fetchall("SELECT k FROM item ORDER BY k") == [(1,), (2,)]
                assert r2.seq == 3

            async def reader() -> int:
                async with db.read() as r:
                    await asyncio.sleep(0.05)
                    return len(await r.fetchall("SELECT * FROM item"))

            n = 2 * aio.database.MAX_READERS  # more blocks than reader threads: some wait
            assert await asyncio.gather(*(reader() for _ in range(n))) == [2] * n

    run(main())


def test_wal_mode_reads_do_not_wait_for_writes(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path, "wal") as db:
            await db.migrate(SCHEMA)
            await db.write(put(1))
            async with db.read() as r1:
                await db.write(put(2))
                assert await r1.fetchall("SELECT k FROM item") == [(1,)]
            async with db.read() as r2:
                assert await r2.fetchall("SELECT count(*) FROM item") == [(2,)]

    run(main())


# -- undo, backups, replication --------------------------------------------------------------


def test_undo_backup_and_vacuum(tmp_path: Path) -> None:
    path, start = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            w = await db.write(put(5))
            u = await db.undo(w.seq)
            assert u.label == f"undo {w.seq}"
            steps: list[int] = []
            b = await db.backup(tmp_path / "backup.sqlite", progress=lambda rem, tot: steps.append(rem),
                                pages=1)
            assert steps and b.seq == 3
            await db.vacuum_into(tmp_path / "vacuum.sqlite")
            await db.copy_under_lock(tmp_path / "copy.sqlite")

    run(main())
    assert items(path) == []
    for name in ("backup", "vacuum", "copy"):
        con = sss.connect(tmp_path / f"{name}.sqlite")
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        con.close()
    assert_log_equals_data(path, start)


def test_replicate_and_follow(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)
    replica = str(tmp_path / "replica.sqlite")
    second = str(tmp_path / "second.sqlite")

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            await db.write(put(1))
            report = await aio.replicate(db, replica)
            assert report.applied == 2 and report.lag == 0
            async with aio.open(second) as rep:
                reports = []
                follower = aio.follow(db, rep, interval=0.05)
                async for r in follower:
                    reports.append(r)
                    if sum(x.applied for x in reports) >= 4:
                        break
                    await db.write(put(len(reports) + 1))
                await follower.aclose()
                async with rep.read() as r:
                    assert await r.fetchall("SELECT k FROM item ORDER BY id") == [(1,), (2,), (3,)]
            report = await aio.replicate(path, replica)
            assert report.applied == 2

    run(main())
    assert items(replica) == items(path)


def test_close_waits_for_reads_in_progress(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> None:
        db = await aio.open(path)
        await db.migrate(SCHEMA)
        read_done = asyncio.Event()

        async def reader() -> list[Any]:
            async with db.read() as r:
                await asyncio.sleep(0.3)
                rows = await r.fetchall("SELECT n FROM counter")
            read_done.set()
            return rows

        task = asyncio.ensure_future(reader())
        await asyncio.sleep(0.1)
        await db.close()
        assert read_done.is_set() and db.closed
        assert await task == [(0,)]

    run(main())


def test_an_unclosed_database_warns_when_collected_and_closes(tmp_path: Path) -> None:
    path, _ = fresh(tmp_path)

    async def main() -> threading.Thread:
        db = await aio.open(path)
        await db.migrate(SCHEMA)
        writer = db.sss_writer.thread
        with pytest.warns(ResourceWarning):
            del db
            gc.collect()
        return writer

    writer = run(main())
    writer.join(10)
    assert not writer.is_alive()


def test_open_errors_and_closed_use(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database" * 100)

    def sync_error(path: Path) -> type[BaseException]:
        try:
            sss.open(path).close()
        except Exception as e:
            return type(e)
        raise AssertionError(f"sss.open({path}) did not fail")

    async def main() -> None:
        for path in (tmp_path / "missing-dir" / "db.sqlite", bad):  # what sss.open raises
            with pytest.raises(sync_error(path)):
                await aio.open(path)
        db = await aio.open(tmp_path / "ok.sqlite")
        await db.close()
        await db.close()
        with pytest.raises(ValueError):
            async with db.read():
                pass

    run(main())


def test_log_equals_data_after_a_copy(tmp_path: Path) -> None:
    """The replay helper itself: a copy taken mid-way replays to the end."""
    path, _ = fresh(tmp_path)

    async def main() -> None:
        async with aio.open(path) as db:
            await db.migrate(SCHEMA)
            await db.write(put(1))
            await db.backup(tmp_path / "mid.sqlite")
            for k in range(2, 6):
                await db.write(put(k))

    run(main())
    shutil.copy(tmp_path / "mid.sqlite", tmp_path / "start2.sqlite")
    replayed, last = replay(path, str(tmp_path / "start2.sqlite"))
    assert last == 6 and replayed["item"] == items(path)
