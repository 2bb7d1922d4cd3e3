"""Notify use cases: read models, notifications and their e-mails, preferences, the bell."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import invalid, not_found
from chassis.readmodels import record_habilitation
from notify import domain, render
from notify.models import (
    DeliverySetting,
    Habilitation,
    Notification,
    OutgoingEmail,
    Person,
    PersonStructure,
    Preference,
)

log = logging.getLogger(__name__)

# Wall clock of the users (quiet hours, digest time, dates in messages).
ZONE = ZoneInfo("Europe/Paris")


# -- read models -----------------------------------------------------------------------------


def apply_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Keep how to address a person; an older event never overrides a newer one."""
    data = envelope["data"]
    changed_at = datetime.fromisoformat(envelope["occurred_at"])
    session = uow.session
    person = session.get(Person, data["person_id"])
    if person is not None and person.updated_at > changed_at:
        return
    if person is None:
        person = Person(person_id=data["person_id"])
        session.add(person)
    person.display_name = data["display_name"]
    person.email = data.get("email")
    session.info.get("notify_persons", {}).pop(person.person_id, None)  # seen in this batch: stale
    person.updated_at = changed_at
    session.flush()
    session.execute(delete(PersonStructure).where(PersonStructure.person_id == person.person_id))
    for structure_id in dict.fromkeys(data.get("structures") or []):
        session.add(PersonStructure(person_id=person.person_id, structure_id=structure_id))


