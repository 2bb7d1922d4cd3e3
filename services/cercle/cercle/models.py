"""Tables of the cercle service only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Member(Base):
    """One person or structure in a patient's care circle (CER-1), habilitated or not (CER-3)."""

    __tablename__ = "members"
    # The unique index also serves the gateway's hot decision query (patient, kind, holder).
    __table_args__ = (UniqueConstraint("patient_id", "holder_kind", "holder_id", name="uq_members_holder"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36))
    holder_kind: Mapped[str] = mapped_column(String(10))
    holder_id: Mapped[str] = mapped_column(String(64), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    # CER-1 details; free text that never leaves cercle.
    establishment: Mapped[str | None] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(200))
    function: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    # directory | manual | invitation | creator (domain.SOURCES)
    source: Mapped[str] = mapped_column(String(12), default="directory")
    # CER-5 manual persons: not in the directory, so named here; never habilitated.
    manual: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    habilitated: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_habilitation: Mapped[bool] = mapped_column(Boolean, default=False)
    refused_information_sharing: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    added_by: Mapped[str | None] = mapped_column(String(64))
    # The grantor a delegate acted for (ID-6: a delegate is recorded as such in every change).
    added_for: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class KnownPatient(Base):
    """Read model kept from dossier.PatientCreated: which files exist and who owns them."""

    __tablename__ = "known_patients"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Person(Base):
    """Read model kept from identity.UserRegistered: names the persons listed in circles."""

    __tablename__ = "persons"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    structures: Mapped[list[str]] = mapped_column(JSON, default=list)
    profession: Mapped[str | None] = mapped_column(String(100))
    # Lower-cased; matches pending invitations (CER-6).
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Delegation(Base):
    """Read model of identity's Delegation* events (ID-6): who may act in whose name.

    A revoked delegation is kept (revoked_at set) so that a late DelegationGranted cannot
    bring it back.
    """

    __tablename__ = "delegations"
    # The decision looks a delegation up by (delegate, grantor).
    __table_args__ = (Index("ix_delegations_pair", "delegate_id", "grantor_id"),)

    delegation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grantor_id: Mapped[str] = mapped_column(String(64))
    delegate_id: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    ends_on: Mapped[date | None] = mapped_column(Date)
    granted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoke_cause: Mapped[str | None] = mapped_column(String(10))


class BreakGlassGrant(Base):
    """CER-8: a two-hour access of a non-habilitated person to one file, and why."""

    __tablename__ = "break_glass_grants"
    __table_args__ = (
        # The decision: this person's grant on this patient.
        Index("ix_break_glass_patient_person", "patient_id", "person_id"),
        # The expiry job: grants not ended yet, by end time.
        Index("ix_break_glass_open", "ended_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36))
    person_id: Mapped[str] = mapped_column(String(64))
    structure_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reason_code: Mapped[str] = mapped_column(String(30))
    # Free text stays here: never in events or logs.
    reason_text: Mapped[str] = mapped_column(Text)
    # As stated by the client (see usecases.break_glass).
    found_via: Mapped[str] = mapped_column(String(30))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_cause: Mapped[str | None] = mapped_column(String(10))


class Invitation(Base):
    """CER-6: a colleague invited by e-mail; added to the circle when they register."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    # Lower-cased: identity's UserRegistered is matched on it.
    email: Mapped[str] = mapped_column(String(254), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    invited_by: Mapped[str] = mapped_column(String(64))
    invited_at: Mapped[datetime] = mapped_column(UtcDateTime())
    accepted_by: Mapped[str | None] = mapped_column(String(64))
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
