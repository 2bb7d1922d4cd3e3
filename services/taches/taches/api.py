"""HTTP handlers of the taches contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from chassis.web import current_actor, service_context
from taches import usecases

# Query parameters of the dashboard filters (TSK-4), passed through to the use cases.
FILTERS = ("context", "status", "level", "type", "patient_id", "recipient", "zone", "action")
FILTERS += ("due_from", "due_to", "sort", "order")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    return {name: params[name] for name in FILTERS if params.get(name) not in (None, [], "")}


def create_task(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    task = usecases.create_task(service_context().db, current_actor(), patient_id, body)
    return task, 201, {"Location": f"/api/tasks/{task['id']}"}


def list_patient_tasks(patient_id: str, limit: int = 50, offset: int = 0, **params: Any) -> dict[str, Any]:
    return usecases.list_patient_tasks(service_context().db, patient_id, _filters(params), limit, offset)


def list_my_tasks(limit: int = 50, offset: int = 0, **params: Any) -> dict[str, Any]:
    return usecases.dashboard(service_context().db, current_actor(), _filters(params), limit, offset)


def export_my_tasks(format: str = "csv", **params: Any) -> tuple[bytes, int, dict[str, str]]:  # noqa: A002
    db, actor, filters = service_context().db, current_actor(), _filters(params)
    if format == "xlsx":
        content, media_type = usecases.export_xlsx(db, actor, filters), XLSX
    else:
        content, media_type = usecases.export_csv(db, actor, filters), "text/csv"
    headers = {
        "Content-Type": media_type,
        "Content-Disposition": f'attachment; filename="taches.{format}"',
        "Cache-Control": "private, no-store",
    }
    return content, 200, headers


def list_orphaned_tasks(limit: int = 50, offset: int = 0, **params: Any) -> dict[str, Any]:
    return usecases.orphaned_tasks(service_context().db, current_actor(), _filters(params), limit, offset)


def get_task(task_id: str) -> dict[str, Any]:
    return usecases.get_task(service_context().db, current_actor(), task_id)


def update_task(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.update_task(service_context().db, current_actor(), task_id, body)


def get_task_history(task_id: str) -> dict[str, Any]:
    return usecases.task_history(service_context().db, current_actor(), task_id)


def change_task_status(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.change_status(service_context().db, current_actor(), task_id, body["status"])


def reassign_task(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.reassign_task(service_context().db, current_actor(), task_id, body)


def list_task_types(include_inactive: bool = False) -> dict[str, Any]:
    return usecases.list_task_types(service_context().db, include_inactive)


def create_task_type(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return usecases.create_task_type(service_context().db, current_actor(), body), 201


def update_task_type(code: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.update_task_type(service_context().db, current_actor(), code, body)
