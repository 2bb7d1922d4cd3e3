"""Demo patients for the embedded and local distributed modes (`coordo run`, `coordo migrate --demo`).

`COORDO_DEMO_PATIENTS` synthetic patients (default 1,000; 0 for none; the test suites set 0)
from `dossier.demo_patients`, created by the demo coordinator: two in three while acting as
the demo DAC (the structure owns them), one in three in her own name.
Each one is announced with `PatientCreated` like a real creation, so `cercle` builds its
circle and habilitation, and the file list fills as those events come back: the demo goes
through the same paths as real use instead of writing other services' state.
Loaded once: a database that already has patients is left as it is (a restart keeps data).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, insert, select

from chassis.db import Database
from chassis.settings import Settings, env
from dossier.demo_patients import generate
from dossier.models import Patient

log = logging.getLogger(__name__)

DEFAULT_DEMO_PATIENTS = 1000


def demo_id(key: str) -> str:
    """The demo accounts' ids: the same convention as identity's demo data, without importing it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordo-demo/{key}"))


def load_demo_data(_settings: Settings, db: Database) -> None:
    count = int(env("COORDO_DEMO_PATIENTS") or DEFAULT_DEMO_PATIENTS)
    if count <= 0:
        return
    coordinator, dac = demo_id("coordinateur"), demo_id("dac")
    with db.unit_of_work(coordinator) as uow:
        if uow.session.scalar(select(func.count()).select_from(Patient)):
            return
        rows = list(generate(count, seed=2026, owner=("structure", dac), created_by=coordinator))
        for index, row in enumerate(rows):
            if index % 3 == 2:
                row["owner_kind"], row["owner_id"] = "person", coordinator
        uow.session.execute(insert(Patient.__table__), rows)
        for row in rows:
            uow.emit(
                "PatientCreated",
                subject=row["id"],
                data={
                    "patient_id": row["id"],
                    "created_by": coordinator,
                    "owner_kind": row["owner_kind"],
                    "owner_id": row["owner_id"],
                    "aggregate_version": 1,
                },
            )
        uow.commit()
    log.info("demo patients created", extra={"count": count})
