"""Process P of the two-SQLite-libraries tests (issue 12, point 9).

Run as ``python _foreign_locks_workers.py SCENARIO DIR``: this process is P.
It uses the package on ``DIR/p.db``, lets the stdlib's ``sqlite3`` open and
close the same file in this process at a chosen point (the fault injected,
as a pandas read or a migration tool would), then starts process Q (and
sometimes R), a separate program that reads or writes the file, and prints
what everyone observed as one JSON object on the last line of stdout.

Whether the package's SQLite uses open file description locks or POSIX
record locks is decided by ``SQLITE_SESSION_SAFE_LOCKS`` in the
environment, which the tests set for P (``posix`` reproduces the hazard).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import sqlite_session_safe as sss

HERE = os.path.dirname(os.path.abspath(__file__))


def stdlib_touch(path: str, sql: str = "SELECT count(*) FROM sqlite_schema") -> str:
    """What pandas.read_sql or a migration tool does in passing: open the file
    with the stdlib's sqlite3, read, close.  The close is the fault: under
    POSIX locks it drops every lock this process holds on the file.  Returns
    "read", or "refused" when the read met a lock (the close happens
    either way)."""
    con = sqlite3.connect(path, timeout=0)
    try:
        con.execute(sql).fetchall()
        return "read"
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        return "refused"
    finally:
        con.close()


def run_other(code: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``code`` as a separate process (Q); it prints one JSON object."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return {"crashed": done.returncode, "stderr": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def integrity(path: str) -> str:
    """``PRAGMA integrity_check``'s first line ("ok" when sound)."""
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchall()[0][0]).replace("\n", " ")[:200]
    except sqlite3.DatabaseError as e:
        return f"error: {e}"
    finally:
        con.close()


def final_ids(path: str, out: dict[str, Any]) -> None:
    """Records the ids table t ends with ("final_rows") and the file's integrity."""
    check = sqlite3.connect(path)
    out["final_rows"] = [r[0] for r in check.execute("SELECT id FROM t ORDER BY id")]
    check.close()
    out["integrity"] = integrity(path)


def commit_and_close(con: sss.Connection, path: str, out: dict[str, Any], final_sql: str) -> None:
    """P's COMMIT, then close; records how the COMMIT went ("p"), the file's
    integrity and what ``final_sql`` then reads ("final_rows")."""
    try:
        con.execute("COMMIT")
        out["p"] = "committed"
    except sss.Error as e:
        out["p"] = error_name(e)
    con.close()
    out["integrity"] = integrity(path)
    check = sqlite3.connect(path)
    try:
        out["final_rows"] = [r[0] for r in check.execute(final_sql)]
    except sqlite3.DatabaseError as e:
        out["final_rows"] = f"error: {e}"
    finally:
        check.close()


def error_name(e: BaseException) -> str:
    name = getattr(e, "name", None)
    return f"{type(e).__name__}:{name}" if name else type(e).__name__


# -- Q programs (plain stdlib sqlite3, as any other program on the machine) -----

Q_WRITER = r"""
import json, sqlite3, sys
q = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    q.execute("BEGIN IMMEDIATE")
    q.execute("INSERT INTO t VALUES (3, 'Q')")
    q.execute("COMMIT")
    print(json.dumps({"q": "committed"}))
except sqlite3.OperationalError as e:
    print(json.dumps({"q": "refused", "error": str(e)}))
"""

Q_READER = r"""
import json, sqlite3, sys
q = sqlite3.connect(sys.argv[1], timeout=float(sys.argv[2]), isolation_level=None)
try:
    rows = q.execute("SELECT count(*) FROM t").fetchone()[0]
    print(json.dumps({"q": "read", "rows": rows}))
except sqlite3.OperationalError as e:
    print(json.dumps({"q": "refused", "error": str(e)}))
"""

