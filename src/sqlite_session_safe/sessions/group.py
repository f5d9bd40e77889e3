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

from ..binding.errors import ClosedError, InterfaceError, ThreadingError
from ..binding.raw import error_from_db, ffi, lib
from ._native import Reader, Writer, check_rc, take_blob
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
        out = ffi.new("sqlite3_changegroup **")
        check_rc(lib.sqlite3changegroup_new(out), "creating a change group")
        self._ptr: Any = out[0]
        self._con: Connection | None = None
        self._kind: type[ChangesetBase] | None = None
        self._empty = True
        if patchset is not None:
            flag = ffi.new("int *", 1 if patchset else 0)
            lib.sqlite3changegroup_config(self._ptr, lib.SQLITE_CHANGEGROUP_CONFIG_PATCHSET, flag)
            self._kind = Patchset if flag[0] else Changeset
        if schema is not None:
            self.schema(schema, db)

    def schema(self, con: Connection, db: str = "main") -> None:
        """Check every later add against ``con``'s schema of database ``db``
        (SQLite then also fills in columns a changeset lacks from their
        defaults).  Only before the first add.

        Calls ``sqlite3changegroup_schema``."""
        with self._guard:
            ptr = self._live()
            if not self._empty:
                raise InterfaceError("schema() must come before the first add")
            if self._con is not None:
                raise InterfaceError("this change group already has a schema")
            with con.hold() as cdb:
                rc = lib.sqlite3changegroup_schema(ptr, cdb, db.encode("utf-8"))
                if rc != lib.SQLITE_OK:
                    raise error_from_db(cdb, rc, "setting a change group's schema")
                self._con = con
                con.add_dependent(self)

    def _holding(self) -> AbstractContextManager[Any]:
        """The connection, held, when the group reads its schema."""
        return self._con.hold() if self._con is not None else nullcontext()

    def _live(self) -> Any:
        if self._ptr is None:
            raise ClosedError("cannot use a closed change group")
        return self._ptr

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
            ptr = self._live()
            if len(cs) > 0x7FFFFFFF:
                reader = Reader(cs)
                rc = lib.sqlite3changegroup_add_strm(ptr, lib.sss_py_input, reader.handle)
                reader.reraise()
            else:
                rc = lib.sqlite3changegroup_add(ptr, len(cs), ffi.from_buffer(cs))
            self._after_add(rc, type(cs))

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
            rc = lib.sqlite3changegroup_add_strm(self._live(), lib.sss_py_input, reader.handle)
            reader.reraise()
            self._after_add(rc, kind)

    def _after_add(self, rc: int, kind: type[ChangesetBase]) -> None:
        if rc == lib.SQLITE_SCHEMA:
            raise InterfaceError("the changeset does not match this change group's schema or an "
                                 "earlier changeset's table definition (SQLITE_SCHEMA); the "
                                 "group's contents are now undefined")
        check_rc(rc, "adding to a change group")
        self._empty = False
        self._kind = kind

    def output(self) -> ChangesetBase:
        """Everything added so far, as one Changeset (or Patchset).

        Calls ``sqlite3changegroup_output``."""
        with self._guard, self._holding():
            n = ffi.new("int *")
            p = ffi.new("void **")
            rc = lib.sqlite3changegroup_output(self._live(), n, p)
            blob = take_blob(n, p)
            check_rc(rc, "writing a change group")
        return (self._kind or Changeset)(blob)

    def output_stream(self, dest: BinaryIO) -> int:
        """Write the combined changeset to a binary file object; returns the
        number of bytes written.

        Calls ``sqlite3changegroup_output_strm``."""
        writer = Writer(dest)
        with self._guard, self._holding():
            rc = lib.sqlite3changegroup_output_strm(self._live(), lib.sss_py_output, writer.handle)
            writer.reraise()
            check_rc(rc, "writing a change group")
        return writer.total

    def close(self) -> None:
        """Free the group (closing twice is fine).

        Calls ``sqlite3changegroup_delete``."""
        con = self._con
        with self._guard, (con.hold() if con is not None and not con.closed else nullcontext()):
            self._delete()

    def _delete(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.sqlite3changegroup_delete(ptr)

    def close_before_connection(self) -> None:
        """Free the group; its schema connection is closing (and held).

        Calls ``sqlite3changegroup_delete``."""
        self._delete()

    def __enter__(self) -> ChangeGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is not None and getattr(self, "_con", None) is None:
            self._ptr = None
            lib.sqlite3changegroup_delete(ptr)
        # With a schema, the connection deletes it when it closes (a finalizer
        # may run while the connection is inside SQLite).


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
        out = ffi.new("sqlite3_rebaser **")
        check_rc(lib.sqlite3rebaser_create(out), "creating a rebaser")
        self._ptr: Any = out[0]

    def _live(self) -> Any:
        if self._ptr is None:
            raise ClosedError("cannot use a closed rebaser")
        return self._ptr

    def configure(self, rebase: bytes) -> None:
        """Add rebase data (``ApplyReport.rebase``); call in apply order.

        Calls ``sqlite3rebaser_configure``."""
        data = bytes(rebase)
        if not data:
            return
        with self._guard:
            check_rc(lib.sqlite3rebaser_configure(self._live(), len(data), ffi.from_buffer(data)),
                     "configuring the rebaser")

    def rebase(self, changeset: Changeset | bytes) -> Changeset:
        """The changeset rebased (patchsets cannot be rebased).

        Calls ``sqlite3rebaser_rebase``."""
        cs = changeset if isinstance(changeset, ChangesetBase) else _detect(changeset)
        if isinstance(cs, Patchset):
            raise InterfaceError("only changesets can be rebased, not patchsets")
        with self._guard:
            n = ffi.new("int *")
            p = ffi.new("void **")
            rc = lib.sqlite3rebaser_rebase(self._live(), len(cs), ffi.from_buffer(cs), n, p)
            blob = take_blob(n, p)
            check_rc(rc, "rebasing a changeset")
        return Changeset(blob)

    def rebase_stream(self, source: BinaryIO, dest: BinaryIO) -> int:
        """Rebase a changeset read from ``source`` into ``dest``; returns the
        number of bytes written.

        Calls ``sqlite3rebaser_rebase_strm``."""
        reader, writer = Reader(source), Writer(dest)
        with self._guard:
            rc = lib.sqlite3rebaser_rebase_strm(self._live(), lib.sss_py_input, reader.handle,
                                                lib.sss_py_output, writer.handle)
            reader.reraise()
            writer.reraise()
            check_rc(rc, "rebasing a changeset")
        return writer.total

    def close(self) -> None:
        """Free the rebaser (closing twice is fine).

        Calls ``sqlite3rebaser_delete``."""
        with self._guard:
            ptr, self._ptr = self._ptr, None
            if ptr is not None:
                lib.sqlite3rebaser_delete(ptr)

    def __enter__(self) -> Rebaser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            lib.sqlite3rebaser_delete(ptr)
