"""sqlite-session-safe: SQLite files that several processes and hosts can write
safely, with every write captured as a SQLite session changeset.

Layers, bottom up (an import never points up):

* ``_native``      the cffi module: vendored SQLite + the C helpers in csrc/
* ``binding``      connections, cursors, errors, backup, serialize
* ``sessions``     sessions, changesets, apply with conflict policies
* ``coordination`` the directory lock (PROTOCOL.md), fencing, coordinated database
* ``faces``        the command-line tool and the DB-API 2.0 module

This module re-exports the public names; see README.md for a tour.
"""

from .binding.connection import Connection, Transaction, TransactionKind, connect
from .binding.cursor import Cursor, Row
from .binding.errors import *  # noqa: F403  (the exception hierarchy)
from .binding.errors import __all__ as _error_names
from .binding.library import compile_options, sqlite_source_id, sqlite_version, sqlite_version_info

__version__ = "0.1.0"

# --- sessions layer (exports added here) ---------------------------------------
from .binding.connection import Connection as _Connection
from .sessions import *  # noqa: F403,E402
from .sessions import __all__ as _session_names
from .sessions import session_method as _session_method

# Connection.session is attached here, at the top of the package, because an
# import never points up: binding/ cannot import sessions/.  Every user gets
# the method, since every import of the package runs this module first.
_Connection.session = _session_method  # type: ignore[attr-defined]
_session_names = [n for n in _session_names if n != "session_method"]

# --- coordination layer (exports added here) -----------------------------------
from .coordination.audit import LogEntry  # noqa: E402,F401  (exported via _database_names)
from .coordination.backups import BackupResult  # noqa: E402,F401
from .coordination.database import Database, ReadTx, WriteResult, WriteTiming, WriteTx  # noqa: E402,F401
from .coordination.database import open_database as open  # noqa: E402,F401,A001  (sss.open)
from .coordination.db_errors import (  # noqa: E402,F401
    BackupCheckFailed,
    ConflictError,
    NoPrimaryKeyError,
    SchemaChangeInWrite,
    WalOnNetworkFilesystem,
)
from .coordination.errors import (  # noqa: E402,F401  (listed in _coordination_names)
    EpochMismatch,
    FencingError,
    LockCompromised,
    LockError,
    LockTimeout,
)
from .coordination.optimistic import OptimisticContext  # noqa: E402,F401

_database_names = [
    "open", "Database", "ReadTx", "WriteTx", "WriteResult", "WriteTiming", "LogEntry",
    "BackupResult", "OptimisticContext", "ConflictError", "NoPrimaryKeyError",
    "SchemaChangeInWrite", "WalOnNetworkFilesystem", "BackupCheckFailed",
]  # the lock's names (LockCompromised, LockTimeout, ...) are in _coordination_names below
from .coordination.errors import (  # noqa: E402
    LockRefused,
    OwnerFormatError,
    UnknownProtocolVersion,
)
from .coordination.fencing import EPOCH_TABLE, advance_epoch, ensure_epoch_table, read_epoch  # noqa: E402
from .coordination.lock import DirectoryLock, LockInfo, break_stale_lock, inspect_lock  # noqa: E402
from .coordination.owner import OwnerRecord  # noqa: E402

_coordination_names = [
    "DirectoryLock",
    "EPOCH_TABLE",
    "EpochMismatch",
    "FencingError",
    "LockCompromised",
    "LockError",
    "LockInfo",
    "LockRefused",
    "LockTimeout",
    "OwnerFormatError",
    "OwnerRecord",
    "UnknownProtocolVersion",
    "advance_epoch",
    "break_stale_lock",
    "ensure_epoch_table",
    "inspect_lock",
    "read_epoch",
]

__all__ = [
    "Connection",
    "Cursor",
    "Row",
    "Transaction",
    "TransactionKind",
    "compile_options",
    "connect",
    "sqlite_source_id",
    "sqlite_version",
    "sqlite_version_info",
    *_error_names,
    *_session_names,
    *_coordination_names,
    *_database_names,
]
