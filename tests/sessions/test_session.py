"""Session objects: what they record, their options, and their lifetime."""

from __future__ import annotations

import gc
import io
import threading
from pathlib import Path

import pytest

import sqlite_session_safe as sss
from sqlite_session_safe.sessions.session import _SessionCore


@pytest.fixture
def db(con: sss.Connection) -> sss.Connection:
    con.executescript("""
        CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE other(id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE nopk(a, b);
    """)
    return con


def tables_of(cs: sss.Changeset) -> list[str]:
    return sorted({c.table for c in cs})


def test_all_tables_including_later_ones(db: sss.Connection) -> None:
    with db.session() as s:
        assert s.is_empty
        db.execute("INSERT INTO t VALUES (1, 'a')")
        db.execute("CREATE TABLE later(id INTEGER PRIMARY KEY, x)")
        db.execute("INSERT INTO later VALUES (1, 2)")
        assert not s.is_empty
        assert tables_of(s.changeset()) == ["later", "t"]


def test_listed_tables_only_and_attach(db: sss.Connection) -> None:
    with db.session(tables=["t"]) as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")
        db.execute("INSERT INTO other VALUES (1, 'b')")
        assert tables_of(s.changeset()) == ["t"]
        s.attach("other")
        db.execute("INSERT INTO other VALUES (2, 'c')")
        assert tables_of(s.changeset()) == ["other", "t"]


def test_filter_chooses_tables(db: sss.Connection) -> None:
    seen: list[str] = []

    def keep(name: str) -> bool:
        seen.append(name)
        return name != "other"

    with db.session(filter=keep) as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")
        db.execute("INSERT INTO other VALUES (1, 'b')")
        db.execute("INSERT INTO other VALUES (2, 'b')")
        assert tables_of(s.changeset()) == ["t"]
    assert sorted(seen) == ["other", "t"]  # once per table


