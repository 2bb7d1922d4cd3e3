"""Each service's migrations build exactly the schema its models declare (no drift), on
SQLite and PostgreSQL, and downgrade cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from chassis.db import normalise_url
from chassis.migrate import alembic_config, upgrade
from chassis.settings import SERVICES


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("name", SERVICES)
def test_migrations_match_the_models(name: str, backend: str, tmp_path: Path, request: Any) -> None:
    from coordo.registry import service

    definition = service(name)
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    upgrade(url, definition.migrations_dir)
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), definition.metadata) == []
    finally:
        engine.dispose()
    command.downgrade(alembic_config(url, definition.migrations_dir), "base")
