"""HTTP handlers of the notify contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from chassis.web import current_actor, service_context
from notify import usecases


def list_notifications(unread_only: bool = False, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return usecases.list_notifications(
        service_context().db, current_actor(), unread_only=unread_only, limit=limit, offset=offset
    )


def unread_count() -> dict[str, Any]:
    return usecases.unread_count(service_context().db, current_actor())


def mark_read(notification_id: str) -> dict[str, Any]:
    return usecases.mark_read(service_context().db, current_actor(), notification_id)


def mark_all_read() -> dict[str, Any]:
    return usecases.mark_all_read(service_context().db, current_actor())


def list_types() -> dict[str, Any]:
    return usecases.catalogue()


def get_preferences() -> dict[str, Any]:
    return usecases.preferences(service_context().db, current_actor())


def set_preference(type: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: A002 - the path names it
    return usecases.set_preference(service_context().db, current_actor(), type, body)


def reset_preferences(body: dict[str, Any] | None = None) -> dict[str, Any]:
    return usecases.reset_preferences(service_context().db, current_actor(), (body or {}).get("group"))


def set_delivery(body: dict[str, Any]) -> dict[str, Any]:
    return usecases.set_delivery(service_context().db, current_actor(), body)
