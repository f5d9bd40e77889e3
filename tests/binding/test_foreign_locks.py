"""Two SQLite libraries in one process (issue 12, point 9).

The package's SQLite and the stdlib's each keep their own lock state.  Under
POSIX record locks, which belong to the process, the stdlib's close of its
descriptor of a file drops every lock the package holds on that file, and
the package's close drops the stdlib's; on Linux both libraries therefore
take open file description locks (csrc/sss_lockshim.c, installed on the
stdlib's SQLite too).  Each scenario runs process P twice, with
``SQLITE_SESSION_SAFE_LOCKS=posix`` (the hazard must show: that proves the
scenario can see it) and with the default locks (it must not).  Real files,
real processes; the fault (one library's open and close in P) is injected by
the test programs, never by the package.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import _foreign_locks_workers
import pytest
from _foreign_locks_workers import busy_outcome, proc_locks, run_p

import sqlite_session_safe as sss
from sqlite_session_safe.binding.raw import LOCKS_ENV, NULL, ffi, lib, stdlib_vfs_find

STRESS_SCALE = max(1, round(float(os.environ.get("SSS_STRESS_SCALE", "1"))))

linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="open file description locks are Linux's")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX record locks")


def shim_stats(library: str = "package") -> dict[str, int]:
    """The shim's counters for the package's SQLite, or ("stdlib") for the
    other SQLite libraries it is installed on."""
    s = ffi.new("sss_lockshim_stats *")
    if library == "package":
        lib.sss_lockshim_get_stats(s)
    else:
        lib.sss_lockshim_get_foreign_stats(s)
    return {name: int(getattr(s, name)) for name in
            ("tracked_fds", "tracked_files", "lock_fds", "lock_fds_opened", "posix_fallbacks",
             "posix_pinned", "posix_files")}


def stdlib_sqlite_reachable() -> bool:
    """Whether the shim can reach the stdlib's SQLite (where it cannot, that
    keeps POSIX locks: README)."""
    return bool(stdlib_vfs_find() != NULL)


stdlib_shimmed = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not stdlib_sqlite_reachable(),
    reason="the shim reaches the stdlib's SQLite on Linux, where that exports its API")


def descriptors_of(*paths: str) -> int:
    """How many descriptors of this process refer to these files (counted by
    /proc/self/fd, so what other tests leave for the garbage collector does
    not count)."""
    wanted = {os.path.realpath(p) for p in paths}
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") in wanted
        except OSError:
            pass
    return n


def kernel_locks(path: str) -> list[str]:
    """The lines of /proc/locks for this file: kind (POSIX, OFDLCK), type,
    range (none when the file is gone)."""
    if not os.path.exists(path):
        return []
    return [line.split(":", 1)[1].strip() for line in proc_locks(f":{os.stat(path).st_ino} ")]


# -- which locks ---------------------------------------------------------------


def test_lock_kind_of_this_platform():
    expected = {"linux": "ofd", "win32": "windows"}.get(sys.platform, "posix")
    if os.environ.get(LOCKS_ENV, "").lower() == "posix" and sys.platform != "win32":
        expected = "posix"
    assert sss.file_lock_kind() == expected


@linux
def test_environment_keeps_posix_locks(tmp_path):
    code = "import sqlite_session_safe as sss; print(sss.file_lock_kind())"
    env = dict(os.environ, **{LOCKS_ENV: "posix"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "posix"


@linux
def test_locks_are_ofd_locks_held_through_one_descriptor(tmp_path):
    path = str(tmp_path / "k.db")
    a = sss.connect(path)
    b = sss.connect(path)
    a.execute("CREATE TABLE t(x)")
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO t VALUES (1)")
    b.execute("BEGIN")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)  # another connection reads on
    locks = kernel_locks(path)
    assert locks and all(line.startswith("OFDLCK") for line in locks), locks
    assert len(locks) == 2, locks  # RESERVED (write) + SHARED (read): one owner's
    # Both connections' locks go through one lock descriptor: 2 + 1.
    assert descriptors_of(path) == 3
    with pytest.raises(sss.BusyError):
        b.execute("INSERT INTO t VALUES (2)")  # the process-wide RESERVED still excludes
    b.execute("ROLLBACK")
    a.execute("COMMIT")
    a.close()
    assert kernel_locks(path) == []
    b.close()
    assert descriptors_of(path) == 0


@stdlib_shimmed
def test_stdlib_locks_are_ofd_locks_too(tmp_path):
    if os.environ.get(LOCKS_ENV, "").lower() == "posix":
        pytest.skip("the environment keeps POSIX locks")
    assert lib.sss_lockshim_foreign_libraries() == 1
    path = str(tmp_path / "k.db")
    std = sqlite3.connect(path, isolation_level=None)
    std.execute("CREATE TABLE t(x)")
    std.execute("BEGIN IMMEDIATE")
    locks = kernel_locks(path)
    assert locks and all(line.startswith("OFDLCK") for line in locks), locks
    assert descriptors_of(path) == 2  # its connection's and its lock descriptor
    std.execute("ROLLBACK")
    std.close()
    assert descriptors_of(path) == 0


@linux
def test_our_close_in_this_process_leaves_the_stdlib_locks(tmp_path):
    """The other direction: the stdlib reads a WAL file (SHARED on it, the
    -shm's DMS lock); a package connection opens, reads and closes; the
    kernel still lists the stdlib's locks."""
    path = str(tmp_path / "w.db")
    with sss.connect(path) as con:
        con.execute("PRAGMA journal_mode = wal")
        con.execute("CREATE TABLE t(x)")
    std = sqlite3.connect(path, timeout=0)
    std.execute("SELECT count(*) FROM t").fetchall()
    held = kernel_locks(path), kernel_locks(path + "-shm")
    assert held[0] and held[1]
    for _ in range(3):
        ours = sss.connect(path)
        ours.execute("INSERT INTO t VALUES (1)")
        ours.close()
    if os.environ.get(LOCKS_ENV, "").lower() == "posix" or not stdlib_sqlite_reachable():
        # The hazard itself: the package's first close dropped the stdlib's
        # locks; the next took itself for the last connection and deleted the
        # -wal and -shm the stdlib's connection has open.
        assert kernel_locks(path) == [] and not os.path.exists(path + "-shm")
    else:
        assert (kernel_locks(path), kernel_locks(path + "-shm")) == held
        assert os.path.exists(path + "-wal")  # nobody checkpointed it away from the stdlib
    std.close()
    with sss.connect(path) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)


