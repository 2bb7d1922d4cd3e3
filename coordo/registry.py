"""Where the launcher finds each service's composition root (imported lazily)."""

from __future__ import annotations

import importlib
from typing import Any

from chassis.service import ServiceDefinition
from chassis.settings import SERVICES


def service(name: str) -> ServiceDefinition:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    definition: ServiceDefinition = importlib.import_module(f"{name}.app").SERVICE
    return definition


def all_services() -> list[ServiceDefinition]:
    return [service(name) for name in SERVICES]


def web_app(show_demo_accounts: bool = False) -> Any:
    """The web front end as an ASGI app (not a service: no database, no worker)."""
    from dataclasses import replace

    from web.app import asgi, create_web
    from web.settings import WebSettings

    settings = replace(WebSettings.from_env(), show_demo_accounts=show_demo_accounts)
    return asgi(create_web(settings))
