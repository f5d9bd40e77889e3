"""Bundles: export a log range to a file, import it elsewhere exactly once;
a damaged file is refused before anything is applied."""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct

import pytest
from _database_workers import open_db
from _replication_workers import cursor_of, source_id, tables

import sqlite_session_safe as sss
from sqlite_session_safe.coordination import bundles


@pytest.fixture
def src(tmp_path):
    db = open_db(str(tmp_path / "source.db"))
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)", label="schema")
    for i in range(1, 6):
        db.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"é{i}", bytes([i]) * i)),
                 label=f"w{i}")
    db.migrate("ALTER TABLE t ADD COLUMN n INTEGER NOT NULL DEFAULT 0", label="add n")
    db.write(lambda tx: tx.execute("UPDATE t SET n = id * 10 WHERE id > 2"), label="fill n")
    db.write(lambda tx: tx.execute("DELETE FROM t WHERE id = 1"), label="drop 1")
    yield db  # entries 1..9
    db.close()


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_round_trip_with_ddl(tmp_path, src):
    path = str(tmp_path / "all.bundle")
    exp = src.export(path)
    assert (exp.entries, exp.first_seq, exp.last_seq) == (9, 1, 9)
    assert exp.size == os.path.getsize(path)
    assert [n for n in os.listdir(tmp_path) if "tmp" in n] == []  # no temp file left behind
    b = sss.read_bundle(path)
    assert (b.version, b.source_id, b.first_seq, b.last_seq, b.sha256) == (
        1, source_id(src.path), 1, 9, exp.sha256)
    logged = list(src.log())
    assert [(e.seq, e.kind, e.label, e.owner, e.committed_at, e.sql) for e in b.entries] == [
        (e.seq, e.kind, e.label, e.owner, e.committed_at, e.sql) for e in logged]
    assert [bytes(e.changeset or b"") for e in b.entries] == [bytes(e.changeset or b"") for e in logged]
    assert [e.kind for e in b.entries].count("ddl") == 2

    replica = str(tmp_path / "replica.db")
    r = sss.import_bundle(replica, path)
    assert (r.applied, r.last_seq, r.lag, r.skipped) == (9, 9, 0, 0)
    assert tables(replica) == tables(src.path)
    with sss.connect(replica) as con:  # the DDL came along: the column and its default
        cols = [row[1] for row in con.execute("PRAGMA table_info(t)")]
        assert cols == ["id", "v", "b", "n"]
    # A second import applies nothing.
    again = sss.import_bundle(replica, path)
    assert (again.applied, again.skipped, again.last_seq) == (0, 9, 9)
    assert tables(replica) == tables(src.path)


def test_overlapping_bundles_apply_only_new_entries_and_gaps_are_refused(tmp_path, src):
    first, second, late = (str(tmp_path / n) for n in ("1.bundle", "2.bundle", "late.bundle"))
    src.export(first, since=0)
    src.write(lambda tx: tx.execute("UPDATE t SET v = 'x'"))  # 10
    src.write(lambda tx: tx.execute("INSERT INTO t(id, v) VALUES (50, 'y')"))  # 11
    src.export(second, since=6)  # 7..11
    src.export(late, since=10)  # 11 only
    replica = str(tmp_path / "replica.db")
    assert sss.import_bundle(replica, first).applied == 9
    r = sss.import_bundle(replica, second)
    assert (r.applied, r.skipped, r.last_seq) == (2, 3, 11)
    assert tables(replica) == tables(src.path)

    fresh = str(tmp_path / "fresh.db")
    sss.import_bundle(fresh, str(tmp_path / "1.bundle"))
    # entries 10 is missing between fresh's cursor (9) and late.bundle (11..11)
    before = _digest(fresh)
    with pytest.raises(sss.ReplicationError, match=r"10\.\.10 are missing") as info:
        sss.import_bundle(fresh, late)
    assert info.value.seq == 10
    assert _digest(fresh) == before  # nothing changed, not even a cursor table


def test_empty_bundle_and_bad_since(tmp_path, src):
    path = str(tmp_path / "empty.bundle")
    exp = src.export(path, since=9)
    assert (exp.entries, exp.first_seq, exp.last_seq) == (0, 10, 9)
    assert sss.read_bundle(path).entries == ()
    with pytest.raises(sss.InterfaceError, match="beyond the end"):
        src.export(path, since=10)
    with pytest.raises(sss.InterfaceError, match="since"):
        src.export(path, since=-1)
    # Even an empty bundle must not start after the cursor + 1 (10.. on a replica at 0) ...
    with pytest.raises(sss.ReplicationError, match="missing"):
        sss.import_bundle(str(tmp_path / "r.db"), path)
    # ... and right after it, it applies nothing.
    replica = str(tmp_path / "r2.db")
    sss.import_bundle(replica, src.export(str(tmp_path / "all.bundle")).path)
    r = sss.import_bundle(replica, path)
    assert (r.applied, r.skipped, r.last_seq, r.lag) == (0, 0, 9, 0)


