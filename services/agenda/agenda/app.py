"""Composition root of the agenda service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path

import connexion

from agenda.consumers import subscriptions
from agenda.models import metadata
from chassis.service import ServiceDefinition

SERVICE = ServiceDefinition(
    name="agenda",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'agenda.app:create_app()'`."""
    return SERVICE.create_process_app()
