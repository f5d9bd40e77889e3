"""What a new user hits first on the command line (issue 17): --version,
sql/tables/schema, log --newest/--reverse, show --sql into the sqlite3 shell,
diff that compares nothing, exit codes as documented, check on a corrupt
database, lock --break without the database, commands that look never
change the file, and messages that say what to do next.

Every test runs the tool as a real subprocess on real files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from _cli import API_WORDS, CLI, copy, lock_held, on_terminal, rows, run, run_json

import sqlite_session_safe as sss

EMOJI = "it's \U0001f600"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logged database: a migration, then 300 small writes (more than one
    256-entry batch), the last one writing text outside Latin-1."""
    path = tmp_path_factory.mktemp("newcomer") / "src.db"
    with sss.open(path) as db:
        db.migrate("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB);"
                   "CREATE INDEX item_name ON item(name);"
                   "CREATE TABLE nopk(a, b)", label="schema")
        for i in range(1, 299):
            db.write(lambda tx, i=i: tx.execute("INSERT INTO item VALUES (?, ?, ?, NULL)",
                                                (i, f"n{i}", i % 7)), label=f"w{i}")
        db.write(lambda tx: tx.execute("UPDATE item SET name = ?, data = x'00ff' WHERE id = 5",
                                       (EMOJI,)), label="unicode")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version() -> None:
    out = run("--version").stdout
    assert out == f"sqlite-session-safe {sss.__version__} (SQLite {sss.sqlite_version()})\n"


# -- sql, tables, schema -------------------------------------------------------------


def test_sql_prints_a_table_or_json(source: Path) -> None:
    out = run("sql", source, "SELECT id, name, qty, data FROM item WHERE id IN (4, 5) ORDER BY id").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "qty", "data"] and set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:2] == ["4", "n4"] and lines[2].rstrip().endswith("NULL")
    assert EMOJI in lines[3] and "x'00ff'" in lines[3]
    assert lines[-1] == "(2 rows)"
    doc = run_json("sql", source, "SELECT id, name FROM item WHERE qty = :q AND id < 20 ORDER BY id",
                   "-p", "q", "3")
    assert doc["command"] == "sql" and doc["columns"] == ["id", "name"]
    assert doc["rows"] == [{"id": 3, "name": "n3"}, {"id": 10, "name": "n10"}, {"id": 17, "name": "n17"}]
    blob = run_json("sql", source, "SELECT data FROM item WHERE id = 5")["rows"]
    assert blob == [{"data": {"$blob": "00ff"}}]
    # JSON rows are objects: two columns of one name are refused, with the way out
    proc = run("sql", source, "SELECT 1 AS a, 2 AS a", "--json", code=2)
    assert "name them apart with AS" in proc.stderr
    assert run("sql", source, "SELECT 1 WHERE 0").stdout.splitlines()[-1] == "(0 rows)"


def test_sql_only_reads_unless_told(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "db.db")
    before = digest(db)
    proc = run("sql", db, "DELETE FROM item", code=2)
    assert "--write" in proc.stderr and "--migrate" in proc.stderr
    assert digest(db) == before
    doc = run_json("sql", db, "UPDATE item SET qty = 0 WHERE id <= 3 RETURNING id", "--write",
                   "--label", "zero three")
    assert doc["seq"] == 301 and doc["change_count"] == 3
    assert sorted(r["id"] for r in doc["rows"]) == [1, 2, 3]
    entry = run_json("log", db, "--newest", 1)["entries"][0]
    assert entry["seq"] == 301 and entry["label"] == "zero three" and entry["tables"] == {"item": 3}
    # a schema change needs --migrate, and is logged as a migration
    assert "--migrate" in run("sql", db, "CREATE TABLE t(x PRIMARY KEY)", "--write", code=2).stderr
    out = run("sql", db, "CREATE TABLE t(x PRIMARY KEY)", "--migrate").stdout
    assert "logged as seq 302 (migration" in out
    assert run_json("log", db, "--newest", 1)["entries"][0]["kind"] == "ddl"
    assert run("check", db).stdout.splitlines()[-1] == "check: ok"


