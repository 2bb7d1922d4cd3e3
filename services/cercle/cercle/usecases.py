"""Cercle use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import CompoundSelect, and_, bindparam, null, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cercle import domain
from cercle.clock import Clock
from cercle.models import BreakGlassGrant, Delegation, Invitation, KnownPatient, Member, Person
from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, insert_if_absent, insert_new, new_id, utcnow
from chassis.problems import Problem, conflict, forbidden, invalid, not_found

log = logging.getLogger(__name__)


def _uuid(value: str) -> str:
    # The contract already checked the format; this only makes ids compare as stored.
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def _rule_problem(exc: domain.CircleRuleError) -> Problem:
    return invalid(exc.field, exc.detail)


@dataclass(frozen=True)
class Caller:
    """Who acts, for whom (X-Act-As structure, X-Act-For grantor), and when."""

    actor: Actor
    act_for: str | None = None
    now: datetime = field(default_factory=utcnow)

    @property
    def request(self) -> domain.AccessRequest:
        return domain.AccessRequest(self.actor.person_id, self.actor.structure_id, self.act_for)

    @property
    def person_id(self) -> str:
        return self.actor.person_id


def as_caller(who: Actor | Caller) -> Caller:
    return who if isinstance(who, Caller) else Caller(who)


# -- views ---------------------------------------------------------------------------


def member_view(member: Member, person: Person | None = None) -> dict[str, Any]:
    manual = member.manual or None
    display_name = person.display_name if person else None
    if manual and display_name is None:
        display_name = " ".join(p for p in (manual.get("first_name"), manual.get("last_name")) if p) or None
    return {
        "id": member.id,
        "patient_id": member.patient_id,
        "holder_kind": member.holder_kind,
        "holder_id": member.holder_id,
        "source": member.source,
        "display_name": display_name,
        "profession": person.profession if person else (manual or {}).get("profession"),
        "roles": list(member.roles or []),
        **{name: getattr(member, name) for name in domain.DETAIL_FIELDS},
        "habilitated": member.habilitated,
        "auto_habilitation": member.auto_habilitation,
        "refused_information_sharing": member.refused_information_sharing,
        "manual": manual,
        "added_at": member.added_at.isoformat(),
        "added_by": member.added_by,
        "added_for": member.added_for,
        "updated_at": member.updated_at.isoformat(),
    }


def _person_of(session: Session, member: Member) -> Person | None:
    return session.get(Person, member.holder_id) if member.holder_kind == "person" else None


def grant_view(grant: BreakGlassGrant, now: datetime) -> dict[str, Any]:
    active = grant.ended_at is None and grant.granted_at <= now < grant.expires_at
    return {
        "id": grant.id,
        "patient_id": grant.patient_id,
        "person_id": grant.person_id,
        "structure_id": grant.structure_id,
        "reason_code": grant.reason_code,
        "reason_text": grant.reason_text,
        "found_via": grant.found_via,
        "granted_at": grant.granted_at.isoformat(),
        "expires_at": grant.expires_at.isoformat(),
        "ended_at": grant.ended_at.isoformat() if grant.ended_at else None,
        "end_cause": grant.end_cause,
        "active": active,
    }


def invitation_view(invitation: Invitation) -> dict[str, Any]:
    return {
        "id": invitation.id,
        "patient_id": invitation.patient_id,
        "email": invitation.email,
        "roles": list(invitation.roles or []),
        "invited_by": invitation.invited_by,
        "invited_at": invitation.invited_at.isoformat(),
        "accepted_by": invitation.accepted_by,
        "accepted_at": invitation.accepted_at.isoformat() if invitation.accepted_at else None,
    }


# -- the decision ----------------------------------------------------------------------


@functools.cache
def _memberships_statement(holders: int) -> CompoundSelect:
    """The request's memberships on some patients, and which of those patients cercle knows,
    in one statement (one snapshot: a patient and its creator's membership, committed
    together, are seen together or not at all). Built once per holder count (1 to 3 in
    practice) and only bound per call: building and hashing it cost more than running it
    on the gateway's hot path."""
    patient_ids = bindparam("patient_ids", expanding=True)
    memberships = select(
        Member.patient_id,
        Member.holder_kind,
        Member.holder_id,
        Member.habilitated,
        Member.refused_information_sharing,
    ).where(
        Member.patient_id.in_(patient_ids),
        or_(
            *(
                and_(
                    Member.holder_kind == bindparam(f"kind_{i}"), Member.holder_id == bindparam(f"holder_{i}")
                )
                for i in range(holders)
            )
        ),
    )
    known = select(KnownPatient.patient_id, null(), null(), null(), null()).where(
        KnownPatient.patient_id.in_(patient_ids)
    )
    return union_all(memberships, known)


