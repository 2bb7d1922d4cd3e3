"""The route table comes from the contracts themselves: the real ones, and small made-up ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from chassis.settings import REPO_ROOT
from gateway.docs import public_contract
from gateway.routes import RouteTable, RouteTableError, load_contracts

PATIENT = "3f2c1a9e-0b7d-4e55-9a51-2c8f0d6a1b11"


def write_contract(root: Path, name: str, body: str) -> None:
    (root / "openapi").mkdir(parents=True, exist_ok=True)
    (root / "openapi" / f"{name}.yaml").write_text(textwrap.dedent(body), encoding="utf-8")


@pytest.fixture
def small_contracts(tmp_path: Path) -> Path:
    write_contract(
        tmp_path,
        "alpha",
        """
        openapi: 3.0.3
        info: {title: alpha, version: '1', x-service: alpha}
        servers: [{url: /api}]
        paths:
          /patients/{patient_id}/things:
            x-patient-scope: patient_id
            parameters: [{name: patient_id, in: path, required: true, schema: {type: string}}]
            get: {operationId: a.list, responses: {'200': {description: ok}}}
            post: {operationId: a.add, responses: {'201': {description: ok}}}
          /patients/search:
            get: {operationId: a.search, responses: {'200': {description: ok}}}
          /internal/decision:
            get: {operationId: a.decide, x-internal: true, responses: {'200': {description: ok}}}
          /internal/everything:
            x-internal: true
            get: {operationId: a.all, responses: {'200': {description: ok}}}
          /things/{thing_id}:
            get: {operationId: a.thing, responses: {'200': {description: ok}}}
            delete: {operationId: a.drop, x-internal: true, responses: {'204': {description: ok}}}
        """,
    )
    write_contract(
        tmp_path,
        "beta",
        """
        openapi: 3.0.3
        info: {title: beta, version: '1', x-service: beta}
        servers: [{url: /api}]
        paths:
          /patients/{patient_id}:
            get:
              operationId: b.get
              x-patient-scope: patient_id
              parameters: [{name: patient_id, in: path, required: true, schema: {type: string}}]
              responses: {'200': {description: ok}}
          /patients/{patient_id}/notes/{note_id}:
            get:
              operationId: b.note
              x-patient-scope: patient_id
              responses: {'200': {description: ok}}
        """,
    )
    return tmp_path


def test_the_real_dossier_contract_makes_patient_routes() -> None:
    table = RouteTable.from_contracts_dir(REPO_ROOT / "contracts")
    match = table.match("GET", f"/api/patients/{PATIENT}")
    assert match.route is not None
    assert match.route.service == "dossier"
    assert match.route.template == "/api/patients/{patient_id}"
    assert match.route.patient_param == "patient_id"
    assert match.patient_id == PATIENT

    create = table.match("POST", "/api/patients")
    assert create.route is not None and create.route.service == "dossier"
    assert create.route.patient_param is None

    wrong_method = table.match("DELETE", f"/api/patients/{PATIENT}")
    assert wrong_method.route is None and "GET" in wrong_method.allowed_methods
    assert table.match("GET", "/api/nowhere").route is None
    assert table.match("GET", f"/api/patients/{PATIENT}/").route is None


def test_every_real_operation_is_routed_to_its_owner_and_internal_ones_never() -> None:
    root = REPO_ROOT / "contracts"
    table = RouteTable.from_contracts_dir(root)
    for contract in load_contracts(root):
        for relative, item in contract.document["paths"].items():
            for method, operation in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                concrete = contract.base + relative.replace("{", "x").replace("}", "x")
                # A concrete path may hit a more specific template of the same table: only check
                # that the operation is found where its template is the match.
                route = table.find(method.upper(), concrete)
                assert route is not None, (method, relative)
                if route.template == contract.base + relative:
                    assert route.service == contract.service
                    internal = operation.get("x-internal", item.get("x-internal", False)) is True
                    assert route.internal is internal
                    if internal:
                        assert table.match(method.upper(), concrete).route is None


def test_small_contracts_give_owners_scopes_and_hide_internal_operations(small_contracts: Path) -> None:
    table = RouteTable.from_contracts_dir(small_contracts)
    assert table.services == ["alpha", "beta"]

    things = table.match("POST", f"/api/patients/{PATIENT}/things")
    assert things.route is not None and things.route.service == "alpha"
    assert things.patient_id == PATIENT  # scope declared on the path item

    note = table.match("GET", f"/api/patients/{PATIENT}/notes/n1")
    assert note.route is not None and note.route.service == "beta"
    assert note.params == {"patient_id": PATIENT, "note_id": "n1"}

    # A concrete path wins over a templated one.
    search = table.match("GET", "/api/patients/search")
    assert search.route is not None and search.route.operation_id == "a.search"
    assert search.patient_id is None
    assert table.match("GET", f"/api/patients/{PATIENT}").route.service == "beta"  # type: ignore[union-attr]

    # Internal operations are not routed: 404, not 405.
    for method, path in [
        ("GET", "/api/internal/decision"),
        ("GET", "/api/internal/everything"),
        ("DELETE", "/api/things/t1"),
    ]:
        match = table.match(method, path)
        assert match.route is None and match.allowed_methods == (), (method, path)
        assert table.find(method, path) is not None  # known, just never exposed
    assert table.match("PUT", "/api/things/t1").allowed_methods == ("GET",)


def test_public_contract_omits_internal_operations(small_contracts: Path) -> None:
    alpha = next(c for c in load_contracts(small_contracts) if c.service == "alpha")
    document = yaml.safe_load(public_contract(alpha))
    assert document["servers"] == [{"url": "/api"}]
    assert "/internal/decision" not in document["paths"]
    assert "/internal/everything" not in document["paths"]
    assert list(document["paths"]["/things/{thing_id}"]) == ["get"]


def test_contradicting_contracts_are_refused(tmp_path: Path) -> None:
    body = """
        openapi: 3.0.3
        info: {title: t, version: '1', x-service: %s}
        servers: [{url: /api}]
        paths:
          /patients/{patient_id}:
            get: {x-patient-scope: patient_id, responses: {'200': {description: ok}}}
        """
    write_contract(tmp_path, "one", body % "one")
    write_contract(tmp_path, "two", body % "two")
    with pytest.raises(RouteTableError, match="both one and two"):
        RouteTable.from_contracts_dir(tmp_path)

    bad = tmp_path / "bad"
    write_contract(
        bad,
        "x",
        """
        openapi: 3.0.3
        info: {title: t, version: '1', x-service: x}
        paths:
          /patients/{id}:
            get: {x-patient-scope: patient_id, responses: {'200': {description: ok}}}
        """,
    )
    with pytest.raises(RouteTableError, match="not a path parameter"):
        RouteTable.from_contracts_dir(bad)


def test_the_gateway_s_own_contract_is_valid_and_patient_scoped() -> None:
    from openapi_spec_validator import validate

    from gateway.app import OWN_CONTRACT

    document = yaml.safe_load(OWN_CONTRACT.read_text(encoding="utf-8"))
    validate(document)
    assert document["info"]["x-service"] == "gateway"
    table = RouteTable.from_contracts_dir(REPO_ROOT / "contracts", extra=[OWN_CONTRACT])
    journal = table.find("GET", f"/api/patients/{PATIENT}/access-journal")
    assert journal is not None and journal.service == "gateway" and journal.patient_param == "patient_id"
