"""Who is this process, and is that other process still alive?

The lock protocol lets an observer judge a lock stale *at once* when the owner
ran on the same host and its process is gone.  That needs three facts, each
computed here with the standard library only:

* :func:`host_id` -- an opaque string equal for two processes exactly when pid
  numbers mean the same thing to both (same kernel boot and pid namespace).
  ``""`` means "unknown": such owners are never judged by pid.
* :func:`process_start_token` -- a string that changes when a pid is reused.
  ``""`` means unknown: a live pid with an unknown token is taken as alive.
* :func:`pid_state` -- ``"alive"``, ``"dead"`` or ``"unknown"``.

Linux reads ``/proc``; macOS and Windows use ``ctypes`` on best effort and fall
back to "unknown", which only ever makes the client wait longer, never break a
live lock.  Nothing here uses ``os.kill(pid, 0)`` on Windows, where signal 0 is
``CTRL_C_EVENT`` and would interrupt the other process.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import lru_cache

__all__ = ["host_id", "host_name", "process_start_token", "own_start_token", "pid_state"]


_host_name: tuple[int, str] | None = None


def host_name() -> str:
    """The host name, for humans only (never used to decide anything).

    Looked up once per process (it is written at every acquisition)."""
    global _host_name
    pid = os.getpid()
    if _host_name is None or _host_name[0] != pid:
        _host_name = (pid, _lookup_host_name())
    return _host_name[1]


def _lookup_host_name() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


@lru_cache(maxsize=1)
def _linux_host_id() -> str:
    # boot_id is random per kernel boot, so it differs between hosts and
    # between boots; the pid namespace inode separates containers sharing one
    # kernel.  Neither alone is enough: every host's initial pid namespace has
    # the same inode number.
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        boot = f.read().strip()
    ns = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    if not boot or not ns:
        return ""
    return f"linux:{boot}:{ns}"


def _darwin_sysctl_string(name: str) -> str:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    size = ctypes.c_size_t(0)
    if libc.sysctlbyname(name.encode(), None, ctypes.byref(size), None, 0) != 0:
        return ""
    buf = ctypes.create_string_buffer(size.value)
    if libc.sysctlbyname(name.encode(), buf, ctypes.byref(size), None, 0) != 0:
        return ""
    return buf.value.decode("ascii", "replace")


@lru_cache(maxsize=1)
def _windows_host_id() -> str:
    if sys.platform != "win32":  # also tells type checkers on other systems to skip the rest
        raise OSError("Windows only")
    import ctypes
    import time
    import winreg

    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
        guid = str(winreg.QueryValueEx(key, "MachineGuid")[0])
    # Boot time rounded to 10 minutes: processes that round differently just
    # count as different hosts, which is the safe direction (wait, not break).
    tick = ctypes.windll.kernel32.GetTickCount64
    tick.restype = ctypes.c_ulonglong
    boot = int((time.time() - tick() / 1000.0) // 600)
    return f"windows:{guid}:{boot}"


@lru_cache(maxsize=1)
def host_id() -> str:
    """Opaque id of (host, boot, pid namespace); ``""`` when it can't be known."""
    try:
        if sys.platform.startswith("linux"):
            return _linux_host_id()
        if sys.platform == "darwin":
            boot = _darwin_sysctl_string("kern.bootsessionuuid")
            return f"darwin:{boot}" if boot else ""
        if sys.platform == "win32":
            return _windows_host_id()
    except Exception:  # any failure only disables the same-host shortcut
        return ""
    return ""


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after
    # the *last* ")"; then field 3 is the state and field 22 the start time.
    rest = data[data.rindex(b")") + 2 :].split()
    return rest[0].decode("ascii"), rest[19].decode("ascii")


