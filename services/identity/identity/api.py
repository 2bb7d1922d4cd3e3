"""HTTP handlers of the identity contract: parse, call a use case, shape the response."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chassis.db import utcnow
from chassis.problems import forbidden
from chassis.web import current_actor, service_context
from identity import terms, usecases
from identity import usecases_delegation as delegations
from identity.domain_delegation import Action


def get_me() -> dict[str, Any]:
    return usecases.me(service_context().db, current_actor().person_id)


def search_persons(
    q: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    profession: str | None = None,
    structure_id: str | None = None,
    has_account: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    return usecases.search_persons(
        service_context().db,
        q=q,
        city=city,
        postal_code=postal_code,
        profession=profession,
        structure_id=structure_id,
        has_account=has_account,
        limit=limit,
        offset=offset,
    )


def get_person(person_id: str) -> dict[str, Any]:
    return usecases.person_entry(service_context().db, person_id)


def search_structures(
    q: str | None = None,
    kind: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    return usecases.search_structures(
        service_context().db, q=q, kind=kind, city=city, postal_code=postal_code, limit=limit, offset=offset
    )


def get_structure(structure_id: str) -> dict[str, Any]:
    return usecases.structure_entry(service_context().db, structure_id)


def list_professions() -> dict[str, Any]:
    return usecases.list_professions(service_context().db)


def _require_admin() -> str:
    actor = current_actor()
    if "admin" not in actor.roles:
        raise forbidden("only a platform administrator may create accounts")
    return actor.person_id


def create_person(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    admin_id = _require_admin()
    person = usecases.create_person(service_context().db, admin_id, body)
    return person, 201, {"Location": f"/api/directory/persons/{person['id']}"}


def create_structure(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    admin_id = _require_admin()
    structure = usecases.create_structure(service_context().db, admin_id, body)
    return structure, 201, {"Location": f"/api/directory/structures/{structure['id']}"}


# -- terms of use (ID-2) ---------------------------------------------------------


def get_terms() -> dict[str, Any]:
    return terms.current()


def accept_terms(body: dict[str, Any]) -> dict[str, Any]:
    return usecases.accept_terms(service_context().db, current_actor().person_id, body["version"], now=_now())


# -- delegation (ID-6) -------------------------------------------------------------


def _now() -> datetime:
    clock: Callable[[], datetime] = service_context().extras.get("clock", utcnow)
    return clock()


def _as_person() -> str:
    """Delegations are managed connected as a person ("connecté en personne physique")."""
    actor = current_actor()
    if actor.structure_id is not None:
        raise forbidden("delegations are managed as a person, not while acting as a structure")
    return actor.person_id


def request_delegation(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    created = delegations.request_delegation(service_context().db, _as_person(), body, now=_now())
    return created, 201, {"Location": f"/api/delegations/{created['id']}"}


def list_given_delegations(status: str | None = None) -> dict[str, Any]:
    return delegations.list_delegations(
        service_context().db, _as_person(), "given", status=status, now=_now()
    )


def list_received_delegations(status: str | None = None) -> dict[str, Any]:
    return delegations.list_delegations(
        service_context().db, _as_person(), "received", status=status, now=_now()
    )


def delegation_pending_count() -> dict[str, Any]:
    return delegations.pending_count(service_context().db, _as_person(), now=_now())


def get_delegation(delegation_id: str) -> dict[str, Any]:
    return delegations.get_delegation(service_context().db, _as_person(), delegation_id, now=_now())


def accept_delegation(delegation_id: str) -> dict[str, Any]:
    return delegations.decide(service_context().db, _as_person(), delegation_id, Action.ACCEPT, now=_now())


def refuse_delegation(delegation_id: str) -> dict[str, Any]:
    return delegations.decide(service_context().db, _as_person(), delegation_id, Action.REFUSE, now=_now())


def revoke_delegation(delegation_id: str) -> dict[str, Any]:
    return delegations.decide(service_context().db, _as_person(), delegation_id, Action.REVOKE, now=_now())
