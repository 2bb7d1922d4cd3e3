"""Composition root of the cercle service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import connexion

from cercle.clock import Clock
from cercle.consumers import subscriptions
from cercle.models import metadata
from cercle.usecases import BreakGlassExpiry
from chassis.db import Database
from chassis.service import BackgroundJob, ServiceDefinition
from chassis.settings import Settings

# One clock per database, shared by the web app and the worker's expiry job of the same
# process (embedded mode, tests): moving it moves both the decisions and the end events.
_clocks: WeakKeyDictionary[Database, Clock] = WeakKeyDictionary()


def clock_for(db: Database) -> Clock:
    return _clocks.setdefault(db, Clock())


def _extras(_settings: Settings, db: Database) -> dict[str, Any]:
    # Tests set this clock to check that break-the-glass ends at exactly two hours.
    return {"clock": clock_for(db)}


def _background(_settings: Settings, db: Database) -> list[BackgroundJob]:
    return [BreakGlassExpiry(db, clock_for(db)).run]


SERVICE = ServiceDefinition(
    name="cercle",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    extras=_extras,
    background=_background,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'cercle.app:create_app()'`."""
    return SERVICE.create_process_app()
