"""Log retention: which replicas a source knows of, and pruning the entries
they all have (PROTOCOL.md §9.1).

The audit log keeps every changeset, so a database with a log is about twice
the size of its data.  ``db.prune_log()`` removes the entries every
**registered** replica has applied, or those older than a retention the
user sets.  Registrations and the prune point are ``_sss_meta`` rows, so the
log's table layout (§5.2) is unchanged:

* ``('pruned_through', N)``: entries 1..N were removed; the log holds
  N+1..position without gaps.
* ``('replica <kind> <location>', JSON)``: a replica of this database:
  ``kind`` ``file`` (its path; its cursor is read from its ``_sss_replica``
  table) or ``stream`` (a NATS stream URL without secrets; what it holds is
  read from the stream).

The newest entry is never pruned, so ``max(seq)`` stays the log's position
and every client's append (§5.3 step 9) stays correct.  A replica whose
cursor is below the prune point gets :class:`LogPruned`, which says to re-seed
it from a backup (a copy starts at its own position, §5.6).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ..binding.errors import Error, InterfaceError
from ..sessions.connection import Connection  # with session(), as sss.Connection
from . import audit
from .db_base import DatabaseBase
from .jetstream import last_published
from .replica_cursor import read_cursor
from .write import WriteTx

if TYPE_CHECKING:
    from .database import Database
from .log_errors import ReplicationError

__all__ = [
    "PRUNED_KEY",
    "REPLICA_PREFIX",
    "PruneReport",
    "pruned_through",
    "registered_replicas",
    "register_replica",
    "unregister_replica",
    "prune_log",
    "meta_write",
]

log = logging.getLogger("sqlite_session_safe.retention")

#: The ``_sss_meta`` key of the prune point.
PRUNED_KEY = "pruned_through"
#: The ``_sss_meta`` key prefix of a registered replica: ``"replica <kind> <location>"``.
REPLICA_PREFIX = "replica "
_KINDS = ("file", "stream")


def pruned_through(con: Connection) -> int:
    """The last pruned seq of the database ``con`` is on (0: never pruned)."""
    if audit.database_id(con) is None:
        return 0
    row = con.execute(f"SELECT value FROM {audit.META_TABLE} WHERE key = ?", (PRUNED_KEY,)).fetchone()
    return int(row[0]) if row is not None else 0


def registered_replicas(con: Connection) -> dict[str, tuple[str, str]]:
    """The registered replicas: key -> (kind, location)."""
    if audit.database_id(con) is None:
        return {}
    out = {}
    for key, value in con.execute(f"SELECT key, value FROM {audit.META_TABLE} WHERE key >= ? AND key < ?",
                                  (REPLICA_PREFIX, REPLICA_PREFIX[:-1] + "!")):
        try:
            doc = json.loads(value)
            out[str(key)] = (str(doc["kind"]), str(doc["location"]))
        except (ValueError, KeyError, TypeError):
            out[str(key)] = ("unknown", str(key)[len(REPLICA_PREFIX):])
    return out


def _key(kind: str, location: str) -> str:
    return f"{REPLICA_PREFIX}{kind} {location}"


def _location(kind: str, location: str | os.PathLike[str]) -> str:
    if kind not in _KINDS:
        raise InterfaceError(f"replica kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    return os.path.realpath(os.fspath(location)) if kind == "file" else str(location)


def meta_write(db: Database, label: str, sql: str, params: tuple[Any, ...]) -> None:
    """One admitted write of ``_sss_meta`` rows (never recorded: no log
    entry, but the write lock and the fencing epoch as for any write)."""
    tx = WriteTx(db, label, commit_empty=True)
    with tx:
        con = tx.connection
        audit.ensure_log(con)
        con.execute(sql, params)


def register_replica(source: Any, kind: str, location: str | os.PathLike[str],
                     source_id: str | None = None) -> bool:
    """Record on ``source`` (a Database, or replication's source wrapper
    holding one) that ``location`` replicates it, so that ``prune_log``
    keeps what it has not applied.  Returns whether a row was added.  A
    source given as a bare path is not written to (its mode is unknown):
    register it with ``db.register_replica`` then."""
    db = cast("Database | None", source if isinstance(source, DatabaseBase) else getattr(source, "db", None))
    if db is None:
        return False
    loc = _location(kind, location)
    key = _key(kind, loc)
    with db.read() as r:
        if audit.database_id(r.connection) is None or key in registered_replicas(r.connection):
            return False
    try:
        meta_write(db, f"register replica {kind} {loc}",
                    f"INSERT OR IGNORE INTO {audit.META_TABLE} (key, value) VALUES (?, ?)",
                    (key, json.dumps({"kind": kind, "location": loc, "registered_at": audit.utc_now()})))
    except Error as e:  # a busy or read-only source: replication goes on unregistered
        log.warning("could not register replica %s on %s: %s", loc, db.path, e)
        return False
    return True


def unregister_replica(db: Database, kind: str, location: str | os.PathLike[str]) -> bool:
    """Forget a registered replica (it no longer holds back ``prune_log``)."""
    loc = _location(kind, location)
    with db.read() as r:
        if _key(kind, loc) not in registered_replicas(r.connection):
            return False
    meta_write(db, f"unregister replica {kind} {loc}",
                f"DELETE FROM {audit.META_TABLE} WHERE key = ?", (_key(kind, loc),))
    return True


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What :meth:`Database.prune_log` did (or, with ``dry_run``, would do).

    Attributes:
        removed: entries removed by this call.
        pruned_through: the prune point afterwards (entries up to it are gone).
        position: the log's position (its newest entry, never pruned).
        bytes_removed: bytes of changesets and SQL removed.
        log_bytes: bytes of changesets and SQL left in the log.
        replicas: each registered replica's applied seq (None: it could not
            be read, so it holds back pruning).
        dry_run: nothing was changed.
    """

    removed: int
    pruned_through: int
    position: int
    bytes_removed: int
    log_bytes: int
    replicas: dict[str, int | None]
    dry_run: bool = False


