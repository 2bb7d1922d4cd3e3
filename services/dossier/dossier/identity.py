"""Identity use cases (PAT-1..PAT-6): search, create with vigilance, edit, document check, INSi, consent.

Each use case owns its transaction and writes its events to the outbox. Events
carry ids and codes only: never a name, birth date or NIR.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from sqlalchemy import ARRAY, Date, Select, String, and_, any_, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from chassis.auth import Actor
from chassis.db import Database, UnitOfWork, insert_new, new_id, utcnow
from chassis.problems import Problem, conflict, date_field, invalid, not_found
from dossier import domain, domain_identity, domain_matching, file, file_list
from dossier.domain import PLACEHOLDER_BIRTH_DATE, IdentityRuleError
from dossier.domain_matching import Identity, Match
from dossier.domain_nir import check_nir_matches_traits
from dossier.insi import FOUND, InsiAdapter, InsiQuery, default_adapter
from dossier.models import Consent, Habilitation, IdentityHistory, Patient

SEARCH_ROW_LIMIT = 400  # rows scored per search at most (a placeholder date searches names only)


def _required_date(field: str, value: Any) -> date:
    parsed = date_field(field, value, required=True)
    assert parsed is not None
    return parsed


def _rule(exc: IdentityRuleError) -> Problem:
    return invalid(exc.field, exc.detail)


# -- views ----------------------------------------------------------------------------


def attributes_of(patient: Any) -> list[str]:
    flags = {"HOMA": patient.homonym, "DOUT": patient.doubtful, "FICT": patient.fictitious}
    return [code for code in domain_identity.ATTRIBUTES if flags[code]]


def identity_fields(patient: Patient) -> dict[str, Any]:
    """The RNIV identity block added to the patient view."""
    return {
        "used_name": patient.used_name,
        "first_names": patient.first_names,
        "used_first_name": patient.used_first_name,
        "birth_country": patient.birth_country,
        "twin_rank": patient.twin_rank,
        "entitled_nir": patient.entitled_nir,
        "ins": patient.ins_nir if patient.identity_status == domain_identity.QUAL else None,
        "email": patient.email,
        "mobile": patient.mobile,
        "phone": patient.phone,
        "address": patient.address,
        "attributes": attributes_of(patient),
        "identity_status_label": domain_identity.STATUS_LABELS[patient.identity_status],
        "identity_document": patient.identity_document,
        "identity_document_checked_at": (
            patient.identity_document_checked_at.isoformat() if patient.identity_document_checked_at else None
        ),
        "collection_channel": patient.collection_channel,
        "confirmed_despite_candidates": patient.confirmed_despite_candidates,
    }


def identity_view(patient: Patient, today: date) -> dict[str, Any]:
    return {**core_view(patient, today), **identity_fields(patient)}


def core_view(patient: Patient, today: date) -> dict[str, Any]:
    """The strict traits, status and age: what a list of patients shows."""
    years, months, days = domain.age(patient.birth_date, today)
    return {
        "id": patient.id,
        "birth_name": patient.birth_name,
        "first_name": patient.first_name,
        "birth_date": patient.birth_date.isoformat(),
        "sex": patient.sex,
        "birth_place": patient.birth_place,
        "identity_status": patient.identity_status,
        "incomplete": patient.incomplete,
        "age": {"years": years, "months": months, "days": days},
        "created_at": patient.created_at.isoformat(),
        "version": patient.version,
    }


def candidate_view(patient: Any, match: Match, habilitated: bool) -> dict[str, Any]:
    """Booklet Fiche 15: enough to recognise the person and choose between opening the file
    and break-the-glass. A caller not habilitated sees the strict traits, used names and the
    identity status only: no contact details, no NIR, nothing of the file."""
    view: dict[str, Any] = {
        "patient_id": patient.id,
        "score": match.score,
        "strong": match.strong,
        "reasons": match.reasons,
        "habilitated": habilitated,
        "action": "open" if habilitated else "break_the_glass",
        "birth_name": patient.birth_name,
        "first_name": patient.first_name,
        "used_name": patient.used_name,
        "used_first_name": patient.used_first_name,
        "birth_date": patient.birth_date.isoformat(),
        "sex": patient.sex,
        "birth_place": patient.birth_place,
        "identity_status": patient.identity_status,
        "attributes": attributes_of(patient),
    }
    if habilitated:
        view["mobile"] = patient.mobile
        view["email"] = patient.email
    return view


# -- search -----------------------------------------------------------------------------


def _as_identity(patient: Any) -> Identity:
    return Identity(
        birth_name=patient.birth_name,
        first_name=patient.first_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        birth_place=patient.birth_place,
        used_name=patient.used_name,
        used_first_name=patient.used_first_name,
        first_names=patient.first_names,
    )


_CANDIDATE_COLUMNS = (
    Patient.id,
    Patient.birth_name,
    Patient.first_name,
    Patient.birth_date,
    Patient.sex,
    Patient.birth_place,
    Patient.used_name,
    Patient.used_first_name,
    Patient.first_names,
    Patient.identity_status,
    Patient.homonym,
    Patient.doubtful,
    Patient.fictitious,
    Patient.mobile,
    Patient.email,
)


def _within(dialect: str, column: Any, name: str, item_type: Any) -> Any:
    """`column = ANY(:array)` on PostgreSQL: one bound parameter, so the statement text is the
    same for every search (prepared by psycopg); an expanding IN (...) elsewhere."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(item_type)))
    return column.in_(bindparam(name, expanding=True))


