"""The authorization matrix (issue 4): every patient-scoped operation of every contract, for
every kind of caller, through the gateway of a real embedded suite.

Operations are enumerated from the contracts (`contracts/openapi/*.yaml` plus the gateway's
own), so a new route is covered as soon as its contract says `x-patient-scope`. The states
are built with real API calls and the events they cause: accounts made by the administrator,
a patient, circle members, a delegation requested and accepted, break-the-glass grants (one
opened in the past through cercle's clock, so it has expired).

What is asserted is the gateway's answer: either it lets the call through to the service
(whatever the service then says about the deliberately invalid input), or it refuses with
its own 403 problem. Requests carry a body that no schema accepts and unknown ids for every
parameter but the patient, so no call of the matrix changes anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from chassis.settings import contracts_dir
from gateway.app import BREAK_GLASS_LIMITED, NOT_HABILITATED, OWN_CONTRACT
from gateway.routes import Route, RouteTable, load_contracts
from tests.support.embedded import service_extras
from tests.support.people import (
    Caller,
    add_member,
    create_patient,
    eventually,
    new_people,
    refused_by_gateway,
)

THROUGH = "through"
# Changes without a body the matrix may really make: they cannot alter anyone's access.
HARMLESS_WITHOUT_BODY = {
    ("PUT", "/api/patients/{patient_id}/favourite"),  # the caller's own star on the file
    ("DELETE", "/api/patients/{patient_id}/favourite"),
}
INVALID_BODY = {"authorization_matrix": "no schema accepts this property"}


def patient_operations() -> list[Route]:
    table = RouteTable.from_contracts_dir(contracts_dir(), extra=[OWN_CONTRACT])
    routes = [r for r in table.routes if r.patient_scoped and not r.internal]
    return sorted(routes, key=lambda r: (r.template, r.method))


OPERATIONS = patient_operations()


def call(client: httpx.Client, route: Route, patient_id: str) -> httpx.Response:
    path = route.template
    for param in route.params:
        value = patient_id if param == route.patient_param else str(uuid.uuid4())
        path = path.replace("{" + param + "}", value)
    if route.method in ("POST", "PUT", "PATCH"):
        return client.request(route.method, path, json=INVALID_BODY)
    return client.request(route.method, path)


def verdict(response: httpx.Response) -> str:
    refusal = refused_by_gateway(response)
    if refusal is not None:
        return refusal
    if response.status_code in (401, 502, 503, 504):
        # Not an authorization answer at all: the suite is broken, say so.
        return f"error {response.status_code}: {response.text[:200]}"
    return THROUGH


def allowed(_route: Route) -> str:
    return THROUGH


def refused(_route: Route) -> str:
    return NOT_HABILITATED


def break_glass(route: Route) -> str:
    # CER-8: the access reads and helps, never deletes (the gateway refuses every DELETE).
    return BREAK_GLASS_LIMITED if route.method == "DELETE" else THROUGH


# kind of caller -> what the gateway must answer to each operation
EXPECTED = {
    "habilitated person": allowed,
    "person acting as a habilitated structure": allowed,
    "delegate acting for a habilitated grantor": allowed,
    "delegate for discussions only acting for a habilitated grantor": refused,
    "delegate acting for a grantor not habilitated": refused,
    "break-the-glass holder": break_glass,
    "break-the-glass expired": refused,
    "member of a habilitated structure not acting as it": refused,
    "member not habilitated": refused,
    "member refused by the patient": refused,
    "removed member": refused,
    "stranger": refused,
    "admin": refused,
}


@dataclass
class World:
    patient_id: str
    callers: dict[str, httpx.Client]
    people: dict[str, Caller]


@pytest.fixture(scope="module")
def world(embedded_suite: Any) -> Iterator[World]:
    from chassis.db import utcnow
    from identity.demo import DEMO_IDS

    base, issuer = embedded_suite.base_url, embedded_suite.issuer
    admin = Caller(base, issuer, "admin")
    coordinator = Caller(base, issuer, "coordinateur")
    dac = DEMO_IDS["dac"]
    keys = [
        "habilite",
        "structure",
        "delegue",
        "bris",
        "bris-expire",
        "non-habilite",
        "refuse",
        "retire",
        "inconnu",
        "delegue-discussions",
        "delegue-non-habilite",
    ]
    people = new_people(admin, issuer, {k: (dac,) if k == "structure" else () for k in keys})
    patient = create_patient(coordinator)
    path = f"/api/patients/{patient}"

    add_member(coordinator, patient, "person", people["habilite"].id)
    add_member(coordinator, patient, "structure", dac)
    add_member(coordinator, patient, "person", people["non-habilite"].id, habilitated=False)
    refused_member = add_member(coordinator, patient, "person", people["refuse"].id)
    removed_member = add_member(coordinator, patient, "person", people["retire"].id)
    # Both had access (now cached in the gateway) before losing it: the matrix also shows the
    # loss bit at once.
    for key in ("refuse", "retire"):
        eventually(lambda key=key: people[key].http.get(path).status_code == 200)  # type: ignore[misc]
    change = coordinator.http.patch(
        f"{path}/circle/members/{refused_member['id']}", json={"refused_information_sharing": True}
    )
    assert change.status_code == 200, change.text
    removal = coordinator.http.delete(f"{path}/circle/members/{removed_member['id']}")
    assert removal.status_code == 204, removal.text

    # ID-6: the delegate asks, the grantor (habilitated) accepts; cercle learns it from identity.
    grantor = people["habilite"]
    asked = people["delegue"].http.post(
        "/api/delegations", json={"grantor_id": grantor.id, "scopes": ["dossiers"]}
    )
    assert asked.status_code == 201, asked.text
    accepted = grantor.http.post(f"/api/delegations/{asked.json()['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    delegate = people["delegue"].acting(**{"X-Act-For": grantor.id})
    eventually(lambda: delegate.get(path).status_code == 200)
    # Two delegations that must not open the file: another scope, a grantor without access.
    for key, grantor_key, scopes in (
        ("delegue-discussions", "habilite", ["discussions"]),
        ("delegue-non-habilite", "non-habilite", ["dossiers"]),
    ):
        asked = people[key].http.post(
            "/api/delegations", json={"grantor_id": people[grantor_key].id, "scopes": scopes}
        )
        assert asked.status_code == 201, asked.text
        accepted = people[grantor_key].http.post(f"/api/delegations/{asked.json()['id']}/accept")
        assert accepted.status_code == 200, accepted.text

    # CER-8: one grant now, one opened 2 h 1 min ago (cercle's clock), so over.
    reason = {
        "patient_id": patient,
        "reason_code": "urgence_soins",
        "reason_text": "Appel du SAMU, équipe habituelle injoignable",
        "found_via": "identity_vigilance",
        "confirmed": True,
    }
    opened = people["bris"].http.post("/api/break-glass", json=reason)
    assert opened.status_code == 201, opened.text
    clock = service_extras(embedded_suite, "cercle")["clock"]
    clock.set(utcnow() - timedelta(hours=2, minutes=1))
    try:
        past = people["bris-expire"].http.post("/api/break-glass", json=reason)
    finally:
        clock.set(None)
    assert past.status_code == 201, past.text

    callers = {
        "habilitated person": people["habilite"].http,
        "person acting as a habilitated structure": people["structure"].acting(**{"X-Act-As": dac}),
        "delegate acting for a habilitated grantor": delegate,
        "delegate for discussions only acting for a habilitated grantor": people[
            "delegue-discussions"
        ].acting(**{"X-Act-For": grantor.id}),
        "delegate acting for a grantor not habilitated": people["delegue-non-habilite"].acting(
            **{"X-Act-For": people["non-habilite"].id}
        ),
        "break-the-glass holder": people["bris"].http,
        "break-the-glass expired": people["bris-expire"].http,
        "member of a habilitated structure not acting as it": people["structure"].http,
        "member not habilitated": people["non-habilite"].http,
        "member refused by the patient": people["refuse"].http,
        "removed member": people["retire"].http,
        "stranger": people["inconnu"].http,
        "admin": admin.http,
    }
    yield World(patient, callers, people)
    for client in callers.values():
        client.close()


def test_the_matrix_covers_every_patient_scoped_operation_and_changes_nothing() -> None:
    services = {route.service for route in OPERATIONS}
    assert {"dossier", "cercle", "taches", "agenda", "documents", "gateway"} <= services
    assert len(OPERATIONS) >= 25
    documents = {c.service: c.document for c in load_contracts(contracts_dir(), [OWN_CONTRACT])}
    for route in OPERATIONS:
        assert route.patient_param == "patient_id", route
        if (
            route.method == "GET"
            or len(route.params) > 1
            or (route.method, route.template) in HARMLESS_WITHOUT_BODY
        ):
            continue  # a read, a change of a resource named by an unknown id, or harmless
        relative = route.template.removeprefix("/api")
        operation = documents[route.service]["paths"][relative][route.method.lower()]
        # The matrix calls every operation for real: a change that takes no body would be made.
        assert "requestBody" in operation, (
            f"{route.method} {route.template} takes no body: the matrix would really make that change; "
            "if it cannot alter anyone's access, add it to HARMLESS_WITHOUT_BODY"
        )


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_kind_of_caller_gets_exactly_the_expected_answer_on_every_operation(
    world: World, kind: str
) -> None:
    client = world.callers[kind]
    expected = EXPECTED[kind]
    wrong = []
    statuses: dict[int, int] = {}
    for route in OPERATIONS:
        response = call(client, route, world.patient_id)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        got, want = verdict(response), expected(route)
        harmless = route.method == "GET" or (route.method, route.template) in HARMLESS_WITHOUT_BODY
        if response.is_success and not harmless:
            wrong.append(
                f"{route.method} {route.template}: accepted the matrix's invalid input, so changed the file"
            )
        if got != want:
            wrong.append(
                f"{route.method} {route.template}: expected {want}, got {got} ({response.status_code})"
            )
    print(f"{kind}: {len(OPERATIONS)} operations, statuses {dict(sorted(statuses.items()))}")
    assert not wrong, f"{kind}:\n" + "\n".join(wrong)


def test_the_journal_records_each_access_with_its_basis_and_never_a_refused_one(world: World) -> None:
    path = f"/api/patients/{world.patient_id}"
    bases = {
        "habilitated person": "person",
        "person acting as a habilitated structure": "structure",
        "delegate acting for a habilitated grantor": "delegation",
        "break-the-glass holder": "break_glass",
    }
    for kind in (*bases, "stranger", "break-the-glass expired"):
        world.callers[kind].get(path)
    reader = world.callers["habilitated person"]

    def journal() -> dict[str, dict[str, Any]] | None:
        items = reader.get(f"{path}/access-journal?limit=200").json()["items"]
        by_kind = {}
        for kind, person in (
            ("habilitated person", world.people["habilite"]),
            ("person acting as a habilitated structure", world.people["structure"]),
            ("delegate acting for a habilitated grantor", world.people["delegue"]),
            ("break-the-glass holder", world.people["bris"]),
        ):
            mine = [i for i in items if i["person_id"] == person.id and i["basis"] == bases[kind]]
            if mine:
                by_kind[kind] = mine[0]
        return by_kind if len(by_kind) == len(bases) else None

    found = eventually(journal, timeout=5)
    assert found["delegate acting for a habilitated grantor"]["acting_for"] == world.people["habilite"].id
    assert found["person acting as a habilitated structure"]["structure_id"] is not None
    # Refused attempts stay in the access log; the journal the circle reads lists accesses.
    items = reader.get(f"{path}/access-journal?limit=200").json()["items"]
    never_in = {world.people["inconnu"].id, world.people["bris-expire"].id}
    assert not {i["person_id"] for i in items} & never_in


def test_a_break_the_glass_holder_may_neither_delete_nor_change_the_circle(world: World) -> None:
    holder = world.callers["break-the-glass holder"]
    circle = f"/api/patients/{world.patient_id}/circle"
    members = holder.get(circle)
    assert members.status_code == 200  # reading is what break-the-glass is for
    someone = next(m for m in members.json()["members"] if m["holder_id"] == world.people["habilite"].id)
    # Deleting anything: refused by the gateway, whatever the service.
    removal = holder.delete(f"{circle}/members/{someone['id']}")
    assert refused_by_gateway(removal) == BREAK_GLASS_LIMITED
    # Changing the circle with a valid request: let through, refused by cercle itself.
    addition = holder.post(
        f"{circle}/members",
        json={"holder_kind": "person", "holder_id": world.people["inconnu"].id, "habilitated": True},
    )
    assert addition.status_code == 403 and refused_by_gateway(addition) is None, addition.text
    change = holder.patch(f"{circle}/members/{someone['id']}", json={"roles": ["coordinateur"]})
    assert change.status_code == 403 and refused_by_gateway(change) is None, change.text
    assert world.callers["stranger"].get(f"/api/patients/{world.patient_id}").status_code == 403
