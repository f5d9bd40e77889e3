"""Test infrastructure for the fault tests: real processes and a real sshfs rig.

* :class:`SshfsRig`: one directory exported by an sshd of our own (listening
  on 127.0.0.1 only, with its own host key and its own user key, both in a
  temporary directory; ``AuthorizedKeysFile`` points there, so nothing is
  added to ``~/.ssh``), mounted through sshfs as many times as asked.  Two
  mounts are two SFTP clients with separate caches and no shared byte-range
  locks: two hosts on a share whose locking is broken.
* process helpers: run a worker script with a bound on its run time, stop
  process groups by pid, CPU burners for "loaded machine" runs.

Everything here waits with a bound; nothing is left running by ``close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "_faults_workers.py")
SSHD = "/usr/sbin/sshd"


# -- processes --------------------------------------------------------------------


def worker_cmd(role: str, *args: object) -> list[str]:
    """The command line of one worker process (``_faults_workers.py ROLE ARGS``)."""
    return [sys.executable, WORKERS, role, *map(str, args)]


def spawn(role: str, *args: object, **kw: Any) -> subprocess.Popen[str]:
    """Start a worker in its own process group (so a signal to it never
    reaches pytest, and its children go with it)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(worker_cmd(role, *args), text=True, start_new_session=True, **kw)


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """End a process we started (SIGCONT first, in case it is stopped;
    SIGTERM, then SIGKILL after ``grace``), and reap it."""
    if proc.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    """Wait at most ``timeout`` for a worker; kill it if it is still running
    (then fail: a hang is a failure).  Returns (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=1.0)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(
            f"worker {proc.args[2:]} still running after {timeout:.0f}s (killed); "
            f"stdout: {out[-2000:]!r}; stderr: {err[-4000:]!r}"
        ) from None
    return proc.returncode, out, err


def run_json(role: str, *args: object, timeout: float) -> dict[str, Any]:
    """Run a worker to its end (bounded); return the JSON object of its last
    stdout line.  A non-zero exit or a missing report fails."""
    rc, out, err = finish(spawn(role, *args), timeout)
    lines = out.strip().splitlines()
    assert rc == 0 and lines, (f"worker {role} {args} exited {rc}; "
                               f"stdout {out[-2000:]!r}; stderr {err[-4000:]!r}")
    return json.loads(lines[-1])


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a worker's stdout, waiting at most ``timeout``."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no line from worker {proc.args[2:]} within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"worker {proc.args[2:]} ended without the expected line: {err[-4000:]}")
    return line.strip()


@contextlib.contextmanager
def cpu_burners(n: int) -> Iterator[list[subprocess.Popen[str]]]:
    """``n`` busy-loop processes for the duration of the block (a loaded machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], text=True,
                              start_new_session=True) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            stop(p, grace=2.0)


def process_state(pid: int) -> str:
    """The one-letter state of a process from /proc (``T`` = stopped), or ""."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll ``pred()`` until it is true; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the sshfs rig ----------------------------------------------------------------


def sshfs_unavailable() -> str | None:
    """Why the sshfs rig cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the sshfs rig needs Linux"
    if os.geteuid() != 0:
        return "the sshfs rig needs root (its own sshd, FUSE mounts)"
    if not os.path.exists("/dev/fuse"):
        return "the sshfs rig needs /dev/fuse"
    missing = [p for p in ("sshfs", "ssh-keygen") if shutil.which(p) is None]
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    if shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        missing.append("fusermount")
    if missing:
        return ("the sshfs rig needs the Debian packages openssh-server and sshfs "
                f"(apt-get install openssh-server sshfs; .ci/run does): missing {', '.join(missing)}")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _tail(path: str, chars: int = 1500) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-chars:]
    except OSError as e:
        return f"(no log: {e})"


def mounted(point: str) -> bool:
    """Whether ``point`` is in this process's mount table.  Unlike
    ``os.path.ismount`` it is true of a dead FUSE mount too (whose daemon
    exited: every access, even ``lstat``, fails with ENOTCONN)."""
    target = os.path.realpath(point)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            # field 5 is the mount point, with space, tab, newline and backslash octal-escaped
            field = line.split(" ")[4]
            if field.encode().decode("unicode_escape") == target:
                return True
    return False


