"""Revocation bites within one second everywhere (CER-10), with two gateway instances on the
same bus, each holding the decision in its cache; and with cercle down, the gateway refuses
patient-scoped calls and says why (fail closed).

The embedded suite runs the services, their workers and the first gateway; a second gateway
(own port, own access log) joins the same in-memory bus. RabbitMQ with two gateways is
covered in gateway/tests (two instances, one broker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import HABILITATION_UNAVAILABLE, NOT_HABILITATED
from identity.demo import DEMO_IDS
from tests.support.embedded import another_gateway, stop_service
from tests.support.people import Caller, add_member, create_patient, eventually, new_people

REASON = {
    "reason_code": "urgence_vitale",
    "reason_text": "Malaise au domicile, dossier introuvable autrement",
    "found_via": "identity_vigilance",
    "confirmed": True,
}


@dataclass
class Setup:
    suite: Any
    second_gateway: str
    admin: Caller
    coordinator: Caller
    patient_id: str
    people: dict[str, Caller]

    def on_both(self, person: Caller, **headers: str) -> list[httpx.Client]:
        return [person.acting(**headers), person.acting(self.second_gateway, **headers)]


@pytest.fixture(scope="module")
def setup(embedded_suite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base, issuer = embedded_suite.base_url, embedded_suite.issuer
    admin = Caller(base, issuer, "admin")
    coordinator = Caller(base, issuer, "coordinateur")
    patient = create_patient(coordinator)
    add_member(coordinator, patient, "structure", DEMO_IDS["dac"])
    keys = ["revoque", "retire", "refuse", "delegant", "delegue", "urgentiste", "pendant-panne"]
    specs: dict[str, tuple[str, ...]] = {key: () for key in keys}
    # Two of a structure habilitated on the file, whom the patient then refuses sharing with.
    specs.update({"structure-ajout": (DEMO_IDS["dac"],), "structure-modif": (DEMO_IDS["dac"],)})
    people = new_people(admin, issuer, specs)
    with another_gateway(embedded_suite, Path(tmp_path_factory.mktemp("gateway-2"))) as url:
        yield Setup(embedded_suite, url, admin, coordinator, patient, people)


def warm(clients: list[httpx.Client], path: str) -> None:
    """Each gateway allows the call and has the decision in its cache."""
    for client in clients:
        eventually(lambda client=client: client.get(path).status_code == 200)  # type: ignore[misc]
        assert client.get(path).status_code == 200


def seconds_until_refused(clients: list[httpx.Client], path: str, started: float) -> float:
    """Every gateway refuses (its own 403) within one second of the revoking call's answer."""

    def all_refuse() -> bool:
        responses = [client.get(path) for client in clients]
        return all(r.status_code == 403 and r.json()["type"] == NOT_HABILITATED for r in responses)

    eventually(all_refuse, timeout=1.0 - (time.monotonic() - started), interval=0.01)
    return time.monotonic() - started


def test_a_revoked_habilitation_bites_within_a_second_on_both_gateways_and_in_the_file_list(
    setup: Setup,
) -> None:
    nurse = setup.people["revoque"]
    member = add_member(setup.coordinator, setup.patient_id, "person", nurse.id)
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(nurse)
    warm(clients, path)

    def listed() -> bool:
        items = clients[0].get("/api/patients").json()["items"]
        return any(item["id"] == setup.patient_id for item in items)

    eventually(listed)
    revoked = setup.coordinator.http.delete(f"{path}/circle/members/{member['id']}/habilitation")
    started = time.monotonic()
    assert revoked.status_code == 200, revoked.text
    took = seconds_until_refused(clients, path, started)
    eventually(lambda: not listed(), timeout=max(0.0, 1.0 - (time.monotonic() - started)), interval=0.01)
    print(f"habilitation revoked: both gateways refuse after {took * 1000:.0f} ms, file list updated too")


