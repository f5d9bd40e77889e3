"""Running a migration script inside the admitted write transaction, one
statement at a time, refusing the statements that would break it.

``db.migrate(sql)`` runs the script inside the write transaction and logs its
text as one audit entry; replaying the log runs the same text the same way.
A statement that ends or replaces that transaction (``COMMIT``, ``BEGIN``,
``ROLLBACK``, ``VACUUM``, ``ATTACH``, ...) would commit part of it without its
log entry, so it is refused before it runs (the caller then rolls back
everything before it).  SQLite's own parser finds the statement boundaries, so
semicolons inside strings, comments and trigger bodies are handled exactly as
SQLite does; each statement is prepared only after the ones before it ran, so
a script may refer to tables it creates.
"""

from __future__ import annotations

import functools
import re

from ..binding.capi import statement_end
from ..binding.connection import Connection
from ..binding.errors import InterfaceError

__all__ = ["run_script", "refuse_transaction_control"]

_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
# First keyword of statements that end, open or sidestep the transaction.
_REFUSED = re.compile(
    r"(?:BEGIN|COMMIT|END|ROLLBACK(?!\s+(?:TRANSACTION\s+)?TO\b)|VACUUM|ATTACH|DETACH)\b", re.I
)


def refuse_transaction_control(statement: str) -> None:
    """Raise InterfaceError if ``statement`` would end, open or sidestep the
    enclosing write transaction (ROLLBACK TO a savepoint is fine)."""
    if not isinstance(statement, str):
        return  # not SQL at all: execute() itself says so
    first = _transaction_control_keyword(statement)
    if first is not None:
        raise InterfaceError(
            f"{first} cannot run inside an admitted write (statement {statement[:60]!r}): the "
            "package commits the write transaction together with its audit log entry"
        )


@functools.lru_cache(maxsize=512)
def _transaction_control_keyword(statement: str) -> str | None:
    # Cached: a write runs the same few statement texts over and over, and
    # the verdict on a text never changes.
    body = _COMMENTS.sub("", statement, count=1)
    if _REFUSED.match(body):
        return re.match(r"[A-Za-z]+", body).group(0).upper()  # type: ignore[union-attr]
    return None


def _next_statement(con: Connection, data: bytes, start: int) -> tuple[str, int]:
    """The text of the statement starting at byte ``start`` and the byte
    offset after it ('' for a tail of only whitespace and comments)."""
    with con.sss_hold() as db:
        end, found = statement_end(db, data, start, "preparing a migration statement")
    if not found:  # only whitespace, comments or an empty ";"
        return "", end if end > start else len(data)
    return data[start:end].decode("utf-8", "surrogatepass").strip(), max(end, start + 1)


def run_script(con: Connection, sql: str) -> int:
    """Run every statement of ``sql`` on ``con``, in order, inside the
    transaction the caller opened; returns how many ran.

    Raises:
        InterfaceError: ``sql`` is not a str, holds NUL, is empty, or holds a
            statement that would end the transaction (nothing after the
            statements before it ran; the caller rolls those back).
        SQLiteError: a statement failed (the caller rolls back).
    """
    if not isinstance(sql, str):
        raise InterfaceError(f"SQL must be str, not {type(sql).__qualname__}")
    if "\0" in sql:
        raise InterfaceError("SQL contains a NUL character")
    data = sql.encode("utf-8", "surrogatepass")
    start, count = 0, 0
    while start < len(data):
        statement, start = _next_statement(con, data, start)
        if not statement:
            continue
        refuse_transaction_control(statement)
        cur = con.execute(statement)
        if cur.description is not None:
            cur.fetchall()  # a statement returning rows runs to its end
        count += 1
    if count == 0:
        raise InterfaceError("the migration holds no SQL statement")
    return count
