"""Replication through a NATS JetStream stream (PROTOCOL.md §9): ``publish``
a source's log into a stream, ``consume`` a stream into a replica through
its cursor; :func:`sss.replicate` and :func:`sss.follow` dispatch here when
one side is a ``nats://`` URL.  The stream itself (targets, the link,
publishing entries, acknowledgements) is :mod:`.jetstream`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from ..sessions.apply import OnConflict
from ..sessions.changeset import Changeset
from . import audit, commits, wire
from .conflicts import ConflictRecorder
from .jetstream import (
    FORMAT,
    REQUEST_TIMEOUT,
    LastEntry,
    Publisher,
    StreamLink,
    StreamTarget,
    entry_headers,
    gather_pending,
    message_header,
    nats_module,
    to_target,
)
from .replica_apply import (
    ReplicationReport,
    SourceReader,
    Tally,
    apply_group,
    check_batch,
    entry_groups,
    open_replica,
)
from .replica_cursor import (
    ensure_cursor,
    read_cursor,
)

if TYPE_CHECKING:
    from .database import Database
from .log_errors import LogPruned, ReplicationError, StreamError
from .retention import meta_write, pruned_through, register_replica

log = logging.getLogger("sqlite_session_safe.jetstream")

__all__ = ["publish", "consume"]


def publish(source: Any, target: str | StreamTarget, *, nats_options: Mapping[str, Any] | None = None,
            context: str | None = None, stream_config: Mapping[str, Any] | None = None,
            follow: bool = False, stop: threading.Event | None = None, poll: float = 0.01,
            on_report: Callable[[Any], object] | None = None) -> Any:
    """Publish ``source``'s log entries after the stream's last one (see
    :func:`sss.replicate`).  Returns a ReplicationReport (``applied``:
    entries published)."""

    tgt = to_target(target, nats_options, context)
    src = SourceReader(source)
    try:
        with StreamLink(tgt, stream_config, create=True) as link:
            total: ReplicationReport | None = None
            version = _DataVersion(src.path)
            try:
                while True:
                    report = _publish_round(src, link)
                    total = report if total is None else total + report
                    if report.applied and on_report is not None:
                        on_report(report)
                    if not follow or (stop is not None and stop.is_set()):
                        break
                    version.wait(poll, stop)
                    if stop is not None and stop.is_set():
                        break
            finally:
                version.close()
            assert total is not None
            return total
    finally:
        src.close()


class _DataVersion:
    """Waits for a commit to the source: at once for a Database of this
    process (:mod:`.commits`), else seen by polling ``PRAGMA data_version``
    (of a connection of its own) every ``poll`` seconds."""

    def __init__(self, path: str) -> None:
        from ..sessions.connection import Connection

        self.watch = commits.Watch(path)
        self.con = Connection(path, timeout=60.0)
        self.seen = self._read()

    def _read(self) -> int:
        row = self.con.execute("PRAGMA data_version").fetchone()
        return int(row[0]) if row else 0

    def wait(self, poll: float, stop: threading.Event | None) -> None:
        while stop is None or not stop.is_set():
            self.watch.clear()
            now = self._read()
            if now != self.seen:
                self.seen = now
                return
            self.watch.wait(poll, stop)

    def close(self) -> None:
        self.watch.close()
        self.con.close()


def _publish_round(src: Any, link: StreamLink) -> Any:

    with src.snapshot() as con:
        sid = audit.database_id(con)
        if sid is None:
            raise ReplicationError(f"source {src.path!r} keeps no audit log: nothing to publish")
        position = audit.log_position(con)
        pruned = pruned_through(con)
    pub = Publisher(link, sid)
    register_replica(src, "stream", str(link.target), sid)
    last = pub.resume_point(position)
    start = last.seq if last.complete else last.seq - 1
    if start < pruned:
        if last.stream_seq:
            raise LogPruned(
                f"stream {link.target.stream} ends at entry {start} of {sid}, but the source's log was "
                f"pruned through {pruned}: entries {start + 1}..{pruned} are gone, so the stream "
                "cannot go on without a gap; delete and recreate the stream (it then starts at "
                f"entry {pruned + 1}; its followers re-seed from a backup of the source)",
                sid, start + 1, pruned)
        # An empty (new or recreated) stream starts after the prune point.
        start = pruned
        last = LastEntry(0, None, pruned, 0, 1)
    published = 0
    done = start
    while done < position:
        with src.snapshot() as con:
            batch = gather_pending(con, done, position)
        if not batch:
            raise ReplicationError(f"source {sid}'s log has no entry {done + 1}: the log was altered",
                                   sid, done + 1)
        for p in batch:
            if p.head.seq <= last.seq and last.complete:
                continue  # another publisher got there first
            last = pub.send(p, last)
            if last.source_id not in (None, sid):
                raise link.error(f"another database ({last.source_id}) published to it meanwhile", sid)
            if last.seq == p.head.seq and last.complete:
                published += 1
            else:  # another publisher moved the stream on; resume from what it holds
                break
        done = last.seq if last.complete else last.seq - 1
    return ReplicationReport(sid, published, done, 0, transactions=published)


# -- consuming -----------------------------------------------------------------------


class _Assembler:
    """Turns entry messages (chunks, in stream order) into entries: in
    memory, or for a changeset larger than :data:`wire.LARGE_BODY` spooled
    to a temporary file as its chunks arrive (a :class:`wire.LargeEntry`,
    applied by streaming), so no message is held past its chunk."""

    def __init__(self, link: StreamLink) -> None:
        self.link = link
        self.parts: list[bytes] = []
        self.spool: BinaryIO | None = None
        self.count = 0
        self.current: tuple[str, int, int] | None = None  # (sid, seq, chunks)
        self.meta: wire.EntryHead | None = None

    def _reset(self) -> None:
        self.parts, self.current, self.meta, self.count = [], None, None, 0
        self.spool = None  # a LargeEntry made of it owns it now, or it is dropped

    def add(self, msg: Any, skip_through: Callable[[str], int]) -> tuple[str, wire.Pending] | None:
        sid, seq, chunk, chunks = entry_headers(msg, self.link)
        if chunk == 0:
            self._reset()
            self.current = (sid, seq, chunks)
            if seq <= skip_through(sid):
                self.current = (sid, seq, -chunks)  # already applied: drop its chunks
                return None
            raw = (message_header(msg, "Sss-Meta") or "").encode("ascii", "replace")
            size = int(message_header(msg, "Sss-Size") or "0")
            meta = wire.decode_object(raw, f"entry {seq}'s Sss-Meta header",
                                      lambda r: self.link.error(f"malformed message: {r}", sid, seq))
            self.meta = wire.entry_from_meta(meta, size, f"entry {seq}",
                                             lambda r: self.link.error(f"malformed message: {r}", sid, seq))
            if self.meta.seq != seq:
                raise self.link.error(f"message for entry {seq} holds the metadata of {self.meta.seq}",
                                      sid, seq)
            if self.meta.kind == "data" and self.meta.size > wire.LARGE_BODY:
                self.spool = wire.spool(iter(()))
        elif self.current is None or self.current[:2] != (sid, seq) or abs(self.current[2]) != chunks:
            if self.current is None:
                return None  # started reading mid-entry: its first chunk comes again? no: skip it
            raise self.link.error(f"chunk {chunk}/{chunks} of entry {seq} follows entry "
                                  f"{self.current[1]}: the stream was altered", sid, seq)
        assert self.current is not None
        if self.current[2] < 0:
            return None
        if self.count != chunk:
            raise self.link.error(f"entry {seq}: chunk {chunk} where {self.count} belongs", sid, seq)
        self.count += 1
        if self.spool is not None:
            self.spool.write(msg.data)
        else:
            self.parts.append(bytes(msg.data))
        if chunk < chunks - 1:
            return None
        head, spooled = self.meta, self.spool
        data = b"" if spooled is not None else b"".join(self.parts)
        self._reset()
        assert head is not None
        size = spooled.tell() if spooled is not None else len(data)
        if size != head.size:
            raise self.link.error(f"entry {seq} is {size} bytes, its header says {head.size}", sid, seq)
        if spooled is not None:
            return sid, wire.LargeEntry(head, spooled)
        if head.kind == "data":
            entry = head.entry(Changeset(data))
        else:
            try:
                sql = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.link.error(f"entry {seq}'s SQL is not UTF-8", sid, seq) from e
            entry = head.entry(None, sql)
        return sid, entry


#: Message bytes taken from the subscription per round (more waits in the
#: client's own buffer, up to its pending limits).
_FETCH_BYTES = 2 << 20


async def _fetch(sub: Any, n: int, timeout: float) -> list[Any]:
    """Up to ``n`` messages (and about :data:`_FETCH_BYTES`): waits up to
    ``timeout`` for the first, then takes what is already there."""
    out: list[Any] = []
    try:
        out.append(await sub.next_msg(timeout=timeout))
    except Exception as e:  # nats.errors.TimeoutError
        if "Timeout" in type(e).__name__:
            return out
        raise
    size = len(out[0].data)
    while len(out) < n and size < _FETCH_BYTES and sub.pending_msgs > 0:
        out.append(await sub.next_msg(timeout=1.0))
        size += len(out[-1].data)
    return out


def consume(target: str | StreamTarget, replica: Any, *, on_conflict: OnConflict = None, batch: int = 256,
            nats_options: Mapping[str, Any] | None = None, context: str | None = None,
            follow: bool = False, stop: threading.Event | None = None, interval: float = 0.5,
            on_report: Callable[[Any], object] | None = None) -> Any:
    """Apply the stream's entries to ``replica`` through its cursor (see
    :func:`sss.replicate`); with ``follow`` until ``stop`` is set."""

    batch = check_batch(batch)
    recorder = ConflictRecorder(on_conflict)
    tgt = to_target(target, nats_options, context)
    nats = nats_module()
    db, owned = open_replica(replica)
    try:
        link = _first_entry(tgt, follow, stop, interval, db)
        if link is None:
            return ReplicationReport("", 0, 0, 0)
        with link:
            last = link.last()
            created = link.info.created
            sid = last.source_id
            if sid is None:
                return ReplicationReport("", 0, 0, 0)
            _record_stream(db, link, sid)
            cursors: dict[str, int] = {}

            def cursor_of(s: str) -> int:
                if s not in cursors:
                    with db.read() as r:
                        cursors[s] = read_cursor(r.connection, s)
                return cursors[s]

            cursor = cursor_of(sid)
            if cursor > last.seq and not follow:
                raise link.error(f"it holds entries up to {last.seq} of source {sid}, but the replica's "
                                 f"cursor is at {cursor}: the stream was recreated or truncated (or the "
                                 "source restored from an older copy)", sid, cursor)
            start, first_seq, _ = link.start_for(cursor)
            if first_seq > cursor + 1:
                raise LogPruned(
                    f"stream {tgt.stream} starts at entry {first_seq} of source {sid}, but the "
                    f"replica's cursor is at {cursor}: entries {cursor + 1}..{first_seq - 1} are no "
                    "longer in it (removed by its retention, or the stream was recreated after the "
                    "source's log was pruned); re-seed the replica from a backup of the source",
                    sid, cursor + 1, first_seq - 1)
            target_seq = last.stream_seq
            sub = link.run(link.js.subscribe(
                tgt.log_subject, ordered_consumer=True, idle_heartbeat=2.0, flow_control=True,
                config=nats.js.api.ConsumerConfig(
                    deliver_policy=nats.js.api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)))
            tally = Tally()
            asm = _Assembler(link)
            total: ReplicationReport | None = None
            ensured: set[str] = set()
            reached = start > target_seq
            idle_since = time.monotonic()
            try:
                while True:
                    if stop is not None and stop.is_set():
                        break
                    if not follow and (reached or target_seq == 0):
                        break
                    msgs = link.run(_fetch(sub, max(batch, 64), min(interval, 1.0) if follow else 5.0))
                    if not msgs:
                        if time.monotonic() - idle_since > 5.0:
                            idle_since = time.monotonic()
                            _check_same_stream(link, created)
                        if not follow and time.monotonic() - idle_since > 30.0:
                            raise link.error("no message arrived for 30 s before the stream's end")
                        continue
                    idle_since = time.monotonic()
                    ready: list[tuple[str, wire.Pending]] = []
                    for msg in msgs:
                        got = asm.add(msg, cursor_of)
                        if got is not None:
                            ready.append(got)
                        if msg.metadata.sequence.stream >= target_seq:
                            reached = True
                    tally = Tally()
                    for s, entries in _by_source(ready):
                        if s not in ensured:
                            ensure_cursor(db, s)
                            ensured.add(s)
                        for group in entry_groups(entries, batch):
                            cursors[s] = apply_group(db, s, group, recorder, tally)
                        _ack(link, db, s, cursors[s])
                    if tally.applied or tally.skipped:
                        r = tally.report(sid, cursors.get(sid, cursor), 0)
                        total = r if total is None else total + r
                        if r.applied and on_report is not None:
                            on_report(r)
            finally:
                with contextlib.suppress(BaseException):
                    link.run(sub.unsubscribe(), 5.0)
            final = cursors.get(sid, cursor)
            lag = max(0, link.last().seq - final) if not follow else 0
            if total is None:
                return ReplicationReport(sid, 0, final, lag)
            return dataclasses.replace(total, last_seq=final, lag=lag)
    finally:
        if owned:
            db.close()


def _first_entry(tgt: StreamTarget, follow: bool, stop: threading.Event | None,
                 interval: float, db: Database) -> StreamLink | None:
    """A link to the stream once it exists and holds an entry; following
    waits for both (a follower may start before its publisher), a single
    run does not (None: the stream is empty).  A stream this replica
    followed before that now holds none of its source's entries up to the
    replica's cursor was recreated or truncated: StreamError."""
    while True:
        try:
            link = StreamLink(tgt)
        except StreamError as e:
            if not follow or "no such stream" not in str(e):
                raise
        else:
            try:
                _check_record(db, link)
            except BaseException:
                link.close()
                raise
            if link.last().stream_seq or not follow:
                return link
            link.close()
        if stop is not None and stop.wait(interval):
            return None
        if stop is None:
            time.sleep(interval)


