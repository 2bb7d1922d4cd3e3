"""Cercle use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cercle import domain
from cercle.models import KnownPatient, Member, Person
from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import Problem, conflict, forbidden, invalid, not_found


def _uuid(value: str) -> str:
    # The contract already checked the format; this only makes ids compare as stored.
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _rule_problem(exc: domain.CircleRuleError) -> Problem:
    return invalid(exc.field, exc.detail)


# -- views ---------------------------------------------------------------------------


def member_view(member: Member, person: Person | None = None) -> dict[str, Any]:
    return {
        "id": member.id,
        "patient_id": member.patient_id,
        "holder_kind": member.holder_kind,
        "holder_id": member.holder_id,
        "display_name": person.display_name if person else None,
        "profession": person.profession if person else None,
        "roles": list(member.roles or []),
        "description": member.description,
        "habilitated": member.habilitated,
        "auto_habilitation": member.auto_habilitation,
        "refused_information_sharing": member.refused_information_sharing,
        "added_at": member.added_at.isoformat(),
        "added_by": member.added_by,
        "updated_at": member.updated_at.isoformat(),
    }


def _person_of(session: Session, member: Member) -> Person | None:
    return session.get(Person, member.holder_id) if member.holder_kind == "person" else None


# -- access checks -------------------------------------------------------------------


def _actor_decision(session: Session, patient_id: str, actor: Actor) -> domain.Decision:
    """One indexed query: the actor's own habilitated memberships on this patient, if any."""
    holders = domain.actor_holders(actor.person_id, actor.structure_id)
    rows = session.execute(
        select(Member.holder_kind, Member.holder_id).where(
            Member.patient_id == patient_id,
            Member.habilitated.is_(True),
            or_(*(and_(Member.holder_kind == h.kind, Member.holder_id == h.id) for h in holders)),
        )
    ).all()
    return domain.decide(actor.person_id, actor.structure_id, (domain.Holder(k, i) for k, i in rows))


def _require_patient(session: Session, patient_id: str, *, lock: bool = False) -> KnownPatient:
    query = select(KnownPatient).where(KnownPatient.patient_id == patient_id)
    if lock:
        # Circle changes of one patient run one at a time (the last-habilitated rule needs it).
        query = query.with_for_update()
    patient = session.scalar(query)
    if patient is None:
        raise not_found("patient")
    return patient


def _require_reader(session: Session, patient_id: str, actor: Actor) -> None:
    if not _actor_decision(session, patient_id, actor).allowed:
        raise forbidden("only a habilitated member may see this care circle")


def _require_changer(session: Session, patient_id: str, actor: Actor) -> None:
    if not domain.may_change_circle(_actor_decision(session, patient_id, actor)):
        raise forbidden("only a habilitated member may change this care circle")


def _require_member(session: Session, patient_id: str, member_id: str) -> Member:
    member = session.get(Member, _uuid(member_id))
    if member is None or member.patient_id != patient_id:
        raise not_found("care-circle member")
    return member


def _habilitated_holders(session: Session, patient_id: str) -> list[domain.Holder]:
    rows = session.execute(
        select(Member.holder_kind, Member.holder_id).where(
            Member.patient_id == patient_id, Member.habilitated.is_(True)
        )
    ).all()
    return [domain.Holder(k, i) for k, i in rows]


# -- events --------------------------------------------------------------------------


def _holder_data(member: Member) -> dict[str, Any]:
    return {
        "patient_id": member.patient_id,
        "member_id": member.id,
        "holder_kind": member.holder_kind,
        "holder_id": member.holder_id,
    }


def _emit_added(uow: UnitOfWork, member: Member) -> None:
    data = {
        **_holder_data(member),
        "roles": list(member.roles or []),
        "habilitated": member.habilitated,
        "auto_habilitation": member.auto_habilitation,
    }
    uow.emit("CareCircleMemberAdded", subject=member.patient_id, data=data)


def _emit_granted(uow: UnitOfWork, member: Member, basis: str) -> None:
    uow.emit("HabilitationGranted", subject=member.patient_id, data={**_holder_data(member), "basis": basis})


