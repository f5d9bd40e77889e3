/* marshal_read.c - the marshal value reader shared by the C helpers. */
#include <limits.h>
#include "marshal_read.h"
#include "marshal_format.h"

static int need(sss_reader *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

long sss_read_sequence_header(sss_reader *r)
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
static int read_long(sss_reader *r, sqlite3_int64 *out)
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

int sss_read_value(sss_reader *r, sss_mvalue *v)
{
    if (!need(r, 1))
        return SSS_ERR_FORMAT;
    unsigned char code = *r->p++;
    if (code & M_FLAG_REF)
        return SSS_ERR_FORMAT; /* dumps(x, 2) never writes references */
    switch (code) {
    case M_NONE:
        v->type = SQLITE_NULL;
        return 0;
    case M_TRUE:
    case M_FALSE:
        v->type = SQLITE_INTEGER;
        v->i = code == M_TRUE;
        return 0;
    case M_INT:
        if (!need(r, 4))
            return SSS_ERR_FORMAT;
        v->type = SQLITE_INTEGER;
        v->i = (int32_t)m_get_le32(r->p);
        r->p += 4;
        return 0;
    case M_LONG:
        v->type = SQLITE_INTEGER;
        return read_long(r, &v->i);
    case M_BINARY_FLOAT:
        if (!need(r, 8))
            return SSS_ERR_FORMAT;
        v->type = SQLITE_FLOAT;
        v->d = m_get_double(r->p);
        r->p += 8;
        return 0;
    case M_UNICODE:
    case M_STRING: {
        if (!need(r, 4))
            return SSS_ERR_FORMAT;
        uint32_t n = m_get_le32(r->p);
        r->p += 4;
        if (n > INT32_MAX || !need(r, n))
            return SSS_ERR_FORMAT;
        v->type = code == M_UNICODE ? SQLITE_TEXT : SQLITE_BLOB;
        v->data = (const char *)r->p;
        v->n = n;
        r->p += n;
        return 0;
    }
    default:
        /* dict, set, complex, nested tuple, ...: valid marshal, not a SQL value */
        return SSS_ERR_TYPE;
    }
}
