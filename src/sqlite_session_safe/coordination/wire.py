"""Log entries on the wire: the metadata object bundles (PROTOCOL.md §7) and
the NATS stream (§9) both carry, read back with bounded size and nesting, and
entry bodies read from the log in bounded memory.

One concept in one place: what an entry's metadata holds, how it is encoded
and how a received one is checked, for every transport.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..binding.connection import Connection
from ..sessions.changeset import Changeset
from . import audit
from .audit import LogEntry

__all__ = [
    "MAX_JSON",
    "MAX_DEPTH",
    "BODY_CHUNK",
    "ENTRY_FIELDS",
    "entry_meta",
    "encode_json",
    "decode_object",
    "EntryHead",
    "entry_from_meta",
    "field",
    "iter_heads",
    "iter_body",
    "LARGE_BODY",
    "Window",
    "LargeEntry",
    "Pending",
    "spool",
    "read_pending",
]

#: Largest metadata object accepted (a sanity bound: real ones are ~200 bytes).
MAX_JSON = 1 << 20
#: Deepest nesting accepted in a metadata object.  The objects this package
#: writes are flat; the bound keeps a hostile file from exhausting Python's
#: recursion limit inside ``json.loads`` (which raises RecursionError, not a
#: ValueError).
MAX_DEPTH = 32
#: Bytes of an entry body read (or sent) at a time.
BODY_CHUNK = 1 << 20
#: The metadata fields, in the order they are written.
ENTRY_FIELDS = ("seq", "kind", "committed_at", "owner", "host", "pid", "label", "epoch")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def entry_meta(e: LogEntry | EntryHead) -> dict[str, Any]:
    """The metadata object of an entry (its ``_sss_log`` columns but the body)."""
    return {"seq": e.seq, "kind": e.kind, "committed_at": e.committed_at, "owner": e.owner,
            "host": e.host, "pid": e.pid, "label": e.label, "epoch": e.epoch}


def encode_json(obj: dict[str, Any], ascii_only: bool = False) -> bytes:
    """Compact UTF-8 JSON (``ascii_only``: every non-ASCII character escaped,
    for a NATS header value)."""
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8")


def _depth_ok(data: bytes) -> bool:
    """Whether ``data``'s arrays and objects nest at most MAX_DEPTH deep
    (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return True  # the common case: a flat object, checked in C by count()
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return False
        else:
            depth -= 1
    return True


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"the name {name!r} occurs twice in one object")
        obj[name] = value
    return obj


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def decode_object(data: bytes, what: str, fail: Callable[[str], Exception], *,
                  strict: bool = False) -> dict[str, Any]:
    """The JSON object in ``data``; anything else raises ``fail(reason)``:
    too large, nested deeper than :data:`MAX_DEPTH`, not UTF-8, not JSON,
    not an object.

    ``strict`` also refuses what RFC 8259 leaves to the parser and parsers
    answer differently (PROTOCOL.md §1.1): a name twice in one object, and
    the tokens ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON at all)."""
    if len(data) > MAX_JSON:
        raise fail(f"{what} is {len(data)} bytes (at most {MAX_JSON})")
    if not _depth_ok(data):
        raise fail(f"{what} nests arrays or objects more than {MAX_DEPTH} deep")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"{what} is not UTF-8 ({e})") from None
    try:
        if strict:
            obj = json.loads(text, object_pairs_hook=_unique_names, parse_constant=_no_constant)
        else:
            obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise fail(f"{what} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise fail(f"{what} is not an object")
    return obj


@dataclass(frozen=True)
class EntryHead:
    """An entry's metadata and the size of its body, without the body."""

    seq: int
    committed_at: str
    owner: str
    host: str
    pid: int
    label: str | None
    kind: str
    epoch: int
    size: int

    def entry(self, changeset: Changeset | None = None, sql: str | None = None) -> LogEntry:
        """The entry with this head and the given body (a data entry whose
        changes are kept elsewhere, e.g. in a file, has neither)."""
        return LogEntry(self.seq, self.committed_at, self.owner, self.host, self.pid, self.label,
                        self.kind, changeset, sql, self.epoch)


def field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str,
           fail: Callable[[str], Exception]) -> Any:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise fail(f"{what} field {name!r} is {value!r}")
    return value


def entry_from_meta(meta: dict[str, Any], size: int, what: str,
                    fail: Callable[[str], Exception]) -> EntryHead:
    """Check a received metadata object; ``fail(reason)`` for a bad field."""
    kind = meta.get("kind")
    label = meta.get("label")
    if kind not in ("data", "ddl") or not (label is None or isinstance(label, str)):
        raise fail(f"{what} has kind {kind!r}, label {label!r}")
    return EntryHead(field(meta, "seq", int, what, fail), field(meta, "committed_at", str, what, fail),
                     field(meta, "owner", str, what, fail), field(meta, "host", str, what, fail),
                     field(meta, "pid", int, what, fail), label, kind,
                     field(meta, "epoch", int, what, fail), size)


_HEADS = (
    f"SELECT seq, committed_at, owner, host, pid, label, kind, epoch, "
    f"coalesce(length(changeset), length(CAST(sql AS BLOB))) FROM {audit.LOG_TABLE} "
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)


