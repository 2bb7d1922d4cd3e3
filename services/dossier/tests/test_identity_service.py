"""Identity vigilance, RNIV identity and consent through the dossier contract (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from chassis.events import validate
from dossier.app import SERVICE
from tests.support.issuer import TestIssuer
from tests.support.services import bearer, service_under_test

MARIE = {
    "birth_name": "Dupont",
    "first_name": "Marie",
    "birth_date": "1950-03-12",
    "sex": "F",
    "birth_place": "75056",
    "used_name": "Martin",
    "mobile": "0612345678",
    "email": "marie@example.org",
    "consent": {"attested": True, "given_by": "patient"},
}
PAUL = {
    "birth_name": "Leroy",
    "first_name": "Paul",
    "birth_date": "1950-03-12",
    "sex": "M",
    "birth_place": "69123",
    "consent": {"attested": True, "given_by": "patient"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


@pytest.fixture(params=["sqlite"])
def sqlite_service(request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any) -> Iterator[Any]:
    yield from service_under_test(SERVICE, request)


def search_body(**changes: Any) -> dict[str, Any]:
    body = {k: MARIE[k] for k in ("birth_name", "first_name", "birth_date", "sex", "birth_place")}
    body.update(changes)
    return body


def outbox(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))


def count(db: Any, table: str) -> int:
    with db.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(db.metadata.tables[table])) or 0)


TYPING_DIFFERENCES = [
    ({"birth_name": "Dupond"}, "phonetic"),
    ({"first_name": "Marié"}, "accents_or_separators"),
    ({"birth_name": "Martin"}, "exact"),  # the used (married) name
    ({"birth_name": "Marie", "first_name": "Dupont"}, "swapped_exact"),
    ({"birth_date": "1950-12-03"}, "day_month_swapped"),
    ({"birth_date": "1950-03-13", "birth_name": "Dupond"}, "one_digit_off"),
    ({"birth_date": "1900-01-01"}, "placeholder"),
]


def test_identity_search_finds_a_known_patient_despite_typing_differences(
    service: Any, issuer: TestIssuer
) -> None:
    client, _ = service
    mine = client.post("/api/patients", json=MARIE, headers=bearer(issuer, "person-1")).json()
    client.post("/api/patients", json=PAUL, headers=bearer(issuer, "person-1"))
    for typed, how in TYPING_DIFFERENCES:
        response = client.post(
            "/api/patients/identity-search", json=search_body(**typed), headers=bearer(issuer)
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert [c["patient_id"] for c in result["candidates"]] == [mine["id"]], typed  # Paul: same date only
        assert how in {r["match"] for r in result["candidates"][0]["reasons"]}, typed
        assert result["candidates"][0]["identity_status"] == "PROV"
    nobody = client.post(
        "/api/patients/identity-search",
        json=search_body(birth_name="Zylberstein", first_name="Ophélie"),
        headers=bearer(issuer),
    ).json()
    assert nobody == {**nobody, "candidates": [], "strong_candidate": False}


def test_a_candidate_the_caller_is_not_habilitated_on_shows_minimal_identity_and_offers_break_the_glass(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    client, _ = sqlite_service
    client.post("/api/patients", json=MARIE, headers=bearer(issuer, "person-1", structures=[]))
    mine = client.post(
        "/api/patients/identity-search", json=search_body(), headers=bearer(issuer, "person-1")
    ).json()
    theirs = client.post(
        "/api/patients/identity-search", json=search_body(), headers=bearer(issuer, "person-2")
    ).json()
    (own,) = mine["candidates"]
    (other,) = theirs["candidates"]
    assert own["habilitated"] is True and own["action"] == "open" and own["mobile"] == "0612345678"
    assert other["habilitated"] is False and other["action"] == "break_the_glass"
    assert "mobile" not in other and "email" not in other
    assert other["birth_name"] == "DUPONT" and other["used_name"] == "MARTIN"


def test_creating_over_a_strong_candidate_needs_an_explicit_confirmation_recorded_on_the_file(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    first = client.post("/api/patients", json=MARIE, headers=bearer(issuer)).json()
    again = {**MARIE, "birth_name": "Dupond", "used_name": None}
    del again["used_name"]
    refused = client.post("/api/patients", json=again, headers=bearer(issuer, "person-2"))
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["field"] == "confirm_despite_candidates"
    assert [c["patient_id"] for c in problem["candidates"]] == [first["id"]]
    assert count(db, "patients") == 1 and len(outbox(db)) == 1  # nothing written

    created = client.post(
        "/api/patients",
        json={**again, "confirm_despite_candidates": True},
        headers=bearer(issuer, "person-2"),
    )
    assert created.status_code == 201, created.text
    assert created.json()["confirmed_despite_candidates"] is True
    history = client.get(
        f"/api/patients/{created.json()['id']}/identity/history", headers=bearer(issuer)
    ).json()
    assert history["items"][0]["changes"]["confirmed_despite_candidates"] == [None, [first["id"]]]


def test_a_placeholder_keeps_prov_and_flags_the_file_incomplete_until_fixed(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    client, _ = sqlite_service
    body = {**PAUL, "birth_date": "1900-01-01", "birth_place": "99999"}
    patient = client.post("/api/patients", json=body, headers=bearer(issuer)).json()
    assert patient["incomplete"] is True and patient["identity_status"] == "PROV"
    refused = client.post(
        f"/api/patients/{patient['id']}/identity/document-check",
        json={"document": "passport"},
        headers=bearer(issuer),
    )
    assert refused.status_code == 422 and refused.json()["field"] == "document"
    fixed = client.patch(
        f"/api/patients/{patient['id']}/identity",
        json={"birth_date": "1950-03-12", "birth_place": "69123"},
        headers=bearer(issuer),
    ).json()
    assert fixed["incomplete"] is False


def test_rniv_status_path_document_then_insi_and_a_strict_trait_edit_downgrades_with_history(
    service: Any, issuer: TestIssuer
) -> None:
    client, db = service
    patient = client.post("/api/patients", json=MARIE, headers=bearer(issuer)).json()
    url = f"/api/patients/{patient['id']}/identity"

    licence = client.post(
        url + "/document-check", json={"document": "driving_licence"}, headers=bearer(issuer)
    )
    assert licence.status_code == 422 and licence.json()["field"] == "document"
    vitale = client.post(url + "/document-check", json={"document": "carte_vitale"}, headers=bearer(issuer))
    assert vitale.status_code == 422

    vali = client.post(url + "/document-check", json={"document": "passport"}, headers=bearer(issuer)).json()
    assert vali["identity_status"] == "VALI" and vali["identity_document"] == "passport"
    assert vali["ins"] is None

    qual = client.post(url + "/insi-query", json={}, headers=bearer(issuer)).json()
    assert qual["code"] == "00" and qual["patient"]["identity_status"] == "QUAL"
    ins = qual["patient"]["ins"]
    assert ins[0] == "2" and ins[1:5] == "5003" and ins[5:7] == "75"  # female, 1950-03, Paris

    edited = client.patch(url, json={"birth_date": "1950-03-13", "version": 3}, headers=bearer(issuer))
    assert edited.status_code == 200, edited.text
    assert edited.json()["identity_status"] == "PROV" and edited.json()["ins"] is None

    stale = client.patch(url, json={"email": "x@example.org", "version": 3}, headers=bearer(issuer))
    assert stale.status_code == 409

    actions = [h["action"] for h in client.get(url + "/history", headers=bearer(issuer)).json()["items"]]
    assert actions == ["created", "document_checked", "insi", "edited"]
    last = client.get(url + "/history", headers=bearer(issuer)).json()["items"][-1]
    assert last["changes"]["birth_date"] == ["1950-03-12", "1950-03-13"]
    assert last["status_before"] == "QUAL" and last["status_after"] == "PROV"

    events = [e for e in outbox(db) if e["type"] == "PatientIdentityUpdated"]
    assert [e["data"]["identity_status"] for e in events] == ["VALI", "QUAL", "PROV"]
    assert events[-1]["data"]["changed"] == ["birth_date", "identity_status"]
    for envelope in events:
        validate(envelope)
        assert "DUPONT" not in str(envelope) and "1950" not in str(envelope) and ins not in str(envelope)


def test_attributes_dout_or_fict_force_prov_and_exclude_each_other(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    client, _ = sqlite_service
    patient = client.post("/api/patients", json=PAUL, headers=bearer(issuer)).json()
    url = f"/api/patients/{patient['id']}/identity"
    client.post(url + "/document-check", json={"document": "national_id_card"}, headers=bearer(issuer))
    both = client.patch(url, json={"attributes": ["DOUT", "FICT"]}, headers=bearer(issuer))
    assert both.status_code == 422 and both.json()["field"] == "attributes"
    doubtful = client.patch(url, json={"attributes": ["HOMA", "DOUT"]}, headers=bearer(issuer)).json()
    assert doubtful["identity_status"] == "PROV" and doubtful["attributes"] == ["HOMA", "DOUT"]
    insi = client.post(url + "/insi-query", json={}, headers=bearer(issuer))
    assert insi.status_code == 422 and insi.json()["field"] == "insi"  # never sent to INSi


def test_insi_codes_01_and_02_leave_the_status_unchanged(sqlite_service: Any, issuer: TestIssuer) -> None:
    client, _ = sqlite_service
    for name, code in (("Inconnu", "01"), ("Homonyme", "02")):
        body = {**PAUL, "birth_name": name}
        patient = client.post("/api/patients", json=body, headers=bearer(issuer)).json()
        answer = client.post(
            f"/api/patients/{patient['id']}/identity/insi-query", json={}, headers=bearer(issuer)
        ).json()
        assert answer["code"] == code and answer["patient"]["identity_status"] == "PROV"
    found = client.post(
        "/api/patients", json={**PAUL, "birth_name": "Garnier"}, headers=bearer(issuer)
    ).json()
    recup = client.post(
        f"/api/patients/{found['id']}/identity/insi-query", json={}, headers=bearer(issuer)
    ).json()
    assert (
        recup["patient"]["identity_status"] == "RECUP" and recup["patient"]["ins"] is None
    )  # stored if QUAL only
    qual = client.post(
        f"/api/patients/{found['id']}/identity/document-check",
        json={"document": "passport"},
        headers=bearer(issuer),
    ).json()
    assert qual["identity_status"] == "QUAL" and qual["ins"].startswith("150036")


VIOLATIONS: list[tuple[str, str, dict[str, Any], str]] = [
    ("/api/patients/identity-search", "post", {**search_body(), "sex": "X"}, "sex"),
    ("/api/patients/identity-search", "post", search_body(birth_name="Du_pont"), "birth_name"),
    ("/api/patients", "post", {**PAUL, "mobile": "0123"}, "mobile"),
    ("/api/patients", "post", {**PAUL, "attributes": ["DOUT", "FICT"]}, "attributes"),
    ("/api/patients", "post", {**PAUL, "entitled_nir": "150037511512301"}, "entitled_nir"),  # adult
    ("/api/patients", "post", {**PAUL, "birth_country": "99134"}, "birth_country"),
    ("{patient}/identity", "patch", {"twin_rank": 0}, "twin_rank"),
    ("{patient}/identity", "patch", {"first_names": "Jacques Paul"}, "first_names"),
    ("{patient}/identity/document-check", "post", {"document": "birth_certificate"}, "special_case"),
    ("{patient}/consents", "post", {"attested": True, "given_by": "other"}, "given_by_name"),
    ("{patient}/consents/{consent}/withdrawal", "post", {"reason": "  "}, "reason"),
]


def test_every_violation_is_a_problem_naming_the_field_and_changes_nothing(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    client, db = sqlite_service
    patient = client.post("/api/patients", json={**PAUL, "birth_name": "Base"}, headers=bearer(issuer)).json()
    consent = client.get(f"/api/patients/{patient['id']}/consents", headers=bearer(issuer)).json()["items"][0]
    before = (count(db, "patients"), count(db, "consents"), len(outbox(db)), count(db, "identity_history"))
    for path, method, body, field in VIOLATIONS:
        url = path.replace("{patient}", f"/api/patients/{patient['id']}").replace("{consent}", consent["id"])
        response = getattr(client, method)(url, json=body, headers=bearer(issuer))
        assert response.status_code in (400, 422), (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem.get("field") == field or field in problem["detail"], (field, problem)
        assert (
            count(db, "patients"),
            count(db, "consents"),
            len(outbox(db)),
            count(db, "identity_history"),
        ) == before


def test_consent_who_when_by_whom_withdrawal_with_reason_and_the_form(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    client, _ = sqlite_service
    body = {**PAUL, "consent": {"attested": True, "given_by": "other", "given_by_name": "Mme Leroy, voisine"}}
    patient = client.post("/api/patients", json=body, headers=bearer(issuer, "person-7")).json()
    url = f"/api/patients/{patient['id']}/consents"
    (consent,) = client.get(url, headers=bearer(issuer)).json()["items"]
    assert consent["given_by"] == "other" and consent["given_by_name"] == "Mme Leroy, voisine"
    assert consent["collected_by"] == "person-7" and consent["active"] is True
    withdrawn = client.post(
        f"{url}/{consent['id']}/withdrawal", json={"reason": "Refus du patient"}, headers=bearer(issuer)
    ).json()
    assert withdrawn["active"] is False and withdrawn["withdrawal_reason"] == "Refus du patient"
    twice = client.post(
        f"{url}/{consent['id']}/withdrawal", json={"reason": "encore"}, headers=bearer(issuer)
    )
    assert twice.status_code == 409
    again = client.post(url, json={"attested": True, "given_by": "curator"}, headers=bearer(issuer))
    assert again.status_code == 201 and again.json()["given_by"] == "curator"
    assert [c["active"] for c in client.get(url, headers=bearer(issuer)).json()["items"]] == [False, True]

    form = client.get(f"/api/patients/{patient['id']}/consent-form", headers=bearer(issuer))
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("application/pdf")
    assert form.content.startswith(b"%PDF")


def test_demo_patients_are_valid_french_identities_that_identity_search_finds(
    sqlite_service: Any, issuer: TestIssuer
) -> None:
    from datetime import date

    from dossier import domain
    from dossier.demo_patients import COMMUNES, COUNTRIES, bulk_insert, generate
    from dossier.domain_nir import check_nir_matches_traits

    client, db = sqlite_service
    rows = list(generate(300, seed=5))
    for row in rows:  # every generated identity passes the creation rules
        domain.strict_traits(
            birth_name=row["birth_name"],
            first_name=row["first_name"],
            birth_date=row["birth_date"],
            sex=row["sex"],
            birth_place=row["birth_place"],
            today=date(2026, 11, 30),
        )
        assert row["birth_place"] in COMMUNES or row["birth_place"] in COUNTRIES
        if row["identity_status"] == "QUAL":  # its INS agrees with the traits
            check_nir_matches_traits(
                "ins",
                row["ins_nir"],
                sex=row["sex"],
                birth_date=row["birth_date"],
                birth_place=row["birth_place"],
            )
        else:
            assert row["ins_nir"] is None
    assert len({r["birth_name"] for r in rows}) > 150  # realistic variety, some homonyms
    assert bulk_insert(db.url, iter(rows), holder=("person", "person-1")) == 300
    target = rows[17]
    typed = {
        "birth_name": target["birth_name"][:-1] + "X",
        "first_name": target["first_name"],
        "birth_date": target["birth_date"].isoformat(),
        "sex": target["sex"],
        "birth_place": target["birth_place"],
    }
    found = client.post("/api/patients/identity-search", json=typed, headers=bearer(issuer)).json()
    assert found["candidates"][0]["patient_id"] == target["id"]
    assert found["candidates"][0]["habilitated"] is True
