"""Composition root of the notify service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path

import connexion

from chassis.service import ServiceDefinition
from notify.consumers import subscriptions
from notify.mailer import background
from notify.models import metadata

SERVICE = ServiceDefinition(
    name="notify",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    # The e-mail sender runs in the worker, next to the relay and the consumers.
    background=background,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'notify.app:create_app()'`."""
    return SERVICE.create_process_app()
