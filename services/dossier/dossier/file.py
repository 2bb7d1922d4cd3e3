"""Use cases of the patient file's panels (PAT-7..PAT-18) and the consumers feeding them.

Each command owns its transaction, writes its feed line, moves the file up the list
(`file_list.touch`) and emits its event in the same commit. Read models of other services
(tasks, appointments, care circle, delegations) are kept from their events only.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, insert_new, new_id, utcnow
from chassis.problems import Problem, conflict, forbidden, invalid, not_found
from dossier import domain, domain_file, file_list
from dossier.models import Patient
from dossier.models_file import (
    AppointmentView,
    CircleMember,
    Death,
    Delegation,
    Favourite,
    FeedEntry,
    FileProfile,
    FileStatus,
    Hospitalisation,
    Memo,
    PatientLink,
    TaskView,
    Zone,
    ZoneCommune,
)

# French labels of feed lines (the UI shows them as they are).
FEED_LABELS = {
    "PatientCreated": "Dossier créé",
    "PatientsLinked": "Dossier lié",
    "PatientsUnlinked": "Lien entre dossiers supprimé",
    "FileStatusChanged": "Statut du dossier modifié",
    "HospitalisationRecorded": "Hospitalisation enregistrée",
    "PatientDeceased": "Décès déclaré",
    "MemoAdded": "Mémo ajouté",
    "FeedNoteAdded": "Note",
    "TaskCreated": "Tâche créée",
    "TaskStatusChanged": "Statut d'une tâche modifié",
    "AppointmentScheduled": "Rendez-vous planifié",
    "AppointmentChanged": "Rendez-vous modifié",
    "AppointmentCancelled": "Rendez-vous annulé",
    "CareCircleMemberAdded": "Membre ajouté au cercle de soins",
    "CareCircleMemberRemoved": "Membre retiré du cercle de soins",
    "HabilitationGranted": "Habilitation accordée",
    "HabilitationRevoked": "Habilitation retirée",
    "BreakGlassAccessGranted": "Accès bris de glace",
    "BreakGlassAccessEnded": "Fin d'un accès bris de glace",
    "DocumentAdded": "Document ajouté",
}


def _rule(exc: domain_file.FileRuleError) -> Problem:
    return invalid(exc.field, exc.detail)


def _date(field: str, value: Any, *, required: bool = True) -> date | None:
    if value is None or value == "":
        if required:
            raise invalid(field, f"{field} is required")
        return None
    try:
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError as exc:
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD") from exc


def _patient(session: Session, patient_id: str) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise not_found("patient")
    return patient


def write_feed_line(
    session: Session,
    patient_id: str,
    event_type: str,
    actor_id: str | None,
    *,
    ref_id: str | None = None,
    importance: str = "normal",
    note: str | None = None,
    active: bool = False,
    when: datetime | None = None,
) -> FeedEntry:
    """Write one line of the news feed (PAT-14). A plain INSERT: a line is never changed in
    the transaction that writes it, and every event a consumer applies writes one (the ORM's
    flush of these lines was a large part of the dossier worker's CPU). Returns the line,
    as a detached object, for its view."""
    entry = FeedEntry(
        id=new_id(),
        patient_id=patient_id,
        kind="note" if event_type == "FeedNoteAdded" else "event",
        event_type=event_type,
        ref_id=ref_id,
        actor_id=actor_id,
        importance=importance,
        text=note,
        active=active,
        occurred_at=when or utcnow(),
    )
    insert_new(session, entry)
    return entry


def _profile(session: Session, patient_id: str) -> FileProfile:
    profile = session.get(FileProfile, patient_id)
    if profile is None:
        profile = FileProfile(
            patient_id=patient_id, thematics="", statuses="", structures="", updated_at=utcnow()
        )
        session.add(profile)
    return profile


def _codes(values: list[str]) -> str:
    return "," + ",".join(values) + "," if values else ""


def _split_codes(codes: str | None) -> list[str]:
    return [c for c in (codes or "").split(",") if c]


# -- linked files (PAT-8) ----------------------------------------------------------------


def link_view(link: PatientLink, this_patient: str, other: Patient | None) -> dict[str, Any]:
    seen_from_the_linked_file = link.patient_id != this_patient
    other_id = link.patient_id if seen_from_the_linked_file else link.linked_patient_id
    relation = link.relation
    if seen_from_the_linked_file:
        relation = domain_file.inverse_relation(relation, other.sex if other else "")
    return {
        "id": link.id,
        "patient_id": other_id,
        "relation": relation,
        "comment": link.comment,
        "birth_name": other.birth_name if other else None,
        "first_name": other.first_name if other else None,
        "created_at": link.created_at.isoformat(),
    }


def links_of(session: Session, patient_id: str) -> list[dict[str, Any]]:
    links = list(
        session.scalars(
            select(PatientLink)
            .where(or_(PatientLink.patient_id == patient_id, PatientLink.linked_patient_id == patient_id))
            .order_by(PatientLink.created_at)
        )
    )

    def other_of(link: PatientLink) -> str:
        return link.linked_patient_id if link.patient_id == patient_id else link.patient_id

    others = {other_of(link) for link in links}
    patients = (
        {p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(others)))} if others else {}
    )
    return [link_view(link, patient_id, patients.get(other_of(link))) for link in links]


def link_patients(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    other_id = str(body.get("linked_patient_id") or "")
    try:
        comment = domain_file.check_link(patient_id, other_id, body.get("relation", ""), body.get("comment"))
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        _patient(s, patient_id)
        other = s.get(Patient, other_id)
        # The other file must be one the caller may see, or a link would reveal it.
        if other is None or not file_list.may_read(s, actor, other_id, today):
            raise invalid("linked_patient_id", "linked_patient_id is not a file you may see")
        existing = s.scalars(
            select(PatientLink.id).where(
                or_(
                    (PatientLink.patient_id == patient_id) & (PatientLink.linked_patient_id == other_id),
                    (PatientLink.patient_id == other_id) & (PatientLink.linked_patient_id == patient_id),
                )
            )
        ).first()
        if existing:
            raise conflict("these files are already linked", link_id=existing)
        link = PatientLink(
            id=new_id(),
            patient_id=patient_id,
            linked_patient_id=other_id,
            relation=body["relation"],
            comment=comment,
            created_by=actor.person_id,
            created_at=utcnow(),
        )
        s.add(link)
        for pid in (patient_id, other_id):
            write_feed_line(s, pid, "PatientsLinked", actor.person_id, ref_id=link.id)
            file_list.touch(s, pid)
        uow.emit(
            "PatientsLinked",
            subject=patient_id,
            data={"link_id": link.id, "patient_id": patient_id, "linked_patient_id": other_id},
        )
        uow.commit()
        return link_view(link, patient_id, other)


def unlink_patients(db: Database, actor: Actor, patient_id: str, link_id: str) -> None:
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        link = s.get(PatientLink, link_id)
        if link is None or patient_id not in (link.patient_id, link.linked_patient_id):
            raise not_found("link")
        s.delete(link)
        for pid in (link.patient_id, link.linked_patient_id):
            write_feed_line(s, pid, "PatientsUnlinked", actor.person_id, ref_id=link.id)
            file_list.touch(s, pid)
        uow.emit(
            "PatientsUnlinked",
            subject=patient_id,
            data={
                "link_id": link.id,
                "patient_id": link.patient_id,
                "linked_patient_id": link.linked_patient_id,
            },
        )
        uow.commit()


# -- file status (PAT-9) and closing (PAT-12) ---------------------------------------------------


def status_view(row: FileStatus) -> dict[str, Any]:
    return {
        "id": row.id,
        "structure_id": row.structure_id,
        "status": row.status,
        "started_on": row.started_on.isoformat(),
        "exit_reason": row.exit_reason,
        "expertise": row.expertise,
        "comment": row.comment,
        "recorded_by": row.recorded_by,
        "recorded_at": row.recorded_at.isoformat(),
    }


def status_history(session: Session, patient_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(FileStatus)
        .where(FileStatus.patient_id == patient_id)
        .order_by(FileStatus.recorded_at.desc(), FileStatus.id.desc())
    )
    return [status_view(r) for r in rows]


def current_status_rows(session: Session, patient_id: str) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for row in reversed(status_history(session, patient_id)):
        latest[row["structure_id"]] = row
    return [latest[k] for k in sorted(latest)]


def _structure_of(actor: Actor, body: dict[str, Any]) -> str:
    structure = body.get("structure_id") or actor.structure_id
    if not structure:
        raise invalid("structure_id", "structure_id is required (or act as a structure)")
    if structure not in actor.structures:
        raise forbidden("only a member of the structure sets its status on a file")
    return str(structure)


def _record_status(
    uow: UnitOfWork, actor: Actor, patient_id: str, structure: str, change: domain_file.StatusChange
) -> FileStatus:
    s = uow.session
    previous = file_list.current_statuses(s, patient_id).get(structure)
    row = FileStatus(
        id=new_id(),
        patient_id=patient_id,
        structure_id=structure,
        status=change.status,
        started_on=change.started_on,
        exit_reason=change.exit_reason,
        expertise=change.expertise,
        comment=change.comment,
        recorded_by=actor.person_id,
        recorded_at=utcnow(),
    )
    s.add(row)
    s.flush()
    current = file_list.current_statuses(s, patient_id)
    profile = _profile(s, patient_id)
    profile.statuses = _codes(sorted(set(current.values())))
    profile.structures = _codes(sorted(current))
    profile.updated_at = utcnow()
    s.flush()
    write_feed_line(s, patient_id, "FileStatusChanged", actor.person_id, ref_id=row.id)
    file_list.refresh(s, patient_id)
    uow.emit(
        "FileStatusChanged",
        subject=patient_id,
        data={
            "patient_id": patient_id,
            "structure_id": structure,
            "status": change.status,
            "previous_status": previous,
        },
    )
    return row


def _status_change(body: dict[str, Any], today: date) -> domain_file.StatusChange:
    try:
        return domain_file.check_status(
            status=body.get("status", ""),
            started_on=_date("started_on", body.get("started_on") or today.isoformat()) or today,
            exit_reason=body.get("exit_reason"),
            expertise=body.get("expertise"),
            comment=body.get("comment"),
            today=today,
        )
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc


def set_status(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    change = _status_change(body, today)
    structure = _structure_of(actor, body)
    with db.unit_of_work(actor.person_id) as uow:
        _patient(uow.session, patient_id)
        row = _record_status(uow, actor, patient_id, structure, change)
        uow.commit()
        return status_view(row)


def _open_tasks(session: Session, patient_id: str) -> list[TaskView]:
    return list(
        session.scalars(
            select(TaskView).where(
                TaskView.patient_id == patient_id, TaskView.status.in_(domain_file.OPEN_TASK_STATUSES)
            )
        )
    )


def _checklist(session: Session, patient_id: str, structure: str | None) -> list[domain_file.ChecklistStep]:
    current = file_list.current_statuses(session, patient_id).get(structure) if structure else None
    # Forms belong to a later issue: none is open until they exist.
    return domain_file.closing_checklist(
        open_forms=0, open_tasks=len(_open_tasks(session, patient_id)), current_status=current
    )


def closing_checklist(
    db: Database, actor: Actor, patient_id: str, structure_id: str | None
) -> dict[str, Any]:
    structure = structure_id or actor.structure_id
    with db.session_factory() as s:
        _patient(s, patient_id)
        steps = _checklist(s, patient_id, structure)
        tasks = [t.task_id for t in _open_tasks(s, patient_id)]
    return {
        "structure_id": structure,
        "steps": [
            {"code": st.code, "label": st.label, "done": st.done, "remaining": st.remaining} for st in steps
        ],
        "open_task_ids": tasks,
        "ready": all(st.done for st in steps if st.code != "set_exit_status"),
        "closed": all(st.done for st in steps),
    }


def close_file(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    """PAT-12: the checklist's last step — "Sorti" with its reason, once the rest is done."""
    change = _status_change({**body, "status": "sorti"}, today)
    structure = _structure_of(actor, body)
    with db.unit_of_work(actor.person_id) as uow:
        _patient(uow.session, patient_id)
        try:
            domain_file.check_closing(_checklist(uow.session, patient_id, structure))
        except domain_file.FileRuleError as exc:
            raise conflict(exc.detail, field=exc.field) from exc
        row = _record_status(uow, actor, patient_id, structure, change)
        uow.commit()
        return status_view(row)


# -- hospitalisations (PAT-10) and death (PAT-11) -------------------------------------------------


def stay_view(stay: Hospitalisation, today: date) -> dict[str, Any]:
    return {
        "id": stay.id,
        "establishment": stay.establishment,
        "planned": stay.planned,
        "entry_date": stay.entry_date.isoformat(),
        "exit_date": stay.exit_date.isoformat() if stay.exit_date else None,
        "current": domain_file.hospitalised_on(stay.entry_date, stay.exit_date, today),
        "future": stay.entry_date > today,
    }


def stays_of(session: Session, patient_id: str, today: date) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Hospitalisation)
        .where(Hospitalisation.patient_id == patient_id)
        .order_by(Hospitalisation.entry_date.desc())
    )
    return [stay_view(r, today) for r in rows]