def _memberships(
    session: Session, patient_ids: Sequence[str], holders: Iterable[domain.Holder]
) -> tuple[dict[str, dict[domain.Holder, domain.Standing]], set[str]]:
    """One statement, two indexed lookups (uq_members_holder, known_patients' key): the
    request's memberships on these patients, and the patients cercle knows."""
    holder_list = list(dict.fromkeys(holders))
    parameters: dict[str, Any] = {"patient_ids": list(patient_ids)}
    for i, holder in enumerate(holder_list):
        parameters[f"kind_{i}"] = holder.kind
        parameters[f"holder_{i}"] = holder.id
    # On the session's connection: plain rows, no ORM result set-up.
    rows = session.connection().execute(_memberships_statement(len(holder_list)), parameters).all()
    found: dict[str, dict[domain.Holder, domain.Standing]] = {p: {} for p in patient_ids}
    known: set[str] = set()
    for patient_id, kind, holder_id, habilitated, refused in rows:
        if kind is None:
            known.add(patient_id)
        else:
            found[patient_id][domain.Holder(kind, holder_id)] = domain.Standing(
                bool(habilitated), bool(refused)
            )
    return found, known


def _standings(
    session: Session, patient_ids: Sequence[str], holders: Iterable[domain.Holder]
) -> dict[str, dict[domain.Holder, domain.Standing]]:
    return _memberships(session, patient_ids, holders)[0]


def _delegation(session: Session, caller: Caller) -> domain.Delegation | None:
    """The delegate's open delegations from the grantor (index ix_delegations_pair)."""
    if not caller.act_for:
        return None
    rows = session.scalars(
        select(Delegation).where(
            Delegation.delegate_id == caller.person_id,
            Delegation.grantor_id == caller.act_for,
            Delegation.revoked_at.is_(None),
        )
    ).all()
    candidates = [domain.Delegation(tuple(d.scopes or []), d.ends_on, False) for d in rows]
    open_ = [d for d in candidates if domain.delegation_open(d, caller.now)]
    # The one lasting longest (no end date first) gives the truest cache bound.
    open_.sort(key=lambda d: (d.ends_on is not None, -(d.ends_on or date.min).toordinal()))
    return open_[0] if open_ else None


def _break_glass_expiry(session: Session, patient_id: str, caller: Caller) -> datetime | None:
    """The caller's running grant on this patient, if any (index ix_break_glass_patient_person)."""
    return session.scalar(
        select(BreakGlassGrant.expires_at)
        .where(
            BreakGlassGrant.patient_id == patient_id,
            BreakGlassGrant.person_id == caller.person_id,
            BreakGlassGrant.ended_at.is_(None),
            BreakGlassGrant.granted_at <= caller.now,
            BreakGlassGrant.expires_at > caller.now,
        )
        .order_by(BreakGlassGrant.expires_at.desc())
        .limit(1)
    )


def _decide(
    session: Session, patient_id: str, caller: Caller, *, with_break_glass: bool = True
) -> domain.Decision:
    return _decide_and_know(session, patient_id, caller, with_break_glass=with_break_glass)[0]


def _decide_and_know(
    session: Session, patient_id: str, caller: Caller, *, with_break_glass: bool = True
) -> tuple[domain.Decision, bool]:
    """Hot path: the memberships query, then at most one of the delegation or grant queries.
    Also says whether cercle knows the patient (as of the memberships query)."""
    request = caller.request
    memberships, known = _memberships(session, [patient_id], domain.request_holders(request))
    standings = memberships[patient_id]
    first = domain.decide(request, standings, now=caller.now)
    if first.allowed or any(s.refused for s in standings.values()):
        return first, patient_id in known
    if request.act_for:
        delegation = _delegation(session, caller)
        return domain.decide(request, standings, now=caller.now, delegation=delegation), patient_id in known
    if not with_break_glass:
        return first, patient_id in known
    expiry = _break_glass_expiry(session, patient_id, caller)
    return domain.decide(
        request, standings, now=caller.now, break_glass_expires_at=expiry
    ), patient_id in known