def apply_habilitation(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    """Grant or revoke in the read model; an older event never overrides a newer one."""
    record_habilitation(uow.session, Habilitation, envelope, active)  # written at once: no flush


def habilitated(session: Session, patient_id: str) -> list[domain.Recipient]:
    query = (
        select(Habilitation.holder_kind, Habilitation.holder_id)
        .where(Habilitation.patient_id == patient_id, Habilitation.active.is_(True))
        .order_by(Habilitation.holder_kind, Habilitation.holder_id)
    )
    return [(kind, holder) for kind, holder in session.execute(query)]


@dataclass(frozen=True)
class Addressee:
    name: str | None
    email: str | None


def _person(session: Session, person_id: str) -> Addressee | None:
    """Name and address, cached for the transaction (the ORM's identity map is weak: a
    person read and dropped would be read again for each event of a consumer batch)."""
    cache: dict[str, Addressee | None] = session.info.setdefault("notify_persons", {})
    if person_id not in cache:
        person = session.get(Person, person_id)
        cache[person_id] = Addressee(person.display_name, person.email) if person else None
    return cache[person_id]


def _name(session: Session, person_id: str | None) -> str | None:
    person = _person(session, person_id) if person_id else None
    return person.name if person else None


# -- delivering one notice -------------------------------------------------------------------


@dataclass
class Notice:
    """What a handler wants said: a type, to whom, about what, with which codes."""

    code: str
    recipients: list[domain.Recipient]
    path: str  # the object in the web front end, e.g. /taches/{id}
    object_type: str
    object_id: str
    patient_id: str | None = None
    actor_id: str | None = None  # whose name the message gives ("X vous a affecté...")
    context: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # codes kept on the notification


def _overrides(session: Session, owner: domain.Recipient, code: str) -> dict[str, bool]:
    """The owner's choices for one type, read once per owner and transaction: a consumer
    batch of a hundred events for the same few people costs a few queries, not hundreds."""
    cache: dict[domain.Recipient, dict[str, dict[str, bool]]] = session.info.setdefault("notify_prefs", {})
    if owner not in cache:
        choices: dict[str, dict[str, bool]] = {}
        query = select(Preference.type, Preference.channel, Preference.enabled).where(
            Preference.owner_kind == owner[0], Preference.owner_id == owner[1]
        )
        for kind, channel, enabled in session.execute(query):
            choices.setdefault(kind, {})[channel] = bool(enabled)
        cache[owner] = choices
    return cache[owner].get(code, {})


def _delivery(session: Session, owner: domain.Recipient) -> domain.Delivery:
    return _delivery_setting(session, owner) or domain.Delivery()


def _delivery_setting(session: Session, owner: domain.Recipient) -> domain.Delivery | None:
    """The owner's own delivery settings, if any (cached per transaction, misses included)."""
    cache: dict[domain.Recipient, domain.Delivery | None] = session.info.setdefault("notify_delivery", {})
    if owner not in cache:
        row = session.get(DeliverySetting, owner)
        cache[owner] = (
            None
            if row is None
            else domain.Delivery(
                email_mode=row.email_mode, quiet_start=row.quiet_start, quiet_end=row.quiet_end
            )
        )
    return cache[owner]


def _is_structure(session: Session, holder_id: str) -> bool:
    query = select(PersonStructure.person_id).where(PersonStructure.structure_id == holder_id).limit(1)
    return session.scalar(query) is not None


def _members(session: Session, structure_id: str) -> list[str]:
    query = (
        select(PersonStructure.person_id)
        .where(PersonStructure.structure_id == structure_id)
        .order_by(PersonStructure.person_id)
    )
    return list(session.scalars(query))


def deliver(uow: UnitOfWork, envelope: dict[str, Any], notice: Notice, *, public_url: str) -> None:
    """NOT-1/NOT-2: for each recipient, per its preferences, a bell notification and/or
    e-mails, in the consumer's transaction (with its processed_messages key): a redelivered
    event creates neither a second notification nor a second e-mail.

    A structure gets one notification, seen by its members acting as it; its e-mails go to
    each of its known members but the one who acted. A person reached twice (in person and
    through a structure) gets one e-mail."""
    session = uow.session
    now = utcnow()
    actor = envelope.get("actor")
    # Persons before structures, so that a person reached both ways gets their own copy.
    recipients = sorted(notice.recipients, key=lambda r: r[0] != "person")
    actor_name = _name(session, notice.actor_id)
    base = {**notice.context, "actor_name": actor_name, "public_url": public_url}
    link = f"{public_url}{notice.path}"
    emailed: set[str] = set()
    for recipient in recipients:
        kind, recipient_id = recipient
        wanted = domain.wanted_channels(notice.code, _overrides(session, recipient, notice.code))
        via_structure = kind == "structure"
        notification_id: str | None = None
        if not wanted["in_app"] and not wanted["email"]:
            continue
        # One rendering serves the bell and, for a person, the e-mail.
        person = _person(session, recipient_id) if kind == "person" else None
        text = render.render(
            notice.code,
            {
                **base,
                "via_structure": via_structure,
                "link": link,
                "recipient_name": person.name if person else None,
            },
        )
        if wanted["in_app"]:
            notification_id = new_id()
            session.add(
                Notification(
                    id=notification_id,
                    recipient_kind=kind,
                    recipient_id=recipient_id,
                    type=notice.code,
                    title=text.title,
                    body=text.in_app,
                    link=notice.path,
                    object_type=notice.object_type,
                    object_id=notice.object_id,
                    patient_id=notice.patient_id,
                    data=notice.data,
                    source_event_id=envelope["id"],
                    created_at=now,
                )
            )
        if not wanted["email"]:
            continue
        persons = (
            [recipient_id] if kind == "person" else [p for p in _members(session, recipient_id) if p != actor]
        )
        if via_structure and not persons:
            log.info("notification for structure %s: no known member to e-mail", recipient_id)
        for person_id in persons:
            if person_id in emailed:
                continue
            emailed.add(person_id)
            mail = text
            if via_structure:
                person = _person(session, person_id)
                mail = render.render(
                    notice.code,
                    {
                        **base,
                        "via_structure": True,
                        "link": link,
                        "recipient_name": person.name if person else None,
                    },
                )
            # A structure's own delivery settings, when it has some, else the member's.
            delivery = (via_structure and _delivery_setting(session, recipient)) or _delivery(
                session, ("person", person_id)
            )
            session.add(
                OutgoingEmail(
                    id=new_id(),
                    dedup_key=f"{envelope['id']}:{notice.code}:{person_id}",
                    notification_id=notification_id,
                    type=notice.code,
                    person_id=person_id,
                    to_address=person.email if person else None,
                    subject=mail.subject,
                    body_text=mail.email,
                    summary=f"{mail.in_app}\n{link}",
                    digest=delivery.email_mode == "daily_digest",
                    status="pending",
                    attempts=0,
                    next_attempt_at=domain.email_due_at(now, delivery, ZONE),
                    created_at=now,
                )
            )


def email_address(
    uow: UnitOfWork,
    envelope: dict[str, Any],
    code: str,
    address: str | None,
    context: dict[str, Any],
    *,
    public_url: str,
    link: str,
) -> None:
    """A transactional e-mail to a bare address (no account behind it, no preference).
    A missing address (unset setting) keeps it pending until the sender finds one."""
    now = utcnow()
    mail = render.render(
        code,
        {**context, "public_url": public_url, "link": link, "via_structure": False, "recipient_name": None},
    )
    uow.session.add(
        OutgoingEmail(
            id=new_id(),
            dedup_key=f"{envelope['id']}:{code}:address",
            notification_id=None,
            type=code,
            person_id=None,
            to_address=address,
            subject=mail.subject,
            body_text=mail.email,
            summary=f"{mail.in_app}\n{link}",
            digest=False,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


# -- one function per event ------------------------------------------------------------------


def _task_codes(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_type": domain.label(domain.TASK_TYPES, data.get("type")),
        "level": domain.label(domain.LEVELS, data.get("level")),
        "due_date": domain.french_date(data.get("due_date")),
    }


def _recipients(items: list[dict[str, Any]]) -> list[domain.Recipient]:
    return [(r["kind"], r["id"]) for r in items]


def notice_for(uow: UnitOfWork, envelope: dict[str, Any]) -> list[Notice]:
    """The notices an event gives (NOT-3); the catalogue names which events drive which type."""
    kind = envelope["type"]
    data = envelope["data"]
    actor = envelope.get("actor")
    session = uow.session
    patient = data.get("patient_id")
    patient_path = f"/patients/{patient}"

    if kind == "TaskAssigned":
        return [
            Notice(
                "task_assigned",
                domain.recipients_except(
                    [(data["assignee_kind"], data["assignee_id"])], actor=data["assigned_by"]
                ),
                f"/taches/{data['task_id']}",
                "task",
                data["task_id"],
                patient,
                data["assigned_by"],
                _task_codes(data),
                {
                    k: data[k]
                    for k in ("type", "level", "due_date", "assignee_kind", "assignee_id", "assigned_by")
                },
            )
        ]
    if kind == "TaskCreated":
        also = [*_recipients(data["recipients"])]
        if data.get("created_by_structure"):
            also.append(("structure", data["created_by_structure"]))
        return [
            Notice(
                "task_created",
                domain.recipients_except(habilitated(session, patient), actor=data["created_by"], also=also),
                f"/taches/{data['task_id']}",
                "task",
                data["task_id"],
                patient,
                data["created_by"],
                _task_codes(data),
                {k: data[k] for k in ("type", "level", "due_date", "created_by")},
            )
        ]
    if kind == "TaskStatusChanged":
        return [
            Notice(
                "task_status_changed",
                domain.recipients_except([("person", data["created_by"])], actor=data["changed_by"]),
                f"/taches/{data['task_id']}",
                "task",
                data["task_id"],
                patient,
                data["changed_by"],
                {
                    **_task_codes(data),
                    "from_status": domain.label(domain.TASK_STATUSES, data["from_status"]),
                    "to_status": domain.label(domain.TASK_STATUSES, data["to_status"]),
                },
                {k: data[k] for k in ("type", "level", "from_status", "to_status", "changed_by")},
            )
        ]
    if kind == "TaskDueSoon":
        return [
            Notice(
                "task_due_soon",
                domain.recipients_except(_recipients(data["recipients"]), actor=None),
                f"/taches/{data['task_id']}",
                "task",
                data["task_id"],
                patient,
                None,
                {"due_date": domain.french_date(data["due_date"])},
                {"due_date": data["due_date"]},
            )
        ]
    if kind == "BreakGlassAccessGranted":
        return [
            Notice(
                "break_glass_access",
                domain.recipients_except(_recipients(data["habilitated"]), actor=data["person_id"]),
                patient_path,
                "patient",
                patient,
                patient,
                data["person_id"],
                {"expires_at": domain.french_datetime(data["expires_at"], ZONE)},
                {
                    "grant_id": data["grant_id"],
                    "person_id": data["person_id"],
                    "expires_at": data["expires_at"],
                },
            )
        ]
    if kind in (
        "PatientDeceased",
        "FileStatusChanged",
        "FeedNoteAdded",
        "DocumentAdded",
        "FileThematicsAdded",
    ):
        if kind == "DocumentAdded" and data["sharing"] != "public":
            # A restricted document: who may see it is decided by documents, not known here.
            return []
        author = {
            "PatientDeceased": data.get("declared_by"),
            "FeedNoteAdded": data.get("author_id"),
            "DocumentAdded": data.get("uploaded_by"),
        }.get(kind, actor)
        code = {
            "PatientDeceased": "patient_deceased",
            "FileStatusChanged": "file_status_changed",
            "FeedNoteAdded": "feed_note_added",
            "DocumentAdded": "document_added",
            "FileThematicsAdded": "thematic_added",
        }[kind]
        context: dict[str, Any] = {}
        codes: dict[str, Any] = {}
        if kind == "FileStatusChanged":
            context = {"status": data["status"], "previous_status": data["previous_status"]}
            codes = {**context, "structure_id": data["structure_id"]}
        path = f"{patient_path}/fil" if kind == "FeedNoteAdded" else patient_path
        return [
            Notice(
                code,
                domain.recipients_except(habilitated(session, patient), actor=author),
                path,
                "patient",
                patient,
                patient,
                author,
                context,
                codes,
            )
        ]
    if kind in ("HabilitationGranted", "HabilitationRevoked", "CareCircleMemberAdded"):
        if kind == "HabilitationGranted" and data["basis"] == "auto_habilitation":
            return []  # the creator of the file habilitates themself
        if kind == "CareCircleMemberAdded" and (data["habilitated"] or data["auto_habilitation"]):
            return []  # the HabilitationGranted of the same transaction says it, once
        code = {
            "HabilitationGranted": "habilitation_granted",
            "HabilitationRevoked": "habilitation_removed",
            "CareCircleMemberAdded": "care_circle_member_added",
        }[kind]
        path = "/patients" if kind == "HabilitationRevoked" else patient_path
        return [
            Notice(
                code,
                domain.recipients_except([(data["holder_kind"], data["holder_id"])], actor=actor),
                path,
                "patient",
                patient,
                patient,
                actor,
                {},
                {"member_id": data["member_id"]},
            )
        ]
    if kind == "FavouriteGroupShared":
        # The structure's members, each by its own preference; the one who shared knows.
        return [
            Notice(
                "favourite_group_shared",
                domain.recipients_except([("structure", data["structure_id"])], actor=data["shared_by"]),
                "/favoris",
                "favourite_group",
                data["group_id"],
                None,
                data["shared_by"],
                {"actor_name": _name(session, data["shared_by"]), "files": data["files"]},
                {"structure_id": data["structure_id"], "files": data["files"]},
            )
        ]
    if kind == "CareCircleInvitationAccepted":
        return [
            Notice(
                "invited_colleague_registered",
                domain.recipients_except([("person", data["invited_by"])], actor=None),
                patient_path,
                "patient",
                patient,
                patient,
                data["person_id"],
                {"professional": _name(session, data["person_id"])},
                {"invitation_id": data["invitation_id"], "person_id": data["person_id"]},
            )
        ]
    if kind in ("AppointmentScheduled", "AppointmentChanged", "AppointmentCancelled"):
        code = {
            "AppointmentScheduled": "appointment_added",
            "AppointmentChanged": "appointment_changed",
            "AppointmentCancelled": "appointment_cancelled",
        }[kind]
        changed = ", ".join(domain.label(APPOINTMENT_FIELDS, c) for c in data.get("changed", []))
        return [
            Notice(
                code,
                domain.recipients_except(_recipients(data["participants"]), actor=actor),
                f"/agenda/rendez-vous/{data['appointment_id']}",
                "appointment",
                data["appointment_id"],
                patient,
                actor,
                {"start": domain.french_datetime(data.get("start"), ZONE), "changed": changed},
                {"type_code": data["type_code"], "start": data.get("start"), "changed": data.get("changed")},
            )
        ]
    if kind.startswith("Delegation"):
        scopes = ", ".join(domain.label(domain.DELEGATION_SCOPES, s) for s in data.get("scopes", []))
        cause = {
            "DelegationRequested": "requested",
            "DelegationGranted": "granted",
            "DelegationRefused": "refused",
        }.get(kind, data.get("cause", "revoked"))
        who = data["delegate_id"] if kind == "DelegationRequested" else actor
        # A party may be a structure (« personne morale »): its id is then a known structure's.
        parties = [
            ("structure", party) if _is_structure(session, party) else (party_kind, party)
            for party_kind, party in domain.delegation_parties(
                kind, data["grantor_id"], data["delegate_id"], actor
            )
        ]
        context = {"scopes": scopes, "cause": cause}
        if kind == "DelegationRequested":
            context["pending_count"] = data["pending_count"]
        return [
            Notice(
                "delegation_request" if kind == "DelegationRequested" else "delegation_changed",
                domain.recipients_except(parties, actor=None if cause == "expired" else actor),
                "/profil/relations",
                "delegation",
                data["delegation_id"],
                None,
                who,
                context,
                {"cause": cause, "scopes": data.get("scopes"), "pending_count": data.get("pending_count")},
            )
        ]
    return []


APPOINTMENT_FIELDS = {
    "type": "type",
    "title": "intitulé",
    "start": "début",
    "end": "fin",
    "place": "lieu",
    "participants": "participants",
}


def handle_event(uow: UnitOfWork, envelope: dict[str, Any], *, public_url: str) -> None:
    for notice in notice_for(uow, envelope):
        deliver(uow, envelope, notice, public_url=public_url)


def handle_invitation_sent(uow: UnitOfWork, envelope: dict[str, Any], *, public_url: str) -> None:
    """The invitation e-mail to the invited address: who invites, a link to register."""
    data = envelope["data"]
    email_address(
        uow,
        envelope,
        "care_circle_invitation",
        data["email"],
        {
            "actor_name": _name(uow.session, data["invited_by"]),
            "invitation_link": f"{public_url}/inscription?invitation={data['invitation_id']}",
        },
        public_url=public_url,
        link=f"{public_url}/inscription?invitation={data['invitation_id']}",
    )


def handle_directory_entry_requested(
    uow: UnitOfWork, envelope: dict[str, Any], *, public_url: str, centre_address: str | None
) -> None:
    """A professional's directory data for the directory service centre (never patient data)."""
    data = envelope["data"]
    professional = {
        k: data.get(k) for k in ("last_name", "first_name", "profession", "rpps", "email", "phone", "city")
    }
    email_address(
        uow,
        envelope,
        "directory_entry_request",
        centre_address,
        {"actor_name": _name(uow.session, data["requested_by"]), "professional": professional},
        public_url=public_url,
        link=f"{public_url}/annuaire/demandes/{data['request_id']}",
    )


# -- the bell --------------------------------------------------------------------------------


def owner_of(actor: Actor) -> domain.Recipient:
    """Acting as a structure (X-Act-As), one sees and sets the structure's notifications."""
    if actor.structure_id:
        return ("structure", actor.structure_id)
    return ("person", actor.person_id)


def notification_view(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "type": notification.type,
        "recipient": {"kind": notification.recipient_kind, "id": notification.recipient_id},
        "title": notification.title,
        "body": notification.body,
        "link": notification.link,
        "object_type": notification.object_type,
        "object_id": notification.object_id,
        "patient_id": notification.patient_id,
        "data": notification.data,
        "created_at": notification.created_at.isoformat(),
        "read": notification.read_at is not None,
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
    }


def _mine(owner: domain.Recipient) -> Any:
    return (Notification.recipient_id == owner[1]) & (Notification.recipient_kind == owner[0])


def _unread_count(session: Session, owner: domain.Recipient) -> int:
    query = select(func.count()).where(_mine(owner), Notification.read_at.is_(None))
    return int(session.scalar(query) or 0)


def list_notifications(
    db: Database, actor: Actor, *, unread_only: bool, limit: int, offset: int
) -> dict[str, Any]:
    """Mine (or my structure's when acting as it), newest first; the unread count."""
    owner = owner_of(actor)
    query = select(Notification).where(_mine(owner))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit).offset(offset)
    with db.session_factory() as session:
        items = [notification_view(n) for n in session.scalars(query)]
        unread = _unread_count(session, owner)
    return {"items": items, "unread_count": unread, "limit": limit, "offset": offset}


def unread_count(db: Database, actor: Actor) -> dict[str, Any]:
    with db.session_factory() as session:
        return {"unread_count": _unread_count(session, owner_of(actor))}


def mark_read(db: Database, actor: Actor, notification_id: str) -> dict[str, Any]:
    owner = owner_of(actor)
    with db.unit_of_work(actor.person_id) as uow:
        notification = uow.session.get(Notification, notification_id)
        # Someone else's notification is as good as missing: no hint that it exists.
        if notification is None or (notification.recipient_kind, notification.recipient_id) != owner:
            raise not_found("notification")
        if notification.read_at is None:
            notification.read_at = utcnow()
        uow.commit()
        return notification_view(notification)


def mark_all_read(db: Database, actor: Actor) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        result = uow.session.execute(
            update(Notification)
            .where(_mine(owner_of(actor)), Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        uow.commit()
    return {"marked": int(getattr(result, "rowcount", 0) or 0), "unread_count": 0}


# -- catalogue and preferences (NOT-2, NOT-3) -------------------------------------------------


def type_view(kind: domain.NotificationType) -> dict[str, Any]:
    return {
        "type": kind.code,
        "group": kind.group,
        "group_label": domain.GROUPS[kind.group],
        "label": kind.label,
        "title": kind.title,
        "status": kind.status,
        "events": list(kind.events),
        "configurable": kind.configurable,
        "default": {"email": kind.default_email, "in_app": kind.default_in_app},
    }


def catalogue() -> dict[str, Any]:
    return {"items": [type_view(t) for t in domain.CATALOGUE]}


def _preferences_view(session: Session, owner: domain.Recipient) -> dict[str, Any]:
    rows = session.execute(
        select(Preference.type, Preference.channel, Preference.enabled).where(
            Preference.owner_kind == owner[0], Preference.owner_id == owner[1]
        )
    )
    overrides: dict[str, dict[str, bool]] = {}
    for code, channel, enabled in rows:
        overrides.setdefault(code, {})[channel] = bool(enabled)
    groups = []
    for group, group_label in domain.GROUPS.items():
        types = []
        for kind in domain.CATALOGUE:
            if kind.group != group or not kind.configurable:
                continue
            wanted = domain.wanted_channels(kind.code, overrides.get(kind.code, {}))
            types.append(
                {
                    "type": kind.code,
                    "label": kind.label,
                    "status": kind.status,
                    "email": wanted["email"],
                    "in_app": wanted["in_app"],
                    "customised": kind.code in overrides,
                }
            )
        groups.append({"group": group, "label": group_label, "types": types})
    delivery = _delivery(session, owner)
    return {
        "owner": {"kind": owner[0], "id": owner[1]},
        "delivery": delivery_view(delivery),
        "groups": groups,
    }


def delivery_view(delivery: domain.Delivery) -> dict[str, Any]:
    quiet = None
    if delivery.quiet_start is not None and delivery.quiet_end is not None:
        quiet = {"start": delivery.quiet_start.strftime("%H:%M"), "end": delivery.quiet_end.strftime("%H:%M")}
    return {"email_mode": delivery.email_mode, "quiet_hours": quiet, "digest_time": "07:00"}


def preferences(db: Database, actor: Actor) -> dict[str, Any]:
    with db.session_factory() as session:
        return _preferences_view(session, owner_of(actor))


def set_preference(db: Database, actor: Actor, code: str, body: dict[str, Any]) -> dict[str, Any]:
    channels = {"email": body.get("email"), "in_app": body.get("in_app")}
    try:
        domain.check_preference_change(code, channels)
    except domain.PreferenceError as exc:
        raise invalid(exc.field, exc.detail) from exc
    owner = owner_of(actor)
    with db.unit_of_work(actor.person_id) as uow:
        for channel, enabled in channels.items():
            if enabled is None:
                continue
            key = (owner[0], owner[1], code, channel)
            row = uow.session.get(Preference, key)
            if row is None:
                row = Preference(owner_kind=owner[0], owner_id=owner[1], type=code, channel=channel)
                uow.session.add(row)
            row.enabled = bool(enabled)
            row.updated_at = utcnow()
        uow.commit()
        return _preferences_view(uow.session, owner)


def reset_preferences(db: Database, actor: Actor, group: str | None) -> dict[str, Any]:
    """« Réinitialiser mes notifications <groupe> » or « … toutes les notifications »."""
    if group is not None and group not in domain.GROUPS:
        raise invalid("group", f"unknown group {group!r}: one of {', '.join(domain.GROUPS)}")
    owner = owner_of(actor)
    with db.unit_of_work(actor.person_id) as uow:
        uow.session.execute(
            delete(Preference).where(
                Preference.owner_kind == owner[0],
                Preference.owner_id == owner[1],
                Preference.type.in_(domain.types_of_group(group)),
            )
        )
        uow.commit()
        return _preferences_view(uow.session, owner)


def _clock(value: str, field_name: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise invalid(field_name, "expected a time of day HH:MM") from exc


def set_delivery(db: Database, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    """[beyond] One e-mail per event or one daily digest; quiet hours during which e-mails wait."""
    owner = owner_of(actor)
    quiet = body.get("quiet_hours")
    start = _clock(quiet["start"], "quiet_hours.start") if quiet else None
    end = _clock(quiet["end"], "quiet_hours.end") if quiet else None
    if start is not None and start == end:
        raise invalid("quiet_hours.end", "quiet hours must not start and end at the same time")
    with db.unit_of_work(actor.person_id) as uow:
        row = uow.session.get(DeliverySetting, owner)
        if row is None:
            row = DeliverySetting(owner_kind=owner[0], owner_id=owner[1])
            uow.session.add(row)
        row.email_mode = body.get("email_mode", row.email_mode or "immediate")
        if "quiet_hours" in body:
            row.quiet_start, row.quiet_end = start, end
        row.updated_at = utcnow()
        uow.commit()
        return _preferences_view(uow.session, owner)
