"""The identity API and demo data on a real database (SQLite file and PostgreSQL), over HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from chassis.events import validate
from identity.app import SERVICE
from identity.demo import DEMO_IDS, DEMO_PASSWORD, DEMO_USERNAMES
from identity.models import Person, Structure
from identity.token_cli import fetch_token
from tests.support.issuer import TestIssuer


def bearer(running: Any, username: str) -> dict[str, str]:
    token = fetch_token(running.issuer, username, DEMO_PASSWORD)
    return {"Authorization": f"Bearer {token['access_token']}"}


def outbox(db: Any) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))


def test_demo_data_loads_twice_without_change_and_announces_each_account_once(running: Any):
    db = running.db
    before = outbox(db)
    SERVICE.demo_data(running.settings, db)  # the fixture loaded it once already
    after = outbox(db)
    assert after == before
    with db.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Person)) == 5
        assert s.scalar(select(func.count()).select_from(Structure)) == 2

    for envelope in after:
        validate(envelope)
    counts = Counter(e["type"] for e in after)
    assert counts == {"UserRegistered": 5, "StructureRegistered": 2}
    registered = {e["data"]["person_id"]: e for e in after if e["type"] == "UserRegistered"}
    assert set(registered) == {DEMO_IDS[u] for u in DEMO_USERNAMES}
    claire = registered[DEMO_IDS["coordinateur"]]
    assert claire["subject"] == DEMO_IDS["coordinateur"] and claire["producer"] == "identity"
    assert claire["data"] == {
        "person_id": DEMO_IDS["coordinateur"],
        "display_name": "Claire Martin",
        "email": "claire.martin@dac-sud-essonne.example",
        "structures": [DEMO_IDS["dac"]],
        "profession": "gestionnaire_de_cas",
        "medical": False,
        "roles": ["user", "super_user"],
    }
    assert registered[DEMO_IDS["medecin"]]["data"]["medical"] is True
    assert registered[DEMO_IDS["medecin"]]["data"]["structures"] == []
    assert "coordo-demo" not in str(after)  # no password, not even hashed, leaves the service


def test_demo_data_adds_the_generated_directory_without_announcing_it(running: Any, monkeypatch: Any):
    before = outbox(running.db)
    monkeypatch.setenv("COORDO_DEMO_DIRECTORY_ENTRIES", "60")
    SERVICE.demo_data(running.settings, running.db)
    SERVICE.demo_data(running.settings, running.db)
    assert outbox(running.db) == before
    with running.db.session_factory() as s:
        assert (
            s.scalar(select(func.count()).select_from(Person))
            + s.scalar(select(func.count()).select_from(Structure))
            == 5 + 2 + 60
        )
    headers = bearer(running, "coordinateur")
    found = running.http.get("/api/directory/structures", params={"kind": "ehpad"}, headers=headers).json()
    assert found["total"] >= 1 and all(s["name"].startswith("EHPAD ") for s in found["items"])
    # Who can be asked for a delegation: the persons with an account, not directory-only entries.
    everyone = running.http.get("/api/directory/persons", params={"limit": 200}, headers=headers).json()
    with_account = running.http.get(
        "/api/directory/persons", params={"has_account": "true", "limit": 200}, headers=headers
    ).json()
    assert everyone["total"] > 5 and with_account["total"] == 5
    assert {p["id"] for p in with_account["items"]} == {DEMO_IDS[u] for u in DEMO_USERNAMES}
    assert {p["has_account"] for p in everyone["items"]} == {True, False}


def test_me_is_the_profile_page(running: Any):
    response = running.http.get("/api/me", headers=bearer(running, "medecin"))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["id"] == DEMO_IDS["medecin"]
    assert me["display_name"] == "Dr Paul Bernard"
    assert me["profession"] == {"code": "medecin", "label": "Médecin", "medical": True}
    assert me["medical"] is True
    assert me["specialty"] == "Médecine générale"
    assert me["roles"] == ["user"]
    assert me["structures"] == []
    last_login = datetime.fromisoformat(me["last_login_at"])
    assert datetime.now(last_login.tzinfo) - last_login < timedelta(minutes=1)

    # ID-2: every demo account accepted the terms in force, except the assistante sociale.
    assert me["terms_accepted"] is True and me["terms_accepted_version"] == me["terms_version"]

    nurse = running.http.get("/api/me", headers=bearer(running, "infirmiere")).json()
    assert nurse["structures"] == [
        {
            "id": DEMO_IDS["unite-geriatrie"],
            "name": "CH Sud Francilien — Médecine gériatrique",
            "kind": "unit",
        }
    ]


def test_first_login_asks_for_the_terms_once(running: Any):
    headers = bearer(running, "assistante-sociale")
    me = running.http.get("/api/me", headers=headers).json()
    assert me["terms_accepted"] is False and me["terms_accepted_at"] is None
    version = me["terms_version"]
    shown = running.http.get("/api/terms", headers=headers).json()
    assert shown["version"] == version and "secret professionnel" in shown["text"]

    wrong = running.http.post("/api/me/terms", json={"version": "1999-01"}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["field"] == "version"
    assert running.http.post("/api/me/terms", json={}, headers=headers).status_code == 400
    assert running.http.get("/api/me", headers=headers).json()["terms_accepted"] is False

    accepted = running.http.post("/api/me/terms", json={"version": version}, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["terms_accepted"] is True and accepted.json()["terms_accepted_version"] == version
    first_date = accepted.json()["terms_accepted_at"]
    again = running.http.post("/api/me/terms", json={"version": version}, headers=headers).json()
    assert again["terms_accepted_at"] == first_date  # the first acceptance is what counts


def test_the_api_needs_a_token_of_this_issuer(running: Any):
    assert running.http.get("/api/me").status_code == 401
    with TestIssuer() as stranger:  # a real issuer, but not this one
        forged = stranger.mint(DEMO_IDS["admin"], extra_claims={"roles": ["admin"]})
    assert running.http.get("/api/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    admin = running.http.get("/api/me", headers=bearer(running, "admin")).json()
    assert admin["profession"] is None and admin["roles"] == ["admin"]


def test_the_directory_finds_persons_by_name_city_profession_and_structure(running: Any):
    headers = bearer(running, "coordinateur")

    def names(**params: str) -> list[str]:
        response = running.http.get("/api/directory/persons", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [p["display_name"] for p in response.json()["items"]]

    assert names(q="bernard") == ["Dr Paul Bernard"]
    assert names(q="SOPHIE") == ["Sophie Petit"]
    assert names(profession="infirmier") == ["Sophie Petit"]
    # City of the person's own practice, or of one of their structures (accents ignored).
    assert names(city="evry-courcouronnes") == ["Dr Paul Bernard", "Claire Martin", "Nadia Roux"]
    assert names(city="Corbeil-Essonnes") == ["Sophie Petit"]
    assert names(postal_code="911") == ["Sophie Petit"]
    assert names(structure_id=DEMO_IDS["dac"]) == ["Claire Martin", "Nadia Roux"]
    assert names(q="Pétit") == ["Sophie Petit"]  # accents ignored both ways

    entry = running.http.get(
        f"/api/directory/persons/{DEMO_IDS['assistante-sociale']}", headers=headers
    ).json()
    assert entry["profession"]["label"] == "Assistant social" and entry["profession"]["medical"] is False
    assert entry["structures"][0]["id"] == DEMO_IDS["dac"]
    assert "password" not in str(entry) and "username" not in entry
    missing = running.http.get(f"/api/directory/persons/{DEMO_IDS['dac']}", headers=headers)
    assert missing.status_code == 404


def test_the_directory_finds_structures_by_name_and_kind(running: Any):
    headers = bearer(running, "coordinateur")

    def found(**params: str) -> list[str]:
        response = running.http.get("/api/directory/structures", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert found(q="geriatrique") == [DEMO_IDS["unite-geriatrie"]]
    assert found(kind="dac") == [DEMO_IDS["dac"]]
    assert set(found()) == {DEMO_IDS["dac"], DEMO_IDS["unite-geriatrie"]}
    assert (
        running.http.get("/api/directory/structures", params={"kind": "clinic"}, headers=headers).status_code
        == 400
    )
    entry = running.http.get(f"/api/directory/structures/{DEMO_IDS['dac']}", headers=headers).json()
    assert entry["name"] == "DAC Sud Essonne" and entry["postal_code"] == "91000"


def test_professions_say_which_are_medical(running: Any):
    items = running.http.get("/api/professions", headers=bearer(running, "coordinateur")).json()["items"]
    medical = {p["code"] for p in items if p["medical"]}
    assert medical == {
        "medecin",
        "infirmier",
        "pharmacien",
        "sage_femme",
        "masseur_kinesitherapeute",
        "chirurgien_dentiste",
        "orthophoniste",
        "ergotherapeute",
    }
    assert {"assistant_social", "gestionnaire_de_cas", "coordinateur", "secretaire", "aide_soignant"} <= {
        p["code"] for p in items
    }


NEW_PERSON = {
    "username": "jdupont",
    "password": "un-mot-de-passe-solide",
    "first_name": "Jeanne",
    "last_name": "Dupont",
    "email": "jeanne.dupont@saad.example",
    "profession": "pharmacien",
    "roles": ["user"],
}


def test_an_admin_creates_an_account_that_can_log_in_and_is_announced(running: Any):
    admin = bearer(running, "admin")
    body = {**NEW_PERSON, "structures": [DEMO_IDS["dac"]]}
    created = running.http.post("/api/persons", json=body, headers=admin)
    assert created.status_code == 201, created.text
    person = created.json()
    assert created.headers["location"] == f"/api/directory/persons/{person['id']}"

    (event,) = [e for e in outbox(running.db) if e["subject"] == person["id"]]
    validate(event)
    assert event["type"] == "UserRegistered" and event["actor"] == DEMO_IDS["admin"]
    assert event["data"]["medical"] is True and event["data"]["structures"] == [DEMO_IDS["dac"]]

    token = fetch_token(running.issuer, "jdupont", "un-mot-de-passe-solide")
    assert token["access_token"]
    again = running.http.post("/api/persons", json=body, headers=admin)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"username": "Avec Espace"}, 422, "username"),
        ({"profession": "astronaute"}, 422, "profession"),
        ({"structures": ["00000000-0000-4000-8000-000000000000"]}, 422, "structures"),
        ({"password": "court"}, 400, "password"),
        ({"roles": ["root"]}, 400, "roles"),
        ({"unexpected": 1}, 400, "unexpected"),
    ],
)
def test_bad_accounts_are_refused_naming_the_field(
    running: Any, change: dict[str, Any], status: int, field: str
):
    before = len(outbox(running.db))
    response = running.http.post(
        "/api/persons", json={**NEW_PERSON, **change}, headers=bearer(running, "admin")
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert field in problem["detail"] or problem.get("field") == field
    assert len(outbox(running.db)) == before


def test_only_admins_create_accounts_and_structures(running: Any):
    claire = bearer(running, "coordinateur")
    assert running.http.post("/api/persons", json=NEW_PERSON, headers=claire).status_code == 403
    structure = {"name": "SAAD Essonne Aide", "kind": "saad", "city": "Étampes", "postal_code": "91150"}
    assert running.http.post("/api/structures", json=structure, headers=claire).status_code == 403
    created = running.http.post("/api/structures", json=structure, headers=bearer(running, "admin"))
    assert created.status_code == 201, created.text
    (event,) = [e for e in outbox(running.db) if e["subject"] == created.json()["id"]]
    validate(event)
    assert event["data"] == {
        "structure_id": created.json()["id"],
        "name": "SAAD Essonne Aide",
        "kind": "saad",
    }


def test_delegation_over_the_api_from_request_to_expiry(running: Any):
    nurse, doctor = bearer(running, "infirmiere"), bearer(running, "medecin")
    stranger = bearer(running, "admin")
    http = running.http
    running.set_clock(lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

    # The nurse asks Dr Bernard to act in his name on the files, until 10 December.
    body = {"grantor_id": DEMO_IDS["medecin"], "scopes": ["dossiers"], "ends_on": "2026-12-10"}
    created = http.post("/api/delegations", json=body, headers=nurse)
    assert created.status_code == 201, created.text
    delegation = created.json()
    assert created.headers["location"] == f"/api/delegations/{delegation['id']}"
    assert delegation["status"] == "pending" and delegation["delegate"]["display_name"] == "Sophie Petit"
    assert http.get("/api/delegations/pending-count", headers=doctor).json() == {"pending_count": 1}
    (requested,) = [e for e in outbox(running.db) if e["type"] == "DelegationRequested"]
    validate(requested)
    assert requested["data"]["pending_count"] == 1 and requested["data"]["ends_on"] == "2026-12-10"

    again = http.post("/api/delegations", json=body, headers=nurse)
    assert again.status_code == 409
    bad = http.post("/api/delegations", json={**body, "scopes": ["rcp"]}, headers=nurse)
    assert bad.status_code == 400
    self_made = http.post(
        "/api/delegations", json={**body, "grantor_id": DEMO_IDS["infirmiere"]}, headers=nurse
    )
    assert self_made.status_code == 422 and self_made.json()["field"] == "grantor_id"
    as_structure = http.post(
        "/api/delegations", json=body, headers={**nurse, "X-Act-As": DEMO_IDS["unite-geriatrie"]}
    )
    assert as_structure.status_code == 403

    url = f"/api/delegations/{delegation['id']}"
    assert http.post(f"{url}/accept", headers=nurse).status_code == 403  # only the grantor decides
    assert http.get(url, headers=stranger).status_code == 404
    accepted = http.post(f"{url}/accept", headers=doctor)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted" and accepted.json()["active"] is True
    assert outbox(running.db)[-1]["type"] == "DelegationGranted"

    given = http.get("/api/delegations/given", headers=doctor).json()
    assert [(d["delegate"]["id"], d["status"]) for d in given["items"]] == [
        (DEMO_IDS["infirmiere"], "accepted")
    ]
    received = http.get("/api/delegations/received", params={"status": "accepted"}, headers=nurse).json()
    assert received["total"] == 1 and received["items"][0]["grantor"]["id"] == DEMO_IDS["medecin"]
    assert http.get("/api/delegations/pending-count", headers=doctor).json() == {"pending_count": 0}

    # 11 December: lapsed, shown so at once; nothing left to revoke.
    running.set_clock(lambda: datetime(2026, 12, 11, 8, 0, tzinfo=UTC))
    lapsed = http.get(url, headers=nurse).json()
    assert lapsed["status"] == "expired" and lapsed["active"] is False
    assert http.post(f"{url}/revoke", headers=doctor).status_code == 409
