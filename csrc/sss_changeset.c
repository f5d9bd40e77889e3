/*
 * sss_changeset.c - per-change loops of the session extension, in C.
 *
 * A change is written in marshal format as the tuple
 *     (table, op, old, new, pk, indirect)
 * table: str; op: "INSERT" | "UPDATE" | "DELETE"; old / new: a tuple of the
 * column values, or None when the change has no such record (INSERT has no
 * old, DELETE no new); a value the record leaves undefined (an UPDATE's
 * unchanged column, a patchset's omitted one) is written as Ellipsis ('.'),
 * which no SQL value can be, so it stays distinct from NULL (None).
 * pk: a tuple of ints, one per column, 0 or the column's position in the
 * primary key as recorded in the changeset's table header; indirect: bool.
 *
 * In a batch, the table name, op and pk tuple are written once with marshal's
 * reference flag and referred to afterwards, so marshal.loads creates each
 * once per batch and every Change shares them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sss_changeset.h"
#include "marshal_format.h"
#include "marshal_write.h"

#define M_ELLIPSIS '.'
#define M_REF 'r'
#define M_INTERNED 't'
#define M_SHORT_ASCII_INTERNED 'Z'

/* Reference bookkeeping for one batch (one marshal.loads). */
typedef struct refs {
    int count;       /* objects written with the reference flag so far */
    int op_ref[3];   /* INSERT, UPDATE, DELETE: ref index or -1 */
    int tab_ref;     /* current section's table name, or -1 */
    int pk_ref;      /* current section's pk tuple, or -1 */
    /* The current section's key: ncol, pk bytes, table name.  Keys longer
     * than the array are never matched, which only costs sharing. */
    int key_len;
    unsigned char key[512];
} refs;

static void refs_init(refs *r)
{
    r->count = 0;
    r->op_ref[0] = r->op_ref[1] = r->op_ref[2] = -1;
    r->tab_ref = r->pk_ref = -1;
    r->key_len = -1;
}

static int put_ref(sss_buffer *out, int index)
{
    if (sss_buffer_reserve(out, 5))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = M_REF;
    m_put_le32(p + 1, (uint32_t)index);
    out->len += 5;
    return 0;
}

static int op_index(int op)
{
    return op == SQLITE_INSERT ? 0 : op == SQLITE_UPDATE ? 1 : 2;
}

static const char *const OP_NAMES[3] = {"INSERT", "UPDATE", "DELETE"};

static int put_op(sss_buffer *out, int op, refs *r)
{
    int i = op_index(op);
    if (r && r->op_ref[i] >= 0)
        return put_ref(out, r->op_ref[i]);
    if (sss_buffer_reserve(out, 8))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)(M_SHORT_ASCII_INTERNED | (r ? M_FLAG_REF : 0));
    p[1] = 6;
    memcpy(p + 2, OP_NAMES[i], 6);
    out->len += 8;
    if (r)
        r->op_ref[i] = r->count++;
    return 0;
}

static int put_table(sss_buffer *out, const char *tab, refs *r)
{
    size_t n = strlen(tab);
    if (n > 0x7fffffff || sss_buffer_reserve(out, 5 + n))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = (unsigned char)(M_INTERNED | (r ? M_FLAG_REF : 0));
    m_put_le32(p + 1, (uint32_t)n);
    memcpy(p + 5, tab, n);
    out->len += 5 + n;
    if (r)
        r->tab_ref = r->count++;
    return 0;
}

static int put_pk(sss_buffer *out, const unsigned char *pk, int ncol, refs *r)
{
    if (sss_buffer_reserve(out, 5 + 5 * (size_t)ncol))
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    unsigned char flag = r ? M_FLAG_REF : 0;
    if (ncol < 256) {
        p[0] = (unsigned char)(M_SMALL_TUPLE | flag);
        p[1] = (unsigned char)ncol;
        out->len += 2;
    } else {
        p[0] = (unsigned char)(M_TUPLE | flag);
        m_put_le32(p + 1, (uint32_t)ncol);
        out->len += 5;
    }
    if (r)
        r->pk_ref = r->count++;
    for (int i = 0; i < ncol; i++) {
        p = (unsigned char *)out->data + out->len;
        p[0] = M_INT;
        m_put_le32(p + 1, pk[i]);
        out->len += 5;
    }
    return 0;
}

