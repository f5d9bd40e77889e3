"""Exceptions of the sessions layer (all derive from :class:`sss.Error`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..binding.errors import Error, InterfaceError

if TYPE_CHECKING:
    from .policy import Conflict

__all__ = ["ChangesetError", "SchemaMismatch", "ConflictAbort", "ConflictPolicyError"]


class ChangesetError(Error):
    """A changeset or patchset is corrupt or malformed, or cannot be used the
    way it was asked to (e.g. inverting a patchset)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        #: The SQLite result code behind it, when SQLite reported it.
        self.code = code


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
