"""One service under test on a real database: the SQLite file of embedded mode, or a fresh
PostgreSQL database (fixture `postgres_database`), through its contract's test client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from chassis.service import ServiceDefinition
from tests.support.issuer import TestIssuer


def service_under_test(
    definition: ServiceDefinition, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, Any]]:
    """Use from a fixture parametrised with "sqlite" / "postgresql": yields (test client, database)."""
    settings = definition.settings()
    if request.param == "postgresql":
        settings = replace(settings, database_url=request.getfixturevalue("postgres_database"))
    definition.migrate(settings)
    db = definition.database(settings)
    app = definition.create_app(settings, db)
    yield app.test_client(), db
    db.dispose()


def bearer(issuer: TestIssuer, sub: str = "person-1", **claims: Any) -> dict[str, str]:
    """Authorization header for `sub`, a member of structure dac-1 unless claims say otherwise."""
    return {"Authorization": "Bearer " + issuer.mint(sub, extra_claims={"structures": ["dac-1"], **claims})}