/* Writes old (is_new 0) or new (is_new 1) values, or the conflicting row
 * (is_new 2); None when the op has no such record. */
static int put_record(sqlite3_changeset_iter *it, int op, int ncol, int which,
                      sss_buffer *out)
{
    if ((which == 0 && op == SQLITE_INSERT) || (which == 1 && op == SQLITE_DELETE))
        return sss_put_code(out, M_NONE);
    if (sss_put_tuple_header(out, ncol))
        return -1;
    for (int i = 0; i < ncol; i++) {
        sqlite3_value *v = NULL;
        int rc = which == 0 ? sqlite3changeset_old(it, i, &v)
               : which == 1 ? sqlite3changeset_new(it, i, &v)
                            : sqlite3changeset_conflict(it, i, &v);
        if (rc != SQLITE_OK)
            return rc;
        if (v == NULL) {
            if (sss_put_code(out, M_ELLIPSIS))
                return -1;
        } else if (sss_put_value(out, v)) {
            return -1;
        }
    }
    return 0;
}

/* The section key of the current change, for sharing references. */
static int same_section(refs *r, const char *tab, int ncol, const unsigned char *pk)
{
    size_t tlen = strlen(tab);
    size_t need = sizeof(int) + (size_t)ncol + tlen;
    unsigned char *k = r->key;
    if (need > sizeof(r->key)) {
        r->key_len = -1;
        return 0;
    }
    if (r->key_len == (int)need && memcmp(k, &ncol, sizeof(int)) == 0 &&
        memcmp(k + sizeof(int), pk, (size_t)ncol) == 0 &&
        memcmp(k + sizeof(int) + ncol, tab, tlen) == 0)
        return 1;
    memcpy(k, &ncol, sizeof(int));
    memcpy(k + sizeof(int), pk, (size_t)ncol);
    memcpy(k + sizeof(int) + ncol, tab, tlen);
    r->key_len = (int)need;
    return 0;
}

int sss_change_head(sqlite3_changeset_iter *it, const char **tab, int *ncol, int *op,
                    int *indirect, unsigned char **pk)
{
    *tab = NULL;
    *ncol = *op = 0;
    *pk = NULL;
    int rc = sqlite3changeset_op(it, tab, ncol, op, indirect);
    if (rc != SQLITE_OK)
        return rc;
    if (*op != SQLITE_INSERT && *op != SQLITE_UPDATE && *op != SQLITE_DELETE)
        return SQLITE_CORRUPT;
    rc = sqlite3changeset_pk(it, pk, NULL);
    if (rc != SQLITE_OK)
        return rc;
    if (!*tab || (!*pk && *ncol) || *ncol < 0)
        return SQLITE_CORRUPT;
    return SQLITE_OK;
}

/* Writes the change `it` points at: the 6-tuple, or with conflict_type >= 0
 * the 7-tuple that adds the conflicting row.  Returns 0, -1 (no memory) or an
 * SQLite error code. */
