"""Taches use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, or_, select

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import conflict, forbidden, invalid, not_found
from taches import domain
from taches.models import Habilitation, KnownPatient, Task, TaskRecipient, TaskStatusChange


def _parse_date(field: str, value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD") from exc


def _creator(actor: Actor) -> domain.Recipient:
    """The default recipient: the person, or the structure when acting as one (TSK-1)."""
    kind = "structure" if actor.structure_id else "person"
    return domain.Recipient(kind=kind, id=actor.owner_id)


def _holders(actor: Actor) -> Any:
    """Habilitation rows that give this actor access: the person, or the structure it acts for."""
    holders = [and_(Habilitation.holder_kind == "person", Habilitation.holder_id == actor.person_id)]
    if actor.structure_id:
        holders.append(
            and_(Habilitation.holder_kind == "structure", Habilitation.holder_id == actor.structure_id)
        )
    return and_(Habilitation.active.is_(True), or_(*holders))


def _assigned_to(actor: Actor) -> Any:
    mine = [and_(TaskRecipient.recipient_kind == "person", TaskRecipient.recipient_id == actor.person_id)]
    if actor.structure_id:
        mine.append(
            and_(
                TaskRecipient.recipient_kind == "structure",
                TaskRecipient.recipient_id == actor.structure_id,
            )
        )
    return or_(*mine)


def _require_habilitated(session: Any, actor: Actor, patient_id: str) -> None:
    # Paths without a patient id escape the gateway's habilitation check: check it here.
    query = select(Habilitation.patient_id).where(Habilitation.patient_id == patient_id, _holders(actor))
    if session.execute(query.limit(1)).first() is None:
        raise forbidden("you are not habilitated on this task's patient")


# -- commands ----------------------------------------------------------------------------


def create_task(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """TSK-1, TSK-2: a task on one patient, for habilitated recipients (the creator by default)."""
    try:
        task_input = domain.new_task(
            task_type=body["type"],
            label=body.get("label"),
            level=body.get("level", "information"),
            comment=body.get("comment"),
            due_date=_parse_date("due_date", body.get("due_date")),
            recipients=[domain.Recipient(kind=r["kind"], id=r["id"]) for r in body.get("recipients") or []],
            creator=_creator(actor),
        )
    except domain.TaskRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc

    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        if session.get(KnownPatient, patient_id) is None:
            raise not_found("patient")
        habilitated = {
            (row.holder_kind, row.holder_id)
            for row in session.scalars(
                select(Habilitation).where(
                    Habilitation.patient_id == patient_id, Habilitation.active.is_(True)
                )
            )
        }
        refused = [r for r in task_input.recipients if (r.kind, r.id) not in habilitated]
        if refused:
            names = ", ".join(f"{r.kind} {r.id}" for r in refused)
            raise invalid("recipients", f"recipients must be habilitated on the patient's file: {names}")

        task = Task(
            id=new_id(),
            patient_id=patient_id,
            type=task_input.type,
            label=task_input.label,
            level=task_input.level,
            comment=task_input.comment,
            due_date=task_input.due_date,
            status=domain.INITIAL_STATUS,
            created_by=actor.person_id,
            created_by_structure=actor.structure_id,
            created_at=now,
            updated_at=now,
            version=1,
        )
        session.add(task)
        session.flush()  # recipients and history reference it
        for recipient in task_input.recipients:
            session.add(
                TaskRecipient(task_id=task.id, recipient_kind=recipient.kind, recipient_id=recipient.id)
            )
        session.add(
            TaskStatusChange(
                id=new_id(),
                task_id=task.id,
                from_status=None,
                to_status=task.status,
                changed_by=actor.person_id,
                changed_at=now,
            )
        )
        due = task.due_date.isoformat() if task.due_date else None
        recipients = [{"kind": r.kind, "id": r.id} for r in task_input.recipients]
        # Ids and codes only: the label and comment may hold clinical text.
        uow.emit(
            "TaskCreated",
            subject=patient_id,
            data={
                "task_id": task.id,
                "patient_id": patient_id,
                "type": task.type,
                "level": task.level,
                "status": task.status,
                "due_date": due,
                "created_by": actor.person_id,
                "created_by_structure": actor.structure_id,
                "recipients": recipients,
                "aggregate_version": task.version,
            },
        )
        for recipient in task_input.recipients:
            uow.emit(
                "TaskAssigned",
                subject=patient_id,
                data={
                    "task_id": task.id,
                    "patient_id": patient_id,
                    "type": task.type,
                    "level": task.level,
                    "due_date": due,
                    "assignee_kind": recipient.kind,
                    "assignee_id": recipient.id,
                    "assigned_by": actor.person_id,
                    "aggregate_version": task.version,
                },
            )
        uow.commit()
        return task_view(task, task_input.recipients)


def change_status(db: Database, actor: Actor, task_id: str, requested: str) -> dict[str, Any]:
    """TSK-3: move a task to the next status of its cycle."""
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        # Row lock on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises writers).
        task = session.scalars(select(Task).where(Task.id == task_id).with_for_update()).first()
        if task is None:
            raise not_found("task")
        _require_habilitated(session, actor, task.patient_id)
        try:
            domain.check_transition(task.status, requested)
        except domain.TaskRuleError as exc:
            raise invalid(exc.field, exc.detail) from exc
        except domain.TransitionError as exc:
            raise conflict(str(exc), current_status=exc.current, allowed_status=exc.allowed) from exc
        previous = task.status
        task.status = requested
        task.updated_at = now
        task.version += 1
        session.add(
            TaskStatusChange(
                id=new_id(),
                task_id=task.id,
                from_status=previous,
                to_status=requested,
                changed_by=actor.person_id,
                changed_at=now,
            )
        )
        recipients = _recipients(session, task.id)
        uow.emit(
            "TaskStatusChanged",
            subject=task.patient_id,
            data={
                "task_id": task.id,
                "patient_id": task.patient_id,
                "type": task.type,
                "level": task.level,
                "from_status": previous,
                "to_status": requested,
                "changed_by": actor.person_id,
                "created_by": task.created_by,
                "recipients": [{"kind": r.kind, "id": r.id} for r in recipients],
                "aggregate_version": task.version,
            },
        )
        uow.commit()
        return task_view(task, recipients)


# -- queries -----------------------------------------------------------------------------


def _recipients(session: Any, task_id: str) -> tuple[domain.Recipient, ...]:
    rows = session.scalars(
        select(TaskRecipient)
        .where(TaskRecipient.task_id == task_id)
        .order_by(TaskRecipient.recipient_kind, TaskRecipient.recipient_id)
    )
    return tuple(domain.Recipient(kind=r.recipient_kind, id=r.recipient_id) for r in rows)


def _recipients_of(session: Any, task_ids: list[str]) -> dict[str, list[domain.Recipient]]:
    by_task: dict[str, list[domain.Recipient]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = session.scalars(
            select(TaskRecipient)
            .where(TaskRecipient.task_id.in_(task_ids))
            .order_by(TaskRecipient.recipient_kind, TaskRecipient.recipient_id)
        )
        for row in rows:
            by_task[row.task_id].append(domain.Recipient(kind=row.recipient_kind, id=row.recipient_id))
    return by_task


def task_view(
    task: Task, recipients: tuple[domain.Recipient, ...] | list[domain.Recipient]
) -> dict[str, Any]:
    return {
        "id": task.id,
        "patient_id": task.patient_id,
        "type": task.type,
        "type_label": domain.TASK_TYPES.get(task.type, task.type),
        "label": task.label,
        "level": task.level,
        "comment": task.comment,
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "status": task.status,
        "next_status": domain.NEXT_STATUS[task.status],
        "read_only": domain.is_read_only(task.status),
        "recipients": [{"kind": r.kind, "id": r.id} for r in recipients],
        "created_by": task.created_by,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "version": task.version,
    }


def _ordered(query: Any) -> Any:
    # Soonest due first (undated last), then the most pressing level, then oldest.
    level_rank = case({"urgent": 0, "important": 1, "information": 2}, value=Task.level, else_=3)
    return query.order_by(Task.due_date.is_(None), Task.due_date, level_rank, Task.created_at, Task.id)


def _check_filters(statuses: list[str] | None, levels: list[str] | None) -> None:
    try:
        for status in statuses or []:
            domain.check_status(status)
        for level in levels or []:
            domain.check_level(level)
    except domain.TaskRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc


def _page(session: Any, query: Any, limit: int, offset: int) -> dict[str, Any]:
    tasks = list(session.scalars(_ordered(query).limit(limit).offset(offset)))
    recipients = _recipients_of(session, [t.id for t in tasks])
    return {
        "items": [task_view(t, recipients[t.id]) for t in tasks],
        "limit": limit,
        "offset": offset,
    }


def list_patient_tasks(
    db: Database,
    patient_id: str,
    *,
    statuses: list[str] | None,
    levels: list[str] | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """Every task of one file (access was decided by the gateway with cercle)."""
    _check_filters(statuses, levels)
    query = select(Task).where(Task.patient_id == patient_id)
    if statuses:
        query = query.where(Task.status.in_(statuses))
    if levels:
        query = query.where(Task.level.in_(levels))
    with db.session_factory() as session:
        return _page(session, query, limit, offset)


def dashboard(
    db: Database,
    actor: Actor,
    *,
    statuses: list[str] | None,
    levels: list[str] | None,
    patient_id: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """TSK-4: tasks assigned to me or my structure, on files I may still see."""
    statuses = statuses or list(domain.DEFAULT_DASHBOARD_STATUSES)
    _check_filters(statuses, levels)
    assigned = select(TaskRecipient.task_id).where(_assigned_to(actor))
    # A revoked habilitation hides the file's tasks too: labels may hold clinical text.
    visible = select(Habilitation.patient_id).where(_holders(actor))
    query = select(Task).where(Task.id.in_(assigned), Task.patient_id.in_(visible), Task.status.in_(statuses))
    if levels:
        query = query.where(Task.level.in_(levels))
    if patient_id:
        query = query.where(Task.patient_id == patient_id)
    with db.session_factory() as session:
        page = _page(session, query, limit, offset)
    page["status"] = statuses
    return page


def get_task(db: Database, actor: Actor, task_id: str) -> dict[str, Any]:
    with db.session_factory() as session:
        task = session.get(Task, task_id)
        if task is None:
            raise not_found("task")
        _require_habilitated(session, actor, task.patient_id)
        view = task_view(task, _recipients(session, task.id))
        history = session.scalars(
            select(TaskStatusChange)
            .where(TaskStatusChange.task_id == task.id)
            .order_by(TaskStatusChange.changed_at, TaskStatusChange.id)
        )
        view["history"] = [
            {
                "from_status": h.from_status,
                "to_status": h.to_status,
                "changed_by": h.changed_by,
                "changed_at": h.changed_at.isoformat(),
            }
            for h in history
        ]
        return view


# -- consumers: the read models of known patients and habilitations ------------------------


def _know_patient(uow: UnitOfWork, patient_id: str, at: datetime) -> None:
    if uow.session.get(KnownPatient, patient_id) is None:
        uow.session.add(KnownPatient(patient_id=patient_id, known_since=at))


def _set_habilitation(
    uow: UnitOfWork, patient_id: str, kind: str, holder_id: str, active: bool, changed_at: datetime
) -> None:
    """An older event never overrides a newer one (delivery may be out of order)."""
    key = (patient_id, kind, holder_id)
    row = uow.session.get(Habilitation, key)
    if row is None:
        uow.session.add(
            Habilitation(
                patient_id=patient_id,
                holder_kind=kind,
                holder_id=holder_id,
                active=active,
                updated_at=changed_at,
            )
        )
    elif row.updated_at <= changed_at:
        row.active = active
        row.updated_at = changed_at


def apply_patient_created(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    created_at = datetime.fromisoformat(envelope["occurred_at"])
    _know_patient(uow, data["patient_id"], created_at)
    # The owner is auto-habilitated (PAT-6); cercle confirms with HabilitationGranted.
    _set_habilitation(uow, data["patient_id"], data["owner_kind"], data["owner_id"], True, created_at)


def apply_habilitation(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    data = envelope["data"]
    changed_at = datetime.fromisoformat(envelope["occurred_at"])
    # Only a file that exists can be granted on: it is known from now on.
    _know_patient(uow, data["patient_id"], changed_at)
    _set_habilitation(uow, data["patient_id"], data["holder_kind"], data["holder_id"], active, changed_at)
