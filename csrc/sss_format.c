/*
 * sss_format.c - changes as readable text or JSON (see sss_format.h).
 *
 * What is written, per change, mirrors the Python renderings it replaces:
 *
 *   text   INSERT t (id=1, v='a')            new values, by column name
 *          DELETE t (id=1, v='a')            old values
 *          UPDATE t [id=1] v: 'a' -> 'b'     key = old values of the primary
 *                                            key; then per new value
 *          ... (indirect)                    for an indirect change
 *          values: NULL, 12, repr() of a REAL, 'text' with ' doubled, x'00ff'
 *   json   {"table": "t", "op": "INSERT", "indirect": false, "pk": ["id"],
 *           "old": null, "new": {"id": 1, "v": "a"}}
 *          values: null, 12, repr() of a finite REAL, {"$real": "inf"},
 *          "text" escaped as json.dumps escapes it, {"$blob": "00ff"}
 *
 * A column a record leaves undefined (an UPDATE's unchanged column) is left
 * out, as change_dicts() leaves it out of its dicts; a value looked up by
 * name that the record does not define is NULL (dict.get()).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sss_changeset.h"
#include "sss_format.h"

typedef struct section {
    char *table;              /* the key: name (NUL-terminated), ncol, pk flags */
    int ncol;
    unsigned char *pk;
    char *rendered;           /* the table name as written, then each column name */
    size_t *offsets;          /* ncol + 2 offsets into rendered: [0] the table */
    int *groups;              /* NULL: distinct names */
} section;

struct sss_format {
    int mode;
    char *prefix;
    size_t prefix_len;
    int first;                /* JSON: no change written yet */
    int pending;              /* the iterator stands at a change not yet written */
    section *sections;
    int nsections;
    int cap;
    int current;              /* the section of the last change, or -1 */
    const char *want_tab;     /* the waiting change's section (NEED_NAMES) */
    int want_ncol;
    const unsigned char *want_pk;
    sqlite3_value **vals;     /* old values at [0, ncol), new at [ncol, 2 ncol) */
    int vals_cap;
    const char *bad;          /* BAD_TEXT: the value's bytes */
    size_t bad_len;
};

/* -- output ------------------------------------------------------------------ */

static int put(sss_buffer *out, const void *s, size_t n)
{
    if (sss_buffer_reserve(out, n))
        return -1;
    memcpy(out->data + out->len, s, n);
    out->len += n;
    return 0;
}

#define PUT_LIT(out, s) put((out), (s), sizeof(s) - 1)

static int put_char(sss_buffer *out, char c)
{
    if (sss_buffer_reserve(out, 1))
        return -1;
    out->data[out->len++] = c;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static int put_int(sss_buffer *out, sqlite3_int64 v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    return put(out, tmp + i, sizeof(tmp) - (size_t)i);
}

static int put_hex(sss_buffer *out, const unsigned char *p, size_t n)
{
    if (sss_buffer_reserve(out, 2 * n))
        return -1;
    char *d = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        d[2 * i] = HEX[p[i] >> 4];
        d[2 * i + 1] = HEX[p[i] & 15];
    }
    out->len += 2 * n;
    return 0;
}

/* -- doubles as repr() writes them ---------------------------------------------
 *
 * repr() writes the shortest digit string that reads back as the same double
 * (David Gay's dtoa, mode 0), closest to the double when several are that
 * short.  Found here with the C library's correctly rounded printf and strtod:
 * for a normal double, any string of 15 or fewer significant digits that
 * reads back is its correctly rounded 15 digits (its relative spacing,
 * 2^-52, is below half the spacing of 15-digit decimals), so one check at 15
 * digits covers them all; else 16 digits (the correctly rounded ones, or the
 * next ones on the double's other side, which can read back when the double
 * is a power of two: its lower neighbour is nearer than its upper one); else
 * the correctly rounded 17, which always read back.  A subnormal double is
 * tried at every length from 1.  tests/sessions/test_format.py holds
 * this to repr() on random and edge-case doubles. */

/* Digits (no trailing zeros) and decimal exponent of "d.ddde[+-]x". */
static int parse_e(const char *s, char *digits, int *decpt)
{
    int n = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9')
            digits[n++] = *s;
    int exp = *s == 'e' ? atoi(s + 1) : 0;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = 0;
    *decpt = exp + 1;
    return n;
}

