"""The thread behind an async connection or database, and how a call crosses
to it and back.

A :class:`Worker` is one daemon thread running jobs in the order they were
posted.  A coroutine hands it a :class:`Job` with :meth:`Worker.post` and,
unless the job completed at once, awaits :meth:`Worker.finish`
(:meth:`Worker.call` does both):

* **Fast path.**  When the worker has nothing else to do, the caller posts
  the job and waits for its result for up to ``spin`` seconds (50 us by
  default) without giving the event loop back, spinning on a flag in C with
  the GIL released (``csrc/sss_aio.c``); the worker, after each job, spins
  the same way for the next one before it parks.  A short statement (a point
  query, a one-row INSERT) then needs no wake-up at all: no futex, no
  self-pipe write, no event loop iteration.  (A spinning thread yields its
  CPU every few turns, for when the other one waits on the same core.)  The event loop is
  held for at most ``spin`` per call.  A call that does not finish within it
  (a long query, a statement waiting for a lock) continues on the slow path,
  and the next calls skip the fast path for a while (doubling up to 256
  calls), so slow workloads do not pay for spinning.  Calls that complete
  this way do not suspend the task, so one of them takes the slow path
  whenever the loop has not had its turn for a millisecond: other tasks,
  timers and timeouts keep running.
* **Slow path.**  The caller awaits an :class:`asyncio.Future` that the
  worker resolves with ``loop.call_soon_threadsafe``: no polling.

Cancellation (``task.cancel()``, ``asyncio.timeout``): a job still queued
is skipped; a running one is interrupted with its ``interrupt`` callable
(``sqlite3_interrupt``) -- again every few milliseconds until it ends, since
SQLite drops an interrupt that arrives between two statements -- and the
caller waits for it to end before ``CancelledError`` propagates, so the
connection is idle and usable afterwards.  A result nobody will read goes to
the job's ``discard`` callable on the worker (an open cursor is closed).

No worker keeps the interpreter from exiting: the threads are daemons, and
at exit every worker still running is interrupted and asked to close its
connection (bounded wait), so an open transaction is rolled back cleanly.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ...binding import capi

__all__ = ["Worker", "Job", "DEFAULT_SPIN", "CLOSED_MESSAGE", "ClosedWorker"]

#: Seconds a caller waits for a result before yielding to the event loop,
#: and a worker waits for its next job before parking.
DEFAULT_SPIN = 50e-6
#: aiosqlite's message (SQLAlchemy's dialect recognises it as a disconnect).
CLOSED_MESSAGE = "Connection closed"
#: Longest pause between two interrupts of a cancelled job.
_REINTERRUPT_MAX = 0.05
#: At interpreter exit, how long to wait in all for workers to close.
_EXIT_WAIT = 2.0
#: Fast-path misses in a row make the next calls skip it, up to this many.
_MAX_SKIP = 256
#: A call that completed on the fast path after spinning longer than this
#: part of ``spin`` counts as a miss.
_SLOW_HIT = 0.4
#: Calls that complete on the fast path let the event loop run at least
#: this often (seconds), so other tasks, timers and timeouts are served.
_YIELD_EVERY = 0.001
_clock = time.perf_counter
_NO_LOOP = ("sqlite_session_safe.aio needs a running asyncio event loop (anyio works on its asyncio "
            "backend; trio is not supported)")

_QUEUED, _RUNNING, _DONE = 0, 1, 2
_STOPPED = -3
_post = capi.handoff_post
_post_wait = capi.handoff_post_wait
_wait = capi.handoff_wait
_claim = capi.handoff_claim
_idle = capi.handoff_idle
_done = capi.handoff_done
_done_idle = capi.handoff_done_idle
_posted = capi.handoff_posted


class ClosedWorker(ValueError):
    """A call on a connection (or database) after ``close()``: aiosqlite
    raises ``ValueError("Connection closed")`` there, and so does this."""


class Job:
    """One call: ``fn(*args)`` on the worker, its outcome, and how it reaches
    the caller.  Defaults live on the class: making a job (once per call)
    sets two attributes."""

    loop: asyncio.AbstractEventLoop | None = None
    fut: asyncio.Future[Any] | None = None
    #: A caller spins for this job (the fast path).
    spun = False
    ok = False
    value: Any = None
    state = 0  # _QUEUED
    cancelled = False
    #: Resolved when the job has ended (made only for a cancelled caller).
    waiter: asyncio.Future[None] | None = None
    #: Stops the job while it runs (called from the event loop's thread).
    interrupt: Callable[[], object] | None = None
    #: Called on the worker with a result whose caller was cancelled.
    discard: Callable[[Any], object] | None = None

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def outcome(self) -> Any:
        """The job's result, or raise its exception."""
        if self.ok:
            return self.value
        raise self.value


