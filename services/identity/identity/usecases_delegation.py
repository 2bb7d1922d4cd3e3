"""Account delegation use cases (ID-6). Rules in `domain_delegation`; each use case owns its
transaction and emits its event in it. `now` is injectable so tests control the clock."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from chassis.db import Database, UnitOfWork, new_id, utcnow
from chassis.problems import Problem, conflict, date_field, forbidden, invalid, not_found
from identity import domain_delegation as rules
from identity.domain_delegation import Action, DelegationError, Party, Status
from identity.models import Delegation, Person

log = logging.getLogger(__name__)


def _problem(exc: DelegationError) -> Problem:
    if exc.kind == "forbidden":
        return forbidden(exc.detail)
    if exc.kind == "conflict":
        return conflict(exc.detail)
    return invalid(exc.field or "body", exc.detail)


def _live(on: date) -> Any:
    """SQL condition: pending or accepted and not past its end date on day `on`."""
    return and_(
        Delegation.status.in_([Status.PENDING.value, Status.ACCEPTED.value]),
        or_(Delegation.ends_on.is_(None), Delegation.ends_on >= on),
    )


def _pending_count(s: Session, grantor_id: str, on: date) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(Delegation)
            .where(Delegation.grantor_id == grantor_id, Delegation.status == Status.PENDING.value, _live(on))
        )
        or 0
    )


def request_delegation(
    db: Database, delegate_id: str, body: dict[str, Any], *, now: datetime | None = None
) -> dict[str, Any]:
    """The caller (the future delegate) asks `grantor_id` for the right to act in its name."""
    now = now or utcnow()
    on = rules.today(now)
    grantor_id = str(body.get("grantor_id") or "")
    try:
        rules.check_parties(grantor_id, delegate_id)
        scopes = rules.check_scopes(body.get("scopes"))
        ends_on = rules.check_ends_on(date_field("ends_on", body.get("ends_on")), on)
    except DelegationError as exc:
        raise _problem(exc) from exc
    with db.unit_of_work(delegate_id) as uow:
        s = uow.session
        # Locking the grantor's row serialises concurrent requests to the same grantor, so
        # the duplicate check and the pending count below cannot race (PostgreSQL; SQLite
        # transactions are serial already).
        grantor = s.get(Person, grantor_id, with_for_update=True)
        if grantor is None or not grantor.active or grantor.username is None:
            raise invalid("grantor_id", "the grantor must be a person with an account")
        delegate = s.get(Person, delegate_id)
        if delegate is None or not delegate.active:
            raise not_found("person")
        live = s.scalars(
            select(Delegation.scopes).where(
                Delegation.grantor_id == grantor_id, Delegation.delegate_id == delegate_id, _live(on)
            )
        )
        try:
            rules.check_not_duplicate(scopes, list(live))
        except DelegationError as exc:
            raise _problem(exc) from exc
        delegation = Delegation(
            id=new_id(),
            grantor_id=grantor_id,
            delegate_id=delegate_id,
            scopes=scopes,
            status=Status.PENDING.value,
            ends_on=ends_on,
            requested_at=now,
        )
        s.add(delegation)
        s.flush()
        uow.emit(
            "DelegationRequested",
            subject=delegation.id,
            data={
                **_event_data(delegation, with_scopes=True),
                "pending_count": _pending_count(s, grantor_id, on),
            },
        )
        view = _view(s, delegation, on)
        uow.commit()
    return view


def decide(
    db: Database, person_id: str, delegation_id: str, action: Action, *, now: datetime | None = None
) -> dict[str, Any]:
    """Accept, refuse or revoke, by one of the two parties (who may do what: the state machine)."""
    now = now or utcnow()
    on = rules.today(now)
    with db.unit_of_work(person_id) as uow:
        s = uow.session
        delegation = s.get(Delegation, delegation_id, with_for_update=True)
        party = (
            None
            if delegation is None
            else rules.party_of(person_id, delegation.grantor_id, delegation.delegate_id)
        )
        if delegation is None or party is None:
            raise not_found("delegation")  # a stranger learns nothing of others' delegations
        current = rules.effective_status(delegation.status, delegation.ends_on, on)
        try:
            target = rules.transition(current, action, party)
        except DelegationError as exc:
            raise _problem(exc) from exc
        delegation.status = target.value
        if action in (Action.ACCEPT, Action.REFUSE):
            delegation.decided_at = now
        else:
            delegation.ended_at = now
            delegation.ended_by = person_id
            delegation.end_cause = "revoked"
        _emit_for(uow, delegation, target)
        view = _view(s, delegation, on)
        uow.commit()
    return view


def _emit_for(uow: UnitOfWork, delegation: Delegation, target: Status) -> None:
    if target is Status.ACCEPTED:
        uow.emit("DelegationGranted", subject=delegation.id, data=_event_data(delegation, with_scopes=True))
    elif target is Status.REFUSED:
        uow.emit("DelegationRefused", subject=delegation.id, data=_event_data(delegation))
    elif target in (Status.REVOKED, Status.EXPIRED):
        cause = "expired" if target is Status.EXPIRED else "revoked"
        uow.emit("DelegationRevoked", subject=delegation.id, data={**_event_data(delegation), "cause": cause})


def _event_data(delegation: Delegation, *, with_scopes: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "delegation_id": delegation.id,
        "grantor_id": delegation.grantor_id,
        "delegate_id": delegation.delegate_id,
    }
    if with_scopes:
        data["scopes"] = list(delegation.scopes)
        data["ends_on"] = delegation.ends_on.isoformat() if delegation.ends_on else None
    return data


def expire_delegations(db: Database, *, now: datetime | None = None, batch: int = 200) -> int:
    """Record the lapse of every live delegation past its end date, emitting
    DelegationRevoked (cause "expired") once for each. Safe to run in several workers at
    once: a row changes only if it is still in the state it was read in."""
    now = now or utcnow()
    on = rules.today(now)
    expired = 0
    while True:
        with db.unit_of_work() as uow:
            s = uow.session
            due = list(
                s.scalars(
                    select(Delegation)
                    .where(
                        Delegation.status.in_([Status.PENDING.value, Status.ACCEPTED.value]),
                        Delegation.ends_on < on,
                    )
                    .order_by(Delegation.ends_on, Delegation.id)
                    .limit(batch)
                )
            )
            for delegation in due:
                target = rules.transition(Status(delegation.status), Action.EXPIRE, Party.SYSTEM)
                claimed = s.execute(
                    update(Delegation)
                    .where(Delegation.id == delegation.id, Delegation.status == delegation.status)
                    .values(status=target.value, ended_at=now, end_cause="expired")
                    .execution_options(synchronize_session=False)
                ).rowcount
                if claimed == 1:
                    _emit_for(uow, delegation, target)
                    expired += 1
            uow.commit()
        if len(due) < batch:
            return expired


def get_delegation(
    db: Database, person_id: str, delegation_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    on = rules.today(now or utcnow())
    with db.session_factory() as s:
        delegation = s.get(Delegation, delegation_id)
        if (
            delegation is None
            or rules.party_of(person_id, delegation.grantor_id, delegation.delegate_id) is None
        ):
            raise not_found("delegation")
        return _view(s, delegation, on)


def list_delegations(
    db: Database,
    person_id: str,
    side: str,
    *,
    status: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`given`: the delegations the person grants ("Mes délégués"); `received`: those it
    holds or asked for ("Mes délégants"). Newest first; `status` is the status as shown."""
    on = rules.today(now or utcnow())
    column = Delegation.grantor_id if side == "given" else Delegation.delegate_id
    with db.session_factory() as s:
        rows = list(
            s.scalars(
                select(Delegation)
                .where(column == person_id)
                .order_by(Delegation.requested_at.desc(), Delegation.id)
            )
        )
        people = _people(s, rows)
        items = [_view(s, d, on, people=people) for d in rows]
    if status:
        items = [i for i in items if i["status"] == status]
    return {"items": items, "total": len(items)}