def test_tables_and_schema_into_the_sqlite3_shell(source: Path, tmp_path: Path) -> None:
    doc = run_json("tables", source, "--count")
    by_name = {t["name"]: t for t in doc["tables"]}
    assert set(by_name) == {"item", "nopk"}  # not the package's own _sss_ tables
    assert by_name["item"]["primary_key"] == ["id"] and by_name["item"]["rows"] == 298
    assert by_name["nopk"]["primary_key"] == []
    text = run("tables", source).stdout
    assert "writes to it are not recorded" in text and "id, name, qty, data" in text
    assert "_sss_log" in run("tables", source, "--all").stdout
    schema = run("schema", source).stdout
    assert schema.count(";\n") == 3 and "CREATE INDEX item_name" in schema and "_sss_" not in schema
    assert run("schema", source, "item").stdout.count(";\n") == 2
    assert "no table named 'nope'" in run("schema", source, "nope", code=4).stderr
    sqlite3_shell = shutil.which("sqlite3")
    if sqlite3_shell is None:
        pytest.skip("the sqlite3 shell is not installed (apt-get install sqlite3)")
    fresh = tmp_path / "fresh.db"
    subprocess.run([sqlite3_shell, "-bail", str(fresh)], input=schema, text=True, check=True, timeout=60)
    assert run_json("schema", fresh)["objects"] == run_json("schema", source)["objects"]


# -- log -------------------------------------------------------------------------------


def test_log_newest_reverse_limit(source: Path) -> None:
    def seqs(*args: object) -> list[int]:
        return [e["seq"] for e in run_json("log", source, *args)["entries"]]

    assert seqs("--newest", 3) == [298, 299, 300]
    assert seqs("--reverse", "--limit", 3) == [300, 299, 298]
    assert seqs("--newest", 3, "--reverse") == [300, 299, 298]
    everything = seqs("--reverse")
    assert everything == list(range(300, 0, -1))  # across 256-entry batches
    assert seqs("--since", 290, "--newest", 100) == list(range(291, 301))
    assert seqs("--since", 10, "--limit", 2) == [11, 12]
    assert seqs("--since", 10, "--reverse", "--limit", 2) == [300, 299]
    assert seqs("--newest", 0) == []
    text = run("log", source, "--newest", 1).stdout
    assert text.startswith("#300 ") and "'unicode'" in text
    assert "asked for 0 entries" in run("log", source, "--limit", 0).stdout
    assert "not a whole number: 'abc'" in run("log", source, "--limit", "abc", code=2).stderr
    assert "must be 0 or more" in run("log", source, "--since", "-1", code=2).stderr


# -- show --sql, diff ---------------------------------------------------------------------


