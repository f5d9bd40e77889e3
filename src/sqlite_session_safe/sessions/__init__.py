"""The sessions layer: record changes as changesets, transform them, apply
them with a conflict policy.  See DESIGN.md, "Audit and replication".

Importing it registers the callbacks SQLite's session module calls
(``_callbacks``) and sets the streaming chunk size (``_native``).
"""

from __future__ import annotations

from . import _callbacks  # noqa: F401  (registers the extern "Python" callbacks)
from .apply import (
    ABORT,
    OMIT,
    REPLACE,
    Action,
    ApplyOptions,
    ApplyReport,
    Conflict,
    ConflictType,
    OnConflict,
    TableFilter,
    apply,
    apply_stream,
)
from .changeset import UNCHANGED, Change, Changeset, Patchset
from .connection import Connection, connect
from .errors import ChangesetError, ConflictAbort, ConflictPolicyError, SchemaMismatch
from .group import ChangeGroup, Rebaser
from .session import Session, SessionFilter
from .stream import concat_stream, invert_stream, iterate_stream

__all__ = [
    "ABORT",
    "OMIT",
    "REPLACE",
    "Action",
    "ApplyOptions",
    "ApplyReport",
    "Change",
    "ChangeGroup",
    "Changeset",
    "ChangesetError",
    "Conflict",
    "ConflictAbort",
    "ConflictPolicyError",
    "ConflictType",
    "Connection",
    "OnConflict",
    "Patchset",
    "Rebaser",
    "SchemaMismatch",
    "Session",
    "SessionFilter",
    "TableFilter",
    "UNCHANGED",
    "apply",
    "apply_stream",
    "concat_stream",
    "connect",
    "invert_stream",
    "iterate_stream",
]