static int put_change(sqlite3_changeset_iter *it, sss_buffer *out, refs *r, int conflict_type)
{
    const char *tab;
    int ncol, op, indirect = 0;
    unsigned char *pk;
    int rc = sss_change_head(it, &tab, &ncol, &op, &indirect, &pk);
    if (rc != SQLITE_OK)
        return rc;
    if (sss_put_tuple_header(out, conflict_type >= 0 ? 7 : 6))
        return -1;
    int shared = r && same_section(r, tab, ncol, pk) && r->tab_ref >= 0;
    if (shared ? put_ref(out, r->tab_ref) : put_table(out, tab, r))
        return -1;
    if (put_op(out, op, r))
        return -1;
    if ((rc = put_record(it, op, ncol, 0, out)) != 0)
        return rc;
    if ((rc = put_record(it, op, ncol, 1, out)) != 0)
        return rc;
    if (shared ? put_ref(out, r->pk_ref) : put_pk(out, pk, ncol, r))
        return -1;
    if (sss_put_code(out, indirect ? M_TRUE : M_FALSE))
        return -1;
    if (conflict_type >= 0) {
        if (conflict_type == SQLITE_CHANGESET_DATA || conflict_type == SQLITE_CHANGESET_CONFLICT)
            rc = put_record(it, op, ncol, 2, out);
        else
            rc = sss_put_code(out, M_NONE);
    }
    return rc;
}

static int start_list(sss_buffer *out)
{
    out->len = 0;
    if (sss_buffer_reserve(out, 5))
        return -1;
    out->data[0] = M_LIST;
    out->len = 5; /* the count is patched in at the end */
    return 0;
}

int sss_changeset_walk(sqlite3_changeset_iter *it, int max_changes, size_t max_bytes,
                       sss_buffer *out, int *n)
{
    refs r;
    int rc = SQLITE_ROW;
    int count = 0;

    refs_init(&r);
    *n = 0;
    if (start_list(out))
        return SSS_ERR_NOMEM;
    while (count < max_changes && out->len < max_bytes) {
        rc = sqlite3changeset_next(it);
        if (rc != SQLITE_ROW)
            break;
        int wrc = put_change(it, out, &r, -1);
        if (wrc) {
            rc = wrc < 0 ? SSS_ERR_NOMEM : wrc;
            break;
        }
        count++;
    }
    m_put_le32((unsigned char *)out->data + 1, (uint32_t)count);
    *n = count;
    return rc;
}

typedef struct section {
    const char *tab;
    int ncol;
    const unsigned char *pk;
    long long counts[3]; /* INSERT, UPDATE, DELETE */
} section;

static int put_section(sss_buffer *out, section *s)
{
    if (sss_put_tuple_header(out, 6) || sss_put_text(out, (const unsigned char *)s->tab,
                                                     (int)strlen(s->tab)) ||
        sss_put_int64(out, s->ncol) ||
        sss_put_bytes(out, M_STRING, s->pk, s->ncol) || sss_put_int64(out, s->counts[0]) ||
        sss_put_int64(out, s->counts[1]) || sss_put_int64(out, s->counts[2]))
        return -1;
    return 0;
}

int sss_change_describe(sqlite3_changeset_iter *it, int conflict_type, sss_buffer *out)
{
    out->len = 0;
    int rc = put_change(it, out, NULL, conflict_type < 0 ? 0 : conflict_type);
    return rc < 0 ? SSS_ERR_NOMEM : rc;
}

int sss_changegroup_fill(sqlite3_changeset_iter *it, sqlite3_changegroup *grp,
                         int max_changes, int *n)
{
    int rc = SQLITE_ROW;
    int count = 0;
    while (count < max_changes) {
        rc = sqlite3changeset_next(it);
        if (rc != SQLITE_ROW)
            break;
        rc = sqlite3changegroup_add_change(grp, it);
        if (rc != SQLITE_OK)
            break;
        rc = SQLITE_ROW;
        count++;
    }
    *n = count;
    return rc;
}

