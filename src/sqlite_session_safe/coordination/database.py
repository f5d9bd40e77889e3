"""The coordinated database: ``sss.open(path)``.

Any number of cooperating processes (and threads) write one SQLite file
safely; every write comes back as a changeset and lands in an audit log that
can never disagree with the data.  PROTOCOL.md ("Coordinated database",
"Audit log") is the contract; this is its reference implementation.

:class:`Database` is assembled from one module per idea: :mod:`.db_base`
(opening: mode, lock, connections), :mod:`.write` (the write path: how
one write runs, step by step), :mod:`.group_commit` (the transactions the
writes of its threads share, admission, COMMIT, leases), :mod:`.read` (snapshots),
and the modules its other methods hand over to (:mod:`.optimistic`,
:mod:`.backups`, :mod:`.bundles`, :mod:`.undo`, :mod:`.retention`).
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from typing import Any, ParamSpec

from ..binding.library import compile_options, sqlite_version
from ..sessions.apply import OnConflict
from . import audit, backups, interrupts
from .backups import BackupResult
from .bundles import export_bundle
from .db_base import DEFAULT_LINGER, NO_PK_TABLES, Mode, scalar
from .interrupts import InterruptGuard
from .lock import LockInfo, break_stale_lock, inspect_lock
from .modes import filesystem_type, is_network_filesystem
from .optimistic import run_optimistic
from .read import ReadPath, ReadTx
from .retention import prune_log, register_replica, unregister_replica
from .undo import undo_entry
from .write import WritePath, WriteResult, WriteTiming, WriteTx

__all__ = ["Database", "WriteTx", "ReadTx", "WriteResult", "WriteTiming", "open_database", "DEFAULT_LINGER",
           "Mode"]


class Database(WritePath, ReadPath):
    """A SQLite database file shared by cooperating processes.  Made by
    :func:`open_database` (``sss.open``); see :mod:`.write` for what a
    write does, and PROTOCOL.md for the rules."""

    # -- optimistic writes and backups (optimistic.py, backups.py) -------------------

    def optimistic_write(self, compute: Callable[..., Any], label: str | None = None, *,
                         attempts: int = 10, backoff: float = 0.005,
                         max_backoff: float = 0.25) -> WriteResult:
        """Compute outside the lock, re-check declared preconditions under it.

        ``compute(ctx)`` reads a baseline without the write lock (``ctx`` is an
        :class:`~.optimistic.OptimisticContext`: ``ctx.expect(sql, params)``
        reads rows *and* declares them a precondition, ``ctx.execute`` just
        reads; each read is its own short snapshot, so nothing is held while
        compute works), and returns ``apply(tx)``, the write to make.
        Under the lock every ``expect`` query is run again; if any result
        differs, the write is rolled back and retried (exponential backoff
        with jitter from ``backoff`` up to ``max_backoff`` seconds), at most
        ``attempts`` times, then :class:`~.db_errors.OptimisticWriteFailed`.
        """
        return run_optimistic(self, compute, label, attempts, backoff, max_backoff)

    def backup(self, dest: str | os.PathLike[str], progress: Callable[[int, int], object] | None = None,
               pages: int = -1) -> BackupResult:
        """Copy the database with SQLite's online backup API into ``dest``
        (replaced atomically), check it with ``PRAGMA integrity_check``;
        returns a :class:`~.backups.BackupResult` with its log position."""
        return backups.online_backup(self, dest, progress, pages)

    def vacuum_into(self, dest: str | os.PathLike[str]) -> BackupResult:
        """``VACUUM INTO`` a new file ``dest`` (compacted), checked like :meth:`backup`."""
        return backups.vacuum_into(self, dest)

    def copy_under_lock(self, dest: str | os.PathLike[str]) -> BackupResult:
        """Copy the file byte for byte while holding the write lock (and
        SQLite's reserved lock), checked like :meth:`backup`."""
        return backups.copy_under_lock(self, dest)

    # -- the rest -----------------------------------------------------------------

    def tables_without_primary_key(self) -> list[str]:
        """User tables SQLite's session module cannot record (no PRIMARY KEY)."""
        with self.read() as r:
            return [row[0] for row in r.execute(NO_PK_TABLES)]

    def capabilities(self) -> dict[str, Any]:
        """What this database and this build can do, and how it is set up."""
        with self.read() as r:
            journal = str(scalar(r.connection, "PRAGMA journal_mode")).lower()
            sync = int(scalar(r.connection, "PRAGMA synchronous"))
            fks = bool(scalar(r.connection, "PRAGMA foreign_keys"))
            no_pk = [row[0] for row in r.execute(NO_PK_TABLES)]
            db_id = audit.database_id(r.connection)
            seq = r.seq
        network = is_network_filesystem(self.path)
        options = compile_options()
        return {
            "path": self.path,
            "mode": self.mode,
            "journal_mode": journal,
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, str(sync)),
            "foreign_keys": fks,
            "sqlite_locks": not self.nolock,
            "reader_lock": self.read_lock,
            "reopen_per_admission": self.reopen_per_admission,
            "lock_protocol_version": self.protocol,
            "audit": self.audit,
            "log_position": seq,
            "database_id": db_id,
            "sessions": "ENABLE_SESSION" in options and "ENABLE_PREUPDATE_HOOK" in options,
            "rowid_tables": self.rowid_tables,
            "tables_without_primary_key": no_pk,
            "backup_methods": ["backup", "vacuum_into", "copy_under_lock"],
            "filesystem_type": filesystem_type(self.path),
            "network_filesystem": network,
            "wal_allowed": network is not True,
            "lock_protocol": ("sqlite-session-safe.lock v2 (operating-system lock)"
                              if self.protocol == 2 else
                              "sqlite-session-safe.lock v1 (lock directories with heartbeats)"),
            "stale_timeout": self.stale_timeout,
            "heartbeat_interval": self.heartbeat_interval,
            "sqlite_version": sqlite_version(),
        }

    def inspect_lock(self) -> LockInfo | None:
        """Who holds this database's lock (None: nobody); see ``sss.inspect_lock``."""
        return inspect_lock(self.path)

    def break_stale_lock(self, force: bool = False) -> bool:
        """Break this database's lock if the protocol calls it stale (may
        watch for up to ``stale_timeout``); see ``sss.break_stale_lock``."""
        return break_stale_lock(self.path, force, stale_timeout=self.stale_timeout)

    # -- bundles and undo (their own modules) ----------------------------------------

    def export(self, path: str | os.PathLike[str], since: int = 0) -> Any:
        """Write the log entries after ``since`` to a bundle file ``path``
        (PROTOCOL.md §7; temp file + fsync + rename) for
        ``sss.import_bundle``; returns a :class:`~.bundles.ExportReport`."""
        return export_bundle(self, path, since)

    def undo(self, seq: int, *, on_conflict: OnConflict = None, label: str | None = None) -> WriteResult:
        """Apply the inverse of log entry ``seq`` as a new logged write
        (label ``"undo <seq>"`` by default).  Rows changed since entry
        ``seq`` are conflicts: by default ``UndoConflict`` lists them all and
        nothing changes; ``on_conflict`` resolves them as in
        ``Changeset.apply``.  See :func:`~.undo.undo_entry`."""
        return undo_entry(self, seq, on_conflict, label)

    # -- log retention (its own module: retention.py) --------------------------------

    def prune_log(self, *, older_than: float | Any = None, through: int | None = None,
                  dry_run: bool = False, nats_options: Any = None) -> Any:
        """Remove audit log entries that every registered replica has applied
        (``register_replica``; ``sss.replicate`` registers file and stream
        replicas of a Database source itself), plus those committed more
        than ``older_than`` seconds (or a timedelta) ago and those up to
        ``through``, whatever the replicas.  The newest entry always stays.
        A replica that needs a pruned entry gets ``sss.LogPruned`` (re-seed
        it from a backup).  Returns a :class:`~.retention.PruneReport`."""
        return prune_log(self, older_than=older_than, through=through, dry_run=dry_run,
                         nats_options=nats_options)

    def register_replica(self, location: str | os.PathLike[str], kind: str = "file") -> bool:
        """Record that ``location`` (a replica file, or with ``kind="stream"``
        a NATS stream URL) follows this database: ``prune_log`` keeps what it
        has not applied.  Returns False if it was registered already."""
        return register_replica(self, kind, location)

    def unregister_replica(self, location: str | os.PathLike[str], kind: str = "file") -> bool:
        """Forget a registered replica (it no longer holds back ``prune_log``)."""
        return unregister_replica(self, kind, location)

    @property
    def lingering(self) -> bool:
        """True while this Database keeps the write lock as a lease after a
        write (see ``linger``); :meth:`release_lease` ends it."""
        return self._lock.is_lingering

    def release_lease(self) -> None:
        """Give the write lock up now if a lease keeps it (no-op otherwise),
        e.g. before a long pause in writing.  A write in progress in another
        thread keeps it until that write ends."""
        if self._closed or os.getpid() != self._pid:
            return
        with InterruptGuard():
            interrupts.wait_lock(self._write_mutex.acquire, None)
            try:
                self._lock.end_linger()
            finally:
                self._write_mutex.release()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Close every connection of this Database (closing twice is fine).
        A write or read in progress in another thread makes this raise
        ``ThreadingError``; call it when they are done."""
        if self._closed:
            return
        if os.getpid() != self._pid:
            self._closed = True  # a forked child: the connections are the parent's
            return
        with InterruptGuard():  # Ctrl-C waits until every connection is closed
            interrupts.wait_lock(self._write_mutex.acquire, None)
            try:
                self._closed = True
                self._lock.end_linger()
                writer, self._writer = self._writer, None
                if writer is not None:
                    writer.close()
            finally:
                self._write_mutex.release()
            with self._readers_lock:
                readers, self._readers = self._readers, []
            for con in readers:
                con.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<sss.Database {self.path!r} mode={self.mode} {'closed' if self._closed else 'open'}>"


_P = ParamSpec("_P")


def _parameters_of(
    cls: Callable[_P, Database],
) -> Callable[[Callable[..., Database]], Callable[_P, Database]]:
    """Declare the decorated function, which hands its arguments on to
    ``cls``, with the parameters of ``cls``'s constructor.  They are written
    once (``DatabaseBase.__init__``), and ``help()``, the reference docs and
    type checkers show them for both; a call that does not fit them raises
    its TypeError here, naming the function rather than the constructor."""
    parameters = list(inspect.signature(cls).parameters.values())

    def declare(fn: Callable[..., Database]) -> Callable[_P, Database]:
        signature = inspect.Signature(
            parameters, return_annotation=inspect.signature(fn).return_annotation)

        @functools.wraps(fn)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> Database:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{fn.__name__}() {e}") from None
            return fn(*args, **kwargs)

        checked.__signature__ = signature  # type: ignore[attr-defined]
        checked.__annotations__ = {p.name: p.annotation for p in parameters}
        checked.__annotations__["return"] = signature.return_annotation
        # The annotations are the constructor's text, resolved (by
        # typing.get_type_hints, Sphinx) in fn's module: fail here, not in
        # the docs, if that module lacks a name they use.
        typing.get_type_hints(checked)
        return checked

    return declare


@_parameters_of(Database)
def open_database(*args: Any, **kwargs: Any) -> Database:
    """Open (creating if missing) a database file for coordinated use: ``sss.open``.

    Args:
        path: the database file (its directory must exist).
        mode: ``"trusted"`` (default), ``"network"`` or ``"wal"``; see
            :mod:`.modes` and PROTOCOL.md.
        timeout: seconds to wait for admission (None: forever).
        audit: keep the audit log (``_sss_log``).  ``False`` on a database
            that has a log is refused.
        pragmas: extra ``PRAGMA`` settings for every connection (cache_size,
            mmap_size, ...), on top of the mode's safe defaults.
        busy_timeout: SQLite's busy timeout in seconds (default: ``timeout``).
        stale_timeout, heartbeat_interval: the lock's (PROTOCOL.md §2.10).
        nolock: network mode only: also turn SQLite's own locks off.  Unsafe:
            refused unless ``unsafe_nolock=True`` is passed too, because a
            writer paused between its last lock check and its COMMIT can then
            overwrite the pages of a successor's acknowledged commit
            (PROTOCOL.md §4).
        unsafe_nolock: the explicit acceptance of that risk.
        rowid_tables: record tables without a primary key by rowid instead of
            refusing writes to them.
        linger: seconds to keep the write lock after a write (a lease), so
            the next write of this Database is admitted without re-acquiring
            it.  None: the mode's default (:data:`DEFAULT_LINGER`: 0 in every
            mode); 0 releases after every write.  In network mode a waiter
            gets the lock at once.  In trusted and wal modes the OS lock is
            kept too, but its holder cannot see who waits, so a run of leases
            is bounded (:data:`MAX_TENURE`, 50 ms): more throughput for a busy
            writer, longer waits for the others.  PROTOCOL.md §2.11, §2A.7.
    """
    return Database(*args, **kwargs)

