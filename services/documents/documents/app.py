"""Composition root of the documents service (nothing connects at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import connexion
from connexion.middleware import MiddlewarePosition

from chassis.db import Database
from chassis.problems import Problem
from chassis.service import ServiceDefinition
from chassis.settings import Settings
from chassis.web import send_problem
from documents import domain
from documents.blobs import BlobStore, default_blob_dir
from documents.consumers import subscriptions
from documents.models import metadata

# Room for the multipart envelope and the other form fields around a file at the limit.
MAX_UPLOAD_REQUEST_BYTES = domain.MAX_DOCUMENT_BYTES + 256 * 1024


class UploadSizeGuard:
    """Refuses an announced oversized body before connexion parses it (DOC-4).

    The use case checks the real file size too; this only spares parsing and spooling a
    body that can only be refused.
    """

    def __init__(self, app: Any, limit: int = MAX_UPLOAD_REQUEST_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                problem = Problem(
                    413, "Content too large", "file is larger than the 10 MB limit", field="file"
                )
                await send_problem(send, problem, extra_headers=((b"connection", b"close"),))
                return
        await self.app(scope, receive, send)


def _extras(_settings: Settings, _db: Database) -> dict[str, Any]:
    return {"blobs": BlobStore(default_blob_dir())}


def _configure(app: Any, _settings: Settings, _db: Database) -> None:
    app.add_middleware(UploadSizeGuard, position=MiddlewarePosition.BEFORE_EXCEPTION)


SERVICE = ServiceDefinition(
    name="documents",
    import_name=__name__,
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    subscriptions=subscriptions,
    extras=_extras,
    configure_app=_configure,
)


def create_app() -> connexion.AsyncApp | connexion.FlaskApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'documents.app:create_app()'`."""
    return SERVICE.create_process_app()
