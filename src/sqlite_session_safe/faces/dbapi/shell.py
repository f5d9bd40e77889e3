"""``python -m sqlite_session_safe.dbapi [FILE] [SQL]``: a small SQL shell on
the DB-API module, the counterpart of the stdlib's ``python -m sqlite3``
(Python 3.12+): with SQL, run it and print the rows; without, read
statements interactively (``code.InteractiveConsole``), each run with
``execute()`` once it is complete (ends with ``;``).  Dot commands:
``.help``, ``.version``, ``.quit``.
"""

from __future__ import annotations

import argparse
import code
import sys
from typing import Any, NoReturn, TextIO

__all__ = ["run"]

PS1 = "sqlite> "
PS2 = "... "


def _print_error(exc: BaseException, stream: TextIO) -> None:
    name = getattr(exc, "sqlite_errorname", None)
    kind = type(exc).__name__ if name is None else f"{type(exc).__name__} ({name})"
    print(f"{kind}: {exc}", file=stream)


def execute(con: Any, sql: str, *, suppress_errors: bool = True) -> None:
    """Run ``sql`` on ``con`` and print each row; an error is printed to
    stderr (or raised when ``suppress_errors`` is false)."""
    try:
        for row in con.execute(sql):
            print(row)
    except Exception as exc:  # the module's errors, and TypeError/ValueError on bad input
        if not suppress_errors:
            raise
        _print_error(exc, sys.stderr)


class Console(code.InteractiveConsole):
    """Reads SQL until a statement is complete, then runs it."""

    def __init__(self, module: Any, con: Any) -> None:
        super().__init__()
        self._module = module
        self._con = con

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        """Run ``source`` if complete; True asks for another line."""
        text = source.strip()
        if text.startswith("."):
            command = text[1:].split()
            self._command(command[0] if command else "")
            return False
        if not self._module.complete_statement(source):
            return True
        execute(self._con, source)
        return False

    def _command(self, name: str) -> None:
        if name in ("quit", "exit"):
            raise SystemExit(0)
        if name == "version":
            print(self._module.sqlite_version)
        elif name == "help":
            print("Enter SQL statements ending with ';' to run them (the rows are printed).\n"
                  ".help     this text\n"
                  ".version  the SQLite version\n"
                  ".quit     leave (also Ctrl-D, .exit)")
        else:
            print(f'unknown command ".{name}"; type ".help" for the commands', file=sys.stderr)


def run(argv: Any, module: Any, prog: str) -> NoReturn:
    """The shell's main program: parse ``argv`` (None: ``sys.argv[1:]``),
    then run the SQL given or read it interactively; exits (SystemExit) with
    0 on success, 1 when the SQL given failed."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Run SQL on a SQLite database with the DB-API module.")
    parser.add_argument("filename", nargs="?", default=":memory:",
                        help="the database to open (default: a transient in-memory database)")
    parser.add_argument("sql", nargs="?", help="SQL to run; without it, an interactive shell starts")
    parser.add_argument("-v", "--version", action="version",
                        version=f"SQLite version {module.sqlite_version}")
    args = parser.parse_args(argv)
    con = module.connect(args.filename, isolation_level=None)
    try:
        if args.sql is not None:
            try:
                execute(con, args.sql, suppress_errors=False)
            except Exception as exc:
                _print_error(exc, sys.stderr)
                raise SystemExit(1) from None
        else:
            where = ("a transient in-memory database" if args.filename == ":memory:"
                     else repr(args.filename))
            banner = (f"SQL shell of {module.__name__}, SQLite {module.sqlite_version}\n"
                      f"Connected to {where}\n"
                      'Statements run once they end with ";". Type ".help" for the commands, '
                      '".quit" or Ctrl-D to leave.')
            saved = getattr(sys, "ps1", None), getattr(sys, "ps2", None)
            sys.ps1, sys.ps2 = PS1, PS2
            try:
                Console(module, con).interact(banner, exitmsg="")
            finally:
                sys.ps1, sys.ps2 = saved
    finally:
        con.close()
    raise SystemExit(0)
