/*
 * sss_oslock.c - see sss_oslock.h.
 */
#ifndef _WIN32
#define _GNU_SOURCE 1 /* F_OFD_* in <fcntl.h> */
#endif

#include "sss_oslock.h"

#include <errno.h>
#include <string.h>

#ifdef _WIN32
#include <io.h>
#include <windows.h>

int sss_oslock_lock(int fd, int wait)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    OVERLAPPED ov;
    DWORD flags = LOCKFILE_EXCLUSIVE_LOCK | (wait ? 0 : LOCKFILE_FAIL_IMMEDIATELY);
    if (h == INVALID_HANDLE_VALUE)
        return EBADF;
    memset(&ov, 0, sizeof ov);
    if (LockFileEx(h, flags, 0, MAXDWORD, MAXDWORD, &ov))
        return 0;
    switch (GetLastError()) {
    case ERROR_LOCK_VIOLATION:
    case ERROR_IO_PENDING:
        return EAGAIN;
    default:
        return EIO;
    }
}

int sss_oslock_unlock(int fd)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    OVERLAPPED ov;
    if (h == INVALID_HANDLE_VALUE)
        return EBADF;
    memset(&ov, 0, sizeof ov);
    return UnlockFileEx(h, 0, MAXDWORD, MAXDWORD, &ov) ? 0 : EIO;
}

int sss_oslock_probe(int fd, int *held, int *pid)
{
    /* No "test" call on Windows: take it without waiting, and give it back. */
    int rc = sss_oslock_lock(fd, 0);
    *pid = 0;
    if (rc == EAGAIN) {
        *held = 1;
        return 0;
    }
    if (rc != 0)
        return rc;
    *held = 0;
    return sss_oslock_unlock(fd);
}

int sss_oslock_per_descriptor(void) { return 1; }

#else /* POSIX */
#include <fcntl.h>
#include <unistd.h>

#ifdef F_OFD_SETLK
/* 1: OFD locks work; 0: not tried yet; -1: the kernel refused them. */
static volatile int ofd_state = 0;
#endif

static int set_lock(int fd, int cmd_posix, int cmd_ofd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0; /* the whole file, whatever its size */
    (void)cmd_ofd;
#ifdef F_OFD_SETLK
    if (ofd_state >= 0) {
        if (fcntl(fd, cmd_ofd, &fl) == 0) {
            ofd_state = 1;
            return 0;
        }
        if (errno != EINVAL || ofd_state == 1)
            return (errno == EACCES) ? EAGAIN : errno;
        ofd_state = -1; /* kernel before 3.15 */
        memset(&fl, 0, sizeof fl);
        fl.l_type = type;
        fl.l_whence = SEEK_SET;
    }
#endif
    if (fcntl(fd, cmd_posix, &fl) == 0)
        return 0;
    return (errno == EACCES) ? EAGAIN : errno;
}

int sss_oslock_lock(int fd, int wait)
{
#ifdef F_OFD_SETLK
    return set_lock(fd, wait ? F_SETLKW : F_SETLK, wait ? F_OFD_SETLKW : F_OFD_SETLK, F_WRLCK);
#else
    return set_lock(fd, wait ? F_SETLKW : F_SETLK, 0, F_WRLCK);
#endif
}

int sss_oslock_unlock(int fd)
{
#ifdef F_OFD_SETLK
    return set_lock(fd, F_SETLK, F_OFD_SETLK, F_UNLCK);
#else
    return set_lock(fd, F_SETLK, 0, F_UNLCK);
#endif
}

int sss_oslock_probe(int fd, int *held, int *pid)
{
    struct flock fl;
    int cmd = F_GETLK;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
#ifdef F_OFD_GETLK
    if (ofd_state >= 0)
        cmd = F_OFD_GETLK;
#endif
    if (fcntl(fd, cmd, &fl) != 0) {
#ifdef F_OFD_GETLK
        if (cmd == F_OFD_GETLK && errno == EINVAL) {
            ofd_state = -1;
            return sss_oslock_probe(fd, held, pid);
        }
#endif
        return errno;
    }
    *held = fl.l_type != F_UNLCK;
    *pid = (*held && fl.l_pid > 0) ? (int)fl.l_pid : 0;
    return 0;
}

int sss_oslock_per_descriptor(void)
{
#ifdef F_OFD_SETLK
    return ofd_state >= 0;
#else
    return 0;
#endif
}
#endif
