"""``connect(path, coordinated=True)``: a DB-API connection whose write
transactions are admitted writes of the coordinated database (``sss.open``).

What a transaction becomes
--------------------------
* The first INSERT/UPDATE/DELETE/REPLACE outside a transaction enters
  ``db.write(label=label)``: the outer directory lock is taken, SQLite's
  ``BEGIN IMMEDIATE`` runs, a session starts recording.  Every statement
  after it (SELECTs included) runs inside that write, on the database's write
  connection, until ``commit()`` -- which appends the changeset to the audit
  log and commits, one log entry per transaction -- or ``rollback()``.
  ``con.last_write`` then holds the :class:`~sqlite_session_safe.WriteResult`
  (``seq``, ``changeset``, ...).  A transaction that changed nothing commits
  nothing and logs nothing (``last_write.seq`` is None).
* ``autocommit=False``: the write starts at the first statement of any kind
  (not at connect: holding the outer lock while idle would stall every other
  process), so a SELECT-then-UPDATE read-modify-write is one atomic write.
* ``isolation_level=None`` or ``autocommit=True``: each DML statement (one
  ``executemany`` call included) is a write of its own, committed at once.
* Statements outside a transaction are snapshot reads (``db.read()``): their
  rows are read completely into the cursor before the read ends.

Not supported (``NotSupportedError``, raised before anything runs):
``executescript`` and DDL (CREATE/ALTER/DROP...; use ``con.migrate(sql)``,
which logs the schema change in order), transaction control in SQL (BEGIN,
COMMIT, ROLLBACK, END, SAVEPOINT/RELEASE outside a write, VACUUM, ATTACH,
DETACH: use ``commit()``/``rollback()``), PRAGMA assignments (give
``pragmas={...}`` to ``connect``), and the connection-level extensions that
would apply to one of the database's connections only (``create_function``
and friends, ``backup``, ``iterdump``, ``serialize``, ``blobopen``,
``session``: a write's changeset is in ``con.last_write``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from threading import get_ident
from types import TracebackType
from typing import Any, Literal

from ...binding import capi
from ...binding import errors as native
from ...binding.statement import DML_PATTERN, Statement
from ...coordination.database import Database, WriteResult, WriteTx, open_database
from . import adaptation
from .connection import (
    LEGACY_TRANSACTION_CONTROL,
    ConnectionFace,
    check_autocommit,
    check_isolation_level,
)
from .cursor import Cursor
from .errors import (
    NotSupportedError,
    ProgrammingError,
    cause,
    translate,
)

__all__ = ["CoordinatedConnection", "CoordinatedCursor"]

_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_CONTROL = {"BEGIN", "COMMIT", "END", "ROLLBACK", "VACUUM", "ATTACH", "DETACH"}
_SAVEPOINTS = {"SAVEPOINT", "RELEASE"}
_DDL = {"CREATE", "ALTER", "DROP", "REINDEX", "ANALYZE"}


class _Rollback(Exception):
    """Passed to the write's ``__exit__`` to make it roll back."""


def _first_word(sql: str) -> str:
    body = _COMMENTS.sub("", sql, count=1)
    m = _FIRST_WORD.match(body)
    return m.group(0).upper() if m else ""


