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
#include "marshal_format.h"

typedef struct reader {
    const unsigned char *p;
    const unsigned char *end;
} reader;

static int need(reader *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

/* Reads a container header ('(' ')' '['); returns its item count or -1. */
static long read_sequence_header(reader *r)
{
    if (!need(r, 1))
        return -1;
    unsigned char code = *r->p++;
    if (code == M_SMALL_TUPLE) {
        if (!need(r, 1))
            return -1;
        return *r->p++;
    }
    if (code == M_TUPLE || code == M_LIST) {
        if (!need(r, 4))
            return -1;
        int32_t n = (int32_t)m_get_le32(r->p);
        r->p += 4;
        return n < 0 ? -1 : n;
    }
    return -1;
}

/* Decodes a marshal 'l' integer into *out; returns 0, or an SSS_ERR_ code. */
static int read_long(reader *r, sqlite3_int64 *out)
{
    if (!need(r, 4))
        return SSS_ERR_FORMAT;
    int32_t n = (int32_t)m_get_le32(r->p);
    r->p += 4;
    int negative = n < 0;
    uint64_t ndigits = negative ? (uint64_t)(-(int64_t)n) : (uint64_t)n;
    if (!need(r, 2 * ndigits))
        return SSS_ERR_FORMAT;
    uint64_t mag = 0;
    int overflow = 0;
    /* Digits are stored least significant first; fold from the top. */
    for (uint64_t i = ndigits; i-- > 0;) {
        const unsigned char *d = r->p + 2 * i;
        uint64_t digit = (uint64_t)d[0] | ((uint64_t)d[1] << 8);
        if (digit > M_LONG_MASK)
            return SSS_ERR_FORMAT;
        if (mag > (UINT64_MAX >> M_LONG_SHIFT))
            overflow = 1;
        mag = (mag << M_LONG_SHIFT) | digit;
    }
    r->p += 2 * ndigits;
    if (overflow)
        return SSS_ERR_OVERFLOW;
    if (negative) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return SSS_ERR_OVERFLOW;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(sqlite3_int64)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return SSS_ERR_OVERFLOW;
        *out = (sqlite3_int64)mag;
    }
    return 0;
}

/* Binds the value at r->p to parameter i (1-based).  Returns SQLITE_OK, a
 * SQLite error code from the bind call, or an SSS_ERR_ code. */
static int bind_value(sqlite3_stmt *stmt, int i, reader *r)
{
    if (!need(r, 1))
        return SSS_ERR_FORMAT;
    unsigned char code = *r->p++;
    if (code & M_FLAG_REF)
        return SSS_ERR_FORMAT; /* dumps(x, 2) never writes references */
    switch (code) {
    case M_NONE:
        return sqlite3_bind_null(stmt, i);
    case M_TRUE:
        return sqlite3_bind_int64(stmt, i, 1);
    case M_FALSE:
        return sqlite3_bind_int64(stmt, i, 0);
    case M_INT: {
        if (!need(r, 4))
            return SSS_ERR_FORMAT;
        int32_t v = (int32_t)m_get_le32(r->p);
        r->p += 4;
        return sqlite3_bind_int64(stmt, i, v);
    }
    case M_LONG: {
        sqlite3_int64 v;
        int rc = read_long(r, &v);
        return rc ? rc : sqlite3_bind_int64(stmt, i, v);
    }
    case M_BINARY_FLOAT: {
        if (!need(r, 8))
            return SSS_ERR_FORMAT;
        double d = m_get_double(r->p);
        r->p += 8;
        return sqlite3_bind_double(stmt, i, d);
    }
    case M_UNICODE:
    case M_STRING: {
        if (!need(r, 4))
            return SSS_ERR_FORMAT;
        uint32_t n = m_get_le32(r->p);
        r->p += 4;
        if (n > INT32_MAX || !need(r, n))
            return SSS_ERR_FORMAT;
        const char *data = (const char *)r->p;
        r->p += n;
        if (code == M_UNICODE)
            return sqlite3_bind_text64(stmt, i, data, n, SQLITE_STATIC, SQLITE_UTF8);
        /* data is never NULL here, so an empty bytes binds as an empty blob. */
        return sqlite3_bind_blob64(stmt, i, data, n, SQLITE_STATIC);
    }
    default:
        /* dict, set, complex, nested tuple, ...: valid marshal, not a SQL value */
        return SSS_ERR_TYPE;
    }
}

static int bind_row(sqlite3_stmt *stmt, reader *r, sss_result *res)
{
    long n = read_sequence_header(r);
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
    reader r = {(const unsigned char *)data, (const unsigned char *)data + len};
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
        reader r = {(const unsigned char *)params, (const unsigned char *)params + len};
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
    reader r = {(const unsigned char *)rows, (const unsigned char *)rows + len};
    int rc = SQLITE_DONE;

    reset_result(res);
    if (sqlite3_column_count(stmt) > 0)
        return SSS_ERR_RETURNS_ROWS;
    long nrows = read_sequence_header(&r);
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
