"""The command-line tool ``sqlite-session-safe`` (also ``python -m
sqlite_session_safe.faces.cli``).

Every command prints readable text by default and one JSON object with
``--json`` (its shape is documented in README.md, "Command line").  Errors
are one line on stderr, ``sqlite-session-safe: error: ...``, usually followed
by ``sqlite-session-safe: hint: <what to do next>``, and an exit status from
:class:`~._base.ExitCode`; ``--debug`` also shows the traceback.  With
``--json`` the error is also printed on stdout as ``{"command": ..., "error":
{"type", "message", "hint", "exit_code"}}`` (plus ``"conflicts"``, one object
per row, for a replication or undo conflict).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from collections.abc import Sequence

import sqlite_session_safe as sss

from . import _changes, _copies, _inspect, _query
from ._base import (
    EXIT_CODES_HELP,
    CliError,
    ExitCode,
    Output,
    exit_code_for,
    for_terminal,
    hint_for,
    is_pipe_error,
    pipe_closed,
    prepare_stdout,
)

__all__ = ["main", "build_parser", "ExitCode", "CliError"]

PROG = "sqlite-session-safe"


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps one-line paragraphs (descriptions) to the terminal, keeps
    multi-line ones (the exit code table) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            para if "\n" in para else super(_HelpFormatter, self)._fill_text(para, width, indent)
            for para in text.split("\n\n"))


def _common_options(top: bool) -> argparse.ArgumentParser:
    """Options every command takes, also accepted before the command name.

    The commands' copies (``top=False``) default to SUPPRESS so that a
    command's parser does not overwrite a value given before the command
    name; the top-level copy carries the real defaults.  Two separate
    parsers, because ``parents=`` shares the action objects."""
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--json", action="store_true", default=default(False),
                   help="print one JSON object instead of text (its fields, per command, are "
                        "listed on the project page: https://pypi.org/project/sqlite-session-safe/)")
    g.add_argument("--debug", action="store_true", default=default(False),
                   help="show the traceback of an error")
    g.add_argument("--mode", choices=("auto", "trusted", "network", "wal"), default=default("auto"),
                   help="coordination mode to open databases in (default auto: wal if the file is "
                        "in WAL mode, else trusted; network must be asked for)")
    g.add_argument("--timeout", type=float, default=default(10.0), metavar="SECONDS",
                   help="how long to wait for the write lock (default 10)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is the command reference)."""
    common = _common_options(top=False)
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[_common_options(top=True)],
        formatter_class=_HelpFormatter,
        description="Look at and operate on SQLite databases shared through sqlite-session-safe: "
                    "their audit log, lock, backups, changesets and replicas.",
        epilog=EXIT_CODES_HELP + "\n\nRun '%(prog)s COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {sss.__version__} (SQLite {sss.sqlite_version()})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _inspect.register(sub, common)
    _query.register(sub, common)
    _changes.register(sub, common)
    _copies.register(sub, common)
    for p in sub.choices.values():
        p.epilog = EXIT_CODES_HELP
        p.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool on ``argv`` (default ``sys.argv[1:]``); returns the exit
    status (the console script generated from ``[project.scripts]`` exits
    with it)."""
    prepare_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(args.json)
    try:
        code = int(args.func(args, out))
    except BaseException as e:  # noqa: B036 - every failure becomes an exit status
        if isinstance(e, SystemExit):
            raise
        if is_pipe_error(e):
            return pipe_closed()
        return _report(e, args, out)
    try:
        out.flush()
    except OSError as e:
        if is_pipe_error(e):
            return pipe_closed()
        raise
    return code


def _report(e: BaseException, args: argparse.Namespace, out: Output) -> int:
    """Print a command's failure (one line, a hint, and with --json an error
    document); return its exit status."""
    if args.debug:
        traceback.print_exc()
    code = int(exit_code_for(e))
    message = for_terminal(str(e) or type(e).__name__)
    if code == ExitCode.INTERRUPTED:
        message = "interrupted"
    database = getattr(args, "database", None)
    hint = None if code == ExitCode.INTERRUPTED else hint_for(e, args.command, database)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if hint:
        print(f"{PROG}: hint: {hint}", file=sys.stderr)
    if args.json:
        error: dict[str, object] = {"type": type(e).__name__, "message": message, "hint": hint,
                                    "exit_code": code}
        rows = getattr(e, "rows", None)
        if isinstance(rows, tuple):  # replication/undo conflicts: every conflicting row
            error["conflicts"] = [dataclasses.asdict(r) for r in rows
                                  if dataclasses.is_dataclass(r) and not isinstance(r, type)]
        try:
            out.write(out.dumps({"command": args.command, "error": error}) + "\n")
            out.flush()
        except OSError as pipe:
            if is_pipe_error(pipe):
                pipe_closed()
            else:
                raise
    return code

