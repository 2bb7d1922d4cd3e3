"""Tables of the patient file's panels (PAT-7..PAT-18) and of the file list (SEA-1..SEA-5).

Imported at the end of `dossier.models` so they share its metadata (one migration).
The read models (tasks, appointments, circle, delegations) are kept by events only:
dossier never calls another service at request time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chassis.db import UtcDateTime
from dossier.models import Base

# Byte order on PostgreSQL so that `LIKE 'DUP%'` can use a plain btree index on name keys.
NameKey = String(100).with_variant(String(100, collation="C"), "postgresql")


class PatientLink(Base):
    """PAT-8: a link shows on both files; one row per pair."""

    __tablename__ = "patient_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    linked_patient_id: Mapped[str] = mapped_column(String(36), index=True)
    relation: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FileStatus(Base):
    """PAT-9: the status history of a file, per structure (the latest row is current)."""

    __tablename__ = "file_statuses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    structure_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(40))
    started_on: Mapped[date] = mapped_column(Date)
    exit_reason: Mapped[str | None] = mapped_column(String(40))
    expertise: Mapped[str | None] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Hospitalisation(Base):
    """PAT-10: a past or future stay."""

    __tablename__ = "hospitalisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    establishment: Mapped[str] = mapped_column(String(200))
    planned: Mapped[bool] = mapped_column(Boolean)
    entry_date: Mapped[date] = mapped_column(Date)
    exit_date: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Death(Base):
    """PAT-11: the declared death of a patient (date may be unknown)."""

    __tablename__ = "deaths"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    death_date: Mapped[date | None] = mapped_column(Date)
    country: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))
    place: Mapped[str | None] = mapped_column(String(200))
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Memo(Base):
    """PAT-13: a post-it; `shared_with` lists holders ("person:<id>", "structure:<id>")."""

    __tablename__ = "memos"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    importance: Mapped[str] = mapped_column(String(20))
    sharing: Mapped[str] = mapped_column(String(10))
    shared_with: Mapped[list[str]] = mapped_column(JSON, default=list)
    author_id: Mapped[str] = mapped_column(String(64))
    author_structure: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FeedEntry(Base):
    """PAT-14: one line of the news feed: an event of any service, or a user's note."""

    __tablename__ = "feed_entries"
    __table_args__ = (Index("ix_feed_entries_patient_time", "patient_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(10))  # event | note
    event_type: Mapped[str] = mapped_column(String(60))
    ref_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    importance: Mapped[str] = mapped_column(String(20), default="normal")
    text: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FileProfile(Base):
    """Per-file attributes of the list: residence commune (-> zone), thematics, parcours."""

    __tablename__ = "file_profiles"

    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    commune: Mapped[str | None] = mapped_column(String(5), index=True)
    postal_code: Mapped[str | None] = mapped_column(String(5))
    # ",code1,code2," so that one LIKE filters on SQLite and PostgreSQL alike.
    thematics: Mapped[str] = mapped_column(String(400), default="")
    parcours: Mapped[str | None] = mapped_column(String(40))
    # Current status codes and the structures following the file (PAT-9), for the filters.
    statuses: Mapped[str] = mapped_column(String(400), default="")
    structures: Mapped[str] = mapped_column(String(1000), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TaskView(Base):
    """Read model of taches' tasks (TaskCreated/TaskStatusChanged): open counts, timeline."""

    __tablename__ = "task_views"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)


class AppointmentView(Base):
    """Read model of agenda's appointments (Appointment* events)."""

    __tablename__ = "appointment_views"

    appointment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    type_code: Mapped[str] = mapped_column(String(60))
    start: Mapped[datetime] = mapped_column(UtcDateTime())
    end: Mapped[datetime] = mapped_column(UtcDateTime())
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer)


class CircleMember(Base):
    """Read model of cercle's members (CareCircleMember*, Habilitation*)."""

    __tablename__ = "circle_members"

    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    holder_kind: Mapped[str] = mapped_column(String(10))
    holder_id: Mapped[str] = mapped_column(String(64), index=True)
    roles: Mapped[str] = mapped_column(String(300), default="")  # ",role1,role2,"
    habilitated: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Delegation(Base):
    """Read model of identity's delegations: a delegate sees the grantor's files (SEA-1)."""

    __tablename__ = "delegations"

    delegation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grantor_id: Mapped[str] = mapped_column(String(64))
    delegate_id: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    ends_on: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Zone(Base):
    """PAT-17: a geographic zone defined by an admin as a set of INSEE commune codes."""

    __tablename__ = "zones"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ZoneCommune(Base):
    __tablename__ = "zone_communes"

    zone_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    commune: Mapped[str] = mapped_column(String(5), primary_key=True, index=True)


class Favourite(Base):
    """PAT-18: a starred patient, in an optional named group that may be shared with a structure."""

    __tablename__ = "favourites"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_name: Mapped[str | None] = mapped_column(String(100))
    shared_with_structure: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SavedSearch(Base):
    """SEA-4: filters saved by a person (even when acting as a structure); one default."""

    __tablename__ = "saved_searches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FileListRow(Base):
    """The file list, denormalised per holder ("person:<id>" / "structure:<id>").

    One row per (holder, visible patient) with the columns the hot filters need, so the
    page query is one index range on (holder, last_update) or (holder, name_key): no join
    of habilitations x patients over a million rows. Kept by habilitation events and by
    every change of the patient (see dossier.file_list).
    """

    __tablename__ = "file_list_rows"
    __table_args__ = (
        Index("ix_file_list_rows_holder_update", "holder", "last_update"),
        Index("ix_file_list_rows_holder_name", "holder", "name_key"),
        Index("ix_file_list_rows_holder_used", "holder", "used_key"),
    )

    holder: Mapped[str] = mapped_column(String(80), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    name_key: Mapped[str] = mapped_column(NameKey)
    used_key: Mapped[str | None] = mapped_column(NameKey)
    first_key: Mapped[str] = mapped_column(NameKey)
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    deceased: Mapped[bool] = mapped_column(Boolean, default=False)
    last_update: Mapped[datetime] = mapped_column(UtcDateTime())
