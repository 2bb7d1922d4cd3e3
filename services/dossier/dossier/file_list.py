"""The file list (SEA-1..SEA-5): its denormalised table, the page query, saved searches, export.

`file_list_rows` holds one row per (holder, visible patient). It is kept here, in the
same transaction as what changes it:
- a creation lists its file for its creator (`list_created_file`), and a habilitation
  whose state changed (cercle's events) grants or revokes a row (`follow_habilitation`):
  both are written as plain statements, which the use case calls itself;
- a Patient changed through the ORM refreshes its rows through a flush hook, so every code
  path that edits an identity keeps the list right without knowing about it;
- the panels (status, death, memos...) and consumed events touch `last_update`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from chassis.auth import Actor
from chassis.db import Database, new_id, utcnow
from chassis.problems import Problem, conflict, invalid, not_found
from dossier import domain_file
from dossier.models import Habilitation, Patient
from dossier.models_file import (
    AppointmentView,
    CircleMember,
    Death,
    Delegation,
    Favourite,
    FileListRow,
    FileProfile,
    FileStatus,
    Hospitalisation,
    SavedSearch,
    TaskView,
    ZoneCommune,
)

ROWS = FileListRow.__table__
PATIENTS = Patient.__table__

# -- keeping the denormalised rows ---------------------------------------------------------


def _closed(conn: Connection | Session, patient_id: str) -> bool:
    return domain_file.file_closed(current_statuses(conn, patient_id).values())


def current_statuses(conn: Connection | Session, patient_id: str) -> dict[str, str]:
    """structure_id -> its latest status (PAT-9): the history is short, read it whole."""
    rows = conn.execute(
        select(FileStatus.structure_id, FileStatus.status)
        .where(FileStatus.patient_id == patient_id)
        .order_by(FileStatus.recorded_at, FileStatus.id)
    )
    return {structure: status for structure, status in rows}


def _patient_values(conn: Connection | Session, patient_id: str) -> dict[str, Any] | None:
    patient = conn.execute(select(PATIENTS).where(PATIENTS.c.id == patient_id)).mappings().first()
    if patient is None:
        return None
    deceased = (
        conn.execute(select(Death.patient_id).where(Death.patient_id == patient_id)).first() is not None
    )
    return {
        "name_key": domain_file.name_key(patient["birth_name"]),
        "used_key": domain_file.name_key(patient.get("used_name")) or None,
        "first_key": domain_file.name_key(patient["first_name"]),
        "sex": patient["sex"],
        "birth_date": patient["birth_date"],
        "closed": _closed(conn, patient_id),
        "deceased": deceased,
    }


def _last_update(conn: Connection | Session, patient_id: str) -> datetime:
    known = conn.execute(select(func.max(ROWS.c.last_update)).where(ROWS.c.patient_id == patient_id)).scalar()
    updated = conn.execute(select(PATIENTS.c.updated_at).where(PATIENTS.c.id == patient_id)).scalar()
    values = [v for v in (known, updated) if v is not None]
    return max(values) if values else utcnow()


def grant(conn: Connection | Session, patient_id: str, holder: str, created: Patient | None = None) -> None:
    """List the file for `holder`. `created`: the patient, created in this very transaction
    with nothing else yet on its file, so its row comes from the object itself (a creation
    then costs one statement here instead of seven: measured in tests/bench/README.md)."""
    if created is not None:
        values = _new_patient_values(created)
        last = created.updated_at or utcnow()
    else:
        found = _patient_values(conn, patient_id)
        if found is None:
            return  # not a file of this service (yet): nothing to list
        values, last = found, _last_update(conn, patient_id)
        conn.execute(delete(ROWS).where(ROWS.c.holder == holder, ROWS.c.patient_id == patient_id))
    conn.execute(_INSERT_ROW, {"holder": holder, "patient_id": patient_id, "last_update": last, **values})


def _new_patient_values(patient: Patient) -> dict[str, Any]:
    return {
        "name_key": domain_file.name_key(patient.birth_name),
        "used_key": domain_file.name_key(patient.used_name) or None,
        "first_key": domain_file.name_key(patient.first_name),
        "sex": patient.sex,
        "birth_date": patient.birth_date,
        "closed": False,  # no status recorded yet
        "deceased": False,  # no death recorded yet
    }


def revoke(conn: Connection | Session, patient_id: str, holder: str) -> None:
    conn.execute(delete(ROWS).where(ROWS.c.holder == holder, ROWS.c.patient_id == patient_id))


def refresh(conn: Connection | Session, patient_id: str, when: datetime | None = None) -> None:
    """The patient changed (identity, status, death...): every holder's row follows."""
    values = _patient_values(conn, patient_id)
    if values is None:
        return
    values["last_update"] = when or utcnow()
    conn.execute(update(ROWS).where(ROWS.c.patient_id == patient_id).values(**values))