def test_refused_tables_are_answered_in_c(db: sss.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite asks the filter again on every change to a table it refused; the
    # C cache answers those, so Python is entered once per table, not per row.
    calls: list[bytes] = []
    original = _SessionCore.filter_table

    def counting(self: _SessionCore, table: bytes) -> int:
        calls.append(table)
        return original(self, table)

    monkeypatch.setattr(_SessionCore, "filter_table", counting)
    names = [f"r{i}" for i in range(9)]  # more than the cache's first allocation
    db.executescript("".join(f"CREATE TABLE {n}(id INTEGER PRIMARY KEY);" for n in names))
    with db.session(filter=lambda name: name in ("t", "r8")) as s:
        for n in names:
            db.executemany(f"INSERT INTO {n} VALUES (?)", [(i,) for i in range(50)])
        db.executemany("INSERT INTO t VALUES (?, 'x')", [(i,) for i in range(50)])
        db.executemany("INSERT INTO other VALUES (?, 'y')", [(i,) for i in range(50)])
        cs = s.changeset()
    assert tables_of(cs) == ["r8", "t"]
    assert sum(1 for c in cs if c.table == "r8") == 50
    assert sorted(calls) == sorted(n.encode() for n in [*names, "t", "other"])
    # closed: the cache's names were freed, and closing again is harmless
    s.close()


def test_filter_exception_comes_out_of_changeset(db: sss.Connection) -> None:
    class Boom(Exception):
        pass

    def bad(name: str) -> bool:
        raise Boom(name)

    with db.session(filter=bad) as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")  # the statement itself succeeds
        with pytest.raises(Boom):
            s.changeset()
        with pytest.raises(Boom):  # still incomplete: raised again
            s.patchset()


def test_filter_with_table_list_is_refused(db: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError):
        db.session(tables=["t"], filter=lambda n: True)
    with pytest.raises(sss.InterfaceError):
        db.session(tables="t")


def test_skip_reserved_leaves_out_the_packages_own_tables(db: sss.Connection) -> None:
    db.executescript("CREATE TABLE _sss_own(id INTEGER PRIMARY KEY, v); "
                     "CREATE TABLE _sssx(id INTEGER PRIMARY KEY, v)")
    with db.session(skip_reserved=True) as s:
        db.execute("INSERT INTO _sss_own VALUES (1, 'internal')")
        db.execute("INSERT INTO t VALUES (1, 'a')")
        db.execute("INSERT INTO _sssx VALUES (1, 'not the prefix')")
        db.execute("CREATE TABLE _sss_later(id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO _sss_later VALUES (1)")
        assert tables_of(s.changeset()) == ["_sssx", "t"]
    with db.session() as s:  # off by default: every table
        db.execute("INSERT INTO _sss_own VALUES (2, 'internal')")
        assert tables_of(s.changeset()) == ["_sss_own"]


def test_skip_reserved_is_its_own_filter(db: sss.Connection) -> None:
    with pytest.raises(sss.InterfaceError, match="skip_reserved"):
        db.session(skip_reserved=True, filter=lambda n: True)
    with pytest.raises(sss.InterfaceError, match="skip_reserved"):
        db.session(tables=["t"], skip_reserved=True)


def test_reserved_prefix_is_the_documented_one() -> None:
    from sqlite_session_safe.coordination.audit import RESERVED_PREFIX

    assert RESERVED_PREFIX == "_sss_"  # PROTOCOL.md 5.2; defined once, in C


def test_rowid_tracking_for_tables_without_pk(db: sss.Connection) -> None:
    with db.session() as s:
        db.execute("INSERT INTO nopk VALUES (1, 2)")
        assert list(s.changeset()) == []  # not recorded without rowid=True
    with db.session(rowid=True) as s:
        db.execute("INSERT INTO nopk VALUES (3, 4)")
        (change,) = list(s.changeset())
    assert change.table == "nopk" and change.pk == (1, 0, 0)
    assert change.new == (2, 3, 4)  # _rowid_ first
    assert s.changeset is not None
    assert sss.Changeset.as_dicts(sss.Changeset(bytes(sss.Changeset.from_changes([change]))), db)[0][
        "new"] == {"_rowid_": 2, "a": 3, "b": 4}


def test_enabled_indirect_sizes(db: sss.Connection) -> None:
    with db.session(indirect=True, track_size=True) as s:
        assert s.enabled and s.indirect
        db.execute("INSERT INTO t VALUES (1, 'a')")
        s.enabled = False
        db.execute("INSERT INTO t VALUES (2, 'b')")
        s.enabled = True
        s.indirect = False
        db.execute("INSERT INTO t VALUES (3, 'c')")
        cs = s.changeset()
        assert s.changeset_size == len(cs)
        assert s.memory_used > 0
    assert [(c.new[0], c.indirect) for c in cs] == [(1, True), (3, False)] or sorted(
        (c.new[0], c.indirect) for c in cs) == [(1, True), (3, False)]


def test_changeset_size_needs_tracking(db: sss.Connection) -> None:
    with db.session() as s, pytest.raises(sss.InterfaceError):
        _ = s.changeset_size


def test_diff(tmp_path: Path, db: sss.Connection) -> None:
    db.execute("INSERT INTO t VALUES (1, 'same'), (2, 'mine'), (3, 'only here')")
    other = tmp_path / "other.db"
    with sss.connect(other) as o:
        o.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
                        "INSERT INTO t VALUES (1, 'same'), (2, 'theirs'), (4, 'only there');")
    db.execute("ATTACH ? AS o", (str(other),))
    with db.session(tables=["t"]) as s:
        s.diff("o", "t")
        cs = s.changeset()
    with sss.connect(other) as o:
        cs.apply(o)
        assert o.execute("SELECT * FROM t ORDER BY id").fetchall() == [
            (1, "same"), (2, "mine"), (3, "only here")]
    with db.session(tables=["t"]) as s, pytest.raises(sss.SQLiteError):
        s.diff("nonexistent", "t")


def test_streamed_output_equals_blob(db: sss.Connection) -> None:
    with db.session() as s:
        with db.transaction():
            db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(2000)])
        f = io.BytesIO()
        n = s.changeset_stream(f)
        assert f.getvalue() == bytes(s.changeset()) and n == len(f.getvalue())
        f = io.BytesIO()
        s.patchset_stream(f)
        assert f.getvalue() == bytes(s.patchset())


