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
 * Other SQLite libraries in the process.  That protects our locks from
 * another library's closes, but not the other library's POSIX locks from
 * ours: a close of any descriptor of a file drops every POSIX lock the
 * process holds on it, whoever took it.  Each time this SQLite closes a
 * connection, the stdlib's connections to the same file lose their locks in
 * the kernel and carry on as if they held them: the -shm DMS lock (so our
 * next connection takes itself for the first user, truncates the -shm the
 * stdlib has mapped and rebuilds it: SIGBUS in whichever library touches the
 * mapping meanwhile), a WAL reader's SHARED lock, and the EXCLUSIVE lock
 * under which the stdlib's last connection checkpoints and deletes the -wal
 * (so our next writer commits into the -wal the stdlib is about to delete:
 * the commit is lost).  No ordering of closes can avoid that, and this
 * library cannot see the other's locks to wait for them (F_OFD_GETLK reports
 * one conflicting lock, not whose).  So the shim is installed on the other
 * library's unix VFS too (sss_lockshim_install_foreign), as a separate
 * instance with its own tables and lock descriptors: both libraries then
 * lock through lock descriptors of their own, no close drops anything but
 * its own library's locks at its last close, and the two exclude each other
 * exactly as two processes do.  A library the package cannot reach (one
 * linked statically without exported symbols) keeps POSIX locks and the
 * hazard (README, "Using the stdlib sqlite3 on the same file in the same
 * process").
 *
 * That library may already hold POSIX locks when the shim is installed on
 * it (a connection opened before the package was imported).  Those must be
 * released through POSIX, so installing reads /proc/locks and "pins" every
 * file on which the process holds a POSIX lock: a pinned file keeps POSIX
 * locks in that library until /proc/locks, read again when the library next
 * starts tracking the file, shows none left.  Descriptors opened before the
 * install are counted from their first lock call on.
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
 * library.
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
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

/* One file SQLite has open, found by (device, inode). */
typedef struct shim_file {
    dev_t dev;
    ino_t ino;
    int nfds;     /* SQLite's descriptors of this file that are open */
    int lockfd;   /* the lock descriptor, or -1 before the first lock */
    int posix;    /* 1: POSIX locks (no lock descriptor could be opened, or pinned) */
    struct shim_file *next;
} shim_file;

/* What the shim knows about one of SQLite's descriptors, indexed by number. */
typedef struct shim_fd {
    shim_file *file;  /* NULL: not one of SQLite's, or not known */
    int accmode;      /* O_RDONLY, O_WRONLY or O_RDWR, as SQLite opened it */
} shim_fd;

/* A file this library held POSIX locks on when the shim was installed. */
typedef struct shim_pin {
    dev_t dev;
    ino_t ino;
} shim_pin;

typedef int (*open_fn)(const char *, int, int);
typedef int (*close_fn)(int);
typedef int (*fcntl_fn)(int, int, ...);

/* The shim on one SQLite library's unix VFS. */
typedef struct shim {
    pthread_mutex_t mutex;
    shim_fd *fds;           /* guarded by mutex, as is everything below */
    int n_fds;
    shim_file *files;
    shim_pin *pins;
    int n_pins;
    int ofd_state;          /* 0 not yet tried, 1 works, -1 refused by the kernel */
    sss_lockshim_stats stats;
    /* Set once by the install, under install_mutex and mutex, before SQLite
     * can call the shim; read after taking mutex at least once: */
    sqlite3_vfs *vfs;       /* NULL: this slot is free */
    open_fn next_open;      /* the system calls the shim replaced */
    close_fn next_close;
    fcntl_fn next_fcntl;
} shim;

/* Slot 0 is the package's own SQLite; the others, other SQLite libraries in
 * the process (the stdlib's libsqlite3; one more is already unusual). */
#define SHIM_SLOTS 4
#define SHIM_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, 0, NULL, NULL, 0, 0, {0}, NULL, NULL, NULL, NULL}
static shim shims[SHIM_SLOTS] = {SHIM_INIT, SHIM_INIT, SHIM_INIT, SHIM_INIT};
/* Guards the slots' installation and the fork handlers' registration. */
static pthread_mutex_t install_mutex = PTHREAD_MUTEX_INITIALIZER;
static int atfork_registered;

static shim_file *find_file(shim *s, dev_t dev, ino_t ino) {
    shim_file *f;
    for (f = s->files; f; f = f->next) {
        if (f->dev == dev && f->ino == ino) return f;
    }
    return NULL;
}

/* Calls found(ctx, dev, ino) for every POSIX lock this process holds, as
 * /proc/locks lists them.  Returns -1 when /proc/locks cannot be read. */
static int each_posix_lock_of_process(void (*found)(void *, dev_t, ino_t), void *ctx) {
    char line[256];
    long pid = (long)getpid();
    FILE *fp = fopen("/proc/locks", "re");
    if (fp == NULL) return -1;
    while (fgets(line, sizeof line, fp) != NULL) {
        /* "1: POSIX  ADVISORY  WRITE 1234 08:02:131 0 EOF"; a waiter's line
         * has "->" after the number and holds nothing. */
        char kind[16], mode[16], type[16];
        long lpid;
        unsigned int major, minor;
        unsigned long long ino;
        const char *p = strchr(line, ':');
        if (p == NULL || strstr(line, "->") != NULL) continue;
        if (sscanf(p + 1, "%15s %15s %15s %ld %x:%x:%llu", kind, mode, type, &lpid, &major, &minor,
                   &ino) != 7) {
            continue;
        }
        if (strcmp(kind, "POSIX") == 0 && lpid == pid) found(ctx, makedev(major, minor), (ino_t)ino);
    }
    fclose(fp);
    return 0;
}

/* Pins file (dev, ino) in shim ctx.  Out of memory: every file of the
 * library keeps POSIX locks instead (a file must not mix the two kinds). */
static void add_pin(void *ctx, dev_t dev, ino_t ino) {
    shim *s = ctx;
    shim_pin *grown;
    int i;
    for (i = 0; i < s->n_pins; i++) {
        if (s->pins[i].dev == dev && s->pins[i].ino == ino) return;
    }
    grown = realloc(s->pins, (size_t)(s->n_pins + 1) * sizeof *grown);
    if (grown == NULL) {
        s->ofd_state = -1;
        return;
    }
    s->pins = grown;
    s->pins[s->n_pins].dev = dev;
    s->pins[s->n_pins].ino = ino;
    s->n_pins++;
}

typedef struct lock_query {
    dev_t dev;
    ino_t ino;
    int held;
} lock_query;

static void match_lock(void *ctx, dev_t dev, ino_t ino) {
    lock_query *q = ctx;
    if (q->dev == dev && q->ino == ino) q->held = 1;
}

/* Whether file (dev, ino) must keep POSIX locks in this library because it
 * held POSIX locks on it at the install and may still.  Unpins the file once
 * the process holds no POSIX lock on it.  Mutex held. */
static int pinned(shim *s, dev_t dev, ino_t ino) {
    lock_query q;
    int i;
    for (i = 0; i < s->n_pins; i++) {
        if (s->pins[i].dev == dev && s->pins[i].ino == ino) break;
    }
    if (i == s->n_pins) return 0;
    /* Every lock call of this library now passes the shim's mutex, which we
     * hold: it cannot take a POSIX lock on the file between here and the
     * record's creation. */
    q.dev = dev;
    q.ino = ino;
    q.held = 0;
    if (each_posix_lock_of_process(match_lock, &q) != 0 || q.held) return 1;
    s->pins[i] = s->pins[--s->n_pins];
    return 0;
}

/* Forgets descriptor fd; returns the lock descriptor to close when fd was
 * SQLite's last descriptor of its file, else -1.  Mutex held. */
static int forget_fd(shim *s, int fd) {
    shim_file *f, **pp;
    int lockfd;
    if (fd < 0 || fd >= s->n_fds || s->fds[fd].file == NULL) return -1;
    f = s->fds[fd].file;
    s->fds[fd].file = NULL;
    s->stats.tracked_fds--;
    if (--f->nfds > 0) return -1;
    for (pp = &s->files; *pp != f; pp = &(*pp)->next) {
    }
    *pp = f->next;
    lockfd = f->lockfd;
    if (f->posix) s->stats.posix_files--;
    free(f);
    s->stats.tracked_files--;
    if (lockfd >= 0) s->stats.lock_fds--;
    return lockfd;
}

/* Counts descriptor fd (opened with access mode accmode) against its file.
 * Returns the file, or NULL when fd cannot be tracked (out of memory, fstat
 * failed): its locks then stay POSIX locks.  Mutex held. */
static shim_file *track_fd(shim *s, int fd, int accmode, int *stale_lockfd) {
    struct stat st;
    shim_file *f;
    *stale_lockfd = -1;
    if (fd < 0) return NULL;
    if (fd >= s->n_fds) {
        int n = s->n_fds ? s->n_fds : 64;
        shim_fd *grown;
        while (n <= fd) n *= 2;
        grown = realloc(s->fds, (size_t)n * sizeof *s->fds);
        if (grown == NULL) return NULL;
        memset(grown + s->n_fds, 0, (size_t)(n - s->n_fds) * sizeof *s->fds);
        s->fds = grown;
        s->n_fds = n;
    }
    /* A number still known here was closed behind SQLite's back. */
    *stale_lockfd = forget_fd(s, fd);
    if (fstat(fd, &st) != 0) return NULL;
    f = find_file(s, st.st_dev, st.st_ino);
    if (f == NULL) {
        f = calloc(1, sizeof *f);
        if (f == NULL) return NULL;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->lockfd = -1;
        if (s->n_pins > 0 && pinned(s, st.st_dev, st.st_ino)) {
            f->posix = 1;
            s->stats.posix_files++;
        }
        f->next = s->files;
        s->files = f;
        s->stats.tracked_files++;
    }
    f->nfds++;
    s->fds[fd].file = f;
    s->fds[fd].accmode = accmode;
    s->stats.tracked_fds++;
    return f;
}

/* Opens the lock descriptor of file f, of which fd is a descriptor: a new
 * open file description of the same inode, read-write where permitted.
 * Returns it, or -1 (the file then keeps POSIX locks).  Mutex held. */
static int open_lock_fd(shim *s, int fd, shim_file *f) {
    char path[40];
    struct stat st;
    int lockfd;
    if (s->ofd_state < 0) return -1;
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
    if (s->ofd_state == 0) {
        /* Kernels before 3.15 reject the OFD commands with EINVAL. */
        struct flock probe;
        memset(&probe, 0, sizeof probe);
        probe.l_type = F_WRLCK;
        probe.l_whence = SEEK_SET;
        if (fcntl(lockfd, F_OFD_GETLK, &probe) != 0 && errno == EINVAL) {
            s->ofd_state = -1;
            close(lockfd);
            return -1;
        }
        s->ofd_state = 1;
    }
    s->stats.lock_fds++;
    s->stats.lock_fds_opened++;
    return lockfd;
}

static int shim_open(shim *s, const char *path, int flags, int mode) {
    open_fn next;
    int fd;
    /* Read under the mutex, as the install wrote it: a thread of another
     * library may make its first call through the shim at once. */
    pthread_mutex_lock(&s->mutex);
    next = s->next_open;
    pthread_mutex_unlock(&s->mutex);
    fd = next(path, flags, mode);
    if (fd >= 0) {
        int stale;
        pthread_mutex_lock(&s->mutex);
        track_fd(s, fd, flags & O_ACCMODE, &stale);
        pthread_mutex_unlock(&s->mutex);
        if (stale >= 0) close(stale);
    }
    return fd;
}

static int shim_close(shim *s, int fd) {
    int lockfd;
    pthread_mutex_lock(&s->mutex);
    lockfd = forget_fd(s, fd);
    pthread_mutex_unlock(&s->mutex);
    if (lockfd >= 0) close(lockfd);
    return s->next_close(fd);
}

static int shim_fcntl(shim *s, int fd, int cmd, void *arg) {
    struct flock *lock, ofd;
    shim_file *f;
    int target, accmode, stale = -1, rc;

    if (cmd != F_GETLK && cmd != F_SETLK && cmd != F_SETLKW) {
        fcntl_fn next;
        pthread_mutex_lock(&s->mutex); /* as in shim_open */
        next = s->next_fcntl;
        pthread_mutex_unlock(&s->mutex);
        return next(fd, cmd, arg);
    }
    lock = arg;

    pthread_mutex_lock(&s->mutex);
    if (fd >= 0 && fd < s->n_fds && s->fds[fd].file != NULL) {
        f = s->fds[fd].file;
        accmode = s->fds[fd].accmode;
    } else {
        /* Opened before the shim was installed: another library's
         * descriptor, or (not normally possible) our own. */
        accmode = fcntl(fd, F_GETFL) & O_ACCMODE;
        f = track_fd(s, fd, accmode, &stale);
    }
    if (f == NULL || f->posix) {
        pthread_mutex_unlock(&s->mutex);
        if (stale >= 0) close(stale);
        return s->next_fcntl(fd, cmd, lock);
    }
    if (cmd != F_GETLK && ((lock->l_type == F_WRLCK && accmode == O_RDONLY) ||
                           (lock->l_type == F_RDLCK && accmode == O_WRONLY))) {
        pthread_mutex_unlock(&s->mutex);
        if (stale >= 0) close(stale);
        errno = EBADF;
        return -1;
    }
    if (f->lockfd < 0) {
        if (cmd != F_GETLK && lock->l_type == F_UNLCK) {
            /* SQLite holds nothing on this file. */
            pthread_mutex_unlock(&s->mutex);
            if (stale >= 0) close(stale);
            return 0;
        }
        f->lockfd = open_lock_fd(s, fd, f);
        if (f->lockfd < 0) {
            f->posix = 1;
            s->stats.posix_files++;
            s->stats.posix_fallbacks++;
            pthread_mutex_unlock(&s->mutex);
            if (stale >= 0) close(stale);
            return s->next_fcntl(fd, cmd, lock);
        }
    }
    /* SQLite serialises the lock calls of one file (its per-file mutex), and
     * the lock descriptor stays open while fd is; the kernel call itself
     * (F_OFD_SETLKW may wait) runs without the shim's mutex. */
    target = f->lockfd;
    pthread_mutex_unlock(&s->mutex);
    if (stale >= 0) close(stale);

    ofd = *lock;
    ofd.l_pid = 0; /* required by the OFD commands; SQLite leaves it unset */
    rc = s->next_fcntl(target, cmd == F_GETLK ? F_OFD_GETLK : cmd == F_SETLK ? F_OFD_SETLK : F_OFD_SETLKW,
                       &ofd);
    if (rc == 0 && cmd == F_GETLK) *lock = ofd;
    return rc;
}

/* The system calls SQLite gets, one set per slot: SQLite passes no context. */
#define SHIM_ENTRY_POINTS(i)                                                        \
    static int shim_open_##i(const char *path, int flags, int mode) {               \
        return shim_open(&shims[i], path, flags, mode);                             \
    }                                                                               \
    static int shim_close_##i(int fd) { return shim_close(&shims[i], fd); }         \
    static int shim_fcntl_##i(int fd, int cmd, ...) {                               \
        /* glibc's fcntl reads its third argument as a pointer whatever the     \
         * command; passing it on the same way is what glibc itself does. */        \
        va_list ap;                                                                 \
        void *arg;                                                                  \
        va_start(ap, cmd);                                                          \
        arg = va_arg(ap, void *);                                                   \
        va_end(ap);                                                                 \
        return shim_fcntl(&shims[i], fd, cmd, arg);                                 \
    }
