"""HTTP handlers of the identity contract: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Any

from chassis.problems import forbidden
from chassis.web import current_actor, service_context
from identity import usecases


def get_me() -> dict[str, Any]:
    return usecases.me(service_context().db, current_actor().person_id)


def search_persons(
    q: str | None = None,
    city: str | None = None,
    postal_code: str | None = None,
    profession: str | None = None,
    structure_id: str | None = None,
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