/* ------------------------------------------------------------------------
 * Reading a changeset or patchset blob directly.
 *
 * sqlite3changeset_next() builds an sqlite3_value (and a heap copy of every
 * text and blob) for each field, which sss_changeset_walk() then reads back
 * out: about half of iteration time.  The wire format is simple and
 * documented in sqlite3session.c ("CHANGESET FORMAT", "PATCHSET FORMAT",
 * "RECORD FORMAT"), so iteration reads it here instead, writing exactly what
 * sss_changeset_walk() writes for the same bytes.  Every rule mirrors
 * sessionChangesetNextOne() / sessionReadRecord() / the table-header readers
 * of SQLite 3.54.1, including what they tolerate (unknown value types read as
 * NULL, NaN reals read as NULL, undefined values in INSERT records) and what
 * they refuse (SQLITE_CORRUPT).  tests/sessions/test_changeset_parse.py holds the two
 * walkers to the same output on generated and corrupted inputs.
 * ---------------------------------------------------------------------- */

#define T_UNDEFINED 0
#define T_INTEGER 1
#define T_FLOAT 2
#define T_TEXT 3
#define T_BLOB 4

typedef struct field {
    int type;                /* 0 = undefined, else the record's type byte */
    const unsigned char *p;  /* the 8 bytes of an integer/real, or the text/blob */
    int n;                   /* text/blob length */
} field;

/* sessionVarintGetSafe(): an SQLite varint read through a zero-padded copy
 * when fewer than 9 bytes remain, clamped to 32 bits and masked to 31 like
 * sessionVarintGet().  Returns the bytes consumed (possibly past the end:
 * the callers' bounds checks then fail, as SQLite's do). */
static int varint31(const unsigned char *p, size_t remaining, int *value)
{
    unsigned char copy[9];
    if (remaining < sizeof(copy)) {
        memset(copy, 0, sizeof(copy));
        memcpy(copy, p, remaining);
        p = copy;
    }
    uint64_t v = 0;
    int used = 9;
    for (int i = 0; i < 8; i++) {
        v = (v << 7) | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            used = i + 1;
            break;
        }
    }
    if (used == 9)
        v = (v << 8) | p[8];
    uint32_t v32 = v > 0xffffffffu ? 0xffffffffu : (uint32_t)v;
    *value = (int)(v32 & 0x7fffffff);
    return used;
}

/* A table header starting after its 'T'/'P' byte at *pos: sets ncol, pk, tab
 * and moves *pos past it (sessionChangesetBufferTblhdr + ReadTblhdr). */
static int read_table_header(const unsigned char *d, size_t len, size_t *pos, int *ncol,
                             const unsigned char **pk, const char **tab)
{
    int n = 0;
    size_t at = *pos;
    size_t used = (size_t)varint31(d + at, len - at, &n);
    if (n > 65536 || n <= 0)
        return SQLITE_CORRUPT;
    size_t scan = at + used + (size_t)n;
    while (scan < len && d[scan])
        scan++;
    if (scan >= len)
        return SQLITE_CORRUPT; /* no nul terminator: truncated */
    *ncol = n;
    *pk = d + at + used;
    *tab = (const char *)(d + at + used + n);
    *pos = scan + 1;
    return SQLITE_OK;
}

/* sessionReadRecord(): ncol fields, or only the primary key ones when
 * only_pk is given (a patchset's DELETE). */
static int read_record(const unsigned char *d, size_t len, size_t *pos, int ncol,
                       const unsigned char *only_pk, field *f)
{
    for (int i = 0; i < ncol; i++) {
        f[i].type = T_UNDEFINED;
        if (only_pk && only_pk[i] == 0)
            continue;
        if (*pos >= len)
            return SQLITE_CORRUPT;
        int type = d[(*pos)++];
        f[i].type = type;
        if (type == T_TEXT || type == T_BLOB) {
            int nbytes = 0;
            *pos += (size_t)varint31(d + *pos, len - *pos, &nbytes);
            if (*pos > len || (size_t)nbytes > len - *pos)
                return SQLITE_CORRUPT;
            f[i].p = d + *pos;
            f[i].n = nbytes;
            *pos += (size_t)nbytes;
        } else if (type == T_INTEGER || type == T_FLOAT) {
            if (len - *pos < 8)
                return SQLITE_CORRUPT;
            f[i].p = d + *pos;
            *pos += 8;
        }
    }
    return SQLITE_OK;
}

