"""The conflict vocabulary of an apply, and the policy that decides each
conflict: :class:`Action`, :class:`ConflictType`, :class:`Conflict`, the
``on_conflict`` forms (:data:`OnConflict`) and :class:`Policy`, their
validated form (also used by coordination's replication and undo).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

from .change import Change
from .errors import ConflictPolicyError

__all__ = [
    "Action",
    "OMIT",
    "REPLACE",
    "ABORT",
    "ConflictType",
    "Conflict",
    "ActionLike",
    "OnConflict",
    "TableFilter",
    "Policy",
]


class Action(IntEnum):
    """What to do about a conflict (SQLite's SQLITE_CHANGESET_* actions)."""

    #: Skip the change (for FOREIGN_KEY: commit despite the violations).
    OMIT = 0
    #: Overwrite the conflicting row (DATA, CONFLICT only).
    REPLACE = 1
    #: Roll the whole apply back and raise :class:`ConflictAbort`.
    ABORT = 2


OMIT = Action.OMIT
REPLACE = Action.REPLACE
ABORT = Action.ABORT


class ConflictType(IntEnum):
    """Why a change could not be applied as is."""

    #: UPDATE/DELETE: the row exists but its values differ from the change's old values.
    DATA = 1
    #: UPDATE/DELETE: no row with the change's primary key.
    NOTFOUND = 2
    #: INSERT: a row with the same primary key exists.
    CONFLICT = 3
    #: A constraint (UNIQUE, NOT NULL, CHECK, foreign key on DELETE) failed.
    CONSTRAINT = 4
    #: At the end: the applied changes leave foreign key violations.
    FOREIGN_KEY = 5


_REPLACEABLE = frozenset({ConflictType.DATA, ConflictType.CONFLICT})


@dataclasses.dataclass(frozen=True)
class Conflict:
    """One conflict, as a conflict callable sees it.

    ``change`` is the change being applied (None for FOREIGN_KEY, which is
    about the whole apply); ``conflicting`` is the target row's current values
    for DATA and CONFLICT, else None; ``fk_conflicts`` is the number of
    foreign key violations for FOREIGN_KEY, else None.
    """

    type: ConflictType
    change: Change | None
    conflicting: tuple[Any, ...] | None = None
    fk_conflicts: int | None = None

    @property
    def table(self) -> str | None:
        """The table of the conflicting change (None for FOREIGN_KEY)."""
        return None if self.change is None else self.change.table

    @property
    def op(self) -> str | None:
        """``"INSERT"``, ``"UPDATE"`` or ``"DELETE"`` (None for FOREIGN_KEY)."""
        return None if self.change is None else self.change.op

    @property
    def old(self) -> tuple[Any, ...] | None:
        """The change's old values (None for an INSERT and for FOREIGN_KEY)."""
        return None if self.change is None else self.change.old

    @property
    def new(self) -> tuple[Any, ...] | None:
        """The change's new values (None for a DELETE and for FOREIGN_KEY)."""
        return None if self.change is None else self.change.new

    def __str__(self) -> str:
        if self.change is None:
            return f"{self.type.name} conflict ({self.fk_conflicts} foreign key violations)"
        c = self.change
        return f"{self.type.name} conflict on {c.op} in {c.table!r} (key {c.key!r})"


ActionLike = Action | int
#: ``on_conflict``: one action, a mapping, or a callable ``(Conflict) -> action``.
OnConflict = ActionLike | Mapping[Any, Any] | Callable[[Conflict], ActionLike] | None
#: ``filter(table_name) -> bool``: whether to apply that table's changes.
TableFilter = Callable[[str], object]


def _action(value: Any, where: str) -> Action:
    try:
        if isinstance(value, bool):
            raise ValueError
        return Action(value)
    except (ValueError, TypeError):
        raise ConflictPolicyError(f"{where}: {value!r} is not an action (sss.OMIT, sss.REPLACE, "
                                  "sss.ABORT)") from None


def _conflict_type(value: Any, where: str) -> ConflictType:
    try:
        if isinstance(value, bool):
            raise ValueError
        return ConflictType(value)
    except (ValueError, TypeError):
        raise ConflictPolicyError(f"{where}: {value!r} is not a conflict type "
                                  "(sss.ConflictType.DATA, NOTFOUND, CONFLICT, CONSTRAINT, "
                                  "FOREIGN_KEY)") from None


def _check_pair(ctype: ConflictType, action: Action, where: str) -> None:
    if action is Action.REPLACE and ctype not in _REPLACEABLE:
        raise ConflictPolicyError(
            f"{where}: REPLACE is not valid for {ctype.name} conflicts (only for DATA and "
            "CONFLICT); SQLite would roll the apply back with SQLITE_MISUSE")


_ALL_TYPES = tuple(ConflictType)
_WHOLE_REPLACE_HINT = ("REPLACE cannot apply to every conflict type: write "
                       "{sss.ConflictType.DATA: sss.REPLACE, sss.ConflictType.CONFLICT: sss.REPLACE}")


class Policy:
    """A validated ``on_conflict``: :meth:`resolve` gives the action for a
    conflict.  Making one raises :class:`ConflictPolicyError` for an invalid
    policy, before anything is applied."""

    def __init__(self, spec: OnConflict) -> None:
        self.callable: Callable[[Conflict], Any] | None = None
        self.by_type: dict[ConflictType, Action] = {}
        self.by_table: dict[str, dict[ConflictType, Action]] = {}
        self.default = Action.ABORT
        if spec is None:
            return
        if isinstance(spec, Mapping):
            for key, value in spec.items():
                if isinstance(key, str):
                    self.by_table[key] = self._table_entry(key, value)
                else:
                    ctype = _conflict_type(key, "on_conflict key")
                    action = _action(value, f"on_conflict[{ctype.name}]")
                    _check_pair(ctype, action, f"on_conflict[{ctype.name}]")
                    self.by_type[ctype] = action
            return
        if callable(spec) and not isinstance(spec, (int, Action)):
            self.callable = spec
            return
        action = _action(spec, "on_conflict")
        if action is Action.REPLACE:
            raise ConflictPolicyError(f"on_conflict=REPLACE: {_WHOLE_REPLACE_HINT}")
        self.default = action

    @staticmethod
    def _table_entry(table: str, value: Any) -> dict[ConflictType, Action]:
        where = f"on_conflict[{table!r}]"
        if isinstance(value, Mapping):
            entry: dict[ConflictType, Action] = {}
            for k, v in value.items():
                ctype = _conflict_type(k, f"{where} key")
                if ctype is ConflictType.FOREIGN_KEY:
                    raise ConflictPolicyError(f"{where}: FOREIGN_KEY conflicts concern the whole "
                                              "apply, not one table: set it at the top level")
                action = _action(v, f"{where}[{ctype.name}]")
                _check_pair(ctype, action, f"{where}[{ctype.name}]")
                entry[ctype] = action
            return entry
        action = _action(value, where)
        if action is Action.REPLACE:
            raise ConflictPolicyError(f"{where}=REPLACE: {_WHOLE_REPLACE_HINT}")
        return {t: action for t in _ALL_TYPES if t is not ConflictType.FOREIGN_KEY}

    def resolve(self, conflict: Conflict) -> Action:
        """The action for ``conflict`` (a callable's answer is checked)."""
        if self.callable is not None:
            result = self.callable(conflict)
            where = f"the on_conflict callable for a {conflict.type.name} conflict"
            action = _action(result, where)
            _check_pair(conflict.type, action, where)
            return action
        table = conflict.table
        if table is not None:
            entry = self.by_table.get(table)
            if entry is not None and conflict.type in entry:
                return entry[conflict.type]
        return self.by_type.get(conflict.type, self.default)
