/*
 * sss.h - the C helpers of sqlite_session_safe.
 *
 * Everything that runs once per row or per value lives in C: a cffi call costs
 * about 100 ns, a SQLite C-API call about 20 ns, so a Python loop around single
 * cffi calls would dominate every bulk operation.
 *
 * The text between the cdef markers is also fed verbatim to cffi's cdef() by
 * build_ffi.py, so it must stay plain declarations: no macros, no includes.
 *
 * Row data crosses the boundary in CPython's marshal wire format (the subset of
 * version 2 described in rows.c / bind.c): the C side writes or parses it, and
 * the standard library's C implementation of marshal.loads / marshal.dumps
 * turns it into or out of Python objects.  That keeps object construction in
 * C without this module having to use the CPython API.
 */
#ifndef SSS_H
#define SSS_H

#include <stddef.h>
#include "sqlite3.h"

/* cdef-begin */

/* A growable byte buffer owned by C; free it with sss_buffer_free().
 * `moved` is set whenever it grew (whether or not `data` moved): the Python
 * side keeps a view over [data, data + cap) and re-makes it only then. */
typedef struct sss_buffer {
    char *data;
    size_t len;
    size_t cap;
    int moved;
} sss_buffer;

/* What a helper reports besides its return code. */
typedef struct sss_result {
    int nrows;            /* rows written to the output buffer */
    int bad_index;        /* 0-based parameter index that failed, or -1 */
    long long bad_row;    /* 0-based row index (executemany) that failed, or -1 */
    long long changes;    /* rows changed (sum over executemany rows) */
    long long last_rowid; /* sqlite3_last_insert_rowid() after the call */
} sss_result;

/* Helper-specific return codes; everything else is a SQLite result code. */
enum {
    SSS_ERR_COUNT = -1,        /* wrong number of parameters */
    SSS_ERR_TYPE = -2,         /* a value of a type SQLite cannot store */
    SSS_ERR_OVERFLOW = -3,     /* an int outside the signed 64-bit range */
    SSS_ERR_FORMAT = -4,       /* the packed data is malformed */
    SSS_ERR_NOMEM = -5,        /* the output buffer could not grow */
    SSS_ERR_RETURNS_ROWS = -6  /* executemany on a statement that returns rows */
};

/* Flags or-ed into the non-negative return codes of sss_fill_rows and
 * sss_execute (SQLite's result codes stay below them):
 *   SSS_BUFFER_MOVED  the output buffer moved during the call;
 *   SSS_REPREPARED    SQLite re-prepared the statement after a schema change,
 *                     so its columns may differ from what the caller knew. */
enum { SSS_BUFFER_MOVED = 0x100000, SSS_REPREPARED = 0x200000 };

/* Gives an empty buffer its first `cap` bytes; 0 on success. */
int sss_buffer_init(sss_buffer *buf, size_t cap);
void sss_buffer_free(sss_buffer *buf);

/* Steps stmt up to max_rows times (stopping early once the buffer holds
 * max_bytes), appending each row as a tuple to a marshal list written to out
 * (out is cleared first).  Returns SQLITE_ROW when more rows may follow,
 * SQLITE_DONE when the statement finished (it is then reset), or an error
 * code (the statement is then reset too); or-ed with SSS_BUFFER_MOVED when
 * out->data moved. */
int sss_fill_rows(sqlite3_stmt *stmt, int max_rows, size_t max_bytes,
                  sss_buffer *out, sss_result *res);

/* Binds one packed row (a marshal tuple or list) to stmt's parameters. */
int sss_bind_packed(sqlite3_stmt *stmt, const char *data, size_t len,
                    sss_result *res);

/* Resets stmt, binds the packed parameters (len 0 = none), and runs it: a
 * statement without result columns is stepped to completion; one with result
 * columns has its first batch of rows filled as by sss_fill_rows. */
int sss_execute(sqlite3_stmt *stmt, const char *params, size_t len,
                int max_rows, size_t max_bytes, sss_buffer *out,
                sss_result *res);

/* Runs stmt once per packed row in a marshal list of tuples, summing changes.
 * Bindings are cleared afterwards (they point into rows). */
int sss_execute_many(sqlite3_stmt *stmt, const char *rows, size_t len,
                     sss_result *res);

/* cdef-end */

/* Internal to the C helpers. */
int sss_buffer_reserve(sss_buffer *buf, size_t extra);

#endif