static int put_field(sss_buffer *out, const field *f)
{
    switch (f->type) {
    case T_UNDEFINED:
        return sss_put_code(out, M_ELLIPSIS);
    case T_INTEGER:
    case T_FLOAT: {
        const unsigned char *p = f->p;
        uint64_t x = ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
                     ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
                     ((uint64_t)p[6] << 8) | (uint64_t)p[7];
        if (f->type == T_INTEGER)
            return sss_put_int64(out, (sqlite3_int64)x);
        double v;
        memcpy(&v, &x, sizeof(v));
        if (v != v)
            return sss_put_code(out, M_NONE); /* SQLite reads a NaN as NULL */
        return sss_put_double(out, v);
    }
    case T_TEXT:
        return sss_put_text(out, f->p, f->n);
    case T_BLOB:
        return sss_put_bytes(out, M_STRING, f->p, f->n);
    default: /* SQLITE_NULL, and type bytes SQLite does not know, read as NULL */
        return sss_put_code(out, M_NONE);
    }
}

static int put_fields(sss_buffer *out, const field *f, int ncol)
{
    if (sss_put_tuple_header(out, ncol))
        return -1;
    for (int i = 0; i < ncol; i++)
        if (put_field(out, &f[i]))
            return -1;
    return 0;
}

/* Grows the two-record field array to hold 2 * ncol fields. */
static int reserve_fields(field **f, int *cap, int ncol)
{
    if (*cap >= ncol)
        return 0;
    field *grown = realloc(*f, sizeof(field) * 2 * (size_t)ncol);
    if (!grown)
        return -1;
    *f = grown;
    *cap = ncol;
    return 0;
}

