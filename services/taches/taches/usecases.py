"""Taches use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, update

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, insert_if_absent, new_id, utcnow
from chassis.problems import Problem, conflict, date_field, forbidden, invalid, not_found
from chassis.readmodels import set_habilitation
from taches import domain
from taches.models import (
    Habilitation,
    KnownPatient,
    PatientLink,
    PersonStructure,
    Task,
    TaskChange,
    TaskDocument,
    TaskPatient,
    TaskRecipient,
    TaskType,
)

EXPORT_LIMIT = 10_000


def _rule(exc: domain.TaskRuleError) -> Problem:
    return invalid(exc.field, exc.detail)


def _creator(actor: Actor) -> domain.Recipient:
    """The default recipient: the person, or the structure when acting as one (TSK-1)."""
    kind = "structure" if actor.structure_id else "person"
    return domain.Recipient(kind=kind, id=actor.owner_id)


def _recipients_in(body: dict[str, Any], key: str = "recipients") -> list[domain.Recipient]:
    return [domain.Recipient(kind=r["kind"], id=r["id"]) for r in body.get(key) or []]


def _holders(actor: Actor) -> Any:
    """Habilitation rows that give this actor access: the person, or the structure it acts for."""
    holders = [and_(Habilitation.holder_kind == "person", Habilitation.holder_id == actor.person_id)]
    if actor.structure_id:
        holders.append(
            and_(Habilitation.holder_kind == "structure", Habilitation.holder_id == actor.structure_id)
        )
    return and_(Habilitation.active.is_(True), or_(*holders))


def _require_habilitated(session: Any, actor: Actor, patient_id: str) -> None:
    # Paths without a patient id escape the gateway's habilitation check: check it here.
    query = select(Habilitation.patient_id).where(Habilitation.patient_id == patient_id, _holders(actor))
    if session.execute(query.limit(1)).first() is None:
        raise forbidden("you are not habilitated on this task's patient")


def _active_types(session: Any) -> dict[str, str]:
    rows = session.execute(select(TaskType.code, TaskType.label).where(TaskType.active.is_(True)))
    return {code: label for code, label in rows}


def _type_labels(session: Any) -> dict[str, str]:
    return {code: label for code, label in session.execute(select(TaskType.code, TaskType.label))}


def _linked_patients(session: Any, patient_id: str) -> set[str]:
    rows = session.execute(
        select(PatientLink.patient_id, PatientLink.linked_patient_id).where(
            PatientLink.active.is_(True),
            or_(PatientLink.patient_id == patient_id, PatientLink.linked_patient_id == patient_id),
        )
    )
    return {a if b == patient_id else b for a, b in rows}


def _check_habilitated_recipients(
    session: Any, patient_id: str, recipients: Iterable[domain.Recipient]
) -> None:
    """Recipients must be habilitated on the file (TSK-1), per the local read model.

    The rows are locked so that a revocation handled meanwhile waits for this transaction
    and then orphans the new assignment too (PostgreSQL; SQLite serialises writers).
    """
    wanted = list(recipients)
    habilitated = {
        (row.holder_kind, row.holder_id)
        for row in session.scalars(
            select(Habilitation)
            .where(Habilitation.patient_id == patient_id, Habilitation.active.is_(True))
            .with_for_update()
        )
    }
    refused = [r for r in wanted if (r.kind, r.id) not in habilitated]
    if refused:
        names = ", ".join(f"{r.kind} {r.id}" for r in refused)
        raise invalid("recipients", f"recipients must be habilitated on the patient's file: {names}")


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _record(
    session: Any, task: Task, changes: Sequence[tuple[str, Any, Any]], who: str, at: datetime
) -> None:
    """History rows (TSK-3): who changed which field, when, from what to what."""
    seq = session.scalar(select(func.count()).where(TaskChange.task_id == task.id)) or 0
    for offset, (field, before, after) in enumerate(changes):
        session.add(
            TaskChange(
                id=new_id(),
                task_id=task.id,
                seq=seq + offset + 1,
                field=field,
                from_value=_as_text(before),
                to_value=_as_text(after),
                changed_by=who,
                changed_at=at,
            )
        )


def _emit_assigned(uow: UnitOfWork, task: Task, recipients: Iterable[domain.Recipient], by: str) -> None:
    due = task.due_date.isoformat() if task.due_date else None
    for recipient in recipients:
        uow.emit(
            "TaskAssigned",
            subject=task.patient_id,
            data={
                "task_id": task.id,
                "patient_id": task.patient_id,
                "type": task.type,
                "level": task.level,
                "due_date": due,
                "assignee_kind": recipient.kind,
                "assignee_id": recipient.id,
                "assigned_by": by,
                "aggregate_version": task.version,
            },
        )


def _assign(session: Any, task: Task, recipient: domain.Recipient) -> None:
    session.add(
        TaskRecipient(
            task_id=task.id,
            recipient_kind=recipient.kind,
            recipient_id=recipient.id,
            task_status=task.status,
            task_due_date=task.due_date,
        )
    )


def _sync_recipients(session: Any, task: Task) -> None:
    """Keep the recipients' copies of status and due date in step with the task."""
    session.execute(
        update(TaskRecipient)
        .where(TaskRecipient.task_id == task.id)
        .values(task_status=task.status, task_due_date=task.due_date),
        execution_options={"synchronize_session": False},
    )


