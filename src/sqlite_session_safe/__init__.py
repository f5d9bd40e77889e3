"""sqlite-session-safe: SQLite files that several processes and hosts can write
safely, with every write captured as a SQLite session changeset.

Start here (``import sqlite_session_safe as sss``); these dozen names are
most of what a program uses:

* Plain SQLite, on the package's own build: :func:`connect` gives a
  :class:`Connection`; ``con.execute(sql, params)`` gives a :class:`Cursor`
  (rows are tuples); ``with con.transaction():`` commits or rolls back.
* Changes as data: ``con.session()`` gives a :class:`Session`, whose
  ``changeset()`` is a :class:`Changeset` (bytes) of :class:`Change` items;
  :func:`apply` (or ``changeset.apply(con)``) replays it elsewhere.
* One file, many writers: :func:`open_database` (also ``sss.open``) gives a
  :class:`Database`; ``db.write(fn)`` runs ``fn(tx)`` on a :class:`WriteTx`
  and returns a :class:`WriteResult` (its changeset and audit log position);
  ``db.read()`` is a snapshot (a :class:`ReadTx`); :func:`replicate` brings
  a replica up to date from the audit log.
* :class:`Error` is the base class of every exception the package raises.

The rest, grouped as ``__all__`` is below: the binding's other objects and
the SQLite library's details; sessions (conflict policies, change groups,
rebasing, streams); the coordinated database's results and copies;
replication, bundles and log retention; locks and fencing (PROTOCOL.md);
exceptions, by layer; the ``SQLITE_*`` constants.  The DB-API module is
:mod:`sqlite_session_safe.dbapi` (a drop-in for ``sqlite3``), the asyncio
one :mod:`sqlite_session_safe.aio` (a drop-in for aiosqlite).

The names built on "Conflict" are all about applying a changeset to rows
that differ from what it expects: a policy (:data:`OnConflict`) decides each
:class:`Conflict` (of a :class:`ConflictType`) with an :class:`Action`;
:class:`ConflictAbort` is a policy's ABORT (:class:`ReplicationConflict` and
:class:`UndoConflict` for replication and undo, each listing
:class:`ConflictRow` rows); :class:`ConflictPolicyError` is an invalid
policy.  An optimistic write that gave up is :class:`OptimisticWriteFailed`.

Names kept for compatibility: ``open`` (= :func:`open_database`; left out of
``__all__`` so that ``from sqlite_session_safe import *`` does not hide the
builtin ``open``); ``ConflictError`` (= :class:`OptimisticWriteFailed`: an
optimistic write gave up, nothing to do with changeset conflicts);
``ProtocolError`` (= :class:`SQLiteProtocolError`: SQLite's
``SQLITE_PROTOCOL``, not this package's lock protocol, whose errors are
:class:`LockError` subclasses).

Layers, bottom up (an import never points up):

* ``_native``      the cffi module: vendored SQLite + the C helpers in csrc/
* ``binding``      connections, cursors, errors, backup, serialize
* ``sessions``     sessions, changesets, apply with conflict policies
* ``coordination`` the lock protocols (PROTOCOL.md), fencing, the coordinated
  database, replication, bundles, undo, retention
* ``faces``        this module, the demo (``__main__``), the command-line
  tool, the DB-API and asyncio modules

This module re-exports the public names (explicitly, so type checkers see
them).  The documentation (docs/) has a guide per layer and the reference.
"""