int sss_changeset_parse(const unsigned char *data, size_t len, sss_parse_state *st,
                        int max_changes, size_t max_bytes, sss_buffer *out, int *n)
{
    refs r;
    field *f = NULL; /* old record at f[0..ncol), new at f[ncol..2*ncol) */
    int cap = 0;
    int ncol = 0;
    const unsigned char *pk = NULL;
    const char *tab = NULL;
    int section_written = 0; /* this batch has written the section's refs */
    int count = 0;
    int rc = SQLITE_ROW;

    refs_init(&r);
    *n = 0;
    if (start_list(out))
        return SSS_ERR_NOMEM;
    if (st->have_table) {
        /* Re-read the current section's header: it was valid last batch. */
        size_t at = st->hdr;
        if (read_table_header(data, len, &at, &ncol, &pk, &tab) != SQLITE_OK)
            return SQLITE_CORRUPT;
        if (reserve_fields(&f, &cap, ncol))
            return SSS_ERR_NOMEM;
    }
    while (count < max_changes && out->len < max_bytes) {
        size_t pos = st->pos;
        if (pos >= len) {
            rc = SQLITE_DONE;
            break;
        }
        int op = data[pos++];
        while (op == 'T' || op == 'P') {
            st->patchset = op == 'P';
            st->hdr = pos;
            rc = read_table_header(data, len, &pos, &ncol, &pk, &tab);
            if (rc != SQLITE_OK)
                goto done;
            if (reserve_fields(&f, &cap, ncol)) {
                rc = SSS_ERR_NOMEM;
                goto done;
            }
            st->have_table = 1;
            section_written = 0;
            st->pos = pos;
            if (pos >= len) {
                rc = SQLITE_DONE;
                goto done;
            }
            op = data[pos++];
        }
        rc = SQLITE_ROW;
        if (!st->have_table || (op != SQLITE_INSERT && op != SQLITE_UPDATE && op != SQLITE_DELETE) ||
            pos >= len) {
            rc = SQLITE_CORRUPT;
            break;
        }
        int indirect = data[pos++];
        field *old = f, *new = f + ncol;
        int patchset = st->patchset;
        if (op != SQLITE_INSERT && (!patchset || op == SQLITE_DELETE)) {
            rc = read_record(data, len, &pos, ncol, patchset ? pk : NULL, old);
            if (rc != SQLITE_OK)
                break;
        }
        if (op != SQLITE_DELETE) {
            rc = read_record(data, len, &pos, ncol, NULL, new);
            if (rc != SQLITE_OK)
                break;
        }
        if (patchset && op == SQLITE_UPDATE) {
            /* A patchset's UPDATE holds one record: move its key fields to
             * old, where a changeset has them. */
            for (int i = 0; i < ncol; i++) {
                old[i].type = T_UNDEFINED;
                if (pk[i]) {
                    if (new[i].type == T_UNDEFINED) {
                        rc = SQLITE_CORRUPT;
                        goto done;
                    }
                    old[i] = new[i];
                    new[i].type = T_UNDEFINED;
                }
            }
        } else if (op == SQLITE_UPDATE) {
            /* Old values of columns the update does not change are dropped
             * (the rebaser once wrote them). */
            for (int i = 0; i < ncol; i++)
                if (pk[i] == 0 && new[i].type == T_UNDEFINED)
                    old[i].type = T_UNDEFINED;
        }
        rc = SQLITE_ROW;
        int shared = section_written;
        if (sss_put_tuple_header(out, 6) ||
            (shared ? put_ref(out, r.tab_ref) : put_table(out, tab, &r)) ||
            put_op(out, op, &r) ||
            (op == SQLITE_INSERT ? sss_put_code(out, M_NONE) : put_fields(out, old, ncol)) ||
            (op == SQLITE_DELETE ? sss_put_code(out, M_NONE) : put_fields(out, new, ncol)) ||
            (shared ? put_ref(out, r.pk_ref) : put_pk(out, pk, ncol, &r)) ||
            sss_put_code(out, indirect ? M_TRUE : M_FALSE)) {
            rc = SSS_ERR_NOMEM;
            break;
        }
        section_written = 1;
        st->pos = pos;
        count++;
    }
done:
    free(f);
    m_put_le32((unsigned char *)out->data + 1, (uint32_t)count);
    *n = count;
    return rc;
}

/* ----------------------------------------------------------------------
 * sss_changeset_summary(): the table sections of a changeset read through
 * an xInput callback (or from a blob), counted without decoding a value.
 *
 * `show` prints the summary line before the first change, so this pass
 * stands between the user and the first output: through
 * sqlite3changeset_next() (which makes an sqlite3_value of every field) it
 * took about 3 s for 1 GB; reading the records' lengths only is bound by
 * the read itself.  The checks are sss_changeset_parse()'s, which
 * tests/sessions/test_changeset_parse.py holds to SQLite's iterator;
 * test_changeset_summary.py holds this pass to the iterator's counts.
 * Memory: one input chunk (a table header longer than that grows it, as
 * SQLite's own stream reader does); text and blob values are skipped
 * without being held, whatever their size.
 * ---------------------------------------------------------------------- */

#define SCAN_CHUNK (1024 * 1024)

typedef struct instream {
    int (*input)(void *, void *, int *); /* NULL: the whole input is in buf */
    void *ctx;
    unsigned char *buf;
    size_t cap, start, end; /* unread bytes are buf[start..end) */
    int eof;
    int rc; /* the input's error, once it has failed */
} instream;

/* Makes `want` bytes readable at buf + start, or all that is left at the
 * end of the input.  Returns the bytes readable, or -1 on an input error
 * (in->rc) or when the buffer cannot grow (SSS_ERR_NOMEM). */
