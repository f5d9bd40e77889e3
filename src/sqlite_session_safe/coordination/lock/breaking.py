"""Breaking a stale lock (PROTOCOL.md §2.6, §2.7): rename it to a tomb named
after exactly the judged state, then check what was renamed; tombs are swept
at the next release.  Also :func:`break_stale_lock`, the public entry."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sys
import time

from .. import interrupts
from ..errors import (
    LockRefused,
)
from ..owner import (
    OwnerRecord,
    fsync_dir,
)
from .observe import (
    DEFAULT_STALE_TIMEOUT,
    Observer,
    look,
    refusal,
)
from .paths import (
    lock_paths,
    reader_markers,
)
from .waiting import (
    backoff,
    check_seconds,
)

log = logging.getLogger("sqlite_session_safe.lock")

# rename() of a directory onto an existing one fails with one of these.
_TAKEN_ERRNOS = {errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}

#: Windows refuses to rename a directory while a process has a file in it open
#: (a waiter reading owner.json, a virus scanner): release and the breaking of
#: a stale lock retry for this long (seconds) instead of failing.  Elsewhere
#: such a refusal is final.
SHARING_RETRY = 2.0 if sys.platform == "win32" else 0.0


def rename_taken(e: OSError, dest: str) -> bool:
    """True when rename failed because ``dest`` is taken: contention, not a
    real error.

    File systems spell "taken" differently: EEXIST/ENOTEMPTY locally, EPERM
    over sshfs (SFTP carries no errno), a sharing violation on Windows.  So
    any failure while something is at ``dest`` counts as taken; a failure
    with nothing there is a real error (read-only directory, full disk...).
    """
    if isinstance(e, FileExistsError) or e.errno in _TAKEN_ERRNOS:
        return True
    try:
        os.lstat(dest)
    except OSError:
        return False
    return True


def remove_tree(path: str) -> None:
    """Delete a directory we renamed away (or a symlink), ignoring races."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path):  # a paused holder wrote into it meanwhile
                shutil.rmtree(path, ignore_errors=True)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)


def tomb_name(path: str, rec: OwnerRecord) -> str:
    # Derived from exactly the judged state, so of all clients that judged the
    # same state stale only one rename can succeed, and a late one fails
    # against the existing tomb instead of renaming a newer owner's lock.
    return f"{path}.broken-{rec.owner_id}-{rec.heartbeat}"


def break_judged(path: str, rec: OwnerRecord, why: str) -> str | None:
    """Break the lock at ``path`` judged stale as ``rec``.

    Returns the tomb path if this call renamed a directory away (the caller
    deletes it later), None if another client broke or changed it first.
    """
    tomb = tomb_name(path, rec)
    # Windows refuses the rename while a process has a file inside open (a
    # waiter reading owner.json): retried for SHARING_RETRY, as release is.
    deadline = time.monotonic() + SHARING_RETRY
    while True:
        seen = look(path)  # re-read right before renaming: the state must be the one judged
        if seen.state != "held" or seen.record is None or seen.record.state_key != rec.state_key:
            return None
        try:
            os.rename(path, tomb)
            break
        except FileNotFoundError:
            return None
        except OSError as e:
            if rename_taken(e, tomb):
                return None  # the tomb exists: someone else broke exactly this state
            if not isinstance(e, PermissionError) or time.monotonic() >= deadline:
                raise
        time.sleep(0.002)
    after = look(tomb)
    if after.record is not None and after.record.state_key == rec.state_key:
        log.warning("broke stale lock %s of owner %s: %s", path, rec.owner_id, why)
    else:
        # What we renamed is not what we judged: a live holder lost its lock
        # to us.  It finds out at its next heartbeat or check (its directory
        # is no longer at the lock path); the fencing epoch covers the rest.
        got = after.record.owner_id if after.record else after.state
        log.error("renamed lock %s judged stale as %s but it was %s", path, rec.state_key, got)
    try:
        fsync_dir(os.path.dirname(path))
    except OSError:
        pass
    return tomb