def test_stream_output_error_is_raised_as_itself(db: sss.Connection) -> None:
    class Full(OSError):
        pass

    class BadFile:
        def write(self, data: bytes) -> int:
            raise Full("disk full")

    with db.session() as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")
        with pytest.raises(Full):
            s.changeset_stream(BadFile())  # type: ignore[arg-type]


def test_schema_change_during_session_is_an_error(db: sss.Connection) -> None:
    db.execute("CREATE TABLE d(id INTEGER PRIMARY KEY, x, y)")
    with db.session() as s:
        db.execute("INSERT INTO d VALUES (1, 2, 3)")
        db.execute("ALTER TABLE d DROP COLUMN y")
        with pytest.raises(sss.SQLiteError):
            s.changeset()


# -- lifetime ---------------------------------------------------------------


def test_connection_closed_first(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    s = con.session()
    con.execute("INSERT INTO t VALUES (1)")
    con.close()  # deletes the session first
    assert s.closed
    with pytest.raises(sss.ClosedError):
        s.changeset()
    with pytest.raises(sss.ClosedError):
        _ = s.is_empty
    s.close()  # fine


def test_session_closed_first_then_use(db: sss.Connection) -> None:
    s = db.session()
    s.close()
    s.close()
    with pytest.raises(sss.ClosedError):
        s.changeset()
    db.execute("INSERT INTO t VALUES (1, 'a')")  # connection unaffected


def test_many_sessions_dropped_without_close(db_path: Path) -> None:
    con = sss.connect(db_path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    for i in range(200):
        s = con.session(filter=lambda n: True)
        con.execute("INSERT INTO t VALUES (?)", (i,))
        del s  # finalizer deletes the C session
    gc.collect()
    kept = con.session()
    con.execute("INSERT INTO t VALUES (1000)")
    assert len(list(kept.changeset())) == 1
    con.close()


def test_dropped_while_connection_busy_is_deferred(db_path: Path) -> None:
    """A session collected while another thread is inside the connection is
    not deleted under it: the connection deletes it when it closes."""
    con = sss.connect(db_path)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    s = con.session()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with con.sss_hold():
            holding.set()
            release.wait(10)

    th = threading.Thread(target=hold)
    th.start()
    holding.wait(10)
    core = s._core
    del s
    gc.collect()
    assert core.session is not None  # deferred
    release.set()
    th.join()
    con.execute("INSERT INTO t VALUES (1)")
    con.close()
    assert core.session is None


def test_session_from_inside_filter_is_refused(db: sss.Connection) -> None:
    made: list[BaseException] = []

    def filt(name: str) -> bool:
        try:
            db.session()
        except sss.InterfaceError as exc:
            made.append(exc)
        return True

    with db.session(filter=filt) as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")
        assert len(list(s.changeset())) == 1
    assert len(made) == 1


def test_other_thread_gets_threading_error(db: sss.Connection) -> None:
    s = db.session()
    errors: list[BaseException] = []
    with db.sss_hold():
        th = threading.Thread(
            target=lambda: errors.append(pytest.raises(sss.ThreadingError, s.changeset).value))
        th.start()
        th.join()
    assert len(errors) == 1
    s.close()


def test_closing_the_connection_from_a_callback_is_refused(db: sss.Connection) -> None:
    """A filter runs while SQLite is inside the session; closing the connection
    there would free the session under SQLite's feet, so it is refused."""
    refused: list[BaseException] = []

    def closes(name: str) -> bool:
        try:
            db.close()
        except sss.InterfaceError as exc:
            refused.append(exc)
        return True

    with db.session(filter=closes) as s:
        db.execute("INSERT INTO t VALUES (1, 'a')")
        assert tables_of(s.changeset()) == ["t"]
    assert refused and "inside a callback" in str(refused[0])
    assert not db.closed
    db.close()
    assert db.closed
