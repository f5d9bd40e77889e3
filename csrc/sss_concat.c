/*
 * sss_concat.c - concatenating two streamed changesets in bounded memory.
 *
 * sqlite3changeset_concat_strm() streams its input and output but adds every
 * change to one change group: its memory grows with the changesets.  A change
 * group only combines a change with an earlier one for the same table and the
 * same primary-key bytes (sessionChangeEqual() compares the serialized key
 * fields with memcmp; table names are matched with sqlite3_strnicmp(), ASCII
 * case folding).  So the changes can be partitioned by a hash of (folded
 * table name, key values) and each partition concatenated in a group of its
 * own: the K outputs, one after another, hold exactly the changes the single
 * group would hold, merged the same way.  Only their order differs (a
 * changeset may contain several sections for one table; SQLite's iterator,
 * change groups and apply all accept that).
 *
 * The passes (sessions/stream.py drives them):
 *
 *   scan       a, then b, once: every change gets the checks a change group
 *              makes across the whole inputs (they cannot be left to the
 *              partitions, which each see only part of the changes): the
 *              same column count and primary key for a table throughout,
 *              and changeset and patchset changes not mixed.  It counts the
 *              changes (to choose K) and records each table's first name and
 *              header, in order of appearance.
 *   partition p of K: a then b again; the changes whose hash is p modulo K
 *              go to a fresh group with sqlite3changegroup_add_change(), the
 *              group is written with sqlite3changegroup_output_strm() and
 *              deleted.
 *
 * The key hash is computed from the values SQLite's iterator decodes, which
 * are a function of the key's bytes: changes SQLite would combine always hash
 * alike (the converse is not needed).
 *
 * Seeding.  A group writes its tables in the order their first change
 * arrived, under the name that change spelled.  Each partition's group is
 * first given, for every scanned table in scan order, an INSERT and a DELETE
 * of a dummy row under the table's first name and header: they cancel (an
 * INSERT followed by a DELETE of the same key leaves nothing, and a table
 * without changes writes no section), but the table is now known to the
 * group, so every partition writes its sections in SQLite's order, named as
 * the single group names them.
 *
 * Framing.  The scan reads each input through SQLite's public iterator,
 * which decodes every value; a change group is filled from the raw records,
 * and sqlite3changeset_concat() reads them with sessionChangesetBufferRecord(),
 * which refuses a value type it does not know, where the decoding iterator
 * reads it as a one-byte NULL.  Add such a record to a group and the output
 * carries the unknown byte: garbage.  So the scan also walks the raw bytes
 * as they arrive (a wrapper around xInput): table headers, the op and
 * indirect bytes, and each record's fields with the types 0 (undefined), 1-5
 * only.  The same walk knows each section's kind ('T' changeset, 'P'
 * patchset), which the public API does not tell: a change group learns its
 * kind from the first change and refuses any other kind (SQLITE_ERROR); the
 * walk applies that rule across both inputs.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sqlite3.h"
#include "sss.h"
#include "sss_concat.h"

typedef struct concat_table {
    char *name;             /* first spelling seen (malloc'ed) */
    unsigned char *pk;      /* the header's primary-key flags, ncol bytes */
    int ncol;
    uint64_t hash;          /* hash of the ASCII-folded name */
} concat_table;

/* Where the raw walk is (see "Framing" above). */
enum {
    W_CHANGE,       /* at a change or table header, or at the end */
    W_NCOL,         /* in a header's column count (varint) */
    W_PK,           /* in a header's primary-key flags */
    W_NAME,         /* in a header's table name, up to its NUL */
    W_INDIRECT,     /* at a change's indirect flag */
    W_TYPE,         /* at a field's type byte */
    W_SKIP,         /* in a field's fixed-size or counted payload */
    W_LEN           /* in a text or blob field's length (varint) */
};

