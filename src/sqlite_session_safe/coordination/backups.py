"""Safe copies of a coordinated database: a backup is only ever made by one
of the helpers below, never by copying a live file, and each copy is
checked with ``PRAGMA integrity_check`` before it is put in place.

Only three ways, each leaving a complete file at ``dest`` or nothing:

* :func:`online_backup` -- SQLite's online backup API (a consistent snapshot
  while writers go on);
* :func:`vacuum_into` -- ``VACUUM INTO`` (a consistent, compacted snapshot);
* :func:`copy_under_lock` -- a byte copy of the file taken while holding the
  outer write lock *and* SQLite's RESERVED lock, so no cooperating writer can
  change it meanwhile (and a killed writer's hot journal has been rolled back).

Each writes to a temporary name next to ``dest`` that names this process
(:mod:`.tempfiles`), runs ``PRAGMA integrity_check`` on it, fsyncs it, and only
then renames it to ``dest``.  A backup killed mid-copy leaves its temporary
file; the next backup into the same directory removes it once its process is
provably gone, never one of a backup still running.  The
result names the audit log position the copy holds: the copy's own
``max(seq)``, which is exact because the log is inside the database.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..binding.errors import CorruptError, InterfaceError, NotADBError
from ..sessions.connection import Connection  # with session(), as sss.Connection
from . import audit, tempfiles
from .db_errors import BackupCheckFailed

if TYPE_CHECKING:
    from .database import Database

__all__ = ["BackupResult", "online_backup", "vacuum_into", "copy_under_lock", "check_copy"]


@dataclass(frozen=True)
class BackupResult:
    """A checked copy.

    Attributes:
        path: the copy (absolute).
        method: ``"backup"``, ``"vacuum_into"`` or ``"copy_under_lock"``.
        seq: the audit log position the copy holds (0: empty or no log).
        integrity: what ``PRAGMA integrity_check`` said (always ``"ok"``;
            anything else raises :class:`BackupCheckFailed`).
        size: the copy's size in bytes.
        duration: seconds the copy took, checks included.
    """

    path: str
    method: str
    seq: int
    integrity: str
    size: int
    duration: float


def check_copy(path: str, name: str | None = None) -> tuple[str, int]:
    """Run ``PRAGMA integrity_check`` on the file at ``path``; return
    ("ok", log position).  Raises :class:`BackupCheckFailed` otherwise,
    including when the copy is too damaged for the check to run; its message
    names the copy ``name`` (default ``path``)."""
    con = Connection(path)
    try:
        try:
            rows = [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
        except (CorruptError, NotADBError) as e:
            rows = [str(e)]
        if rows != ["ok"]:
            raise BackupCheckFailed(
                f"the copy {name or path!r} failed PRAGMA integrity_check, so it was not kept: "
                f"{'; '.join(rows[:5])}", name or path, tuple(rows[:20])
            )
        return "ok", audit.log_position(con)
    finally:
        con.close()


def _dest(dest: str | os.PathLike[str], db: Database) -> tuple[str, str]:
    """(absolute destination, temporary name next to it).  Temporary copies
    that killed backups left in that directory are removed first."""
    path = os.path.abspath(os.fspath(dest))
    if os.path.realpath(path) == db.path:
        raise InterfaceError("the copy's destination is the database itself")
    if os.path.isdir(path):
        raise InterfaceError(f"the copy's destination {path!r} is a directory")
    tempfiles.check_directory(path, "the copy")
    tempfiles.remove_dead(os.path.dirname(path))
    return path, tempfiles.temp_path(path)


def _finish(tmp: str, path: str, method: str, started: float) -> BackupResult:
    """Check the copy at ``tmp``, make it durable, move it to ``path``."""
    try:
        integrity, seq = check_copy(tmp, path)
        tempfiles.fsync_file(tmp)
        tempfiles.replace_file(tmp, path)
    except BaseException:
        tempfiles.remove_with_sidecars(tmp)
        raise
    return BackupResult(path, method, seq, integrity, os.path.getsize(path), time.monotonic() - started)


def online_backup(db: Database, dest: str | os.PathLike[str], progress: Any, pages: int) -> BackupResult:
    """:meth:`Database.backup`: the online backup API into a fresh file."""
    started = time.monotonic()
    path, tmp = _dest(dest, db)
    try:
        with db.read() as r:
            # The source is the snapshot's own connection: with pages=-1 the
            # copy is taken in one step inside the read transaction.
            r.connection.backup(tmp, pages=pages, progress=progress)
    except BaseException:
        tempfiles.remove_with_sidecars(tmp)
        raise
    return _finish(tmp, path, "backup", started)


def vacuum_into(db: Database, dest: str | os.PathLike[str]) -> BackupResult:
    """:meth:`Database.vacuum_into`."""
    started = time.monotonic()
    path, tmp = _dest(dest, db)
    try:
        with db.read() as r:
            # VACUUM INTO is refused inside a transaction; it makes its own
            # read transaction, a consistent snapshot.
            r.connection.execute("ROLLBACK")
            try:
                r.connection.execute("PRAGMA query_only = OFF")  # VACUUM INTO writes only the new file
                r.connection.execute("VACUUM INTO ?", (tmp,))
            finally:
                r.connection.execute("PRAGMA query_only = ON")
                r.connection.execute("BEGIN DEFERRED")
    except BaseException:
        tempfiles.remove_with_sidecars(tmp)
        raise
    return _finish(tmp, path, "vacuum_into", started)


def copy_under_lock(db: Database, dest: str | os.PathLike[str]) -> BackupResult:
    """:meth:`Database.copy_under_lock`."""
    started = time.monotonic()
    path, tmp = _dest(dest, db)
    try:
        with db.write(label=None) as tx:
            con = tx.connection
            # BEGIN IMMEDIATE took SHARED (rolling back any hot journal) and
            # RESERVED (in wal mode: the WAL write lock): no one else can
            # change the file(s) while we copy.
            con.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            shutil.copyfile(db.path, tmp)
            if db.mode == "wal" and os.path.exists(db.path + "-wal"):
                # Committed pages may still be in the WAL: copy it too, then
                # fold it into the copy below (never the live -shm).
                shutil.copyfile(db.path + "-wal", tmp + "-wal")
        if db.mode == "wal":
            side = Connection(tmp)
            try:
                side.execute("PRAGMA journal_mode = DELETE")  # checkpoints and drops the copied WAL
            finally:
                side.close()
    except BaseException:
        tempfiles.remove_with_sidecars(tmp)
        raise
    # The write was empty, so it committed nothing and logged nothing.
    return _finish(tmp, path, "copy_under_lock", started)
