"""One ``sqlite3changeset_apply_v2`` call and the callbacks SQLite makes
during it (table filter, conflict handler).

:class:`ApplyCall` does the C side: it describes each conflicting change
(``csrc/sss_changeset.c``), collects the changes its subclass OMITs into a
change group, and re-raises what the subclass raised once SQLite has
unwound.  The subclass (the sessions layer's ``ApplyContext``) decides:
:meth:`ApplyCall.on_conflict` and :meth:`ApplyCall.on_fk_conflict` return
an action (``SQLITE_CHANGESET_OMIT`` / ``_REPLACE`` / ``_ABORT``).
"""

from __future__ import annotations

from typing import Any, Final

from .changegroup import ChangeGroupHandle
from .changeset_io import check_rc, decode, new_buffer, output_blob
from .raw import NULL, error_from_db, ffi, lib, text

__all__ = [
    "ApplyCall",
    "APPLY_NOSAVEPOINT",
    "APPLY_INVERT",
    "APPLY_IGNORENOOP",
    "APPLY_FKNOACTION",
    "CONFLICT_FOREIGN_KEY",
]

#: ``SQLITE_CHANGESETAPPLY_*`` flags.
APPLY_NOSAVEPOINT: Final[int] = int(lib.SQLITE_CHANGESETAPPLY_NOSAVEPOINT)
APPLY_INVERT: Final[int] = int(lib.SQLITE_CHANGESETAPPLY_INVERT)
APPLY_IGNORENOOP: Final[int] = int(lib.SQLITE_CHANGESETAPPLY_IGNORENOOP)
APPLY_FKNOACTION: Final[int] = int(lib.SQLITE_CHANGESETAPPLY_FKNOACTION)
#: ``SQLITE_CHANGESET_FOREIGN_KEY``: the conflict type about the whole apply.
CONFLICT_FOREIGN_KEY: Final[int] = int(lib.SQLITE_CHANGESET_FOREIGN_KEY)

_OMIT = int(lib.SQLITE_CHANGESET_OMIT)
_ABORT = int(lib.SQLITE_CHANGESET_ABORT)


class ApplyCall:
    """State SQLite's callbacks reach through ``ffi.new_handle(self)``.

    ``keep``: table name -> apply it (a table not in it is applied); asked
    only when :attr:`needs_filter` is set.  ``collect_rejected``: gather the
    changes resolved with OMIT (:meth:`rejected`)."""

    def __init__(self, keep: dict[str, bool], collect_rejected: bool) -> None:
        self.keep = keep
        self.handle = ffi.new_handle(self)
        #: What a callback raised: re-raised by :meth:`apply`.
        self.error: BaseException | None = None
        #: Set by the subclass when it resolved a conflict with ABORT: then
        #: :meth:`abort_error` is what :meth:`apply` raises.
        self.abort: Any = None
        self.buf = new_buffer(64 * 1024)
        #: Streaming applies: FOREIGN_KEY conflicts of chunks before the last
        #: are not final (later chunks may fix them): OMIT them silently.
        self.fk_interim = False
        self.fk_seen = False
        #: Whether SQLite must call the table filter (some table is excluded).
        self.needs_filter = False
        self.group: ChangeGroupHandle | None = None
        if collect_rejected:
            self.group = ChangeGroupHandle("collecting rejected changes")

    # -- for the subclass ---------------------------------------------------

    def on_conflict(self, ctype: int, raw: tuple[Any, ...]) -> int:
        """Decide a conflict of type ``ctype`` (not FOREIGN_KEY) on the change
        ``raw[:6]`` (a raw change tuple); ``raw[6]`` is the conflicting row
        (DATA, CONFLICT) or None.  Returns the action."""
        raise NotImplementedError

    def on_fk_conflict(self, count: int) -> int:
        """Decide the final FOREIGN_KEY conflict (``count`` violations)."""
        raise NotImplementedError

    def abort_error(self) -> BaseException:
        """The exception for an apply that a conflict resolution ABORTed."""
        raise NotImplementedError

    def fail(self, exc: BaseException) -> None:
        """Keep the first exception a callback raised."""
        if self.error is None:
            self.error = exc

    # -- the call -----------------------------------------------------------

    def apply(self, db: Any, data: bytes, flags: int, want_rebase: bool) -> bytes | None:
        """Apply ``data`` to connection handle ``db`` (held by the caller);
        the rebase data when ``want_rebase``.  Raises what a callback
        raised, :meth:`abort_error` for an ABORT, else the error SQLite
        reported.

        Calls ``sqlite3changeset_apply_v2``."""
        xfilter = lib.sss_py_apply_filter if self.needs_filter else NULL
        source = ffi.from_buffer(data)
        if want_rebase:
            rc, rebase = output_blob(
                lambda n, p: lib.sqlite3changeset_apply_v2(
                    db, len(data), source, xfilter, lib.sss_py_apply_conflict, self.handle, p, n,
                    flags))
        else:
            rc = lib.sqlite3changeset_apply_v2(db, len(data), source, xfilter,
                                               lib.sss_py_apply_conflict, self.handle, NULL, NULL,
                                               flags)
            rebase = None
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        if rc == lib.SQLITE_OK:
            return rebase
        if self.abort is not None and (rc == lib.SQLITE_ABORT or rc & 0xFF == lib.SQLITE_CONSTRAINT):
            raise self.abort_error()
        if rc & 0xFF in (lib.SQLITE_CORRUPT, lib.SQLITE_RANGE):
            check_rc(rc, "applying")
        raise error_from_db(db, rc, "applying a changeset")

    def rejected(self) -> bytes | None:
        """The changes resolved with OMIT, as one blob (None when not collected).

        Calls ``sqlite3changegroup_output``."""
        if self.group is None:
            return None
        return self.group.output("collecting rejected changes")


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_apply_filter(ctx: Any, table: Any) -> int:
    call = ffi.from_handle(ctx)
    return 1 if call.keep.get(text(table), True) else 0  # never raises


@ffi.def_extern()  # type: ignore[misc,untyped-decorator,unused-ignore]
def sss_py_apply_conflict(ctx: Any, ctype: int, it: Any) -> int:
    """The conflict handler: describe the change (``sss_change_describe``,
    or ``sqlite3changeset_fk_conflicts``), let the ApplyCall decide, add an
    OMITted change to the rejected ones (``sqlite3changegroup_add_change``).
    All in this one function: it runs once per conflict."""
    call = ffi.from_handle(ctx)
    try:
        if call.error is not None:
            return _ABORT
        if ctype == CONFLICT_FOREIGN_KEY:
            call.fk_seen = True
            if call.fk_interim:
                return _OMIT
            n = ffi.new("int *")
            lib.sqlite3changeset_fk_conflicts(it, n)
            return int(call.on_fk_conflict(int(n[0])))
        buf = call.buf
        rc = lib.sss_change_describe(it, ctype, buf)
        if rc != lib.SQLITE_OK:
            check_rc(rc, "reading a conflicting change")
        action = int(call.on_conflict(ctype, decode(buf)))
        if action == _OMIT and call.group is not None:
            call.group.add_current(it, "collecting a rejected change")
        return action
    except BaseException as exc:
        call.fail(exc)
        return _ABORT
