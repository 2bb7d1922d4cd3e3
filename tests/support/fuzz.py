"""Property-based contract fuzzing of one service with schemathesis, in process, on SQLite.

The app is the real connexion app (`ServiceDefinition.create_app`) reached through
schemathesis' ASGI client; cases come from the service's own contract
(`contracts/openapi/<svc>.yaml`), positive and negative, with a fixed seed so CI is stable.
Each response must: not be a 5xx, conform to the contract (status, content type, headers,
body schema), and, for every 4xx, be an RFC 9457 problem naming what went wrong.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chassis.db import Database
from chassis.settings import contracts_dir

METHODS = ("get", "put", "post", "patch", "delete")
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    operation_id: str
    responses: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.service}:{self.method.upper()} {self.path}"


def contract_path(service: str) -> Path:
    return contracts_dir() / "openapi" / f"{service}.yaml"


@cache
def _contract(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(contract_path(service).read_text(encoding="utf-8"))
    return loaded


def operations(service: str) -> list[Operation]:
    """Every operation of the contract, x-internal ones included, in contract order."""
    found = []
    for path, item in _contract(service)["paths"].items():
        for method in METHODS:
            if method in item:
                spec = item[method]
                found.append(Operation(service, method, path, spec["operationId"], tuple(spec["responses"])))
    return found


class ProblemShapeError(AssertionError):
    pass


def check_problem(response: Any) -> None:
    """A 4xx is `application/problem+json` with title and status; bad input names its field."""
    status = response.status_code
    if not 400 <= status < 500:
        return
    text = response.content.decode("utf-8", "replace")
    content_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    if content_type != PROBLEM_JSON:
        raise ProblemShapeError(f"{status} answered as {content_type!r}, not {PROBLEM_JSON}: {text[:300]}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ProblemShapeError(f"{status} problem body is not JSON: {text[:300]}") from exc
    if not isinstance(body, dict) or not body.get("title") or body.get("status") != status:
        raise ProblemShapeError(f"{status} problem lacks title/status (or status differs): {body}")
    # 422 comes from the use cases (chassis.problems.invalid), which name the field;
    # connexion's 400 says in `detail` which part of the request failed validation.
    if status == 422 and not body.get("field"):
        raise ProblemShapeError(f"422 problem does not name the offending field: {body}")
    if status == 400 and not body.get("detail"):
        raise ProblemShapeError(f"400 problem does not say what is wrong: {body}")


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Not `negative_data_rejection`: connexion does not check `format: uuid` (not a draft 4
    # format), so ids that are no uuids are accepted where the contract has no `pattern`.
]


@dataclass
class Target:
    """One service's app, reached in process, and the contract schemathesis generates from."""

    service: str
    app: Any
    db: Database
    client: ASGIClient
    schema: Any
    headers: dict[str, str]

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.db.dispose()


def start(service: str, authorization: str) -> Target:
    """Migrate the service's SQLite database (under COORDO_VAR_DIR) and build its app."""
    definition = importlib.import_module(f"{service}.app").SERVICE
    # schemathesis checks responses against the contract itself and reports the
    # offending body; connexion's own response validation would hide it behind a 500.
    svc_settings = replace(definition.settings(), validate_responses=False)
    definition.migrate(svc_settings)
    db = definition.database(svc_settings)
    app = definition.create_app(svc_settings, db)
    config = schemathesis.config.SchemathesisConfig()
    schema = schemathesis.openapi.from_dict(_contract(service), config=config)
    schema.app = app
    client = ASGIClient(app).__enter__()
    return Target(service, app, db, client, schema, {"Authorization": authorization})


def fuzz(target: Target, operation: Operation, max_examples: int) -> None:
    """Run `max_examples` positive and as many negative cases against one operation."""
    api_operation = target.schema[operation.path][operation.method.upper()]
    strategy = st.one_of(
        api_operation.as_strategy(GenerationMode.POSITIVE),
        api_operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=max_examples,
        derandomize=True,  # the same cases on every run: CI stays stable
        database=None,
        deadline=None,
        # No shrinking: a failure reports the case as generated, and a known failure
        # (xfail) does not spend CI time minimising itself.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        errors.records.clear()
        response = case.call(session=target.client, headers=target.headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=target.headers)
            check_problem(response)
        except BaseException as exc:  # schemathesis' FailureGroup, or ProblemShapeError
            if isinstance(exc, ProblemShapeError):
                exc.add_note(f"Reproduce: {case.as_curl_command(headers=target.headers)}")
            for record in errors.records:
                exc.add_note("Server side: " + errors.describe(record))
            raise

    errors = _ServerErrors()
    # connexion logs the exception behind every 500 there: show it with the failing case.
    logger = logging.getLogger("connexion.middleware.exceptions")
    logger.addHandler(errors)
    try:
        run()
    finally:
        logger.removeHandler(errors)


class _ServerErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @staticmethod
    def describe(record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None:
            return "".join(traceback.format_exception(record.exc_info[1])[-6:])
        return record.getMessage()
