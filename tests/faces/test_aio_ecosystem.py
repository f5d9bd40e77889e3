"""sqlite_session_safe.aio with the libraries async code uses it through:
aiosqlite's own test suite run against it, SQLAlchemy's asyncio engine
(``sqlite+aiosqlite`` with ``module=``), anyio on its asyncio backend."""

# No "from __future__ import annotations": SQLAlchemy evaluates the Mapped[...]
# annotations of the models defined inside a test function.
import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sqlite_session_safe as sss
import sqlite_session_safe.aio as aio
import sqlite_session_safe.dbapi as dbapi

FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

RUN_SUITE = '''
import sys, unittest
import sqlite_session_safe.aio
sys.modules["aiosqlite"] = sqlite_session_safe.aio     # the suite imports aiosqlite
import aiosqlite_suite.smoke as smoke
result = unittest.TextTestRunner(verbosity=2).run(unittest.defaultTestLoader.loadTestsFromModule(smoke))
print("RESULT", result.testsRun, len(result.failures), len(result.errors), len(result.skipped))
'''


def test_aiosqlite_own_test_suite_passes_against_this_module(tmp_path: Path) -> None:
    """aiosqlite ships its tests in its wheel: run them (from the installed
    package, copied to a temporary directory at test time) with
    ``import aiosqlite`` answering this module."""
    aiosqlite = pytest.importorskip("aiosqlite")
    tests = Path(aiosqlite.__file__).parent / "tests"
    if not (tests / "smoke.py").is_file():
        pytest.skip("this aiosqlite wheel ships no tests")
    shutil.copytree(tests, tmp_path / "aiosqlite_suite")
    (tmp_path / "run_suite.py").write_text(RUN_SUITE)
    proc = subprocess.run([sys.executable, "run_suite.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    report = proc.stdout + proc.stderr
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, report
    ran, failures, errors, _skipped = map(int, result[0].split()[1:])
    assert ran >= 25, report
    assert (failures, errors) == (0, 0), report


# -- SQLAlchemy ---------------------------------------------------------------------------------


def test_sqlalchemy_asyncio_orm_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("greenlet")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import ForeignKey, String, select
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(30))
        books: Mapped[list["Book"]] = relationship(back_populates="author", cascade="all, delete-orphan")

    class Book(Base):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
        title: Mapped[str]
        author: Mapped["Author"] = relationship(back_populates="books")

    path = tmp_path / "orm.db"

    async def main() -> None:
        # The dialect's module= takes the DB-API shim it builds around aiosqlite;
        # build the same shim around this module (and the DB-API module).
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}",
                                     module=AsyncAdapt_aiosqlite_dbapi(aio, dbapi))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        session = async_sessionmaker(engine, expire_on_commit=False)
        async with session() as s:
            s.add(Author(name="Ursula", books=[Book(title="Earthsea"), Book(title="Lathe")]))
            await s.commit()
        async with session() as s:
            author = (await s.scalars(select(Author).options(selectinload(Author.books)))).one()
            assert sorted(b.title for b in author.books) == ["Earthsea", "Lathe"]
            author.name = "U. K."
            author.books.pop()
            await s.commit()
        async with session() as s:
            with pytest.raises(sqlalchemy.exc.IntegrityError):
                s.add(Book(id=1, author_id=1, title="duplicate"))
                await s.commit()
            await s.rollback()
        async with engine.connect() as c:
            assert c.dialect.dbapi.aiosqlite is aio
            rows = (await c.exec_driver_sql("SELECT name, count(book.id) FROM author "
                                             "JOIN book ON book.author_id = author.id")).all()
            assert rows == [("U. K.", 1)]
        await engine.dispose()

    asyncio.run(asyncio.wait_for(main(), 60))
    con = sss.connect(path)
    assert con.execute("SELECT title FROM book").fetchall() == [("Earthsea",)]
    con.close()


# -- anyio ----------------------------------------------------------------------------------------


def test_anyio_on_asyncio_cancel_scopes_interrupt_queries(tmp_path: Path) -> None:
    anyio = pytest.importorskip("anyio")

    async def main() -> None:
        async with aio.connect(tmp_path / "a.db") as db:
            with anyio.move_on_after(0.2) as scope:
                await db.execute_fetchall(FOREVER)
            assert scope.cancelled_caught
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.2):
                    await db.execute_fetchall(FOREVER)
            results: list[Any] = []
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    async def one(i: int = i) -> None:
                        results.append(await db.execute_fetchall("SELECT ?", (i,)))
                    tg.start_soon(one)
            assert sorted(results) == [[(i,)] for i in range(5)]
            assert await db.execute_fetchall("SELECT 1") == [(1,)]

    anyio.run(main, backend="asyncio")


def test_without_an_asyncio_loop_the_error_says_so(tmp_path: Path) -> None:
    db = aio.connect(tmp_path / "a.db")
    coro = db._worker.call(lambda: None)
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        coro.send(None)
    coro.close()