def pending_count(db: Database, grantor_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    with db.session_factory() as s:
        return {"pending_count": _pending_count(s, grantor_id, rules.today(now or utcnow()))}


def _people(s: Session, rows: list[Delegation]) -> dict[str, dict[str, Any]]:
    ids = {d.grantor_id for d in rows} | {d.delegate_id for d in rows}
    if not ids:
        return {}
    found = s.execute(select(Person.id, Person.display_name, Person.last_login_at).where(Person.id.in_(ids)))
    return {
        pid: {"id": pid, "display_name": name, "last_login_at": last.isoformat() if last else None}
        for pid, name, last in found.tuples()
    }


def _view(
    s: Session, d: Delegation, on: date, *, people: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    people = people if people is not None else _people(s, [d])
    status = rules.effective_status(d.status, d.ends_on, on)
    return {
        "id": d.id,
        "grantor": people[d.grantor_id],
        "delegate": people[d.delegate_id],
        "scopes": list(d.scopes),
        "status": status.value,
        "active": status is Status.ACCEPTED,
        "ends_on": d.ends_on.isoformat() if d.ends_on else None,
        "requested_at": d.requested_at.isoformat(),
        "decided_at": d.decided_at.isoformat() if d.decided_at else None,
        "ended_at": d.ended_at.isoformat() if d.ended_at else None,
        "end_cause": d.end_cause or ("expired" if status is Status.EXPIRED else None),
    }
