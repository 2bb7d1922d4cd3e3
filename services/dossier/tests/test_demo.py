"""The demo patients: announced like real creations, loaded once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from dossier.app import SERVICE
from dossier.demo import demo_id, load_demo_data


def test_demo_patients_are_announced_like_real_creations_and_loaded_once(
    var_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COORDO_DEMO_PATIENTS", "30")
    settings = SERVICE.settings()
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    try:
        load_demo_data(settings, db)
        load_demo_data(settings, db)  # a restart keeps what is there
        with db.session_factory() as session:
            patients = session.execute(select(db.metadata.tables["patients"])).mappings().all()
            events = [row.envelope for row in session.execute(select(db.outbox)).all()]
    finally:
        db.dispose()
    assert len(patients) == 30 and len({(p["birth_name"], p["first_name"]) for p in patients}) > 20
    assert sorted(e["data"]["patient_id"] for e in events) == sorted(p["id"] for p in patients)
    owners = {(e["data"]["owner_kind"], e["data"]["owner_id"]) for e in events}
    # The demo DAC owns most; the coordinator some in her own name, so her own list is not empty.
    assert owners == {("structure", demo_id("dac")), ("person", demo_id("coordinateur"))}
    assert all(e["type"] == "PatientCreated" and "birth_name" not in e["data"] for e in events)
