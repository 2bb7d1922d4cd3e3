"""RFC 9457 problem details: one exception type for use cases, one renderer for the web."""

from __future__ import annotations

from datetime import date
from typing import Any

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """A use case refuses a request; `field` names the offending input when there is one."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        type_: str = "about:blank",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.type = type_
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        body["detail"] = self.detail
        if self.field:
            body["field"] = self.field
            body["errors"] = [{"field": self.field, "detail": self.detail}]
        body.update(self.extra)
        return body


def invalid(field: str, detail: str) -> Problem:
    return Problem(422, "Invalid input", detail, field=field)


def date_field(field: str, value: Any, *, required: bool = False) -> date | None:
    """An input date (ISO, YYYY-MM-DD): None when empty and not required, else a 422 naming it."""
    if isinstance(value, date):
        return value
    if value in (None, "") and not required:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise invalid(field, f"{field} must be a date as YYYY-MM-DD") from exc


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} not found")


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)


def conflict(detail: str, **extra: Any) -> Problem:
    return Problem(409, "Conflict", detail, extra=extra)
