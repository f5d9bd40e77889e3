"""The coordinated database's modes, their pragmas, and telling a network
file system from a local one.

Three modes (PROTOCOL.md, "Coordinated database"; README.md, "Modes and the
outer lock"):

``trusted`` (default)
    The file system's byte-range locks work, so SQLite's own locks stay on.
    Rollback journal (``journal_mode=DELETE``), ``synchronous=FULL``,
    ``foreign_keys=ON``.  Writers take the outer directory lock, then
    ``BEGIN IMMEDIATE``; readers take no outer lock.
``network``
    For file systems whose byte-range locks can't be trusted (NFS, SMB, ...):
    the same pragmas, but readers too take the outer lock (its reader/writer
    variant), and every admission opens a fresh connection, because such file
    systems only promise close-to-open cache consistency.  ``nolock=True``
    also turns SQLite's own locks off (only safe when every reader and writer
    goes through the protocol).
``wal``
    Write-ahead log, asked for explicitly, on local disks only: SQLite's WAL
    index is shared memory, which does not work across hosts.  Refused when the
    path is on a network file system and that can be told.

How the file system type is told (:func:`filesystem_type`):

* Linux: the ``/proc/self/mountinfo`` entry (else ``/proc/mounts``) with the
  longest mount point that contains the path; its type field.
* macOS and the BSDs: ``statfs(2)`` through ctypes: ``f_fstypename``, and the
  ``MNT_LOCAL`` flag (a file system without it is remote).
* Windows: ``GetVolumeInformationW`` on the volume holding the path names
  its file system; ``GetDriveTypeW`` on the path's root tells a remote one
  (``DRIVE_REMOTE``), and UNC paths (``\\\\server\\share``) are remote.
* Anywhere else: unknown (``None``); ``wal`` is then allowed, and
  :meth:`Database.capabilities` says the check could not be made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from ..binding.errors import InterfaceError

__all__ = [
    "MODES",
    "ModeSpec",
    "NETWORK_FS_TYPES",
    "filesystem_type",
    "is_network_filesystem",
    "pragma_statements",
]


@dataclass(frozen=True)
class ModeSpec:
    """What one mode does.

    Attributes:
        name: ``"trusted"``, ``"network"`` or ``"wal"``.
        journal_mode: the journal mode the database is put in.
        read_lock: readers take the outer lock (reader/writer variant).
        reopen: open a fresh connection after every admission (close-to-open).
        local_only: refuse a path on a network file system.
        protocol: the lock protocol that admits writers: 2 (an operating-system
            lock, for file systems whose locks work) or 1 (lock directories
            with heartbeats, for those whose locks can't be trusted).
    """

    name: str
    journal_mode: str
    read_lock: bool
    reopen: bool
    local_only: bool
    protocol: int


MODES: dict[str, ModeSpec] = {
    "trusted": ModeSpec("trusted", "delete", read_lock=False, reopen=False, local_only=False, protocol=2),
    "network": ModeSpec("network", "delete", read_lock=True, reopen=True, local_only=False, protocol=1),
    "wal": ModeSpec("wal", "wal", read_lock=False, reopen=False, local_only=True, protocol=2),
}

#: The safe defaults every mode sets on every connection, before the user's
#: ``pragmas``.  ``journal_mode`` is set separately (once, under the lock).
SAFE_PRAGMAS: dict[str, object] = {"synchronous": "FULL", "foreign_keys": "ON"}

#: Pragmas the mode decides: a user value would contradict it.
_MODE_OWNED = {"journal_mode", "locking_mode"}

#: File system types whose locks or caches can't be trusted across hosts.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "coda",
        "9p", "v9fs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ocfs2", "gfs2",
        "davfs", "webdav", "afpfs", "fuse.sshfs", "sshfs", "fuse.s3fs", "fuse.gcsfuse",
        "fuse.rclone", "fuse.glusterfs", "fuse.cephfs", "fuse.beegfs",
    }
)

_PRAGMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRAGMA_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def pragma_statements(pragmas: dict[str, object] | None) -> list[str]:
    """The ``PRAGMA name = value`` statements for the safe defaults followed
    by the user's ``pragmas`` (which may override ``synchronous`` and
    ``foreign_keys``, never ``journal_mode`` or ``locking_mode``).

    Raises:
        InterfaceError: a name that is not an identifier, a value that is not
            an int, float, bool or a bare word, or a pragma the mode owns.
    """
    merged: dict[str, object] = dict(SAFE_PRAGMAS)
    for name, value in (pragmas or {}).items():
        if not isinstance(name, str) or not _PRAGMA_NAME.match(name):
            raise InterfaceError(f"pragma name must be an identifier, not {name!r}")
        if name.lower() in _MODE_OWNED:
            raise InterfaceError(
                f"pragma {name!r} is decided by the mode (trusted/network: rollback journal; "
                "wal: write-ahead log); pass mode='wal' instead of setting it"
            )
        merged[name.lower()] = value
    out = []
    for name, value in merged.items():
        if isinstance(value, bool):
            text = "ON" if value else "OFF"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif isinstance(value, str) and _PRAGMA_WORD.match(value):
            text = value
        else:
            raise InterfaceError(
                f"pragma {name!r}: value must be an int, float, bool or a bare word, not {value!r}"
            )
        out.append(f"PRAGMA {name} = {text}")
    return out


# -- file system type -----------------------------------------------------------


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _linux_mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) pairs of this process's mount namespace."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            rows = []
            for line in f:
                # ID parent major:minor root mountpoint options [optional...] - type source super
                left, sep, right = line.partition(" - ")
                if not sep:
                    continue
                fields, rest = left.split(), right.split()
                if len(fields) >= 5 and rest:
                    rows.append((_unescape_mount(fields[4]), rest[0]))
            return rows
    except OSError:
        pass
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            return [
                (_unescape_mount(p[1]), p[2]) for p in (line.split() for line in f) if len(p) >= 3
            ]
    except OSError:
        return []


def _linux_fstype(path: str) -> str | None:
    best, best_type = "", None
    for mount_point, fstype in _linux_mounts():
        # Later entries stack over earlier ones at the same point: >= keeps the last.
        mp = mount_point.rstrip("/") or "/"
        inside = path == mp or path.startswith(mp + "/") or mp == "/"
        if inside and len(mp) >= len(best):
            best, best_type = mp, fstype
    return best_type


class _StatfsDarwin(ctypes.Structure):
    # struct statfs with 64-bit inodes (the only layout on arm64 and the
    # default on x86_64 since 10.6); see <sys/mount.h>.
    _fields_ = [
        ("f_bsize", ctypes.c_uint32),
        ("f_iosize", ctypes.c_int32),
        ("f_blocks", ctypes.c_uint64),
        ("f_bfree", ctypes.c_uint64),
        ("f_bavail", ctypes.c_uint64),
        ("f_files", ctypes.c_uint64),
        ("f_ffree", ctypes.c_uint64),
        ("f_fsid", ctypes.c_int32 * 2),
        ("f_owner", ctypes.c_uint32),
        ("f_type", ctypes.c_uint32),
        ("f_flags", ctypes.c_uint32),
        ("f_fssubtype", ctypes.c_uint32),
        ("f_fstypename", ctypes.c_char * 16),
        ("f_mntonname", ctypes.c_char * 1024),
        ("f_mntfromname", ctypes.c_char * 1024),
        ("f_flags_ext", ctypes.c_uint32),
        ("f_reserved", ctypes.c_uint32 * 7),
    ]


_MNT_LOCAL = 0x00001000


def _darwin_statfs(path: str) -> tuple[str, bool] | None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn: Any = getattr(libc, "statfs$INODE64", None) if sys.platform == "darwin" else None
    if fn is None:
        fn = libc.statfs
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(_StatfsDarwin)]
    fn.restype = ctypes.c_int
    buf = _StatfsDarwin()
    if fn(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return buf.f_fstypename.decode("ascii", "replace"), bool(buf.f_flags & _MNT_LOCAL)


def _windows_remote(path: str) -> bool | None:
    if path.startswith(("\\\\?\\", "\\\\.\\")):  # extended-length: \\?\C:\... is local,
        path = path[4:]                             # \\?\UNC\server\share is not
        if path[:4].upper() == "UNC\\":
            return True
    if path.startswith("\\\\"):
        return True  # UNC path: \\server\share
    root = os.path.splitdrive(os.path.abspath(path))[0] + "\\"
    kernel32: Any = ctypes.windll.kernel32  # type: ignore[attr-defined, unused-ignore]
    kind = kernel32.GetDriveTypeW(ctypes.c_wchar_p(root))
    if kind in (0, 1):  # DRIVE_UNKNOWN, DRIVE_NO_ROOT_DIR
        return None
    return bool(kind == 4)  # DRIVE_REMOTE


def _windows_fstype(path: str) -> str | None:
    """The file system name Windows reports for the volume holding ``path``
    ("NTFS", "ReFS", "FAT32", "exFAT"; for a share, what its server says)."""
    kernel32: Any = ctypes.windll.kernel32  # type: ignore[attr-defined, unused-ignore]
    root = ctypes.create_unicode_buffer(max(len(path) + 2, 261))  # MAX_PATH + 1 at least
    if not kernel32.GetVolumePathNameW(ctypes.c_wchar_p(path), root, len(root)):
        return None  # the volume root: a drive, or the folder a volume is mounted on
    name = ctypes.create_unicode_buffer(261)
    if not kernel32.GetVolumeInformationW(ctypes.c_wchar_p(root.value), None, 0, None, None, None,
                                          name, len(name)):
        return None
    return name.value or None


def _existing(path: str) -> str:
    """The path itself, or its nearest existing ancestor (a database file
    may not exist yet: its directory decides)."""
    p = os.path.realpath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def filesystem_type(path: str | os.PathLike[str]) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``, ``"nfs4"``,
    ``"apfs"``, ...), or None when it can't be told on this platform."""
    p = _existing(os.fspath(path))
    if sys.platform.startswith("linux"):
        return _linux_fstype(p)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        try:
            got = _darwin_statfs(p) if sys.platform == "darwin" else None
        except (OSError, AttributeError):
            got = None
        return got[0] if got else None
    if sys.platform == "win32":
        try:
            return _windows_fstype(p)
        except (OSError, AttributeError):
            return None
    return None


def is_network_filesystem(path: str | os.PathLike[str]) -> bool | None:
    """True when ``path`` is on a network file system, False when it is
    known to be local, None when this platform can't tell."""
    p = _existing(os.fspath(path))
    if sys.platform == "win32":
        try:
            return _windows_remote(p)
        except (OSError, AttributeError):
            return None
    if sys.platform == "darwin":
        try:
            got = _darwin_statfs(p)
        except (OSError, AttributeError):
            got = None
        return None if got is None else not got[1]
    fstype = filesystem_type(p)
    if fstype is None:
        return None
    return fstype.lower() in NETWORK_FS_TYPES or fstype.lower().startswith(("nfs", "fuse.sshfs"))
