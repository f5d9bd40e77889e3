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

int sss_oslock_wait(int fd, int timeout_ms)
{
    (void)fd;
    (void)timeout_ms;
    return ENOSYS;
}

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

#if !defined(_WIN32) && defined(__linux__)
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#endif

#ifndef _WIN32
#if defined(__linux__) && defined(SIGEV_THREAD_ID)
/*
 * A blocking fcntl(F_OFD_SETLKW) cannot time out, so the wait is bounded by a
 * per-call timer that sends a signal to this thread only (SIGEV_THREAD_ID);
 * its handler does nothing and is installed without SA_RESTART, so the
 * signal ends the wait with EINTR.  The timer is disarmed right after the
 * call returns: the signal can then only arrive while this thread runs in
 * user space, where it interrupts nothing.  Waiting in the caller's own
 * thread hands the lock over in ~20 us (a waiter thread that then wakes the
 * caller cost ~100 us per hand-over).
 */
static int wake_signal = 0; /* 0: not set up yet; -1: unavailable */
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;

static void ignore_wake(int sig) { (void)sig; }

static void set_up_wake(void)
{
    struct sigaction old, act;
    int sig = SIGRTMAX - 3;
    if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL
            || (old.sa_flags & SA_SIGINFO)) {
        wake_signal = -1; /* the program uses it: wait in a thread instead */
        return;
    }
    memset(&act, 0, sizeof act);
    act.sa_handler = ignore_wake;
    sigemptyset(&act.sa_mask);
    act.sa_flags = 0; /* no SA_RESTART: the signal must end the wait */
    wake_signal = sigaction(sig, &act, NULL) == 0 ? sig : -1;
}

int sss_oslock_wait(int fd, int timeout_ms)
{
    struct sigevent sev;
    struct itimerspec its;
    timer_t timer;
    int rc;
    pthread_once(&wake_once, set_up_wake);
    if (wake_signal <= 0)
        return ENOSYS;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = wake_signal;
#ifdef sigev_notify_thread_id
    sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
#else
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
#endif
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0)
        return ENOSYS;
    memset(&its, 0, sizeof its);
    if (timeout_ms < 1)
        timeout_ms = 1;
    its.it_value.tv_sec = timeout_ms / 1000;
    its.it_value.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    timer_settime(timer, 0, &its, NULL);
    rc = sss_oslock_lock(fd, 1);
    timer_delete(timer); /* disarms it: no wake-up signal after this */
    if (rc == EINTR)
        return EAGAIN;
    return rc;
}
#else
int sss_oslock_wait(int fd, int timeout_ms)
{
    (void)fd;
    (void)timeout_ms;
    return ENOSYS;
}
#endif
#endif