def touch(conn: Connection | Session, patient_id: str, when: datetime | None = None) -> None:
    """Something happened on the file: it moves up the "last update" order."""
    conn.execute(_TOUCH, {"touched": patient_id, "moment": when or utcnow()})


# Built once: most events on a file touch it.
_TOUCH = (
    update(ROWS)
    .where(ROWS.c.patient_id == bindparam("touched"), ROWS.c.last_update < bindparam("moment"))
    .values(last_update=bindparam("moment"))
)


def rebuild(conn: Connection, batch: int = 5000) -> int:
    """Recompute every row from the habilitation read model and the patients.

    For data written around the use cases (bulk loads such as dossier.demo_patients with a
    holder): keys are computed by the same Python as the hook, in batches.
    """
    hab = Habilitation.__table__
    conn.execute(delete(ROWS))
    dead = {row[0] for row in conn.execute(select(Death.patient_id))}
    statuses: dict[str, dict[str, str]] = {}
    for patient_id, structure, status in conn.execute(
        select(FileStatus.patient_id, FileStatus.structure_id, FileStatus.status).order_by(
            FileStatus.recorded_at, FileStatus.id
        )
    ):
        statuses.setdefault(patient_id, {})[structure] = status
    source = conn.execute(
        select(
            hab.c.holder_kind,
            hab.c.holder_id,
            PATIENTS.c.id,
            PATIENTS.c.birth_name,
            PATIENTS.c.used_name,
            PATIENTS.c.first_name,
            PATIENTS.c.sex,
            PATIENTS.c.birth_date,
            PATIENTS.c.updated_at,
        )
        .select_from(hab.join(PATIENTS, PATIENTS.c.id == hab.c.patient_id))
        .where(hab.c.active.is_(True))
    ).all()
    rows = [
        {
            "holder": domain_file.holder_key(kind, holder_id),
            "patient_id": pid,
            "name_key": domain_file.name_key(birth),
            "used_key": domain_file.name_key(used) or None,
            "first_key": domain_file.name_key(first),
            "sex": sex,
            "birth_date": born,
            "closed": domain_file.file_closed(statuses.get(pid, {}).values()),
            "deceased": pid in dead,
            "last_update": updated,
        }
        for kind, holder_id, pid, birth, used, first, sex, born, updated in source
    ]
    for start in range(0, len(rows), batch):
        conn.execute(insert(ROWS), rows[start : start + batch])
    return len(rows)


# Built once: every creation and every grant runs them.
_INSERT_ROW = insert(ROWS)


def list_created_file(conn: Connection, patient: Patient, holder_kind: str, holder_id: str) -> None:
    """A file created in this transaction (PAT-6): its creator's list row. The creation
    calls this itself: it writes its rows as plain INSERTs, which the flush hook below does
    not see."""
    grant(conn, patient.id, domain_file.holder_key(holder_kind, holder_id), created=patient)


def follow_habilitation(
    conn: Connection | Session, patient_id: str, holder_kind: str, holder_id: str, active: bool
) -> None:
    """A habilitation granted or revoked (cercle's events): the holder's list row follows,
    in the same transaction."""
    holder = domain_file.holder_key(holder_kind, holder_id)
    if active:
        grant(conn, patient_id, holder)
    else:
        revoke(conn, patient_id, holder)


def _after_flush(session: Session, _context: Any) -> None:
    """Patient changes reach the list in the same transaction."""
    changed = {obj.id for obj in session.dirty if isinstance(obj, Patient)}
    if changed:
        conn = session.connection()
        for patient_id in changed:
            refresh(conn, patient_id)


event.listen(Session, "after_flush", _after_flush)


# -- who sees what (SEA-1) ----------------------------------------------------------------------


