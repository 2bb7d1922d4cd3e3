"""Who reaches a file, through which path, and for how long: the decision, delegation,
refused sharing, break-the-glass with a controlled clock, bulk changes, manual adds and
invitations — on a real database, through the contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cercle import usecases
from cercle.app import SERVICE
from cercle.clock import Clock
from chassis.events import make_envelope, validate
from chassis.web import context_of
from tests.support.issuer import TestIssuer

QUEUE = "cercle.events"
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class Running:
    client: Any
    db: Any
    clock: Clock
    issuer: TestIssuer

    def consume(self, envelope: dict[str, Any]) -> bool:
        return bool(SERVICE.create_worker(db=self.db).consumers[0].handle(envelope, QUEUE))

    def headers(
        self, sub: str, act_as: str | None = None, act_for: str | None = None, **claims: Any
    ) -> dict[str, str]:
        token = self.issuer.mint(sub, extra_claims={"structures": ["dac-1"], **claims})
        headers = {"Authorization": "Bearer " + token}
        if act_as:
            headers["X-Act-As"] = act_as
        if act_for:
            headers["X-Act-For"] = act_for
        return headers

    def decide(
        self, patient_id: str, sub: str, act_as: str | None = None, act_for: str | None = None, **claims: Any
    ) -> Any:
        response = self.client.get(
            "/api/internal/decision",
            params={"patient_id": patient_id},
            headers=self.headers(sub, act_as, act_for, **claims),
        )
        assert response.status_code == 200, response.text
        return response.json()

    def new_patient(self, owner_kind: str = "person", owner_id: str = "person-1") -> str:
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
        assert self.consume(envelope)
        return patient_id

    def add(self, patient_id: str, body: dict[str, Any], sub: str = "person-1", **kw: Any) -> Any:
        return self.client.post(
            f"/api/patients/{patient_id}/circle/members", json=body, headers=self.headers(sub, **kw)
        )

    def outbox(self) -> list[dict[str, Any]]:
        with self.db.session_factory() as s:
            envelopes = list(s.scalars(select(self.db.outbox.c.envelope).order_by(self.db.outbox.c.position)))
        for envelope in envelopes:
            validate(envelope)
        return envelopes

    def count(self, table: str) -> int:
        with self.db.session_factory() as s:
            return int(s.scalar(select(func.count()).select_from(self.db.metadata.tables[table])) or 0)


def _running(request: pytest.FixtureRequest, issuer: TestIssuer) -> Iterator[Running]:
    settings = SERVICE.settings()
    if request.param == "postgresql":
        settings = replace(settings, database_url=request.getfixturevalue("postgres_database"))
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    app = SERVICE.create_app(settings, db)
    clock: Clock = context_of(app).extras["clock"]
    clock.set(T0)
    yield Running(app.test_client(), db, clock, issuer)
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Running]:
    yield from _running(request, issuer)


@pytest.fixture(params=["sqlite"])
def svc(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Running]:
    yield from _running(request, issuer)


def types(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in envelopes]


def delegation_event(
    kind: str, delegation_id: str, grantor: str, delegate: str, **data: Any
) -> dict[str, Any]:
    base = {"delegation_id": delegation_id, "grantor_id": grantor, "delegate_id": delegate}
    if kind == "DelegationGranted":
        base |= {"scopes": ["dossiers"], "ends_on": None}
    else:
        base |= {"cause": "revoked"}
    return make_envelope(
        event_type=kind, producer="identity", subject=delegation_id, actor=grantor, data={**base, **data}
    )


GLASS = {
    "reason_code": "urgence_vitale",
    "reason_text": "Chute, patient inconscient",
    "found_via": "identity_vigilance",
}


def break_glass(run: Running, patient_id: str, sub: str, **body: Any) -> Any:
    payload = {"patient_id": patient_id, **GLASS, "confirmed": True, **body}
    return run.client.post("/api/break-glass", json=payload, headers=run.headers(sub))


# -- delegation --------------------------------------------------------------------------


def test_a_delegate_acts_for_a_habilitated_grantor_until_revocation_or_the_end_date(both: Running):
    run = both
    grantor, delegate, other = (str(uuid.uuid4()) for _ in range(3))
    patient_id = run.new_patient("person", grantor)
    # Without a delegation, acting for the grantor opens nothing.
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False

    first = str(uuid.uuid4())
    assert run.consume(delegation_event("DelegationGranted", first, grantor, delegate, ends_on="2026-03-12"))
    decision = run.decide(patient_id, delegate, act_for=grantor)
    assert (decision["allowed"], decision["basis"], decision["holder_id"]) == (True, "delegation", grantor)
    assert datetime.fromisoformat(decision["expires_at"]) == datetime(2026, 3, 12, 23, 0, tzinfo=UTC)
    assert decision["max_age_s"] == 1  # a revocation in identity bites within a second
    # The delegate itself (not acting for the grantor) has no access; nor has anyone else.
    assert run.decide(patient_id, delegate)["allowed"] is False
    assert run.decide(patient_id, other, act_for=grantor)["allowed"] is False
    # A delegate changes the circle in the grantor's name, and is recorded as such.
    added = run.add(
        patient_id, {"holder_kind": "person", "holder_id": "person-7"}, sub=delegate, act_for=grantor
    )
    assert added.status_code == 201, added.text
    assert (added.json()["added_by"], added.json()["added_for"]) == (delegate, grantor)
    # Every event of that change says so too (ID-6: recorded in every change).
    (event,) = [
        e
        for e in run.outbox()
        if e["type"] == "CareCircleMemberAdded" and e["data"]["holder_id"] == "person-7"
    ]
    assert (event["actor"], event["acting_for"]) == (delegate, grantor)
    assert all("acting_for" not in e for e in run.outbox() if e["actor"] != delegate)

    # The end date is honoured at decision time, before identity says anything.
    run.clock.set(datetime(2026, 3, 12, 23, 0, tzinfo=UTC))
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False
    run.clock.set(T0)

    assert run.consume(delegation_event("DelegationRevoked", first, grantor, delegate))
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False

    # Out of order: the revocation arrives before its grant; the grant must not reopen it.
    second = str(uuid.uuid4())
    assert run.consume(delegation_event("DelegationRevoked", second, grantor, delegate))
    assert run.consume(delegation_event("DelegationGranted", second, grantor, delegate))
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False

    # A discussions-only delegation does not open files.
    third = str(uuid.uuid4())
    assert run.consume(
        delegation_event("DelegationGranted", third, grantor, delegate, scopes=["discussions"])
    )
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False


def test_acting_for_a_grantor_and_a_structure_at_once_is_refused(svc: Running):
    patient_id = svc.new_patient("structure", "dac-1")
    response = svc.client.get(
        "/api/internal/decision",
        params={"patient_id": patient_id},
        headers=svc.headers("person-2", act_as="dac-1", act_for="person-1"),
    )
    assert response.status_code == 400
    assert response.json()["field"] == "X-Act-For"


# -- refused information sharing -------------------------------------------------------------


def test_the_patient_s_refusal_closes_every_path_that_names_the_member(both: Running):
    run = both
    grantor, delegate = str(uuid.uuid4()), str(uuid.uuid4())
    patient_id = run.new_patient()  # person-1 owns it
    for holder_kind, holder_id in (("person", "person-2"), ("structure", "dac-1"), ("person", grantor)):
        body = {"holder_kind": holder_kind, "holder_id": holder_id, "habilitated": True}
        assert run.add(patient_id, body).status_code == 201
    run.consume(delegation_event("DelegationGranted", str(uuid.uuid4()), grantor, delegate))
    assert run.decide(patient_id, "person-2")["basis"] == "person"
    assert run.decide(patient_id, "person-3", act_as="dac-1")["basis"] == "structure"
    assert run.decide(patient_id, delegate, act_for=grantor)["basis"] == "delegation"

    members = run.client.get(f"/api/patients/{patient_id}/circle", headers=run.headers("person-1")).json()
    ids = {m["holder_id"]: m["id"] for m in members["members"]}
    before = len(run.outbox())
    for holder_id in ("person-2", "dac-1", grantor):
        path = f"/api/patients/{patient_id}/circle/members/{ids[holder_id]}"
        changed = run.client.patch(
            path, json={"refused_information_sharing": True}, headers=run.headers("person-1")
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["refused_information_sharing"], changed.json()["habilitated"]) == (True, False)
    # Read models (gateway cache, other services) drop each at once.
    emitted = run.outbox()[before:]
    assert types(emitted) == ["HabilitationRevoked", "InformationSharingRefused"] * 3
    assert {e["data"]["holder_id"] for e in emitted} == {"person-2", "dac-1", grantor}

    assert run.decide(patient_id, "person-2")["allowed"] is False
    assert run.decide(patient_id, "person-3", act_as="dac-1")["allowed"] is False
    assert run.decide(patient_id, delegate, act_for=grantor)["allowed"] is False
    # person-2 acting for a structure that is habilitated is still refused: the path names person-2.
    assert (
        run.add(
            patient_id, {"holder_kind": "structure", "holder_id": "saad-1", "habilitated": True}
        ).status_code
        == 201
    )
    assert run.decide(patient_id, "person-2", act_as="saad-1", structures=["saad-1"])["allowed"] is False
    # ... and may not break the glass either.
    refused = break_glass(run, patient_id, "person-2")
    assert refused.status_code == 403
    # Granting again is refused while the refusal stands.
    grant = run.client.post(
        f"/api/patients/{patient_id}/circle/members/{ids['person-2']}/habilitation",
        headers=run.headers("person-1"),
    )
    assert grant.status_code == 409


def test_the_refusal_cannot_strip_the_last_habilitated_member(svc: Running):
    patient_id = svc.new_patient()
    (owner,) = svc.client.get(f"/api/patients/{patient_id}/circle", headers=svc.headers("person-1")).json()[
        "members"
    ]
    path = f"/api/patients/{patient_id}/circle/members/{owner['id']}"
    before = len(svc.outbox())
    refused = svc.client.patch(
        path, json={"refused_information_sharing": True}, headers=svc.headers("person-1")
    )
    assert refused.status_code == 409
    assert len(svc.outbox()) == before
    member = svc.client.get(path, headers=svc.headers("person-1")).json()
    assert (member["refused_information_sharing"], member["habilitated"]) == (False, True)


def test_editing_a_member_keeps_free_text_out_of_events(svc: Running):
    patient_id = svc.new_patient()
    member = svc.add(
        patient_id, {"holder_kind": "person", "holder_id": "person-2", "roles": ["intervenant"]}
    ).json()
    path = f"/api/patients/{patient_id}/circle/members/{member['id']}"
    before = len(svc.outbox())
    body = {
        "roles": ["medecin_traitant", "coordinateur"],
        "establishment": "CH Lyon Sud",
        "unit": "Gériatrie",
        "function": "Praticien",
        "phone": "04 78 00 00 00",
        "description": "Joignable le matin",
    }
    changed = svc.client.patch(path, json=body, headers=svc.headers("person-1"))
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in body} == body
    assert len(svc.outbox()) == before
    bad = svc.client.patch(path, json={"roles": ["chef"]}, headers=svc.headers("person-1"))
    assert bad.status_code == 400
    assert svc.client.patch(path, json={"unit": "x"}, headers=svc.headers("person-2")).status_code == 403


# -- break-the-glass -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # The domain tests hold every case; these show the HTTP answer and that nothing is kept.
        ({"reason_text": "  "}, "reason_text"),
        ({"confirmed": False}, "confirmed"),
        ({"confirmed": None}, "confirmed"),
    ],
)
def test_no_break_the_glass_without_a_reason_and_a_second_confirmation(
    svc: Running, change: dict[str, Any], field: str
):
    patient_id = svc.new_patient()
    before = (svc.count("break_glass_grants"), len(svc.outbox()))
    payload = {
        k: v
        for k, v in {"patient_id": patient_id, **GLASS, "confirmed": True, **change}.items()
        if v is not None
    }
    response = svc.client.post("/api/break-glass", json=payload, headers=svc.headers("person-9"))
    assert response.status_code in (400, 422), response.text
    problem = response.json()
    assert problem.get("field") == field or field in problem["detail"]
    assert (svc.count("break_glass_grants"), len(svc.outbox())) == before
    assert svc.decide(patient_id, "person-9")["allowed"] is False


def test_break_the_glass_opens_for_exactly_two_hours_and_notifies_the_habilitated(both: Running):
    run = both
    patient_id = run.new_patient()
    run.add(patient_id, {"holder_kind": "structure", "holder_id": "dac-1", "habilitated": True})
    run.add(patient_id, {"holder_kind": "person", "holder_id": "person-5"})  # listed, not habilitated
    before = len(run.outbox())

    granted = break_glass(run, patient_id, "person-9")
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    assert datetime.fromisoformat(grant["expires_at"]) == T0 + timedelta(hours=2)
    (event,) = run.outbox()[before:]
    assert event["type"] == "BreakGlassAccessGranted"
    assert event["data"]["reason_code"] == "urgence_vitale"
    assert {(h["kind"], h["id"]) for h in event["data"]["habilitated"]} == {
        ("person", "person-1"),
        ("structure", "dac-1"),
    }
    assert "inconscient" not in str(event)  # the free text stays in cercle

    decision = run.decide(patient_id, "person-9")
    assert (decision["allowed"], decision["basis"], decision["max_age_s"]) == (True, "break_glass", 1)
    run.clock.set(T0 + timedelta(hours=1, minutes=59, seconds=59, milliseconds=500))
    late = run.decide(patient_id, "person-9")
    assert (late["allowed"], late["max_age_s"]) == (True, 0)  # never cached past the end
    run.clock.set(T0 + timedelta(hours=2))
    assert run.decide(patient_id, "person-9")["allowed"] is False

    # The worker's job records the end once, however often it runs.
    job = usecases.BreakGlassExpiry(run.db, run.clock)
    assert job.tick() == 1
    assert job.tick() == 0
    ended = [e for e in run.outbox() if e["type"] == "BreakGlassAccessEnded"]
    assert len(ended) == 1
    assert ended[0]["data"]["cause"] == "expired"
    assert datetime.fromisoformat(ended[0]["data"]["ended_at"]) == T0 + timedelta(hours=2)
    mine = run.client.get("/api/break-glass", headers=run.headers("person-9")).json()["grants"]
    assert [(g["active"], g["end_cause"]) for g in mine] == [(False, "expired")]


def test_a_break_the_glass_holder_reads_the_circle_but_changes_nothing(svc: Running):
    patient_id = svc.new_patient()
    other = svc.add(
        patient_id, {"holder_kind": "person", "holder_id": "person-5", "habilitated": True}
    ).json()
    assert break_glass(svc, patient_id, "person-9").status_code == 201
    holder = svc.headers("person-9")
    assert svc.client.get(f"/api/patients/{patient_id}/circle", headers=holder).status_code == 200
    state = (svc.count("members"), len(svc.outbox()))
    base = f"/api/patients/{patient_id}/circle/members"
    attempts = [
        svc.client.post(
            base, json={"holder_kind": "person", "holder_id": "person-9", "habilitated": True}, headers=holder
        ),
        svc.client.delete(f"{base}/{other['id']}", headers=holder),
        svc.client.delete(f"{base}/{other['id']}/habilitation", headers=holder),
        svc.client.patch(f"{base}/{other['id']}", json={"unit": "x"}, headers=holder),
    ]
    for response in attempts:
        assert response.status_code == 403, response.text
        assert "bris de glace" in response.json()["detail"]
    assert (svc.count("members"), len(svc.outbox())) == state
    # A second grant while one runs, or a grant to someone already habilitated, is refused.
    assert break_glass(svc, patient_id, "person-9").status_code == 409
    assert break_glass(svc, patient_id, "person-5").status_code == 409
    assert break_glass(svc, str(uuid.uuid4()), "person-8").status_code == 404


def test_the_holder_may_end_early_and_super_users_review_their_structure_s_grants(svc: Running):
    patient_id = svc.new_patient()
    grant = svc.client.post(
        "/api/break-glass",
        json={"patient_id": patient_id, **GLASS, "confirmed": True},
        headers=svc.headers("person-9", act_as="dac-1"),
    ).json()
    assert grant["structure_id"] == "dac-1"
    path = f"/api/break-glass/{grant['id']}"
    assert svc.client.delete(path, headers=svc.headers("person-8")).status_code == 404  # not theirs
    svc.clock.advance(timedelta(minutes=10))
    ended = svc.client.delete(path, headers=svc.headers("person-9"))
    assert ended.status_code == 200, ended.text
    assert (ended.json()["active"], ended.json()["end_cause"]) == (False, "ended")
    assert svc.decide(patient_id, "person-9")["allowed"] is False
    assert svc.client.delete(path, headers=svc.headers("person-9")).status_code == 200  # already: nothing new
    assert types(svc.outbox()).count("BreakGlassAccessEnded") == 1
    assert usecases.BreakGlassExpiry(svc.db, Clock(T0 + timedelta(hours=3))).tick() == 0

    review = svc.client.get(
        "/api/break-glass/review", headers=svc.headers("person-1", act_as="dac-1", roles=["super_user"])
    )
    assert review.status_code == 200, review.text
    (seen,) = review.json()["grants"]
    assert (seen["person_id"], seen["reason_code"], seen["reason_text"]) == (
        "person-9",
        "urgence_vitale",
        GLASS["reason_text"],
    )
    plain = svc.client.get("/api/break-glass/review", headers=svc.headers("person-1", act_as="dac-1"))
    assert plain.status_code == 403


# -- bulk (CER-9) ------------------------------------------------------------------------------


def bulk(run: Running, body: dict[str, Any], sub: str = "person-1", **kw: Any) -> Any:
    return run.client.post("/api/circles/bulk", json=body, headers=run.headers(sub, **kw))


def test_bulk_is_all_or_nothing_with_a_result_per_patient(both: Running):
    run = both
    mine = [run.new_patient() for _ in range(3)]
    theirs = run.new_patient("person", "person-4")
    state = (run.count("members"), len(run.outbox()))
    add = {
        "action": "add",
        "holder_kind": "person",
        "holder_id": "person-2",
        "roles": ["intervenant"],
        "habilitated": True,
    }

    unknown = str(uuid.uuid4())
    refused = bulk(run, {**add, "patient_ids": [*mine, theirs, unknown]})
    assert refused.status_code == 403
    assert sorted(refused.json()["patients"]) == sorted([theirs, unknown])
    assert (run.count("members"), len(run.outbox())) == state

    done = bulk(run, {**add, "patient_ids": mine})
    assert done.status_code == 200, done.text
    assert [(r["patient_id"], r["outcome"]) for r in done.json()["results"]] == [(p, "added") for p in mine]
    assert types(run.outbox()[state[1] :]) == ["CareCircleMemberAdded", "HabilitationGranted"] * 3
    assert all(run.decide(p, "person-2")["allowed"] for p in mine)

    # Revoking person-1 everywhere is fine (person-2 stays); on theirs it would be refused.
    revoke = {
        "action": "revoke_habilitation",
        "holder_kind": "person",
        "holder_id": "person-2",
        "patient_ids": mine,
    }
    again = bulk(run, {**add, "patient_ids": mine})
    assert {r["outcome"] for r in again.json()["results"]} == {"unchanged"}
    assert {r["outcome"] for r in bulk(run, revoke).json()["results"]} == {"revoked"}
    assert not any(run.decide(p, "person-2")["allowed"] for p in mine)

    # The last habilitated member on one patient: the whole request is refused.
    run.add(mine[0], {"holder_kind": "structure", "holder_id": "dac-1", "habilitated": True})
    state = (run.count("members"), len(run.outbox()))
    remove_me = {"action": "remove", "holder_kind": "person", "holder_id": "person-1", "patient_ids": mine}
    conflict = bulk(run, remove_me)
    assert conflict.status_code == 409
    assert sorted(conflict.json()["patients"]) == sorted(mine[1:])
    assert (run.count("members"), len(run.outbox())) == state
    assert all(run.decide(p, "person-1")["allowed"] for p in mine)

    removed = bulk(run, {**remove_me, "patient_ids": [mine[0]]})
    assert [r["outcome"] for r in removed.json()["results"]] == ["removed"]
    assert run.decide(mine[0], "person-1")["allowed"] is False


def test_a_break_the_glass_holder_cannot_bulk_change(svc: Running):
    patient_id = svc.new_patient()
    assert break_glass(svc, patient_id, "person-9").status_code == 201
    body = {
        "action": "add",
        "holder_kind": "person",
        "holder_id": "person-9",
        "habilitated": True,
        "patient_ids": [patient_id],
    }
    response = bulk(svc, body, sub="person-9")
    assert response.status_code == 403
    assert response.json()["patients"] == [patient_id]


# -- manual add (CER-5) and invitations (CER-6) ----------------------------------------------


def test_a_manual_professional_who_should_access_is_sent_to_the_directory_and_never_habilitated(svc: Running):
    patient_id = svc.new_patient()
    path = f"/api/patients/{patient_id}/circle/manual-members"
    missing = svc.client.post(
        path,
        json={"professional": True, "should_access": True, "last_name": "Martin"},
        headers=svc.headers("person-1"),
    )
    assert missing.status_code == 422
    assert missing.json()["field"] == "first_name"
    before = len(svc.outbox())
    body = {
        "professional": True,
        "should_access": True,
        "last_name": "Martin",
        "first_name": "Léa",
        "city": "Lyon",
        "profession": "Infirmière",
        "email": "lea.martin@example.org",
        "roles": ["intervenant"],
    }
    created = svc.client.post(path, json=body, headers=svc.headers("person-1"))
    assert created.status_code == 201, created.text
    member = created.json()
    assert (member["source"], member["display_name"], member["habilitated"]) == (
        "manual",
        "Léa Martin",
        False,
    )
    added, requested = svc.outbox()[before:]
    assert added["type"] == "CareCircleMemberAdded"
    assert "Martin" not in str(added)
    assert requested["type"] == "DirectoryEntryRequested"
    assert requested["data"]["request_id"] == member["manual"]["directory_request_id"]
    assert (requested["data"]["last_name"], requested["data"]["city"]) == ("Martin", "Lyon")
    assert patient_id not in str(requested)  # nothing about the patient
    grant = svc.client.post(
        f"/api/patients/{patient_id}/circle/members/{member['id']}/habilitation",
        headers=svc.headers("person-1"),
    )
    assert grant.status_code == 409
    # A family carer: no directory request.
    carer = svc.client.post(
        path,
        json={"professional": False, "last_name": "Dupont", "roles": ["aidant_principal"]},
        headers=svc.headers("person-1"),
    )
    assert carer.status_code == 201
    assert types(svc.outbox()[before + 2 :]) == ["CareCircleMemberAdded"]


def test_an_invited_colleague_joins_the_circle_when_registering(svc: Running):
    patient_id = svc.new_patient()
    path = f"/api/patients/{patient_id}/circle/invitations"
    before = len(svc.outbox())
    sent = svc.client.post(
        path,
        json={"email": "Paul.Roux@Example.org", "roles": ["intervenant"]},
        headers=svc.headers("person-1"),
    )
    assert sent.status_code == 201, sent.text
    (event,) = svc.outbox()[before:]
    assert event["type"] == "CareCircleInvitationSent"
    assert event["data"]["email"] == "paul.roux@example.org"
    assert (
        svc.client.post(
            path, json={"email": "paul.roux@example.org"}, headers=svc.headers("person-1")
        ).status_code
        == 409
    )
    assert (
        svc.client.post(path, json={"email": "x@example.org"}, headers=svc.headers("person-5")).status_code
        == 403
    )

    person_id = str(uuid.uuid4())
    registered = make_envelope(
        event_type="UserRegistered",
        producer="identity",
        subject=person_id,
        actor=None,
        data={
            "person_id": person_id,
            "display_name": "Paul Roux",
            "email": "paul.roux@example.org",
            "structures": [],
            "profession": "60",
            "medical": True,
            "roles": ["user"],
        },
    )
    assert svc.consume(registered)
    added, accepted = svc.outbox()[before + 1 :]
    assert (added["type"], added["data"]["holder_id"], added["data"]["habilitated"]) == (
        "CareCircleMemberAdded",
        person_id,
        False,
    )
    assert accepted["type"] == "CareCircleInvitationAccepted"
    assert (accepted["data"]["person_id"], accepted["data"]["invited_by"]) == (person_id, "person-1")
    assert svc.decide(patient_id, person_id)["allowed"] is False  # listed, not habilitated
    invitations = svc.client.get(path, headers=svc.headers("person-1")).json()["invitations"]
    assert invitations[0]["accepted_by"] == person_id
    # The same registration replayed with a new id changes nothing.
    assert svc.consume({**registered, "id": str(uuid.uuid4())})
    assert len(svc.outbox()) == before + 3
    # Now registered: inviting the address again points to the directory.
    known = svc.client.post(path, json={"email": "paul.roux@example.org"}, headers=svc.headers("person-1"))
    assert (known.status_code, known.json()["person_id"]) == (409, person_id)


def test_the_worker_s_background_job_ends_expired_grants_by_itself(svc: Running):
    import threading
    import time

    from chassis.db import utcnow

    # Granted now; the worker's job and the web app of one process read the same clock.
    svc.clock.set(utcnow())
    patient_id = svc.new_patient()
    assert break_glass(svc, patient_id, "person-9").status_code == 201
    worker = SERVICE.create_worker(db=svc.db)
    (job,) = worker.background
    stop = threading.Event()
    thread = threading.Thread(target=job, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # a few rounds of the job: the grant still runs
        assert "BreakGlassAccessEnded" not in types(svc.outbox())
        svc.clock.advance(timedelta(hours=2))
        deadline = time.monotonic() + 10
        while "BreakGlassAccessEnded" not in types(svc.outbox()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    assert types(svc.outbox()).count("BreakGlassAccessEnded") == 1
