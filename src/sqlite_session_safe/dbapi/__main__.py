"""``python -m sqlite_session_safe.dbapi [FILE] [SQL]``: the DB-API module's
SQL shell (see :mod:`sqlite_session_safe.faces.dbapi.shell`)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

# Absolute: this module is also imported as ``sqlite3.__main__`` where the
# package stands in for the stdlib's (tests/_stdlib_sqlite3_runner.py).
from sqlite_session_safe.faces.dbapi.shell import run


def main(*args: Any) -> NoReturn:
    """Run the shell; ``main(argv)`` parses ``argv`` instead of ``sys.argv``.
    The usage line names the package as it was imported (``python -m
    sqlite3`` where this module stands in for the stdlib's)."""
    package = (__spec__.parent if __spec__ is not None else "") or "sqlite_session_safe.dbapi"
    run(args[0] if args else None, sys.modules[package], f"python -m {package}")


if __name__ == "__main__":
    main()
