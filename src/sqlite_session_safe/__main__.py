"""The demo: ``python -m sqlite_session_safe``.

Prints the SQLite build this package runs on, does a real round trip
through a temporary database file, and captures a changeset in a session:
decoded with column names, inverted, replayed on a second database.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

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


def main() -> int:
    show_build()
    with tempfile.TemporaryDirectory(prefix="sss-demo-") as tmp:
        workdir = Path(tmp)
        round_trip(workdir)
        sessions(workdir)
    print("\nok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
