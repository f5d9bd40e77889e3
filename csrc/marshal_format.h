/*
 * marshal_format.h - the part of CPython's marshal wire format the helpers use.
 *
 * marshal.loads() accepts every type code below in all Python 3 versions this
 * package supports (3.10+); marshal.dumps(obj, 2) writes only these codes for
 * the value types SQLite stores.  Multi-byte integers are little-endian.
 */
#ifndef SSS_MARSHAL_FORMAT_H
#define SSS_MARSHAL_FORMAT_H

#include <stdint.h>
#include <string.h>

#define M_NONE        'N'
#define M_FALSE       'F'
#define M_TRUE        'T'
#define M_INT         'i'  /* int32 */
#define M_LONG        'l'  /* int32 digit count (negative = negative value), then 15-bit digits as uint16 */
#define M_BINARY_FLOAT 'g' /* IEEE-754 double */
#define M_UNICODE     'u'  /* int32 length + UTF-8 */
#define M_SHORT_ASCII 'z'  /* uint8 length + ASCII (version 4; read by every loads) */
#define M_STRING      's'  /* int32 length + bytes (bytes, bytearray, memoryview) */
#define M_TUPLE       '('  /* int32 count + items */
#define M_SMALL_TUPLE ')'  /* uint8 count + items (version 4; read by every loads) */
#define M_LIST        '['  /* int32 count + items */
#define M_FLAG_REF    0x80 /* version 3+ back-reference flag: never written by dumps(x, 2) */

#define M_LONG_SHIFT  15
#define M_LONG_MASK   0x7FFF

static inline void m_put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t m_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* A double's bytes in little-endian order, whatever the host's order. */
static inline void m_put_double(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(bits >> (8 * i));
}

static inline double m_get_double(const unsigned char *p)
{
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)p[i] << (8 * i);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

#endif
