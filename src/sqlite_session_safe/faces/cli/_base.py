"""What every command of the command-line tool shares: exit codes, the
mapping from exceptions to them, output (human or ``--json``), opening a
database without creating it, conflict policies by name, confirmation and the
progress bar."""

from __future__ import annotations

import argparse
import enum
import errno
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import sqlite_session_safe as sss

from ...binding.errors import ClosedError, InterfaceError
from ...coordination.audit import LOG_TABLE
from ...coordination.modes import MODES

__all__ = [
    "ExitCode",
    "CliError",
    "exit_code_for",
    "Output",
    "require_file",
    "open_db",
    "raw_readonly",
    "conflict_policy",
    "CONFLICT_CHOICES",
    "jsonable",
    "confirm",
    "ProgressBar",
    "has_log",
    "is_utf8",
    "prepare_stdout",
    "is_pipe_error",
    "pipe_closed",
    "hint_for",
    "whole_number",
    "for_terminal",
]


class ExitCode(enum.IntEnum):
    """The tool's exit statuses (documented in ``--help`` and README.md)."""

    OK = 0
    #: ``check`` found a problem; an apply/replicate/undo met a conflict its
    #: policy aborts on; replication cannot go on (a gap, a cursor ahead of
    #: the source, another source); a backup failed its integrity check;
    #: the user declined a confirmation; ``diff --exit-code`` found differences.
    FAILED = 1
    #: Bad command line (argparse's own status).
    USAGE = 2
    #: The database is locked or busy: the admission wait ran out, the lock
    #: is held by a live process, or is in a state never broken automatically.
    LOCKED = 3
    #: A file is missing, not a database, corrupt, or not a valid changeset
    #: or bundle; a changeset does not fit the target's schema; ``diff``
    #: found no table it could compare.
    BAD_INPUT = 4
    #: Any other error (I/O, an unexpected SQLite error).
    ERROR = 5
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130
    #: stdout was closed by its reader (``| head``): 128 + SIGPIPE, the
    #: status a shell reports for a command killed by SIGPIPE.
    PIPE_CLOSED = 141


EXIT_CODES_HELP = """exit codes:
  0    success
  1    check failed, conflict (policy abort), replication cannot go on (gap,
       cursor ahead, other source), backup check failed, not confirmed, or
       diff --exit-code found differences
  2    usage error (bad command line or option value, a mistake in sql's
       statement, a write asked of a command that only looks)
  3    lock held or database busy (admission timed out, live lock, refused lock state)
  4    not found or bad input (missing file, not a database, corrupt database,
       changeset or bundle, changeset that does not fit the target's schema,
       diff found no table to compare)
  5    other error (I/O, unexpected SQLite error)
  130  interrupted
  141  stdout closed by its reader (e.g. piped into head)"""