def visible_holders(session: Session, actor: Actor, today: date) -> list[str]:
    """The actor's own holders plus those of persons who delegated their files to it."""
    holders = list(domain_file.actor_holder_keys(actor.person_id, actor.structure_id))
    for grantor, scopes, ends_on, active in session.execute(
        select(Delegation.grantor_id, Delegation.scopes, Delegation.ends_on, Delegation.active).where(
            Delegation.delegate_id == actor.person_id
        )
    ):
        if domain_file.delegation_in_force(scopes or [], ends_on, active, today):
            holders.append(domain_file.holder_key("person", grantor))
    return list(dict.fromkeys(holders))


def readable_among(session: Session, actor: Actor, patient_ids: Iterable[str], today: date) -> set[str]:
    """Which of these files the actor may read (SEA-1: the same rows as its file list)."""
    wanted = list(patient_ids)
    if not wanted:
        return set()
    holders = visible_holders(session, actor, today)
    return set(
        session.scalars(
            select(ROWS.c.patient_id)
            .where(ROWS.c.holder.in_(holders), ROWS.c.patient_id.in_(wanted))
            .distinct()
        )
    )


def may_read(session: Session, actor: Actor, patient_id: str, today: date) -> bool:
    return patient_id in readable_among(session, actor, [patient_id], today)


# -- filters (SEA-2) -----------------------------------------------------------------------------

_TOGGLES = ("favourites", "deceased", "archived", "open_tasks", "hospitalised")
_LISTS = ("statuses", "communes", "zones", "roles", "structures", "thematics")


@dataclass
class Filters:
    name: str | None = None
    first_name: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    statuses: list[str] = field(default_factory=list)
    communes: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    professional: str | None = None
    roles: list[str] = field(default_factory=list)
    structures: list[str] = field(default_factory=list)
    thematics: list[str] = field(default_factory=list)
    parcours: str | None = None
    favourites: bool | None = None
    deceased: bool | None = None
    archived: bool | None = None
    open_tasks: bool | None = None
    hospitalised: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if value is None or value == []:
                continue
            out[key] = value.isoformat() if isinstance(value, date) else value
        return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    return [str(v) for v in value]


