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
#include "marshal_write.h"

static int put_row(sqlite3_stmt *stmt, int ncols, sss_buffer *out)
{
    if (sss_put_tuple_header(out, ncols))
        return -1;
    for (int i = 0; i < ncols; i++) {
        int rc = 0;
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER:
            rc = sss_put_int64(out, sqlite3_column_int64(stmt, i));
            break;
        case SQLITE_FLOAT:
            rc = sss_put_double(out, sqlite3_column_double(stmt, i));
            break;
        case SQLITE_TEXT: {
            const unsigned char *s = sqlite3_column_text(stmt, i);
            if (!s)
                return -1; /* SQLite could not allocate the text */
            rc = sss_put_text(out, s, sqlite3_column_bytes(stmt, i));
            break;
        }
        case SQLITE_BLOB: {
            const void *b = sqlite3_column_blob(stmt, i);
            int n = sqlite3_column_bytes(stmt, i);
            if (!b && n)
                return -1;
            rc = sss_put_bytes(out, M_STRING, b, n);
            break;
        }
        default:
            rc = sss_put_code(out, M_NONE);
        }
        if (rc)
            return -1;
    }
    return 0;
}

int sss_fill_rows(sqlite3_stmt *stmt, int max_rows, size_t max_bytes,
                  sss_buffer *out, sss_result *res)
{
    int ncols = 0;
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
        if (n == 0) {
            /* Read after the first step: a step may re-prepare the statement
             * for a schema change, and with it change the columns. */
            ncols = sqlite3_column_count(stmt);
        }
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
