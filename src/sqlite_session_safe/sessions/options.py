"""The options of an apply, as one value: :class:`ApplyOptions`.

:func:`~sqlite_session_safe.apply`, :meth:`Changeset.apply` and
:func:`~sqlite_session_safe.apply_stream` take either an ``ApplyOptions`` or
the same names as keywords (``cs.apply(con, on_conflict=sss.OMIT)``), which
build one; the options are documented here, once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ..binding.errors import InterfaceError
from .policy import OnConflict, Policy, TableFilter

__all__ = ["ApplyOptions", "ApplyKeywords"]


@dataclasses.dataclass(frozen=True)
class ApplyOptions:
    """How to apply a changeset or patchset (all optional).

    Making one checks ``on_conflict`` and ``filter``: an invalid policy raises
    :class:`ConflictPolicyError`, a ``filter`` that is not callable
    :class:`InterfaceError`, before anything is applied.

    Attributes:
        on_conflict: ``sss.OMIT`` or ``sss.ABORT`` for every conflict; a dict
            with :class:`ConflictType` keys (per type) and/or table-name keys
            (an action, or a per-type dict, for that table); or a callable
            ``(Conflict) -> action``.  Unlisted conflicts ABORT (the default).
            REPLACE is only valid for DATA and CONFLICT: other pairings raise
            :class:`ConflictPolicyError` before anything is applied (a callable
            returning one raises it after the apply was rolled back).
        tables: apply only these tables' changes.
        filter: ``filter(table) -> bool``: apply only tables it accepts
            (called once per table, before anything is applied).
        no_savepoint: do not wrap the apply in a savepoint: an abort then
            leaves the changes made so far in place (roll your own transaction
            back to undo them).
        invert: apply the inverse (changesets only).
        ignore_noop: do not report conflicts for changes already in place.
        fk_noaction: treat foreign key actions as NO ACTION while applying.
        strict: raise :class:`SchemaMismatch` (applying nothing) when the
            target lacks a table or its shape differs; False skips such tables
            silently, as SQLite does, and lists them in the report.
        collect_rejected: put the changes omitted by conflicts into
            ``report.rejected``.
        rebase: return SQLite's rebase data in ``report.rebase``.
    """

    on_conflict: OnConflict = None
    tables: Iterable[str] | None = None
    filter: TableFilter | None = None
    no_savepoint: bool = False
    invert: bool = False
    ignore_noop: bool = False
    fk_noaction: bool = False
    strict: bool = True
    collect_rejected: bool = False
    rebase: bool = False
    #: ``on_conflict`` validated (made from it; not a parameter).
    policy: Policy = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", Policy(self.on_conflict))
        if self.filter is not None and not callable(self.filter):
            raise InterfaceError(f"filter must be callable, not {type(self.filter).__qualname__}")

    @classmethod
    def build(cls, options: ApplyOptions | None, keywords: Mapping[str, Any]) -> ApplyOptions:
        """``options``, or the options the keywords name (not both)."""
        if options is None:
            return cls(**keywords)
        if not isinstance(options, ApplyOptions):
            raise InterfaceError(
                f"options must be an sss.ApplyOptions, not {type(options).__qualname__} (on_conflict "
                "and the other apply options are keyword-only)"
            )
        if keywords:
            raise InterfaceError(f"pass either options or keywords, not both ({', '.join(keywords)})")
        return options


class ApplyKeywords(TypedDict, total=False):
    """The keywords that build an :class:`ApplyOptions` (for type checkers;
    ``tests`` check that the two list the same names)."""

    on_conflict: OnConflict
    tables: Iterable[str] | None
    filter: TableFilter | None
    no_savepoint: bool
    invert: bool
    ignore_noop: bool
    fk_noaction: bool
    strict: bool
    collect_rejected: bool
    rebase: bool