def _emit_revoked(uow: UnitOfWork, member: Member) -> None:
    uow.emit("HabilitationRevoked", subject=member.patient_id, data=_holder_data(member))


# -- queries -------------------------------------------------------------------------


def get_circle(db: Database, actor: Actor, patient_id: str) -> dict[str, Any]:
    """CER-1: every member with roles, habilitation, the auto-habilitation tag and dates."""
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        _require_patient(session, patient_id)
        _require_reader(session, patient_id, actor)
        rows = session.execute(
            select(Member, Person)
            .outerjoin(Person, and_(Member.holder_kind == "person", Person.person_id == Member.holder_id))
            .where(Member.patient_id == patient_id)
            .order_by(Member.added_at, Member.id)
        ).all()
        return {"patient_id": patient_id, "members": [member_view(m, p) for m, p in rows]}


def get_member(db: Database, actor: Actor, patient_id: str, member_id: str) -> dict[str, Any]:
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        _require_patient(session, patient_id)
        _require_reader(session, patient_id, actor)
        member = _require_member(session, patient_id, member_id)
        return member_view(member, _person_of(session, member))


def decision(db: Database, actor: Actor, patient_id: str) -> dict[str, Any]:
    """The gateway's habilitation decision for the caller (hot path: one indexed query).

    An unknown patient has no member, so it is refused like any file the caller is not on.
    """
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        result = _actor_decision(session, patient_id, actor)
    return {
        "patient_id": patient_id,
        "allowed": result.allowed,
        "basis": result.basis,
        "holder_kind": result.holder.kind if result.holder else None,
        "holder_id": result.holder.id if result.holder else None,
        "max_age_s": domain.DECISION_MAX_AGE_S,
    }


# -- commands ------------------------------------------------------------------------


def add_member(db: Database, actor: Actor, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """CER-4, CER-7: add a person or a structure, habilitated or not."""
    patient_id = _uuid(patient_id)
    try:
        draft = domain.new_member(
            holder_kind=body.get("holder_kind", ""),
            holder_id=body.get("holder_id", ""),
            roles=body.get("roles") or [],
            description=body.get("description"),
            habilitated=body.get("habilitated") is True,
            refused_information_sharing=body.get("refused_information_sharing") is True,
        )
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc

    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, actor)
        existing = session.scalar(
            select(Member.id).where(
                Member.patient_id == patient_id,
                Member.holder_kind == draft.holder.kind,
                Member.holder_id == draft.holder.id,
            )
        )
        if existing is not None:
            raise conflict("this person or structure is already in the care circle", member_id=existing)
        now = utcnow()
        member = Member(
            id=new_id(),
            patient_id=patient_id,
            holder_kind=draft.holder.kind,
            holder_id=draft.holder.id,
            roles=list(draft.roles),
            description=draft.description,
            habilitated=draft.habilitated,
            auto_habilitation=False,
            refused_information_sharing=draft.refused_information_sharing,
            added_at=now,
            added_by=actor.person_id,
            updated_at=now,
        )
        session.add(member)
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent add of the same holder won the race
            raise conflict("this person or structure is already in the care circle") from exc
        _emit_added(uow, member)
        if member.habilitated:
            _emit_granted(uow, member, "member")
        uow.commit()
        return member_view(member, _person_of(session, member))


def grant_habilitation(db: Database, actor: Actor, patient_id: str, member_id: str) -> dict[str, Any]:
    """Habilitate a listed member; granting twice changes nothing and emits nothing."""
    patient_id = _uuid(patient_id)
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, actor)
        member = _require_member(session, patient_id, member_id)
        if not member.habilitated:
            try:
                domain.check_grant(member.refused_information_sharing)
            except domain.CircleRuleError as exc:
                raise conflict(exc.detail) from exc
            member.habilitated = True
            member.updated_at = utcnow()
            _emit_granted(uow, member, "member")
            uow.commit()
        return member_view(member, _person_of(session, member))


