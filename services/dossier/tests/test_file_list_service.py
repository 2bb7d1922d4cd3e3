"""The file list (SEA-1..SEA-5) through the dossier contract, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert

from chassis.events import make_envelope
from dossier.app import SERVICE
from dossier.models_file import FileListRow
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

TODAY = date.today()
# Person ids are UUIDs in identity (delegation events carry them as such).
P1, P2 = "00000000-0000-4000-8000-00000000a001", "00000000-0000-4000-8000-00000000a002"
PEOPLE = [
    # birth_name, first_name, birth_date, sex
    ("Lefèvre-D'Alès", "Émilie", "1948-02-03", "F"),
    ("Lefebvre", "Marc", "1951-07-21", "M"),
    ("Martin", "Jeanne", "1939-11-30", "F"),
    ("Moreau", "Luc", "1960-05-14", "M"),
    ("Lemaire", "Sophie", "1972-09-09", "F"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def deliver(db: Any, producer: str, kind: str, subject: str, data: dict[str, Any]) -> None:
    envelope = make_envelope(event_type=kind, producer=producer, subject=subject, actor="person-7", data=data)
    SERVICE.create_worker(db=db).consumers[0].handle(envelope, f"dossier.{producer}.events")


def create_all(client: Any, issuer: TestIssuer, sub: str = P1) -> list[str]:
    ids = []
    for birth_name, first_name, birth_date, sex in PEOPLE:
        body = {
            "birth_name": birth_name,
            "first_name": first_name,
            "birth_date": birth_date,
            "sex": sex,
            "birth_place": "59350",
            "consent": {"attested": True, "given_by": "patient"},
        }
        response = client.post("/api/patients", json=body, headers=bearer(issuer, sub))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def names(client: Any, headers: dict[str, str], query: str = "") -> list[str]:
    response = client.get(f"/api/file-list{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [row["birth_name"] for row in response.json()["items"]]


def test_the_list_shows_only_visible_files_and_follows_habilitations_and_delegations(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    mine = create_all(client, issuer, P1)
    other = client.post(
        "/api/patients",
        json={
            "birth_name": "Zidane",
            "first_name": "Zoe",
            "birth_date": "1990-01-01",
            "sex": "F",
            "birth_place": "13055",
            "consent": {"attested": True, "given_by": "patient"},
        },
        headers=bearer(issuer, P2),
    ).json()["id"]
    one, two = bearer(issuer, P1), bearer(issuer, P2)
    page = client.get("/api/file-list", headers=one).json()
    assert page["total"] == 5 and {row["id"] for row in page["items"]} == set(mine)
    assert names(client, two) == ["ZIDANE"]

    # cercle habilitates person-2 on one of person-1's files: it appears, then goes.
    grant = {"patient_id": mine[2], "member_id": uid(1), "holder_kind": "person", "holder_id": P2}
    deliver(db, "cercle", "HabilitationGranted", mine[2], {**grant, "basis": "member"})
    assert sorted(names(client, two)) == ["MARTIN", "ZIDANE"]
    deliver(db, "cercle", "HabilitationRevoked", mine[2], grant)
    assert names(client, two) == ["ZIDANE"]

    # person-1 delegates its files to person-2 (identity's delegation), then revokes it.
    delegation = {"delegation_id": uid(9), "grantor_id": P1, "delegate_id": P2}
    deliver(
        db,
        "identity",
        "DelegationGranted",
        P1,
        {**delegation, "scopes": ["dossiers"], "ends_on": None},
    )
    page = client.get("/api/file-list?page_size=10", headers=two).json()
    assert page["total"] == 6 and other in {row["id"] for row in page["items"]}
    deliver(db, "identity", "DelegationRevoked", P1, {**delegation, "cause": "revoked"})
    assert client.get("/api/file-list", headers=two).json()["total"] == 1

    # A bulk load written around the use cases (demo patients) shows once the list is rebuilt.
    from dossier import file_list
    from dossier.demo_patients import bulk_insert, generate

    assert bulk_insert(db.url, generate(20, seed=3), holder=("person", P2)) == 20
    assert client.get("/api/file-list", headers=two).json()["total"] == 1
    with db.engine.begin() as conn:
        assert file_list.rebuild(conn) == 5 + 1 + 20
    assert client.get("/api/file-list", headers=two).json()["total"] == 21
    assert client.get("/api/file-list", headers=one).json()["total"] == 5


def test_filters_sorting_and_pagination(service: Any, issuer: TestIssuer) -> None:
    client, db = service
    ids = create_all(client, issuer)
    me = bearer(issuer, P1)
    # Name prefixes fold accents, hyphens and apostrophes; "H" is the booklet's male.
    assert names(client, me, "?name=lefe&sort=name&order=asc") == ["LEFEBVRE", "LEFÈVRE-D'ALÈS"]
    assert names(client, me, "?name=le&sex=F&sort=name&order=asc") == ["LEFÈVRE-D'ALÈS", "LEMAIRE"]
    assert names(client, me, "?name=le&sex=H") == ["LEFEBVRE"]
    assert names(client, me, "?first_name=emil") == ["LEFÈVRE-D'ALÈS"]
    assert names(client, me, "?birth_date=1939-11-30") == ["MARTIN"]
    # An identity change (identity's own use case) reaches the list in the same transaction.
    changed = client.patch(f"/api/patients/{ids[2]}/identity", json={"used_name": "Perrin"}, headers=me)
    assert changed.status_code == 200, changed.text
    assert names(client, me, "?name=perr") == ["MARTIN"]
    assert names(client, me, "?sort=birth_date&order=asc") == [
        "MARTIN",
        "LEFÈVRE-D'ALÈS",
        "LEFEBVRE",
        "MOREAU",
        "LEMAIRE",
    ]

    # Default order is the last update: a memo on Moreau moves it first.
    client.post(f"/api/patients/{ids[3]}/memos", json={"title": "t", "content": "c"}, headers=me)
    assert names(client, me)[0] == "MOREAU"

    first = client.get("/api/file-list?sort=name&order=asc&page_size=10&page=1", headers=me).json()
    assert first["total"] == 5 and len(first["items"]) == 5
    past_the_end = client.get("/api/file-list?sort=name&page=2", headers=me).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 5
    assert client.get("/api/file-list?page_size=7", headers=me).status_code == 400

    # Read-model filters: open tasks, hospitalised, thematics, statuses, professional and roles.
    deliver(
        db,
        "taches",
        "TaskCreated",
        ids[0],
        {
            "task_id": uid(3),
            "patient_id": ids[0],
            "type": "autre",
            "level": "information",
            "status": "a_traiter",
            "due_date": None,
            "created_by": "person-7",
            "created_by_structure": None,
            "recipients": [{"kind": "person", "id": P1}],
            "aggregate_version": 1,
        },
    )
    deliver(
        db,
        "cercle",
        "CareCircleMemberAdded",
        ids[1],
        {
            "patient_id": ids[1],
            "member_id": uid(4),
            "holder_kind": "person",
            "holder_id": "doc-42",
            "roles": ["medecin_traitant"],
            "habilitated": False,
            "auto_habilitation": False,
        },
    )
    deliver(
        db,
        "agenda",
        "AppointmentScheduled",
        ids[0],
        {
            "appointment_id": uid(5),
            "patient_id": ids[0],
            "type_code": "visite",
            "participants": [],
            "start": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "end": (datetime.now(UTC) + timedelta(days=1, hours=1)).isoformat(),
            "aggregate_version": 1,
        },
    )
    client.post(
        f"/api/patients/{ids[2]}/hospitalisations",
        json={"establishment": "CHU", "entry_date": TODAY.isoformat()},
        headers=me,
    )
    client.put(f"/api/patients/{ids[4]}/profile", json={"thematics": ["handicap", "precarite"]}, headers=me)
    client.post(
        f"/api/patients/{ids[4]}/statuses",
        json={"structure_id": "dac-1", "status": "suivi_intensif"},
        headers=me,
    )

    assert names(client, me, "?open_tasks=true") == ["LEFÈVRE-D'ALÈS"]
    assert len(names(client, me, "?open_tasks=false")) == 4
    assert names(client, me, "?hospitalised=true") == ["MARTIN"]
    assert names(client, me, "?thematics=precarite,autre") == ["LEMAIRE"]
    assert names(client, me, "?statuses=suivi_intensif&structures=dac-1") == ["LEMAIRE"]
    assert names(client, me, "?professional=doc-42&roles=medecin_traitant") == ["LEFEBVRE"]
    assert names(client, me, "?roles=coordinateur") == []
    row = client.get("/api/file-list?open_tasks=true", headers=me).json()["items"][0]
    assert row["open_tasks"] == 1 and row["next_appointment"]["appointment_id"] == uid(5)
    assert client.get("/api/file-list?statuses=nope", headers=me).json()["field"] == "statuses"


def test_saved_searches_and_the_export_of_the_list(service: Any, issuer: TestIssuer) -> None:
    client, db = service
    create_all(client, issuer)
    me = bearer(issuer, P1)
    as_structure = {**me, "X-Act-As": "dac-1"}
    women = client.post(
        "/api/saved-searches",
        json={"name": "Femmes", "filters": {"sex": "F"}, "is_default": True},
        headers=me,
    )
    assert women.status_code == 201, women.text
    assert (
        client.post("/api/saved-searches", json={"name": "Femmes", "filters": {}}, headers=me).status_code
        == 409
    )
    assert (
        client.post(
            "/api/saved-searches", json={"name": "x", "filters": {"statuses": ["nope"]}}, headers=me
        ).json()["field"]
        == "statuses"
    )
    lefe = client.post(
        "/api/saved-searches",
        json={"name": "Lefe", "filters": {"name": "lefe"}, "is_default": True},
        headers=as_structure,
    ).json()
    # Only one default, and the searches follow the person even when acting as a structure.
    listed = client.get("/api/saved-searches", headers=me).json()["items"]
    assert [(s["name"], s["is_default"]) for s in listed] == [("Femmes", False), ("Lefe", True)]
    opened = client.get("/api/file-list?sort=name&order=asc", headers=me).json()
    assert opened["saved_search_id"] == lefe["id"] and opened["total"] == 2
    assert client.get("/api/saved-searches", headers=bearer(issuer, P2)).json()["items"] == []
    applied = client.get(f"/api/file-list?saved_search_id={women.json()['id']}", headers=me).json()
    assert applied["total"] == 3
    assert client.delete(f"/api/saved-searches/{lefe['id']}", headers=me).status_code == 204
    assert client.get("/api/file-list", headers=me).json()["total"] == 5

    exported = client.get("/api/file-list/export?format=csv&sex=F&sort=name&order=asc", headers=me)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["Nom de naissance", "Nom utilisé", "Prénom"]
    assert [r[0] for r in rows[1:]] == ["LEFÈVRE-D'ALÈS", "LEMAIRE", "MARTIN"]
    xlsx = client.get("/api/file-list/export?format=xlsx", headers=me)
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None and sheet.max_row == 6

    # 996 more rows visible to person-1: 1001 files in the list, the export is refused.
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        conn.execute(
            insert(FileListRow.__table__),
            [
                {
                    "holder": f"person:{P1}",
                    "patient_id": uid(10_000 + i),
                    "name_key": f"X{i}",
                    "used_key": None,
                    "first_key": "Y",
                    "sex": "M",
                    "birth_date": date(1950, 1, 1),
                    "closed": False,
                    "deceased": False,
                    "last_update": now,
                }
                for i in range(996)
            ],
        )
    refused = client.get("/api/file-list/export?format=csv", headers=me)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["total"] == 1001 and "1000" in refused.json()["detail"]
    assert client.get("/api/file-list/export?format=pdf", headers=me).status_code == 400


def test_a_file_is_listed_at_creation_exactly_as_a_full_rebuild_lists_it(
    service: Any, issuer: TestIssuer
) -> None:
    # The row of a patient created in the same transaction is built from the new patient
    # itself (no reads); a rebuild from the tables must find nothing different.
    from sqlalchemy import select

    from dossier import file_list

    client, db = service
    create_all(client, issuer)
    used = {"birth_name": "Garnier", "used_name": "Roux", "first_name": "Anne", "birth_date": "1950-01-02"}
    body = {**used, "sex": "F", "birth_place": "59350", "consent": {"attested": True, "given_by": "patient"}}
    assert client.post("/api/patients", json=body, headers=bearer(issuer, P1)).status_code == 201
    columns = [c for c in FileListRow.__table__.c if c.name != "last_update"]
    with db.engine.connect() as conn:
        at_creation = sorted(conn.execute(select(*columns)).all())
    with db.engine.begin() as conn:
        file_list.rebuild(conn)
    with db.engine.connect() as conn:
        rebuilt = sorted(conn.execute(select(*columns)).all())
    assert len(at_creation) == 6
    assert at_creation == rebuilt
    assert names(client, bearer(issuer, P1), "?name=rou") == ["GARNIER"]  # found by the used name
