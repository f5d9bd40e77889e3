"""The DB-API ``Connection`` and ``connect()``, with the stdlib ``sqlite3``
module's transaction semantics.

Transactions (as in Python 3.12's ``sqlite3``):

* ``autocommit=LEGACY_TRANSACTION_CONTROL`` (the default): with
  ``isolation_level`` not None, ``BEGIN <isolation_level>`` is issued before
  the first INSERT/UPDATE/DELETE/REPLACE outside a transaction; ``commit()``
  and ``rollback()`` end it; ``executescript()`` commits a pending transaction
  first.  ``isolation_level=None``: SQLite's own autocommit, nothing implicit.
* ``autocommit=False``: a transaction is always open (BEGIN at connect and
  after every ``commit()``/``rollback()``); ``close()`` rolls back.
* ``autocommit=True``: SQLite's autocommit; ``commit()``/``rollback()`` do
  nothing.

``with con:`` commits on success and rolls back on an exception; it does not
close the connection (unlike the native ``sss.Connection``).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings
from builtins import callable as builtins_callable
from collections.abc import Callable, Iterable, Iterator
from threading import get_ident
from types import TracebackType
from typing import Any, Literal

from ...binding import dbconfig as _dbconfig
from ...binding import errors as native
from ...binding.constants import SQLITE_LIMIT_SQL_LENGTH
from ...binding.cursor import Cursor as NativeCursor
from ...binding.statement import Statement as NativeStatement
from ...sessions.connection import Connection as NativeConnection
from . import callbacks as _callbacks
from .adaptation import ADAPTER_STATE as _adapt_state
from .blob import Blob
from .cursor import Cursor
from .errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
    cause,
    sql_encode_error,
    translate,
    warn_caller,
)

__all__ = ["Connection", "LEGACY_TRANSACTION_CONTROL", "check_isolation_level", "check_autocommit",
           "keyword_only_soon"]

#: ``autocommit`` value selecting the pre-3.12 behaviour driven by ``isolation_level``.
LEGACY_TRANSACTION_CONTROL = -1

_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
_COLLATION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DBCONFIG_VERBS = frozenset(_dbconfig.OPTIONS.values())
_new_object = object.__new__
_native_init = NativeConnection.__init__
_native_execute = NativeCursor.execute
_native_executescript = NativeConnection.executescript
_native_close = NativeConnection.close
_native_backup_into = NativeConnection.sss_backup_into


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_isolation_level(level: object) -> str | None:
    """The isolation level to keep for ``level``, or the stdlib's error.
    Since 3.11 the stdlib keeps the canonical spelling ("deferred" reads
    back as "DEFERRED") and compares ASCII letters only; 3.10 keeps the
    object given."""
    if level is None:
        return None
    if sys.version_info < (3, 11):
        if not isinstance(level, str):
            raise TypeError(f"isolation_level must be a string or None, not {type(level).__name__}")
        if str.upper(level) not in _LEVELS:
            raise ValueError("invalid value for isolation_level")
        return level
    if not isinstance(level, str):
        raise TypeError("isolation_level must be str or None")
    if "\0" in level:
        raise ValueError("embedded null character")
    canonical = str.translate(level, _ASCII_UPPER)
    if canonical not in _LEVELS:
        raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
    return canonical


def check_autocommit(value: object) -> int | bool:
    """``value`` as the ``autocommit`` to keep, or the stdlib's ValueError."""
    if value is True or value is False:
        return value
    if type(value) is int and value == LEGACY_TRANSACTION_CONTROL:
        return LEGACY_TRANSACTION_CONTROL  # the one object: compared with `is`
    raise ValueError("autocommit must be True, False, or sqlite3.LEGACY_TRANSACTION_CONTROL")


