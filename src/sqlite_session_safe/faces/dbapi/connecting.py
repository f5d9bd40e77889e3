"""``connect()``: the DB-API module's entry point, which opens either a
plain :class:`~.connection.Connection` or, with ``coordinated=True``, a
:class:`~.coordinated.CoordinatedConnection`.  Its own module because it
needs both, and the coordinated connection is built on the plain one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .connection import LEGACY_TRANSACTION_CONTROL, Connection, keyword_only_soon
from .coordinated import CoordinatedConnection
from .errors import NotSupportedError, ProgrammingError, warn_caller

__all__ = ["connect"]


def connect(
    database: str | bytes | os.PathLike[str],
    *args: Any,
    coordinated: bool = False,
    mode: str = "trusted",
    label: str | None = None,
    **kwargs: Any,
) -> Any:
    """Open a DB-API connection to ``database``, like ``sqlite3.connect``.

    The stdlib's arguments, in its order: ``timeout=5.0``,
    ``detect_types=0``, ``isolation_level=""``, ``check_same_thread=True``,
    ``factory=Connection``, ``cached_statements=128``, ``uri=False``, and
    keyword-only ``autocommit=LEGACY_TRANSACTION_CONTROL``.  As in the
    stdlib, ``factory`` (a :class:`Connection` subclass) is called with the
    arguments exactly as given.

    ``coordinated=True``: open through the coordinated ``sss.open(database,
    mode=mode, **options)`` instead; every write transaction is admitted
    through the outer lock and recorded in the audit log under ``label``
    (see :mod:`sqlite_session_safe.faces.dbapi.coordinated`).
    """
    if args and sys.version_info >= (3, 13):
        warn_caller(keyword_only_soon("sqlite3.connect()"))
    if coordinated:
        return _connect_coordinated(database, *args, mode=mode, label=label, **kwargs)
    if mode != "trusted" or label is not None:
        raise ProgrammingError("mode and label apply to coordinated=True connections only")
    factory = args[4] if len(args) > 4 else kwargs.get("factory")
    cls = Connection if factory is None else factory
    return cls(database, *args, **kwargs)


def _connect_coordinated(
    database: str | bytes | os.PathLike[str],
    timeout: float = 5.0,
    detect_types: int = 0,
    isolation_level: str | None = "",
    check_same_thread: bool = True,
    factory: type[Connection] | None = None,
    cached_statements: int = 128,
    uri: bool = False,
    *,
    autocommit: int | bool = LEGACY_TRANSACTION_CONTROL,
    mode: str,
    label: str | None,
    **options: Any,
) -> Any:
    if factory is not None or uri:
        raise NotSupportedError("coordinated=True takes no factory and no uri")
    return CoordinatedConnection(
        os.fsdecode(database), timeout=timeout, detect_types=detect_types,
        isolation_level=isolation_level, check_same_thread=check_same_thread,
        autocommit=autocommit, mode=mode, label=label,
        **options,
    )
