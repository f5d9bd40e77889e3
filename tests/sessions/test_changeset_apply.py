"""Applying: conflict policies, invalid pairings, strict schema checks,
reports, exceptions from callbacks, savepoints, streaming apply."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import pytest

import sqlite_session_safe as sss

chunked_module = importlib.import_module("sqlite_session_safe.sessions.chunked")

C = sss.ConflictType
SCHEMA = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE, n INTEGER NOT NULL DEFAULT 0)"


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A source database with a recorded changeset, and a target copy of the
    source's start."""
    src = sss.connect(tmp_path / "src.db")
    src.execute(SCHEMA)
    src.execute("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    dst = sss.connect(tmp_path / "dst.db")
    dst.deserialize(src.serialize())
    with src.session() as s:
        src.execute("UPDATE t SET n = 10 WHERE id = 1")
        src.execute("DELETE FROM t WHERE id = 2")
        src.execute("INSERT INTO t VALUES (4, 'd', 4)")
        cs = s.changeset()
    yield src, dst, cs
    src.close()
    dst.close()


def rows(con: sss.Connection) -> list[tuple]:
    return con.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_clean_apply_report(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, cs = pair
    report = cs.apply(dst)
    assert rows(dst) == rows(src)
    assert report.changes == {("t", "UPDATE"): 1, ("t", "DELETE"): 1, ("t", "INSERT"): 1}
    assert report.applied == report.changes and not report.omitted and not report.conflicts
    assert report.by_table()["t"]["INSERT"] == {"changes": 1, "applied": 1}


def make_conflicts(dst: sss.Connection) -> None:
    dst.execute("UPDATE t SET n = 99 WHERE id = 1")  # DATA for the UPDATE
    dst.execute("DELETE FROM t WHERE id = 2")  # NOTFOUND for the DELETE
    dst.execute("INSERT INTO t VALUES (4, 'other', 0)")  # CONFLICT for the INSERT


def test_default_is_abort_and_rolls_back(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    make_conflicts(dst)
    before = rows(dst)
    with pytest.raises(sss.ConflictAbort) as info:
        cs.apply(dst)
    assert info.value.conflict is not None and info.value.conflict.type in (C.DATA, C.NOTFOUND, C.CONFLICT)
    assert rows(dst) == before


def test_omit_everything(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    make_conflicts(dst)
    before = rows(dst)
    report = cs.apply(dst, on_conflict=sss.OMIT, collect_rejected=True)
    assert rows(dst) == before
    assert report.conflicts == {C.DATA: 1, C.NOTFOUND: 1, C.CONFLICT: 1}
    assert report.total_omitted == 3 and report.total_applied == 0
    assert isinstance(report.rejected, sss.Changeset)
    assert sorted(c.op for c in report.rejected) == ["DELETE", "INSERT", "UPDATE"]


def test_per_type_dict_with_replace(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, cs = pair
    make_conflicts(dst)
    report = cs.apply(dst, on_conflict={C.DATA: sss.REPLACE, C.CONFLICT: sss.REPLACE, C.NOTFOUND: sss.OMIT})
    assert rows(dst) == rows(src)
    assert report.replaced == {("t", "UPDATE"): 1, ("t", "INSERT"): 1}
    assert report.omitted == {("t", "DELETE"): 1}
    assert report.applied == {("t", "UPDATE"): 1, ("t", "INSERT"): 1}


def test_per_table_entry_overrides_type(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    make_conflicts(dst)
    with pytest.raises(sss.ConflictAbort):
        cs.apply(dst, on_conflict={C.NOTFOUND: sss.OMIT, C.DATA: sss.OMIT, C.CONFLICT: sss.OMIT,
                                   "t": {C.NOTFOUND: sss.ABORT}})
    report = cs.apply(dst, on_conflict={"t": sss.OMIT, "other_table": sss.ABORT})
    assert report.total_omitted == 3


def test_callable_sees_the_conflict(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, cs = pair
    make_conflicts(dst)
    seen: list[sss.Conflict] = []

    def decide(conflict: sss.Conflict) -> sss.Action:
        seen.append(conflict)
        return sss.REPLACE if conflict.type in (C.DATA, C.CONFLICT) else sss.OMIT

    cs.apply(dst, on_conflict=decide)
    assert rows(dst) == rows(src)
    by_type = {c.type: c for c in seen}
    assert by_type[C.DATA].conflicting == (1, "a", 99) and by_type[C.DATA].op == "UPDATE"
    assert by_type[C.CONFLICT].conflicting == (4, "other", 0) and by_type[C.CONFLICT].new == (4, "d", 4)
    assert by_type[C.NOTFOUND].conflicting is None and by_type[C.NOTFOUND].table == "t"


@pytest.mark.parametrize("policy", [
    sss.REPLACE,
    {C.NOTFOUND: sss.REPLACE},
    {C.CONSTRAINT: sss.REPLACE},
    {C.FOREIGN_KEY: sss.REPLACE},
    {"t": sss.REPLACE},
    {"t": {C.NOTFOUND: sss.REPLACE}},
    {"t": {C.FOREIGN_KEY: sss.OMIT}},
    {C.DATA: 7},
    {"DATA": sss.OMIT, 99: sss.OMIT},
    "omit",
])
def test_invalid_policies_rejected_before_applying(pair, policy) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    before = rows(dst)
    with pytest.raises(sss.ConflictPolicyError):
        cs.apply(dst, on_conflict=policy)
    assert rows(dst) == before


def test_callable_returning_invalid_action_rolls_back(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    make_conflicts(dst)
    before = rows(dst)
    with pytest.raises(sss.ConflictPolicyError, match="NOTFOUND"):
        cs.apply(dst, on_conflict=lambda c: sss.REPLACE)
    with pytest.raises(sss.ConflictPolicyError):
        cs.apply(dst, on_conflict=lambda c: "yes")
    assert rows(dst) == before


class Boom(Exception):
    pass


def test_exception_in_conflict_callable_comes_out_as_itself(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    dst.execute("DELETE FROM t WHERE id = 2")  # only the DELETE conflicts

    calls = []

    def explode(conflict: sss.Conflict) -> sss.Action:
        calls.append(conflict)
        raise Boom("no")

    before = rows(dst)
    with pytest.raises(Boom):
        cs.apply(dst, on_conflict=explode)
    assert rows(dst) == before and len(calls) == 1
    dst.execute("SELECT 1").fetchall()  # the connection is fine afterwards


def test_exception_in_filter_comes_out_as_itself(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    before = rows(dst)

    def filt(table: str) -> bool:
        raise Boom(table)

    with pytest.raises(Boom):
        cs.apply(dst, filter=filt)
    assert rows(dst) == before


def test_no_savepoint_leaves_partial_changes(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    dst.execute("INSERT INTO t VALUES (4, 'x', 0)")
    before = rows(dst)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), dst.transaction():
        with pytest.raises(sss.ConflictAbort):
            cs.apply(dst, no_savepoint=True, on_conflict={C.CONFLICT: sss.ABORT})
        # The changes made before the INSERT's conflict are still there ...
        assert dst.execute("SELECT n FROM t WHERE id = 1").fetchone() == (10,)
        raise Undo  # ... until the caller's own transaction rolls back
    assert rows(dst) == before


def test_tables_and_filter(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, cs = pair
    src.execute("CREATE TABLE u(k PRIMARY KEY, x)")
    dst.execute("CREATE TABLE u(k PRIMARY KEY, x)")
    with src.session() as s:
        src.execute("INSERT INTO u VALUES (1, 2)")
        src.execute("INSERT INTO t VALUES (50, 'z', 0)")
        cs2 = s.changeset()
    report = cs2.apply(dst, tables=["u"])
    assert dst.execute("SELECT * FROM u").fetchall() == [(1, 2)]
    assert dst.execute("SELECT * FROM t WHERE id = 50").fetchall() == []
    assert report.skipped == {("t", "INSERT"): 1} and report.applied == {("u", "INSERT"): 1}
    report = cs2.apply(dst, filter=lambda name: name == "t")
    assert dst.execute("SELECT id FROM t WHERE id = 50").fetchall() == [(50,)]


@pytest.mark.parametrize("target_schema, reason", [
    (None, "missing"),
    ("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "columns"),
    ("CREATE TABLE t(id INTEGER, v TEXT, n INTEGER, PRIMARY KEY(v))", "primary key"),
])
def test_strict_schema_mismatch(tmp_path: Path, pair, target_schema, reason) -> None:  # type: ignore[no-untyped-def]
    _, _, cs = pair
    target = sss.connect(tmp_path / "target.db")
    target.execute("CREATE TABLE keep(x PRIMARY KEY)")
    if target_schema:
        target.execute(target_schema)
    with pytest.raises(sss.SchemaMismatch) as info:
        cs.apply(target)
    assert info.value.table == "t" and info.value.reason == reason
    report = cs.apply(target, strict=False)  # SQLite's behaviour: skipped
    assert report.mismatched == {"t": reason} and report.total_applied == 0
    assert sum(report.skipped.values()) == 3
    target.close()


def test_strict_refuses_keyed_changeset_on_rowid_table(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    """SQLite reads a keyed changeset's first column as the rowid of a target
    without a primary key, shifting every value one column: strict refuses."""
    _, _, cs = pair
    target = sss.connect(tmp_path / "rowid.db")
    target.execute("CREATE TABLE t(id INTEGER, v TEXT, n INTEGER)")
    with pytest.raises(sss.SchemaMismatch) as info:
        cs.apply(target)
    assert info.value.reason == "primary key" and "rowid" in str(info.value)
    report = cs.apply(target, strict=False, on_conflict=sss.OMIT)  # SQLite's own behaviour
    assert not report.mismatched
    # rowid 4, then 'd' in id, 4 in the TEXT column v, nothing in n: shifted.
    assert target.execute("SELECT rowid, * FROM t").fetchall() == [(4, "d", "4", None)]
    target.close()


def test_extra_target_columns_are_compatible(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    _, _, cs = pair
    target = sss.connect(tmp_path / "wide.db")
    target.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE, n INTEGER NOT NULL DEFAULT 0, "
                   "extra TEXT DEFAULT 'dflt')")
    report = cs.apply(target, on_conflict=sss.OMIT)
    assert target.execute("SELECT * FROM t WHERE id = 4").fetchone() == (4, "d", 4, "dflt")
    assert report.applied[("t", "INSERT")] == 1
    target.close()


def test_constraint_conflict(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    dst.execute("UPDATE t SET v = 'd' WHERE id = 3")  # UNIQUE(v) against the INSERT of 'd'
    report = cs.apply(dst, on_conflict={C.CONSTRAINT: sss.OMIT})
    assert report.conflicts == {C.CONSTRAINT: 1} and report.omitted == {("t", "INSERT"): 1}


def test_invert_and_ignore_noop(pair) -> None:  # type: ignore[no-untyped-def]
    src, dst, cs = pair
    start = rows(dst)
    cs.apply(dst)
    cs.apply(dst, invert=True)
    assert rows(dst) == start
    cs.apply(dst)
    report = cs.apply(dst, ignore_noop=True)  # everything already in place: no conflicts
    assert not report.conflicts and rows(dst) == rows(src)
    with pytest.raises(sss.ChangesetError):
        sss.Patchset(b"").apply(dst, invert=True)
    report = cs.apply(dst, invert=True, collect_rejected=True)
    assert rows(dst) == start and report.rejected == b""


def test_foreign_key_conflict(tmp_path: Path) -> None:
    src = sss.connect(tmp_path / "fk.db")
    src.executescript("CREATE TABLE p(id INTEGER PRIMARY KEY); "
                      "CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));")
    dst = sss.connect(tmp_path / "fk2.db")
    dst.deserialize(src.serialize())
    dst.execute("PRAGMA foreign_keys = ON")
    with src.session() as s:
        src.execute("INSERT INTO c VALUES (1, 42)")  # no parent 42 anywhere
        cs = s.changeset()
    with pytest.raises(sss.ConflictAbort) as info:
        cs.apply(dst)
    assert info.value.conflict.type is C.FOREIGN_KEY and info.value.conflict.fk_conflicts == 1
    assert dst.execute("SELECT count(*) FROM c").fetchone() == (0,)
    report = cs.apply(dst, on_conflict={C.FOREIGN_KEY: sss.OMIT})
    assert report.conflicts == {C.FOREIGN_KEY: 1}
    assert dst.execute("SELECT count(*) FROM c").fetchone() == (1,)
    src.close()
    dst.close()


def test_apply_stream_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked_module, "STREAM_APPLY_CHUNK", 100)
    src = sss.connect(tmp_path / "s.db")
    src.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    dst = sss.connect(tmp_path / "d.db")
    dst.deserialize(src.serialize())
    dst.execute("INSERT INTO t VALUES (500, 'already')")
    with src.session() as s:
        with src.transaction():
            src.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1000)])
        cs = s.changeset()
    report = sss.apply_stream(io.BytesIO(cs), dst, on_conflict={C.CONFLICT: sss.OMIT},
                              collect_rejected=True)
    assert report.changes == {("t", "INSERT"): 1000} and report.omitted == {("t", "INSERT"): 1}
    assert [c.key for c in report.rejected] == [(500,)]
    assert dst.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    # An abort in a late chunk undoes the earlier chunks too.
    dst.execute("DELETE FROM t WHERE id <> 900")
    with pytest.raises(sss.ConflictAbort):
        sss.apply_stream(io.BytesIO(cs), dst)
    assert dst.execute("SELECT id FROM t").fetchall() == [(900,)]
    # Strict checks hold for streams as well.
    dst.execute("DROP TABLE t")
    with pytest.raises(sss.SchemaMismatch):
        sss.apply_stream(io.BytesIO(cs), dst)
    src.close()
    dst.close()


def test_apply_needs_a_connection_it_can_use(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    dst.close()
    with pytest.raises(sss.ClosedError):
        cs.apply(dst)


def test_options_object_and_keywords_apply_alike(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The three entry points take one ApplyOptions or the same keywords."""
    src, dst, cs = pair
    make_conflicts(dst)
    start = dst.serialize()
    options = sss.ApplyOptions(on_conflict=sss.OMIT, collect_rejected=True)
    by_object = cs.apply(dst, options)
    after_object = rows(dst)
    dst.deserialize(start)
    by_keywords = sss.apply(cs, dst, on_conflict=sss.OMIT, collect_rejected=True)
    assert rows(dst) == after_object
    dst.deserialize(start)
    by_stream = sss.apply_stream(io.BytesIO(cs), dst, options)
    assert rows(dst) == after_object
    for report in (by_keywords, by_stream):
        assert report.omitted == by_object.omitted and report.applied == by_object.applied
        assert report.rejected == by_object.rejected


def test_options_are_checked_when_made() -> None:
    with pytest.raises(sss.ConflictPolicyError, match="REPLACE"):
        sss.ApplyOptions(on_conflict=sss.REPLACE)
    with pytest.raises(sss.InterfaceError, match="filter must be callable"):
        sss.ApplyOptions(filter="t")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nonsense"):
        sss.ApplyOptions(nonsense=True)  # type: ignore[call-arg]


def test_options_positional_or_mixed_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    _, dst, cs = pair
    before = rows(dst)
    with pytest.raises(sss.InterfaceError, match="keyword-only"):
        cs.apply(dst, sss.OMIT)  # type: ignore[arg-type]
    with pytest.raises(sss.InterfaceError, match="either options or keywords"):
        sss.apply(cs, dst, sss.ApplyOptions(), strict=False)
    assert rows(dst) == before


def test_apply_keywords_match_the_options() -> None:
    """ApplyKeywords (the keywords' types) lists exactly ApplyOptions' fields."""
    import dataclasses

    from sqlite_session_safe.sessions.options import ApplyKeywords

    fields = {f.name for f in dataclasses.fields(sss.ApplyOptions) if f.init}
    assert set(ApplyKeywords.__annotations__) == fields
