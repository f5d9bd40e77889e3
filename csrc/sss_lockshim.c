/*
 * sss_lockshim.c - SQLite's file locks as open file description locks.
 * (Why: sss_lockshim.h.)
 *
 * Design.  SQLite's unix VFS was written for POSIX record locks, which belong
 * to the process.  It keeps one lock state per file and process
 * (unixInodeInfo, and unixShmNode for a -shm file), shared by all its
 * connections, and issues a kernel lock only when that shared state changes,
 * through the descriptor of whichever connection made the change; it never
 * closes a descriptor of a file while the process holds a lock on it (such
 * closes are deferred), except a -shm file, whose last close is meant to drop
 * the process's lock on it.  So the kernel locks SQLite asks for on a file
 * are, in order, exactly the locks the whole process should hold.
 *
 * Open file description (OFD) locks belong to an open file description
 * instead.  Issued through each connection's own descriptor they would make
 * two connections of this process conflict, and a lock taken through one
 * descriptor could not be released through another.  So the shim sends every
 * lock of a file through one descriptor of its own, the "lock descriptor",
 * opened (read-write when permitted) by reopening /proc/self/fd/N the first
 * time SQLite locks the file, and closed when SQLite closes its last
 * descriptor of the file, which drops whatever locks remain, as POSIX would
 * at that point.  The lock descriptor then holds exactly the locks the
 * process would hold under POSIX, with two differences, both the point:
 * closing any other descriptor of the file (another SQLite's, the
 * application's) leaves them in place, and POSIX locks of the same process
 * (another SQLite's) conflict with them.  F_GETLK becomes F_OFD_GETLK on the
 * lock descriptor, which, like F_GETLK, does not report the caller's own
 * locks.
 *
 * To know when SQLite closes its last descriptor of a file the shim also
 * replaces "open" and "close": each descriptor SQLite opens is looked up once
 * by (device, inode) and counted against that file until SQLite closes it.
 * A lock call then costs one array lookup under a mutex more than before.
 * As long as SQLite has a descriptor of the file open, the file's inode
 * cannot be reused, so the (device, inode) key stays unambiguous.
 *
 * A request that the caller's own descriptor could not make (a write lock
 * through a read-only descriptor, as a read-only -shm) fails with EBADF, as
 * POSIX would, although the lock descriptor could make it.  The lock
 * descriptor is read-write even for a read-only user where permissions allow,
 * so that a later read-write connection can lock through it; it never writes
 * (an inotify watcher does see IN_CLOSE_WRITE when it closes).
 *
 * fork(): the child inherits the lock descriptors, and an open file
 * description lock lives until the last descriptor of it closes, so the
 * child would keep the parent's locks alive after the parent released them
 * by closing, or died.  The child closes its copies at once (pthread_atfork);
 * the parent's locks are unaffected.  Lock descriptors are close-on-exec.
 *
 * Where no lock descriptor can be opened (no /proc, a kernel without OFD
 * locks) the file keeps POSIX locks for as long as SQLite has it open.
 * SQLite's locks of one file are then all POSIX or all OFD within the
 * process.
 */
#if defined(__linux__)
#define _GNU_SOURCE
/* SQLite's own struct flock: the amalgamation defines this before it
 * includes anything, and the shim hands the same structures to the kernel. */
#define _FILE_OFFSET_BITS 64
#endif

#include "sss_lockshim.h"
#include "sqlite3.h"

#include <string.h>

#if defined(__linux__)
#include <fcntl.h>
#endif

#if defined(__linux__) && defined(F_OFD_SETLK)

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* One file SQLite has open, found by (device, inode). */
typedef struct shim_file {
    dev_t dev;
    ino_t ino;
    int nfds;     /* SQLite's descriptors of this file that are open */
    int lockfd;   /* the lock descriptor, or -1 before the first lock */
    int posix;    /* 1: no lock descriptor could be opened: POSIX locks */
    struct shim_file *next;
} shim_file;

/* What the shim knows about one of SQLite's descriptors, indexed by number. */
typedef struct shim_fd {
    shim_file *file;  /* NULL: not one of SQLite's, or not known */
    int accmode;      /* O_RDONLY, O_WRONLY or O_RDWR, as SQLite opened it */
} shim_fd;

typedef int (*open_fn)(const char *, int, int);
typedef int (*close_fn)(int);
typedef int (*fcntl_fn)(int, int, ...);

static pthread_mutex_t shim_mutex = PTHREAD_MUTEX_INITIALIZER;
static shim_fd *fds;        /* guarded by shim_mutex, as is everything below */
static int n_fds;
static shim_file *files;
static int ofd_state;       /* 0 not yet tried, 1 works, -1 refused by the kernel */
static sss_lockshim_stats stats;

/* The system calls the shim replaced (SQLite's defaults), set once. */
static open_fn next_open;
static close_fn next_close;
static fcntl_fn next_fcntl;
static int installed;

static shim_file *find_file(dev_t dev, ino_t ino) {
    shim_file *f;
    for (f = files; f; f = f->next) {
        if (f->dev == dev && f->ino == ino) return f;
    }
    return NULL;
}

