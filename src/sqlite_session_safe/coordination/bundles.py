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
import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from ..binding.errors import InterfaceError
from ..sessions.changeset import Changeset
from ..sessions.errors import ChangesetError
from ..sessions.stream import summarize_stream
from . import audit, wire
from .audit import LogEntry
from .log_errors import BundleError, LogPruned, ReplicationError
from .retention import pruned_through

if TYPE_CHECKING:
    from .database import Database

__all__ = ["MAGIC", "FORMAT_VERSION", "Bundle", "BundleReader", "ExportReport", "export_bundle",
           "open_bundle", "read_bundle"]

MAGIC = b"SSSBUNDL"
FORMAT_VERSION = 1
#: The header's "format" field.
FORMAT_NAME = "sqlite-session-safe.bundle"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DIGEST = 32


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :meth:`Database.export` wrote.

    Attributes:
        path: the bundle file.
        entries: how many entries it holds.
        first_seq: the first entry's seq (``since + 1``).
        last_seq: the last entry's seq (``since`` for an empty bundle).
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
        first_seq: the seq of its first entry.
        last_seq: the seq of its last entry.
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
        data = wire.encode_json(obj)
        self.write(_U32.pack(len(data)) + data)


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
        con = r.connection
        assert con is not None
        source_id = audit.database_id(con)
        if source_id is None:
            raise ReplicationError(f"{db.path!r} keeps no audit log: nothing to export")
        last = r.seq
        if since > last:
            raise InterfaceError(f"since={since} is beyond the end of the log of {db.path!r} "
                                 f"(seq {last})")
        pruned = pruned_through(con)
        if since < pruned and last > since:
            raise LogPruned(f"entries {since + 1}..{pruned} were pruned from the log of {db.path!r}: "
                            f"export from since={pruned} or later (a replica that needs them is "
                            "re-seeded from a backup)", source_id, since + 1, pruned)
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "source_id": source_id,
                  "first_seq": since + 1, "last_seq": last, "entries": last - since,
                  "created_at": audit.utc_now(), "log_format": audit.LOG_FORMAT}
        try:
            with open(tmp, "xb") as f:
                w = _HashedWriter(f)
                w.write(MAGIC + _U32.pack(FORMAT_VERSION))
                w.json(header)
                expected = since + 1
                for e in wire.iter_heads(con, since, last):
                    if e.seq != expected:  # the log has no gaps; never write a bundle that does
                        raise ReplicationError(f"the log of {db.path!r} has no entry {expected}",
                                               source_id, expected)
                    w.json(wire.entry_meta(e))
                    w.write(_U64.pack(e.size))
                    for piece in wire.iter_body(con, e):  # bounded memory, whatever the size
                        w.write(piece)
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

#: Bytes read at a time while verifying the checksum.
_HASH_CHUNK = 1 << 20


def _bad(p: str) -> Callable[[str], BundleError]:
    return lambda reason: BundleError(f"bundle {p!r} is malformed: {reason}", p)


