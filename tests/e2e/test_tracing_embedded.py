"""One trace runs gateway → dossier → outbox relay publish → cercle consume, and a
revocation's trace reaches the gateway's cache eviction; each span under its own service."""

from __future__ import annotations

import secrets
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chassis import tracing
from tests.e2e.scenario import NEW_PATIENT, User, eventually


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def service(span: Any) -> str:
    return str(span.resource.attributes["service.name"])


def test_a_patient_creation_is_one_trace_across_http_and_amqp(embedded_suite: Any) -> None:
    exporter = InMemorySpanExporter()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    coordinator = User(embedded_suite.base_url, embedded_suite.issuer, "coordinateur")
    nurse = User(embedded_suite.base_url, embedded_suite.issuer, "infirmiere")

    trace_id = secrets.randbits(128)
    traceparent = f"00-{trace_id:032x}-{secrets.randbits(64):016x}-01"
    created = coordinator.http.post("/api/patients", json=NEW_PATIENT, headers={"traceparent": traceparent})
    assert created.status_code == 201
    patient_id = created.json()["id"]

    def chain() -> list[Any] | None:
        spans = spans_of(exporter, trace_id)
        consumed = [s for s in spans if service(s) == "coordo-cercle" and s.kind == SpanKind.CONSUMER]
        return spans if consumed else None

    spans = eventually(chain)
    by_id = {s.context.span_id: s for s in spans}
    services = {service(s) for s in spans}
    assert {"coordo-gateway", "coordo-dossier", "coordo-cercle"} <= services

    consume = next(s for s in spans if service(s) == "coordo-cercle" and s.kind == SpanKind.CONSUMER)
    publish = by_id[consume.parent.span_id]
    assert service(publish) == "coordo-dossier" and publish.kind == SpanKind.PRODUCER
    assert "PatientCreated" in publish.name
    # Walk up from the publish span: it descends from dossier's server span, itself under the gateway's.
    ancestors = []
    node = publish
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
        ancestors.append(service(node))
    assert "coordo-dossier" in ancestors and ancestors[-1] == "coordo-gateway"

    # The revocation's trace reaches every gateway's cache eviction.
    path = f"/api/patients/{patient_id}"
    eventually(lambda: coordinator.http.get(path).status_code == 200)
    coordinator.http.post(
        f"{path}/circle/members",
        json={"holder_kind": "person", "holder_id": nurse.id, "roles": ["intervenant"], "habilitated": True},
    )
    members = coordinator.http.get(f"{path}/circle").json()
    members = members["members"] if isinstance(members, dict) else members
    nurse_member = next(m for m in members if m["holder_id"] == nurse.id)
    revoke_trace = secrets.randbits(128)
    revoked = coordinator.http.delete(
        f"{path}/circle/members/{nurse_member['id']}/habilitation",
        headers={"traceparent": f"00-{revoke_trace:032x}-{secrets.randbits(64):016x}-01"},
    )
    assert revoked.status_code in (200, 204)

    def eviction() -> list[Any]:
        return [
            s
            for s in spans_of(exporter, revoke_trace)
            if service(s) == "coordo-gateway"
            and s.kind == SpanKind.CONSUMER
            and "HabilitationRevoked" in s.name
        ]

    assert eventually(eviction)