def _replica_cursor(kind: str, location: str, source_id: str,
                    nats_options: Mapping[str, Any] | None) -> int | None:
    try:
        if kind == "file":
            if not os.path.isfile(location):
                return None
            con = Connection(location, timeout=10.0)
            try:
                con.execute("PRAGMA query_only = ON")
                return read_cursor(con, source_id)
            finally:
                con.close()
        if kind == "stream":
            return last_published(location, source_id, nats_options=nats_options)
    except Error as e:
        log.warning("replica %s %s cannot be read (%s): it holds back pruning", kind, location, e)
    return None


def _bytes(con: Connection, where: str, params: tuple[Any, ...]) -> int:
    row = con.execute(f"SELECT coalesce(sum(coalesce(length(changeset), length(CAST(sql AS BLOB)))), 0) "
                      f"FROM {audit.LOG_TABLE} WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def prune_log(db: Database, *, older_than: float | _dt.timedelta | None = None,
              through: int | None = None, dry_run: bool = False,
              nats_options: Mapping[str, Any] | None = None) -> PruneReport:
    """Remove the log entries every registered replica has applied; see
    :meth:`Database.prune_log`."""
    if through is not None and (isinstance(through, bool) or not isinstance(through, int) or through < 0):
        raise InterfaceError(f"through must be an int >= 0, not {through!r}")
    if isinstance(older_than, _dt.timedelta):
        older_than = older_than.total_seconds()
    if older_than is not None and (isinstance(older_than, bool) or not isinstance(older_than, (int, float))
                                   or older_than < 0):
        raise InterfaceError(f"older_than must be seconds >= 0 or a timedelta, not {older_than!r}")
    with db.read() as r:
        con = r.connection
        assert con is not None
        sid = audit.database_id(con)
        if sid is None:
            raise ReplicationError(f"{db.path!r} keeps no audit log: nothing to prune")
        position = audit.log_position(con)
        done = pruned_through(con)
        replicas = registered_replicas(con)
        upto = 0
        if older_than is not None:
            cutoff = (_dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=older_than))
            stamp = cutoff.isoformat(timespec="microseconds")[:-6] + "Z"
            row = con.execute(f"SELECT coalesce(max(seq), 0) FROM {audit.LOG_TABLE} "
                              "WHERE committed_at < ?", (stamp,)).fetchone()
            upto = int(row[0]) if row else 0
    cursors = {key: _replica_cursor(kind, loc, sid, nats_options) for key, (kind, loc) in replicas.items()}
    if replicas:
        known = [c for c in cursors.values()]
        upto = max(upto, min(c if c is not None else 0 for c in known))
    if through is not None:
        upto = max(upto, through)
    upto = min(upto, position - 1)  # the newest entry stays: max(seq) is the position
    if upto <= done or dry_run:
        with db.read() as r:
            removed_bytes = _bytes(r.connection, "seq <= ?", (upto,)) if upto > done else 0
            left = _bytes(r.connection, "1", ())
        return PruneReport(max(0, upto - done), max(done, upto) if dry_run else done, position,
                           removed_bytes, left - removed_bytes, cursors, dry_run)
    tx = WriteTx(db, f"prune log through {upto}", commit_empty=True)
    with tx:
        con = tx.connection
        now_done = pruned_through(con)
        removed_bytes = _bytes(con, "seq <= ?", (upto,))
        cur = con.execute(f"DELETE FROM {audit.LOG_TABLE} WHERE seq <= ?", (upto,))
        removed = max(0, cur.rowcount)
        con.execute(f"INSERT INTO {audit.META_TABLE} (key, value) VALUES (?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value", (PRUNED_KEY, str(max(upto, now_done))))
        left = _bytes(con, "1", ())
    return PruneReport(removed, max(upto, now_done), position, removed_bytes, left, cursors)
