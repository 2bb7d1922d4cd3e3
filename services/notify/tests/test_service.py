"""The notify service on a real database (SQLite file and PostgreSQL), with a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from chassis.db import utcnow
from chassis.events import EventSchemaError, make_envelope
from chassis.settings import Settings
from notify.app import SERVICE
from notify.mailer import MailSender, SmtpTransport
from notify.models import OutgoingEmail
from tests.support.issuer import TestIssuer

ADELINE = str(uuid.uuid4())
GAYLOR = str(uuid.uuid4())
CAMILLE = str(uuid.uuid4())
DAC = str(uuid.uuid4())
PATIENT = str(uuid.uuid4())
LABEL = "Rappeler la fille de Mme Dupont au sujet de son diabète"
COMMENT = "Glycémie instable depuis lundi"
PUBLIC_URL = "https://coordo.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("COORDO_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("COORDO_SMTP_URL", raising=False)
    settings = SERVICE.settings()
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        settings = Settings(**{**settings.__dict__, "database_url": url})
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    app = SERVICE.create_app(settings, db)
    yield app.test_client(), db, settings
    db.dispose()


class Collector:
    """An aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    yield collector, port
    controller.stop()


def auth(issuer: TestIssuer, sub: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub)}


def consumer(db: Any, settings: Settings) -> Any:
    return SERVICE.create_worker(settings, db).consumers[0]


def registered(
    db: Any, settings: Settings, person_id: str, name: str, mail: str | None, *structures: str
) -> None:
    envelope = make_envelope(
        event_type="UserRegistered",
        producer="identity",
        subject=person_id,
        actor=None,
        data={
            "person_id": person_id,
            "display_name": name,
            "email": mail,
            "structures": list(structures),
            "profession": "infirmier",
            "medical": False,
            "roles": ["user"],
        },
    )
    assert consumer(db, settings).handle(envelope, "notify.identity.events") is True


def task_assigned(assignee_id: str, kind: str = "person", assigned_by: str = GAYLOR) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    return make_envelope(
        event_type="TaskAssigned",
        producer="taches",
        subject=PATIENT,
        actor=assigned_by,
        data={
            "task_id": task_id,
            "patient_id": PATIENT,
            "type": "bilan_ppcs",
            "level": "urgent",
            "due_date": "2026-12-15",
            "assignee_kind": kind,
            "assignee_id": assignee_id,
            "assigned_by": assigned_by,
            "aggregate_version": 1,
        },
    )


def people(db: Any, settings: Settings) -> None:
    registered(db, settings, ADELINE, "Adeline FONTEIX", "adeline@dac.example", DAC)
    registered(db, settings, GAYLOR, "Gaylor HENNEBERT", "gaylor@dac.example", DAC)
    registered(db, settings, CAMILLE, "Camille MARTIN", "camille@dac.example", DAC)


def emails(db: Any) -> list[OutgoingEmail]:
    with db.session_factory() as s:
        return list(s.scalars(select(OutgoingEmail).order_by(OutgoingEmail.created_at, OutgoingEmail.id)))


def notification_count(db: Any) -> int:
    with db.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(db.metadata.tables["notifications"])) or 0)


def test_a_task_assigned_to_a_person_rings_their_bell_and_queues_one_email_even_when_redelivered(
    service: Any, issuer: TestIssuer
):
    client, db, settings = service
    people(db, settings)
    event = task_assigned(ADELINE)
    worker = consumer(db, settings)
    assert worker.handle(event, "notify.taches.events") is True
    assert worker.handle(event, "notify.taches.events") is False  # redelivery: no effect

    body = client.get("/api/notifications", headers=auth(issuer, ADELINE)).json()
    assert body["unread_count"] == 1
    (notification,) = body["items"]
    assert notification["title"] == "Une tâche vous a été assignée"
    assert notification["body"].startswith("Gaylor HENNEBERT vous a assigné une nouvelle tâche.")
    assert notification["link"] == f"/taches/{event['data']['task_id']}"
    assert notification["read"] is False
    (mail,) = emails(db)
    assert (mail.status, mail.to_address) == ("pending", "adeline@dac.example")
    assert client.get("/api/notifications", headers=auth(issuer, GAYLOR)).json()["items"] == []


def test_a_task_for_a_structure_notifies_each_known_member_except_who_assigned_it(
    service: Any, issuer: TestIssuer
):
    client, db, settings = service
    people(db, settings)
    consumer(db, settings).handle(task_assigned(DAC, kind="structure"), "notify.taches.events")
    for person, expected in ((ADELINE, 1), (CAMILLE, 1), (GAYLOR, 0)):
        count = client.get("/api/notifications/unread-count", headers=auth(issuer, person)).json()
        assert count == {"unread_count": expected}
    assert sorted(m.to_address or "" for m in emails(db)) == ["adeline@dac.example", "camille@dac.example"]
    item = client.get("/api/notifications", headers=auth(issuer, CAMILLE)).json()["items"][0]
    assert "à votre structure" in item["body"]
    # Assigning a task to oneself (the default recipient) rings no bell.
    consumer(db, settings).handle(task_assigned(GAYLOR), "notify.taches.events")
    assert notification_count(db) == 2