PINNED = textwrap.dedent(r"""
    import json, os, sqlite3, sys
    path = sys.argv[1]
    std = sqlite3.connect(path, isolation_level=None)
    std.execute("BEGIN IMMEDIATE")  # POSIX locks, taken before the package is imported
    import sqlite_session_safe as sss
    from sqlite_session_safe.binding.raw import ffi, lib
    sys.path.insert(0, sys.argv[2])
    from _foreign_locks_workers import proc_locks

    def locks():
        return sorted(line.split()[1] for line in proc_locks(f":{os.stat(path).st_ino} "))

    def pinned():
        s = ffi.new("sss_lockshim_stats *")
        lib.sss_lockshim_get_foreign_stats(s)
        return [s.posix_pinned, s.posix_files]

    out = {"before": locks()}
    std.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, timeout=0)  # a second connection meanwhile: one kind per file
    out["other_reads"] = other.execute("SELECT count(*) FROM t").fetchone()[0]
    out["pinned"] = pinned()
    std.execute("COMMIT")  # released through POSIX, as taken
    out["after_commit"] = locks()
    std.close()
    other.close()
    again = sqlite3.connect(path, isolation_level=None)
    again.execute("BEGIN IMMEDIATE")
    out["reopened"] = locks()  # no POSIX lock left: open file description locks now
    again.execute("ROLLBACK")
    again.close()
    out["pinned_after"] = pinned()
    print(json.dumps(out))
""")