def test_import_into_its_own_source_changes_nothing(tmp_path, src):
    path = str(tmp_path / "self.bundle")
    src.export(path)
    sid, before = source_id(src.path), tables(src.path)
    r = sss.import_bundle(src, path)
    assert (r.applied, r.skipped) == (0, 9)
    assert source_id(src.path) == sid and tables(src.path) == before


# -- damaged files -----------------------------------------------------------------


@pytest.fixture
def exported(tmp_path, src):
    path = str(tmp_path / "good.bundle")
    src.export(path)
    replica = str(tmp_path / "replica.db")
    sss.import_bundle(replica, path)  # replica at 9 ...
    src.write(lambda tx: tx.execute("UPDATE t SET v = 'later'"))  # ... and 10 to come
    src.export(path, since=0)
    with open(path, "rb") as f:
        data = f.read()
    return data, replica, tmp_path


def _refused(data: bytes, replica: str, tmp_path, reason: str | tuple[str, ...]) -> sss.BundleError:
    bad = str(tmp_path / "bad.bundle")
    with open(bad, "wb") as f:
        f.write(data)
    before = _digest(replica)
    with pytest.raises(sss.BundleError) as info:
        sss.import_bundle(replica, bad)
    assert info.value.reason in ((reason,) if isinstance(reason, str) else reason), info.value
    assert info.value.path == bad
    assert _digest(replica) == before  # nothing changed
    return info.value


def test_truncated_bundles_are_refused(exported):
    data, replica, tmp_path = exported
    rnd = random.Random(3)
    cuts = {0, 3, 8, 12, 20, len(data) - 33, len(data) - 32, len(data) - 1}
    cuts |= {rnd.randrange(len(data)) for _ in range(20)}
    for cut in sorted(cuts):
        e = _refused(data[:cut], replica, tmp_path, ("truncated", "checksum"))
        assert "truncated" in str(e)
    assert cursor_of(replica, sss.read_bundle(str(tmp_path / "good.bundle")).source_id) == 9
    # Appending bytes is refused too.
    _refused(data + b"\0", replica, tmp_path, "checksum")


