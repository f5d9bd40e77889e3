"""``import sqlite_session_safe.aio as aiosqlite``: the asyncio face, a
drop-in for aiosqlite with sessions, real cancellation and the coordinated
database (``await sqlite_session_safe.aio.open(path)``).

The implementation lives in :mod:`sqlite_session_safe.faces.aio`; this module
re-exports its public names.
"""

from __future__ import annotations

from typing import Any

from .faces import aio as _impl
from .faces.aio import *  # noqa: F403
from .faces.aio import __all__ as __all__  # noqa: F401
from .faces.aio import __version__ as __version__


def __getattr__(name: str) -> Any:
    return getattr(_impl, name)
