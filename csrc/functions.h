/*
 * functions.h - user-defined SQL functions, aggregates and window functions.
 *
 * SQLite calls the C trampolines in functions.c; each packs all argument
 * values of one call into a marshal tuple (one buffer per registration) and
 * makes one call into Python (the extern "Python+C" callbacks declared in
 * functions.cdef, implemented in binding/functions.py), which decodes the
 * tuple with marshal.loads, runs the user's callable, and sets the result
 * through one call to sss_result_packed().
 */
#ifndef SSS_FUNCTIONS_H
#define SSS_FUNCTIONS_H

#include "sss.h"

/* cdef-begin */

/* What sss_create_function registers. */
enum { SSS_FN_SCALAR = 0, SSS_FN_AGGREGATE = 1, SSS_FN_WINDOW = 2 };

/* Registers function `name` of `kind` with SQLite (flags: SQLITE_UTF8 is
 * added; pass SQLITE_DETERMINISTIC etc.).  `handle` (an ffi.new_handle) is
 * passed to every callback and released through sss_py_release() when SQLite
 * drops the function: replaced, removed, connection closed, or registration
 * failed.  A NULL handle removes the function.  Returns a SQLite result
 * code. */
int sss_create_function(sqlite3 *db, const char *name, int narg, int flags,
                        void *handle, int kind);

/* Sets ctx's result from one marshal-packed value (None, bool, int, float,
 * str, bytes).  Returns 0, or SSS_ERR_TYPE / SSS_ERR_OVERFLOW /
 * SSS_ERR_FORMAT without setting a result. */
int sss_result_packed(sqlite3_context *ctx, const char *data, size_t len);

/* cdef-end */

/* The Python side (binding/functions.py); see functions.cdef. */
void sss_py_function(void *app, sqlite3_context *ctx, const char *args, size_t len);
void sss_py_step(void *app, sqlite3_context *ctx, unsigned long long key, int first,
                 int inverse, const char *args, size_t len);
void sss_py_final(void *app, sqlite3_context *ctx, unsigned long long key, int final);
void sss_py_release(void *app);

#endif