/* The p-digit decimal nearest x, or else the next one on x's other side, if
 * it reads back as x: its digits and decimal point, else 0. */
static int try_digits(double x, int p, char *digits, int *decpt)
{
    char tmp[48];
    snprintf(tmp, sizeof(tmp), "%.*e", p - 1, x);
    double d = strtod(tmp, NULL);
    if (d == x)
        return parse_e(tmp, digits, decpt);
    uint64_t m = 0;
    const char *e = tmp;
    for (; *e && *e != 'e'; e++)
        if (*e >= '0' && *e <= '9')
            m = m * 10 + (uint64_t)(*e - '0');
    int exp = *e == 'e' ? atoi(e + 1) : 0;
    uint64_t lo = 1; /* 10^(p-1): the smallest p-digit number */
    for (int i = 1; i < p; i++)
        lo *= 10;
    if (d < x) {
        if (++m == 10 * lo) {
            m = lo;
            exp++;
        }
    } else if (m == lo) {
        m = 10 * lo - 1;
        exp--;
    } else {
        m--;
    }
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)m);
    snprintf(tmp, sizeof(tmp), "%c.%se%d", num[0], num + 1, exp);
    if (strtod(tmp, NULL) == x)
        return parse_e(tmp, digits, decpt);
    return 0;
}

static int shortest_digits(double x, char *digits, int *decpt)
{
    /* Subnormals have fewer significant bits: any length may be the shortest. */
    int from = x < DBL_MIN ? 1 : 15;
    for (int p = from; p < 17; p++) {
        int n = try_digits(x, p, digits, decpt);
        if (n)
            return n;
    }
    char tmp[48];
    snprintf(tmp, sizeof(tmp), "%.16e", x);
    return parse_e(tmp, digits, decpt);
}

int sss_format_double(double v, char *buf)
{
    if (isnan(v))
        return sprintf(buf, "nan");
    if (isinf(v))
        return sprintf(buf, v < 0 ? "-inf" : "inf");
    char digits[24];
    int decpt = 1, n;
    char *p = buf;
    if (signbit(v))
        *p++ = '-';
    double x = fabs(v);
    if (x == 0) {
        digits[0] = '0';
        digits[1] = 0;
        n = 1;
    } else {
        n = shortest_digits(x, digits, &decpt);
    }
    if (decpt <= -4 || decpt > 16) {
        /* 1e+16, 1.5e-05: an exponent of at least two digits */
        *p++ = digits[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, (size_t)n - 1);
            p += n - 1;
        }
        int e = decpt - 1;
        p += sprintf(p, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (decpt <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -decpt; i++)
            *p++ = '0';
        memcpy(p, digits, (size_t)n);
        p += n;
    } else if (decpt >= n) {
        memcpy(p, digits, (size_t)n);
        p += n;
        for (int i = n; i < decpt; i++)
            *p++ = '0';
        *p++ = '.';
        *p++ = '0';
    } else {
        memcpy(p, digits, (size_t)decpt);
        p += decpt;
        *p++ = '.';
        memcpy(p, digits + decpt, (size_t)(n - decpt));
        p += n - decpt;
    }
    *p = 0;
    return (int)(p - buf);
}

/* -- text --------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s[0..n) as Python's decoder with
 * "surrogatepass" reads it (encoded surrogates included), or 0 if invalid;
 * *cp gets the code point. */
static int utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
            return 0; /* overlong, or past U+10FFFF */
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = utf8_seq(s + i, n - i, &cp);
        if (!k)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/* 'text' with every ' doubled. */
static int put_sql_text(sss_buffer *out, const unsigned char *s, size_t n)
{
    if (put_char(out, '\''))
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            if (put(out, s + run, i + 1 - run) || put_char(out, '\''))
                return -1;
            run = i + 1;
        }
    }
    if (put(out, s + run, n - run))
        return -1;
    return put_char(out, '\'');
}

static int put_u_escape(sss_buffer *out, uint32_t c)
{
    char e[6] = {'\\', 'u', HEX[(c >> 12) & 15], HEX[(c >> 8) & 15], HEX[(c >> 4) & 15],
                 HEX[c & 15]};
    return put(out, e, 6);
}

/* A JSON string as json.dumps writes it: ", \\ and control characters
 * escaped (\n \r \t \b \f, else \u00XX); with `ascii` also every character
 * outside ' '..'~' (\uXXXX, a surrogate pair above U+FFFF).  s is valid
 * UTF-8 (surrogatepass). */