@stdlib_shimmed
def test_stdlib_locks_taken_before_the_import_stay_posix_until_released(tmp_path):
    path = str(tmp_path / "p.db")
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")
    env = {k: v for k, v in os.environ.items() if k != LOCKS_ENV}
    helpers = os.path.dirname(_foreign_locks_workers.__file__)  # PINNED imports proc_locks from there
    done = subprocess.run([sys.executable, "-c", PINNED, path, helpers], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"] == ["POSIX", "POSIX"], out  # SHARED + RESERVED
    assert out["other_reads"] == 0 and out["pinned"] == [1, 1], out
    assert out["after_commit"] == [], out
    assert out["reopened"] == ["OFDLCK", "OFDLCK"], out
    assert out["pinned_after"] == [1, 0], out
    with sss.connect(path) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]


@linux
def test_lock_descriptors_are_closed_with_the_last_connection(tmp_path):
    before = shim_stats()
    for mode in ("delete", "wal"):
        path = str(tmp_path / f"{mode}.db")
        for _ in range(30):
            cons = [sss.connect(path) for _ in range(3)]
            cons[0].execute(f"PRAGMA journal_mode = {mode}")
            cons[0].execute("CREATE TABLE IF NOT EXISTS t(x)")
            for c in cons:
                c.execute("INSERT INTO t VALUES (1)")
                c.execute("SELECT count(*) FROM t").fetchall()
            # 3 connections + 1 lock descriptor (+ in WAL: -wal, -shm and its lock descriptor)
            assert descriptors_of(path) == 4
            if mode == "wal":
                assert descriptors_of(path + "-shm") == 2
            for c in cons:
                c.close()
            assert descriptors_of(path, path + "-shm", path + "-wal", path + "-journal") == 0
    after = shim_stats()
    assert after["posix_fallbacks"] == before["posix_fallbacks"]
    assert after["lock_fds_opened"] >= before["lock_fds_opened"] + 2 * 30


# -- the stdlib in the same process: each scenario with both kinds of lock --------


def _run(scenario, tmp_path, kind, *args):
    d = tmp_path / kind
    d.mkdir()
    return run_p(scenario, str(d), kind, *args)


@linux
def test_stdlib_and_package_exclude_each_other_in_one_process(tmp_path):
    ofd = _run("stdlib_excluded", tmp_path, "ofd")
    assert ofd["stdlib_while_sss"].startswith("refused"), ofd
    assert ofd["sss_while_stdlib"].startswith("refused"), ofd
    assert ofd["stdlib_reads_while_sss_reads"] == 2
    # Under POSIX locks both were admitted: two writers of one file at once.
    posix = _run("stdlib_excluded", tmp_path, "posix")
    assert posix["stdlib_while_sss"] == posix["sss_while_stdlib"] == "admitted", posix


@posix_only
def test_lost_commit_reproduced_with_posix_locks(tmp_path):
    """P holds RESERVED; the stdlib closes the file in P; Q commits, although
    it should have been refused, and P's COMMIT then writes over it."""
    out = _run("lost_commit", tmp_path, "posix")
    assert out["q"] == "committed", out
    assert 3 not in out["final_rows"], out  # Q's acknowledged commit is gone


@linux
def test_lost_commit_prevented(tmp_path):
    out = _run("lost_commit", tmp_path, "ofd")
    assert out["q"] == "refused" and out["p"] == "committed", out
    assert out["final_rows"] == [1, 2] and out["integrity"] == "ok", out


@posix_only
def test_hot_journal_rollback_reproduced_with_posix_locks(tmp_path):
    """P's transaction has spilled pages into the file; the stdlib closes it
    in P; Q takes P's journal for hot and rolls it back; P's COMMIT then
    leaves a corrupt file."""
    out = _run("hot_journal", tmp_path, "posix")
    assert out["journal_before"] and out["q"] == "read" and not out["journal_after"], out
    assert out["p"] != "committed" or out["integrity"] != "ok", out
    assert out["integrity"] != "ok", out


@linux
def test_hot_journal_rollback_prevented(tmp_path):
    out = _run("hot_journal", tmp_path, "ofd")
    # The stdlib's read in P is refused like another process's would be.
    assert out["stdlib"] == "refused" and out["q"] == "refused", out
    assert out["journal_after"] and out["p"] == "committed", out
    assert out["final_rows"] == [800] and out["integrity"] == "ok", out


