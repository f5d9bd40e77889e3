/* marshal_write.c - the marshal writers shared by the C helpers. */
#include <limits.h>
#include "marshal_write.h"
#include "marshal_format.h"

int sss_put_int64(sss_buffer *out, sqlite3_int64 v)
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

int sss_put_double(sss_buffer *out, double d)
{
    if (sss_buffer_reserve(out, 9))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = M_BINARY_FLOAT;
    m_put_double(p + 1, d);
    out->len += 9;
    return 0;
}

static int is_ascii(const unsigned char *s, int n)
{
    unsigned char acc = 0;
    for (int i = 0; i < n; i++)
        acc |= s[i];
    return acc < 0x80;
}

int sss_put_bytes(sss_buffer *out, char code, const void *data, int n)
{
    if (n < 0 || sss_buffer_reserve(out, 5 + (size_t)n))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)code;
    m_put_le32(p + 1, (uint32_t)n);
    if (n)
        memcpy(p + 5, data, (size_t)n);
    out->len += 5 + (size_t)n;
    return 0;
}

int sss_put_text(sss_buffer *out, const unsigned char *s, int n)
{
    if (n >= 0 && n < 256 && is_ascii(s, n)) {
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
    return sss_put_bytes(out, M_UNICODE, s, n);
}

int sss_put_code(sss_buffer *out, char code)
{
    if (sss_buffer_reserve(out, 1))
        return -1;
    out->data[out->len++] = code;
    return 0;
}

int sss_put_tuple_header(sss_buffer *out, int n)
{
    if (sss_buffer_reserve(out, 5))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    if (n < 256) {
        p[0] = M_SMALL_TUPLE;
        p[1] = (unsigned char)n;
        out->len += 2;
    } else {
        p[0] = M_TUPLE;
        m_put_le32(p + 1, (uint32_t)n);
        out->len += 5;
    }
    return 0;
}

int sss_put_value(sss_buffer *out, sqlite3_value *v)
{
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
        return sss_put_int64(out, sqlite3_value_int64(v));
    case SQLITE_FLOAT:
        return sss_put_double(out, sqlite3_value_double(v));
    case SQLITE_TEXT: {
        const unsigned char *s = sqlite3_value_text(v);
        if (!s)
            return -1; /* SQLite could not allocate the text */
        return sss_put_text(out, s, sqlite3_value_bytes(v));
    }
    case SQLITE_BLOB: {
        const void *b = sqlite3_value_blob(v);
        int n = sqlite3_value_bytes(v);
        if (!b && n)
            return -1;
        return sss_put_bytes(out, M_STRING, b, n);
    }
    default:
        return sss_put_code(out, M_NONE);
    }
}
