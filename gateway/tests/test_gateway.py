"""The gateway in front of real upstream servers, with real tokens of a real issuer."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from chassis.settings import REPO_ROOT
from tests.support.issuer import TestIssuer

pytestmark = pytest.mark.anyio

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_patient() -> str:
    return str(uuid.uuid4())


def bearer(issuer: TestIssuer, sub: str = "person-1", **claims: Any) -> dict[str, str]:
    token = issuer.mint(sub, extra_claims={"structures": ["dac-1", "ssiad-2"], **claims})
    return {"Authorization": f"Bearer {token}"}


# -- authentication ---------------------------------------------------------------------


async def test_no_token_is_401_with_bearer_challenge_and_upstream_untouched(
    gateway: Any, dossier: Any
) -> None:
    response = await gateway.client.get(f"/api/patients/{new_patient()}")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    response = await gateway.client.get("/api/patients", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert dossier.requests == []


@pytest.mark.parametrize(
    "kind",
    [
        "expired",
        "not-yet-valid",
        "tampered",
        "alg-none",
        "hs256-with-public-key",
        "unknown-kid",
        "wrong-audience",
        "wrong-issuer",
    ],
)
async def test_bad_tokens_are_401_and_upstream_untouched(
    gateway: Any, issuer: TestIssuer, dossier: Any, cercle: Any, kind: str
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    tokens = {
        "expired": lambda: issuer.mint("p1", expires_in=-3600),
        "tampered": lambda: issuer.tamper(issuer.mint("p1")),
        "alg-none": lambda: issuer.forge_alg_none(issuer.claims("p1")),
        "unknown-kid": lambda: issuer.mint_with_unknown_kid("p1"),
        "wrong-audience": lambda: issuer.mint("p1", audience="someone-else"),
        "not-yet-valid": lambda: issuer.mint("p1", not_before=time.time() + 3600),
        "hs256-with-public-key": lambda: issuer.forge_hs256_with_public_key(issuer.claims("p1")),
        "wrong-issuer": lambda: issuer.mint("p1", issuer="https://idp.example.org/realms/other"),
    }
    token = tokens[kind]()
    response = await gateway.client.get(
        f"/api/patients/{patient}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    assert "invalid token" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert dossier.requests == []
    assert cercle.calls == []


async def test_a_flood_of_forged_kids_is_refused_without_hammering_the_issuer(
    gateway: Any, issuer: TestIssuer, dossier: Any, cercle: Any
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    ok = await gateway.client.get(
        f"/api/patients/{patient}", headers={"Authorization": f"Bearer {issuer.mint('p1')}"}
    )
    assert ok.status_code == 200
    jwks_before = issuer.jwks_hits
    for _ in range(100):
        forged = issuer.mint_with_unknown_kid("p1")
        response = await gateway.client.get(
            f"/api/patients/{patient}", headers={"Authorization": f"Bearer {forged}"}
        )
        assert response.status_code == 401
    # At most one refetch per 30 s cooldown, whatever the number of forged kids.
    assert issuer.jwks_hits - jwks_before <= 1


async def test_a_token_of_another_issuer_is_accepted_only_when_configured(
    make_gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    with TestIssuer() as other:
        foreign = bearer(other, "person-9")
        async with make_gateway() as gw:
            response = await gw.client.get(f"/api/patients/{patient}", headers=foreign)
            assert response.status_code == 401
            assert dossier.requests == []

        # Production points the gateway at its IdP (Keycloak, ...) through the environment only.
        monkeypatch.setenv("COORDO_OIDC_ISSUER", other.issuer)
        async with make_gateway() as gw:
            response = await gw.client.get(f"/api/patients/{patient}", headers=foreign)
            assert response.status_code == 200, response.text
            assert dossier.requests[-1].headers["authorization"] == foreign["Authorization"]
            # ... and the built-in issuer's tokens are now the foreign ones.
            response = await gw.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
            assert response.status_code == 401


async def test_acting_for_a_structure_outside_the_token_is_403(
    gateway: Any, issuer: TestIssuer, dossier: Any
) -> None:
    headers = {**bearer(issuer), "X-Act-As": "hospital-9"}
    response = await gateway.client.get(f"/api/patients/{new_patient()}", headers=headers)
    assert response.status_code == 403
    assert dossier.requests == []


# -- habilitation and forwarding ------------------------------------------------------------


async def test_habilitated_request_is_forwarded_with_token_request_id_and_traceparent(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any, spans: Any
) -> None:
    spans.clear()
    patient = new_patient()
    cercle.grant(patient, "member")
    headers = {
        **bearer(issuer),
        "X-Act-As": "dac-1",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
    }
    response = await gateway.client.get(f"/api/patients/{patient}?fields=a%20b", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"service": "dossier", "path": f"/api/patients/{patient}", "length": 0}
    assert response.headers["x-upstream"] == "dossier"
    request_id = response.headers["x-request-id"]
    uuid.UUID(request_id)

    (received,) = dossier.requests
    assert received.path == f"/api/patients/{patient}"
    assert received.query == "fields=a%20b"
    assert received.headers["authorization"] == headers["Authorization"]
    assert received.headers["x-act-as"] == "dac-1"
    assert received.headers["x-request-id"] == request_id
    traceparent = TRACEPARENT.match(received.headers["traceparent"])
    assert traceparent is not None
    # The upstream's parent is the gateway's server span, named after the route template.
    (server_span,) = [s for s in spans.get_finished_spans() if s.name == "GET /api/patients/{patient_id}"]
    assert server_span.resource.attributes["service.name"] == "coordo-gateway"
    assert traceparent.group(1) == format(server_span.context.trace_id, "032x")
    assert traceparent.group(2) == format(server_span.context.span_id, "016x")
    assert "x-secret-hop" not in received.headers  # named by Connection: hop-by-hop
    assert received.headers["x-forwarded-for"] == "10.1.2.3"

    (call,) = cercle.calls
    assert call["patient_id"] == patient
    assert call["headers"]["authorization"] == headers["Authorization"]
    assert call["headers"]["x-act-as"] == "dac-1"


async def test_a_given_request_id_is_kept_and_bodies_pass_byte_for_byte(
    gateway: Any, issuer: TestIssuer, dossier: Any
) -> None:
    body = b'{ "birth_name" : "Dupont",\n  "first_name":"Zo\xc3\xa9" }'
    headers = {**bearer(issuer), "X-Request-Id": "req-42", "Content-Type": "application/json"}
    response = await gateway.client.post("/api/patients", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    (received,) = dossier.requests
    assert received.body == body
    assert received.headers["content-length"] == str(len(body))
    assert received.headers["x-request-id"] == "req-42"
    assert int(response.headers["content-length"]) == len(response.content)


async def test_not_habilitated_is_403_and_refusals_are_not_cached(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient = new_patient()
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert response.status_code == 403
    assert response.json()["detail"] == "not habilitated on this patient"
    assert response.json()["type"] == "urn:coordo:problem:not-habilitated"
    assert dossier.requests == []

    # A grant shows up at once: the refusal was not cached.
    cercle.grant(patient)
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert response.status_code == 200
    assert len(cercle.calls) == 2
    assert len(dossier.requests) == 1


async def test_a_file_just_created_opens_for_its_creator_while_cercle_catches_up(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    # dossier has answered 201; cercle learns of the file from PatientCreated a moment later.
    patient = new_patient()
    cercle.arrives_after(patient, questions=3)
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert response.status_code == 200, response.text
    assert len(cercle.calls) == 4  # three "unknown yet", then the grant
    assert len(dossier.requests) == 1
    metrics = (await gateway.client.get("/metrics")).text
    assert 'gateway_unknown_patient_waits_total{result="known"} 1.0' in metrics


def never_known(gateway: Any, cercle: Any, count: int) -> list[str]:
    """Patients cercle never learns of (ids that exist nowhere), with a short wait."""
    gateway.app.unknown_patient_wait_s = 0.3
    patients = [new_patient() for _ in range(count)]
    for patient in patients:
        cercle.arrives_after(patient, questions=1_000_000)
    return patients


async def test_a_patient_cercle_never_learns_of_is_refused_once_the_wait_runs_out(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    (patient,) = never_known(gateway, cercle, 1)
    started = time.monotonic()
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    waited = time.monotonic() - started
    assert response.status_code == 403
    assert response.json()["type"] == "urn:coordo:problem:not-habilitated"
    assert 0.3 <= waited < 2.0
    assert 3 <= len(cercle.calls) <= 10  # asked again with a growing pause, not hammered
    assert dossier.requests == []
    metrics = (await gateway.client.get("/metrics")).text
    assert 'gateway_unknown_patient_waits_total{result="still_unknown"} 1.0' in metrics


async def test_waits_for_unknown_patients_are_bounded_in_number(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    # A flood of ids that exist nowhere must not each cost cercle a dozen questions.
    gateway.app.max_unknown_patient_waits = 1
    first, second, third = never_known(gateway, cercle, 3)
    answers = await asyncio.gather(
        gateway.client.get(f"/api/patients/{first}", headers=bearer(issuer)),
        gateway.client.get(f"/api/patients/{second}", headers=bearer(issuer)),
    )
    assert [a.status_code for a in answers] == [403, 403]
    asked = sorted(sum(call["patient_id"] == p for call in cercle.calls) for p in (first, second))
    assert asked[0] == 1 and asked[1] >= 3  # one waited, the other was refused at once
    # The slot is free again once that wait is over.
    assert (await gateway.client.get(f"/api/patients/{third}", headers=bearer(issuer))).status_code == 403
    assert sum(call["patient_id"] == third for call in cercle.calls) >= 3
    metrics = (await gateway.client.get("/metrics")).text
    assert 'gateway_unknown_patient_waits_total{result="still_unknown"} 2.0' in metrics
    assert 'gateway_unknown_patient_waits_total{result="not_waited"} 1.0' in metrics
    assert dossier.requests == []


async def test_allowed_decisions_are_cached_per_person_structure_and_patient(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    headers = bearer(issuer)
    for _ in range(3):
        assert (await gateway.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
    assert len(cercle.calls) == 1
    # Acting for a structure is another question for cercle.
    as_structure = {**headers, "X-Act-As": "dac-1"}
    assert (await gateway.client.get(f"/api/patients/{patient}", headers=as_structure)).status_code == 200
    assert len(cercle.calls) == 2
    assert len(dossier.requests) == 4
    metrics = (await gateway.client.get("/metrics")).text
    assert 'gateway_decision_cache_total{result="hit"} 2.0' in metrics
    assert 'gateway_decision_cache_total{result="miss"} 2.0' in metrics
    assert 'gateway_requests_total{service="dossier",status="200"} 4.0' in metrics
    assert 'gateway_upstream_latency_seconds_count{service="dossier"} 4.0' in metrics


@pytest.mark.parametrize("mode", ["error", "bad-json", "slow", "down"])
async def test_when_cercle_cannot_answer_the_gateway_refuses_with_503(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any, mode: str
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    if mode == "down":
        cercle.server.stop()
    else:
        cercle.mode = mode
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:coordo:problem:habilitation-unavailable"
    assert problem["title"] == "Habilitation service unavailable"
    assert "habilitation service" in problem["detail"] and "refused" in problem["detail"]
    assert dossier.requests == []


async def test_a_malformed_patient_id_is_refused_not_an_outage(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    response = await gateway.client.get("/api/patients/not-a-uuid", headers=bearer(issuer))
    assert response.status_code == 403
    assert dossier.requests == []


async def test_upstream_down_is_502(gateway: Any, issuer: TestIssuer, dossier: Any) -> None:
    dossier.server.stop()
    response = await gateway.client.get("/api/patients", headers=bearer(issuer))
    assert response.status_code == 502
    assert response.json()["title"] == "Bad gateway"


async def test_unknown_paths_methods_and_internal_operations(
    make_gateway: Any, issuer: TestIssuer, cercle: Any, tmp_path: Path
) -> None:
    # The real contracts plus a cercle contract with an internal operation.
    contracts = tmp_path / "contracts"
    (contracts / "openapi").mkdir(parents=True)
    for path in (REPO_ROOT / "contracts" / "openapi").glob("*.yaml"):
        if path.name != "cercle.yaml":
            (contracts / "openapi" / path.name).write_text(path.read_text())
    (contracts / "openapi" / "cercle.yaml").write_text(
        textwrap.dedent(
            """
            openapi: 3.0.3
            info: {title: cercle, version: '1', x-service: cercle}
            servers: [{url: /api}]
            paths:
              /internal/decision:
                get: {x-internal: true, responses: {'200': {description: ok}}}
            """
        )
    )
    async with make_gateway(contracts=contracts) as gw:
        headers = bearer(issuer)
        response = await gw.client.get("/api/internal/decision?patient_id=x", headers=headers)
        assert response.status_code == 404
        assert cercle.calls == []
        response = await gw.client.get("/api/nothing/here", headers=headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        response = await gw.client.delete(f"/api/patients/{new_patient()}", headers=headers)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        response = await gw.client.get(f"/api/patients/{new_patient()}/%2E%2E/x", headers=headers)
        assert response.status_code in (400, 404)
        assert (await gw.client.get("/auth/callback")).status_code == 404
        assert (await gw.client.get("/elsewhere")).status_code == 404


# -- revocation ---------------------------------------------------------------------------------


def publish_revocation(broker_url: str, patient_id: str) -> str:
    """Publish HabilitationRevoked like cercle's relay does; returns the producer's trace id."""
    from kombu import Connection, Producer

    from chassis import bus, tracing
    from chassis.events import make_envelope

    with tracing.tracer("cercle").start_as_current_span("revoke habilitation") as span:
        envelope = make_envelope(
            event_type="HabilitationRevoked",
            producer="cercle",
            subject=patient_id,
            actor="person-admin",
            data={
                "patient_id": patient_id,
                "member_id": str(uuid.uuid4()),
                "holder_kind": "person",
                "holder_id": "p",
            },
        )
        headers = tracing.inject_headers()
        trace_id = format(span.get_span_context().trace_id, "032x")
    with Connection(broker_url) as connection:
        producer = Producer(connection.default_channel)
        producer.publish(
            json.dumps(envelope),
            exchange=bus.EVENTS_EXCHANGE,
            routing_key="cercle.HabilitationRevoked",
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            declare=[bus.EVENTS_EXCHANGE],
            retry=True,
        )
    return trace_id


async def assert_revocation_bites(
    gw: Any, issuer: TestIssuer, cercle: Any, broker_url: str, spans: Any
) -> None:
    patient = new_patient()
    cercle.grant(patient)
    headers = bearer(issuer)
    assert (await gw.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
    assert (await gw.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
    assert len(cercle.calls) == 1  # the grant is cached for long (max_age_s is 30 -> 5 s)

    cercle.revoke(patient)
    spans.clear()
    trace_id = await asyncio.to_thread(publish_revocation, broker_url, patient)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        status = (await gw.client.get(f"/api/patients/{patient}", headers=headers)).status_code
        if status == 403:
            break
        assert status == 200
        assert loop.time() - started < 1.0, "revocation did not bite within one second"
        await asyncio.sleep(0.02)

    (span,) = [s for s in spans.get_finished_spans() if s.name == "cercle.HabilitationRevoked process"]
    assert span.resource.attributes["service.name"] == "coordo-gateway"
    assert span.kind.name == "CONSUMER"
    assert format(span.context.trace_id, "032x") == trace_id  # one trace: revoking request -> eviction
    assert span.attributes["coordo.evicted"] == 1


async def test_revocation_on_the_memory_bus_evicts_the_cache_within_a_second(
    gateway: Any, issuer: TestIssuer, cercle: Any, spans: Any
) -> None:
    await assert_revocation_bites(gateway, issuer, cercle, "memory://", spans)


async def test_revocation_on_rabbitmq_evicts_the_cache_within_a_second(
    make_gateway: Any,
    issuer: TestIssuer,
    cercle: Any,
    amqp_url: str,
    spans: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COORDO_BROKER_URL", amqp_url)
    async with make_gateway() as gw:
        assert gw.app.revocations.queue_name.startswith("gateway.")
        await assert_revocation_bites(gw, issuer, cercle, amqp_url, spans)


# -- audit ------------------------------------------------------------------------------------------


async def check_audit(gw: Any, issuer: TestIssuer, cercle: Any) -> None:
    from sqlalchemy import select

    from gateway.audit import access_log

    allowed, refused = new_patient(), new_patient()
    cercle.grant(allowed, "break_glass")
    headers = bearer(issuer, "person-7")
    ok = await gw.client.get(f"/api/patients/{allowed}", headers={**headers, "X-Act-As": "ssiad-2"})
    assert ok.status_code == 200
    again = await gw.client.get(f"/api/patients/{allowed}", headers={**headers, "X-Act-As": "ssiad-2"})
    assert again.status_code == 200
    no = await gw.client.get(f"/api/patients/{refused}", headers=headers)
    assert no.status_code == 403
    await gw.client.post("/api/patients", content=b"{}", headers=headers)  # not patient-scoped: no row
    long = await gw.client.get(f"/api/patients/{'a' * 100}", headers=headers)
    assert long.status_code == 403

    assert await asyncio.to_thread(gw.app.audit.flush, 5.0)
    with gw.app.audit.engine.connect() as conn:
        rows = conn.execute(select(access_log).order_by(access_log.c.id)).mappings().all()
    assert len(rows) == 4
    first, second, third, fourth = rows
    assert fourth["patient_id"] == "a" * 64  # clipped to its column, not a poisoned batch
    assert first["person_id"] == "person-7"
    assert first["structure_id"] == "ssiad-2"
    assert first["acting_for"] is None
    assert first["patient_id"] == allowed
    assert first["method"] == "GET"
    assert first["path_template"] == "/api/patients/{patient_id}"
    assert first["service"] == "dossier"
    assert first["basis"] == "break_glass"
    assert first["allowed"] is True
    assert first["upstream_status"] == 200
    assert first["request_id"] == ok.headers["x-request-id"]
    assert first["at"].tzinfo is not None
    assert second["basis"] == "break_glass" and second["request_id"] == again.headers["x-request-id"]
    assert third["patient_id"] == refused
    assert third["allowed"] is False
    assert third["basis"] is None
    assert third["status"] == 403
    assert third["upstream_status"] is None
    assert third["structure_id"] is None

    # The access journal reads the same rows on this database, newest first, accesses only.
    journal = await gw.client.get(
        f"/api/patients/{allowed}/access-journal", headers={**headers, "X-Act-As": "ssiad-2"}
    )
    assert journal.status_code == 200, journal.text
    assert [i["id"] for i in journal.json()["items"]] == [second["id"], first["id"]]
    assert journal.json()["items"][0]["basis"] == "break_glass"


async def test_every_patient_scoped_request_is_audited_on_sqlite(
    gateway: Any, issuer: TestIssuer, cercle: Any, var_dir: Path
) -> None:
    assert gateway.app.settings.database_url == f"sqlite:///{var_dir / 'gateway.db'}"
    await check_audit(gateway, issuer, cercle)


async def test_every_patient_scoped_request_is_audited_on_postgresql(
    make_gateway: Any,
    issuer: TestIssuer,
    cercle: Any,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COORDO_GATEWAY_DATABASE_URL", postgres_database)
    async with make_gateway() as gw:
        assert gw.app.audit.engine.dialect.name == "postgresql"
        await check_audit(gw, issuer, cercle)
        gw.app.audit.engine.dispose()  # let the fixture drop the database


async def test_audit_rows_queued_at_shutdown_are_written(
    make_gateway: Any, issuer: TestIssuer, cercle: Any
) -> None:
    from sqlalchemy import func, select

    from gateway.audit import access_log

    patient = new_patient()
    cercle.grant(patient)
    async with make_gateway() as gw:
        for _ in range(20):
            await gw.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
        app = gw.app
    # The lifespan has ended: the writer flushed on its way out.
    engine = app.audit.engine
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(access_log)).scalar() == 20
    engine.dispose()


# -- pass-through, health, docs ---------------------------------------------------------------------


async def test_oidc_paths_go_to_identity_without_a_token(identity: Any, gateway: Any) -> None:
    response = await gateway.client.get("/oidc/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.json()["service"] == "identity"
    (received,) = identity.requests
    assert received.path == "/oidc/.well-known/openid-configuration"
    response = await gateway.client.post("/oidc/token", content=b"grant_type=authorization_code&code=x")
    assert identity.requests[-1].body == b"grant_type=authorization_code&code=x"


async def test_health_ready_reports_every_service(
    make_gateway: Any, dossier: Any, identity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other services of the real contracts answer on the identity fake.
    for name in ("agenda", "documents", "notify", "taches"):
        monkeypatch.setenv(f"COORDO_{name.upper()}_URL", identity.url)
    async with make_gateway() as gateway:
        await check_health(gateway, dossier)


async def check_health(gateway: Any, dossier: Any) -> None:
    assert (await gateway.client.get("/health/live")).json()["status"] == "live"
    response = await gateway.client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["services"]["dossier"] == "ready"
    assert body["services"]["cercle"] == "ready"
    # Every upstream, not the gateway itself (it serves its own access journal).
    assert set(body["services"]) == (set(gateway.app.routes.services) - {"gateway"}) | {"cercle"}
    assert body["checks"] == {"revocations": "ok", "access_log": "ok"}

    dossier.ready_status = 503
    response = await gateway.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["services"]["dossier"] == "not ready"
    assert response.json()["services"]["cercle"] == "ready"

    dossier.server.stop()
    response = await gateway.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["services"]["dossier"] == "unreachable"


async def test_docs_list_every_contract_and_serve_assets_locally(gateway: Any) -> None:
    page = await gateway.client.get("/docs")
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    assert "/contracts/dossier.yaml" in page.text
    assert "https://" not in page.text  # no CDN
    asset = await gateway.client.get("/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    contract = await gateway.client.get("/contracts/dossier.yaml")
    assert contract.status_code == 200
    assert "/patients/{patient_id}" in contract.text
    assert "servers:\n- url: /api" in contract.text
    assert (await gateway.client.get("/contracts/nobody.yaml")).status_code == 404


async def test_large_bodies_are_streamed_both_ways(gateway: Any, issuer: TestIssuer, dossier: Any) -> None:
    upload = b"a" * (2 * 1024 * 1024 + 7)
    response = await gateway.client.post("/api/patients", content=upload, headers=bearer(issuer))
    assert response.status_code == 200
    assert response.json()["length"] == len(upload)
    assert dossier.requests[-1].body == upload
    for query in ("size=3000000", "size=3000000&chunked=1", "size=1000"):
        response = await gateway.client.get(f"/api/patients?{query}", headers=bearer(issuer))
        assert response.status_code == 200
        assert response.content == b"x" * int(query.split("&")[0].split("=")[1])
        assert response.headers["x-request-id"]
        assert "transfer-encoding" not in response.headers or "content-length" not in response.headers


async def test_under_uvicorn_the_lifespan_starts_and_stops_the_background_parts(
    gateway_env: None, issuer: TestIssuer, cercle: Any, dossier: Any, server_thread: Any
) -> None:
    import httpx
    from sqlalchemy import func, select

    from gateway.app import create_gateway
    from gateway.audit import access_log

    app = create_gateway()
    assert not app.ready.is_set()  # nothing runs before the server starts it
    server = await asyncio.to_thread(server_thread, app, lifespan="on")
    try:
        assert await asyncio.to_thread(app.wait_ready, 10)
        patient = new_patient()
        cercle.grant(patient)
        async with httpx.AsyncClient(base_url=server.url) as client:
            for _ in range(3):
                response = await client.get(f"/api/patients/{patient}", headers=bearer(issuer))
                assert response.status_code == 200
                assert response.headers["content-length"] == str(len(response.content))
            assert (await client.get("/health/live")).status_code == 200
    finally:
        await asyncio.to_thread(server.stop)
    assert not app.ready.is_set()
    engine = app.audit.engine
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(access_log)).scalar() == 3
    engine.dispose()


async def test_two_gateways_on_rabbitmq_both_evict_within_a_second(
    make_gateway: Any,
    issuer: TestIssuer,
    cercle: Any,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COORDO_BROKER_URL", amqp_url)
    async with make_gateway() as first, make_gateway() as second:
        assert first.app.revocations.queue_name != second.app.revocations.queue_name
        patient = new_patient()
        cercle.grant(patient)
        headers = bearer(issuer)
        for gw in (first, second):
            for _ in range(2):
                assert (await gw.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
        assert len(cercle.calls) == 2  # one question per gateway, then both answer from their cache

        cercle.revoke(patient)
        await asyncio.to_thread(publish_revocation, amqp_url, patient)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = {id(first): first, id(second): second}
        while pending:
            for key, gw in list(pending.items()):
                status = (await gw.client.get(f"/api/patients/{patient}", headers=headers)).status_code
                if status == 403:
                    del pending[key]
                else:
                    assert status == 200
            assert loop.time() - started < 1.0, "revocation did not bite within one second on both"
            await asyncio.sleep(0.02)
