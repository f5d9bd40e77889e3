/*
 * sss_oslock.h - the operating system's exclusive file lock that admits a
 * writer in lock protocol v2 (trusted and wal modes, PROTOCOL.md §2A).
 *
 * One byte range (the whole file) of the admission file, locked exclusively:
 *   Linux: open file description locks (F_OFD_SETLK/F_OFD_SETLKW/F_OFD_GETLK),
 *          which belong to the descriptor, not to the process, so closing
 *          another descriptor of the file never drops them; they conflict
 *          with POSIX record locks too.  Kernels older than 3.15 (EINVAL)
 *          fall back to POSIX record locks.
 *   other POSIX: POSIX record locks (F_SETLK/F_SETLKW/F_GETLK); the caller
 *          keeps a single descriptor per file and process (closing any
 *          descriptor of the file would drop the process's locks on it).
 *   Windows: LockFileEx on the whole file.
 * The kernel releases the lock when its holder dies.
 *
 * Every function returns 0 or an errno value: EAGAIN when the lock is held
 * by someone else (only the non-blocking calls), EINTR when a blocking wait
 * was interrupted by a signal (retry).
 */
#ifndef SSS_OSLOCK_H
#define SSS_OSLOCK_H

/* cdef-begin */

/* Take the lock: blocking (wait != 0, in the kernel, without the GIL) or not. */
int sss_oslock_lock(int fd, int wait);
/* Give it up. */
int sss_oslock_unlock(int fd);
/* Is it held by another descriptor or process?  *held = 1 or 0; *pid = the
 * holder's pid where the system reports one (POSIX locks), else 0. */
int sss_oslock_probe(int fd, int *held, int *pid);
/* 1 when this build uses open file description locks (Linux), else 0. */
int sss_oslock_per_descriptor(void);

/* Wait for the lock in the calling thread, in the kernel, for at most
 * timeout_ms: 0 once it is taken, EAGAIN when the time ran out (or a signal
 * arrived, e.g. Ctrl-C: the caller looks at its deadline and at pending
 * signals, then calls again), ENOSYS where this needs a waiter thread
 * instead (not Linux, or the wake-up signal is taken by the program). */
int sss_oslock_wait(int fd, int timeout_ms);

/* cdef-end */

#endif
