"""Property-based contract tests: every operation of every service, fuzzed from its contract.

"Bad input gets a clear problem+json error naming the field, and changes nothing", and no
500 ever: schemathesis generates valid and invalid requests from contracts/openapi/<svc>.yaml
and sends them, with a valid bearer token, to the service's real app on SQLite (in process).
A 403/404 is a fine answer (the caller, an admin of dac-1, is habilitated on no patient);
a 5xx, an undocumented status, a body off its schema or a 4xx that is not a problem is
not. Bounded and derandomized (see tests/support/fuzz.py) so CI is stable and quick.

Reproduce one operation: `.venv/bin/pytest tests/contract/test_fuzz.py -q -k "taches and POST"`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chassis import auth
from tests.support.fuzz import Operation, Target, fuzz, operations, start
from tests.support.issuer import TestIssuer

# Examples per operation (half positive, half negative on average): ~120 operations must
# fit in ~60 s on a loaded 2-core machine. Dig deeper locally with COORDO_FUZZ_EXAMPLES=200.
MAX_EXAMPLES = int(os.environ.get("COORDO_FUZZ_EXAMPLES", "8"))

OWNED = ("cercle", "taches", "notify", "agenda", "documents", "dossier", "identity")
# Still being changed by their teams: failures are reported to them as xfail, never skipped.
REPORTED: tuple[str, ...] = ()

# The caller: a member of structure dac-1 with the admin role, so admin-only paths
# (task types, directory...) run too; habilitated on no patient (403/404 are fine answers).
CLAIMS = {"structures": ["dac-1"], "roles": ["admin"]}

# Operation id -> why it fails today (found by this file; owners: see the reason).
KNOWN_FAILURES: dict[str, str] = {}


def _params() -> list[object]:
    params: list[object] = []
    for service in OWNED + REPORTED:
        for operation in operations(service):
            marks = []
            if operation.id in KNOWN_FAILURES:
                assert service in REPORTED, f"{operation.id}: owned services are fixed, not xfailed"
                marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[operation.id], strict=False))
            params.append(pytest.param(operation, id=operation.id, marks=marks))
    return params


@pytest.fixture(scope="module")
def fuzz_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestIssuer]:
    """One real issuer and one var dir for the whole module (apps are built once per service)."""
    previous = getattr(auth, "_verifier", None)
    with TestIssuer() as issuer, pytest.MonkeyPatch.context() as patch:
        patch.setenv("COORDO_OIDC_ISSUER", issuer.issuer)
        patch.setenv("COORDO_VAR_DIR", str(tmp_path_factory.mktemp("fuzz") / "var"))
        auth.configure_verifier(auth.TokenVerifier(issuer.issuer, "coordo"))
        yield issuer
    auth._verifier = previous  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def targets(fuzz_issuer: TestIssuer) -> Iterator[dict[str, Target]]:
    started: dict[str, Target] = {}
    yield started
    for target in started.values():
        target.close()


def _started(service: str, targets: dict[str, Target], issuer: TestIssuer) -> Target:
    if service not in targets:
        targets[service] = start(service, "Bearer " + issuer.mint("person-1", extra_claims=CLAIMS))
    return targets[service]


@pytest.fixture
def target(request: pytest.FixtureRequest, targets: dict[str, Target], fuzz_issuer: TestIssuer) -> Target:
    operation: Operation = request.node.callspec.params["operation"]
    return _started(operation.service, targets, fuzz_issuer)


@pytest.mark.parametrize("operation", _params())
def test_operation_honours_its_contract(operation: Operation, target: Target) -> None:
    fuzz(target, operation, MAX_EXAMPLES)


def _service_params() -> list[object]:
    missing_400 = (
        "some operations do not document the 400 strict validation gives for an unknown query parameter"
    )
    marks = {service: [pytest.mark.xfail(reason=missing_400, strict=False)] for service in REPORTED}
    return [pytest.param(service, id=service, marks=marks.get(service, [])) for service in OWNED + REPORTED]


@pytest.mark.parametrize("service", _service_params())
def test_every_operation_documents_the_400_of_bad_input(service: str) -> None:
    """connexion validates strictly: any operation answers 400 to an unknown query parameter."""
    undocumented = [op.id for op in operations(service) if "400" not in op.responses]
    assert undocumented == []


@pytest.fixture
def notify(targets: dict[str, Target], fuzz_issuer: TestIssuer) -> Target:
    return _started("notify", targets, fuzz_issuer)


def test_a_body_that_is_not_utf8_is_bad_input_naming_the_body_and_changes_nothing(notify: Target) -> None:
    # Found by this file: connexion let the UnicodeDecodeError escape as a 500 (chassis fix).
    url = "http://testserver/api/notification-preferences/types/task_assigned"
    before = notify.client.get(
        "http://testserver/api/notification-preferences", headers=notify.headers
    ).json()
    headers = {**notify.headers, "Content-Type": "application/json"}
    response = notify.client.put(url, data=b'{"email": false, "in_app": "\xff\xfe"}', headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "body"
    after = notify.client.get("http://testserver/api/notification-preferences", headers=notify.headers).json()
    assert after == before


def test_a_path_holding_an_encoded_newline_is_refused_not_a_server_error(
    targets: dict[str, Target], fuzz_issuer: TestIssuer
) -> None:
    # Found by this file: on connexion's FlaskApp, its router (a starlette Mount: `.*`
    # stops at a newline) did not match such a path but Flask's did, and the handler ran
    # without its operation context (a 500) (chassis fix). On the AsyncApp connexion's
    # router alone decides: no such resource.
    notify = _started("notify", targets, fuzz_issuer)
    url = "http://testserver/api/notification-preferences/types/task%0Aassigned"
    response = notify.client.put(url, json={"email": False, "in_app": False}, headers=notify.headers)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    # identity, on the FlaskApp (its OIDC pages are Flask routes): bad input, naming the path.
    identity = _started("identity", targets, fuzz_issuer)
    url = "http://testserver/api/delegations/abc%0Adef/accept"
    response = identity.client.post(url, headers=identity.headers)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "path"
    for target in (notify, identity):
        assert target.client.get("http://testserver/health/live").status_code == 200


def test_text_that_is_not_unicode_is_bad_input_naming_the_field_and_changes_nothing(
    targets: dict[str, Target], fuzz_issuer: TestIssuer
) -> None:
    # Found by this file: JSON may escape a lone UTF-16 surrogate, which no database
    # stores (a 500) (chassis fix).
    taches = _started("taches", targets, fuzz_issuer)
    url = "http://testserver/api/task-types?include_inactive=true"
    before = taches.client.get(url, headers=taches.headers).json()
    headers = {**taches.headers, "Content-Type": "application/json"}
    body = b'{"code": "passage_ide", "label": "Passage IDE \\udbcf"}'
    response = taches.client.post("http://testserver/api/task-types", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "label"
    assert taches.client.get(url, headers=taches.headers).json() == before


# Found by this file: an integer past 64 bits reached the database (a 500); the contract's
# parameter now has a maximum.
PAST_64_BITS = "9903444610304969075424871055360"
REPORTED_BAD_INPUT = [
    ("identity", f"/api/directory/persons?offset={PAST_64_BITS}"),
    ("identity", f"/api/directory/structures?offset={PAST_64_BITS}"),
    ("dossier", f"/api/patients?offset={PAST_64_BITS}"),
    ("dossier", f"/api/file-list?page={PAST_64_BITS}"),
    # Found by this file: connexion does not check `format: uuid`, so a patient id that is
    # no uuid was answered 200; the contract's path parameter now has a uuid pattern.
    ("dossier", "/api/patients/not-a-uuid/links"),
    ("dossier", "/api/patients/not-a-uuid/memos"),
]


@pytest.mark.parametrize(
    ("service", "url"),
    [pytest.param(service, url, id=f"{service}:{url}") for service, url in REPORTED_BAD_INPUT],
)
def test_reported_bad_input_is_refused_not_a_server_error(
    service: str, url: str, targets: dict[str, Target], fuzz_issuer: TestIssuer
) -> None:
    target = _started(service, targets, fuzz_issuer)
    response = target.client.get("http://testserver" + url, headers=target.headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_every_service_contract_is_fuzzed() -> None:
    """A new service's contract must be added here, not silently left out."""
    contracts = {path.stem for path in (Path(__file__).parents[2] / "contracts" / "openapi").glob("*.yaml")}
    assert contracts == set(OWNED + REPORTED)