# The imports are sorted by module (ruff's isort); __all__ below is the
# table of contents.
from .binding import constants as _constants
from .binding import dbconfig as _dbconfig
from .binding.blob import (
    Blob,
)
from .binding.connection import (
    Transaction,
    TransactionKind,
)
from .binding.constants import *  # noqa: F403  (SQLITE_DENY, SQLITE_LIMIT_*, ...: see __all__)
from .binding.cursor import (
    Cursor,
    Row,
)
from .binding.dbconfig import *  # noqa: F403  (SQLITE_DBCONFIG_*: see __all__)
from .binding.errors import (
    PRIMARY_RESULT_CODES,
    AbortError,
    AuthError,
    BindingError,
    BindingOverflowError,
    BusyError,
    CantOpenError,
    ClosedError,
    ConstraintError,
    CorruptError,
    DataError,
    DiskIOError,
    EmptyError,
    Error,
    FormatError,
    FullError,
    InterfaceError,
    InternalError,
    InterruptError,
    LockedError,
    MismatchError,
    MisuseError,
    NoLFSError,
    NoMemError,
    NotADBError,
    NotFoundError,
    PermissionsError,
    ProtocolError,
    RangeError,
    ReadOnlyError,
    SchemaChangeError,
    SQLError,
    SQLiteError,
    ThreadingError,
    TooBigError,
    error_class_for,
)
from .binding.library import (
    compile_options,
    file_lock_kind,
    sqlite_source_id,
    sqlite_version,
    sqlite_version_info,
)
from .coordination.admission import (
    OSLock,
)
from .coordination.audit import (
    LogEntry,
)
from .coordination.backups import (
    BackupResult,
)
from .coordination.bundle_import import (
    import_bundle,
)
from .coordination.bundles import (
    Bundle,
    BundleReader,
    ExportReport,
    open_bundle,
    read_bundle,
)
from .coordination.database import (
    DEFAULT_LINGER,
    Database,
    ReadTx,
    WriteResult,
    WriteTiming,
    WriteTx,
    open_database,
)
from .coordination.db_errors import (
    BackupCheckFailed,
    CommitOutcomeUnknown,
    ConflictError,
    FileInUseError,
    GroupRolledBack,
    NoPrimaryKeyError,
    OptimisticWriteFailed,
    SchemaChangeInWrite,
    WalOnNetworkFilesystem,
)
from .coordination.errors import (
    DatabaseDirectoryMissing,
    DatabasePathError,
    DatabasePathIsDirectory,
    EpochMismatch,
    FencingError,
    LockCompromised,
    LockError,
    LockPathError,
    LockRefused,
    LockTimeout,
    OwnerFormatError,
    ProtocolMismatch,
    UnknownProtocolVersion,
)
from .coordination.fencing import (
    EPOCH_TABLE,
    admission_epoch,
    advance_epoch,
    ensure_epoch_table,
    read_epoch,
)
from .coordination.jetstream import (
    StreamTarget,
    wait_replicated,
)
from .coordination.lock import (
    DirectoryLock,
    LockInfo,
    break_stale_lock,
    inspect_lock,
)
from .coordination.log_errors import (
    BundleError,
    ConflictRow,
    LogPruned,
    ReplicationConflict,
    ReplicationError,
    ReplicationTimeout,
    StreamError,
    UndoConflict,
    UndoError,
)
from .coordination.optimistic import (
    OptimisticContext,
)
from .coordination.owner import (
    AdmissionRecord,
    OwnerRecord,
)
from .coordination.replication import (
    ReplicationReport,
    follow,
    replicate,
)
from .coordination.retention import (
    PruneReport,
)
from .sessions import (
    ABORT,
    OMIT,
    REPLACE,
    UNCHANGED,
    Action,
    ApplyOptions,
    ApplyReport,
    Change,
    ChangeGroup,
    Changeset,
    ChangesetError,
    Conflict,
    ConflictAbort,
    ConflictPolicyError,
    ConflictType,
    OnConflict,
    Patchset,
    Rebaser,
    SchemaMismatch,
    Session,
    SessionFilter,
    TableFilter,
    apply,
    apply_stream,
    concat_stream,
    invert_stream,
    iterate_stream,
)
from .sessions.connection import (  # the binding's Connection with session()
    Connection,
    connect,
)

# Clearer names for confusing ones; the old names stay (same objects).
# OptimisticWriteFailed and its older name ConflictError are imported above.
# ProtocolError: SQLite's SQLITE_PROTOCOL, not this package's lock protocol
# (PROTOCOL.md), whose errors are LockError subclasses.
SQLiteProtocolError = ProtocolError
# sss.open(path) is open_database; it stays out of __all__ so that
# "from sqlite_session_safe import *" keeps the builtin open.
open = open_database

__version__ = "0.1.0"

