"""Third-party code that speaks DB-API to SQLite runs unchanged on ours:
SQLAlchemy (Core and ORM) and pandas (read_sql / to_sql)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import sqlite_session_safe.dbapi as dbapi

sqlalchemy = pytest.importorskip("sqlalchemy")
pd = pytest.importorskip("pandas")

from sqlalchemy import ForeignKey, String, create_engine, func, select, text  # noqa: E402
from sqlalchemy.orm import (  # noqa: E402
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    born: Mapped[datetime.date | None]
    books: Mapped[list[Book]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    price: Mapped[float]
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


@pytest.fixture(params=["module", "creator"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "orm.db"
    if request.param == "module":
        eng = create_engine(f"sqlite:///{path}", module=dbapi)
    else:
        eng = create_engine("sqlite://", creator=lambda: dbapi.connect(path))
    yield eng
    eng.dispose()


def test_sqlalchemy_orm_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        ada = Author(name="Ada", born=datetime.date(1815, 12, 10),
                     books=[Book(title="Notes", price=9.5), Book(title="Letters", price=3.25)])
        session.add(ada)
        session.commit()
        ada_id = ada.id
    with Session(engine) as session:
        ada = session.get(Author, ada_id)
        assert ada is not None and ada.born == datetime.date(1815, 12, 10)
        assert sorted(b.title for b in ada.books) == ["Letters", "Notes"]
        total = session.scalar(select(func.sum(Book.price)).where(Book.author_id == ada_id))
        assert total == 12.75
        ada.books[0].price = 1.0
        session.commit()
    with Session(engine) as session:
        session.add(Author(name="Ada"))
        with pytest.raises(sqlalchemy.exc.IntegrityError) as info:
            session.commit()
        assert isinstance(info.value.orig, dbapi.IntegrityError)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Author)) == 1
        session.delete(session.scalars(select(Author)).one())
        session.commit()
        assert session.scalar(select(func.count()).select_from(Book)) == 0
    with engine.begin() as conn:
        assert conn.execute(text("SELECT sqlite_version()")).scalar() == dbapi.sqlite_version
        assert conn.dialect.dbapi is dbapi or engine.url.drivername == "sqlite"


# pandas warns for any DB-API connection that is not a stdlib sqlite3.Connection
# instance, then uses the same code path for it.
@pytest.mark.filterwarnings("ignore:pandas only supports SQLAlchemy connectable")
def test_pandas_read_sql_and_to_sql(tmp_path: Path) -> None:
    con = dbapi.connect(tmp_path / "pd.db")
    frame = pd.DataFrame({
        "i": [1, 2, 3], "f": [0.5, None, 2.5], "s": ["a", "b", None],
        "b": [b"\x00", b"\x01", b"\x02"],
    })
    assert frame.to_sql("frame", con, index=False) == 3
    back = pd.read_sql("SELECT * FROM frame ORDER BY i", con)
    assert back["i"].tolist() == [1, 2, 3]
    assert back["s"].tolist()[:2] == ["a", "b"] and back["s"].isna().tolist() == [False, False, True]
    assert back["b"].tolist() == [b"\x00", b"\x01", b"\x02"]
    assert back["f"].isna().tolist() == [False, True, False]
    frame.to_sql("frame", con, index=False, if_exists="append")
    assert pd.read_sql("SELECT count(*) AS n FROM frame", con)["n"].tolist() == [6]
    params = pd.read_sql("SELECT s FROM frame WHERE i = ?", con, params=(2,))
    assert params["s"].tolist() == ["b", "b"]
    engine = create_engine("sqlite://", creator=lambda: dbapi.connect(tmp_path / "pd.db"))
    assert pd.read_sql("SELECT max(i) AS m FROM frame", engine)["m"].tolist() == [3]
    frame.to_sql("other", engine, index=False)
    assert pd.read_sql_table("other", engine)["i"].tolist() == [1, 2, 3]
    engine.dispose()
    con.close()
