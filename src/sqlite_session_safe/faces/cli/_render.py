"""Readable renderings of changes and lock states, shared by the commands."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

import sqlite_session_safe as sss

from ...sessions.changeset import NameCache
from ...sessions.stream import FORMAT_JSON, FORMAT_JSON_ASCII, FORMAT_TEXT, format_stream, summarize_stream
from ._base import CliError, ExitCode, Output, for_terminal, is_utf8

__all__ = ["literal", "change_line", "show_changes", "write_changes_json", "changes_doc", "lock_doc",
           "lock_message", "show_lock", "count_changes", "entry_doc", "show_entry", "open_json",
           "write_entry_json",
           "Body", "SPOOL_ABOVE", "spool"]


def literal(value: Any) -> str:
    """A value as SQL writes it: NULL, 'text', x'00ff', 12, 1.5."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x'" + bytes(value).hex() + "'"
    return repr(value)


def change_line(change: dict[str, Any]) -> str:
    """One change from ``Changeset.as_dicts`` as a line::

        INSERT item (id=3, name='plum')
        UPDATE item [id=1] qty: 3 -> 2
        DELETE item (id=2, name='pear')

    The reference rendering: the commands print changes through
    :func:`show_changes`, which writes these same lines in C
    (``csrc/sss_format.c``; the tests hold the two to the same bytes)."""
    table, op = change["table"], change["op"]
    old, new = change["old"] or {}, change["new"] or {}
    mark = " (indirect)" if change["indirect"] else ""
    if op == "INSERT":
        cols = ", ".join(f"{k}={literal(v)}" for k, v in new.items())
        return f"INSERT {table} ({cols}){mark}"
    if op == "DELETE":
        cols = ", ".join(f"{k}={literal(v)}" for k, v in old.items())
        return f"DELETE {table} ({cols}){mark}"
    key = ", ".join(f"{k}={literal(old.get(k))}" for k in change["pk"])
    sets = ", ".join(f"{k}: {literal(old.get(k))} -> {literal(v)}" for k, v in new.items())
    return f"UPDATE {table} [{key}] {sets}{mark}"


def changes_doc(cs: sss.Changeset | sss.Patchset | BinaryIO, con: sss.Connection | None) -> list[Any]:
    """The changes as JSON-ready dicts (``Changeset.to_json``'s encoding),
    formatted in C and parsed by ``json``."""
    text = "".join(format_stream(cs, NameCache(con).get, FORMAT_JSON))
    result: list[Any] = json.loads(f"[{text}]")
    return result


def show_changes(out: Output, cs: sss.Changeset | sss.Patchset | BinaryIO, con: sss.Connection | None,
                 indent: str = "  ") -> None:
    """Print every change of ``cs`` (a changeset, or a binary file holding
    one), one :func:`change_line` each, formatted in C and written a chunk at
    a time as the changes are read (column names from ``con``).  Nothing
    with ``--json``."""
    if out.json:
        return
    for text in format_stream(cs, NameCache(con).get, FORMAT_TEXT, indent):
        out.write(text)


def write_changes_json(out: Output, cs: sss.Changeset | sss.Patchset | BinaryIO,
                       con: sss.Connection | None) -> None:
    """Write the changes of ``cs`` as the items of a JSON array (objects
    separated by ", ", no brackets), as ``out.dumps`` would write each of
    :func:`change_dicts`' dicts, formatted in C a chunk at a time."""
    mode = FORMAT_JSON if is_utf8(out.out) else FORMAT_JSON_ASCII
    for text in format_stream(cs, NameCache(con).get, mode):
        out.write(text)


def open_json(out: Output, doc: dict[str, Any], key: str) -> None:
    """Start writing ``doc`` with one more key, ``key``, a list whose items
    the caller writes next (", " between them), then closes with "]}":
    the bytes ``out.dumps({**doc, key: items})`` would write, without
    holding the items."""
    out.write(out.dumps(doc)[:-1] + (", " if doc else "") + json.dumps(key) + ": [")


#: A data entry's changes: in memory, or in a binary file (a large entry
#: the command spooled to disk rather than hold).
Body = sss.Changeset | sss.Patchset | BinaryIO