def test_bit_flipped_bundles_are_refused(exported):
    data, replica, tmp_path = exported
    rnd = random.Random(4)
    positions = {13, 20, len(data) // 2, len(data) - 40, len(data) - 1}
    positions |= {rnd.randrange(12, len(data)) for _ in range(30)}
    for pos in sorted(positions):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rnd.randrange(8)
        e = _refused(bytes(flipped), replica, tmp_path, "checksum")
        assert "checksum" in str(e) and "nothing was applied" in str(e)


def test_wrong_magic_and_unknown_version(exported):
    data, replica, tmp_path = exported
    e = _refused(b"SQLite format 3\0" + data[16:], replica, tmp_path, "magic")
    assert "not a sqlite-session-safe bundle" in str(e)
    body = bytearray(data[:-32])
    body[8:12] = struct.pack(">I", 2)
    e = _refused(bytes(body) + hashlib.sha256(body).digest(), replica, tmp_path, "version")
    assert "version 2" in str(e)
    with pytest.raises(sss.BundleError, match="cannot read") as info:
        sss.read_bundle(str(tmp_path / "missing.bundle"))
    assert info.value.reason == "io"


def _rewrite(data: bytes, edit, raw: tuple[bytes, bytes] = (b"", b"")) -> bytes:
    """Re-encode a bundle after ``edit(header, entries)`` changed its parts,
    with a valid checksum: the checks behind the checksum must catch it.
    ``raw``: (old, new) replaced in each JSON text (for JSON the encoder
    cannot write, e.g. nested beyond its recursion limit)."""
    pos = 12
    (n,) = struct.unpack_from(">I", data, pos)
    header = json.loads(data[pos + 4:pos + 4 + n])
    pos += 4 + n
    entries = []
    while pos < len(data) - 32:
        (n,) = struct.unpack_from(">I", data, pos)
        meta = json.loads(data[pos + 4:pos + 4 + n])
        pos += 4 + n
        (m,) = struct.unpack_from(">Q", data, pos)
        entries.append([meta, data[pos + 8:pos + 8 + m]])
        pos += 8 + m
    edit(header, entries)
    out = bytearray(data[:12])
    for obj, body in [(header, None)] + [(m, b) for m, b in entries]:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        if raw[0]:
            text = text.replace(*raw)
        out += struct.pack(">I", len(text)) + text
        if body is not None:
            out += struct.pack(">Q", len(body)) + body
    return bytes(out) + hashlib.sha256(out).digest()


def test_malformed_insides_with_a_valid_checksum(exported):
    data, replica, tmp_path = exported
    assert _rewrite(data, lambda h, es: None) == data  # the re-encoder is faithful

    def corrupt_changeset(h, es):
        es[-1][1] = es[-1][1][:-3]

    def bad_count(h, es):
        h["entries"] = 99

    def wrong_seq(h, es):
        es[2][0]["seq"] = 7

    def bad_kind(h, es):
        es[1][0]["kind"] = "sql"

    def bad_label(h, es):
        es[1][0]["label"] = 5

    for edit, match in [(corrupt_changeset, "entry 10's body"), (bad_count, "seq range"),
                        (wrong_seq, "entry 7 where 3"), (bad_kind, "kind 'sql'"),
                        (bad_label, "label 5")]:
        e = _refused(_rewrite(data, edit), replica, tmp_path, "malformed")
        assert match in str(e), (edit.__name__, str(e))


def test_format_constants():
    assert bundles.MAGIC == b"SSSBUNDL" and bundles.FORMAT_VERSION == 1


def _deep(depth: int) -> dict:
    """A JSON value nested ``depth`` deep (built without recursion)."""
    return json.loads("[" * depth + "]" * depth)


@pytest.mark.parametrize("depth", [100_000, 33])
@pytest.mark.parametrize("where", ["header", "entry"])
def test_deeply_nested_metadata_is_a_bundle_error(exported, where, depth):
    """Reproducer R7 of the faults review (D10): nesting used to escape as
    RecursionError from json.loads.  Now any nesting deeper than the bound is
    refused with BundleError naming it, by read_bundle and import_bundle."""
    data, replica, tmp_path = exported
    deep = "[" * depth + "]" * depth

    def edit(h, es):
        (h if where == "header" else es[3][0])["x"] = "DEEP"

    e = _refused(_rewrite(data, edit, (b'"DEEP"', deep.encode())), replica, tmp_path, "malformed")
    assert "more than 32 deep" in str(e)
    path = str(tmp_path / "bad.bundle")
    with pytest.raises(sss.BundleError, match="more than 32 deep"):
        sss.read_bundle(path)


def test_nesting_within_the_bound_and_brackets_in_strings_are_accepted(exported):
    data, replica, tmp_path = exported

    def edit(h, es):
        h["extra"] = _deep(31)  # 32 levels with the header object; unknown fields are ignored
        es[0][0]["label"] = "[[[[" * 40 + '"{' * 10  # brackets inside a string do not nest

    path = tmp_path / "ok.bundle"
    path.write_bytes(_rewrite(data, edit))
    b = sss.read_bundle(path)
    assert b.entries[0].label.startswith("[[[[")


def test_cli_show_and_import_exit_4_on_deep_nesting(exported):
    import subprocess
    import sys

    data, replica, tmp_path = exported
    body = b"SSSBUNDL" + struct.pack(">I", 1)
    header = b'{"format": "sqlite-session-safe.bundle", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    body += struct.pack(">I", len(header)) + header
    path = tmp_path / "deep.bundle"
    path.write_bytes(body + hashlib.sha256(body).digest())
    for args in (["show", str(path)], ["import", str(tmp_path / "rep.db"), str(path)]):
        r = subprocess.run([sys.executable, "-m", "sqlite_session_safe.faces.cli", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 4, r.stderr
        assert "bundle" in r.stderr and "deep" in r.stderr and "Traceback" not in r.stderr


def test_open_bundle_reads_entries_one_at_a_time(tmp_path, src):
    path = str(tmp_path / "all.bundle")
    src.export(path)
    with bundles.open_bundle(path) as b:
        assert (b.first_seq, b.last_seq, b.source_id) == (1, 9, source_id(src.path))
        seqs = [e.seq for e in b.entries()]
        heads = [(h.seq, h.kind, h.size) for h, _ in b.heads()]
    assert seqs == list(range(1, 10))
    assert [h[0] for h in heads] == seqs and heads[0][1] == "ddl"
    assert [e.seq for e in sss.read_bundle(path).entries] == seqs