Q_SSS_READER = r"""
import json, sys
import sqlite_session_safe as sss
try:
    db = sss.open(sys.argv[1], timeout=2, busy_timeout=float(sys.argv[2]))
    with db.read() as r:
        rows = r.fetchall("SELECT count(*) FROM t")[0][0]
    db.close()
    print(json.dumps({"q": "read", "rows": rows}))
except sss.BusyError as e:
    print(json.dumps({"q": "refused", "error": type(e).__name__ + ": " + str(e)}))
"""

Q_WAL = r"""
import json, sqlite3, sys
q = sqlite3.connect(sys.argv[1], timeout=2, isolation_level=None)
out = {"sees": [r[0] for r in q.execute("SELECT id FROM t ORDER BY id")]}
if len(sys.argv) > 2:
    q.execute("INSERT INTO t VALUES (3, 'R')")
    out["committed"] = True
q.close()
print(json.dumps(out))
"""


Q_WAL_COMMIT = r"""
import sqlite3, sys, time
q = sqlite3.connect(sys.argv[1], timeout=2, isolation_level=None)
q.execute("INSERT INTO t VALUES (?, 'Q')", (int(sys.argv[2]),))
print("committed", flush=True)
if len(sys.argv) > 3:
    time.sleep(120)  # killed here, connection open: the commit lives in the -wal only
q.close()
"""


def proc_locks(*keys: str) -> list[str]:
    """The lines of /proc/locks that contain one of ``keys`` (e.g.
    ``":<inode> "``), waiters' ``->`` lines left out.  The kernel hands the
    file out a page at a time, each page consistent on its own: when other
    processes take or release locks between two pages, one pass lists a lock
    twice or misses it.  So it is read until two passes agree on these lines."""
    def once() -> list[str]:
        with open("/proc/locks") as f:
            return [line for line in f if "->" not in line and any(k in line for k in keys)]

    last = once()
    for _ in range(100):
        now = once()
        if now == last:
            return now
        last = now
    raise RuntimeError(f"/proc/locks did not list the same locks twice in a row for {keys}")


def own_locks(path: str) -> list[str] | None:
    """This process's locks on database ``path`` and its -shm as /proc/locks
    lists them: kind (POSIX, OFDLCK), type, range (None without /proc/locks:
    macOS).  OFD locks do not name their process; P is the only process with
    the file open when this is called."""
    if not os.path.exists("/proc/locks"):
        return None
    names = {f":{os.stat(p).st_ino} ": suffix for p, suffix in ((path, "db"), (path + "-shm", "shm"))
             if os.path.exists(p)}
    found = []
    for line in proc_locks(*names):
        x = line.split()
        key = next(k for k in names if k in line)
        if x[1] == "OFDLCK" or x[4] == str(os.getpid()):
            found.append(f"{x[1]} {x[3]} {names[key]} {x[6]}-{x[7]}")
    return sorted(found)


# -- scenarios -----------------------------------------------------------------


def lost_commit(d: str) -> dict[str, Any]:
    """P holds RESERVED (a write transaction has begun); the stdlib closes the
    file in P; Q, another process, tries to write."""
    path = os.path.join(d, "p.db")
    con = sss.connect(path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    con.execute("INSERT INTO t VALUES (1, 'base')")
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (2, 'P')")
    stdlib = stdlib_touch(path)
    out = run_other(Q_WRITER, path)
    out["stdlib"] = stdlib
    commit_and_close(con, path, out, "SELECT id FROM t ORDER BY id")
    return out


def _spill(con: Any, n: int) -> None:
    con.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(500),) for _ in range(n)])