static long long readable(instream *in, size_t want)
{
    while (in->end - in->start < want && !in->eof) {
        if (in->start > 0) {
            memmove(in->buf, in->buf + in->start, in->end - in->start);
            in->end -= in->start;
            in->start = 0;
        }
        size_t need = in->end + (want > SCAN_CHUNK ? want : SCAN_CHUNK);
        if (need > in->cap) {
            unsigned char *grown = realloc(in->buf, need);
            if (!grown) {
                in->rc = SSS_ERR_NOMEM;
                return -1;
            }
            in->buf = grown;
            in->cap = need;
        }
        size_t room = in->cap - in->end;
        int n = room > 0x40000000 ? 0x40000000 : (int)room;
        int rc = in->input(in->ctx, in->buf + in->end, &n);
        if (rc != SQLITE_OK) {
            in->rc = rc;
            return -1;
        }
        if (n <= 0)
            in->eof = 1;
        else
            in->end += (size_t)n;
    }
    return (long long)(in->end - in->start);
}

/* Consumes n bytes without keeping them: SQLITE_OK, SQLITE_CORRUPT when the
 * input ends first, or -1 on an input error. */
static int skip(instream *in, size_t n)
{
    for (;;) {
        size_t have = in->end - in->start;
        if (have >= n) {
            in->start += n;
            return SQLITE_OK;
        }
        n -= have;
        in->start = in->end = 0;
        long long got = readable(in, n < SCAN_CHUNK ? n : SCAN_CHUNK);
        if (got < 0)
            return -1;
        if (got == 0)
            return SQLITE_CORRUPT;
    }
}

/* One record (read_record()'s rules) consumed: ncol fields, or the primary
 * key ones only when only_pk is given.  With key_defined, a primary key
 * field left undefined is corrupt (a patchset's UPDATE). */