def add_hospitalisation(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    entry = _date("entry_date", body.get("entry_date"))
    exit_ = _date("exit_date", body.get("exit_date"), required=False)
    assert entry is not None
    planned = bool(body.get("planned", False))
    try:
        establishment = domain_file.check_hospitalisation(
            establishment=body.get("establishment", ""),
            planned=planned,
            entry_date=entry,
            exit_date=exit_,
            today=today,
        )
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc
    with db.unit_of_work(actor.person_id) as uow:
        _patient(uow.session, patient_id)
        stay = Hospitalisation(
            id=new_id(),
            patient_id=patient_id,
            establishment=establishment,
            planned=planned,
            entry_date=entry,
            exit_date=exit_,
            created_by=actor.person_id,
            created_at=utcnow(),
        )
        uow.session.add(stay)
        write_feed_line(uow.session, patient_id, "HospitalisationRecorded", actor.person_id, ref_id=stay.id)
        file_list.touch(uow.session, patient_id)
        uow.commit()
        return stay_view(stay, today)


def death_view(death: Death | None) -> dict[str, Any] | None:
    if death is None:
        return None
    return {
        "death_date": death.death_date.isoformat() if death.death_date else None,
        "date_unknown": death.death_date is None,
        "country": death.country,
        "city": death.city,
        "place": death.place,
        "declared_by": death.declared_by,
        "declared_at": death.declared_at.isoformat(),
    }


def declare_death(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    death_date = None if body.get("date_unknown") else _date("death_date", body.get("death_date"))
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        patient = _patient(s, patient_id)
        if s.get(Death, patient_id) is not None:
            raise conflict("the death is already declared")
        try:
            domain_file.check_death(death_date, patient.birth_date, today)
        except domain_file.FileRuleError as exc:
            raise _rule(exc) from exc
        death = Death(
            patient_id=patient_id,
            death_date=death_date,
            country=(body.get("country") or None),
            city=(body.get("city") or None),
            place=(body.get("place") or None),
            declared_by=actor.person_id,
            declared_at=utcnow(),
        )
        s.add(death)
        s.flush()
        write_feed_line(s, patient_id, "PatientDeceased", actor.person_id, importance="tres_important")
        file_list.refresh(s, patient_id)
        # notify turns this into messages for the circle members who asked (PAT-11).
        uow.emit(
            "PatientDeceased",
            subject=patient_id,
            data={"patient_id": patient_id, "declared_by": actor.person_id},
        )
        uow.commit()
        view = death_view(death)
        assert view is not None
        return view


# -- memos (PAT-13) ------------------------------------------------------------------------------------


def memo_view(memo: Memo) -> dict[str, Any]:
    return {
        "id": memo.id,
        "title": memo.title,
        "content": memo.content,
        "importance": memo.importance,
        "sharing": memo.sharing,
        "shared_with": list(memo.shared_with or []),
        "author_id": memo.author_id,
        "created_at": memo.created_at.isoformat(),
        "updated_at": memo.updated_at.isoformat(),
    }


def memos_for(session: Session, actor: Actor, patient_id: str) -> list[dict[str, Any]]:
    keys = domain_file.actor_holder_keys(actor.person_id, actor.structure_id)
    order = {"tres_important": 0, "important": 1, "normal": 2}
    memos = [
        m
        for m in session.scalars(
            select(Memo).where(Memo.patient_id == patient_id).order_by(Memo.created_at.desc())
        )
        if domain_file.memo_visible(m.sharing, m.author_id, m.shared_with or [], keys)
    ]
    memos.sort(key=lambda m: order.get(m.importance, 3))
    return [memo_view(m) for m in memos]


def _memo_fields(body: dict[str, Any]) -> tuple[str, str, list[str]]:
    try:
        return domain_file.check_memo(
            title=body.get("title", ""),
            content=body.get("content", ""),
            importance=body.get("importance", "normal"),
            sharing=body.get("sharing", "public"),
            shared_with=body.get("shared_with") or [],
        )
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc


def add_memo(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    title, content, holders = _memo_fields(body)
    with db.unit_of_work(actor.person_id) as uow:
        _patient(uow.session, patient_id)
        now = utcnow()
        memo = Memo(
            id=new_id(),
            patient_id=patient_id,
            title=title,
            content=content,
            importance=body.get("importance", "normal"),
            sharing=body.get("sharing", "public"),
            shared_with=holders,
            author_id=actor.person_id,
            author_structure=actor.structure_id,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(memo)
        write_feed_line(
            uow.session, patient_id, "MemoAdded", actor.person_id, ref_id=memo.id, importance=memo.importance
        )
        file_list.touch(uow.session, patient_id, now)
        uow.emit(
            "MemoAdded",
            subject=patient_id,
            data={
                "patient_id": patient_id,
                "memo_id": memo.id,
                "author_id": actor.person_id,
                "sharing": memo.sharing,
                "importance": memo.importance,
            },
        )
        uow.commit()
        return memo_view(memo)


def _own_memo(session: Session, actor: Actor, patient_id: str, memo_id: str) -> Memo:
    memo = session.get(Memo, memo_id)
    keys = domain_file.actor_holder_keys(actor.person_id, actor.structure_id)
    if (
        memo is None
        or memo.patient_id != patient_id
        or not domain_file.memo_visible(memo.sharing, memo.author_id, memo.shared_with or [], keys)
    ):
        raise not_found("memo")
    if not domain_file.may_change_memo(
        memo.author_id, memo.author_structure, actor.person_id, actor.structure_id
    ):
        raise forbidden("only the author (or its structure) changes a memo")
    return memo


def update_memo(
    db: Database, actor: Actor, patient_id: str, memo_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        memo = _own_memo(uow.session, actor, patient_id, memo_id)
        merged = {**memo_view(memo), **body}
        title, content, holders = _memo_fields(merged)
        memo.title, memo.content, memo.shared_with = title, content, holders
        memo.importance, memo.sharing = merged["importance"], merged["sharing"]
        memo.updated_at = utcnow()
        file_list.touch(uow.session, patient_id, memo.updated_at)
        uow.commit()
        return memo_view(memo)


def delete_memo(db: Database, actor: Actor, patient_id: str, memo_id: str) -> None:
    with db.unit_of_work(actor.person_id) as uow:
        memo = _own_memo(uow.session, actor, patient_id, memo_id)
        uow.session.delete(memo)
        file_list.touch(uow.session, patient_id)
        uow.commit()


# -- news feed (PAT-14) -------------------------------------------------------------------------------


def feed_view(entry: FeedEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "event_type": entry.event_type,
        "label": FEED_LABELS.get(entry.event_type, entry.event_type),
        "ref_id": entry.ref_id,
        "author_id": entry.actor_id,
        "importance": entry.importance,
        "text": entry.text,
        "active": entry.active,
        "occurred_at": entry.occurred_at.isoformat(),
    }


def feed(db: Database, patient_id: str, filters: list[str], limit: int = 50) -> dict[str, Any]:
    for value in filters:
        if value not in domain_file.FEED_FILTERS:
            raise invalid("filter", f"filter must be among {', '.join(domain_file.FEED_FILTERS)}")
    with db.session_factory() as s:
        _patient(s, patient_id)
        query = select(FeedEntry).where(FeedEntry.patient_id == patient_id)
        chosen = set(filters)
        if chosen:
            cond = []
            importances = [i for i in ("important", "tres_important") if i in chosen]
            if importances:
                cond.append(FeedEntry.importance.in_(importances))
            if "notes" in chosen:
                cond.append(FeedEntry.kind == "note")
            if "active" in chosen:
                cond.append(FeedEntry.active.is_(True))
            query = query.where(or_(*cond))
        rows = s.scalars(query.order_by(FeedEntry.occurred_at.desc(), FeedEntry.id).limit(limit))
        return {"items": [feed_view(r) for r in rows], "filters": sorted(chosen)}


def add_feed_note(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    importance = body.get("importance", "normal")
    if importance not in domain_file.IMPORTANCES:
        raise invalid("importance", f"importance must be one of {', '.join(domain_file.IMPORTANCES)}")
    note = (body.get("text") or "").strip()
    if not note:
        raise invalid("text", "text is required")
    if len(note) > 5000:
        raise invalid("text", "text is longer than 5000 characters")
    with db.unit_of_work(actor.person_id) as uow:
        _patient(uow.session, patient_id)
        entry = write_feed_line(
            uow.session, patient_id, "FeedNoteAdded", actor.person_id, importance=importance, note=note
        )
        file_list.touch(uow.session, patient_id, entry.occurred_at)
        uow.emit(
            "FeedNoteAdded",
            subject=patient_id,
            data={
                "patient_id": patient_id,
                "note_id": entry.id,
                "author_id": actor.person_id,
                "importance": importance,
            },
        )
        uow.commit()
        return feed_view(entry)


# -- timeline (PAT-15) ----------------------------------------------------------------------------------


def timeline_items(session: Session, patient_id: str, period: str, today: date) -> list[dict[str, Any]]:
    try:
        bounds = domain_file.period_bounds(period, today)
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc
    items: list[dict[str, Any]] = []

    def add(day: date, kind: str, ref: str, label: str, **extra: Any) -> None:
        if domain_file.in_period(day, bounds):
            items.append(
                {
                    "date": day.isoformat(),
                    "kind": kind,
                    "ref_id": ref,
                    "label": label,
                    "future": day > today,
                    **extra,
                }
            )

    for stay in session.scalars(select(Hospitalisation).where(Hospitalisation.patient_id == patient_id)):
        add(
            stay.entry_date,
            "hospitalisation",
            stay.id,
            f"Hospitalisation — {stay.establishment}",
            end=stay.exit_date.isoformat() if stay.exit_date else None,
        )
    for task in session.scalars(select(TaskView).where(TaskView.patient_id == patient_id)):
        add(
            task.due_date or task.created_at.date(),
            "task",
            task.task_id,
            "Tâche",
            status=task.status,
            level=task.level,
        )
    for appointment in session.scalars(
        select(AppointmentView).where(
            AppointmentView.patient_id == patient_id, AppointmentView.cancelled.is_(False)
        )
    ):
        add(
            appointment.start.date(),
            "appointment",
            appointment.appointment_id,
            "Rendez-vous",
            type_code=appointment.type_code,
        )
    for entry in session.scalars(
        select(FeedEntry).where(FeedEntry.patient_id == patient_id, FeedEntry.event_type == "DocumentAdded")
    ):
        add(entry.occurred_at.date(), "document", entry.ref_id or entry.id, "Document")
    for status in session.scalars(select(FileStatus).where(FileStatus.patient_id == patient_id)):
        add(status.started_on, "status", status.id, "Statut du dossier", status=status.status)
    items.sort(key=lambda i: (i["date"], i["kind"], i["ref_id"]))
    return items


def timeline(db: Database, patient_id: str, period: str, today: date) -> dict[str, Any]:
    with db.session_factory() as s:
        _patient(s, patient_id)
        return {
            "period": period,
            "today": today.isoformat(),
            "items": timeline_items(s, patient_id, period, today),
        }


# -- profile, zones (PAT-17) and favourites (PAT-18) ----------------------------------------------------


def _zones(session: Session) -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for zone_id, commune in session.execute(select(ZoneCommune.zone_id, ZoneCommune.commune)):
        zones.setdefault(zone_id, []).append(commune)
    return zones


def profile_view(session: Session, patient_id: str) -> dict[str, Any]:
    profile = session.get(FileProfile, patient_id)
    commune = profile.commune if profile else None
    zone_ids = domain_file.zones_of(commune, _zones(session))
    names = (
        dict(session.execute(select(Zone.id, Zone.name).where(Zone.id.in_(zone_ids))).tuples().all())
        if zone_ids
        else {}
    )
    return {
        "commune": commune,
        "postal_code": profile.postal_code if profile else None,
        "thematics": _split_codes(profile.thematics if profile else None),
        "parcours": profile.parcours if profile else None,
        "zones": [{"id": z, "name": names.get(z, "")} for z in zone_ids],
    }


def update_profile(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        commune = domain_file.check_commune("commune", body.get("commune"))
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc
    postal = body.get("postal_code")
    if postal and not (len(postal) == 5 and postal.isdigit()):
        raise invalid("postal_code", "postal_code must be 5 digits")
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        _patient(s, patient_id)
        profile = _profile(s, patient_id)
        if "commune" in body:
            profile.commune = commune
        if "postal_code" in body:
            profile.postal_code = postal or None
        if "thematics" in body:
            wanted = sorted({str(t).strip() for t in body["thematics"] or [] if str(t).strip()})
            added = set(wanted) - set(_split_codes(profile.thematics))
            profile.thematics = _codes(wanted)
            if added:
                uow.emit(
                    "FileThematicsAdded",
                    subject=patient_id,
                    data={"patient_id": patient_id, "added": len(added)},
                )
        if "parcours" in body:
            profile.parcours = body["parcours"] or None
        profile.updated_at = utcnow()
        s.flush()
        file_list.touch(s, patient_id, profile.updated_at)
        uow.commit()
        return profile_view(s, patient_id)


def zone_view(zone: Zone, communes: list[str]) -> dict[str, Any]:
    return {"id": zone.id, "name": zone.name, "communes": sorted(communes)}


def create_zone(db: Database, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    if "admin" not in actor.roles:
        raise forbidden("only an administrator defines geographic zones")
    name = (body.get("name") or "").strip()
    if not name:
        raise invalid("name", "name is required")
    try:
        communes = sorted(
            {c for c in (domain_file.check_commune("communes", v) for v in body.get("communes") or []) if c}
        )
    except domain_file.FileRuleError as exc:
        raise _rule(exc) from exc
    if not communes:
        raise invalid("communes", "a zone holds at least one commune")
    with db.unit_of_work(actor.person_id) as uow:
        if uow.session.scalars(select(Zone.id).where(Zone.name == name)).first():
            raise conflict(f"a zone is already named {name}")
        zone = Zone(id=new_id(), name=name, created_by=actor.person_id, created_at=utcnow())
        uow.session.add(zone)
        for commune in communes:
            uow.session.add(ZoneCommune(zone_id=zone.id, commune=commune))
        uow.commit()
        return zone_view(zone, communes)


def list_zones(db: Database) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        communes = _zones(s)
        return [zone_view(z, communes.get(z.id, [])) for z in s.scalars(select(Zone).order_by(Zone.name))]


def delete_zone(db: Database, actor: Actor, zone_id: str) -> None:
    if "admin" not in actor.roles:
        raise forbidden("only an administrator defines geographic zones")
    with db.unit_of_work(actor.person_id) as uow:
        zone = uow.session.get(Zone, zone_id)
        if zone is None:
            raise not_found("zone")
        uow.session.execute(delete(ZoneCommune).where(ZoneCommune.zone_id == zone_id))
        uow.session.delete(zone)
        uow.commit()


def _in_group(person_id: str, group_name: str | None) -> Any:
    """My stars in one group (no name: the stars filed in no group, a group of their own)."""
    name = Favourite.group_name.is_(None) if group_name is None else Favourite.group_name == group_name
    return (Favourite.person_id == person_id) & name


def _sharing_structure(actor: Actor, body: dict[str, Any]) -> str | None:
    shared = body.get("shared_with_structure") or None
    if shared and shared not in actor.structures:
        raise invalid("shared_with_structure", "a favourite group is shared only with one of your structures")
    return shared


def _group_name(body: dict[str, Any], field: str) -> str | None:
    return (body.get(field) or "").strip() or None


def star(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Star a file, in a group or none. A group is shared as a whole: a sharing given here
    applies to every file of the group; without one, the file follows its group's."""
    shared = _sharing_structure(actor, body)
    group = _group_name(body, "group_name")
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        _patient(s, patient_id)
        if "shared_with_structure" in body:
            before = s.scalar(
                select(Favourite.shared_with_structure).where(_in_group(actor.person_id, group)).limit(1)
            )
            s.execute(
                update(Favourite)
                .where(_in_group(actor.person_id, group))
                .values(shared_with_structure=shared)
            )
            announce = shared is not None and shared != before
        else:
            announce = False
            shared = s.scalar(
                select(Favourite.shared_with_structure)
                .where(_in_group(actor.person_id, group), Favourite.patient_id != patient_id)
                .limit(1)
            )
        row = s.get(Favourite, (actor.person_id, patient_id))
        if row is None:
            row = Favourite(person_id=actor.person_id, patient_id=patient_id, created_at=utcnow())
            s.add(row)
        row.group_name = group
        row.shared_with_structure = shared
        if announce:
            _announce_sharing(uow, actor.person_id, group)
        uow.commit()
        return favourite_view(row)


def unstar(db: Database, actor: Actor, patient_id: str) -> None:
    with db.unit_of_work(actor.person_id) as uow:
        row = uow.session.get(Favourite, (actor.person_id, patient_id))
        if row is None:
            raise not_found("favourite")
        uow.session.delete(row)
        uow.commit()


def update_favourite_group(
    db: Database, actor: Actor, group_name: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    """Rename one of my groups (into another: they merge) and/or share it with one of my
    structures (`null`: stop sharing). Every file of the group follows."""
    group = group_name.strip() or None
    shared = _sharing_structure(actor, body)
    renamed = _group_name(body, "name") if "name" in body else group
    with db.unit_of_work(actor.person_id) as uow:
        s = uow.session
        found = s.execute(
            select(Favourite.shared_with_structure).where(_in_group(actor.person_id, group)).limit(1)
        ).first()
        if found is None:
            raise not_found("favourite group")
        sharing = shared if "shared_with_structure" in body else found.shared_with_structure
        moved = _in_group(actor.person_id, group) | _in_group(actor.person_id, renamed)
        s.execute(update(Favourite).where(moved).values(group_name=renamed, shared_with_structure=sharing))
        if sharing is not None and sharing != found.shared_with_structure:
            _announce_sharing(uow, actor.person_id, renamed)
        uow.commit()
    groups = list_favourites(db, actor, today)["groups"]
    return next(
        (g for g in groups if g["mine"] and g["name"] == renamed),
        {
            "id": favourite_group_id(actor.person_id, renamed),
            "name": renamed,
            "owner_id": actor.person_id,
            "mine": True,
            "shared_with_structure": sharing,
            "patients": [],
        },
    )


def favourite_group_id(person_id: str, group_name: str | None) -> str:
    """A stable id for one person's group of one name (groups are a name on the stars)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordo:favourite-group:{person_id}:{group_name or ''}"))


def _announce_sharing(uow: UnitOfWork, person_id: str, group_name: str | None) -> None:
    """FavouriteGroupShared for the group as it now is (flushed): who shared it, with which
    structure, how many files. Never its name, which is user text."""
    s = uow.session
    s.flush()
    rows = s.execute(select(Favourite.shared_with_structure).where(_in_group(person_id, group_name))).all()
    group_id = favourite_group_id(person_id, group_name)
    uow.emit(
        "FavouriteGroupShared",
        subject=group_id,
        data={
            "group_id": group_id,
            "shared_by": person_id,
            "structure_id": rows[0].shared_with_structure,
            "files": len(rows),
        },
    )


def favourite_view(row: Favourite) -> dict[str, Any]:
    return {
        "patient_id": row.patient_id,
        "person_id": row.person_id,
        "group_name": row.group_name,
        "shared_with_structure": row.shared_with_structure,
        "created_at": row.created_at.isoformat(),
    }


def list_favourites(db: Database, actor: Actor, today: date) -> dict[str, Any]:
    """Mine, and the groups colleagues shared with the structure I act for: only the files I
    may read (a shared group never shows a file its owner sees and I do not), each group
    with the list's columns of its files."""
    with db.session_factory() as s:
        wanted = Favourite.person_id == actor.person_id
        if actor.structure_id:
            wanted = wanted | (
                (Favourite.shared_with_structure == actor.structure_id)
                & (Favourite.person_id != actor.person_id)
            )
        stars = list(s.scalars(select(Favourite).where(wanted).order_by(Favourite.created_at)))
        readable = file_list.readable_among(s, actor, {star.patient_id for star in stars}, today)
        stars = [star for star in stars if star.patient_id in readable]
        columns = {row["id"]: row for row in file_list.rows_for(s, actor, list(readable), today)}
    groups: dict[tuple[bool, str, str], dict[str, Any]] = {}
    for star in stars:
        mine = star.person_id == actor.person_id
        group = groups.setdefault(
            (not mine, star.person_id, star.group_name or ""),
            {
                "id": favourite_group_id(star.person_id, star.group_name),
                "name": star.group_name,
                "owner_id": star.person_id,
                "mine": mine,
                "shared_with_structure": star.shared_with_structure,
                "patients": [],
            },
        )
        if star.patient_id in columns:
            group["patients"].append(columns[star.patient_id])
    for group in groups.values():
        group["patients"].sort(key=lambda row: (row["birth_name"], row["first_name"]))
    return {
        "mine": [favourite_view(star) for star in stars if star.person_id == actor.person_id],
        "shared": [favourite_view(star) for star in stars if star.person_id != actor.person_id],
        "groups": [groups[key] for key in sorted(groups)],
    }


# -- the overview (PAT-7) ---------------------------------------------------------------------------------


def circle_summary(session: Session, patient_id: str) -> dict[str, Any]:
    members = list(
        session.scalars(
            select(CircleMember).where(CircleMember.patient_id == patient_id, CircleMember.removed.is_(False))
        )
    )
    roles: Counter[str] = Counter()
    for member in members:
        roles.update(r for r in member.roles.split(",") if r)
    return {
        "members": len(members),
        "habilitated": sum(1 for m in members if m.habilitated),
        "roles": dict(sorted(roles.items())),
        "list": [
            {
                "member_id": m.member_id,
                "holder_kind": m.holder_kind,
                "holder_id": m.holder_id,
                "roles": [r for r in m.roles.split(",") if r],
                "habilitated": m.habilitated,
            }
            for m in sorted(members, key=lambda m: (m.holder_kind, m.holder_id))
        ],
    }


def next_appointment(session: Session, patient_id: str) -> dict[str, Any] | None:
    appointment = session.scalars(
        select(AppointmentView)
        .where(
            AppointmentView.patient_id == patient_id,
            AppointmentView.cancelled.is_(False),
            AppointmentView.start >= utcnow(),
        )
        .order_by(AppointmentView.start)
    ).first()
    if appointment is None:
        return None
    return {
        "appointment_id": appointment.appointment_id,
        "start": appointment.start.isoformat(),
        "end": appointment.end.isoformat(),
        "type_code": appointment.type_code,
    }


def overview(db: Database, actor: Actor, patient_id: str, today: date) -> dict[str, Any]:
    """Everything the file page shows, from this service's own tables (PAT-7)."""
    from dossier import identity  # the identity block is the identity use cases' view

    with db.session_factory() as s:
        patient = _patient(s, patient_id)
        open_tasks = _open_tasks(s, patient_id)
        statuses = current_status_rows(s, patient_id)
        years, months, days = domain.age(patient.birth_date, today)
        favourite = s.get(Favourite, (actor.person_id, patient_id)) is not None
        return {
            "identity": {
                **identity.identity_view(patient, today),
                "age": {"years": years, "months": months, "days": days},
            },
            "death": death_view(s.get(Death, patient_id)),
            "profile": profile_view(s, patient_id),
            "linked_files": links_of(s, patient_id),
            "statuses": statuses,
            "closed": domain_file.file_closed(r["status"] for r in statuses),
            "hospitalisations": stays_of(s, patient_id, today),
            "tasks": {
                "open": len(open_tasks),
                "overdue": sum(1 for t in open_tasks if t.due_date is not None and t.due_date < today),
            },
            "care_circle": circle_summary(s, patient_id),
            "next_appointment": next_appointment(s, patient_id),
            "memos": memos_for(s, actor, patient_id),
            "thematics": profile_view(s, patient_id)["thematics"],
            "timeline": timeline_items(s, patient_id, "quarter", today),
            "favourite": favourite,
        }


# -- consumers: read models and feed lines from other services' events ------------------------------


def _when(envelope: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(envelope["occurred_at"])


def on_task_created(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    s = uow.session
    row = s.get(TaskView, data["task_id"])
    if row is not None and row.version >= data["aggregate_version"]:
        return  # a newer status change arrived first
    if row is None:
        row = TaskView(task_id=data["task_id"], created_at=_when(envelope))
        s.add(row)
    row.patient_id, row.type, row.level, row.status = (
        data["patient_id"],
        data["type"],
        data["level"],
        data["status"],
    )
    row.due_date = date.fromisoformat(data["due_date"]) if data.get("due_date") else None
    row.version = data["aggregate_version"]
    importance = "important" if data["level"] in ("important", "urgent") else "normal"
    write_feed_line(
        s,
        data["patient_id"],
        "TaskCreated",
        envelope.get("actor"),
        ref_id=data["task_id"],
        importance=importance,
        active=data["status"] in domain_file.OPEN_TASK_STATUSES,
        when=_when(envelope),
    )
    file_list.touch(s, data["patient_id"], _when(envelope))


def on_task_status_changed(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    s = uow.session
    row = s.get(TaskView, data["task_id"])
    is_open = data["to_status"] in domain_file.OPEN_TASK_STATUSES
    if row is None:
        row = TaskView(task_id=data["task_id"], created_at=_when(envelope), due_date=None, version=0)
        s.add(row)
    if row.version < data["aggregate_version"]:
        row.patient_id, row.type, row.level, row.status = (
            data["patient_id"],
            data["type"],
            data["level"],
            data["to_status"],
        )
        row.version = data["aggregate_version"]
        for entry in s.scalars(
            select(FeedEntry).where(FeedEntry.ref_id == data["task_id"], FeedEntry.kind == "event")
        ):
            entry.active = is_open
    write_feed_line(
        s,
        data["patient_id"],
        "TaskStatusChanged",
        envelope.get("actor"),
        ref_id=data["task_id"],
        when=_when(envelope),
    )
    file_list.touch(s, data["patient_id"], _when(envelope))


def on_appointment(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data = envelope["data"]
    if not data.get("patient_id"):
        return  # an appointment without a patient has no place in a file
    s = uow.session
    kind = envelope["type"]
    row = s.get(AppointmentView, data["appointment_id"])
    newer = row is None or row.version < data["aggregate_version"]
    if row is None:
        row = AppointmentView(appointment_id=data["appointment_id"], version=0, cancelled=False)
        s.add(row)
    if newer:
        row.patient_id, row.type_code, row.version = (
            data["patient_id"],
            data["type_code"],
            data["aggregate_version"],
        )
        if "start" in data:
            row.start, row.end = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
        elif row.start is None:
            row.start = row.end = _when(envelope)
        row.cancelled = kind == "AppointmentCancelled"
        for entry in s.scalars(select(FeedEntry).where(FeedEntry.ref_id == data["appointment_id"])):
            entry.active = not row.cancelled
    write_feed_line(
        s,
        data["patient_id"],
        kind,
        envelope.get("actor"),
        ref_id=data["appointment_id"],
        active=kind != "AppointmentCancelled" and newer and not row.cancelled,
        when=_when(envelope),
    )
    file_list.touch(s, data["patient_id"], _when(envelope))


_MEMBERS = CircleMember.__table__
_MEMBER_STATE = select(_MEMBERS.c.habilitated, _MEMBERS.c.updated_at).where(
    _MEMBERS.c.member_id == bindparam("key_member_id")
)
_INSERT_MEMBER = insert(_MEMBERS)


@cache
def _member_update(columns: tuple[str, ...]) -> Update:
    """One statement per set of columns an event changes, built and compiled once."""
    return (
        update(_MEMBERS)
        .where(_MEMBERS.c.member_id == bindparam("key_member_id"))
        .values(**{key: bindparam(f"new_{key}") for key in (*columns, "updated_at")})
    )


def _set_member(
    s: Session, data: dict[str, Any], when: datetime, change: Callable[[bool], dict[str, Any]]
) -> None:
    """Apply `change` to the circle member read model, unless a newer event did already
    (delivery may be out of order). `change(habilitated_now)` gives the columns to set.

    Plain statements built once: each creation adds a member and grants it, and the ORM's
    get, autoflush and flush of this one row were most of the dossier worker's CPU."""
    conn = s.connection()
    known = conn.execute(_MEMBER_STATE, {"key_member_id": data["member_id"]}).first()
    if known is None:
        row = {"roles": "", "habilitated": False, "removed": False, **change(False)}
        conn.execute(
            _INSERT_MEMBER,
            {
                "member_id": data["member_id"],
                "patient_id": data["patient_id"],
                "holder_kind": data["holder_kind"],
                "holder_id": data["holder_id"],
                **row,
                "updated_at": when,
            },
        )
    elif known.updated_at <= when:
        changes = change(known.habilitated)
        conn.execute(
            _member_update(tuple(changes)),
            {
                "key_member_id": data["member_id"],
                **{f"new_{key}": value for key, value in changes.items()},
                "new_updated_at": when,
            },
        )


def on_member_added(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, when = envelope["data"], _when(envelope)
    roles = _codes(sorted(data.get("roles") or []))
    granted = bool(data.get("habilitated"))
    _set_member(
        uow.session,
        data,
        when,
        lambda habilitated: {"roles": roles, "habilitated": habilitated or granted, "removed": False},
    )
    write_feed_line(
        uow.session,
        data["patient_id"],
        "CareCircleMemberAdded",
        envelope.get("actor"),
        ref_id=data["member_id"],
        when=when,
    )
    file_list.touch(uow.session, data["patient_id"], when)


def on_member_removed(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, when = envelope["data"], _when(envelope)
    _set_member(uow.session, data, when, lambda _: {"removed": True, "habilitated": False})
    write_feed_line(
        uow.session,
        data["patient_id"],
        "CareCircleMemberRemoved",
        envelope.get("actor"),
        ref_id=data["member_id"],
        when=when,
    )
    file_list.touch(uow.session, data["patient_id"], when)


def on_habilitation(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    """The circle's view of habilitations (the list rows follow the Habilitation read model)."""
    data, when = envelope["data"], _when(envelope)
    _set_member(uow.session, data, when, lambda _: {"habilitated": active})
    kind = "HabilitationGranted" if active else "HabilitationRevoked"
    write_feed_line(
        uow.session, data["patient_id"], kind, envelope.get("actor"), ref_id=data["member_id"], when=when
    )


def on_break_glass_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, when = envelope["data"], _when(envelope)
    write_feed_line(
        uow.session,
        data["patient_id"],
        "BreakGlassAccessGranted",
        data["person_id"],
        ref_id=data["grant_id"],
        importance="tres_important",
        active=True,
        when=when,
    )
    file_list.touch(uow.session, data["patient_id"], when)


def on_break_glass_ended(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, when = envelope["data"], _when(envelope)
    for entry in uow.session.scalars(select(FeedEntry).where(FeedEntry.ref_id == data["grant_id"])):
        entry.active = False
    write_feed_line(
        uow.session,
        data["patient_id"],
        "BreakGlassAccessEnded",
        data["person_id"],
        ref_id=data["grant_id"],
        when=when,
    )


def on_document_added(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    data, when = envelope["data"], _when(envelope)
    write_feed_line(
        uow.session,
        data["patient_id"],
        "DocumentAdded",
        data.get("uploaded_by"),
        ref_id=data["document_id"],
        when=when,
    )
    file_list.touch(uow.session, data["patient_id"], when)


def on_delegation(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    data, when = envelope["data"], _when(envelope)
    row = uow.session.get(Delegation, data["delegation_id"])
    if row is None:
        row = Delegation(
            delegation_id=data["delegation_id"],
            grantor_id=data["grantor_id"],
            delegate_id=data["delegate_id"],
            scopes=[],
            ends_on=None,
            active=active,
            updated_at=when,
        )
        uow.session.add(row)
    elif row.updated_at > when:
        return  # an older event
    if active:
        row.scopes = list(data.get("scopes") or [])
        row.ends_on = date.fromisoformat(data["ends_on"]) if data.get("ends_on") else None
    row.active, row.updated_at = active, when
