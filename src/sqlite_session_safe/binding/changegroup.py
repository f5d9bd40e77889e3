"""Change groups and rebasers: ``sqlite3_changegroup`` and
``sqlite3_rebaser`` handles with typed methods.  The sessions layer's
``ChangeGroup`` and ``Rebaser`` add the Python-side rules (one thread at a
time, changesets or patchsets, the schema connection held) on top.
"""

from __future__ import annotations

from typing import Any

from . import changeset_io as _io
from .changeset_io import Reader, Writer, check_rc, output_blob
from .errors import InterfaceError
from .raw import error_from_db, ffi, lib

__all__ = ["ChangeGroupHandle", "RebaserHandle"]


class ChangeGroupHandle:
    """An ``sqlite3_changegroup*``: created by ``sqlite3changegroup_new``,
    freed by :meth:`delete` (``sqlite3changegroup_delete``) or, until it
    has a schema, when collected.  With a schema SQLite reads that
    connection's schema through it, so only the connection's close frees it
    (a finalizer may run while the connection is inside SQLite)."""

    __slots__ = ("ptr", "free_on_collect", "__weakref__")

    def __init__(self, what: str = "creating a change group") -> None:
        self.free_on_collect = True
        out = ffi.new("sqlite3_changegroup **")
        check_rc(lib.sqlite3changegroup_new(out), what)
        self.ptr: Any = out[0]

    @property
    def closed(self) -> bool:
        """True once :meth:`delete` ran."""
        return self.ptr is None

    def set_patchset(self, patchset: bool) -> bool:
        """Make the group hold patchsets (or changesets) before the first add;
        returns the setting afterwards.

        Calls ``sqlite3changegroup_config`` (``SQLITE_CHANGEGROUP_CONFIG_PATCHSET``)."""
        flag = ffi.new("int *", 1 if patchset else 0)
        lib.sqlite3changegroup_config(self.ptr, lib.SQLITE_CHANGEGROUP_CONFIG_PATCHSET, flag)
        return bool(flag[0])

    def schema(self, db: Any, name: str) -> None:
        """Check later adds against database ``name`` of connection handle
        ``db`` (held by the caller).

        Calls ``sqlite3changegroup_schema``."""
        rc = lib.sqlite3changegroup_schema(self.ptr, db, name.encode("utf-8"))
        if rc != lib.SQLITE_OK:
            raise error_from_db(db, rc, "setting a change group's schema")
        self.free_on_collect = False

    def add(self, data: bytes) -> None:
        """Add every change of ``data``.

        Calls ``sqlite3changegroup_add`` (``sqlite3changegroup_add_strm`` past
        :data:`changeset_io.MAX_BLOB`)."""
        if len(data) > _io.MAX_BLOB:
            self.add_stream(Reader(data))
            return
        self._after_add(lib.sqlite3changegroup_add(self.ptr, len(data), ffi.from_buffer(data)))

    def add_stream(self, reader: Reader) -> None:
        """Add every change ``reader`` reads.

        Calls ``sqlite3changegroup_add_strm``."""
        rc = lib.sqlite3changegroup_add_strm(self.ptr, lib.sss_py_input, reader.handle)
        reader.reraise()
        self._after_add(rc)

    @staticmethod
    def _after_add(rc: int) -> None:
        if rc == lib.SQLITE_SCHEMA:
            raise InterfaceError("the changeset does not match this change group's schema or an "
                                 "earlier changeset's table definition (SQLITE_SCHEMA); the "
                                 "group's contents are now undefined")
        check_rc(rc, "adding to a change group")

    def add_current(self, it: Any, what: str) -> None:
        """Add the change iterator ``it`` (a conflict handler's) points at.

        Calls ``sqlite3changegroup_add_change``."""
        check_rc(lib.sqlite3changegroup_add_change(self.ptr, it), what)

    def output(self, what: str = "writing a change group") -> bytes:
        """Everything added so far, as one changeset (or patchset).

        Calls ``sqlite3changegroup_output``."""
        rc, blob = output_blob(lib.sqlite3changegroup_output, self.ptr)
        check_rc(rc, what)
        return blob

    def output_stream(self, writer: Writer) -> None:
        """Write everything added so far to ``writer``.

        Calls ``sqlite3changegroup_output_strm``."""
        rc = lib.sqlite3changegroup_output_strm(self.ptr, lib.sss_py_output, writer.handle)
        writer.reraise()
        check_rc(rc, "writing a change group")

    def delete(self) -> None:
        """Free the group (twice is fine).

        Calls ``sqlite3changegroup_delete``."""
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.sqlite3changegroup_delete(ptr)

    def close_before_connection(self) -> None:
        """The schema connection is closing (and held): free the group.

        Calls ``sqlite3changegroup_delete``."""
        self.delete()

    def __del__(self) -> None:
        if getattr(self, "ptr", None) is not None and self.free_on_collect:
            self.delete()


class RebaserHandle:
    """An ``sqlite3_rebaser*``: created by ``sqlite3rebaser_create``, freed
    by :meth:`delete` (``sqlite3rebaser_delete``)."""

    __slots__ = ("ptr",)

    def __init__(self) -> None:
        out = ffi.new("sqlite3_rebaser **")
        check_rc(lib.sqlite3rebaser_create(out), "creating a rebaser")
        self.ptr: Any = out[0]

    @property
    def closed(self) -> bool:
        """True once :meth:`delete` ran."""
        return self.ptr is None

    def configure(self, data: bytes) -> None:
        """Add rebase data (an apply's).

        Calls ``sqlite3rebaser_configure``."""
        check_rc(lib.sqlite3rebaser_configure(self.ptr, len(data), ffi.from_buffer(data)),
                 "configuring the rebaser")

    def rebase(self, data: bytes) -> bytes:
        """The changeset ``data`` rebased.

        Calls ``sqlite3rebaser_rebase``."""
        rc, blob = output_blob(lib.sqlite3rebaser_rebase, self.ptr, len(data), ffi.from_buffer(data))
        check_rc(rc, "rebasing a changeset")
        return blob

    def rebase_stream(self, reader: Reader, writer: Writer) -> None:
        """Rebase what ``reader`` reads into ``writer``.

        Calls ``sqlite3rebaser_rebase_strm``."""
        rc = lib.sqlite3rebaser_rebase_strm(self.ptr, lib.sss_py_input, reader.handle,
                                            lib.sss_py_output, writer.handle)
        reader.reraise()
        writer.reraise()
        check_rc(rc, "rebasing a changeset")

    def delete(self) -> None:
        """Free the rebaser (twice is fine).

        Calls ``sqlite3rebaser_delete``."""
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.sqlite3rebaser_delete(ptr)

    def __del__(self) -> None:
        if getattr(self, "ptr", None) is not None:
            self.delete()