def _locked_task(session: Any, task_id: str) -> Task:
    # Row lock on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises writers).
    task = session.scalars(select(Task).where(Task.id == task_id).with_for_update()).first()
    if task is None:
        raise not_found("task")
    return task


# -- commands ----------------------------------------------------------------------------


def create_task(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """TSK-1, TSK-2: a task on one patient (plus linked ones), for habilitated recipients."""
    due_date = date_field("due_date", body.get("due_date"))
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        if session.get(KnownPatient, patient_id) is None:
            raise not_found("patient")
        try:
            task_input = domain.new_task(
                task_type=body["type"],
                active_types=_active_types(session),
                label=body.get("label"),
                level=body.get("level", "information"),
                comment=body.get("comment"),
                due_date=due_date,
                status=body.get("status"),
                recipients=_recipients_in(body),
                creator=_creator(actor),
                creator_is_recipient=body.get("creator_is_recipient", True),
                patient_id=patient_id,
                other_patients=body.get("other_patient_ids") or [],
                linked_patients=_linked_patients(session, patient_id),
                form_id=body.get("form_id"),
                documents=body.get("document_ids") or [],
                zone=body.get("zone"),
            )
        except domain.TaskRuleError as exc:
            raise _rule(exc) from exc
        _check_habilitated_recipients(session, patient_id, task_input.recipients)

        task = Task(
            id=new_id(),
            patient_id=patient_id,
            type=task_input.type,
            label=task_input.label,
            level=task_input.level,
            comment=task_input.comment,
            due_date=task_input.due_date,
            status=task_input.status,
            zone=task_input.zone,
            form_id=task_input.form_id,
            created_by=actor.person_id,
            created_by_structure=actor.structure_id,
            created_at=now,
            updated_at=now,
            version=1,
        )
        session.add(task)
        session.flush()  # recipients and history reference it
        for recipient in task_input.recipients:
            _assign(session, task, recipient)
        for other in task_input.other_patients:
            session.add(TaskPatient(task_id=task.id, patient_id=other))
        for position, document_id in enumerate(task_input.documents):
            session.add(TaskDocument(task_id=task.id, document_id=document_id, position=position))
        _record(session, task, [("status", None, task.status)], actor.person_id, now)
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
                "due_date": task.due_date.isoformat() if task.due_date else None,
                "created_by": actor.person_id,
                "created_by_structure": actor.structure_id,
                "recipients": recipients,
                "aggregate_version": task.version,
            },
        )
        _emit_assigned(uow, task, task_input.recipients, actor.person_id)
        uow.commit()
        return _view(session, task)


def change_status(db: Database, actor: Actor, task_id: str, requested: str) -> dict[str, Any]:
    """TSK-3: move a task to the next status of its cycle."""
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        task = _locked_task(session, task_id)
        _require_habilitated(session, actor, task.patient_id)
        try:
            domain.check_transition(task.status, requested)
        except domain.TaskRuleError as exc:
            raise _rule(exc) from exc
        except domain.TransitionError as exc:
            raise conflict(str(exc), current_status=exc.current, allowed_status=exc.allowed) from exc
        previous = task.status
        task.status = requested
        task.updated_at = now
        task.version += 1
        _sync_recipients(session, task)
        _record(session, task, [("status", previous, requested)], actor.person_id, now)
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
        return _view(session, task)


EDITABLE = ("type", "label", "level", "comment", "due_date", "zone", "form_id")


