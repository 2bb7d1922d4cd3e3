"""Integration event envelopes and their JSON Schemas (contracts/events/<Type>.v<N>.json)."""

from __future__ import annotations

import functools
import json
import os
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from opentelemetry import propagate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chassis.settings import contracts_dir


class EventSchemaError(ValueError):
    pass


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    """Every schema of contracts/events, by its $id, so `$ref: envelope.json` resolves."""
    resources = []
    for path in sorted((contracts_dir() / "events").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@functools.lru_cache(maxsize=256)
def _validator(event_type: str, version: int) -> Draft202012Validator:
    path = contracts_dir() / "events" / f"{event_type}.v{version}.json"
    if not path.exists():
        raise EventSchemaError(f"no schema for event {event_type} v{version} at {path}")
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(
        schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def validate(envelope: dict[str, Any]) -> None:
    """Raise EventSchemaError when the envelope breaks its published schema."""
    validator = _validator(envelope["type"], int(envelope["version"]))
    errors = sorted(validator.iter_errors(envelope), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        raise EventSchemaError(
            f"{envelope['type']}.v{envelope['version']} invalid at {where}: {first.message}"
        )


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


# The grantor a delegate acts for in the current request (ID-6): set by the web layer from
# the X-Act-For header the gateway passes only on a delegation decision, so every event a
# use case emits during that request records the delegation without each use case knowing.
ACTING_FOR: ContextVar[str | None] = ContextVar("coordo_acting_for", default=None)


def make_envelope(
    *, event_type: str, producer: str, subject: str, actor: str | None, data: dict[str, Any], version: int = 1
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": version,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": producer,
        "subject": subject,
        "actor": actor,
        # Captured in the business transaction so the consumer's span joins this trace.
        "traceparent": current_traceparent(),
        "data": data,
    }
    acting_for = ACTING_FOR.get()
    if acting_for and acting_for != actor:
        envelope["acting_for"] = acting_for
    # A producer never writes an event its own contract does not allow. The check costs
    # ~2 ms of CPU (jsonschema): on in development and tests (the default), production
    # deployments may turn it off with COORDO_VALIDATE_EVENTS=0 once CI has checked it.
    if _validate_on_emit():
        validate(envelope)
    return envelope


def _validate_on_emit() -> bool:
    return os.environ.get("COORDO_VALIDATE_EVENTS", "1") != "0"
