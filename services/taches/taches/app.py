"""Composition root of the taches service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path

import connexion

from chassis.service import ServiceDefinition
from taches.consumers import subscriptions
from taches.models import metadata
from taches.scheduler import background

SERVICE = ServiceDefinition(
    name="taches",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    background=background,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'taches.app:create_app()'`."""
    return SERVICE.create_process_app()
