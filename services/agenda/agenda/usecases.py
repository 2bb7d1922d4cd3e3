"""Agenda use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from agenda import domain
from agenda.models import Appointment, Participant, StructureAppointmentType
from chassis.auth import Actor
from chassis.db import Database, new_id, utcnow
from chassis.problems import conflict, forbidden, invalid, not_found

# -- appointment types (AGD-3) ------------------------------------------------------------


def _type_view(t: domain.AppointmentType) -> dict[str, Any]:
    return {"code": t.code, "label": t.label, "with_patient": t.with_patient, "structure_id": t.structure_id}


def _structures_in_view(actor: Actor) -> tuple[str, ...]:
    # Acting for one structure shows its types; otherwise those of every structure the person is in.
    return (actor.structure_id,) if actor.structure_id else actor.structures


def _available_types(session: Session, actor: Actor) -> list[domain.AppointmentType]:
    structures = _structures_in_view(actor)
    rows = (
        session.scalars(
            select(StructureAppointmentType)
            .where(StructureAppointmentType.structure_id.in_(structures))
            .order_by(StructureAppointmentType.structure_id, StructureAppointmentType.label)
        ).all()
        if structures
        else []
    )
    own = [domain.AppointmentType(r.code, r.label, r.with_patient, r.structure_id) for r in rows]
    return [*domain.DEFAULT_TYPES, *own]


def list_types(db: Database, actor: Actor) -> dict[str, Any]:
    with db.session_factory() as session:
        return {"items": [_type_view(t) for t in _available_types(session, actor)]}


def add_type(db: Database, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    if actor.structure_id is None:
        raise forbidden("appointment types belong to a structure: act as one (X-Act-As) to add one")
    try:
        code = domain.new_type_code(body["code"])
        label = domain.check_text("label", body.get("label"), required=True)
    except domain.AgendaRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    assert label is not None
    row = StructureAppointmentType(
        structure_id=actor.structure_id,
        code=code,
        label=label,
        with_patient=body.get("with_patient", True) is True,
        created_by=actor.person_id,
        created_at=utcnow(),
    )
    with db.unit_of_work(actor.person_id) as uow:
        if uow.session.get(StructureAppointmentType, (actor.structure_id, code)) is not None:
            raise conflict(f"the structure already has a type {code}")
        uow.session.add(row)
        uow.commit()
    return _type_view(domain.AppointmentType(code, label, row.with_patient, actor.structure_id))


def _resolve_type(session: Session, actor: Actor, code: Any) -> domain.AppointmentType:
    for candidate in _available_types(session, actor):
        if candidate.code == code:
            return candidate
    raise invalid("type", f"type {code!r} is not an appointment type of your structure")


# -- appointments (AGD-1, AGD-4) ----------------------------------------------------------


def _rule(exc: domain.AgendaRuleError) -> Exception:
    return invalid(exc.field, exc.detail)


def _iso(moment: datetime) -> str:
    # PostgreSQL answers in the session's time zone: always speak UTC.
    return moment.astimezone(UTC).isoformat()


def appointment_view(a: Appointment) -> dict[str, Any]:
    return {
        "id": a.id,
        "patient_id": a.patient_id,
        "type": a.type_code,
        "type_label": a.type_label,
        "title": a.title,
        "start": _iso(a.start_at),
        "end": _iso(a.end_at),
        "place": a.place,
        "participants": [{"kind": p.kind, "id": p.participant_id} for p in a.participants],
        "status": a.status,
        "created_by": a.created_by,
        "created_at": _iso(a.created_at),
        "updated_at": _iso(a.updated_at),
        "version": a.version,
    }


def _event_data(a: Appointment) -> dict[str, Any]:
    # Ids, times and codes only: titles and places are free text and may be clinical.
    return {
        "appointment_id": a.id,
        "patient_id": a.patient_id,
        "type_code": a.type_code,
        "start": _iso(a.start_at),
        "end": _iso(a.end_at),
        "participants": [{"kind": p.kind, "id": p.participant_id} for p in a.participants],
        "aggregate_version": a.version,
    }


def _set_participants(appointment: Appointment, participants: tuple[domain.Participant, ...]) -> None:
    appointment.participants = [
        Participant(kind=p.kind, participant_id=p.id, position=i) for i, p in enumerate(participants)
    ]


def schedule(db: Database, actor: Actor, patient_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
    try:
        title = domain.check_text("title", body.get("title"), required=True)
        start = domain.parse_instant("start", body.get("start"))
        end = domain.parse_instant("end", body.get("end"))
        domain.check_times(start, end)
        place = domain.check_text("place", body.get("place"), required=False)
        creator = domain.Participant("structure" if actor.structure_id else "person", actor.owner_id)
        participants = domain.participants(body.get("participants"), creator)
    except domain.AgendaRuleError as exc:
        raise _rule(exc) from exc
    assert title is not None
    now = utcnow()
    with db.unit_of_work(actor.person_id) as uow:
        appointment_type = _resolve_type(uow.session, actor, body.get("type"))
        try:
            domain.check_type_for(appointment_type, has_patient=patient_id is not None)
        except domain.AgendaRuleError as exc:
            raise _rule(exc) from exc
        appointment = Appointment(
            id=new_id(),
            patient_id=patient_id,
            type_code=appointment_type.code,
            type_label=appointment_type.label,
            title=title,
            start_at=start,
            end_at=end,
            place=place,
            status="scheduled",
            created_by=actor.person_id,
            created_at=now,
            updated_at=now,
            version=1,
        )
        _set_participants(appointment, participants)
        uow.session.add(appointment)
        uow.emit("AppointmentScheduled", subject=patient_id or appointment.id, data=_event_data(appointment))
        uow.commit()
        return appointment_view(appointment)


def _mine(actor: Actor) -> Any:
    """Rows of Participant naming the caller or the structure it acts for (my calendar)."""
    who = [and_(Participant.kind == "person", Participant.participant_id == actor.person_id)]
    if actor.structure_id:
        who.append(and_(Participant.kind == "structure", Participant.participant_id == actor.structure_id))
    return or_(*who)


def _window(query: Any, window_from: datetime | None, window_to: datetime | None) -> Any:
    if window_to is not None:
        query = query.where(Appointment.start_at < window_to)
    if window_from is not None:
        query = query.where(Appointment.end_at > window_from)
    return query


def _parse_window(window_from: Any, window_to: Any) -> tuple[datetime | None, datetime | None]:
    try:
        start = domain.parse_instant("from", window_from) if window_from else None
        end = domain.parse_instant("to", window_to) if window_to else None
        domain.check_range(start, end)
    except domain.AgendaRuleError as exc:
        raise _rule(exc) from exc
    return start, end


def list_for_patient(db: Database, patient_id: str, window_from: Any, window_to: Any) -> dict[str, Any]:
    # Access was decided by the gateway with cercle (the owner of habilitations).
    start, end = _parse_window(window_from, window_to)
    query = select(Appointment).where(Appointment.patient_id == patient_id, Appointment.status == "scheduled")
    query = _window(query, start, end).options(selectinload(Appointment.participants))
    with db.session_factory() as session:
        items = session.scalars(query.order_by(Appointment.start_at, Appointment.id)).all()
        return {"items": [appointment_view(a) for a in items]}


def my_calendar(db: Database, actor: Actor, window_from: Any, window_to: Any) -> list[dict[str, Any]]:
    """AGD-1: appointments where I, or the structure I act for, take part; all patients together."""
    start, end = _parse_window(window_from, window_to)
    mine = exists().where(Participant.appointment_id == Appointment.id, _mine(actor))
    query = select(Appointment).where(mine, Appointment.status == "scheduled")
    query = _window(query, start, end).options(selectinload(Appointment.participants))
    with db.session_factory() as session:
        items = session.scalars(query.order_by(Appointment.start_at, Appointment.id)).all()
        return [appointment_view(a) for a in items]


def _load(session: Session, actor: Actor, patient_id: str | None, appointment_id: str) -> Appointment:
    appointment = session.get(Appointment, appointment_id, options=[selectinload(Appointment.participants)])
    if appointment is None or appointment.status != "scheduled" or appointment.patient_id != patient_id:
        # A patient's appointment is only reached through its patient's path (habilitation).
        raise not_found("appointment")
    if patient_id is None and not _may_edit_without_patient(appointment, actor):
        raise not_found("appointment")
    return appointment


def _may_edit_without_patient(appointment: Appointment, actor: Actor) -> bool:
    # No patient, so no habilitation: its creator and participants manage it.
    if appointment.created_by == actor.person_id:
        return True
    return any(
        (p.kind == "person" and p.participant_id == actor.person_id)
        or (p.kind == "structure" and p.participant_id in actor.structures)
        for p in appointment.participants
    )


def get_appointment(
    db: Database, actor: Actor, patient_id: str | None, appointment_id: str
) -> dict[str, Any]:
    with db.session_factory() as session:
        return appointment_view(_load(session, actor, patient_id, appointment_id))


def change(
    db: Database, actor: Actor, patient_id: str | None, appointment_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        appointment = _load(uow.session, actor, patient_id, appointment_id)
        changed: list[str] = []
        try:
            if "title" in body:
                title = domain.check_text("title", body["title"], required=True)
                if title != appointment.title:
                    appointment.title = title  # type: ignore[assignment]
                    changed.append("title")
            if "place" in body:
                place = domain.check_text("place", body["place"], required=False)
                if place != appointment.place:
                    appointment.place = place
                    changed.append("place")
            start = domain.parse_instant("start", body["start"]) if "start" in body else appointment.start_at
            end = domain.parse_instant("end", body["end"]) if "end" in body else appointment.end_at
            domain.check_times(start, end)
            if start != appointment.start_at:
                appointment.start_at = start
                changed.append("start")
            if end != appointment.end_at:
                appointment.end_at = end
                changed.append("end")
            if "participants" in body:
                creator = domain.Participant("structure" if actor.structure_id else "person", actor.owner_id)
                participants = domain.participants(body["participants"], creator)
                current = tuple(
                    domain.Participant(p.kind, p.participant_id) for p in appointment.participants
                )
                if participants != current:
                    uow.session.query(Participant).filter_by(appointment_id=appointment.id).delete()
                    uow.session.expire(appointment, ["participants"])
                    _set_participants(appointment, participants)
                    changed.append("participants")
            if "type" in body and body["type"] != appointment.type_code:
                appointment_type = _resolve_type(uow.session, actor, body["type"])
                domain.check_type_for(appointment_type, has_patient=patient_id is not None)
                appointment.type_code = appointment_type.code
                appointment.type_label = appointment_type.label
                changed.append("type")
        except domain.AgendaRuleError as exc:
            raise _rule(exc) from exc
        if changed:
            appointment.version += 1
            appointment.updated_at = utcnow()
            data = {**_event_data(appointment), "changed": changed}
            uow.emit("AppointmentChanged", subject=patient_id or appointment.id, data=data)
            uow.commit()
        return appointment_view(appointment)


def cancel(db: Database, actor: Actor, patient_id: str | None, appointment_id: str) -> None:
    with db.unit_of_work(actor.person_id) as uow:
        appointment = _load(uow.session, actor, patient_id, appointment_id)
        appointment.status = "cancelled"
        appointment.cancelled_by = actor.person_id
        appointment.cancelled_at = utcnow()
        appointment.updated_at = appointment.cancelled_at
        appointment.version += 1
        data = {
            "appointment_id": appointment.id,
            "patient_id": appointment.patient_id,
            "type_code": appointment.type_code,
            "participants": [{"kind": p.kind, "id": p.participant_id} for p in appointment.participants],
            "aggregate_version": appointment.version,
        }
        uow.emit("AppointmentCancelled", subject=patient_id or appointment.id, data=data)
        uow.commit()
