"""The documents of the lock protocols, and how they are written.

* v1 (PROTOCOL.md §2.2): ``owner.json`` in the lock directory, the holder's
  record with its heartbeat (:class:`OwnerRecord`);
* v2 (PROTOCOL.md §2A): ``owner.json`` in the permanent lock directory is a
  *marker* saying writers are admitted by an operating-system lock
  (:class:`MarkerRecord`), and the holder's record lives in the admission
  file (:class:`AdmissionRecord`).

Parsing is strict about the fields the protocol relies on and ignores fields
it does not know (so a version can grow by adding optional fields); a
document with an unknown ``version`` is refused as a whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import OwnerFormatError, UnknownProtocolVersion
from .wire import decode_object

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "OWNER_FILE",
    "MAX_OWNER_BYTES",
    "OwnerRecord",
    "new_owner_id",
    "parse_owner",
    "parse_lock_document",
    "LOCK_PLACE",
    "READER_PREFIX",
    "MAX_PID",
    "MAX_HEARTBEAT",
    "read_owner_bytes",
    "write_owner_file",
    "fsync_dir",
    "MARKER_VERSION",
    "OS_LOCK",
    "ADMISSION_RECORD_BYTES",
    "MarkerRecord",
    "AdmissionRecord",
    "parse_marker",
    "parse_admission",
]

PROTOCOL_NAME = "sqlite-session-safe.lock"
PROTOCOL_VERSION = 1
OWNER_FILE = "owner.json"
#: A larger owner.json is malformed: no valid one comes near this.
MAX_OWNER_BYTES = 64 * 1024

#: The integer fields' upper bounds (PROTOCOL.md §2.2): a pid fits a C int in
#: every system; a heartbeat stays exact in every language's number type
#: (IEEE doubles count by one up to 2**53).
MAX_PID = 2**31 - 1
MAX_HEARTBEAT = 2**53 - 1
#: ``place`` of :func:`parse_lock_document` for the lock directory L.
LOCK_PLACE = "lock"
#: A reader marker's name is this prefix and its owner's id.
READER_PREFIX = "reader-"

_OWNER_ID = re.compile(r"[0-9a-f]{32}")
_MODES = ("write", "read")
_PHASES = ("active", "waiting")
_HAS_DIR_FD = os.open in os.supports_dir_fd and os.replace in os.supports_dir_fd


def new_owner_id() -> str:
    """128 random bits as 32 lowercase hex digits."""
    return secrets.token_hex(16)


def _utc_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass(frozen=True)
class OwnerRecord:
    """One ``owner.json`` document (protocol v1).

    Only ``owner_id`` + ``heartbeat`` (the observed state), ``host_id``,
    ``pid``, ``process_start`` and ``stale_timeout`` take part in decisions;
    ``host``, ``target``, ``created_at``, ``updated_at`` and ``client`` are
    for humans.  Wall-clock times are never compared with the local clock.
    """

    owner_id: str
    mode: str
    pid: int
    host: str
    host_id: str
    process_start: str
    heartbeat: int
    heartbeat_interval: float
    stale_timeout: float
    target: str
    phase: str = "active"
    created_at: str = ""
    updated_at: str = ""
    client: str = ""
    protocol: str = PROTOCOL_NAME
    version: int = PROTOCOL_VERSION
    #: Fields this client does not know, kept as read.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def state_key(self) -> tuple[str, int]:
        """What an observer watches: unchanged for the stale timeout = stale."""
        return (self.owner_id, self.heartbeat)

    def to_json_bytes(self) -> bytes:
        """The document as UTF-8 JSON, known fields first."""
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        ordered = {k: doc.pop(k) for k in ("protocol", "version", "owner_id", "mode", "phase")}
        ordered.update(doc)
        for k, v in self.extra.items():
            ordered.setdefault(k, v)
        # Compact: without ``indent`` the json module uses its C encoder (about
        # 5x faster); written at every acquisition and heartbeat, read by
        # humans only through inspect_lock.
        return (json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    def next_heartbeat(self, phase: str | None = None) -> OwnerRecord:
        """The same owner with the counter advanced (and maybe a new phase)."""
        return dataclasses.replace(
            self, heartbeat=self.heartbeat + 1, updated_at=_utc_now(), phase=phase or self.phase
        )

    @classmethod
    def create(
        cls,
        *,
        mode: str,
        target: str,
        heartbeat_interval: float,
        stale_timeout: float,
        phase: str = "active",
    ) -> OwnerRecord:
        """A fresh record for this process (heartbeat 0)."""
        from . import procinfo

        now = _utc_now()
        pid = os.getpid()
        return cls(
            owner_id=new_owner_id(),
            mode=mode,
            phase=phase,
            pid=pid,
            host=procinfo.host_name(),
            host_id=procinfo.host_id(),
            process_start=procinfo.own_start_token(),
            heartbeat=0,
            heartbeat_interval=float(heartbeat_interval),
            stale_timeout=float(stale_timeout),
            target=target,
            created_at=now,
            updated_at=now,
            client=f"sqlite-session-safe python/{sys.version_info[0]}.{sys.version_info[1]}",
        )


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in doc:
        raise OwnerFormatError(f"owner.json lacks the required field {key!r} ({what})")
    value = doc[key]
    # bool is an int subclass in Python; JSON true/false is never a number here.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise OwnerFormatError(f"owner.json field {key!r} must be {what}, not {value!r}")
    return value


def _integer(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    """A field written as a JSON integer (no fraction, no exponent: Python's
    json module gives an int exactly for those) with low <= value <= high."""
    what = f"an integer from {low} to {high}"
    value: int = _need(doc, key, int, what)
    if not low <= value <= high:
        raise OwnerFormatError(f"owner.json field {key!r} must be {what}, not {value}")
    return value


def _seconds(doc: dict[str, Any], key: str) -> float:
    value = _need(doc, key, (int, float), "a positive number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise OwnerFormatError(f"owner.json field {key!r} must be a finite positive number of "
                               f"seconds, not {value}")
    return float(value)


def _string(doc: dict[str, Any], key: str) -> str:
    return str(_need(doc, key, str, "a string"))


def _optional_string(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise OwnerFormatError(f"owner.json field {key!r} must be a string when present, not {value!r}")
    return value


def _document(data: bytes, what: str = OWNER_FILE) -> tuple[dict[str, Any], int]:
    """The JSON object of a lock document and its ``version`` (PROTOCOL.md
    §1.1: size, UTF-8 without BOM, one object, no name twice, nesting, the
    ``protocol`` name, an integer version)."""
    if len(data) > MAX_OWNER_BYTES:
        raise OwnerFormatError(f"{what} is {len(data)} bytes, over the {MAX_OWNER_BYTES} limit")
    if not data.strip():
        raise OwnerFormatError(f"{what} is empty")
    doc = decode_object(data, what, OwnerFormatError, strict=True)
    protocol = _need(doc, "protocol", str, f'the string "{PROTOCOL_NAME}"')
    if protocol != PROTOCOL_NAME:
        raise OwnerFormatError(f"{what} protocol is {protocol!r}, not {PROTOCOL_NAME!r}")
    version: int = _need(doc, "version", int, "an integer")
    return doc, version


def _owner_record(doc: dict[str, Any]) -> OwnerRecord:
    owner_id = _need(doc, "owner_id", str, "32 lowercase hex digits")
    if not _OWNER_ID.fullmatch(owner_id):
        raise OwnerFormatError(f"owner.json owner_id must be 32 lowercase hex digits, not {owner_id!r}")
    mode = _need(doc, "mode", str, '"write" or "read"')
    if mode not in _MODES:
        raise OwnerFormatError(f'owner.json mode must be "write" or "read", not {mode!r}')
    phase = _need(doc, "phase", str, '"active" or "waiting"')
    if phase not in _PHASES or (mode == "write" and phase != "active"):
        raise OwnerFormatError(f"owner.json phase {phase!r} is not valid for mode {mode!r}")
    known = {f.name for f in dataclasses.fields(OwnerRecord)}
    return OwnerRecord(
        owner_id=owner_id,
        mode=mode,
        phase=phase,
        pid=_integer(doc, "pid", 1, MAX_PID),
        heartbeat=_integer(doc, "heartbeat", 0, MAX_HEARTBEAT),
        heartbeat_interval=_seconds(doc, "heartbeat_interval"),
        stale_timeout=_seconds(doc, "stale_timeout"),
        host=_string(doc, "host"),
        host_id=_string(doc, "host_id"),
        process_start=_string(doc, "process_start"),
        target=_string(doc, "target"),
        created_at=_optional_string(doc, "created_at"),
        updated_at=_optional_string(doc, "updated_at"),
        client=_optional_string(doc, "client"),
        extra={k: v for k, v in doc.items() if k not in known},
    )


def _check_place(rec: OwnerRecord, place: str | None) -> None:
    """A record must fit where it was found (PROTOCOL.md §2.2): L holds a
    writer; ``reader-<id>`` holds the reader ``<id>``."""
    if place is None:
        return
    if place == LOCK_PLACE:
        if rec.mode != "write":
            raise OwnerFormatError(f'owner.json at the lock directory has mode {rec.mode!r}, not "write"')
        return
    if rec.mode != "read":
        raise OwnerFormatError(f'owner.json of reader marker {place!r} has mode {rec.mode!r}, not "read"')
    if place != READER_PREFIX + rec.owner_id:
        raise OwnerFormatError(f"owner.json of reader marker {place!r} names owner {rec.owner_id}")


def parse_lock_document(data: bytes, place: str | None = None) -> OwnerRecord | MarkerRecord:
    """Validate and parse the ``owner.json`` of a lock path.

    ``place``: where it was found -- :data:`LOCK_PLACE` (the lock directory
    L: a v1 writer's record, or the v2 marker), a reader marker's name
    (``reader-<owner_id>``: a v1 reader's record), or None (no such check).

    Raises:
        UnknownProtocolVersion: ``version`` is an integer this place does not
            know (v2 exists only at L).
        OwnerFormatError: anything else wrong, with the field named.
    """
    doc, version = _document(data)
    if version == PROTOCOL_VERSION:
        rec = _owner_record(doc)
        _check_place(rec, place)
        return rec
    if version == MARKER_VERSION and place in (LOCK_PLACE, None):
        return _marker_record(doc)
    raise UnknownProtocolVersion(
        f"owner.json uses lock protocol version {version}, which this client does not know here "
        "(version 1 anywhere; version 2 only as the marker at the lock directory)")


def parse_owner(data: bytes, place: str | None = None) -> OwnerRecord:
    """Validate and parse a v1 ``owner.json`` (PROTOCOL.md §2.2).

    Raises:
        UnknownProtocolVersion: ``version`` is an integer other than 1.
        OwnerFormatError: anything else wrong, with the field named.
    """
    doc, version = _document(data)
    if version != PROTOCOL_VERSION:
        raise UnknownProtocolVersion(
            f"owner.json uses lock protocol version {version}; this client speaks only "
            f"version {PROTOCOL_VERSION} here"
        )
    rec = _owner_record(doc)
    _check_place(rec, place)
    return rec


def read_owner_bytes(lock_dir: str) -> bytes:
    """Read ``<lock_dir>/owner.json`` (at most one byte over the size limit)
    without following a symlink at its name and without blocking on a FIFO.

    Raises FileNotFoundError when absent, OwnerFormatError when it is not a
    regular file, and OSError when it cannot be read.
    """
    path = os.path.join(lock_dir, OWNER_FILE)
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        if os.path.islink(path):
            raise OwnerFormatError("owner.json is a symlink, not a regular file") from None
        if os.path.lexists(path) and not os.path.isfile(path):
            raise OwnerFormatError("owner.json is not a regular file") from None
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise OwnerFormatError("owner.json is not a regular file (a directory, FIFO or device)")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_OWNER_BYTES + 1)
    return data


def fsync_dir(path: str | None = None, dir_fd: int | None = None) -> None:
    """Make a directory's entries durable (no-op where directories can't be opened)."""
    if dir_fd is not None:
        os.fsync(dir_fd)
        return
    if sys.platform == "win32" or path is None:
        return  # Windows cannot open a directory; NTFS journals metadata itself
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_owner_file(
    lock_dir: str, record: OwnerRecord, dir_fd: int | None = None, *, sync_dir: bool = True
) -> os.stat_result:
    """Write ``owner.json`` atomically: temp file, fsync, rename, fsync dir.

    ``sync_dir=False`` skips the directory fsync: right for a heartbeat, whose
    old and new versions are both complete; wrong for the first write into a
    directory about to be renamed into place.

    With ``dir_fd`` (an open descriptor of the lock directory) every step is
    relative to that directory *inode*, so a holder whose directory was renamed
    away writes into its own renamed directory and never into a new owner's.

    Returns the written file's ``fstat``: a holder that later finds the same
    inode, size and mtime at ``owner.json`` knows it holds what it wrote,
    without reading and parsing it again.
    """
    data = record.to_json_bytes()
    tmp = f"{OWNER_FILE}.tmp-{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    if dir_fd is not None and _HAS_DIR_FD:
        fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
    else:
        fd = os.open(os.path.join(lock_dir, tmp), flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        written = os.fstat(fd)
    finally:
        os.close(fd)
    if dir_fd is not None and _HAS_DIR_FD:
        os.replace(tmp, OWNER_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if sync_dir:
            os.fsync(dir_fd)
    else:
        _replace_retrying(os.path.join(lock_dir, tmp), os.path.join(lock_dir, OWNER_FILE))
        if sync_dir:
            fsync_dir(lock_dir)
    return written


def _replace_retrying(src: str, dst: str) -> None:
    # On Windows a reader that has owner.json open makes the replace fail with
    # a sharing violation for a moment: retry briefly before giving up.
    for attempt in range(50):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == 49:
                raise
            time.sleep(0.002)


# --------------------------------------------------------------------------
# lock protocol v2: the marker and the admission record

#: The lock protocol version whose writers are admitted by an OS lock.
MARKER_VERSION = 2
#: The marker's ``admission`` value: an exclusive OS lock on ``L/admit``.
OS_LOCK = "os-lock"
#: The holder's record fills this many bytes at the start of the admission
#: file (padded with spaces), so a rewrite never leaves a longer old tail.
ADMISSION_RECORD_BYTES = 1024


def _json_line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


@dataclass(frozen=True)
class MarkerRecord:
    """``L/owner.json`` of lock protocol v2: the lock directory is permanent
    and says how writers are admitted (``admission``: ``"os-lock"``).

    A v1 client reads ``version`` 2 as an unknown version and refuses the
    database (waits, then times out naming it): the two never mix.
    """

    target: str
    created_at: str = ""
    client: str = ""
    admission: str = OS_LOCK
    protocol: str = PROTOCOL_NAME
    version: int = MARKER_VERSION

    def to_json_bytes(self) -> bytes:
        return _json_line({"protocol": self.protocol, "version": self.version,
                           "admission": self.admission, "target": self.target,
                           "created_at": self.created_at, "client": self.client})

    @classmethod
    def create(cls, target: str) -> MarkerRecord:
        return cls(target=target, created_at=_utc_now(), client=_client_name())


def _marker_record(doc: dict[str, Any]) -> MarkerRecord:
    admission = _need(doc, "admission", str, f'"{OS_LOCK}"')
    if admission != OS_LOCK:
        raise OwnerFormatError(f'owner.json admission must be "{OS_LOCK}", not {admission!r}')
    return MarkerRecord(target=_string(doc, "target"), created_at=_optional_string(doc, "created_at"),
                        client=_optional_string(doc, "client"))


def parse_marker(data: bytes) -> MarkerRecord:
    """Validate and parse a v2 ``owner.json`` (the marker, PROTOCOL.md §2A.3).

    Raises:
        UnknownProtocolVersion: ``version`` is not 2 (a v1 record: 1).
        OwnerFormatError: anything else wrong, with the field named.
    """
    doc, version = _document(data)
    if version != MARKER_VERSION:
        raise UnknownProtocolVersion(f"owner.json uses lock protocol version {version}, not {MARKER_VERSION}")
    return _marker_record(doc)


@dataclass(frozen=True)
class AdmissionRecord:
    """Who holds a v2 lock: written at the start of ``L/admit`` by each
    holder right after the OS lock is granted (no fsync: the OS lock, not the
    record, is the truth; the record names the holder for people and for
    timeout messages, and is left behind, stale, when its holder ends)."""

    owner_id: str
    pid: int
    host: str
    host_id: str
    process_start: str
    target: str
    acquired_at: str = ""
    client: str = ""
    mode: str = "write"
    protocol: str = PROTOCOL_NAME
    version: int = MARKER_VERSION

    def to_json_bytes(self) -> bytes:
        """The record as one line of UTF-8 JSON, as written at the start of
        ``L/admit``."""
        return _json_line({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def padded(self) -> bytes:
        """The record as written into the admission file: exactly
        :data:`ADMISSION_RECORD_BYTES` bytes."""
        template = _ADMISSION_TEMPLATES.get((self.pid, self.target))
        if template is not None and template[0] == self.static_fields():
            # Written at every admission: only the owner id and the time change.
            data = template[1] % (self.owner_id.encode(), self.acquired_at.encode())
            if len(data) <= ADMISSION_RECORD_BYTES:
                return data.ljust(ADMISSION_RECORD_BYTES, b" ")
        data = self.to_json_bytes()
        if len(data) > ADMISSION_RECORD_BYTES:
            # Long host or file names: the human-readable fields give way
            # (a record never spills past its slot: a later, shorter one
            # would leave a tail behind).
            data = dataclasses.replace(self, host=self.host[:64], client=self.client[:64],
                                       target=self.target[:64]).to_json_bytes()
        if len(data) > ADMISSION_RECORD_BYTES:
            raise ValueError(f"an admission record of {len(data)} bytes does not fit its "
                             f"{ADMISSION_RECORD_BYTES}-byte slot")
        return data.ljust(ADMISSION_RECORD_BYTES, b" ")

    def static_fields(self) -> tuple[Any, ...]:
        """Every field but ``owner_id`` and ``acquired_at``."""
        return (self.pid, self.host, self.host_id, self.process_start, self.target, self.client,
                self.mode, self.protocol, self.version)

    @classmethod
    def create(cls, target: str) -> AdmissionRecord:
        """A new record for this process (a new ``owner_id``), written at
        each admission."""
        from . import procinfo

        rec = cls(owner_id=new_owner_id(), pid=os.getpid(), host=procinfo.host_name(),
                  host_id=procinfo.host_id(), process_start=procinfo.own_start_token(),
                  target=target, acquired_at=_utc_now(), client=_client_name())
        key = (rec.pid, target)
        if key not in _ADMISSION_TEMPLATES:
            # The JSON with two placeholders, made by the json module once
            # (owner ids and RFC 3339 times need no escaping).
            marked = dataclasses.replace(rec, owner_id="\x00O", acquired_at="\x00A").to_json_bytes()
            marked = marked.replace(b"%", b"%%").replace(b"\\u0000O", b"%s").replace(b"\\u0000A", b"%s")
            if marked.count(b"%s") == 2:
                _ADMISSION_TEMPLATES[key] = (rec.static_fields(), marked)
        return rec


#: (pid, target) -> (static fields, JSON template with %s for owner id and time).
_ADMISSION_TEMPLATES: dict[tuple[int, str], tuple[tuple[Any, ...], bytes]] = {}


def parse_admission(data: bytes) -> AdmissionRecord:
    """Validate and parse the record at the start of ``L/admit`` (PROTOCOL.md
    §2A.5): the first :data:`ADMISSION_RECORD_BYTES` bytes, a JSON object
    padded with spaces.

    Raises:
        UnknownProtocolVersion: ``version`` is not 2.
        OwnerFormatError: anything else wrong (an all-blank record: "empty").
    """
    what = "the admission record"
    doc, version = _document(data[:ADMISSION_RECORD_BYTES], what)
    if version != MARKER_VERSION:
        raise UnknownProtocolVersion(f"the admission record uses lock protocol version {version}")
    owner_id = _need(doc, "owner_id", str, "32 lowercase hex digits")
    if not _OWNER_ID.fullmatch(owner_id):
        raise OwnerFormatError(
            f"the admission record's owner_id is not 32 lowercase hex digits: {owner_id!r}")
    mode = _need(doc, "mode", str, '"write"')
    if mode != "write":
        raise OwnerFormatError(f'the admission record\'s mode must be "write", not {mode!r}')
    return AdmissionRecord(
        owner_id=owner_id, pid=_integer(doc, "pid", 1, MAX_PID), host=_string(doc, "host"),
        host_id=_string(doc, "host_id"), process_start=_string(doc, "process_start"),
        target=_string(doc, "target"), acquired_at=_optional_string(doc, "acquired_at"),
        client=_optional_string(doc, "client"))


def _client_name() -> str:
    return f"sqlite-session-safe python/{sys.version_info[0]}.{sys.version_info[1]}"
