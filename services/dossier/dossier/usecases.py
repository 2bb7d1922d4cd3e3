"""Dossier use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import and_, or_, select

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork
from chassis.problems import invalid, not_found
from chassis.readmodels import record_habilitation
from dossier import file_list, identity
from dossier.models import Habilitation, Patient


def _parse_date(field: str, value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD") from exc


def create_patient(db: Database, actor: Actor, body: dict[str, Any], today: date) -> dict[str, Any]:
    """Kept for callers of the first version: creation runs identity vigilance (dossier/identity.py)."""
    return identity.create_patient(db, actor, body, today)


def _visible_to(actor: Actor) -> Any:
    holders = [and_(Habilitation.holder_kind == "person", Habilitation.holder_id == actor.person_id)]
    if actor.structure_id:
        holders.append(
            and_(Habilitation.holder_kind == "structure", Habilitation.holder_id == actor.structure_id)
        )
    return and_(Habilitation.active.is_(True), or_(*holders))


def get_patient(db: Database, patient_id: str, today: date) -> dict[str, Any]:
    # Access was decided by the gateway with cercle (the owner of habilitations).
    with db.session_factory() as session:
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise not_found("patient")
        return identity.identity_view(patient, today)


def list_patients(db: Database, actor: Actor, today: date, *, limit: int, offset: int) -> dict[str, Any]:
    """SEA-1: only files the caller is habilitated on (from the habilitation read model)."""
    with db.session_factory() as session:
        visible = select(Habilitation.patient_id).where(_visible_to(actor))
        query = (
            select(Patient)
            .where(Patient.id.in_(visible))
            .order_by(Patient.birth_name, Patient.first_name, Patient.id)
            .limit(limit)
            .offset(offset)
        )
        items = [identity.core_view(p, today) for p in session.scalars(query)]
    return {"items": items, "limit": limit, "offset": offset}


# -- consumers of cercle's events: the habilitation read model -----------------------


def apply_habilitation(uow: UnitOfWork, envelope: dict[str, Any], active: bool) -> None:
    """Grant or revoke in the read model; the file list follows when who sees the file changed."""
    if record_habilitation(uow.session, Habilitation, envelope, active):
        data = envelope["data"]
        file_list.follow_habilitation(
            uow.session.connection(), data["patient_id"], data["holder_kind"], data["holder_id"], active
        )