/* Forgets descriptor fd; returns the lock descriptor to close when fd was
 * SQLite's last descriptor of its file, else -1.  Mutex held. */
static int forget_fd(int fd) {
    shim_file *f, **pp;
    int lockfd;
    if (fd < 0 || fd >= n_fds || fds[fd].file == NULL) return -1;
    f = fds[fd].file;
    fds[fd].file = NULL;
    stats.tracked_fds--;
    if (--f->nfds > 0) return -1;
    for (pp = &files; *pp != f; pp = &(*pp)->next) {
    }
    *pp = f->next;
    lockfd = f->lockfd;
    free(f);
    stats.tracked_files--;
    if (lockfd >= 0) stats.lock_fds--;
    return lockfd;
}

/* Counts descriptor fd (opened with access mode accmode) against its file.
 * Returns the file, or NULL when fd cannot be tracked (out of memory, fstat
 * failed): its locks then stay POSIX locks.  Mutex held. */
static shim_file *track_fd(int fd, int accmode, int *stale_lockfd) {
    struct stat st;
    shim_file *f;
    *stale_lockfd = -1;
    if (fd < 0) return NULL;
    if (fd >= n_fds) {
        int n = n_fds ? n_fds : 64;
        shim_fd *grown;
        while (n <= fd) n *= 2;
        grown = realloc(fds, (size_t)n * sizeof *fds);
        if (grown == NULL) return NULL;
        memset(grown + n_fds, 0, (size_t)(n - n_fds) * sizeof *fds);
        fds = grown;
        n_fds = n;
    }
    /* A number still known here was closed behind SQLite's back. */
    *stale_lockfd = forget_fd(fd);
    if (fstat(fd, &st) != 0) return NULL;
    f = find_file(st.st_dev, st.st_ino);
    if (f == NULL) {
        f = calloc(1, sizeof *f);
        if (f == NULL) return NULL;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->lockfd = -1;
        f->next = files;
        files = f;
        stats.tracked_files++;
    }
    f->nfds++;
    fds[fd].file = f;
    fds[fd].accmode = accmode;
    stats.tracked_fds++;
    return f;
}

/* Opens the lock descriptor of file f, of which fd is a descriptor: a new
 * open file description of the same inode, read-write where permitted.
 * Returns it, or -1 (the file then keeps POSIX locks).  Mutex held. */
static int open_lock_fd(int fd, shim_file *f) {
    char path[40];
    struct stat st;
    int lockfd;
    if (ofd_state < 0) return -1;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lockfd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (lockfd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM || errno == ETXTBSY)) {
        lockfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    }
    if (lockfd < 0) return -1;
    if (lockfd < 3) {
        /* As SQLite does for its own files: a stray write to a standard
         * stream that happens to be closed must never reach a database. */
        int moved = fcntl(lockfd, F_DUPFD_CLOEXEC, 3);
        close(lockfd);
        if (moved < 0) return -1;
        lockfd = moved;
    }
    if (fstat(lockfd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
        close(lockfd);
        return -1;
    }
    if (ofd_state == 0) {
        /* Kernels before 3.15 reject the OFD commands with EINVAL. */
        struct flock probe;
        memset(&probe, 0, sizeof probe);
        probe.l_type = F_WRLCK;
        probe.l_whence = SEEK_SET;
        if (fcntl(lockfd, F_OFD_GETLK, &probe) != 0 && errno == EINVAL) {
            ofd_state = -1;
            close(lockfd);
            return -1;
        }
        ofd_state = 1;
    }
    stats.lock_fds++;
    stats.lock_fds_opened++;
    return lockfd;
}

static int shim_open(const char *path, int flags, int mode) {
    int fd = next_open(path, flags, mode);
    if (fd >= 0) {
        int stale;
        pthread_mutex_lock(&shim_mutex);
        track_fd(fd, flags & O_ACCMODE, &stale);
        pthread_mutex_unlock(&shim_mutex);
        if (stale >= 0) close(stale);
    }
    return fd;
}

static int shim_close(int fd) {
    int lockfd;
    pthread_mutex_lock(&shim_mutex);
    lockfd = forget_fd(fd);
    pthread_mutex_unlock(&shim_mutex);
    if (lockfd >= 0) close(lockfd);
    return next_close(fd);
}

