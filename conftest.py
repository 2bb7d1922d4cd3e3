"""Fixtures shared by every test folder: real PostgreSQL, real RabbitMQ, a real OIDC issuer.

Server URLs come from the environment first (`.ci/run` sets them for this machine's
PostgreSQL and RabbitMQ), then testcontainers where a Docker engine exists; otherwise the
test fails and says what is missing. Nothing is mocked and nothing is silently skipped.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.issuer import TestIssuer  # noqa: E402


def _docker_available() -> bool:
    return shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server URL without database name, e.g. postgresql://postgres@127.0.0.1:5432."""
    url = os.environ.get("COORDO_TEST_POSTGRES_URL")
    if url:
        yield url.rstrip("/")
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]

        with PostgresContainer("postgres:16") as pg:
            yield pg.get_connection_url().rsplit("/", 1)[0]
        return
    pytest.fail(
        "no PostgreSQL for this test: set COORDO_TEST_POSTGRES_URL "
        "(e.g. postgresql://postgres@127.0.0.1:5432) or run where Docker is available"
    )


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("COORDO_TEST_AMQP_URL")
    if url:
        yield url
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer  # type: ignore[import-not-found]

        with RabbitMqContainer("rabbitmq:3.13") as rabbit:
            params = rabbit.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}//"
        return
    pytest.fail(
        "no RabbitMQ for this test: set COORDO_TEST_AMQP_URL "
        "(e.g. amqp://guest:guest@127.0.0.1:5672//) or run where Docker is available"
    )


@pytest.fixture
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, pool, text

    name = f"coordo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        f"{postgres_server_url}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server_url}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestIssuer]:
    """A real OIDC issuer over HTTP; services under test trust it."""
    from chassis import auth

    with TestIssuer() as test_issuer:
        monkeypatch.setenv("COORDO_OIDC_ISSUER", test_issuer.issuer)
        previous = getattr(auth, "_verifier", None)
        auth.configure_verifier(auth.TokenVerifier(test_issuer.issuer, "coordo"))
        yield test_issuer
        auth._verifier = previous  # type: ignore[attr-defined]


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded-mode state (SQLite files) in a throw-away folder."""
    monkeypatch.setenv("COORDO_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("COORDO_VALIDATE_RESPONSES", "1")
    return tmp_path / "var"
