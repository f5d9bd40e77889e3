"""The sessions layer: record changes as changesets, transform them, apply
them with a conflict policy.  See DESIGN.md, "Audit and replication".

Importing it registers the callbacks SQLite's session module calls
(``_callbacks``) and sets the streaming chunk size (``_native``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from .errors import ChangesetError, ConflictAbort, ConflictPolicyError, SchemaMismatch
from .group import ChangeGroup, Rebaser
from .session import Session, SessionFilter
from .stream import concat_stream, invert_stream, iterate_stream

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..binding.connection import Connection

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
    "invert_stream",
    "iterate_stream",
    "session_method",
]


def session_method(
    self: Connection,
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
