"""Composition root of the identity service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import connexion

from chassis.db import Database, utcnow
from chassis.service import ServiceDefinition
from chassis.settings import Settings
from identity import demo, oidc
from identity.consumers import subscriptions
from identity.jobs import background
from identity.models import metadata


def _extras(_settings: Settings, _db: Database) -> dict[str, Any]:
    # The clock of the use cases that depend on the day (delegation end dates); tests replace it.
    return {"clock": utcnow}


SERVICE = ServiceDefinition(
    name="identity",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    extras=_extras,
    # ID-6: delegations past their end date lapse by themselves.
    background=background,
    # The OIDC provider (/oidc/...) and its login page live outside the contract.
    configure_app=oidc.configure,
    flask_routes=True,
    demo_data=demo.load,
)


def create_app() -> connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'identity.app:create_app()'`."""
    return SERVICE.create_process_app()