@functools.cache
def _candidate_select(dialect: str, by_date: bool, by_name: bool, near: bool) -> Select[Any]:
    """One statement per shape, built once: a search only binds its dates and keys (building
    and hashing the statement again cost more than PostgreSQL's part of the search)."""
    conditions = []
    if by_date:
        conditions.append(_within(dialect, Patient.birth_date, "exact_dates", Date()))
    if by_name:
        for column in (Patient.name_key_birth, Patient.name_key_used, Patient.name_key_first):
            keys = _within(dialect, column, "name_keys", String())
            conditions.append(
                and_(keys, _within(dialect, Patient.birth_date, "near_dates", Date())) if near else keys
            )
    return select(*_CANDIDATE_COLUMNS).where(or_(*conditions)).limit(SEARCH_ROW_LIMIT)


def candidate_statement(dialect: str, typed: Identity, today: date) -> tuple[Any, dict[str, Any]] | None:
    """Index lookups only: same (or day/month-swapped) birth date, or a Phonex name key with a
    near birth date (BitmapOr of four index scans on PostgreSQL). The statement and its
    parameters; None when nothing to look up."""
    keys = sorted(domain_matching.query_keys(typed))
    exact = sorted(domain_matching.exact_dates(typed))
    near: list[date] = []  # unknown date: the names alone decide
    if keys and typed.birth_date != PLACEHOLDER_BIRTH_DATE:
        near = sorted(domain_matching.near_dates(typed.birth_date, today))
    if not exact and not keys:
        return None
    statement = _candidate_select(dialect, bool(exact), bool(keys), bool(near))
    return statement, {"exact_dates": exact, "name_keys": keys, "near_dates": near}


def find_candidates(session: Session, typed: Identity, today: date) -> list[tuple[Any, Match]]:
    """Candidates scored in Python, best first, as light rows (the columns a candidate shows)."""
    found = candidate_statement(session.get_bind().dialect.name, typed, today)
    if found is None:
        return []
    statement, parameters = found
    # On the Core connection: plain rows, without the ORM's result set-up (a third of the
    # lookup's CPU, for columns that are not entities anyway).
    rows = session.connection().execute(statement, parameters).all()
    return domain_matching.rank(typed, [(row, _as_identity(row)) for row in rows])


def _habilitated_ids(session: Session, actor: Actor, patient_ids: list[str]) -> set[str]:
    if not patient_ids:
        return set()
    holders = [and_(Habilitation.holder_kind == "person", Habilitation.holder_id == actor.person_id)]
    if actor.structure_id:
        holders.append(
            and_(Habilitation.holder_kind == "structure", Habilitation.holder_id == actor.structure_id)
        )
    query = select(Habilitation.patient_id).where(
        Habilitation.patient_id.in_(patient_ids), Habilitation.active.is_(True), or_(*holders)
    )
    return set(session.scalars(query))


