"""Real callers for end-to-end tests of a running suite: accounts made through identity's API
by the demo administrator, tokens through the real login flow, one HTTP client each."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
DEMO_PASSWORD = "coordo-demo"
NEW_PASSWORD = "matrice-Coordo-2026"
NEW_PATIENT = {
    "birth_name": "Lefèvre",
    "first_name": "Jeanne",
    "birth_date": "1938-05-17",
    "sex": "F",
    "birth_place": "91228",
    "consent": {"attested": True, "given_by": "patient"},
}


def eventually(probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Events travel asynchronously: wait until the probe gives a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: last value {value!r}")
        time.sleep(interval)


class Caller:
    """A logged-in person; `headers` (X-Act-As, X-Act-For) go with every request."""

    def __init__(
        self, base_url: str, issuer: str, username: str, password: str = DEMO_PASSWORD, **headers: str
    ) -> None:
        from identity.token_cli import fetch_token

        self.username = username
        self.token = fetch_token(issuer, username, password)["access_token"]
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )
        me = self.http.get("/api/me")
        assert me.status_code == 200, me.text
        self.profile: dict[str, Any] = me.json()
        self.http.headers.update(headers)

    @property
    def id(self) -> str:
        return str(self.profile["id"])

    def acting(self, base_url: str | None = None, **headers: str) -> httpx.Client:
        """Another client for the same person: other headers, or another gateway."""
        return httpx.Client(
            base_url=base_url or self.base_url,
            timeout=10,
            headers={"Authorization": f"Bearer {self.token}", **headers},
        )


def new_person(
    admin: Caller, issuer: str, key: str, *, structures: tuple[str, ...] = (), profession: str = "infirmier"
) -> Caller:
    """An account created by the platform administrator (emits UserRegistered), logged in."""
    username = f"{key}-{secrets.token_hex(3)}"
    body: dict[str, Any] = {
        "username": username,
        "password": NEW_PASSWORD,
        "first_name": "Test",
        "last_name": key.capitalize(),
        "email": f"{username}@coordo.example",
        "profession": profession,
        "roles": ["user"],
        "structures": list(structures),
    }
    created = admin.http.post("/api/persons", json=body)
    assert created.status_code == 201, created.text
    return Caller(admin.base_url, issuer, username, NEW_PASSWORD)


def create_patient(creator: Caller) -> str:
    created = creator.http.post("/api/patients", json=NEW_PATIENT)
    assert created.status_code == 201, created.text
    patient_id = str(created.json()["id"])
    # PAT-6: the creator opens the file at once (the gateway waits for cercle to learn of it).
    opened = creator.http.get(f"/api/patients/{patient_id}")
    assert opened.status_code == 200, opened.text
    return patient_id


def add_member(
    by: Caller, patient_id: str, holder_kind: str, holder_id: str, *, habilitated: bool = True, **extra: Any
) -> dict[str, Any]:
    body = {
        "holder_kind": holder_kind,
        "holder_id": holder_id,
        "roles": ["intervenant"],
        "habilitated": habilitated,
    }

    def add() -> dict[str, Any] | None:
        # cercle may not know the new person yet (UserRegistered is on its way): retry.
        response = by.http.post(f"/api/patients/{patient_id}/circle/members", json={**body, **extra})
        if response.status_code == 201:
            return dict(response.json())
        assert response.status_code in (404, 422), response.text
        return None

    return eventually(add)


def refused_by_gateway(response: httpx.Response) -> str | None:
    """The gateway's own refusal type (403 with one of its problem types), None for anything else."""
    from gateway.app import BREAK_GLASS_LIMITED, CANNOT_ACT_AS, NOT_HABILITATED

    if response.status_code != 403 or not response.headers.get("content-type", "").startswith(
        "application/problem+json"
    ):
        return None
    kind = response.json().get("type")
    return str(kind) if kind in (NOT_HABILITATED, CANNOT_ACT_AS, BREAK_GLASS_LIMITED) else None


def new_people(admin: Caller, issuer: str, specs: dict[str, tuple[str, ...]]) -> dict[str, Caller]:
    """Several `new_person` at once ({key: structures}); password hashing and logins overlap."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(new_person, admin, issuer, key, structures=s) for key, s in specs.items()}
        return {key: future.result() for key, future in futures.items()}
