"""Notify use cases: read models, notifications and their e-mails, the bell's queries."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import not_found
from notify import domain
from notify.models import Notification, OutgoingEmail, Person, PersonStructure

log = logging.getLogger(__name__)


# -- consumers -------------------------------------------------------------------------------


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
    person.updated_at = changed_at
    session.flush()
    session.execute(delete(PersonStructure).where(PersonStructure.person_id == person.person_id))
    for structure_id in dict.fromkeys(data.get("structures") or []):
        session.add(PersonStructure(person_id=person.person_id, structure_id=structure_id))


def _assignees(uow: UnitOfWork, kind: str, assignee_id: str) -> list[str]:
    if kind == "person":
        return [assignee_id]
    query = (
        select(PersonStructure.person_id)
        .where(PersonStructure.structure_id == assignee_id)
        .order_by(PersonStructure.person_id)
    )
    return list(uow.session.scalars(query))


def notify_task_assigned(uow: UnitOfWork, envelope: dict[str, Any], *, public_url: str) -> None:
    """NOT-1, NOT-3 'task assigned': a bell notification and an e-mail for each person concerned.

    Both are written in the consumer's transaction, with its processed_messages key:
    a redelivered event creates neither a second notification nor a second e-mail.
    """
    data = envelope["data"]
    session = uow.session
    via_structure = data["assignee_kind"] == "structure"
    # Whoever assigned the task knows it already (the creator is a recipient by default).
    persons = [
        p for p in _assignees(uow, data["assignee_kind"], data["assignee_id"]) if p != data["assigned_by"]
    ]
    if via_structure and not persons:
        log.info("task assigned to structure %s: no known member to notify", data["assignee_id"])
    assigner = session.get(Person, data["assigned_by"])
    assigner_name = assigner.display_name if assigner else None
    link = f"{public_url.rstrip('/')}/taches/{data['task_id']}"
    now = utcnow()
    for person_id in persons:
        text = domain.task_assigned_notification(
            assigner_name=assigner_name,
            level=data["level"],
            due_date=data["due_date"],
            via_structure=via_structure,
        )
        notification = Notification(
            id=new_id(),
            person_id=person_id,
            kind=domain.TASK_ASSIGNED,
            title=text.subject,
            body=text.body,
            link=f"/taches/{data['task_id']}",
            object_type="task",
            object_id=data["task_id"],
            patient_id=data["patient_id"],
            data={
                "type": data["type"],
                "level": data["level"],
                "due_date": data["due_date"],
                "assignee_kind": data["assignee_kind"],
                "assignee_id": data["assignee_id"],
                "assigned_by": data["assigned_by"],
            },
            source_event_id=envelope["id"],
            created_at=now,
        )
        session.add(notification)
        person = session.get(Person, person_id)
        mail = domain.task_assigned_email(
            recipient_name=person.display_name if person else None,
            assigner_name=assigner_name,
            level=data["level"],
            due_date=data["due_date"],
            link=link,
            via_structure=via_structure,
        )
        session.flush()  # the e-mail references the notification
        session.add(
            OutgoingEmail(
                id=new_id(),
                notification_id=notification.id,
                person_id=person_id,
                to_address=person.email if person else None,
                subject=mail.subject,
                body_text=mail.body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


# -- queries and commands of the bell --------------------------------------------------------


def notification_view(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
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


def _unread_count(session: Any, person_id: str) -> int:
    query = select(func.count()).where(Notification.person_id == person_id, Notification.read_at.is_(None))
    return int(session.scalar(query) or 0)


def list_notifications(
    db: Database, actor: Actor, *, unread_only: bool, limit: int, offset: int
) -> dict[str, Any]:
    """Mine, newest first, each with its read flag; the unread count for the bell."""
    query = select(Notification).where(Notification.person_id == actor.person_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit).offset(offset)
    with db.session_factory() as session:
        items = [notification_view(n) for n in session.scalars(query)]
        unread = _unread_count(session, actor.person_id)
    return {"items": items, "unread_count": unread, "limit": limit, "offset": offset}


def unread_count(db: Database, actor: Actor) -> dict[str, Any]:
    with db.session_factory() as session:
        return {"unread_count": _unread_count(session, actor.person_id)}


def mark_read(db: Database, actor: Actor, notification_id: str) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        notification = uow.session.get(Notification, notification_id)
        # Someone else's notification is as good as missing: no hint that it exists.
        if notification is None or notification.person_id != actor.person_id:
            raise not_found("notification")
        if notification.read_at is None:
            notification.read_at = utcnow()
        uow.commit()
        return notification_view(notification)


def mark_all_read(db: Database, actor: Actor) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        result = uow.session.execute(
            update(Notification)
            .where(Notification.person_id == actor.person_id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        uow.commit()
    return {"marked": int(result.rowcount or 0), "unread_count": 0}
