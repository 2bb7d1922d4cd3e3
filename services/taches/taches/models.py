"""Tables of the taches service only."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables
from chassis.readmodels import HabilitationRow

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
    zone: Mapped[str | None] = mapped_column(String(64), index=True)
    form_id: Mapped[str | None] = mapped_column(String(36))
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_structure: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The due date TaskDueSoon was emitted for: once per task and due date, across restarts.
    due_soon_sent_for: Mapped[date | None] = mapped_column(Date)


class TaskRecipient(Base):
    __tablename__ = "task_recipients"
    # The dashboard starts from "my open rows that are not orphaned": the task's status and
    # due date are copied here so that this index alone narrows it (tests/bench/dashboard.py).
    __table_args__ = (
        Index(
            "ix_task_recipients_inbox",
            "recipient_kind",
            "recipient_id",
            "orphaned_at",
            "task_status",
            "task_due_date",
        ),
    )

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    recipient_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    recipient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Set when the recipient lost its habilitation on the patient: the task leaves its
    # dashboard and waits for a structure super user to reassign it.
    orphaned_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Copies of the task's status and due date, kept in step by the use cases.
    task_status: Mapped[str] = mapped_column(String(20))
    task_due_date: Mapped[date | None] = mapped_column(Date)


class TaskPatient(Base):
    """Other patients a task concerns (linked files, PAT-8); the main patient is on the task."""

    __tablename__ = "task_patients"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class TaskDocument(Base):
    """Documents attached to a task (ids in the documents service)."""

    __tablename__ = "task_documents"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class TaskChange(Base):
    """The history a task keeps (TSK-3): every status move and every edit, who and when."""

    __tablename__ = "task_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(40))
    from_value: Mapped[str | None] = mapped_column(Text)
    to_value: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TaskType(Base):
    """The configurable list of task types (TSK-1), seeded with the booklet's, edited by admins."""

    __tablename__ = "task_types"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(120))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class KnownPatient(Base):
    """Read model kept from dossier's PatientCreated: which patient files exist (ids only)."""

    __tablename__ = "known_patients"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    known_since: Mapped[datetime] = mapped_column(UtcDateTime())


class Habilitation(HabilitationRow, Base):
    """Read model kept from cercle's events: who may see which file (and receive its tasks)."""


class PatientLink(Base):
    """Read model kept from dossier's PatientsLinked/PatientsUnlinked (PAT-8)."""

    __tablename__ = "patient_links"

    link_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    linked_patient_id: Mapped[str] = mapped_column(String(36), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PersonStructure(Base):
    """Read model kept from identity's UserRegistered: which structures a person works for
    (whose super users take over its orphaned tasks)."""

    __tablename__ = "person_structures"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    structure_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