#: A data entry's body larger than this is spooled to a temporary file and
#: read from there, rather than held in memory.
SPOOL_ABOVE = 16 << 20


def spool(pieces: Iterable[bytes]) -> BinaryIO:
    """A temporary file holding ``pieces``, positioned at its start (the
    caller closes it; it is deleted then)."""
    f = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    try:
        for piece in pieces:
            f.write(piece)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f


def _body(entry: sss.LogEntry, body: Body | None) -> Body | None:
    return body if body is not None else entry.changeset


def write_entry_json(out: Output, entry: sss.LogEntry, con: sss.Connection | None, decode: bool,
                     body: Body | None = None) -> None:
    """:func:`entry_doc` as JSON (``decode``: with its changes, formatted in
    C as they are written, so a large entry costs its bytes, not a Python
    object per change; ``body``: the changes, when the entry does not hold
    them)."""
    doc = entry_doc(entry, con, False, body)
    data = _body(entry, body)
    if not decode or data is None:
        out.write(out.dumps(doc))
        return
    open_json(out, doc, "changes")
    write_changes_json(out, data, con)
    out.write("]}")


def count_changes(cs: Body) -> dict[str, int]:
    """Changes per table, in the order the tables appear (counted in C; a
    file is read from its position, which is then restored)."""
    counts: dict[str, int] = {}
    if isinstance(cs, bytes):
        sections = summarize_stream(cs)[1] if cs else []
    else:
        at = cs.tell()
        sections = summarize_stream(cs)[1]
        cs.seek(at)
    for table, _, _, ins, upd, dels in sections:
        counts[table] = counts.get(table, 0) + ins + upd + dels
    return counts


def _size(data: Body) -> int:
    if isinstance(data, bytes):
        return len(data)
    return os.fstat(data.fileno()).st_size


def _owner_doc(rec: sss.OwnerRecord | sss.AdmissionRecord) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(rec.to_json_bytes())
    return doc


def lock_message(info: sss.LockInfo | None, database: str) -> str:
    """One sentence on the lock's state and what to do about it."""
    if info is None:
        return "nobody holds the lock"
    rec = info.owner
    if info.state != "held" or rec is None:
        text = for_terminal(info.message)
        return text.replace("'lock --break", f"'sqlite-session-safe lock {database} --break")
    what = "for writing" if rec.mode == "write" else "for reading"
    where = f"process {rec.pid} on this host ({rec.host})"
    breaks = f"'sqlite-session-safe lock {database} --break'"
    watch = (f"{breaks} watches its heartbeat and breaks it only if it stands still for the stale "
             "timeout")
    if info.process == "alive":
        return f"held {what} by {where}, which is alive: wait for it, or stop that process"
    if info.process == "dead":
        return f"held {what} by {where}, which is gone: the lock is stale; {breaks} breaks it now"
    if info.process == "reused":
        return (f"held {what} by {where}, which is gone (its pid now belongs to another "
                f"process): the lock is stale; {breaks} breaks it now")
    if info.process == "other-host":
        return f"held {what} by process {rec.pid} on host {rec.host!r}; {watch}"
    return f"held {what} by {where}, which may or may not be alive; {watch}"


def lock_doc(info: sss.LockInfo | None, database: str) -> dict[str, Any]:
    """The ``lock`` object of the JSON output (see README, "Command line")."""
    if info is None:
        return {"state": "free", "path": None, "holder": None, "process": "", "breakable_now": False,
                "message": lock_message(info, database), "readers": [], "leftovers": []}
    return {
        "state": info.state,
        "path": info.path,
        "holder": _owner_doc(info.owner) if info.owner is not None else None,
        "process": info.process,
        "breakable_now": info.breakable_now,
        "message": lock_message(info, database),
        "readers": [lock_doc(r, database) for r in info.readers],
        "leftovers": list(info.leftovers),
    }


