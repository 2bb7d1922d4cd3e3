"""Identity use cases: accounts, structures, directory. Each owns its transaction and events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import conflict, invalid, not_found
from identity import domain
from identity.models import Membership, Person, ProfessionRow, Structure

# Checked against when the username is unknown, so a wrong username costs the
# same time as a wrong password (no account enumeration by timing).
_DUMMY_HASH = generate_password_hash("coordo-no-such-account")


def hash_password(password: str) -> str:
    return generate_password_hash(password)  # werkzeug's default: salted scrypt


# -- accounts -----------------------------------------------------------------


def create_structure(
    db: Database, actor_id: str | None, body: dict[str, Any], *, structure_id: str | None = None
) -> dict[str, Any]:
    try:
        name = (body.get("name") or "").strip()
        if not name:
            raise domain.AccountRuleError("name", "a structure needs a name")
        kind = domain.check_structure_kind(body.get("kind", ""))
        finess = domain.check_finess(body.get("finess"))
        postal_code = domain.check_postal_code(body.get("postal_code"))
    except domain.AccountRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    structure = Structure(
        id=structure_id or new_id(),
        name=name,
        kind=kind,
        finess=finess,
        address=body.get("address"),
        city=body.get("city"),
        postal_code=postal_code,
        phone=body.get("phone"),
        description=body.get("description"),
        name_search=domain.fold(name),
        city_search=domain.fold(body.get("city")) or None,
        created_at=utcnow(),
    )
    with db.unit_of_work(actor_id) as uow:
        uow.session.add(structure)
        uow.session.flush()
        uow.emit(
            "StructureRegistered",
            subject=structure.id,
            data={"structure_id": structure.id, "name": structure.name, "kind": structure.kind},
        )
        _commit_or_conflict(uow, "a structure with this id already exists")
    return structure_view(structure)


def create_person(
    db: Database, actor_id: str | None, body: dict[str, Any], *, person_id: str | None = None
) -> dict[str, Any]:
    try:
        username = domain.normalise_username(body.get("username", ""))
        domain.check_password_strength(body.get("password", ""))
        first_name = (body.get("first_name") or "").strip()
        last_name = (body.get("last_name") or "").strip()
        if not last_name:
            raise domain.AccountRuleError("last_name", "last_name is required")
        title = (body.get("title") or "").strip() or None
        shown = domain.display_name(first_name, last_name, title)
        profession = domain.check_profession(body.get("profession"))
        roles = domain.normalise_roles(body.get("roles"))
        rpps = domain.check_rpps(body.get("rpps"))
        postal_code = domain.check_postal_code(body.get("postal_code"))
    except domain.AccountRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    structure_ids = list(dict.fromkeys(body.get("structures") or []))
    now = utcnow()
    person = Person(
        id=person_id or new_id(),
        username=username,
        password_hash=hash_password(body["password"]),
        title=title,
        first_name=first_name,
        last_name=last_name,
        display_name=shown,
        email=body.get("email"),
        phone=body.get("phone"),
        profession_code=profession,
        specialty=body.get("specialty"),
        rpps=rpps,
        roles=roles,
        address=body.get("address"),
        city=body.get("city"),
        postal_code=postal_code,
        description=body.get("description"),
        name_search=domain.fold(f"{first_name} {last_name} {username}"),
        city_search=domain.fold(body.get("city")) or None,
        active=True,
        created_at=now,
    )
    with db.unit_of_work(actor_id) as uow:
        s = uow.session
        if s.scalar(select(Person.id).where(Person.username == username)) is not None:
            raise conflict(f"username {username!r} is already taken")
        known = set(s.scalars(select(Structure.id).where(Structure.id.in_(structure_ids))))
        missing = [sid for sid in structure_ids if sid not in known]
        if missing:
            raise invalid("structures", f"unknown structure(s): {', '.join(missing)}")
        s.add(person)
        s.flush()
        for sid in structure_ids:
            s.add(Membership(person_id=person.id, structure_id=sid, created_at=now))
        # Notify needs the e-mail to reach the person; a professional's directory
        # entry, never a patient's identity.
        uow.emit(
            "UserRegistered",
            subject=person.id,
            data={
                "person_id": person.id,
                "display_name": person.display_name,
                "email": person.email,
                "structures": structure_ids,
                "profession": person.profession_code,
                "medical": domain.is_medical(person.profession_code),
                "roles": list(person.roles),
            },
        )
        _commit_or_conflict(uow, f"username {username!r} is already taken")
    return person_entry(db, person.id)


def _commit_or_conflict(uow: UnitOfWork, detail: str) -> None:
    try:
        uow.commit()
    except IntegrityError as exc:
        # A concurrent creation won the unique constraint.
        uow.rollback()
        raise conflict(detail) from exc


def authenticate(db: Database, username: str, password: str) -> str | None:
    """The person id when the password matches an active account, else None."""
    try:
        name = domain.normalise_username(username)
    except domain.AccountRuleError:
        name = None
    with db.session_factory() as s:
        row = (
            s.execute(select(Person.id, Person.password_hash, Person.active).where(Person.username == name))
            .tuples()
            .first()
            if name
            else None
        )
    if row is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    person_id, password_hash, active = row
    if not check_password_hash(password_hash, password or "") or not active:
        return None
    return person_id


# -- what tokens and profiles say about a person -------------------------------


@dataclass(frozen=True)
class Principal:
    """A person as the tokens describe it (claims are read fresh at each issue)."""

    person_id: str
    username: str
    name: str
    email: str | None
    profession: str | None
    medical: bool
    roles: tuple[str, ...]
    structures: tuple[str, ...]

    def get_user_id(self) -> str:  # Authlib's user protocol
        return self.person_id


def principal(s: Session, person_id: str) -> Principal | None:
    person = s.get(Person, person_id)
    if person is None or not person.active:
        return None
    structures = tuple(
        s.scalars(
            select(Membership.structure_id)
            .where(Membership.person_id == person_id)
            .order_by(Membership.structure_id)
        )
    )
    return Principal(
        person_id=person.id,
        username=person.username,
        name=person.display_name,
        email=person.email,
        profession=person.profession_code,
        medical=domain.is_medical(person.profession_code),
        roles=tuple(person.roles),
        structures=structures,
    )


def _profession_view(s: Session, code: str | None) -> dict[str, Any] | None:
    if code is None:
        return None
    row = s.get(ProfessionRow, code)
    if row is None:
        return {"code": code, "label": code, "medical": False}
    return {"code": row.code, "label": row.label, "medical": row.medical}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def me(db: Database, person_id: str) -> dict[str, Any]:
    """ID-3: the profile page."""
    with db.session_factory() as s:
        person = s.get(Person, person_id)
        if person is None:
            raise not_found("person")
        structures = _structures_of(s, [person.id])[person.id]
        return {
            "id": person.id,
            "username": person.username,
            "title": person.title,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "display_name": person.display_name,
            "email": person.email,
            "phone": person.phone,
            "rpps": person.rpps,
            "specialty": person.specialty,
            "profession": _profession_view(s, person.profession_code),
            "medical": domain.is_medical(person.profession_code),
            "roles": list(person.roles),
            "structures": structures,
            "last_login_at": _iso(person.last_login_at),
            "terms_version": person.terms_version,
            "terms_accepted_at": _iso(person.terms_accepted_at),
        }


def _structures_of(s: Session, person_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {pid: [] for pid in person_ids}
    if not person_ids:
        return result
    rows = s.execute(
        select(Membership.person_id, Structure.id, Structure.name, Structure.kind)
        .join(Structure, Structure.id == Membership.structure_id)
        .where(Membership.person_id.in_(person_ids))
        .order_by(Structure.name)
    ).tuples()
    for person_id, sid, name, kind in rows:
        result[person_id].append({"id": sid, "name": name, "kind": kind})
    return result


# -- directory (ID-5) -----------------------------------------------------------


def _like(folded: str) -> str:
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _member_of_structure(condition: Any) -> Any:
    """EXISTS a membership of the (outer) person in a structure matching `condition`."""
    return exists(
        select(Membership.person_id)
        .join(Structure, Structure.id == Membership.structure_id)
        .where(Membership.person_id == Person.id, condition)
    )


def search_persons(
    db: Database,
    *,
    q: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    profession: str | None = None,
    structure_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    query = select(Person).where(Person.active.is_(True))
    if q and domain.fold(q):
        query = query.where(Person.name_search.like(_like(domain.fold(q)), escape="\\"))
    if city and domain.fold(city):
        # A hospital nurse has no address of her own: her structures' city counts too.
        folded = domain.fold(city)
        query = query.where(
            or_(Person.city_search == folded, _member_of_structure(Structure.city_search == folded))
        )
    if postal_code:
        query = query.where(
            or_(
                Person.postal_code.startswith(postal_code),
                _member_of_structure(Structure.postal_code.startswith(postal_code)),
            )
        )
    if profession:
        query = query.where(Person.profession_code == profession)
    if structure_id:
        query = query.where(_member_of_structure(Structure.id == structure_id))
    with db.session_factory() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        people = list(
            s.scalars(
                query.order_by(Person.last_name, Person.first_name, Person.id).limit(limit).offset(offset)
            )
        )
        structures = _structures_of(s, [p.id for p in people])
        items = [_person_entry(s, p, structures[p.id]) for p in people]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _person_entry(s: Session, person: Person, structures: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": person.id,
        "display_name": person.display_name,
        "title": person.title,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "profession": _profession_view(s, person.profession_code),
        "specialty": person.specialty,
        "rpps": person.rpps,
        "email": person.email,
        "phone": person.phone,
        "address": person.address,
        "city": person.city,
        "postal_code": person.postal_code,
        "description": person.description,
        "structures": structures,
    }


def person_entry(db: Database, person_id: str) -> dict[str, Any]:
    with db.session_factory() as s:
        person = s.get(Person, person_id)
        if person is None or not person.active:
            raise not_found("person")
        return _person_entry(s, person, _structures_of(s, [person.id])[person.id])


def search_structures(
    db: Database,
    *,
    q: str | None = None,
    kind: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    query = select(Structure)
    if q and domain.fold(q):
        query = query.where(Structure.name_search.like(_like(domain.fold(q)), escape="\\"))
    if kind:
        query = query.where(Structure.kind == kind)
    if city and domain.fold(city):
        query = query.where(Structure.city_search == domain.fold(city))
    if postal_code:
        query = query.where(Structure.postal_code.startswith(postal_code))
    with db.session_factory() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = s.scalars(query.order_by(Structure.name, Structure.id).limit(limit).offset(offset))
        items = [structure_view(r) for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def structure_view(structure: Structure) -> dict[str, Any]:
    return {
        "id": structure.id,
        "name": structure.name,
        "kind": structure.kind,
        "finess": structure.finess,
        "address": structure.address,
        "city": structure.city,
        "postal_code": structure.postal_code,
        "phone": structure.phone,
        "description": structure.description,
    }


def structure_entry(db: Database, structure_id: str) -> dict[str, Any]:
    with db.session_factory() as s:
        structure = s.get(Structure, structure_id)
        if structure is None:
            raise not_found("structure")
        return structure_view(structure)


def list_professions(db: Database) -> dict[str, Any]:
    with db.session_factory() as s:
        rows = s.scalars(select(ProfessionRow).order_by(ProfessionRow.label))
        return {"items": [{"code": r.code, "label": r.label, "medical": r.medical} for r in rows]}
