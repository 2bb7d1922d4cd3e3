"""The access journal (CER-10): who accessed a patient's file and when, from the access log.

Served by the gateway itself (contract `gateway/openapi.yaml`) after the habilitation
decision, like any patient-scoped operation. Allowed accesses only (what a member means by
"who saw the file"), newest first, keyset-paginated by row id; ids only, never a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from gateway.audit import access_log

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "JournalQueryError", "PageRequest", "page_request", "read_page"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class JournalQueryError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


# What the gateway records as the ground of an access (cercle's decision bases).
BASES = ("person", "structure", "delegation", "break_glass")


@dataclass(frozen=True)
class PageRequest:
    limit: int
    before: int | None
    basis: str | None = None


def _positive_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise JournalQueryError(name, f"{name} must be a positive integer")
    return int(raw)


def page_request(params: Mapping[str, str]) -> PageRequest:
    """Check the query string; a bad value names its parameter."""
    limit = _positive_int(params, "limit")
    if limit is not None and limit > MAX_LIMIT:
        raise JournalQueryError("limit", f"limit must be at most {MAX_LIMIT}")
    basis = params.get("basis")
    if basis is not None and basis not in BASES:
        raise JournalQueryError("basis", f"basis must be one of {', '.join(BASES)}")
    return PageRequest(limit=limit or DEFAULT_LIMIT, before=_positive_int(params, "before"), basis=basis)


def read_page(engine: Engine, patient_id: str, page: PageRequest) -> dict[str, Any]:
    """One page of the patient's journal (blocking: run it off the event loop)."""
    c = access_log.c
    query = select(
        c.id, c.at, c.person_id, c.structure_id, c.acting_for, c.basis, c.service, c.method, c.path_template
    ).where(c.patient_id == patient_id, c.allowed.is_(True))
    if page.before is not None:
        query = query.where(c.id < page.before)
    if page.basis is not None:
        # e.g. break_glass: what was read under each break-the-glass access, for its review.
        query = query.where(c.basis == page.basis)
    # One more row than asked says whether an older page exists.
    query = query.order_by(c.id.desc()).limit(page.limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return {
        "patient_id": patient_id,
        "items": [
            {
                "id": row.id,
                "at": row.at.isoformat(),
                "person_id": row.person_id,
                "structure_id": row.structure_id,
                "acting_for": row.acting_for,
                "basis": row.basis,
                "service": row.service,
                "method": row.method,
                "operation": row.path_template,
            }
            for row in rows
        ],
        "next_before": rows[-1].id if more and rows else None,
    }