def _search_traits(body: dict[str, Any], today: date, *, search: bool) -> Identity:
    try:
        sex = body.get("sex", "")
        if not (search and sex == "O"):  # O (other/unknown) is a search filter, not an identity value
            domain.check_sex(sex)
        used = body.get("used_name")
        return Identity(
            birth_name=domain.check_name("birth_name", body.get("birth_name") or ""),
            first_name=domain.check_name("first_name", body.get("first_name") or ""),
            birth_date=domain.check_birth_date(_required_date("birth_date", body.get("birth_date")), today),
            sex=sex,
            birth_place=domain.check_birth_place(body.get("birth_place") or ""),
            used_name=domain.check_name("used_name", used) if used else None,
            used_first_name=(
                domain.check_name("used_first_name", body["used_first_name"])
                if body.get("used_first_name")
                else None
            ),
        )
    except IdentityRuleError as exc:
        raise _rule(exc) from exc


def _candidates_payload(
    session: Session, actor: Actor, found: list[tuple[Patient, Match]]
) -> list[dict[str, Any]]:
    allowed = _habilitated_ids(session, actor, [p.id for p, _ in found])
    return [candidate_view(p, m, p.id in allowed) for p, m in found]


def identity_search(db: Database, actor: Actor, body: dict[str, Any], today: date) -> dict[str, Any]:
    """PAT-1/PAT-4: ranked candidates for the typed traits."""
    typed = _search_traits(body, today, search=True)
    with db.session_factory() as session:
        found = find_candidates(session, typed, today)
        candidates = _candidates_payload(session, actor, found)
    return {
        "candidates": candidates,
        "strong_candidate": any(c["strong"] for c in candidates),
        "thresholds": {
            "candidate": domain_matching.CANDIDATE_THRESHOLD,
            "strong": domain_matching.STRONG_THRESHOLD,
        },
    }


# -- create -----------------------------------------------------------------------------


def _set_keys(patient: Patient) -> None:
    patient.name_key_birth = domain_matching.name_key(patient.birth_name)
    patient.name_key_used = domain_matching.name_key(patient.used_name)
    patient.name_key_first = domain_matching.name_key(patient.first_name)
    patient.incomplete = domain_identity.has_placeholder(
        {
            "birth_name": patient.birth_name,
            "first_name": patient.first_name,
            "birth_date": patient.birth_date,
            "birth_place": patient.birth_place,
        }
    )


def _history(
    uow: UnitOfWork, patient: Patient, actor: Actor, action: str, changes: dict[str, Any], before: str | None
) -> None:
    # Append-only and never read back in the transaction: a plain INSERT, not an ORM object.
    uow.session.connection().execute(
        _INSERT_HISTORY,
        {
            "id": new_id(),
            "patient_id": patient.id,
            "changed_at": utcnow(),
            "changed_by": actor.person_id,
            "action": action,
            "changes": {k: [_jsonable(v[0]), _jsonable(v[1])] for k, v in changes.items()},
            "status_before": before,
            "status_after": patient.identity_status,
        },
    )


