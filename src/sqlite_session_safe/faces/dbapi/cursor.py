"""The DB-API ``Cursor``: the native cursor's hot path plus the stdlib's
semantics on top (implicit BEGIN, error classes, row factories, converters).

It subclasses :class:`sqlite_session_safe.binding.cursor.Cursor` and calls its
methods directly, so a plain query costs one extra Python frame: no per-row
Python work happens unless a ``row_factory``, a converter or a non-``str``
``text_factory`` asks for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from threading import get_ident
from typing import TYPE_CHECKING, Any

from ...binding import capi
from ...binding import errors as native
from ...binding.capi import parameter_names
from ...binding.cursor import EXECUTEMANY_CHUNK
from ...binding.cursor import Cursor as NativeCursor
from ...binding.errors import SQLiteError
from ...binding.statement import Statement
from . import adaptation as _adapters
from .errors import ProgrammingError, cause, sql_encode_error, translate
from .parameters import bind_values, warn_named_sequence

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Cursor", "PARSE_DECLTYPES", "PARSE_COLNAMES"]

PARSE_DECLTYPES = 1
PARSE_COLNAMES = 2

_native_execute = NativeCursor.execute
_native_execute_packed = NativeCursor.sss_execute_packed
_native_executemany = NativeCursor.executemany
_native_fetchone = NativeCursor.fetchone
_native_fetchmany = NativeCursor.fetchmany
_native_fetchall = NativeCursor.fetchall
_native_next = NativeCursor.__next__
_native_close = NativeCursor.close
_adapt_state = _adapters.ADAPTER_STATE
_WARN_NAMED = sys.version_info >= (3, 12)

Post = Callable[[tuple[Any, ...]], Any]


class _Uninitialized:
    """``Cursor.connection`` until ``Cursor.__init__`` has run: every use
    raises the stdlib's error for a cursor whose base ``__init__`` was not
    called (subclasses that forget it), at no cost to initialised cursors."""

    def __getattr__(self, name: str) -> Any:
        raise ProgrammingError("Base Cursor.__init__ not called.")

    def __repr__(self) -> str:
        return "<cursor not initialised>"


class _Bind:
    """Parameters that must go through :func:`bind_values` (adapters for the
    base types are registered): not a tuple, so the native hot path leaves
    them to the packed path, where the cursor binds them the stdlib's way."""

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params

    def __bool__(self) -> bool:
        return True


def _recursive_use() -> ProgrammingError:
    return ProgrammingError("Recursive use of cursors not allowed.")


