/*
 * marshal_read.h - reading SQL values from CPython's marshal wire format (the
 * subset marshal.dumps(x, 2) writes for the types SQLite stores; see
 * marshal_format.h).  Shared by bind.c (parameters) and functions.c (the
 * results of user-defined functions).
 */
#ifndef SSS_MARSHAL_READ_H
#define SSS_MARSHAL_READ_H

#include <stdint.h>
#include "sss.h"

typedef struct sss_reader {
    const unsigned char *p;
    const unsigned char *end;
} sss_reader;

/* One decoded value.  `type` is SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT,
 * SQLITE_TEXT or SQLITE_BLOB; text and blobs point into the reader's data. */
typedef struct sss_mvalue {
    int type;
    sqlite3_int64 i;
    double d;
    const char *data;
    uint32_t n;
} sss_mvalue;

/* Reads a container header ('(' ')' '['); returns its item count or -1. */
long sss_read_sequence_header(sss_reader *r);

/* Reads the value at r->p.  Returns 0, or SSS_ERR_FORMAT (malformed),
 * SSS_ERR_TYPE (valid marshal but not a SQL value: dict, nested tuple, ...)
 * or SSS_ERR_OVERFLOW (an int outside the signed 64-bit range). */
int sss_read_value(sss_reader *r, sss_mvalue *v);

#endif
