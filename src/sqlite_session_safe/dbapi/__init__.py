"""``import sqlite_session_safe.dbapi as sqlite3``: the DB-API 2.0 module,
a drop-in for the stdlib ``sqlite3`` on this package's SQLite build.

The implementation lives in :mod:`sqlite_session_safe.faces.dbapi`.  Like the
stdlib package, this one re-exports the names of its ``dbapi2`` submodule
(``from sqlite3 import dbapi2`` works the same on ours), and
``python -m sqlite_session_safe.dbapi`` is its SQL shell.
"""

from __future__ import annotations

from typing import Any

from ..faces import dbapi as _impl
from ..faces.dbapi import *  # noqa: F403
from ..faces.dbapi import __all__ as __all__  # noqa: F401
from . import dbapi2 as dbapi2


def __getattr__(name: str) -> Any:
    return _impl.module_attribute(__name__, name)
