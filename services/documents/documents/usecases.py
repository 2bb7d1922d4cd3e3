"""Documents use cases: each owns its transaction and writes its events to the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from chassis.auth import Actor
from chassis.db import Database, new_id, utcnow
from chassis.problems import Problem, forbidden, invalid, not_found
from documents import domain
from documents.blobs import BlobStore
from documents.models import Document


@dataclass(frozen=True)
class Upload:
    """What the HTTP layer read from the multipart request."""

    filename: str
    content: bytes
    title: str
    class_code: str
    type_code: str | None
    sharing: str


@dataclass(frozen=True)
class Content:
    content: bytes
    content_type: str
    filename: str


def _refuse(exc: domain.DocumentRuleError) -> Problem:
    if exc.status == 413:
        return Problem(413, "Content too large", exc.detail, field=exc.field)
    return invalid(exc.field, exc.detail)


def add_document(
    db: Database, blobs: BlobStore, actor: Actor, patient_id: str, upload: Upload
) -> dict[str, Any]:
    """DOC-1 / DOC-4: check, store the content, then commit the metadata and DocumentAdded."""
    try:
        title = domain.check_title(upload.title)
        domain.check_categories(upload.class_code, upload.type_code)
        if upload.sharing not in domain.SHARING_MODES:
            raise domain.DocumentRuleError("sharing", "sharing must be public or shared")
        content_type = domain.check_content(upload.filename, upload.content)
    except domain.DocumentRuleError as exc:
        raise _refuse(exc) from exc

    # The blob is durable before the metadata commits: a committed row always has its
    # content. A failed commit leaves at worst an unreferenced blob, never a dangling row.
    sha256 = blobs.put(upload.content)
    document = Document(
        id=new_id(),
        patient_id=patient_id,
        title=title,
        filename=domain.safe_filename(upload.filename, content_type),
        class_code=upload.class_code,
        type_code=upload.type_code,
        content_type=content_type,
        size=len(upload.content),
        sha256=sha256,
        sharing=upload.sharing,
        uploaded_by=actor.person_id,
        uploaded_at=utcnow(),
    )
    with db.unit_of_work(actor.person_id) as uow:
        uow.session.add(document)
        # Codes and ids only: the title and file name may say what the patient has.
        uow.emit(
            "DocumentAdded",
            subject=patient_id,
            data={
                "document_id": document.id,
                "patient_id": patient_id,
                "class_code": document.class_code,
                "type_code": document.type_code,
                "content_type": content_type,
                "size": document.size,
                "sharing": document.sharing,
                "uploaded_by": actor.person_id,
            },
        )
        uow.commit()
    # A concurrent deletion of a document with the same content may have removed the blob
    # between put and commit; putting again (a no-op when present) restores it.
    blobs.put(upload.content)
    return document_view(document)


def document_view(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "patient_id": document.patient_id,
        "title": document.title,
        "filename": document.filename,
        "class_code": document.class_code,
        "class_label": domain.CLASS_BY_CODE[document.class_code].label,
        "type_code": document.type_code,
        "type_label": domain.TYPE_BY_CODE[document.type_code].label if document.type_code else None,
        "content_type": document.content_type,
        "size": document.size,
        "sha256": document.sha256,
        "sharing": document.sharing,
        "uploaded_by": document.uploaded_by,
        "uploaded_at": document.uploaded_at.isoformat(),
        "deletable_until": domain.deletable_until(document.uploaded_at).isoformat(),
    }


def list_documents(
    db: Database,
    patient_id: str,
    *,
    class_code: str | None,
    type_code: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """DOC-3: the patient's documents, newest first, filtered by class and type."""
    # Access was decided by the gateway with cercle (the owner of habilitations).
    query = select(Document).where(Document.patient_id == patient_id)
    if class_code is not None:
        query = query.where(Document.class_code == class_code)
    if type_code is not None:
        query = query.where(Document.type_code == type_code)
    with db.session_factory() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = query.order_by(Document.uploaded_at.desc(), Document.id).limit(limit).offset(offset)
        items = [document_view(d) for d in session.scalars(page)]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _get(db: Database, patient_id: str, document_id: str) -> Document:
    with db.session_factory() as session:
        document = session.get(Document, document_id)
        # A document of another patient is "not found": the path's patient is what was habilitated.
        if document is None or document.patient_id != patient_id:
            raise not_found("document")
        session.expunge(document)
        return document


def get_content(db: Database, blobs: BlobStore, patient_id: str, document_id: str) -> Content:
    document = _get(db, patient_id, document_id)
    return Content(blobs.get(document.sha256), document.content_type, document.filename)


def delete_document(
    db: Database, blobs: BlobStore, actor: Actor, patient_id: str, document_id: str, now: datetime
) -> None:
    """DOC-5: the uploader within 24 hours; later, or anyone else, needs a right."""
    with db.unit_of_work(actor.person_id) as uow:
        document = uow.session.get(Document, document_id)
        if document is None or document.patient_id != patient_id:
            raise not_found("document")
        if not domain.may_delete(
            uploaded_by=document.uploaded_by,
            uploaded_at=document.uploaded_at,
            person_id=actor.person_id,
            now=now,
        ):
            raise forbidden(
                "only the uploader may delete a document, within 24 hours of its upload; "
                "after that, deletion needs a right"
            )
        sha256 = document.sha256
        uow.session.delete(document)
        uow.commit()
    # The same content may back another document: drop the blob only when nothing refers to it.
    with db.session_factory() as session:
        still_used = session.scalar(select(func.count()).where(Document.sha256 == sha256)) or 0
    if not still_used:
        blobs.delete(sha256)