@posix_only
def test_database_write_undone_with_posix_locks(tmp_path):
    """Through sss.open: a reader process gets in during an admitted write,
    rolls its journal back, and the write fails."""
    out = _run("database_write", tmp_path, "posix")
    assert out["q"] == "read" and not out["journal_after"], out
    assert out["p"] != "committed", out


@linux
def test_database_write_protected(tmp_path):
    out = _run("database_write", tmp_path, "ofd")
    assert out["q"] == "refused" and out["journal_after"], out
    assert out["p"] == "committed" and out["seq"] == 3 and out["log"] == [1, 2, 3], out
    assert out["final_rows"] == 800 and out["integrity"] == "ok", out


@posix_only
def test_wal_deleted_under_a_connection_with_posix_locks(tmp_path):
    """WAL: the stdlib's close takes itself for the last connection and
    deletes the -wal P writes to; R does not see P's commit, and P's
    checkpoint at close erases R's."""
    out = _run("wal_delete", tmp_path, "posix")
    assert not out["wal_after_stdlib"], out
    assert out["r"]["sees"] == [1] and out["r"]["committed"], out
    assert 3 not in out["final_rows"], out


@linux
def test_wal_kept_under_a_connection(tmp_path):
    out = _run("wal_delete", tmp_path, "ofd")
    assert out["wal_after_stdlib"], out
    assert out["r"] == {"sees": [1, 2], "committed": True}, out
    assert out["final_rows"] == [1, 2, 3] and out["integrity"] == "ok", out


@posix_only
def test_wal_commit_deleted_by_a_stdlib_reader_with_posix_locks(tmp_path):
    """The stdlib only reads in P; P's own close drops its locks; its close
    then deletes the -wal holding R's commit (R was killed before it could
    checkpoint, as a crash leaves it)."""
    out = _run("wal_reader", tmp_path, "posix")
    if out["stdlib_locks"] is not None:  # Linux: the kernel's list shows the drop
        assert out["stdlib_locks"] and out["stdlib_locks_after_our_close"] == [], out
    assert out["q"] == out["r"] == "committed", out
    assert out["final_rows"] == [1, 2], out  # R's acknowledged commit is gone


@stdlib_shimmed
def test_wal_commit_kept_beside_a_stdlib_reader(tmp_path):
    out = _run("wal_reader", tmp_path, "ofd")
    assert out["stdlib_locks"] == out["stdlib_locks_after_our_close"], out
    assert [line.split()[0] for line in out["stdlib_locks"]] == ["OFDLCK", "OFDLCK"], out
    assert out["q"] == out["r"] == "committed", out
    assert out["final_rows"] == [1, 2, 3] and out["integrity"] == "ok", out


@linux
def test_busy_database_with_a_stdlib_thread(tmp_path):
    """100 writes through db.write while a thread of P reads the file with the
    stdlib in a loop and two processes read through db.read."""
    out = _run("busy_database", tmp_path, "ofd", "100")
    assert busy_outcome(out) == [], out


@linux
@pytest.mark.stress
def test_busy_database_with_a_stdlib_thread_stress(tmp_path):
    """SSS_STRESS_SCALE=N: 5 N runs of 400 writes each (full size: N = 10)."""
    for i in range(5 * STRESS_SCALE):
        d = tmp_path / f"run{i}"
        d.mkdir()
        out = run_p("busy_database", str(d), "ofd", "400")
        assert busy_outcome(out) == [], (i, out)


# -- our locks against other processes ------------------------------------------

HOLDER = textwrap.dedent(r"""
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute(sys.argv[2])
    if len(sys.argv) > 3:
        con.execute(sys.argv[3]).fetchall()
    print("held", flush=True)
    sys.stdin.readline()
    con.execute("ROLLBACK")
""")


