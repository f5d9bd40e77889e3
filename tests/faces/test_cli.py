"""The command-line tool end to end: real processes (``python -m
sqlite_session_safe.faces.cli``) on real database files, human and
``--json`` output, and the exit status of each failure class.

Each subprocess costs a few tenths of a second, so the tests share one
source database (built once per module) and copy it when they change it.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import CLI, copy, rows, run, run_json

import sqlite_session_safe as sss


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with an audit log: 1 migration, 3 data writes; ``rep.db``
    next to it is a backup taken after entry 3 (so it lacks entry 4)."""
    d = tmp_path_factory.mktemp("cli")
    path = d / "src.db"
    with sss.open(path) as db:
        db.migrate("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB);"
                   "CREATE TABLE nopk(a, b)")
        db.write(lambda tx: tx.execute(
            "INSERT INTO item VALUES (1, 'apple', 3, x'00ff'), (2, 'pear', 5, NULL)"), label="seed")
        db.write(lambda tx: tx.execute("UPDATE item SET qty = qty - 1 WHERE id = 1"), label="sell")
        db.backup(d / "rep.db")
        db.write(lambda tx: tx.execute("DELETE FROM item WHERE id = 2"))
    return path


# -- help, info, log, check -----------------------------------------------------


def test_help_lists_every_command_and_exit_codes() -> None:
    out = run("--help").stdout
    for command in ("info", "lock", "backup", "log", "show", "diff", "apply", "replicate", "export",
                    "import", "undo", "check"):
        assert f"\n    {command} " in out, command
    assert "exit codes:" in out and "3    lock held" in out
    sub = run("lock", "--help").stdout
    assert "--break" in sub and "--force" in sub and "--json" in sub and "exit codes:" in sub


def test_info_human_and_json(source: Path) -> None:
    out = run("info", source).stdout
    assert "audit log:      4 entries, position 4" in out
    assert "no primary key: nopk" in out and "lock: free" in out
    doc = run_json("info", source)
    assert doc["command"] == "info" and doc["mode"] == "trusted"
    assert doc["path"] == str(source)
    assert doc["log"]["present"] and doc["log"]["entries"] == 4 and doc["log"]["last_seq"] == 4
    assert doc["log"]["first_seq"] == 1 and doc["log"]["bytes"] > 0
    assert doc["log"]["database_id"] == doc["capabilities"]["database_id"]
    assert doc["tables_without_primary_key"] == ["nopk"]
    assert doc["lock"]["state"] == "free" and doc["lock"]["holder"] is None
    assert doc["capabilities"]["sessions"] is True
    assert doc["file_size"] == source.stat().st_size
    # --json before the command name works too
    assert json.loads(run("--json", "info", source).stdout)["log"]["entries"] == 4


def test_log_human_and_json(source: Path) -> None:
    out = run("log", source, "--changes").stdout.splitlines()
    assert out[0].startswith("#1 ") and " ddl " in out[0] and "CREATE TABLE item" in out[0]
    assert "INSERT item (id=1, name='apple', qty=3, data=x'00ff')" in [line.strip() for line in out]
    assert "UPDATE item [id=1] qty: 3 -> 2" in [line.strip() for line in out]
    assert any(line.startswith("#3 ") and "'sell'" in line and "1 change(s): item 1" in line for line in out)
    assert not any("no entries" in line for line in out), out  # said only when none is shown
    assert "no entries after seq 4 (log position 4)" in run("log", source, "--since", 4).stdout
    doc = run_json("log", source, "--since", 1, "--limit", 2, "--changes")
    assert doc["position"] == 4 and [e["seq"] for e in doc["entries"]] == [2, 3]
    seed, sell = doc["entries"]
    assert seed["label"] == "seed" and seed["kind"] == "data" and seed["change_count"] == 2
    assert seed["tables"] == {"item": 2} and seed["pid"] > 0 and seed["epoch"] >= 1
    assert seed["changes"][0] == {"table": "item", "op": "INSERT", "indirect": False, "pk": ["id"],
                                  "old": None,
                                  "new": {"id": 1, "name": "apple", "qty": 3, "data": {"$blob": "00ff"}}}
    assert sell["changes"] == [{"table": "item", "op": "UPDATE", "indirect": False, "pk": ["id"],
                                "old": {"id": 1, "qty": 3}, "new": {"qty": 2}}]
    assert "changes" not in run_json("log", source, "--limit", 1)["entries"][0]
    assert run_json("log", source, "--since", 4)["entries"] == []


