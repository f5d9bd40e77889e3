"""What every command of the command-line tool shares: exit codes, the
mapping from exceptions to them, output (human or ``--json``), opening a
database without creating it, conflict policies by name, confirmation and the
progress bar."""

from __future__ import annotations

import argparse
import enum
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import sqlite_session_safe as sss

from ...binding.errors import ClosedError, InterfaceError
from ...coordination.audit import LOG_TABLE

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
]


class ExitCode(enum.IntEnum):
    """The tool's exit statuses (documented in ``--help`` and README.md)."""

    OK = 0
    #: ``check`` found a problem; an apply/replicate/undo met a conflict its
    #: policy aborts on; replication cannot go on (a gap, a cursor ahead of
    #: the source, another source); a backup failed its integrity check;
    #: the user declined a confirmation.
    FAILED = 1
    #: Bad command line (argparse's own status).
    USAGE = 2
    #: The database is locked or busy: the admission wait ran out, the lock
    #: is held by a live process, or is in a state never broken automatically.
    LOCKED = 3
    #: A file is missing, not a database, corrupt, or not a valid changeset
    #: or bundle; or a changeset does not fit the target's schema.
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
       cursor ahead, other source), backup check failed, or not confirmed
  2    usage error (bad command line)
  3    lock held or database busy (admission timed out, live lock, refused lock state)
  4    not found or bad input (missing file, not a database, corrupt database,
       changeset or bundle, changeset that does not fit the target's schema)
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


class Output:
    """Where a command's result goes: JSON on stdout (``--json``), or
    readable lines on stdout; notes and progress on stderr."""

    def __init__(self, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def line(self, text: str = "") -> None:
        """A human-readable line (nothing with ``--json``)."""
        if not self.json:
            print(text, file=self.out)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, always on stderr."""
        print(text, file=self.err)

    def document(self, doc: dict[str, Any]) -> None:
        """The command's JSON result (only with ``--json``): one object,
        one line, so ``--follow`` streams JSON lines."""
        if self.json:
            print(json.dumps(jsonable(doc), ensure_ascii=False, allow_nan=False), file=self.out)
            self.out.flush()

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


def _detect_mode(path: str) -> str:
    """``wal`` when the file is in WAL mode, else ``trusted`` (network mode
    cannot be told from the file: ask for it with ``--mode network``)."""
    with raw_readonly(path) as con:
        row = con.execute("PRAGMA journal_mode").fetchone()
    return "wal" if row is not None and str(row[0]).lower() == "wal" else "trusted"


@contextmanager
def open_db(args: argparse.Namespace, path: str, create: bool = False) -> Iterator[sss.Database]:
    """``sss.open`` on an existing database file (``create`` allows a new
    one), in ``--mode`` (``auto``: the mode the file is in), waiting at most
    ``--timeout`` seconds for admission."""
    if not create or os.path.exists(path):
        require_file(path)
    mode = args.mode
    if mode == "auto":
        mode = _detect_mode(path) if os.path.exists(path) else "trusted"
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


Handler = Callable[[argparse.Namespace, Output], int]
