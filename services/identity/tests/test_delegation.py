"""ID-6 delegation use cases on a real database (SQLite and PostgreSQL), with a clock we
control: the flow, who may do what, validation, events, and expiry by the worker's job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from chassis.db import Database
from chassis.events import validate
from chassis.problems import Problem
from identity import jobs
from identity import usecases_delegation as uc
from identity.app import SERVICE
from identity.domain_delegation import Action
from identity.models import Person

# 10:00 in Paris on Tuesday 1 December 2026.
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def add_person(db: Database, name: str, *, account: bool = True) -> str:
    person_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"test/{name}"))
    with db.unit_of_work() as uow:
        uow.session.execute(
            insert(Person).values(
                id=person_id,
                username=name if account else None,
                password_hash="not-a-usable-hash" if account else None,
                first_name=name.title(),
                last_name="Test",
                display_name=f"{name.title()} Test",
                roles=["user"],
                sort_key=f"test {name}",
                active=True,
                created_at=T0,
            )
        )
        uow.commit()
    return person_id


def events(db: Database) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        found = list(s.scalars(select(db.outbox.c.envelope).order_by(db.outbox.c.position)))
    for envelope in found:
        validate(envelope)
    return found


@pytest.fixture
def people(database: Database) -> dict[str, str]:
    return {name: add_person(database, name) for name in ("grace", "dan", "eve", "sam")}


def refused(action: Any, status: int, field: str | None = None) -> Problem:
    with pytest.raises(Problem) as err:
        action()
    assert err.value.status == status, err.value.detail
    if field:
        assert err.value.field == field
    return err.value


def test_request_accept_revoke_with_the_events_each_step(database: Database, people: dict[str, str]):
    db, grace, dan, eve = database, people["grace"], people["dan"], people["eve"]
    asked = uc.request_delegation(
        db, dan, {"grantor_id": grace, "scopes": ["discussions", "dossiers"]}, now=T0
    )
    assert asked["status"] == "pending" and asked["active"] is False
    assert asked["scopes"] == ["dossiers", "discussions"]
    assert asked["grantor"]["display_name"] == "Grace Test" and asked["delegate"]["id"] == dan
    uc.request_delegation(
        db,
        eve,
        {"grantor_id": grace, "scopes": ["discussions"], "ends_on": "2027-01-31"},
        now=T0 + timedelta(minutes=1),
    )
    assert uc.pending_count(db, grace, now=T0) == {"pending_count": 2}
    assert uc.pending_count(db, dan, now=T0) == {"pending_count": 0}  # requests *to* a person count

    requested = [e for e in events(db) if e["type"] == "DelegationRequested"]
    assert [e["data"]["pending_count"] for e in requested] == [1, 2]
    assert requested[0]["data"] == {
        "delegation_id": asked["id"],
        "grantor_id": grace,
        "delegate_id": dan,
        "scopes": ["dossiers", "discussions"],
        "ends_on": None,
        "pending_count": 1,
    }
    assert requested[1]["data"]["ends_on"] == "2027-01-31"
    assert requested[0]["actor"] == dan and requested[0]["subject"] == asked["id"]

    accepted = uc.decide(db, grace, asked["id"], Action.ACCEPT, now=T0 + timedelta(hours=1))
    assert accepted["status"] == "accepted" and accepted["active"] is True and accepted["decided_at"]
    assert uc.pending_count(db, grace, now=T0)["pending_count"] == 1
    granted = events(db)[-1]
    assert granted["type"] == "DelegationGranted" and granted["actor"] == grace
    assert granted["data"] == {
        "delegation_id": asked["id"],
        "grantor_id": grace,
        "delegate_id": dan,
        "scopes": ["dossiers", "discussions"],
        "ends_on": None,
    }

    given = uc.list_delegations(db, grace, "given", now=T0)
    assert [(d["delegate"]["id"], d["status"]) for d in given["items"]] == [
        (eve, "pending"),
        (dan, "accepted"),
    ]
    assert uc.list_delegations(db, grace, "given", status="pending", now=T0)["total"] == 1
    received = uc.list_delegations(db, dan, "received", now=T0)
    assert [(d["grantor"]["id"], d["status"]) for d in received["items"]] == [(grace, "accepted")]
    assert uc.list_delegations(db, dan, "given", now=T0)["items"] == []

    # The delegate gives it up: it ends for both.
    revoked = uc.decide(db, dan, asked["id"], Action.REVOKE, now=T0 + timedelta(days=1))
    assert revoked["status"] == "revoked" and revoked["end_cause"] == "revoked" and not revoked["active"]
    ended = events(db)[-1]
    assert ended["type"] == "DelegationRevoked" and ended["actor"] == dan
    assert ended["data"] == {
        "delegation_id": asked["id"],
        "grantor_id": grace,
        "delegate_id": dan,
        "cause": "revoked",
    }
    # Once ended, a new request for the same scopes is possible again.
    uc.request_delegation(db, dan, {"grantor_id": grace, "scopes": ["dossiers"]}, now=T0 + timedelta(days=2))


def test_who_may_do_what_and_bad_requests_change_nothing(database: Database, people: dict[str, str]):
    db, grace, dan, eve = database, people["grace"], people["dan"], people["eve"]
    listed_only = add_person(db, "lisa", account=False)
    asked = uc.request_delegation(db, dan, {"grantor_id": grace, "scopes": ["dossiers"]}, now=T0)
    before = len(events(db))

    refused(
        lambda: uc.request_delegation(db, dan, {"grantor_id": dan, "scopes": ["dossiers"]}, now=T0),
        422,
        "grantor_id",
    )
    missing = str(uuid.uuid4())
    refused(
        lambda: uc.request_delegation(db, dan, {"grantor_id": missing, "scopes": ["dossiers"]}, now=T0),
        422,
        "grantor_id",
    )
    refused(
        lambda: uc.request_delegation(db, dan, {"grantor_id": listed_only, "scopes": ["dossiers"]}, now=T0),
        422,
        "grantor_id",
    )
    refused(
        lambda: uc.request_delegation(db, eve, {"grantor_id": grace, "scopes": []}, now=T0), 422, "scopes"
    )
    for day in ("2026-12-01", "2026-11-15"):  # today (Paris) or before
        refused(
            lambda day=day: uc.request_delegation(
                db, eve, {"grantor_id": grace, "scopes": ["dossiers"], "ends_on": day}, now=T0
            ),
            422,
            "ends_on",
        )
    refused(
        lambda: uc.request_delegation(
            db, dan, {"grantor_id": grace, "scopes": ["dossiers", "discussions"]}, now=T0
        ),
        409,
    )

    refused(
        lambda: uc.decide(db, dan, asked["id"], Action.ACCEPT, now=T0), 403
    )  # the delegate cannot self-approve
    refused(lambda: uc.decide(db, dan, asked["id"], Action.REFUSE, now=T0), 403)
    refused(lambda: uc.decide(db, eve, asked["id"], Action.REVOKE, now=T0), 404)  # strangers learn nothing
    refused(lambda: uc.get_delegation(db, eve, asked["id"], now=T0), 404)
    refused(lambda: uc.decide(db, grace, str(uuid.uuid4()), Action.ACCEPT, now=T0), 404)
    assert len(events(db)) == before
    assert uc.get_delegation(db, grace, asked["id"], now=T0)["status"] == "pending"

    # The scope not yet asked for can be asked for separately.
    uc.request_delegation(db, dan, {"grantor_id": grace, "scopes": ["discussions"]}, now=T0)

    assert uc.decide(db, grace, asked["id"], Action.REFUSE, now=T0)["status"] == "refused"
    refusal = events(db)[-1]
    assert refusal["type"] == "DelegationRefused"
    assert refusal["data"] == {"delegation_id": asked["id"], "grantor_id": grace, "delegate_id": dan}
    refused(lambda: uc.decide(db, grace, asked["id"], Action.ACCEPT, now=T0), 409)
    refused(lambda: uc.decide(db, dan, asked["id"], Action.REVOKE, now=T0), 409)


def test_a_delegation_lapses_after_its_end_date_and_the_worker_says_so_once(
    database: Database, people: dict[str, str]
):
    db, grace, dan, eve, sam = database, people["grace"], people["dan"], people["eve"], people["sam"]
    body = {"grantor_id": grace, "scopes": ["dossiers"], "ends_on": "2026-12-03"}
    granted = uc.request_delegation(db, dan, body, now=T0)
    uc.decide(db, grace, granted["id"], Action.ACCEPT, now=T0)
    waiting = uc.request_delegation(db, eve, body, now=T0)
    forever = uc.request_delegation(db, sam, {"grantor_id": grace, "scopes": ["dossiers"]}, now=T0)
    uc.decide(db, grace, forever["id"], Action.ACCEPT, now=T0)

    last_evening = datetime(2026, 12, 3, 22, 59, tzinfo=UTC)  # 23:59 in Paris, still the 3rd
    job = jobs.DelegationExpiry(db, clock=lambda: last_evening)
    assert job.run_once() == 0
    assert uc.get_delegation(db, dan, granted["id"], now=last_evening)["active"] is True
    assert uc.pending_count(db, grace, now=last_evening)["pending_count"] == 1

    next_day = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # midnight in Paris
    # Inactive at once when read, before the job has run.
    lapsed = uc.get_delegation(db, dan, granted["id"], now=next_day)
    assert lapsed["status"] == "expired" and lapsed["active"] is False
    assert uc.pending_count(db, grace, now=next_day)["pending_count"] == 0
    refused(lambda: uc.decide(db, grace, waiting["id"], Action.ACCEPT, now=next_day), 409)
    before = len(events(db))

    job.clock = lambda: next_day
    assert job.run_once() == 2
    assert job.run_once() == 0  # once only
    revoked = [e for e in events(db)[before:]]
    assert {e["data"]["delegation_id"] for e in revoked} == {granted["id"], waiting["id"]}
    assert all(e["type"] == "DelegationRevoked" and e["data"]["cause"] == "expired" for e in revoked)
    assert all(e["actor"] is None for e in revoked)
    recorded = uc.get_delegation(db, grace, granted["id"], now=next_day)
    assert recorded["end_cause"] == "expired" and recorded["ended_at"]
    # The one without an end date goes on.
    assert uc.get_delegation(db, sam, forever["id"], now=next_day + timedelta(days=400))["active"] is True


def test_the_worker_runs_the_expiry_job(database: Database):
    settings = SERVICE.settings()
    worker = SERVICE.create_worker(settings, database)
    assert len(worker.background) == 1