static int skip_record(instream *in, int ncol, const unsigned char *only_pk,
                       const unsigned char *key_defined)
{
    for (int i = 0; i < ncol; i++) {
        if (only_pk && only_pk[i] == 0)
            continue;
        long long got = readable(in, 1);
        if (got < 0)
            return -1;
        if (got == 0)
            return SQLITE_CORRUPT;
        int type = in->buf[in->start++];
        if (key_defined && key_defined[i] && type == T_UNDEFINED)
            return SQLITE_CORRUPT;
        size_t n = 0;
        if (type == T_TEXT || type == T_BLOB) {
            got = readable(in, 9);
            if (got < 0)
                return -1;
            int nbytes = 0;
            int used = varint31(in->buf + in->start, (size_t)got, &nbytes);
            if (used > got)
                return SQLITE_CORRUPT;
            in->start += (size_t)used;
            n = (size_t)nbytes;
        } else if (type == T_INTEGER || type == T_FLOAT) {
            n = 8;
        }
        int rc = skip(in, n);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* A table header after its 'T'/'P' byte (read_table_header()'s rules),
 * copied into hdr as ncol (an int), the pk flags and the nul-terminated
 * name, since the input buffer moves on. */
static int scan_table_header(instream *in, sss_buffer *hdr)
{
    long long got = readable(in, 9);
    if (got < 0)
        return -1;
    int ncol = 0;
    int used = varint31(in->buf + in->start, (size_t)got, &ncol);
    if (ncol > 65536 || ncol <= 0 || used > got)
        return SQLITE_CORRUPT;
    size_t scan = (size_t)used + (size_t)ncol; /* from in->start */
    for (;;) {
        got = readable(in, scan + 1);
        if (got < 0)
            return -1;
        if ((size_t)got <= scan)
            return SQLITE_CORRUPT; /* no nul terminator: truncated */
        unsigned char *nul = memchr(in->buf + in->start + scan, 0, (size_t)got - scan);
        if (nul) {
            scan = (size_t)(nul - (in->buf + in->start));
            break;
        }
        scan = (size_t)got;
    }
    size_t keep = sizeof(int) + scan - (size_t)used + 1;
    hdr->len = 0;
    if (sss_buffer_reserve(hdr, keep)) {
        in->rc = SSS_ERR_NOMEM;
        return -1;
    }
    memcpy(hdr->data, &ncol, sizeof(int));
    memcpy(hdr->data + sizeof(int), in->buf + in->start + used, scan - (size_t)used + 1);
    hdr->len = keep;
    in->start += scan + 1;
    return SQLITE_OK;
}

static int summarize(instream *in, sss_buffer *out, long long *nchanges, uint32_t *nsections)
{
    sss_buffer hdr = {NULL, 0, 0, 0};  /* the last table header read */
    sss_buffer cur = {NULL, 0, 0, 0};  /* the current section's header */
    section sec = {NULL, 0, NULL, {0, 0, 0}};
    int patchset = 0;
    int rc;
    for (;;) {
        long long got = readable(in, 1);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) {
            rc = SQLITE_DONE;
            break;
        }
        int op = in->buf[in->start++];
        if (op == 'T' || op == 'P') {
            patchset = op == 'P';
            if ((rc = scan_table_header(in, &hdr)) != SQLITE_OK)
                break;
            continue;
        }
        if (hdr.len == 0 || (op != SQLITE_INSERT && op != SQLITE_UPDATE && op != SQLITE_DELETE)) {
            rc = SQLITE_CORRUPT;
            break;
        }
        if ((got = readable(in, 1)) <= 0) { /* the indirect flag */
            rc = got < 0 ? -1 : SQLITE_CORRUPT;
            break;
        }
        in->start++;
        int ncol;
        memcpy(&ncol, hdr.data, sizeof(int));
        const unsigned char *pk = (const unsigned char *)hdr.data + sizeof(int);
        rc = SQLITE_OK;
        if (op != SQLITE_INSERT && (!patchset || op == SQLITE_DELETE))
            rc = skip_record(in, ncol, patchset ? pk : NULL, NULL);
        if (rc == SQLITE_OK && op != SQLITE_DELETE)
            rc = skip_record(in, ncol, NULL, patchset && op == SQLITE_UPDATE ? pk : NULL);
        if (rc != SQLITE_OK)
            break;
        if (cur.len != hdr.len || memcmp(cur.data, hdr.data, hdr.len) != 0) {
            if (sec.tab && put_section(out, &sec)) {
                rc = SSS_ERR_NOMEM;
                break;
            }
            if (sec.tab)
                (*nsections)++;
            cur.len = 0;
            if (sss_buffer_reserve(&cur, hdr.len)) {
                rc = SSS_ERR_NOMEM;
                break;
            }
            memcpy(cur.data, hdr.data, hdr.len);
            cur.len = hdr.len;
            sec.ncol = ncol;
            sec.pk = (const unsigned char *)cur.data + sizeof(int);
            sec.tab = cur.data + sizeof(int) + ncol;
            sec.counts[0] = sec.counts[1] = sec.counts[2] = 0;
        }
        sec.counts[op_index(op)]++;
        (*nchanges)++;
    }
    if (rc == -1)
        rc = in->rc;
    if (rc == SQLITE_DONE && sec.tab) {
        if (put_section(out, &sec))
            rc = SSS_ERR_NOMEM;
        else
            (*nsections)++;
    }
    sss_buffer_free(&hdr);
    sss_buffer_free(&cur);
    return rc;
}

int sss_changeset_summary(int (*input)(void *, void *, int *), void *ctx,
                          const unsigned char *data, size_t len, sss_buffer *out,
                          long long *nchanges)
{
    instream in = {input, ctx, NULL, 0, 0, 0, 0, SQLITE_OK};
    if (!input) {
        in.buf = (unsigned char *)data;
        in.cap = in.end = len;
        in.eof = 1;
    }
    uint32_t nsections = 0;
    *nchanges = 0;
    if (start_list(out))
        return SSS_ERR_NOMEM;
    int rc = summarize(&in, out, nchanges, &nsections);
    if (input)
        free(in.buf);
    m_put_le32((unsigned char *)out->data + 1, nsections);
    return rc;
}
