"""Tables of the dossier service only."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    birth_name: Mapped[str] = mapped_column(String(100), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date, index=True)
    sex: Mapped[str] = mapped_column(String(1))
    birth_place: Mapped[str] = mapped_column(String(5))
    identity_status: Mapped[str] = mapped_column(String(5), default="PROV")
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    owner_kind: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    given_by: Mapped[str] = mapped_column(String(30))
    given_by_name: Mapped[str | None] = mapped_column(String(200))
    given_on: Mapped[date] = mapped_column(Date)
    collected_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)


class Habilitation(Base):
    """Read model kept from cercle's events: who may see which file (for the file list)."""

    __tablename__ = "habilitations"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
