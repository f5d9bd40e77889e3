"""The coordinated database as async calls: ``await sqlite_session_safe.aio.open(path)``.

A :class:`Database` wraps the synchronous ``sss.open`` Database.  Its writes
run on one writer :class:`~.worker.Worker` thread (``fn`` runs there,
inside the admitted write, so it is plain synchronous code); reads, backups
and the log run on a small pool of reader threads, each holding the
snapshot of one ``async with db.read()`` block.  Waiting for the outer lock
happens on the writer thread: the event loop never blocks on it.

Cancellation of ``await db.write(fn)``:

* before ``fn`` has returned (still queued, waiting for the lock, or
  running ``fn``): the write commits nothing.  A queued write is dropped; one
  waiting for admission is abandoned at once (it rolls back as soon as it is
  admitted, before ``fn`` runs); ``fn``'s running statement is interrupted
  and the task waits until the write has rolled back.  ``fn`` that catches
  the interruption and returns still commits nothing: the write raises once
  ``fn`` returns.
* once ``fn`` has returned, the write is committing: it is left to finish
  (shielded), then ``CancelledError`` propagates; if the write committed,
  the ``CancelledError`` carries its :class:`WriteResult` as ``.write``
  (``exc.write.seq``), as a synchronous write's exception does after a
  COMMIT that landed.  Catch it inside the cancelled task: on Python 3.10 a
  task hands a new ``CancelledError`` to those who await it.

``migrate``, ``undo`` and ``optimistic_write`` dropped while queued commit
nothing; once started they run to their end (shielded) and the
``CancelledError`` carries ``.write`` if they committed.  Reads and backups
are interrupted (a backup between two steps of ``pages`` pages).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from itertools import islice
from types import TracebackType
from typing import Any

from ...binding.errors import InterfaceError
from ...coordination.database import Database as SyncDatabase
from ...coordination.database import Mode, WriteResult, WriteTx, open_database
from ...coordination.database import ReadTx as SyncReadTx
from ...coordination.replication import ReplicationReport
from ...coordination.replication import follow as sync_follow
from ...coordination.replication import replicate as sync_replicate
from .connection import Cursor, close_job, execute_job
from .worker import CLOSED_MESSAGE, DEFAULT_SPIN, ClosedWorker, Job, Worker

__all__ = ["Database", "ReadTx", "open", "replicate", "follow", "MAX_READERS"]

#: Reader threads one Database keeps at most (each read block takes one for
#: its duration; more concurrent blocks wait for one to come back).
MAX_READERS = 8
_LOG_BATCH = 256
_names = iter(range(1, 1 << 62))

# Where a db.write(fn) is, for its cancellation.
_QUEUED, _ADMITTING, _IN_FN, _COMMITTING = 0, 1, 2, 3


class _WriteControl:
    """Shared by a write's job (on the writer thread) and its caller (on the
    event loop): the phase, and whether the caller was cancelled."""

    __slots__ = ("lock", "phase", "cancelled", "tx")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = _QUEUED
        self.cancelled = False
        self.tx: WriteTx | None = None

    def wrap(self, fn: Callable[[WriteTx], Any]) -> Callable[[WriteTx], Any]:
        def inside(tx: WriteTx) -> Any:
            with self.lock:
                if self.cancelled:
                    raise asyncio.CancelledError("the write was cancelled before it ran")
                self.phase = _IN_FN
                self.tx = tx
            try:
                value = fn(tx)
            finally:
                with self.lock:
                    self.tx = None
                    cancelled = self.cancelled
                    if not cancelled:
                        self.phase = _COMMITTING
            if cancelled:
                raise asyncio.CancelledError("the write was cancelled while fn ran")
            return value

        return inside

    def start(self) -> None:
        with self.lock:
            if self.phase == _QUEUED:
                self.phase = _ADMITTING

    def cancel(self) -> int:
        """Mark cancelled; interrupt fn's statement if fn runs.  Returns the phase."""
        with self.lock:
            if self.phase != _COMMITTING:
                self.cancelled = True
            if self.phase == _IN_FN and self.tx is not None:
                self.tx.interrupt()
            return self.phase


def _committed(write: WriteResult | None) -> bool:
    """Whether ``write`` committed (an empty write commits nothing and sets
    no epoch)."""
    return write is not None and write.epoch is not None


def _attach_write(exc: BaseException, job: Job) -> None:
    """Attach the committed WriteResult of ``job`` (its result, or the
    ``.write`` its exception carries) to the cancellation ``exc``."""
    write = job.value if job.ok else getattr(job.value, "write", None)
    if isinstance(write, WriteResult) and _committed(write):
        exc.write = write  # type: ignore[attr-defined]