typedef struct walk {
    int state;
    int kind;            /* the current section's: 0 'T', 1 'P', -1 none yet */
    uint64_t varint;     /* the varint being read */
    int varint_len;
    int ncol;            /* the current section's column count */
    int npk;             /* ... and its primary-key column count */
    int todo;            /* primary-key flags or payload bytes left */
    int fields;          /* fields of the change left after the current one */
    int op;
    char name[256];      /* the current section's name (truncated) */
    int name_len;
} walk;

struct sss_concat {
    concat_table *tabs;
    int ntabs;
    int captabs;
    int *index;             /* open addressing over tabs: entry + 1, 0 empty */
    int nindex;             /* a power of two, > 2 * ntabs */
    int last;               /* the entry the previous change used, or -1 */
    long long changes;
    int patchset;           /* -1 until the first change */
    int reason;
    const char *reason_table;
    sss_buffer seed;        /* the seeding changeset, built as tables appear */
    walk w;                 /* the raw walk of the input being scanned */
};

/* ---- small helpers ---------------------------------------------------- */

static unsigned char fold(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

static int names_equal(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x && fold(*x) == fold(*y)) {
        x++;
        y++;
    }
    return *x == 0 && *y == 0;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t hash_bytes(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t hash_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return hash_bytes(h, b, 8);
}

static uint64_t fold_hash(const char *name)
{
    uint64_t h = FNV_OFFSET;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= fold(*p);
        h *= FNV_PRIME;
    }
    return h;
}

/* MurmurHash3's finalizer: FNV's low bits alone spread poorly modulo K. */
static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* One key value: its type (0 for a value the record leaves undefined, which
 * serializes differently from NULL) and its content. */