class StdlibHolder:
    """Another process that holds a stdlib transaction until told to stop."""

    def __init__(self, path: str, begin: str, stmt: str | None = None) -> None:
        args = [sys.executable, "-c", HOLDER, path, begin] + ([stmt] if stmt else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = _readline(self.proc, 60)
        assert line == "held\n", line

    def release(self) -> None:
        self.proc.communicate("\n", timeout=60)
        assert self.proc.returncode == 0


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    if not box:
        proc.kill()
        raise AssertionError("the other process did not answer")
    return box[0]


def _stdlib_try(path: str, sql: str) -> str:
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "try:\n"
            "    c.executescript(sys.argv[2]); print('done')\n"
            "except sqlite3.OperationalError as e:\n"
            "    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code, path, sql], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


@posix_only
def test_package_locks_exclude_a_stdlib_process(tmp_path):
    path = str(tmp_path / "x.db")
    con = sss.connect(path, timeout=0)
    con.execute("CREATE TABLE t(x)")
    # Our RESERVED refuses its writer.
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (1)")
    assert _stdlib_try(path, "BEGIN IMMEDIATE; ROLLBACK").startswith("refused")
    assert _stdlib_try(path, "SELECT count(*) FROM t") == "done"  # readers go on
    con.execute("COMMIT")
    # Our SHARED lets it reserve but not commit.
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM t").fetchall()
    assert _stdlib_try(path, "BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT").startswith("refused")
    con.execute("COMMIT")
    assert _stdlib_try(path, "INSERT INTO t VALUES (3)") == "done"
    # Its RESERVED refuses our writer, its SHARED our commit.
    holder = StdlibHolder(path, "BEGIN IMMEDIATE")
    with pytest.raises(sss.BusyError):
        con.execute("BEGIN IMMEDIATE")
    holder.release()
    holder = StdlibHolder(path, "BEGIN", "SELECT count(*) FROM t")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (4)")
    with pytest.raises(sss.BusyError):
        con.execute("COMMIT")
    holder.release()
    con.execute("COMMIT")
    assert con.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (3,), (4,)]
    con.close()


@posix_only
def test_package_wal_locks_exclude_a_stdlib_process(tmp_path):
    path = str(tmp_path / "w.db")
    con = sss.connect(path, timeout=0)
    con.execute("PRAGMA journal_mode = wal")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (2)")
    assert _stdlib_try(path, "INSERT INTO t VALUES (3)").startswith("refused")
    con.execute("COMMIT")
    # Our open read transaction keeps a checkpoint from resetting the WAL.
    con.execute("BEGIN")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "c.execute('INSERT INTO t VALUES (5)')\n"
            "print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])\n"
            "c.close()\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "1"  # busy: the checkpoint could not finish
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)  # our snapshot held
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)
    con.close()
    assert os.path.exists(path + "-wal") is False  # the last connection cleaned up


@linux
def test_stdlib_close_in_this_process_leaves_our_locks(tmp_path):
    """In the test process itself: our write transaction, a stdlib open and
    close of the file, and the kernel still lists our locks."""
    path = str(tmp_path / "s.db")
    con = sss.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (1)")
    held = kernel_locks(path)
    std = sqlite3.connect(path)
    std.execute("SELECT count(*) FROM t").fetchall()
    std.close()
    with open(path, "rb") as f:  # a plain open and close by the application too
        f.read(100)
    assert kernel_locks(path) == held
    assert _stdlib_try(path, "BEGIN IMMEDIATE; ROLLBACK").startswith("refused")
    con.execute("COMMIT")
    con.close()


# -- fork ----------------------------------------------------------------------

