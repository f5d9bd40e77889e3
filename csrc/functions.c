/*
 * functions.c - the C trampolines SQLite calls for user-defined functions,
 * aggregates and window functions (see functions.h).
 *
 * Aggregates: each group's aggregate context holds one non-zero word; its
 * address identifies the group to the Python side, which keeps one instance
 * of the user's class per live group.  SQLite calls xFinal exactly once for
 * every context it allocated (also when a statement is reset early), which
 * is when the Python side drops the instance.
 */
#include <stdint.h>
#include <stdlib.h>
#include "functions.h"
#include "marshal_read.h"
#include "marshal_write.h"

/* One registration: the Python handle, the struct shared with the Python
 * side, and the buffer arguments are packed into.  Re-entrant calls (a
 * function whose body runs SQL that calls it again) may share them: the Python
 * side decodes the arguments before it runs any user code, and fills the
 * result fields only after. */
typedef struct sss_fn {
    void *handle;
    sss_fn_io *io;
    sss_buffer args;
} sss_fn;

/* Packs the arguments; returns whether the buffer grew since the last call
 * (io->args/cap then point at it anew), or -1 when out of memory. */
static int pack_args(sss_fn *fn, int argc, sqlite3_value **argv)
{
    sss_buffer *b = &fn->args;
    b->len = 0;
    if (sss_put_tuple_header(b, argc))
        return -1;
    for (int i = 0; i < argc; i++)
        if (sss_put_value(b, argv[i]))
            return -1;
    if (!b->moved)
        return 0;
    b->moved = 0;
    fn->io->args = b->data;
    fn->io->cap = b->cap;
    return 1;
}

static const char *const error_text[] = {
    [SSS_RES_ERR_FUNCTION] = "user-defined function raised exception",
    [SSS_RES_ERR_INIT] = "user-defined aggregate's '__init__' method raised error",
    [SSS_RES_ERR_STEP] = "user-defined aggregate's 'step' method raised error",
    [SSS_RES_ERR_INVERSE] = "user-defined aggregate's 'inverse' method raised error",
    [SSS_RES_ERR_FINALIZE] = "user-defined aggregate's 'finalize' method raised error",
    [SSS_RES_ERR_VALUE] = "user-defined aggregate's 'value' method raised error",
};

static void set_result(sqlite3_context *ctx, int kind, const sss_fn_io *r)
{
    switch (kind) {
    case SSS_RES_NULL:
        sqlite3_result_null(ctx);
        break;
    case SSS_RES_INT:
        sqlite3_result_int64(ctx, r->i);
        break;
    case SSS_RES_FLOAT:
        sqlite3_result_double(ctx, r->d);
        break;
    case SSS_RES_PACKED:
        /* The Python side packs only values it checked: this cannot fail. */
        if (sss_result_packed(ctx, r->data, r->len))
            sqlite3_result_error(ctx, "malformed result", -1);
        break;
    case SSS_RES_ERR_NOMEM:
        sqlite3_result_error_nomem(ctx);
        break;
    default:
        if (kind >= SSS_RES_ERR_FUNCTION && kind <= SSS_RES_ERR_VALUE)
            sqlite3_result_error(ctx, error_text[kind], -1);
        else /* 0: the callback could not run at all (interpreter shutting down) */
            sqlite3_result_error(ctx, "user-defined function could not run", -1);
    }
}

static void fn_scalar(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sss_fn *fn = sqlite3_user_data(ctx);
    int moved = pack_args(fn, argc, argv);
    if (moved < 0) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    set_result(ctx, sss_py_function(fn->handle, moved), fn->io);
}

static void agg_step_or_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv,
                                int inverse)
{
    sss_fn *fn = sqlite3_user_data(ctx);
    sqlite3_int64 *slot = sqlite3_aggregate_context(ctx, sizeof(sqlite3_int64));
    int moved = slot ? pack_args(fn, argc, argv) : -1;
    if (moved < 0) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    int flags = (*slot == 0) | (inverse ? 2 : 0) | (moved ? 4 : 0);
    *slot = 1;
    int rc = sss_py_step(fn->handle, (unsigned long long)(uintptr_t)slot, flags);
    if (rc)
        set_result(ctx, rc, fn->io); /* an error */
}

static void agg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    agg_step_or_inverse(ctx, argc, argv, 0);
}

static void agg_inverse(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    agg_step_or_inverse(ctx, argc, argv, 1);
}

/* No context means no row reached the group (or the frame): the result is
 * NULL and no instance exists, as with the stdlib sqlite3 module. */
static void agg_final_or_value(sqlite3_context *ctx, int final)
{
    sss_fn *fn = sqlite3_user_data(ctx);
    sqlite3_int64 *slot = sqlite3_aggregate_context(ctx, 0);
    if (slot)
        set_result(ctx, sss_py_final(fn->handle, (unsigned long long)(uintptr_t)slot, final),
                   fn->io);
}

static void agg_final(sqlite3_context *ctx)
{
    agg_final_or_value(ctx, 1);
}

static void agg_value(sqlite3_context *ctx)
{
    agg_final_or_value(ctx, 0);
}

static void fn_destroy(void *p)
{
    sss_fn *fn = p;
    sss_py_release(fn->handle);
    sss_buffer_free(&fn->args);
    free(fn);
}

int sss_create_function(sqlite3 *db, const char *name, int narg, int flags,
                        void *handle, sss_fn_io *io, int kind)
{
    if (!handle) /* removes the function */
        return sqlite3_create_function_v2(db, name, narg, flags | SQLITE_UTF8, NULL, NULL,
                                          NULL, NULL, NULL);
    sss_fn *fn = calloc(1, sizeof *fn);
    if (!fn || sss_buffer_init(&fn->args, 256)) {
        free(fn);
        sss_py_release(handle); /* as SQLite does when registration fails */
        return SQLITE_NOMEM;
    }
    fn->handle = handle;
    fn->io = io;
    io->args = fn->args.data;
    io->cap = fn->args.cap;
    fn->args.moved = 1; /* the first call makes the Python side's view */
    flags |= SQLITE_UTF8;
    /* On failure SQLite calls fn_destroy itself, so fn is never leaked. */
    switch (kind) {
    case SSS_FN_SCALAR:
        return sqlite3_create_function_v2(db, name, narg, flags, fn, fn_scalar, NULL,
                                          NULL, fn_destroy);
    case SSS_FN_AGGREGATE:
        return sqlite3_create_function_v2(db, name, narg, flags, fn, NULL, agg_step,
                                          agg_final, fn_destroy);
    case SSS_FN_WINDOW:
        return sqlite3_create_window_function(db, name, narg, flags, fn, agg_step,
                                              agg_final, agg_value, agg_inverse,
                                              fn_destroy);
    default:
        fn_destroy(fn);
        return SQLITE_MISUSE;
    }
}

int sss_result_packed(sqlite3_context *ctx, const char *data, size_t len)
{
    sss_reader r = {(const unsigned char *)data, (const unsigned char *)data + len};
    sss_mvalue v;
    int rc = sss_read_value(&r, &v);
    if (rc)
        return rc;
    switch (v.type) {
    case SQLITE_INTEGER:
        sqlite3_result_int64(ctx, v.i);
        break;
    case SQLITE_FLOAT:
        sqlite3_result_double(ctx, v.d);
        break;
    case SQLITE_TEXT:
        sqlite3_result_text64(ctx, v.data, v.n, SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
    case SQLITE_BLOB:
        sqlite3_result_blob64(ctx, v.data, v.n, SQLITE_TRANSIENT);
        break;
    default:
        sqlite3_result_null(ctx);
    }
    return 0;
}
