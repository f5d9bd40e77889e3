"""Importing a bundle (PROTOCOL.md §7) into a replica: replication from a
file instead of a live source, through the same cursor, so exactly once."""

from __future__ import annotations

import os

from ..sessions.apply import OnConflict
from .bundles import open_bundle
from .conflicts import ConflictRecorder
from .database import Database
from .log_errors import ReplicationError
from .replica_apply import ReplicationReport, apply_entries, open_replica
from .replica_cursor import read_cursor

__all__ = ["import_bundle"]


def import_bundle(replica: Database | str | os.PathLike[str], path: str | os.PathLike[str], *,
                  on_conflict: OnConflict = None, batch: int = 256) -> ReplicationReport:
    """Apply a bundle to ``replica`` with the replication cursor: exactly once.

    The bundle is verified whole first (:func:`open_bundle`), then read and
    applied entry by entry; an entry larger than a few MB is applied from
    the file by streaming, so memory stays bounded whatever the entry's or
    the bundle's size (see ``replica_apply.py`` for when a large entry still
    takes the in-memory path: a conflict, or a replica schema that differs).
    Entries at or below the replica's cursor for the bundle's source are
    skipped (importing a bundle twice applies nothing the second
    time; overlapping bundles apply only what is new); a bundle that starts
    after cursor + 1 is refused (a gap).  Conflicts with the replica's own
    writes follow ``on_conflict`` as in :func:`sss.replicate`.

    Raises:
        BundleError: the file is not a valid bundle (nothing changed).
        ReplicationError: a gap (nothing changed), or an entry that does not
            fit the replica's schema.
        ReplicationConflict: see :func:`sss.replicate`.
    """
    with open_bundle(path) as bundle:
        recorder = ConflictRecorder(on_conflict)
        db, owned = open_replica(replica)
        try:
            with db.read() as r:
                cursor = read_cursor(r.connection, bundle.source_id)
            if bundle.first_seq > cursor + 1:
                raise ReplicationError(
                    f"bundle {bundle.path!r} holds entries {bundle.first_seq}..{bundle.last_seq} of "
                    f"source {bundle.source_id}, but the replica's cursor is at {cursor}: entries "
                    f"{cursor + 1}..{bundle.first_seq - 1} are missing; import an earlier bundle "
                    "first (nothing was changed)", bundle.source_id, cursor + 1)
            return apply_entries(db, bundle.source_id, bundle.pending(),
                                 on_conflict=recorder, batch=batch, lag_base=bundle.last_seq)
        finally:
            if owned:
                db.close()

