/*
 * sss_filter_cache.h - a user's session table filter, asked once per table.
 *
 * SQLite asks a session's table filter on the first change to a table and,
 * when the filter says no, again on every later change to that table (the
 * table is then never attached, so SQLite has no place to remember the
 * answer).  With a filter written in Python that is a callback into Python
 * on every row written to a refused table: a 100,000-row insert into one took
 * 154 ms instead of 62 ms.  This filter sits between SQLite and the user's:
 * it remembers the names refused and answers for them itself.
 */
#ifndef SSS_FILTER_CACHE_H
#define SSS_FILTER_CACHE_H

/* cdef-begin */

/* State of one session's filter.  Set ask and ctx, zero the rest; pass the
 * struct as the context of sss_filter_cache_call().  It must live, and stay
 * in place, until the session is deleted; then sss_filter_cache_clear(). */
typedef struct sss_filter_cache {
    int (*ask)(void *ctx, const char *zTab);   /* the filter behind this one */
    void *ctx;                                 /* its context */
    char **refused;                            /* names it refused (malloc'ed) */
    int n_refused;
    int cap_refused;
} sss_filter_cache;

/* A sqlite3session_table_filter() callback; pCtx is an sss_filter_cache.
 * Answers 0 for a name ask() refused before, otherwise returns what ask()
 * answers and, when that is 0, remembers the name (if memory allows: a name
 * not remembered is just asked again). */
int sss_filter_cache_call(void *pCtx, const char *zTab);

/* Frees the remembered names (safe to call twice). */
void sss_filter_cache_clear(sss_filter_cache *cache);

/* cdef-end */

#endif
