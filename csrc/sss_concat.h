/*
 * sss_concat.h - concatenating two streamed changesets (or patchsets) in
 * bounded memory, by partitioning their changes on (table, primary key).
 *
 * A change group only ever combines changes to the same table (names compared
 * ASCII case-insensitively) and the same primary-key bytes, so the changes can
 * be split into K partitions by a hash of (folded table name, primary key
 * values), each partition concatenated in a change group of its own, and the K
 * outputs written one after another.  See sss_concat.c for the passes, and
 * sessions/stream.py for the Python side.
 */
#ifndef SSS_CONCAT_H
#define SSS_CONCAT_H

/* cdef-begin */

/* The state of one partitioned concatenation (opaque). */
typedef struct sss_concat sss_concat;

/* Why sss_concat_scan() refused an input (sss_concat_reason()). */
enum {
    SSS_CONCAT_OK = 0,
    SSS_CONCAT_SCHEMA = 1,   /* a table's column count or primary key differs */
    SSS_CONCAT_MIXED = 2,    /* changeset and patchset changes mixed */
    SSS_CONCAT_CHANGED = 3   /* an input differs between passes */
};

/* A new state, or NULL when out of memory.  Free with sss_concat_free(). */
sss_concat *sss_concat_new(void);
void sss_concat_free(sss_concat *c);

/* The scan: reads one input (call it for a, then for b) to its end through
 * SQLite's iterator, applying to every change the checks a change group
 * applies across both inputs (the same column count and primary key for
 * every change to a table, changeset and patchset changes not mixed) and
 * checking the raw records as sqlite3changeset_concat() reads them; counts
 * the changes and records each table's first name and header in order of
 * appearance.  Returns SQLITE_OK; SQLITE_SCHEMA or SQLITE_ERROR with
 * sss_concat_reason() set; SQLITE_CORRUPT, the input's error (SQLITE_IOERR
 * from the Python reader, ...) or SQLITE_NOMEM. */
int sss_concat_scan(sss_concat *c, int (*xInput)(void *pIn, void *pData, int *pnData),
                    void *pIn);

/* Changes scanned so far; tables seen; whether they are patchset changes
 * (-1 before the first change). */
long long sss_concat_changes(const sss_concat *c);
int sss_concat_tables(const sss_concat *c);
int sss_concat_patchset(const sss_concat *c);

/* The reason for the last refusal (SSS_CONCAT_*), and the table it concerns
 * (NULL when none): valid until the next call on c. */
int sss_concat_reason(const sss_concat *c);
const char *sss_concat_table(const sss_concat *c);

/* One partition, after the scan: a fresh change group, seeded with every
 * scanned table in order of first appearance (so that each partition's
 * sections keep SQLite's table order and names), then the changes of a and
 * then b whose key hash is `part` modulo `nparts`, written to xOutput with
 * sqlite3changegroup_output_strm().  counts[0] is set to the changes read,
 * counts[1] to those added.  A change whose table or header the scan did not
 * see gives SQLITE_ERROR with reason SSS_CONCAT_CHANGED. */
int sss_concat_partition(sss_concat *c, unsigned int nparts, unsigned int part,
                         int (*xInputA)(void *pIn, void *pData, int *pnData), void *pInA,
                         int (*xInputB)(void *pIn, void *pData, int *pnData), void *pInB,
                         int (*xOutput)(void *pOut, const void *pData, int nData), void *pOut,
                         long long *counts);

/* cdef-end */

#endif
