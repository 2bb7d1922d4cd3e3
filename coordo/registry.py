"""Where the launcher finds each service's composition root (imported lazily)."""

from __future__ import annotations

import importlib

from chassis.service import ServiceDefinition
from chassis.settings import SERVICES


def service(name: str) -> ServiceDefinition:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    definition: ServiceDefinition = importlib.import_module(f"{name}.app").SERVICE
    return definition


def all_services() -> list[ServiceDefinition]:
    return [service(name) for name in SERVICES]