def decision(db: Database, who: Actor | Caller, patient_id: str) -> dict[str, Any]:
    """The gateway's habilitation decision for the caller; an unknown patient has no member: refused.

    A refusal also says whether cercle knows the patient yet: a file just created in dossier
    reaches cercle by its PatientCreated event a few milliseconds later, and until then the
    gateway waits for it rather than refuse the creator its own new file."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        result, known = _decide_and_know(session, patient_id, caller)
    return {
        "patient_id": patient_id,
        "patient_known": known or result.allowed,
        "allowed": result.allowed,
        "basis": result.basis,
        "holder_kind": result.holder.kind if result.holder else None,
        "holder_id": result.holder.id if result.holder else None,
        "max_age_s": result.max_age_s(caller.now),
        "expires_at": result.expires_at.isoformat() if result.expires_at else None,
    }


# -- access checks -------------------------------------------------------------------

BREAK_GLASS_NO_CHANGE = (
    "accès en bris de glace : suppressions et modifications du cercle interdites / "
    "break-the-glass access: deletions and care-circle changes are refused"
)


def _require_patient(session: Session, patient_id: str, *, lock: bool = False) -> KnownPatient:
    query = select(KnownPatient).where(KnownPatient.patient_id == patient_id)
    if lock:
        # Circle changes of one patient run one at a time (the last-habilitated rule needs it).
        query = query.with_for_update()
    patient = session.scalar(query)
    if patient is None:
        raise not_found("patient")
    return patient


def _require_reader(session: Session, patient_id: str, caller: Caller) -> domain.Decision:
    result = _decide(session, patient_id, caller)
    if not result.allowed:
        raise forbidden("only a habilitated member may see this care circle")
    return result


def _require_changer(session: Session, patient_id: str, caller: Caller) -> None:
    result = _decide(session, patient_id, caller)
    if result.basis == "break_glass":
        raise forbidden(BREAK_GLASS_NO_CHANGE)
    if not domain.may_change_circle(result):
        raise forbidden("only a habilitated member may change this care circle")


def _require_member(session: Session, patient_id: str, member_id: str) -> Member:
    member = session.get(Member, _uuid(member_id))
    if member is None or member.patient_id != patient_id:
        raise not_found("care-circle member")
    return member


def _habilitated_holders(session: Session, patient_id: str) -> list[domain.Holder]:
    rows = session.execute(
        select(Member.holder_kind, Member.holder_id).where(
            Member.patient_id == patient_id,
            Member.habilitated.is_(True),
            Member.refused_information_sharing.is_(False),
        )
    ).all()
    return [domain.Holder(k, i) for k, i in rows]


def _check_keeps_a_habilitated_member(session: Session, member: Member) -> None:
    losing = domain.Holder(member.holder_kind, member.holder_id)
    try:
        domain.check_keeps_a_habilitated_member(_habilitated_holders(session, member.patient_id), losing)
    except domain.CircleRuleError as exc:
        raise conflict(exc.detail) from exc


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


def get_circle(db: Database, who: Actor | Caller, patient_id: str) -> dict[str, Any]:
    """CER-1: every member with roles, details, habilitation, the auto-habilitation tag and dates."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        _require_patient(session, patient_id)
        _require_reader(session, patient_id, caller)
        rows = session.execute(
            select(Member, Person)
            .outerjoin(Person, and_(Member.holder_kind == "person", Person.person_id == Member.holder_id))
            .where(Member.patient_id == patient_id)
            .order_by(Member.added_at, Member.id)
        ).all()
        return {"patient_id": patient_id, "members": [member_view(m, p) for m, p in rows]}


def get_member(db: Database, who: Actor | Caller, patient_id: str, member_id: str) -> dict[str, Any]:
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        _require_patient(session, patient_id)
        _require_reader(session, patient_id, caller)
        member = _require_member(session, patient_id, member_id)
        return member_view(member, _person_of(session, member))


# -- commands: members -----------------------------------------------------------------


def _new_member_row(
    caller: Caller,
    patient_id: str,
    holder: domain.Holder,
    *,
    roles: Sequence[str],
    habilitated: bool,
    refused: bool = False,
    details: domain.Details = domain.Details(),
    source: str = "directory",
    manual: dict[str, Any] | None = None,
) -> Member:
    now = utcnow()
    return Member(
        id=new_id(),
        patient_id=patient_id,
        holder_kind=holder.kind,
        holder_id=holder.id,
        roles=list(roles),
        **{name: getattr(details, name) for name in domain.DETAIL_FIELDS},
        source=source,
        manual=manual,
        habilitated=habilitated,
        auto_habilitation=False,
        refused_information_sharing=refused,
        added_at=now,
        added_by=caller.person_id,
        added_for=caller.act_for,
        updated_at=now,
    )


def _insert_member(uow: UnitOfWork, member: Member) -> None:
    existing = uow.session.scalar(
        select(Member.id).where(
            Member.patient_id == member.patient_id,
            Member.holder_kind == member.holder_kind,
            Member.holder_id == member.holder_id,
        )
    )
    if existing is not None:
        raise conflict("this person or structure is already in the care circle", member_id=existing)
    uow.session.add(member)
    try:
        uow.session.flush()
    except IntegrityError as exc:  # a concurrent add of the same holder won the race
        raise conflict("this person or structure is already in the care circle") from exc
    _emit_added(uow, member)
    if member.habilitated:
        _emit_granted(uow, member, "member")