static int put_json_string(sss_buffer *out, const unsigned char *s, size_t n, int ascii)
{
    if (put_char(out, '"'))
        return -1;
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        int plain = ascii ? (c >= 0x20 && c <= 0x7E && c != '"' && c != '\\')
                          : (c >= 0x20 && c != '"' && c != '\\');
        if (plain) {
            i++;
            continue;
        }
        if (put(out, s + run, i - run))
            return -1;
        int rc = 0;
        switch (c) {
        case '"': rc = PUT_LIT(out, "\\\""); i++; break;
        case '\\': rc = PUT_LIT(out, "\\\\"); i++; break;
        case '\n': rc = PUT_LIT(out, "\\n"); i++; break;
        case '\r': rc = PUT_LIT(out, "\\r"); i++; break;
        case '\t': rc = PUT_LIT(out, "\\t"); i++; break;
        case '\b': rc = PUT_LIT(out, "\\b"); i++; break;
        case '\f': rc = PUT_LIT(out, "\\f"); i++; break;
        default:
            if (c < 0x80) {
                rc = put_u_escape(out, c);
                i++;
            } else {
                uint32_t cp = 0;
                int k = utf8_seq(s + i, n - i, &cp);
                if (!k)
                    return -1; /* not reached: the text was validated before */
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    rc = put_u_escape(out, 0xD800 | (cp >> 10)) ||
                         put_u_escape(out, 0xDC00 | (cp & 0x3FF)) ? -1 : 0;
                } else {
                    rc = put_u_escape(out, cp);
                }
                i += (size_t)k;
            }
        }
        if (rc)
            return -1;
        run = i;
    }
    if (put(out, s + run, n - run))
        return -1;
    return put_char(out, '"');
}

/* -- values ------------------------------------------------------------------- */

/* Writes one value (text: as an SQL literal; JSON: as jsonable() makes it).
 * Returns 0, -1 (no memory) or SSS_FORMAT_BAD_TEXT. */
static int put_value(sss_format *f, sss_buffer *out, sqlite3_value *v)
{
    int json = f->mode != SSS_FORMAT_TEXT;
    if (v == NULL)
        return json ? PUT_LIT(out, "null") : PUT_LIT(out, "NULL");
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
        return put_int(out, sqlite3_value_int64(v));
    case SQLITE_FLOAT: {
        double d = sqlite3_value_double(v);
        char tmp[40];
        int n = sss_format_double(d, tmp);
        if (json && !isfinite(d)) /* NaN too, should a changeset hold one */
            return PUT_LIT(out, "{\"$real\": \"") || put(out, tmp, (size_t)n) ||
                           PUT_LIT(out, "\"}") ? -1 : 0;
        return put(out, tmp, (size_t)n);
    }
    case SQLITE_TEXT: {
        const unsigned char *s = sqlite3_value_text(v);
        size_t n = (size_t)sqlite3_value_bytes(v);
        if (!s)
            return -1;
        if (!valid_utf8(s, n)) {
            f->bad = (const char *)s;
            f->bad_len = n;
            return SSS_FORMAT_BAD_TEXT;
        }
        return json ? put_json_string(out, s, n, f->mode == SSS_FORMAT_JSON_ASCII)
                    : put_sql_text(out, s, n);
    }
    case SQLITE_BLOB: {
        const unsigned char *b = sqlite3_value_blob(v);
        size_t n = (size_t)sqlite3_value_bytes(v);
        if (!b && n)
            return -1;
        if (json)
            return PUT_LIT(out, "{\"$blob\": \"") || put_hex(out, b, n) || PUT_LIT(out, "\"}")
                       ? -1 : 0;
        return PUT_LIT(out, "x'") || put_hex(out, b, n) || put_char(out, '\'') ? -1 : 0;
    }
    default:
        return json ? PUT_LIT(out, "null") : PUT_LIT(out, "NULL");
    }
}

/* -- sections ------------------------------------------------------------------ */

static void section_free(section *s)
{
    free(s->table);
    free(s->pk);
    free(s->rendered);
    free(s->offsets);
    free(s->groups);
}

static int same_key(const section *s, const char *tab, int ncol, const unsigned char *pk)
{
    return s->ncol == ncol && memcmp(s->pk, pk, (size_t)ncol) == 0 && strcmp(s->table, tab) == 0;
}

