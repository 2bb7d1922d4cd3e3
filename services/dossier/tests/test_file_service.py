"""The patient file and its panels through the dossier contract (PAT-7..PAT-18), on SQLite.

Other services' events are delivered to the real consumer (`handle`, twice: the second is a
no-op), so the overview, feed and timeline read only what dossier keeps locally.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from chassis.events import make_envelope, validate
from dossier.app import SERVICE
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

TODAY = date.today()


def person(n: int) -> dict[str, Any]:
    """Distinct identities, so that identity vigilance never asks for a confirmation."""
    names = ["Abadie", "Bertrand", "Chevalier", "Delacroix", "Esnault", "Fournier", "Guillot", "Hamon"]
    firsts = ["Alice", "Bruno", "Claire", "Denis", "Emma", "Fabien", "Gaelle", "Hugo"]
    return {
        "birth_name": names[n],
        "first_name": firsts[n],
        "birth_date": f"19{40 + n}-0{1 + n % 9}-1{n}",
        "sex": "F" if n % 2 == 0 else "M",
        "birth_place": "75056",
        "consent": {"attested": True, "given_by": "patient"},
    }


@pytest.fixture(params=["sqlite"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


def create(client: Any, issuer: TestIssuer, n: int, sub: str = "person-1") -> str:
    response = client.post("/api/patients", json=person(n), headers=bearer(issuer, sub))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deliver(
    db: Any,
    producer: str,
    kind: str,
    subject: str,
    data: dict[str, Any],
    actor: str = "person-7",
    at: datetime | None = None,
) -> None:
    """`at`: when the event happened, whenever it is delivered."""
    envelope = make_envelope(event_type=kind, producer=producer, subject=subject, actor=actor, data=data)
    if at is not None:
        envelope["occurred_at"] = at.isoformat()
    consumer = SERVICE.create_worker(db=db).consumers[0]
    queue = f"dossier.{producer}.events"
    assert consumer.handle(envelope, queue) is True
    assert consumer.handle(envelope, queue) is False  # duplicate delivery: no effect


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def task_created(
    patient_id: str, n: int, status: str = "a_traiter", due: date | None = None
) -> dict[str, Any]:
    return {
        "task_id": uid(n),
        "patient_id": patient_id,
        "type": "appeler_patient",
        "level": "urgent",
        "status": status,
        "due_date": due.isoformat() if due else None,
        "created_by": "person-7",
        "created_by_structure": None,
        "recipients": [{"kind": "person", "id": "person-1"}],
        "aggregate_version": 1,
    }


def task_closed(patient_id: str, n: int) -> dict[str, Any]:
    return {
        "task_id": uid(n),
        "patient_id": patient_id,
        "type": "appeler_patient",
        "level": "urgent",
        "from_status": "a_traiter",
        "to_status": "traitee",
        "changed_by": "person-7",
        "created_by": "person-7",
        "recipients": [],
        "aggregate_version": 2,
    }


def appointment(patient_id: str, n: int, start: datetime) -> dict[str, Any]:
    return {
        "appointment_id": uid(n),
        "patient_id": patient_id,
        "type_code": "visite_domicile",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "participants": [{"kind": "person", "id": "person-1"}],
        "aggregate_version": 1,
    }


def member_added(patient_id: str, n: int, holder: str, roles: list[str]) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "member_id": uid(n),
        "holder_kind": "person",
        "holder_id": holder,
        "roles": roles,
        "habilitated": False,
        "auto_habilitation": False,
    }


def outbox(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))


def test_the_circle_keeps_each_members_newest_state_whatever_the_delivery_order(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    alice = create(client, issuer, 0)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    nurse = member_added(alice, 3, "person-7", ["intervenant"])
    granted = {key: nurse[key] for key in ("patient_id", "member_id", "holder_kind", "holder_id")}

    def circle() -> dict[str, Any]:
        response = client.get(f"/api/patients/{alice}/overview", headers=me)
        assert response.status_code == 200, response.text
        return dict(response.json()["care_circle"])

    # Granted, then added: the grant arrives first, the addition keeps it.
    deliver(
        db,
        "cercle",
        "HabilitationGranted",
        alice,
        {**granted, "basis": "member"},
        at=t0 + timedelta(minutes=2),
    )
    deliver(db, "cercle", "CareCircleMemberAdded", alice, nurse, at=t0 + timedelta(minutes=1))
    assert circle()["list"] == [
        {
            "member_id": uid(3),
            "holder_kind": "person",
            "holder_id": "person-7",
            "roles": [],
            "habilitated": True,
        }
    ]  # the addition is older than the grant: its roles wait for a newer event
    deliver(db, "cercle", "CareCircleMemberAdded", alice, nurse, at=t0 + timedelta(minutes=3))
    assert circle()["roles"] == {"intervenant": 1} and circle()["habilitated"] == 1

    # Removed at minute 5; a revocation sent at minute 4 and delivered late changes nothing.
    deliver(db, "cercle", "CareCircleMemberRemoved", alice, granted, at=t0 + timedelta(minutes=5))
    deliver(db, "cercle", "HabilitationRevoked", alice, granted, at=t0 + timedelta(minutes=4))
    assert circle()["members"] == 0
    # Added again later: back, not habilitated until a new grant.
    deliver(db, "cercle", "CareCircleMemberAdded", alice, nurse, at=t0 + timedelta(minutes=6))
    assert circle()["members"] == 1 and circle()["habilitated"] == 0
    feed = client.get(f"/api/patients/{alice}/feed", headers=me).json()["items"]
    assert sum(1 for line in feed if line["event_type"] == "CareCircleMemberAdded") == 3


def test_the_overview_gives_the_file_page_everything_from_local_read_models(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    alice, bruno = create(client, issuer, 0), create(client, issuer, 1)

    link = client.post(
        f"/api/patients/{alice}/links", json={"linked_patient_id": bruno, "relation": "mother"}, headers=me
    )
    assert link.status_code == 201, link.text
    status = client.post(
        f"/api/patients/{alice}/statuses",
        json={"structure_id": "dac-1", "status": "suivi_soutenu", "expertise": "gerontologie"},
        headers=me,
    )
    assert status.status_code == 201, status.text
    stay = {"establishment": "CHU de Lille", "entry_date": (TODAY - timedelta(days=3)).isoformat()}
    assert client.post(f"/api/patients/{alice}/hospitalisations", json=stay, headers=me).status_code == 201
    memo = {"title": "Clés", "content": "Chez la voisine du 2e", "importance": "tres_important"}
    assert client.post(f"/api/patients/{alice}/memos", json=memo, headers=me).status_code == 201
    secret = {
        **memo,
        "title": "Famille",
        "importance": "normal",
        "sharing": "shared",
        "shared_with": ["person:person-9"],
    }
    assert client.post(f"/api/patients/{alice}/memos", json=secret, headers=me).status_code == 201

    deliver(db, "taches", "TaskCreated", alice, task_created(alice, 1, due=TODAY - timedelta(days=1)))
    deliver(
        db,
        "agenda",
        "AppointmentScheduled",
        alice,
        appointment(alice, 2, datetime.now(UTC) + timedelta(days=2)),
    )
    deliver(
        db, "cercle", "CareCircleMemberAdded", alice, member_added(alice, 3, "person-7", ["medecin_traitant"])
    )

    overview = client.get(f"/api/patients/{alice}/overview", headers=me)
    assert overview.status_code == 200, overview.text
    body = overview.json()
    assert body["identity"]["birth_name"] == "ABADIE"
    assert set(body["identity"]["age"]) == {"years", "months", "days"}
    assert [(link["patient_id"], link["relation"]) for link in body["linked_files"]] == [(bruno, "mother")]
    # Seen from the mother's file, the link names her child.
    from_bruno = client.get(f"/api/patients/{bruno}/links", headers=me).json()
    items = from_bruno["items"] if isinstance(from_bruno, dict) else from_bruno
    assert [(link["patient_id"], link["relation"]) for link in items] == [(alice, "child")]
    assert [(s["structure_id"], s["status"]) for s in body["statuses"]] == [("dac-1", "suivi_soutenu")]
    assert body["hospitalisations"][0]["current"] is True
    assert body["tasks"] == {"open": 1, "overdue": 1}
    assert body["next_appointment"]["appointment_id"] == uid(2)
    assert body["care_circle"]["members"] == 1 and body["care_circle"]["roles"] == {"medecin_traitant": 1}
    assert [m["title"] for m in body["memos"]] == [
        "Clés",
        "Famille",
    ]  # most important first; the author sees both

    # The link shows on the other file too; a shared memo stays hidden from others.
    other = client.get(f"/api/patients/{bruno}/overview", headers=me).json()
    assert [link["patient_id"] for link in other["linked_files"]] == [alice]
    seen_by_2 = client.get(f"/api/patients/{alice}/memos", headers=bearer(issuer, "person-2")).json()["items"]
    assert [m["title"] for m in seen_by_2] == ["Clés"]

    events = outbox(db)
    for envelope in events:
        validate(envelope)
    kinds = [e["type"] for e in events]
    assert {"PatientsLinked", "FileStatusChanged", "MemoAdded"} <= set(kinds)
    assert "voisine" not in json.dumps(events) and "Clés" not in json.dumps(events)
    changed = next(e for e in events if e["type"] == "FileStatusChanged")["data"]
    assert changed == {
        "patient_id": alice,
        "structure_id": "dac-1",
        "status": "suivi_soutenu",
        "previous_status": None,
    }


def test_bad_panel_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    alice = create(client, issuer, 0)
    before = len(outbox(db))
    cases = [
        ("links", {"linked_patient_id": alice, "relation": "sister"}, "linked_patient_id"),
        ("links", {"linked_patient_id": uid(99), "relation": "sister"}, "linked_patient_id"),
        ("statuses", {"structure_id": "dac-1", "status": "sorti"}, "exit_reason"),
        ("statuses", {"structure_id": "dac-1", "status": "sorti", "exit_reason": "autre"}, "comment"),
        (
            "hospitalisations",
            {"establishment": "CHU", "entry_date": "2026-01-10", "exit_date": "2026-01-01"},
            "exit_date",
        ),
        ("memos", {"title": "x", "content": "y", "sharing": "shared"}, "shared_with"),
        ("death", {"death_date": (TODAY + timedelta(days=2)).isoformat()}, "death_date"),
        ("profile", {"commune": "7505"}, "commune"),
    ]
    for path, body, field in cases:
        response = (
            client.post(f"/api/patients/{alice}/{path}", json=body, headers=me)
            if path != "profile"
            else (client.put(f"/api/patients/{alice}/{path}", json=body, headers=me))
        )
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field
    # A structure's status is set by its members only.
    outsider = client.post(
        f"/api/patients/{alice}/statuses",
        json={"structure_id": "hospital-9", "status": "suivi_soutenu"},
        headers=me,
    )
    assert outsider.status_code == 403
    assert len(outbox(db)) == before
    assert client.get(f"/api/patients/{alice}/statuses", headers=me).json()["items"] == []


def test_closing_a_file_waits_for_its_tasks_then_it_leaves_the_default_list(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = {**bearer(issuer, "person-1"), "X-Act-As": "dac-1"}
    alice = create(client, issuer, 0, "person-1")
    # Created as person-1; the structure is habilitated too (cercle's event).
    deliver(
        db,
        "cercle",
        "HabilitationGranted",
        alice,
        {
            "patient_id": alice,
            "member_id": uid(50),
            "holder_kind": "structure",
            "holder_id": "dac-1",
            "basis": "member",
        },
    )
    client.post(f"/api/patients/{alice}/statuses", json={"status": "suivi_intensif"}, headers=me)
    deliver(db, "taches", "TaskCreated", alice, task_created(alice, 1))

    checklist = client.get(f"/api/patients/{alice}/closing", headers=me).json()
    assert [(s["code"], s["done"]) for s in checklist["steps"]] == [
        ("close_forms", True),
        ("close_tasks", False),
        ("set_exit_status", False),
    ]
    assert checklist["open_task_ids"] == [uid(1)] and checklist["ready"] is False
    refused = client.post(f"/api/patients/{alice}/closing", json={"exit_reason": "deces"}, headers=me)
    assert refused.status_code == 409 and "tâches" in refused.json()["detail"]

    deliver(db, "taches", "TaskStatusChanged", alice, task_closed(alice, 1))
    assert client.get(f"/api/patients/{alice}/closing", headers=me).json()["ready"] is True
    closed = client.post(f"/api/patients/{alice}/closing", json={"exit_reason": "deces"}, headers=me)
    assert closed.status_code == 201, closed.text
    assert client.get(f"/api/patients/{alice}/closing", headers=me).json()["closed"] is True

    history = client.get(f"/api/patients/{alice}/statuses", headers=me).json()
    assert [(h["status"], h["exit_reason"]) for h in history["items"]] == [
        ("sorti", "deces"),
        ("suivi_intensif", None),
    ]
    last = [e for e in outbox(db) if e["type"] == "FileStatusChanged"][-1]["data"]
    assert (last["status"], last["previous_status"]) == ("sorti", "suivi_intensif")
    # PAT-12: closed files leave the default list but stay searchable.
    assert client.get("/api/file-list", headers=me).json()["total"] == 0
    archived = client.get("/api/file-list?archived=true", headers=me).json()
    assert [row["id"] for row in archived["items"]] == [alice]


def test_death_is_declared_once_and_announced_without_traits(service: Any, issuer: TestIssuer) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    alice = create(client, issuer, 0)
    declared = client.post(
        f"/api/patients/{alice}/death", json={"date_unknown": True, "city": "Lille"}, headers=me
    )
    assert declared.status_code == 201, declared.text
    assert declared.json()["date_unknown"] is True
    again = client.post(f"/api/patients/{alice}/death", json={"death_date": TODAY.isoformat()}, headers=me)
    assert again.status_code == 409
    (event,) = [e for e in outbox(db) if e["type"] == "PatientDeceased"]
    assert event["data"] == {"patient_id": alice, "declared_by": "person-1"}
    assert client.get(f"/api/patients/{alice}/overview", headers=me).json()["death"]["city"] == "Lille"
    assert client.get("/api/file-list?deceased=true", headers=me).json()["total"] == 1
    assert client.get("/api/file-list?deceased=false", headers=me).json()["total"] == 0


def test_the_feed_gathers_every_service_and_the_timeline_places_things_by_period(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    alice = create(client, issuer, 0)
    note = client.post(
        f"/api/patients/{alice}/feed/notes",
        json={"text": "Appel de la fille", "importance": "important"},
        headers=me,
    )
    assert note.status_code == 201
    deliver(db, "taches", "TaskCreated", alice, task_created(alice, 1))
    deliver(
        db,
        "documents",
        "DocumentAdded",
        alice,
        {
            "document_id": uid(4),
            "patient_id": alice,
            "class_code": "COORD",
            "type_code": None,
            "content_type": "application/pdf",
            "size": 10,
            "sharing": "public",
            "uploaded_by": "person-7",
        },
    )
    deliver(
        db,
        "cercle",
        "BreakGlassAccessGranted",
        alice,
        {
            "grant_id": uid(5),
            "patient_id": alice,
            "person_id": "person-8",
            "structure_id": None,
            "reason_code": "urgence_vitale",
            "expires_at": (datetime.now(UTC) + timedelta(hours=4)).isoformat(),
            "habilitated": [{"kind": "person", "id": "person-1"}],
        },
    )

    def feed(query: str = "") -> list[str]:
        return [
            line["event_type"]
            for line in client.get(f"/api/patients/{alice}/feed{query}", headers=me).json()["items"]
        ]

    assert {
        "PatientCreated",
        "FeedNoteAdded",
        "TaskCreated",
        "DocumentAdded",
        "BreakGlassAccessGranted",
    } <= set(feed())
    assert feed("?filter=notes") == ["FeedNoteAdded"]
    assert set(feed("?filter=important")) == {"FeedNoteAdded", "TaskCreated"}
    assert set(feed("?filter=tres_important")) == {"BreakGlassAccessGranted"}
    assert set(feed("?filter=active")) == {"TaskCreated", "BreakGlassAccessGranted"}
    deliver(db, "taches", "TaskStatusChanged", alice, task_closed(alice, 1))
    assert set(feed("?filter=active")) == {"BreakGlassAccessGranted"}
    assert client.get(f"/api/patients/{alice}/feed?filter=everything", headers=me).status_code == 400
    (event,) = [e for e in outbox(db) if e["type"] == "FeedNoteAdded"]
    assert event["data"]["importance"] == "important" and "fille" not in json.dumps(event)

    # PAT-15: the timeline places stays, appointments and tasks by period, past and future.
    bruno = create(client, issuer, 1)
    old = {
        "establishment": "CH Roubaix",
        "entry_date": (TODAY - timedelta(days=60)).isoformat(),
        "exit_date": (TODAY - timedelta(days=50)).isoformat(),
    }
    client.post(f"/api/patients/{bruno}/hospitalisations", json=old, headers=me)
    deliver(
        db,
        "agenda",
        "AppointmentScheduled",
        bruno,
        appointment(bruno, 12, datetime.now(UTC) + timedelta(days=10)),
    )
    deliver(db, "taches", "TaskCreated", bruno, task_created(bruno, 11, due=TODAY + timedelta(days=200)))

    def kinds(period: str) -> list[tuple[str, bool]]:
        items = client.get(f"/api/patients/{bruno}/timeline?period={period}", headers=me).json()["items"]
        return [(i["kind"], i["future"]) for i in items]

    assert kinds("month") == [("appointment", True)]
    assert kinds("quarter") == [("hospitalisation", False), ("appointment", True)]
    assert ("task", True) in kinds("year") and len(kinds("all")) == 3


def test_zones_follow_the_patient_commune_and_favourites_filter_the_list(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    admin = bearer(issuer, "admin-1", roles=["admin"])
    zone = {"name": "Métropole lilloise", "communes": ["59350", "59512"]}
    assert client.post("/api/zones", json=zone, headers=me).status_code == 403
    assert (
        client.post("/api/zones", json={**zone, "communes": ["5935"]}, headers=admin).json()["field"]
        == "communes"
    )
    created = client.post("/api/zones", json=zone, headers=admin)
    assert created.status_code == 201, created.text
    zone_id = created.json()["id"]
    assert client.post("/api/zones", json=zone, headers=admin).status_code == 409

    alice, bruno = create(client, issuer, 0), create(client, issuer, 1)
    profile = client.put(
        f"/api/patients/{alice}/profile",
        json={
            "commune": "59512",
            "postal_code": "59100",
            "thematics": ["personnes_agees"],
            "parcours": "ppcs",
        },
        headers=me,
    ).json()
    assert profile["zones"] == [{"id": zone_id, "name": "Métropole lilloise"}]
    # A thematic added tells the circle, by count only; the same thematics again, nothing.
    (added,) = [e for e in outbox(db) if e["type"] == "FileThematicsAdded"]
    validate(added)
    assert added["data"] == {"patient_id": alice, "added": 1} and "personnes_agees" not in json.dumps(added)
    client.put(f"/api/patients/{alice}/profile", json={"thematics": ["personnes_agees"]}, headers=me)
    assert [e["type"] for e in outbox(db)].count("FileThematicsAdded") == 1
    client.put(f"/api/patients/{bruno}/profile", json={"commune": "69123"}, headers=me)
    listed = client.get(f"/api/file-list?zones={zone_id}", headers=me).json()
    assert [row["id"] for row in listed["items"]] == [alice]
    assert listed["items"][0]["commune"] == "59512" and listed["items"][0]["thematics"] == ["personnes_agees"]

    # PAT-18: favourites, and a favourite group shared with my structure.
    starred = client.put(
        f"/api/patients/{alice}/favourite",
        json={"group_name": "Suivi hebdo", "shared_with_structure": "dac-1"},
        headers=me,
    )
    assert starred.status_code == 200, starred.text
    assert (
        client.put(
            f"/api/patients/{bruno}/favourite", json={"shared_with_structure": "hospital-9"}, headers=me
        ).status_code
        == 422
    )
    assert [r["id"] for r in client.get("/api/file-list?favourites=true", headers=me).json()["items"]] == [
        alice
    ]
    assert [r["id"] for r in client.get("/api/file-list?favourites=false", headers=me).json()["items"]] == [
        bruno
    ]
    assert client.delete(f"/api/patients/{alice}/favourite", headers=me).status_code == 204
    assert client.get("/api/favourites", headers=me).json()["mine"] == []


def structure_habilitated(db: Any, patient_id: str, structure: str, member: int) -> None:
    deliver(
        db,
        "cercle",
        "HabilitationGranted",
        patient_id,
        {
            "patient_id": patient_id,
            "member_id": uid(member),
            "holder_kind": "structure",
            "holder_id": structure,
            "basis": "member",
        },
    )


def test_a_favourite_group_is_shared_as_a_whole_and_shows_colleagues_only_the_files_they_may_read(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    me = bearer(issuer, "person-1")
    colleague = {**bearer(issuer, "person-2"), "X-Act-As": "dac-1"}
    alice, bruno, chloe = (create(client, issuer, n) for n in range(3))
    for n, patient in enumerate((alice, bruno)):
        structure_habilitated(db, patient, "dac-1", 60 + n)  # the DAC follows two of the three

    group = {"group_name": "Suivi hebdo"}
    for patient in (alice, chloe):
        assert client.put(f"/api/patients/{patient}/favourite", json=group, headers=me).status_code == 200
    client.put(f"/api/patients/{bruno}/favourite", json={}, headers=me)
    assert client.get("/api/favourites", headers=colleague).json()["groups"] == []  # not shared yet

    shared = client.patch(
        "/api/favourite-groups/Suivi hebdo", json={"shared_with_structure": "dac-1"}, headers=me
    )
    assert shared.status_code == 200, shared.text
    assert shared.json()["shared_with_structure"] == "dac-1"
    assert sorted(p["id"] for p in shared.json()["patients"]) == sorted([alice, chloe])
    # A file starred into the group later follows the group's sharing.
    client.put(f"/api/patients/{bruno}/favourite", json=group, headers=me)
    # The structure's members may be told: ids and a count, never the group's name.
    (shared_event,) = [e for e in outbox(db) if e["type"] == "FavouriteGroupShared"]
    validate(shared_event)
    assert shared_event["data"] == {
        "group_id": shared.json()["id"],
        "shared_by": "person-1",
        "structure_id": "dac-1",
        "files": 2,
    }
    assert "Suivi hebdo" not in json.dumps(shared_event)

    seen = client.get("/api/favourites", headers=colleague).json()
    (group_seen,) = seen["groups"]
    assert (group_seen["name"], group_seen["owner_id"], group_seen["mine"]) == (
        "Suivi hebdo",
        "person-1",
        False,
    )
    # chloe's file is in the group, but the DAC is not in her circle: the colleague never sees it.
    assert sorted(p["id"] for p in group_seen["patients"]) == sorted([alice, bruno])
    assert {p["birth_name"] for p in group_seen["patients"]} == {
        person(0)["birth_name"].upper(),
        person(1)["birth_name"].upper(),
    }
    assert chloe not in {f["patient_id"] for f in seen["shared"]}

    mine = client.get("/api/favourites", headers=me).json()["groups"]
    assert [(g["name"], len(g["patients"])) for g in mine] == [("Suivi hebdo", 3)]

    renamed = client.patch(
        "/api/favourite-groups/Suivi hebdo",
        json={"name": "Sorties d'hôpital", "shared_with_structure": None},
        headers=me,
    )
    assert renamed.json()["name"] == "Sorties d'hôpital" and renamed.json()["shared_with_structure"] is None
    assert client.get("/api/favourites", headers=colleague).json()["groups"] == []

    refused = client.patch(
        "/api/favourite-groups/Sorties d'hôpital", json={"shared_with_structure": "hospital-9"}, headers=me
    )
    assert refused.status_code == 422 and refused.json()["field"] == "shared_with_structure"
    assert client.patch("/api/favourite-groups/Inconnu", json={"name": "X"}, headers=me).status_code == 404
    # Renaming, unsharing and refusals announce nothing more.
    assert [e["type"] for e in outbox(db)].count("FavouriteGroupShared") == 1
    assert client.get("/api/favourites", headers=me).json()["groups"][0]["shared_with_structure"] is None


def test_the_patient_export_is_readable_html_and_a_valid_fr_core_fhir_bundle(
    service: Any, issuer: TestIssuer
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    client, db = service
    me = bearer(issuer, "person-1")
    alice = create(client, issuer, 0)
    client.post(
        f"/api/patients/{alice}/statuses",
        json={"structure_id": "dac-1", "status": "suivi_soutenu"},
        headers=me,
    )
    client.post(
        f"/api/patients/{alice}/hospitalisations",
        json={"establishment": "CHU", "entry_date": TODAY.isoformat()},
        headers=me,
    )
    client.post(f"/api/patients/{alice}/memos", json={"title": "Clés", "content": "<voisine>"}, headers=me)
    client.post(
        f"/api/patients/{alice}/memos",
        json={"title": "Privé", "content": "x", "sharing": "shared", "shared_with": ["person:person-1"]},
        headers=me,
    )
    deliver(
        db, "cercle", "CareCircleMemberAdded", alice, member_added(alice, 3, "person-7", ["coordinateur"])
    )

    page = client.get(f"/api/patients/{alice}/export", headers=me)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "ABADIE" in page.text and "&lt;voisine&gt;" in page.text  # user text is escaped
    assert "attachment" in page.headers["content-disposition"]

    fhir = client.get(f"/api/patients/{alice}/export?format=fhir", headers=bearer(issuer, "person-2"))
    assert fhir.status_code == 200
    bundle = Bundle.model_validate(fhir.json())  # raises on any FHIR R4(B) violation
    resources = {entry.resource.__resource_type__: entry.resource for entry in bundle.entry}
    assert set(resources) == {"Patient", "EpisodeOfCare", "Encounter", "Flag", "CareTeam"}
    patient = resources["Patient"]
    assert patient.meta.profile == ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"]
    urls = {ext.url for ext in patient.extension}
    assert "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability" in urls
    assert "http://hl7.org/fhir/StructureDefinition/patient-birthPlace" in urls
    assert patient.name[0].family == "ABADIE" and patient.gender == "female"
    # person-2 may read the file but not person-1's shared memo.
    flags = [e.resource for e in bundle.entry if e.resource.__resource_type__ == "Flag"]
    assert [f.code.text for f in flags] == ["Clés — <voisine>"]
