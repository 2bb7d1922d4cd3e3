"""Tables of the notify service only."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables
from chassis.readmodels import HabilitationRow

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
    """Which persons belong to a structure: a structure's e-mails go to each of them."""

    __tablename__ = "person_structures"

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.person_id"), primary_key=True)
    structure_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Habilitation(HabilitationRow, Base):
    """Read model kept from cercle's events: who is habilitated on which patient (to notify
    the members of a file: decease, feed note, status, document...)."""


class Preference(Base):
    """An owner's choice for one type and one channel (NOT-2); absent: the default applies,
    so a reset is a delete and a new type gets its default for everyone."""

    __tablename__ = "preferences"

    owner_kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # person | structure
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(10), primary_key=True)  # email | in_app
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeliverySetting(Base):
    """How an owner wants its e-mails: one by one or a daily digest, and quiet hours."""

    __tablename__ = "delivery_settings"

    owner_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email_mode: Mapped[str] = mapped_column(String(20))  # immediate | daily_digest
    quiet_start: Mapped[time | None] = mapped_column(Time())
    quiet_end: Mapped[time | None] = mapped_column(Time())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Notification(Base):
    """An in-application notification (NOT-1: the bell), for a person or a structure (seen
    by its members acting as it)."""

    __tablename__ = "notifications"
    __table_args__ = (
        # A second guard besides processed_messages: one notification per event, type and recipient.
        UniqueConstraint(
            "source_event_id",
            "type",
            "recipient_kind",
            "recipient_id",
            name="uq_notifications_event_recipient",
        ),
        Index("ix_notifications_recipient_created", "recipient_id", "recipient_kind", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recipient_kind: Mapped[str] = mapped_column(String(10))  # person | structure
    recipient_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(40))
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
    """An e-mail to send, written in the same transaction as its notification (outbox style).

    `dedup_key` (event, type, addressee) is unique: an event handled twice cannot queue a
    second copy. The row id is the e-mail's Message-ID."""

    __tablename__ = "outgoing_emails"
    __table_args__ = (Index("ix_outgoing_emails_pending", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    notification_id: Mapped[str | None] = mapped_column(ForeignKey("notifications.id"))
    type: Mapped[str] = mapped_column(String(40))
    # The addressee: a person (address looked up again at each try while unknown) or a bare
    # address (an invitation, the directory service centre).
    person_id: Mapped[str | None] = mapped_column(String(64), index=True)
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)  # one line of a daily digest: the text and its link
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # goes out in a daily digest
    status: Mapped[str] = mapped_column(
        String(10)
    )  # pending | sent | merged (into a digest) | rejected (5xx)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A sender holds a claimed row until then, so two workers never send it both.
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
