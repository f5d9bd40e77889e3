"""Changes formatted in C (csrc/sss_format.c) against the Python reference
renderings: ``change_line`` of ``change_dicts`` (text) and ``json.dumps`` of
``jsonable(change_dicts)`` (JSON, UTF-8 and ASCII), byte for byte, for every
kind of value, changesets and patchsets, indirect changes, duplicate and
positional column names, streamed from files and in small chunks."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from _cli import CLI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sqlite_session_safe as sss
from sqlite_session_safe.binding.raw import ffi, lib
from sqlite_session_safe.faces.cli._base import jsonable
from sqlite_session_safe.faces.cli._render import change_line
from sqlite_session_safe.sessions.changeset import NameCache, change_dicts
from sqlite_session_safe.sessions.stream import (
    FORMAT_JSON,
    FORMAT_JSON_ASCII,
    FORMAT_TEXT,
    format_stream,
)

Names = Callable[[str, tuple[int, ...]], Sequence[str]]


def reference_dicts(changes: Any, names: Names) -> list[dict[str, Any]]:
    """change_dicts() with names from ``names`` (change_dicts takes them from
    a connection; this lets the tests give duplicate names too)."""
    result = []
    for table, op, old, new, pk, indirect in changes:
        cols = names(table, pk)

        def row(values: Any, cols: Sequence[str] = cols) -> dict[str, Any] | None:
            if values is None:
                return None
            return {cols[i]: v for i, v in enumerate(values) if v is not sss.UNCHANGED}

        result.append({"table": table, "op": op, "indirect": indirect,
                       "pk": [cols[i] for i, flag in enumerate(pk) if flag],
                       "old": row(old), "new": row(new)})
    return result


def reference(changes: Any, names: Names, mode: int, indent: str = "") -> str:
    dicts = reference_dicts(changes, names)
    if mode == FORMAT_TEXT:
        return "".join(indent + change_line(d) + "\n" for d in dicts)
    return ", ".join(json.dumps(jsonable(d), ensure_ascii=mode == FORMAT_JSON_ASCII, allow_nan=False)
                     for d in dicts)


def formatted(source: Any, names: Names, mode: int, indent: str = "", chunk: int = 1 << 18) -> str:
    return "".join(format_stream(source, names, mode, indent, chunk))


def positional(table: str, pk: tuple[int, ...]) -> list[str]:
    return [str(i) for i in range(len(pk))]


MODES = [FORMAT_TEXT, FORMAT_JSON, FORMAT_JSON_ASCII]

# -- values --------------------------------------------------------------------

FLOATS = [0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 2 / 3, 1e16, 1e15, 123456789012345678.0, 1e-4, 1e-5,
          0.0001234, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
          float("inf"), float("-inf"), 9007199254740993.0, 2.0**-1074 * 3, 0.3, 100.0, 1e22, 1e23,
          5e-5, 123.456, 4.35, 1e300 * 10, 2.0**63, -(2.0**-1022)]
TEXTS = ["", "a", "it's", "''", "plain ascii", "snow ☃ man", "emoji 😀!", "tab\there", "nl\nx\r\n",
         'quote " back \\ slash', "\x00nul\x01\x1f\x7f", "\u2028\u2029", "é", "\ud800 lone", "\udfff",
         "\b\f", "/", "\u0080\u00ff\u0100\uffff", "\U0010ffff"]
BLOBS = [b"", b"\x00", b"\x00\xff\x10", bytes(range(256))]
INTS = [0, 1, -1, 2**63 - 1, -(2**63), 10**18, -(10**18), 255, 256]
VALUES = [None, *INTS, *FLOATS, *TEXTS, *BLOBS]

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=40),
    st.sampled_from(VALUES),
)


@st.composite
def change_lists(draw: st.DrawFn, patchset: bool) -> list[sss.Change]:
    tables = draw(st.lists(st.tuples(st.sampled_from(["t", "item", "ü☃", "a b", "q\"t", "x'y"]),
                                     st.lists(st.integers(0, 2), min_size=1, max_size=5)),
                           min_size=1, max_size=3))
    changes = []
    for name, flags in tables:
        pk = tuple(flags)
        if not any(pk):
            pk = (1, *pk[1:])
        n = len(pk)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"]))
            row = [draw(values) for _ in range(n)]
            other = [draw(values) for _ in range(n)]
            old: list[Any] | None = None
            new: list[Any] | None = None
            if op == "INSERT":
                new = row
            elif op == "DELETE":
                old = row
            else:
                keep = [bool(pk[i]) or draw(st.booleans()) for i in range(n)]
                old = [row[i] if keep[i] else sss.UNCHANGED for i in range(n)]
                new = [sss.UNCHANGED if pk[i] or not keep[i] else other[i] for i in range(n)]
            changes.append(sss.Change(name, op, old, new, pk, draw(st.booleans())))
    return changes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_changes_format_as_the_reference(data: st.DataObject) -> None:
    patchset = data.draw(st.booleans())
    changes = data.draw(change_lists(patchset))
    cs: sss.Changeset | sss.Patchset = (sss.Patchset if patchset else sss.Changeset).from_changes(changes)
    decoded = list(cs)  # what the Python side reads back (a patchset drops old values)
    chunk = data.draw(st.sampled_from([1, 64, 1 << 18]))
    for mode in MODES:
        want = reference(decoded, positional, mode, "  ")
        assert formatted(cs, positional, mode, "  ", chunk) == want
        assert formatted(io.BytesIO(bytes(cs)), positional, mode, "  ", chunk) == want


def test_every_listed_value_in_every_position() -> None:
    changes = []
    for i, v in enumerate(VALUES):
        changes.append(sss.Change("t", "INSERT", None, (i, v, v), (1, 0, 0)))
        changes.append(sss.Change("t", "DELETE", (i, v, v), None, (1, 0, 0), True))
        changes.append(sss.Change("t", "UPDATE", (i, v, sss.UNCHANGED), (sss.UNCHANGED, "new", v),
                                  (1, 0, 0)))
        changes.append(sss.Change("k", "UPDATE", (v if v is not None else 0, 1), (sss.UNCHANGED, v),
                                  (1, 0), True))
    for cls in (sss.Changeset, sss.Patchset):
        cs = cls.from_changes(changes)
        for mode in MODES:
            for indent in ("", "    "):
                assert formatted(cs, positional, mode, indent) == reference(list(cs), positional, mode,
                                                                            indent)


@given(st.floats(allow_nan=False) | st.sampled_from(FLOATS)
       | st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]))
@settings(max_examples=3000, deadline=None)
def test_doubles_as_repr_writes_them(x: float) -> None:
    buf = ffi.new("char[40]")
    n = lib.sss_format_double(x, buf)
    assert ffi.unpack(buf, n).decode() == repr(x)


def test_column_names_from_the_database_and_duplicates(tmp_path: Path) -> None:
    con = sss.connect(tmp_path / "n.db")
    con.executescript("CREATE TABLE t(id INTEGER PRIMARY KEY, \"na me\" TEXT, \"q\"\"x\" REAL, ü BLOB);"
                      "CREATE TABLE r(a, b);")  # r: captured by rowid
    with con.session() as s:
        con.execute("INSERT INTO t VALUES (1, 'a', 1.5, x'00'), (2, 'b', NULL, NULL)")
        con.execute("UPDATE t SET \"na me\" = 'c' WHERE id = 1")
        con.execute("DELETE FROM t WHERE id = 2")
        con.execute("INSERT INTO r VALUES ('x', 2)")
        con.execute("UPDATE r SET b = 3")
        cs, ps = s.changeset(), s.patchset()
    for c in (cs, ps):
        for mode in MODES:
            want = "".join(change_line(d) + "\n" for d in change_dicts(c, con)) if mode == FORMAT_TEXT \
                else ", ".join(json.dumps(jsonable(d), ensure_ascii=mode == FORMAT_JSON_ASCII)
                               for d in change_dicts(c, con))
            assert formatted(c, NameCache(con).get, mode) == want
            # Without the database: positional names.
            assert formatted(c, NameCache(None).get, mode) == reference(list(c), positional, mode)
    con.close()
    # Duplicate names: rendered as the dicts render them (first slot, last value).
    changes = [sss.Change("t", "INSERT", None, (1, "a", "b", 4), (1, 0, 0, 0)),
               sss.Change("t", "UPDATE", (1, sss.UNCHANGED, "b", sss.UNCHANGED),
                          (sss.UNCHANGED, sss.UNCHANGED, "c", 5), (1, 0, 0, 0)),
               sss.Change("t", "UPDATE", (1, "a", sss.UNCHANGED, 4), (sss.UNCHANGED, "z", sss.UNCHANGED, 6),
                          (1, 0, 0, 0)),
               sss.Change("t", "DELETE", (7, None, "q", None), None, (0, 0, 1, 0))]
    dup = {("t", (1, 0, 0, 0)): ["id", "x", "x", "id"], ("t", (0, 0, 1, 0)): ["k", "k", "k", "v"]}

    def dup_names(table: str, pk: tuple[int, ...]) -> list[str]:
        return dup[(table, pk)]

    cs2 = sss.Changeset.from_changes(changes)
    for mode in MODES:
        assert formatted(cs2, dup_names, mode) == reference(list(cs2), dup_names, mode)


def test_more_names_than_columns_and_too_few() -> None:
    cs = sss.Changeset.from_changes([sss.Change("t", "INSERT", None, (1, 2), (1, 0))])
    assert formatted(cs, lambda t, pk: ["a", "b", "c"], FORMAT_TEXT) == "INSERT t (a=1, b=2)\n"
    with pytest.raises(ValueError, match="1 names for the 2 columns"):
        formatted(cs, lambda t, pk: ["a"], FORMAT_TEXT)


def test_text_that_is_not_utf8_is_refused_after_the_changes_before_it() -> None:
    good = sss.Change("t", "INSERT", None, (1, "fine"), (1, 0))
    bad = sss.Change("t", "INSERT", None, (2, "MARK"), (1, 0))
    data = bytes(sss.Changeset.from_changes([good, bad])).replace(b"MARK", b"\xff\xfeab")
    with pytest.raises(sss.ChangesetError, match="not valid UTF-8"):
        list(sss.Changeset(data))  # the Python decoder refuses it too
    for mode in MODES:
        parts = format_stream(data, positional, mode, chunk=1)
        assert next(parts).startswith(("INSERT t (0=1, 1='fine')", '{"table": "t"'))
        with pytest.raises(sss.ChangesetError, match="not valid UTF-8"):
            next(parts)


def test_corrupt_input_raises_changeset_error() -> None:
    data = bytes(sss.Changeset.from_changes([sss.Change("t", "INSERT", None, (1, "x" * 50), (1, 0))]))
    for cut in (len(data) - 1, len(data) - 30, 5):
        with pytest.raises(sss.ChangesetError):
            formatted(data[:cut], positional, FORMAT_TEXT)
        with pytest.raises(sss.ChangesetError):
            formatted(io.BytesIO(data[:cut]), positional, FORMAT_JSON)
    assert formatted(b"", positional, FORMAT_TEXT) == ""


def test_non_finite_reals_in_json() -> None:
    cs = sss.Changeset.from_changes([sss.Change("t", "INSERT", None, (1, math.inf, -math.inf), (1, 0, 0))])
    doc = json.loads("[" + formatted(cs, positional, FORMAT_JSON) + "]")
    assert doc[0]["new"] == {"0": 1, "1": {"$real": "inf"}, "2": {"$real": "-inf"}}


# -- the commands ----------------------------------------------------------------


def run_cli(*args: str, encoding: str = "utf-8") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    return subprocess.run([*CLI, *args], capture_output=True,
                          env=env, timeout=120, check=False)


def test_show_prints_what_the_reference_prints_on_utf8_and_ascii_stdout(tmp_path: Path) -> None:
    # Lone surrogates cannot be written to a strict stdout (old or new code).
    printable = [v for v in VALUES
                 if not (isinstance(v, str) and any(0xD800 <= ord(ch) <= 0xDFFF for ch in v))]
    changes = [sss.Change("t", "INSERT", None, (i, v, v), (1, 0, 0)) for i, v in enumerate(printable)]
    changes.append(sss.Change("t", "UPDATE", (1, "a", sss.UNCHANGED), (sss.UNCHANGED, "☃", sss.UNCHANGED),
                              (1, 0, 0), True))
    cs = sss.Changeset.from_changes(changes)
    path = tmp_path / "c.changeset"
    path.write_bytes(bytes(cs))
    dicts = list(change_dicts(cs))
    for encoding in ("utf-8", "ascii"):
        text = run_cli("show", str(path), encoding=encoding)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.decode(encoding).splitlines()[1:]
        expect = "".join(f"  {change_line(d)}\n" for d in dicts)
        if encoding == "ascii":
            expect = expect.encode("ascii", "backslashreplace").decode("ascii")
        assert lines == expect.splitlines()
        js = run_cli("show", str(path), "--json", encoding=encoding)
        assert js.returncode == 0, js.stderr
        if encoding == "ascii":
            js.stdout.decode("ascii")  # ASCII JSON: every non-ASCII character escaped
        doc = json.loads(js.stdout)
        assert doc["changes"] == json.loads(json.dumps([jsonable(d) for d in dicts]))
        expect_json = ", ".join(json.dumps(jsonable(d), ensure_ascii=encoding == "ascii") for d in dicts)
        assert expect_json in js.stdout.decode(encoding)


def test_log_and_bundle_json_stream_the_same_documents(tmp_path: Path) -> None:
    db_path, bundle = tmp_path / "a.db", tmp_path / "a.bundle"
    with sss.open(db_path) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL, b BLOB)")
        db.write(lambda tx: tx.execute("INSERT INTO t VALUES (1, 'snow ☃ it''s', 0.1, x'00ff'), "
                                       "(2, NULL, 1e300, NULL)"), label="ünï")
        db.write(lambda tx: tx.execute("UPDATE t SET v = 'x\ny' WHERE id = 1"))
        entries = list(db.log())
        db.export(bundle)
    con = sss.connect(db_path, readonly=True)
    try:
        # log names the columns from the database, show (no --db) by position.
        expect: dict[str, list[dict[str, Any]]] = {"log": [], "show": []}
        for command, names in (("log", con), ("show", None)):
            for e in entries:
                doc: dict[str, Any] = {"seq": e.seq, "label": e.label, "kind": e.kind, "sql": e.sql}
                if e.changeset is not None:
                    doc["changes"] = json.loads(json.dumps([jsonable(d)
                                                            for d in change_dicts(e.changeset, names)]))
                expect[command].append(doc)
    finally:
        con.close()
    for encoding in ("utf-8", "ascii"):
        log = run_cli("log", str(db_path), "--changes", "--json", encoding=encoding)
        shown = run_cli("show", str(bundle), "--json", encoding=encoding)
        for command, proc in (("log", log), ("show", shown)):
            assert proc.returncode == 0, proc.stderr
            text = proc.stdout.decode(encoding)  # ASCII stdout: only ASCII JSON
            assert text.endswith("]}\n") and text.count("\n") == 1
            got = json.loads(text)["entries"]
            assert [{k: d[k] for k in expect[command][i]} for i, d in enumerate(got)] == expect[command]
    text_log = run_cli("log", str(db_path), "--changes")
    assert b"no entries after" not in text_log.stdout and b"INSERT t (id=1" in text_log.stdout


def test_log_spools_large_entries_and_prints_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Entries larger than the in-memory window (log) or the spool bound
    (show BUNDLE) are copied to a temporary file and formatted from there:
    the output is the same, in every order."""
    from sqlite_session_safe.faces.cli import _copies, _inspect, main

    path = str(tmp_path / "a.db")
    with sss.open(path) as db:
        db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(6):
            db.write(lambda tx, i=i: tx.executemany("INSERT INTO t VALUES (?, ?)",
                                                     [(i * 100 + k, "x" * (k * i)) for k in range(i * 5)]))
        db.migrate("CREATE TABLE u(id INTEGER PRIMARY KEY)")
        db.write(lambda tx: tx.execute("UPDATE t SET v = 'é' WHERE id = 101"))
        db.export(tmp_path / "a.bundle")
    bundle = str(tmp_path / "a.bundle")
    runs = [["show", bundle], ["show", bundle, "--json"],
            ["log", path, "--changes"], ["log", path, "--changes", "--reverse"],
            ["log", path, "--changes", "--newest", "3"], ["log", path, "--changes", "--limit", "4"],
            ["log", path, "--changes", "--reverse", "--since", "2", "--json"], ["log", path, "--json"]]

    def outputs() -> list[str]:
        got = []
        for args in runs:
            assert main(args) == 0
            got.append(capsys.readouterr().out)
        return got

    whole = outputs()
    assert "INSERT t (id=501" in whole[2] and "#8" in whole[3].splitlines()[0]
    monkeypatch.setattr(_inspect, "_BATCH_BYTES", 200)
    monkeypatch.setattr(_inspect, "_BATCH", 2)
    monkeypatch.setattr(_copies, "SPOOL_ABOVE", 200)
    spooled: list[int] = []
    real = tempfile.TemporaryFile

    def counted(*args: Any, **kwargs: Any) -> Any:
        spooled.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", counted)
    assert outputs() == whole
    assert len(spooled) >= 14  # the larger entries went through files