class BundleReader:
    """An open bundle, verified whole (magic, version, SHA-256, structure,
    every changeset walked to its end) when opened, read entry by entry
    afterwards: memory stays bounded by the largest entry, whatever the
    bundle's size.  Made by :func:`open_bundle`; a context manager.

    Attributes: as :class:`Bundle`'s, but no ``entries`` (see :meth:`entries`).
    """

    path: str
    version: int
    source_id: str
    first_seq: int
    last_seq: int
    created_at: str
    sha256: str

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = self.path = os.fspath(path)
        try:
            self._f: io.BufferedReader = open(p, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise BundleError(f"cannot read bundle {p!r}: {e.strerror or e}", p, "io") from e
        try:
            self._verify()
        except BaseException:
            self._f.close()
            raise

    def _read(self, n: int, what: str) -> bytes:
        if n > self._end - self._f.tell():
            raise BundleError(f"bundle {self.path!r} is malformed: {what} runs past the end",
                              self.path, "malformed")
        return self._f.read(n)

    def _json(self, what: str) -> dict[str, Any]:
        (n,) = _U32.unpack(self._read(4, what))
        if n > wire.MAX_JSON:
            raise BundleError(f"bundle {self.path!r} is malformed: {what} is {n} bytes", self.path)
        return wire.decode_object(self._read(n, what), what, _bad(self.path))

    def _verify(self) -> None:
        p, f = self.path, self._f
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(MAGIC) + 4)
            if head[:len(MAGIC)] != MAGIC[:len(head)]:
                raise BundleError(f"{p!r} is not a sqlite-session-safe bundle (wrong magic: "
                                  f"{head[:len(MAGIC)]!r})", p, "magic")
            if size < len(MAGIC) + 8 + _DIGEST:
                raise BundleError(f"bundle {p!r} is truncated ({size} bytes)", p, "truncated")
            (version,) = _U32.unpack_from(head, len(MAGIC))
            if version != FORMAT_VERSION:
                raise BundleError(f"bundle {p!r} has format version {version}; this client reads "
                                  f"version {FORMAT_VERSION} only", p, "version")
            self.version = version
            self._end = size - _DIGEST
            h = hashlib.sha256(head)
            left = self._end - len(head)
            while left > 0:
                chunk = f.read(min(_HASH_CHUNK, left))
                if not chunk:
                    raise BundleError(f"bundle {p!r} is truncated (it shrank while read)", p, "truncated")
                h.update(chunk)
                left -= len(chunk)
            stored = f.read(_DIGEST)
        except OSError as e:
            raise BundleError(f"cannot read bundle {p!r}: {e.strerror or e}", p, "io") from e
        if h.digest() != stored:
            raise BundleError(f"bundle {p!r} fails its SHA-256 checksum: it is truncated or was "
                              "altered; nothing was applied", p, "checksum")
        self.sha256 = stored.hex()
        f.seek(len(MAGIC) + 4)
        header = self._json("the header")
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise BundleError(f"bundle {p!r} is malformed: its header names format "
                              f"{header.get('format')!r} version {header.get('version')!r}", p)
        bad = _bad(p)
        self.source_id = wire.field(header, "source_id", str, "header", bad)
        first = self.first_seq = wire.field(header, "first_seq", int, "header", bad)
        last = self.last_seq = wire.field(header, "last_seq", int, "header", bad)
        count = wire.field(header, "entries", int, "header", bad)
        self.created_at = wire.field(header, "created_at", str, "header", bad)
        if first < 1 or last < first - 1 or count != last - first + 1:
            raise BundleError(f"bundle {p!r} is malformed: seq range {first}..{last} with {count} "
                              "entries", p)
        self._body = f.tell()
        for _ in self._walk(check=True):
            pass
        if f.tell() != self._end:
            raise BundleError(f"bundle {p!r} is malformed: {self._end - f.tell()} stray bytes after "
                              "the last entry", p)

    def _walk(self, check: bool) -> Iterator[tuple[wire.EntryHead, int]]:
        """(head, body offset) of each entry, the file left after its body;
        ``check``: walk each changeset body (in C, bounded memory) or decode
        each DDL body."""
        f, p = self._f, self.path
        f.seek(self._body)
        for expected in range(self.first_seq, self.last_seq + 1):
            what = f"entry {expected}"
            meta = self._json(what)
            (n,) = _U64.unpack(self._read(8, what))
            head = wire.entry_from_meta(meta, n, what, _bad(p))
            if head.seq != expected:
                raise BundleError(f"bundle {p!r} is malformed: entry {head.seq} where {expected} "
                                  "belongs", p)
            at = f.tell()
            if n > self._end - at:
                raise BundleError(f"bundle {p!r} is malformed: {what} runs past the end", p, "malformed")
            if check:
                try:
                    if head.kind == "data":
                        summarize_stream(wire.Window(f, n))  # type: ignore[arg-type]
                    else:
                        f.read(n).decode("utf-8")
                except (ChangesetError, UnicodeDecodeError) as e:
                    raise BundleError(f"bundle {p!r} is malformed: {what}'s body: {e}", p) from e
            f.seek(at + n)
            yield head, at

    def heads(self) -> Iterator[tuple[wire.EntryHead, BinaryIO]]:
        """Each entry's head and its body as a file object limited to the
        body (valid until the next step): for reading bodies of any size."""
        for head, at in self._walk(check=False):
            self._f.seek(at)
            yield head, wire.Window(self._f, head.size)  # type: ignore[misc]  # read/readinto suffice
            self._f.seek(at + head.size)

    def pending(self) -> Iterator[wire.Pending]:
        """The entries in seq order, for a replica: a data entry larger than
        :data:`wire.LARGE_BODY` as a :class:`wire.LargeEntry` reading the
        bundle file itself (valid while the bundle is open), the others in
        memory one at a time."""
        for head, at in self._walk(check=False):
            if head.kind == "data" and head.size > wire.LARGE_BODY:
                yield wire.LargeEntry(head, self._f, at)
                self._f.seek(at + head.size)  # applying it moved the file on
            else:
                self._f.seek(at)
                data = self._f.read(head.size)
                yield (head.entry(Changeset(data)) if head.kind == "data"
                       else head.entry(None, data.decode("utf-8")))

    def entries(self) -> Iterator[LogEntry]:
        """The entries in seq order, one in memory at a time."""
        for head, body in self.heads():
            data = body.read(head.size)
            cs = Changeset(data) if head.kind == "data" else None
            sql = data.decode("utf-8") if head.kind == "ddl" else None
            yield head.entry(cs, sql)

    def close(self) -> None:
        """Close the bundle file."""
        self._f.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bundle(path: str | os.PathLike[str]) -> BundleReader:
    """Open and fully verify a bundle (as :func:`read_bundle` does), keeping
    only its header in memory; read its entries with
    :meth:`BundleReader.entries`.  Raises :class:`BundleError`."""
    return BundleReader(path)


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and fully verify a bundle: magic, version, SHA-256, structure,
    consecutive seqs, and every changeset (walked to its end).  Holds every
    entry in memory: :func:`open_bundle` reads them one at a time.

    Raises:
        BundleError: with ``reason`` "io", "magic", "version", "truncated",
            "checksum" or "malformed".
    """
    with BundleReader(path) as b:
        entries = tuple(b.entries())
        return Bundle(b.path, b.version, b.source_id, b.first_seq, b.last_seq, b.created_at,
                      entries, b.sha256)
