"""Issue 3 end to end, embedded mode, through the gateway with real tokens: create a file,
meet it as a duplicate from another user who is offered break-the-glass, see it in one
overview call fed by other services' events (a task made in taches), find it in the file
list with filters, export the list and the patient (FHIR R4 Bundle)."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.e2e.scenario import User, eventually

PATIENT = {
    "birth_name": "Quéméneur",
    "first_name": "Maëlle",
    "birth_date": "1944-04-21",
    "sex": "F",
    "birth_place": "29232",
    "consent": {"attested": True, "given_by": "patient"},
}


def test_create_then_overview_then_list_with_filters_then_export(embedded_suite: Any) -> None:
    from fhir.resources.R4B.bundle import Bundle

    coordinator = User(embedded_suite.base_url, embedded_suite.issuer, "coordinateur")
    doctor = User(embedded_suite.base_url, embedded_suite.issuer, "medecin")
    created = coordinator.http.post("/api/patients", json=PATIENT)
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    path = f"/api/patients/{patient_id}"

    # The overview opens once cercle's auto-habilitation reached the gateway's decision.
    overview = eventually(
        lambda: (r := coordinator.http.get(f"{path}/overview")).status_code == 200 and r.json()
    )
    assert overview["identity"]["birth_name"] == "QUÉMÉNEUR" and overview["tasks"]["open"] == 0
    assert doctor.http.get(f"{path}/overview").status_code == 403

    # The doctor types the same person with a typo and the day's digits swapped (12/04 for
    # 21/04): identity vigilance proposes the file, shows it is not theirs and offers
    # break-the-glass (PAT-1, PAT-4, CER-8).
    typed = {k: v for k, v in PATIENT.items() if k != "consent"}
    typed.update(birth_name="Quemeneure", birth_date="1944-04-12")
    proposals = doctor.http.post("/api/patients/identity-search", json=typed)
    assert proposals.status_code == 200, proposals.text
    (candidate,) = [c for c in proposals.json()["candidates"] if c["patient_id"] == patient_id]
    assert (candidate["habilitated"], candidate["action"]) == (False, "break_the_glass")
    duplicate = doctor.http.post("/api/patients", json={**PATIENT, "birth_name": "Quemeneur"})
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["field"] == "confirm_despite_candidates"

    memo = coordinator.http.post(f"{path}/memos", json={"title": "Accès", "content": "Code 1234B"})
    assert memo.status_code == 201, memo.text
    task = {
        "type": "appeler_patient",
        "label": "Rappeler la fille",
        "level": "important",
        "recipients": [{"kind": "person", "id": coordinator.id}],
    }
    assert coordinator.http.post(f"{path}/tasks", json=task).status_code == 201

    # taches' TaskCreated reaches dossier's read model: the overview and the list show it.
    overview = eventually(
        lambda: (o := coordinator.http.get(f"{path}/overview").json())["tasks"]["open"] == 1 and o
    )
    assert [m["title"] for m in overview["memos"]] == ["Accès"]
    assert overview["care_circle"]["members"] >= 1

    listed = coordinator.http.get(
        "/api/file-list", params={"name": "quemen", "sex": "F", "open_tasks": "true"}
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [row["id"] for row in page["items"]] == [patient_id] and page["total"] == 1
    assert page["items"][0]["open_tasks"] == 1
    assert doctor.http.get("/api/file-list", params={"name": "quemen"}).json()["total"] == 0

    exported = coordinator.http.get("/api/file-list/export", params={"format": "csv", "name": "quemen"})
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[1][0] == "QUÉMÉNEUR"

    fhir = coordinator.http.get(f"{path}/export", params={"format": "fhir"})
    assert fhir.status_code == 200, fhir.text
    bundle = Bundle.model_validate(fhir.json())
    patient = bundle.entry[0].resource
    assert patient.id == patient_id and patient.name[0].family == "QUÉMÉNEUR"
    page_html = coordinator.http.get(f"{path}/export")
    assert page_html.status_code == 200 and "Accès" in page_html.text
