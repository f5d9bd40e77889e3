/*
 * bind.c - bind parameters from marshal-packed rows and run statements.
 *
 * The Python side packs parameters with marshal.dumps(row, 2) (all in C), and
 * one call here binds a whole row, or binds and runs a whole executemany
 * chunk.  Text and blobs are bound SQLITE_STATIC, pointing into the packed
 * bytes: sss_execute's caller keeps those bytes alive for as long as the
 * bindings exist, and sss_execute_many clears the bindings before returning.
 */
#include <limits.h>
#include "sss.h"
#include "marshal_read.h"

/* Binds the value at r->p to parameter i (1-based).  Returns SQLITE_OK, a
 * SQLite error code from the bind call, or an SSS_ERR_ code. */
static int bind_value(sqlite3_stmt *stmt, int i, sss_reader *r)
{
    sss_mvalue v;
    int rc = sss_read_value(r, &v);
    if (rc)
        return rc;
    switch (v.type) {
    case SQLITE_INTEGER:
        return sqlite3_bind_int64(stmt, i, v.i);
    case SQLITE_FLOAT:
        return sqlite3_bind_double(stmt, i, v.d);
    case SQLITE_TEXT:
        return sqlite3_bind_text64(stmt, i, v.data, v.n, SQLITE_STATIC, SQLITE_UTF8);
    case SQLITE_BLOB:
        /* data is never NULL here, so an empty bytes binds as an empty blob. */
        return sqlite3_bind_blob64(stmt, i, v.data, v.n, SQLITE_STATIC);
    default:
        return sqlite3_bind_null(stmt, i);
    }
}

static int bind_row(sqlite3_stmt *stmt, sss_reader *r, sss_result *res)
{
    long n = sss_read_sequence_header(r);
    if (n < 0)
        return SSS_ERR_FORMAT;
    if (n != sqlite3_bind_parameter_count(stmt))
        return SSS_ERR_COUNT;
    for (int i = 0; i < n; i++) {
        int rc = bind_value(stmt, i + 1, r);
        if (rc != SQLITE_OK) {
            res->bad_index = i;
            return rc;
        }
    }
    return SQLITE_OK;
}

static void reset_result(sss_result *res)
{
    res->nrows = 0;
    res->bad_index = -1;
    res->bad_row = -1;
    res->changes = 0;
}

int sss_bind_packed(sqlite3_stmt *stmt, const char *data, size_t len,
                    sss_result *res)
{
    sss_reader r = {(const unsigned char *)data, (const unsigned char *)data + len};
    reset_result(res);
    return bind_row(stmt, &r, res);
}

int sss_execute(sqlite3_stmt *stmt, const char *params, size_t len,
                int max_rows, size_t max_bytes, sss_buffer *out,
                sss_result *res)
{
    sqlite3 *db = sqlite3_db_handle(stmt);
    int reprepares = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
    int rc;

    reset_result(res);
    if (sqlite3_stmt_busy(stmt)) /* finished statements were reset already */
        sqlite3_reset(stmt);
    if (len) {
        sss_reader r = {(const unsigned char *)params, (const unsigned char *)params + len};
        rc = bind_row(stmt, &r, res);
        if (rc != SQLITE_OK)
            return rc;
    } else if (sqlite3_bind_parameter_count(stmt) != 0) {
        return SSS_ERR_COUNT;
    }

    if (sqlite3_column_count(stmt) > 0) {
        rc = sss_fill_rows(stmt, max_rows, max_bytes, out, res);
    } else {
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ;
        sqlite3_reset(stmt);
    }
    if (!sqlite3_stmt_readonly(stmt)) {
        res->changes = sqlite3_changes64(db);
        res->last_rowid = sqlite3_last_insert_rowid(db);
    }
    if (rc >= 0 && sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_REPREPARE, 0) != reprepares)
        rc |= SSS_REPREPARED;
    return rc;
}

int sss_execute_many(sqlite3_stmt *stmt, const char *rows, size_t len,
                     sss_result *res)
{
    sqlite3 *db = sqlite3_db_handle(stmt);
    sss_reader r = {(const unsigned char *)rows, (const unsigned char *)rows + len};
    int rc = SQLITE_DONE;

    reset_result(res);
    if (sqlite3_column_count(stmt) > 0)
        return SSS_ERR_RETURNS_ROWS;
    long nrows = sss_read_sequence_header(&r);
    if (nrows < 0)
        return SSS_ERR_FORMAT;
    for (long row = 0; row < nrows; row++) {
        sqlite3_reset(stmt);
        rc = bind_row(stmt, &r, res);
        if (rc == SQLITE_OK) {
            while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                ;
        }
        if (rc != SQLITE_DONE) {
            res->bad_row = row;
            break;
        }
        res->changes += sqlite3_changes64(db);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt); /* they point into `rows`, about to go away */
    res->last_rowid = sqlite3_last_insert_rowid(db);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
