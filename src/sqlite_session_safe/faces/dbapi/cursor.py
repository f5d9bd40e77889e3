"""The DB-API ``Cursor``: the native cursor's hot path plus the stdlib's
semantics on top (implicit BEGIN, error classes, row factories, converters).

It subclasses :class:`sqlite_session_safe.binding.cursor.Cursor` and calls its
methods directly, so a plain query costs one extra Python frame: no per-row
Python work happens unless a ``row_factory``, a converter or a non-``str``
``text_factory`` asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from threading import get_ident
from typing import TYPE_CHECKING, Any

from ...binding import errors as native
from ...binding.cursor import EXECUTEMANY_CHUNK
from ...binding.cursor import Cursor as NativeCursor
from ...binding.raw import lib
from ...binding.statement import Statement
from . import adaptation as _adapters
from .errors import ProgrammingError, cause, translate

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Cursor", "PARSE_DECLTYPES", "PARSE_COLNAMES"]

PARSE_DECLTYPES = 1
PARSE_COLNAMES = 2

_native_execute = NativeCursor.execute
_native_executemany = NativeCursor.executemany
_native_fetchone = NativeCursor.fetchone
_native_fetchmany = NativeCursor.fetchmany
_native_fetchall = NativeCursor.fetchall
_native_next = NativeCursor.__next__
_native_close = NativeCursor.close
_adapt_state = _adapters._state

Post = Callable[[tuple[Any, ...]], Any]


class Cursor(NativeCursor):
    """A DB-API 2.0 cursor (``con.cursor()``), as in the stdlib ``sqlite3``."""

    #: Per-row transform for the current result (row factory, converters,
    #: text factory), or None: then rows are the native tuples, untouched.
    _post: Post | None = None
    #: Called as ``row_factory(cursor, row_tuple)`` for every row (None:
    #: tuples); a new cursor takes the connection's.
    row_factory: Callable[[Cursor, tuple[Any, ...]], Any] | None = None
    connection: Connection

    def __init__(self, connection: Connection, /) -> None:
        # Connection or CoordinatedConnection (which is no native connection)
        if not hasattr(connection, "_check_open_dbapi"):
            raise TypeError(
                f"Cursor() argument 1 must be a sqlite_session_safe.dbapi.Connection, "
                f"not {type(connection).__name__}"
            )
        connection._check_thread()
        connection._check_open_dbapi()
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
        # (Connection._begin).
        con = self.connection
        owner = con._thread
        if owner is not None and owner != get_ident():
            con._check_thread()
        if _adapt_state["base_adapted"] and parameters:
            parameters = _adapters.adapt_parameters(parameters)
        try:
            _native_execute(self, sql, parameters)
        except native.Error as exc:
            self._retry_adapted(exc, sql, parameters)
        if self.row_factory is not None or con._row_hooks:
            self._post = self._make_post(sql)
        elif self._post is not None:
            self._post = None
        return self

    def _retry_adapted(self, exc: native.Error, sql: str, parameters: Any) -> None:
        """A failed execute: when a value could not be bound but an adapter
        (or ``__conform__``) can turn it into something SQLite stores, run
        again with the adapted values (nothing ran: binding precedes
        stepping).  Otherwise raise the DB-API error."""
        if isinstance(exc, native.BindingError) and parameters:
            adapted = _adapters.adapt_parameters(parameters)
            if adapted is not parameters:
                try:
                    _native_execute(self, sql, adapted)
                    return
                except native.Error as again:
                    exc = again
        if isinstance(exc, native.ClosedError) and self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.") from None
        raise translate(exc, sql) from cause(exc)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        """Run a DML statement once per parameter row.  Returns the cursor."""
        con = self.connection
        con._check_thread()
        if not isinstance(sql, str):
            raise TypeError(f"executemany() argument 1 must be str, not {type(sql).__name__}")
        saved = self.lastrowid  # stdlib: executemany leaves lastrowid alone
        try:
            if _adapt_state["base_adapted"]:
                _native_executemany(self, sql, _adapted_rows(seq_of_parameters))
            else:
                self._executemany_chunks(sql, seq_of_parameters)
        except native.InterfaceError as exc:
            if "return no rows" in str(exc):
                raise ProgrammingError("executemany() can only execute DML statements.") from None
            raise translate(exc, sql) from cause(exc)
        except native.Error as exc:
            raise translate(exc, sql) from cause(exc)
        finally:
            self.lastrowid = saved
        self._post = None
        return self

    def _executemany_chunks(self, sql: str, seq_of_parameters: Iterable[Any]) -> None:
        """Run the rows in chunks, each as the native executemany packs them
        (one cffi call).  A chunk holding a value only an adapter can turn
        into a SQLite value fails while being packed, before any of its rows
        ran: it is adapted and run again, so only such chunks pay for the
        per-value adapter lookup."""
        total = 0
        rows = iter(seq_of_parameters)
        first = True
        while True:
            chunk = list(islice(rows, EXECUTEMANY_CHUNK))
            if not chunk and not first:
                break
            first = False
            try:
                _native_executemany(self, sql, chunk)
            except native.BindingError as exc:
                if str(exc).startswith("executemany row"):
                    raise  # failed in SQLite's bind, after earlier rows ran
                adapted = [_adapters.adapt_parameters(row) for row in chunk]
                _native_executemany(self, sql, adapted)
            if self.rowcount > 0:
                total += self.rowcount
            if len(chunk) < EXECUTEMANY_CHUNK:
                break
        self.rowcount = total

    def executescript(self, sql_script: str, /) -> Cursor:
        """Run several statements (no parameters).  In the legacy transaction
        mode an open transaction is committed first, as the stdlib does."""
        self.connection._executescript(sql_script)
        self._rows, self._pos, self._more, self._description = [], 0, False, None
        self._post = None
        return self

    # -- fetching ----------------------------------------------------------

    def fetchone(self) -> Any:
        """The next row, or None."""
        pos = self._pos
        rows = self._rows
        if pos < len(rows) and self._post is None:
            # Hot path (a row already decoded, nothing to apply to it); the
            # checks are the ones the slow path makes (a closed cursor holds
            # no rows).
            con = self.connection
            owner = con._thread
            if con._db is not None and (owner is None or owner == get_ident()):
                self._pos = pos + 1
                return rows[pos]
        return self._fetchone()

    def _fetchone(self) -> Any:
        if self._closed:
            self._closed_cursor()
        self.connection._check_thread()
        try:
            row = _native_fetchone(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        post = self._post
        if post is None or row is None:
            return row
        return post(row)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to ``size`` rows (default :attr:`arraysize`)."""
        if self._closed:
            self._closed_cursor()
        self.connection._check_thread()
        if size is None:
            size = self.arraysize
        try:
            rows = _native_fetchmany(self, size)
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        post = self._post
        return rows if post is None else list(map(post, rows))

    def fetchall(self) -> list[Any]:
        """All remaining rows."""
        if self._closed:
            self._closed_cursor()
        con = self.connection
        if con._thread is not None and con._thread != get_ident():
            con._check_thread()
        try:
            rows = _native_fetchall(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        post = self._post
        return rows if post is None else list(map(post, rows))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._closed:
            self._closed_cursor()
        try:
            row = _native_next(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        post = self._post
        return row if post is None else post(row)

    def close(self) -> None:
        """Close the cursor; using it afterwards raises ProgrammingError."""
        con = self.connection
        con._check_thread()
        if con._db is None:
            self._rows, self._pos, self._more = [], 0, False
            self._closed = True
            return
        try:
            _native_close(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def setinputsizes(self, sizes: object, /) -> None:
        """Required by PEP 249; does nothing (as in the stdlib)."""

    def setoutputsize(self, size: object, column: object = None, /) -> None:
        """Required by PEP 249; does nothing (as in the stdlib)."""

    def _closed_cursor(self) -> None:
        self.connection._check_open_dbapi()
        raise ProgrammingError("Cannot operate on a closed cursor.")

    def __enter__(self) -> Cursor:
        # The stdlib cursor is no context manager; ours keeps the native one's.
        return self

    # -- per-row transforms ------------------------------------------------

    def _make_post(self, sql: str) -> Post | None:
        """The per-row transform for the result just produced."""
        description = self._description
        if description is None:
            return None
        con = self.connection
        factory = self.row_factory
        text_factory = con._text_factory
        text = None if text_factory is str else text_factory
        convs: list[Callable[[bytes], Any] | None] | None = None
        if con._detect_types:
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
        detect = con._detect_types
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
        with con._use():
            stmt = self._stmt or con._statements._idle.get(sql)
            temp = None
            if stmt is None or stmt.handle is None:
                temp = stmt = Statement(con, sql)
            try:
                out = []
                for i in range(count):
                    ptr = lib.sqlite3_column_decltype(stmt.handle, i)
                    out.append(_text(ptr))
                return out
            finally:
                if temp is not None:
                    temp.finalize()


def _text(ptr: Any) -> str:
    from ...binding.raw import text

    return text(ptr)


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
                    values[i] = conv(_as_bytes(value))
                elif text_factory is not None and type(value) is str:
                    values[i] = text_factory(value.encode("utf-8", "surrogatepass"))
        else:
            for i, value in enumerate(values):
                if type(value) is str:
                    values[i] = text_factory(value.encode("utf-8", "surrogatepass"))  # type: ignore[misc]
        result = tuple(values)
        return result if factory is None else factory(cursor, result)

    return post


def _adapted_rows(rows: Iterable[Any]) -> Iterator[Any]:
    """executemany's rows, adapted lazily (a generator stays a generator)."""
    adapt = _adapters.adapt_parameters
    for row in rows:
        yield adapt(row)