def _deliver(job: Job) -> None:
    """On the caller's event loop: hand the job's outcome to whoever waits."""
    fut = job.fut
    if fut is not None and not fut.done():
        if job.ok:
            fut.set_result(job.value)
        else:
            fut.set_exception(job.value)
    waiter = job.waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Worker:
    """A daemon thread that runs jobs one at a time, in order."""

    def __init__(self, name: str, spin: float = DEFAULT_SPIN) -> None:
        if isinstance(spin, bool) or not isinstance(spin, (int, float)) or not 0 <= spin <= 0.01:
            raise ValueError(f"spin must be seconds between 0 and 0.01, not {spin!r}")
        self._spin_ns = int(spin * 1e9)
        self._slow_hit = spin * _SLOW_HIT
        self._h = capi.new_handoff()
        self._jobs: deque[Job] = deque()
        # Held while the worker is parked; a submitter that finds it parked
        # releases it (a binary semaphore; sss_aio.c decides who releases).
        self._wake = threading.Lock()
        self._wake.acquire()
        # Orders "which job runs" against interrupts from other threads, so an
        # interrupt meant for one job never lands on the next.
        self._state = threading.Lock()
        self._current: Job | None = None
        self._skip = 0
        self._backoff = 0
        self._yielded = 0.0  # when a call of this worker last gave the loop its turn
        self.stopping = False
        #: Called on the worker when the interpreter exits while it still runs
        #: (the owner closes its connection there); and how to interrupt it.
        self.at_exit: Callable[[], object] | None = None
        self.interrupt_at_exit: Callable[[], object] | None = None
        #: Run on the worker after a job interrupted for a cancellation has
        #: ended (to clear what the interrupt may have left pending).  It must
        #: not hold the worker's owner (which must stay collectable).
        self.after_interrupt: Callable[[], object] | None = None
        #: Objects that must live as long as the thread (C memory SQLite
        #: points to until the worker has closed its connection).
        self.keep: list[Any] = []
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- the caller's side ---------------------------------------------------

    def start(self) -> None:
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()
            _LIVE.add(self)

    @property
    def idle(self) -> bool:
        """No job queued or running."""
        return not self._jobs and self._current is None

    def submit(self, fn: Callable[..., Any], *args: Any,
               future: asyncio.Future[Any] | None = None,
               loop: asyncio.AbstractEventLoop | None = None) -> Job:
        """Queue ``fn(*args)`` without waiting for it; with ``future``, its
        outcome is set there (on the future's loop); with ``loop``, the end
        of the job is reported there (for :meth:`wait_ended`)."""
        if self.stopping and type(fn) is not _Stop:
            raise ClosedWorker(CLOSED_MESSAGE)
        job = Job(fn, args)
        if future is not None:
            job.fut = future
            job.loop = future.get_loop()
        elif loop is not None:
            job.loop = loop
        self._jobs.append(job)
        if _post(self._h):
            self._wake.release()
        return job

    def post(self, job: Job) -> bool:
        """Hand ``job`` to the worker from a coroutine.  True: it completed
        on the fast path (``job.outcome()``; ``job.fut`` stays None); False:
        ``await finish(job)``.

        The fast path is taken when the worker has nothing else to do, no
        recent call missed it, and the loop had its turn within the last
        millisecond (otherwise this call takes the slow path, which yields)."""
        try:
            loop = job.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(_NO_LOOP) from None
        if self.stopping:
            raise ClosedWorker(CLOSED_MESSAGE)
        jobs = self._jobs
        h = self._h
        if self._skip:
            self._skip -= 1
        elif (self._spin_ns and not jobs and self._current is None
              and _clock() - self._yielded < _YIELD_EVERY and _claim(h)):
            job.spun = True
            jobs.append(job)
            started = _clock()
            got = _post_wait(h, self._spin_ns)
            if got == 2:  # the worker was parked
                self._wake.release()
                got = _wait(h, self._spin_ns)
            if got:
                if _clock() - started < self._slow_hit:
                    self._backoff = 0
                else:
                    # Done, but only after a long spin: the statement is not
                    # short, or the machine has more runnable threads than
                    # cores (the worker waited for one).  Either way spinning
                    # costs more than it saves: skip it for a while.
                    self._backoff = self._skip = min(2 * self._backoff or 1, _MAX_SKIP)
                return True
            # Too slow for the fast path: the worker delivers through the loop.
            self._backoff = self._skip = min(2 * self._backoff or 1, _MAX_SKIP)
            job.fut = loop.create_future()
            return False
        job.fut = loop.create_future()
        jobs.append(job)
        if _post(h):
            self._wake.release()
        return False

    async def finish(self, job: Job) -> Any:
        """The slow path of a posted job: await its outcome.  Cancelled
        meanwhile, the job is skipped or interrupted (see :meth:`cancelled`)."""
        fut = job.fut
        assert fut is not None
        try:
            value = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and not job.ok:
                raise  # the job itself raised CancelledError
            await self.cancelled(job)
            raise
        finally:
            self._yielded = _clock()
        return value

    async def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        interrupt: Callable[[], object] | None = None,
        discard: Callable[[Any], object] | None = None,
    ) -> Any:
        """``fn(*args)`` on the worker; its result, or its exception."""
        job = Job(fn, args)
        job.interrupt = interrupt
        job.discard = discard
        if self.post(job):
            return job.outcome()
        return await self.finish(job)

    async def cancelled(self, job: Job) -> None:
        """The caller of ``job`` was cancelled: skip the job if it has not
        started, else interrupt it and wait (through further cancellations)
        until it has ended."""
        with self._state:
            job.cancelled = True
            if job.state == _QUEUED:
                return  # the worker will skip it
        if job.state != _DONE:
            await self.wait_ended(job)
            if job.interrupt is not None and self.after_interrupt is not None and not self.stopping:
                self.submit(self.after_interrupt)
        if job.ok and job.discard is not None and not self.stopping:
            self.submit(job.discard, job.value)

    async def wait_ended(self, job: Job, interrupt: bool = True) -> bool:
        """Wait until ``job`` has ended (its outcome is then in ``job.ok`` /
        ``job.value``), re-interrupting it while it runs when ``interrupt``.
        A cancellation of the waiting task meanwhile is held back until then;
        returns whether one came.  ``job`` must deliver to this event loop."""
        if job.state == _DONE:
            return False
        loop = asyncio.get_running_loop()
        # Resolved by _deliver, which the worker schedules on job.loop (this
        # loop) once the job has ended.
        waiter = job.waiter = loop.create_future()
        delay = 0.001
        handle: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal delay, handle
            self.interrupt_job(job)
            delay = min(delay * 2, _REINTERRUPT_MAX)
            handle = loop.call_later(delay, tick)

        if interrupt and job.interrupt is not None:
            tick()
        cancelled = False
        try:
            while not waiter.done():
                try:
                    await asyncio.shield(waiter)
                except asyncio.CancelledError:
                    cancelled = True
        finally:
            if handle is not None:
                handle.cancel()
        return cancelled

    def cancel_queued(self, job: Job) -> bool:
        """Drop ``job`` if it has not started (True); False if it has."""
        with self._state:
            if job.state == _QUEUED:
                job.cancelled = True
                return True
            return False

    def interrupt_job(self, job: Job) -> None:
        """Interrupt ``job`` if (and only while) it is the one running."""
        with self._state:
            if self._current is job and job.interrupt is not None:
                try:
                    job.interrupt()
                except Exception:
                    pass  # closed meanwhile: nothing runs any more

    def is_running(self, job: Job) -> bool:
        return self._current is job

    def stop(self, last: Callable[[], Any] | None = None,
             future: asyncio.Future[Any] | None = None) -> Job:
        """Run ``last()`` after the queued jobs, then end the thread; later
        submissions fail with :class:`ClosedWorker`."""
        self.stopping = True
        job = self.submit(_Stop(last), future=future)
        if not self.thread.is_alive() and self.thread.ident is None:
            self.start()  # never started: run last() and end
        return job

    # -- the worker's side ---------------------------------------------------

    def _run(self) -> None:
        h = self._h
        jobs = self._jobs
        spin = self._spin_ns
        seen = _posted(h)
        while True:
            while jobs:
                # One job per call: its frame, and with it every reference to
                # the job, is gone when the worker parks (a job may hold the
                # object that owns this worker, which must stay collectable).
                got = self._one(jobs.popleft(), seen)
                if got == _STOPPED:
                    return
                if got is not None:
                    if got == -1:
                        self._wake.acquire()
                        got = _posted(h)
                    seen = got
            # While callers skip the fast path, the next job comes through the
            # event loop, later than a spin would wait: park at once.
            got = _idle(h, seen, 0 if self._skip else spin)
            if got == -1:
                self._wake.acquire()
                got = _posted(h)
            seen = got

    def _one(self, job: Job, seen: int) -> int | None:
        """Run one job and hand its outcome over.  Returns what
        sss_handoff_idle() returned when it waited for the next job (-1:
        park), _STOPPED after the stop job, else None."""
        state = self._state
        state.acquire()
        skip = job.cancelled
        if skip:
            job.state = _DONE
        else:
            job.state = _RUNNING
            self._current = job
        state.release()
        if skip:
            self._answer(job, ClosedWorker("cancelled"), False)
            return None
        fn = job.fn
        stop = type(fn) is _Stop
        try:
            job.value = fn(*job.args)
            job.ok = True
        except BaseException as e:  # noqa: B036 -- every outcome goes to the caller
            job.value = e
            job.ok = False
        del fn
        job.fn = job.args = None  # type: ignore[assignment]
        state.acquire()
        self._current = None
        job.state = _DONE
        state.release()
        if job.spun:
            h = self._h
            if self._jobs:
                if not _done(h):
                    self._send(job)
                return None
            got: int = _done_idle(h, seen, self._spin_ns)
            if got == -2:
                self._send(job)
                return None
            return got
        if job.loop is not None:
            self._send(job)
        if stop:
            self._drain()
            return _STOPPED
        return None

    def _answer(self, job: Job, value: Any, ok: bool) -> None:
        job.value = value
        job.ok = ok
        if job.spun:
            if not _done(self._h):
                self._send(job)
        elif job.loop is not None:
            self._send(job)

    @staticmethod
    def _send(job: Job) -> None:
        loop = job.loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(_deliver, job)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _drain(self) -> None:
        """After the stop job: fail whatever was queued meanwhile."""
        _LIVE.discard(self)
        while self._jobs:
            job = self._jobs.popleft()
            job.state = _DONE
            self._answer(job, ClosedWorker(CLOSED_MESSAGE), False)


class _Stop:
    """The stop job: runs ``last()``; the worker ends after it."""

    __slots__ = ("last",)

    def __init__(self, last: Callable[[], Any] | None) -> None:
        self.last = last

    def __call__(self) -> Any:
        return None if self.last is None else self.last()


_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    """Interpreter exit: ask every worker still running to close its
    connection (rolling back what is open), interrupting what runs; wait a
    bounded time in all.  The threads are daemons: one that does not finish
    in time is simply left behind, as the interpreter exits anyway."""
    workers = [w for w in list(_LIVE) if w.thread.is_alive() and not w.stopping]
    for w in workers:
        if w.interrupt_at_exit is not None and not w.idle:
            try:
                w.interrupt_at_exit()
            except Exception:
                pass
        w.stop(w.at_exit)
    deadline = time.monotonic() + _EXIT_WAIT
    for w in workers:
        w.thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_close_all_at_exit)


def _forked() -> None:
    """In a forked child the workers' threads do not exist: refuse calls
    (ClosedWorker) instead of queueing jobs nobody would run."""
    for w in list(_LIVE):
        w.stopping = True
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
