"""Tables of the documents service only (content lives in the blob store, by sha256)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.db import UtcDateTime, add_chassis_tables

metadata = MetaData()
add_chassis_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_patient_uploaded", "patient_id", "uploaded_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(200))
    class_code: Mapped[str] = mapped_column(String(20))
    type_code: Mapped[str | None] = mapped_column(String(40))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sharing: Mapped[str] = mapped_column(String(10))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime())
