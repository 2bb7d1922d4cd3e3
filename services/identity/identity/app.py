"""Composition root of the identity service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path

import connexion

from chassis.service import ServiceDefinition
from identity import demo, oidc
from identity.consumers import subscriptions
from identity.models import metadata

SERVICE = ServiceDefinition(
    name="identity",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    # The OIDC provider (/oidc/...) and its login page live outside the contract.
    configure_app=oidc.configure,
    demo_data=demo.load,
)


def create_app() -> connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'identity.app:create_app()'`."""
    return SERVICE.create_app()