static section *find_section(sss_format *f, const char *tab, int ncol, const unsigned char *pk)
{
    if (f->current >= 0 && same_key(&f->sections[f->current], tab, ncol, pk))
        return &f->sections[f->current];
    for (int i = f->nsections - 1; i >= 0; i--)
        if (same_key(&f->sections[i], tab, ncol, pk)) {
            f->current = i;
            return &f->sections[i];
        }
    return NULL;
}

static const char *name_of(const section *s, int i, size_t *n)
{
    *n = s->offsets[i + 2] - s->offsets[i + 1];
    return s->rendered + s->offsets[i + 1];
}

static int put_name(sss_buffer *out, const section *s, int i)
{
    size_t n;
    const char *p = name_of(s, i, &n);
    return put(out, p, n);
}

/* Renders a name into r (text: as it is; JSON: as a JSON string). */
static int render_name(sss_format *f, sss_buffer *r, const char *name, size_t n)
{
    if (f->mode == SSS_FORMAT_TEXT)
        return put(r, name, n);
    if (!valid_utf8((const unsigned char *)name, n))
        return SSS_ERR_FORMAT;
    return put_json_string(r, (const unsigned char *)name, n, f->mode == SSS_FORMAT_JSON_ASCII);
}

int sss_format_names(sss_format *f, const char *names, size_t len, const int *groups)
{
    if (!f->want_tab)
        return SSS_ERR_FORMAT;
    int ncol = f->want_ncol;
    if (f->nsections == f->cap) {
        int cap = f->cap ? 2 * f->cap : 8;
        section *grown = realloc(f->sections, sizeof(section) * (size_t)cap);
        if (!grown)
            return SSS_ERR_NOMEM;
        f->sections = grown;
        f->cap = cap;
    }
    section s = {NULL, ncol, NULL, NULL, NULL, NULL};
    sss_buffer r = {NULL, 0, 0, 0};
    size_t tlen = strlen(f->want_tab);
    int rc = SSS_ERR_NOMEM;
    s.table = malloc(tlen + 1);
    s.pk = malloc((size_t)ncol + 1);
    s.offsets = malloc(sizeof(size_t) * ((size_t)ncol + 2));
    if (!s.table || !s.pk || !s.offsets)
        goto fail;
    memcpy(s.table, f->want_tab, tlen + 1);
    memcpy(s.pk, f->want_pk, (size_t)ncol);
    s.offsets[0] = 0;
    if ((rc = render_name(f, &r, f->want_tab, tlen)) != 0)
        goto fail;
    size_t at = 0;
    for (int i = 0; i < ncol; i++) {
        const char *end = at < len ? memchr(names + at, 0, len - at) : NULL;
        if (!end) {
            rc = SSS_ERR_FORMAT;
            goto fail;
        }
        size_t n = (size_t)(end - (names + at));
        s.offsets[i + 1] = r.len;
        if ((rc = render_name(f, &r, names + at, n)) != 0)
            goto fail;
        at += n + 1;
    }
    s.offsets[ncol + 1] = r.len;
    if (at != len) {
        rc = SSS_ERR_FORMAT;
        goto fail;
    }
    if (groups) {
        s.groups = malloc(sizeof(int) * ((size_t)ncol + 1));
        if (!s.groups) {
            rc = SSS_ERR_NOMEM;
            goto fail;
        }
        for (int i = 0; i < ncol; i++) {
            if (groups[i] < 0 || groups[i] > i) {
                rc = SSS_ERR_FORMAT;
                goto fail;
            }
            s.groups[i] = groups[i];
        }
    }
    s.rendered = r.data ? r.data : malloc(1);
    if (!s.rendered) {
        rc = SSS_ERR_NOMEM;
        goto fail;
    }
    f->sections[f->nsections] = s;
    f->current = f->nsections++;
    return 0;
fail:
    if (rc == -1)
        rc = SSS_ERR_NOMEM;
    free(r.data);
    s.rendered = NULL;
    section_free(&s);
    return rc;
}

const char *sss_format_table(sss_format *f, int *ncol, const unsigned char **pk)
{
    *ncol = f->want_ncol;
    *pk = f->want_pk;
    return f->want_tab;
}

const char *sss_format_bad(sss_format *f, size_t *len)
{
    *len = f->bad_len;
    return f->bad;
}