__all__ = [
    # -- start here -----------------------------------------------------------
    "connect",
    "Connection",
    "Cursor",
    "Session",
    "Changeset",
    "Change",
    "apply",
    "open_database",
    "Database",
    "WriteTx",
    "WriteResult",
    "ReadTx",
    "replicate",
    "Error",
    # -- binding: the rest ------------------------------------------------------
    "Transaction",
    "TransactionKind",
    "Row",
    "Blob",
    "sqlite_version",
    "sqlite_version_info",
    "sqlite_source_id",
    "compile_options",
    "file_lock_kind",
    # -- sessions: the rest -----------------------------------------------------
    "Patchset",
    "UNCHANGED",
    "SessionFilter",
    "TableFilter",
    "apply_stream",
    "ApplyOptions",
    "ApplyReport",
    # a conflict policy (``on_conflict=``) and what it decides
    "OnConflict",
    "Conflict",
    "ConflictType",
    "Action",
    "OMIT",
    "REPLACE",
    "ABORT",
    # combining, rebasing, streaming
    "ChangeGroup",
    "Rebaser",
    "concat_stream",
    "invert_stream",
    "iterate_stream",
    # -- coordinated database: the rest ----------------------------------------------
    "WriteTiming",
    "DEFAULT_LINGER",
    "OptimisticContext",
    "LogEntry",
    "BackupResult",
    # -- replication, bundles, retention ------------------------------------------------
    "follow",
    "ReplicationReport",
    "ConflictRow",
    "StreamTarget",
    "wait_replicated",
    "ExportReport",
    "Bundle",
    "BundleReader",
    "open_bundle",
    "read_bundle",
    "import_bundle",
    "PruneReport",
    # -- locks (PROTOCOL.md) and fencing -----------------------------------------------
    "DirectoryLock",
    "OSLock",
    "LockInfo",
    "inspect_lock",
    "break_stale_lock",
    "OwnerRecord",
    "AdmissionRecord",
    "EPOCH_TABLE",
    "ensure_epoch_table",
    "read_epoch",
    "advance_epoch",
    "admission_epoch",
    # -- exceptions ------------------------------------------------------------------
    # misuse of the API, and values
    "InterfaceError",
    "ClosedError",
    "ThreadingError",
    "BindingError",
    "BindingOverflowError",
    "DataError",
    # SQLite's errors: one class per primary result code
    "SQLiteError",
    "error_class_for",
    "PRIMARY_RESULT_CODES",
    "SQLError",
    "InternalError",
    "PermissionsError",
    "AbortError",
    "BusyError",
    "LockedError",
    "NoMemError",
    "ReadOnlyError",
    "InterruptError",
    "DiskIOError",
    "CorruptError",
    "NotFoundError",
    "FullError",
    "CantOpenError",
    "ProtocolError",
    "SQLiteProtocolError",
    "EmptyError",
    "SchemaChangeError",
    "TooBigError",
    "ConstraintError",
    "MismatchError",
    "MisuseError",
    "NoLFSError",
    "AuthError",
    "FormatError",
    "RangeError",
    "NotADBError",
    # sessions: changesets and applying them
    "ChangesetError",
    "SchemaMismatch",
    "ConflictAbort",
    "ConflictPolicyError",
    # coordinated database: writes, the audit log, copies
    "OptimisticWriteFailed",
    "ConflictError",
    "CommitOutcomeUnknown",
    "GroupRolledBack",
    "NoPrimaryKeyError",
    "SchemaChangeInWrite",
    "WalOnNetworkFilesystem",
    "BackupCheckFailed",
    "FileInUseError",
    "DatabasePathError",
    "DatabaseDirectoryMissing",
    "DatabasePathIsDirectory",
    # locks and fencing
    "LockError",
    "LockTimeout",
    "LockCompromised",
    "LockRefused",
    "LockPathError",
    "ProtocolMismatch",
    "OwnerFormatError",
    "UnknownProtocolVersion",
    "FencingError",
    "EpochMismatch",
    # replication, bundles, undo
    "ReplicationError",
    "ReplicationConflict",
    "ReplicationTimeout",
    "StreamError",
    "LogPruned",
    "BundleError",
    "UndoError",
    "UndoConflict",
]

# The SQLite constants for user functions and hooks (authorizer codes, limit
# categories), as the stdlib sqlite3 module exports them.
__all__ += _constants.__all__

# The options of Connection.getconfig()/setconfig() (SQLITE_DBCONFIG_*).
__all__ += _dbconfig.__all__
