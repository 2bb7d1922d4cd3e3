"""The dossier service on a real database (SQLite file and PostgreSQL), through its contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from chassis.events import make_envelope, validate
from dossier.app import SERVICE
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

VALID = {
    "birth_name": "Dupont",
    "first_name": "Marie",
    "birth_date": "1950-03-02",
    "sex": "F",
    "birth_place": "75056",
    "consent": {"attested": True, "given_by": "patient"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


auth = bearer


def counts(db: Any) -> tuple[int, int]:
    with db.session_factory() as s:
        patients = s.scalar(select(func.count()).select_from(db.metadata.tables["patients"]))
        events = s.scalar(select(func.count()).select_from(db.outbox))
    return patients, events


def test_creating_a_patient_stores_it_and_writes_patient_created_to_the_outbox(
    service: Any, issuer: TestIssuer
):
    client, db = service
    response = client.post("/api/patients", json=VALID, headers=auth(issuer))
    assert response.status_code == 201, response.text
    patient = response.json()
    assert patient["birth_name"] == "DUPONT"
    assert patient["identity_status"] == "PROV"
    assert response.headers["location"] == f"/api/patients/{patient['id']}"
    with db.session_factory() as s:
        (envelope,) = s.scalars(select(db.outbox.c.envelope)).all()
    validate(envelope)
    assert envelope["type"] == "PatientCreated"
    assert envelope["data"]["owner_id"] == "person-1"
    assert "DUPONT" not in str(envelope)  # no identity trait leaves the service


def test_acting_as_a_structure_makes_the_structure_owner(service: Any, issuer: TestIssuer):
    client, db = service
    headers = {**auth(issuer), "X-Act-As": "dac-1"}
    assert client.post("/api/patients", json=VALID, headers=headers).status_code == 201
    with db.session_factory() as s:
        (envelope,) = s.scalars(select(db.outbox.c.envelope)).all()
    assert envelope["data"]["owner_kind"] == "structure"
    assert envelope["data"]["owner_id"] == "dac-1"
    other = {**auth(issuer), "X-Act-As": "hospital-9"}
    assert client.post("/api/patients", json=VALID, headers=other).status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"birth_name": None}, "birth_name"),
        ({"birth_date": "02/03/1950"}, "birth_date"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"sex": "X"}, "sex"),
        ({"birth_place": "750"}, "birth_place"),
        ({"consent": None}, "consent"),
        ({"consent": {"attested": False, "given_by": "patient"}}, "consent.attested"),
        ({"consent": {"attested": True, "given_by": "other"}}, "consent.given_by_name"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer, change: dict[str, Any], field: str
):
    client, db = service
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    response = client.post("/api/patients", json=body, headers=auth(issuer))
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field.split(".")[-1] in problem["detail"] or problem.get("field") == field
    assert counts(db) == (0, 0)


def test_no_token_or_a_bad_token_is_refused(service: Any, issuer: TestIssuer):
    client, _ = service
    assert client.post("/api/patients", json=VALID).status_code == 401
    assert client.get("/api/patients", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_file_list_shows_only_files_the_caller_is_habilitated_on(service: Any, issuer: TestIssuer):
    client, db = service
    mine = client.post("/api/patients", json=VALID, headers=auth(issuer, "person-1")).json()
    same_identity = {**VALID, "confirm_despite_candidates": True}  # a homonym: identity vigilance asks
    theirs = client.post("/api/patients", json=same_identity, headers=auth(issuer, "person-2")).json()
    listed = client.get("/api/patients", headers=auth(issuer, "person-1")).json()["items"]
    assert [p["id"] for p in listed] == [mine["id"]]

    # cercle grants person-1 on the other file, then revokes it: the list follows.
    consumer = SERVICE.create_worker(db=db).consumers[0]
    grant = habilitation_event("HabilitationGranted", theirs["id"], "person-1")
    assert consumer.handle(grant, "dossier.cercle.events") is True
    assert consumer.handle(grant, "dossier.cercle.events") is False  # duplicate delivery: no effect
    listed = client.get("/api/patients", headers=auth(issuer, "person-1")).json()["items"]
    assert {p["id"] for p in listed} == {mine["id"], theirs["id"]}
    consumer.handle(
        habilitation_event("HabilitationRevoked", theirs["id"], "person-1"), "dossier.cercle.events"
    )
    listed = client.get("/api/patients", headers=auth(issuer, "person-1")).json()["items"]
    assert [p["id"] for p in listed] == [mine["id"]]


def habilitation_event(kind: str, patient_id: str, person_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_id": patient_id,
        "member_id": "00000000-0000-4000-8000-000000000001",
        "holder_kind": "person",
        "holder_id": person_id,
    }
    if kind == "HabilitationGranted":
        data["basis"] = "member"
    return make_envelope(event_type=kind, producer="cercle", subject=patient_id, actor="person-1", data=data)