def _unmount(m: Mount) -> None:
    """Unmount ``m`` and stop its sshfs, bounded; a dead or busy mount is
    detached lazily (the kernel drops it once nothing uses it)."""
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"
    if mounted(m.point) and m.proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _run([fusermount, "-u", m.point], 15)
    stop(m.proc, grace=5.0)
    for cmd in ([fusermount, "-u", "-z", m.point], ["umount", "-l", m.point]):
        if not mounted(m.point):
            break
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            _run(cmd, 15)


class Mount:
    """One sshfs mount of the rig: its name (``m1``...), point, process and log."""

    def __init__(self, name: str, point: str, proc: subprocess.Popen[str], log: str) -> None:
        self.name, self.point, self.proc, self.log = name, point, proc, log

    def exit_status(self) -> str:
        rc = self.proc.returncode
        if rc is None:
            return "is running"
        if rc < 0:
            return f"was killed by {signal.Signals(-rc).name}"
        return f"exited with {rc}"

    def log_tail(self, chars: int = 1500) -> str:
        return _tail(self.log, chars)


class RigUnavailable(Exception):
    """The rig could not be set up here (reported as a skip with the reason)."""


class SshfsRig:
    """sshd on 127.0.0.1 exporting ``self.export``; :meth:`mount` adds sshfs
    mounts of it.  :meth:`close` always unmounts and stops sshd (bounded)."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="sss-sshfs-")
        self.export = os.path.join(self.root, "export")
        os.mkdir(self.export)
        self.sshd: subprocess.Popen[str] | None = None
        self.port = 0
        self.mounts: list[Mount] = []
        self._count = 0

    # set-up ---------------------------------------------------------------------

    def start(self) -> None:
        for name in ("hostkey", "userkey"):
            r = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                      os.path.join(self.root, name)], 30)
            if r.returncode:
                raise RigUnavailable(f"ssh-keygen failed: {r.stderr.strip()}")
        shutil.copy(os.path.join(self.root, "userkey.pub"), os.path.join(self.root, "authorized_keys"))
        # sshd's privilege separation directory (Debian's sshd refuses to start without it)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        last = ""
        for _ in range(3):  # a port picked free may be taken in between: try again
            self.port = _free_port()
            cfg = os.path.join(self.root, "sshd_config")
            with open(cfg, "w", encoding="ascii") as f:
                f.write(
                    f"Port {self.port}\n"
                    "ListenAddress 127.0.0.1\n"
                    f"HostKey {self.root}/hostkey\n"
                    f"AuthorizedKeysFile {self.root}/authorized_keys\n"
                    # the temporary directory lies under /tmp (mode 1777)
                    "StrictModes no\n"
                    "PermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\n"
                    "UsePAM no\n"
                    "Subsystem sftp internal-sftp\n"
                    f"PidFile {self.root}/sshd.pid\n"
                    # connection-level events (a dropped session says why) in sshd.log
                    "LogLevel VERBOSE\n"
                    # the mounts connect once each; never refuse or time out a login on
                    # a loaded machine, and never drop an idle session
                    "MaxStartups 100\n"
                    "LoginGraceTime 0\n"
                    "ClientAliveInterval 0\n"
                    "TCPKeepAlive no\n"
                )
            self.sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", cfg], stdout=subprocess.DEVNULL,
                                         stderr=open(os.path.join(self.root, "sshd.log"), "w"),
                                         text=True, start_new_session=True)
            end = time.monotonic() + 10
            while time.monotonic() < end and self.sshd.poll() is None:
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
                time.sleep(0.05)
            stop(self.sshd)
            with open(os.path.join(self.root, "sshd.log"), encoding="utf-8", errors="replace") as f:
                last = f.read()[-2000:]
            self.sshd = None
        raise RigUnavailable(f"sshd did not start: {last}")

    def mount(self, *options: str) -> str:
        """A new sshfs mount of the export (``options`` are sshfs ``-o`` options,
        e.g. ``dir_cache=no``); returns its mount point."""
        assert self.sshd is not None
        self._count += 1
        name = f"m{self._count}"
        point = os.path.join(self.root, name)
        os.mkdir(point)
        opts = [
            f"IdentityFile={self.root}/userkey", "IdentitiesOnly=yes", "BatchMode=yes",
            "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
            # ssh's own account of a dropped connection goes to the mount's log
            "LogLevel=VERBOSE",
            # no keep-alive probes: on a loaded machine a late answer must not end the session
            "ServerAliveInterval=0", "TCPKeepAlive=no",
            f"port={self.port}", *options,
        ]
        # -s: one FUSE request at a time.  Multi-threaded, libfuse 3.14's
        # high-level layer aborted under this load (sshfs killed by SIGABRT,
        # "fuse.c:823: delete_node: Assertion `node->treelock == 0' failed",
        # leaving a dead mount: 1 run in about 10 of the 2 x 2,000 stress test).
        cmd = ["sshfs", "-f", "-s"]
        for o in opts:
            cmd += ["-o", o]
        cmd += [f"{pwd.getpwuid(os.getuid()).pw_name}@127.0.0.1:{self.export}", point]
        log = os.path.join(self.root, f"sshfs-{name}.log")
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=f, text=True, start_new_session=True)
        m = Mount(name, point, proc, log)
        self.mounts.append(m)
        end = time.monotonic() + 20
        while not mounted(point):
            if proc.poll() is not None or time.monotonic() > end:
                raise RigUnavailable(f"sshfs mount failed (exit {proc.poll()}): {m.log_tail()}")
            time.sleep(0.05)
        return point

    # health ---------------------------------------------------------------------

    def dead(self) -> list[str]:
        """One line per mount whose sshfs has exited (a dead mount fails every
        operation at once: what a writer then reports is a consequence, not the
        finding), with its exit status and the end of its log; sshd too."""
        out = [f"sshfs for {m.name} ({m.point}) {m.exit_status()}; its log: {m.log_tail()!r}"
               for m in self.mounts if m.proc.poll() is not None]
        if self.sshd is not None and self.sshd.poll() is not None:
            out.append(f"sshd exited with {self.sshd.returncode}; {self.sshd_log()!r}")
        return out

    def assert_alive(self, seen: str = "") -> None:
        """Fail, naming the mount, when an sshfs process (or sshd) has died;
        ``seen``: what the test saw meanwhile (added to the message)."""
        dead = self.dead()
        if dead:
            raise AssertionError("the sshfs rig broke during the test: " + "; ".join(dead)
                                 + (f"; meanwhile {seen}" if seen else "")
                                 + f"; sshd log: {self.sshd_log()!r}")

    def unmount(self, point: str) -> None:
        """Unmount one mount (dead or alive) and forget it: a test that kills
        an sshfs on purpose gives its mount back this way."""
        for m in [m for m in self.mounts if m.point == point]:
            _unmount(m)
            self.mounts.remove(m)

    def sshd_log(self, chars: int = 1500) -> str:
        return _tail(os.path.join(self.root, "sshd.log"), chars)

    # tear-down ------------------------------------------------------------------

    def close(self) -> None:
        """Unmount every mount and stop sshd; each step bounded.  Safe to call
        twice.  A mount whose sshfs died is still in the kernel's table (every
        access fails with ENOTCONN, and ``os.path.ismount`` says False): it is
        detached lazily all the same, so no mount outlives the rig."""
        for m in reversed(self.mounts):
            _unmount(m)
        self.mounts.clear()
        if self.sshd is not None:
            stop(self.sshd)
            self.sshd = None
        keep = os.environ.get("SSS_SSHFS_KEEP_LOGS")
        if keep:  # for hunting a rig failure: the logs of every run, by rig directory
            dest = os.path.join(keep, os.path.basename(self.root))
            os.makedirs(dest, exist_ok=True)
            for n in os.listdir(self.root):
                if n.endswith(".log"):
                    with contextlib.suppress(OSError):
                        shutil.copy(os.path.join(self.root, n), dest)
        if not any(mounted(os.path.join(self.root, n)) for n in os.listdir(self.root)):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SshfsRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