# Built once: every creation and identity change runs them.
_INSERT_HISTORY = insert(IdentityHistory.__table__)
_INSERT_CONSENT = insert(Consent.__table__)
_INSERT_HABILITATION = insert(Habilitation.__table__)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def create_patient(db: Database, actor: Actor, body: dict[str, Any], today: date) -> dict[str, Any]:
    consent_body = body.get("consent") or {}
    try:
        traits = domain.strict_traits(
            birth_name=body["birth_name"],
            first_name=body["first_name"],
            birth_date=_required_date("birth_date", body["birth_date"]),
            sex=body["sex"],
            birth_place=body["birth_place"],
            today=today,
        )
        attributes = domain_identity.check_attributes(body.get("attributes") or [])
        optional = domain_identity.check_optional_traits(
            {k: body[k] for k in domain_identity.OPTIONAL_FIELDS + ("first_names",) if k in body},
            first_name=traits.first_name,
            birth_place=traits.birth_place,
            birth_date=traits.birth_date,
            today=today,
        )
        optional.setdefault("birth_country", domain_identity.check_birth_country(None, traits.birth_place))
        consent = domain.consent_attestation(
            attested=consent_body.get("attested") is True,
            given_by=consent_body.get("given_by", ""),
            given_by_name=consent_body.get("given_by_name"),
            given_on=_required_date("consent.given_on", consent_body.get("given_on", today.isoformat())),
            collected_by=actor.person_id,
            today=today,
        )
    except IdentityRuleError as exc:
        raise _rule(exc) from exc

    now = utcnow()
    patient = Patient(
        id=new_id(),
        birth_name=traits.birth_name,
        first_name=traits.first_name,
        birth_date=traits.birth_date,
        sex=traits.sex,
        birth_place=traits.birth_place,
        identity_status=domain_identity.PROV,  # provisional until a document or INSi (RNIV)
        created_by=actor.person_id,
        owner_kind="structure" if actor.structure_id else "person",
        owner_id=actor.owner_id,
        created_at=now,
        updated_at=now,
        version=1,
        homonym="HOMA" in attributes,
        doubtful="DOUT" in attributes,
        fictitious="FICT" in attributes,
        collection_channel="manual",
        confirmed_despite_candidates=False,
        **optional,
    )
    _set_keys(patient)
    typed = _as_identity(patient)
    with db.unit_of_work(actor.person_id) as uow:
        found = [(p, m) for p, m in find_candidates(uow.session, typed, today) if m.strong]
        if found:
            if body.get("confirm_despite_candidates") is not True:
                raise conflict(
                    "close identities already exist: choose one, or confirm the creation with "
                    "confirm_despite_candidates",
                    field="confirm_despite_candidates",
                    candidates=_candidates_payload(uow.session, actor, found),
                )
            patient.confirmed_despite_candidates = True
            patient.confirmed_candidate_ids = [p.id for p, _ in found]
        # Plain INSERTs for rows that are new by construction: the ORM's flush of the
        # patient and its habilitation was a quarter of a creation's CPU (py-spy, in
        # tests/bench/README.md).
        insert_new(uow.session, patient)
        conn = uow.session.connection()
        # The creator sees the file at once (PAT-6); cercle confirms with HabilitationGranted.
        conn.execute(
            _INSERT_HABILITATION,
            {
                "patient_id": patient.id,
                "holder_kind": patient.owner_kind,
                "holder_id": patient.owner_id,
                "active": True,
                "updated_at": now,
            },
        )
        # The first line of its news feed (PAT-14), and its creator's list row.
        file.write_feed_line(
            uow.session, patient.id, "PatientCreated", patient.created_by, ref_id=patient.id, when=now
        )
        file_list.list_created_file(conn, patient, patient.owner_kind, patient.owner_id)
        conn.execute(
            _INSERT_CONSENT,
            {
                "id": new_id(),
                "patient_id": patient.id,
                "given_by": consent.given_by,
                "given_by_name": consent.given_by_name,
                "given_on": consent.given_on,
                "collected_by": consent.collected_by,
                "recorded_at": now,
            },
        )
        created = {
            f: (None, getattr(patient, f)) for f in domain_identity.STRICT_FIELDS if getattr(patient, f)
        }
        if patient.confirmed_despite_candidates:
            created["confirmed_despite_candidates"] = (None, patient.confirmed_candidate_ids)
        _history(uow, patient, actor, "created", created, None)
        uow.emit(
            "PatientCreated",
            subject=patient.id,
            data={
                "patient_id": patient.id,
                "created_by": actor.person_id,
                "owner_kind": patient.owner_kind,
                "owner_id": patient.owner_id,
                "aggregate_version": 1,
            },
        )
        uow.commit()
        return identity_view(patient, today)


# -- edit, document check, INSi ------------------------------------------------------


def _load(uow: UnitOfWork, patient_id: str) -> Patient:
    patient = uow.session.get(Patient, patient_id)
    if patient is None:
        raise not_found("patient")
    return patient


def _strict_snapshot(patient: Patient) -> dict[str, Any]:
    return {f: getattr(patient, f) for f in domain_identity.STRICT_FIELDS + domain_identity.OPTIONAL_FIELDS}


