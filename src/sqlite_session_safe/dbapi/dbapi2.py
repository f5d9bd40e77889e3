"""``sqlite_session_safe.dbapi.dbapi2``: the same names as
:mod:`sqlite_session_safe.dbapi`, where the stdlib's ``sqlite3.dbapi2`` keeps
them (code written as ``from sqlite3 import dbapi2 as sqlite`` imports this)."""

from __future__ import annotations

from typing import Any

from ..faces import dbapi as _impl
from ..faces.dbapi import *  # noqa: F403
from ..faces.dbapi import __all__ as __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    return _impl.module_attribute(__name__, name)
