"""Exceptions of the sessions layer (all derive from :class:`sss.Error`).

:class:`ChangesetError` is defined in ``binding.errors`` (the binding's
changeset functions raise it) and re-exported here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..binding.errors import ChangesetError, Error, InterfaceError

if TYPE_CHECKING:
    from .policy import Conflict

__all__ = ["ChangesetError", "SchemaMismatch", "ConflictAbort", "ConflictPolicyError"]


class SchemaMismatch(Error):
    """Strict apply: the target database lacks a table of the changeset, or
    the table has fewer columns or a different primary key than the changeset
    records.  Nothing was applied."""

    def __init__(self, message: str, table: str, reason: str) -> None:
        super().__init__(message)
        self.table = table
        #: "missing", "columns" or "primary key".
        self.reason = reason


class ConflictAbort(Error):
    """A conflict was resolved with ABORT: the apply was rolled back.

    ``conflict`` describes the conflict that stopped it."""

    def __init__(self, message: str, conflict: Conflict | None = None) -> None:
        super().__init__(message)
        self.conflict = conflict


class ConflictPolicyError(InterfaceError):
    """An ``on_conflict`` policy is invalid: an unknown action, or REPLACE for
    a conflict type SQLite cannot replace (NOTFOUND, CONSTRAINT, FOREIGN_KEY)."""

    def __init__(self, message: str, *details: Any) -> None:
        super().__init__(message, *details)
