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


@pytest.fixture(params=["sqlite"])
def sqlite_service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    """Behaviour that does not depend on the database engine: SQLite only (CI budget)."""
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
    assert task["recipients"] == [{"kind": "person", "id": "person-1", "orphaned": False}]
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
    # The creator is one of the recipients by default (the booklet's "oui").
    assert [(a["assignee_kind"], a["assignee_id"]) for a in assigned] == [
        ("person", "person-1"),
        ("person", "person-2"),
        ("structure", "saad-7"),
    ]
    # ... unless unticked.
    response = create(client, issuer, patient_id, recipients=recipients, creator_is_recipient=False)
    assert [r["id"] for r in response.json()["recipients"]] == ["person-2", "saad-7"]
    response = create(client, issuer, patient_id, creator_is_recipient=False)
    assert response.json()["recipients"] == [{"kind": "person", "id": "person-1", "orphaned": False}]


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
    assert task["recipients"] == [{"kind": "structure", "id": "dac-1", "orphaned": False}]
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
    assert [(h["field"], h["from"], h["to"]) for h in task["history"]] == [
        ("status", None, "a_traiter"),
        ("status", "a_traiter", "en_cours"),
        ("status", "en_cours", "traitee"),
        ("status", "traitee", "annulee"),
        ("status", "annulee", "a_traiter"),
    ]
    history = client.get(f"/api/tasks/{task_id}/history", headers=auth(issuer)).json()["items"]
    assert history == task["history"]
    assert {h["changed_by"] for h in history} == {"person-1"}
    assert [h["to_status"] for h in history] == ["a_traiter", "en_cours", "traitee", "annulee", "a_traiter"]


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
    alone = {"creator_is_recipient": False}
    dac = [{"kind": "structure", "id": "dac-1"}]
    for_dac = create(client, issuer, patient_id, recipients=dac, **alone).json()
    for_other = create(
        client, issuer, patient_id, recipients=[{"kind": "person", "id": "person-2"}], **alone
    ).json()
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


# -- linked patients, types, creation fields ------------------------------------------------


def link_event(kind: str, patient_id: str, other: str, link_id: str) -> dict[str, Any]:
    data = {"link_id": link_id, "patient_id": patient_id, "linked_patient_id": other}
    return make_envelope(event_type=kind, producer="dossier", subject=patient_id, actor="person-1", data=data)