class CoordinatedConnection(ConnectionFace):
    """A DB-API connection on a coordinated database; see the module docstring.

    Attributes:
        db: the :class:`~sqlite_session_safe.Database` underneath.
        label: the audit log label of this connection's writes.
        last_write: the :class:`~sqlite_session_safe.WriteResult` of the last
            committed transaction (None before the first).
    """

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = True,
        autocommit: int | bool = LEGACY_TRANSACTION_CONTROL,
        mode: str = "trusted",
        label: str | None = None,
        **options: Any,
    ) -> None:
        self.sss_db: Any = None
        self.sss_thread: int | None = get_ident() if check_same_thread else None
        self._isolation_level = check_isolation_level(isolation_level)
        self._autocommit = check_autocommit(autocommit)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be str or None, not {type(label).__name__}")
        self.label = label
        self.sss_detect_types = int(detect_types)
        self.sss_text_factory: Any = str
        self.sss_row_hooks = self.sss_detect_types != 0
        self.row_factory: Callable[[Cursor, tuple[Any, ...]], Any] | None = None
        # The open admitted write (None: none); read by the cursor.
        self.sss_tx: WriteTx | None = None
        self.last_write: WriteResult | None = None
        options.setdefault("busy_timeout", timeout)
        try:
            self.db: Database = open_database(database, mode=mode, **options)  # type: ignore[arg-type]
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        self.sss_db = self.db  # "open" marker read by the cursor's checks

    # -- state --------------------------------------------------------------

    @property
    def isolation_level(self) -> str | None:
        """As the stdlib's: the BEGIN kind of the implicit transaction (None:
        autocommit; setting None commits an open write)."""
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        level = check_isolation_level(value)
        if level is None and self.sss_tx is not None:
            self.commit()
        self._isolation_level = level

    @property
    def autocommit(self) -> int | bool:
        """As the stdlib's (Python 3.12+): ``LEGACY_TRANSACTION_CONTROL``, True
        or False."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: int | bool) -> None:
        new = check_autocommit(value)
        if new is True and self.sss_tx is not None:
            self.commit()
        self._autocommit = new

    @property
    def in_transaction(self) -> bool:
        """True while an admitted write is open on this connection."""
        self.sss_check_open_dbapi()
        return self.sss_tx is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.sss_db is None

    def sss_per_statement_writes(self) -> bool:
        """For the package's own layers (the cursor): whether each DML
        statement outside a write is a write of its own."""
        return self._autocommit is True or (
            self._autocommit is LEGACY_TRANSACTION_CONTROL and self._isolation_level is None
        )

    # -- writes ---------------------------------------------------------------

    def sss_begin_write(self) -> WriteTx:
        """For the package's own layers (the cursor): open the admitted write
        later statements join (:attr:`sss_tx`) until commit or rollback."""
        tx: WriteTx = self.db.write(label=self.label)
        try:
            tx.__enter__()
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        self.sss_tx = tx
        return tx

    def _end_write(self, commit: bool) -> None:
        tx, self.sss_tx = self.sss_tx, None
        if tx is None:
            return
        try:
            if commit:
                tx.__exit__(None, None, None)
                self.last_write = tx.result
            else:
                tx.__exit__(_Rollback, _Rollback(), None)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def commit(self) -> None:
        """Commit the open write: its changeset goes to the audit log with it."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        self._end_write(commit=True)

    def rollback(self) -> None:
        """Roll back the open write (nothing is logged) and release the lock."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        self._end_write(commit=False)

    def migrate(self, sql: str, label: str | None = None) -> WriteResult:
        """A schema change as one admitted, logged write (``db.migrate``)."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if self.sss_tx is not None:
            raise ProgrammingError("commit or roll back the open transaction before migrate()")
        try:
            result = self.db.migrate(sql, label=label if label is not None else self.label)
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        self.last_write = result
        return result

    # -- running SQL ----------------------------------------------------------

    def cursor(self, factory: Callable[[CoordinatedConnection], Cursor] | None = None) -> Cursor:
        """A new :class:`CoordinatedCursor` (or ``factory(self)``)."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        cursor = CoordinatedCursor(self) if factory is None else factory(self)  # type: ignore[arg-type]
        if not isinstance(cursor, CoordinatedCursor):
            raise TypeError(f"factory must return a CoordinatedCursor, not {type(cursor).__name__}")
        return cursor

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        """``self.cursor().execute(sql, parameters)``."""
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """``self.cursor().executemany(sql, parameters)``."""
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Cursor:
        """Not supported on a coordinated connection (raises
        :class:`NotSupportedError`): run the statements one at a time, DDL
        through :meth:`migrate`."""
        raise NotSupportedError(
            "executescript() is not supported on a coordinated connection: run the statements one "
            "by one with execute(), and schema changes with con.migrate(sql)"
        )

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Roll back an open write, then close the database."""
        if self.sss_db is None:
            return
        self.sss_check_thread()
        try:
            self._end_write(commit=False)
        finally:
            self.sss_db = None
            self.db.close()

    def __enter__(self) -> CoordinatedConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False

    def __getattr__(self, name: str) -> Any:
        if name in _UNSUPPORTED:
            raise NotSupportedError(
                f"{name}() is not supported on a coordinated connection: it would apply to one of "
                "the database's connections only (see sqlite_session_safe.faces.dbapi.coordinated)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        state = "closed" if self.sss_db is None else "open"
        return f"<sqlite_session_safe.dbapi.CoordinatedConnection {self.db.path!r} {state}>"


_UNSUPPORTED = frozenset({
    "create_function", "create_aggregate", "create_window_function", "create_collation",
    "set_authorizer", "set_progress_handler", "set_trace_callback", "enable_load_extension",
    "load_extension", "backup", "iterdump", "serialize", "deserialize", "blobopen", "getlimit",
    "setlimit", "session", "interrupt", "total_changes", "transaction",
})


class CoordinatedCursor(Cursor):
    """The cursor of a :class:`CoordinatedConnection`: statements run inside
    the open write or in a snapshot read, and their rows are held here."""

    connection: CoordinatedConnection  # type: ignore[assignment]

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        """Run one statement: DML joins (or opens) the connection's admitted
        write; a query outside a write reads a snapshot."""
        return self._run(sql, parameters, many=False)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        """Run one DML statement per parameter row, in the connection's admitted
        write."""
        return self._run(sql, seq_of_parameters, many=True)

    def executescript(self, sql_script: str, /) -> Cursor:
        """Not supported (see :meth:`CoordinatedConnection.executescript`)."""
        return self.connection.executescript(sql_script)

    def _run(self, sql: str, parameters: Any, many: bool) -> Cursor:
        con = self.connection
        con.sss_check_thread()
        con.sss_check_open_dbapi()
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        if not isinstance(sql, str):
            raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}")
        word = _first_word(sql)
        tx = con.sss_tx
        self._refuse(sql, word, tx is not None)
        is_dml = bool(DML_PATTERN.match(sql))
        try:
            if tx is None and (is_dml or many) and con.sss_per_statement_writes():
                with con.db.write(label=con.label) as own:
                    self._run_on(own, sql, parameters, many)
                con.last_write = own.result
            elif tx is not None or is_dml or many or con.autocommit is False:
                if tx is None:
                    tx = con.sss_begin_write()
                self._run_on(tx, sql, parameters, many)
            else:
                with con.db.read() as r:
                    self._take(r.execute(sql, parameters))
        except native.Error as exc:
            raise translate(exc, sql) from cause(exc)
        if self.row_factory is None and not con.sss_row_hooks:
            self.sss_post = None
        else:
            self.sss_post = self.sss_make_post(sql)
        return self

    def _refuse(self, sql: str, word: str, writing: bool) -> None:
        if word in _CONTROL or (word in _SAVEPOINTS and not writing):
            if word == "ROLLBACK" and writing and re.search(r"\bTO\b", sql, re.I):
                return
            raise NotSupportedError(
                f"{word} is not supported on a coordinated connection: use con.commit() and "
                "con.rollback(); each transaction is one admitted write"
            )
        if word in _DDL:
            raise NotSupportedError(
                f"{word} (a schema change) is not supported in execute() on a coordinated "
                "connection: use con.migrate(sql), which admits and logs it in order"
            )
        if word == "PRAGMA" and "=" in sql:
            raise NotSupportedError(
                "PRAGMA assignments are not supported on a coordinated connection: they would "
                "set one of the database's connections only; pass pragmas={...} to connect()"
            )

    def _run_on(self, tx: WriteTx, sql: str, parameters: Any, many: bool) -> None:
        if many:
            rows = [adaptation.adapt_parameters(p) for p in parameters]
            saved = self.lastrowid
            try:
                cur = tx.executemany(sql, rows)
            except native.InterfaceError as exc:
                if "return no rows" in str(exc):
                    raise ProgrammingError("executemany() can only execute DML statements.") from None
                raise
            self._take(cur)
            self.lastrowid = saved
        else:
            self._take(tx.execute(sql, parameters))

    def _take(self, cur: Any) -> None:
        """Hold the native cursor's result here (read completely)."""
        description = cur.description
        self._rows = cur.fetchall() if description is not None else []
        self._pos = 0
        self._more = False
        self._stmt = None
        self._description = description
        self.rowcount = cur.rowcount
        if cur.lastrowid is not None:
            self.lastrowid = cur.lastrowid
        self._decl_source = cur

    def _decltypes(self, sql: str, count: int) -> list[str]:
        # The statement ran on one of the database's connections, which may be
        # gone (network mode reopens): ask a snapshot read to prepare it.
        with self.connection.db.read() as r:
            con = r.connection
            with con.sss_hold():
                stmt = Statement(con, sql)
                try:
                    return capi.column_decltypes(stmt.handle, count)
                finally:
                    stmt.finalize()

    def close(self) -> None:
        """Close the cursor (its rows are dropped)."""
        self._rows, self._pos, self._more = [], 0, False
        self._closed = True
