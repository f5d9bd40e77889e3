"""A conflict policy that also writes down every conflicting row.

Replication and undo replay changesets onto rows that may have moved on.
Their default is to refuse, with a report of *every* conflicting row, not only
the first: so the default policy here OMITs each conflict while recording it,
and the caller raises afterwards, which rolls its whole transaction back.
Any other policy (as ``Changeset.apply`` takes it) decides as usual and is
recorded too.
"""

from __future__ import annotations

from ..sessions.policy import Action, Conflict, OnConflict, Policy
from .log_errors import ConflictRow

__all__ = ["ConflictRecorder"]


class ConflictRecorder:
    """Callable ``on_conflict`` for :func:`sss.apply` that records rows.

    ``ConflictRecorder(None)`` (the default policy) OMITs and records every
    conflict: :attr:`refuse` is then True and the caller must raise (rolling
    back) when :meth:`take` returns rows.  Any other ``on_conflict`` is
    validated here, before anything is applied (``ConflictPolicyError``).
    """

    def __init__(self, on_conflict: OnConflict = None) -> None:
        #: True when the policy is the default: any conflict refuses the apply.
        self.refuse = on_conflict is None
        self._policy = Policy(on_conflict)
        self._rows: list[ConflictRow] = []

    def __call__(self, conflict: Conflict) -> Action:
        action = Action.OMIT if self.refuse else self._policy.resolve(conflict)
        change = conflict.change
        if change is None:
            row = ConflictRow(None, None, conflict.type.name, (), None, None,
                              "ABORT" if self.refuse else action.name)
        else:
            row = ConflictRow(
                change.table, change.op, conflict.type.name, change.key,
                None if change.op == "INSERT" else change.old,
                conflict.conflicting, "ABORT" if self.refuse else action.name,
            )
        self._rows.append(row)
        return action

    def take(self) -> tuple[ConflictRow, ...]:
        """The rows recorded since the last take(), and forget them."""
        rows, self._rows = tuple(self._rows), []
        return rows
