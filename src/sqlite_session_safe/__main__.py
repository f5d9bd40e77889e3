"""The demo: ``python -m sqlite_session_safe``.

Prints the SQLite build this package runs on and does a real round trip
through a temporary database file.
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


def main() -> int:
    show_build()
    with tempfile.TemporaryDirectory(prefix="sss-demo-") as tmp:
        workdir = Path(tmp)
        round_trip(workdir)
    print("\nok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