def test_check_ok_then_finds_log_problems(source: Path, tmp_path: Path) -> None:
    assert "check: ok" in run("check", source).stdout
    doc = run_json("check", source)
    assert doc["ok"] and doc["integrity"] == ["ok"] and doc["problems"] == []
    assert doc["log"]["entries"] == 4 and doc["log"]["changes"] == 4 and doc["log"]["epoch"] >= 4
    broken = copy(source, tmp_path / "broken.db")
    with sss.connect(broken) as con:
        con.execute("DELETE FROM _sss_log WHERE seq = 2")  # a gap
        con.execute("UPDATE _sss_log SET changeset = x'54020100' WHERE seq = 3")  # truncated
    doc = run_json("check", broken, code=1)
    assert not doc["ok"] and doc["integrity"] == ["ok"]
    text = "\n".join(doc["problems"])
    assert "seq 3 follows seq 1" in text and "entry 3: its changeset does not parse" in text
    out = run("check", broken, code=1).stdout
    assert "check: FAILED" in out


# -- changesets: diff, show, apply -----------------------------------------------


def test_diff_show_apply_and_conflicts(source: Path, tmp_path: Path) -> None:
    replica = copy(source.parent / "rep.db", tmp_path / "rep.db")
    cs_file = tmp_path / "d.changeset"
    doc = run_json("diff", replica, source, "-o", cs_file)
    assert doc["output"] == str(cs_file) and doc["tables_compared"] == ["item"]
    assert doc["change_count"] == 1 and doc["tables"] == {"item": 1}
    assert "nopk" in doc["skipped"] and "changes" not in doc
    assert [c.op for c in sss.Changeset(cs_file.read_bytes())] == ["DELETE"]
    # without -o the changes are shown
    shown = run_json("diff", replica, source)
    assert shown["changes"][0]["op"] == "DELETE" and shown["changes"][0]["old"]["name"] == "pear"
    assert "DELETE item (id=2, name='pear', qty=5, data=NULL)" in run("diff", replica, source).stdout

    doc = run_json("show", cs_file, "--db", source)
    assert doc["kind"] == "changeset" and doc["change_count"] == 1
    assert doc["changes"][0]["old"] == {"id": 2, "name": "pear", "qty": 5, "data": None}
    assert run_json("show", cs_file)["changes"][0]["old"]["1"] == "pear"  # no --db: by position
    assert 'DELETE FROM "item" WHERE "id" = 2;' in run("show", cs_file, "--sql", "--db", source).stdout

    doc = run_json("apply", replica, cs_file)
    assert doc["applied"] == 1 and doc["seq"] == 4 and doc["conflicts"] == {}
    assert rows(replica) == rows(source)
    # the same change again: the row is gone, a NOTFOUND conflict; abort is the default
    proc = run("apply", replica, cs_file, code=1)
    error, hint = proc.stderr.splitlines()
    assert "NOTFOUND conflict" in error and error.startswith("sqlite-session-safe: error: ")
    assert hint.startswith("sqlite-session-safe: hint: ") and "--on-conflict omit" in hint
    doc = run_json("apply", replica, cs_file, "--on-conflict", "omit")
    assert doc["applied"] == 0 and doc["omitted"] == 1 and doc["conflicts"] == {"NOTFOUND": 1}
    assert doc["seq"] is None  # nothing changed, nothing logged
    assert run_json("log", replica)["position"] == 4


