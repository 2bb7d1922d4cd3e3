"""HTTP handlers of the cercle contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from cercle import usecases
from cercle.clock import Clock
from cercle.domain import HOLDER_ID_MAX
from chassis.problems import Problem
from chassis.web import current_actor, service_context

ACT_FOR = "x-act-for"


def _act_for(person_id: str, structure_id: str | None) -> str | None:
    """X-Act-For: the grantor a delegate acts for (ID-6), forwarded by the gateway."""
    from connexion.context import request

    value = (request.headers.get(ACT_FOR) or "").strip()
    if not value or value == person_id:
        return None
    if len(value) > HOLDER_ID_MAX:
        raise Problem(400, "Bad request", "X-Act-For is not a person id", field="X-Act-For")
    if structure_id is not None:
        # Acting for a grantor gives the grantor's access only; mixing both would blur who acts.
        raise Problem(400, "Bad request", "X-Act-For cannot be combined with X-Act-As", field="X-Act-For")
    return value


def _caller() -> usecases.Caller:
    actor = current_actor()
    clock: Clock = service_context().extras["clock"]
    return usecases.Caller(actor, _act_for(actor.person_id, actor.structure_id), clock.now())


def _db() -> Any:
    return service_context().db


def get_circle(patient_id: str) -> dict[str, Any]:
    return usecases.get_circle(_db(), _caller(), patient_id)


def add_member(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    member = usecases.add_member(_db(), _caller(), patient_id, body)
    location = f"/api/patients/{member['patient_id']}/circle/members/{member['id']}"
    return member, 201, {"Location": location}


def add_manual_member(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    member = usecases.add_manual_member(_db(), _caller(), patient_id, body)
    location = f"/api/patients/{member['patient_id']}/circle/members/{member['id']}"
    return member, 201, {"Location": location}


def get_member(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.get_member(_db(), _caller(), patient_id, member_id)


def update_member(patient_id: str, member_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return usecases.update_member(_db(), _caller(), patient_id, member_id, body)


def remove_member(patient_id: str, member_id: str) -> tuple[None, int]:
    usecases.remove_member(_db(), _caller(), patient_id, member_id)
    return None, 204


def grant_habilitation(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.grant_habilitation(_db(), _caller(), patient_id, member_id)


def revoke_habilitation(patient_id: str, member_id: str) -> dict[str, Any]:
    return usecases.revoke_habilitation(_db(), _caller(), patient_id, member_id)


def invite(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return usecases.invite(_db(), _caller(), patient_id, body), 201


def list_invitations(patient_id: str) -> dict[str, Any]:
    return usecases.list_invitations(_db(), _caller(), patient_id)


def bulk(body: dict[str, Any]) -> dict[str, Any]:
    return usecases.bulk(_db(), _caller(), body)


def break_glass(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return usecases.break_glass(_db(), _caller(), body), 201


def my_break_glass(patient_id: str | None = None) -> dict[str, Any]:
    return usecases.my_break_glass(_db(), _caller(), patient_id)


def end_break_glass(grant_id: str) -> dict[str, Any]:
    return usecases.end_break_glass(_db(), _caller(), grant_id)


def review_break_glass() -> dict[str, Any]:
    return usecases.review_break_glass(_db(), _caller())


def get_decision(patient_id: str) -> dict[str, Any]:
    return usecases.decision(_db(), _caller(), patient_id)