class Database:
    """An ``sss.open`` database driven from asyncio; see the module docstring.
    Made by :func:`open` (``await aio.open(path)`` or ``async with``)."""

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "trusted", *,
                 spin: float = DEFAULT_SPIN, **options: Any) -> None:
        self._args = (path, mode, options)
        self._spin = spin
        n = next(_names)
        # The thread writes run on; also aio.replicate's, for a replica.
        self.sss_writer = Worker(f"sss-aio-db{n}-writer", spin)
        self._n = n
        #: The synchronous ``sss.Database`` (None until opened).
        self.sync: SyncDatabase | None = None
        self._closing = False
        self._pool_lock = threading.Lock()
        self._idle: list[Worker] = []
        self._readers: list[Worker] = []
        self._waiting: deque[asyncio.Future[Worker]] = deque()
        self._all_back: asyncio.Future[None] | None = None  # close() waits on it for the readers

    # -- lifetime -----------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Database]:
        return self._open().__await__()

    async def _open(self) -> Database:
        if self.sync is None:
            self.sss_writer.start()
            path, mode, options = self._args
            try:
                sync = await self.sss_writer.call(lambda: open_database(path, mode, **options))
            except BaseException:
                self.sss_writer.stop()
                raise
            self.sync = sync
            self.sss_writer.at_exit = sync.close
        return self

    async def __aenter__(self) -> Database:
        return await self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for the reads and writes in progress, then close every
        connection and end the threads.  Closing twice is fine."""
        if self._closing:
            return
        self._closing = True
        sync = self.sync
        loop = asyncio.get_running_loop()
        with self._pool_lock:  # reads in progress: wait until their threads are back
            if len(self._idle) < len(self._readers):
                self._all_back = loop.create_future()
        if self._all_back is not None:
            await asyncio.shield(self._all_back)
        with self._pool_lock:
            readers = list(self._readers)
        for reader in readers:
            reader.stop()
        done = loop.create_future()
        self.sss_writer.stop(None if sync is None else sync.close, done)
        await asyncio.shield(done)

    def __del__(self) -> None:
        sync = getattr(self, "sync", None)
        if sync is None or self._closing:
            return
        warnings.warn(f"{self!r} was deleted before being closed; use 'async with' or 'await "
                      "db.close()'", ResourceWarning, stacklevel=1)
        self._closing = True
        for reader in self._readers:
            reader.stop()
        self.sss_writer.stop(sync.close)

    @property
    def closed(self) -> bool:
        """True before the database is opened (awaited) and once :meth:`close`
        has started."""
        return self._closing or self.sync is None

    # sss_ members: for this face's reads, replication and opening (the
    # package's own, not the reference).

    def sss_check(self) -> SyncDatabase:
        """The open sync Database; ClosedWorker when not open (yet)."""
        sync = self.sync
        if sync is None or self._closing:
            raise ClosedWorker(CLOSED_MESSAGE if sync is not None else "database not opened (await it)")
        return sync

    @property
    def path(self) -> str:
        """The database file's path."""
        return self.sss_check().path

    @property
    def mode(self) -> str:
        """The coordination mode (``"trusted"``, ``"wal"`` or ``"network"``)."""
        return self.sss_check().mode

    @property
    def lingering(self) -> bool:
        """True while the write lock is kept as a lease (see ``sss.open``)."""
        return self.sss_check().lingering

    def __repr__(self) -> str:
        return f"<sqlite_session_safe.aio.Database {self._args[0]!r} {'closed' if self.closed else 'open'}>"

    # -- the pool of reader threads ------------------------------------------------

    async def sss_take_reader(self) -> Worker:
        """A reader thread of the pool (waits for one when all are busy)."""
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
            if len(self._readers) < MAX_READERS:
                worker = Worker(f"sss-aio-db{self._n}-reader{len(self._readers) + 1}", self._spin)
                self._readers.append(worker)
                worker.start()
                return worker
            fut: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
            self._waiting.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            with self._pool_lock:
                if fut in self._waiting:
                    self._waiting.remove(fut)
                    raise
            if fut.done() and not fut.cancelled():
                self.sss_give_back(fut.result())  # handed over just as we were cancelled
            raise

    def sss_give_back(self, worker: Worker) -> None:
        """Return a reader thread :meth:`sss_take_reader` gave."""
        with self._pool_lock:
            while self._waiting:
                fut = self._waiting.popleft()
                try:
                    fut.get_loop().call_soon_threadsafe(_hand_over, fut, worker, self)
                    return
                except RuntimeError:
                    continue  # that loop is gone
            self._idle.append(worker)
            all_back = self._all_back
            if all_back is not None and len(self._idle) == len(self._readers):
                all_back.get_loop().call_soon_threadsafe(_resolve, all_back)

    async def _on_reader(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.sss_check()
        worker = await self.sss_take_reader()
        try:
            return await worker.call(fn, *args)
        finally:
            self.sss_give_back(worker)

    # -- writes --------------------------------------------------------------------

    async def write(self, fn: Callable[[WriteTx], Any], label: str | None = None) -> WriteResult:
        """One admitted write: ``fn(tx)`` runs on the writer thread inside it
        (synchronous code: ``tx.execute(...)``); returns the
        :class:`WriteResult` (changeset, ``seq``).  Cancellation: see the
        module docstring."""
        sync = self.sss_check()
        if not callable(fn):
            raise InterfaceError(f"fn must be callable, not {type(fn).__qualname__}")
        if inspect.iscoroutinefunction(fn):
            raise InterfaceError("fn runs on the writer thread inside the write: it must be a plain "
                                 "function (tx.execute(...)), not a coroutine function")
        ctl = _WriteControl()
        inside = ctl.wrap(fn)

        def run() -> WriteResult:
            ctl.start()
            return sync.write(inside, label=label)  # type: ignore[no-any-return]

        return await self._admitted(run, ctl)  # type: ignore[no-any-return]

    async def _admitted(self, run: Callable[[], Any], ctl: _WriteControl | None) -> Any:
        """Run a write-like job on the writer thread, with the cancellation
        rules of the module docstring (``ctl`` None: not interruptible)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        job = self.sss_writer.submit(run, future=fut)
        try:
            return await fut
        except asyncio.CancelledError as exc:
            if fut.done() and not fut.cancelled():
                raise  # run() itself raised CancelledError
            if self.sss_writer.cancel_queued(job):
                raise  # never started: nothing committed
            phase = _COMMITTING if ctl is None else ctl.cancel()
            if phase in (_QUEUED, _ADMITTING):
                raise  # rolls back as soon as it is admitted, before fn runs
            if phase == _IN_FN and ctl is not None:
                job.interrupt = ctl.cancel  # again and again while fn runs
            await self.sss_writer.wait_ended(job)
            _attach_write(exc, job)
            raise

    async def migrate(self, sql: str, label: str | None = None) -> WriteResult:
        """A schema change, logged as one ``"ddl"`` entry (``Database.migrate``)."""
        sync = self.sss_check()
        return await self._admitted(lambda: sync.migrate(sql, label=label), None)  # type: ignore[no-any-return]

    async def undo(self, seq: int, *, on_conflict: Any = None, label: str | None = None) -> WriteResult:
        """Apply the inverse of log entry ``seq`` as a new write (``Database.undo``)."""
        sync = self.sss_check()
        return await self._admitted(  # type: ignore[no-any-return]
            lambda: sync.undo(seq, on_conflict=on_conflict, label=label), None)

    async def optimistic_write(self, compute: Callable[..., Any], label: str | None = None,
                               **options: Any) -> WriteResult:
        """``Database.optimistic_write`` on the writer thread (compute and
        apply are synchronous code)."""
        sync = self.sss_check()
        return await self._admitted(  # type: ignore[no-any-return]
            lambda: sync.optimistic_write(compute, label, **options), None)

    async def copy_under_lock(self, dest: str | os.PathLike[str]) -> Any:
        """``Database.copy_under_lock``: a byte copy taken under the write lock."""
        sync = self.sss_check()
        return await self._admitted(lambda: sync.copy_under_lock(dest), None)

    async def release_lease(self) -> None:
        """Give the write lock up now if a lease keeps it."""
        await self.sss_writer.call(self.sss_check().release_lease)

    # -- reads ---------------------------------------------------------------------

    def read(self) -> ReadTx:
        """``async with db.read() as r:`` -- a consistent snapshot on a reader
        thread; ``await r.execute(...)`` returns an async cursor."""
        return ReadTx(self)

    async def log(self, since: int = 0) -> AsyncIterator[Any]:
        """``async for entry in db.log(since)``: the audit log entries after
        ``since``, a batch per hop."""
        entries = self.sss_check().log(since)
        while True:
            batch = await self._on_reader(_take, entries, _LOG_BATCH)
            for entry in batch:
                yield entry
            if len(batch) < _LOG_BATCH:
                return

    async def position(self) -> int:
        """The current audit log position."""
        return await self._on_reader(self.sss_check().position)  # type: ignore[no-any-return]

    async def capabilities(self) -> dict[str, Any]:
        """``Database.capabilities()`` on a reader thread."""
        return await self._on_reader(self.sss_check().capabilities)  # type: ignore[no-any-return]

    async def tables_without_primary_key(self) -> list[str]:
        """``Database.tables_without_primary_key()`` on a reader thread."""
        return await self._on_reader(self.sss_check().tables_without_primary_key)  # type: ignore[no-any-return]

    async def backup(self, dest: str | os.PathLike[str],
                     progress: Callable[[int, int], object] | None = None, pages: int = -1) -> Any:
        """``Database.backup`` (online backup API, checked) on a reader
        thread.  Cancellation stops it between two steps of ``pages`` pages
        (all at once by default: then it finishes first); ``dest`` is only
        ever replaced by a complete, checked copy."""
        sync = self.sss_check()
        stop = threading.Event()

        def step(remaining: int, total: int) -> None:
            if stop.is_set():
                raise asyncio.CancelledError("backup cancelled")
            if progress is not None:
                progress(remaining, total)

        worker = await self.sss_take_reader()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        job = worker.submit(sync.backup, dest, step, pages, future=fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                raise
            stop.set()
            if not worker.cancel_queued(job):
                await worker.wait_ended(job, interrupt=False)
            raise
        finally:
            self.sss_give_back(worker)

    async def vacuum_into(self, dest: str | os.PathLike[str]) -> Any:
        """``Database.vacuum_into``: a compacted, checked copy."""
        return await self._on_reader(self.sss_check().vacuum_into, dest)

    async def export(self, path: str | os.PathLike[str], since: int = 0) -> Any:
        """``Database.export``: the log entries after ``since`` as a bundle."""
        return await self._on_reader(self.sss_check().export, path, since)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _hand_over(fut: asyncio.Future[Worker], worker: Worker, db: Database) -> None:
    if fut.cancelled():
        db.sss_give_back(worker)
    else:
        fut.set_result(worker)


def _take(iterator: Any, n: int) -> list[Any]:
    return list(islice(iterator, n))


class ReadTx:
    """``async with db.read() as r:`` -- the synchronous ``ReadTx`` held on
    one reader thread for the block; every statement of the block sees the
    same snapshot (``r.seq`` is its log position)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._worker: Worker | None = None
        #: The synchronous ReadTx (None outside the block).
        self.sync: SyncReadTx | None = None
        self.seq = 0
        self.sss_iter_chunk_size = 64

    async def __aenter__(self) -> ReadTx:
        sync_db = self._db.sss_check()
        worker = await self._db.sss_take_reader()
        try:
            sync = sync_db.read()
            job, cancelled = await _to_end(worker, sync.__enter__)
            if cancelled:
                if job.ok:  # entered after all: leave again before giving the thread back
                    await _to_end(worker, sync.__exit__, None, None, None)
                raise asyncio.CancelledError()
            if not job.ok:
                raise job.value
        except BaseException:
            self._db.sss_give_back(worker)
            raise
        self._worker = worker
        self.sync = sync
        self.seq = sync.seq
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        worker, sync = self._worker, self.sync
        self._worker = self.sync = None
        if worker is None or sync is None:
            return
        try:
            job, cancelled = await _to_end(worker, sync.__exit__, exc_type, exc, tb)
        finally:
            self._db.sss_give_back(worker)
        if not job.ok:
            raise job.value
        if cancelled:
            raise asyncio.CancelledError()

    def sss_alive(self) -> bool:
        return self.sync is not None

    def sss_track(self, cursor: Cursor) -> None:
        """Cursors of a read end with it: nothing to track."""

    async def sss_call(self, fn: Callable[..., Any], *args: Any,
                    discard: Callable[[Any], object] | None = None) -> Any:
        worker, sync = self._worker, self.sync
        if worker is None or sync is None:
            raise InterfaceError("this read is not active (use r only inside its block)")
        return await worker.call(fn, *args, interrupt=sync.interrupt, discard=discard)

    async def execute(self, sql: str, params: Any = None) -> Cursor:
        """Run one read-only statement in the snapshot; an async cursor that
        holds the first rows already."""
        cur, rows = await self.sss_call(execute_job, self.sync, sql, params, discard=close_job)
        return Cursor(self, cur, rows)

    async def fetchall(self, sql: str, params: Any = None) -> list[Any]:
        """All rows of ``sql`` (one hop)."""
        return await self.sss_call(_fetchall, self.sync, sql, params)  # type: ignore[no-any-return]

    async def fetchone(self, sql: str, params: Any = None) -> Any:
        """The first row of ``sql`` or None (one hop)."""
        cur = await self.execute(sql, params)
        row = await cur.fetchone()
        await cur.close()
        return row


async def _to_end(worker: Worker, fn: Callable[..., Any], *args: Any) -> tuple[Job, bool]:
    """``fn(*args)`` on ``worker``, waited for to its end even if the caller
    is cancelled meanwhile (entering or leaving a read must not be cut
    short: the thread's snapshot would be left behind).  Returns the job
    (its outcome) and whether a cancellation came meanwhile."""
    job = worker.submit(fn, *args, loop=asyncio.get_running_loop())
    cancelled = await worker.wait_ended(job, interrupt=False)
    return job, cancelled


def _fetchall(sync: Any, sql: str, params: Any) -> list[Any]:
    return sync.fetchall(sql, params)  # type: ignore[no-any-return]


class _Opening:
    """What :func:`open` returns: await it, or ``async with``."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    def __await__(self) -> Generator[Any, None, Database]:
        return self._db.__await__()

    async def __aenter__(self) -> Database:
        return await self._db

    async def __aexit__(self, *exc: object) -> None:
        await self._db.close()


def open(path: str | os.PathLike[str], mode: Mode = "trusted", *, spin: float = DEFAULT_SPIN,
         **options: Any) -> _Opening:
    """``db = await aio.open(path, mode, **options)`` or ``async with
    aio.open(...) as db``: the coordinated database (``sss.open`` with the
    same arguments), opened on its writer thread."""
    return _Opening(Database(path, mode, spin=spin, **options))


def _sync_side(x: Any) -> Any:
    return x.sss_check() if isinstance(x, Database) else x


async def replicate(source: Any, replica: Any, **options: Any) -> ReplicationReport:
    """``sss.replicate(source, replica, **options)`` off the event loop:
    sources and replicas may be async Databases, sync Databases or paths.
    With an async replica it runs on that replica's writer thread, in order
    with its writes.  Cancellation lets the round in progress finish in the
    background (replication is exactly once and resumable) and raises at once."""
    src, rep = _sync_side(source), _sync_side(replica)
    if isinstance(replica, Database):
        worker, owned = replica.sss_writer, False
    else:
        worker, owned = Worker(f"sss-aio-replicate{next(_names)}"), True
        worker.start()
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[ReplicationReport] = loop.create_future()
    worker.submit(lambda: sync_replicate(src, rep, **options), future=fut)
    try:
        return await fut
    finally:
        if owned:
            worker.stop()


async def follow(source: Any, replica: Any, *, interval: float = 0.5, **options: Any
                 ) -> AsyncIterator[ReplicationReport]:
    """``async for report in aio.follow(source, replica):`` -- replicate
    continuously (``sss.follow`` on its own thread) and yield the
    :class:`ReplicationReport` of every round that applied entries.  Leaving
    the loop (``break``, cancellation) stops it after the round in progress;
    an error other than a busy source or replica ends it and is raised here."""
    src, rep = _sync_side(source), _sync_side(replica)
    loop = asyncio.get_running_loop()
    reports: asyncio.Queue[ReplicationReport] = asyncio.Queue()
    stop = threading.Event()

    def on_report(report: ReplicationReport) -> None:
        loop.call_soon_threadsafe(reports.put_nowait, report)

    worker = Worker(f"sss-aio-follow{next(_names)}")
    worker.start()
    ended: asyncio.Future[ReplicationReport] = loop.create_future()
    job = worker.submit(lambda: sync_follow(src, rep, interval=interval, stop=stop,
                                            on_report=on_report, **options), future=ended)
    try:
        while True:
            if not reports.empty():
                yield reports.get_nowait()
                continue
            getter = asyncio.ensure_future(reports.get())
            try:
                await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                yield getter.result()
            elif ended.done():
                while not reports.empty():
                    yield reports.get_nowait()
                ended.result()  # raises what ended it
                return
    finally:
        stop.set()
        if not ended.done():
            await worker.wait_ended(job, interrupt=False)
        if ended.done() and not ended.cancelled():
            ended.exception()  # retrieved: raised above if the loop was still iterating
        worker.stop()

