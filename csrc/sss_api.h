/*
 * sss_api.h - hands the SQLite linked into the cffi module to the hot-path
 * extension (csrc/hotpath/hotpath.c).
 *
 * There must be exactly one copy of SQLite in the process: the unix VFS keeps
 * its POSIX lock state per process and per inode, and a second copy opening
 * the same file would neither see nor respect the first copy's locks.  So the
 * extension does not link SQLite; it calls through this table of function
 * pointers, SQLite's own loadable-extension layout (sqlite3ext.h), filled here
 * with the functions of the one engine.
 */
#ifndef SSS_API_H
#define SSS_API_H

#include <stddef.h>

/* cdef-begin */

/* The address of a sqlite3_api_routines filled with the functions the
 * hot-path extension calls (the others are NULL), and its size in bytes: the
 * extension refuses a table whose size differs from its own idea of it. */
const void *sss_sqlite_api(void);
size_t sss_sqlite_api_size(void);

/* cdef-end */

#endif
