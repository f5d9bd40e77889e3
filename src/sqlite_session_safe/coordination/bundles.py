"""Bundles: audit log entries in a portable, checksummed file.

``db.export(path, since)`` writes the entries after ``since`` to a bundle;
``sss.import_bundle(replica, path)`` applies them elsewhere with the same
exactly-once cursor as :func:`sss.replicate`.  The layout (PROTOCOL.md §7),
all integers big-endian::

    magic      8 bytes   b"SSSBUNDL"
    version    u32       1
    header     u32 length + UTF-8 JSON object
    entries    per entry: u32 length + UTF-8 JSON object (seq, kind, ...),
               then u64 length + body (the changeset, or the DDL as UTF-8)
    checksum   32 bytes  SHA-256 of every byte before it

A bundle is read whole and verified (magic, version, checksum, structure,
every changeset walked) before anything is applied, so a truncated, altered
or foreign file is refused with :class:`BundleError` and changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.errors import InterfaceError
from ..sessions.apply import OnConflict
from ..sessions.changeset import Changeset
from ..sessions.errors import ChangesetError
from . import audit
from .audit import LogEntry
from .log_errors import BundleError, ReplicationError
from .replication import ReplicationReport, apply_entries, open_replica, read_cursor

if TYPE_CHECKING:
    from .database import Database

__all__ = ["MAGIC", "FORMAT_VERSION", "Bundle", "ExportReport", "export_bundle", "read_bundle",
           "import_bundle"]

MAGIC = b"SSSBUNDL"
FORMAT_VERSION = 1
#: The header's "format" field.
FORMAT_NAME = "sqlite-session-safe.bundle"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DIGEST = 32
#: Largest header or entry metadata object accepted (a sanity bound).
_MAX_JSON = 1 << 20
_ENTRY_FIELDS = ("seq", "kind", "committed_at", "owner", "host", "pid", "label", "epoch")


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :meth:`Database.export` wrote.

    Attributes:
        path: the bundle file.
        entries: how many entries it holds.
        first_seq, last_seq: their seq range (``first_seq = since + 1``;
            ``last_seq = since`` for an empty bundle).
        sha256: hex SHA-256 of the file's content before the checksum (the
            checksum stored at its end).
        size: the file's size in bytes.
    """

    path: str
    entries: int
    first_seq: int
    last_seq: int
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A verified bundle (:func:`read_bundle`).

    Attributes:
        path: the file it was read from.
        version: the format version (1).
        source_id: the ``database_id`` of the database it was exported from.
        first_seq, last_seq: the seq range of its entries.
        created_at: RFC 3339 UTC wall time of the export (informational).
        entries: the log entries, in seq order, as :class:`LogEntry`.
        sha256: the stored (and verified) checksum, hex.
    """

    path: str
    version: int
    source_id: str
    first_seq: int
    last_seq: int
    created_at: str
    entries: tuple[LogEntry, ...]
    sha256: str


# -- writing ---------------------------------------------------------------------


class _HashedWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.h.update(data)
        self.size += len(data)

    def json(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.write(_U32.pack(len(data)) + data)


def _entry_meta(e: LogEntry) -> dict[str, Any]:
    return {"seq": e.seq, "kind": e.kind, "committed_at": e.committed_at, "owner": e.owner,
            "host": e.host, "pid": e.pid, "label": e.label, "epoch": e.epoch}


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a directory: its rename is durable enough
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def export_bundle(db: Database, path: str | os.PathLike[str], since: int = 0) -> ExportReport:
    """Write the entries of ``db``'s log after ``since`` to the bundle ``path``.

    All entries come from one snapshot (no write lock); the file is written
    under a temporary name, fsynced and renamed into place (an existing file
    is replaced), so ``path`` never holds half a bundle.

    Raises:
        InterfaceError: ``since`` is not an int >= 0, or is beyond the log.
        ReplicationError: ``db`` keeps no audit log.
    """
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise InterfaceError(f"since must be an int >= 0, not {since!r}")
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.tmp-{os.urandom(8).hex()}")
    with db.read() as r:
        con = r._con
        assert con is not None
        source_id = audit.database_id(con)
        if source_id is None:
            raise ReplicationError(f"{db.path!r} keeps no audit log: nothing to export")
        last = r.seq
        if since > last:
            raise InterfaceError(f"since={since} is beyond the end of the log of {db.path!r} "
                                 f"(seq {last})")
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "source_id": source_id,
                  "first_seq": since + 1, "last_seq": last, "entries": last - since,
                  "created_at": audit.utc_now(), "log_format": audit.LOG_FORMAT}
        try:
            with open(tmp, "xb") as f:
                w = _HashedWriter(f)
                w.write(MAGIC + _U32.pack(FORMAT_VERSION))
                w.json(header)
                expected = since + 1
                for e in audit.iter_entries(con, since):
                    if e.seq != expected:  # the log has no gaps; never write a bundle that does
                        raise ReplicationError(f"the log of {db.path!r} has no entry {expected}",
                                               source_id, expected)
                    w.json(_entry_meta(e))
                    body = bytes(e.changeset) if e.kind == "data" and e.changeset is not None \
                        else (e.sql or "").encode("utf-8", "surrogatepass")
                    w.write(_U64.pack(len(body)))
                    w.write(body)
                    expected += 1
                if expected != last + 1:
                    raise ReplicationError(f"the log of {db.path!r} ends at {expected - 1}, not "
                                           f"{last}", source_id, expected)
                digest = w.h.digest()
                f.write(digest)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    _fsync_dir(directory)
    return ExportReport(target, last - since, since + 1, last, digest.hex(), w.size + _DIGEST)


# -- reading ---------------------------------------------------------------------


class _Cursor:
    """Reads the verified body of a bundle; any overrun is a malformed bundle."""

    def __init__(self, data: memoryview, path: str) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise BundleError(f"bundle {self.path!r} is malformed: {what} runs past the end",
                              self.path, "malformed")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def json(self, what: str) -> dict[str, Any]:
        (n,) = _U32.unpack(self.take(4, what))
        if n > _MAX_JSON:
            raise BundleError(f"bundle {self.path!r} is malformed: {what} is {n} bytes", self.path)
        try:
            obj = json.loads(self.take(n, what).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"bundle {self.path!r} is malformed: {what} is not JSON ({e})",
                              self.path) from e
        if not isinstance(obj, dict):
            raise BundleError(f"bundle {self.path!r} is malformed: {what} is not an object", self.path)
        return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str, path: str) -> Any:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BundleError(f"bundle {path!r} is malformed: {what} field {name!r} is {value!r}", path)
    return value


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and fully verify a bundle: magic, version, SHA-256, structure,
    consecutive seqs, and every changeset (walked to its end).

    Raises:
        BundleError: with ``reason`` "io", "magic", "version", "truncated",
            "checksum" or "malformed".
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BundleError(f"cannot read bundle {p!r}: {e.strerror or e}", p, "io") from e
    head = len(MAGIC) + 4
    if raw[:len(MAGIC)] != MAGIC[:len(raw)]:
        raise BundleError(f"{p!r} is not a sqlite-session-safe bundle (wrong magic: "
                          f"{raw[:len(MAGIC)]!r})", p, "magic")
    if len(raw) < head + 4 + _DIGEST:
        raise BundleError(f"bundle {p!r} is truncated ({len(raw)} bytes)", p, "truncated")
    (version,) = _U32.unpack_from(raw, len(MAGIC))
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle {p!r} has format version {version}; this client reads version "
                          f"{FORMAT_VERSION} only", p, "version")
    body = memoryview(raw)[:-_DIGEST]
    stored = raw[-_DIGEST:]
    if hashlib.sha256(body).digest() != stored:
        raise BundleError(f"bundle {p!r} fails its SHA-256 checksum: it is truncated or was "
                          "altered; nothing was applied", p, "checksum")
    cur = _Cursor(body, p)
    cur.pos = head
    header = cur.json("the header")
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise BundleError(f"bundle {p!r} is malformed: its header names format "
                          f"{header.get('format')!r} version {header.get('version')!r}", p)
    source_id = _field(header, "source_id", str, "header", p)
    first = _field(header, "first_seq", int, "header", p)
    last = _field(header, "last_seq", int, "header", p)
    count = _field(header, "entries", int, "header", p)
    created = _field(header, "created_at", str, "header", p)
    if first < 1 or last < first - 1 or count != last - first + 1:
        raise BundleError(f"bundle {p!r} is malformed: seq range {first}..{last} with {count} "
                          "entries", p)
    entries = []
    for expected in range(first, last + 1):
        what = f"entry {expected}"
        meta = cur.json(what)
        seq = _field(meta, "seq", int, what, p)
        if seq != expected:
            raise BundleError(f"bundle {p!r} is malformed: entry {seq} where {expected} belongs", p)
        kind = meta.get("kind")
        label = meta.get("label")
        if kind not in ("data", "ddl") or not (label is None or isinstance(label, str)):
            raise BundleError(f"bundle {p!r} is malformed: {what} has kind {kind!r}, label "
                              f"{label!r}", p)
        (n,) = _U64.unpack(cur.take(8, what))
        blob = cur.take(n, what)
        try:
            if kind == "data":
                cs: Changeset | None = Changeset(blob)
                assert cs is not None
                cs.validate()
                sql = None
            else:
                cs, sql = None, blob.decode("utf-8")
        except (ChangesetError, UnicodeDecodeError) as e:
            raise BundleError(f"bundle {p!r} is malformed: {what}'s body: {e}", p) from e
        entries.append(LogEntry(
            seq, _field(meta, "committed_at", str, what, p), _field(meta, "owner", str, what, p),
            _field(meta, "host", str, what, p), _field(meta, "pid", int, what, p), label, kind, cs,
            sql, _field(meta, "epoch", int, what, p)))
    if cur.pos != len(body):
        raise BundleError(f"bundle {p!r} is malformed: {len(body) - cur.pos} stray bytes after the "
                          "last entry", p)
    return Bundle(p, version, source_id, first, last, created, tuple(entries), stored.hex())


def import_bundle(replica: Database | str | os.PathLike[str], path: str | os.PathLike[str], *,
                  on_conflict: OnConflict = None, batch: int = 256) -> ReplicationReport:
    """Apply a bundle to ``replica`` with the replication cursor: exactly once.

    The bundle is verified whole first (:func:`read_bundle`).  Entries at or
    below the replica's cursor for the bundle's source are skipped (importing
    a bundle twice applies nothing the second time; overlapping bundles apply
    only what is new); a bundle that starts after cursor + 1 is refused (a
    gap).  Conflicts with the replica's own writes follow ``on_conflict`` as
    in :func:`sss.replicate`.

    Raises:
        BundleError: the file is not a valid bundle (nothing changed).
        ReplicationError: a gap (nothing changed), or an entry that does not
            fit the replica's schema.
        ReplicationConflict: see :func:`sss.replicate`.
    """
    bundle = read_bundle(path)
    from .conflicts import ConflictRecorder  # validates the policy before anything is opened

    recorder = ConflictRecorder(on_conflict)
    db, owned = open_replica(replica)
    try:
        with db.read() as r:
            assert r._con is not None
            cursor = read_cursor(r._con, bundle.source_id)
        if bundle.first_seq > cursor + 1:
            raise ReplicationError(
                f"bundle {bundle.path!r} holds entries {bundle.first_seq}..{bundle.last_seq} of "
                f"source {bundle.source_id}, but the replica's cursor is at {cursor}: entries "
                f"{cursor + 1}..{bundle.first_seq - 1} are missing; import an earlier bundle "
                "first (nothing was changed)", bundle.source_id, cursor + 1)
        return apply_entries(db, bundle.source_id, bundle.entries, on_conflict=recorder,
                             batch=batch, lag_base=bundle.last_seq)
    finally:
        if owned:
            db.close()
