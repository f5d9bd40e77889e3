"""The sessions layer: record changes as changesets, transform them, apply
them with a conflict policy.  See DESIGN.md, "Audit and replication".

The C plumbing (the session extension's functions, the callbacks SQLite's
session module calls, the streaming chunk size) is the binding's:
``binding/session_handle.py``, ``changegroup.py`` and ``changeset_*.py``.
"""

from __future__ import annotations

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