/* -- rows ------------------------------------------------------------------------ */

/* The value a dict built from the record gives for column i's name: the
 * last defined column of its group (vals[i] when names are distinct). */
static sqlite3_value *lookup(const section *s, sqlite3_value **vals, int i)
{
    if (!s->groups)
        return vals[i];
    sqlite3_value *v = NULL;
    for (int k = s->groups[i]; k < s->ncol; k++)
        if (vals[k] && s->groups[k] == s->groups[i])
            v = vals[k];
    return v;
}

/* Whether column i is where a dict built from the record puts its name:
 * the first defined column of its group. */
static int dict_slot(const section *s, sqlite3_value **vals, int i)
{
    if (!vals[i])
        return 0;
    if (!s->groups)
        return 1;
    for (int j = 0; j < i; j++)
        if (vals[j] && s->groups[j] == s->groups[i])
            return 0;
    return 1;
}

#define TRY(expr)                                                                          \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        if (rc_)                                                                           \
            return rc_;                                                                    \
    } while (0)

/* The primary key's column names, ", " between them; with `old`, each as
 * name=value (the text UPDATE's key). */
static int put_key(sss_format *f, sss_buffer *out, const section *s, sqlite3_value **old)
{
    int n = 0;
    for (int i = 0; i < s->ncol; i++) {
        if (!s->pk[i])
            continue;
        if (n++)
            TRY(PUT_LIT(out, ", "));
        TRY(put_name(out, s, i));
        if (old) {
            TRY(put_char(out, '='));
            TRY(put_value(f, out, lookup(s, old, i)));
        }
    }
    return 0;
}

/* name=value, ... for a record (text) or {"name": value, ...} (JSON). */
static int put_row(sss_format *f, sss_buffer *out, const section *s, sqlite3_value **vals)
{
    int json = f->mode != SSS_FORMAT_TEXT;
    int n = 0;
    if (json)
        TRY(put_char(out, '{'));
    for (int i = 0; i < s->ncol; i++) {
        if (!dict_slot(s, vals, i))
            continue;
        if (n++)
            TRY(PUT_LIT(out, ", "));
        TRY(put_name(out, s, i));
        TRY(json ? PUT_LIT(out, ": ") : put_char(out, '='));
        TRY(put_value(f, out, lookup(s, vals, i)));
    }
    if (json)
        TRY(put_char(out, '}'));
    return 0;
}

static const char *const OPS[3] = {"INSERT", "UPDATE", "DELETE"};

static int op_index(int op)
{
    return op == SQLITE_INSERT ? 0 : op == SQLITE_UPDATE ? 1 : 2;
}

static int put_text_change(sss_format *f, sss_buffer *out, const section *s, int op,
                           int indirect, sqlite3_value **old, sqlite3_value **new)
{
    size_t tn;
    const char *tab = name_of(s, -1, &tn);
    TRY(put(out, f->prefix, f->prefix_len));
    TRY(put(out, OPS[op_index(op)], 6));
    TRY(put_char(out, ' '));
    TRY(put(out, tab, tn));
    if (op == SQLITE_UPDATE) {
        TRY(PUT_LIT(out, " ["));
        TRY(put_key(f, out, s, old));
        TRY(PUT_LIT(out, "] "));
        int n = 0;
        for (int i = 0; i < s->ncol; i++) {
            if (!dict_slot(s, new, i))
                continue;
            if (n++)
                TRY(PUT_LIT(out, ", "));
            TRY(put_name(out, s, i));
            TRY(PUT_LIT(out, ": "));
            TRY(put_value(f, out, lookup(s, old, i)));
            TRY(PUT_LIT(out, " -> "));
            TRY(put_value(f, out, lookup(s, new, i)));
        }
    } else {
        TRY(PUT_LIT(out, " ("));
        TRY(put_row(f, out, s, op == SQLITE_INSERT ? new : old));
        TRY(put_char(out, ')'));
    }
    if (indirect)
        TRY(PUT_LIT(out, " (indirect)"));
    return put_char(out, '\n');
}

