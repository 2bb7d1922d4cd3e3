"""The habilitation read model several services keep (`chassis.readmodels`), on PostgreSQL
and on SQLite (the embedded mode): out-of-order events, what counts as a change, and a
session that had the row loaded already."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Session

from chassis.readmodels import HabilitationRow, set_habilitation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData()


class Habilitation(HabilitationRow, Base):
    pass


@pytest.fixture
def session(database_url: str) -> Any:
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def _set(session: Session, active: bool, at: datetime, holder: str = "p-1") -> bool:
    return set_habilitation(session, Habilitation, "patient-1", "person", holder, active, at)


def _state(session: Session) -> tuple[bool, datetime]:
    row = session.execute(select(Habilitation.active, Habilitation.updated_at)).one()
    return row.active, row.updated_at


def test_a_first_grant_and_a_flip_are_changes_a_grant_confirmed_again_is_not(session: Session) -> None:
    assert _set(session, True, T0) is True
    assert _set(session, True, T0 + timedelta(seconds=1)) is False  # only the date moves
    assert _state(session) == (True, T0 + timedelta(seconds=1))
    assert _set(session, False, T0 + timedelta(seconds=2)) is True
    session.commit()
    assert _state(session) == (False, T0 + timedelta(seconds=2))


def test_an_older_event_delivered_late_changes_nothing(session: Session) -> None:
    assert _set(session, False, T0 + timedelta(minutes=5)) is True
    assert _set(session, True, T0) is False  # the grant was sent before the revocation
    session.commit()
    assert _state(session) == (False, T0 + timedelta(minutes=5))


def test_a_row_the_session_had_loaded_shows_the_new_state(session: Session) -> None:
    _set(session, True, T0)
    loaded = session.get(Habilitation, ("patient-1", "person", "p-1"))
    assert loaded is not None and loaded.active is True
    _set(session, False, T0 + timedelta(seconds=1))
    assert loaded.active is False
    assert session.get(Habilitation, ("patient-1", "person", "p-1")) is loaded
