"""The vendored amalgamation is byte-for-byte upstream SQLite 3.54.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import sqlite_session_safe as sss

VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "sqlite"

UPSTREAM_SHA256 = {
    "sqlite3.c": "0a4ca218decb06c27bde472da720803956cc0d3272d2958d8abe92598c067e65",
    "sqlite3.h": "d6c84557261893439b341d2e6c35187ae3ea24fbfd843ad94616f72d89242b8c",
    "sqlite3ext.h": "48963abfefb41ac329ef9d706acb5eadba952a99a748285c9ded6b5e0942721b",
}


@pytest.mark.skipif(not VENDOR.exists(), reason="runs from a source checkout only")
@pytest.mark.parametrize("name", sorted(UPSTREAM_SHA256))
def test_amalgamation_is_unmodified(name: str) -> None:
    digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
    assert digest == UPSTREAM_SHA256[name], f"vendor/sqlite/{name} differs from upstream 3.54.1"


@pytest.mark.skipif(not VENDOR.exists(), reason="runs from a source checkout only")
def test_vendor_readme_records_the_checksums() -> None:
    readme = (VENDOR / "README.md").read_text()
    for digest in UPSTREAM_SHA256.values():
        assert digest in readme


def test_runs_the_vendored_version() -> None:
    assert sss.sqlite_version() == "3.54.1"
    assert sss.sqlite_version_info() == (3, 54, 1)
    assert sss.sqlite_source_id().startswith("2026-10-16")


def test_compile_options() -> None:
    options = sss.compile_options()
    for required in (
        "ENABLE_SESSION",
        "ENABLE_PREUPDATE_HOOK",
        "ENABLE_FTS5",
        "ENABLE_RTREE",
        "ENABLE_MATH_FUNCTIONS",
        "ENABLE_DBSTAT_VTAB",
        "ENABLE_STAT4",
        "ENABLE_COLUMN_METADATA",
        "DQS=0",
        "THREADSAFE=1",
    ):
        assert required in options
    assert all(isinstance(o, str) and not o.startswith("SQLITE_") for o in options)


def test_compiled_features_work(con: sss.Connection) -> None:
    con.execute("CREATE VIRTUAL TABLE doc USING fts5(body)")
    con.execute("INSERT INTO doc VALUES ('sessions capture changes')")
    assert con.execute("SELECT body FROM doc WHERE doc MATCH 'capture'").fetchall() == [
        ("sessions capture changes",)
    ]
    con.execute("CREATE VIRTUAL TABLE box USING rtree(id, x0, x1)")
    assert con.execute("SELECT round(sqrt(16.0))").fetchone() == (4.0,)
    # SQLITE_DQS=0: a double-quoted string is an identifier, never a literal
    with pytest.raises(sss.SQLError, match="no such column"):
        con.execute('SELECT "not a column"')
