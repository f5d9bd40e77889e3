"""Running the command-line tool in tests: a real subprocess
(``python -m sqlite_session_safe.faces.cli``), its exit status checked and no
traceback leaked; or on a real terminal (a pty) where a prompt or a progress
bar is involved."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_session_safe as sss

CLI = [sys.executable, "-m", "sqlite_session_safe.faces.cli"]

#: What a message for a person at a terminal never contains: Python calls,
#: keyword arguments, module attributes, class names in brackets.
API_WORDS = re.compile(
    r"\b\w+\(\)|\b(?:con|columns|force|on_conflict)=|(?<![\w./\\-])(?:db|sss|tx)\.\w"
    r"|\((?:[A-Z][a-z0-9]+)+(?:Error|Timeout|Abort|Failed|Conflict|Mismatch|Refused|Compromised)\)"
)


def run(*args: object, code: int = 0, stdin: str | None = None,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the tool; assert its exit status and that no traceback leaked."""
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=120, env=full_env, encoding="utf-8", errors="backslashreplace")
    assert proc.returncode == code, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    if "--debug" not in map(str, args):
        assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_json(*args: object, code: int = 0, stdin: str | None = None) -> Any:
    """Run the tool with --json and parse its one JSON document."""
    proc = run(*args, "--json", code=code, stdin=stdin)
    return json.loads(proc.stdout)


def rows(path: Path, table: str = "item") -> list[tuple[Any, ...]]:
    with sss.connect(path, readonly=True) as con:
        return [tuple(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY 1")]


def copy(src: Path, dest: Path) -> Path:
    shutil.copyfile(src, dest)
    return dest


_HOLDER = """
import sys, time
import sqlite_session_safe as sss
lock = sss.DirectoryLock(sys.argv[1], "write", timeout=30)
lock.acquire()
print("ready", flush=True)
time.sleep(120)
"""


@contextmanager
def lock_held(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``db``'s write lock; SIGKILLed when the block
    ends, so afterwards the lock is held by a dead process."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def on_terminal(args: list[str], answer: bytes | None = None, prompt: bytes = b"[y/N] ",
                timeout: float = 120) -> tuple[int, bytes, bytes]:
    """Run the tool with stdin and stderr on a real terminal (a pty) and
    stdout on a pipe; type ``answer`` once ``prompt`` appears.  Returns
    (exit status, what the terminal showed, stdout)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the other end is closed and drained
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None and prompt in shown:
                    os.write(master, answer)
                    answer = None
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, shown, out
