"""HTTP handlers of the dossier contract: parse, call a use case, shape the response."""

from __future__ import annotations

from datetime import date
from typing import Any

from chassis.web import current_actor, service_context
from dossier import export, file, identity, usecases
from dossier import file_list as file_list_module


def _today() -> date:
    return date.today()


def create_patient(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    ctx = service_context()
    patient = identity.create_patient(ctx.db, current_actor(), body, _today())
    return patient, 201, {"Location": f"/api/patients/{patient['id']}"}


def get_patient(patient_id: str) -> dict[str, Any]:
    return usecases.get_patient(service_context().db, patient_id, _today())


def list_patients(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return usecases.list_patients(service_context().db, current_actor(), _today(), limit=limit, offset=offset)


# -- identity vigilance, identity and consent (dossier/identity.py) --


def identity_search(body: dict[str, Any]) -> dict[str, Any]:
    return identity.identity_search(service_context().db, current_actor(), body, _today())


def update_identity(patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return identity.update_identity(service_context().db, current_actor(), patient_id, body, _today())


def check_identity_document(patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return identity.check_document(service_context().db, current_actor(), patient_id, body, _today())


def query_insi(patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return identity.query_insi(service_context().db, current_actor(), patient_id, _today())


def identity_history(patient_id: str) -> dict[str, Any]:
    return identity.identity_history(service_context().db, patient_id)


def list_consents(patient_id: str) -> dict[str, Any]:
    return identity.list_consents(service_context().db, patient_id)


def record_consent(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return identity.record_consent(service_context().db, current_actor(), patient_id, body, _today()), 201


def withdraw_consent(patient_id: str, consent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return identity.withdraw_consent(
        service_context().db, current_actor(), patient_id, consent_id, body.get("reason", "")
    )


def consent_form(patient_id: str) -> tuple[bytes, int, dict[str, str]]:
    pdf = identity.consent_form_pdf(service_context().db, patient_id, _today())
    headers = {
        "Content-Type": "application/pdf",
        "Content-Disposition": 'attachment; filename="consentement.pdf"',
    }
    return pdf, 200, headers


# -- the patient file, its panels, the file list and exports (dossier/file.py, file_list.py, export.py) --


def _download(content: Any, media_type: str, filename: str) -> tuple[Any, int, dict[str, str]]:
    return (
        content,
        200,
        {"Content-Type": media_type, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def file_overview(patient_id: str) -> dict[str, Any]:
    return file.overview(service_context().db, current_actor(), patient_id, _today())


def list_links(patient_id: str) -> dict[str, Any]:
    with service_context().db.session_factory() as session:
        return {"items": file.links_of(session, patient_id)}


def link_patients(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.link_patients(service_context().db, current_actor(), patient_id, body, _today()), 201


def unlink_patients(patient_id: str, link_id: str) -> tuple[None, int]:
    file.unlink_patients(service_context().db, current_actor(), patient_id, link_id)
    return None, 204


def status_history(patient_id: str) -> dict[str, Any]:
    with service_context().db.session_factory() as session:
        return {
            "items": file.status_history(session, patient_id),
            "current": file.current_status_rows(session, patient_id),
        }


def set_file_status(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.set_status(service_context().db, current_actor(), patient_id, body, _today()), 201


def closing_checklist(patient_id: str, structure_id: str | None = None) -> dict[str, Any]:
    return file.closing_checklist(service_context().db, current_actor(), patient_id, structure_id)


def close_file(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.close_file(service_context().db, current_actor(), patient_id, body, _today()), 201


def list_hospitalisations(patient_id: str) -> dict[str, Any]:
    with service_context().db.session_factory() as session:
        return {"items": file.stays_of(session, patient_id, _today())}


def add_hospitalisation(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.add_hospitalisation(service_context().db, current_actor(), patient_id, body, _today()), 201


def declare_death(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.declare_death(service_context().db, current_actor(), patient_id, body, _today()), 201


def list_memos(patient_id: str) -> dict[str, Any]:
    with service_context().db.session_factory() as session:
        return {"items": file.memos_for(session, current_actor(), patient_id)}


def add_memo(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.add_memo(service_context().db, current_actor(), patient_id, body), 201


def update_memo(patient_id: str, memo_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return file.update_memo(service_context().db, current_actor(), patient_id, memo_id, body)


def delete_memo(patient_id: str, memo_id: str) -> tuple[None, int]:
    file.delete_memo(service_context().db, current_actor(), patient_id, memo_id)
    return None, 204


def patient_feed(patient_id: str, filter: list[str] | None = None, limit: int = 50) -> dict[str, Any]:  # noqa: A002
    return file.feed(service_context().db, patient_id, filter or [], limit)


def add_feed_note(patient_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.add_feed_note(service_context().db, current_actor(), patient_id, body), 201


def patient_timeline(patient_id: str, period: str = "year") -> dict[str, Any]:
    return file.timeline(service_context().db, patient_id, period, _today())


def update_file_profile(patient_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return file.update_profile(service_context().db, current_actor(), patient_id, body)


def star_patient(patient_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return file.star(service_context().db, current_actor(), patient_id, body or {})


def unstar_patient(patient_id: str) -> tuple[None, int]:
    file.unstar(service_context().db, current_actor(), patient_id)
    return None, 204


def list_favourites() -> dict[str, Any]:
    return file.list_favourites(service_context().db, current_actor(), _today())


def update_favourite_group(group_name: str, body: dict[str, Any]) -> dict[str, Any]:
    return file.update_favourite_group(service_context().db, current_actor(), group_name, body, _today())


def list_zones() -> dict[str, Any]:
    return {"items": file.list_zones(service_context().db)}


def create_zone(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file.create_zone(service_context().db, current_actor(), body), 201


def delete_zone(zone_id: str) -> tuple[None, int]:
    file.delete_zone(service_context().db, current_actor(), zone_id)
    return None, 204


def export_patient(patient_id: str, format: str = "html") -> tuple[Any, int, dict[str, str]]:  # noqa: A002
    return _download(
        *export.export_patient(service_context().db, current_actor(), patient_id, format, _today())
    )


_LIST_PARAMS = ("sort", "order", "page", "page_size", "saved_search_id", "format")


def _list_filters() -> dict[str, Any]:
    # Filters are many and optional: read them from the query string as given (the
    # contract declares each one, so an unknown parameter is already refused).
    from connexion.context import request

    raw: dict[str, Any] = {}
    for key in request.query_params.keys():
        if key in _LIST_PARAMS:
            continue
        values = request.query_params.getlist(key)
        raw[key] = values if len(values) > 1 else values[0]
    return raw


def file_list(
    sort: str = "last_update",
    order: str = "desc",
    page: int = 1,
    page_size: int = 10,
    saved_search_id: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    return file_list_module.file_list(
        service_context().db,
        current_actor(),
        _list_filters(),
        _today(),
        sort=sort,
        order=order,
        page=page,
        page_size=page_size,
        saved_search_id=saved_search_id,
    )


def export_file_list(
    format: str, sort: str = "last_update", order: str = "desc", **_: Any
) -> tuple[bytes, int, dict[str, str]]:  # noqa: A002
    return _download(
        *file_list_module.export_list(
            service_context().db,
            current_actor(),
            _list_filters(),
            _today(),
            fmt=format,
            sort=sort,
            order=order,
        )
    )


def list_saved_searches() -> dict[str, Any]:
    return {"items": file_list_module.list_saved_searches(service_context().db, current_actor())}


def save_search(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return file_list_module.save_search(service_context().db, current_actor(), body), 201


def update_saved_search(search_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return file_list_module.update_saved_search(service_context().db, current_actor(), search_id, body)


def delete_saved_search(search_id: str) -> tuple[None, int]:
    file_list_module.delete_saved_search(service_context().db, current_actor(), search_id)
    return None, 204
