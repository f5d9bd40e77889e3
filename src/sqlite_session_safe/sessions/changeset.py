"""Changesets and patchsets as immutable values, and the changes in them.

A :class:`Changeset` (or :class:`Patchset`) *is* a ``bytes`` object: it can be
stored, sent, hashed, compared and bound as a BLOB parameter as it is.  The
methods run SQLite's session functions over those bytes; iterating walks the
changes in C, a batch per call (``csrc/sss_changeset.c``), and yields
:class:`Change` values that own copies of their data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, TypeVar

from ..binding import changeset_io
from ..binding.changeset_iter import ChangesetIter, parse_batches
from ..binding.changeset_ops import concat, invert
from ..binding.errors import InterfaceError
from .apply_core import apply_whole
from .change import OP_CODES, OPS, UNCHANGED, Change
from .chunked import Source, apply_chunks
from .errors import ChangesetError
from .options import ApplyKeywords, ApplyOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..binding.connection import Connection
    from .report import ApplyReport

__all__ = ["UNCHANGED", "Change", "Changeset", "Patchset", "OPS", "column_names", "change_dicts",
           "NameCache"]

_tuple_new = tuple.__new__


def iter_changes(it: ChangesetIter, what: str) -> Iterator[Change]:
    """Changes from an open iterator (which holds what it reads until it is
    finalized).  Each batch's raw tuples become Change objects in C (map +
    tuple.__new__), and chain() hands them out without a Python frame per
    change."""
    return chain.from_iterable(map(_as_changes, it.batches(what)))


def _as_changes(batch: list[Any]) -> Iterator[Change]:
    return map(_tuple_new, repeat(Change), batch)


_S = TypeVar("_S", bound="ChangesetBase")


class ChangesetBase(bytes):
    """What changesets and patchsets share; see :class:`Changeset`."""

    __slots__ = ()
    #: The byte a table header starts with: b"T" for changesets, b"P" for patchsets.
    _HEADER = b""
    _KIND = ""

    def __new__(cls: type[_S], data: bytes | bytearray | memoryview = b"") -> _S:
        if isinstance(data, str):
            raise TypeError(f"{cls.__name__} takes bytes, not str")
        obj = super().__new__(cls, data)
        if obj and obj[:1] != cls._HEADER:
            other = {b"T": "a changeset (sss.Changeset)", b"P": "a patchset (sss.Patchset)"}.get(obj[:1])
            hint = f": these bytes are {other}" if other else ""
            raise ChangesetError(f"not a {cls._KIND}{hint}")
        return obj

    def __repr__(self) -> str:
        return f"<sss.{type(self).__name__} {len(self)} bytes>"

    __str__ = __repr__

    def __bytes__(self) -> bytes:
        return bytes.__getitem__(self, slice(None))

    # Slicing and + give plain bytes: a piece of a changeset is not one.

    def __iter__(self) -> Iterator[Change]:  # type: ignore[override]
        """The changes, in order (see :class:`Change`)."""
        return self.changes()

    def changes(self, invert: bool = False) -> Iterator[Change]:
        """Iterate the changes; ``invert=True`` yields them as the inverse
        changeset would hold them (not for patchsets).

        Calls ``sqlite3changeset_start_v2``, then ``sqlite3changeset_next``
        and ``sqlite3changeset_op`` (and the old / new / pk readers) per
        change, in C; without ``invert``, a changeset in memory is read by
        the package's own parser (``sss_changeset_parse``), in C."""
        if invert:
            self._require_invertible()
        if not self:
            return iter(())
        what = f"iterating a {self._KIND}"
        if not invert and len(self) <= changeset_io.MAX_BLOB:
            # The common case: read the blob directly, in C, twice as fast as
            # through SQLite's iterator (which stays for inversion and streams).
            return chain.from_iterable(map(_as_changes, parse_batches(self, what)))
        return iter_changes(ChangesetIter.over_bytes(self, invert), what)

    def validate(self) -> int:
        """Walk every change; return how many there are.  Raises
        :class:`ChangesetError` when the data is corrupt or truncated, or
        holds text that is not UTF-8.

        Calls ``sqlite3changeset_start_v2`` and ``sqlite3changeset_next`` per change, in C."""
        count = 0
        if self:
            for batch in ChangesetIter.over_bytes(self).batches(f"validating a {self._KIND}"):
                count += len(batch)
        return count

    def concat(self: _S, other: _S) -> _S:
        """This followed by ``other``, as one value of the same kind: applying
        it equals applying this and then ``other``.

        Calls ``sqlite3changeset_concat`` (``sqlite3changeset_concat_strm`` past 2 GiB)."""
        if type(other) is not type(self):
            raise InterfaceError(
                f"cannot concatenate a {self._KIND} with {type(other).__name__}: "
                f"both must be {type(self).__name__}")
        return type(self)(concat(self, other, f"concatenating {self._KIND}s"))

    def __add__(self, other: Any) -> bytes:
        return bytes(self) + bytes(other)

    def _require_invertible(self) -> None:
        if isinstance(self, Patchset):
            raise ChangesetError("a patchset cannot be inverted: it lacks the old values "
                                 "(record a changeset to be able to undo)")

    def apply(
        self,
        con: Connection,
        options: ApplyOptions | None = None,
        /,
        **keywords: Unpack[ApplyKeywords],
    ) -> ApplyReport:
        """Apply to ``con``'s main database; see :func:`~sqlite_session_safe.apply`
        (the options: :class:`~sqlite_session_safe.ApplyOptions`).

        Calls ``sqlite3changeset_apply_v2``."""
        opts = ApplyOptions.build(options, keywords)
        cs: ChangesetBase = self
        if opts.invert:
            self._require_invertible()
            if opts.collect_rejected:
                # SQLite cannot collect changes from an inverting iterator: invert first.
                assert isinstance(self, Changeset)  # patchsets were refused above
                cs, opts = self.invert(), dataclasses.replace(opts, invert=False)
        if len(cs) > changeset_io.MAX_BLOB:
            with Source(cs) as source:
                return apply_chunks(source, con, opts, lambda _: type(cs))
        return apply_whole(cs, con, opts)

    # -- presenting -------------------------------------------------------

    def as_dicts(self, con: Connection | None = None) -> list[dict[str, Any]]:
        """The changes as plain dicts, columns by name::

            {"table": "t", "op": "UPDATE", "indirect": False, "pk": ["id"],
             "old": {"id": 1, "v": "a"}, "new": {"v": "b"}}

        Column names come from ``con``'s schema (the table's columns in order;
        ``"_rowid_"`` first for tables captured by rowid); without a
        connection, or for a table it lacks, columns are named by position
        ("0", "1", ...).  Columns the change leaves :data:`UNCHANGED` are left
        out of ``old`` / ``new``.
        """
        return list(change_dicts(self, con))

    def to_json(self, con: Connection | None = None, indent: int | None = None) -> str:
        """:meth:`as_dicts` as JSON.  BLOBs become ``{"$blob": "<hex>"}`` and
        non-finite REALs ``{"$real": "inf"}`` (JSON has neither)."""
        return json.dumps(_jsonable(self.as_dicts(con)), indent=indent, ensure_ascii=False,
                          allow_nan=False)

    def to_sql(self, con: Connection | None = None,
               columns: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Each change as one SQL statement (INSERT, UPDATE ... WHERE pk,
        DELETE ... WHERE pk) with the values as literals.  Column names come
        from ``con`` or from ``columns`` (table -> names); a table with neither
        raises :class:`InterfaceError`.  This is a readable rendering: unlike
        apply, the statements do not check the old values."""
        names = NameCache(con, columns, positional=False)
        statements = []
        for change in self:
            table, op, old, new, pk, _ = change
            cols = names.get(table, pk)
            if cols is None:
                raise InterfaceError(f"to_sql needs the column names of table {table!r}: "
                                     "pass con= (a database with the table) or columns=")
            q = _quote_ident
            if op == "INSERT":
                assert new is not None
                statements.append(
                    f"INSERT INTO {q(table)}({', '.join(q(c) for c in cols)}) "
                    f"VALUES({', '.join(_sql_literal(v) for v in new)});")
                continue
            assert old is not None
            where = " AND ".join(f"{q(cols[i])} = {_sql_literal(old[i])}"
                                 for i, flag in enumerate(pk) if flag)
            if op == "DELETE":
                statements.append(f"DELETE FROM {q(table)} WHERE {where};")
            else:
                assert new is not None
                sets = ", ".join(f"{q(cols[i])} = {_sql_literal(v)}"
                                 for i, v in enumerate(new) if v is not UNCHANGED)
                if sets:
                    statements.append(f"UPDATE {q(table)} SET {sets} WHERE {where};")
        return statements

    # -- building -----------------------------------------------------------

    @classmethod
    def from_changes(cls: type[_S], changes: Iterable[Change]) -> _S:
        """Encode changes (e.g. edited ones) as a changeset or patchset.
        Consecutive changes to one table share a table header, as in the
        changesets SQLite writes."""
        return cls(encode_changes(changes, patchset=cls is Patchset))


class Changeset(ChangesetBase):
    """A changeset: every change with the old values it overwrote, so it can be
    checked for conflicts when applied, and inverted to undo it.

    Immutable ``bytes``: ``bytes(cs)``, ``len(cs)``, hashing, comparison and
    binding as a BLOB work as for bytes.  Iterating yields :class:`Change`.
    """

    __slots__ = ()
    _HEADER = b"T"
    _KIND = "changeset"

    def invert(self) -> Changeset:
        """The changeset that undoes this one (INSERT <-> DELETE, old <-> new).

        Calls ``sqlite3changeset_invert`` (``sqlite3changeset_invert_strm`` past 2 GiB)."""
        if not self:
            return Changeset()
        # sqlite3changeset_invert() documents that it assumes valid input;
        # the iterator is the hardened parser, so corrupt data stops here.
        self.validate()
        return Changeset(invert(self))


class Patchset(ChangesetBase):
    """A patchset: like a changeset, without the old values of non-key
    columns.  Smaller, applies the same way, but cannot detect DATA
    conflicts and cannot be inverted."""

    __slots__ = ()
    _HEADER = b"P"
    _KIND = "patchset"

    def invert(self) -> Patchset:
        """Always raises :class:`ChangesetError`: a patchset lacks the old
        values an inverse needs."""
        self._require_invertible()
        raise AssertionError("unreachable")


# -- column names -----------------------------------------------------------


def column_names(con: Connection, table: str, pk: Sequence[int]) -> list[str] | None:
    """The names of the columns a changeset records for ``table`` in ``con``'s
    main database, following the session module's rules: hidden and generated
    columns are not recorded; a table without a declared primary key captured
    by rowid has ``_rowid_`` first.  None when the table does not exist."""
    rows = con.execute(
        "SELECT name, pk, hidden FROM pragma_table_xinfo(?, 'main')", (table,)).fetchall()
    cols = [name for name, _, hidden in rows if hidden == 0]
    if not cols:
        return None
    if not any(p for _, p, hidden in rows if hidden == 0) and len(pk) == len(cols) + 1:
        cols = ["_rowid_", *cols]
    return cols


class NameCache:
    """Column names per (table, pk flags) as the renderings use them, looked
    up once per table: from ``columns``, else ``con``'s schema
    (:func:`column_names`); ``positional``: "0", "1", ... for a table
    neither knows (else None)."""

    def __init__(self, con: Connection | None, columns: Mapping[str, Sequence[str]] | None = None,
                 positional: bool = True) -> None:
        self.con = con
        self.columns = columns or {}
        self.positional = positional
        self.cache: dict[tuple[str, tuple[int, ...]], list[str] | None] = {}

    def get(self, table: str, pk: tuple[int, ...]) -> Any:
        key = (table, pk)
        if key in self.cache:
            return self.cache[key]
        cols: list[str] | None = None
        if table in self.columns:
            cols = list(self.columns[table])
        elif self.con is not None:
            cols = column_names(self.con, table, pk)
        if cols is not None and len(cols) < len(pk):
            cols = None  # the table has fewer columns than the changeset records
        if cols is None and self.positional:
            cols = [str(i) for i in range(len(pk))]
        self.cache[key] = cols
        return cols


def change_dicts(changes: Iterable[Any], con: Connection | None = None) -> Iterator[dict[str, Any]]:
    """The changes as :meth:`Changeset.as_dicts` gives them, one at a time
    (for streams: :func:`sss.iterate_stream`'s changes in bounded memory)."""
    names = NameCache(con)
    for table, op, old, new, pk, indirect in changes:
        cols = names.get(table, pk)
        yield {
            "table": table,
            "op": op,
            "indirect": indirect,
            "pk": [cols[i] for i, flag in enumerate(pk) if flag],
            "old": _row_dict(cols, old),
            "new": _row_dict(cols, new),
        }


def _row_dict(cols: list[str], row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {cols[i]: v for i, v in enumerate(row) if v is not UNCHANGED}


def _jsonable(value: Any) -> Any:
    """BLOBs and non-finite REALs in a form JSON can hold."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return {"$blob": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$real": repr(value)}
    return value


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"  # SQLite stores NaN as NULL
        if math.isinf(value):
            return "9e999" if value > 0 else "-9e999"
        return repr(value)
    if isinstance(value, str):
        if "\0" in value:
            return f"CAST(X'{value.encode('utf-8', 'surrogatepass').hex()}' AS TEXT)"
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"X'{bytes(value).hex()}'"
    raise InterfaceError(f"cannot write {type(value).__qualname__} as an SQL literal")


# -- encoding ---------------------------------------------------------------

_pack_be64 = struct.Struct(">q").pack
_pack_bed = struct.Struct(">d").pack


def _varint(n: int) -> bytes:
    """SQLite's varint (big-endian 7-bit groups; lengths never need 9 bytes)."""
    if n < 0x80:
        return bytes((n,))
    groups = []
    while n:
        groups.append(n & 0x7F)
        n >>= 7
    groups.reverse()
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def _encode_value(out: bytearray, value: Any) -> None:
    if value is UNCHANGED:
        out.append(0)
    elif value is None:
        out.append(5)
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InterfaceError(f"int {value} does not fit SQLite's 64-bit INTEGER")
        out.append(1)
        out += _pack_be64(int(value))
    elif isinstance(value, float):
        out.append(2)
        out += _pack_bed(value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out.append(3)
        out += _varint(len(data))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(4)
        out += _varint(len(data))
        out += data
    else:
        raise InterfaceError(f"a change value of type {type(value).__qualname__}: "
                             "SQLite stores None, int, float, str and bytes")


def encode_changes(changes: Iterable[Change], patchset: bool = False) -> bytes:
    """The changeset (or patchset) format of ``changes`` (see the format notes
    in sqlite3.c: a table header per run of changes to one table, then per
    change the op, the indirect flag and its records)."""
    out = bytearray()
    header: tuple[str, tuple[int, ...]] | None = None
    for change in changes:
        if not isinstance(change, Change):
            change = Change(*change)
        table, op, old, new, pk, indirect = change
        if header != (table, pk):
            header = (table, pk)
            out += b"P" if patchset else b"T"
            out += _varint(len(pk))
            out += bytes(pk)
            out += table.encode("utf-8") + b"\0"
        out.append(OP_CODES[op])
        out.append(1 if indirect else 0)
        if patchset:
            if op == "DELETE":
                assert old is not None
                record: Sequence[Any] = [v for v, flag in zip(old, pk, strict=True) if flag]
            elif op == "UPDATE":
                assert old is not None and new is not None
                record = [o if flag else n for o, n, flag in zip(old, new, pk, strict=True)]
            else:
                assert new is not None
                record = new
            for v in record:
                _encode_value(out, v)
            continue
        for record_or_none in (old, new):
            if record_or_none is not None:
                for v in record_or_none:
                    _encode_value(out, v)
    return bytes(out)
