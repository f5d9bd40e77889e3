/*
 * sss_lockshim.h - SQLite's file locks as open file description locks (Linux).
 *
 * SQLite's unix VFS locks with POSIX record locks (fcntl F_SETLK), which
 * belong to the process: closing any descriptor of a file drops every lock
 * the process holds on it.  A second SQLite in the process (the stdlib's
 * sqlite3 module, apsw) opens and closes its own descriptors of the same
 * file and so silently drops ours; another process may then roll back the
 * journal of a commit in flight, or write at the same time.
 *
 * The other way round, each close of ours drops the other library's POSIX
 * locks: its connection then checkpoints and deletes a -wal we are writing
 * to, or has the -shm it maps truncated under it.
 *
 * On Linux the shim replaces three of the unix VFS's system calls
 * (xSetSystemCall "open", "close", "fcntl") so that every lock SQLite takes
 * on a file goes, as an open file description lock (F_OFD_SETLK), through
 * one descriptor per file that the shim owns.  Those locks survive a close
 * of any other descriptor, and they conflict with POSIX locks of the same
 * process, so a second SQLite in the process is excluded as another process
 * would be.  Installed on the other library too, with lock descriptors of
 * its own, it makes that library's locks survive our closes as well.  See
 * sss_lockshim.c for the design.  Elsewhere (macOS, the BSDs, Windows)
 * installing it does nothing.
 */
#ifndef SSS_LOCKSHIM_H
#define SSS_LOCKSHIM_H

/* cdef-begin */

/* Counters of the shim (all zero when it is not installed). */
typedef struct sss_lockshim_stats {
    long long tracked_fds;      /* SQLite's descriptors open now */
    long long tracked_files;    /* distinct files among them */
    long long lock_fds;         /* the shim's lock descriptors open now */
    long long lock_fds_opened;  /* lock descriptors opened since install */
    long long posix_fallbacks;  /* files locked with POSIX locks because no
                                   lock descriptor could be opened */
    long long posix_pinned;     /* files the library held POSIX locks on when
                                   the shim was installed on it */
    long long posix_files;      /* tracked files on POSIX locks now (either
                                   reason) */
} sss_lockshim_stats;

/* Installs the shim on SQLite's "unix" VFS (all unix VFSes share the system
 * call table).  Call it once, before the first database is opened.  Returns
 * SQLITE_OK, also where the platform has no open file description locks
 * (then nothing is installed); SQLITE_ERROR if the unix VFS is missing. */
int sss_lockshim_install(void);

/* Installs the shim, with tables and lock descriptors of its own, on the
 * "unix" VFS of another SQLite library loaded in this process, given that
 * library's sqlite3_vfs_find (the stdlib's libsqlite3: its connections then
 * keep their locks when ours close the file).  Files on which the process
 * holds POSIX locks at that moment keep POSIX locks in that library until
 * it holds none on them.  Returns SQLITE_OK, also when it is installed there
 * already or the platform has no open file description locks; SQLITE_MISUSE
 * for the package's own SQLite; SQLITE_ERROR when that library has no
 * usable unix VFS; SQLITE_FULL when three libraries have it already. */
int sss_lockshim_install_foreign(void *vfs_find);

/* How many other SQLite libraries the shim is installed on. */
int sss_lockshim_foreign_libraries(void);

/* 1 when SQLite's locks are open file description locks (the shim is
 * installed and the kernel has not refused them), 0 when they are POSIX
 * record locks. */
int sss_lockshim_active(void);

/* The counters of the package's SQLite; of the other libraries, summed. */
void sss_lockshim_get_stats(sss_lockshim_stats *out);
void sss_lockshim_get_foreign_stats(sss_lockshim_stats *out);

/* cdef-end */

#endif