class Cursor(NativeCursor):
    """A DB-API 2.0 cursor (``con.cursor()``), as in the stdlib ``sqlite3``."""

    #: Per-row transform for the current result (row factory, converters,
    #: text factory), or None: then rows are the native tuples, untouched.
    sss_post: Post | None = None
    #: Called as ``row_factory(cursor, row_tuple)`` for every row (None:
    #: tuples); a new cursor takes the connection's.
    row_factory: Callable[[Cursor, tuple[Any, ...]], Any] | None = None
    connection: Connection = _Uninitialized()  # type: ignore[assignment]
    #: True while the cursor runs user code in the middle of an operation
    #: (converters, row factories, executemany's parameter iterator): using
    #: the cursor from there is refused, as in the stdlib.
    _busy = False

    def __init__(self, connection: Connection, /) -> None:
        if self._busy:
            raise _recursive_use()
        # Connection or CoordinatedConnection (which is no native connection)
        if not hasattr(connection, "sss_check_open_dbapi"):
            raise TypeError(
                f"Cursor() argument 1 must be sqlite3.Connection, not {type(connection).__name__}"
            )
        connection.sss_check_thread()
        connection.sss_check_open_dbapi()
        self.connection = connection
        if connection.row_factory is not None:
            self.row_factory = connection.row_factory

    # -- running statements ------------------------------------------------

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        """Run one SQL statement; parameters are a sequence (``?``) or a
        mapping (``:name``).  Returns the cursor."""
        # The hot path of every query: each check is one attribute test when
        # it does not apply.  The implicit BEGIN of legacy transactions is
        # issued by the native execute, once it has the prepared statement
        # (Connection.sss_begin).
        con = self.connection
        owner = con.sss_thread
        if owner is not None and owner != get_ident():
            con.sss_check_thread()
        if self._busy:
            raise _recursive_use()
        if _adapt_state["base_adapted"]:
            parameters = _Bind(parameters)
        try:
            _native_execute(self, sql, parameters)
        except native.Error as exc:
            self.sss_execute_failed(exc, sql, parameters)
        except UnicodeEncodeError as exc:
            raise sql_encode_error(exc, sql) from None
        if self.row_factory is not None or con.sss_row_hooks:
            self.sss_post = self.sss_make_post(sql)
        elif self.sss_post is not None:
            self.sss_post = None
        return self

    def sss_execute_packed(self, stmt: Statement, params: Any) -> tuple[int, Any, Any, Any]:
        # The native execute's fallback for parameters its hot path does not
        # bind itself: bind them by the stdlib's rules first (parameters.py).
        if type(params) is _Bind:
            params = params.params
        names = parameter_names(stmt.handle)
        if type(params) is list and names and names[0] is not None and names[0][0] != "?":
            # the native execute matched a dict to the names already (a list:
            # Statement.mapping_to_row); bind it as the dict it was
            params = dict(zip([name[1:] for name in names], params, strict=True))  # type: ignore[index]
        values = bind_values(names, params)
        return _native_execute_packed(self, stmt, values)

    def sss_execute_failed(self, exc: native.Error, sql: str, parameters: Any) -> None:
        """execute() failed in the native layer: finish it the stdlib's way
        (the parameters a native rule refused may be fine by the stdlib's,
        an unclosed comment may follow the statement), or raise the DB-API
        error the stdlib raises."""
        if isinstance(exc, native.BindingError):
            # A dict the native layer matched to the names itself; the
            # stdlib's rules raise its own error, or give values that bind.
            params = parameters.params if type(parameters) is _Bind else parameters
            values = bind_values(self._parameter_names(sql), params)
            self._retry(sql, values)
            return
        if isinstance(exc, native.ClosedError) and self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.") from None
        if isinstance(exc, native.InterfaceError) and str(exc).startswith(
            "execute() runs one statement at a time"
        ):
            first = _first_statement(self.connection, sql)
            if first is not None:
                self._retry(first, parameters)
                return
        if not isinstance(sql, str) and isinstance(exc, native.InterfaceError):
            raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}") from None
        description = None
        if isinstance(exc, native.DataError):
            description = self._statement_description(sql)
        raise translate(exc, sql, description) from cause(exc)

    def _retry(self, sql: str, parameters: Any) -> None:
        try:
            _native_execute(self, sql, parameters)
        except native.Error as again:
            raise translate(again, sql) from cause(again)

    def _parameter_names(self, sql: str) -> tuple[str | None, ...]:
        return self._with_statement(sql, lambda stmt: parameter_names(stmt.handle))  # type: ignore[no-any-return]

    def _statement_description(self, sql: str) -> Any:
        return self._with_statement(sql, lambda stmt: stmt.description)

    def _with_statement(self, sql: str, use: Callable[[Statement], Any]) -> Any:
        """``use(statement)`` on the prepared statement for ``sql`` (the
        cached one, else a temporary one); the connection is held."""
        con = self.connection
        with con.sss_hold():
            stmt = con.statements.idle(sql)
            temp = None
            if stmt is None or stmt.handle is None:
                temp = stmt = Statement(con, sql)
            try:
                return use(stmt)
            finally:
                if temp is not None:
                    temp.finalize()

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        """Run a DML statement once per parameter row.  Returns the cursor."""
        con = self.connection
        con.sss_check_thread()
        if self._closed:
            self._closed_cursor()
        con.sss_check_open_dbapi()
        if self._busy:
            raise _recursive_use()
        if not isinstance(sql, str):
            raise TypeError(f"executemany() argument 1 must be str, not {type(sql).__name__}")
        saved = self.lastrowid  # stdlib: executemany leaves lastrowid alone
        self._busy = True  # the parameter iterator may call back into this cursor
        try:
            self._executemany_chunks(sql, seq_of_parameters)
        except native.InterfaceError as exc:
            if "return no rows" in str(exc):
                raise ProgrammingError("executemany() can only execute DML statements.") from None
            raise translate(exc, sql) from cause(exc)
        except native.Error as exc:
            raise translate(exc, sql) from cause(exc)
        finally:
            self._busy = False
            self.lastrowid = saved
        self.sss_post = None
        return self

    def _executemany_chunks(self, sql: str, seq_of_parameters: Iterable[Any]) -> None:
        """Run the rows in chunks, each as the native executemany packs them
        (one cffi call).  A chunk the native rules refuse is bound row by
        row by the stdlib's rules (adapters, any sequence, its errors): the
        rows before a row the stdlib refuses run first, as in the stdlib."""
        total = 0
        rows = iter(seq_of_parameters)
        first = True
        always_bind = bool(_adapt_state["base_adapted"])
        names: tuple[str | None, ...] | None = None
        while True:
            chunk = list(islice(rows, EXECUTEMANY_CHUNK))
            if not chunk and not first:
                break
            if first and chunk and _WARN_NAMED and not isinstance(chunk[0], dict):
                names = self._parameter_names(sql)
                warn_named_sequence(names)
            first = False
            if always_bind:
                if names is None:
                    names = self._parameter_names(sql)
                chunk = self._bind_rows(sql, names, chunk)
            try:
                _native_executemany(self, sql, chunk)
            except native.BindingError as exc:
                if names is None:
                    names = self._parameter_names(sql)
                if exc.row_index is not None:
                    # Failed in SQLite's bind, after the rows before it ran.
                    bind_values(names, chunk[exc.row_index])  # the stdlib's error
                    raise
                _native_executemany(self, sql, self._bind_rows(sql, names, chunk))
            if self.rowcount > 0:
                total += self.rowcount
            if len(chunk) < EXECUTEMANY_CHUNK:
                break
        self.rowcount = total

    def _bind_rows(self, sql: str, names: tuple[str | None, ...], chunk: list[Any]) -> list[Any]:
        """The chunk's rows bound by the stdlib's rules; at a row they refuse,
        the rows before it are run and its error raised."""
        bound = []
        for row in chunk:
            try:
                bound.append(bind_values(names, row))
            except BaseException:
                if bound:
                    _native_executemany(self, sql, bound)
                raise
        return bound

    def executescript(self, sql_script: str, /) -> Cursor:
        """Run several statements (no parameters).  In the legacy transaction
        mode an open transaction is committed first, as the stdlib does."""
        self._check_cursor()
        self.connection.sss_executescript(sql_script)
        self._rows, self._pos, self._more, self._description = [], 0, False, None
        self.sss_post = None
        return self

    # -- fetching ----------------------------------------------------------

    def fetchone(self) -> Any:
        """The next row, or None."""
        pos = self._pos
        rows = self._rows
        if pos < len(rows) and self.sss_post is None:
            # Hot path (a row already decoded, nothing to apply to it); the
            # checks are the ones the slow path makes (a closed cursor holds
            # no rows).
            con = self.connection
            owner = con.sss_thread
            if con.sss_db is not None and (owner is None or owner == get_ident()):
                self._pos = pos + 1
                return rows[pos]
        return self._fetchone()

    def _fetchone(self) -> Any:
        self._check_cursor()
        try:
            row = _native_fetchone(self)
        except native.Error as exc:
            raise translate(exc, None, self._description) from cause(exc)
        post = self.sss_post
        if post is None or row is None:
            return row
        return self._apply(post, [row])[0]

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to ``size`` rows (default :attr:`arraysize`)."""
        self._check_cursor()
        if size is None:
            size = self.arraysize
        try:
            rows = _native_fetchmany(self, size)
        except native.Error as exc:
            raise translate(exc, None, self._description) from cause(exc)
        post = self.sss_post
        return rows if post is None else self._apply(post, rows)

    def fetchall(self) -> list[Any]:
        """All remaining rows."""
        if self._closed or self._busy:
            self._check_cursor()
        con = self.connection
        if con.sss_thread is not None and con.sss_thread != get_ident():
            con.sss_check_thread()
        try:
            rows = _native_fetchall(self)
        except native.Error as exc:
            raise translate(exc, None, self._description) from cause(exc)
        post = self.sss_post
        return rows if post is None else self._apply(post, rows)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._closed or self._busy:
            self._check_cursor()
        try:
            row = _native_next(self)
        except native.Error as exc:
            raise translate(exc, None, self._description) from cause(exc)
        post = self.sss_post
        return row if post is None else self._apply(post, [row])[0]

    def close(self) -> None:
        """Close the cursor; using it afterwards raises ProgrammingError."""
        if self._busy:
            raise _recursive_use()
        con = self.connection
        con.sss_check_thread()
        if con.sss_db is None:
            con.sss_check_open_dbapi()  # uninitialised: the stdlib's error
            self._rows, self._pos, self._more = [], 0, False
            self._closed = True
            return
        try:
            _native_close(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def _check_cursor(self) -> None:
        """The stdlib's checks before a cursor is used, in its order."""
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        if self._busy:
            raise _recursive_use()
        con = self.connection
        con.sss_check_thread()
        con.sss_check_open_dbapi()

    def _apply(self, post: Post, rows: list[Any]) -> list[Any]:
        """``post`` over the rows (user code: converters, factories); the
        cursor refuses to be used from inside it."""
        self._busy = True
        try:
            return list(map(post, rows))
        finally:
            self._busy = False

    def setinputsizes(self, sizes: object, /) -> None:
        """Required by PEP 249; does nothing (as in the stdlib)."""

    def setoutputsize(self, size: object, column: object = None, /) -> None:
        """Required by PEP 249; does nothing (as in the stdlib)."""

    def _closed_cursor(self) -> None:
        raise ProgrammingError("Cannot operate on a closed cursor.")

    def __enter__(self) -> Cursor:
        # The stdlib cursor is no context manager; ours keeps the native one's.
        return self

    # -- per-row transforms ------------------------------------------------

    def sss_make_post(self, sql: str) -> Post | None:
        """The per-row transform for the result just produced."""
        description = self._description
        if description is None:
            return None
        con = self.connection
        factory = self.row_factory
        text_factory = con.sss_text_factory
        text = None if text_factory is str else text_factory
        convs: list[Callable[[bytes], Any] | None] | None = None
        if con.sss_detect_types:
            convs, names = self._converters(sql, description)
            if names is not None:
                self._description = tuple((name, None, None, None, None, None, None) for name in names)
        if convs is not None and not any(convs):
            convs = None
        if convs is None and text is None:
            if factory is None:
                return None
            return _bind_factory(factory, self)
        return _transform(convs, text, factory, self)

    def _converters(
        self, sql: str, description: tuple[tuple[Any, ...], ...]
    ) -> tuple[list[Callable[[bytes], Any] | None], list[str] | None]:
        """The converter for every column (PARSE_COLNAMES first, then
        PARSE_DECLTYPES), and the column names with ``[type]`` stripped."""
        con = self.connection
        detect = con.sss_detect_types
        table = _adapters.converters
        convs: list[Callable[[bytes], Any] | None] = [None] * len(description)
        names: list[str] | None = None
        if detect & PARSE_COLNAMES:
            names = []
            for i, column in enumerate(description):
                name = column[0]
                start = name.find("[")
                if start >= 0:
                    end = name.find("]", start + 1)
                    if end > start:
                        convs[i] = table.get(name[start + 1 : end].upper())
                    cut = start - 1 if start > 0 and name[start - 1] == " " else start
                    name = name[:cut]
                names.append(name)
        if detect & PARSE_DECLTYPES:
            for i, decl in enumerate(self._decltypes(sql, len(description))):
                if convs[i] is None and decl:
                    key = decl.split("(", 1)[0].split(" ", 1)[0].strip()
                    convs[i] = table.get(key.upper())
        return convs, names

    def _decltypes(self, sql: str, count: int) -> list[str]:
        """The declared types of the result columns of ``sql`` ('' for
        expressions), read from the statement that produced them."""
        con = self.connection
        with con.sss_hold():
            stmt = self._stmt or con.statements.idle(sql)
            temp = None
            if stmt is None or stmt.handle is None:
                temp = stmt = Statement(con, sql)
            try:
                return capi.column_decltypes(stmt.handle, count)
            finally:
                if temp is not None:
                    temp.finalize()