def add_member(db: Database, who: Actor | Caller, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """CER-4, CER-7: add a person or a structure from the directory, habilitated or not."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    try:
        draft = domain.new_member(
            holder_kind=body.get("holder_kind", ""),
            holder_id=body.get("holder_id", ""),
            roles=body.get("roles") or [],
            description=body.get("description"),
            habilitated=body.get("habilitated") is True,
            refused_information_sharing=body.get("refused_information_sharing") is True,
            details=body,
        )
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc

    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        member = _new_member_row(
            caller,
            patient_id,
            draft.holder,
            roles=draft.roles,
            habilitated=draft.habilitated,
            refused=draft.refused_information_sharing,
            details=draft.details,
        )
        _insert_member(uow, member)
        uow.commit()
        return member_view(member, _person_of(session, member))


def add_manual_member(
    db: Database, who: Actor | Caller, patient_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """CER-5: a person not in the directory (or a family carer); never accesses the file.

    A professional who should access the file or be informed is sent to the directory
    service centre (DirectoryEntryRequested, which notify turns into an e-mail); once in the
    directory, they are added from there and habilitated.
    """
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    try:
        person = domain.manual_person(body)
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc
    request_id = new_id() if person.requests_directory_entry else None
    manual = {
        "professional": person.professional,
        "should_access": person.should_access,
        "informed": person.informed,
        "last_name": person.last_name,
        "first_name": person.first_name,
        "city": person.city,
        "profession": person.profession,
        "rpps": person.rpps,
        "directory_request_id": request_id,
    }
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        holder = domain.Holder("person", domain.MANUAL_PREFIX + new_id())
        member = _new_member_row(
            caller,
            patient_id,
            holder,
            roles=person.roles,
            habilitated=False,
            details=person.details,
            source="manual",
            manual=manual,
        )
        _insert_member(uow, member)
        if request_id is not None:
            # The professional's own directory data, for the directory service centre; nothing about the patient.
            uow.emit(
                "DirectoryEntryRequested",
                subject=request_id,
                data={
                    "request_id": request_id,
                    "requested_by": caller.person_id,
                    "last_name": person.last_name,
                    "first_name": person.first_name,
                    "profession": person.profession,
                    "rpps": person.rpps,
                    "email": person.details.email,
                    "phone": person.details.phone,
                    "city": person.city,
                },
            )
        uow.commit()
        return member_view(member)


def update_member(
    db: Database, who: Actor | Caller, patient_id: str, member_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Edit roles and details; the patient's refusal of sharing closes the member's access at once."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        member = _require_member(session, patient_id, member_id)
        try:
            if "roles" in body:
                roles = domain.check_roles(member.holder_kind, body.get("roles") or [])
            details = domain.check_details({n: body.get(n, getattr(member, n)) for n in domain.DETAIL_FIELDS})
        except domain.CircleRuleError as exc:
            raise _rule_problem(exc) from exc
        if "roles" in body:
            member.roles = list(roles)
        for name in domain.DETAIL_FIELDS:
            setattr(member, name, getattr(details, name))
        refused = body.get("refused_information_sharing")
        if refused is True and not member.refused_information_sharing:
            if member.habilitated:
                _check_keeps_a_habilitated_member(session, member)
                member.habilitated = False
                member.auto_habilitation = False
                _emit_revoked(uow, member)
            member.refused_information_sharing = True
            # Even a member without habilitation may have reached the file through its
            # structure or a delegation: the gateways must drop what they cached at once.
            uow.emit("InformationSharingRefused", subject=member.patient_id, data=_holder_data(member))
        elif refused is False:
            # Lifting the refusal gives no access back: a habilitation must be granted again.
            member.refused_information_sharing = False
        member.updated_at = utcnow()
        uow.commit()
        return member_view(member, _person_of(session, member))


def grant_habilitation(db: Database, who: Actor | Caller, patient_id: str, member_id: str) -> dict[str, Any]:
    """Habilitate a listed member; granting twice changes nothing and emits nothing."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        member = _require_member(session, patient_id, member_id)
        if not member.habilitated:
            try:
                domain.check_grant(member.refused_information_sharing, member.holder_id)
            except domain.CircleRuleError as exc:
                raise conflict(exc.detail) from exc
            member.habilitated = True
            member.updated_at = utcnow()
            _emit_granted(uow, member, "member")
            uow.commit()
        return member_view(member, _person_of(session, member))


def revoke_habilitation(db: Database, who: Actor | Caller, patient_id: str, member_id: str) -> dict[str, Any]:
    """CER-9 "remove the habilitation": the member stays listed, without access, at once (CER-10)."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        member = _require_member(session, patient_id, member_id)
        if _revoke(uow, member):
            uow.commit()
        return member_view(member, _person_of(session, member))


def _revoke(uow: UnitOfWork, member: Member) -> bool:
    if not member.habilitated:
        return False
    _check_keeps_a_habilitated_member(uow.session, member)
    member.habilitated = False
    # The tag says how the current habilitation came; there is none any more.
    member.auto_habilitation = False
    member.updated_at = utcnow()
    _emit_revoked(uow, member)
    return True


def remove_member(db: Database, who: Actor | Caller, patient_id: str, member_id: str) -> None:
    """CER-9 "remove from the circle": no longer listed, no longer any access."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        member = _require_member(session, patient_id, member_id)
        _remove(uow, member)
        uow.commit()


def _remove(uow: UnitOfWork, member: Member) -> None:
    if member.habilitated:
        _check_keeps_a_habilitated_member(uow.session, member)
        _emit_revoked(uow, member)
    data = _holder_data(member)
    uow.session.delete(member)
    uow.session.flush()
    uow.emit("CareCircleMemberRemoved", subject=member.patient_id, data=data)


# -- bulk (CER-9) ------------------------------------------------------------------------


def bulk(db: Database, who: Actor | Caller, body: dict[str, Any]) -> dict[str, Any]:
    """One action on many patients' circles: all or nothing, with the result per patient.

    Unknown patients and patients the caller may not change are refused alike (403 listing
    them), so the answer never tells whether a file exists.
    """
    caller = as_caller(who)
    patient_ids = [_uuid(p) for p in body.get("patient_ids") or []]
    try:
        request = domain.bulk_request(body, patient_ids)
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc
    ordered = sorted(request.patient_ids)
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        # Locked in one order so two bulk requests never deadlock.
        known = set(
            session.scalars(
                select(KnownPatient.patient_id)
                .where(KnownPatient.patient_id.in_(ordered))
                .order_by(KnownPatient.patient_id)
                .with_for_update()
            )
        )
        standings = _standings(session, ordered, domain.request_holders(caller.request))
        delegation = _delegation(session, caller) if caller.act_for else None
        refused = [
            p
            for p in request.patient_ids
            if p not in known
            or not domain.may_change_circle(
                domain.decide(caller.request, standings[p], now=caller.now, delegation=delegation)
            )
        ]
        if refused:
            raise Problem(
                403,
                "Forbidden",
                "you may not change the care circle of every selected patient: nothing was changed",
                extra={"patients": refused},
            )
        members = {
            m.patient_id: m
            for m in session.scalars(
                select(Member).where(
                    Member.patient_id.in_(ordered),
                    Member.holder_kind == request.holder.kind,
                    Member.holder_id == request.holder.id,
                )
            )
        }
        results: list[dict[str, Any]] = []
        conflicts: list[str] = []
        for patient_id in request.patient_ids:
            member = members.get(patient_id)
            try:
                outcome, member_id = _bulk_one(uow, caller, request, patient_id, member)
            except Problem as exc:
                if exc.status != 409:
                    raise
                conflicts.append(patient_id)
                continue
            results.append({"patient_id": patient_id, "outcome": outcome, "member_id": member_id})
        if conflicts:
            raise conflict(
                "the change is impossible for some selected patients (the last habilitated member, "
                "or a member the patient refused sharing with): nothing was changed",
                patients=conflicts,
            )
        uow.commit()
    return {"action": request.action, "results": results}


def _bulk_one(
    uow: UnitOfWork, caller: Caller, request: domain.BulkRequest, patient_id: str, member: Member | None
) -> tuple[str, str | None]:
    if request.action == "add":
        if member is None:
            member = _new_member_row(
                caller, patient_id, request.holder, roles=request.roles, habilitated=request.habilitated
            )
            _insert_member(uow, member)
            return "added", member.id
        if request.habilitated and not member.habilitated:
            if member.refused_information_sharing:
                raise conflict("refused information sharing")
            member.habilitated = True
            member.updated_at = utcnow()
            _emit_granted(uow, member, "member")
            return "habilitated", member.id
        return "unchanged", member.id
    if member is None:
        return "not_member", None
    if request.action == "revoke_habilitation":
        return ("revoked" if _revoke(uow, member) else "unchanged"), member.id
    _remove(uow, member)
    return "removed", member.id


# -- invitations (CER-6) ------------------------------------------------------------------


def invite(db: Database, who: Actor | Caller, patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """E-mail a colleague an invitation to register; once registered they join the circle (not habilitated)."""
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    try:
        email = domain.check_email("email", body.get("email"))
        if email is None:
            raise domain.CircleRuleError("email", "email is required")
        roles = domain.check_roles("person", body.get("roles") or [])
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc
    email = email.lower()
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        _require_changer(session, patient_id, caller)
        registered = session.scalar(select(Person.person_id).where(Person.email == email))
        if registered is not None:
            raise conflict(
                "this e-mail belongs to a registered professional: add them from the directory",
                person_id=registered,
            )
        pending = session.scalar(
            select(Invitation.id).where(
                Invitation.patient_id == patient_id,
                Invitation.email == email,
                Invitation.accepted_at.is_(None),
            )
        )
        if pending is not None:
            raise conflict("this colleague is already invited", invitation_id=pending)
        invitation = Invitation(
            id=new_id(),
            patient_id=patient_id,
            email=email,
            roles=list(roles),
            invited_by=caller.person_id,
            invited_at=utcnow(),
        )
        session.add(invitation)
        session.flush()
        uow.emit(
            "CareCircleInvitationSent",
            subject=patient_id,
            data={
                "invitation_id": invitation.id,
                "patient_id": patient_id,
                "invited_by": caller.person_id,
                "email": email,
            },
        )
        uow.commit()
        return invitation_view(invitation)


def list_invitations(db: Database, who: Actor | Caller, patient_id: str) -> dict[str, Any]:
    caller = as_caller(who)
    patient_id = _uuid(patient_id)
    with db.session_factory() as session:
        _require_patient(session, patient_id)
        _require_reader(session, patient_id, caller)
        rows = session.scalars(
            select(Invitation).where(Invitation.patient_id == patient_id).order_by(Invitation.invited_at)
        ).all()
        return {"patient_id": patient_id, "invitations": [invitation_view(i) for i in rows]}


def _accept_invitations(uow: UnitOfWork, person_id: str, email: str | None) -> None:
    if not email:
        return
    session = uow.session
    pending = session.scalars(
        select(Invitation).where(Invitation.email == email.lower(), Invitation.accepted_at.is_(None))
    ).all()
    for invitation in pending:
        holder = domain.Holder("person", person_id)
        member = session.scalar(
            select(Member).where(
                Member.patient_id == invitation.patient_id,
                Member.holder_kind == "person",
                Member.holder_id == person_id,
            )
        )
        if member is None:
            inviter = Caller(Actor(invitation.invited_by, None, (), None, False, ("user",), None))
            member = _new_member_row(
                inviter, invitation.patient_id, holder, roles=invitation.roles or [], habilitated=False
            )
            member.source = "invitation"
            session.add(member)
            session.flush()
            _emit_added(uow, member)
        invitation.accepted_by = person_id
        invitation.accepted_at = utcnow()
        uow.emit(
            "CareCircleInvitationAccepted",
            subject=invitation.patient_id,
            data={
                "invitation_id": invitation.id,
                "patient_id": invitation.patient_id,
                "invited_by": invitation.invited_by,
                "person_id": person_id,
            },
        )


# -- break-the-glass (CER-8) ------------------------------------------------------------


def break_glass(db: Database, who: Actor | Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Open a patient's file for two hours to a professional who is not habilitated on it.

    Trust choice: `found_via` is what the client states (the web front end sends
    "identity_vigilance" only from the identity-vigilance search results); cercle checks that
    the patient exists and that the caller has no access already, records the statement,
    the reason and the second confirmation, and every habilitated member is told
    (BreakGlassAccessGranted) so a misuse is seen at once and reviewed afterwards.
    """
    caller = as_caller(who)
    try:
        request = domain.break_glass_request(body)
    except domain.CircleRuleError as exc:
        raise _rule_problem(exc) from exc
    if caller.act_for:
        raise forbidden("break-the-glass is personal: it cannot be asked in someone else's name")
    patient_id = _uuid(str(body.get("patient_id", "")))
    now = caller.now
    with db.unit_of_work(caller.person_id) as uow:
        session = uow.session
        _require_patient(session, patient_id, lock=True)
        standings = _standings(session, [patient_id], domain.request_holders(caller.request))[patient_id]
        if any(s.refused for s in standings.values()):
            raise forbidden(
                "the patient refused information sharing with you: no access, not even break-the-glass"
            )
        current = _decide(session, patient_id, caller)
        if current.basis == "break_glass":
            raise conflict("you already hold a running break-the-glass access to this file")
        if current.allowed:
            raise conflict("you already have access to this file: break-the-glass is not needed")
        grant = BreakGlassGrant(
            id=new_id(),
            patient_id=patient_id,
            person_id=caller.person_id,
            structure_id=caller.actor.structure_id,
            reason_code=request.reason_code,
            reason_text=request.reason_text,
            found_via=request.found_via,
            granted_at=now,
            expires_at=domain.break_glass_expiry(now),
        )
        session.add(grant)
        session.flush()
        notify = [{"kind": h.kind, "id": h.id} for h in _habilitated_holders(session, patient_id)]
        uow.emit(
            "BreakGlassAccessGranted",
            subject=patient_id,
            data={
                "grant_id": grant.id,
                "patient_id": patient_id,
                "person_id": caller.person_id,
                "structure_id": caller.actor.structure_id,
                "reason_code": request.reason_code,
                "expires_at": grant.expires_at.isoformat(),
                "habilitated": notify,
            },
        )
        uow.commit()
        return grant_view(grant, now)


def _emit_ended(uow: UnitOfWork, grant: BreakGlassGrant) -> None:
    assert grant.ended_at is not None
    uow.emit(
        "BreakGlassAccessEnded",
        subject=grant.patient_id,
        data={
            "grant_id": grant.id,
            "patient_id": grant.patient_id,
            "person_id": grant.person_id,
            "ended_at": grant.ended_at.isoformat(),
            "cause": grant.end_cause,
        },
    )


def end_break_glass(db: Database, who: Actor | Caller, grant_id: str) -> dict[str, Any]:
    """The holder closes its access before the two hours are over."""
    caller = as_caller(who)
    with db.unit_of_work(caller.person_id) as uow:
        grant = uow.session.scalar(
            select(BreakGlassGrant).where(BreakGlassGrant.id == _uuid(grant_id)).with_for_update()
        )
        if grant is None or grant.person_id != caller.person_id:
            raise not_found("break-the-glass access")
        if grant.ended_at is None:
            ended = min(caller.now, grant.expires_at)
            grant.ended_at = ended
            grant.end_cause = "ended" if caller.now < grant.expires_at else "expired"
            _emit_ended(uow, grant)
            uow.commit()
        return grant_view(grant, caller.now)


def my_break_glass(db: Database, who: Actor | Caller, patient_id: str | None = None) -> dict[str, Any]:
    """The caller's own grants, newest first (the web banner uses the running one)."""
    caller = as_caller(who)
    with db.session_factory() as session:
        query = select(BreakGlassGrant).where(BreakGlassGrant.person_id == caller.person_id)
        if patient_id:
            query = query.where(BreakGlassGrant.patient_id == _uuid(patient_id))
        rows = session.scalars(query.order_by(BreakGlassGrant.granted_at.desc()).limit(100)).all()
        return {"grants": [grant_view(g, caller.now) for g in rows]}


def review_break_glass(db: Database, who: Actor | Caller) -> dict[str, Any]:
    """CER-8 review: who broke the glass while acting for the structure, when and why (super users)."""
    caller = as_caller(who)
    structure_id = caller.actor.structure_id
    if structure_id is None or "super_user" not in caller.actor.roles:
        raise forbidden(
            "only a super user acting for a structure (X-Act-As) reviews its break-the-glass accesses"
        )
    with db.session_factory() as session:
        rows = session.scalars(
            select(BreakGlassGrant)
            .where(BreakGlassGrant.structure_id == structure_id)
            .order_by(BreakGlassGrant.granted_at.desc())
            .limit(500)
        ).all()
        return {"structure_id": structure_id, "grants": [grant_view(g, caller.now) for g in rows]}


def expire_break_glass(db: Database, now: datetime) -> int:
    """End every grant past its two hours, once each: BreakGlassAccessEnded (cause expired).

    Access already stopped at expires_at (the decision compares times); this records it.
    SKIP LOCKED lets two workers share the job without ending a grant twice.
    """
    with db.unit_of_work(None) as uow:
        due = uow.session.scalars(
            select(BreakGlassGrant)
            .where(BreakGlassGrant.ended_at.is_(None), BreakGlassGrant.expires_at <= now)
            .order_by(BreakGlassGrant.expires_at)
            .limit(200)
            .with_for_update(skip_locked=True)
        ).all()
        for grant in due:
            grant.ended_at = grant.expires_at
            grant.end_cause = "expired"
            _emit_ended(uow, grant)
        if due:
            uow.commit()
        return len(due)


class BreakGlassExpiry:
    """The worker's background job: checks every second (the decision itself never waits for it)."""

    def __init__(self, db: Database, clock: Clock, interval_s: float = 1.0) -> None:
        self.db = db
        self.clock = clock
        self.interval_s = interval_s

    def tick(self) -> int:
        return expire_break_glass(self.db, self.clock.now())

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # a database hiccup must not stop the job for good
                log.exception("break-the-glass expiry failed; retrying")


# -- consumers: dossier's patients, identity's persons and delegations --------------------


# Built once: every creation looks its owner up in the new circle.
_MEMBER_OF_HOLDER = select(Member).where(
    Member.patient_id == bindparam("member_patient"),
    Member.holder_kind == bindparam("member_kind"),
    Member.holder_id == bindparam("member_holder"),
)


def record_patient(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """PAT-6: the file's owner (person or structure) is habilitated at once, tagged auto-habilitation."""
    data = envelope["data"]
    session = uow.session
    patient_id = _uuid(data["patient_id"])
    created_at = datetime.fromisoformat(envelope["occurred_at"])
    insert_if_absent(
        session,
        KnownPatient.__table__,
        {
            "patient_id": patient_id,
            "owner_kind": data["owner_kind"],
            "owner_id": data["owner_id"],
            "created_at": created_at,
        },
    )
    member = session.scalar(
        _MEMBER_OF_HOLDER,
        {"member_patient": patient_id, "member_kind": data["owner_kind"], "member_holder": data["owner_id"]},
    )
    if member is None:
        # A new row, not changed again here: a plain INSERT (the ORM's flush of it was a
        # quarter of this consumer's CPU).
        member = Member(
            id=new_id(),
            patient_id=patient_id,
            holder_kind=data["owner_kind"],
            holder_id=data["owner_id"],
            roles=[],
            description=None,
            source="creator",
            habilitated=True,
            auto_habilitation=True,
            refused_information_sharing=False,
            added_at=created_at,
            added_by=data.get("created_by"),
            updated_at=utcnow(),
        )
        insert_new(session, member)
        _emit_added(uow, member)
        _emit_granted(uow, member, "auto_habilitation")
    elif member.refused_information_sharing:
        # A replayed PatientCreated never overrides the patient's refusal.
        return
    elif not member.habilitated:
        member.habilitated = True
        member.auto_habilitation = True
        member.updated_at = utcnow()
        _emit_granted(uow, member, "auto_habilitation")
    else:
        member.auto_habilitation = True


def record_person(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """Names and professions of persons, to show them in circles; an older event never wins.

    A registration whose e-mail was invited (CER-6) adds the person to those circles.
    """
    data = envelope.get("data") or {}
    person_id = data.get("person_id")
    if not isinstance(person_id, str) or not person_id:
        return
    changed_at = datetime.fromisoformat(envelope["occurred_at"])
    structures = data.get("structures")
    email = data.get("email") if isinstance(data.get("email"), str) else None
    values = {
        "display_name": data.get("display_name") if isinstance(data.get("display_name"), str) else None,
        "structures": [str(s) for s in structures] if isinstance(structures, list) else [],
        "profession": data.get("profession") if isinstance(data.get("profession"), str) else None,
        "email": email.lower() if email else None,
    }
    person = uow.session.get(Person, person_id)
    if person is None:
        uow.session.add(Person(person_id=person_id, updated_at=changed_at, **values))
    elif person.updated_at <= changed_at:
        for key, value in values.items():
            setattr(person, key, value)
        person.updated_at = changed_at
    uow.session.flush()
    _accept_invitations(uow, person_id, email)


def _date_or_none(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else None


def record_delegation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """ID-6: the delegate may act for the grantor; a revocation seen first keeps it closed."""
    data = envelope["data"]
    delegation_id = str(data["delegation_id"])
    granted_at = datetime.fromisoformat(envelope["occurred_at"])
    row = uow.session.get(Delegation, delegation_id)
    if row is None:
        uow.session.add(
            Delegation(
                delegation_id=delegation_id,
                grantor_id=str(data["grantor_id"]),
                delegate_id=str(data["delegate_id"]),
                scopes=[str(s) for s in data.get("scopes") or []],
                ends_on=_date_or_none(data.get("ends_on")),
                granted_at=granted_at,
            )
        )
    elif row.revoked_at is None and (row.granted_at is None or row.granted_at <= granted_at):
        row.scopes = [str(s) for s in data.get("scopes") or []]
        row.ends_on = _date_or_none(data.get("ends_on"))
        row.granted_at = granted_at


def record_delegation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    """ID-6: the delegation ends for good (revoked or expired), even if its grant arrives later."""
    data = envelope["data"]
    delegation_id = str(data["delegation_id"])
    revoked_at = datetime.fromisoformat(envelope["occurred_at"])
    row = uow.session.get(Delegation, delegation_id)
    if row is None:
        uow.session.add(
            Delegation(
                delegation_id=delegation_id,
                grantor_id=str(data["grantor_id"]),
                delegate_id=str(data["delegate_id"]),
                scopes=[],
                revoked_at=revoked_at,
                revoke_cause=str(data.get("cause") or "revoked"),
            )
        )
    elif row.revoked_at is None:
        row.revoked_at = revoked_at
        row.revoke_cause = str(data.get("cause") or "revoked")