def test_a_task_may_concern_linked_patients_only_and_shows_on_their_files(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db = sqlite_service
    mother, daughter, stranger = patient_created(db), patient_created(db), patient_created(db)
    link_id = str(uuid.uuid4())
    assert consumer(db).handle(link_event("PatientsLinked", daughter, mother, link_id), QUEUE_DOSSIER)

    response = create(client, issuer, mother, other_patient_ids=[stranger])
    assert response.status_code == 422
    assert response.json()["field"] == "other_patient_ids" and stranger in response.json()["detail"]
    assert task_count(db) == 0

    task = create(client, issuer, mother, other_patient_ids=[daughter], zone="VO-LITTORAL").json()
    assert task["other_patient_ids"] == [daughter] and task["zone"] == "VO-LITTORAL"
    on_daughter = client.get(f"/api/patients/{daughter}/tasks", headers=auth(issuer)).json()
    assert [t["id"] for t in on_daughter["items"]] == [task["id"]] and on_daughter["total"] == 1

    # Once unlinked, the daughter can no longer be added to a new task.
    assert consumer(db).handle(link_event("PatientsUnlinked", daughter, mother, link_id), QUEUE_DOSSIER)
    assert create(client, issuer, mother, other_patient_ids=[daughter]).status_code == 422


def test_creation_takes_status_form_documents_and_zone(sqlite_service: Any, issuer: TestIssuer):
    client, db = sqlite_service
    patient_id = patient_created(db)
    form_id, doc_1, doc_2 = (str(uuid.uuid4()) for _ in range(3))
    response = create(
        client, issuer, patient_id, status="en_cours", form_id=form_id, document_ids=[doc_1, doc_2, doc_1]
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert (task["status"], task["next_status"], task["form_id"]) == ("en_cours", "traitee", form_id)
    assert task["document_ids"] == [doc_1, doc_2]
    assert events(db)[0]["data"]["status"] == "en_cours"
    assert create(client, issuer, patient_id, status="annulee").status_code == 400


def test_admins_edit_the_list_of_task_types(sqlite_service: Any, issuer: TestIssuer):
    client, db = sqlite_service
    listed = client.get("/api/task-types", headers=auth(issuer)).json()["items"]
    assert [t["label"] for t in listed] == [
        "Appeler famille/entourage",
        "Appeler patient/usager",
        "Bilan du PPCS",
        "Autre",
    ]
    new_type = {"code": "passage_ide", "label": "Passage IDE"}
    assert client.post("/api/task-types", json=new_type, headers=auth(issuer)).status_code == 403
    admin = auth(issuer, "admin-1", roles=["admin"])
    created = client.post("/api/task-types", json=new_type, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {"code": "passage_ide", "label": "Passage IDE", "active": True, "position": 5}
    assert client.post("/api/task-types", json=new_type, headers=admin).status_code == 409

    patient_id = patient_created(db)
    url = f"/api/patients/{patient_id}/tasks"
    task = client.post(url, json={"type": "passage_ide"}, headers=auth(issuer)).json()
    assert (task["type"], task["type_label"], task["label"]) == ("passage_ide", "Passage IDE", "Passage IDE")
    assert events(db)[0]["data"]["type"] == "passage_ide"

    # Withdrawn: refused for new tasks, still shown on the old one.
    withdrawn = client.patch("/api/task-types/passage_ide", json={"active": False}, headers=admin)
    assert withdrawn.status_code == 200 and withdrawn.json()["active"] is False
    response = create(client, issuer, patient_id, type="passage_ide")
    assert response.status_code == 422 and response.json()["field"] == "type"
    assert client.get(f"/api/tasks/{task['id']}", headers=auth(issuer)).json()["type_label"] == "Passage IDE"
    codes = [t["code"] for t in client.get("/api/task-types", headers=auth(issuer)).json()["items"]]
    assert "passage_ide" not in codes
    everything = client.get("/api/task-types?include_inactive=true", headers=auth(issuer)).json()["items"]
    assert "passage_ide" in [t["code"] for t in everything]
    assert client.patch("/api/task-types/nope", json={"active": False}, headers=admin).status_code == 404


# -- status cycle as a table through the API, edits and history -----------------------------


def test_every_status_pair_through_the_api(sqlite_service: Any, issuer: TestIssuer):
    """From each of the 4 statuses, each of the 4 targets: only the next one is accepted."""
    client, db = sqlite_service
    patient_id = patient_created(db)
    cycle = ["a_traiter", "en_cours", "traitee", "annulee"]
    for index, current in enumerate(cycle):
        task_id = create(client, issuer, patient_id).json()["id"]
        for step in cycle[1 : index + 1]:
            client.post(f"/api/tasks/{task_id}/status", json={"status": step}, headers=auth(issuer))
        for target in cycle:
            if target == cycle[(index + 1) % 4]:
                continue
            response = client.post(
                f"/api/tasks/{task_id}/status", json={"status": target}, headers=auth(issuer)
            )
            assert response.status_code == 409, (current, target)
            assert response.json()["current_status"] == current
        allowed = cycle[(index + 1) % 4]
        response = client.post(f"/api/tasks/{task_id}/status", json={"status": allowed}, headers=auth(issuer))
        assert response.status_code == 200 and response.json()["status"] == allowed


def test_a_traitee_task_refuses_edits_until_moved_back_and_every_edit_is_in_the_history(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db = sqlite_service
    patient_id = patient_created(db)
    grant(db, patient_id, "person-2")
    task_id = create(client, issuer, patient_id, due_date="2026-12-15").json()["id"]
    url = f"/api/tasks/{task_id}"
    edit = {
        "level": "important",
        "due_date": "2026-12-20",
        "recipients": [{"kind": "person", "id": "person-2"}],
    }
    response = client.patch(url, json=edit, headers=auth(issuer))
    assert response.status_code == 200, response.text
    assert response.json()["recipients"] == [{"kind": "person", "id": "person-2", "orphaned": False}]
    assert response.json()["version"] == 2
    assigned = [e["data"] for e in events(db) if e["type"] == "TaskAssigned"]
    assert [a["assignee_id"] for a in assigned] == ["person-1", "person-2"]

    for target in ("en_cours", "traitee"):
        client.post(f"{url}/status", json={"status": target}, headers=auth(issuer))
    refused = client.patch(url, json={"comment": "Autre chose"}, headers=auth(issuer))
    assert refused.status_code == 409 and refused.json()["current_status"] == "traitee"
    assert client.get(url, headers=auth(issuer)).json()["comment"] == COMMENT

    for target in ("annulee", "a_traiter"):
        client.post(f"{url}/status", json={"status": target}, headers=auth(issuer))
    assert client.patch(url, json={"comment": "Autre chose"}, headers=auth(issuer)).status_code == 200

    history = client.get(f"{url}/history", headers=auth(issuer)).json()["items"]
    assert [(h["field"], h["from"], h["to"]) for h in history] == [
        ("status", None, "a_traiter"),
        ("level", "urgent", "important"),
        ("due_date", "2026-12-15", "2026-12-20"),
        ("recipients", "person:person-1", "person:person-2"),
        ("status", "a_traiter", "en_cours"),
        ("status", "en_cours", "traitee"),
        ("status", "traitee", "annulee"),
        ("status", "annulee", "a_traiter"),
        ("comment", COMMENT, "Autre chose"),
    ]
    # A label that was only the type's name follows a change of type; a written one stays.
    other = create(client, issuer, patient_id, label="").json()
    assert other["label"] == "Appeler famille/entourage"
    changed = client.patch(
        f"/api/tasks/{other['id']}", json={"type": "bilan_ppcs"}, headers=auth(issuer)
    ).json()
    assert (changed["type"], changed["label"]) == ("bilan_ppcs", "Bilan du PPCS")
    changed = client.patch(url, json={"type": "bilan_ppcs"}, headers=auth(issuer)).json()
    assert (changed["type"], changed["label"]) == ("bilan_ppcs", LABEL)
    history.append(client.get(f"{url}/history", headers=auth(issuer)).json()["items"][-1])
    assert (history[-1]["field"], history[-1]["to"]) == ("type", "bilan_ppcs")
    # Bad edits name the field and change nothing.
    bad = client.patch(url, json={"recipients": [{"kind": "person", "id": "person-9"}]}, headers=auth(issuer))
    assert bad.status_code == 422 and bad.json()["field"] == "recipients"
    assert client.patch(url, json={"level": "critique"}, headers=auth(issuer)).status_code == 400
    assert client.patch(url, json={"comment": "x"}, headers=auth(issuer, "person-9")).status_code == 403
    assert len(client.get(f"{url}/history", headers=auth(issuer)).json()["items"]) == len(history)


# -- dashboard: every filter, sort, pages, exports (SQLite and PostgreSQL) --------------------


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


def test_the_dashboard_filters_sorts_and_pages(service: Any, issuer: TestIssuer):
    client, db = service
    p1, p2, p3 = patient_created(db), patient_created(db), patient_created(db)
    assert consumer(db).handle(link_event("PatientsLinked", p1, p3, str(uuid.uuid4())), QUEUE_DOSSIER)
    for patient_id in (p1, p2):
        grant(db, patient_id, "dac-1", "structure")
        grant(db, patient_id, "person-2")
    dac = [{"kind": "structure", "id": "dac-1"}]
    alone = {"creator_is_recipient": False}
    t1 = create(client, issuer, p1, due_date="2026-12-10", zone="Z1", form_id=str(uuid.uuid4())).json()["id"]
    t2 = create(
        client, issuer, p1, type="bilan_ppcs", level="information", due_date="2026-12-20",
        recipients=dac, document_ids=[str(uuid.uuid4())], **alone,
    ).json()["id"]  # fmt: skip
    both = [{"kind": "person", "id": "person-1"}, {"kind": "person", "id": "person-2"}]
    t3 = create(client, issuer, p2, type="autre", level="important", recipients=both).json()["id"]
    t4 = create(client, issuer, p2, status="traitee").json()["id"]
    t5 = create(client, issuer, p1, recipients=[{"kind": "person", "id": "person-2"}], **alone).json()["id"]
    t6 = create(
        client, issuer, p1, type="appeler_patient", level="information", due_date="2026-12-05",
        other_patient_ids=[p3],
    ).json()["id"]  # fmt: skip

    me, as_dac = auth(issuer), {**auth(issuer), "X-Act-As": "dac-1"}

    def get(query: str, headers: dict[str, str] = as_dac) -> list[str]:
        return ids(client.get(f"/api/tasks?{query}", headers=headers))

    # Default: open tasks for me (or my structure), soonest due first, undated last.
    first = client.get("/api/tasks", headers=me).json()
    assert [t["id"] for t in first["items"]] == [t6, t1, t3]
    assert first["total"] == 3 and first["status"] == ["a_traiter", "en_cours"]
    assert get("") == [t6, t1, t2, t3]
    assert get("context=mine") == [t6, t1, t3]
    assert get("context=structure") == [t2]
    assert set(get("context=created")) == {t1, t2, t3, t5, t6}
    assert get("status=traitee", me) == [t4]
    assert get("type=bilan_ppcs") == [t2]
    assert get("type=appeler_famille&type=appeler_patient") == [t6, t1]
    assert get(f"patient_id={p3}") == [t6]  # as a linked patient
    assert get(f"patient_id={p2}&patient_id={p3}") == [t6, t3]
    assert get("recipient=person:person-2") == [t3]  # t5 is not assigned to me
    assert get("level=urgent") == [t1]
    assert get("due_from=2026-12-06&due_to=2026-12-20") == [t1, t2]
    assert get("zone=Z1") == [t1]
    assert get("action=form") == [t1]
    assert get("action=documents") == [t2]
    assert get("sort=level") == [t1, t3, t6, t2]
    assert get("sort=due_date&order=desc") == [t2, t1, t6, t3]
    assert get("sort=type&order=desc") == [t2, t3, t6, t1]
    page = client.get("/api/tasks?limit=2&offset=1", headers=as_dac).json()
    assert [t["id"] for t in page["items"]] == [t1, t2]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)

    for query, field in (
        ("context=structure", "context"),
        ("due_from=2026-12-10&due_to=2026-12-01", "due_to"),
    ):
        response = client.get(f"/api/tasks?{query}", headers=me)
        assert response.status_code == 422 and response.json()["field"] == field
    assert client.get("/api/tasks?recipient=group:x", headers=me).status_code == 400
    assert client.get("/api/tasks?sort=label", headers=me).status_code == 400
    # The per-patient view: every status, the same filters.
    assert ids(client.get(f"/api/patients/{p2}/tasks", headers=me)) == [t4, t3]  # urgent first
    assert ids(client.get(f"/api/patients/{p2}/tasks?status=traitee", headers=me)) == [t4]


def test_the_dashboard_exports_as_csv_and_xlsx(sqlite_service: Any, issuer: TestIssuer):
    import csv
    import io

    from openpyxl import load_workbook

    client, db = sqlite_service
    patient_id = patient_created(db)
    create(client, issuer, patient_id, due_date="2026-12-10")
    create(client, issuer, patient_id, type="autre", label='=HYPERLINK("http://x")', level="information")
    done = create(client, issuer, patient_id, status="traitee").json()["id"]

    response = client.get("/api/task-export?format=csv", headers=auth(issuer))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
    assert rows[0][:4] == ["Niveau", "Type", "Libellé", "Patient"]
    assert [(r[0], r[2], r[10], r[11]) for r in rows[1:]] == [
        ("Urgent", LABEL, "2026-12-10", "À traiter"),
        ("Information", '\'=HYPERLINK("http://x")', "", "À traiter"),  # never a live formula
    ]
    assert done not in text

    response = client.get("/api/task-export?format=xlsx&status=traitee", headers=auth(issuer))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "Niveau" and len(values) == 2
    assert values[1][11] == "Traitée"
    assert client.get("/api/task-export?format=pdf", headers=auth(issuer)).status_code == 400


# -- orphaned tasks (HabilitationRevoked) ------------------------------------------------------


def user_registered(db: Any, person_id: str, structures: list[str]) -> None:
    data = {
        "person_id": person_id,
        "display_name": "Collègue",
        "email": None,
        "structures": structures,
        "profession": None,
        "medical": False,
        "roles": ["user"],
    }
    envelope = make_envelope(
        event_type="UserRegistered", producer="identity", subject=person_id, actor="admin", data=data
    )
    assert consumer(db).handle(envelope, "taches.identity.events") is True


def test_a_revoked_recipient_loses_its_tasks_to_the_structures_super_users(service: Any, issuer: TestIssuer):
    client, db = service
    dac, other_dac = str(uuid.uuid4()), str(uuid.uuid4())
    colleague, replacement = str(uuid.uuid4()), str(uuid.uuid4())
    patient_id = patient_created(db)
    for person in (colleague, replacement):
        grant(db, patient_id, person)
    user_registered(db, colleague, [dac])
    only_colleague = {"recipients": [{"kind": "person", "id": colleague}], "creator_is_recipient": False}
    alone = create(client, issuer, patient_id, **only_colleague).json()["id"]
    together = create(client, issuer, patient_id, recipients=[{"kind": "person", "id": colleague}]).json()[
        "id"
    ]
    as_colleague = auth(issuer, colleague, structures=[dac])
    assert set(ids(client.get("/api/tasks", headers=as_colleague))) == {alone, together}

    revoked = habilitation_event("HabilitationRevoked", patient_id, colleague)
    worker = consumer(db)
    assert worker.handle(revoked, QUEUE_CERCLE) is True
    assert worker.handle(revoked, QUEUE_CERCLE) is False  # the same envelope again: a no-op
    super_user = auth(issuer, "chef-1", structures=[dac], roles=["user", "super_user"])
    orphans = client.get("/api/orphaned-tasks", headers=super_user).json()
    first_seen = {t["id"]: t["updated_at"] for t in orphans["items"]}
    # A second revocation (a new envelope for the same member) changes nothing either.
    assert worker.handle(habilitation_event("HabilitationRevoked", patient_id, colleague), QUEUE_CERCLE)
    orphans = client.get("/api/orphaned-tasks", headers=super_user).json()
    assert {t["id"]: t["updated_at"] for t in orphans["items"]} == first_seen

    assert ids(client.get("/api/tasks", headers=as_colleague)) == []
    assert ids(client.get("/api/tasks", headers=auth(issuer))) == [together]  # person-1 keeps its own
    assert set(first_seen) == {alone, together} and orphans["total"] == 2
    task = next(t for t in orphans["items"] if t["id"] == together)
    assert {(r["id"], r["orphaned"]) for r in task["recipients"]} == {(colleague, True), ("person-1", False)}
    # Only super users, and only their structure's orphans.
    assert client.get("/api/orphaned-tasks", headers=auth(issuer)).status_code == 403
    elsewhere = auth(issuer, "chef-2", structures=[other_dac], roles=["super_user"])
    assert ids(client.get("/api/orphaned-tasks", headers=elsewhere)) == []

    url = f"/api/tasks/{alone}/reassign"
    body = {"recipient": {"kind": "person", "id": colleague}, "to": [{"kind": "person", "id": "person-9"}]}
    response = client.post(url, json=body, headers=super_user)
    assert response.status_code == 422 and response.json()["field"] == "recipients"
    body["to"] = [{"kind": "person", "id": replacement}]
    assert client.post(url, json=body, headers=elsewhere).status_code == 404
    assert client.post(url, json=body, headers=auth(issuer)).status_code == 403
    response = client.post(url, json=body, headers=super_user)
    assert response.status_code == 200, response.text
    assert response.json()["recipients"] == [{"kind": "person", "id": replacement, "orphaned": False}]
    assert client.post(url, json=body, headers=super_user).status_code == 404  # nothing left to reassign
    assert ids(client.get("/api/tasks", headers=auth(issuer, replacement))) == [alone]
    last = events(db)[-1]
    assert (last["type"], last["data"]["assignee_id"], last["data"]["assigned_by"]) == (
        "TaskAssigned",
        replacement,
        "chef-1",
    )
    assert ids(client.get("/api/orphaned-tasks", headers=super_user)) == [together]
    history = client.get(f"/api/tasks/{alone}/history", headers=auth(issuer)).json()["items"]
    assert (history[-1]["field"], history[-1]["to"], history[-1]["changed_by"]) == (
        "recipients",
        f"person:{replacement}",
        "chef-1",
    )

    # Granted again: the assignment nobody reassigned comes back to the colleague.
    grant(db, patient_id, colleague)
    assert ids(client.get("/api/tasks", headers=as_colleague)) == [together]
    assert ids(client.get("/api/orphaned-tasks", headers=super_user)) == []


# -- TaskDueSoon (the worker's scheduler) ------------------------------------------------------


def test_due_soon_is_emitted_once_per_task_and_due_date_even_across_restarts(
    service: Any, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
):
    from datetime import date

    client, db = service
    patient_id = patient_created(db)
    soon = create(client, issuer, patient_id, due_date="2026-12-02").json()["id"]
    later = create(client, issuer, patient_id, due_date="2026-12-05").json()["id"]
    create(client, issuer, patient_id, due_date="2026-12-02", status="traitee")
    create(client, issuer, patient_id)  # no due date

    today = [date(2026, 12, 1)]
    (scheduler,) = SERVICE.create_worker(db=db).background
    scheduler.clock = lambda: today[0]
    assert scheduler.lead_days == 1
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0
    (restarted,) = SERVICE.create_worker(db=db).background  # a new process: state is in the database
    restarted.clock = scheduler.clock
    assert restarted.tick() == 0

    due = [e for e in events(db) if e["type"] == "TaskDueSoon"]
    assert len(due) == 1
    validate(due[0])
    assert due[0]["data"] == {
        "task_id": soon,
        "patient_id": patient_id,
        "due_date": "2026-12-02",
        "recipients": [{"kind": "person", "id": "person-1"}],
    }
    # A new due date is announced again; time moving on announces the later task.
    client.patch(f"/api/tasks/{soon}", json={"due_date": "2026-12-03"}, headers=auth(issuer))
    today[0] = date(2026, 12, 2)
    assert scheduler.tick() == 1
    today[0] = date(2026, 12, 4)
    assert scheduler.tick() == 1
    assert [
        (e["data"]["task_id"], e["data"]["due_date"]) for e in events(db) if e["type"] == "TaskDueSoon"
    ] == [
        (soon, "2026-12-02"),
        (soon, "2026-12-03"),
        (later, "2026-12-05"),
    ]
    # The lead time is a setting.
    monkeypatch.setenv("COORDO_TACHES_DUE_SOON_DAYS", "3")
    assert SERVICE.create_worker(db=db).background[0].lead_days == 3


def test_the_scheduler_runs_as_a_worker_thread_until_stopped(service: Any, issuer: TestIssuer):
    import threading
    from datetime import date

    client, db = service
    patient_id = patient_created(db)
    create(client, issuer, patient_id, due_date="2026-12-02")
    (scheduler,) = SERVICE.create_worker(db=db).background
    scheduler.clock, scheduler.interval = (lambda: date(2026, 12, 1)), 0.05
    stop = threading.Event()
    thread = threading.Thread(target=scheduler, args=(stop,))
    thread.start()
    try:
        for _ in range(100):
            if any(e["type"] == "TaskDueSoon" for e in events(db)):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert [e["type"] for e in events(db)].count("TaskDueSoon") == 1


def test_an_offset_beyond_any_page_is_refused_as_bad_input_not_a_server_error(
    sqlite_service: Any, issuer: TestIssuer
):
    # Found by tests/contract/test_fuzz.py: SQLite cannot bind an integer past 64 bits (500).
    client, _ = sqlite_service
    response = client.get("/api/tasks?offset=610617724534366633197568", headers=auth(issuer))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/api/tasks?offset=2147483647", headers=auth(issuer)).status_code == 200


def test_a_task_type_position_out_of_range_is_refused_and_changes_nothing(
    sqlite_service: Any, issuer: TestIssuer
):
    # Found by tests/contract/test_fuzz.py: an unbounded position overflowed the column (500).
    client, _ = sqlite_service
    admin = auth(issuer, "admin-1", roles=["admin"])
    before = client.get("/api/task-types?include_inactive=true", headers=admin).json()
    huge = {"code": "passage_ide", "label": "Passage IDE", "position": 99999999999999999999}
    response = client.post("/api/task-types", json=huge, headers=admin)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    response = client.patch("/api/task-types/autre", json={"position": 2147483648}, headers=admin)
    assert response.status_code == 400, response.text
    assert client.get("/api/task-types?include_inactive=true", headers=admin).json() == before
