"""Agenda rules (AGD-1, AGD-3, AGD-4): pure Python, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PARTICIPANT_KINDS = ("person", "structure")
MAX_DURATION = timedelta(days=31)  # beyond this it is a typo, not an appointment


@dataclass(frozen=True)
class AppointmentType:
    code: str
    label: str
    with_patient: bool  # False: an appointment that concerns no patient (e.g. a team meeting)
    structure_id: str | None = None  # None: a default offered to every structure


# AGD-3 defaults, from the booklet; a structure adds its own next to them.
DEFAULT_TYPES: tuple[AppointmentType, ...] = (
    AppointmentType("rdv-adulte", "RDV adulte", True),
    AppointmentType("rdv-enfant", "RDV enfant", True),
    AppointmentType("rdv-personne-agee", "RDV personne âgée", True),
    AppointmentType("rdv-sans-patient", "RDV sans patient", False),
)
DEFAULT_BY_CODE = {t.code: t for t in DEFAULT_TYPES}
_TYPE_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class AgendaRuleError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Participant:
    kind: str
    id: str


def parse_instant(field: str, value: Any) -> datetime:
    """An ISO 8601 date-time with its offset, as UTC. A naive time is ambiguous: refused."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise AgendaRuleError(
                field, f"{field} must be a date-time such as 2026-12-01T09:30:00+01:00"
            ) from exc
    if parsed.tzinfo is None:
        raise AgendaRuleError(field, f"{field} must carry a time zone offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise AgendaRuleError(field, f"{field} is out of the calendar's range") from exc


def check_times(start: datetime, end: datetime) -> None:
    if end <= start:
        raise AgendaRuleError("end", "end must be after start")
    if end - start > MAX_DURATION:
        raise AgendaRuleError("end", "an appointment lasts at most 31 days")


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise AgendaRuleError("to", "to must be after from")


def check_text(field: str, value: str | None, *, required: bool) -> str | None:
    cleaned = " ".join((value or "").split())
    if not cleaned:
        if required:
            raise AgendaRuleError(field, f"{field} must not be blank")
        return None
    return cleaned


def participants(raw: list[dict[str, Any]] | None, default: Participant) -> tuple[Participant, ...]:
    """Distinct participants in the given order; the creator alone when none is given."""
    if not raw:
        return (default,)
    seen: dict[tuple[str, str], Participant] = {}
    for index, item in enumerate(raw):
        kind, ident = item.get("kind"), str(item.get("id", "")).strip()
        if kind not in PARTICIPANT_KINDS:
            raise AgendaRuleError(f"participants[{index}].kind", "kind must be person or structure")
        if not ident:
            raise AgendaRuleError(f"participants[{index}].id", "id must not be blank")
        seen.setdefault((kind, ident), Participant(kind, ident))
    return tuple(seen.values())


def check_type_for(appointment_type: AppointmentType, *, has_patient: bool) -> None:
    if appointment_type.with_patient and not has_patient:
        raise AgendaRuleError("type", f"type {appointment_type.code} needs a patient")
    if not appointment_type.with_patient and has_patient:
        raise AgendaRuleError("type", f"type {appointment_type.code} is for appointments without a patient")


def new_type_code(code: str) -> str:
    if not _TYPE_CODE.match(code):
        raise AgendaRuleError("code", "code must be lower-case letters, digits and hyphens (at most 40)")
    if code in DEFAULT_BY_CODE:
        raise AgendaRuleError("code", f"code {code} is a default type")
    return code


def overlaps(
    start: datetime, end: datetime, window_from: datetime | None, window_to: datetime | None
) -> bool:
    """An appointment shows in a window when they overlap (half-open intervals)."""
    return (window_to is None or start < window_to) and (window_from is None or end > window_from)
