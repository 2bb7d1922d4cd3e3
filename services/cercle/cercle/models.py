"""Tables of the cercle service only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, MetaData, String, Text, UniqueConstraint
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
    habilitated: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_habilitation: Mapped[bool] = mapped_column(Boolean, default=False)
    refused_information_sharing: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    added_by: Mapped[str | None] = mapped_column(String(64))
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
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
