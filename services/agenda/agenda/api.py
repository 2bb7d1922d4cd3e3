"""HTTP handlers of the agenda contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from agenda import ical, usecases
from chassis.db import utcnow
from chassis.web import current_actor, service_context


def list_appointment_types() -> dict[str, Any]:
    return usecases.list_types(service_context().db, current_actor())


def add_appointment_type(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return usecases.add_type(service_context().db, current_actor(), body), 201


def schedule_patient_appointment(
    patient_id: str, body: dict[str, Any]
) -> tuple[dict[str, Any], int, dict[str, str]]:
    appointment = usecases.schedule(service_context().db, current_actor(), patient_id, body)
    location = f"/api/patients/{patient_id}/appointments/{appointment['id']}"
    return appointment, 201, {"Location": location}


def list_patient_appointments(patient_id: str, **window: str) -> dict[str, Any]:
    # `from` is a Python keyword: the window comes as keyword arguments.
    return usecases.list_for_patient(service_context().db, patient_id, window.get("from"), window.get("to"))


def get_patient_appointment(patient_id: str, appointment_id: str) -> dict[str, Any]:
    return usecases.get_appointment(service_context().db, current_actor(), patient_id, appointment_id)


def change_patient_appointment(patient_id: str, appointment_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.change(service_context().db, current_actor(), patient_id, appointment_id, body)


def cancel_patient_appointment(patient_id: str, appointment_id: str) -> tuple[None, int]:
    usecases.cancel(service_context().db, current_actor(), patient_id, appointment_id)
    return None, 204


def schedule_appointment(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    appointment = usecases.schedule(service_context().db, current_actor(), None, body)
    return appointment, 201, {"Location": f"/api/appointments/{appointment['id']}"}


def my_calendar(**window: str) -> dict[str, Any]:
    items = usecases.my_calendar(service_context().db, current_actor(), window.get("from"), window.get("to"))
    return {"items": items}


def get_appointment(appointment_id: str) -> dict[str, Any]:
    return usecases.get_appointment(service_context().db, current_actor(), None, appointment_id)


def change_appointment(appointment_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.change(service_context().db, current_actor(), None, appointment_id, body)


def cancel_appointment(appointment_id: str) -> tuple[None, int]:
    usecases.cancel(service_context().db, current_actor(), None, appointment_id)
    return None, 204


def my_calendar_ics(**window: str) -> tuple[bytes, int, dict[str, str]]:
    actor = current_actor()
    items = usecases.my_calendar(service_context().db, actor, window.get("from"), window.get("to"))
    body = ical.calendar_ics(items, name="Coordo", stamp=utcnow())
    # Flask names the charset (utf-8, also RFC 5545's default) after the declared type.
    return body, 200, {"Content-Type": "text/calendar"}
