"""Log retention: prune the entries every registered replica has applied;
the log's sequence, replication, exports and `check` stay correct."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _database_workers import open_db
from _replication_workers import tables

import sqlite_session_safe as sss


@pytest.fixture
def src(tmp_path):
    db = open_db(str(tmp_path / "src.db"))
    db.migrate("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", label="schema")
    for i in range(1, 21):
        db.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 100)))
    yield db  # entries 1..21
    db.close()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sqlite_session_safe.faces.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _seqs(db):
    with db.read() as r:
        return [row[0] for row in r.execute("SELECT seq FROM _sss_log ORDER BY seq")]


def test_prune_keeps_what_registered_replicas_need(tmp_path, src):
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sss.replicate(src, a)  # registers a on the source
    for i in range(21, 26):
        src.write(lambda tx, i=i: tx.execute("INSERT INTO t VALUES (?, 'y')", (i + 100,)))
    sss.replicate(src, b)  # b at 26, a at 21
    report = src.prune_log()
    assert (report.removed, report.pruned_through, report.position) == (21, 21, 26)
    assert sorted(report.replicas.values()) == [21, 26]
    assert _seqs(src) == list(range(22, 27))
    assert _cli("check", src.path).returncode == 0  # the log holds 22..26 without gaps
    # replication and appends go on from where they were
    w = src.write(lambda tx: tx.execute("INSERT INTO t VALUES (999, 'z')"))
    assert w.seq == 27
    assert sss.replicate(src, a).applied == 6
    assert tables(a) == tables(src.path)
    assert src.prune_log().pruned_through == 26  # the newest entry always stays
    assert _seqs(src) == [27]


def test_replica_behind_the_prune_point_and_reseeding(tmp_path, src):
    late = str(tmp_path / "late.db")
    report = src.prune_log()
    assert report.removed == 0 and report.replicas == {}  # nothing registered: nothing pruned
    report = src.prune_log(through=10)
    assert (report.removed, report.pruned_through) == (10, 10)
    with pytest.raises(sss.LogPruned, match="pruned through 10") as info:
        sss.replicate(src, late)
    assert info.value.pruned_through == 10 and "backup" in str(info.value)
    with pytest.raises(sss.LogPruned):
        src.export(str(tmp_path / "x.bundle"), since=5)
    src.export(str(tmp_path / "x.bundle"), since=10)  # from the prune point on: fine
    seed = str(tmp_path / "seed.db")
    src.backup(seed)  # re-seed: a copy starts at its own position
    src.write(lambda tx: tx.execute("INSERT INTO t VALUES (500, 'after')"))
    assert sss.replicate(src, seed).applied == 1
    assert tables(seed) == tables(src.path)


def test_older_than_dry_run_and_unreadable_replicas(tmp_path, src):
    gone = tmp_path / "gone.db"
    src.register_replica(gone)  # never created: it holds pruning back
    assert src.prune_log().removed == 0
    dry = src.prune_log(older_than=0, dry_run=True)
    assert dry.dry_run and dry.removed == 20 and _seqs(src)[0] == 1
    report = src.prune_log(older_than=0)
    assert report.removed == 20 and list(report.replicas.values()) == [None]
    assert report.bytes_removed > 0 and report.log_bytes < report.bytes_removed
    assert src.unregister_replica(gone) and not src.unregister_replica(gone)
    with pytest.raises(sss.InterfaceError):
        src.prune_log(older_than=-1)
    with pytest.raises(sss.InterfaceError):
        src.prune_log(through="3")


def test_cli_prune_and_check(tmp_path, src):
    replica = tmp_path / "r.db"
    out = _cli("replicate", src.path, replica)
    assert out.returncode == 0, out.stderr
    out = _cli("--json", "prune", src.path, "--dry-run")
    doc = json.loads(out.stdout)
    assert doc["dry_run"] and doc["removed"] == 20
    out = _cli("prune", src.path)
    assert out.returncode == 0 and "removed 20 entries" in out.stdout, out.stdout + out.stderr
    check = _cli("--json", "check", src.path)
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["log"]["pruned_through"] == 20
    # a log with a hole after the prune point is still a problem
    with sss.connect(src.path) as con:
        con.execute("DELETE FROM _sss_log WHERE seq = 21")
        con.execute("UPDATE _sss_meta SET value = '19' WHERE key = 'pruned_through'")
    assert _cli("check", src.path).returncode == 1
