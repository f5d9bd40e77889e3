"""The connection :func:`sqlite_session_safe.connect` opens: the binding's
:class:`~sqlite_session_safe.binding.connection.Connection` plus
:meth:`Connection.session`.

Why a subclass: a session is the sessions layer's object, and the binding
below it cannot know about it (an import never points up).  So the binding's
class stays bare, and this layer adds the method the plain way, by
inheritance.  Every connection the package opens is of this class:
``sss.connect``'s, the coordination layer's (imported from here) and the
DB-API module's (a subclass), so ``sss.Connection`` is what they all are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..binding.connection import Connection as BindingConnection
from .session import Session, SessionFilter

__all__ = ["Connection", "connect"]


class Connection(BindingConnection):
    __doc__ = BindingConnection.__doc__

    def session(
        self,
        tables: Iterable[str] | None = None,
        filter: SessionFilter | None = None,
        indirect: bool = False,
        rowid: bool = False,
        **options: Any,
    ) -> Session:
        """Start recording this connection's changes: a :class:`Session`.

        ``tables``: names to record (None: all, including tables created later);
        ``filter(name) -> bool`` chooses among all tables; ``indirect`` marks the
        changes indirect; ``rowid`` also records tables without a primary key.
        Other options (``db``, ``track_size``, ``skip_reserved``) go to :class:`Session`.
        """
        return Session(self, tables=tables, filter=filter, indirect=indirect, rowid=rowid, **options)


def connect(
    path: str | os.PathLike[str] | bytes,
    readonly: bool = False,
    uri: bool = False,
    vfs: str | None = None,
    timeout: float = 5.0,
    cached_statements: int = 128,
) -> Connection:
    """Open a connection to the database at ``path`` (created if missing unless
    ``readonly``).  ``uri=True`` accepts ``file:`` URIs with query parameters;
    ``vfs`` names a SQLite VFS; ``timeout`` is how long to wait on another
    connection's lock, in seconds.

    Calls ``sqlite3_open_v2``."""
    return Connection(path, readonly=readonly, uri=uri, vfs=vfs, timeout=timeout,
                      cached_statements=cached_statements)