def _emit_updated(uow: UnitOfWork, patient: Patient, changed: list[str]) -> None:
    uow.emit(
        "PatientIdentityUpdated",
        subject=patient.id,
        data={
            "patient_id": patient.id,
            "identity_status": patient.identity_status,
            "changed": sorted(set(changed)),
            "aggregate_version": patient.version,
        },
    )


def _downgrade(patient: Patient, new_status: str) -> None:
    if new_status == domain_identity.PROV and patient.identity_status != domain_identity.PROV:
        # The checked document and the INS were about the old traits.
        patient.identity_document = None
        patient.identity_document_special_case = None
        patient.identity_document_checked_by = None
        patient.identity_document_checked_at = None
    if new_status != domain_identity.QUAL:
        patient.ins_nir = None  # the INS may be stored for a QUAL identity only
    patient.identity_status = new_status


def update_identity(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    """Edit traits and attributes: every change goes to the history; a strict trait change
    downgrades the status; DOUT or FICT forces PROV."""
    with db.unit_of_work(actor.person_id) as uow:
        patient = _load(uow, patient_id)
        expected = body.get("version")
        if expected is not None and expected != patient.version:
            raise conflict(
                "the identity was changed meanwhile: reload it", field="version", version=patient.version
            )
        before = _strict_snapshot(patient)
        try:
            strict = domain.strict_traits(
                birth_name=body.get("birth_name", patient.birth_name),
                first_name=body.get("first_name", patient.first_name),
                birth_date=_required_date("birth_date", body.get("birth_date", patient.birth_date)),
                sex=body.get("sex", patient.sex),
                birth_place=body.get("birth_place", patient.birth_place),
                today=today,
            )
            after: dict[str, Any] = {
                "birth_name": strict.birth_name,
                "first_name": strict.first_name,
                "birth_date": strict.birth_date,
                "sex": strict.sex,
                "birth_place": strict.birth_place,
            }
            optional_in = {
                k: body[k] for k in domain_identity.OPTIONAL_FIELDS + ("first_names",) if k in body
            }
            if "birth_place" in body and "birth_country" not in body:
                optional_in["birth_country"] = None  # follows the new birth place
            after.update(
                domain_identity.check_optional_traits(
                    optional_in,
                    first_name=strict.first_name,
                    birth_place=strict.birth_place,
                    birth_date=strict.birth_date,
                    today=today,
                )
            )
            attributes = attributes_of(patient)
            if "attributes" in body:
                attributes = list(domain_identity.check_attributes(body["attributes"]))
        except IdentityRuleError as exc:
            raise _rule(exc) from exc
        changes = domain_identity.changed_fields(before, after)
        old_attributes = attributes_of(patient)
        if attributes != old_attributes:
            changes["attributes"] = (old_attributes, attributes)
        if not changes:
            return identity_view(patient, today)
        status_before = patient.identity_status
        new_status = domain_identity.status_after_edit(status_before, changes)
        new_status = domain_identity.status_after_attributes(new_status, attributes)
        for name, (_old, value) in changes.items():
            if name != "attributes":
                setattr(patient, name, value)
        patient.homonym = "HOMA" in attributes
        patient.doubtful = "DOUT" in attributes
        patient.fictitious = "FICT" in attributes
        _downgrade(patient, new_status)
        if new_status != status_before:
            changes["identity_status"] = (status_before, new_status)
        _set_keys(patient)
        patient.version += 1
        patient.updated_at = utcnow()
        _history(uow, patient, actor, "edited", changes, status_before)
        _emit_updated(uow, patient, list(changes))
        uow.commit()
        return identity_view(patient, today)


def _state(patient: Patient) -> domain_identity.IdentityState:
    return domain_identity.IdentityState(
        status=patient.identity_status,
        attributes=tuple(attributes_of(patient)),
        placeholder=patient.incomplete,
    )


def _insi_query(patient: Patient) -> InsiQuery:
    return InsiQuery(
        birth_name=patient.birth_name,
        first_name=patient.first_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        birth_place=patient.birth_place,
    )


def _store_ins(patient: Patient, ins: str) -> None:
    try:
        patient.ins_nir = check_nir_matches_traits(
            "ins", ins, sex=patient.sex, birth_date=patient.birth_date, birth_place=patient.birth_place
        )
    except IdentityRuleError as exc:
        raise _rule(exc) from exc


def check_document(
    db: Database,
    actor: Actor,
    patient_id: str,
    body: dict[str, Any],
    today: date,
    insi: InsiAdapter | None = None,
) -> dict[str, Any]:
    """PROV->VALI or RECUP->QUAL: which document was checked, by whom, when."""
    with db.unit_of_work(actor.person_id) as uow:
        patient = _load(uow, patient_id)
        document = body.get("document", "")
        special_case = body.get("special_case")
        try:
            age_years = (
                None
                if patient.birth_date == PLACEHOLDER_BIRTH_DATE
                else domain.age(patient.birth_date, today)[0]
            )
            new_status = domain_identity.status_after_document(
                _state(patient), document, special_case, age_years
            )
        except IdentityRuleError as exc:
            raise _rule(exc) from exc
        if new_status == domain_identity.QUAL:
            # RECUP kept no INS (RNIV: stored for QUAL only): verify it again with INSi now.
            answer = (insi or default_adapter()).search(_insi_query(patient))
            if answer.code != FOUND or answer.identity is None:
                raise invalid("insi", f"INSi could not confirm the identity (code {answer.code})")
            _store_ins(patient, answer.identity.ins)
        status_before = patient.identity_status
        patient.identity_status = new_status
        patient.identity_document = document
        patient.identity_document_special_case = special_case
        patient.identity_document_checked_by = actor.person_id
        patient.identity_document_checked_at = utcnow()
        patient.version += 1
        patient.updated_at = utcnow()
        changes = {"identity_document": (None, document), "identity_status": (status_before, new_status)}
        _history(uow, patient, actor, "document_checked", changes, status_before)
        _emit_updated(uow, patient, ["identity_document", "identity_status"])
        uow.commit()
        return identity_view(patient, today)


def query_insi(
    db: Database, actor: Actor, patient_id: str, today: date, insi: InsiAdapter | None = None
) -> dict[str, Any]:
    """[beyond] PROV->RECUP or VALI->QUAL when INSi returns exactly one identity (code 00)."""
    adapter = insi or default_adapter()
    with db.unit_of_work(actor.person_id) as uow:
        patient = _load(uow, patient_id)
        try:
            new_status = domain_identity.status_after_insi(_state(patient))
        except IdentityRuleError as exc:
            raise _rule(exc) from exc
        answer = adapter.search(_insi_query(patient))
        result: dict[str, Any] = {"code": answer.code, "label": answer.label}
        if answer.code != FOUND or answer.identity is None:
            result["patient"] = identity_view(patient, today)
            return result
        status_before = patient.identity_status
        returned = answer.identity
        # INSi's reference traits replace the typed ones (names as returned by the national base).
        changes = domain_identity.changed_fields(
            {"birth_name": patient.birth_name, "first_names": patient.first_names},
            {"birth_name": returned.birth_name, "first_names": returned.first_names},
        )
        for name, (_old, value) in changes.items():
            setattr(patient, name, value)
        if new_status == domain_identity.QUAL:
            _store_ins(patient, returned.ins)
        patient.identity_status = new_status
        patient.collection_channel = "insi"
        _set_keys(patient)
        patient.version += 1
        patient.updated_at = utcnow()
        changes["identity_status"] = (status_before, new_status)
        _history(uow, patient, actor, "insi", changes, status_before)
        _emit_updated(uow, patient, list(changes))
        uow.commit()
        result["patient"] = identity_view(patient, today)
        return result


def identity_history(db: Database, patient_id: str) -> dict[str, Any]:
    with db.session_factory() as session:
        if session.get(Patient, patient_id) is None:
            raise not_found("patient")
        rows = session.scalars(
            select(IdentityHistory)
            .where(IdentityHistory.patient_id == patient_id)
            .order_by(IdentityHistory.changed_at, IdentityHistory.id)
        ).all()
        return {
            "items": [
                {
                    "id": r.id,
                    "changed_at": r.changed_at.isoformat(),
                    "changed_by": r.changed_by,
                    "action": r.action,
                    "changes": r.changes,
                    "status_before": r.status_before,
                    "status_after": r.status_after,
                }
                for r in rows
            ]
        }


# -- consent (PAT-5) ------------------------------------------------------------------


def consent_view(consent: Consent) -> dict[str, Any]:
    return {
        "id": consent.id,
        "given_by": consent.given_by,
        "given_by_name": consent.given_by_name,
        "given_on": consent.given_on.isoformat(),
        "collected_by": consent.collected_by,
        "recorded_at": consent.recorded_at.isoformat(),
        "withdrawn_at": consent.withdrawn_at.isoformat() if consent.withdrawn_at else None,
        "withdrawn_by": consent.withdrawn_by,
        "withdrawal_reason": consent.withdrawal_reason,
        "active": consent.withdrawn_at is None,
    }


def list_consents(db: Database, patient_id: str) -> dict[str, Any]:
    with db.session_factory() as session:
        if session.get(Patient, patient_id) is None:
            raise not_found("patient")
        rows = session.scalars(
            select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.recorded_at, Consent.id)
        ).all()
        return {"items": [consent_view(c) for c in rows]}


