"""The identity service running for real: migrated database, demo data, uvicorn on a free port.

The chassis verifier of this process trusts the provider under test, so `/api/...` calls
are checked against its own discovery and JWKS over HTTP, exactly as the gateway would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from chassis import auth
from chassis.db import Database
from chassis.settings import Settings
from chassis.web import context_of
from identity.app import SERVICE
from identity.oidc import Provider


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    base_url: str
    issuer: str
    settings: Settings
    db: Database
    provider: Provider
    http: httpx.Client
    app: Any

    def set_clock(self, clock: Any) -> None:
        """The clock the API's day-dependent use cases read (delegation end dates)."""
        context_of(self.app).extras["clock"] = clock


class ServerThread:
    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"identity-{port}", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("identity test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def running(
    request: pytest.FixtureRequest, var_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Running]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/oidc"
    monkeypatch.setenv("COORDO_OIDC_ISSUER", issuer)
    # The generated directory (3,000 entries) is loaded by the one test that is about it.
    monkeypatch.setenv("COORDO_DEMO_DIRECTORY_ENTRIES", "0")
    settings = SERVICE.settings()
    if request.param == "postgresql":
        settings = Settings(
            **{**settings.__dict__, "database_url": request.getfixturevalue("postgres_database")}
        )
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    assert SERVICE.demo_data is not None
    SERVICE.demo_data(settings, db)

    previous = getattr(auth, "_verifier", None)
    auth.configure_verifier(auth.TokenVerifier(issuer, "coordo"))
    app = SERVICE.create_app(settings, db)
    provider: Provider = app.app.extensions["coordo_oidc"]
    try:
        with ServerThread(app, port), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            yield Running(f"http://127.0.0.1:{port}", issuer, settings, db, provider, http, app)
    finally:
        auth._verifier = previous  # type: ignore[attr-defined]
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, var_dir: Any) -> Iterator[Database]:
    """The migrated identity database alone (no web app, no demo accounts): for use cases."""
    settings = SERVICE.settings()
    if request.param == "postgresql":
        settings = Settings(
            **{**settings.__dict__, "database_url": request.getfixturevalue("postgres_database")}
        )
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    try:
        yield db
    finally:
        db.dispose()
