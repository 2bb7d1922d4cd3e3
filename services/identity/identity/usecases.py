"""Identity use cases: accounts, structures, directory. Each owns its transaction and events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, intersect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import conflict, invalid, not_found
from identity import domain
from identity.models import DirectoryTerm, Membership, Person, ProfessionRow, Structure

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
        sort_key=domain.sort_key(name),
        created_at=utcnow(),
    )
    with db.unit_of_work(actor_id) as uow:
        uow.session.add(structure)
        uow.session.flush()
        _index(
            uow.session,
            directory_term_rows(
                "s",
                structure.id,
                structure.sort_key,
                [name],
                [(structure.city, structure.postal_code)],
                [("kind", kind)],
            ),
        )
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
        sort_key=domain.sort_key(last_name, first_name),
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
        places = [(person.city, person.postal_code)] + [
            (city, postal)
            for city, postal in s.execute(
                select(Structure.city, Structure.postal_code).where(Structure.id.in_(structure_ids))
            ).tuples()
        ]
        # "account": the person can log in (may be asked for a delegation, ID-6).
        codes = [("prof", profession), ("account", "yes")] + [("member", sid) for sid in structure_ids]
        _index(
            s, directory_term_rows("p", person.id, person.sort_key, [first_name, last_name], places, codes)
        )
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


def _index(s: Session, rows: list[dict[str, str]]) -> None:
    """Write the directory search keys of one new entry."""
    if rows:
        s.execute(DirectoryTerm.__table__.insert(), rows)


def directory_term_rows(
    entry_type: str,
    entry_id: str,
    sort_key: str,
    names: list[str | None],
    places: list[tuple[str | None, str | None]],
    codes: list[tuple[str, str | None]],
) -> list[dict[str, str]]:
    return [
        {"entry_type": entry_type, "entry_id": entry_id, "field": field, "term": term, "sort_key": sort_key}
        for field, term in domain.directory_terms(names, places, codes)
    ]


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
    if password_hash is None:  # a directory-only entry has no login (never reached: no username)
        check_password_hash(_DUMMY_HASH, password or "")
        return None
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
        username=person.username or "",
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
    """ID-3: the profile page; ID-2: whether the terms in force are accepted."""
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
            "terms_version": domain.TERMS_VERSION,
            "terms_accepted": person.terms_version == domain.TERMS_VERSION,
            "terms_accepted_version": person.terms_version,
            "terms_accepted_at": _iso(person.terms_accepted_at),
        }


def accept_terms(
    db: Database, person_id: str, version: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """ID-2: record that the person accepted this version of the terms, and when.
    Accepting the same version again keeps the first date."""
    try:
        domain.check_terms_version(version)
    except domain.AccountRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    with db.unit_of_work(person_id) as uow:
        person = uow.session.get(Person, person_id)
        if person is None:
            raise not_found("person")
        if person.terms_version != version:
            person.terms_version = version
            person.terms_accepted_at = now or utcnow()
        uow.commit()
    return me(db, person_id)


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

# At most this many words of `q` are used (each is one more index lookup).
MAX_QUERY_WORDS = 5


@dataclass(frozen=True)
class _Filter:
    field: str
    value: str
    prefix: bool


# Above every character a folded term holds (a-z, 0-9, space, "@", "."), in byte order.
_AFTER_ANY = "~"


def _matches(table: Any, entry_type: str, f: _Filter) -> list[Any]:
    if f.prefix:
        term = [table.term >= f.value, table.term < f.value + _AFTER_ANY]
    else:
        term = [table.term == f.value]
    return [table.entry_type == entry_type, table.field == f.field, *term]


def _filters(
    q: str | None, city: str | None, postal_code: str | None, codes: list[tuple[str, str | None]]
) -> list[_Filter]:
    """Every word of `q` starts a name word; `city` starts the folded commune; `postal_code`
    starts a postal code; codes (profession, structure, kind) match exactly."""
    wanted = dict(codes)
    profession = wanted.get("prof")
    folded_city = domain.fold(city)
    if profession and (folded_city or postal_code):
        # One key holds profession and place together (see DirectoryTerm).
        del wanted["prof"]
        if folded_city:
            codes_and_place = _Filter("pcity", f"{profession} {folded_city}", True)
            folded_city = ""
        else:
            codes_and_place = _Filter("ppostal", f"{profession} {postal_code}", True)
            postal_code = None
        found = [codes_and_place]
    else:
        found = []
    found += [_Filter(field, value, False) for field, value in wanted.items() if value]
    found += [_Filter("name", w, True) for w in domain.words(q)[:MAX_QUERY_WORDS]]
    if postal_code:
        found.append(_Filter("postal", postal_code, True))
    if folded_city:
        found.append(_Filter("city", folded_city, True))
    return found


def _search(
    s: Session, entry_type: str, filters: list[_Filter], limit: int, offset: int
) -> tuple[list[str], int]:
    """The ids of one page in directory order, and the total, from the terms' indexes only."""

    def matching(f: _Filter) -> Any:
        return select(DirectoryTerm.sort_key, DirectoryTerm.entry_id).where(
            *_matches(DirectoryTerm, entry_type, f)
        )

    if len(filters) == 1:
        (only,) = filters
        # Several terms of one entry may share a prefix ("mar": Marie Martin); an exact
        # term is one row per entry.
        found = (matching(only).distinct() if only.prefix else matching(only)).subquery()
    else:
        # A set intersection (hash of each side's index-only range scan) whatever the
        # planner's row estimates, which are poor for (entry_type, field, term) combined:
        # a semi-join could turn into a nested loop over thousands of rows.
        found = intersect(*(matching(f) for f in filters)).subquery()
    rows = s.execute(
        select(found.c.entry_id, func.count().over())
        .order_by(found.c.sort_key, found.c.entry_id)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [r[0] for r in rows], int(rows[0][1])
    total = 0 if offset == 0 else s.scalar(select(func.count()).select_from(found)) or 0
    return [], total


def search_persons(
    db: Database,
    *,
    q: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    profession: str | None = None,
    structure_id: str | None = None,
    has_account: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    codes = [("member", structure_id), ("prof", profession), ("account", "yes" if has_account else None)]
    filters = _filters(q, city, postal_code, codes)
    with db.session_factory() as s:
        if filters:
            ids, total = _search(s, "p", filters, limit, offset)
            by_id = {p.id: p for p in s.scalars(select(Person).where(Person.id.in_(ids)))}
            people = [by_id[i] for i in ids]
        else:
            active = Person.active.is_(True)
            total = s.scalar(select(func.count()).select_from(Person).where(active)) or 0
            people = list(
                s.scalars(
                    select(Person)
                    .where(active)
                    .order_by(Person.sort_key, Person.id)
                    .limit(limit)
                    .offset(offset)
                )
            )
        structures = _structures_of(s, [p.id for p in people])
        professions = _professions(s)
        items = [_person_entry(p, structures[p.id], professions) for p in people]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _professions(s: Session) -> dict[str, dict[str, Any]]:
    return {
        r.code: {"code": r.code, "label": r.label, "medical": r.medical}
        for r in s.scalars(select(ProfessionRow))
    }


def _person_entry(
    person: Person, structures: list[dict[str, Any]], professions: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    code = person.profession_code
    return {
        "id": person.id,
        "display_name": person.display_name,
        "title": person.title,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "profession": None
        if code is None
        else professions.get(code, {"code": code, "label": code, "medical": False}),
        "specialty": person.specialty,
        "rpps": person.rpps,
        "email": person.email,
        "phone": person.phone,
        "address": person.address,
        "city": person.city,
        "postal_code": person.postal_code,
        "description": person.description,
        "structures": structures,
        "has_account": person.username is not None,
    }


def person_entry(db: Database, person_id: str) -> dict[str, Any]:
    with db.session_factory() as s:
        person = s.get(Person, person_id)
        if person is None or not person.active:
            raise not_found("person")
        return _person_entry(person, _structures_of(s, [person.id])[person.id], _professions(s))


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
    filters = _filters(q, city, postal_code, [("kind", kind)])
    with db.session_factory() as s:
        if filters:
            ids, total = _search(s, "s", filters, limit, offset)
            by_id = {r.id: r for r in s.scalars(select(Structure).where(Structure.id.in_(ids)))}
            rows = [by_id[i] for i in ids]
        else:
            total = s.scalar(select(func.count()).select_from(Structure)) or 0
            rows = list(
                s.scalars(
                    select(Structure).order_by(Structure.sort_key, Structure.id).limit(limit).offset(offset)
                )
            )
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