def _bind_factory(factory: Callable[[Any, tuple[Any, ...]], Any], cursor: Cursor) -> Post:
    def post(row: tuple[Any, ...]) -> Any:
        return factory(cursor, row)

    return post


def _as_bytes(value: Any) -> bytes:
    """The stored value as the bytes the stdlib hands a converter
    (``sqlite3_column_blob``): text as UTF-8, numbers as SQLite prints them."""
    t = type(value)
    if t is bytes:
        return value  # type: ignore[no-any-return]
    if t is str:
        return value.encode("utf-8", "surrogatepass")  # type: ignore[no-any-return]
    if t is int:
        return str(value).encode()
    return _float_text(value).encode()


def _float_text(value: float) -> str:
    """SQLite's text for a REAL: the shortest round-trip digits, with a
    '.0' mantissa in exponent form (1.0e+20) and Inf/-Inf."""
    if value != value:
        return ""
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{exponent}"
    return text


def _transform(
    convs: list[Callable[[bytes], Any] | None] | None,
    text_factory: Callable[[bytes], Any] | None,
    factory: Callable[[Any, tuple[Any, ...]], Any] | None,
    cursor: Cursor,
) -> Post:
    columns = None if convs is None else list(enumerate(convs))

    def post(row: tuple[Any, ...]) -> Any:
        values = list(row)
        if columns is not None:
            for i, conv in columns:
                value = values[i]
                if conv is not None and value is not None:
                    # the stdlib hands a converter sqlite3_column_blob(), which
                    # is NULL for an empty value: it gives None, unconverted
                    data = _as_bytes(value)
                    values[i] = conv(data) if data else None
                elif text_factory is not None and type(value) is str:
                    values[i] = text_factory(value.encode("utf-8", "surrogatepass"))
        else:
            for i, value in enumerate(values):
                if type(value) is str:
                    values[i] = text_factory(value.encode("utf-8", "surrogatepass"))  # type: ignore[misc]
        result = tuple(values)
        return result if factory is None else factory(cursor, result)

    return post


def _first_statement(con: Any, sql: str) -> str | None:
    """The first statement of ``sql`` when only whitespace and comments
    follow it by the stdlib's rule (an unclosed ``/*`` comment runs to the
    end), else None."""
    if not isinstance(sql, str):
        return None
    data = sql.encode("utf-8")
    with con.sss_hold() as db:
        try:
            consumed, _ = capi.statement_end(db, data)
        except SQLiteError:
            return None
    if not _only_comments(data[consumed:]):
        return None
    return data[:consumed].decode("utf-8")


def _only_comments(rest: bytes) -> bool:
    """Whether ``rest`` holds nothing but whitespace and SQL comments
    (``--`` to the end of the line, ``/* */``, an unclosed ``/*``)."""
    i, n = 0, len(rest)
    while i < n:
        c = rest[i : i + 1]
        if c in (b" ", b"\t", b"\n", b"\r", b"\f"):
            i += 1
        elif rest.startswith(b"--", i):
            end = rest.find(b"\n", i)
            i = n if end < 0 else end + 1
        elif rest.startswith(b"/*", i):
            end = rest.find(b"*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            return False
    return True
