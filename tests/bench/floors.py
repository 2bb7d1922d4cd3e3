"""Floors for `gateway_vs_direct`. Raw Flask served by gunicorn's sync workers like the
issue's measurement: the same route with no work (the framework floor) and with the
dossier's own work (the same use case on the same database, no contract, no token check,
no tracing) — what the connexion service is compared with. And connexion alone on the
no-work route (an AsyncApp with request and response validation, under gunicorn's
uvicorn worker as the services run): what the framework itself costs, the issue's
"connexion 3 with request+response validation" floor.

    gunicorn -w 1 'tests.bench.floors:hello_app()'
    gunicorn -w 1 -k uvicorn_worker.UvicornWorker 'tests.bench.floors:connexion_hello_app()'
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
        return jsonify({**HELLO, "id": patient_id})

    return app


HELLO = {"id": "", "birth_name": "MARTIN", "first_name": "Louise"}

_HELLO_CONTRACT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "floor", "version": "1"},
    "paths": {
        "/api/patients/{patient_id}": {
            "get": {
                "operationId": "tests.bench.floors.connexion_get_patient",
                "parameters": [
                    {"name": "patient_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the patient",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "birth_name", "first_name"],
                                    "properties": {name: {"type": "string"} for name in HELLO},
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


def connexion_get_patient(patient_id: str) -> dict[str, str]:
    return {**HELLO, "id": patient_id}


def connexion_hello_app() -> Any:
    import connexion

    app = connexion.AsyncApp(__name__)
    app.add_api(_HELLO_CONTRACT, validate_responses=True)
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
