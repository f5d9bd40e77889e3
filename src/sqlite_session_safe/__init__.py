"""sqlite-session-safe: SQLite files that several processes and hosts can write
safely, with every write captured as a SQLite session changeset.

Layers, bottom up (an import never points up):

* ``_native``      the cffi module: vendored SQLite + the C helpers in csrc/
* ``binding``      connections, cursors, errors, backup, serialize
* ``sessions``     sessions, changesets, apply with conflict policies
* ``coordination`` the directory lock (PROTOCOL.md), fencing, the coordinated database
* ``faces``        this module, the demo (``__main__``), the command-line tool

This module re-exports the public names (explicitly, so type checkers see
them); see README.md for a tour.
"""

# --- binding layer -------------------------------------------------------------
from .binding import constants as _constants
from .binding import dbconfig as _dbconfig
from .binding.blob import (
    Blob,
)
from .binding.connection import (
    Connection,
    Transaction,
    TransactionKind,
    connect,
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
from .coordination.bundles import (
    Bundle,
    BundleReader,
    ExportReport,
    import_bundle,
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
)
from .coordination.database import (
    open_database as open,
)
from .coordination.db_errors import (
    BackupCheckFailed,
    CommitOutcomeUnknown,
    ConflictError,
    FileInUseError,
    GroupRolledBack,
    NoPrimaryKeyError,
    SchemaChangeInWrite,
    WalOnNetworkFilesystem,
)

# --- coordination layer --------------------------------------------------------
from .coordination.errors import (
    DatabaseDirectoryMissing,
    DatabasePathError,
    DatabasePathIsDirectory,
    EpochMismatch,
    FencingError,
    LockCompromised,
    LockError,
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

# --- sessions layer ------------------------------------------------------------
from .sessions import (
    ABORT,
    OMIT,
    REPLACE,
    UNCHANGED,
    Action,
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
from .sessions import session_method as _session_method

# Connection.session is attached here, at the top of the package, because an
# import never points up: binding/ cannot import sessions/.  Every user gets
# the method, since every import of the package runs this module first.
Connection.session = _session_method  # type: ignore[method-assign]

__version__ = "0.1.0"

__all__ = [
    "AdmissionRecord",
    "Blob",
    "ABORT",
    "AbortError",
    "Action",
    "admission_epoch",
    "advance_epoch",
    "apply",
    "apply_stream",
    "ApplyReport",
    "AuthError",
    "BackupCheckFailed",
    "BackupResult",
    "BindingError",
    "BindingOverflowError",
    "break_stale_lock",
    "Bundle",
    "BundleError",
    "BundleReader",
    "LogPruned",
    "open_bundle",
    "PruneReport",
    "ReplicationTimeout",
    "StreamError",
    "StreamTarget",
    "wait_replicated",
    "BusyError",
    "CantOpenError",
    "Change",
    "ChangeGroup",
    "Changeset",
    "ChangesetError",
    "ClosedError",
    "CommitOutcomeUnknown",
    "compile_options",
    "concat_stream",
    "Conflict",
    "ConflictAbort",
    "ConflictError",
    "ConflictPolicyError",
    "ConflictRow",
    "ConflictType",
    "connect",
    "Connection",
    "ConstraintError",
    "CorruptError",
    "Cursor",
    "Database",
    "DatabaseDirectoryMissing",
    "DatabasePathError",
    "DatabasePathIsDirectory",
    "DataError",
    "DEFAULT_LINGER",
    "DirectoryLock",
    "DiskIOError",
    "EmptyError",
    "ensure_epoch_table",
    "EPOCH_TABLE",
    "EpochMismatch",
    "Error",
    "error_class_for",
    "ExportReport",
    "FencingError",
    "FileInUseError",
    "follow",
    "FormatError",
    "GroupRolledBack",
    "FullError",
    "import_bundle",
    "inspect_lock",
    "InterfaceError",
    "InternalError",
    "InterruptError",
    "invert_stream",
    "iterate_stream",
    "LockCompromised",
    "LockedError",
    "LockError",
    "LockInfo",
    "LockRefused",
    "LockTimeout",
    "LogEntry",
    "MismatchError",
    "MisuseError",
    "NoLFSError",
    "NoMemError",
    "NoPrimaryKeyError",
    "NotADBError",
    "NotFoundError",
    "OMIT",
    "OnConflict",
    "open",
    "OptimisticContext",
    "OwnerFormatError",
    "ProtocolMismatch",
    "OSLock",
    "OwnerRecord",
    "Patchset",
    "PermissionsError",
    "PRIMARY_RESULT_CODES",
    "ProtocolError",
    "RangeError",
    "read_bundle",
    "read_epoch",
    "ReadOnlyError",
    "ReadTx",
    "Rebaser",
    "REPLACE",
    "replicate",
    "ReplicationConflict",
    "ReplicationError",
    "ReplicationReport",
    "Row",
    "SchemaChangeError",
    "SchemaChangeInWrite",
    "SchemaMismatch",
    "Session",
    "SessionFilter",
    "SQLError",
    "sqlite_source_id",
    "file_lock_kind",
    "sqlite_version",
    "sqlite_version_info",
    "SQLiteError",
    "TableFilter",
    "ThreadingError",
    "TooBigError",
    "Transaction",
    "TransactionKind",
    "UNCHANGED",
    "UndoConflict",
    "UndoError",
    "UnknownProtocolVersion",
    "WalOnNetworkFilesystem",
    "WriteResult",
    "WriteTiming",
    "WriteTx",
]

# The SQLite constants for user functions and hooks (authorizer codes, limit
# categories), as the stdlib sqlite3 module exports them.
__all__ += _constants.__all__

# The options of Connection.getconfig()/setconfig() (SQLITE_DBCONFIG_*).
__all__ += _dbconfig.__all__
