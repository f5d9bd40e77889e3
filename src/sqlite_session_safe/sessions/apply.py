"""Applying changesets: conflict policies, strict schema checks, reports.

:func:`apply` and :func:`apply_stream` are the entry points; the work is
done in ``options`` (:class:`ApplyOptions`), ``policy`` (conflicts and
their actions), ``apply_plan`` (steps 2-3 below), ``apply_core`` (step 4),
``chunked`` (streams and changesets past 2 GiB) and ``report``.

How an apply runs
-----------------
1. The policy is checked: REPLACE is only valid for DATA and CONFLICT
   conflicts, so any other pairing is rejected before anything happens.
2. A C pass over the changeset (``sss_changeset_summary``) lists its table
   sections with their column counts, primary keys and change counts; it
   fails with :class:`ChangesetError` on corrupt data, before anything is
   applied.  The table filter (``tables`` / ``filter``) is evaluated here, once
   per table, so an exception it raises also happens before anything is
   applied.
3. Strict mode compares every kept table with the target's schema by the same
   rules SQLite uses (the table exists, has at least as many columns, the same
   primary key); a difference raises :class:`SchemaMismatch` (SQLite itself
   would skip the table and only log it).
4. ``sqlite3changeset_apply_v2`` runs inside its own savepoint.  Conflicts call
   back into Python (``sss_py_apply_conflict``); an exception in the user's
   callable, or an invalid action, is stored, SQLite is told ABORT, it rolls
   its savepoint back, and the exception is re-raised as itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.errors import InterfaceError
from .changeset import Changeset, ChangesetBase, Patchset
from .chunked import Source, apply_chunks
from .options import ApplyKeywords, ApplyOptions
from .policy import ABORT, OMIT, REPLACE, Action, Conflict, ConflictType, OnConflict, TableFilter
from .report import ApplyReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..binding.connection import Connection

__all__ = [
    "Action",
    "OMIT",
    "REPLACE",
    "ABORT",
    "ConflictType",
    "Conflict",
    "ApplyOptions",
    "ApplyReport",
    "apply",
    "apply_stream",
    "coerce",
    "OnConflict",
    "TableFilter",
]


def coerce(changeset: Any) -> ChangesetBase:
    """``changeset`` as a :class:`Changeset` or :class:`Patchset` (bytes are
    told apart by their first byte)."""
    if isinstance(changeset, ChangesetBase):
        return changeset
    if isinstance(changeset, (bytes, bytearray, memoryview)):
        data = bytes(changeset)
        return Patchset(data) if data[:1] == b"P" else Changeset(data)
    raise TypeError(f"expected a Changeset, Patchset or bytes, not {type(changeset).__qualname__}")


def _kind_of(first_chunk: bytes) -> type[ChangesetBase]:
    return Patchset if first_chunk[:1] == b"P" else Changeset


def apply(
    changeset: ChangesetBase | bytes,
    con: Connection,
    options: ApplyOptions | None = None,
    /,
    **keywords: Unpack[ApplyKeywords],
) -> ApplyReport:
    """Apply a changeset or patchset to ``con``'s main database.

    The options (``on_conflict``, ``tables``, ``filter``, ``no_savepoint``,
    ``invert``, ``ignore_noop``, ``fk_noaction``, ``strict``,
    ``collect_rejected``, ``rebase``) are given as keywords, or as one
    :class:`ApplyOptions` (where each is documented); by default every
    conflict ABORTs and a table of another shape raises.

    Raises:
        ConflictAbort: a conflict was resolved with ABORT (rolled back).
        ChangesetError: the changeset is corrupt (nothing applied).
        SchemaMismatch: strict mode and the target's schema differs.
        ConflictPolicyError: ``on_conflict`` is invalid (nothing applied).

    An exception raised by ``on_conflict`` or ``filter`` comes out as itself,
    with the target as it was before.

    Calls ``sqlite3changeset_apply_v2``.
    """
    return coerce(changeset).apply(con, options, **keywords)


def apply_stream(
    source: BinaryIO | bytes,
    con: Connection,
    options: ApplyOptions | None = None,
    /,
    **keywords: Unpack[ApplyKeywords],
) -> ApplyReport:
    """Apply a changeset or patchset read from a binary file object, in
    bounded memory (for changesets larger than memory or 2 GiB).

    The stream is read and applied in chunks of :data:`STREAM_APPLY_CHUNK`
    changes inside one savepoint, so it is all-or-nothing like :func:`apply`,
    with the same options.  Differences: each chunk is checked (schema,
    filter) just before it is applied, so a mismatch late in the stream is
    found after earlier chunks were applied (and rolled back);
    ``collect_rejected`` keeps the rejected changes in memory; a FOREIGN_KEY
    conflict left by an earlier chunk is
    decided at the end with ``PRAGMA foreign_key_check``, which counts every
    violation in the database, including ones that were there before.

    Calls ``sqlite3changeset_start_v2_strm``, then per chunk
    ``sqlite3changegroup_add_change`` and ``sqlite3changeset_apply_v2``.
    """
    opts = ApplyOptions.build(options, keywords)
    if opts.invert and opts.collect_rejected:
        raise InterfaceError("apply_stream cannot collect rejected changes while inverting: "
                             "invert the stream first (invert_stream)")
    with Source(source) as src:
        return apply_chunks(src, con, opts, _kind_of)
