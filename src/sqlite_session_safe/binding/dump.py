"""``iterdump``: a database as SQL text, in the stdlib ``sqlite3`` module's
dump format (``Connection.iterdump()``), so a dump made through either module
restores through either.

The statements: ``BEGIN TRANSACTION;``, each table's CREATE (ordered by name)
followed by one ``INSERT`` per row (values rendered by SQLite's ``quote()``),
virtual tables through ``PRAGMA writable_schema``, then indexes, triggers and
views, then the ``sqlite_sequence`` rows, then ``COMMIT;``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .cursor import Cursor

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["iterdump"]

_TABLES = """
    SELECT "name", "type", "sql"
    FROM "sqlite_master"
        WHERE "sql" NOT NULL AND
        "type" == 'table' {}
        ORDER BY "name"
    """
_OTHERS = """
    SELECT "name", "type", "sql"
    FROM "sqlite_master"
        WHERE "sql" NOT NULL AND
        "type" IN ('index', 'trigger', 'view') {}
    """
_FILTER = 'AND "name" LIKE ?'


def iterdump(con: Connection, filter: str | None = None) -> Iterator[str]:  # noqa: A002
    """Yield the statements that recreate ``con``'s main database; with
    ``filter``, only the tables, indexes, triggers and views whose name is
    LIKE that pattern (as Python 3.13's ``iterdump(filter=...)``).

    Runs on the native cursor whatever subclass ``con`` is, so a DB-API
    connection's ``row_factory`` cannot change what is read.
    """
    where, params = (_FILTER, (filter,)) if filter else ("", ())
    writable_schema = False
    yield "BEGIN TRANSACTION;"
    sequence: list[str] = []
    for table_name, _type, sql in Cursor(con).execute(_TABLES.format(where), params).fetchall():
        if table_name == "sqlite_sequence":
            rows = Cursor(con).execute('SELECT * FROM "sqlite_sequence";').fetchall()
            sequence = ['DELETE FROM "sqlite_sequence"']
            sequence += [f"INSERT INTO \"sqlite_sequence\" VALUES('{row[0]}',{row[1]})" for row in rows]
            continue
        if table_name == "sqlite_stat1":
            yield 'ANALYZE "sqlite_master";'
        elif table_name.startswith("sqlite_"):
            continue
        elif sql.startswith("CREATE VIRTUAL TABLE"):
            if not writable_schema:
                writable_schema = True
                yield "PRAGMA writable_schema=ON;"
            yield (
                "INSERT INTO sqlite_master(type,name,tbl_name,rootpage,sql)"
                "VALUES('table','{0}','{0}',0,'{1}');".format(
                    table_name.replace("'", "''"), sql.replace("'", "''")
                )
            )
        else:
            yield f"{sql};"
        ident = table_name.replace('"', '""')
        columns = [str(info[1]) for info in Cursor(con).execute(f'PRAGMA table_info("{ident}")').fetchall()]
        values = ",".join("'||quote(\"{}\")||'".format(col.replace('"', '""')) for col in columns)
        query = f"SELECT 'INSERT INTO \"{ident}\" VALUES({values})' FROM \"{ident}\";"
        for row in Cursor(con).execute(query):
            yield f"{row[0]};"
    for _name, _type, sql in Cursor(con).execute(_OTHERS.format(where), params).fetchall():
        yield f"{sql};"
    if writable_schema:
        yield "PRAGMA writable_schema=OFF;"
    for statement in sequence:
        yield f"{statement};"
    yield "COMMIT;"