def _record_key(link: StreamLink) -> str:
    return f"stream {link.target}"


def _check_record(db: Database, link: StreamLink) -> None:

    with db.read() as r:
        con = r.connection
        assert con is not None
        if audit.database_id(con) is None:
            return
        row = con.execute(f"SELECT value FROM {audit.META_TABLE} WHERE key = ?",
                          (_record_key(link),)).fetchone()
        if row is None:
            return
        try:
            rec = json.loads(row[0])
            sid, created = str(rec["source_id"]), str(rec["created"])
        except (ValueError, KeyError, TypeError):
            return
        cursor = read_cursor(con, sid)
    last = link.last()
    held = (last.seq if last.complete else last.seq - 1) if last.source_id == sid else 0
    if held < cursor:
        what = ("holds no entries of it" if held == 0 else f"holds its entries only up to {held}")
        again = " (it was created anew)" if str(link.info.created) != created else ""
        raise link.error(f"the replica followed this stream for source {sid} up to entry {cursor}, but "
                         f"it now {what}{again}: the stream was recreated or truncated. Republish the "
                         "source into it (sss.replicate(source, url)), or re-seed the replica",
                         sid, cursor)


def _record_stream(db: Database, link: StreamLink, sid: str) -> None:
    """Remember in the replica which source this stream carries (and when
    the stream was created), so a stream recreated empty is noticed."""

    value = json.dumps({"source_id": sid, "created": str(link.info.created)})
    with db.read() as r:
        if audit.database_id(r.connection) is not None:
            row = r.connection.execute(f"SELECT value FROM {audit.META_TABLE} WHERE key = ?",
                                 (_record_key(link),)).fetchone()
            if row is not None and row[0] == value:
                return
    meta_write(db, f"follow {link.target}", f"INSERT INTO {audit.META_TABLE} (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (_record_key(link), value))


def _by_source(ready: list[tuple[str, wire.Pending]]) -> Iterator[tuple[str, list[wire.Pending]]]:
    """Consecutive runs of one source's entries."""
    run: list[wire.Pending] = []
    current: str | None = None
    for s, e in ready:
        if s != current and run:
            assert current is not None
            yield current, run
            run = []
        current = s
        run.append(e)
    if run:
        assert current is not None
        yield current, run


def _check_same_stream(link: StreamLink, created: Any) -> None:
    try:
        info = link.run(link.js.stream_info(link.target.stream))
    except Exception as e:
        if "NotFound" in type(e).__name__:
            raise link.error("the stream was deleted") from e
        return  # unreachable for now: the client reconnects on its own
    if info.created != created:
        raise link.error("the stream was recreated (its creation time changed) while following it; "
                         "start again (entries the replica already has are skipped)")


def _ack(link: StreamLink, db: Database, source_id: str, seq: int) -> None:
    """Publish the replica's cursor for ``source_id`` (its last one only is
    kept: Nats-Rollup), for :func:`wait_replicated`."""
    with db.read() as r:
        rid = audit.database_id(r.connection) or "unknown"
    body = wire.encode_json({"replica_id": rid, "source_id": source_id, "seq": seq,
                             "at": audit.utc_now()})
    try:
        link.run(link.js.publish(f"{link.target.ack_subject}.{rid}", body, timeout=REQUEST_TIMEOUT,
                                 headers={"Nats-Rollup": "sub", "Sss-Format": FORMAT}))
    except Exception as e:  # an acknowledgement lost is not a replication failure
        log.warning("could not acknowledge seq %s of %s on %s: %s", seq, source_id, link.target, e)