def test_reading_notifications(service: Any, issuer: TestIssuer):
    client, db, settings = service
    people(db, settings)
    worker = consumer(db, settings)
    first, second, third = (task_assigned(ADELINE) for _ in range(3))
    for event in (first, second, third):
        worker.handle(event, "notify.taches.events")
    me = auth(issuer, ADELINE)
    items = client.get("/api/notifications", headers=me).json()["items"]
    assert [n["object_id"] for n in items] == [e["data"]["task_id"] for e in (third, second, first)]

    response = client.post(f"/api/notifications/{items[1]['id']}/read", headers=me)
    assert response.status_code == 200
    assert response.json()["read"] is True
    assert client.post(f"/api/notifications/{items[1]['id']}/read", headers=me).status_code == 200
    assert client.get("/api/notifications/unread-count", headers=me).json() == {"unread_count": 2}
    unread = client.get("/api/notifications?unread_only=true", headers=me).json()["items"]
    assert [n["id"] for n in unread] == [items[0]["id"], items[2]["id"]]

    # Someone else's notification cannot be touched, nor seen to exist.
    other = auth(issuer, CAMILLE)
    assert client.post(f"/api/notifications/{items[0]['id']}/read", headers=other).status_code == 404
    assert client.post(f"/api/notifications/{uuid.uuid4()}/read", headers=me).status_code == 404

    assert client.post("/api/notifications/read-all", headers=me).json() == {"marked": 2, "unread_count": 0}
    assert client.get("/api/notifications/unread-count", headers=me).json() == {"unread_count": 0}


def test_no_token_or_a_bad_token_is_refused(service: Any):
    client, _, _ = service
    assert client.get("/api/notifications").status_code == 401
    assert (
        client.get("/api/notifications/unread-count", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_a_task_assigned_event_cannot_carry_the_label_or_the_comment():
    event = task_assigned(ADELINE)
    with pytest.raises(EventSchemaError):
        make_envelope(
            event_type="TaskAssigned",
            producer="taches",
            subject=PATIENT,
            actor=GAYLOR,
            data={**event["data"], "label": LABEL, "comment": COMMENT},
        )


def test_the_worker_sends_the_email_over_smtp_naming_the_event_without_clinical_content(
    service: Any, smtp_server: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch
):
    _, db, settings = service
    collector, port = smtp_server
    monkeypatch.setenv("COORDO_SMTP_URL", f"smtp://127.0.0.1:{port}")
    people(db, settings)
    event = task_assigned(ADELINE)
    worker = consumer(db, settings)
    worker.handle(event, "notify.taches.events")
    worker.handle(event, "notify.taches.events")

    # The sender is the service's background job, run as the worker runs it.
    (job,) = SERVICE.create_worker(settings, db).background
    stop = threading.Event()
    thread = threading.Thread(target=job, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not collector.envelopes and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # a further round of the sender must not send it again
    finally:
        stop.set()
        thread.join(10)

    (envelope,) = collector.envelopes
    assert envelope.rcpt_tos == ["adeline@dac.example"]
    (message,) = collector.messages()
    assert message["Subject"] == "[Coordo] Une tâche vous a été assignée"
    assert message["To"] == "adeline@dac.example"
    text = message.get_content()
    assert "Bonjour Adeline FONTEIX," in text
    assert f"{PUBLIC_URL}/taches/{event['data']['task_id']}" in text
    for secret in (LABEL, COMMENT, "Dupont", "diabète"):
        assert secret not in text
    (mail,) = emails(db)
    assert mail.status == "sent" and mail.sent_at is not None


def test_without_smtp_the_email_is_written_as_a_readable_eml_file(service: Any, var_dir: Path):
    _, db, settings = service
    people(db, settings)
    event = task_assigned(CAMILLE)
    consumer(db, settings).handle(event, "notify.taches.events")
    assert MailSender(db).send_pending() == 1
    assert MailSender(db).send_pending() == 0

    (path,) = (var_dir / "mail").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "[Coordo] Une tâche vous a été assignée"
    assert message["To"] == "camille@dac.example"
    assert message["From"] == "Coordo <ne-pas-repondre@coordo.local>"
    assert f"{PUBLIC_URL}/taches/{event['data']['task_id']}" in message.get_content()


def test_an_smtp_server_that_is_down_keeps_the_email_pending_until_it_is_up(service: Any):
    _, db, settings = service
    people(db, settings)
    consumer(db, settings).handle(task_assigned(ADELINE), "notify.taches.events")
    port = free_port()
    sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"))

    assert sender.send_pending() == 0
    (mail,) = emails(db)
    assert (mail.status, mail.attempts) == ("pending", 1)
    assert mail.last_error
    assert sender.send_pending() == 0  # backing off: not tried again at once
    assert emails(db)[0].attempts == 1

    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 1
        assert sender.send_pending(now=utcnow() + timedelta(hours=1)) == 0
    finally:
        controller.stop()
    assert [e.rcpt_tos for e in collector.envelopes] == [["adeline@dac.example"]]
    assert emails(db)[0].status == "sent"


def test_an_email_waits_for_the_address_of_a_person_not_yet_registered(service: Any, var_dir: Path):
    _, db, settings = service
    newcomer = str(uuid.uuid4())
    consumer(db, settings).handle(task_assigned(newcomer), "notify.taches.events")
    sender = MailSender(db)
    assert sender.send_pending() == 0
    assert emails(db)[0].status == "pending"
    registered(db, settings, newcomer, "Noé LEROY", "noe@saad.example")
    assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 1
    (path,) = (var_dir / "mail").glob("*.eml")
    assert "noe@saad.example" in path.read_text(encoding="utf-8")