def iter_heads(con: Connection, since: int, until: int, batch: int = 256) -> Iterator[EntryHead]:
    """The heads of the entries ``since < seq <= until`` in order (inside the
    caller's snapshot), without loading a body."""
    while since < until:
        rows = con.execute(_HEADS, (since, until, batch)).fetchall()
        for seq, at, owner, host, pid, label, kind, epoch, size in rows:
            yield EntryHead(seq, at, owner, host, pid, label, kind, epoch, int(size or 0))
        if len(rows) < batch:
            return
        since = rows[-1][0]


def iter_body(con: Connection, head: EntryHead, chunk: int = BODY_CHUNK) -> Iterator[bytes]:
    """An entry's body (the changeset, or the DDL as UTF-8) in pieces of at
    most ``chunk`` bytes, read with SQLite's incremental BLOB I/O (inside the
    caller's snapshot), so a body of any size costs ``chunk`` bytes."""
    if head.kind == "ddl":
        row = con.execute(f"SELECT CAST(sql AS BLOB) FROM {audit.LOG_TABLE} WHERE seq = ?",
                          (head.seq,)).fetchone()
        data = bytes(row[0]) if row is not None and row[0] is not None else b""
        for i in range(0, len(data), chunk):
            yield data[i:i + chunk]
        return
    if head.size == 0:
        return
    with con.blobopen(audit.LOG_TABLE, "changeset", head.seq, readonly=True) as blob:
        while True:
            piece = blob.read(chunk)
            if not piece:
                return
            yield piece


# -- large entries: applied by streaming, never whole in memory -------------------

#: A data entry whose changeset is larger than this many bytes travels as a
#: file (a spool, a window on a bundle) and a replica applies it by
#: streaming (replica_apply.py): memory bounded whatever its size.  Smaller
#: ones are read into memory and batched.  A module attribute so tests can
#: lower it.
LARGE_BODY = 8 << 20


class Window:
    """Reads ``size`` bytes of an open file from its current position, and
    no further: a changeset body for the streaming iterator."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = self.f.readinto(view[:min(len(view), self.left)]) or 0  # type: ignore[attr-defined]
        self.left -= n
        return int(n)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


@dataclass(frozen=True)
class LargeEntry:
    """A data entry whose changeset stays in a file: ``head.size`` bytes at
    ``offset`` of ``file`` (seekable, shared: each :meth:`open` seeks)."""

    head: EntryHead
    file: BinaryIO
    offset: int = 0

    @property
    def seq(self) -> int:
        return self.head.seq

    @property
    def kind(self) -> str:
        return self.head.kind

    def open(self) -> BinaryIO:
        """The changeset from its start (valid until the next open)."""
        self.file.seek(self.offset)
        return Window(self.file, self.head.size)  # type: ignore[return-value]  # read/readinto suffice

    def load(self) -> LogEntry:
        """The entry with its changeset in memory (the fallback path)."""
        return self.head.entry(Changeset(self.open().read()))


#: What a replica is given to apply: an entry in memory, or a large one in a file.
Pending = LogEntry | LargeEntry


def spool(pieces: Iterator[bytes]) -> BinaryIO:
    """The pieces written to an unnamed temporary file (a few MB kept in
    memory), rewound."""
    f = tempfile.SpooledTemporaryFile(max_size=BODY_CHUNK)  # noqa: SIM115 - the caller's now
    for piece in pieces:
        f.write(piece)
    f.seek(0)
    return f  # type: ignore[return-value]


_PENDING = (
    f"SELECT seq, committed_at, owner, host, pid, label, kind, "
    f"CASE WHEN length(changeset) > ? THEN NULL ELSE changeset END, sql, epoch, "
    f"length(changeset) FROM {audit.LOG_TABLE} WHERE seq > ? ORDER BY seq LIMIT ?"
)


def read_pending(con: Connection, since: int = 0, limit: int = 256) -> list[Pending]:
    """Up to ``limit`` entries with ``seq > since``, in order (inside the
    caller's snapshot): changesets up to :data:`LARGE_BODY` in memory (at
    most about twice that in all: fewer entries then), a larger one spooled
    to a temporary file with incremental BLOB I/O (``length()`` of a column
    does not load it), so the snapshot can end before anything is applied.
    A large entry ends the list (one temporary file at a time)."""
    if not audit.has_log(con):
        return []
    out: list[Pending] = []
    held = 0
    cur = con.execute(_PENDING, (LARGE_BODY, since, limit))
    for seq, at, owner, host, pid, label, kind, blob, sql, epoch, size in cur:
        if kind == "data" and blob is None:
            head = EntryHead(seq, at, owner, host, pid, label, kind, epoch, int(size))
            out.append(LargeEntry(head, spool(iter_body(con, head))))
            break
        else:
            out.append(LogEntry(seq, at, owner, host, pid, label, kind,
                                Changeset(blob) if blob is not None else None, sql, epoch))
            held += len(blob) if blob is not None else len(sql or "")
        if held > 2 * LARGE_BODY:
            break
    cur.close()
    return out