@pytest.mark.parametrize("how", ["removed from the circle", "refused by the patient"])
def test_losing_membership_bites_within_a_second_on_both_gateways(setup: Setup, how: str) -> None:
    person = setup.people["retire" if how == "removed from the circle" else "refuse"]
    member = add_member(setup.coordinator, setup.patient_id, "person", person.id)
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(person)
    warm(clients, path)
    url = f"{path}/circle/members/{member['id']}"
    if how == "removed from the circle":
        change = setup.coordinator.http.delete(url)
    else:
        change = setup.coordinator.http.patch(url, json={"refused_information_sharing": True})
    started = time.monotonic()
    assert change.status_code in (200, 204), change.text
    took = seconds_until_refused(clients, path, started)
    print(f"{how}: both gateways refuse after {took * 1000:.0f} ms")


def test_a_revoked_delegation_bites_within_a_second_on_both_gateways(setup: Setup) -> None:
    grantor, delegate = setup.people["delegant"], setup.people["delegue"]
    add_member(setup.coordinator, setup.patient_id, "person", grantor.id)
    asked = delegate.http.post("/api/delegations", json={"grantor_id": grantor.id, "scopes": ["dossiers"]})
    assert asked.status_code == 201, asked.text
    delegation = asked.json()["id"]
    assert grantor.http.post(f"/api/delegations/{delegation}/accept").status_code == 200
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(delegate, **{"X-Act-For": grantor.id})
    warm(clients, path)
    revoked = grantor.http.post(f"/api/delegations/{delegation}/revoke")
    started = time.monotonic()
    assert revoked.status_code == 200, revoked.text
    took = seconds_until_refused(clients, path, started)
    print(f"delegation revoked: both gateways refuse after {took * 1000:.0f} ms")


def test_an_ended_break_glass_bites_within_a_second_on_both_gateways(setup: Setup) -> None:
    doctor = setup.people["urgentiste"]
    opened = doctor.http.post("/api/break-glass", json={**REASON, "patient_id": setup.patient_id})
    assert opened.status_code == 201, opened.text
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(doctor)
    warm(clients, path)
    ended = doctor.http.delete(f"/api/break-glass/{opened.json()['id']}")
    started = time.monotonic()
    assert ended.status_code == 200, ended.text
    took = seconds_until_refused(clients, path, started)
    print(f"break-the-glass ended: both gateways refuse after {took * 1000:.0f} ms")


def test_a_refusal_of_sharing_added_to_the_circle_closes_the_structure_path_within_a_second(
    setup: Setup,
) -> None:
    person = setup.people["structure-ajout"]
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(person, **{"X-Act-As": DEMO_IDS["dac"]})
    warm(clients, path)
    added = setup.coordinator.http.post(
        f"{path}/circle/members",
        json={"holder_kind": "person", "holder_id": person.id, "refused_information_sharing": True},
    )
    started = time.monotonic()
    assert added.status_code == 201, added.text
    took = seconds_until_refused(clients, path, started)
    print(f"refused member added: both gateways refuse the structure path after {took * 1000:.0f} ms")


def test_a_refusal_of_sharing_set_on_a_listed_member_closes_the_structure_path_within_a_second(
    setup: Setup,
) -> None:
    person = setup.people["structure-modif"]
    member = add_member(setup.coordinator, setup.patient_id, "person", person.id, habilitated=False)
    path = f"/api/patients/{setup.patient_id}"
    clients = setup.on_both(person, **{"X-Act-As": DEMO_IDS["dac"]})
    warm(clients, path)
    changed = setup.coordinator.http.patch(
        f"{path}/circle/members/{member['id']}", json={"refused_information_sharing": True}
    )
    started = time.monotonic()
    assert changed.status_code == 200, changed.text
    seconds_until_refused(clients, path, started)


# Last in this module on purpose: it stops cercle for good (the suite is the module's own).
def test_with_cercle_down_the_gateway_refuses_patient_calls_and_says_why(setup: Setup) -> None:
    person = setup.people["pendant-panne"]
    add_member(setup.coordinator, setup.patient_id, "person", person.id)
    stop_service(setup.suite, "cercle")
    for client in setup.on_both(person):
        response = client.get(f"/api/patients/{setup.patient_id}/tasks")
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == HABILITATION_UNAVAILABLE
        assert problem["title"] == "Habilitation service unavailable"
        assert "cercle" in problem["detail"]
        # Not about a patient: served as usual.
        assert client.get("/api/me").status_code == 200
