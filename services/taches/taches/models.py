"""Tables of the taches service only."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[date | None] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_structure: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class TaskRecipient(Base):
    __tablename__ = "task_recipients"
    __table_args__ = (Index("ix_task_recipients_holder", "recipient_kind", "recipient_id"),)

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    recipient_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    recipient_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class TaskStatusChange(Base):
    """The history an annulee task keeps (TSK-3): every move of the cycle, who and when."""

    __tablename__ = "task_status_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class KnownPatient(Base):
    """Read model kept from dossier's PatientCreated: which patient files exist (ids only)."""

    __tablename__ = "known_patients"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    known_since: Mapped[datetime] = mapped_column(UtcDateTime())


class Habilitation(Base):
    """Read model kept from cercle's events: who may see which file (and receive its tasks)."""

    __tablename__ = "habilitations"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
