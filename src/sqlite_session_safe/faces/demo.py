"""The demo: ``python -m sqlite_session_safe``.

Prints the SQLite build this package runs on, does a real round trip
through a temporary database file, and captures a changeset in a session:
decoded with column names, inverted, replayed on a second database.  Then two
processes write one database through ``sss.open``: each write's changeset,
and the audit log they share; a replica is brought up to date from that log,
and the last write is undone (and replicated too).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlite_session_safe as sss


def section(title: str) -> None:
    print(f"\n== {title} ==")


def show_build() -> None:
    section("SQLite build")
    print(f"sqlite_session_safe {sss.__version__} on SQLite {sss.sqlite_version()}")
    print(f"source id: {sss.sqlite_source_id()}")
    wanted = ("ENABLE_SESSION", "ENABLE_PREUPDATE_HOOK", "ENABLE_FTS5", "THREADSAFE=1")
    options = sss.compile_options()
    print("compile options:", ", ".join(options))
    missing = [o for o in wanted if o not in options]
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
    section("Sessions: capture, inverse, replay")
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
        print(f"captured {changeset!r}, decoded with the source's column names:")
        for change in changeset.as_dicts(con):
            print("  ", change)
        print("its inverse, as SQL:")
        for statement in changeset.invert().to_sql(con):
            print("  ", statement)
    with sss.connect(replica) as rep:
        report = changeset.apply(rep)
        applied = {f"{table}.{op}": n for (table, op), n in sorted(report.applied.items())}
        print("replayed on the replica:", applied)
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
    """One line per change; in an UPDATE, ``=`` marks a column left unchanged."""
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


def _demo_writer(path: str, name: str, start: object, out: object) -> None:
    """One of the two demo processes: three admitted writes to a shared account."""
    with sss.open(path) as db:
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
    section("Two processes writing through sss.open")
    path = str(workdir / "shared.db")
    with sss.open(path) as db:
        db.migrate(
            "CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);"
            "INSERT INTO account VALUES (1, 0);"
            "CREATE TABLE deposit(id INTEGER PRIMARY KEY, who TEXT NOT NULL, amount INTEGER NOT NULL)",
            label="schema",
        )
    ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_demo_writer, args=(path, name, start, out)) for name in ("alice", "bob")]
    for p in procs:
        p.start()
    start.set()
    reports = [out.get(timeout=60) for _ in range(6)]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"demo writer {p.name} failed with exit code {p.exitcode}")
    for name, pid, seq, balance, changes in sorted(reports, key=lambda r: r[2]):
        print(f"  {name} (pid {pid}) write seq {seq}: balance now {balance}")
        print(f"      changeset: {changes}")

    section("The audit log")
    with sss.open(path) as db:
        for e in db.log():
            what = (e.sql or "") if e.kind == "ddl" else _describe(e.changeset or sss.Changeset(b""))
            print(f"  seq {e.seq}  {e.committed_at}  pid {e.pid}  {e.label!r:22} {e.kind}: {what[:90]}")
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
    section("A replica brought up to date")
    report = sss.replicate(path, replica)  # schema and data, from the log alone
    print(f"  applied {report.applied} log entries ({report.changes} row changes) to an empty file; "
          f"its cursor is at seq {report.last_seq}, lag {report.lag}")
    print(f"  replica equals source: {_tables(replica) == _tables(path)}")
    again = sss.replicate(path, replica)
    print(f"  replicating again applies {again.applied} entries: exactly once")

    section("Undo")
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
    show_build()
    with tempfile.TemporaryDirectory(prefix="sss-demo-") as tmp:
        workdir = Path(tmp)
        round_trip(workdir)
        sessions(workdir)
        coordinated(workdir)
        replica_and_undo(workdir)
    print("\nok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
