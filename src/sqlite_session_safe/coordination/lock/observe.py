"""Looking at a lock path and judging it stale (PROTOCOL.md §1.2, §2.5).

:func:`look` classifies what is at a lock directory or reader marker,
never following a symlink; :class:`Observer` applies the staleness rule:
the same (owner id, heartbeat counter) seen unchanged for the stale
timeout on this process's own monotonic clock, or a same-host owner whose
process is gone."""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from dataclasses import dataclass

from .. import oslock, procinfo
from ..errors import (
    OwnerFormatError,
    ProtocolMismatch,
    UnknownProtocolVersion,
)
from ..owner import (
    LOCK_PLACE,
    MarkerRecord,
    OwnerRecord,
    parse_lock_document,
    read_owner_bytes,
)
from .paths import (
    LOCK_SUFFIX,
    READER_NAME,
)

log = logging.getLogger("sqlite_session_safe.lock")

DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_STALE_TIMEOUT = 15.0



@dataclass(frozen=True)
class Seen:
    """What is at a lock path, classified (never following a symlink).

    ``state``: ``absent``; ``held`` (a valid v1 ``owner.json``: ``record``);
    ``os-lock`` (a lock protocol v2 marker: ``marker``); or a refused state:
    ``symlink``, ``not-a-directory``, ``empty``, ``malformed``,
    ``unknown-version``, ``unreadable`` (``detail`` says why).
    """

    state: str
    record: OwnerRecord | None = None
    detail: str = ""
    marker: MarkerRecord | None = None



def lock_place(path: str) -> str | None:
    """Where a lock path is, for :func:`~.owner.parse_lock_document`: a
    reader marker (its name), the lock directory L, or None for the
    directories around them (temporary, released, tombs), whose records are
    only compared with what was judged."""
    name = os.path.basename(path)
    if READER_NAME.match(name):
        return name
    if name.endswith(LOCK_SUFFIX):
        return LOCK_PLACE
    return None