def _darwin_start(pid: int) -> str:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    # struct kinfo_proc starts with extern_proc, whose first member is a union
    # holding p_starttime (struct timeval); 648 bytes covers the whole struct.
    mib = (ctypes.c_int * 4)(1, 14, 1, pid)  # CTL_KERN, KERN_PROC, KERN_PROC_PID
    buf = ctypes.create_string_buffer(1024)
    size = ctypes.c_size_t(ctypes.sizeof(buf))
    if libc.sysctl(mib, 4, buf, ctypes.byref(size), None, 0) != 0 or size.value == 0:
        return ""
    sec = ctypes.c_int64.from_buffer_copy(buf, 0).value
    usec = ctypes.c_int32.from_buffer_copy(buf, 8).value
    return f"darwin:{sec}.{usec:06d}" if sec else ""


def _windows_process(pid: int) -> tuple[bool | None, str]:
    """(alive?, creation-time token) through kernel32; (None, "") if unknown."""
    if sys.platform != "win32":  # also tells type checkers on other systems to skip the rest
        raise OSError("Windows only")
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.OpenProcess.restype = wintypes.HANDLE
    handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        err = ctypes.get_last_error()
        # ERROR_INVALID_PARAMETER: no such process.  Access denied: it exists.
        return (False, "") if err == 87 else (None, "")
    try:
        code = wintypes.DWORD()
        alive: bool | None = None
        if k32.GetExitCodeProcess(handle, ctypes.byref(code)):
            alive = code.value == 259  # STILL_ACTIVE
        times = [wintypes.FILETIME() for _ in range(4)]
        token = ""
        if k32.GetProcessTimes(handle, *[ctypes.byref(t) for t in times]):
            created = (times[0].dwHighDateTime << 32) | times[0].dwLowDateTime
            token = f"windows:{created}"
        return alive, token
    finally:
        k32.CloseHandle(handle)


def process_start_token(pid: int | None = None) -> str:
    """A token that differs between two processes that had the same pid.

    Linux: ``/proc/<pid>/stat`` field 22 (start time in clock ticks since boot;
    the boot is part of :func:`host_id`).  macOS: ``kinfo_proc.p_starttime``.
    Windows: the process creation FILETIME.  ``""`` when unknown.
    """
    if pid is None:
        pid = os.getpid()
    try:
        if sys.platform.startswith("linux"):
            st = _linux_stat(pid)
            return f"linux:{st[1]}" if st else ""
        if sys.platform == "darwin":
            return _darwin_start(pid)
        if sys.platform == "win32":
            return _windows_process(pid)[1]
    except Exception:  # unknown is safe: it never makes a live lock stale
        return ""
    return ""


_own_token: tuple[int, str] | None = None


def own_start_token() -> str:
    """:func:`process_start_token` of this process, computed once per pid
    (a forked child has a pid of its own, so it computes its own token)."""
    global _own_token
    pid = os.getpid()
    cached = _own_token
    if cached is None or cached[0] != pid:
        cached = _own_token = (pid, process_start_token(pid))
    return cached[1]


def pid_state(pid: int) -> str:
    """``"alive"``, ``"dead"`` or ``"unknown"`` for a pid of *this* host.

    A zombie (exited, not yet reaped by its parent) counts as dead: it will
    never heartbeat again.
    """
    if pid <= 0:
        return "unknown"
    try:
        if sys.platform.startswith("linux"):
            st = _linux_stat(pid)
            if st is None:
                return "dead"
            return "dead" if st[0] in ("Z", "X", "x") else "alive"
        if sys.platform == "win32":
            alive = _windows_process(pid)[0]
            return "unknown" if alive is None else ("alive" if alive else "dead")
        os.kill(pid, 0)
        return "alive"
    except ProcessLookupError:
        return "dead"
    except PermissionError:  # exists, owned by another user
        return "alive"
    except Exception:
        return "unknown"


def owner_process_state(pid: int, process_start: str) -> str:
    """What became of the process a lock record names (same host only):
    ``"alive"``, ``"dead"``, ``"reused"`` (the pid is alive but its start
    token differs from ``process_start``: another process) or ``"unknown"``."""
    state = pid_state(pid)
    if state == "alive" and process_start:
        token = process_start_token(pid)
        if token and token != process_start:
            return "reused"
    return state