static uint64_t hash_value(uint64_t h, sqlite3_value *v)
{
    if (v == NULL)
        return hash_u64(h, 0);
    int type = sqlite3_value_type(v);
    h = hash_u64(h, (uint64_t)type);
    switch (type) {
    case SQLITE_INTEGER:
        return hash_u64(h, (uint64_t)sqlite3_value_int64(v));
    case SQLITE_FLOAT: {
        double d = sqlite3_value_double(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return hash_u64(h, bits);
    }
    case SQLITE_TEXT: {
        const unsigned char *p = sqlite3_value_text(v);
        int n = sqlite3_value_bytes(v);
        return p ? hash_bytes(h, p, (size_t)n) : h;
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_value_blob(v);
        int n = sqlite3_value_bytes(v);
        return p ? hash_bytes(h, (const unsigned char *)p, (size_t)n) : h;
    }
    default:
        return h;
    }
}

static int buf_put(sss_buffer *b, const void *p, size_t n)
{
    if (sss_buffer_reserve(b, n))
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_byte(sss_buffer *b, unsigned char ch)
{
    return buf_put(b, &ch, 1);
}

/* SQLite's varint, for values below 2^56 (a column count is at most 65536). */
static int buf_varint(sss_buffer *b, uint64_t v)
{
    unsigned char tmp[9];
    int n = 0;
    do {
        tmp[n++] = (unsigned char)(v & 0x7f);
        v >>= 7;
    } while (v);
    unsigned char out[9];
    for (int i = 0; i < n; i++)
        out[i] = (unsigned char)(tmp[n - 1 - i] | (i < n - 1 ? 0x80 : 0));
    return buf_put(b, out, (size_t)n);
}

/* A record of integer zeros: all ncol fields, or (pk_only) the key fields. */
static int buf_zero_record(sss_buffer *b, int ncol, const unsigned char *pk, int pk_only)
{
    static const unsigned char zero[9] = {SQLITE_INTEGER, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < ncol; i++)
        if ((!pk_only || pk[i]) && buf_put(b, zero, sizeof zero))
            return -1;
    return 0;
}

/* Appends a table header and an INSERT and DELETE of one dummy row (all
 * columns integer 0): a pair that cancels in a change group but leaves the
 * table known to it, under this name and header. */
static int buf_dummy_table(sss_buffer *b, int patchset, const char *name, int ncol,
                            const unsigned char *pk)
{
    if (buf_byte(b, patchset ? 'P' : 'T') || buf_varint(b, (uint64_t)ncol)
        || buf_put(b, pk, (size_t)ncol) || buf_put(b, name, strlen(name) + 1))
        return -1;
    if (buf_byte(b, SQLITE_INSERT) || buf_byte(b, 0) || buf_zero_record(b, ncol, pk, 0))
        return -1;
    if (buf_byte(b, SQLITE_DELETE) || buf_byte(b, 0) || buf_zero_record(b, ncol, pk, patchset))
        return -1;
    return 0;
}

/* ---- the table registry ---------------------------------------------- */

sss_concat *sss_concat_new(void)
{
    sss_concat *c = calloc(1, sizeof *c);
    if (c) {
        c->last = -1;
        c->patchset = -1;
    }
    return c;
}

void sss_concat_free(sss_concat *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->ntabs; i++) {
        free(c->tabs[i].name);
        free(c->tabs[i].pk);
    }
    free(c->tabs);
    free(c->index);
    sss_buffer_free(&c->seed);
    free(c);
}

long long sss_concat_changes(const sss_concat *c) { return c->changes; }
int sss_concat_tables(const sss_concat *c) { return c->ntabs; }
int sss_concat_patchset(const sss_concat *c) { return c->patchset; }
int sss_concat_reason(const sss_concat *c) { return c->reason; }
const char *sss_concat_table(const sss_concat *c) { return c->reason_table; }

/* The entry for this (folded) name, or -1. */
static int find_table(const sss_concat *c, const char *name, uint64_t h)
{
    if (c->nindex == 0)
        return -1;
    unsigned int mask = (unsigned int)c->nindex - 1;
    for (unsigned int i = (unsigned int)h & mask;; i = (i + 1) & mask) {
        int e = c->index[i];
        if (e == 0)
            return -1;
        if (c->tabs[e - 1].hash == h && names_equal(c->tabs[e - 1].name, name))
            return e - 1;
    }
}

static void index_put(int *index, int nindex, uint64_t h, int entry)
{
    unsigned int mask = (unsigned int)nindex - 1;
    unsigned int i = (unsigned int)h & mask;
    while (index[i])
        i = (i + 1) & mask;
    index[i] = entry + 1;
}

/* Registers a new table; returns its entry, or -1 when out of memory. */
static int add_table(sss_concat *c, const char *name, uint64_t h, int ncol,
                     const unsigned char *pk)
{
    if (c->ntabs == c->captabs) {
        int cap = c->captabs ? 2 * c->captabs : 8;
        concat_table *t = realloc(c->tabs, (size_t)cap * sizeof *t);
        if (t == NULL)
            return -1;
        c->tabs = t;
        c->captabs = cap;
    }
    if (2 * (c->ntabs + 1) >= c->nindex) {
        int n = c->nindex ? 2 * c->nindex : 16;
        int *index = calloc((size_t)n, sizeof *index);
        if (index == NULL)
            return -1;
        for (int i = 0; i < c->ntabs; i++)
            index_put(index, n, c->tabs[i].hash, i);
        free(c->index);
        c->index = index;
        c->nindex = n;
    }
    size_t len = strlen(name) + 1;
    concat_table *t = &c->tabs[c->ntabs];
    t->name = malloc(len);
    t->pk = malloc((size_t)ncol);
    if (t->name == NULL || t->pk == NULL) {
        free(t->name);
        free(t->pk);
        return -1;
    }
    memcpy(t->name, name, len);
    memcpy(t->pk, pk, (size_t)ncol);
    t->ncol = ncol;
    t->hash = h;
    index_put(c->index, c->nindex, h, c->ntabs);
    return c->ntabs++;
}

static int same_header(const concat_table *t, int ncol, const unsigned char *pk)
{
    return t->ncol == ncol && memcmp(t->pk, pk, (size_t)ncol) == 0;
}

/* The entry of the table the iterator's current change belongs to, when its
 * header is the recorded one: -1 when the table is unknown, -2 when its
 * header differs.  Consecutive changes are usually to the same table: the
 * previous entry is tried first. */
static int lookup(sss_concat *c, const char *name, int ncol, const unsigned char *pk)
{
    if (c->last >= 0) {
        concat_table *t = &c->tabs[c->last];
        if (same_header(t, ncol, pk) && names_equal(t->name, name))
            return c->last;
    }
    int e = find_table(c, name, fold_hash(name));
    if (e < 0)
        return -1;
    if (!same_header(&c->tabs[e], ncol, pk))
        return -2;
    c->last = e;
    return e;
}

/* ---- the scan --------------------------------------------------------- */

/* Registers the current change's table (first seen now), and appends its
 * dummy pair to the seed. */
static int register_table(sss_concat *c, const char *name, int ncol,
                          const unsigned char *pk, int *entry)
{
    if (c->patchset < 0)
        return SQLITE_INTERNAL;   /* the walk runs ahead of the iterator */
    int e = add_table(c, name, fold_hash(name), ncol, pk);
    if (e < 0)
        return SQLITE_NOMEM;
    concat_table *t = &c->tabs[e];
    if (buf_dummy_table(&c->seed, c->patchset, t->name, ncol, t->pk))
        return SQLITE_NOMEM;
    c->last = e;
    *entry = e;
    return SQLITE_OK;
}

/* Records why an input is refused; the table is named by its entry (its
 * first spelling), which outlives the iterator. */
static int refuse(sss_concat *c, int reason, int entry, int rc)
{
    c->reason = reason;
    c->reason_table = entry >= 0 ? c->tabs[entry].name : NULL;
    return rc;
}

/* ---- the raw walk ----------------------------------------------------- */

static void walk_reset(walk *w)
{
    memset(w, 0, sizeof *w);
    w->state = W_CHANGE;
    w->kind = -1;
}

/* Reads a varint byte; returns 1 when the varint is complete, 0 when more
 * bytes follow, -1 when it is longer than any value below 2^31 needs. */
static int walk_varint(walk *w, unsigned char b)
{
    w->varint = (w->varint << 7) | (b & 0x7f);
    w->varint_len++;
    if (b & 0x80)
        return w->varint_len >= 5 ? -1 : 0;
    return 1;
}

static void walk_field_done(walk *w)
{
    w->state = w->fields ? W_TYPE : W_CHANGE;
}

/* Feeds the next n bytes of an input to the walk.  Returns SQLITE_OK,
 * SQLITE_CORRUPT, or SQLITE_ERROR (reason SSS_CONCAT_MIXED) when a change's
 * kind differs from the first change's. */
static int walk_bytes(sss_concat *c, const unsigned char *p, size_t n)
{
    walk *w = &c->w;
    size_t i = 0;
    while (i < n) {
        if (w->state == W_SKIP) {
            size_t k = n - i < (size_t)w->todo ? n - i : (size_t)w->todo;
            i += k;
            w->todo -= (int)k;
            if (w->todo == 0)
                walk_field_done(w);
            continue;
        }
        unsigned char b = p[i++];
        switch (w->state) {
        case W_CHANGE:
            if (b == 'T' || b == 'P') {
                w->kind = b == 'P';
                w->state = W_NCOL;
                w->varint = 0;
                w->varint_len = 0;
                w->npk = 0;
                w->name_len = 0;
                w->name[0] = 0;
                break;
            }
            if (w->kind < 0 || (b != SQLITE_INSERT && b != SQLITE_DELETE && b != SQLITE_UPDATE))
                return SQLITE_CORRUPT;
            if (c->patchset < 0)
                c->patchset = w->kind;
            else if (w->kind != c->patchset) {
                c->reason = SSS_CONCAT_MIXED;
                c->reason_table = w->name;
                return SQLITE_ERROR;
            }
            w->op = b;
            w->state = W_INDIRECT;
            break;
        case W_NCOL: {
            int done = walk_varint(w, b);
            if (done < 0 || (done && (w->varint < 1 || w->varint > 65536)))
                return SQLITE_CORRUPT;
            if (done) {
                w->ncol = w->todo = (int)w->varint;
                w->state = W_PK;
            }
            break;
        }
        case W_PK:
            w->npk += b != 0;
            if (--w->todo == 0)
                w->state = W_NAME;
            break;
        case W_NAME:
            if (b == 0)
                w->state = W_CHANGE;
            else if (w->name_len < (int)sizeof w->name - 1) {
                w->name[w->name_len++] = (char)b;
                w->name[w->name_len] = 0;
            }
            break;
        case W_INDIRECT:
            /* Fields per change, as sessionChangesetNextOne() counts them. */
            if (w->kind == 0)
                w->fields = w->op == SQLITE_UPDATE ? 2 * w->ncol : w->ncol;
            else
                w->fields = w->op == SQLITE_DELETE ? w->npk : w->ncol;
            walk_field_done(w);
            break;
        case W_TYPE:
            w->fields--;
            if (b == 0 || b == SQLITE_NULL)
                walk_field_done(w);
            else if (b == SQLITE_INTEGER || b == SQLITE_FLOAT) {
                w->todo = 8;
                w->state = W_SKIP;
            } else if (b == SQLITE_TEXT || b == SQLITE_BLOB) {
                w->varint = 0;
                w->varint_len = 0;
                w->state = W_LEN;
            } else
                return SQLITE_CORRUPT;   /* sessionChangesetBufferRecord() refuses it */
            break;
        case W_LEN: {
            int done = walk_varint(w, b);
            if (done < 0 || (done && w->varint > INT_MAX))
                return SQLITE_CORRUPT;
            if (done) {
                w->todo = (int)w->varint;
                if (w->todo)
                    w->state = W_SKIP;
                else
                    walk_field_done(w);
            }
            break;
        }
        default:
            return SQLITE_INTERNAL;
        }
    }
    return SQLITE_OK;
}

/* The scan's xInput: the caller's, with every byte also fed to the walk. */
typedef struct scan_input {
    sss_concat *c;
    int (*xInput)(void *, void *, int *);
    void *pIn;
} scan_input;

static int scan_read(void *ctx, void *data, int *n)
{
    scan_input *in = ctx;
    int rc = in->xInput(in->pIn, data, n);
    if (rc == SQLITE_OK && *n > 0) {
        rc = walk_bytes(in->c, data, (size_t)*n);
        if (rc != SQLITE_OK)
            *n = 0;
    }
    return rc;
}

/* The change the iterator is at, as the passes look at it. */
typedef struct change {
    const char *name;
    int ncol;
    int op;
    unsigned char *pk;
} change;

typedef int (*change_fn)(sss_concat *c, sqlite3_changeset_iter *it, const change *ch,
                         void *arg);

/* Reads an input through SQLite's iterator, calling fn on every change.
 * Returns SQLITE_OK at the end, or fn's or the iterator's error. */
static int each_change(sss_concat *c, int (*xInput)(void *, void *, int *), void *pIn,
                       change_fn fn, void *arg)
{
    sqlite3_changeset_iter *it = NULL;
    int rc = sqlite3changeset_start_strm(&it, xInput, pIn);
    if (rc != SQLITE_OK) {
        sqlite3changeset_finalize(it);
        return rc;
    }
    while ((rc = sqlite3changeset_next(it)) == SQLITE_ROW) {
        change ch;
        int indirect;
        sqlite3changeset_op(it, &ch.name, &ch.ncol, &ch.op, &indirect);
        sqlite3changeset_pk(it, &ch.pk, &ch.ncol);
        if ((rc = fn(c, it, &ch, arg)) != SQLITE_OK)
            break;
    }
    int frc = sqlite3changeset_finalize(it);
    return rc == SQLITE_DONE ? frc : rc;
}

static int scan_change(sss_concat *c, sqlite3_changeset_iter *it, const change *ch, void *arg)
{
    (void)it;
    (void)arg;
    int e = lookup(c, ch->name, ch->ncol, ch->pk);
    if (e == -2)
        return refuse(c, SSS_CONCAT_SCHEMA, find_table(c, ch->name, fold_hash(ch->name)),
                      SQLITE_SCHEMA);
    if (e == -1) {
        int rc = register_table(c, ch->name, ch->ncol, ch->pk, &e);
        if (rc != SQLITE_OK)
            return rc;
    }
    c->changes++;
    return SQLITE_OK;
}

int sss_concat_scan(sss_concat *c, int (*xInput)(void *, void *, int *), void *pIn)
{
    scan_input in = {c, xInput, pIn};
    c->reason = SSS_CONCAT_OK;
    c->reason_table = NULL;
    walk_reset(&c->w);
    int rc = each_change(c, scan_read, &in, scan_change, NULL);
    if (rc == SQLITE_OK && c->w.state != W_CHANGE)
        rc = SQLITE_CORRUPT;   /* ends inside a header or change */
    return rc;
}

/* ---- one partition ---------------------------------------------------- */

typedef struct partition {
    sqlite3_changegroup *grp;
    unsigned int nparts;
    unsigned int part;
    long long *counts;
} partition;

static int partition_change(sss_concat *c, sqlite3_changeset_iter *it, const change *ch,
                            void *arg)
{
    partition *p = arg;
    int e = lookup(c, ch->name, ch->ncol, ch->pk);
    if (e < 0)
        return refuse(c, SSS_CONCAT_CHANGED,
                      e == -2 ? find_table(c, ch->name, fold_hash(ch->name)) : -1, SQLITE_ERROR);
    uint64_t h = c->tabs[e].hash;
    for (int i = 0; i < ch->ncol; i++) {
        if (!ch->pk[i])
            continue;
        sqlite3_value *v = NULL;
        if (ch->op == SQLITE_INSERT)
            sqlite3changeset_new(it, i, &v);
        else
            sqlite3changeset_old(it, i, &v);
        h = hash_value(h, v);
    }
    p->counts[0]++;
    if (fmix(h) % p->nparts != p->part)
        return SQLITE_OK;
    int rc = sqlite3changegroup_add_change(p->grp, it);
    if (rc == SQLITE_OK)
        p->counts[1]++;
    return rc;
}

int sss_concat_partition(sss_concat *c, unsigned int nparts, unsigned int part,
                         int (*xInputA)(void *, void *, int *), void *pInA,
                         int (*xInputB)(void *, void *, int *), void *pInB,
                         int (*xOutput)(void *, const void *, int), void *pOut,
                         long long *counts)
{
    counts[0] = counts[1] = 0;
    c->reason = SSS_CONCAT_OK;
    c->reason_table = NULL;
    if (nparts == 0 || part >= nparts)
        return SQLITE_MISUSE;
    sqlite3_changegroup *grp = NULL;
    int rc = sqlite3changegroup_new(&grp);
    if (rc == SQLITE_OK && c->seed.len > INT_MAX)
        rc = SQLITE_TOOBIG;   /* tens of millions of tables */
    if (rc == SQLITE_OK && c->seed.len)
        rc = sqlite3changegroup_add(grp, (int)c->seed.len, c->seed.data);
    partition p = {grp, nparts, part, counts};
    if (rc == SQLITE_OK)
        rc = each_change(c, xInputA, pInA, partition_change, &p);
    if (rc == SQLITE_OK)
        rc = each_change(c, xInputB, pInB, partition_change, &p);
    if (rc == SQLITE_OK)
        rc = sqlite3changegroup_output_strm(grp, xOutput, pOut);
    sqlite3changegroup_delete(grp);
    return rc;
}
