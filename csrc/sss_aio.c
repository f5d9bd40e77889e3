/*
 * sss_aio.c - the async face's hand-off and interruptible busy handler; see
 * sss_aio.h for why they are in C.
 *
 * Memory ordering: every access is sequentially consistent.  The park
 * protocol is Dekker's: the worker stores parked = 1 then loads posted, a
 * submitter adds to posted then loads parked, so at least one of them sees
 * the other's store, and a compare-and-swap on parked decides which one
 * accounts for the wake-up (exactly one release of the wake lock per park).
 * The Python objects a job carries are written with the GIL held, and the
 * GIL's own release/acquire orders them before the flags that publish them.
 */
#include "sss_aio.h"

#if defined(_MSC_VER) && !defined(__clang__)
#include <windows.h>
#define LOAD64(p) InterlockedCompareExchange64((volatile LONG64 *)(p), 0, 0)
#define ADD64(p, v) (InterlockedExchangeAdd64((volatile LONG64 *)(p), (v)) + (v))
#define LOAD32(p) InterlockedCompareExchange((volatile LONG *)(p), 0, 0)
#define STORE32(p, v) ((void)InterlockedExchange((volatile LONG *)(p), (v)))
#define CAS32(p, e, d) (InterlockedCompareExchange((volatile LONG *)(p), (d), (e)) == (e))
#define RELAX() YieldProcessor()
#define YIELD_CPU() ((void)SwitchToThread())
#else
#define LOAD64(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ADD64(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define LOAD32(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE32(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
static int cas32(int *p, int expected, int desired)
{
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
#define CAS32(p, e, d) cas32((p), (e), (d))
#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define RELAX() __asm__ __volatile__("yield")
#else
#define RELAX() ((void)0)
#endif
#include <sched.h>
#include <time.h>
#define YIELD_CPU() ((void)sched_yield())
#endif

enum { SPIN_NONE = 0, SPIN_PENDING = 1, SPIN_DONE = 2, SPIN_GIVEN_UP = 3 };

static long long now_ns(void)
{
#if defined(_WIN32)
    static LARGE_INTEGER freq;
    LARGE_INTEGER t;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (long long)((double)t.QuadPart * 1e9 / (double)freq.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#endif
}

/* One spinning wait's budget.  A turn is a load and a pause (from a few
 * nanoseconds to ~50: a pause instruction's cost varies that much by CPU).
 * Every 8 turns the thread offers its CPU to others (sched_yield, a few
 * hundred nanoseconds when nothing else is runnable): the thread it waits
 * for is often queued on the same core -- the scheduler tends to place the
 * two there when the others are busy -- and then only that lets it run
 * (measured on a 2-vCPU VM: a round trip of ~33 us when yielding every 512
 * turns, ~7 us every 8).  The clock is read every 64 turns. */
typedef struct spin_budget {
    long long spin_ns;
    long long deadline; /* 0 until the first reading of the clock */
    unsigned turns;
} spin_budget;

/* Pause one turn; 1 once the budget is spent. */
static int spent(spin_budget *b)
{
    RELAX();
    if ((++b->turns & 7u) == 0)
        YIELD_CPU();
    if ((b->turns & 63u) == 0) {
        long long now = now_ns();
        if (b->deadline == 0)
            b->deadline = now + b->spin_ns;
        else if (now >= b->deadline)
            return 1;
    }
    return 0;
}

long long sss_handoff_posted(sss_handoff *h)
{
    return LOAD64(&h->posted);
}

int sss_handoff_post(sss_handoff *h)
{
    ADD64(&h->posted, 1);
    return LOAD32(&h->parked) == 1 && CAS32(&h->parked, 1, 0);
}

int sss_handoff_claim(sss_handoff *h)
{
    return CAS32(&h->spin, SPIN_NONE, SPIN_PENDING);
}

int sss_handoff_wait(sss_handoff *h, long long spin_ns)
{
    spin_budget budget = {spin_ns, 0, 0};
    while (LOAD32(&h->spin) != SPIN_DONE) {
        if (spent(&budget)) {
            if (CAS32(&h->spin, SPIN_PENDING, SPIN_GIVEN_UP))
                return 0;
            break; /* done just now */
        }
    }
    STORE32(&h->spin, SPIN_NONE);
    return 1;
}

int sss_handoff_post_wait(sss_handoff *h, long long spin_ns)
{
    if (sss_handoff_post(h))
        return 2;
    return sss_handoff_wait(h, spin_ns);
}

long long sss_handoff_idle(sss_handoff *h, long long seen, long long spin_ns)
{
    spin_budget budget = {spin_ns, 0, 0};
    long long posted;
    while ((posted = LOAD64(&h->posted)) == seen) {
        if (spent(&budget)) {
            STORE32(&h->parked, 1);
            posted = LOAD64(&h->posted);
            if (posted != seen && CAS32(&h->parked, 1, 0))
                return posted; /* no submitter saw parked == 1: no wake-up to consume */
            return -1;
        }
    }
    return posted;
}

int sss_handoff_done(sss_handoff *h)
{
    if (CAS32(&h->spin, SPIN_PENDING, SPIN_DONE))
        return 1;
    STORE32(&h->spin, SPIN_NONE); /* given up: the claim ends here */
    return 0;
}

long long sss_handoff_done_idle(sss_handoff *h, long long seen, long long spin_ns)
{
    if (!sss_handoff_done(h))
        return -2;
    return sss_handoff_idle(h, seen, spin_ns);
}

/* --- interruptible busy handler ---------------------------------------- */

static const int busy_delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
static const int busy_totals[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};
#define BUSY_STEPS ((int)(sizeof(busy_delays) / sizeof(busy_delays[0])))
#define BUSY_SLICE_MS 2

static int busy_handler(void *arg, int count)
{
    sss_busy *busy = (sss_busy *)arg;
    int delay, prior, slept = 0;
    if (count < BUSY_STEPS) {
        delay = busy_delays[count];
        prior = busy_totals[count];
    } else {
        delay = busy_delays[BUSY_STEPS - 1];
        prior = busy_totals[BUSY_STEPS - 1] + delay * (count - (BUSY_STEPS - 1));
    }
    if (prior + delay > busy->timeout_ms) {
        delay = busy->timeout_ms - prior;
        if (delay <= 0)
            return 0;
    }
    while (slept < delay) {
        int slice = delay - slept < BUSY_SLICE_MS ? delay - slept : BUSY_SLICE_MS;
        if (sqlite3_is_interrupted(busy->db))
            return 0;
        sqlite3_sleep(slice);
        slept += slice;
    }
    return !sqlite3_is_interrupted(busy->db);
}

int sss_busy_install(sss_busy *busy, sqlite3 *db, int timeout_ms)
{
    busy->db = db;
    busy->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
    return sqlite3_busy_handler(db, busy_handler, busy);
}
