"""Tables of the dossier service only."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables
from chassis.readmodels import HabilitationRow

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
    # -- RNIV identity (PAT-2, PAT-3; owned by dossier/identity.py) --
    used_name: Mapped[str | None] = mapped_column(String(100))
    first_names: Mapped[str | None] = mapped_column(String(200))
    used_first_name: Mapped[str | None] = mapped_column(String(100))
    birth_country: Mapped[str] = mapped_column(String(5), default="99100")
    twin_rank: Mapped[int | None] = mapped_column(Integer)
    entitled_nir: Mapped[str | None] = mapped_column(String(15))
    ins_nir: Mapped[str | None] = mapped_column(String(15))  # stored only while QUAL (RNIV)
    email: Mapped[str | None] = mapped_column(String(254))
    mobile: Mapped[str | None] = mapped_column(String(10))
    phone: Mapped[str | None] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(300))
    homonym: Mapped[bool] = mapped_column(Boolean, default=False)
    doubtful: Mapped[bool] = mapped_column(Boolean, default=False)
    fictitious: Mapped[bool] = mapped_column(Boolean, default=False)
    identity_document: Mapped[str | None] = mapped_column(String(30))
    identity_document_special_case: Mapped[str | None] = mapped_column(String(40))
    identity_document_checked_by: Mapped[str | None] = mapped_column(String(64))
    identity_document_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    collection_channel: Mapped[str] = mapped_column(String(20), default="manual")
    confirmed_despite_candidates: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_candidate_ids: Mapped[list[str] | None] = mapped_column(JSON)
    # Phonex keys of the names: with the birth date they make identity search an index lookup.
    name_key_birth: Mapped[str | None] = mapped_column(String(60))
    name_key_used: Mapped[str | None] = mapped_column(String(60))
    name_key_first: Mapped[str | None] = mapped_column(String(60))

    __table_args__ = (
        Index("ix_patients_name_key_birth_date", "name_key_birth", "birth_date"),
        Index("ix_patients_name_key_used_date", "name_key_used", "birth_date"),
        Index("ix_patients_name_key_first_date", "name_key_first", "birth_date"),
    )


class IdentityHistory(Base):
    """Every change of identity traits, attributes or status (PAT-3)."""

    __tablename__ = "identity_history"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    changed_by: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, list[object]]] = mapped_column(JSON)
    status_before: Mapped[str | None] = mapped_column(String(5))
    status_after: Mapped[str] = mapped_column(String(5))


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
    withdrawn_by: Mapped[str | None] = mapped_column(String(64))


class Habilitation(HabilitationRow, Base):
    """Read model kept from cercle's events: who may see which file (for the file list)."""


# The patient file's panels and the file list live in their own module, on this metadata.
from dossier import models_file  # noqa: E402,F401
