"""HTTP handlers of the dossier contract: parse, call a use case, shape the response."""

from __future__ import annotations

from datetime import date
from typing import Any

from chassis.web import current_actor, service_context
from dossier import usecases


def _today() -> date:
    return date.today()


def create_patient(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    ctx = service_context()
    patient = usecases.create_patient(ctx.db, current_actor(), body, _today())
    return patient, 201, {"Location": f"/api/patients/{patient['id']}"}


def get_patient(patient_id: str) -> dict[str, Any]:
    return usecases.get_patient(service_context().db, patient_id, _today())


def list_patients(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return usecases.list_patients(service_context().db, current_actor(), _today(), limit=limit, offset=offset)
