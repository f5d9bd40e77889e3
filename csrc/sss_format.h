/*
 * sss_format.h - changes as readable text or JSON, formatted in C.
 *
 * The command-line tool prints every change of a changeset (``show``,
 * ``log --changes``, ``diff``): one line per change, or one JSON object per
 * change.  A Python loop over the changes costs about 10 us per change (a
 * 1 GB changeset: minutes); this walks a changeset iterator and writes the
 * formatted text into an sss_buffer, a chunk of whole changes per call.
 *
 * The output is byte for byte what the Python renderings write
 * (faces/cli/_render.py change_line(), and json.dumps of
 * sessions/changeset.py change_dicts() through faces/cli/_base.py jsonable()),
 * encoded as UTF-8 ("surrogatepass": text holding encoded surrogates comes
 * out as the same bytes): the caller decodes each chunk and writes the text
 * through its stream, whose encoding and error handler then apply as before.
 *
 * Column names come from the caller: the first change of each new table
 * section (table name, column count, primary key flags) stops the walk with
 * SSS_FORMAT_NEED_NAMES; the caller reads the section with
 * sss_format_table(), hands the names over with sss_format_names(), and
 * calls sss_format_changes() again, which resumes with that change.
 */
#ifndef SSS_FORMAT_H
#define SSS_FORMAT_H

#include "sss.h"

/* cdef-begin */

typedef struct sss_format sss_format;

/* Output modes. */
enum {
    SSS_FORMAT_TEXT = 0,       /* lines: INSERT t (id=1, v='a') */
    SSS_FORMAT_JSON = 1,       /* JSON objects, ", " between them; non-ASCII as is */
    SSS_FORMAT_JSON_ASCII = 2  /* the same, every non-ASCII character \u-escaped */
};

/* Return codes of sss_format_changes besides SQLite's. */
enum {
    SSS_FORMAT_NEED_NAMES = -20, /* the next change's section has no names yet */
    SSS_FORMAT_BAD_TEXT = -21    /* a text value is not UTF-8 (sss_format_bad) */
};

/* A formatter; `prefix` starts every line in text mode (the indent).  NULL
 * when out of memory. */
sss_format *sss_format_new(int mode, const char *prefix, size_t prefix_len);
void sss_format_free(sss_format *f);

/* After SSS_FORMAT_NEED_NAMES: the table name of the waiting change (valid
 * until the next sss_format_changes call), its column count and primary key
 * flags (one byte per column, 0 or the position in the key). */
const char *sss_format_table(sss_format *f, int *ncol, const unsigned char **pk);

/* Names for the waiting change's section: `names` holds ncol UTF-8 names,
 * each followed by a NUL byte, `len` bytes in all.  `groups` is NULL when the
 * names are distinct, else per column the index of the first column with the
 * same name (the rendering of a row is then that of a dict: one entry per
 * name, at its first defined column, with its last defined value).  Returns
 * 0, SSS_ERR_FORMAT (not ncol names) or SSS_ERR_NOMEM. */
int sss_format_names(sss_format *f, const char *names, size_t len, const int *groups);

/* Formats changes from `it` into out (cleared first) until out holds at
 * least max_bytes or the changes end.  Returns SQLITE_ROW (more may follow),
 * SQLITE_DONE, SSS_FORMAT_NEED_NAMES, SSS_FORMAT_BAD_TEXT, SSS_ERR_NOMEM or
 * an SQLite error code; out then holds the changes formatted before it, all
 * whole. */
int sss_format_changes(sss_format *f, sqlite3_changeset_iter *it, size_t max_bytes,
                       sss_buffer *out);

/* After SSS_FORMAT_BAD_TEXT: the text value's bytes (valid until the next
 * call), so the caller can report what is wrong with it. */
const char *sss_format_bad(sss_format *f, size_t *len);

/* A double as Python's repr() writes it (the shortest digits that read back
 * as the same double): into buf (at least 32 bytes), NUL-terminated; returns
 * the length.  Exposed for the tests that hold it to repr(). */
int sss_format_double(double v, char *buf);

/* cdef-end */

#endif