def _names(names: tuple[str, ...]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def positional_only_soon(method: str, *names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Python 3.13's DeprecationWarning for passing ``names`` of
    ``Connection.method`` by keyword (positional-only from 3.15); on older
    Pythons the method is left as it is."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if sys.version_info < (3, 13):
            return func
        which = "argument" if len(names) == 1 else "arguments"
        params = "Parameter" if len(names) == 1 else "Parameters"
        message = (f"Passing keyword {which} {_names(names)} to _sqlite3.Connection.{method}() is "
                   f"deprecated. {params} {_names(names)} will become positional-only in Python 3.15.")
        deprecated = frozenset(names)

        @functools.wraps(func)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs and not deprecated.isdisjoint(kwargs):
                warn_caller(message)
            return func(self, *args, **kwargs)

        return call

    return decorate


def keyword_only_soon(where: str) -> str:
    """Python 3.13's deprecation message for positional arguments to ``where``."""
    return (f"Passing more than 1 positional argument to {where} is deprecated. Parameters "
            "'timeout', 'detect_types', 'isolation_level', 'check_same_thread', 'factory', "
            "'cached_statements' and 'uri' will become keyword-only parameters in Python 3.15.")


def _keyword_only_soon_init(init: Callable[..., None]) -> Callable[..., None]:
    """Python 3.13's DeprecationWarning for ``Connection(path, timeout, ...)``
    with more than one positional argument (keyword-only from 3.15)."""
    if sys.version_info < (3, 13):
        return init

    @functools.wraps(init)
    def call(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1:
            warn_caller(keyword_only_soon("_sqlite3.Connection()"))
        init(self, *args, **kwargs)

    return call


class PreparedStatement:
    """What ``con(sql)`` returns: a compiled statement (opaque, as the
    stdlib's ``sqlite3.Statement``; it cannot be created directly)."""

    __slots__ = ("_stmt",)
    _stmt: NativeStatement

    def __new__(cls, *args: object, **kwargs: object) -> PreparedStatement:
        raise TypeError(f"cannot create '{cls.__module__}.{cls.__qualname__}' instances")

    @classmethod
    def sss_wrap(cls, stmt: NativeStatement) -> PreparedStatement:
        self: PreparedStatement = _new_object(cls)
        self._stmt = stmt
        return self


class ConnectionFace:
    """What the DB-API connections (plain and coordinated) share: the
    exception classes as attributes (PEP 249's optional extension), the
    thread and closed checks, and ``text_factory``."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    # For the package's own layers (the cursors, blobs, the aio face): plain
    # attributes, read on every row.  The sqlite3 handle (None: closed;
    # binding.Connection's), the thread a check_same_thread connection
    # belongs to (None: any), text_factory and detect_types as set, and
    # whether rows need either (or a converter) at all.
    sss_db: Any
    sss_thread: int | None
    sss_text_factory: Any
    sss_detect_types: int
    sss_row_hooks: bool

    def sss_check_thread(self) -> None:
        """For the package's own layers: ProgrammingError, as the stdlib's,
        when a ``check_same_thread`` connection is used from another thread."""
        owner = self.sss_thread
        if owner is not None and owner != get_ident():
            raise ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {owner} and this is thread id {get_ident()}."
            )

    #: False until ``__init__`` has opened the database (a subclass may not
    #: call it; a failed re-``__init__`` leaves the connection unusable).
    _initialized = True

    def sss_check_open_dbapi(self) -> None:
        """For the package's own layers: ProgrammingError, as the stdlib's,
        when the connection is closed (or was never opened)."""
        if self.sss_db is None:
            if not self._initialized:
                raise ProgrammingError("Base Connection.__init__ not called.")
            raise ProgrammingError("Cannot operate on a closed database.")

    @property
    def text_factory(self) -> Any:
        """Called with the UTF-8 bytes of every TEXT value (default ``str``)."""
        return self.sss_text_factory

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        self.sss_text_factory = value
        self.sss_row_hooks = self.sss_detect_types != 0 or value is not str


class Connection(ConnectionFace, NativeConnection):
    """A DB-API 2.0 connection (``connect()``), as in the stdlib ``sqlite3``,
    on the package's SQLite build.  Being a native connection too, it also
    offers ``session()``, ``transaction()`` and the native properties."""

    #: SQLite's legacy double-quoted string literals stay on, as in the
    #: stdlib's connections (real SQL relies on them: ``VALUES ("optimize")``);
    #: the native ``sss.connect`` turns them off.
    double_quoted_strings = True
    #: SQL text with lone surrogates raises UnicodeEncodeError, as in the stdlib.
    sql_encoding_errors = "strict"
    # What methods read before __init__ has run (or after it failed).
    sss_db: Any = None
    sss_thread: int | None = None
    _initialized = False

    @_keyword_only_soon_init
    def __init__(
        self,
        database: str | bytes | os.PathLike[str],
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = True,
        factory: Any = None,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        autocommit: int | bool = LEGACY_TRANSACTION_CONTROL,
    ) -> None:
        if self.sss_db is not None:
            # __init__ again on an open connection: the stdlib closes it first,
            # and the connection stays unusable if the new open fails.
            self._initialized = False
            try:
                _native_close(self)
            except native.Error as exc:
                raise translate(exc) from cause(exc)
        self._initialized = False
        # Everything close() and __del__ read is set before the native open.
        self.sss_thread = get_ident() if check_same_thread else None
        self._isolation_level = check_isolation_level(isolation_level)
        self._autocommit = check_autocommit(autocommit)
        if isinstance(detect_types, bool) or not isinstance(detect_types, int):
            raise TypeError(f"detect_types must be int, not {type(detect_types).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        self.sss_detect_types = detect_types
        self.sss_text_factory: Any = str
        self.sss_row_hooks = detect_types != 0
        #: execute() may build a plain Cursor itself (cursor() not overridden)
        self._plain_cursor = type(self).cursor is Connection.cursor
        self.sss_begin: str | None = None
        self._update_begin()
        #: ``row_factory(cursor, row_tuple)`` for the rows of new cursors.
        self.row_factory: Callable[[Cursor, tuple[Any, ...]], Any] | None = None
        try:
            _native_init(self, database, uri=bool(uri), timeout=float(timeout),
                         cached_statements=int(cached_statements))
        except native.Error as exc:
            raise translate(exc) from cause(exc)
        self._initialized = True
        if self._autocommit is False:
            self._exec("BEGIN")

    # -- transaction state ------------------------------------------------

    def _update_begin(self) -> None:
        """What implicit BEGIN to issue before DML (None: none)."""
        level = self._isolation_level
        if self._autocommit is LEGACY_TRANSACTION_CONTROL and level is not None:
            self.sss_begin = f"BEGIN {level}"  # "BEGIN " for "": the stdlib's text (trace callbacks see it)
        else:
            self.sss_begin = None

    def sss_implicit_begin(self) -> None:
        """For the package's own layers (the binding's cursor): run
        :attr:`sss_begin` as a DB-API statement (trace callbacks see it)."""
        assert self.sss_begin is not None
        self._exec(self.sss_begin)

    def _exec(self, sql: str) -> None:
        """Run a transaction-control statement, with DB-API errors."""
        try:
            _native_executescript(self, sql)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def _in_tx(self) -> bool:
        try:
            return NativeConnection.in_transaction.fget(self)  # type: ignore[attr-defined,no-any-return]
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    @property
    def isolation_level(self) -> str | None:
        """The BEGIN flavour for implicit transactions (legacy mode); None:
        no implicit transactions.  Setting None commits a pending one."""
        self.sss_check_open_dbapi()
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self.sss_check_thread()
        level = check_isolation_level(value)
        if level is None:
            self.sss_check_open_dbapi()
            if self._autocommit is LEGACY_TRANSACTION_CONTROL and self._in_tx():
                self._exec("COMMIT")
        self._isolation_level = level
        self._update_begin()

    @property
    def autocommit(self) -> int | bool:
        """True, False or LEGACY_TRANSACTION_CONTROL (see the module docstring)."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: int | bool) -> None:
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        new = check_autocommit(value)
        if new is True and self._in_tx():
            self._exec("COMMIT")
        elif new is False and not self._in_tx():
            self._exec("BEGIN")
        self._autocommit = new
        self._update_begin()

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        return self._in_tx()

    @property
    def total_changes(self) -> int:
        """Rows changed by INSERT/UPDATE/DELETE since the connection opened."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        try:
            return NativeConnection.total_changes.fget(self)  # type: ignore[attr-defined,no-any-return]
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def commit(self) -> None:
        """Commit the open transaction (if any).  With ``autocommit=False`` a
        new one begins at once; with ``autocommit=True`` this does nothing."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if self._autocommit is True:
            return
        if self._in_tx():
            self._exec("COMMIT")
        if self._autocommit is False:
            self._exec("BEGIN")

    def rollback(self) -> None:
        """Roll back the open transaction (if any); see :meth:`commit`."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if self._autocommit is True:
            return
        if self._in_tx():
            self._exec("ROLLBACK")
        if self._autocommit is False:
            self._exec("BEGIN")

    # -- running SQL --------------------------------------------------------

    def cursor(self, factory: Callable[[Connection], Cursor] = Cursor) -> Cursor:
        """A new cursor; ``factory`` must return a :class:`Cursor`."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        cursor = factory(self)
        if not issubclass(type(cursor), Cursor):  # the real type: __class__ can lie
            raise TypeError(f"factory must return a cursor, not {type(cursor).__name__}")
        if self.row_factory is not None:
            cursor.row_factory = self.row_factory
        return cursor

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        """``cursor().execute(sql, parameters)`` on a new cursor."""
        if self._plain_cursor and not _adapt_state["base_adapted"]:
            # Hot path: Cursor.execute inlined, without Cursor.__init__'s frame
            # (two Python frames of a point query's ~2 us).
            owner = self.sss_thread
            if owner is not None and owner != get_ident():
                self.sss_check_thread()
            cursor = _new_object(Cursor)
            cursor.connection = self
            factory = self.row_factory
            if factory is not None:
                cursor.row_factory = factory
            try:
                _native_execute(cursor, sql, parameters)
            except native.Error as exc:
                cursor.sss_execute_failed(exc, sql, parameters)
            except UnicodeEncodeError as exc:
                raise sql_encode_error(exc, sql) from None
            if factory is not None or self.sss_row_hooks:
                cursor.sss_post = cursor.sss_make_post(sql)
            return cursor
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """``cursor().executemany(sql, parameters)`` on a new cursor."""
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Cursor:  # type: ignore[override]
        """``cursor().executescript(sql_script)`` on a new cursor."""
        return self.cursor().executescript(sql_script)

    def sss_executescript(self, script: object) -> None:
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if not isinstance(script, str):
            if sys.version_info < (3, 11):
                raise ValueError("script argument must be unicode.")
            raise TypeError(f"executescript() argument 1 must be str, not {type(script).__name__}")
        if "\0" in script:
            raise ValueError("embedded null character")
        # UnicodeEncodeError for lone surrogates; the stdlib checks the length
        # against SQLite's limit itself
        size = len(script.encode("utf-8"))
        if size > NativeConnection.getlimit(self, SQLITE_LIMIT_SQL_LENGTH):
            raise DataError("query string is too large")
        if self._autocommit is LEGACY_TRANSACTION_CONTROL and self._in_tx():
            self._exec("COMMIT")
        try:
            _native_executescript(self, script)
        except native.Error as exc:
            raise translate(exc, script) from cause(exc)

    def __call__(self, *args: Any) -> PreparedStatement:
        """``con(sql)``: compile ``sql`` into a prepared statement and return
        it (the stdlib's undocumented ``Connection.__call__``); errors as
        :meth:`execute` raises them."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if len(args) != 1:
            raise TypeError(f"Connection() takes exactly 1 positional argument ({len(args)} given)")
        sql = args[0]
        if not isinstance(sql, str):
            raise TypeError(f"argument 1 must be str, not {type(sql).__name__}")
        try:
            with self.sss_hold():
                stmt = NativeStatement(self, sql)
        except native.Error as exc:
            raise translate(exc, sql) from cause(exc)
        return PreparedStatement.sss_wrap(stmt)

    __call__.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
        inspect.Parameter("sql", inspect.Parameter.POSITIONAL_ONLY),
    ])

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the connection (an uncommitted transaction is rolled back)."""
        self.sss_check_thread()
        if not self._initialized:
            raise ProgrammingError("Base Connection.__init__ not called.")
        if self.sss_db is None:
            return
        if self._autocommit is False and self._in_tx():
            self._exec("ROLLBACK")  # explicit, as the stdlib does (trace callbacks see it)
        try:
            _native_close(self)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def __del__(self) -> None:
        try:
            if getattr(self, "sss_db", None) is not None:
                if sys.version_info >= (3, 13):
                    warnings.warn(f"unclosed database in {self!r}", ResourceWarning,
                                  stacklevel=1, source=self)
                _native_close(self)
        except Exception:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(  # type: ignore[override]
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        """Commit on success, roll back on an exception; never closes."""
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
        else:
            self.rollback()
        return False

    def interrupt(self) -> None:
        """Abort the query running on this connection (from another thread)."""
        self.sss_check_open_dbapi()
        NativeConnection.interrupt(self)

    # -- user functions and hooks (one implementation: the native connection's) -

    def _native_call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        try:
            return method(self, *args, **kwargs)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    @positional_only_soon("create_function", "name", "narg", "func")
    def create_function(
        self, name: str, narg: int, func: Callable[..., Any] | None, *, deterministic: bool = False
    ) -> None:
        """Make ``func`` callable from SQL as ``name``; an exception it raises
        fails the statement with OperationalError (the original as ``__cause__``)."""
        if func is not None and not callable(func):
            raise TypeError("func must be callable")
        wrapped = None if func is None else _callbacks.wrap_function(func)
        self._create("function", NativeConnection.create_function, name, narg, wrapped,
                     deterministic=deterministic)

    @positional_only_soon("create_aggregate", "name", "n_arg", "aggregate_class")
    def create_aggregate(self, name: str, n_arg: int, aggregate_class: type | None) -> None:
        """Register an aggregate class (``step(*args)``, ``finalize()``)."""
        wrapped = None if aggregate_class is None else _callbacks.wrap_aggregate(aggregate_class, False)
        self._create("aggregate", NativeConnection.create_aggregate, name, n_arg, wrapped)

    def _create(self, what: str, method: Callable[..., Any], name: object, *args: Any, **kwargs: Any) -> None:
        """Register a user function or aggregate; what SQLite (or the native
        checks of its arguments) refuses is the stdlib's OperationalError
        "Error creating function" (SQLite gives no reason)."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if not isinstance(name, str):
            raise TypeError(f"create_{what}() argument 'name' must be str, not {type(name).__name__}")
        try:
            method(self, name, *args, **kwargs)
        except (native.ClosedError, native.ThreadingError) as exc:
            raise translate(exc) from None
        except native.Error:
            raise OperationalError(f"Error creating {what}") from None

    def create_window_function(
        self, name: str, num_params: int, aggregate_class: type | None, /
    ) -> None:
        """Register an aggregate window function class (``step``, ``inverse``,
        ``value``, ``finalize``)."""
        wrapped = None if aggregate_class is None else _callbacks.wrap_aggregate(aggregate_class, True)
        self._native_call(NativeConnection.create_window_function, name, num_params, wrapped)

    def create_collation(self, name: str, callable: Callable[[str, str], Any] | None, /) -> None:  # noqa: A002
        """Register collation ``name``; ``callable(a, b)`` returns <0, 0 or >0."""
        if callable is not None and not builtins_callable(callable):
            raise TypeError("parameter must be callable")
        if not isinstance(name, str):
            raise TypeError(f"create_collation() argument 1 must be str, not {type(name).__name__}")
        if sys.version_info < (3, 11) and not all(c in _COLLATION_CHARS for c in str.upper(name)):
            raise ProgrammingError("invalid character in collation name")  # 3.10's rule
        wrapped = None if callable is None else _callbacks.wrap_collation(callable)
        self._native_call(NativeConnection.create_collation, name, wrapped)

    @positional_only_soon("set_authorizer", "authorizer_callback")
    def set_authorizer(self, authorizer_callback: Callable[..., Any] | None) -> None:
        """``authorizer_callback(action, arg1, arg2, db_name, trigger)`` returns
        SQLITE_OK, SQLITE_DENY or SQLITE_IGNORE; an exception denies."""
        wrapped = None if authorizer_callback is None else _callbacks.wrap_authorizer(authorizer_callback)
        self._native_call(NativeConnection.set_authorizer, wrapped)

    @positional_only_soon("set_progress_handler", "progress_handler")
    def set_progress_handler(self, progress_handler: Callable[[], Any] | None, n: int) -> None:
        """Call ``progress_handler()`` every ``n`` VM instructions; a true
        result (or an exception) aborts the statement."""
        wrapped = None if progress_handler is None else _callbacks.wrap_progress(progress_handler)
        self._native_call(NativeConnection.set_progress_handler, wrapped, n)

    @positional_only_soon("set_trace_callback", "trace_callback")
    def set_trace_callback(self, trace_callback: Callable[[str], Any] | None) -> None:
        """Call ``trace_callback(sql)`` for every statement run."""
        wrapped = None if trace_callback is None else _callbacks.wrap_trace(trace_callback)
        self._native_call(NativeConnection.set_trace_callback, wrapped)

    def enable_load_extension(self, enabled: bool, /) -> None:
        """Allow loading SQLite extensions (off by default)."""
        self._native_call(NativeConnection.enable_load_extension, enabled)

    def load_extension(self, path: str, /, *, entrypoint: str | None = None) -> None:
        """Load the SQLite extension at ``path``."""
        self._native_call(NativeConnection.load_extension, path, entrypoint=entrypoint)

    def getlimit(self, category: int, /) -> int:
        """The connection's runtime limit ``category`` (SQLITE_LIMIT_*)."""
        return self._limit(category, -1)

    def setlimit(self, category: int, limit: int, /) -> int:
        """Set limit ``category`` (negative: unchanged); returns the old value."""
        return self._limit(category, limit)

    def getconfig(self, op: int, /) -> bool:
        """Whether boolean connection option ``op`` (a ``SQLITE_DBCONFIG_*``
        constant) is on (Python 3.12's ``Connection.getconfig``)."""
        return self._config(op, None)

    def setconfig(self, op: int, enable: bool = True, /) -> None:  # type: ignore[override]
        """Turn boolean connection option ``op`` (a ``SQLITE_DBCONFIG_*``
        constant) on or off (Python 3.12's ``Connection.setconfig``)."""
        self._config(op, bool(enable))

    def _config(self, op: object, enable: bool | None) -> bool:
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if not isinstance(op, int):
            raise TypeError(f"'{type(op).__name__}' object cannot be interpreted as an integer")
        if int(op) not in _DBCONFIG_VERBS:
            raise ValueError(f"unknown config 'op': {int(op)}")
        try:
            if enable is None:
                return _dbconfig.getconfig(self, int(op))
            return _dbconfig.setconfig(self, int(op), enable)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def _limit(self, category: int, limit: int) -> int:
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        try:
            return NativeConnection.setlimit(self, category, limit)
        except native.InterfaceError as exc:
            if "unknown limit category" in str(exc):
                raise ProgrammingError("'category' is out of bounds") from None
            raise translate(exc) from None

    def blobopen(
        self, table: str, column: str, row: int, /, *, readonly: bool = False, name: str = "main"
    ) -> Blob:
        """Open the BLOB in ``table.column`` of rowid ``row`` as a :class:`Blob`."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        try:
            return Blob.sss_open(self, table, column, row, readonly, name)
        except native.Error as exc:
            raise translate(exc) from None

    # -- whole-database operations -------------------------------------------

    def backup(  # type: ignore[override]
        self,
        target: Connection,
        *,
        pages: int = -1,
        progress: Callable[[int, int, int], object] | None = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copy this database into ``target`` (another DB-API connection) with
        SQLite's online backup API; ``progress(status, remaining, total)``
        after each step of ``pages`` pages (<= 0: all at once)."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if not isinstance(target, Connection):
            raise TypeError(f"backup() argument 'target' must be Connection, not {type(target).__name__}")
        if target is self:
            raise ValueError("target cannot be the same connection instance")
        target.sss_check_open_dbapi()
        if progress is not None and not callable(progress):
            raise TypeError("progress argument must be a callable")
        if not isinstance(pages, int):
            raise TypeError(f"pages must be int, not {type(pages).__name__}")
        if pages <= 0:
            pages = -1
        step_progress = None
        if progress is not None:
            user = progress

            def step_progress(remaining: int, total: int) -> None:
                user(101 if remaining == 0 else 0, remaining, total)  # SQLITE_DONE / SQLITE_OK

        try:
            _native_backup_into(self, target, pages, step_progress, name, "main", sleep)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def serialize(self, *, name: str = "main") -> bytes:  # type: ignore[override]
        """The database ``name`` as bytes (as it would be stored in a file)."""
        self.sss_check_thread()
        try:
            return NativeConnection.serialize(self, name)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def deserialize(self, data: bytes, /, *, name: str = "main") -> None:  # type: ignore[override]
        """Replace database ``name`` with the serialized database ``data``."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if not memoryview(data).c_contiguous:  # TypeError for what is no buffer
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        try:
            NativeConnection.deserialize(self, data, name)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def iterdump(self, *, filter: str | None = None) -> Iterator[str]:  # noqa: A002
        """The database as SQL text, one statement at a time (the stdlib's
        format); ``filter``: only the objects whose name is LIKE it."""
        self.sss_check_thread()
        self.sss_check_open_dbapi()
        if filter is not None and not isinstance(filter, str):
            raise TypeError(f"filter must be str or None, not {type(filter).__name__}")
        return self._dump(filter)

    def _dump(self, filter: str | None) -> Iterator[str]:  # noqa: A002
        try:
            if sys.version_info >= (3, 13) and NativeCursor(self).execute(
                "PRAGMA foreign_key_check"
            ).fetchone() is not None:
                # 3.13: a dump of rows that violate a foreign key restores
                # with the checks off
                yield "PRAGMA foreign_keys=OFF;"
            yield from NativeConnection.iterdump(self, filter=filter)
        except native.Error as exc:
            raise translate(exc) from cause(exc)

    def __repr__(self) -> str:
        state = "closed" if self.sss_db is None else "open"
        return f"<sqlite_session_safe.dbapi.Connection {self.path!r} {state}>"
