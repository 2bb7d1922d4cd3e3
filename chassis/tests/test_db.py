"""`INSERT … ON CONFLICT DO NOTHING` of the chassis (consumers' dedupe keys, read models),
on PostgreSQL and on SQLite (the embedded mode)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, select

from chassis.db import insert_ignoring_conflicts


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
