"""What an apply did: :class:`ApplyReport`."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

from .policy import ConflictType

if TYPE_CHECKING:  # a report holds a changeset; changeset.py imports this module
    from .changeset import ChangesetBase

__all__ = ["ApplyReport"]


@dataclasses.dataclass
class ApplyReport:
    """What an apply did, per ``(table, op)``.

    * ``changes``: the changes the changeset holds;
    * ``applied``: changes applied (those whose conflict was REPLACEd included,
      and with ``ignore_noop`` those that were already in place);
    * ``omitted``: changes skipped by a conflict resolved with OMIT;
    * ``replaced``: changes applied by REPLACE over a conflicting row;
    * ``skipped``: changes of tables excluded by ``tables`` / ``filter``, or
      (``strict=False``) of tables the target lacks or has a different shape of;
    * ``conflicts``: conflicts met, per :class:`ConflictType`;
    * ``mismatched``: table -> reason, the tables skipped for their schema
      (only with ``strict=False``);
    * ``rejected``: with ``collect_rejected=True``, the omitted changes as a
      changeset (or patchset), e.g. to keep or retry them; else None;
    * ``rebase``: with ``rebase=True``, SQLite's rebase data for a
      :class:`Rebaser` (b"" when there was nothing to rebase); else None.
    """

    changes: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    applied: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    omitted: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    replaced: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    conflicts: Counter[ConflictType] = dataclasses.field(default_factory=Counter)
    mismatched: dict[str, str] = dataclasses.field(default_factory=dict)
    rejected: ChangesetBase | None = None
    rebase: bytes | None = None

    @property
    def total_applied(self) -> int:
        """All applied changes, over every table and operation."""
        return sum(self.applied.values())

    @property
    def total_omitted(self) -> int:
        """All omitted changes, over every table and operation."""
        return sum(self.omitted.values())

    def by_table(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{table: {op: {"changes": n, "applied": n, ...}}}`` for display."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name in ("changes", "applied", "omitted", "replaced", "skipped"):
            for (table, op), n in getattr(self, name).items():
                out.setdefault(table, {}).setdefault(op, {})[name] = n
        return out
