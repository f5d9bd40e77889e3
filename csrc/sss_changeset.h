/*
 * sss_changeset.h - C helpers for the session extension: walking a changeset
 * (blob or stream) a batch of changes per call, summarising it per table, and
 * describing the change behind a conflict.  See sss_changeset.c for the marshal
 * layout they write.
 *
 * Named sss_* so that build_ffi.py (which reads the headers in sorted order)
 * feeds its declarations to cffi after sss.h, which declares sss_buffer.
 */
#ifndef SSS_CHANGESET_H
#define SSS_CHANGESET_H

#include "sss.h"

/* cdef-begin */

/* Steps `it` up to max_changes times (stopping early once out holds
 * max_bytes), writing each change to out (cleared first) as a marshal list of
 * tuples (table, op, old, new, pk, indirect); *n is set to the number of
 * changes written.  Returns SQLITE_ROW when more changes may follow,
 * SQLITE_DONE at the end, an SQLite error code (SQLITE_CORRUPT, ...) or
 * SSS_ERR_NOMEM. */
int sss_changeset_walk(sqlite3_changeset_iter *it, int max_changes, size_t max_bytes,
                       sss_buffer *out, int *n);

/* Reads a changeset or patchset to its end through input(ctx, ...) (an
 * xInput callback, as sqlite3changeset_start_strm() takes), or from the blob
 * data[0..len) when input is NULL, and writes to out (cleared first) a
 * marshal list of table sections (table, ncol, pk flags as bytes, inserts,
 * updates, deletes); consecutive changes with the same table name and header
 * are one section.  *nchanges is set to the number of changes.  Values are
 * skipped, not decoded; memory is one input chunk.  Returns SQLITE_DONE,
 * SQLITE_CORRUPT, the input's error code or SSS_ERR_NOMEM. */
int sss_changeset_summary(int (*input)(void *, void *, int *), void *ctx,
                          const unsigned char *data, size_t len, sss_buffer *out,
                          long long *nchanges);

/* Writes to out (cleared first) the change `it` points at (inside a conflict
 * handler) as the marshal tuple (table, op, old, new, pk, indirect,
 * conflicting), where conflicting is the conflicting row's values for
 * SQLITE_CHANGESET_DATA / _CONFLICT and None otherwise.  Returns SQLITE_OK,
 * an SQLite error code or SSS_ERR_NOMEM. */
int sss_change_describe(sqlite3_changeset_iter *it, int conflict_type, sss_buffer *out);

/* Steps `it` up to max_changes times, adding each change to grp (a bounded
 * chunk of a streamed changeset).  *n is set to the number added.  Returns
 * SQLITE_ROW when more may follow, SQLITE_DONE at the end, or an SQLite error
 * code. */
int sss_changegroup_fill(sqlite3_changeset_iter *it, sqlite3_changegroup *grp,
                         int max_changes, int *n);

/* Where sss_changeset_parse() is in a changeset blob between calls: the
 * offset of the next change and of the current table header (after its
 * 'T'/'P' byte), whether that header is a patchset's, and whether one has
 * been read.  Zero it before the first call. */
typedef struct sss_parse_state {
    size_t pos;
    size_t hdr;
    int patchset;
    int have_table;
} sss_parse_state;

/* Like sss_changeset_walk(), but reads the changeset or patchset blob
 * data[0..len) itself instead of through sqlite3changeset_next(), resuming
 * at *st: the same marshal output and return codes for the same bytes,
 * about twice as fast.  data must stay unchanged between calls. */
int sss_changeset_parse(const unsigned char *data, size_t len, sss_parse_state *st,
                        int max_changes, size_t max_bytes, sss_buffer *out, int *n);

/* cdef-end */

/* The table, column count, operation, indirect flag and primary key flags of
 * the change `it` stands at (indirect may be NULL), checked: SQLITE_OK, the
 * iterator's error, or SQLITE_CORRUPT for an unknown operation or a missing
 * table name or key.  C callers only (not in the cdef). */
int sss_change_head(sqlite3_changeset_iter *it, const char **tab, int *ncol, int *op,
                    int *indirect, unsigned char **pk);

#endif