def hot_journal(d: str) -> dict[str, Any]:
    """P's transaction has spilled pages into the database file (it holds
    EXCLUSIVE and the journal on disk is hot); the stdlib closes the file in
    P; Q reads.  Q must wait; under POSIX locks it finds the journal hot and
    rolls P's transaction back under P's feet."""
    path = os.path.join(d, "p.db")
    con = sss.connect(path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    _spill(con, 200)
    con.execute("PRAGMA cache_size = 5")
    con.execute("BEGIN")
    _spill(con, 300)
    out: dict[str, Any] = {"journal_before": os.path.exists(path + "-journal")}
    out["stdlib"] = stdlib_touch(path)
    out.update(run_other(Q_READER, path, "0.5"))
    out["journal_after"] = os.path.exists(path + "-journal")
    _spill(con, 300)
    commit_and_close(con, path, out, "SELECT count(*) FROM t")
    return out


def database_write(d: str) -> dict[str, Any]:
    """The same through ``sss.open``: inside an admitted ``db.write`` whose
    pages have spilled, the stdlib reads the file; Q reads with ``db.read``."""
    path = os.path.join(d, "p.db")
    db = sss.open(path, pragmas={"cache_size": 5})
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    db.write(lambda tx: _spill(tx, 200))
    out: dict[str, Any] = {}

    def fn(tx: sss.WriteTx) -> None:
        _spill(tx, 300)
        out["journal_before"] = os.path.exists(path + "-journal")
        out["stdlib"] = stdlib_touch(path, "SELECT count(*) FROM t")
        out.update(run_other(Q_SSS_READER, path, "0.5"))
        out["journal_after"] = os.path.exists(path + "-journal")
        _spill(tx, 300)

    try:
        out["p"] = "committed"
        out["seq"] = db.write(fn).seq
    except sss.Error as e:
        out["p"] = error_name(e)
    with db.read() as r:
        out["final_rows"] = r.fetchall("SELECT count(*) FROM t")[0][0]
    out["log"] = [e.seq for e in db.log()]
    db.close()
    out["integrity"] = integrity(path)
    return out


def wal_delete(d: str) -> dict[str, Any]:
    """WAL mode: P is connected (it holds the -shm's "somebody is connected"
    lock); the stdlib reads and closes in P; then P commits, and R, another
    process, commits after it.  Under POSIX locks the stdlib's close takes
    itself for the last connection and deletes the -wal P still writes to; P's
    commit is invisible to R, and P's checkpoint at close erases R's."""
    path = os.path.join(d, "p.db")
    con = sss.connect(path)
    con.execute("PRAGMA journal_mode = wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    con.execute("INSERT INTO t VALUES (1, 'P')")
    con.execute("SELECT count(*) FROM t").fetchall()
    out: dict[str, Any] = {"stdlib": stdlib_touch(path, "SELECT count(*) FROM t")}
    out["wal_after_stdlib"] = os.path.exists(path + "-wal")
    out["q"] = run_other(Q_WAL, path)
    con.execute("INSERT INTO t VALUES (2, 'P')")
    out["r"] = run_other(Q_WAL, path, "write")
    con.close()
    final_ids(path, out)
    return out


def wal_reader(d: str) -> dict[str, Any]:
    """The other direction, WAL mode: the stdlib's connection in P only reads,
    and P's own connection opens, reads and closes beside it (the fault: its
    close drops every POSIX lock P holds on the file, the stdlib's included).
    Q commits and closes; R commits and is killed with its connection open,
    its commit in the -wal only, as a crash leaves it; then the stdlib's
    connection closes.  Under POSIX locks that close found itself alone:
    it checkpointed from its stale view of the WAL and deleted R's -wal."""
    path = os.path.join(d, "p.db")
    with sss.connect(path) as con:
        con.execute("PRAGMA journal_mode = wal")
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
        con.execute("INSERT INTO t VALUES (1, 'P')")
    std = sqlite3.connect(path, timeout=0)
    std.execute("SELECT count(*) FROM t").fetchall()
    out: dict[str, Any] = {"stdlib_locks": own_locks(path)}
    ours = sss.connect(path)
    ours.execute("SELECT count(*) FROM t").fetchall()
    ours.close()
    out["stdlib_locks_after_our_close"] = own_locks(path)
    q = subprocess.run([sys.executable, "-c", Q_WAL_COMMIT, path, "2"], capture_output=True, text=True,
                       timeout=60, check=False)
    out["q"] = q.stdout.strip() or q.stderr[-500:]
    r = subprocess.Popen([sys.executable, "-c", Q_WAL_COMMIT, path, "3", "die"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out["r"] = r.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        r.kill()
        r.communicate(timeout=60)
    std.close()
    final_ids(path, out)
    return out


def try_immediate(con: Any, busy: type[Exception]) -> str:
    """``BEGIN IMMEDIATE`` then roll back: "admitted", or "refused: ..." when
    ``busy`` says the file is locked."""
    try:
        con.execute("BEGIN IMMEDIATE")
    except busy as e:
        return f"refused: {e}"
    con.execute("ROLLBACK")
    return "admitted"


def stdlib_excluded(d: str) -> dict[str, Any]:
    """Within this one process: while the package's connection holds a write
    transaction, can the stdlib's connection write?  And the other way?"""
    path = os.path.join(d, "p.db")
    con = sss.connect(path, timeout=0)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    std = sqlite3.connect(path, timeout=0, isolation_level=None)
    out: dict[str, Any] = {}
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t VALUES (1, 'sss')")
    out["stdlib_while_sss"] = try_immediate(std, sqlite3.OperationalError)
    con.execute("COMMIT")
    std.execute("BEGIN IMMEDIATE")
    std.execute("INSERT INTO t VALUES (2, 'stdlib')")
    out["sss_while_stdlib"] = try_immediate(con, sss.BusyError)
    std.execute("COMMIT")
    # A reader of each library does not stop the other's reader.
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM t").fetchall()
    out["stdlib_reads_while_sss_reads"] = std.execute("SELECT count(*) FROM t").fetchone()[0]
    con.execute("COMMIT")
    std.close()
    con.close()
    return out


# -- the statistical run ---------------------------------------------------------

Q_LOOP_READER = r"""
import json, os, sys, time
import sqlite_session_safe as sss
path, stop = sys.argv[1], sys.argv[2]
db = sss.open(path, timeout=30, busy_timeout=30)
reads = bad = 0
errors = {}
while not os.path.exists(stop):
    try:
        with db.read() as r:
            n = r.fetchall("SELECT n FROM counter")[0][0]
            c = r.fetchall("SELECT count(*) FROM item")[0][0]
        reads += 1
        if n != c:
            bad += 1
    except sss.Error as e:
        k = type(e).__name__
        errors[k] = errors.get(k, 0) + 1
        time.sleep(0.01)
db.close()
print(json.dumps({"reads": reads, "inconsistent": bad, "errors": errors}))
"""


def busy_database(d: str, writes: int, readers: int = 2) -> dict[str, Any]:
    """P writes ``writes`` times through ``db.write`` (each adds 5 rows and
    bumps a counter, big enough to spill past a small cache) while a thread
    of P reads the same file with the stdlib in a loop, as a monitoring or
    pandas thread would, and ``readers`` other processes read through
    ``db.read``, checking ``counter == count(item)`` in every snapshot."""
    path = os.path.join(d, "p.db")
    stop = os.path.join(d, "stop")
    db = sss.open(path, pragmas={"cache_size": 8}, timeout=60, busy_timeout=60)
    db.migrate("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL); "
               "INSERT INTO counter VALUES (1, 0);"
               "CREATE TABLE item(id INTEGER PRIMARY KEY, pad BLOB NOT NULL)")
    qs = [subprocess.Popen([sys.executable, "-c", Q_LOOP_READER, path, stop],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(readers)]
    halt = threading.Event()
    stdlib_stats: Counter[str] = Counter()

    def stdlib_loop() -> None:
        while not halt.is_set():
            try:
                stdlib_stats[stdlib_touch(path, "SELECT count(*) FROM item")] += 1
            except sqlite3.Error as e:
                stdlib_stats[type(e).__name__] += 1
            time.sleep(0.0005)

    t = threading.Thread(target=stdlib_loop, daemon=True)
    t.start()
    acknowledged = 0
    p_errors: Counter[str] = Counter()

    def fn(tx: sss.WriteTx) -> None:
        tx.executemany("INSERT INTO item(pad) VALUES (?)", [(os.urandom(3000),) for _ in range(5)])
        tx.execute("UPDATE counter SET n = n + 5")

    for _ in range(writes):
        try:
            db.write(fn)
            acknowledged += 5
        except sss.Error as e:
            if getattr(e, "write", None) is not None:
                acknowledged += 5  # committed after all, and said so
            p_errors[error_name(e)] += 1
        time.sleep(0.002)  # let the readers in between writes
    halt.set()
    t.join(30)
    with open(stop, "w"):
        pass
    q_out = []
    for q in qs:
        try:
            so, se = q.communicate(timeout=120)
            q_out.append(json.loads(so.strip().splitlines()[-1]) if so.strip() else {"crashed": se[-500:]})
        except subprocess.TimeoutExpired:
            q.kill()
            q.communicate()
            q_out.append({"hung": True})
    out: dict[str, Any] = {"acknowledged": acknowledged, "p_errors": dict(p_errors),
                           "stdlib": dict(stdlib_stats), "q": q_out}
    try:
        with db.read() as r:
            out["n"] = r.fetchall("SELECT n FROM counter")[0][0]
            out["items"] = r.fetchall("SELECT count(*) FROM item")[0][0]
        out["log_rows"] = sum(1 for e in db.log() if e.kind == "data") * 5
    except sss.Error as e:
        out["final_read"] = error_name(e)
    db.close()
    out["integrity"] = integrity(path)
    return out


def busy_outcome(out: dict[str, Any]) -> list[str]:
    """What went wrong in one ``busy_database`` run (empty: nothing)."""
    bad = []
    if out["integrity"] != "ok":
        bad.append("integrity")
    if out.get("final_read"):
        bad.append("final read failed")
    elif not (out["n"] == out["items"] == out["acknowledged"] == out["log_rows"]):
        bad.append(f"n={out['n']} items={out['items']} acknowledged={out['acknowledged']} "
                   f"logged={out['log_rows']}")
    if out["p_errors"]:
        bad.append(f"P's writes failed: {out['p_errors']}")
    for q in out["q"]:
        if q.get("inconsistent") or q.get("errors") or q.get("hung") or q.get("crashed"):
            bad.append(f"Q: {q}")
    return bad


SCENARIOS = {
    "lost_commit": lost_commit,
    "hot_journal": hot_journal,
    "database_write": database_write,
    "wal_delete": wal_delete,
    "wal_reader": wal_reader,
    "stdlib_excluded": stdlib_excluded,
}


def run_p(scenario: str, d: str, locks: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run process P for ``scenario`` in directory ``d`` with the package's
    locks set to ``locks`` ("ofd" or "posix"); return what it printed."""
    env = dict(os.environ)
    env["SQLITE_SESSION_SAFE_LOCKS"] = locks
    done = subprocess.run([sys.executable, os.path.join(HERE, "_foreign_locks_workers.py"), scenario, d,
                           *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def trials(d: str, n: int, writes: int, kinds: tuple[str, ...] = ("ofd", "posix")) -> None:
    """``n`` runs of ``busy_database`` per lock kind; prints one line per run
    and a count of the runs in which something went wrong."""
    for kind in kinds:
        damaged = 0
        for i in range(n):
            run_dir = os.path.join(d, f"{kind}-{i}")
            os.makedirs(run_dir)
            out = run_p("busy_database", run_dir, kind, str(writes))
            bad = busy_outcome(out)
            damaged += bool(bad)
            print(kind, i, "ok" if not bad else bad[:3], flush=True)
        print(f"{kind}: {damaged} of {n} runs of {writes} writes went wrong", flush=True)


if __name__ == "__main__":
    name, directory, *rest = sys.argv[1:]
    if name == "trials":
        trials(directory, int(rest[0]), int(rest[1]), tuple(rest[2:]) or ("ofd", "posix"))
        sys.exit(0)
    if name == "busy_database":
        result = busy_database(directory, int(rest[0]))
    else:
        result = SCENARIOS[name](directory)
    result["lock_kind"] = sss.file_lock_kind()
    print(json.dumps(result))