static int shim_fcntl(int fd, int cmd, ...) {
    va_list ap;
    void *arg;
    struct flock *lock, ofd;
    shim_file *f;
    int target, accmode, stale = -1, rc;

    /* glibc's fcntl reads its third argument as a pointer whatever the
     * command; passing it on the same way is what glibc itself does. */
    va_start(ap, cmd);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (cmd != F_GETLK && cmd != F_SETLK && cmd != F_SETLKW) return next_fcntl(fd, cmd, arg);
    lock = arg;

    pthread_mutex_lock(&shim_mutex);
    if (fd >= 0 && fd < n_fds && fds[fd].file != NULL) {
        f = fds[fd].file;
        accmode = fds[fd].accmode;
    } else {
        /* Opened before the shim was installed (not normally possible). */
        accmode = fcntl(fd, F_GETFL) & O_ACCMODE;
        f = track_fd(fd, accmode, &stale);
    }
    if (f == NULL || f->posix) {
        pthread_mutex_unlock(&shim_mutex);
        if (stale >= 0) close(stale);
        return next_fcntl(fd, cmd, lock);
    }
    if (cmd != F_GETLK && ((lock->l_type == F_WRLCK && accmode == O_RDONLY) ||
                           (lock->l_type == F_RDLCK && accmode == O_WRONLY))) {
        pthread_mutex_unlock(&shim_mutex);
        if (stale >= 0) close(stale);
        errno = EBADF;
        return -1;
    }
    if (f->lockfd < 0) {
        if (cmd != F_GETLK && lock->l_type == F_UNLCK) {
            /* SQLite holds nothing on this file. */
            pthread_mutex_unlock(&shim_mutex);
            if (stale >= 0) close(stale);
            return 0;
        }
        f->lockfd = open_lock_fd(fd, f);
        if (f->lockfd < 0) {
            f->posix = 1;
            stats.posix_fallbacks++;
            pthread_mutex_unlock(&shim_mutex);
            if (stale >= 0) close(stale);
            return next_fcntl(fd, cmd, lock);
        }
    }
    /* SQLite serialises the lock calls of one file (its per-file mutex), and
     * the lock descriptor stays open while fd is; the kernel call itself
     * (F_OFD_SETLKW may wait) runs without the shim's mutex. */
    target = f->lockfd;
    pthread_mutex_unlock(&shim_mutex);
    if (stale >= 0) close(stale);

    ofd = *lock;
    ofd.l_pid = 0; /* required by the OFD commands; SQLite leaves it unset */
    rc = next_fcntl(target, cmd == F_GETLK ? F_OFD_GETLK : cmd == F_SETLK ? F_OFD_SETLK : F_OFD_SETLKW,
                    &ofd);
    if (rc == 0 && cmd == F_GETLK) *lock = ofd;
    return rc;
}

static void atfork_prepare(void) { pthread_mutex_lock(&shim_mutex); }

static void atfork_parent(void) { pthread_mutex_unlock(&shim_mutex); }

static void atfork_child(void) {
    shim_file *f;
    for (f = files; f; f = f->next) {
        if (f->lockfd >= 0) {
            close(f->lockfd); /* the parent's copy keeps its locks */
            f->lockfd = -1;
            stats.lock_fds--;
        }
    }
    pthread_mutex_unlock(&shim_mutex);
}

int sss_lockshim_install(void) {
    sqlite3_vfs *vfs;
    int rc;
    if (installed) return SQLITE_OK;
    vfs = sqlite3_vfs_find("unix");
    if (vfs == NULL || vfs->iVersion < 3 || vfs->xSetSystemCall == NULL) return SQLITE_ERROR;
    next_open = (open_fn)vfs->xGetSystemCall(vfs, "open");
    next_close = (close_fn)vfs->xGetSystemCall(vfs, "close");
    next_fcntl = (fcntl_fn)vfs->xGetSystemCall(vfs, "fcntl");
    if (next_open == NULL || next_close == NULL || next_fcntl == NULL) return SQLITE_ERROR;
    if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) return SQLITE_ERROR;
    /* "open" before "close" before "fcntl": a descriptor is tracked from its
     * open on, and a lock call finds it (or tracks it late). */
    rc = vfs->xSetSystemCall(vfs, "open", (sqlite3_syscall_ptr)shim_open);
    if (rc == SQLITE_OK) rc = vfs->xSetSystemCall(vfs, "close", (sqlite3_syscall_ptr)shim_close);
    if (rc == SQLITE_OK) rc = vfs->xSetSystemCall(vfs, "fcntl", (sqlite3_syscall_ptr)shim_fcntl);
    if (rc != SQLITE_OK) {
        vfs->xSetSystemCall(vfs, "open", (sqlite3_syscall_ptr)next_open);
        vfs->xSetSystemCall(vfs, "close", (sqlite3_syscall_ptr)next_close);
        vfs->xSetSystemCall(vfs, "fcntl", (sqlite3_syscall_ptr)next_fcntl);
        return rc;
    }
    installed = 1;
    return SQLITE_OK;
}

int sss_lockshim_active(void) {
    int active;
    pthread_mutex_lock(&shim_mutex);
    active = installed && ofd_state >= 0;
    pthread_mutex_unlock(&shim_mutex);
    return active;
}

void sss_lockshim_get_stats(sss_lockshim_stats *out) {
    pthread_mutex_lock(&shim_mutex);
    *out = stats;
    pthread_mutex_unlock(&shim_mutex);
}

#else /* no open file description locks: SQLite keeps its POSIX (or Windows) locks */

int sss_lockshim_install(void) { return SQLITE_OK; }

int sss_lockshim_active(void) { return 0; }

void sss_lockshim_get_stats(sss_lockshim_stats *out) { memset(out, 0, sizeof *out); }

#endif
