/*
 * sss_session_filter.h - a table filter for sessions, in C.
 *
 * A coordinated write records every table except the package's own (names
 * starting with "_sss_": the audit log, the fencing epoch, the replica
 * cursor).  SQLite asks a session's filter on the first change to each table
 * and again on every change to a table the filter refused; answering from C
 * saves a callback into Python (a few microseconds each) on every write.
 */
#ifndef SSS_SESSION_FILTER_H
#define SSS_SESSION_FILTER_H

/* cdef-begin */

/* The prefix of the package's own tables, "_sss_": the one definition
 * (coordination/audit.py reads it as RESERVED_PREFIX). */
extern const char sss_reserved_prefix[];

/* A sqlite3session_table_filter() callback: 1 (record) unless zTab starts
 * with the reserved prefix "_sss_"; pCtx is unused. */
int sss_session_filter_unreserved(void *pCtx, const char *zTab);

/* cdef-end */

#endif
