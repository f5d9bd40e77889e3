"""ChangeGroup (combine changesets) and Rebaser (rebase a local changeset
over the conflict resolutions of a remote one).

Neither belongs to a connection, except a ChangeGroup given a schema: SQLite
then reads that connection's schema on every add, so those calls hold the
connection, and the group is closed when the connection closes.  Each object
serves one thread at a time, like a connection: a second thread calling in
concurrently gets ThreadingError instead of racing SQLite's data structures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.changegroup import ChangeGroupHandle, RebaserHandle
from ..binding.changeset_io import Reader, Writer
from ..binding.errors import ClosedError, InterfaceError, ThreadingError
from .changeset import Change, Changeset, ChangesetBase, Patchset, encode_changes

if TYPE_CHECKING:
    from ..binding.connection import Connection

__all__ = ["ChangeGroup", "Rebaser"]


class _Guard:
    """One thread at a time, without waiting (see the module docstring)."""

    __slots__ = ("_lock", "_what")

    def __init__(self, what: str) -> None:
        self._lock = threading.Lock()
        self._what = what

    def __enter__(self) -> None:
        if not self._lock.acquire(False):
            raise ThreadingError(f"this {self._what} is being used by another thread "
                                 "(or re-entered from a callback)")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class ChangeGroup:
    """Combines changesets (or patchsets) into one: the result of applying
    them all in order, one change per row.

    A group holds changesets or patchsets, not both: the first add decides,
    unless ``patchset`` says so up front.  Use as a context manager or call
    :meth:`close`.

    Calls ``sqlite3changegroup_new`` (``sqlite3changegroup_delete`` when closed).
    """

    def __init__(self, schema: Connection | None = None, db: str = "main",
                 patchset: bool | None = None) -> None:
        self._guard = _Guard("change group")
        self._group = ChangeGroupHandle()
        self._con: Connection | None = None
        self._kind: type[ChangesetBase] | None = None
        self._empty = True
        if patchset is not None:
            self._kind = Patchset if self._group.set_patchset(patchset) else Changeset
        if schema is not None:
            self.schema(schema, db)

    def schema(self, con: Connection, db: str = "main") -> None:
        """Check every later add against ``con``'s schema of database ``db``
        (SQLite then also fills in columns a changeset lacks from their
        defaults).  Only before the first add.

        Calls ``sqlite3changegroup_schema``."""
        with self._guard:
            group = self._live()
            if not self._empty:
                raise InterfaceError("schema() must come before the first add")
            if self._con is not None:
                raise InterfaceError("this change group already has a schema")
            with con.sss_hold() as cdb:
                group.schema(cdb, db)
                self._con = con
                con.sss_add_dependent(group)

    def _holding(self) -> AbstractContextManager[Any]:
        """The connection, held, when the group reads its schema."""
        return self._con.sss_hold() if self._con is not None else nullcontext()

    def _live(self) -> ChangeGroupHandle:
        if self._group.closed:
            raise ClosedError("cannot use a closed change group")
        return self._group

    def _accept(self, kind: type[ChangesetBase]) -> None:
        if self._kind is not None and kind is not self._kind:
            raise InterfaceError(f"this change group holds {self._kind.__name__.lower()}s; "
                                 f"cannot add a {kind.__name__.lower()}")

    def add(self, changeset: ChangesetBase | bytes) -> None:
        """Add every change of a changeset (or patchset).

        Calls ``sqlite3changegroup_add`` (``sqlite3changegroup_add_strm`` past 2 GiB)."""
        cs = changeset if isinstance(changeset, ChangesetBase) else _detect(changeset)
        if not cs:
            return
        self._accept(type(cs))
        with self._guard, self._holding():
            self._live().add(cs)
            self._added(type(cs))

    def add_change(self, change: Change | Iterable[Any]) -> None:
        """Add one change (a :class:`Change`, e.g. from iterating a changeset,
        or the fields to make one).

        Calls ``sqlite3changegroup_add``."""
        if not isinstance(change, Change):
            change = Change(*change)
        kind = self._kind or Changeset
        self.add(kind(encode_changes([change], patchset=kind is Patchset)))

    def add_stream(self, source: BinaryIO, patchset: bool = False) -> None:
        """Add a changeset (``patchset=True``: a patchset) read from a binary
        file object.

        Calls ``sqlite3changegroup_add_strm``."""
        kind = Patchset if patchset else Changeset
        self._accept(kind)
        reader = Reader(source)
        with self._guard, self._holding():
            self._live().add_stream(reader)
            self._added(kind)

    def _added(self, kind: type[ChangesetBase]) -> None:
        self._empty = False
        self._kind = kind

    def output(self) -> ChangesetBase:
        """Everything added so far, as one Changeset (or Patchset).

        Calls ``sqlite3changegroup_output``."""
        with self._guard, self._holding():
            blob = self._live().output()
        return (self._kind or Changeset)(blob)

    def output_stream(self, dest: BinaryIO) -> int:
        """Write the combined changeset to a binary file object; returns the
        number of bytes written.

        Calls ``sqlite3changegroup_output_strm``."""
        writer = Writer(dest)
        with self._guard, self._holding():
            self._live().output_stream(writer)
        return writer.total

    def close(self) -> None:
        """Free the group (closing twice is fine).

        Calls ``sqlite3changegroup_delete``."""
        con = self._con
        with self._guard, (con.sss_hold() if con is not None and not con.closed else nullcontext()):
            self._group.delete()

    def __enter__(self) -> ChangeGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
    # Collected: the handle frees the group itself, unless it has a schema
    # (then the connection deletes it when it closes: a finalizer may run
    # while the connection is inside SQLite).


def _detect(data: Any) -> ChangesetBase:
    data = bytes(data)
    return Patchset(data) if data[:1] == b"P" else Changeset(data)


class Rebaser:
    """Rebases local changesets over the conflict resolutions made while
    applying remote ones: ``report = apply(remote, con, ..., rebase=True)``,
    then ``Rebaser().configure(report.rebase)`` and :meth:`rebase` each local
    changeset, so the same conflicts are not resolved again elsewhere.

    Calls ``sqlite3rebaser_create`` (``sqlite3rebaser_delete`` when closed)."""

    def __init__(self) -> None:
        self._guard = _Guard("rebaser")
        self._rebaser = RebaserHandle()

    def _live(self) -> RebaserHandle:
        if self._rebaser.closed:
            raise ClosedError("cannot use a closed rebaser")
        return self._rebaser

    def configure(self, rebase: bytes) -> None:
        """Add rebase data (``ApplyReport.rebase``); call in apply order.

        Calls ``sqlite3rebaser_configure``."""
        data = bytes(rebase)
        if not data:
            return
        with self._guard:
            self._live().configure(data)

    def rebase(self, changeset: Changeset | bytes) -> Changeset:
        """The changeset rebased (patchsets cannot be rebased).

        Calls ``sqlite3rebaser_rebase``."""
        cs = changeset if isinstance(changeset, ChangesetBase) else _detect(changeset)
        if isinstance(cs, Patchset):
            raise InterfaceError("only changesets can be rebased, not patchsets")
        with self._guard:
            blob = self._live().rebase(cs)
        return Changeset(blob)

    def rebase_stream(self, source: BinaryIO, dest: BinaryIO) -> int:
        """Rebase a changeset read from ``source`` into ``dest``; returns the
        number of bytes written.

        Calls ``sqlite3rebaser_rebase_strm``."""
        reader, writer = Reader(source), Writer(dest)
        with self._guard:
            self._live().rebase_stream(reader, writer)
        return writer.total

    def close(self) -> None:
        """Free the rebaser (closing twice is fine).

        Calls ``sqlite3rebaser_delete``."""
        with self._guard:
            self._rebaser.delete()

    def __enter__(self) -> Rebaser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