def update_task(db: Database, actor: Actor, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Edit a task (not its status): refused while traitee (TSK-3); every change is recorded."""
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        task = _locked_task(session, task_id)
        _require_habilitated(session, actor, task.patient_id)
        try:
            domain.check_editable(task.status)
        except domain.ReadOnlyError as exc:
            raise conflict(str(exc), current_status=task.status) from exc
        current_recipients = _recipients(session, task.id, include_orphaned=True)
        current_others = _others_of(session, [task.id])[task.id]
        current_documents = _documents_of(session, [task.id])[task.id]
        before: dict[str, Any] = {name: getattr(task, name) for name in EDITABLE}
        try:
            types = _active_types(session)
            # A type withdrawn from the list stays valid on the tasks that already have it.
            types.setdefault(task.type, _type_labels(session).get(task.type, task.type))
            task_type = domain.check_type(body.get("type", task.type), types)
            after: dict[str, Any] = {"type": task_type}
            if "label" in body or "type" in body:
                # A label that was only the old type's name follows the new type.
                kept = None if task.label == types.get(task.type) else task.label
                after["label"] = domain.check_label(task_type, types[task_type], body.get("label", kept))
            if "level" in body:
                after["level"] = domain.check_level(body["level"])
            if "comment" in body:
                after["comment"] = domain.check_comment(body["comment"])
            if "due_date" in body:
                after["due_date"] = date_field("due_date", body["due_date"])
            if "zone" in body:
                after["zone"] = domain.check_zone(body["zone"])
            if "form_id" in body:
                after["form_id"] = body["form_id"] or None
            recipients = current_recipients
            if "recipients" in body:
                recipients = domain.check_recipients(_recipients_in(body), _creator(actor))
            others = tuple(current_others)
            if "other_patient_ids" in body:
                others = domain.check_other_patients(
                    task.patient_id,
                    body["other_patient_ids"] or [],
                    _linked_patients(session, task.patient_id),
                )
            documents = tuple(current_documents)
            if "document_ids" in body:
                documents = domain.check_documents(body["document_ids"] or [])
        except domain.TaskRuleError as exc:
            raise _rule(exc) from exc

        changed = domain.changes(before, after)
        added = [r for r in recipients if r not in current_recipients]
        removed = [r for r in current_recipients if r not in recipients]
        if added:
            _check_habilitated_recipients(session, task.patient_id, added)
        if added or removed:
            changed.append(("recipients", _recipient_codes(current_recipients), _recipient_codes(recipients)))
        if list(others) != list(current_others):
            changed.append(("other_patient_ids", current_others, list(others)))
        if list(documents) != list(current_documents):
            changed.append(("document_ids", current_documents, list(documents)))
        if not changed:
            return _view(session, task)

        for name, _before, value in domain.changes(before, after):
            setattr(task, name, value)
        for recipient in removed:
            session.execute(
                TaskRecipient.__table__.delete().where(
                    TaskRecipient.task_id == task.id,
                    TaskRecipient.recipient_kind == recipient.kind,
                    TaskRecipient.recipient_id == recipient.id,
                )
            )
        for recipient in added:
            _assign(session, task, recipient)
        if list(others) != list(current_others):
            session.execute(TaskPatient.__table__.delete().where(TaskPatient.task_id == task.id))
            for other in others:
                session.add(TaskPatient(task_id=task.id, patient_id=other))
        if list(documents) != list(current_documents):
            session.execute(TaskDocument.__table__.delete().where(TaskDocument.task_id == task.id))
            for position, document_id in enumerate(documents):
                session.add(TaskDocument(task_id=task.id, document_id=document_id, position=position))
        task.updated_at = now
        task.version += 1
        session.flush()
        _sync_recipients(session, task)
        _record(session, task, changed, actor.person_id, now)
        _emit_assigned(uow, task, added, actor.person_id)
        uow.commit()
        return _view(session, task)


def _recipient_codes(recipients: Iterable[domain.Recipient]) -> list[str]:
    return [f"{r.kind}:{r.id}" for r in recipients]


def _super_user_structures(actor: Actor) -> list[str]:
    """The structures whose orphaned tasks this actor takes care of (role super_user)."""
    if "super_user" not in actor.roles:
        raise forbidden("only a structure's super users see and reassign orphaned tasks")
    structures = [actor.structure_id] if actor.structure_id else list(actor.structures)
    if not structures:
        raise forbidden("a super user must belong to a structure")
    return structures


def _governed_orphans(structures: list[str]) -> Any:
    """Orphaned assignments a structure answers for: its own, its members', and its creations."""
    members = select(PersonStructure.person_id).where(PersonStructure.structure_id.in_(structures))
    return and_(
        TaskRecipient.orphaned_at.is_not(None),
        or_(
            and_(TaskRecipient.recipient_kind == "structure", TaskRecipient.recipient_id.in_(structures)),
            and_(TaskRecipient.recipient_kind == "person", TaskRecipient.recipient_id.in_(members)),
            Task.created_by_structure.in_(structures),
        ),
    )


def reassign_task(db: Database, actor: Actor, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A super user hands an orphaned assignment over to habilitated recipients."""
    structures = _super_user_structures(actor)
    orphan = domain.Recipient(body["recipient"]["kind"], body["recipient"]["id"])
    try:
        targets = domain.check_recipients(_recipients_in(body, "to"), orphan)
    except domain.TaskRuleError as exc:
        raise invalid("to", exc.detail) from exc
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        task = _locked_task(session, task_id)
        row = session.execute(
            select(TaskRecipient)
            .join(Task, Task.id == TaskRecipient.task_id)
            .where(
                TaskRecipient.task_id == task.id,
                TaskRecipient.recipient_kind == orphan.kind,
                TaskRecipient.recipient_id == orphan.id,
                _governed_orphans(structures),
            )
        ).scalar_one_or_none()
        if row is None:
            raise not_found("orphaned assignment")
        current = _recipients(session, task.id, include_orphaned=True)
        _check_habilitated_recipients(session, task.patient_id, targets)
        session.delete(row)
        added = [t for t in targets if t not in current]
        for recipient in added:
            _assign(session, task, recipient)
        # A target that was itself orphaned is habilitated again (checked above): restore it.
        for recipient in targets:
            if recipient in current and recipient != orphan:
                session.execute(
                    update(TaskRecipient)
                    .where(
                        TaskRecipient.task_id == task.id,
                        TaskRecipient.recipient_kind == recipient.kind,
                        TaskRecipient.recipient_id == recipient.id,
                    )
                    .values(orphaned_at=None)
                )
        session.flush()
        after = _recipients(session, task.id, include_orphaned=True)
        task.updated_at = now
        task.version += 1
        _record(
            session,
            task,
            [("recipients", _recipient_codes(current), _recipient_codes(after))],
            actor.person_id,
            now,
        )
        _emit_assigned(uow, task, added, actor.person_id)
        uow.commit()
        return _view(session, task)


# -- task types (admin-editable list) -----------------------------------------------------


def _type_view(row: TaskType) -> dict[str, Any]:
    return {"code": row.code, "label": row.label, "active": row.active, "position": row.position}


def list_task_types(db: Database, include_inactive: bool) -> dict[str, Any]:
    query = select(TaskType).order_by(TaskType.position, TaskType.code)
    if not include_inactive:
        query = query.where(TaskType.active.is_(True))
    with db.session_factory() as session:
        return {"items": [_type_view(row) for row in session.scalars(query)]}


def _require_admin(actor: Actor) -> None:
    if "admin" not in actor.roles:
        raise forbidden("only an administrator may change the list of task types")


def create_task_type(db: Database, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    _require_admin(actor)
    try:
        code = domain.check_type_code(body["code"])
        label = domain.check_type_label(body.get("label"))
    except domain.TaskRuleError as exc:
        raise _rule(exc) from exc
    with db.unit_of_work(actor.person_id) as uow:
        if uow.session.get(TaskType, code) is not None:
            raise conflict(f"task type {code} already exists")
        position = body.get("position")
        if position is None:
            position = (uow.session.scalar(select(func.max(TaskType.position))) or 0) + 1
        row = TaskType(code=code, label=label, active=body.get("active", True), position=position)
        uow.session.add(row)
        uow.commit()
        return _type_view(row)


def update_task_type(db: Database, actor: Actor, code: str, body: dict[str, Any]) -> dict[str, Any]:
    """Rename, reorder or withdraw a type; withdrawn types stay on the tasks that have them."""
    _require_admin(actor)
    with db.unit_of_work(actor.person_id) as uow:
        row = uow.session.get(TaskType, code)
        if row is None:
            raise not_found("task type")
        try:
            if "label" in body:
                row.label = domain.check_type_label(body["label"])
        except domain.TaskRuleError as exc:
            raise _rule(exc) from exc
        if "active" in body:
            row.active = body["active"]
        if "position" in body:
            row.position = body["position"]
        uow.commit()
        return _type_view(row)


# -- queries -----------------------------------------------------------------------------


def _recipients(session: Any, task_id: str, include_orphaned: bool = False) -> tuple[domain.Recipient, ...]:
    query = select(TaskRecipient).where(TaskRecipient.task_id == task_id)
    if not include_orphaned:
        query = query.where(TaskRecipient.orphaned_at.is_(None))
    rows = session.scalars(query.order_by(TaskRecipient.recipient_kind, TaskRecipient.recipient_id))
    return tuple(domain.Recipient(kind=r.recipient_kind, id=r.recipient_id) for r in rows)


def _recipient_rows_of(session: Any, task_ids: list[str]) -> dict[str, list[TaskRecipient]]:
    by_task: dict[str, list[TaskRecipient]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = session.scalars(
            select(TaskRecipient)
            .where(TaskRecipient.task_id.in_(task_ids))
            .order_by(TaskRecipient.recipient_kind, TaskRecipient.recipient_id)
        )
        for row in rows:
            by_task[row.task_id].append(row)
    return by_task


def _others_of(session: Any, task_ids: list[str]) -> dict[str, list[str]]:
    by_task: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = session.execute(
            select(TaskPatient.task_id, TaskPatient.patient_id)
            .where(TaskPatient.task_id.in_(task_ids))
            .order_by(TaskPatient.patient_id)
        )
        for task_id, patient_id in rows:
            by_task[task_id].append(patient_id)
    return by_task


def _documents_of(session: Any, task_ids: list[str]) -> dict[str, list[str]]:
    by_task: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
    if task_ids:
        rows = session.execute(
            select(TaskDocument.task_id, TaskDocument.document_id)
            .where(TaskDocument.task_id.in_(task_ids))
            .order_by(TaskDocument.position)
        )
        for task_id, document_id in rows:
            by_task[task_id].append(document_id)
    return by_task


def _views(session: Any, tasks: list[Task]) -> list[dict[str, Any]]:
    ids = [t.id for t in tasks]
    recipients = _recipient_rows_of(session, ids)
    others = _others_of(session, ids)
    documents = _documents_of(session, ids)
    labels = _type_labels(session)
    return [task_view(t, recipients[t.id], others[t.id], documents[t.id], labels) for t in tasks]


def _view(session: Any, task: Task) -> dict[str, Any]:
    return _views(session, [task])[0]


def task_view(
    task: Task,
    recipients: Sequence[TaskRecipient],
    others: Sequence[str],
    documents: Sequence[str],
    type_labels: dict[str, str],
) -> dict[str, Any]:
    return {
        "id": task.id,
        "patient_id": task.patient_id,
        "other_patient_ids": list(others),
        "type": task.type,
        "type_label": type_labels.get(task.type, task.type),
        "label": task.label,
        "level": task.level,
        "comment": task.comment,
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "status": task.status,
        "next_status": domain.NEXT_STATUS[task.status],
        "read_only": domain.is_read_only(task.status),
        "recipients": [
            {"kind": r.recipient_kind, "id": r.recipient_id, "orphaned": r.orphaned_at is not None}
            for r in recipients
        ],
        "form_id": task.form_id,
        "document_ids": list(documents),
        "zone": task.zone,
        "created_by": task.created_by,
        "created_by_structure": task.created_by_structure,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "version": task.version,
    }


def _mine(actor: Actor, context: str) -> Any:
    """Recipient rows that put a task on the actor's dashboard (never orphaned ones)."""
    holders = []
    if context in ("all", "mine"):
        holders.append(
            and_(TaskRecipient.recipient_kind == "person", TaskRecipient.recipient_id == actor.person_id)
        )
    if context in ("all", "structure") and actor.structure_id:
        holders.append(
            and_(
                TaskRecipient.recipient_kind == "structure", TaskRecipient.recipient_id == actor.structure_id
            )
        )
    return and_(or_(*holders), TaskRecipient.orphaned_at.is_(None))


def _concerns(patients: Sequence[str]) -> Any:
    """Tasks on these patients, as the main patient or as a linked one.

    A UNION of two indexed look-ups: an OR of both conditions would scan every task.
    """
    main = select(Task.id).where(Task.patient_id.in_(patients))
    linked = select(TaskPatient.task_id).where(TaskPatient.patient_id.in_(patients))
    return Task.id.in_(main.union(linked))


def _filtered(query: Any, f: domain.DashboardFilter) -> Any:
    if f.statuses:
        query = query.where(Task.status.in_(f.statuses))
    if f.levels:
        query = query.where(Task.level.in_(f.levels))
    if f.types:
        query = query.where(Task.type.in_(f.types))
    if f.patients:
        query = query.where(_concerns(f.patients))
    if f.zones:
        query = query.where(Task.zone.in_(f.zones))
    if f.recipients:
        wanted = or_(
            *(
                and_(TaskRecipient.recipient_kind == r.kind, TaskRecipient.recipient_id == r.id)
                for r in f.recipients
            )
        )
        query = query.where(Task.id.in_(select(TaskRecipient.task_id).where(wanted)))
    if "form" in f.actions:
        query = query.where(Task.form_id.is_not(None))
    if "documents" in f.actions:
        query = query.where(exists().where(TaskDocument.task_id == Task.id))
    if f.due_from:
        query = query.where(Task.due_date >= f.due_from)
    if f.due_to:
        query = query.where(Task.due_date <= f.due_to)
    return query


def _ordered(query: Any, f: domain.DashboardFilter) -> Any:
    level_rank = case(domain.LEVEL_RANK, value=Task.level, else_=3)
    status_rank = case({s: i for i, s in enumerate(domain.STATUSES)}, value=Task.status, else_=9)
    keys: dict[str, Any] = {
        "due_date": Task.due_date,
        "level": level_rank,
        "status": status_rank,
        "type": Task.type,
        "created_at": Task.created_at,
        "updated_at": Task.updated_at,
    }
    key = keys[f.sort]
    primary = [key.desc() if f.order == "desc" else key.asc()]
    if f.sort == "due_date":
        # Undated tasks last whatever the direction: they are the least pressing.
        primary.insert(0, Task.due_date.is_(None))
    # Ties: soonest due, most pressing, oldest, then the id for a stable page order.
    return query.order_by(
        *primary, Task.due_date.is_(None), Task.due_date, level_rank, Task.created_at, Task.id
    )


def _page(session: Any, query: Any, f: domain.DashboardFilter, limit: int, offset: int) -> dict[str, Any]:
    # The total rides along the page (a window count): one pass over the matching tasks
    # instead of two (tests/bench/dashboard.py).
    rows = session.execute(
        _ordered(query.add_columns(func.count().over()), f).limit(limit).offset(offset)
    ).all()
    tasks = [row[0] for row in rows]
    if rows:
        total = rows[0][1]
    else:  # past the last page, or nothing matches
        total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return {"items": _views(session, tasks), "total": total, "limit": limit, "offset": offset}


def _filter_of(params: dict[str, Any], default_statuses: Sequence[str]) -> domain.DashboardFilter:
    try:
        return domain.dashboard_filter(
            context=params.get("context"),
            statuses=params.get("status"),
            default_statuses=default_statuses,
            levels=params.get("level"),
            types=params.get("type"),
            patients=params.get("patient_id"),
            recipients=params.get("recipient"),
            zones=params.get("zone"),
            actions=params.get("action"),
            due_from=date_field("due_from", params.get("due_from")),
            due_to=date_field("due_to", params.get("due_to")),
            sort=params.get("sort"),
            order=params.get("order"),
        )
    except domain.TaskRuleError as exc:
        raise _rule(exc) from exc


def _dashboard_query(actor: Actor, f: domain.DashboardFilter) -> Any:
    if f.context == "structure" and not actor.structure_id:
        raise invalid("context", "act as a structure (X-Act-As) to see its tasks")
    if f.context == "created":
        # My creations, on files I may still see (labels may hold clinical text).
        visible = select(Habilitation.patient_id).where(_holders(actor))
        query = select(Task).where(Task.created_by == actor.person_id, Task.patient_id.in_(visible))
    else:
        # Status and due range are narrowed on the recipients' copies first (the inbox index),
        # so the database visits only the tasks that can match.
        mine = select(TaskRecipient.task_id).where(_mine(actor, f.context))
        if f.statuses:
            mine = mine.where(TaskRecipient.task_status.in_(f.statuses))
        if f.due_from:
            mine = mine.where(TaskRecipient.task_due_date >= f.due_from)
        if f.due_to:
            mine = mine.where(TaskRecipient.task_due_date <= f.due_to)
        query = select(Task).where(Task.id.in_(mine))
    return _filtered(query, f)


def dashboard(db: Database, actor: Actor, params: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
    """TSK-4: tasks assigned to me or my structure, filtered, sorted and paged with a total."""
    f = _filter_of(params, domain.DEFAULT_DASHBOARD_STATUSES)
    with db.session_factory() as session:
        page = _page(session, _dashboard_query(actor, f), f, limit, offset)
    page["status"] = list(f.statuses)
    return page


def list_patient_tasks(
    db: Database, patient_id: str, params: dict[str, Any], limit: int, offset: int
) -> dict[str, Any]:
    """Every task concerning one file, any status unless filtered (access decided by the gateway)."""
    f = _filter_of({**params, "patient_id": [patient_id]}, ())
    with db.session_factory() as session:
        page = _page(session, _filtered(select(Task), f), f, limit, offset)
    page["status"] = list(f.statuses)
    return page


def orphaned_tasks(
    db: Database, actor: Actor, params: dict[str, Any], limit: int, offset: int
) -> dict[str, Any]:
    """Tasks whose recipient lost its habilitation, for the structure's super users."""
    structures = _super_user_structures(actor)
    f = _filter_of(params, domain.DEFAULT_DASHBOARD_STATUSES)
    orphaned = select(TaskRecipient.task_id).join(Task, Task.id == TaskRecipient.task_id)
    query = _filtered(select(Task).where(Task.id.in_(orphaned.where(_governed_orphans(structures)))), f)
    with db.session_factory() as session:
        return _page(session, query, f, limit, offset)


def get_task(db: Database, actor: Actor, task_id: str) -> dict[str, Any]:
    with db.session_factory() as session:
        task = session.get(Task, task_id)
        if task is None:
            raise not_found("task")
        _require_habilitated(session, actor, task.patient_id)
        view = _view(session, task)
        view["history"] = _history(session, task.id)
        return view


def _history(session: Any, task_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(TaskChange).where(TaskChange.task_id == task_id).order_by(TaskChange.seq))
    items = []
    for h in rows:
        item = {
            "field": h.field,
            "from": h.from_value,
            "to": h.to_value,
            "changed_by": h.changed_by,
            "changed_at": h.changed_at.isoformat(),
        }
        if h.field == "status":
            # The shape status-only clients (the web's task page) already read.
            item.update(from_status=h.from_value, to_status=h.to_value)
        items.append(item)
    return items


def task_history(db: Database, actor: Actor, task_id: str) -> dict[str, Any]:
    with db.session_factory() as session:
        task = session.get(Task, task_id)
        if task is None:
            raise not_found("task")
        _require_habilitated(session, actor, task.patient_id)
        return {"task_id": task.id, "items": _history(session, task.id)}


# -- export (TSK-4) --------------------------------------------------------------------------

LEVEL_LABELS = {"information": "Information", "important": "Important", "urgent": "Urgent"}
STATUS_LABELS = {"a_traiter": "À traiter", "en_cours": "En cours", "traitee": "Traitée", "annulee": "Annulée"}
EXPORT_HEADERS = [
    "Niveau",
    "Type",
    "Libellé",
    "Patient",
    "Autres patients",
    "Destinataires",
    "Commentaire",
    "Documents",
    "Formulaire",
    "Zone",
    "Date d'échéance",
    "Statut",
    "Créée le",
    "Créée par",
]


def _export_rows(db: Database, actor: Actor, params: dict[str, Any]) -> list[list[Any]]:
    f = _filter_of(params, domain.DEFAULT_DASHBOARD_STATUSES)
    with db.session_factory() as session:
        query = _ordered(_dashboard_query(actor, f), f).limit(EXPORT_LIMIT)
        views = _views(session, list(session.scalars(query)))
    return [
        [
            LEVEL_LABELS[v["level"]],
            v["type_label"],
            v["label"],
            v["patient_id"],
            ", ".join(v["other_patient_ids"]),
            ", ".join(f"{r['kind']}:{r['id']}" for r in v["recipients"] if not r["orphaned"]),
            v["comment"] or "",
            len(v["document_ids"]),
            v["form_id"] or "",
            v["zone"] or "",
            v["due_date"] or "",
            STATUS_LABELS[v["status"]],
            v["created_at"][:10],
            v["created_by"],
        ]
        for v in views
    ]


def _cell(value: Any) -> Any:
    # A user's text starting with = + - @ would run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(db: Database, actor: Actor, params: dict[str, Any]) -> bytes:
    out = io.StringIO()
    # Semicolons and a BOM: what a French spreadsheet opens without an import dialog.
    writer = csv.writer(out, delimiter=";")
    writer.writerow(EXPORT_HEADERS)
    for row in _export_rows(db, actor, params):
        writer.writerow([_cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export_xlsx(db: Database, actor: Actor, params: dict[str, Any]) -> bytes:
    from openpyxl import Workbook  # only exports need it

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Tâches")
    sheet.append(EXPORT_HEADERS)
    for row in _export_rows(db, actor, params):
        sheet.append([_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- due soon (TSK-5) ------------------------------------------------------------------------


def emit_due_soon(db: Database, today: date, lead_days: int, batch: int = 200) -> int:
    """Emit TaskDueSoon once per open task due within the lead time; returns how many.

    The due date announced is stored on the task in the same transaction as the outbox
    row, so a restart never announces twice; SKIP LOCKED lets several workers share it.
    """
    start, end = domain.due_soon_window(today, lead_days)
    emitted = 0
    while True:
        with db.unit_of_work("taches") as uow:
            session = uow.session
            tasks = list(
                session.scalars(
                    select(Task)
                    .where(
                        Task.status.in_(domain.OPEN_STATUSES),
                        Task.due_date.between(start, end),
                        or_(Task.due_soon_sent_for.is_(None), Task.due_soon_sent_for != Task.due_date),
                    )
                    .order_by(Task.due_date, Task.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            for task in tasks:
                if not domain.is_due_soon(
                    task.status, task.due_date, task.due_soon_sent_for, today, lead_days
                ):
                    continue
                task.due_soon_sent_for = task.due_date
                assert task.due_date is not None  # checked by is_due_soon
                uow.emit(
                    "TaskDueSoon",
                    subject=task.patient_id,
                    data={
                        "task_id": task.id,
                        "patient_id": task.patient_id,
                        "due_date": task.due_date.isoformat(),
                        "recipients": [{"kind": r.kind, "id": r.id} for r in _recipients(session, task.id)],
                    },
                )
                emitted += 1
            uow.commit()
        if len(tasks) < batch:
            return emitted


# -- consumers: read models of patients, links, habilitations, persons ------------------------


def _know_patient(uow: UnitOfWork, patient_id: str, at: datetime) -> None:
    insert_if_absent(uow.session, KnownPatient.__table__, {"patient_id": patient_id, "known_since": at})


def _set_habilitation(
    uow: UnitOfWork, patient_id: str, kind: str, holder_id: str, active: bool, changed_at: datetime
) -> bool:
    """Whether this event changed the habilitation (out-of-order safe: `set_habilitation`)."""
    return set_habilitation(uow.session, Habilitation, patient_id, kind, holder_id, active, changed_at)


def _set_orphaned(uow: UnitOfWork, patient_id: str, kind: str, holder_id: str, at: datetime | None) -> None:
    """Orphan (at) or restore (None) the holder's assignments on the patient's tasks."""
    on_patient = select(Task.id).where(Task.patient_id == patient_id)
    query = update(TaskRecipient).where(
        TaskRecipient.task_id.in_(on_patient),
        TaskRecipient.recipient_kind == kind,
        TaskRecipient.recipient_id == holder_id,
    )
    if at is not None:
        # Already orphaned rows keep their date: a second revocation changes nothing.
        query = query.where(TaskRecipient.orphaned_at.is_(None))
    else:
        query = query.where(TaskRecipient.orphaned_at.is_not(None))
    uow.session.execute(query.values(orphaned_at=at), execution_options={"synchronize_session": False})


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
    changed = _set_habilitation(
        uow, data["patient_id"], data["holder_kind"], data["holder_id"], active, changed_at
    )
    # Only a change of state moves assignments (a grant confirmed again moved none).
    if changed:
        # Revoked: the holder's tasks on the file leave its dashboard for the super users';
        # granted again: the assignments nobody reassigned come back.
        _set_orphaned(
            uow, data["patient_id"], data["holder_kind"], data["holder_id"], None if active else changed_at
        )


def apply_patients_link(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    data = envelope["data"]
    at = datetime.fromisoformat(envelope["occurred_at"])
    row = uow.session.get(PatientLink, data["link_id"])
    if row is None:
        uow.session.add(
            PatientLink(
                link_id=data["link_id"],
                patient_id=data["patient_id"],
                linked_patient_id=data["linked_patient_id"],
                active=active,
                updated_at=at,
            )
        )
    elif row.updated_at <= at:
        row.active = active
        row.updated_at = at


def apply_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    person_id = data["person_id"]
    session = uow.session
    session.execute(PersonStructure.__table__.delete().where(PersonStructure.person_id == person_id))
    for structure_id in data.get("structures") or []:
        session.add(PersonStructure(person_id=person_id, structure_id=structure_id))
