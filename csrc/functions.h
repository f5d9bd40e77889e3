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

/* What a registration shares with its Python callbacks, owned by the Python
 * side (declared for cffi in functions.cdef, read before this header).  The
 * trampoline stores where the arguments are packed (`args`, capacity `cap`,
 * updated when the buffer grows); the callback's return value says which
 * result field it filled: SSS_RES_NULL; SSS_RES_INT: i; SSS_RES_FLOAT: d;
 * SSS_RES_PACKED: one marshal-packed value in data/len (text, blobs), kept
 * alive by the Python side until the next call; or SSS_RES_ERR_* (an
 * exception, recorded on the Python side): the trampoline fails the call with
 * the stdlib's message.  Passing only this and small ints keeps the cost of
 * each call into Python low (cffi builds one object per argument), and
 * needs no further call into C per row (each releases and retakes the GIL). */
typedef struct sss_fn_io {
    long long i;
    double d;
    const char *data;
    size_t len;
    const char *args;
    size_t cap;
} sss_fn_io;
enum { SSS_RES_NULL = 1, SSS_RES_INT = 2, SSS_RES_FLOAT = 3, SSS_RES_PACKED = 4,
       SSS_RES_ERR_FUNCTION = 5, SSS_RES_ERR_INIT = 6, SSS_RES_ERR_STEP = 7,
       SSS_RES_ERR_INVERSE = 8, SSS_RES_ERR_FINALIZE = 9, SSS_RES_ERR_VALUE = 10,
       SSS_RES_ERR_NOMEM = 11 };

/* cdef-begin */

/* What sss_create_function registers. */
enum { SSS_FN_SCALAR = 0, SSS_FN_AGGREGATE = 1, SSS_FN_WINDOW = 2 };

/* Registers function `name` of `kind` with SQLite (flags: SQLITE_UTF8 is
 * added; pass SQLITE_DETERMINISTIC etc.).  `handle` (an ffi.new_handle) is
 * passed to every callback and released through sss_py_release() when SQLite
 * drops the function: replaced, removed, connection closed, or registration
 * failed; `io` (see above) must live as long.  A NULL handle removes the
 * function.  Returns a SQLite result
 * code. */
int sss_create_function(sqlite3 *db, const char *name, int narg, int flags,
                        void *handle, sss_fn_io *io, int kind);

/* Sets ctx's result from one marshal-packed value (None, bool, int, float,
 * str, bytes).  Returns 0, or SSS_ERR_TYPE / SSS_ERR_OVERFLOW /
 * SSS_ERR_FORMAT without setting a result. */
int sss_result_packed(sqlite3_context *ctx, const char *data, size_t len);

/* cdef-end */

/* The Python side (binding/functions.py); see functions.cdef.  `moved`:
 * the argument buffer grew since the last call (io->args/cap changed). */
int sss_py_function(void *app, int moved);
/* flags: 1 first row of the group, 2 inverse (window), 4 moved. */
int sss_py_step(void *app, unsigned long long key, int flags);
int sss_py_final(void *app, unsigned long long key, int final);
void sss_py_release(void *app);

#endif