SHIM_ENTRY_POINTS(0)
SHIM_ENTRY_POINTS(1)
SHIM_ENTRY_POINTS(2)
SHIM_ENTRY_POINTS(3)

static const struct {
    open_fn open;
    close_fn close;
    fcntl_fn fcntl;
} entry_points[SHIM_SLOTS] = {
    {shim_open_0, shim_close_0, shim_fcntl_0},
    {shim_open_1, shim_close_1, shim_fcntl_1},
    {shim_open_2, shim_close_2, shim_fcntl_2},
    {shim_open_3, shim_close_3, shim_fcntl_3},
};

/* Fork handlers for every slot installed (install_mutex keeps a slot from
 * being installed between them). */
static void atfork_prepare(void) {
    int i;
    pthread_mutex_lock(&install_mutex);
    for (i = 0; i < SHIM_SLOTS; i++) {
        if (shims[i].vfs) pthread_mutex_lock(&shims[i].mutex);
    }
}

static void atfork_parent(void) {
    int i;
    for (i = SHIM_SLOTS - 1; i >= 0; i--) {
        if (shims[i].vfs) pthread_mutex_unlock(&shims[i].mutex);
    }
    pthread_mutex_unlock(&install_mutex);
}

static void atfork_child(void) {
    int i;
    for (i = SHIM_SLOTS - 1; i >= 0; i--) {
        shim_file *f;
        if (shims[i].vfs == NULL) continue;
        for (f = shims[i].files; f; f = f->next) {
            if (f->lockfd >= 0) {
                close(f->lockfd); /* the parent's copy keeps its locks */
                f->lockfd = -1;
                shims[i].stats.lock_fds--;
            }
        }
        pthread_mutex_unlock(&shims[i].mutex);
    }
    pthread_mutex_unlock(&install_mutex);
}

