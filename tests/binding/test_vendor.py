"""The vendored amalgamation is byte-for-byte upstream SQLite 3.54.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _source import source_path

import sqlite_session_safe as sss

UPSTREAM_SHA256 = {
    "sqlite3.c": "0a4ca218decb06c27bde472da720803956cc0d3272d2958d8abe92598c067e65",
    "sqlite3.h": "d6c84557261893439b341d2e6c35187ae3ea24fbfd843ad94616f72d89242b8c",
    "sqlite3ext.h": "48963abfefb41ac329ef9d706acb5eadba952a99a748285c9ded6b5e0942721b",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_SHA256))
def test_amalgamation_is_unmodified(name: str) -> None:
    digest = hashlib.sha256(source_path("vendor", "sqlite", name).read_bytes()).hexdigest()
    assert digest == UPSTREAM_SHA256[name], f"vendor/sqlite/{name} differs from upstream 3.54.1"


def test_vendor_readme_records_the_checksums() -> None:
    readme = source_path("vendor", "sqlite", "README.md").read_text()
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
        "ENABLE_FTS4",  # applications probe for it (peewee); Debian's and python.org's SQLite list it
        "THREADSAFE=1",
    ):
        assert required in options
    # Left at SQLite's defaults, as in the stdlib's SQLite: double-quoted
    # strings (switched per connection) and shared cache.
    assert "DQS=0" not in options and "OMIT_SHARED_CACHE" not in options
    assert all(isinstance(o, str) and not o.startswith("SQLITE_") for o in options)


def test_compiled_features_work(con: sss.Connection) -> None:
    con.execute("CREATE VIRTUAL TABLE doc USING fts5(body)")
    con.execute("INSERT INTO doc VALUES ('sessions capture changes')")
    assert con.execute("SELECT body FROM doc WHERE doc MATCH 'capture'").fetchall() == [
        ("sessions capture changes",)
    ]
    con.execute("CREATE VIRTUAL TABLE box USING rtree(id, x0, x1)")
    assert con.execute("SELECT round(sqrt(16.0))").fetchone() == (4.0,)
    con.execute("CREATE VIRTUAL TABLE old USING fts4(body)")
    # A native connection turns double-quoted string literals off for itself
    # (SQLITE_DBCONFIG_DQS_DML/DDL): a double-quoted string is an identifier,
    # never a literal.
    with pytest.raises(sss.SQLError, match="no such column"):
        con.execute('SELECT "not a column"')
    with pytest.raises(sss.SQLError, match="no such column"):
        con.execute('CREATE TABLE dq(x CHECK (x != "not a column"))')


def test_double_quoted_strings_per_connection(tmp_path: Path) -> None:
    """The DB-API connection accepts what the stdlib's does by default; the
    native one stays strict; either can switch with setconfig."""
    import sqlite_session_safe.dbapi as dbapi

    d = dbapi.connect(tmp_path / "d.db")
    assert d.execute('SELECT "a literal"').fetchone() == ("a literal",)
    d.execute('CREATE TABLE t(x CHECK (x != "forbidden"))')  # DDL too (DQS_DDL)
    assert d.getconfig(dbapi.SQLITE_DBCONFIG_DQS_DML) and d.getconfig(dbapi.SQLITE_DBCONFIG_DQS_DDL)
    d.close()
    n = sss.connect(tmp_path / "n.db")
    assert not n.getconfig(sss.SQLITE_DBCONFIG_DQS_DML) and not n.getconfig(sss.SQLITE_DBCONFIG_DQS_DDL)
    n.setconfig(sss.SQLITE_DBCONFIG_DQS_DML, True)
    assert n.execute('SELECT "now a literal"').fetchone() == ("now a literal",)
    n.close()


def test_shared_cache_memory_database_is_shared() -> None:
    """`file:NAME?mode=memory&cache=shared` is one database for every
    connection of the process that opens it (Datasette keeps its catalogue
    that way), through either API."""
    import sqlite_session_safe.dbapi as dbapi

    uri = "file:sss_shared_cache_test?mode=memory&cache=shared"
    a = dbapi.connect(uri, uri=True)
    b = dbapi.connect(uri, uri=True)
    c = sss.connect(uri, uri=True)
    a.execute("CREATE TABLE t(x)")
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert c.execute("SELECT x FROM t").fetchall() == [(1,)]
    for con in (a, b, c):
        con.close()
    # the last connection gone, the database is gone
    d = dbapi.connect(uri, uri=True)
    assert d.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    d.close()
