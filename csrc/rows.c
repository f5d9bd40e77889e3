/*
 * rows.c - step a statement and write a batch of result rows as a marshal
 * list of tuples, which marshal.loads() turns into Python objects in C.
 *
 * SQLite type -> marshal code:
 *   NULL -> 'N';  INTEGER -> 'i' (fits int32) or 'l';  FLOAT -> 'g';
 *   TEXT -> 'z' (ASCII, < 256 bytes) or 'u' (UTF-8);  BLOB -> 's'.
 * Text that is not valid UTF-8 makes marshal.loads raise UnicodeDecodeError;
 * the Python side turns that into a clear error.
 */
#include <limits.h>
#include "sss.h"
#include "marshal_format.h"

static int put_int64(sss_buffer *out, sqlite3_int64 v)
{
    if (v >= INT32_MIN && v <= INT32_MAX) {
        if (sss_buffer_reserve(out, 5))
            return -1;
        unsigned char *p = (unsigned char *)out->data + out->len;
        p[0] = M_INT;
        m_put_le32(p + 1, (uint32_t)(int32_t)v);
        out->len += 5;
        return 0;
    }
    /* Magnitude in unsigned arithmetic so INT64_MIN does not overflow. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint16_t digits[5]; /* 64 bits need at most ceil(64/15) = 5 digits */
    int n = 0;
    while (mag) {
        digits[n++] = (uint16_t)(mag & M_LONG_MASK);
        mag >>= M_LONG_SHIFT;
    }
    if (sss_buffer_reserve(out, 5 + 2 * (size_t)n))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = M_LONG;
    m_put_le32(p + 1, (uint32_t)(int32_t)(v < 0 ? -n : n));
    for (int i = 0; i < n; i++) {
        p[5 + 2 * i] = (unsigned char)digits[i];
        p[6 + 2 * i] = (unsigned char)(digits[i] >> 8);
    }
    out->len += 5 + 2 * (size_t)n;
    return 0;
}

static int is_ascii(const unsigned char *s, int n)
{
    unsigned char acc = 0;
    for (int i = 0; i < n; i++)
        acc |= s[i];
    return acc < 0x80;
}

static int put_bytes(sss_buffer *out, char code, const void *data, int n)
{
    if (sss_buffer_reserve(out, 5 + (size_t)n))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)code;
    m_put_le32(p + 1, (uint32_t)n);
    if (n)
        memcpy(p + 5, data, (size_t)n);
    out->len += 5 + (size_t)n;
    return 0;
}

static int put_text(sss_buffer *out, const unsigned char *s, int n)
{
    if (n < 256 && is_ascii(s, n)) {
        if (sss_buffer_reserve(out, 2 + (size_t)n))
            return -1;
        unsigned char *p = (unsigned char *)out->data + out->len;
        p[0] = M_SHORT_ASCII;
        p[1] = (unsigned char)n;
        if (n)
            memcpy(p + 2, s, (size_t)n);
        out->len += 2 + (size_t)n;
        return 0;
    }
    return put_bytes(out, M_UNICODE, s, n);
}

static int put_row(sqlite3_stmt *stmt, int ncols, sss_buffer *out)
{
    if (sss_buffer_reserve(out, 5))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    if (ncols < 256) {
        p[0] = M_SMALL_TUPLE;
        p[1] = (unsigned char)ncols;
        out->len += 2;
    } else {
        p[0] = M_TUPLE;
        m_put_le32(p + 1, (uint32_t)ncols);
        out->len += 5;
    }
    for (int i = 0; i < ncols; i++) {
        int rc = 0;
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
            rc = put_int64(out, sqlite3_column_int64(stmt, i));
            break;
        case SQLITE_FLOAT:
            if ((rc = sss_buffer_reserve(out, 9)) == 0) {
                p = (unsigned char *)out->data + out->len;
                p[0] = M_BINARY_FLOAT;
                m_put_double(p + 1, sqlite3_column_double(stmt, i));
                out->len += 9;
            }
            break;
        case SQLITE_TEXT: {
            const unsigned char *s = sqlite3_column_text(stmt, i);
            if (!s)
                return -1; /* SQLite could not allocate the text */
            rc = put_text(out, s, sqlite3_column_bytes(stmt, i));
            break;
        }
        case SQLITE_BLOB: {
            const void *b = sqlite3_column_blob(stmt, i);
            int n = sqlite3_column_bytes(stmt, i);
            if (!b && n)
                return -1;
            rc = put_bytes(out, M_STRING, b, n);
            break;
        }
        default:
            if ((rc = sss_buffer_reserve(out, 1)) == 0)
                out->data[out->len++] = M_NONE;
        }
        if (rc)
            return -1;
    }
    return 0;
}

int sss_fill_rows(sqlite3_stmt *stmt, int max_rows, size_t max_bytes,
                  sss_buffer *out, sss_result *res)
{
    int ncols = sqlite3_column_count(stmt);
    int rc = SQLITE_ROW;
    int n = 0;

    out->len = 0;
    res->nrows = 0;
    if (sss_buffer_reserve(out, 5))
        return SSS_ERR_NOMEM;
    out->data[0] = M_LIST;
    out->len = 5; /* the count is patched in below */

    while (n < max_rows && out->len < max_bytes) {
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
            break;
        if (put_row(stmt, ncols, out)) {
            rc = SSS_ERR_NOMEM;
            break;
        }
        n++;
    }
    m_put_le32((unsigned char *)out->data + 1, (uint32_t)n);
    res->nrows = n;
    if (rc != SQLITE_ROW) {
        /* Finished or failed: reset now so the statement stops holding its
         * read transaction open.  The step's own code is the one reported. */
        sqlite3_reset(stmt);
    }
    if (out->moved) {
        out->moved = 0;
        rc |= SSS_BUFFER_MOVED;
    }
    return rc;
}
