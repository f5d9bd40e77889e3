"""A change: one row inserted, updated or deleted, as changesets hold it.

Its own module, below both :mod:`.changeset` (which yields changes) and the
apply machinery (whose conflicts carry the change), so neither imports the
other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ..binding.constants import SQLITE_DELETE, SQLITE_INSERT, SQLITE_UPDATE
from ..binding.errors import InterfaceError

__all__ = ["UNCHANGED", "OPS", "OP_CODES", "Change"]

#: The value of a column a change leaves undefined: an UPDATE's unchanged
#: columns, a patchset's omitted old values.  It is Python's ``Ellipsis``
#: (``...``), a singleton no SQL value can be, so ``value is sss.UNCHANGED``
#: tells it apart from NULL (``None``).  Using a builtin singleton lets the C
#: walker produce it directly (marshal can write Ellipsis), with no per-value
#: Python pass over every change.
UNCHANGED: Any = ...

#: The operations, as :attr:`Change.op` spells them.
OPS = ("INSERT", "UPDATE", "DELETE")
#: Operation name -> SQLite's code for it (SQLITE_INSERT, ...).
OP_CODES = {"INSERT": SQLITE_INSERT, "UPDATE": SQLITE_UPDATE, "DELETE": SQLITE_DELETE}

_tuple_new = tuple.__new__


class _ChangeFields(NamedTuple):
    table: str
    op: str
    old: tuple[Any, ...] | None
    new: tuple[Any, ...] | None
    pk: tuple[int, ...]
    indirect: bool


class Change(_ChangeFields):
    """One change: a row inserted, updated or deleted in one table.

    A named tuple ``(table, op, old, new, pk, indirect)``:

    * ``table``: the table's name;
    * ``op``: ``"INSERT"``, ``"UPDATE"`` or ``"DELETE"``;
    * ``old``: the row's values before the change (a tuple, one per column), or
      None for an INSERT;
    * ``new``: the values after the change, or None for a DELETE;
    * ``pk``: per column, 0 when it is not part of the primary key, else its
      1-based position in the key (SQLite's record of the table's key);
    * ``indirect``: True when the change was made by a trigger or foreign key
      action (or in a session marked indirect).

    In ``old`` / ``new`` a column the change does not define is
    :data:`UNCHANGED`: an UPDATE records old and new values only for the
    columns it changed (and the old primary key), a patchset records even less.
    A Change owns its values: it stays valid after the iteration moves on.
    (A NamedTuple base gives the fields C-level accessors: iteration reads
    them once per change.)
    """

    __slots__ = ()

    def __new__(
        cls,
        table: str,
        op: str,
        old: Sequence[Any] | None,
        new: Sequence[Any] | None,
        pk: Sequence[int],
        indirect: bool = False,
    ) -> Change:
        """Make a change by hand (e.g. for :meth:`ChangeGroup.add_change`)."""
        if not isinstance(table, str) or not table or "\0" in table:
            raise InterfaceError(f"table must be a non-empty str without NUL, not {table!r}")
        if op not in OP_CODES:
            raise InterfaceError(f"op must be one of {', '.join(OPS)}, not {op!r}")
        pk_t = tuple(int(x) for x in pk)
        if any(not 0 <= x <= 255 for x in pk_t):
            raise InterfaceError("pk entries must be between 0 and 255")
        old_t = None if old is None else tuple(old)
        new_t = None if new is None else tuple(new)
        if (old_t is None) != (op == "INSERT"):
            raise InterfaceError(f"{op} change: old must be {'None' if op == 'INSERT' else 'a tuple'}")
        if (new_t is None) != (op == "DELETE"):
            raise InterfaceError(f"{op} change: new must be {'None' if op == 'DELETE' else 'a tuple'}")
        for values in (old_t, new_t):
            if values is not None and len(values) != len(pk_t):
                raise InterfaceError(f"{len(values)} values for a table of {len(pk_t)} columns (pk)")
        return _tuple_new(cls, (table, op, old_t, new_t, pk_t, bool(indirect)))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return (f"Change(table={self[0]!r}, op={self[1]!r}, old={self[2]!r}, new={self[3]!r}, "
                f"pk={self[4]!r}, indirect={self[5]!r})")

    @property
    def pk_columns(self) -> tuple[int, ...]:
        """Indexes of the primary key columns, in table order."""
        return tuple(i for i, flag in enumerate(self[4]) if flag)

    @property
    def key(self) -> tuple[Any, ...]:
        """The primary key values of the row this change is about."""
        row = self[3] if self[1] == "INSERT" else self[2]
        assert row is not None  # INSERT has new values, UPDATE/DELETE old ones
        return tuple(row[i] for i, flag in enumerate(self[4]) if flag)
