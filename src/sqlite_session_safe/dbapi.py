"""``import sqlite_session_safe.dbapi as sqlite3``: the DB-API 2.0 module,
a drop-in for the stdlib ``sqlite3`` on this package's SQLite build.

The implementation lives in :mod:`sqlite_session_safe.faces.dbapi`; this
module re-exports its public names.
"""

from __future__ import annotations

from typing import Any

from .faces import dbapi as _impl
from .faces.dbapi import *  # noqa: F403
from .faces.dbapi import __all__ as __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    return getattr(_impl, name)
