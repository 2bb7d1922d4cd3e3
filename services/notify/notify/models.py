"""Tables of the notify service only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Person(Base):
    """Read model kept from identity's UserRegistered: how to address a person."""

    __tablename__ = "persons"

    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(250))
    email: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PersonStructure(Base):
    """Which persons belong to a structure: a task for a structure notifies each of them."""

    __tablename__ = "person_structures"

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.person_id"), primary_key=True)
    structure_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Notification(Base):
    """An in-application notification (NOT-1: the bell)."""

    __tablename__ = "notifications"
    __table_args__ = (
        # A second guard besides processed_messages: one notification per event and person.
        UniqueConstraint("source_event_id", "person_id", name="uq_notifications_event_person"),
        Index("ix_notifications_person_created", "person_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(500))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_event_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OutgoingEmail(Base):
    """An e-mail to send, written in the same transaction as its notification (outbox style)."""

    __tablename__ = "outgoing_emails"
    __table_args__ = (Index("ix_outgoing_emails_pending", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    notification_id: Mapped[str | None] = mapped_column(ForeignKey("notifications.id"))
    person_id: Mapped[str] = mapped_column(String(64))
    # Null until known: the address is looked up again at each attempt.
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))  # pending | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A sender holds a claimed row until then, so two workers never send it both.
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