def revoke_habilitation(db: Database, actor: Actor, patient_id: str, member_id: str) -> dict[str, Any]:
    """CER-9 "remove the habilitation": the member stays listed, without access, at once (CER-10)."""
    patient_id = _uuid(patient_id)
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, actor)
        member = _require_member(session, patient_id, member_id)
        if member.habilitated:
            _check_keeps_a_habilitated_member(session, member)
            member.habilitated = False
            # The tag says how the current habilitation came; there is none any more.
            member.auto_habilitation = False
            member.updated_at = utcnow()
            _emit_revoked(uow, member)
            uow.commit()
        return member_view(member, _person_of(session, member))


def remove_member(db: Database, actor: Actor, patient_id: str, member_id: str) -> None:
    """CER-9 "remove from the circle": no longer listed, no longer any access."""
    patient_id = _uuid(patient_id)
    with db.unit_of_work(actor.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, actor)
        member = _require_member(session, patient_id, member_id)
        if member.habilitated:
            _check_keeps_a_habilitated_member(session, member)
            _emit_revoked(uow, member)
        data = _holder_data(member)
        session.delete(member)
        uow.emit("CareCircleMemberRemoved", subject=patient_id, data=data)
        uow.commit()


def _check_keeps_a_habilitated_member(session: Session, member: Member) -> None:
    losing = domain.Holder(member.holder_kind, member.holder_id)
    try:
        domain.check_keeps_a_habilitated_member(_habilitated_holders(session, member.patient_id), losing)
    except domain.CircleRuleError as exc:
        raise conflict(exc.detail) from exc


# -- consumers: dossier's patients, identity's persons --------------------------------


def record_patient(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """PAT-6: the file's owner (person or structure) is habilitated at once, tagged auto-habilitation."""
    data = envelope["data"]
    session = uow.session
    patient_id = _uuid(data["patient_id"])
    created_at = datetime.fromisoformat(envelope["occurred_at"])
    if session.get(KnownPatient, patient_id) is None:
        session.add(
            KnownPatient(
                patient_id=patient_id,
                owner_kind=data["owner_kind"],
                owner_id=data["owner_id"],
                created_at=created_at,
            )
        )
    member = session.scalar(
        select(Member).where(
            Member.patient_id == patient_id,
            Member.holder_kind == data["owner_kind"],
            Member.holder_id == data["owner_id"],
        )
    )
    if member is None:
        member = Member(
            id=new_id(),
            patient_id=patient_id,
            holder_kind=data["owner_kind"],
            holder_id=data["owner_id"],
            roles=[],
            description=None,
            habilitated=True,
            auto_habilitation=True,
            refused_information_sharing=False,
            added_at=created_at,
            added_by=data.get("created_by"),
            updated_at=utcnow(),
        )
        session.add(member)
        session.flush()
        _emit_added(uow, member)
        _emit_granted(uow, member, "auto_habilitation")
    elif not member.habilitated:
        member.habilitated = True
        member.auto_habilitation = True
        member.updated_at = utcnow()
        _emit_granted(uow, member, "auto_habilitation")
    else:
        member.auto_habilitation = True


def record_person(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Names and professions of persons, to show them in circles; an older event never wins."""
    data = envelope.get("data") or {}
    person_id = data.get("person_id")
    if not isinstance(person_id, str) or not person_id:
        return
    changed_at = datetime.fromisoformat(envelope["occurred_at"])
    structures = data.get("structures")
    values = {
        "display_name": data.get("display_name") if isinstance(data.get("display_name"), str) else None,
        "structures": [str(s) for s in structures] if isinstance(structures, list) else [],
        "profession": data.get("profession") if isinstance(data.get("profession"), str) else None,
    }
    person = uow.session.get(Person, person_id)
    if person is None:
        uow.session.add(Person(person_id=person_id, updated_at=changed_at, **values))
    elif person.updated_at <= changed_at:
        for key, value in values.items():
            setattr(person, key, value)
        person.updated_at = changed_at