/* Whether vfs's system calls are already one slot's entry points. */
static int shim_slot_of(sqlite3_vfs *vfs) {
    sqlite3_syscall_ptr current = vfs->xGetSystemCall(vfs, "fcntl");
    int i;
    for (i = 0; i < SHIM_SLOTS; i++) {
        if (current == (sqlite3_syscall_ptr)entry_points[i].fcntl) return i;
    }
    return -1;
}

/* Installs slot i on vfs.  pin: read /proc/locks for the POSIX locks the
 * library may already hold.  install_mutex held. */
static int install_on(int i, sqlite3_vfs *vfs, int pin) {
    shim *s = &shims[i];
    int rc;
    if (vfs->iVersion < 3 || vfs->xSetSystemCall == NULL || vfs->xGetSystemCall == NULL) {
        return SQLITE_ERROR;
    }
    if (!atfork_registered) {
        if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) return SQLITE_ERROR;
        atfork_registered = 1;
    }
    /* The library may be in use by other threads: they wait on the slot's
     * mutex from the first replaced call on, until the pins are in place. */
    pthread_mutex_lock(&s->mutex);
    s->next_open = (open_fn)vfs->xGetSystemCall(vfs, "open");
    s->next_close = (close_fn)vfs->xGetSystemCall(vfs, "close");
    s->next_fcntl = (fcntl_fn)vfs->xGetSystemCall(vfs, "fcntl");
    if (s->next_open == NULL || s->next_close == NULL || s->next_fcntl == NULL) {
        pthread_mutex_unlock(&s->mutex);
        return SQLITE_ERROR;
    }
    /* "open" before "close" before "fcntl": a descriptor is tracked from its
     * open on, and a lock call finds it (or tracks it late). */
    rc = vfs->xSetSystemCall(vfs, "open", (sqlite3_syscall_ptr)entry_points[i].open);
    if (rc == SQLITE_OK) rc = vfs->xSetSystemCall(vfs, "close", (sqlite3_syscall_ptr)entry_points[i].close);
    if (rc == SQLITE_OK) rc = vfs->xSetSystemCall(vfs, "fcntl", (sqlite3_syscall_ptr)entry_points[i].fcntl);
    if (rc != SQLITE_OK) {
        vfs->xSetSystemCall(vfs, "open", (sqlite3_syscall_ptr)s->next_open);
        vfs->xSetSystemCall(vfs, "close", (sqlite3_syscall_ptr)s->next_close);
        vfs->xSetSystemCall(vfs, "fcntl", (sqlite3_syscall_ptr)s->next_fcntl);
        pthread_mutex_unlock(&s->mutex);
        return rc;
    }
    s->vfs = vfs;
    /* After the swap, so that a lock taken through the old fcntl is seen;
     * before the mutex is released, so that no file is tracked unpinned.
     * Without /proc/locks every file of the library keeps POSIX locks. */
    if (pin) {
        if (each_posix_lock_of_process(add_pin, s) != 0) s->ofd_state = -1;
        s->stats.posix_pinned = s->n_pins;
    }
    pthread_mutex_unlock(&s->mutex);
    return SQLITE_OK;
}