def test_show_sql_pipes_into_sqlite3(source: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with sss.connect(old) as con:
        con.execute("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB)")
        con.execute("CREATE TABLE nopk(a, b)")
        con.execute("INSERT INTO item VALUES (1, 'gone', 1, NULL), (5, 'old', 0, NULL)")
    cs = tmp_path / "d.changeset"
    run("diff", old, source, "-o", cs)
    # without --db: refused before anything is printed
    proc = run("show", cs, "--sql", code=2)
    assert proc.stdout == "" and "--sql needs --db" in proc.stderr
    sql = subprocess.run([*CLI, "show", str(cs), "--sql", "--db", str(source)], capture_output=True,
                         timeout=120, check=True).stdout
    text = sql.decode("utf-8")
    assert text.startswith("BEGIN;\n") and text.endswith("COMMIT;\n") and "changeset" not in text
    assert all(line.endswith(";") and not line.startswith(" ") for line in text.splitlines())
    sqlite3_shell = shutil.which("sqlite3")
    target = copy(old, tmp_path / "target.db")
    if sqlite3_shell is not None:
        subprocess.run([sqlite3_shell, "-bail", str(target)], input=sql, check=True, timeout=60)
    else:  # the same SQL through the stdlib's SQLite
        with sqlite3.connect(target) as con:
            con.executescript(text)
    assert rows(target) == rows(source)
    # a bundle: its migrations and changes, in order, into an empty file
    bundle = tmp_path / "all.bundle"
    run("export", source, bundle)
    sql = subprocess.run([*CLI, "show", str(bundle), "--sql", "--db", str(source)], capture_output=True,
                         timeout=120, check=True).stdout.decode()
    empty = tmp_path / "from-bundle.db"
    with sqlite3.connect(empty) as con:
        con.executescript(sql)
    assert rows(empty) == rows(source)
    # a database is not a changeset: say what to run instead
    proc = run("show", source, code=4)
    assert "is a SQLite database" in proc.stderr and f"log {source} --changes" in proc.stderr


def test_diff_that_compares_nothing_fails(source: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path, rowsql in ((a, "INSERT INTO t VALUES (1, 2)"), (b, "INSERT INTO t VALUES (3, 4)")):
        with sss.connect(path) as con:
            con.execute("CREATE TABLE t(x, y)")  # no primary key
            con.execute(rowsql)
    proc = run("diff", a, b, code=4)
    assert "nothing to compare" in proc.stderr and "t: no PRIMARY KEY" in proc.stderr
    assert run_json("diff", a, b, code=4)["error"]["exit_code"] == 4
    unrelated = tmp_path / "u.db"
    with sss.connect(unrelated) as con:
        con.execute("CREATE TABLE other(id INTEGER PRIMARY KEY)")
    assert "only in" in run("diff", unrelated, source, code=4).stderr
    # identical: says so, exit 0; --exit-code: 1 when they differ
    same = copy(source, tmp_path / "same.db")
    assert "no differences in the 1 table(s) compared: item" in run("diff", source, same).stdout
    run("diff", source, same, "--exit-code")
    with sss.connect(same) as con:
        con.execute("UPDATE item SET qty = 99 WHERE id = 1")
    run("diff", source, same, "--exit-code", code=1)


# -- looking never changes, exit codes, corrupt databases, lock --break ------------------


def test_commands_that_look_never_change_the_file(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "look.db")
    before = digest(db)
    for args in (["info"], ["log", "--changes"], ["check"], ["lock"], ["tables"], ["schema"],
                 ["sql", "SELECT count(*) FROM item"], ["info", "--mode", "network"]):
        run(args[0], db, *args[1:])
        assert digest(db) == before, args
    proc = run("info", db, "--mode", "wal", code=2)
    assert "only looks" in proc.stderr and "leave out --mode" in proc.stderr
    for command in ("log", "check", "tables"):
        run(command, db, "--mode", "wal", code=2)
    assert digest(db) == before
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert not Path(f"{db}-wal").exists()


def corrupt(src: Path, dest: Path) -> Path:
    """A copy of ``src`` with two of table item's leaf pages overwritten."""
    copy(src, dest)
    with sss.connect(dest, readonly=True) as con:
        size = con.execute("PRAGMA page_size").fetchone()[0]
        leaves = [p for (p,) in con.execute(
            "SELECT pageno FROM dbstat WHERE name = 'item' AND pagetype = 'leaf' ORDER BY pageno")]
    assert len(leaves) >= 2
    with open(dest, "r+b") as f:
        for page in leaves[:2]:
            f.seek((page - 1) * size)
            f.write(bytes(range(256)) * (size // 256))
    return dest


def test_check_on_a_corrupt_database_still_reads_its_log(source: Path, tmp_path: Path) -> None:
    bad = corrupt(source, tmp_path / "bad.db")
    proc = run("check", bad, code=1)
    assert "integrity_check: FAILED" in proc.stdout
    assert "audit log: 300 entries" in proc.stdout  # the log's pages are intact
    assert "table item" in proc.stdout
    doc = run_json("check", bad, code=1)
    assert doc["ok"] is False and doc["log"]["entries"] == 300 and doc["log"]["readable"] is True
    # a backup of it fails its check: exit 1 as documented, nothing left behind
    proc = run("backup", bad, tmp_path / "copy.db", code=1)
    assert "failed PRAGMA integrity_check" in proc.stderr and str(tmp_path / "copy.db") in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.db"]


def test_lock_break_when_only_the_lock_directory_is_left(source: Path, tmp_path: Path) -> None:
    db = copy(source, tmp_path / "gone.db")
    with lock_held(db) as holder:
        # a live holder: the message says what to do, names no Python API
        proc = run("lock", db, "--break", "--yes", code=3)
        assert f"process {holder.pid}" in proc.stderr and "stop that process" in proc.stderr
        assert not API_WORDS.search(proc.stderr), proc.stderr
    db.unlink()
    out = run("lock", db).stdout
    assert "which is gone" in out and f"'sqlite-session-safe lock {db} --break' breaks it now" in out
    assert not API_WORDS.search(out), out
    doc = run_json("lock", db, "--break", "--yes")
    assert doc["broken"] is True and doc["lock"]["state"] == "free"
    # now neither the database nor its lock is there
    assert "does not exist, and no lock directory" in run("lock", db, code=4).stderr


def test_lock_break_prompt_on_a_terminal(source: Path, tmp_path: Path) -> None:
    """The confirmation is asked on a real terminal and answered by typing."""
    db = copy(source, tmp_path / "prompt.db")
    with lock_held(db):
        pass  # the holder dies with the lock held
    code, shown, out = on_terminal(["lock", str(db), "--break"], answer=b"n\n")
    assert code == 1 and b"Break the lock of" in shown and b"not confirmed" in shown
    code, shown, out = on_terminal(["lock", str(db), "--break"], answer=b"y\n")
    assert code == 0 and b"[y/N]" in shown and out.startswith(b"lock broken")


def test_exit_codes_as_documented(source: Path, tmp_path: Path) -> None:
    """One real failure per documented exit status (0-5, 130, 141; 1 and 4
    also above)."""
    run("info", source)                                                    # 0
    run("lock", source, "--break", stdin="n\n", code=0)                    # free: nothing to break
    run("info", source, "--frobnicate", code=2)                            # 2
    run("undo", source, 1, code=4)                                         # 4: a migration
    assert "sql" in run("undo", source, 1, code=4).stderr
    run("info", tmp_path / "missing.db", code=4)                           # 4
    # 3: the write lock held by a live process
    db = copy(source, tmp_path / "held.db")
    with lock_held(db):
        proc = run("sql", db, "DELETE FROM item", "--write", "--timeout", "0.5", code=3)
        assert "hint:" in proc.stderr and f"lock {db}" in proc.stderr
    # 130: interrupted in the middle of a backup
    big = tmp_path / "big.db"
    with sss.connect(big) as con:
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        con.executemany("INSERT INTO t(b) VALUES (zeroblob(4000))", [()] * 3000)
    proc = subprocess.Popen([*CLI, "backup", str(big), str(tmp_path / "big-copy.db"), "--pages", "1",
                             "--progress", "plain"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    proc.stderr.readline()  # the first progress line: mid-copy
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "error: interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "big-copy.db").exists()
    # 141: the reader of stdout went away
    reader = subprocess.Popen([*CLI, "log", str(source), "--changes"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert reader.stdout is not None
    reader.stdout.read(10)
    reader.stdout.close()
    _, err_bytes = reader.communicate(timeout=120)
    assert reader.returncode == 141 and err_bytes == b""


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0,
                    reason="needs chattr and root for a destination that cannot be replaced")
def test_exit_code_5_for_an_io_error(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"old")
    if subprocess.run(["chattr", "+i", str(dest)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        proc = run("backup", source, dest, code=5)
    finally:
        subprocess.run(["chattr", "-i", str(dest)], check=True)
    assert "another program may have it open" in proc.stderr


def test_messages_say_what_to_do_and_name_no_python_api(source: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database " * 300)
    empty_lock = copy(source, tmp_path / "refused.db")
    (tmp_path / "refused.db.sss-lock").mkdir()
    undo_db = copy(source, tmp_path / "undo.db")
    run("undo", undo_db, 300)
    nolog = tmp_path / "plain.db"
    with sss.connect(nolog) as con:
        con.execute("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB)")
    failures = [
        (["info", junk], 4),
        (["check", junk], 4),
        (["show", junk], 4),
        (["lock", empty_lock, "--break", "--yes"], 3),
        (["undo", undo_db, 300], 1),          # a conflict: the undo itself changed that row
        (["undo", undo_db, 9999], 4),
        (["replicate", nolog, tmp_path / "r.db"], 1),
        (["export", source, tmp_path / "x.bundle", "--since", 9999], 2),
        (["backup", source, tmp_path / "no" / "dir.db"], 4),
        (["sql", source, "SELECT 1; SELECT 2"], 2),
        (["sql", source, "SELECT * FROM nowhere"], 2),
        (["show", junk], 4),
    ]
    for args, code in failures:
        proc = run(*args, code=code)
        lines = proc.stderr.splitlines()
        assert lines and lines[0].startswith("sqlite-session-safe: error: "), (args, proc.stderr)
        assert not API_WORDS.search(proc.stderr), (args, proc.stderr)
        said = proc.stderr.lower()
        advice = ("leave out", "run ", "use ", "add ", "give ", "check ", "'sqlite-session-safe ")
        hinted = len(lines) == 2 and lines[1].startswith("sqlite-session-safe: hint: ")
        assert hinted or any(w in said for w in advice), (args, proc.stderr)
    assert "run 'sqlite-session-safe lock" in run("lock", empty_lock).stdout
    assert not API_WORDS.search(run("lock", empty_lock).stdout)
    assert not API_WORDS.search(run("--help").stdout + run("lock", "--help").stdout)


# -- output that is not UTF-8 (Windows' code pages) ---------------------------------


CP1252 = {"PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0"}


def test_text_output_on_a_cp1252_stdout(source: Path) -> None:
    """What Windows does when output goes to a file or a pipe: the ANSI code
    page.  Text escapes what it cannot encode, JSON is ASCII, SQL is UTF-8."""
    proc = subprocess.run([*CLI, "log", str(source), "--changes", "--newest", "1"], capture_output=True,
                          timeout=120, env={**os.environ, **CP1252})
    assert proc.returncode == 0, proc.stderr
    assert b"it''s \\U0001f600" in proc.stdout or b"it's \\U0001f600" in proc.stdout
    proc = subprocess.run([*CLI, "--json", "log", str(source), "--changes", "--newest", "1"],
                          capture_output=True, timeout=120, env={**os.environ, **CP1252})
    assert proc.returncode == 0, proc.stderr
    proc.stdout.decode("ascii")  # pure ASCII
    entry = json.loads(proc.stdout)["entries"][0]
    assert entry["changes"][0]["new"]["name"] == EMOJI
    proc = subprocess.run([*CLI, "sql", str(source), "SELECT name FROM item WHERE id = 5"],
                          capture_output=True, timeout=120, env={**os.environ, **CP1252})
    assert proc.returncode == 0 and b"\\U0001f600" in proc.stdout
    proc = subprocess.run([*CLI, "schema", str(source)], capture_output=True, timeout=120,
                          env={**os.environ, **CP1252})
    assert proc.returncode == 0
    proc = subprocess.run([*CLI, "sql", str(source), "SELECT 'caf\u00e9 \U0001f600' AS x", "--json"],
                          capture_output=True, timeout=120, env={**os.environ, **CP1252})
    assert json.loads(proc.stdout)["rows"] == [{"x": "caf\u00e9 \U0001f600"}]


def test_show_sql_is_utf8_on_any_code_page(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    with sss.open(db) as d:
        d.migrate("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT)")
    old = copy(db, tmp_path / "old.db")
    with sss.open(db) as d:
        d.write(lambda tx: tx.execute("INSERT INTO item VALUES (1, ?)", (EMOJI,)))
    cs = tmp_path / "d.changeset"
    run("diff", old, db, "-o", cs)
    proc = subprocess.run([*CLI, "show", str(cs), "--sql", "--db", str(db)], capture_output=True,
                          timeout=120, env={**os.environ, **CP1252})
    assert proc.returncode == 0, proc.stderr
    assert EMOJI.replace("'", "''").encode("utf-8") in proc.stdout
    with sqlite3.connect(old) as con:
        con.executescript(proc.stdout.decode("utf-8"))
    assert rows(old) == rows(db)


def test_windows_pipe_error_is_a_closed_pipe() -> None:
    """Windows reports a write into a pipe whose reader quit as EINVAL: that
    counts as the reader going away there (exit 141), nowhere else."""
    import errno

    from sqlite_session_safe.faces.cli._base import is_pipe_error

    assert is_pipe_error(BrokenPipeError(errno.EPIPE, "broken pipe"), "linux")
    assert is_pipe_error(OSError(errno.EINVAL, "Invalid argument"), "win32")
    assert not is_pipe_error(OSError(errno.EINVAL, "Invalid argument"), "linux")
    assert not is_pipe_error(OSError(errno.EIO, "I/O error"), "win32")
