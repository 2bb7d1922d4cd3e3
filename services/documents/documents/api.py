"""HTTP handlers of the documents contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from chassis.db import utcnow
from chassis.web import current_actor, service_context
from documents import domain, usecases
from documents.blobs import BlobStore


def _blobs() -> BlobStore:
    store: BlobStore = service_context().extras["blobs"]
    return store


def list_document_categories() -> dict[str, Any]:
    return domain.category_tree()


def add_document(
    patient_id: str, body: dict[str, Any], file: Any
) -> tuple[dict[str, Any], int, dict[str, str]]:
    # connexion 3 hands form fields in `body` and the part named `file` as a starlette
    # UploadFile (its `file` is spooled to disk past 1 MB; read here, in the handler's thread).
    # Read one byte past the limit: enough to know it is too large without reading it all.
    content = file.file.read(domain.MAX_DOCUMENT_BYTES + 1)
    upload = usecases.Upload(
        filename=file.filename or "",
        content=content,
        title=body.get("title", ""),
        class_code=body["class_code"],
        type_code=body.get("type_code") or None,
        sharing=body.get("sharing", "public"),
    )
    ctx = service_context()
    document = usecases.add_document(ctx.db, _blobs(), current_actor(), patient_id, upload)
    return document, 201, {"Location": f"/api/patients/{patient_id}/documents/{document['id']}"}


def list_documents(
    patient_id: str,
    class_code: str | None = None,
    type_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    return usecases.list_documents(
        service_context().db,
        patient_id,
        class_code=class_code,
        type_code=type_code,
        limit=limit,
        offset=offset,
    )


def _content_disposition(kind: str, filename: str) -> str:
    # An ASCII fallback for old clients, and the exact UTF-8 name (RFC 6266 / RFC 5987).
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def get_document_content(patient_id: str, document_id: str, inline: bool = False) -> Any:
    content = usecases.get_content(service_context().db, _blobs(), patient_id, document_id)
    kind = "inline" if inline and content.content_type in domain.PREVIEWABLE else "attachment"
    headers = {
        # Text was checked as UTF-8 on upload: say so, so that accents survive in the browser.
        "Content-Type": (
            f"{content.content_type}; charset=utf-8"
            if content.content_type.startswith("text/")
            else content.content_type
        ),
        "Content-Disposition": _content_disposition(kind, content.filename),
        # The browser must use the checked type (none of the allowed ones can run scripts).
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    return content.content, 200, headers


def delete_document(patient_id: str, document_id: str) -> tuple[None, int]:
    ctx = service_context()
    usecases.delete_document(ctx.db, _blobs(), current_actor(), patient_id, document_id, utcnow())
    return None, 204
