"""Read models several services keep from the same events: defined once, kept in each
service's own database (a service never reads another's).

`HabilitationRow` is who may see which file, from cercle's `HabilitationGranted` and
`HabilitationRevoked`: a service declares `class Habilitation(HabilitationRow, Base)` and
feeds it with `record_habilitation` from its consumers.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Boolean, Insert, Select, String, Table, Update, and_, bindparam, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from chassis.db import UtcDateTime

__all__ = ["HabilitationRow", "record_habilitation", "set_habilitation"]


class HabilitationRow:
    """Columns of the habilitation read model (a declarative mixin)."""

    __tablename__ = "habilitations"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


def record_habilitation(session: Session, model: type[Any], envelope: dict[str, Any], active: bool) -> bool:
    """Grant or revoke from a Habilitation* event. Returns whether it changed the state (see
    `set_habilitation`)."""
    data = envelope["data"]
    changed_at = datetime.fromisoformat(envelope["occurred_at"])
    return set_habilitation(
        session, model, data["patient_id"], data["holder_kind"], data["holder_id"], active, changed_at
    )


def set_habilitation(
    session: Session,
    model: type[Any],
    patient_id: str,
    holder_kind: str,
    holder_id: str,
    active: bool,
    changed_at: datetime,
) -> bool:
    """An older event never overrides a newer one (delivery may be out of order).

    Returns whether this event changed who may see the file: a holder first known, or its
    grant flipped. A grant confirmed again (cercle's HabilitationGranted after the
    creation's own row) only moves the date and returns False, so nothing downstream
    (orphaned assignments, list rows) needs to move.

    Plain statements on the session's connection, built once per table: every creation
    passes here in three services, and the ORM's get, autoflush and flush of one small row
    were most of their consumers' CPU (tests/bench/README.md)."""
    read_state, insert_row, update_row = _statements(model.__table__)
    conn = session.connection()
    key = {"key_patient_id": patient_id, "key_holder_kind": holder_kind, "key_holder_id": holder_id}
    known = conn.execute(read_state, key).first()
    if known is None:
        conn.execute(
            insert_row,
            {
                "patient_id": patient_id,
                "holder_kind": holder_kind,
                "holder_id": holder_id,
                "active": active,
                "updated_at": changed_at,
            },
        )
        changed = True
    elif known.updated_at <= changed_at:
        conn.execute(update_row, {**key, "new_active": active, "new_updated_at": changed_at})
        changed = known.active != active
    else:
        return False
    # A copy the session loaded earlier in this transaction must not hide the new state.
    loaded = session.identity_map.get(session.identity_key(model, (patient_id, holder_kind, holder_id)))
    if loaded is not None:
        session.expire(loaded)
    return changed


@cache
def _statements(table: Table) -> tuple[Select[Any], Insert, Update]:
    by_key = and_(
        table.c.patient_id == bindparam("key_patient_id"),
        table.c.holder_kind == bindparam("key_holder_kind"),
        table.c.holder_id == bindparam("key_holder_id"),
    )
    return (
        select(table.c.active, table.c.updated_at).where(by_key),
        insert(table),
        update(table)
        .where(by_key)
        .values(active=bindparam("new_active"), updated_at=bindparam("new_updated_at")),
    )
