"""The agenda service on a real database (SQLite file and PostgreSQL), through its contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from agenda.app import SERVICE
from chassis.events import validate
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

PATIENT = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"
OTHER_PATIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
VALID = {
    "type": "rdv-personne-agee",
    "title": "Visite à domicile — bilan chute",
    "start": "2026-12-01T09:30:00+01:00",
    "end": "2026-12-01T10:30:00+01:00",
    "place": "12 rue des Lilas, Lyon",
    "participants": [{"kind": "person", "id": "nurse-7"}, {"kind": "structure", "id": "dac-1"}],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Path) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


auth = bearer


def as_structure(issuer: TestIssuer, sub: str = "person-1", structure: str = "dac-1") -> dict[str, str]:
    return {**auth(issuer, sub), "X-Act-As": structure}


def counts(db: Any) -> tuple[int, int]:
    with db.session_factory() as s:
        appointments = s.scalar(select(func.count()).select_from(db.metadata.tables["appointments"]))
        events = s.scalar(select(func.count()).select_from(db.outbox))
    return appointments, events


def outbox(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        envelopes = list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))
    for envelope in envelopes:
        validate(envelope)
    return envelopes


def schedule(client: Any, headers: dict[str, str], patient: str = PATIENT, **change: Any) -> Any:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    return client.post(f"/api/patients/{patient}/appointments", json=body, headers=headers)


def test_default_types_and_the_structure_s_own_are_offered(service: Any, issuer: TestIssuer):
    client, _ = service
    labels = [t["label"] for t in client.get("/api/appointment-types", headers=auth(issuer)).json()["items"]]
    assert labels == ["RDV adulte", "RDV enfant", "RDV personne âgée", "RDV sans patient"]

    new_type = {"code": "visite-domicile", "label": "Visite à domicile"}
    refused = client.post("/api/appointment-types", json=new_type, headers=auth(issuer))
    assert refused.status_code == 403  # a type belongs to a structure: act as one
    created = client.post("/api/appointment-types", json=new_type, headers=as_structure(issuer))
    assert created.status_code == 201, created.text
    assert created.json()["structure_id"] == "dac-1"
    again = client.post("/api/appointment-types", json=new_type, headers=as_structure(issuer))
    assert again.status_code == 409

    mine = client.get("/api/appointment-types", headers=as_structure(issuer)).json()["items"]
    assert "Visite à domicile" in [t["label"] for t in mine]
    elsewhere = client.get("/api/appointment-types", headers=auth(issuer, "p9", structures=["ssiad-2"]))
    assert "Visite à domicile" not in [t["label"] for t in elsewhere.json()["items"]]
    assert schedule(client, as_structure(issuer), type="visite-domicile").status_code == 201
    assert (
        schedule(client, auth(issuer, "p9", structures=["ssiad-2"]), type="visite-domicile").status_code
        == 422
    )


def test_scheduling_stores_the_appointment_and_emits_appointment_scheduled(service: Any, issuer: TestIssuer):
    client, db = service
    response = schedule(client, auth(issuer))
    assert response.status_code == 201, response.text
    appointment = response.json()
    assert appointment["start"] == "2026-12-01T08:30:00+00:00"
    assert appointment["type_label"] == "RDV personne âgée"
    assert appointment["participants"] == VALID["participants"]
    assert response.headers["location"] == f"/api/patients/{PATIENT}/appointments/{appointment['id']}"

    (envelope,) = outbox(db)
    assert envelope["type"] == "AppointmentScheduled"
    assert envelope["subject"] == PATIENT
    assert envelope["data"]["type_code"] == "rdv-personne-agee"
    assert envelope["data"]["start"] == "2026-12-01T08:30:00+00:00"
    assert "chute" not in str(envelope) and "Lilas" not in str(envelope)  # no title, no place

    listed = client.get(f"/api/patients/{PATIENT}/appointments", headers=auth(issuer)).json()["items"]
    assert [a["id"] for a in listed] == [appointment["id"]]
    assert (
        client.get(f"/api/patients/{OTHER_PATIENT}/appointments", headers=auth(issuer)).json()["items"] == []
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end": "2026-12-01T09:00:00+01:00"}, "end"),  # before start
        ({"end": VALID["start"]}, "end"),  # empty
        ({"end": "2027-02-01T09:00:00+01:00"}, "end"),  # more than a month
        ({"start": "2026-12-01T09:30:00"}, "start"),  # no offset
        ({"start": "le 1er décembre"}, "start"),
        ({"start": "0001-01-01T00:00:01+00:12"}, "start"),  # before year 1 in UTC (was a 500)
        ({"start": None}, "start"),
        ({"title": "   "}, "title"),
        ({"type": "rdv-inconnu"}, "type"),
        ({"type": "rdv-sans-patient"}, "type"),  # needs no patient: not on a patient's path
        ({"participants": [{"kind": "robot", "id": "r2"}]}, "kind"),
        ({"participants": [{"kind": "person", "id": " "}]}, "participants[0].id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer, change: dict[str, Any], field: str
):
    client, db = service
    response = schedule(client, auth(issuer), **change)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in problem["detail"] or problem.get("field") == field
    assert counts(db) == (0, 0)


def test_changing_an_appointment_emits_appointment_changed_with_the_changed_fields(
    service: Any, issuer: TestIssuer
):
    client, db = service
    created = schedule(client, auth(issuer)).json()
    url = f"/api/patients/{PATIENT}/appointments/{created['id']}"
    response = client.patch(
        url,
        json={"start": "2026-12-02T14:00:00+01:00", "end": "2026-12-02T15:00:00+01:00", "title": "Bilan"},
        headers=auth(issuer),
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert client.get(url, headers=auth(issuer)).json()["title"] == "Bilan"

    _, changed = outbox(db)
    assert changed["type"] == "AppointmentChanged"
    assert changed["data"]["changed"] == ["title", "start", "end"]
    assert changed["data"]["aggregate_version"] == 2
    assert "Bilan" not in str(changed)

    # The end must stay after the start once merged with what is stored; nothing changes otherwise.
    refused = client.patch(url, json={"end": "2026-12-02T13:00:00+01:00"}, headers=auth(issuer))
    assert refused.status_code == 422
    assert refused.json()["field"] == "end"
    participants = [{"kind": "person", "id": "gp-3"}]
    assert client.patch(url, json={"participants": participants}, headers=auth(issuer)).status_code == 200
    assert client.get(url, headers=auth(issuer)).json()["participants"] == participants
    assert [e["type"] for e in outbox(db)] == [
        "AppointmentScheduled",
        "AppointmentChanged",
        "AppointmentChanged",
    ]
    # Through another patient's path, the appointment does not exist.
    other = f"/api/patients/{OTHER_PATIENT}/appointments/{created['id']}"
    assert client.patch(other, json={"title": "x"}, headers=auth(issuer)).status_code == 404


def test_cancelling_emits_appointment_cancelled_and_removes_it_from_calendars(
    service: Any, issuer: TestIssuer
):
    client, db = service
    created = schedule(client, auth(issuer)).json()
    url = f"/api/patients/{PATIENT}/appointments/{created['id']}"
    assert client.delete(url, headers=auth(issuer)).status_code == 204
    assert client.delete(url, headers=auth(issuer)).status_code == 404
    assert client.get(f"/api/patients/{PATIENT}/appointments", headers=auth(issuer)).json()["items"] == []
    cancelled = outbox(db)[-1]
    assert cancelled["type"] == "AppointmentCancelled"
    assert cancelled["data"]["participants"] == VALID["participants"]


def test_my_calendar_shows_mine_and_my_structure_s_in_the_window(service: Any, issuer: TestIssuer):
    client, _ = service
    nurse = schedule(client, auth(issuer), participants=[{"kind": "person", "id": "nurse-7"}]).json()
    dac = schedule(
        client,
        auth(issuer),
        patient=OTHER_PATIENT,
        participants=[{"kind": "structure", "id": "dac-1"}],
        start="2026-12-03T09:00:00+01:00",
        end="2026-12-03T10:00:00+01:00",
    ).json()
    schedule(client, auth(issuer), participants=[{"kind": "person", "id": "someone-else"}])

    def calendar(headers: dict[str, str], query: str = "") -> list[str]:
        response = client.get(f"/api/appointments{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert calendar(auth(issuer, "nurse-7")) == [nurse["id"]]
    assert calendar(as_structure(issuer, "nurse-7")) == [nurse["id"], dac["id"]]
    window = "?from=2026-12-02T00:00:00%2B01:00&to=2026-12-04T00:00:00%2B01:00"
    assert calendar(as_structure(issuer, "nurse-7"), window) == [dac["id"]]
    bad = client.get(
        "/api/appointments?from=2026-12-04T00:00:00Z&to=2026-12-02T00:00:00Z", headers=auth(issuer)
    )
    assert bad.status_code == 422 and bad.json()["field"] == "to"


def test_an_appointment_without_patient_is_managed_by_its_participants_only(service: Any, issuer: TestIssuer):
    client, db = service
    body = {**VALID, "type": "rdv-sans-patient", "title": "Réunion d'équipe", "participants": []}
    response = client.post("/api/appointments", json=body, headers=as_structure(issuer))
    assert response.status_code == 201, response.text
    meeting = response.json()
    assert meeting["patient_id"] is None
    assert meeting["participants"] == [{"kind": "structure", "id": "dac-1"}]  # the creator's structure
    assert outbox(db)[0]["subject"] == meeting["id"]

    url = f"/api/appointments/{meeting['id']}"
    outsider = auth(issuer, "p9", structures=["ssiad-2"])
    assert client.get(url, headers=outsider).status_code == 404
    assert client.patch(url, json={"place": None}, headers=outsider).status_code == 404
    colleague = auth(issuer, "person-2")  # a member of dac-1
    assert client.patch(url, json={"place": None}, headers=colleague).json()["place"] is None
    assert client.delete(url, headers=colleague).status_code == 204
    # A patient's appointment is never reached without its patient's path.
    patient_one = schedule(client, auth(issuer)).json()
    assert client.get(f"/api/appointments/{patient_one['id']}", headers=auth(issuer)).status_code == 404
    adult = client.post("/api/appointments", json={**body, "type": "rdv-adulte"}, headers=auth(issuer))
    assert adult.status_code == 422 and adult.json()["field"] == "type"


def test_my_calendar_exports_as_icalendar_without_titles_or_places(service: Any, issuer: TestIssuer):
    client, _ = service
    created = schedule(client, auth(issuer)).json()
    response = client.get("/api/calendars/me.ics", headers=auth(issuer, "nurse-7"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    (event,) = Calendar.from_ical(response.content).walk("VEVENT")
    assert str(event["uid"]) == f"{created['id']}@coordo"
    assert str(event["summary"]) == "RDV personne âgée"
    assert event.decoded("dtstart").isoformat() == "2026-12-01T08:30:00+00:00"
    assert b"chute" not in response.content and b"Lilas" not in response.content


def test_no_token_is_refused(service: Any, issuer: TestIssuer):
    client, db = service
    assert client.get("/api/appointments").status_code == 401
    assert client.post(f"/api/patients/{PATIENT}/appointments", json=VALID).status_code == 401
    assert counts(db) == (0, 0)