static int put_json_change(sss_format *f, sss_buffer *out, const section *s, int op,
                           int indirect, sqlite3_value **old, sqlite3_value **new)
{
    size_t tn;
    const char *tab = name_of(s, -1, &tn);
    if (!f->first)
        TRY(PUT_LIT(out, ", "));
    TRY(PUT_LIT(out, "{\"table\": "));
    TRY(put(out, tab, tn));
    TRY(PUT_LIT(out, ", \"op\": \""));
    TRY(put(out, OPS[op_index(op)], 6));
    TRY(indirect ? PUT_LIT(out, "\", \"indirect\": true, \"pk\": [")
                 : PUT_LIT(out, "\", \"indirect\": false, \"pk\": ["));
    TRY(put_key(f, out, s, NULL));
    TRY(PUT_LIT(out, "], \"old\": "));
    TRY(op == SQLITE_INSERT ? PUT_LIT(out, "null") : put_row(f, out, s, old));
    TRY(PUT_LIT(out, ", \"new\": "));
    TRY(op == SQLITE_DELETE ? PUT_LIT(out, "null") : put_row(f, out, s, new));
    return put_char(out, '}');
}

/* Writes the change `it` stands at; 0, -1 (no memory), NEED_NAMES,
 * BAD_TEXT or an SQLite error code.  On failure out is left as it was. */
static int format_one(sss_format *f, sqlite3_changeset_iter *it, sss_buffer *out)
{
    const char *tab;
    int ncol, op, indirect = 0;
    unsigned char *pk;
    int rc = sss_change_head(it, &tab, &ncol, &op, &indirect, &pk);
    if (rc != SQLITE_OK)
        return rc;
    section *s = find_section(f, tab, ncol, pk);
    if (!s) {
        f->want_tab = tab;
        f->want_ncol = ncol;
        f->want_pk = pk;
        return SSS_FORMAT_NEED_NAMES;
    }
    if (f->vals_cap < ncol) {
        sqlite3_value **grown = realloc(f->vals, sizeof(*grown) * 2 * (size_t)ncol);
        if (!grown)
            return -1;
        f->vals = grown;
        f->vals_cap = ncol;
    }
    sqlite3_value **old = f->vals, **new = f->vals + ncol;
    for (int i = 0; i < ncol; i++) {
        old[i] = new[i] = NULL;
        if (op != SQLITE_INSERT && (rc = sqlite3changeset_old(it, i, &old[i])) != SQLITE_OK)
            return rc;
        if (op != SQLITE_DELETE && (rc = sqlite3changeset_new(it, i, &new[i])) != SQLITE_OK)
            return rc;
    }
    size_t start = out->len;
    rc = f->mode == SSS_FORMAT_TEXT ? put_text_change(f, out, s, op, indirect, old, new)
                                    : put_json_change(f, out, s, op, indirect, old, new);
    if (rc) {
        out->len = start;
        return rc;
    }
    f->first = 0;
    return 0;
}

int sss_format_changes(sss_format *f, sqlite3_changeset_iter *it, size_t max_bytes,
                       sss_buffer *out)
{
    int rc;
    out->len = 0;
    f->bad = NULL;
    f->bad_len = 0;
    if (f->pending) {
        f->pending = 0;
        rc = format_one(f, it, out);
        if (rc == SSS_FORMAT_NEED_NAMES)
            f->pending = 1;
        if (rc)
            return rc == -1 ? SSS_ERR_NOMEM : rc;
    }
    f->want_tab = NULL;
    while (out->len < max_bytes) {
        rc = sqlite3changeset_next(it);
        if (rc != SQLITE_ROW)
            return rc;
        rc = format_one(f, it, out);
        if (rc == SSS_FORMAT_NEED_NAMES)
            f->pending = 1;
        if (rc)
            return rc == -1 ? SSS_ERR_NOMEM : rc;
    }
    return SQLITE_ROW;
}

sss_format *sss_format_new(int mode, const char *prefix, size_t prefix_len)
{
    if (mode != SSS_FORMAT_TEXT && mode != SSS_FORMAT_JSON && mode != SSS_FORMAT_JSON_ASCII)
        return NULL;
    sss_format *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->prefix = malloc(prefix_len + 1);
    if (!f->prefix) {
        free(f);
        return NULL;
    }
    if (prefix_len)
        memcpy(f->prefix, prefix, prefix_len);
    f->prefix_len = prefix_len;
    f->mode = mode;
    f->first = 1;
    f->current = -1;
    return f;
}

void sss_format_free(sss_format *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->nsections; i++)
        section_free(&f->sections[i]);
    free(f->sections);
    free(f->vals);
    free(f->prefix);
    free(f);
}