def record_consent(
    db: Database, actor: Actor, patient_id: str, body: dict[str, Any], today: date
) -> dict[str, Any]:
    try:
        consent = domain.consent_attestation(
            attested=body.get("attested") is True,
            given_by=body.get("given_by", ""),
            given_by_name=body.get("given_by_name"),
            given_on=_required_date("given_on", body.get("given_on", today.isoformat())),
            collected_by=actor.person_id,
            today=today,
        )
    except IdentityRuleError as exc:
        raise invalid(exc.field.removeprefix("consent."), exc.detail) from exc
    with db.unit_of_work(actor.person_id) as uow:
        _load(uow, patient_id)
        row = Consent(
            id=new_id(),
            patient_id=patient_id,
            given_by=consent.given_by,
            given_by_name=consent.given_by_name,
            given_on=consent.given_on,
            collected_by=consent.collected_by,
            recorded_at=utcnow(),
        )
        uow.session.add(row)
        uow.commit()
        return consent_view(row)


def withdraw_consent(
    db: Database, actor: Actor, patient_id: str, consent_id: str, reason: str
) -> dict[str, Any]:
    text = (reason or "").strip()
    if not text:
        raise invalid("reason", "a reason is required to withdraw a consent")
    with db.unit_of_work(actor.person_id) as uow:
        consent = uow.session.get(Consent, consent_id)
        if consent is None or consent.patient_id != patient_id:
            raise not_found("consent")
        if consent.withdrawn_at is not None:
            raise conflict("this consent was already withdrawn", field="consent_id")
        consent.withdrawn_at = utcnow()
        consent.withdrawn_by = actor.person_id
        consent.withdrawal_reason = text
        uow.commit()
        return consent_view(consent)