class CliError(Exception):
    """A failure the tool reports as one line on stderr with ``code``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an exception raised by a command."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    # Order matters: LockTimeout is also a TimeoutError (an OSError).
    locked = (sss.LockError, sss.BusyError, sss.LockedError)
    if isinstance(exc, locked) and not isinstance(exc, (sss.FencingError,)):
        return ExitCode.LOCKED
    failed = (sss.ConflictAbort, sss.ConflictError, sss.BackupCheckFailed, sss.ReplicationError)
    if isinstance(exc, failed):
        return ExitCode.FAILED
    bad = (sss.NotADBError, sss.CorruptError, sss.ChangesetError, sss.SchemaMismatch, sss.BundleError,
           sss.UndoError, sss.CantOpenError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
    if isinstance(exc, bad):
        return ExitCode.BAD_INPUT
    if isinstance(exc, (sss.ConflictPolicyError, InterfaceError)) and not isinstance(exc, ClosedError):
        return ExitCode.USAGE
    return ExitCode.ERROR


def jsonable(value: Any) -> Any:
    """Values JSON can hold: BLOBs as ``{"$blob": "<hex>"}``, non-finite
    REALs as ``{"$real": "inf"}`` (the same encoding as ``Changeset.to_json``),
    tuples as lists, enums by name, ``sss.UNCHANGED`` as ``{"$unchanged": true}``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$blob": bytes(value).hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$real": repr(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if value is sss.UNCHANGED:
        return {"$unchanged": True}
    return value


def is_utf8(stream: TextIO) -> bool:
    """Whether ``stream`` writes UTF-8 (then any text can be written as is)."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
    return encoding in ("utf-8", "utf8", "utf-8-sig")


def prepare_stdout(stream: TextIO | None = None) -> None:
    """Make text output survive a stdout that is not UTF-8.

    Windows writes output redirected to a file or pipe in the ANSI code page
    (cp1252 and the like), where most characters a database holds do not
    exist: print them as ``\\U0001f600`` escapes instead of failing.  JSON is
    written in ASCII there (``\\u`` escapes, lossless); ``show --sql`` writes
    UTF-8 whatever the stream (see :meth:`Output.binary_safe`)."""
    stream = stream or sys.stdout
    if not is_utf8(stream) and isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")


def is_pipe_error(exc: BaseException, platform: str = sys.platform) -> bool:
    """Whether writing to stdout failed because its reader went away.

    POSIX says EPIPE (BrokenPipeError); Windows says EINVAL for a write to a
    pipe whose reading end is closed (``... | more`` quit early)."""
    if isinstance(exc, BrokenPipeError):
        return True
    return platform == "win32" and isinstance(exc, OSError) and exc.errno == errno.EINVAL


def pipe_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a
    command killed by SIGPIPE would, and keep the interpreter's own flush at
    exit from failing again.  Returns the exit status to end with."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return int(ExitCode.PIPE_CLOSED)


class Output:
    """Where a command's result goes: JSON on stdout (``--json``), or
    readable lines on stdout; notes and progress on stderr."""

    def __init__(self, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def write(self, text: str) -> None:
        """Write to stdout; a reader that went away is a BrokenPipeError on
        every platform."""
        try:
            self.out.write(text)
        except OSError as e:
            if is_pipe_error(e) and not isinstance(e, BrokenPipeError):
                raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away") from e
            raise

    def line(self, text: str = "") -> None:
        """A human-readable line (nothing with ``--json``)."""
        if not self.json:
            self.write(text + "\n")

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, always on stderr."""
        print(text, file=self.err)

    def dumps(self, doc: Any) -> str:
        """``doc`` as one line of JSON: UTF-8 text when stdout is UTF-8, else
        ASCII with ``\\u`` escapes (the same JSON, on any code page)."""
        return json.dumps(jsonable(doc), ensure_ascii=not is_utf8(self.out), allow_nan=False)

    def document(self, doc: dict[str, Any]) -> None:
        """The command's JSON result (only with ``--json``): one object,
        one line, so ``--follow`` streams JSON lines."""
        if self.json:
            self.write(self.dumps(doc) + "\n")
            self.flush()

    def flush(self) -> None:
        try:
            self.out.flush()
        except OSError as e:
            if is_pipe_error(e) and not isinstance(e, BrokenPipeError):
                raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away") from e
            raise

    def binary_safe(self) -> None:
        """Switch stdout to UTF-8 for output that must be exact whatever the
        terminal's code page (SQL for the ``sqlite3`` shell, which reads
        UTF-8)."""
        if not is_utf8(self.out) and isinstance(self.out, io.TextIOWrapper):
            self.out.flush()
            self.out.reconfigure(encoding="utf-8", errors="strict")

    def fields(self, pairs: list[tuple[str, Any]], indent: str = "") -> None:
        """Aligned ``key: value`` lines."""
        if self.json or not pairs:
            return
        width = max(len(k) for k, _ in pairs)
        for key, value in pairs:
            self.line(f"{indent}{key + ':':<{width + 1}} {_human(value)}")


def _human(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_human(v) for v in value) if value else "(none)"
    return str(value)


def require_file(path: str, what: str = "database") -> str:
    """``path`` as given, after making sure it is an existing regular file
    (commands never create a database by accident)."""
    if not os.path.exists(path):
        raise CliError(f"{what} {path!r} does not exist", ExitCode.BAD_INPUT)
    if os.path.isdir(path):
        raise CliError(f"{what} {path!r} is a directory", ExitCode.BAD_INPUT)
    return path


@contextmanager
def raw_readonly(path: str) -> Iterator[sss.Connection]:
    """A read-only plain connection (schema lookups, checks); the file must exist."""
    con = sss.connect(require_file(path), readonly=True)
    try:
        yield con
    finally:
        con.close()


def _journal_mode(path: str) -> str:
    with raw_readonly(path) as con:
        row = con.execute("PRAGMA journal_mode").fetchone()
    return str(row[0]).lower() if row is not None else "delete"


@contextmanager
def open_db(args: argparse.Namespace, path: str, create: bool = False,
            looking: bool = False) -> Iterator[sss.Database]:
    """``sss.open`` on an existing database file (``create`` allows a new
    one), in ``--mode`` (``auto``: the mode the file is in; network mode
    cannot be told from the file), waiting at most ``--timeout`` seconds for
    admission.

    ``looking``: the command only reads, so the file must stay exactly as it
    is; a ``--mode`` that would switch its journal mode is refused instead."""
    if not create or os.path.exists(path):
        require_file(path)
    current = _journal_mode(path) if os.path.exists(path) else None
    mode = args.mode
    if mode == "auto":
        mode = "wal" if current == "wal" else "trusted"
    elif looking and current is not None and MODES[mode].journal_mode != current:
        raise CliError(
            f"'{args.command}' only looks at {path!r} and never changes it, but --mode {mode} would "
            f"switch it from journal_mode={current} to {MODES[mode].journal_mode}; leave out --mode "
            "to open it in the mode it is in", ExitCode.USAGE)
    db = sss.open(path, mode, timeout=args.timeout)
    try:
        yield db
    finally:
        db.close()


def has_log(db: sss.Database) -> bool:
    """Whether ``db`` keeps an audit log."""
    with db.read() as r:
        return r.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                         (LOG_TABLE,)).fetchone() is not None