def show_lock(out: Output, info: sss.LockInfo | None, database: str, indent: str = "") -> None:
    """The lock state as readable lines."""
    if info is None:
        out.line(f"{indent}lock: free (nobody holds it)")
        return
    out.line(f"{indent}lock: {info.state}")
    rec = info.owner
    if isinstance(rec, sss.AdmissionRecord):  # lock protocol v2: an operating-system lock
        out.fields([
            ("holder", f"owner {rec.owner_id} ({rec.mode}, operating-system lock)"),
            ("process", f"pid {rec.pid} on {rec.host} ({info.process})"),
            ("since", rec.acquired_at or None),
        ], indent=indent + "  ")
    elif rec is not None:
        out.fields([
            ("holder", f"owner {rec.owner_id} ({rec.mode}, {rec.phase})"),
            ("process", f"pid {rec.pid} on {rec.host} ({info.process})"),
            ("heartbeat", f"{rec.heartbeat} every {rec.heartbeat_interval:g}s, "
                          f"stale after {rec.stale_timeout:g}s unchanged"),
            ("since", rec.created_at or None),
            ("breakable now", info.breakable_now),
        ], indent=indent + "  ")
    out.line(f"{indent}  {lock_message(info, database)}")
    for reader in info.readers:
        out.line(f"{indent}  reader: {lock_message(reader, database)}")
    for path in info.leftovers:
        out.line(f"{indent}  leftover: {path}")


def entry_doc(entry: sss.LogEntry, con: sss.Connection | None, decode: bool,
              body: Body | None = None) -> dict[str, Any]:
    """One audit log (or bundle) entry as the JSON ``log`` and ``show`` print
    (``body``: its changes, when the entry does not hold them)."""
    doc: dict[str, Any] = {
        "seq": entry.seq, "committed_at": entry.committed_at, "kind": entry.kind, "label": entry.label,
        "owner": entry.owner, "host": entry.host, "pid": entry.pid, "epoch": entry.epoch,
    }
    data = _body(entry, body)
    if data is not None:
        counts = count_changes(data)
        doc.update(bytes=_size(data), change_count=sum(counts.values()), tables=counts, sql=None)
        if decode:
            doc["changes"] = changes_doc(data, con)
    else:
        doc.update(bytes=len((entry.sql or "").encode()), change_count=0, tables={}, sql=entry.sql)
    return doc


def show_entry(out: Output, entry: sss.LogEntry, doc: dict[str, Any], con: sss.Connection | None,
               decode: bool, body: Body | None = None) -> None:
    """One entry as a readable line (and its changes or SQL with
    ``decode``; ``body``: its changes, when the entry does not hold them)."""
    label = f" {entry.label!r}" if entry.label is not None else ""
    who = f"pid {entry.pid}@{entry.host}"
    if entry.kind == "ddl":
        sql = (entry.sql or "").strip()
        first = sql.splitlines()[0] if sql else ""
        out.line(f"#{entry.seq}  {entry.committed_at}  ddl{label}  {who}  {first}")
        if decode:
            for sql_line in sql.splitlines():
                out.line(f"    {sql_line}")
        return
    tables = ", ".join(f"{t} {n}" for t, n in doc["tables"].items())
    out.line(f"#{entry.seq}  {entry.committed_at}  data{label}  {who}  "
             f"{doc['change_count']} change(s): {tables}")
    data = _body(entry, body)
    if decode and data is not None:
        show_changes(out, data, con, indent="    ")


def print_sql(out: Output, parts: Iterable[sss.Changeset | sss.Patchset | str], con: sss.Connection | None,
              db: str) -> None:
    """Changes (and a bundle's migrations, given as SQL text) as SQL for the
    sqlite3 shell: only statements, in one transaction, UTF-8.  Output cut
    short by an error ends without COMMIT, so the shell applies none of it."""
    out.binary_safe()
    out.line("BEGIN;")
    for part in parts:
        if isinstance(part, str):
            sql = part.strip()
            out.line(sql if sql.endswith(";") else sql + ";")
            continue
        try:
            statements = part.to_sql(con)
        except sss.InterfaceError as e:
            raise CliError(f"the changes name a table that {db!r} lacks, so its column names are "
                           "unknown; give --db a database that has the changeset's tables",
                           ExitCode.BAD_INPUT) from e
        for statement in statements:
            out.line(statement)
    out.line("COMMIT;")
