"""The first slice of the booklet, through the gateway with real tokens — the same story for
the embedded and the distributed modes."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.support.people import DEMO_PASSWORD as PASSWORD
from tests.support.people import NEW_PATIENT, eventually

__all__ = ["NEW_PATIENT", "User", "eventually", "first_slice"]


class User:
    def __init__(self, base_url: str, issuer: str, username: str) -> None:
        from identity.token_cli import fetch_token

        self.username = username
        self.token = fetch_token(issuer, username, PASSWORD)["access_token"]
        self.http = httpx.Client(
            base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )
        me = self.http.get("/api/me")
        assert me.status_code == 200, me.text
        self.profile = me.json()

    @property
    def id(self) -> str:
        return str(self.profile["id"])

    @property
    def email(self) -> str:
        return str(self.profile["email"])


def audit_rows(database_url: str, patient_id: str, person_id: str) -> list[Any]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT allowed, basis FROM access_log WHERE patient_id = :p AND person_id = :u"),
                    {"p": patient_id, "u": person_id},
                )
            )
    finally:
        engine.dispose()


def first_slice(suite: Any, smtp: Any) -> dict[str, float]:
    coordinator = User(suite.base_url, suite.issuer, "coordinateur")
    doctor = User(suite.base_url, suite.issuer, "medecin")
    nurse = User(suite.base_url, suite.issuer, "infirmiere")

    # Bad input: refused, naming the field, nothing stored.
    before = coordinator.http.get("/api/patients").json()["items"]
    bad = coordinator.http.post("/api/patients", json={**NEW_PATIENT, "birth_date": "2999-01-01"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["field"] == "birth_date"
    no_consent = coordinator.http.post(
        "/api/patients", json={k: v for k, v in NEW_PATIENT.items() if k != "consent"}
    )
    assert no_consent.status_code == 400 and "consent" in no_consent.json()["detail"]
    assert coordinator.http.get("/api/patients").json()["items"] == before

    # PAT-1/2/5: the coordinator creates the file.
    created = coordinator.http.post("/api/patients", json=NEW_PATIENT)
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    path = f"/api/patients/{patient_id}"

    # PAT-6: the creator opens the new file at once, although cercle learns of it (and makes
    # the creator an auto-habilitated member) through the events a moment later.
    opened = coordinator.http.get(path)
    assert opened.status_code == 200, opened.text
    # So for files created one after the other: each opens at once, circle included.
    for birth_name, birth_date in [
        ("Aubert", "1941-02-03"),
        ("Barbier", "1952-11-24"),
        ("Caron", "1937-07-09"),
    ]:
        another = coordinator.http.post(
            "/api/patients", json={**NEW_PATIENT, "birth_name": birth_name, "birth_date": birth_date}
        )
        assert another.status_code == 201, another.text
        circle_of_another = coordinator.http.get(f"/api/patients/{another.json()['id']}/circle")
        assert circle_of_another.status_code == 200, circle_of_another.text
    circle = coordinator.http.get(f"{path}/circle").json()
    members = circle["members"] if isinstance(circle, dict) else circle
    (creator_member,) = [m for m in members if m["holder_id"] == coordinator.id]
    assert creator_member["auto_habilitation"] is True

    # Another professional, not in the circle: refused, and the attempt is recorded.
    refused = doctor.http.get(path)
    assert refused.status_code == 403 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert "LEFÈVRE" not in refused.text
    eventually(
        lambda: any(not row.allowed for row in audit_rows(suite.gateway_database_url, patient_id, doctor.id))
    )

    # The nurse joins the circle with habilitation; a task is assigned to her.
    added = coordinator.http.post(
        f"{path}/circle/members",
        json={"holder_kind": "person", "holder_id": nurse.id, "roles": ["intervenant"], "habilitated": True},
    )
    assert added.status_code == 201, added.text
    eventually(lambda: nurse.http.get(path).status_code == 200)
    task_body = {
        "type": "appeler_patient",
        "label": "Rappeler pour la douleur thoracique",
        "level": "important",
        "recipients": [{"kind": "person", "id": nurse.id}],
    }

    def assign() -> dict[str, Any] | None:
        response = coordinator.http.post(f"{path}/tasks", json=task_body)
        return response.json() if response.status_code == 201 else None

    task = eventually(assign)

    # notify: an in-app notification for the nurse and an e-mail without clinical content.
    def notified() -> list[Any]:
        body = nurse.http.get("/api/notifications").json()
        items = body["items"] if isinstance(body, dict) else body
        return [n for n in items if task["id"] in str(n)]

    eventually(notified, timeout=30)

    def mail_text(message: Any) -> str:
        parts = [
            part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            for part in message.walk()
            if part.get_content_maintype() == "text"
        ]
        return str(message["Subject"]) + "\n".join(parts)

    # The nurse may get other mails (circle, habilitation): the task's is the one linking to it.
    link = f"/taches/{task['id']}"
    eventually(
        lambda: [m for rcpts, m in smtp.messages if nurse.email in rcpts and link in mail_text(m)], timeout=30
    )
    for rcpts, message in smtp.messages:
        text = mail_text(message).lower()
        assert "douleur" not in text and "lefèvre" not in text, rcpts  # NOT-4: no clinical content

    # CER-10: a revocation bites at once, even where the decision was cached.
    assert coordinator.http.get(path).status_code == 200  # cached as allowed in the gateway
    started = time.monotonic()
    revoked = nurse.http.delete(f"{path}/circle/members/{creator_member['id']}/habilitation")
    assert revoked.status_code in (200, 204), revoked.text
    eventually(lambda: coordinator.http.get(path).status_code == 403, timeout=1.0, interval=0.02)
    revocation_s = time.monotonic() - started
    assert revocation_s < 1.0
    return {"revocation_s": revocation_s}