int sss_lockshim_install(void) {
    sqlite3_vfs *vfs;
    int rc = SQLITE_OK;
    pthread_mutex_lock(&install_mutex);
    if (shims[0].vfs == NULL) {
        vfs = sqlite3_vfs_find("unix");
        rc = vfs == NULL ? SQLITE_ERROR : install_on(0, vfs, 0);
    }
    pthread_mutex_unlock(&install_mutex);
    return rc;
}

int sss_lockshim_install_foreign(void *vfs_find) {
    sqlite3_vfs *(*find)(const char *);
    sqlite3_vfs *vfs;
    int i, rc;
    /* A function's address as data (dlsym's way; POSIX makes them the same size). */
    memcpy(&find, &vfs_find, sizeof find);
    if (find == NULL || find == sqlite3_vfs_find) return SQLITE_MISUSE;
    vfs = find("unix");
    if (vfs == NULL) return SQLITE_ERROR;
    pthread_mutex_lock(&install_mutex);
    if (vfs == shims[0].vfs || vfs == sqlite3_vfs_find("unix")) {
        rc = SQLITE_MISUSE; /* our own library */
    } else if (shim_slot_of(vfs) >= 0) {
        rc = SQLITE_OK; /* already */
    } else {
        rc = SQLITE_FULL;
        for (i = 1; i < SHIM_SLOTS; i++) {
            if (shims[i].vfs == NULL) {
                rc = install_on(i, vfs, 1);
                break;
            }
        }
    }
    pthread_mutex_unlock(&install_mutex);
    return rc;
}