def _as_bool(name: str, value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes", "oui"):
        return True
    if str(value).lower() in ("false", "0", "no", "non"):
        return False
    raise invalid(name, f"{name} must be true or false")


def parse_filters(raw: dict[str, Any]) -> Filters:
    """Filters from query parameters or a saved search; bad ones are refused by name."""
    known = {*Filters.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise invalid(unknown[0], f"unknown filter {unknown[0]}")
    try:
        filters = Filters(
            name=domain_file.name_key(raw.get("name")) or None,
            first_name=domain_file.name_key(raw.get("first_name")) or None,
            sex=domain_file.list_sex(str(raw["sex"])) if raw.get("sex") else None,
            professional=(str(raw["professional"]).strip() or None) if raw.get("professional") else None,
            parcours=(str(raw["parcours"]).strip() or None) if raw.get("parcours") else None,
            **{key: _as_list(raw.get(key)) for key in _LISTS},
            **{key: _as_bool(key, raw.get(key)) for key in _TOGGLES},
        )
        if raw.get("birth_date"):
            value = raw["birth_date"]
            filters.birth_date = value if isinstance(value, date) else date.fromisoformat(str(value))
        for status in filters.statuses:
            if status not in domain_file.FILE_STATUSES:
                raise domain_file.FileRuleError("statuses", f"unknown status {status}")
        filters.communes = [
            c for c in (domain_file.check_commune("communes", c) for c in filters.communes) if c
        ]
    except domain_file.FileRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    except ValueError as exc:
        raise invalid("birth_date", "birth_date must be a date as YYYY-MM-DD") from exc
    return filters


def _like_any(column: Any, codes: Iterable[str]) -> Any:
    return or_(*[column.like(f"%,{code},%") for code in codes])


def _conditions(filters: Filters, actor: Actor, today: date) -> list[Any]:
    r = ROWS.c
    where: list[Any] = []
    if filters.name:
        where.append(or_(r.name_key.like(filters.name + "%"), r.used_key.like(filters.name + "%")))
    if filters.first_name:
        where.append(r.first_key.like(filters.first_name + "%"))
    if filters.birth_date:
        where.append(r.birth_date == filters.birth_date)
    if filters.sex:
        where.append(r.sex == filters.sex)
    if filters.deceased is not None:
        where.append(r.deceased.is_(filters.deceased))
    # PAT-12: closed and archived files leave the default search but stay searchable.
    where.append(r.closed.is_(bool(filters.archived)))
    profile = FileProfile.__table__.c
    if filters.statuses:
        where.append(
            exists().where(profile.patient_id == r.patient_id, _like_any(profile.statuses, filters.statuses))
        )
    if filters.structures:
        where.append(
            exists().where(
                profile.patient_id == r.patient_id, _like_any(profile.structures, filters.structures)
            )
        )
    if filters.thematics:
        where.append(
            exists().where(
                profile.patient_id == r.patient_id, _like_any(profile.thematics, filters.thematics)
            )
        )
    if filters.parcours:
        where.append(exists().where(profile.patient_id == r.patient_id, profile.parcours == filters.parcours))
    if filters.communes:
        where.append(
            exists().where(profile.patient_id == r.patient_id, profile.commune.in_(filters.communes))
        )
    if filters.zones:
        zone_communes = select(ZoneCommune.commune).where(ZoneCommune.zone_id.in_(filters.zones))
        where.append(exists().where(profile.patient_id == r.patient_id, profile.commune.in_(zone_communes)))
    if filters.professional or filters.roles:
        member = CircleMember.__table__.c
        cond = [member.patient_id == r.patient_id, member.removed.is_(False)]
        if filters.professional:
            cond.append(member.holder_id == filters.professional)
        if filters.roles:
            cond.append(_like_any(member.roles, filters.roles))
        where.append(exists().where(*cond))
    if filters.favourites is not None:
        fav = exists().where(Favourite.patient_id == r.patient_id, Favourite.person_id == actor.person_id)
        where.append(fav if filters.favourites else ~fav)
    if filters.open_tasks is not None:
        tasks = exists().where(
            TaskView.patient_id == r.patient_id, TaskView.status.in_(domain_file.OPEN_TASK_STATUSES)
        )
        where.append(tasks if filters.open_tasks else ~tasks)
    if filters.hospitalised is not None:
        stay = exists().where(
            Hospitalisation.patient_id == r.patient_id,
            Hospitalisation.entry_date <= today,
            or_(Hospitalisation.exit_date.is_(None), Hospitalisation.exit_date >= today),
        )
        where.append(stay if filters.hospitalised else ~stay)
    return where


# -- the page (SEA-3) ---------------------------------------------------------------------------


def _tune(session: Session) -> None:
    """Settings this query needs on PostgreSQL, for this transaction only.

    Parallel workers cost more than they save on a 10-row page (measured in
    tests/bench/README.md), and psycopg prepares statements after 5 runs: a generic plan
    would ignore how skewed holders are, so plan each call with its own values. When the
    database or the URL already sets them (deploy: ALTER DATABASE / libpq options), one
    look per pooled connection spares the extra round trip on every page.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    conn = session.connection()
    info = conn.connection.info  # kept with the DBAPI connection across pool checkouts
    if "file_list_tuned" not in info:
        info["file_list_tuned"] = bool(
            conn.exec_driver_sql(
                "SELECT current_setting('max_parallel_workers_per_gather') = '0'"
                " AND current_setting('plan_cache_mode') = 'force_custom_plan'"
            ).scalar()
        )
    if not info["file_list_tuned"]:
        conn.exec_driver_sql(
            "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL plan_cache_mode = force_custom_plan"
        )


def _ordering(sort: str, order: str) -> list[Any]:
    r = ROWS.c
    column = {"last_update": r.last_update, "name": r.name_key, "birth_date": r.birth_date}[sort]
    first = column.desc() if order == "desc" else column.asc()
    tie = r.patient_id.desc() if order == "desc" else r.patient_id.asc()
    if sort == "name":
        return [first, r.first_key.desc() if order == "desc" else r.first_key.asc(), tie]
    return [first, tie]


def search(
    session: Session,
    actor: Actor,
    filters: Filters,
    today: date,
    *,
    sort: str = "last_update",
    order: str = "desc",
    page: int = 1,
    page_size: int = 10,
) -> tuple[list[str], int]:
    """Ids of one page of visible files and the total count."""
    try:
        domain_file.check_page(page, page_size, sort, order)
    except domain_file.FileRuleError as exc:
        raise invalid(exc.field, exc.detail) from exc
    _tune(session)
    holders = visible_holders(session, actor, today)
    r = ROWS.c
    where = [
        r.holder.in_(holders) if len(holders) > 1 else r.holder == holders[0],
        *_conditions(filters, actor, today),
    ]
    query = select(r.patient_id).where(*where).order_by(*_ordering(sort, order))
    offset = (page - 1) * page_size
    if len(holders) == 1:
        # The page and its total in one round trip (measured in tests/bench/file_list.py).
        rows = session.execute(
            query.add_columns(func.count().over().label("total")).limit(page_size).offset(offset)
        ).all()
        ids = [row.patient_id for row in rows]
        if rows:
            total = rows[0].total
        else:  # past the last page: the window saw no row to count
            total = session.execute(select(func.count()).select_from(ROWS).where(*where)).scalar_one()
    else:
        # Several holders may list the same patient, with identical sort keys: its rows come
        # together, so the first (offset + size) x holders rows hold the page once deduplicated
        # (a merge of per-holder index ranges, no DISTINCT over the whole list).
        total = session.execute(select(func.count(func.distinct(r.patient_id))).where(*where)).scalar_one()
        seen = list(dict.fromkeys(session.scalars(query.limit((offset + page_size) * len(holders)))))
        ids = seen[offset : offset + page_size]
    return ids, int(total)


def _split(codes: str | None) -> list[str]:
    return [c for c in (codes or "").split(",") if c]


def _aware(moment: datetime) -> datetime:
    # A correlated max() comes back without the column type's UTC handling on SQLite.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def rows_for(session: Session, actor: Actor, patient_ids: Sequence[str], today: date) -> list[dict[str, Any]]:
    """The SEA-3 columns of the given files, in the given order (a handful of IN queries)."""
    if not patient_ids:
        return []
    ids = list(patient_ids)
    # One query for the per-patient columns (correlated counts on indexed patient_id),
    # then one each for appointments, stays and statuses: 4 round trips for a page.
    last = select(func.max(ROWS.c.last_update)).where(ROWS.c.patient_id == Patient.id).scalar_subquery()
    open_count = (
        select(func.count())
        .where(TaskView.patient_id == Patient.id, TaskView.status.in_(domain_file.OPEN_TASK_STATUSES))
        .scalar_subquery()
    )
    favourite = exists().where(Favourite.patient_id == Patient.id, Favourite.person_id == actor.person_id)
    main = (
        select(
            Patient.id,
            Patient.birth_name,
            Patient.used_name,
            Patient.first_name,
            Patient.sex,
            Patient.birth_date,
            Patient.identity_status,
            Patient.updated_at,
            FileProfile.commune,
            FileProfile.postal_code,
            FileProfile.thematics,
            FileProfile.parcours,
            Death.patient_id.label("dead"),
            Death.death_date,
            last.label("last_update"),
            open_count.label("open_tasks"),
            favourite.label("favourite"),
        )
        .outerjoin(FileProfile, FileProfile.patient_id == Patient.id)
        .outerjoin(Death, Death.patient_id == Patient.id)
        .where(Patient.id.in_(ids))
    )
    patients = {row.id: row for row in session.execute(main)}
    now = utcnow()
    next_appointments: dict[str, AppointmentView] = {}
    for appointment in session.scalars(
        select(AppointmentView)
        .where(
            AppointmentView.patient_id.in_(ids),
            AppointmentView.cancelled.is_(False),
            AppointmentView.start >= now,
        )
        .order_by(AppointmentView.start)
    ):
        next_appointments.setdefault(appointment.patient_id, appointment)
    stays: dict[str, Hospitalisation] = {}
    for stay in session.scalars(
        select(Hospitalisation)
        .where(
            Hospitalisation.patient_id.in_(ids),
            or_(Hospitalisation.exit_date.is_(None), Hospitalisation.exit_date >= today),
        )
        .order_by(Hospitalisation.entry_date)
    ):
        stays.setdefault(stay.patient_id, stay)
    statuses: dict[str, dict[str, str]] = {}
    for structure, patient_id, status in session.execute(
        select(FileStatus.structure_id, FileStatus.patient_id, FileStatus.status)
        .where(FileStatus.patient_id.in_(ids))
        .order_by(FileStatus.recorded_at, FileStatus.id)
    ):
        statuses.setdefault(patient_id, {})[structure] = status
    out = []
    for pid in ids:
        p = patients.get(pid)
        if p is None:
            continue
        appointment = next_appointments.get(pid)
        stay = stays.get(pid)
        out.append(
            {
                "id": pid,
                "birth_name": p.birth_name,
                "used_name": p.used_name,
                "first_name": p.first_name,
                "sex": p.sex,
                "birth_date": p.birth_date.isoformat(),
                "identity_status": p.identity_status,
                "deceased": p.dead is not None,
                "death_date": p.death_date.isoformat() if p.death_date else None,
                "commune": p.commune,
                "postal_code": p.postal_code,
                "statuses": [
                    {"structure_id": k, "status": v} for k, v in sorted(statuses.get(pid, {}).items())
                ],
                "thematics": _split(p.thematics),
                "parcours": p.parcours,
                "hospitalisation": (
                    {
                        "establishment": stay.establishment,
                        "entry_date": stay.entry_date.isoformat(),
                        "exit_date": stay.exit_date.isoformat() if stay.exit_date else None,
                        "current": domain_file.hospitalised_on(stay.entry_date, stay.exit_date, today),
                    }
                    if stay
                    else None
                ),
                "last_update": _aware(p.last_update or p.updated_at).isoformat(),
                "open_tasks": int(p.open_tasks or 0),
                "next_appointment": (
                    {
                        "appointment_id": appointment.appointment_id,
                        "start": appointment.start.isoformat(),
                        "type_code": appointment.type_code,
                    }
                    if appointment
                    else None
                ),
                "favourite": bool(p.favourite),
            }
        )
    return out


def _saved_default(session: Session, actor: Actor) -> SavedSearch | None:
    return session.scalars(
        select(SavedSearch).where(SavedSearch.person_id == actor.person_id, SavedSearch.is_default.is_(True))
    ).first()


def file_list(
    db: Database,
    actor: Actor,
    raw_filters: dict[str, Any],
    today: date,
    *,
    sort: str,
    order: str,
    page: int,
    page_size: int,
    saved_search_id: str | None = None,
) -> dict[str, Any]:
    """SEA-1..SEA-4: a page of visible files; with no filter, the person's default search applies."""
    with db.session_factory() as session:
        applied: SavedSearch | None = None
        if saved_search_id:
            applied = session.get(SavedSearch, saved_search_id)
            if applied is None or applied.person_id != actor.person_id:
                raise not_found("saved search")
        elif not raw_filters:
            applied = _saved_default(session, actor)
        filters = parse_filters({**(applied.filters if applied else {}), **raw_filters})
        ids, total = search(
            session, actor, filters, today, sort=sort, order=order, page=page, page_size=page_size
        )
        items = rows_for(session, actor, ids, today)
        session.commit()
    return {
        "items": items,
        "total": total,
        "page": page,
        "page_size": page_size,
        "sort": sort,
        "order": order,
        "filters": filters.to_dict(),
        "saved_search_id": applied.id if applied else None,
    }


# -- saved searches (SEA-4) -----------------------------------------------------------------------


def saved_search_view(search_row: SavedSearch) -> dict[str, Any]:
    return {
        "id": search_row.id,
        "name": search_row.name,
        "filters": search_row.filters,
        "is_default": search_row.is_default,
        "created_at": search_row.created_at.isoformat(),
    }


def list_saved_searches(db: Database, actor: Actor) -> list[dict[str, Any]]:
    with db.session_factory() as session:
        rows = session.scalars(
            select(SavedSearch).where(SavedSearch.person_id == actor.person_id).order_by(SavedSearch.name)
        )
        return [saved_search_view(r) for r in rows]


def _clear_default(session: Session, person_id: str) -> None:
    session.execute(
        update(SavedSearch)
        .where(SavedSearch.person_id == person_id, SavedSearch.is_default.is_(True))
        .values(is_default=False)
    )


def save_search(db: Database, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    name = (body.get("name") or "").strip()
    if not name:
        raise invalid("name", "name is required")
    filters = parse_filters(body.get("filters") or {}).to_dict()
    with db.unit_of_work(actor.person_id) as uow:
        duplicate = uow.session.scalars(
            select(SavedSearch.id).where(SavedSearch.person_id == actor.person_id, SavedSearch.name == name)
        ).first()
        if duplicate:
            raise conflict(f"a saved search is already named {name}")
        if body.get("is_default"):
            _clear_default(uow.session, actor.person_id)
        row = SavedSearch(
            id=new_id(),
            person_id=actor.person_id,
            name=name,
            filters=filters,
            is_default=bool(body.get("is_default")),
            created_at=utcnow(),
        )
        uow.session.add(row)
        uow.commit()
    return saved_search_view(row)


def update_saved_search(db: Database, actor: Actor, search_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with db.unit_of_work(actor.person_id) as uow:
        row = uow.session.get(SavedSearch, search_id)
        if row is None or row.person_id != actor.person_id:
            raise not_found("saved search")
        if "name" in body:
            name = (body.get("name") or "").strip()
            if not name:
                raise invalid("name", "name is required")
            row.name = name
        if "filters" in body:
            row.filters = parse_filters(body.get("filters") or {}).to_dict()
        if "is_default" in body:
            if body["is_default"]:
                _clear_default(uow.session, actor.person_id)
            row.is_default = bool(body["is_default"])
        uow.commit()
        return saved_search_view(row)


def delete_saved_search(db: Database, actor: Actor, search_id: str) -> None:
    with db.unit_of_work(actor.person_id) as uow:
        row = uow.session.get(SavedSearch, search_id)
        if row is None or row.person_id != actor.person_id:
            raise not_found("saved search")
        uow.session.delete(row)
        uow.commit()


# -- export (SEA-5) --------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    ("birth_name", "Nom de naissance"),
    ("used_name", "Nom utilisé"),
    ("first_name", "Prénom"),
    ("sex", "Sexe"),
    ("birth_date", "Date de naissance"),
    ("death_date", "Date de décès"),
    ("postal_code", "Code postal"),
    ("commune", "Commune"),
    ("statuses", "Statuts"),
    ("thematics", "Thématiques"),
    ("hospitalisation", "Hospitalisation"),
    ("parcours", "Parcours"),
    ("last_update", "Dernière mise à jour"),
    ("open_tasks", "Tâches ouvertes"),
    ("next_appointment", "Prochain rendez-vous"),
)


def _cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if key == "statuses":
        return ", ".join(f"{s['structure_id']}: {s['status']}" for s in value)
    if key == "thematics":
        return ", ".join(value)
    if key == "hospitalisation":
        return f"{value['establishment']} ({value['entry_date']} → {value['exit_date'] or '…'})"
    if key == "next_appointment":
        return value["start"]
    return value


def export_list(
    db: Database, actor: Actor, raw_filters: dict[str, Any], today: date, *, fmt: str, sort: str, order: str
) -> tuple[bytes, str, str]:
    """The whole filtered list as CSV or XLSX, refused beyond 1000 patients (SEA-5)."""
    if fmt not in ("csv", "xlsx"):
        raise invalid("format", "format must be csv or xlsx")
    filters = parse_filters(raw_filters)
    with db.session_factory() as session:
        _, total = search(session, actor, filters, today, sort=sort, order=order, page=1, page_size=10)
        try:
            domain_file.check_export_size(total)
        except domain_file.FileRuleError as exc:
            raise Problem(
                422,
                "Export trop volumineux",
                exc.detail,
                field=exc.field,
                extra={"total": total, "max": 1000},
            ) from exc
        ids: list[str] = []
        page = 1
        while len(ids) < total:
            chunk, _ = search(
                session, actor, filters, today, sort=sort, order=order, page=page, page_size=100
            )
            if not chunk:
                break
            ids.extend(chunk)
            page += 1
        rows = rows_for(session, actor, ids, today)
        session.commit()
    table = [[label for _, label in EXPORT_COLUMNS]] + [
        [_cell(k, row.get(k)) for k, _ in EXPORT_COLUMNS] for row in rows
    ]
    if fmt == "csv":
        out = io.StringIO()
        # Semicolons and a BOM: what a French spreadsheet opens without an import dialog.
        csv.writer(out, delimiter=";").writerows(table)
        return ("\ufeff" + out.getvalue()).encode("utf-8"), "text/csv", "dossiers.csv"
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Dossiers"
    for line in table:
        sheet.append(line)
    buffer = io.BytesIO()
    book.save(buffer)
    return (
        buffer.getvalue(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "dossiers.xlsx",
    )


def main() -> None:
    """`python -m dossier.file_list --database-url URL`: rebuild the list after a bulk load."""
    import argparse

    from sqlalchemy import create_engine

    from chassis.db import normalise_url

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    engine = create_engine(normalise_url(args.database_url))
    with engine.begin() as conn:
        print(f"file list rebuilt: {rebuild(conn):,} rows")
    engine.dispose()


if __name__ == "__main__":
    main()