def consent_form_pdf(db: Database, patient_id: str, today: date) -> bytes:
    """The consent form to print and sign, filled with the patient's identity (PAT-5)."""
    from fpdf import FPDF  # imported here: only this download needs it

    with db.session_factory() as session:
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise not_found("patient")
        name = f"{patient.birth_name} {patient.first_name}"
        used = f" (nom utilisé : {patient.used_name})" if patient.used_name else ""
        born = patient.birth_date.strftime("%d/%m/%Y")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 12, "Formulaire de consentement", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    lines = [
        f"Patient : {name}{used}, né(e) le {born}.",
        "",
        "J'accepte que les professionnels qui me prennent en charge créent et partagent un dossier de "
        "coordination me concernant, dans le respect du secret professionnel et de mes droits d'accès, "
        "de rectification et d'opposition.",
        "",
        "Consentement donné par : [ ] le patient  [ ] le curateur  [ ] le tuteur légal  "
        "[ ] la personne de confiance  [ ] le titulaire de l'autorité parentale  [ ] autre (préciser) : ________",
        "",
        "Date : ____/____/________        Recueilli par : ______________________",
        "",
        "Signature :",
        "",
        f"Document édité le {today.strftime('%d/%m/%Y')}.",
    ]
    for line in lines:
        # The PDF core font is Latin-1: a rare letter outside it (Œ) is replaced, not fatal.
        safe = line.replace("Œ", "OE").replace("œ", "oe").encode("latin-1", "replace").decode("latin-1")
        pdf.multi_cell(0, 7, safe, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
