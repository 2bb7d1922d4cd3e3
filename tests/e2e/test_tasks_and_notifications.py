"""Issue 5 end to end, embedded mode, through the gateway with real tokens and a real SMTP
server: a task for a colleague reaches its dashboard, its bell and its mailbox once; a
status change notifies the creator per its preferences; a revocation takes the task off
the colleague's dashboard."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.scenario import NEW_PATIENT, User, eventually

LABEL = "Rappeler pour la douleur thoracique"
COMMENT = "Sous anticoagulants depuis mardi"


def _mail_text(message: Any) -> str:
    parts = [
        part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    return str(message["Subject"]) + "\n" + "\n".join(parts)


def _mails(smtp: Any, address: str, needle: str) -> list[str]:
    return [
        text for rcpts, m in list(smtp.messages) if address in rcpts and needle in (text := _mail_text(m))
    ]


def _about(user: User, object_id: str) -> list[dict[str, Any]]:
    items = user.http.get("/api/notifications", params={"limit": 200}).json()["items"]
    return [n for n in items if n["object_id"] == object_id]


def _dashboard(user: User) -> list[str]:
    response = user.http.get("/api/tasks")
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


def test_a_task_for_a_colleague_its_bell_its_mailbox_and_the_creators_preferences(
    embedded_suite: Any, smtp_server: Any
) -> None:
    suite = embedded_suite
    coordinator = User(suite.base_url, suite.issuer, "coordinateur")
    nurse = User(suite.base_url, suite.issuer, "infirmiere")

    patient = coordinator.http.post("/api/patients", json={**NEW_PATIENT, "birth_name": "Castagnet"})
    assert patient.status_code == 201, patient.text
    path = f"/api/patients/{patient.json()['id']}"
    assert coordinator.http.get(path).status_code == 200  # at once, for its creator
    added = coordinator.http.post(
        f"{path}/circle/members",
        json={"holder_kind": "person", "holder_id": nurse.id, "roles": ["intervenant"], "habilitated": True},
    )
    assert added.status_code == 201, added.text
    member_id = added.json()["id"]
    eventually(lambda: nurse.http.get(path).status_code == 200)

    # The creator does not want e-mails about status changes, only the bell.
    preferences = coordinator.http.put(
        "/api/notification-preferences/types/task_status_changed", json={"email": False}
    )
    assert preferences.status_code == 200, preferences.text

    # A task for the colleague: once on its dashboard, once in its bell, once in its mailbox.
    unread_before = nurse.http.get("/api/notifications/unread-count").json()["unread_count"]
    task_body = {
        "type": "appeler_patient",
        "label": LABEL,
        "comment": COMMENT,
        "level": "urgent",
        "recipients": [{"kind": "person", "id": nurse.id}],
    }

    def create() -> dict[str, Any] | None:
        response = coordinator.http.post(f"{path}/tasks", json=task_body)
        return response.json() if response.status_code == 201 else None

    task = eventually(create)
    link = f"/taches/{task['id']}"
    eventually(lambda: _dashboard(nurse).count(task["id"]) == 1)
    (notification,) = eventually(lambda: _about(nurse, task["id"]))
    assert notification["type"] == "task_assigned" and notification["link"] == link
    assert nurse.http.get("/api/notifications/unread-count").json()["unread_count"] == unread_before + 1
    eventually(lambda: _mails(smtp_server, nurse.email, link))
    time.sleep(0.8)  # several rounds of the sender: still one e-mail
    (mail,) = _mails(smtp_server, nurse.email, link)
    assert "vous a affecté une nouvelle tâche (Appeler le patient)" in mail
    for secret in (LABEL, COMMENT, "Castagnet", "CASTAGNET", "Jeanne", "thoracique"):
        assert secret not in mail  # NOT-4
        assert secret not in str(notification)
    # Who created the task hears nothing of its own creation.
    assert _about(coordinator, task["id"]) == []

    # The colleague starts the task: the creator's bell rings, and by its choice no e-mail.
    moved = nurse.http.post(f"/api/tasks/{task['id']}/status", json={"status": "en_cours"})
    assert moved.status_code == 200, moved.text
    (status_note,) = eventually(lambda: _about(coordinator, task["id"]))
    assert status_note["type"] == "task_status_changed"
    assert "du statut « À traiter » au statut « En cours »" in status_note["body"]
    read = coordinator.http.post(f"/api/notifications/{status_note['id']}/read")
    assert read.status_code == 200 and read.json()["read"] is True
    time.sleep(0.8)
    assert _mails(smtp_server, coordinator.email, link) == []
    assert len(_mails(smtp_server, nurse.email, link)) == 1

    # The colleague loses its habilitation: the task leaves its dashboard.
    revoked = coordinator.http.delete(f"{path}/circle/members/{member_id}/habilitation")
    assert revoked.status_code in (200, 204), revoked.text
    eventually(lambda: task["id"] not in _dashboard(nurse))
