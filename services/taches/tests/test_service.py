"""The taches service on a real database (SQLite file and PostgreSQL), through its contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from chassis.events import make_envelope, validate
from taches.app import SERVICE
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

QUEUE_DOSSIER = "taches.dossier.events"
QUEUE_CERCLE = "taches.cercle.events"
LABEL = "Rappeler la fille de Mme Dupont au sujet de son diabète"
COMMENT = "Glycémie instable depuis lundi"


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


auth = bearer


def consumer(db: Any) -> Any:
    return SERVICE.create_worker(db=db).consumers[0]


def patient_created(db: Any, owner_id: str = "person-1", owner_kind: str = "person") -> str:
    patient_id = str(uuid.uuid4())
    envelope = make_envelope(
        event_type="PatientCreated",
        producer="dossier",
        subject=patient_id,
        actor="person-1",
        data={
            "patient_id": patient_id,
            "created_by": "person-1",
            "owner_kind": owner_kind,
            "owner_id": owner_id,
            "aggregate_version": 1,
        },
    )
    assert consumer(db).handle(envelope, QUEUE_DOSSIER) is True
    return patient_id


def habilitation_event(
    kind: str, patient_id: str, holder_id: str, holder_kind: str = "person"
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient_id": patient_id,
        "member_id": str(uuid.uuid4()),
        "holder_kind": holder_kind,
        "holder_id": holder_id,
    }
    if kind == "HabilitationGranted":
        data["basis"] = "member"
    return make_envelope(event_type=kind, producer="cercle", subject=patient_id, actor="person-1", data=data)


def grant(db: Any, patient_id: str, holder_id: str, holder_kind: str = "person") -> None:
    event = habilitation_event("HabilitationGranted", patient_id, holder_id, holder_kind)
    assert consumer(db).handle(event, QUEUE_CERCLE) is True


def revoke(db: Any, patient_id: str, holder_id: str, holder_kind: str = "person") -> None:
    event = habilitation_event("HabilitationRevoked", patient_id, holder_id, holder_kind)
    assert consumer(db).handle(event, QUEUE_CERCLE) is True


def events(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))


def task_count(db: Any) -> int:
    with db.session_factory() as s:
        return s.scalar(select(func.count()).select_from(db.metadata.tables["tasks"]))


def create(client: Any, issuer: TestIssuer, patient_id: str, sub: str = "person-1", **body: Any) -> Any:
    payload = {"type": "appeler_famille", "label": LABEL, "comment": COMMENT, "level": "urgent", **body}
    return client.post(f"/api/patients/{patient_id}/tasks", json=payload, headers=auth(issuer, sub))


def test_a_new_task_goes_to_its_creator_and_emits_created_and_assigned_without_clinical_text(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = patient_created(db)
    response = create(client, issuer, patient_id, due_date="2026-12-15")
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "a_traiter"
    assert task["next_status"] == "en_cours"
    assert task["recipients"] == [{"kind": "person", "id": "person-1"}]
    assert task["label"] == LABEL
    assert response.headers["location"] == f"/api/tasks/{task['id']}"

    created, assigned = events(db)
    for envelope in (created, assigned):
        validate(envelope)
        assert LABEL not in str(envelope) and COMMENT not in str(envelope)
    assert created["type"] == "TaskCreated"
    assert created["data"]["recipients"] == [{"kind": "person", "id": "person-1"}]
    assert assigned["type"] == "TaskAssigned"
    assert assigned["subject"] == patient_id
    assert assigned["data"]["assignee_id"] == "person-1"
    assert assigned["data"]["due_date"] == "2026-12-15"
    assert assigned["data"]["level"] == "urgent"


def test_one_task_assigned_event_per_habilitated_recipient(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db)
    grant(db, patient_id, "person-2")
    grant(db, patient_id, "saad-7", "structure")
    recipients = [
        {"kind": "person", "id": "person-2"},
        {"kind": "structure", "id": "saad-7"},
        {"kind": "person", "id": "person-2"},
    ]
    response = create(client, issuer, patient_id, recipients=recipients)
    assert response.status_code == 201, response.text
    assigned = [e["data"] for e in events(db) if e["type"] == "TaskAssigned"]
    assert [(a["assignee_kind"], a["assignee_id"]) for a in assigned] == [
        ("person", "person-2"),
        ("structure", "saad-7"),
    ]


def test_a_recipient_who_is_not_habilitated_is_refused_and_nothing_is_written(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = patient_created(db)
    grant(db, patient_id, "person-3")
    revoke(db, patient_id, "person-3")
    for who in ("person-3", "person-9"):
        response = create(client, issuer, patient_id, recipients=[{"kind": "person", "id": who}])
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == "recipients"
        assert who in response.json()["detail"]
    assert task_count(db) == 0
    assert events(db) == []


def test_acting_as_a_structure_makes_the_structure_the_default_recipient(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db, owner_id="dac-1", owner_kind="structure")
    headers = {**auth(issuer), "X-Act-As": "dac-1"}
    response = client.post(f"/api/patients/{patient_id}/tasks", json={"type": "bilan_ppcs"}, headers=headers)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["recipients"] == [{"kind": "structure", "id": "dac-1"}]
    assert task["label"] == "Bilan du PPCS"
    assert task["level"] == "information"
    # Not acting as the structure, person-1 is not habilitated on this file itself.
    response = create(client, issuer, patient_id)
    assert response.status_code == 422
    assert response.json()["field"] == "recipients"


def test_a_task_on_an_unknown_patient_is_not_found(service: Any, issuer: TestIssuer):
    client, db = service
    response = create(client, issuer, str(uuid.uuid4()))
    assert response.status_code == 404
    assert task_count(db) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "appeler_voisin"}, "type"),
        ({"level": "critique"}, "level"),
        ({"type": "autre", "label": " "}, "label"),
        ({"due_date": "15/12/2026"}, "due_date"),
        ({"recipients": [{"kind": "group", "id": "g"}]}, "recipients"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer, change: dict[str, Any], field: str
):
    client, db = service
    patient_id = patient_created(db)
    response = create(client, issuer, patient_id, **change)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in problem["detail"] or problem.get("field") == field
    assert task_count(db) == 0


def test_no_token_or_a_bad_token_is_refused(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db)
    assert client.post(f"/api/patients/{patient_id}/tasks", json={"type": "autre"}).status_code == 401
    assert client.get("/api/tasks", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_status_cycle_through_the_api_with_its_events_and_history(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db)
    task_id = create(client, issuer, patient_id).json()["id"]
    url = f"/api/tasks/{task_id}/status"
    for target in ("en_cours", "traitee", "annulee", "a_traiter"):
        response = client.post(url, json={"status": target}, headers=auth(issuer))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert response.json()["read_only"] is (target == "traitee")

    # A second click with the same target (or a jump) does not move it again.
    response = client.post(url, json={"status": "a_traiter"}, headers=auth(issuer))
    assert response.status_code == 409
    assert response.json()["allowed_status"] == "en_cours"
    assert client.post(url, json={"status": "traitee"}, headers=auth(issuer)).status_code == 409
    assert client.post(url, json={"status": "fini"}, headers=auth(issuer)).status_code == 400

    changes = [e for e in events(db) if e["type"] == "TaskStatusChanged"]
    assert [(c["data"]["from_status"], c["data"]["to_status"]) for c in changes] == [
        ("a_traiter", "en_cours"),
        ("en_cours", "traitee"),
        ("traitee", "annulee"),
        ("annulee", "a_traiter"),
    ]
    for change in changes:
        validate(change)
    assert changes[-1]["data"]["aggregate_version"] == 5

    task = client.get(f"/api/tasks/{task_id}", headers=auth(issuer)).json()
    assert [h["to_status"] for h in task["history"]] == [
        "a_traiter",
        "en_cours",
        "traitee",
        "annulee",
        "a_traiter",
    ]


def test_only_habilitated_callers_may_change_or_see_a_task(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db)
    grant(db, patient_id, "person-2")
    task_id = create(client, issuer, patient_id).json()["id"]
    url = f"/api/tasks/{task_id}/status"

    outsider = auth(issuer, "person-9")
    assert client.post(url, json={"status": "en_cours"}, headers=outsider).status_code == 403
    assert client.get(f"/api/tasks/{task_id}", headers=outsider).status_code == 403

    # Another habilitated member may move it on, until cercle revokes them.
    colleague = auth(issuer, "person-2")
    assert client.post(url, json={"status": "en_cours"}, headers=colleague).status_code == 200
    revoke(db, patient_id, "person-2")
    assert client.post(url, json={"status": "traitee"}, headers=colleague).status_code == 403

    missing = f"/api/tasks/{uuid.uuid4()}/status"
    assert client.post(missing, json={"status": "en_cours"}, headers=auth(issuer)).status_code == 404
    assert [e["data"]["to_status"] for e in events(db) if e["type"] == "TaskStatusChanged"] == ["en_cours"]


def test_the_dashboard_shows_my_and_my_structures_open_tasks(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = patient_created(db)
    grant(db, patient_id, "dac-1", "structure")
    grant(db, patient_id, "person-2")
    mine = create(client, issuer, patient_id, level="information").json()
    for_dac = create(client, issuer, patient_id, recipients=[{"kind": "structure", "id": "dac-1"}]).json()
    for_other = create(client, issuer, patient_id, recipients=[{"kind": "person", "id": "person-2"}]).json()
    done = create(client, issuer, patient_id, level="important").json()
    for target in ("en_cours", "traitee"):
        client.post(f"/api/tasks/{done['id']}/status", json={"status": target}, headers=auth(issuer))

    def dashboard(headers: dict[str, str], query: str = "") -> list[str]:
        response = client.get(f"/api/tasks{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert dashboard(auth(issuer)) == [mine["id"]]
    as_dac = {**auth(issuer), "X-Act-As": "dac-1"}
    assert set(dashboard(as_dac)) == {mine["id"], for_dac["id"]}
    assert dashboard(auth(issuer), "?status=traitee") == [done["id"]]
    assert set(dashboard(auth(issuer), "?status=traitee&status=a_traiter")) == {mine["id"], done["id"]}
    assert dashboard(as_dac, "?level=urgent") == [for_dac["id"]]
    assert dashboard(auth(issuer, "person-2")) == [for_other["id"]]

    # The per-patient view lists every task of the file.
    listed = client.get(f"/api/patients/{patient_id}/tasks", headers=auth(issuer)).json()["items"]
    assert len(listed) == 4
    # Once person-2 loses the habilitation, the file's tasks leave their dashboard.
    revoke(db, patient_id, "person-2")
    assert dashboard(auth(issuer, "person-2")) == []


def test_the_habilitation_read_model_tolerates_duplicates_and_out_of_order_delivery(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = patient_created(db)
    granted = habilitation_event("HabilitationGranted", patient_id, "person-2")
    revoked = habilitation_event("HabilitationRevoked", patient_id, "person-2")  # happened later
    worker = consumer(db)
    assert worker.handle(revoked, QUEUE_CERCLE) is True
    assert worker.handle(granted, QUEUE_CERCLE) is True  # older: must not re-grant
    assert worker.handle(granted, QUEUE_CERCLE) is False  # duplicate delivery: no effect
    response = create(client, issuer, patient_id, recipients=[{"kind": "person", "id": "person-2"}])
    assert response.status_code == 422

    # A grant on a file taches never heard of makes it known.
    other = str(uuid.uuid4())
    grant(db, other, "person-1")
    assert create(client, issuer, other).status_code == 201
