"""Plain INSERTs of the chassis, on PostgreSQL and on SQLite (the embedded mode):
`INSERT … ON CONFLICT DO NOTHING` (consumers' dedupe keys, read models) and `insert_new`."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from chassis.db import insert_ignoring_conflicts, insert_new


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_a_row_already_there_is_kept_and_only_new_rows_are_returned(engine: Any) -> None:
    metadata = MetaData()
    keys = Table("keys", metadata, Column("key", String(10), primary_key=True), Column("note", String(10)))
    metadata.create_all(engine)
    statement = insert_ignoring_conflicts(keys, engine.dialect.name)
    with engine.begin() as conn:
        conn.execute(statement, {"key": "a", "note": "first"})
        conn.execute(statement, {"key": "a", "note": "second"})
        new = conn.execute(
            statement.returning(keys.c.key), [{"key": "a", "note": "third"}, {"key": "b", "note": "first"}]
        ).all()
        rows = conn.execute(select(keys.c.key, keys.c.note).order_by(keys.c.key)).all()
    assert [row.key for row in new] == ["b"]
    assert [tuple(row) for row in rows] == [("a", "first"), ("b", "first")]


def test_it_is_compiled_once_then_taken_from_the_cache(engine: Any) -> None:
    """SQLAlchemy 2.0 compiles its dialects' ON CONFLICT statements on every execution."""
    metadata = MetaData()
    keys = Table("keys", metadata, Column("key", String(10), primary_key=True))
    metadata.create_all(engine)
    statement = insert_ignoring_conflicts(keys, engine.dialect.name)
    cache = engine._compiled_cache
    with engine.begin() as conn:
        conn.execute(statement, {"key": "a"})
        cached = len(cache)
        for key in ("b", "c", "d"):
            conn.execute(insert_ignoring_conflicts(keys, engine.dialect.name), {"key": key})
    assert statement._generate_cache_key() is not None
    assert len(cache) == cached  # built again, yet the same compiled form


def test_a_new_object_is_inserted_with_the_columns_it_set_and_the_defaults_of_the_others(
    database_url: str,
) -> None:
    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[str] = mapped_column(String(10), primary_key=True)
        text: Mapped[str | None] = mapped_column(String(20))
        level: Mapped[int] = mapped_column(Integer, default=3)
        tags: Mapped[list[str]] = mapped_column(JSON, default=list)

    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        note = Note(id="n1", text="posée")
        insert_new(session, note)
        assert note not in session  # the row is the database's; the object stays detached
        session.commit()
    with engine.connect() as conn:
        row = conn.execute(select(Note.id, Note.text, Note.level, Note.tags)).one()
    engine.dispose()
    assert tuple(row) == ("n1", "posée", 3, [])
