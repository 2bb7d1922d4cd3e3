"""HTTP handlers of the cercle contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from cercle import usecases
from chassis.web import current_actor, service_context


def get_circle(patient_id: str) -> dict[str, Any]:
    return usecases.get_circle(service_context().db, current_actor(), patient_id)


def add_member(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    member = usecases.add_member(service_context().db, current_actor(), patient_id, body)
    location = f"/api/patients/{member['patient_id']}/circle/members/{member['id']}"
    return member, 201, {"Location": location}


def get_member(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.get_member(service_context().db, current_actor(), patient_id, member_id)


def remove_member(patient_id: str, member_id: str) -> tuple[str, int]:
    usecases.remove_member(service_context().db, current_actor(), patient_id, member_id)
    return "", 204


def grant_habilitation(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.grant_habilitation(service_context().db, current_actor(), patient_id, member_id)


def revoke_habilitation(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.revoke_habilitation(service_context().db, current_actor(), patient_id, member_id)


def get_decision(patient_id: str) -> dict[str, Any]:
    return usecases.decision(service_context().db, current_actor(), patient_id)