#: ``--on-conflict`` names; see :func:`conflict_policy`.
CONFLICT_CHOICES = ("abort", "omit", "replace")


def conflict_policy(name: str) -> Any:
    """The ``on_conflict`` value for a ``--on-conflict`` name.

    * ``abort``: any conflict aborts the whole apply (nothing changes);
    * ``omit``: conflicting changes are skipped, the rest applied;
    * ``replace``: a row that differs (DATA) or already exists (CONFLICT) is
      overwritten; a change whose row is gone (NOTFOUND) is skipped; a
      constraint or foreign key failure still aborts.
    """
    if name == "abort":
        return sss.ABORT
    if name == "omit":
        return sss.OMIT
    if name == "replace":
        return {sss.ConflictType.DATA: sss.REPLACE, sss.ConflictType.CONFLICT: sss.REPLACE,
                sss.ConflictType.NOTFOUND: sss.OMIT}
    raise CliError(f"unknown conflict policy {name!r} (one of {', '.join(CONFLICT_CHOICES)})",
                   ExitCode.USAGE)


def confirm(question: str, stdin: TextIO | None = None, err: TextIO | None = None) -> bool:
    """Ask ``question`` on stderr, read one answer from stdin: True only for
    y/yes.  End of input counts as no."""
    err = err or sys.stderr
    stdin = stdin or sys.stdin
    print(f"{question} [y/N] ", end="", file=err, flush=True)
    answer = stdin.readline()
    if not answer.endswith("\n"):
        print(file=err)
    return answer.strip().lower() in ("y", "yes")


