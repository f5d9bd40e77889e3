"""A NATS JetStream stream of log entries (PROTOCOL.md §9): targets, the
link to the stream, publishing entries, acknowledgements.  Replication
through a stream (``publish``/``consume``) is :mod:`.stream_replication`.

``sss.replicate(db, "nats://host:4222/STREAM")`` publishes the source's log
entries after the stream's last one; ``sss.replicate("nats://…/STREAM",
replica)`` applies the stream's entries through the replica's cursor (§6),
so exactly once; ``sss.follow`` does either continuously.  Followers
acknowledge what they applied on the stream, and :func:`wait_replicated`
waits for N of them.

Exactly once on the publishing side: every message names the stream
sequence it expects to follow on the entry subject
(``Nats-Expected-Last-Subject-Sequence``), so a publisher that restarts, or
a second one, can only append after the stream's actual last message, which
it reads before publishing; ``Nats-Msg-Id`` (``<database_id>:<seq>``) lets
JetStream drop a retried publish within its duplicate window as well.

The official client ``nats-py`` is asynchronous.  The synchronous API drives
it on one private event loop, in a daemon thread started on first use; a
forked child starts its own (the parent's thread does not exist there), and
connections still open at exit are closed by an ``atexit`` handler.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from ..binding.errors import InterfaceError
from . import wire
from .log_errors import ReplicationTimeout, StreamError

__all__ = [
    "FORMAT",
    "StreamTarget",
    "is_stream_url",
    "parse_target",
    "wait_replicated",
    "replica_acks",
    "last_published",
]

log = logging.getLogger("sqlite_session_safe.jetstream")

#: The value of every message's ``Sss-Format`` header (PROTOCOL.md §9).
FORMAT = "1"
_SCHEMES = ("nats", "tls", "nats+tls")
#: Headers and room left in a message besides a chunk of the body.
_HEADER_ROOM = 4096
#: Largest body piece per message, below the server's max_payload.
MAX_CHUNK = 1 << 20
#: Bodies gathered in memory per source snapshot before publishing them
#: (one larger than wire.LARGE_BODY is spooled to a temporary file).
_GATHER_BYTES = 16 << 20
#: How long one request to the server may take.
REQUEST_TIMEOUT = 10.0

_T = TypeVar("_T")


def nats_module() -> Any:
    """The nats-py package, imported on first use (an optional dependency)."""
    try:
        import nats  # type: ignore[import-untyped,unused-ignore]
        import nats.js.api  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        import nats.js.errors  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError as e:
        raise StreamError("replication over NATS needs the nats-py client: "
                          "pip install 'sqlite-session-safe[nats]'") from e
    return nats


# -- the private event loop ------------------------------------------------------


class _Loop:
    """An asyncio loop in a daemon thread; coroutines are run on it from
    synchronous code with :meth:`run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name="sss-nats-loop", daemon=True)
        self.thread.start()
        started.wait()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise


_loop: _Loop | None = None
_loop_lock = threading.Lock()
_links: set[StreamLink] = set()


def _the_loop() -> _Loop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.pid != os.getpid():
            _loop = _Loop()
        return _loop


def _after_fork() -> None:
    # The child has no loop thread (only the forking thread survives a
    # fork), and the parent's sockets are the parent's: start afresh.
    global _loop, _loop_lock
    _loop = None
    _loop_lock = threading.Lock()
    _links.clear()


def _at_exit() -> None:
    for link in list(_links):
        with contextlib.suppress(BaseException):
            link.close(timeout=2.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)


# -- where: URLs, contexts, options ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamTarget:
    """A stream to replicate through, parsed from a URL.

    ``nats://[user[:password]@]host[:port][,host:port...]/STREAM[?query]``;
    ``tls://`` (or ``nats+tls://``) asks for TLS.  Query parameters:
    ``context`` (a nats CLI context by name, ``~/.config/nats/context/NAME.json``:
    its url, user, password, token, creds, nkey, cert, key and ca are used),
    ``subject`` (the subject prefix, default ``sss.STREAM``), ``creds``,
    ``nkey``, ``token``, ``ca``, ``cert``, ``key`` (files).  A URL without a
    host (``nats:///STREAM``) takes the servers from the context (the one
    named, else the nats CLI's selected one).  Secrets are never part of
    ``str(target)``.
    """

    servers: tuple[str, ...]
    stream: str
    prefix: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def log_subject(self) -> str:
        """The subject log entries are published on (``<prefix>.log``)."""
        return f"{self.prefix}.log"

    @property
    def ack_subject(self) -> str:
        """The subject replicas acknowledge applied entries on (``<prefix>.ack``,
        read by :func:`wait_replicated`)."""
        return f"{self.prefix}.ack"

    def __str__(self) -> str:
        hosts = ",".join(urllib.parse.urlsplit(s).netloc.rpartition("@")[2] for s in self.servers)
        return f"nats://{hosts}/{self.stream}"


def is_stream_url(value: object) -> bool:
    """Whether ``value`` is a ``nats://`` (or ``tls://``) URL string."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in _SCHEMES and "://" in value


def _context_file(name: str | None) -> str | None:
    base = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "nats")
    if name is None:
        try:
            with open(os.path.join(base, "context.txt")) as f:
                name = f.read().strip() or None
        except OSError:
            return None
        if name is None:
            return None
    return os.path.join(base, "context", f"{name}.json")


def _load_context(name: str | None) -> dict[str, Any]:
    path = _context_file(name)
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            ctx = json.load(f)
    except FileNotFoundError:
        if name is None:
            return {}
        raise StreamError(f"nats context {name!r} not found ({path})") from None
    except (OSError, ValueError) as e:
        raise StreamError(f"cannot read nats context {path}: {e}") from e
    if not isinstance(ctx, dict):
        raise StreamError(f"nats context {path} is not a JSON object")
    return ctx


def parse_target(url: str, *, nats_options: Mapping[str, Any] | None = None,
                 context: str | None = None) -> StreamTarget:
    """Parse a stream URL (see :class:`StreamTarget`).  ``nats_options`` are
    passed to ``nats.connect`` as they are (``user_credentials``, ``tls``,
    ``nkeys_seed``, ``token``, ...) and win over the URL's and the context's;
    ``context`` names a nats CLI context (as ``?context=``)."""
    if not is_stream_url(url):
        raise InterfaceError(f"not a NATS stream URL (nats://host:port/STREAM): {url!r}")
    parts = urllib.parse.urlsplit(url)
    stream = urllib.parse.unquote(parts.path.strip("/"))
    if not stream or any(c in stream for c in " .*>/\\\t\r\n"):
        raise InterfaceError(f"the URL {url!r} must name one stream after the host: "
                             "nats://host:port/STREAM (no '.', '*', '>', '/' or spaces)")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - {"context", "subject", "creds", "nkey", "token", "ca", "cert", "key"}
    if unknown:
        raise InterfaceError(f"unknown parameter(s) in {url!r}: {', '.join(sorted(unknown))}")
    ctx_name = context or query.get("context")
    ctx = _load_context(ctx_name) if (ctx_name or not parts.netloc) else {}
    tls = parts.scheme.lower() != "nats"
    opts: dict[str, Any] = {}
    if parts.netloc:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        scheme = "tls" if tls else "nats"
        servers = tuple(f"{scheme}://{h}" for h in hosts.split(",") if h)
        if userinfo:
            user, _, password = userinfo.partition(":")
            opts["user"] = urllib.parse.unquote(user)
            if password:
                opts["password"] = urllib.parse.unquote(password)
    else:
        servers = tuple(s.strip() for s in str(ctx.get("url") or "").split(",") if s.strip())
        if not servers:
            raise InterfaceError(f"{url!r} names no server and no nats context gives one")
    for key, opt in (("user", "user"), ("password", "password"), ("token", "token")):
        if ctx.get(key) and opt not in opts:
            opts[opt] = ctx[key]
    creds = query.get("creds") or ctx.get("creds")
    if creds:
        opts["user_credentials"] = os.path.expanduser(creds)
    nkey = query.get("nkey") or ctx.get("nkey")
    if nkey:
        opts["nkeys_seed"] = os.path.expanduser(nkey)
    if query.get("token"):
        opts["token"] = query["token"]
    ca, cert, keyfile = (query.get(k) or ctx.get(k) for k in ("ca", "cert", "key"))
    if ca or cert or tls:
        context_ = ssl.create_default_context(cafile=os.path.expanduser(ca) if ca else None)
        if cert:
            context_.load_cert_chain(os.path.expanduser(cert),
                                     os.path.expanduser(keyfile) if keyfile else None)
        opts["tls"] = context_
    opts.update(nats_options or {})
    prefix = query.get("subject") or f"sss.{stream}"
    return StreamTarget(servers, stream, prefix, tuple(sorted(opts.items())))


def to_target(value: str | StreamTarget, nats_options: Mapping[str, Any] | None,
            context: str | None) -> StreamTarget:
    if isinstance(value, StreamTarget):
        if nats_options:
            return dataclasses.replace(value, options=tuple(sorted({**dict(value.options),
                                                                    **nats_options}.items())))
        return value
    return parse_target(value, nats_options=nats_options, context=context)


# -- one connection ----------------------------------------------------------------


@dataclasses.dataclass
class LastEntry:
    """The stream's last message on the entry subject."""

    stream_seq: int  # 0: none
    source_id: str | None = None
    seq: int = 0
    chunk: int = 0
    chunks: int = 1

    @property
    def complete(self) -> bool:
        return self.chunk == self.chunks - 1


def message_header(msg: Any, name: str) -> str | None:
    headers = msg.headers or {}
    value = headers.get(name)
    return None if value is None else str(value)


class StreamLink:
    """A connection to the server and the stream, used from synchronous code."""

    def __init__(self, target: StreamTarget, stream_config: Mapping[str, Any] | None = None,
                 create: bool = False) -> None:
        self.target = target
        self.nats = nats_module()
        self.loop = _the_loop()
        self.nc: Any = None
        try:
            self.nc = self.run(self._connect())
        except StreamError:
            raise
        except Exception as e:
            raise StreamError(f"cannot connect to {target}: {e}", stream=target.stream) from e
        _links.add(self)
        self.js = self.nc.jetstream()
        try:
            self.info = self.run(self._stream(stream_config, create))
        except BaseException:
            self.close()
            raise

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = REQUEST_TIMEOUT * 3) -> _T:
        return self.loop.run(coro, timeout)

    async def _connect(self) -> Any:
        async def quiet(e: Exception) -> None:  # nats-py prints a traceback by default
            log.debug("nats %s: %s", self.target, e)

        opts = {"error_cb": quiet, **dict(self.target.options)}
        return await self.nats.connect(list(self.target.servers), name="sqlite-session-safe",
                                       connect_timeout=5, max_reconnect_attempts=-1,
                                       reconnect_time_wait=0.5, **opts)

    def error(self, message: str, source_id: str | None = None, seq: int | None = None) -> StreamError:
        return StreamError(f"stream {self.target.stream} at {self.target}: {message}", source_id, seq,
                           self.target.stream)

    async def _stream(self, config: Mapping[str, Any] | None, create: bool) -> Any:
        api = self.nats.js.api
        errors = self.nats.js.errors
        name = self.target.stream
        try:
            info = await self.js.stream_info(name)
        except errors.NotFoundError:
            if not create:
                raise self.error("no such stream (a publisher creates it: "
                                 "sss.replicate(db, url))") from None
            cfg = {"name": name, "subjects": [f"{self.target.prefix}.>"], "allow_rollup_hdrs": True,
                   "storage": api.StorageType.FILE, **dict(config or {})}
            if not cfg.get("allow_rollup_hdrs"):
                raise InterfaceError(  # noqa: B904 - a usage error, not a consequence"stream_config must keep allow_rollup_hdrs=True "
                                     "(acknowledgements keep only each replica's last one)")
            try:
                await self.js.add_stream(api.StreamConfig(**cfg))
            except errors.BadRequestError as e:
                if getattr(e, "err_code", None) != 10058:  # not "stream name already in use"
                    raise self.error(f"cannot create it: {e}") from e
            info = await self.js.stream_info(name)
        except errors.Error as e:
            raise self.error(f"cannot read its information: {e}") from e
        subjects = list(info.config.subjects or [])
        if f"{self.target.prefix}.>" not in subjects and not (
                self.target.log_subject in subjects and f"{self.target.ack_subject}.*" in subjects):
            raise self.error(f"it takes subjects {subjects}, not {self.target.prefix}.> (pass "
                             "?subject= to use the prefix it was made for)")
        return info

    def close(self, timeout: float = 5.0) -> None:
        _links.discard(self)
        nc, self.nc = self.nc, None
        if nc is None or self.loop.pid != os.getpid():
            return
        with contextlib.suppress(BaseException):
            self.run(nc.close(), timeout)

    def __enter__(self) -> StreamLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------

    async def _last(self) -> LastEntry:
        errors = self.nats.js.errors
        try:
            msg = await self.js.get_last_msg(self.target.stream, self.target.log_subject)
        except errors.NotFoundError:
            return LastEntry(0)
        return self._parse_last(msg.seq, msg)

    def _parse_last(self, stream_seq: int, msg: Any) -> LastEntry:
        sid, seq, chunk, chunks = entry_headers(msg, self)
        return LastEntry(stream_seq, sid, seq, chunk, chunks)

    def last(self) -> LastEntry:
        """The stream's last entry message (stream_seq 0 when it has none)."""
        return self.run(self._last())

    async def _entry_at_or_after(self, stream_seq: int) -> tuple[int, Any] | None:
        errors = self.nats.js.errors
        try:
            msg = await self.js.get_msg(self.target.stream, seq=stream_seq,
                                        subject=self.target.log_subject, next=True)
        except errors.NotFoundError:
            return None
        return int(msg.seq), msg

    async def _start_for(self, cursor: int) -> tuple[int, int, str | None]:
        """The stream sequence to read from so that the first entry seen is
        the one after ``cursor`` (a binary search on the entries' seqs), the
        seq of the stream's first entry, and the source it names."""
        info = await self.js.stream_info(self.target.stream)
        lo, hi = int(info.state.first_seq or 1), int(info.state.last_seq or 0)
        first = await self._entry_at_or_after(lo)
        if first is None:
            return hi + 1, 0, None
        first_sid, first_seq, _, _ = entry_headers(first[1], self)
        if first_seq > cursor:
            return first[0], first_seq, first_sid
        lo = first[0]
        while lo < hi:  # invariant: the entry at or after lo has seq <= cursor
            mid = (lo + hi + 1) // 2
            found = await self._entry_at_or_after(mid)
            if found is None:
                hi = mid - 1
                continue
            _, seq, _, _ = entry_headers(found[1], self)
            if seq <= cursor:
                lo = found[0]
            else:
                hi = mid - 1
        return lo, first_seq, first_sid

    def start_for(self, cursor: int) -> tuple[int, int, str | None]:
        return self.run(self._start_for(cursor))


def entry_headers(msg: Any, link: StreamLink) -> tuple[str, int, int, int]:
    """(source id, seq, chunk, chunks) of an entry message; a message that is
    not one is a StreamError."""
    fmt = message_header(msg, "Sss-Format")
    sid = message_header(msg, "Sss-Source")
    try:
        seq = int(message_header(msg, "Sss-Seq") or "")
        chunk_s, _, chunks_s = (message_header(msg, "Sss-Chunk") or "0/1").partition("/")
        chunk, chunks = int(chunk_s), int(chunks_s)
    except ValueError:
        seq = chunk = chunks = -1
    if fmt != FORMAT or not sid or seq < 1 or not 0 <= chunk < chunks:
        raise link.error(f"message {getattr(msg, 'seq', '?')} on {link.target.log_subject} is not a "
                         f"log entry of format {FORMAT} (Sss-Format {fmt!r}, Sss-Source {sid!r}, "
                         f"Sss-Seq {message_header(msg, 'Sss-Seq')!r}, "
                         f"Sss-Chunk {message_header(msg, 'Sss-Chunk')!r})")
    return sid, seq, chunk, chunks


# -- publishing ----------------------------------------------------------------------


@dataclasses.dataclass
class PendingEntry:
    head: wire.EntryHead
    body: bytes | BinaryIO


def gather_pending(con: Any, since: int, until: int) -> list[PendingEntry]:
    """Entries after ``since`` (up to ``until``) with their bodies, from one
    snapshot: up to _GATHER_BYTES in memory, a larger body spooled to a
    temporary file, so the snapshot ends before anything is sent."""
    out: list[PendingEntry] = []
    total = 0
    for head in wire.iter_heads(con, since, until, batch=64):
        if out and total + head.size > _GATHER_BYTES:
            break
        if head.size > wire.LARGE_BODY:
            out.append(PendingEntry(head, wire.spool(wire.iter_body(con, head))))
        else:
            out.append(PendingEntry(head, b"".join(wire.iter_body(con, head))))
        total += head.size
    return out


def _chunks(body: bytes | BinaryIO, size: int, chunk: int) -> Iterator[bytes]:
    if isinstance(body, bytes):
        for i in range(0, max(size, 1), chunk):
            yield body[i:i + chunk]
        return
    while True:
        piece = body.read(chunk)
        if not piece:
            return
        yield piece


class Publisher:
    def __init__(self, link: StreamLink, source_id: str) -> None:
        self.link = link
        self.sid = source_id
        self.chunk = max(1024, min(MAX_CHUNK, int(link.nc.max_payload) - _HEADER_ROOM))

    def resume_point(self, position: int) -> LastEntry:
        last = self.link.last()
        if last.stream_seq == 0:
            return last
        if last.source_id != self.sid:
            raise self.link.error(f"it holds the log of database {last.source_id}, not of {self.sid} "
                                  "(one stream per source: name another stream)", self.sid)
        if last.seq > position:
            raise self.link.error(f"it holds entries up to {last.seq} of {self.sid}, but the source's "
                                  f"log ends at {position}: the source was restored from an older copy",
                                  self.sid, last.seq)
        return last

    async def _send(self, p: PendingEntry, first_chunk: int, expected: int) -> int:
        """Publish the chunks of one entry from ``first_chunk``; returns the
        stream sequence of the last one."""
        head = p.head
        n = max(1, -(-head.size // self.chunk))
        meta = wire.encode_json(wire.entry_meta(head), ascii_only=True).decode("ascii")
        if len(meta) > _HEADER_ROOM // 2:
            meta_too_big = f"entry {head.seq}'s metadata is {len(meta)} bytes (a label that long?)"
            raise self.link.error(meta_too_big, self.sid, head.seq)
        if not isinstance(p.body, bytes):
            p.body.seek(first_chunk * self.chunk)
        pieces = _chunks(p.body[first_chunk * self.chunk:] if isinstance(p.body, bytes) else p.body,
                         head.size - first_chunk * self.chunk, self.chunk)
        for i, piece in zip(range(first_chunk, n), pieces, strict=False):
            msg_id = f"{self.sid}:{head.seq}" if n == 1 else f"{self.sid}:{head.seq}:{i}"
            headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(expected),
                       "Sss-Format": FORMAT, "Sss-Source": self.sid, "Sss-Seq": str(head.seq),
                       "Sss-Chunk": f"{i}/{n}", "Sss-Size": str(head.size)}
            if i == 0:
                headers["Sss-Meta"] = meta
            ack = await self.link.js.publish(self.link.target.log_subject, piece,
                                             timeout=REQUEST_TIMEOUT, headers=headers)
            expected = int(ack.seq)
        return expected

    def send(self, p: PendingEntry, last: LastEntry) -> LastEntry:
        """Publish entry ``p`` after ``last`` (resuming a partly published one)."""
        first_chunk = last.chunk + 1 if last.seq == p.head.seq else 0
        try:
            stream_seq = self.link.run(self._send(p, first_chunk, last.stream_seq))
        except Exception as e:
            if isinstance(e, StreamError):
                raise
            err = getattr(e, "err_code", None)
            if err == 10071:  # wrong last sequence: someone else appended; look again
                return self.link.last()
            if isinstance(e, (asyncio.TimeoutError, TimeoutError)) or "timeout" in type(e).__name__.lower():
                return self.link.last()  # the outcome is unknown: the stream says
            raise self.link.error(f"publishing entry {p.head.seq} failed: {e}", self.sid, p.head.seq) from e
        n = max(1, -(-p.head.size // self.chunk))
        return LastEntry(stream_seq, self.sid, p.head.seq, n - 1, n)





# -- acknowledgements --------------------------------------------------------------


async def _acks(link: StreamLink, until: Callable[[dict[str, int]], bool], source_id: str | None,
                timeout: float) -> dict[str, int]:
    api = link.nats.js.api
    sub = await link.js.subscribe(f"{link.target.ack_subject}.*", ordered_consumer=True,
                                  deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                                  idle_heartbeat=1.0)
    cursors: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while not until(cursors):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msg = await sub.next_msg(timeout=min(left, 1.0))
            except Exception as e:
                if "Timeout" in type(e).__name__:
                    continue
                raise
            try:
                doc = json.loads(bytes(msg.data))
                rid, sid, seq = doc["replica_id"], doc["source_id"], int(doc["seq"])
            except (ValueError, KeyError, TypeError):
                continue
            if source_id is None or sid == source_id:
                cursors[str(rid)] = max(cursors.get(str(rid), 0), seq)
    finally:
        with contextlib.suppress(BaseException):
            await sub.unsubscribe()
    return cursors


def replica_acks(target: str | StreamTarget, *, source_id: str | None = None,
                 nats_options: Mapping[str, Any] | None = None, context: str | None = None,
                 timeout: float = 2.0) -> dict[str, int]:
    """The last cursor each follower of the stream acknowledged, by replica
    id (of ``source_id``'s log, default: the stream's source)."""
    with StreamLink(to_target(target, nats_options, context)) as link:
        sid = source_id or link.last().source_id
        expected = int(link.run(link.js.stream_info(link.target.stream)).state.num_subjects or 0)
        return link.run(_acks(link, lambda c: len(c) >= expected, sid, timeout), timeout + 10)


def wait_replicated(target: str | StreamTarget, seq: int, n: int = 1, *, timeout: float = 30.0,
                    source_id: str | None = None, nats_options: Mapping[str, Any] | None = None,
                    context: str | None = None) -> tuple[str, ...]:
    """Wait until ``n`` followers of the stream have applied entry ``seq`` of
    the source's log (their acknowledged cursors are at or past it); returns
    their replica ids.  Followers acknowledge after each committed step, so
    an acknowledged entry is durable on that replica.

    Raises:
        ReplicationTimeout: fewer than ``n`` acknowledged it within
            ``timeout`` seconds (it names those that did).
        StreamError: the stream cannot be reached.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InterfaceError(f"seq must be an int >= 0, not {seq!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InterfaceError(f"n must be an int >= 1, not {n!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise InterfaceError(f"timeout must be seconds >= 0, not {timeout!r}")
    with StreamLink(to_target(target, nats_options, context)) as link:
        sid = source_id or link.last().source_id

        def enough(c: dict[str, int]) -> bool:
            return sum(1 for v in c.values() if v >= seq) >= n

        cursors = link.run(_acks(link, enough, sid, float(timeout)), timeout + 30)
    done = tuple(sorted(r for r, v in cursors.items() if v >= seq))
    if len(done) >= n:
        return done
    raise ReplicationTimeout(
        f"entry {seq} of {sid} was acknowledged by {len(done)} of the {n} replica(s) asked for within "
        f"{timeout:g} s ({', '.join(done) or 'none'}; cursors seen: "
        f"{', '.join(f'{r}={v}' for r, v in sorted(cursors.items())) or 'none'})",
        sid, seq, n, done)


def last_published(target: str | StreamTarget, source_id: str, *,
                   nats_options: Mapping[str, Any] | None = None, context: str | None = None) -> int:
    """The last entry of ``source_id`` the stream holds whole (0: none)."""
    with StreamLink(to_target(target, nats_options, context)) as link:
        last = link.last()
        if last.source_id != source_id:
            return 0
        return last.seq if last.complete else last.seq - 1

