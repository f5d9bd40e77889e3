"""The demo: ``python -m sqlite_session_safe``.

Prints the SQLite build this package runs on, does a real round trip
through a temporary database file, and captures a changeset in a session:
decoded with column names, inverted, replayed on a second database.  Then two
processes write one database through ``sss.open``: each write's changeset,
and the audit log they share; a replica is brought up to date from that log,
and the last write is undone (and replicated too).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlite_session_safe as sss
from sqlite_session_safe.faces.cli._base import is_pipe_error, pipe_closed, prepare_stdout

# The writers are started with "spawn", which finds _demo_writer by this
# module's name: it must not live in a package's __main__ (those are not
# re-imported in the child).


def section(title: str, *explanation: str) -> None:
    print(f"\n== {title} ==")
    for line in explanation:
        print(line)


#: The compile options the demo relies on, and what each gives.
_KEY_OPTIONS = (("ENABLE_SESSION", "sessions"), ("ENABLE_PREUPDATE_HOOK", "pre-update hook"),
                ("ENABLE_FTS5", "FTS5"), ("ENABLE_RTREE", "R*Tree"),
                ("ENABLE_MATH_FUNCTIONS", "math functions"), ("THREADSAFE=1", "thread-safe"))


def show_build() -> None:
    section("SQLite build")
    print(f"sqlite-session-safe {sss.__version__} runs its own SQLite {sss.sqlite_version()}")
    options = sss.compile_options()
    have = [name for option, name in _KEY_OPTIONS if option in options]
    print(f"built with: {', '.join(have)}")
    print(f"({len(options)} compile options in all: sss.compile_options())")
    missing = [option for option, _ in _KEY_OPTIONS if option not in options]
    if missing:
        raise SystemExit(f"this build lacks {missing}")


def round_trip(workdir: Path) -> None:
    section("Round trip through a database file")
    path = workdir / "demo.db"
    with sss.connect(path) as con:
        con.execute("CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT NOT NULL, data BLOB)")
        with con.transaction("immediate"):
            con.executemany(
                "INSERT INTO note(body, data) VALUES (?, ?)",
                [("first note", b"\x00\x01"), ("second note \U0001f600", None)],
            )
    with sss.connect(path, readonly=True) as con:
        for row in con.execute("SELECT id, body, data FROM note ORDER BY id"):
            print("  row:", row)


def sessions(workdir: Path) -> None:
    section("Sessions: capture, inverse, replay",
            "A session records every row a transaction changes; its changeset is",
            "a value: stored, sent, inverted, applied to another database.")
    schema = "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)"
    source, replica = workdir / "source.db", workdir / "replica.db"
    with sss.connect(source) as con:
        con.execute(schema)
        con.execute("INSERT INTO item VALUES (1, 'apple', 3), (2, 'pear', 5)")
        con.backup(replica)  # the replica starts where the source is now
        with con.session() as s:
            with con.transaction("immediate"):
                con.execute("UPDATE item SET qty = qty - 1 WHERE name = 'apple'")
                con.execute("DELETE FROM item WHERE name = 'pear'")
                con.execute("INSERT INTO item VALUES (3, 'plum', 7)")
            changeset = s.changeset()
        print(f"captured {changeset!r}; its changes, by column name:")
        for change in changeset.as_dicts(con):
            print(f"  {change['op']:6} {change['table']}  old {change['old']}  new {change['new']}")
        print("its inverse, as SQL:")
        for statement in changeset.invert().to_sql(con):
            print("  ", statement)
    with sss.connect(replica) as rep:
        report = changeset.apply(rep)
        applied = {f"{table}.{op}": n for (table, op), n in sorted(report.applied.items())}
        print("replayed on a copy of the database:", applied)
        print("  replica rows:", rep.execute("SELECT * FROM item ORDER BY id").fetchall())
        changeset.invert().apply(rep)
        print("  after the inverse:", rep.execute("SELECT * FROM item ORDER BY id").fetchall())


def _value(cursor: sss.Cursor) -> Any:
    """The one value of a one-row, one-column query."""
    row = cursor.fetchone()
    if row is None:
        raise SystemExit("the demo's account row is missing")
    return row[0]


def _describe(changeset: sss.Changeset) -> str:
    """The changes on one line; an UPDATE shows (old row) -> (new row), where
    ``=`` marks a column it left unchanged."""
    def row(values: tuple[Any, ...] | None) -> str:
        if values is None:
            return "()"
        return "(" + ", ".join("=" if v is sss.UNCHANGED else repr(v) for v in values) + ")"

    parts = []
    for c in changeset:
        if c.op == "UPDATE":
            parts.append(f"UPDATE {c.table} {row(c.old)} -> {row(c.new)}")
        else:
            parts.append(f"{c.op} {c.table} {row(c.new if c.op == 'INSERT' else c.old)}")
    return "; ".join(parts)


def _demo_writer(path: str, name: str, ready: object, start: object, out: object) -> None:
    """One of the two demo processes: three admitted writes to a shared account."""
    with sss.open(path) as db:
        ready.release()  # type: ignore[attr-defined]
        start.wait()  # type: ignore[attr-defined]
        for i in range(3):
            def deposit(tx: sss.WriteTx, amount: int = 10 * (i + 1)) -> int:
                balance = int(_value(tx.execute("SELECT balance FROM account WHERE id = 1")))
                tx.execute("UPDATE account SET balance = ? WHERE id = 1", (balance + amount,))
                tx.execute("INSERT INTO deposit(who, amount) VALUES (?, ?)", (name, amount))
                return balance + amount

            res = db.write(deposit, label=f"{name} deposit {i + 1}")
            out.put((name, os.getpid(), res.seq, res.value, _describe(res.changeset)))  # type: ignore[attr-defined]


def coordinated(workdir: Path) -> None:
    section("Two processes writing through sss.open",
            "Each write is admitted under the database's lock (one writer at a time)",
            "and recorded as one entry of an audit log kept inside the database,",
            "in the same transaction. An entry's seq is its position in that log:",
            "1, 2, 3, ... in commit order. In a changeset, (old row) -> (new row)",
            "is an UPDATE and '=' marks a column it left unchanged.")
    path = str(workdir / "shared.db")
    with sss.open(path) as db:
        db.migrate(
            "CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
            "INSERT INTO account VALUES (1, 0);"
            "CREATE TABLE deposit(id INTEGER PRIMARY KEY, who TEXT NOT NULL, amount INTEGER NOT NULL)",
            label="schema",
        )
    # spawn: a fresh interpreter per writer (forking a process that has
    # threads is unsafe, and Python 3.12+ warns about it).
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_demo_writer, args=(path, name, ready, start, out))
             for name in ("alice", "bob")]
    for p in procs:
        p.start()
    for _ in procs:  # both started, then both write at once
        if not ready.acquire(timeout=120):
            raise SystemExit(f"a demo writer did not start (exit codes {[p.exitcode for p in procs]})")
    start.set()
    reports: list[Any] = []
    deadline = time.monotonic() + 120
    while len(reports) < 6:
        try:
            reports.append(out.get(timeout=0.5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise SystemExit(f"a demo writer failed (exit codes {[p.exitcode for p in procs]})") from None
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"demo writer {p.name} failed with exit code {p.exitcode}")
    for name, pid, seq, balance, changes in sorted(reports, key=lambda r: r[2]):
        print(f"  {name} (pid {pid}) write seq {seq}: balance now {balance}")
        print(f"      changeset: {changes}")

    section("The audit log",
            "One entry per write: seq, epoch, commit time (UTC), the writer's pid and",
            "its label. The epoch is a fencing counter inside the database: each",
            "write moves it on by compare-and-set, so a writer whose lock was taken",
            "over (paused too long, say) cannot commit.")
    with sss.open(path) as db:
        entries = list(db.log())
        width = max(len(repr(e.label)) for e in entries)
        for e in entries:
            at = e.committed_at[11:23]  # the time of day, to the millisecond
            head = f"  seq {e.seq}  epoch {e.epoch}  {at}  pid {e.pid:<7} {e.label!r:{width}}"
            if e.kind == "ddl":
                statements = [s.strip() for s in (e.sql or "").split(";") if s.strip()]
                print(f"{head}  migration, {len(statements)} statements:")
                for statement in statements:
                    print(f"      {statement};")
            else:
                print(f"{head}  {_describe(e.changeset or sss.Changeset(b''))}")
        with db.read() as r:
            balance = _value(r.execute("SELECT balance FROM account"))
            print(f"  balance {balance} at log position {r.seq} (6 deposits of 10+20+30 by 2 processes: 120)")
        if balance != 120:
            raise SystemExit("lost update: the balance should be 120")


def _tables(path: Path | str) -> list[list[tuple[Any, ...]]]:
    with sss.connect(path, readonly=True) as con:
        return [con.execute("SELECT * FROM account").fetchall(),
                con.execute("SELECT * FROM deposit ORDER BY id").fetchall()]


def replica_and_undo(workdir: Path) -> None:
    path = str(workdir / "shared.db")
    replica = workdir / "replica.db"
    section("A replica brought up to date",
            "Replication replays the log's entries on another file. The replica's",
            "cursor (the last seq it applied) moves in the same transaction as the",
            "changes, so each entry is applied exactly once, even after a crash.")
    report = sss.replicate(path, replica)  # schema and data, from the log alone
    print(f"  applied {report.applied} log entries to an empty file ({report.changes} row changes,")
    print(f"  the six updates of one account row combined); cursor at seq {report.last_seq}, "
          f"lag {report.lag}")
    print(f"  replica equals source: {_tables(replica) == _tables(path)}")
    again = sss.replicate(path, replica)
    print(f"  replicating again applies {again.applied} entries: exactly once")

    section("Undo", "Undo applies an entry's inverse as a new, logged write.")
    with sss.open(path) as db:
        last = max(e.seq for e in db.log() if e.kind == "data")
        undone = db.undo(last)
        print(f"  undo of seq {last} is itself logged, as seq {undone.seq} ({undone.label!r}):")
        print(f"      changeset: {_describe(undone.changeset)}")
        with db.read() as r:
            balance = _value(r.execute("SELECT balance FROM account"))
        print(f"  balance back to {balance}")
    report = sss.replicate(path, replica)
    print(f"  the replica follows the undo ({report.applied} entry): "
          f"equals source: {_tables(replica) == _tables(path)}")
    if _tables(replica) != _tables(path):
        raise SystemExit("the replica differs from its source")


def main() -> int:
    """Run the demo; the exit status (141 when stdout's reader went away
    early, as in ``python -m sqlite_session_safe | head``: quietly, as the
    command-line tool does)."""
    # Windows writes redirected output in its ANSI code page: escape what
    # it cannot show instead of failing on the demo's non-ASCII text.
    prepare_stdout()
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A line at a time, also into a pipe (``| tee``): the story is read
        # as it runs, and a reader that leaves (``| head``) is seen at once.
        sys.stdout.reconfigure(line_buffering=True)
    try:
        show_build()
        with tempfile.TemporaryDirectory(prefix="sss-demo-") as tmp:
            workdir = Path(tmp)
            round_trip(workdir)
            sessions(workdir)
            coordinated(workdir)
            replica_and_undo(workdir)
        print("\nok", flush=True)
    except OSError as e:
        if is_pipe_error(e):
            return pipe_closed()
        raise
    return 0