def sweep_tombs(lock_path: str) -> None:
    """Delete the tombs of broken lock directories and the leftovers of
    releases (done at each release, PROTOCOL.md §2.7).

    A tomb outlives the race that made it: a breaker that judged the same
    stale state but was delayed before its rename fails against the tomb
    instead of renaming the next owner's lock.  By the time the next owner
    releases, that race is a whole tenure old.  A released directory whose
    deletion failed (a waiter's announcement arrived in it meanwhile) is
    never lock state again: its name is never renamed back.
    """
    parent, base = os.path.split(lock_path)
    pattern = re.compile(re.escape(base) + r"\.(?:broken-[0-9a-f]{32}-[0-9]+|released-[0-9a-f]{32})\Z")
    try:
        names = [n for n in os.listdir(parent) if pattern.match(n)]
    except OSError:
        return
    for name in names:
        remove_tree(os.path.join(parent, name))



def break_stale_lock(
    db_path: str | os.PathLike[str],
    force: bool = False,
    *,
    stale_timeout: float = DEFAULT_STALE_TIMEOUT,
    same_host_shortcut: bool = True,
) -> bool:
    """Break the database's lock (and stale reader markers) if the rules say so.

    Without ``force``, an owner is broken only when it is stale: a same-host
    owner whose process is gone (at once), or a heartbeat seen unchanged for
    ``max(stale_timeout, owner's stale_timeout)`` on this process's monotonic
    clock -- so this call may block that long while it watches.  A live owner
    (its heartbeat moves) is left alone.

    With ``force=True`` whatever is at the lock path is renamed away and
    deleted at once, including states never broken automatically.

    Returns:
        True if something was broken.
    Raises:
        LockRefused: without ``force``, the lock path is malformed, empty, of
            an unknown protocol version, a symlink or not a directory.
    """
    check_seconds("stale_timeout", stale_timeout)
    _db, lock_path, readers_path = lock_paths(db_path)
    targets = [lock_path] + reader_markers(readers_path)
    if force:
        broke = False
        for path in targets:
            if look(path).state == "absent":
                continue
            forced_tomb = f"{path}.broken-forced-{os.urandom(8).hex()}"
            try:
                os.rename(path, forced_tomb)
            except FileNotFoundError:
                continue
            log.warning("force-broke lock %s", path)
            remove_tree(forced_tomb)
            broke = True
        if broke:
            fsync_dir(os.path.dirname(lock_path))
        return broke
    seen0 = look(lock_path)
    if seen0.state == "os-lock":
        raise LockRefused(
            f"{lock_path!r} is a lock protocol v2 marker (trusted/wal mode): its writers are "
            "admitted by an operating-system lock, which the kernel releases when its holder "
            "dies, so there is nothing stale to break; remove the marker only with force=True, "
            "once no process uses the database")
    if seen0.state not in ("absent", "held"):
        raise LockRefused(refusal(lock_path, seen0))
    observers = {p: Observer(stale_timeout, same_host_shortcut) for p in targets}
    pending = set(targets)
    broke = False
    attempt = 0
    while pending:
        for path in sorted(pending):
            seen = look(path)
            if seen.state != "held" or seen.record is None:
                pending.discard(path)  # gone, or a marker in a refused state
                continue
            obs = observers[path]
            if obs.key is not None and obs.key != seen.record.state_key:
                pending.discard(path)  # its heartbeat moved: alive
                continue
            stale, why = obs.judge(seen.record)
            if stale:
                tomb = break_judged(path, seen.record, why)
                if tomb is not None:
                    if path != lock_path:
                        remove_tree(tomb)  # lock tombs wait for the next release
                    broke = True
                pending.discard(path)
        if pending:
            time.sleep(min(0.25, backoff(attempt) * 4))
            interrupts.checkpoint()
            attempt += 1
    return broke
