"""Replication throughput against re-running the same SQL with stdlib ``sqlite3``.

A source database gets ``--writes`` logged writes; each inserts ``--rows``
items, updates one of them and bumps a counter (``--rows + 2`` row changes).
Then, in the same run, on the same file system, with the same pragmas
(``journal_mode=DELETE``, ``synchronous=FULL``, ``foreign_keys=ON``):

  sss replicate   ``sss.replicate(source, replica, batch=B)`` into an empty
                  replica: snapshot reads of the source's log, changeset apply,
                  cursor + replica log entry, one admitted write per B entries.
  sss bundle      ``sss.import_bundle`` of a bundle ``db.export`` wrote (the
                  import: reading, verifying and applying it).
  stdlib          the statements every write ran, re-executed through stdlib
                  ``sqlite3`` on an empty copy of the schema, B writes per
                  transaction (the same number of commits as the replica).

Printed: seconds, row changes done (a changeset merges the UPDATE of a row
inserted in the same write into its INSERT, so it applies fewer), the source's
row changes reproduced per second, and the ratio sss / stdlib of that rate
(> 1: replicating changesets is faster than re-running the SQL).

Then (issue 16), in the same run:

  stream          publishing the source's log to a NATS JetStream stream and
                  applying it to a replica (entries/s each way), next to file
                  replication; needs ``nats-server`` (started here on a free
                  loopback port, or ``--nats-url``), else skipped with a note.
  lag             end-to-end lag p50/p99 from a write's commit to its apply on
                  a following replica, file follow and stream follow side by
                  side (writes paced ``--lag-interval`` apart).
  prune           the source's log bytes and file size before and after
                  ``prune_log``, and what zlib would save on its changesets.
  show            time to the first line and peak memory of ``sqlite-session-
                  safe show`` on a ``--stream-mb`` changeset file (default 32;
                  ``--stream-mb 1024`` for the 1 GB run).
  apply           peak RSS and seconds of one ``--stream-mb`` log entry
                  (about 51 bytes a row, as 200 MB = 3.9 M rows) written by
                  ``db.write``, published to a stream, and applied to a replica
                  by ``import_bundle``, file ``replicate`` and a stream
                  consumer: streamed (a large entry, no session; the write's
                  changeset spooled by its session to a temporary file, then
                  copied into its log row) and in memory (``wire.LARGE_BODY``
                  raised: replicas apply with a session, and every changeset,
                  the source's too, is gathered in memory and bound into its
                  log row, as before issue 16), each in a child process of
                  its own.

``--only apply`` (or ``show``) runs that part alone.

    python bench/bench_replication.py                     # default sizes
    python bench/bench_replication.py --writes 300 --batch 16
    python bench/bench_replication.py --stream-mb 1024    # the 1 GB memory bound
    python bench/bench_replication.py --only apply --stream-mb 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import sqlite_session_safe as sss

PRAGMAS = ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")
SCHEMA = (
    "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO counter VALUES (1, 0);"
    "CREATE TABLE item(id INTEGER PRIMARY KEY, w INTEGER NOT NULL, name TEXT NOT NULL, "
    "qty INTEGER NOT NULL, payload BLOB);"
    "CREATE INDEX item_w ON item(w)"
)

Statement = tuple[str, tuple[Any, ...]]


def workload(w: int, rows: int) -> list[Statement]:
    """The statements of write ``w`` (deterministic, so both sides run the same)."""
    base = w * rows
    out: list[Statement] = [
        ("INSERT INTO item(id, w, name, qty, payload) VALUES (?, ?, ?, ?, ?)",
         (base + i + 1, w, f"item {base + i + 1}", i, bytes([w % 256]) * 64))
        for i in range(rows)
    ]
    out.append(("UPDATE item SET qty = qty + 1000 WHERE id = ?", (base + 1,)))
    out.append(("UPDATE counter SET n = n + 1 WHERE id = 1", ()))
    return out


def build_source(path: str, writes: int, rows: int) -> list[list[Statement]]:
    script = [workload(w, rows) for w in range(writes)]
    with sss.open(path) as db:
        db.migrate(SCHEMA)

        for stmts in script:
            def fn(tx: sss.WriteTx, stmts: list[Statement] = stmts) -> None:
                for sql, params in stmts:
                    tx.execute(sql, params)
            db.write(fn)
    return script


def bench_replicate(source: str, replica: str, batch: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = sss.replicate(source, replica, batch=batch)
    return time.perf_counter() - t0, report.changes


def bench_bundle(source: str, bundle: str, replica: str, batch: int) -> tuple[float, int]:
    with sss.open(source) as db:
        db.export(bundle)
    t0 = time.perf_counter()  # the import only (reading and verifying the file included)
    report = sss.import_bundle(replica, bundle, batch=batch)
    return time.perf_counter() - t0, report.changes


def bench_stdlib(path: str, script: list[list[Statement]], batch: int) -> tuple[float, int]:
    con = sqlite3.connect(path, isolation_level=None)
    for p in PRAGMAS:
        con.execute(p)
    con.executescript(SCHEMA)
    changes = 0
    t0 = time.perf_counter()
    for start in range(0, len(script), batch):
        con.execute("BEGIN IMMEDIATE")
        for stmts in script[start:start + batch]:
            for sql, params in stmts:
                changes += con.execute(sql, params).rowcount
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed, changes


def same_tables(a: str, b: str) -> bool:
    def dump(path: str) -> list[Any]:
        con = sqlite3.connect(path)
        try:
            return [con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("counter", "item")]
        finally:
            con.close()
    return dump(a) == dump(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=2000, help="logged writes on the source")
    ap.add_argument("--rows", type=int, default=8, help="items inserted per write")
    ap.add_argument("--batch", type=int, default=64, help="source writes per replica transaction")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    ap.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    ap.add_argument("--nats-url", default=None, help="a nats-server -js to use (default: start one)")
    ap.add_argument("--lag-writes", type=int, default=200, help="writes timed for the lag")
    ap.add_argument("--lag-interval", type=float, default=0.01, help="seconds between those writes")
    ap.add_argument("--stream-mb", type=int, default=32, help="size of the changeset shown (1024: 1 GB)")
    ap.add_argument("--only", choices=("apply", "show"), default=None,
                    help="run only this part (the memory of one large entry, or show)")
    args = ap.parse_args()
    if args.only:
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            if args.only == "show":
                bench_show(d, args.stream_mb)
            else:
                with nats(d, args.nats_url) as server:
                    bench_apply(d, server, args.stream_mb)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        source = os.path.join(d, "source.db")
        t0 = time.perf_counter()
        script = build_source(source, args.writes, args.rows)
        print(f"source: {args.writes} writes x {args.rows + 2} row changes, built in "
              f"{time.perf_counter() - t0:.2f} s; batch {args.batch}; best of {args.repeat}")
        results: dict[str, tuple[float, int]] = {}
        for run in range(args.repeat):
            for name, fn in (
                ("sss replicate", lambda r: bench_replicate(source, r, args.batch)),
                ("sss bundle", lambda r: bench_bundle(source, r + ".bundle", r, args.batch)),
                ("stdlib re-run SQL", lambda r: bench_stdlib(r, script, args.batch)),
            ):
                replica = os.path.join(d, f"{name.split()[0]}-{name.split()[1]}-{run}.db")
                elapsed, changes = fn(replica)
                assert same_tables(source, replica), f"{name}: replica differs from the source"
                if name not in results or elapsed < results[name][0]:
                    results[name] = (elapsed, changes)
        work = args.writes * (args.rows + 2)  # the source's row changes
        base_rate = work / results["stdlib re-run SQL"][0]
        print(f"{'':20} {'seconds':>9} {'changes':>9} {'changes/s':>11} {'ratio':>7}")
        for name, (elapsed, changes) in results.items():
            rate = work / elapsed
            print(f"{name:20} {elapsed:9.3f} {changes:9d} {rate:11.0f} {rate / base_rate:7.2f}")
        print(f"changes/s = the source's {work} row changes / seconds; ratio = that rate / stdlib's "
              "(> 1: faster than re-running the SQL)")
        with nats(d, args.nats_url) as server:
            if server is None:
                print("stream: skipped (no nats-server on PATH and no --nats-url)")
            else:
                bench_stream(source, server, d, args.batch)
            bench_lag(d, server, args.lag_writes, args.lag_interval)
            bench_apply(d, server, args.stream_mb)
        bench_prune(source, d)
        bench_show(d, args.stream_mb)


# -- issue 16: streams, lag, pruning, streaming show -------------------------------


@contextlib.contextmanager
def nats(d: str, url: str | None) -> Iterator[str | None]:
    """The server at ``url``, else one started here (stopped afterwards),
    else None."""
    started = None if url else start_nats(d)
    try:
        yield url or (started[0] if started else None)
    finally:
        if started:
            started[1].terminate()
            started[1].wait(10)


def start_nats(d: str) -> tuple[str, subprocess.Popen[bytes]] | None:
    binary = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                              if os.path.exists("/usr/sbin/nats-server") else None)
    if binary is None:
        return None
    with socket.socket() as s_:
        s_.bind(("127.0.0.1", 0))
        port = s_.getsockname()[1]
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                             os.path.join(d, "nats")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"nats://127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def bench_stream(source: str, server: str, d: str, batch: int) -> None:
    url = f"{server}/BENCH{os.getpid()}"
    with sss.open(source) as db:
        n = db.position()
        t0 = time.perf_counter()
        sss.replicate(db, url)
        pub = time.perf_counter() - t0
    replica = os.path.join(d, "stream-replica.db")
    t0 = time.perf_counter()
    sss.replicate(url, replica, batch=batch)
    sub = time.perf_counter() - t0
    assert same_tables(source, replica), "stream replica differs from the source"
    file_replica = os.path.join(d, "file-replica.db")
    t0 = time.perf_counter()
    sss.replicate(source, file_replica, batch=batch)
    fil = time.perf_counter() - t0
    print(f"{'entries/s':20} {'file replicate':>15} {'stream publish':>15} {'stream apply':>13}")
    print(f"{n:>10} entries    {n / fil:15.0f} {n / pub:15.0f} {n / sub:13.0f}")


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def bench_lag(d: str, server: str | None, writes: int, interval: float) -> None:
    print(f"lag: {writes} single-row writes, {interval * 1000:g} ms apart, followers in threads")
    kinds = [("file follow", None)] + ([("stream follow", server)] if server else [])
    for name, srv in kinds:
        src_path = os.path.join(d, f"lag-{name.split()[0]}.db")
        src = sss.open(src_path)
        src.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        replica = os.path.join(d, f"lag-{name.split()[0]}-replica.db")
        stop = threading.Event()
        applied: dict[int, float] = {}

        def on_report(r: Any, applied: dict[int, float] = applied) -> None:
            now = time.perf_counter()
            for seq in range(r.last_seq - r.applied + 1, r.last_seq + 1):
                applied.setdefault(seq, now)

        threads = []
        if srv is None:
            threads.append(threading.Thread(target=sss.follow, args=(src_path, replica), kwargs=dict(
                interval=0.005, stop=stop, on_report=on_report)))
        else:
            url = f"{srv}/LAG{os.getpid()}"
            sss.replicate(src, url)
            threads.append(threading.Thread(target=sss.follow, args=(src_path, url), kwargs=dict(
                interval=0.005, stop=stop)))
            threads.append(threading.Thread(target=sss.follow, args=(url, replica), kwargs=dict(
                stop=stop, on_report=on_report)))
        for t in threads:
            t.start()
        time.sleep(1.0)
        committed: dict[int, float] = {}
        for i in range(writes):
            w = src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, 'x')", (i,)))
            committed[w.seq] = time.perf_counter()
            time.sleep(interval)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(s in applied for s in committed):
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(30)
        lags = [(applied[s] - committed[s]) * 1000 for s in committed if s in applied]
        print(f"  {name:14} p50 {_pct(lags, 0.5):7.1f} ms   p99 {_pct(lags, 0.99):7.1f} ms   "
              f"({len(lags)}/{len(committed)} applied)")
        src.close()


def bench_prune(source: str, d: str) -> None:
    path = os.path.join(d, "prune.db")
    shutil.copy(source, path)
    with sss.open(path) as db:
        with db.read() as r:
            blobs = [bytes(row[0]) for row in r.execute("SELECT changeset FROM _sss_log "
                                                        "WHERE changeset IS NOT NULL")]
        raw = sum(map(len, blobs))
        packed = sum(len(zlib.compress(b, 6)) for b in blobs)
        size = os.path.getsize(path)
        report = db.prune_log(through=db.position())
        vac = os.path.join(d, "prune-vacuumed.db")
        db.vacuum_into(vac)
    print(f"prune: log {report.bytes_removed + report.log_bytes} -> {report.log_bytes} bytes "
          f"({report.removed} entries removed); file {size} bytes, {os.path.getsize(vac)} after "
          f"VACUUM INTO; zlib -6 on the changesets: {raw} -> {packed} bytes ({packed / raw:.0%})")


def _big_changeset(path: str, mb: int) -> None:
    """A changeset file of about ``mb`` MB: pieces of 8 MB from sessions with
    distinct keys, written one after another (each its own table section)."""
    con = sss.connect(":memory:")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b REAL, c BLOB)")
    per = 150_000
    with open(path, "wb") as f:
        base = 0
        while f.tell() < mb * 1_000_000:
            with con.session() as s:
                con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                                ((base + i, f"name {base + i}", i * 1.5, b"\x01" * 16) for i in range(per)))
                f.write(bytes(s.changeset()))
            con.execute("DELETE FROM t")
            base += per


def bench_show(d: str, mb: int) -> None:
    path = os.path.join(d, "big.changeset")
    _big_changeset(path, mb)
    # The CLI in a child that reports its own peak RSS on stderr when done:
    # VmHWM, its own address space's high-water mark (ru_maxrss would count
    # this process's RSS too, which Linux carries over a fork and exec).
    cli = [sys.executable, "-c", "import sys\nfrom sqlite_session_safe.faces.cli import main\n"
           "c = main(sys.argv[1:]); sys.stdout.flush()\n"
           "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], "
           "file=sys.stderr)\n"
           "raise SystemExit(c)", "show", path]
    t0 = time.perf_counter()
    p = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    first = time.perf_counter() - t0
    lines = 1
    for _ in p.stdout:
        lines += 1
    assert p.stderr is not None
    peak = int(p.stderr.read().split()[-1]) / 1024
    p.wait()
    total = time.perf_counter() - t0
    print(f"show: {os.path.getsize(path) / 1e6:.0f} MB changeset, {lines} lines: first line after "
          f"{first:.2f} s, all in {total:.1f} s, peak RSS of the CLI {peak:.0f} MB")


#: One child per measure: it reports its own VmHWM (see bench_show) and time.
_APPLY_CHILD = r"""
import json, sys, time
import sqlite_session_safe as sss
from sqlite_session_safe.coordination import wire
what, path, source, replica, mb = sys.argv[1:6]
if path == "session":
    # Nothing is large: every entry takes the session path, and a write
    # gathers its changeset in memory.
    wire.LARGE_BODY = 1 << 62
