"""Describing a database's lock without changing anything: :func:`inspect_lock`
and its :class:`LockInfo` (both lock protocols, reader markers, leftovers)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from .. import oslock, procinfo
from ..owner import (
    AdmissionRecord,
    OwnerRecord,
)
from .observe import (
    Seen,
    describe_owner,
    look,
    process_state,
    refusal,
)
from .paths import (
    READER_NAME,
    lock_paths,
    reader_markers,
)


@dataclass(frozen=True)
class LockInfo:
    """What is at a lock path (the writer's lock directory or a reader marker).

    Attributes:
        path: the lock directory (or reader marker) path.
        protocol: the lock protocol in use: 1 (lock directories with
            heartbeats: network mode) or 2 (an operating-system lock:
            trusted and wal modes; ``owner`` is then an
            :class:`~.owner.AdmissionRecord`, and there is nothing to break).
        state: ``"held"``, ``"symlink"``, ``"not-a-directory"``, ``"empty"``,
            ``"malformed"``, ``"unknown-version"``, ``"unreadable"``, or
            ``"free"`` (no writer; only reader markers, listed in ``readers``).
        owner: the parsed ``owner.json`` when ``state == "held"``.
        process: for a same-host owner ``"alive"``, ``"dead"``, ``"reused"``
            or ``"unknown"``; ``"other-host"`` otherwise; ``""`` without owner.
        message: one readable sentence; ``str(info)`` returns it.
        breakable_now: True if the rules call it stale at once (same-host
            owner whose process is gone); other owners need watching.
        readers: reader markers (network mode), each a LockInfo.
        leftovers: temporary, released or broken directories left behind by
            crashed clients; not part of the lock state, safe to delete when
            no client is mid-operation.
    """

    path: str
    state: str
    owner: OwnerRecord | AdmissionRecord | None
    process: str
    message: str
    breakable_now: bool = False
    readers: tuple[LockInfo, ...] = ()
    leftovers: tuple[str, ...] = field(default=())
    protocol: int = 1

    def __str__(self) -> str:
        return self.message


def _info_for(path: str, seen: Seen, readers: tuple[LockInfo, ...] = ()) -> LockInfo:
    if seen.state != "held" or seen.record is None:
        return LockInfo(path, seen.state, None, "", refusal(path, seen), False, readers)
    rec = seen.record
    same = bool(rec.host_id) and rec.host_id == procinfo.host_id()
    process = process_state(rec) if same else "other-host"
    msg = f"lock {path!r} is {describe_owner(rec)}"
    dead = process in ("dead", "reused")
    if dead:
        msg += "; that process is gone, so the lock is stale: break_stale_lock() breaks it at once"
    return LockInfo(path, "held", rec, process, msg, dead, readers)


def _os_lock_info(lock_path: str, readers: tuple[LockInfo, ...],
                  leftovers: tuple[str, ...]) -> LockInfo | None:
    """A lock protocol v2 lock (trusted/wal): held or not is the OS lock's
    say; the record in the admission file names the holder."""
    state, why = oslock.admit_file(lock_path).problem()
    if state:
        return LockInfo(lock_path, state, None, "", refusal(lock_path, Seen(state, detail=why)), False,
                        readers, leftovers, protocol=2)
    p = oslock.probe(lock_path)
    if not p.held:
        if not readers:
            return None
        msg = f"no writer holds {lock_path!r}; {len(readers)} reader marker(s) present"
        return LockInfo(lock_path, "free", None, "", msg, False, readers, leftovers)
    rec = p.record
    process = ""
    if rec is not None:
        same = bool(rec.host_id) and rec.host_id == procinfo.host_id()
        process = procinfo.owner_process_state(rec.pid, rec.process_start) if same else "other-host"
    _held, who = oslock.describe_os_holder(lock_path)
    return LockInfo(lock_path, "held", rec, process, f"lock {lock_path!r} is {who}", False, readers,
                    leftovers, protocol=2)


def inspect_lock(db_path: str | os.PathLike[str]) -> LockInfo | None:
    """Describe the lock of a database, or return None when nobody holds it.

    Never changes anything.  A lock directory in a state no compliant client
    leaves behind (malformed or missing ``owner.json``, empty directory,
    unknown protocol version, symlink, non-directory) is described with the
    reason it is never broken automatically.
    """
    _db, lock_path, readers_path = lock_paths(db_path)
    readers = tuple(
        _info_for(p, s) for p in sorted(reader_markers(readers_path)) if (s := look(p)).state != "absent"
    )
    parent = os.path.dirname(lock_path)
    base = os.path.basename(lock_path)
    try:
        leftovers = tuple(
            sorted(os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(base + "."))
        )
    except OSError:
        leftovers = ()
    if os.path.isdir(readers_path):
        leftovers += tuple(
            sorted(
                os.path.join(readers_path, n) for n in os.listdir(readers_path) if not READER_NAME.match(n)
            )
        )
    seen = look(lock_path)
    if seen.state == "os-lock":
        return _os_lock_info(lock_path, readers, leftovers)
    if seen.state == "absent":
        if not readers:
            return None
        msg = f"no writer holds {lock_path!r}; {len(readers)} reader marker(s) present"
        return LockInfo(lock_path, "free", None, "", msg, False, readers, leftovers)
    return dataclasses.replace(_info_for(lock_path, seen, readers), leftovers=leftovers)
