"""HTTP handlers of the taches contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from chassis.web import current_actor, service_context
from taches import usecases


def create_task(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    task = usecases.create_task(service_context().db, current_actor(), patient_id, body)
    return task, 201, {"Location": f"/api/tasks/{task['id']}"}


def list_patient_tasks(
    patient_id: str,
    status: list[str] | None = None,
    level: list[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    return usecases.list_patient_tasks(
        service_context().db, patient_id, statuses=status, levels=level, limit=limit, offset=offset
    )


def list_my_tasks(
    status: list[str] | None = None,
    level: list[str] | None = None,
    patient_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    return usecases.dashboard(
        service_context().db,
        current_actor(),
        statuses=status,
        levels=level,
        patient_id=patient_id,
        limit=limit,
        offset=offset,
    )


def get_task(task_id: str) -> dict[str, Any]:
    return usecases.get_task(service_context().db, current_actor(), task_id)


def change_task_status(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.change_status(service_context().db, current_actor(), task_id, body["status"])
