# Type stub for the hot-path extension module (csrc/hotpath/hotpath.c).  It
# calls the SQLite linked into _native through the function table
# _native.lib.sss_sqlite_api() returns; binding/cursor.py runs init() once.

#: execute()'s return code when the parameters need the marshal path
#: (csrc/bind.c); nothing ran.
FALLBACK: int

def init(api_address: int, api_size: int, /) -> None:
    """Use the SQLite function table at ``api_address`` (``api_size`` bytes,
    checked against this build's ``sqlite3_api_routines``)."""

def execute(
    stmt: int, params: object, max_rows: int, max_bytes: int, /
) -> tuple[int, list[tuple[object, ...]] | None, int | None, int | None]:
    """Reset the statement at address ``stmt``, bind ``params`` (a tuple or a
    list; None: no parameters; anything else returns ``FALLBACK``), and run it.

    Returns ``(rc, rows, changes, last_rowid)``: ``rc`` is ``FALLBACK`` (the
    parameters need the marshal path; nothing ran), SQLITE_ROW (more rows
    follow), SQLITE_DONE, or a SQLite error code (the statement is then
    reset; from a bind, such as SQLITE_TOOBIG, nothing ran), or-ed with
    SSS_REPREPARED after a re-prepare.  ``rows`` holds up
    to ``max_rows`` rows (fewer once they hold about ``max_bytes``), None for
    a statement without result columns.  ``changes`` and ``last_rowid`` are
    None for a read-only statement.  Raises UnicodeDecodeError for TEXT that
    is not UTF-8 and MemoryError (the statement is reset then too).
    """

class TryLock:
    """A re-entrant lock that is only tried, never waited for: the
    connection lock.  Atomic because its methods hold the GIL throughout."""

    def acquire(self, blocking: bool, /) -> bool:
        """``acquire(False)``: take the lock if it is free or this thread holds
        it (re-entry); False when another thread holds it.  A true
        ``blocking`` raises ValueError."""

    def release(self) -> None:
        """Undo one acquire; RuntimeError unless this thread holds the lock."""

    def is_owned(self) -> bool:
        """True when this thread holds the lock."""
