"""Contracts: every OpenAPI file validates, every event has a valid schema, and the event
catalogue (contracts/asyncapi.yaml) names each event's producer and its real consumers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from chassis.settings import SERVICES

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
OPENAPI = sorted((CONTRACTS / "openapi").glob("*.yaml"))
EVENT_SCHEMAS = sorted(p for p in (CONTRACTS / "events").glob("*.json") if p.name != "envelope.json")


def test_every_service_has_a_contract() -> None:
    assert {p.stem for p in OPENAPI} == set(SERVICES)


@pytest.mark.parametrize("path", OPENAPI, ids=lambda p: p.stem)
def test_openapi_contract_is_valid_and_follows_the_conventions(path: Path) -> None:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate(spec)
    assert spec["info"]["x-service"] == path.stem
    assert spec["servers"][0]["url"] == "/api"
    bearer = spec["components"]["securitySchemes"]["bearer"]
    assert bearer["x-bearerInfoFunc"] == "chassis.auth.bearer_info"
    for route, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert operation["operationId"].startswith(f"{path.stem}.api."), (route, method)
            if "{patient_id}" in route and not operation.get("x-internal"):
                # The gateway can only check habilitation on operations that say which parameter names the patient.
                assert (operation.get("x-patient-scope") or item.get("x-patient-scope")) == "patient_id", (
                    route,
                    method,
                )


@pytest.mark.parametrize("path", EVENT_SCHEMAS, ids=lambda p: p.stem)
def test_event_schema_is_valid_and_extends_the_envelope(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    event_type, version = path.stem.rsplit(".v", 1)
    assert schema["$id"].endswith(f"/events/{path.name}")
    assert {"$ref": "envelope.json"} in schema["allOf"]
    assert schema["properties"]["type"]["const"] == event_type
    assert schema["properties"]["version"]["const"] == int(version)
    assert schema["properties"]["producer"]["const"] in SERVICES
    assert schema["properties"]["data"].get("additionalProperties") is False


def _subscriptions() -> dict[str, set[str]]:
    """routing key -> consumers, from the services' own code (what really runs)."""
    from coordo.registry import all_services

    consumers: dict[str, set[str]] = {}
    for definition in all_services():
        for subscription in definition.subscriptions(definition.settings()):
            for key in subscription.handlers:
                consumers.setdefault(key, set()).add(subscription.consumer)
    return consumers


def test_the_catalogue_lists_every_event_with_its_producer_and_real_consumers() -> None:
    catalogue: dict[str, Any] = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text(encoding="utf-8"))
    channels = catalogue["channels"]
    schemas = {p.stem.rsplit(".v", 1)[0]: json.loads(p.read_text()) for p in EVENT_SCHEMAS}
    listed = {}
    for channel in channels.values():
        listed[channel["x-event-type"]] = channel
    assert set(listed) == set(schemas), "every event schema is in the catalogue and nothing else"
    subscriptions = _subscriptions()
    for event_type, channel in listed.items():
        producer = schemas[event_type]["properties"]["producer"]["const"]
        assert channel["x-producer"] == producer, event_type
        routing_key = f"{producer}.{event_type}"
        assert channel["address"] == routing_key
        expected = sorted(subscriptions.get(routing_key, set()) | set(channel.get("x-other-consumers", [])))
        assert sorted(channel.get("x-consumers", [])) == expected, event_type
    for routing_key in subscriptions:
        producer, event_type = routing_key.split(".", 1)
        assert event_type in schemas, f"{routing_key} is consumed but has no schema"


def test_the_committed_catalogue_is_the_generated_one() -> None:
    """contracts/asyncapi.yaml is generated: a new event or consumer needs `contracts/catalogue.py` run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("catalogue", CONTRACTS / "catalogue.py")
    assert spec and spec.loader
    catalogue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalogue)
    assert (CONTRACTS / "asyncapi.yaml").read_text("utf-8") == catalogue.render(), (
        "contracts/asyncapi.yaml is stale: run .venv/bin/python contracts/catalogue.py"
    )


def test_the_demo_patients_belong_to_the_demo_accounts_of_identity() -> None:
    """dossier's demo data names identity's demo accounts by convention, without importing identity."""
    from dossier.demo import demo_id as dossier_demo_id
    from identity.demo import DEMO_IDS

    assert dossier_demo_id("dac") == DEMO_IDS["dac"]
    assert dossier_demo_id("coordinateur") == DEMO_IDS["coordinateur"]
