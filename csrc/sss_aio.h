/*
 * sss_aio.h - what the async face (sqlite_session_safe.aio) needs in C.
 *
 * 1. A hand-off between an event loop thread and a connection's worker
 *    thread that needs no wake-up (no futex) when both are busy.  Waking a sleeping
 *    thread (a futex, the event loop's self-pipe) costs several microseconds
 *    each way, about as much as the SQL of a point query or a one-row INSERT,
 *    and it is what makes a call through aiosqlite cost ~30 us.  Here the
 *    worker, after a job, waits a little for the next one spinning on a
 *    counter, and the caller of a short call waits a little for its result
 *    spinning on a flag -- both with the GIL released (cffi releases it
 *    around every call), so the other thread can run Python meanwhile.  Each
 *    wait is bounded; past it the worker parks on a lock and the caller
 *    awaits a future like any asyncio code.
 *
 * 2. A busy handler that gives up as soon as the connection is interrupted:
 *    SQLite's own (sqlite3_busy_timeout) sleeps out the whole timeout even
 *    after sqlite3_interrupt(), so a cancelled statement that waits for
 *    another connection's lock would not stop "at once".
 */
#ifndef SSS_AIO_H
#define SSS_AIO_H

#include "sqlite3.h"

/* cdef-begin */

/* Shared by the submitters and the worker of one connection; zeroed memory
 * is the initial state.  Fields are read and written atomically only. */
typedef struct sss_handoff {
    long long posted; /* jobs announced so far (each after it was queued) */
    int parked;       /* 1 while the worker sleeps, or is about to, on its wake lock */
    int spin;         /* the job one submitter spins for: 0 none, 1 pending, 2 done, 3 given up */
} sss_handoff;

/* Submitter: announce a queued job.  Returns 1 when the worker was parked
 * and this call took the duty to wake it (release its wake lock), else 0. */
int sss_handoff_post(sss_handoff *h);

/* Submitter: become the one submitter that spins for its job's result
 * (1), or not (0: another one does; await a future instead). */
int sss_handoff_claim(sss_handoff *h);

/* Submitter that claimed: announce the job and spin up to spin_ns for it.
 * Returns 1: done (the result is in place, the claim released); 0: not done
 * in time (the worker delivers it through the event loop instead; the claim
 * passes to the worker); 2: the worker was parked: wake it, then call
 * sss_handoff_wait(). */
int sss_handoff_post_wait(sss_handoff *h, long long spin_ns);

/* Submitter that claimed and posted: spin up to spin_ns; returns as
 * sss_handoff_post_wait() does (never 2). */
int sss_handoff_wait(sss_handoff *h, long long spin_ns);

/* Worker: wait for posted != seen, spinning up to spin_ns.  Returns the new
 * count, or -1: park (acquire the wake lock; a submitter releases it). */
long long sss_handoff_idle(sss_handoff *h, long long seen, long long spin_ns);

/* Worker: the job a submitter spins for is done.  Returns 1 if that
 * submitter takes the result, 0 if it gave up (deliver it through the loop). */
int sss_handoff_done(sss_handoff *h);

/* Worker: sss_handoff_done() then, if the submitter took the result,
 * sss_handoff_idle(): one call, so that the submitter, which resumes as soon
 * as it sees the result, never waits for the GIL this thread still holds.
 * Returns -2 if the submitter gave up, else as sss_handoff_idle(). */
long long sss_handoff_done_idle(sss_handoff *h, long long seen, long long spin_ns);

/* The number of jobs announced so far. */
long long sss_handoff_posted(sss_handoff *h);

/* Busy handler state: keep it alive and in place while installed. */
typedef struct sss_busy {
    sqlite3 *db;
    int timeout_ms; /* give up after this long, as sqlite3_busy_timeout() does */
} sss_busy;

/* Installs the interruptible busy handler on db (replacing the busy
 * timeout).  It waits like SQLite's own (1, 2, 5, 10 ... 100 ms apart, up to
 * timeout_ms in all) but in slices of at most 2 ms, and gives up (SQLITE_BUSY)
 * as soon as sqlite3_is_interrupted(db).  Returns a SQLite result code. */
int sss_busy_install(sss_busy *busy, sqlite3 *db, int timeout_ms);

/* cdef-end */

#endif
