"""The cercle service on a real database (SQLite file and PostgreSQL), through its contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cercle.app import SERVICE
from chassis.events import make_envelope, validate
from tests.support.issuer import TestIssuer
from tests.support.services import service_under_test

QUEUE = "cercle.dossier.events"


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


def auth(
    issuer: TestIssuer, sub: str = "person-1", act_as: str | None = None, **claims: Any
) -> dict[str, str]:
    token = issuer.mint(sub, extra_claims={"structures": ["dac-1"], **claims})
    headers = {"Authorization": "Bearer " + token}
    if act_as:
        headers["X-Act-As"] = act_as
    return headers


def patient_created(owner_kind: str = "person", owner_id: str = "person-1") -> dict[str, Any]:
    patient_id = str(uuid.uuid4())
    return make_envelope(
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


def new_patient(db: Any, owner_kind: str = "person", owner_id: str = "person-1") -> str:
    """A file created in dossier, as cercle learns it: through its consumer."""
    envelope = patient_created(owner_kind, owner_id)
    assert SERVICE.create_worker(db=db).consumers[0].handle(envelope, QUEUE) is True
    return str(envelope["data"]["patient_id"])


def outbox(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        envelopes = list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))
    for envelope in envelopes:
        validate(envelope)
    return envelopes


def types(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in envelopes]


def member_count(db: Any) -> int:
    with db.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(db.metadata.tables["members"])) or 0)


def decide(client: Any, issuer: TestIssuer, patient_id: str, sub: str, act_as: str | None = None) -> Any:
    response = client.get(
        "/api/internal/decision", params={"patient_id": patient_id}, headers=auth(issuer, sub, act_as)
    )
    assert response.status_code == 200, response.text
    return response.json()


def add(client: Any, issuer: TestIssuer, patient_id: str, body: dict[str, Any], sub: str = "person-1") -> Any:
    return client.post(f"/api/patients/{patient_id}/circle/members", json=body, headers=auth(issuer, sub))


def test_the_file_s_creator_is_auto_habilitated_once_even_when_patient_created_comes_twice(
    service: Any, issuer: TestIssuer
):
    client, db = service
    consumer = SERVICE.create_worker(db=db).consumers[0]
    envelope = patient_created()
    assert consumer.handle(envelope, QUEUE) is True
    assert consumer.handle(envelope, QUEUE) is False  # duplicate delivery: no effect
    patient_id = envelope["data"]["patient_id"]

    events = outbox(db)
    assert types(events) == ["CareCircleMemberAdded", "HabilitationGranted"]
    granted = events[1]["data"]
    assert granted["basis"] == "auto_habilitation"
    assert (granted["holder_kind"], granted["holder_id"]) == ("person", "person-1")

    circle = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer))
    assert circle.status_code == 200, circle.text
    (owner,) = circle.json()["members"]
    assert owner["habilitated"] and owner["auto_habilitation"]
    assert owner["id"] == granted["member_id"]
    assert owner["added_by"] == "person-1"


def test_a_second_patient_created_for_an_existing_owner_adds_no_member(service: Any, issuer: TestIssuer):
    _, db = service
    consumer = SERVICE.create_worker(db=db).consumers[0]
    first = patient_created()
    consumer.handle(first, QUEUE)
    # Another message (new id) about the same file, e.g. replayed by an operator.
    again = {**first, "id": str(uuid.uuid4())}
    assert consumer.handle(again, QUEUE) is True
    assert member_count(db) == 1
    assert types(outbox(db)).count("HabilitationGranted") == 1


def test_the_decision_allows_the_creator_and_refuses_anyone_else(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    allowed = decide(client, issuer, patient_id, "person-1")
    assert allowed == {
        "patient_id": patient_id,
        "patient_known": True,
        "allowed": True,
        "basis": "person",
        "holder_kind": "person",
        "holder_id": "person-1",
        "max_age_s": 5,
        "expires_at": None,
    }
    refused = decide(client, issuer, patient_id, "person-2")
    assert refused["allowed"] is False and refused["basis"] is None
    assert refused["patient_known"] is True  # a refusal to stand by: the gateway does not wait
    unknown = decide(client, issuer, str(uuid.uuid4()), "person-1")
    assert unknown["allowed"] is False and unknown["basis"] is None
    # Not known yet (its PatientCreated may still be on its way): the gateway asks again.
    assert unknown["patient_known"] is False


# PostgreSQL only: on SQLite a transaction holds the database from its start (BEGIN
# IMMEDIATE), so no commit can land in the middle of a decision.
@pytest.mark.parametrize("service", ["postgresql"], indirect=True)
def test_a_file_that_arrives_during_the_decision_is_never_known_but_refused_to_its_creator(
    service: Any, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
):
    """PatientCreated commits while cercle decides (after it read the memberships): the answer
    may be "unknown yet" (the gateway asks again) or "allowed", never "known, refused" (the
    gateway would refuse the creator its own new file at once)."""
    from cercle import usecases

    client, db = service
    envelope = patient_created()
    patient_id = envelope["data"]["patient_id"]
    look_for_break_glass = usecases._break_glass_expiry

    def the_event_lands_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if member_count(db) == 0:
            assert SERVICE.create_worker(db=db).consumers[0].handle(envelope, QUEUE) is True
        return look_for_break_glass(*args, **kwargs)

    monkeypatch.setattr(usecases, "_break_glass_expiry", the_event_lands_meanwhile)
    first = decide(client, issuer, patient_id, "person-1")
    assert member_count(db) == 1  # the event did land in the middle of the decision
    assert (first["allowed"], first["patient_known"]) in [(False, False), (True, True)]
    again = decide(client, issuer, patient_id, "person-1")  # as the gateway asks again
    assert (again["allowed"], again["patient_known"], again["basis"]) == (True, True, "person")


def test_a_structure_member_gives_access_only_to_whoever_acts_as_that_structure(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = new_patient(db, "structure", "dac-1")
    acting = decide(client, issuer, patient_id, "person-2", act_as="dac-1")
    assert (acting["allowed"], acting["basis"], acting["holder_id"]) == (True, "structure", "dac-1")
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is False
    # Acting as a structure the token does not hold is refused outright.
    forged = client.get(
        "/api/internal/decision",
        params={"patient_id": patient_id},
        headers=auth(issuer, "person-2", "dac-1", structures=["hospital-9"]),
    )
    assert forged.status_code == 403


def test_the_decision_needs_a_valid_token_and_a_patient_uuid(service: Any, issuer: TestIssuer):
    client, _ = service
    assert client.get("/api/internal/decision", params={"patient_id": str(uuid.uuid4())}).status_code == 401
    bad = client.get("/api/internal/decision", params={"patient_id": "nope"}, headers=auth(issuer))
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_adding_a_habilitated_member_emits_added_then_granted_and_opens_access(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = new_patient(db)
    before = len(outbox(db))
    body = {
        "holder_kind": "person",
        "holder_id": "person-2",
        "roles": ["medecin_traitant", "intervenant"],
        "habilitated": True,
        "description": "Passe le mardi",
    }
    response = add(client, issuer, patient_id, body)
    assert response.status_code == 201, response.text
    member = response.json()
    assert member["roles"] == ["medecin_traitant", "intervenant"]
    assert member["habilitated"] and not member["auto_habilitation"]
    assert member["added_by"] == "person-1"
    assert response.headers["location"] == f"/api/patients/{patient_id}/circle/members/{member['id']}"

    added, granted = outbox(db)[before:]
    assert added["type"] == "CareCircleMemberAdded"
    assert added["data"]["roles"] == ["medecin_traitant", "intervenant"]
    assert "Passe le mardi" not in str(added)  # free text never leaves the service
    assert granted["type"] == "HabilitationGranted"
    assert granted["data"]["basis"] == "member" and granted["data"]["member_id"] == member["id"]
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is True
    members = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    assert [m["holder_id"] for m in members] == ["person-1", "person-2"]


def test_a_member_added_without_habilitation_is_listed_but_has_no_access(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    before = len(outbox(db))
    body = {"holder_kind": "structure", "holder_id": "saad-7", "roles": ["intervenant"]}
    response = add(client, issuer, patient_id, body)
    assert response.status_code == 201, response.text
    assert response.json()["habilitated"] is False
    assert types(outbox(db)[before:]) == ["CareCircleMemberAdded"]
    assert decide(client, issuer, patient_id, "person-2", act_as="dac-1")["allowed"] is False


def test_adding_the_same_holder_twice_is_a_conflict_and_changes_nothing(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    body = {"holder_kind": "person", "holder_id": "person-2", "roles": ["intervenant"]}
    assert add(client, issuer, patient_id, body).status_code == 201
    state = (member_count(db), len(outbox(db)))
    again = add(client, issuer, patient_id, {**body, "habilitated": True})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    owner_again = add(client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-1"})
    assert owner_again.status_code == 409
    assert (member_count(db), len(outbox(db))) == state


def test_adding_to_an_unknown_patient_is_not_found(service: Any, issuer: TestIssuer):
    client, db = service
    response = add(client, issuer, str(uuid.uuid4()), {"holder_kind": "person", "holder_id": "person-2"})
    assert response.status_code == 404
    assert (member_count(db), len(outbox(db))) == (0, 0)


def test_granting_then_revoking_emits_each_event_once_and_keeps_the_member_listed(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = new_patient(db)
    member = add(client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-2"}).json()
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}/habilitation"
    before = len(outbox(db))

    granted = client.post(path, headers=auth(issuer))
    assert granted.status_code == 200, granted.text
    assert granted.json()["habilitated"] is True
    assert client.post(path, headers=auth(issuer)).status_code == 200  # already: nothing new
    assert types(outbox(db)[before:]) == ["HabilitationGranted"]
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is True

    revoked = client.delete(path, headers=auth(issuer))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["habilitated"] is False
    assert client.delete(path, headers=auth(issuer)).status_code == 200  # already: nothing new
    events = outbox(db)[before:]
    assert types(events) == ["HabilitationGranted", "HabilitationRevoked"]
    assert events[1]["data"] == {
        "patient_id": patient_id,
        "member_id": member["id"],
        "holder_kind": "person",
        "holder_id": "person-2",
    }
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is False
    members = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    assert {m["holder_id"]: m["habilitated"] for m in members} == {"person-1": True, "person-2": False}


def test_a_revoked_member_can_no_longer_read_or_change_the_circle(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    member = add(
        client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-2", "habilitated": True}
    ).json()
    assert (
        client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer, "person-2")).status_code == 200
    )
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}/habilitation"
    assert client.delete(path, headers=auth(issuer)).status_code == 200
    assert (
        client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer, "person-2")).status_code == 403
    )
    assert client.post(path, headers=auth(issuer, "person-2")).status_code == 403  # no self re-grant


def test_removing_a_habilitated_member_revokes_then_removes(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    member = add(
        client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-2", "habilitated": True}
    ).json()
    before = len(outbox(db))
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}"
    response = client.delete(path, headers=auth(issuer))
    assert response.status_code == 204, response.text
    assert response.content == b""  # no body at all: a server would refuse to send one
    events = outbox(db)[before:]
    assert types(events) == ["HabilitationRevoked", "CareCircleMemberRemoved"]
    assert events[1]["data"]["member_id"] == member["id"]
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is False
    members = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    assert [m["holder_id"] for m in members] == ["person-1"]
    assert client.delete(path, headers=auth(issuer)).status_code == 404


def test_removing_a_member_without_habilitation_emits_only_removed(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    member = add(client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-2"}).json()
    before = len(outbox(db))
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}"
    assert client.delete(path, headers=auth(issuer)).status_code == 204
    assert types(outbox(db)[before:]) == ["CareCircleMemberRemoved"]


def test_the_last_habilitated_member_is_kept(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    (owner,) = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    state = (member_count(db), len(outbox(db)))
    base = f"/api/patients/{patient_id}/circle/members/{owner['id']}"
    assert client.delete(base + "/habilitation", headers=auth(issuer)).status_code == 409
    assert client.delete(base, headers=auth(issuer)).status_code == 409
    assert (member_count(db), len(outbox(db))) == state
    # Once someone else is habilitated, the creator may step back.
    add(client, issuer, patient_id, {"holder_kind": "structure", "holder_id": "dac-1", "habilitated": True})
    assert client.delete(base + "/habilitation", headers=auth(issuer)).status_code == 200
    assert decide(client, issuer, patient_id, "person-1")["allowed"] is False
    assert decide(client, issuer, patient_id, "person-1", act_as="dac-1")["basis"] == "structure"


def test_a_member_the_patient_refused_sharing_with_cannot_be_habilitated(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    body = {"holder_kind": "person", "holder_id": "person-2", "refused_information_sharing": True}
    member = add(client, issuer, patient_id, body).json()
    before = len(outbox(db))
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}/habilitation"
    assert client.post(path, headers=auth(issuer)).status_code == 409
    assert len(outbox(db)) == before
    assert decide(client, issuer, patient_id, "person-2")["allowed"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"holder_kind": "robot"}, "holder_kind"),
        ({"holder_kind": None}, "holder_kind"),
        ({"holder_id": ""}, "holder_id"),
        ({"holder_id": "   "}, "holder_id"),
        ({"roles": ["chef"]}, "roles"),
        ({"roles": "intervenant"}, "roles"),
        ({"habilitated": "yes"}, "habilitated"),
        ({"description": "x" * 1001}, "description"),
        ({"name": "Dupont"}, "name"),
        ({"holder_kind": "structure", "roles": ["medecin_traitant"]}, "roles"),
        ({"habilitated": True, "refused_information_sharing": True}, "habilitated"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    service: Any, issuer: TestIssuer, change: dict[str, Any], field: str
):
    client, db = service
    patient_id = new_patient(db)
    state = (member_count(db), len(outbox(db)))
    valid = {"holder_kind": "person", "holder_id": "person-2", "roles": ["intervenant"]}
    body = {k: v for k, v in {**valid, **change}.items() if v is not None}
    response = add(client, issuer, patient_id, body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert field in problem["detail"] or problem.get("field") == field
    assert (member_count(db), len(outbox(db))) == state


def test_a_non_member_cannot_see_or_change_the_circle(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    (owner,) = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    state = (member_count(db), len(outbox(db)))
    outsider = auth(issuer, "person-2")
    assert client.get(f"/api/patients/{patient_id}/circle", headers=outsider).status_code == 403
    refused = add(client, issuer, patient_id, {"holder_kind": "person", "holder_id": "person-2"}, "person-2")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    base = f"/api/patients/{patient_id}/circle/members/{owner['id']}"
    assert client.delete(base + "/habilitation", headers=outsider).status_code == 403
    assert client.delete(base, headers=outsider).status_code == 403
    assert (member_count(db), len(outbox(db))) == state


def test_a_person_changes_the_circle_of_a_structure_s_file_only_while_acting_for_it(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = new_patient(db, "structure", "dac-1")
    body = {"holder_kind": "person", "holder_id": "person-3", "roles": ["coordinateur"]}
    path = f"/api/patients/{patient_id}/circle/members"
    assert client.post(path, json=body, headers=auth(issuer, "person-2")).status_code == 403
    response = client.post(path, json=body, headers=auth(issuer, "person-2", "dac-1"))
    assert response.status_code == 201, response.text
    assert response.json()["added_by"] == "person-2"


def test_unknown_members_and_patients_are_not_found(service: Any, issuer: TestIssuer):
    client, db = service
    patient_id = new_patient(db)
    other = new_patient(db, "person", "person-2")
    (theirs,) = client.get(f"/api/patients/{other}/circle", headers=auth(issuer, "person-2")).json()[
        "members"
    ]
    missing = f"/api/patients/{patient_id}/circle/members/{uuid.uuid4()}"
    assert client.get(missing, headers=auth(issuer)).status_code == 404
    assert client.post(missing + "/habilitation", headers=auth(issuer)).status_code == 404
    # A member of another patient's circle is not reachable through this patient's path.
    foreign = f"/api/patients/{patient_id}/circle/members/{theirs['id']}"
    assert client.delete(foreign, headers=auth(issuer)).status_code == 404
    assert client.get(f"/api/patients/{uuid.uuid4()}/circle", headers=auth(issuer)).status_code == 404
    assert client.get(f"/api/patients/{patient_id}/circle").status_code == 401


def test_registered_persons_are_named_in_the_circle_and_an_older_event_never_wins(
    service: Any, issuer: TestIssuer
):
    client, db = service
    patient_id = new_patient(db)
    consumer = SERVICE.create_worker(db=db).consumers[0]
    now = datetime.now(UTC)

    def registered(name: str, at: datetime) -> dict[str, Any]:
        # Built by hand: identity publishes UserRegistered's schema, not cercle.
        return {
            "id": str(uuid.uuid4()),
            "type": "UserRegistered",
            "version": 1,
            "occurred_at": at.isoformat(),
            "producer": "identity",
            "subject": "person-1",
            "actor": None,
            "traceparent": None,
            "data": {
                "person_id": "person-1",
                "display_name": name,
                "structures": ["dac-1"],
                "profession": "10",
            },
        }

    assert consumer.handle(registered("Dr Marie CURIE", now), "cercle.identity.events") is True
    assert consumer.handle(registered("Ancien nom", now - timedelta(minutes=5)), "cercle.identity.events")
    (owner,) = client.get(f"/api/patients/{patient_id}/circle", headers=auth(issuer)).json()["members"]
    assert (owner["display_name"], owner["profession"]) == ("Dr Marie CURIE", "10")