FORKER = textwrap.dedent(r"""
    import os, sqlite3, sys, time
    import sqlite_session_safe as sss
    if sys.argv[2] == "stdlib":  # the shim on the stdlib's SQLite forks the same way
        con = sqlite3.connect(sys.argv[1], isolation_level=None)
    else:
        con = sss.connect(sys.argv[1])
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (1)")
    pid = os.fork()
    if pid == 0:  # a worker forked from a process with an open connection
        time.sleep(120)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(120)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("library", ["package", "stdlib"])
def test_forked_child_does_not_keep_a_dead_parents_locks(tmp_path, library):
    """P holds a write lock and forks a child that lives on; P is killed.  The
    lock must die with P (as a POSIX lock would), not live on in the child's
    inherited copy of the lock descriptor."""
    path = str(tmp_path / "f.db")
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")
    p = subprocess.Popen([sys.executable, "-c", FORKER, path, library], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(_readline(p, 60))
        assert _stdlib_try(path, "BEGIN IMMEDIATE; ROLLBACK").startswith("refused")
        p.kill()
        p.wait(60)
        assert _stdlib_try(path, "BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT") == "done"
    finally:
        p.kill()
        p.wait(60)
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    with sss.connect(path) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_read_only_connection(tmp_path):
    path = str(tmp_path / "r.db")
    with sss.connect(path) as con:
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1)")
    ro = sss.connect(path, readonly=True, timeout=0)
    ro.execute("BEGIN")
    assert ro.execute("SELECT x FROM t").fetchall() == [(1,)]
    # Its SHARED lock keeps another process's commit out.
    assert _stdlib_try(path, "INSERT INTO t VALUES (2)").startswith("refused")
    ro.execute("COMMIT")
    with pytest.raises(sss.ReadOnlyError):
        ro.execute("INSERT INTO t VALUES (3)")
    ro.close()
    assert _stdlib_try(path, "INSERT INTO t VALUES (2)") == "done"


# -- many threads, many connections, several files ---------------------------------


def _threads_round(d) -> dict[str, int]:
    """Threads open, write, read and close connections to three files (two in
    rollback-journal mode, one in WAL) while another thread opens, reads and
    closes them with the stdlib.  Every write lands exactly once, nothing is
    left open, and the lock descriptors are gone with the last connections.
    Returns what the stdlib's thread saw."""
    paths = [str(d / f"{i}.db") for i in range(3)]
    for i, path in enumerate(paths):
        with sss.connect(path) as con:
            if i == 2:
                con.execute("PRAGMA journal_mode = wal")
            con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, thread INTEGER, k INTEGER)")
    errors: list[BaseException] = []
    seen = {"read": 0, "locked": 0}
    done = threading.Event()

    def writer(t: int) -> None:
        try:
            for k in range(60):
                con = sss.connect(paths[(t + k) % 3], timeout=60)
                try:
                    with con.transaction("immediate"):
                        con.execute("INSERT INTO t(thread, k) VALUES (?, ?)", (t, k))
                    con.execute("SELECT count(*) FROM t").fetchall()
                finally:
                    con.close()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def stdlib_reader() -> None:
        while not done.is_set():
            for path in paths:
                std = sqlite3.connect(path, timeout=0)
                try:
                    std.execute("SELECT count(*) FROM t").fetchall()
                    seen["read"] += 1
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e):
                        errors.append(e)
                    seen["locked"] += 1
                finally:
                    std.close()

    reader = threading.Thread(target=stdlib_reader)
    reader.start()
    writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(300)
    done.set()
    reader.join(60)
    assert not any(w.is_alive() for w in writers) and not reader.is_alive()
    assert errors == []
    rows = []
    for path in paths:
        with sss.connect(path) as con:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows += con.execute("SELECT thread, k FROM t").fetchall()
    assert sorted(rows) == [(t, k) for t in range(4) for k in range(60)]
    # Both libraries' descriptors, lock descriptors included, are closed.
    assert descriptors_of(*paths, *(p + "-shm" for p in paths), *(p + "-wal" for p in paths)) == 0
    assert seen["read"] > 0  # the stdlib got in between the writes
    return seen


@linux
def test_threads_open_lock_and_close_concurrently(tmp_path):
    _threads_round(tmp_path)


@linux
@pytest.mark.stress
def test_threads_open_lock_and_close_concurrently_stress(tmp_path):
    """SSS_STRESS_SCALE=N: 20 N rounds (full size: N = 10, 200 rounds)."""
    for i in range(20 * STRESS_SCALE):
        d = tmp_path / f"round{i}"
        d.mkdir()
        _threads_round(d)