t0 = time.perf_counter()
if what == "write":
    rows = int(mb) * 1_000_000 // 51
    with sss.open(source) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, x REAL)")
        values = ((i, f"name {i:024d}", i * 0.5) for i in range(rows))  # 51 bytes a row
        size = len(db.write(lambda tx: tx.executemany("INSERT INTO t VALUES (?, ?, ?)", values)).changeset)
elif what == "import":
    size = sss.import_bundle(replica, source).changes
else:  # replicate: file to file, file to stream (publish), stream to file (consume)
    size = sss.replicate(source, replica).changes
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": peak / 1024, "size": size}))
"""


def _apply_child(*argv: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _APPLY_CHILD, *argv], capture_output=True, text=True,
                         timeout=3600)
    if out.returncode:
        raise RuntimeError(f"{argv[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_apply(d: str, server: str | None, mb: int) -> None:
    """Peak RSS of one large entry on its way: written, published, applied."""
    source = os.path.join(d, "big-source.db")
    w = _apply_child("write", "streamed", source, "-", str(mb))
    with sss.open(source) as db:
        size = os.path.getsize(source)
        bundle = os.path.join(d, "big.bundle")
        db.export(bundle)
        entry = max(len(e.changeset or b"") for e in db.log())
    url = f"{server}/BIG{os.getpid()}" if server else None
    # The same write with its changeset gathered in memory and bound into the
    # INSERT, as every write did before.
    held = _apply_child("write", "session", os.path.join(d, "big-source-held.db"), "-", str(mb))
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [("source db.write", w, held)]
    if url:
        rows.append(("stream publish", _apply_child("replicate", "-", source, url, str(mb)), None))
    for name, what, src in (("import_bundle", "import", bundle), ("file replicate", "replicate", source),
                            ("stream consume", "replicate", url)):
        if src is None:
            continue
        got = []
        for path in ("streamed", "session"):
            replica = os.path.join(d, f"big-{what}-{path}-{len(rows)}.db")
            got.append(_apply_child(what, path, src, replica, str(mb)))
        rows.append((name, got[0], got[1]))
    print(f"apply: one {entry / 1e6:.0f} MB log entry ({mb * 1_000_000 // 51} rows; source file "
          f"{size / 1e6:.0f} MB): peak RSS MB (seconds)")
    print(f"{'':20} {'streamed':>18} {'in memory':>18}")
    for name, a, b in rows:
        cells = [f"{r['peak_mb']:8.0f} ({r['seconds']:6.1f})" if r else f"{'-':>17}" for r in (a, b)]
        print(f"{name:20} {cells[0]:>18} {cells[1]:>18}")
    print("in memory: wire.LARGE_BODY raised (a session on replicas; changesets gathered in memory and "
          "bound into the log row)")
    if not url:
        print("apply: stream rows skipped (no nats-server)")


if __name__ == "__main__":
    main()