int sss_lockshim_active(void) {
    int active;
    pthread_mutex_lock(&shims[0].mutex);
    active = shims[0].vfs != NULL && shims[0].ofd_state >= 0;
    pthread_mutex_unlock(&shims[0].mutex);
    return active;
}

int sss_lockshim_foreign_libraries(void) {
    int i, n = 0;
    pthread_mutex_lock(&install_mutex);
    for (i = 1; i < SHIM_SLOTS; i++) n += shims[i].vfs != NULL;
    pthread_mutex_unlock(&install_mutex);
    return n;
}

static void add_stats(sss_lockshim_stats *out, const sss_lockshim_stats *in) {
    out->tracked_fds += in->tracked_fds;
    out->tracked_files += in->tracked_files;
    out->lock_fds += in->lock_fds;
    out->lock_fds_opened += in->lock_fds_opened;
    out->posix_fallbacks += in->posix_fallbacks;
    out->posix_pinned += in->posix_pinned;
    out->posix_files += in->posix_files;
}

void sss_lockshim_get_stats(sss_lockshim_stats *out) {
    pthread_mutex_lock(&shims[0].mutex);
    *out = shims[0].stats;
    pthread_mutex_unlock(&shims[0].mutex);
}

void sss_lockshim_get_foreign_stats(sss_lockshim_stats *out) {
    int i;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&install_mutex);
    for (i = 1; i < SHIM_SLOTS; i++) {
        if (shims[i].vfs == NULL) continue;
        pthread_mutex_lock(&shims[i].mutex);
        add_stats(out, &shims[i].stats);
        pthread_mutex_unlock(&shims[i].mutex);
    }
    pthread_mutex_unlock(&install_mutex);
}

#else /* no open file description locks: SQLite keeps its POSIX (or Windows) locks */

int sss_lockshim_install(void) { return SQLITE_OK; }

int sss_lockshim_install_foreign(void *vfs_find) {
    (void)vfs_find;
    return SQLITE_OK;
}

int sss_lockshim_active(void) { return 0; }

int sss_lockshim_foreign_libraries(void) { return 0; }

void sss_lockshim_get_stats(sss_lockshim_stats *out) { memset(out, 0, sizeof *out); }

void sss_lockshim_get_foreign_stats(sss_lockshim_stats *out) { memset(out, 0, sizeof *out); }

#endif
