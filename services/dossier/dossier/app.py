"""Composition root of the dossier service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path

import connexion

from chassis.service import ServiceDefinition
from dossier.consumers import subscriptions
from dossier.demo import load_demo_data
from dossier.models import metadata

SERVICE = ServiceDefinition(
    name="dossier",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    demo_data=load_demo_data,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'dossier.app:create_app()'`."""
    return SERVICE.create_process_app()
