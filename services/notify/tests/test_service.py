"""The notify service on a real database (SQLite file and PostgreSQL), with real SMTP servers."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from chassis.db import utcnow
from chassis.events import make_envelope
from chassis.settings import Settings
from notify.app import SERVICE
from notify.mailer import MailSender, SmtpTransport, transport_from_env
from notify.models import Notification, OutgoingEmail
from tests.support.issuer import TestIssuer

ADELINE = str(uuid.uuid4())
GAYLOR = str(uuid.uuid4())
CAMILLE = str(uuid.uuid4())
DAC = str(uuid.uuid4())
PATIENT = str(uuid.uuid4())
LABEL = "Rappeler la fille de Mme Dupont au sujet de son diabète"
PUBLIC_URL = "https://coordo.example"


def _service(settings: Settings) -> tuple[Any, Any, Settings]:
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    return SERVICE.create_app(settings, db).test_client(), db, settings


@pytest.fixture
def sqlite_service(issuer: TestIssuer, var_dir: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("COORDO_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("COORDO_SMTP_URL", raising=False)
    client, db, settings = _service(SERVICE.settings())
    yield client, db, settings
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, issuer: TestIssuer, var_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Both databases, for what depends on them: the bell's queries and the sender's claims."""
    monkeypatch.setenv("COORDO_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("COORDO_SMTP_URL", raising=False)
    settings = SERVICE.settings()
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
        settings = Settings(**{**settings.__dict__, "database_url": url})
    client, db, settings = _service(settings)
    yield client, db, settings
    db.dispose()


class Collector:
    """An aiosmtpd handler keeping every envelope it accepts; refuses the first `fail` ones."""

    def __init__(self, fail: int = 0, answer: str = "451 4.3.0 Temporary failure, try again later") -> None:
        self.envelopes: list[Any] = []
        self.refused: list[bytes] = []
        self.fail = fail
        self.answer = answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.fail > 0:
            self.fail -= 1
            self.refused.append(envelope.content)
            return self.answer
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


def auth(issuer: TestIssuer, sub: str, act_as: str | None = None) -> dict[str, str]:
    headers = {"Authorization": "Bearer " + issuer.mint(sub, extra_claims={"structures": [DAC]})}
    if act_as:
        headers["X-Act-As"] = act_as
    return headers


def consumer(db: Any, settings: Settings) -> Any:
    return SERVICE.create_worker(settings, db).consumers[0]


def event(event_type: str, producer: str, data: dict[str, Any], actor: str | None = GAYLOR) -> dict[str, Any]:
    return make_envelope(
        event_type=event_type,
        producer=producer,
        subject=str(data.get("patient_id") or data.get("delegation_id") or uuid.uuid4()),
        actor=actor,
        data=data,
    )


def feed(db: Any, settings: Settings, *events: dict[str, Any]) -> None:
    worker = consumer(db, settings)
    for envelope in events:
        worker.handle(envelope, f"notify.{envelope['producer']}.events")


def registered(person_id: str, name: str, mail: str | None, *structures: str) -> dict[str, Any]:
    return event(
        "UserRegistered",
        "identity",
        {
            "person_id": person_id,
            "display_name": name,
            "email": mail,
            "structures": list(structures),
            "profession": "infirmier",
            "medical": False,
            "roles": ["user"],
        },
        actor=None,
    )


def people(db: Any, settings: Settings) -> None:
    feed(
        db,
        settings,
        registered(ADELINE, "Adeline FONTEIX", "adeline@dac.example", DAC),
        registered(GAYLOR, "Gaylor HENNEBERT", "gaylor@dac.example", DAC),
        registered(CAMILLE, "Camille MARTIN", "camille@dac.example", DAC),
    )


def task_assigned(assignee_id: str, kind: str = "person", assigned_by: str = GAYLOR) -> dict[str, Any]:
    return event(
        "TaskAssigned",
        "taches",
        {
            "task_id": str(uuid.uuid4()),
            "patient_id": PATIENT,
            "type": "bilan_ppcs",
            "level": "urgent",
            "due_date": "2026-12-15",
            "assignee_kind": kind,
            "assignee_id": assignee_id,
            "assigned_by": assigned_by,
            "aggregate_version": 1,
        },
        actor=assigned_by,
    )


def status_changed(created_by: str, changed_by: str, task_id: str | None = None) -> dict[str, Any]:
    return event(
        "TaskStatusChanged",
        "taches",
        {
            "task_id": task_id or str(uuid.uuid4()),
            "patient_id": PATIENT,
            "type": "appeler_famille",
            "level": "important",
            "from_status": "a_traiter",
            "to_status": "en_cours",
            "changed_by": changed_by,
            "created_by": created_by,
            "recipients": [{"kind": "person", "id": changed_by}],
            "aggregate_version": 2,
        },
        actor=changed_by,
    )


def habilitation(holder_id: str, kind: str = "person", *, granted: bool = True, basis: str = "member") -> Any:
    data = {
        "patient_id": PATIENT,
        "member_id": str(uuid.uuid4()),
        "holder_kind": kind,
        "holder_id": holder_id,
    }
    if granted:
        return event("HabilitationGranted", "cercle", {**data, "basis": basis})
    return event("HabilitationRevoked", "cercle", data)


def emails(db: Any) -> list[OutgoingEmail]:
    with db.session_factory() as s:
        return list(s.scalars(select(OutgoingEmail).order_by(OutgoingEmail.created_at, OutgoingEmail.id)))


def bell(db: Any) -> list[tuple[str, str, str]]:
    """(type, recipient kind, recipient id) of every notification, sorted."""
    with db.session_factory() as s:
        rows = s.execute(select(Notification.type, Notification.recipient_kind, Notification.recipient_id))
        return sorted((t, k, r) for t, k, r in rows)


def mailed(db: Any) -> list[tuple[str, str | None]]:
    return sorted((m.type, m.person_id or m.to_address) for m in emails(db))


# -- the bell (NOT-1) --------------------------------------------------------------------------


def test_a_task_assigned_to_a_person_rings_their_bell_and_queues_one_email_even_when_redelivered(
    service: Any, issuer: TestIssuer
):
    client, db, settings = service
    people(db, settings)
    assigned = task_assigned(ADELINE)
    worker = consumer(db, settings)
    assert worker.handle(assigned, "notify.taches.events") is True
    assert worker.handle(assigned, "notify.taches.events") is False  # redelivery: no effect

    body = client.get("/api/notifications", headers=auth(issuer, ADELINE)).json()
    assert body["unread_count"] == 1
    (notification,) = body["items"]
    assert notification["type"] == "task_assigned"
    assert notification["title"] == "Une tâche vous a été affectée"
    assert notification["body"] == (
        "Gaylor HENNEBERT vous a affecté une nouvelle tâche (Bilan du PPCS). Niveau : urgent. Échéance : 15/12/2026."
    )
    assert notification["link"] == f"/taches/{assigned['data']['task_id']}"
    assert notification["read"] is False
    (mail,) = emails(db)
    assert (mail.status, mail.to_address) == ("pending", "adeline@dac.example")
    assert client.get("/api/notifications", headers=auth(issuer, GAYLOR)).json()["items"] == []


def test_reading_notifications(sqlite_service: Any, issuer: TestIssuer):
    client, db, settings = sqlite_service
    people(db, settings)
    first, second, third = (task_assigned(ADELINE) for _ in range(3))
    feed(db, settings, first, second, third)
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


def test_a_favourite_group_shared_with_a_structure_is_announced_to_it_without_the_group_name(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    people(db, settings)
    group_id = str(uuid.uuid4())
    shared = event(
        "FavouriteGroupShared",
        "dossier",
        {"group_id": group_id, "shared_by": GAYLOR, "structure_id": DAC, "files": 3},
        actor=GAYLOR,
    )
    feed(db, settings, shared)
    assert bell(db) == [("favourite_group_shared", "structure", DAC)]
    (item,) = client.get("/api/notifications", headers=auth(issuer, CAMILLE, act_as=DAC)).json()["items"]
    assert item["title"] == "Partage d'un groupe de favoris"
    assert (
        item["body"] == "Gaylor HENNEBERT a partagé un groupe de favoris (3 dossiers) avec votre structure."
    )
    assert item["link"].endswith("/favoris")
    # E-mailed to the structure's members (by their preferences), not to the one who shared.
    recipients = {m.person_id for m in emails(db) if m.type == "favourite_group_shared"}
    assert GAYLOR not in recipients and recipients


def test_a_task_for_a_structure_is_seen_by_its_members_acting_as_it_and_emailed_to_them(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    people(db, settings)
    feed(db, settings, task_assigned(DAC, kind="structure"))
    # One notification, the structure's: in each member's bell when acting as the structure.
    assert bell(db) == [("task_assigned", "structure", DAC)]
    as_dac = client.get("/api/notifications", headers=auth(issuer, CAMILLE, act_as=DAC)).json()
    assert as_dac["unread_count"] == 1
    assert "à votre structure" in as_dac["items"][0]["body"]
    assert client.get("/api/notifications/unread-count", headers=auth(issuer, CAMILLE)).json() == {
        "unread_count": 0
    }
    # Read by one member acting as the structure: read for the structure.
    notification_id = as_dac["items"][0]["id"]
    assert (
        client.post(f"/api/notifications/{notification_id}/read", headers=auth(issuer, CAMILLE)).status_code
        == 404
    )
    client.post(f"/api/notifications/{notification_id}/read", headers=auth(issuer, CAMILLE, act_as=DAC))
    assert client.get(
        "/api/notifications/unread-count", headers=auth(issuer, ADELINE, act_as=DAC)
    ).json() == {"unread_count": 0}
    # E-mails to each known member but who assigned it.
    assert sorted(m.to_address or "" for m in emails(db)) == ["adeline@dac.example", "camille@dac.example"]
    # Assigning a task to oneself (the default recipient) rings no bell.
    feed(db, settings, task_assigned(GAYLOR))
    assert len(bell(db)) == 1


def test_no_token_or_a_bad_token_is_refused(sqlite_service: Any):
    client, _, _ = sqlite_service
    assert client.get("/api/notifications").status_code == 401
    assert (
        client.get("/api/notification-preferences", headers={"Authorization": "Bearer x"}).status_code == 401
    )


# -- preferences (NOT-2) ---------------------------------------------------------------------


def _pref(view: dict[str, Any], code: str) -> tuple[bool, bool]:
    for group in view["groups"]:
        for item in group["types"]:
            if item["type"] == code:
                return item["email"], item["in_app"]
    raise AssertionError(code)


def test_preferences_per_type_and_channel_decide_what_is_sent_and_reset_restores_the_defaults(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    people(db, settings)
    me = auth(issuer, GAYLOR)
    view = client.get("/api/notification-preferences", headers=me).json()
    assert view["owner"] == {"kind": "person", "id": GAYLOR}
    assert [g["group"] for g in view["groups"]] == ["tasks", "file", "agenda", "global"]
    assert [g["label"] for g in view["groups"]] == ["Tâches", "Dossier", "Agenda", "Global"]
    assert _pref(view, "task_status_changed") == (True, True)  # the booklet: every box checked
    assert _pref(view, "task_created") == (False, True)

    changed = client.put(
        "/api/notification-preferences/types/task_status_changed", json={"email": False}, headers=me
    )
    assert changed.status_code == 200
    assert _pref(changed.json(), "task_status_changed") == (False, True)
    client.put("/api/notification-preferences/types/appointment_added", json={"in_app": False}, headers=me)

    # Adeline moves Gaylor's task along: Gaylor's bell rings, no e-mail.
    feed(db, settings, status_changed(created_by=GAYLOR, changed_by=ADELINE))
    assert bell(db) == [("task_status_changed", "person", GAYLOR)]
    assert emails(db) == []
    item = client.get("/api/notifications", headers=me).json()["items"][0]
    assert item["body"] == (
        "Adeline FONTEIX a passé une tâche que vous avez créée (Appeler la famille) "
        "du statut « À traiter » au statut « En cours »."
    )

    # Resetting another group changes nothing here; resetting "tasks" brings the e-mail back.
    after = client.post("/api/notification-preferences/reset", json={"group": "agenda"}, headers=me).json()
    assert _pref(after, "task_status_changed") == (False, True)
    assert _pref(after, "appointment_added") == (True, True)
    after = client.post("/api/notification-preferences/reset", json={"group": "tasks"}, headers=me).json()
    assert _pref(after, "task_status_changed") == (True, True)
    client.put(
        "/api/notification-preferences/types/patient_deceased",
        json={"email": False, "in_app": False},
        headers=me,
    )
    everything = client.post("/api/notification-preferences/reset", headers=me).json()
    assert all(not t["customised"] for g in everything["groups"] for t in g["types"])

    feed(db, settings, status_changed(created_by=GAYLOR, changed_by=ADELINE))
    assert mailed(db) == [("task_status_changed", GAYLOR)]
    # Whoever changed their own task's status hears nothing of it.
    feed(db, settings, status_changed(created_by=GAYLOR, changed_by=GAYLOR))
    assert len(bell(db)) == 2


def test_bad_preference_input_is_refused_naming_the_field_and_changes_nothing(
    sqlite_service: Any, issuer: TestIssuer
):
    client, _, _ = sqlite_service
    me = auth(issuer, GAYLOR)
    before = client.get("/api/notification-preferences", headers=me).json()
    cases = [
        ("put", "/api/notification-preferences/types/no_such_type", {"email": False}, 422, "type"),
        ("put", "/api/notification-preferences/types/care_circle_invitation", {"email": False}, 422, "type"),
        ("put", "/api/notification-preferences/types/task_assigned", {}, 422, "email"),
        ("put", "/api/notification-preferences/types/task_assigned", {"email": "non"}, 400, None),
        ("put", "/api/notification-preferences/types/task_assigned", {"sms": True}, 400, None),
        ("post", "/api/notification-preferences/reset", {"group": "dossier"}, 400, None),
        (
            "put",
            "/api/notification-preferences/delivery",
            {"quiet_hours": {"start": "25:00", "end": "08:00"}},
            400,
            None,
        ),
        (
            "put",
            "/api/notification-preferences/delivery",
            {"quiet_hours": {"start": "08:00", "end": "08:00"}},
            422,
            "quiet_hours.end",
        ),
    ]
    for method, path, body, status, field in cases:
        response = getattr(client, method)(path, json=body, headers=me)
        assert response.status_code == status, (path, body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        if field:
            assert response.json()["field"] == field
    assert client.get("/api/notification-preferences", headers=me).json() == before


def test_a_structure_has_its_own_preferences_set_by_a_member_acting_as_it(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    people(db, settings)
    as_dac = auth(issuer, ADELINE, act_as=DAC)
    view = client.put(
        "/api/notification-preferences/types/task_assigned", json={"email": False}, headers=as_dac
    ).json()
    assert view["owner"] == {"kind": "structure", "id": DAC}
    assert _pref(view, "task_assigned") == (False, True)
    # Adeline's own preference is untouched.
    assert _pref(
        client.get("/api/notification-preferences", headers=auth(issuer, ADELINE)).json(), "task_assigned"
    ) == (
        True,
        True,
    )
    feed(db, settings, task_assigned(DAC, kind="structure"), task_assigned(ADELINE))
    assert bell(db) == [("task_assigned", "person", ADELINE), ("task_assigned", "structure", DAC)]
    assert mailed(db) == [("task_assigned", ADELINE)]


# -- the catalogue of types (NOT-3) ----------------------------------------------------------


def test_the_catalogue_lists_every_type_wired_or_waiting_and_the_worker_listens_to_each_wired_event(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    items = client.get("/api/notification-types", headers=auth(issuer, ADELINE)).json()["items"]
    by_type = {i["type"]: i for i in items}
    assert by_type["task_assigned"]["status"] == "wired"
    assert by_type["appointment_deleted"]["status"] == "waiting_for_producer"
    assert by_type["thematic_added"]["events"] == ["dossier.FileThematicsAdded"]
    assert {i["group"] for i in items} == {"tasks", "file", "agenda", "global"}
    listened = set(consumer(db, settings).subscription.handlers)
    contracts = Path(__file__).resolve().parents[3] / "contracts" / "events"
    for item in items:
        for key in item["events"]:
            assert key in listened
            assert (contracts / f"{key.split('.')[1]}.v1.json").exists(), key


def test_each_wired_event_reaches_the_right_recipients_except_who_acted(sqlite_service: Any):
    _, db, settings = sqlite_service
    people(db, settings)
    olivia = str(uuid.uuid4())
    feed(
        db,
        settings,
        registered(olivia, "Olivia ROUX", "olivia@hopital.example"),
        habilitation(ADELINE),
        habilitation(GAYLOR, basis="auto_habilitation"),
        habilitation(DAC, kind="structure"),
        habilitation(CAMILLE),
        habilitation(CAMILLE, granted=False),
    )
    # habilitations: Adeline told (granted by Gaylor); Gaylor's own auto-habilitation says nothing;
    # the structure told; Camille granted then revoked.
    assert bell(db) == sorted(
        [
            ("habilitation_granted", "person", ADELINE),
            ("habilitation_granted", "structure", DAC),
            ("habilitation_granted", "person", CAMILLE),
            ("habilitation_removed", "person", CAMILLE),
        ]
    )
    before = set(bell(db))
    task_id = str(uuid.uuid4())
    appointment = {
        "appointment_id": str(uuid.uuid4()),
        "patient_id": PATIENT,
        "type_code": "visite",
        "start": "2026-12-03T09:00:00+00:00",
        "end": "2026-12-03T09:30:00+00:00",
        "participants": [{"kind": "person", "id": ADELINE}, {"kind": "person", "id": GAYLOR}],
        "aggregate_version": 1,
    }
    delegation = {"delegation_id": str(uuid.uuid4()), "grantor_id": ADELINE, "delegate_id": CAMILLE}
    feed(
        db,
        settings,
        event("PatientDeceased", "dossier", {"patient_id": PATIENT, "declared_by": GAYLOR}),
        event(
            "FeedNoteAdded",
            "dossier",
            {
                "patient_id": PATIENT,
                "note_id": str(uuid.uuid4()),
                "author_id": ADELINE,
                "importance": "normale",
            },
            actor=ADELINE,
        ),
        event(
            "FileStatusChanged",
            "dossier",
            {"patient_id": PATIENT, "structure_id": DAC, "status": "clos", "previous_status": "actif"},
        ),
        event("FileThematicsAdded", "dossier", {"patient_id": PATIENT, "added": 1}),
        event(
            "TaskCreated",
            "taches",
            {
                "task_id": task_id,
                "patient_id": PATIENT,
                "type": "autre",
                "level": "information",
                "status": "a_traiter",
                "due_date": None,
                "created_by": GAYLOR,
                "created_by_structure": None,
                "recipients": [{"kind": "person", "id": ADELINE}],
                "aggregate_version": 1,
            },
        ),
        event(
            "TaskDueSoon",
            "taches",
            {
                "task_id": task_id,
                "patient_id": PATIENT,
                "due_date": "2026-12-02",
                "recipients": [{"kind": "person", "id": ADELINE}],
            },
            actor=None,
        ),
        event(
            "BreakGlassAccessGranted",
            "cercle",
            {
                "grant_id": str(uuid.uuid4()),
                "patient_id": PATIENT,
                "person_id": olivia,
                "structure_id": None,
                "reason_code": "urgence_soins",
                "expires_at": "2026-12-01T12:00:00+00:00",
                "habilitated": [{"kind": "person", "id": ADELINE}, {"kind": "structure", "id": DAC}],
            },
            actor=olivia,
        ),
        event(
            "CareCircleInvitationAccepted",
            "cercle",
            {
                "invitation_id": str(uuid.uuid4()),
                "patient_id": PATIENT,
                "invited_by": GAYLOR,
                "person_id": olivia,
            },
            actor=olivia,
        ),
        event(
            "CareCircleMemberAdded",
            "cercle",
            {
                "patient_id": PATIENT,
                "member_id": str(uuid.uuid4()),
                "holder_kind": "person",
                "holder_id": olivia,
                "roles": ["intervenant"],
                "habilitated": False,
                "auto_habilitation": False,
            },
        ),
        event("AppointmentScheduled", "agenda", appointment),
        event(
            "AppointmentCancelled",
            "agenda",
            {k: v for k, v in appointment.items() if k not in ("start", "end")},
        ),
        event(
            "DocumentAdded",
            "documents",
            {
                "document_id": str(uuid.uuid4()),
                "patient_id": PATIENT,
                "class_code": "11",
                "type_code": None,
                "content_type": "application/pdf",
                "size": 10,
                "sharing": "shared",
                "uploaded_by": GAYLOR,
            },
        ),
        event(
            "DelegationRequested",
            "identity",
            {**delegation, "scopes": ["dossiers"], "ends_on": None, "pending_count": 2},
            actor=CAMILLE,
        ),
        event(
            "DelegationGranted",
            "identity",
            {**delegation, "scopes": ["dossiers"], "ends_on": None},
            actor=ADELINE,
        ),
        event("DelegationRevoked", "identity", {**delegation, "cause": "expired"}, actor=None),
    )
    assert sorted(set(bell(db)) - before) == sorted(
        [
            # decease declared by Gaylor: the other habilitated members, persons and structure
            ("patient_deceased", "person", ADELINE),
            ("patient_deceased", "structure", DAC),
            # Adeline's own note: not to her
            ("feed_note_added", "person", GAYLOR),
            ("feed_note_added", "structure", DAC),
            ("file_status_changed", "person", ADELINE),
            ("file_status_changed", "structure", DAC),
            # a thematic added by Gaylor: the others of the circle
            ("thematic_added", "person", ADELINE),
            ("thematic_added", "structure", DAC),
            # a new task for Adeline: she has task_assigned (its own event); the structure hears of it
            ("task_created", "structure", DAC),
            ("task_due_soon", "person", ADELINE),
            ("break_glass_access", "person", ADELINE),
            ("break_glass_access", "structure", DAC),
            ("invited_colleague_registered", "person", GAYLOR),
            ("care_circle_member_added", "person", olivia),
            ("appointment_added", "person", ADELINE),
            ("appointment_cancelled", "person", ADELINE),
            # a restricted document: no one is told (who may see it is for documents to say)
            ("delegation_request", "person", ADELINE),
            ("delegation_changed", "person", CAMILLE),
            # expired: both parties
            ("delegation_changed", "person", ADELINE),
        ]
    )
    with db.session_factory() as s:
        texts = {n.type: n.body for n in s.scalars(select(Notification))}
    assert texts["delegation_request"] == (
        "Camille MARTIN vous demande une délégation de votre compte (Dossiers & RCP). "
        "Vous avez 2 demandes de délégation en attente."
    )
    with db.session_factory() as s:
        thematic = {
            n.recipient_kind: n.body
            for n in s.scalars(select(Notification).where(Notification.type == "thematic_added"))
        }
    assert thematic == {
        "person": "Gaylor HENNEBERT a ajouté une thématique à un dossier sur lequel vous êtes identifié(e).",
        "structure": "Gaylor HENNEBERT a ajouté une thématique à un dossier sur lequel votre structure est identifiée.",
    }
    assert texts["break_glass_access"].startswith("Olivia ROUX a accédé en bris de glace")
    assert "01/12/2026 à 13:00" in texts["break_glass_access"]  # Paris time
    assert (
        texts["appointment_added"]
        == "Gaylor HENNEBERT a ajouté un rendez-vous à votre agenda le 03/12/2026 à 10:00."
    )


def test_a_delegation_requested_from_a_structure_reaches_the_structure(
    sqlite_service: Any, issuer: TestIssuer
):
    client, db, settings = sqlite_service
    people(db, settings)
    delegation = {"delegation_id": str(uuid.uuid4()), "grantor_id": DAC, "delegate_id": CAMILLE}
    feed(
        db,
        settings,
        event(
            "DelegationRequested",
            "identity",
            {**delegation, "scopes": ["dossiers", "discussions"], "ends_on": None, "pending_count": 1},
            actor=CAMILLE,
        ),
    )
    assert bell(db) == [("delegation_request", "structure", DAC)]
    (item,) = client.get("/api/notifications", headers=auth(issuer, ADELINE, act_as=DAC)).json()["items"]
    assert item["link"] == "/profil/relations"
    assert item["body"].endswith("Vous avez 1 demande de délégation en attente.")
    # Its members are e-mailed, but not the one asking (sorted: the ids are random).
    assert mailed(db) == sorted([("delegation_request", ADELINE), ("delegation_request", GAYLOR)])


def test_an_old_grant_delivered_after_the_revocation_does_not_habilitate_again(sqlite_service: Any):
    _, db, settings = sqlite_service
    people(db, settings)
    grant, revoke = habilitation(CAMILLE), habilitation(CAMILLE, granted=False)
    feed(db, settings, revoke, grant)
    feed(db, settings, event("PatientDeceased", "dossier", {"patient_id": PATIENT, "declared_by": GAYLOR}))
    assert ("patient_deceased", "person", CAMILLE) not in bell(db)


def test_invitations_and_directory_requests_are_emailed_to_their_address(
    sqlite_service: Any, var_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    _, db, settings = sqlite_service
    people(db, settings)
    invitation_id = str(uuid.uuid4())
    request = {
        "request_id": str(uuid.uuid4()),
        "requested_by": ADELINE,
        "last_name": "LEROY",
        "first_name": "Noé",
        "profession": "kinesitherapeute",
        "rpps": "10003456789",
        "email": "noe@cabinet.example",
        "phone": None,
        "city": "Gap",
    }
    feed(
        db,
        settings,
        event(
            "CareCircleInvitationSent",
            "cercle",
            {
                "invitation_id": invitation_id,
                "patient_id": PATIENT,
                "invited_by": GAYLOR,
                "email": "noe@cabinet.example",
            },
        ),
        event("DirectoryEntryRequested", "cercle", request, actor=ADELINE),
    )
    assert bell(db) == []  # no account behind these addresses: e-mail only
    sender = MailSender(db)
    assert sender.send_pending() == 1  # the centre's address is not set yet: that one waits
    monkeypatch.setenv("COORDO_DIRECTORY_CENTRE_EMAIL", "annuaire@grades.example")
    assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 1
    messages = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in (var_dir / "mail").glob("*.eml")
    ]
    by_to = {str(m["To"]): m for m in messages}
    invitation = by_to["noe@cabinet.example"]
    assert invitation["Subject"] == "[Coordo] Invitation à rejoindre Coordo"
    assert f"{PUBLIC_URL}/inscription?invitation={invitation_id}" in invitation.get_content()
    assert "Gaylor HENNEBERT vous invite" in invitation.get_content()
    directory = by_to["annuaire@grades.example"].get_content()
    assert "- Nom : LEROY" in directory and "- RPPS : 10003456789" in directory
    assert "- Téléphone : non renseigné" in directory


# -- e-mail delivery ---------------------------------------------------------------------------


def run_sender(db: Any, settings: Settings, until: Any, *, extra_s: float = 0.6) -> None:
    """The senders as the worker runs them (its background jobs), until `until()` holds."""
    jobs = SERVICE.create_worker(settings, db).background
    assert len(jobs) == (1 if db.is_sqlite else 3)  # senders sharing the outbox on PostgreSQL
    stop = threading.Event()
    threads = [threading.Thread(target=job, args=(stop,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(extra_s)  # further rounds of the sender must not send it again
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def test_the_worker_sends_the_email_over_smtp_naming_the_event_without_clinical_content(
    service: Any, smtp_server: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch
):
    _, db, settings = service
    collector, port = smtp_server
    monkeypatch.setenv("COORDO_SMTP_URL", f"smtp://127.0.0.1:{port}")
    people(db, settings)
    assigned = task_assigned(ADELINE)
    feed(db, settings, assigned, assigned)
    run_sender(db, settings, lambda: collector.envelopes)

    (envelope,) = collector.envelopes
    assert envelope.rcpt_tos == ["adeline@dac.example"]
    (message,) = collector.messages()
    assert message["Subject"] == "[Coordo] Une tâche vous a été affectée"
    assert message["To"] == "adeline@dac.example"
    (mail,) = emails(db)
    assert message["Message-ID"] == f"<{mail.id}@coordo.local>"
    text = message.get_content()
    assert text.startswith("Bonjour Adeline FONTEIX,")
    assert "Gaylor HENNEBERT vous a affecté une nouvelle tâche (Bilan du PPCS)." in text
    assert f"{PUBLIC_URL}/taches/{assigned['data']['task_id']}" in text
    for secret in (LABEL, "Dupont", "diabète"):
        assert secret not in text
    assert mail.status == "sent" and mail.sent_at is not None

    # A burst: the worker's senders (three on PostgreSQL) share the outbox, each e-mail once.
    burst = [task_assigned(CAMILLE) for _ in range(12)]
    feed(db, settings, *burst)
    run_sender(db, settings, lambda: len(collector.envelopes) >= 13)
    ids = [m["Message-ID"] for m in collector.messages()]
    assert len(ids) == len(set(ids)) == 13
    assert all(m.status == "sent" for m in emails(db))


@contextmanager
def sender_running(sender: MailSender) -> Iterator[threading.Thread]:
    """One sender in its thread, as in the worker; stopped (and woken to see it) on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        sender.wake.set()
        thread.join(10)


def seconds_until(done: Any, timeout: float) -> float:
    started = time.monotonic()
    while not done() and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def test_an_email_queued_by_the_consumer_is_sent_at_once_not_at_the_next_poll(
    service: Any, smtp_server: tuple[Collector, int]
):
    _, db, settings = service
    collector, port = smtp_server
    people(db, settings)
    # A poll far longer than the wait below: only the wake-up at commit can send it in time.
    sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"), idle_wait_s=60)
    with sender_running(sender):
        time.sleep(0.5)  # its first look found nothing: it now waits
        feed(db, settings, task_assigned(ADELINE))
        seconds_until(lambda: collector.envelopes, 10)
    assert [e.rcpt_tos for e in collector.envelopes] == [["adeline@dac.example"]]
    assert [m.status for m in emails(db)] == ["sent"]


def test_an_idle_sender_wakes_when_a_refused_email_falls_due_again_not_at_its_longest_sleep(
    sqlite_service: Any,
):
    _, db, settings = sqlite_service
    people(db, settings)
    collector = Collector(fail=1)  # 451 once: retried after the first backoff
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"), idle_wait_s=60)
    assert sender.idle_wait(utcnow()) == 60  # nothing pending: the longest sleep
    try:
        with sender_running(sender):
            feed(db, settings, task_assigned(ADELINE))
            waited = seconds_until(collector.messages, 30)
    finally:
        controller.stop()
    assert len(collector.refused) == 1 and len(collector.messages()) == 1
    # Sent when its backoff ended (5 s), long before the sender's 60 s sleep.
    assert 4 < waited < 15
    assert [m.status for m in emails(db)] == ["sent"]


def test_a_sender_whose_database_fails_between_two_batches_goes_on_sending(
    service: Any, smtp_server: tuple[Collector, int]
):
    from sqlalchemy.exc import OperationalError

    _, db, settings = service
    collector, port = smtp_server
    people(db, settings)
    sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"), idle_wait_s=60)
    looked = sender.idle_wait
    failures = [OperationalError("SELECT min(…)", {}, Exception("server closed the connection"))]

    def idle_wait_failing_once(now: Any) -> float:
        if failures:
            raise failures.pop()
        return looked(now)

    sender.idle_wait = idle_wait_failing_once  # type: ignore[method-assign]
    with sender_running(sender) as thread:
        time.sleep(1.5)  # the lookup failed once; the sender backed off and looked again
        feed(db, settings, task_assigned(ADELINE))
        seconds_until(lambda: collector.envelopes, 10)
    assert not failures and thread.is_alive() is False
    assert [e.rcpt_tos for e in collector.envelopes] == [["adeline@dac.example"]]


def test_a_refused_send_is_retried_with_backoff_and_accepted_exactly_once(sqlite_service: Any):
    _, db, settings = sqlite_service
    people(db, settings)
    feed(db, settings, task_assigned(ADELINE))
    collector = Collector(fail=2)
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"))
        assert sender.send_pending() == 0
        (mail,) = emails(db)
        assert (mail.status, mail.attempts) == ("pending", 1) and "451" in (mail.last_error or "")
        assert sender.send_pending() == 0  # backing off: not tried again at once
        assert sender.send_pending(now=utcnow() + timedelta(seconds=6)) == 0  # refused again
        assert emails(db)[0].next_attempt_at > utcnow() + timedelta(seconds=8)  # 10 s after the 2nd
        assert sender.send_pending(now=utcnow() + timedelta(seconds=20)) == 1
        for later in (1, 60, 3600):
            assert sender.send_pending(now=utcnow() + timedelta(seconds=later)) == 0
    finally:
        controller.stop()
    assert len(collector.refused) == 2
    (accepted,) = collector.messages()
    # The same message each time: one Message-ID per notification e-mail.
    tried = {
        email.message_from_bytes(c, policy=email.policy.default)["Message-ID"] for c in collector.refused
    }
    assert tried == {accepted["Message-ID"]}
    assert emails(db)[0].status == "sent"


def test_a_mail_the_server_rejects_for_good_is_kept_as_rejected_and_never_retried(sqlite_service: Any):
    _, db, settings = sqlite_service
    people(db, settings)
    feed(db, settings, task_assigned(ADELINE))
    collector = Collector(fail=1, answer="550 5.1.1 Mailbox unknown")
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"))
        assert sender.send_pending() == 0
        for later in (60, 3600, 86400):
            assert sender.send_pending(now=utcnow() + timedelta(seconds=later)) == 0
    finally:
        controller.stop()
    assert len(collector.refused) == 1 and collector.messages() == []
    (mail,) = emails(db)
    assert (mail.status, mail.attempts) == ("rejected", 1) and "550" in (mail.last_error or "")


def test_an_smtp_server_that_is_down_keeps_the_email_pending_until_it_is_up(sqlite_service: Any):
    _, db, settings = sqlite_service
    people(db, settings)
    feed(db, settings, task_assigned(ADELINE), task_assigned(CAMILLE))
    port = free_port()
    sender = MailSender(db, lambda: SmtpTransport(f"smtp://127.0.0.1:{port}"))
    assert sender.send_pending() == 0
    assert [(m.status, m.attempts) for m in emails(db)] == [("pending", 1), ("pending", 1)]
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 2
        assert sender.send_pending(now=utcnow() + timedelta(hours=1)) == 0
    finally:
        controller.stop()
    assert sorted(e.rcpt_tos[0] for e in collector.envelopes) == [
        "adeline@dac.example",
        "camille@dac.example",
    ]


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"coordo",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_and_authentication_are_set_by_environment(
    sqlite_service: Any,
    certificate_authority: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
):
    _, db, settings = sqlite_service
    people(db, settings)
    feed(db, settings, task_assigned(ADELINE))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    collector = Collector()
    port = free_port()
    tls = (
        {"tls_context": server_context, "require_starttls": True}
        if mode == "starttls"
        else {"ssl_context": server_context}
    )
    controller = Controller(
        collector,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_required=True,
        # implicit TLS is TLS from the first byte, which aiosmtpd's check does not see
        auth_require_tls=mode == "starttls",
        **tls,
    )
    controller.start()
    try:
        monkeypatch.setenv("COORDO_SMTP_URL", f"smtp://127.0.0.1:{port}")
        monkeypatch.setenv("COORDO_SMTP_TLS", mode)
        monkeypatch.setenv("COORDO_SMTP_USERNAME", "coordo")
        monkeypatch.setenv("COORDO_SMTP_PASSWORD", "wrong")
        monkeypatch.setenv("COORDO_SMTP_CA_FILE", str(ca_file))
        sender = MailSender(db, transport_from_env)
        assert sender.send_pending() == 0  # a wrong password: refused, kept
        assert "Authentication" in (emails(db)[0].last_error or "")
        monkeypatch.setenv("COORDO_SMTP_PASSWORD", "s3cret")
        assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 1
    finally:
        controller.stop()
    assert [e.rcpt_tos for e in collector.envelopes] == [["adeline@dac.example"]]


def test_without_smtp_the_email_is_written_as_a_readable_eml_file(sqlite_service: Any, var_dir: Path):
    _, db, settings = sqlite_service
    people(db, settings)
    assigned = task_assigned(CAMILLE)
    feed(db, settings, assigned)
    assert MailSender(db).send_pending() == 1
    assert MailSender(db).send_pending() == 0
    (path,) = (var_dir / "mail").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "camille@dac.example"
    assert message["From"] == "Coordo <ne-pas-repondre@coordo.local>"
    assert f"{PUBLIC_URL}/taches/{assigned['data']['task_id']}" in message.get_content()


def test_an_email_waits_for_the_address_of_a_person_not_yet_registered(sqlite_service: Any, var_dir: Path):
    _, db, settings = sqlite_service
    newcomer = str(uuid.uuid4())
    feed(db, settings, task_assigned(newcomer))
    sender = MailSender(db)
    assert sender.send_pending() == 0
    assert emails(db)[0].status == "pending"
    feed(db, settings, registered(newcomer, "Noé LEROY", "noe@saad.example"))
    assert sender.send_pending(now=utcnow() + timedelta(minutes=1)) == 1
    (path,) = (var_dir / "mail").glob("*.eml")
    assert "noe@saad.example" in path.read_text(encoding="utf-8")


def test_a_daily_digest_gathers_the_days_emails_and_quiet_hours_hold_them(
    sqlite_service: Any, issuer: TestIssuer, var_dir: Path
):
    client, db, settings = sqlite_service
    people(db, settings)
    digest = client.put(
        "/api/notification-preferences/delivery",
        json={"email_mode": "daily_digest"},
        headers=auth(issuer, ADELINE),
    )
    assert digest.json()["delivery"] == {
        "email_mode": "daily_digest",
        "quiet_hours": None,
        "digest_time": "07:00",
    }
    quiet = client.put(
        "/api/notification-preferences/delivery",
        json={"quiet_hours": {"start": "00:00", "end": "23:59"}},
        headers=auth(issuer, CAMILLE),
    )
    assert quiet.json()["delivery"]["quiet_hours"] == {"start": "00:00", "end": "23:59"}
    feed(db, settings, task_assigned(ADELINE), task_assigned(ADELINE), task_assigned(CAMILLE))
    sender = MailSender(db)
    assert sender.send_pending() == 0  # the bell rang; the e-mails wait
    assert len(bell(db)) == 3
    assert sender.send_pending(now=utcnow() + timedelta(days=1, minutes=1)) == 2  # one digest, one held
    by_to = {
        str(m["To"]): m
        for m in (
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in (var_dir / "mail").glob("*.eml")
        )
    }
    assert by_to["adeline@dac.example"]["Subject"] == "[Coordo] Vos notifications du jour (2)"
    assert by_to["adeline@dac.example"].get_content().count("vous a affecté une nouvelle tâche") == 2
    assert sorted(m.status for m in emails(db)) == ["merged", "sent", "sent"]


def test_an_offset_beyond_any_page_is_refused_as_bad_input_not_a_server_error(
    sqlite_service: Any, issuer: TestIssuer
):
    # Found by tests/contract/test_fuzz.py: SQLite cannot bind an integer past 64 bits (500).
    client, _, _ = sqlite_service
    response = client.get("/api/notifications?offset=610617724534366633197568", headers=auth(issuer, GAYLOR))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (
        client.get("/api/notifications?offset=2147483647", headers=auth(issuer, GAYLOR)).json()["items"] == []
    )