def test_bad_input_exit_codes(source: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    proc = run("info", missing, code=4)
    assert proc.stderr == f"sqlite-session-safe: error: database '{missing}' does not exist\n"
    assert not missing.exists()  # never created
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file " * 200)
    assert "file is not a database" in run("log", junk, code=4).stderr
    doc = run_json("info", junk, code=4)
    assert doc["error"]["exit_code"] == 4 and doc["error"]["type"] == "NotADBError"
    # a corrupt (truncated) changeset file
    bad = tmp_path / "bad.changeset"
    with sss.open(source) as db:
        entry = next(e for e in db.log() if e.label == "seed")
    assert entry.changeset is not None
    bad.write_bytes(bytes(entry.changeset)[:-7])
    assert "is not a valid changeset" in run("show", bad, code=4).stderr
    replica = copy(source.parent / "rep.db", tmp_path / "rep.db")
    assert "is not a valid changeset" in run("apply", replica, bad, code=4).stderr
    # neither changeset nor bundle
    assert "is neither a changeset" in run("show", junk, code=4).stderr
    # a changeset for a table the target lacks
    other = tmp_path / "other.db"
    with sss.connect(other) as con:
        con.execute("CREATE TABLE unrelated(x INTEGER PRIMARY KEY)")
    good = tmp_path / "good.changeset"
    good.write_bytes(bytes(entry.changeset))
    assert "has no table 'item'" in run("apply", other, good, code=4).stderr
    # usage errors
    run("frobnicate", code=2)
    run("log", source, "--since", "-1", code=2)
    run("apply", replica, good, "--on-conflict", "sometimes", code=2)
    # --debug shows the traceback
    assert "Traceback" in run("info", junk, "--debug", code=4).stderr


# -- lock -------------------------------------------------------------------------

_HOLDER = """
import sys, time
import sqlite_session_safe as sss
if sys.argv[2] == "v1":  # a lock directory with heartbeats (network mode's protocol)
    lock = sss.DirectoryLock(sys.argv[1], "write", timeout=30)
    lock.acquire()
    print("ready", flush=True)
    time.sleep(120)
else:  # trusted mode: an operating-system lock, held during a write
    db = sss.open(sys.argv[1], timeout=30)
    def hold(tx):
        print("ready", flush=True)
        time.sleep(120)
    db.write(hold)
"""


def _holder(db: Path, protocol: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), protocol],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    return holder


def test_lock_show_held_refuse(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "locked.db")
    holder = _holder(db, "v2")
    try:
        doc = run_json("lock", db)
        assert doc["lock"]["state"] == "held" and doc["lock"]["process"] == "alive"
        assert doc["lock"]["holder"]["pid"] == holder.pid and doc["broken"] is False
        assert f"pid {holder.pid}" in run("lock", db).stdout
        assert run_json("info", db)["lock"]["holder"]["pid"] == holder.pid
        # a write cannot be admitted: lock held, exit 3
        cs_file = tmp_path / "x.changeset"
        run("diff", source.parent / "rep.db", source, "-o", cs_file)
        proc = run("apply", db, cs_file, "--timeout", "0.3", code=3)
        assert "timed out" in proc.stderr and f"sqlite-session-safe lock {db}" in proc.stderr
        # a live holder is never broken without --force, even with --yes
        assert "refusing to break a live lock" in run("lock", db, "--break", "--yes", code=3).stderr
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the operating-system lock with its holder
    assert run_json("lock", db)["lock"]["state"] == "free"
    assert run_json("apply", db, cs_file, "--on-conflict", "omit")["omitted"] == 1


def test_lock_break_of_a_dead_v1_holder_is_confirmed(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "v1.db")
    holder = _holder(db, "v1")
    holder.kill()
    holder.wait()
    doc = run_json("lock", db)
    assert doc["lock"]["process"] == "dead" and doc["lock"]["breakable_now"] is True
    # declined (and end of input) counts as no: nothing broken
    proc = run("lock", db, "--break", stdin="n\n", code=1)
    assert "[y/N]" in proc.stderr and "not confirmed" in proc.stderr
    run("lock", db, "--break", stdin="", code=1)
    assert run_json("lock", db)["lock"]["state"] == "held"
    doc = run_json("lock", db, "--break", stdin="y\n")
    assert doc["broken"] is True and doc["before"]["holder"]["pid"] == holder.pid
    assert doc["lock"]["state"] == "free"
    assert "lock: free; nothing to break" in run("lock", db, "--break", "--yes").stdout


