"""What makes a service: its name, tables, migrations, subscriptions and background jobs.

Each service's `app.py` declares one `ServiceDefinition` (its composition root); the
launcher builds web apps and workers from it, in one process (embedded) or one process
per target (distributed). Nothing connects at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import connexion
from sqlalchemy import MetaData

from chassis import migrate
from chassis.consumer import Subscription
from chassis.db import Database
from chassis.process import freeze_startup_heap
from chassis.settings import Settings
from chassis.web import create_service_app
from chassis.worker import Worker

BackgroundJob = Callable[[Any], None]


def _no_subscriptions(_settings: Settings) -> list[Subscription]:
    return []


def _no_extras(_settings: Settings, _db: Database) -> dict[str, Any]:
    return {}


def _no_background(_settings: Settings, _db: Database) -> list[BackgroundJob]:
    return []


@dataclass
class ServiceDefinition:
    name: str
    import_name: str
    metadata: MetaData
    migrations_dir: Path
    subscriptions: Callable[[Settings], list[Subscription]] = _no_subscriptions
    extras: Callable[[Settings, Database], dict[str, Any]] = _no_extras
    background: Callable[[Settings, Database], list[BackgroundJob]] = _no_background
    ready_checks: list[Callable[[], None]] = field(default_factory=list)
    # Extra middleware or routes outside the contract (documents' upload size guard,
    # identity's OIDC endpoints and login page).
    configure_app: Callable[[Any, Settings, Database], None] | None = None
    # Flask routes of its own (identity: Authlib's OIDC provider is a Flask integration):
    # the service runs on connexion's FlaskApp instead of the AsyncApp.
    flask_routes: bool = False
    # Idempotent demo data for embedded mode and local runs (never in production).
    demo_data: Callable[[Settings, Database], None] | None = None

    def settings(self) -> Settings:
        return Settings.from_env(self.name)

    def database(self, settings: Settings | None = None, *, pre_ping: bool = True) -> Database:
        settings = settings or self.settings()
        return Database(settings.database_url, self.metadata, self.name, pre_ping=pre_ping)

    def migrate(self, settings: Settings | None = None) -> None:
        settings = settings or self.settings()
        migrate.upgrade(settings.database_url, self.migrations_dir)

    def create_app(
        self, settings: Settings | None = None, db: Database | None = None
    ) -> connexion.AsyncApp | connexion.FlaskApp:
        settings = settings or self.settings()
        db = db or self.database(settings)
        app = create_service_app(
            settings,
            db,
            import_name=self.import_name,
            extras=self.extras(settings, db),
            ready_checks=list(self.ready_checks),
            flask=self.flask_routes,
        )
        if self.configure_app is not None:
            self.configure_app(app, settings, db)
        return app

    def create_process_app(self) -> connexion.AsyncApp | connexion.FlaskApp:
        """The app of a process that serves this service alone until it stops (gunicorn's
        factory, `coordo run --target <service>-web`): settings from the environment."""
        app = self.create_app()
        freeze_startup_heap()
        return app

    def create_worker(self, settings: Settings | None = None, db: Database | None = None) -> Worker:
        settings = settings or self.settings()
        db = db or self.database(settings, pre_ping=False)  # see Database: workers retry
        return Worker(
            db,
            settings.broker_url,
            self.subscriptions(settings),
            background=self.background(settings, db),
        )