def look(path: str) -> Seen:
    """Classify what is at a lock path, never following a symlink there
    (the states are PROTOCOL.md §1.2's)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Seen("absent")
    except OSError as e:
        return Seen("unreadable", detail=f"cannot stat it: {e}")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return Seen("symlink", detail=f"it is a symbolic link (to {target!r})")
    if not stat.S_ISDIR(st.st_mode):
        return Seen("not-a-directory", detail="it is not a directory")
    place = lock_place(path)
    for _ in range(3):
        try:
            doc = parse_lock_document(read_owner_bytes(path), place)
            if isinstance(doc, MarkerRecord):
                return _marker_state(path, doc)
            return Seen("held", doc)
        except FileNotFoundError:
            try:
                entries = os.listdir(path)
            except FileNotFoundError:
                return Seen("absent")  # renamed away while we looked
            except OSError as e:
                return Seen("unreadable", detail=f"cannot list it: {e}")
            if not entries:
                return Seen("empty", detail="the lock directory is empty")
            if any(e == "owner.json" for e in entries):
                continue  # replaced under us on a platform without atomic replace
            return Seen(
                "malformed",
                detail=f"the lock directory has no owner.json (it holds {sorted(entries)[:5]})",
            )
        except UnknownProtocolVersion as e:
            return Seen("unknown-version", detail=str(e))
        except OwnerFormatError as e:
            return Seen("malformed", detail=str(e))
        except PermissionError as e:
            if sys.platform == "win32":
                time.sleep(0.002)  # owner.json being replaced right now
                continue
            return Seen("unreadable", detail=f"cannot read owner.json: {e}")
        except OSError as e:
            return Seen("unreadable", detail=f"cannot read owner.json: {e}")
    return Seen("unreadable", detail="owner.json kept changing while being read")



def _marker_state(path: str, marker: MarkerRecord) -> Seen:
    """A valid v2 marker at L is ``os-lock`` only with its admission file
    beside it, a regular file (PROTOCOL.md §1.2); looked at with ``lstat``,
    never opened here (oslock.py keeps the one descriptor a process has)."""
    admit = os.path.join(path, oslock.ADMIT_FILE)
    try:
        st = os.lstat(admit)
    except FileNotFoundError:
        return Seen("malformed", detail=f"a protocol v2 marker without its {oslock.ADMIT_FILE!r} file")
    except OSError as e:
        return Seen("unreadable", detail=f"cannot stat its {oslock.ADMIT_FILE!r} file: {e}")
    if not stat.S_ISREG(st.st_mode):
        return Seen("malformed", detail=f"its {oslock.ADMIT_FILE!r} is not a regular file")
    return Seen("os-lock", marker=marker,
                detail="writers are admitted by an operating-system lock (protocol v2)")


def protocol_mismatch(path: str, what: str) -> ProtocolMismatch:
    """The error for a lock-directory (v1, network mode) client that finds a
    lock protocol v2 marker at L."""
    return ProtocolMismatch(
        f"cannot {what}: {path!r} marks a database whose writers are admitted by an "
        "operating-system lock (lock protocol v2, used by modes 'trusted' and 'wal'); this "
        "client uses lock directories with heartbeats (protocol v1, mode 'network'). Every "
        "process must use one protocol per database file: open it with mode='trusted' or "
        "'wal', or, once no process uses it in those modes, remove the marker with "
        "`sqlite-session-safe lock --break --force`"
    )


def refuse_os_lock_marker(db_path: str, lock_path: str) -> None:
    """Raise :class:`ProtocolMismatch` when L is a lock protocol v2 marker
    (a v1 client must not use such a database at all)."""
    if look(lock_path).state == "os-lock":
        raise protocol_mismatch(db_path, "open it with lock directories (protocol v1)")


def refusal(path: str, seen: Seen) -> str:
    return (
        f"lock path {path!r} is in a state no compliant client leaves behind "
        f"({seen.state}): {seen.detail}. It counts as held by someone else and is never "
        "broken automatically; remove it by hand, or call break_stale_lock(db, force=True), "
        "only if you are sure no process uses this database"
    )


def describe_owner(rec: OwnerRecord) -> str:
    if rec.host_id and rec.host_id == procinfo.host_id():
        where = f"pid {rec.pid} on this host ({rec.host}), process {process_state(rec)}"
    else:
        where = f"pid {rec.pid} on host {rec.host!r}"
    what = "writing" if rec.mode == "write" else f"reading ({rec.phase})"
    return (
        f"held for {what} by owner {rec.owner_id} ({where}), heartbeat {rec.heartbeat} "
        f"every {rec.heartbeat_interval:g}s, stale after {rec.stale_timeout:g}s unchanged"
    )


def process_state(rec: OwnerRecord) -> str:
    """alive | dead | reused (pid alive, different start token) | unknown."""
    return procinfo.owner_process_state(rec.pid, rec.process_start)


class Observer:
    """Judges one lock path's staleness on this process's monotonic clock."""

    def __init__(self, stale_timeout: float, same_host_shortcut: bool) -> None:
        self.stale_timeout = stale_timeout
        self.same_host_shortcut = same_host_shortcut
        self.key: tuple[str, int] | None = None
        self.since = 0.0

    def judge(self, rec: OwnerRecord) -> tuple[bool, str]:
        """(stale?, why) for the record just read."""
        now = time.monotonic()
        if rec.state_key != self.key:
            self.key, self.since = rec.state_key, now
        if self.same_host_shortcut and rec.host_id and rec.host_id == procinfo.host_id():
            state = process_state(rec)
            if state == "dead":
                return True, f"its process {rec.pid} on this host is gone"
            if state == "reused":
                return True, f"pid {rec.pid} on this host now belongs to another process"
        limit = max(self.stale_timeout, rec.stale_timeout)
        waited = now - self.since
        if waited >= limit:
            return True, f"heartbeat {rec.heartbeat} unchanged for {waited:.2f}s (limit {limit:g}s)"
        return False, f"heartbeat {rec.heartbeat} unchanged for {waited:.2f}s of {limit:g}s"