def test_lock_in_a_refused_state_needs_force(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "odd.db")
    (tmp_path / "odd.db.sss-lock").mkdir()  # an empty lock directory: never broken automatically
    doc = run_json("lock", db)
    assert doc["lock"]["state"] == "empty" and doc["lock"]["holder"] is None
    assert "never broken automatically" in run("lock", db, "--break", "--yes", code=3).stderr
    doc = run_json("lock", db, "--break", "--yes", "--force")
    assert doc["broken"] is True and doc["before"]["state"] == "empty" and doc["lock"]["state"] == "free"
    assert not (tmp_path / "odd.db.sss-lock").exists()


# -- backup -----------------------------------------------------------------------


def test_backup_checked_with_progress(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    proc = run("backup", source, dest, "--progress", "plain", "--pages", 1)
    assert "backup: 100%" in proc.stderr and proc.stderr.count("backup:") >= 3
    assert "integrity_check ok" in proc.stdout
    assert rows(dest) == rows(source)
    doc = run_json("backup", source, tmp_path / "bar.db", "--progress", "bar", "--pages", 2)
    assert doc["integrity"] == "ok" and doc["seq"] == 4 and doc["method"] == "backup"
    assert doc["size"] == (tmp_path / "bar.db").stat().st_size
    for method, name in (("vacuum-into", "vacuum_into"), ("copy-under-lock", "copy_under_lock")):
        doc = run_json("backup", source, tmp_path / f"{name}.db", "--method", method)
        assert doc["method"] == name and doc["integrity"] == "ok" and doc["seq"] == 4
        assert rows(tmp_path / f"{name}.db") == rows(source)
    assert run_json("check", dest)["ok"]
    # not a terminal: no progress output by default
    assert run("backup", source, tmp_path / "quiet.db").stderr == ""
    run("backup", source, tmp_path / "no" / "such" / "dir.db", code=4)


def test_backup_bar_on_a_terminal(source: Path, tmp_path: Path) -> None:
    """stderr a real terminal (a pty): the default progress is a bar redrawn in place."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*CLI, "backup", str(source), str(tmp_path / "b.db"), "--pages", "1"],
                              stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the pty's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert "\rbackup [" in err and "[" + "#" * 30 + "] 100% 7/7 pages" in err
    assert b"integrity_check ok" in proc.stdout


# -- replication, bundles, undo ------------------------------------------------------


def test_replicate_export_import(source: Path, tmp_path: Path) -> None:
    replica = tmp_path / "new.db"  # created by replicate
    doc = run_json("replicate", source, replica)
    assert doc["applied"] == 4 and doc["last_seq"] == 4 and doc["lag"] == 0 and not doc["follow"]
    assert rows(replica) == rows(source)
    assert "applied 0 entries" in run("replicate", source, replica).stdout

    bundle = tmp_path / "all.bundle"
    doc = run_json("export", source, bundle)
    assert doc["entries"] == 4 and doc["first_seq"] == 1 and doc["last_seq"] == 4
    assert doc["size"] == bundle.stat().st_size
    doc = run_json("show", bundle, "--db", source)
    assert doc["kind"] == "bundle" and doc["version"] == 1 and len(doc["entries"]) == 4
    assert doc["entries"][0]["kind"] == "ddl" and "CREATE TABLE item" in doc["entries"][0]["sql"]
    assert doc["entries"][2]["changes"][0]["new"] == {"qty": 2}
    assert "bundle v1 from database" in run("show", bundle).stdout

    imported = tmp_path / "imported.db"
    assert run_json("import", imported, bundle)["applied"] == 4
    assert rows(imported) == rows(source)
    again = run_json("import", imported, bundle)
    assert again["applied"] == 0 and again["skipped"] == 4

    truncated = tmp_path / "truncated.bundle"
    truncated.write_bytes(bundle.read_bytes()[:-40])
    flipped = tmp_path / "flipped.bundle"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x10
    flipped.write_bytes(bytes(data))
    fresh = tmp_path / "fresh.db"
    for bad in (truncated, flipped):
        assert "checksum" in run("import", fresh, bad, code=4).stderr
        assert "checksum" in run("show", bad, code=4).stderr
    assert run_json("import", fresh, flipped, code=4)["error"]["type"] == "BundleError"

    # a local write on the replica, then the source changes that row: conflict
    with sss.open(replica) as db:
        db.write(lambda tx: tx.execute("UPDATE item SET qty = 99 WHERE id = 1"))
    moved = copy(source, tmp_path / "moved.db")
    with sss.open(moved) as db:
        db.write(lambda tx: tx.execute("UPDATE item SET qty = 0 WHERE id = 1"))
    doc = run_json("replicate", moved, replica, code=1)
    assert doc["error"]["type"] == "ReplicationConflict"
    assert doc["error"]["conflicts"][0]["table"] == "item" and doc["error"]["conflicts"][0]["pk"] == [1]
    doc = run_json("replicate", moved, replica, "--on-conflict", "replace")
    assert doc["applied"] == 1 and doc["last_seq"] == 5 and len(doc["conflicts"]) == 1
    assert rows(replica) == rows(moved)


def test_undo(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "undo.db")
    doc = run_json("undo", db, 3)  # the 'sell' entry: qty 3 -> 2
    assert doc["undone"] == 3 and doc["seq"] == 5 and doc["change_count"] == 1 and doc["label"] == "undo 3"
    assert rows(db)[0][2] == 3
    doc = run_json("undo", db, 3, code=1)  # row 1 changed since (by the undo itself)
    assert doc["error"]["type"] == "UndoConflict" and doc["error"]["conflicts"][0]["pk"] == [1]
    assert rows(db)[0][2] == 3
    assert "undid entry 5" in run("undo", db, 5, "--label", "redo").stdout
    assert rows(db)[0][2] == 2
    assert run_json("log", db, "--since", 5)["entries"][0]["label"] == "redo"
    assert "migration" in run("undo", db, 1, code=4).stderr
    assert "has no entry 99" in run("undo", db, 99, code=4).stderr


def test_replicate_follow_until_sigterm(source: Path, tmp_path: Path) -> None:
    src = copy(source, tmp_path / "src.db")
    replica = tmp_path / "follower.db"
    follower = subprocess.Popen([*CLI, "replicate", str(src), str(replica), "--follow", "--interval",
                                 "0.05", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        with sss.open(src) as db:
            for i in range(3):
                db.write(lambda tx, i=i: tx.execute("INSERT INTO item VALUES (?, 'new', ?, NULL)",
                                                    (10 + i, i)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if replica.exists():
                try:
                    if rows(replica) == rows(src):
                        break
                except sss.Error:
                    pass  # not created yet
            time.sleep(0.05)
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert "Traceback" not in err
    lines = [json.loads(line) for line in out.splitlines()]
    rounds, total = lines[:-1], lines[-1]
    assert rounds and all(r["round"] for r in rounds)
    assert total["follow"] is True and total["round"] is False
    assert total["last_seq"] == 7 and total["applied"] == 7 == sum(r["applied"] for r in rounds)
    assert rows(replica) == rows(src)


def test_output_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.changeset"
    with sss.connect(tmp_path / "big.db") as con:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        with sss.Session(con) as session:
            con.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 40) for i in range(5000)))
            big.write_bytes(bytes(session.changeset()))
    proc = subprocess.Popen([*CLI, "show", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.read(10) == str(big).encode()[:10]
    proc.stdout.close()  # the reader goes away, like `| head -c 10`
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b""


def test_no_command_is_a_usage_error() -> None:
    proc = run(code=2)
    assert "required: COMMAND" in proc.stderr and proc.stdout == ""