class ProgressBar:
    """``progress(remaining, total)`` for the backup API: a bar redrawn in
    place when stderr is a terminal (``style="bar"``), a line per 10% step
    (``"plain"``), or nothing (``"none"``)."""

    WIDTH = 30

    def __init__(self, style: str, label: str, err: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        if style == "auto":
            style = "bar" if self.err.isatty() else "none"
        self.style = style
        self.label = label
        self._last = -1
        self.drawn = False

    def __call__(self, remaining: int, total: int) -> None:
        if self.style == "none" or total <= 0:
            return
        done = total - remaining
        pct = 100 * done // total
        if self.style == "bar":
            filled = self.WIDTH * done // total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.err.write(f"\r{self.label} [{bar}] {pct:3d}% {done}/{total} pages")
            self.err.flush()
            self.drawn = True
        elif pct // 10 != self._last // 10 or pct == 100 and self._last != 100:
            print(f"{self.label}: {pct}% ({done}/{total} pages)", file=self.err)
        self._last = pct

    def finish(self) -> None:
        """End the bar's line."""
        if self.drawn:
            self.err.write("\n")
            self.err.flush()
            self.drawn = False


def whole_number(text: str) -> int:
    """``type=`` for counts and seqs: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


#: Phrases of the library's messages that speak to a Python caller, and what
#: the command line says instead.
_TERMINAL_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\s*\(pass on_conflict=[^()]*\)"), ""),
    (re.compile(r"break_stale_lock\(\) breaks it at once"), "'lock --break' breaks it at once"),
    (re.compile(r"call break_stale_lock\(db, force=True\)"), "run 'lock --break --force'"),
    (re.compile(r"\s*\(open it with sss\.open and write through it\)"),
     " (only writes made through sqlite-session-safe are logged)"),
    (re.compile(r"\bsince=(\d+)"), r"--since \1"),
    (re.compile(r"execute\(\) runs one statement at a time; use executescript\(\) for several.*"),
     "give one statement at a time"),
)


def for_terminal(message: str) -> str:
    """A library message as the command line says it (no Python API names)."""
    for pattern, replacement in _TERMINAL_WORDS:
        message = pattern.sub(replacement, message)
    return message


def hint_for(exc: BaseException, command: str, database: str | None) -> str | None:
    """What to do next after ``exc`` in ``command`` (None when the message
    already says)."""
    db = f" {database}" if database else " DATABASE"
    if isinstance(exc, CliError):
        return None
    if isinstance(exc, sss.LockTimeout):
        return f"see who holds it with 'sqlite-session-safe lock{db}', or wait longer with --timeout"
    if isinstance(exc, sss.LockRefused):
        return f"see 'sqlite-session-safe lock{db}'"
    if isinstance(exc, sss.LockCompromised):
        return f"check with 'sqlite-session-safe log{db} --newest 5' whether the write landed before retrying"
    if isinstance(exc, (sss.BusyError, sss.LockedError)):
        return "another process is using the database: try again, or wait longer with --timeout"
    if isinstance(exc, sss.ConflictAbort):
        return "--on-conflict omit skips the conflicting rows, --on-conflict replace overwrites them"
    if isinstance(exc, sss.ReplicationError) and not isinstance(exc, sss.ConflictAbort):
        if "keeps no audit log" in str(exc):
            return "a database without a log is copied whole with 'sqlite-session-safe backup'"
        return "compare both databases' log position and id with 'sqlite-session-safe info'"
    if isinstance(exc, sss.UndoError):
        return f"see the latest entries with 'sqlite-session-safe log{db} --newest 10'"
    if isinstance(exc, sss.NotADBError):
        return "check the path: this file is not a SQLite database"
    if isinstance(exc, (sss.CorruptError, sss.BackupCheckFailed)):
        return f"see what is damaged with 'sqlite-session-safe check{db}'; restore it from a backup"
    if isinstance(exc, sss.BundleError):
        return "the file is damaged or not a bundle: export it again"
    if isinstance(exc, sss.SchemaMismatch):
        return "compare the tables with 'sqlite-session-safe schema'"
    if isinstance(exc, sss.ChangesetError):
        return "the file is damaged or not a changeset: write it again (diff -o)"
    if isinstance(exc, (sss.CantOpenError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return "check the path, and that you may read and write there"
    if isinstance(exc, sss.FileInUseError):
        return None
    if isinstance(exc, (PermissionError, sss.ReadOnlyError, sss.PermissionsError)):
        return "check the permissions of the file and of its directory"
    if isinstance(exc, (sss.FullError, sss.DiskIOError)):
        return "check the disk: it may be full or failing"
    if exit_code_for(exc) == ExitCode.USAGE:
        return f"see 'sqlite-session-safe {command} --help'"
    if exit_code_for(exc) == ExitCode.ERROR:
        return "run it again with --debug to see where it failed"
    return None


Handler = Callable[[argparse.Namespace, Output], int]
