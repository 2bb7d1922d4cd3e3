"""Raw Flask floors for `gateway_vs_direct`, served by gunicorn's sync workers like the
issue's measurement: the same route with no work (the framework floor) and with the
dossier's own work (the same use case on the same database, no contract, no token check,
no tracing) — what the connexion service is compared with.

    gunicorn -w 1 'tests.bench.floors:hello_app()'
    COORDO_FLOOR_DATABASE_URL=postgresql://... gunicorn -w 1 'tests.bench.floors:same_work_app()'
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from flask import Flask, jsonify


def hello_app() -> Flask:
    app = Flask(__name__)

    @app.get("/api/patients/<patient_id>")
    def get_patient(patient_id: str) -> Any:
        return jsonify({"id": patient_id, "birth_name": "MARTIN", "first_name": "Louise"})

    return app


def same_work_app() -> Flask:
    from chassis.db import Database
    from dossier import usecases
    from dossier.app import SERVICE

    db = Database(os.environ["COORDO_FLOOR_DATABASE_URL"], SERVICE.metadata, "dossier")
    app = Flask(__name__)

    @app.get("/api/patients/<patient_id>")
    def get_patient(patient_id: str) -> Any:
        return jsonify(usecases.get_patient(db, patient_id, date.today()))

    return app
