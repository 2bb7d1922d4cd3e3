"""Acting for a delegation's grantor (X-Act-For), break-the-glass decisions and the access
journal, through the gateway in front of real upstream servers with real tokens."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.issuer import TestIssuer

pytestmark = pytest.mark.anyio

GRANTOR = "7c9e8d10-3b7a-4f0e-8f5c-1a2b3c4d5e6f"


def new_patient() -> str:
    return str(uuid.uuid4())


def bearer(issuer: TestIssuer, sub: str = "delegate-1") -> dict[str, str]:
    token = issuer.mint(sub, extra_claims={"structures": ["dac-1"]})
    return {"Authorization": f"Bearer {token}"}


async def test_a_delegate_acting_for_a_grantor_is_checked_by_cercle_and_the_service_is_told(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient = new_patient()
    cercle.delegated[(GRANTOR, patient)] = "delegation"
    headers = {**bearer(issuer), "X-Act-For": GRANTOR}

    response = await gateway.client.get(f"/api/patients/{patient}", headers=headers)
    assert response.status_code == 200, response.text
    assert cercle.calls[-1]["headers"]["x-act-for"] == GRANTOR
    assert dossier.requests[-1].headers["x-act-for"] == GRANTOR
    # The same person on their own account is another question (and here refused).
    alone = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert alone.status_code == 403
    assert "x-act-for" not in cercle.calls[-1]["headers"]
    # Cached per grantor: a second call does not ask cercle again.
    calls = len(cercle.calls)
    assert (await gateway.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
    assert len(cercle.calls) == calls


async def test_an_unconfirmed_act_for_never_reaches_a_service(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient = new_patient()
    # The caller is habilitated on their own: allowed, but not on the delegation's basis.
    cercle.delegated[(GRANTOR, patient)] = "member"
    headers = {**bearer(issuer), "X-Act-For": GRANTOR}
    assert (await gateway.client.get(f"/api/patients/{patient}", headers=headers)).status_code == 200
    assert "x-act-for" not in dossier.requests[-1].headers
    # Not about a patient: cercle cannot confirm it, so it is dropped on the way.
    assert (await gateway.client.get("/api/patients", headers=headers)).status_code == 200
    assert "x-act-for" not in dossier.requests[-1].headers
    # Refused delegation: 403 from the gateway, saying whom the caller acted for.
    refused = await gateway.client.get(
        f"/api/patients/{new_patient()}", headers={**bearer(issuer), "X-Act-For": GRANTOR}
    )
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:coordo:problem:not-habilitated"
    assert "act for" in refused.json()["detail"]
    bad = await gateway.client.get(
        f"/api/patients/{patient}", headers={**bearer(issuer), "X-Act-For": "a b/../c"}
    )
    assert bad.status_code == 400 and bad.json()["field"] == "X-Act-For"


async def test_a_break_glass_access_says_until_when_and_is_cached_no_longer(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient = new_patient()
    cercle.grant(patient, "break_glass")
    ends = datetime.now(UTC) + timedelta(seconds=1)
    cercle.expires_at[patient] = ends.isoformat()
    response = await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))
    assert response.status_code == 200
    assert datetime.fromisoformat(response.headers["x-coordo-break-glass-until"]) == ends
    assert (await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))).status_code == 200
    assert len(cercle.calls) == 1  # cached while the grant runs...
    # CER-8: nothing is deleted under break-the-glass, whichever service holds it.
    deletion = await gateway.client.delete(
        f"/api/patients/{patient}/appointments/{uuid.uuid4()}", headers=bearer(issuer)
    )
    assert deletion.status_code == 403
    assert deletion.json()["type"] == "urn:coordo:problem:break-glass-limited"
    cercle.revoke(patient)  # ...cercle now refuses (the grant ended, no event needed)
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.05)
    assert (await gateway.client.get(f"/api/patients/{patient}", headers=bearer(issuer))).status_code == 403


async def test_the_access_journal_lists_who_accessed_the_file_newest_first_page_by_page(
    gateway: Any, issuer: TestIssuer, cercle: Any, dossier: Any
) -> None:
    patient, other = new_patient(), new_patient()
    cercle.grant(patient, "member")
    cercle.grant(other, "member")
    cercle.delegated[(GRANTOR, patient)] = "delegation"
    nurse, delegate = bearer(issuer, "nurse-1"), {**bearer(issuer), "X-Act-For": GRANTOR}
    await gateway.client.get(f"/api/patients/{patient}", headers=nurse)
    await gateway.client.get(f"/api/patients/{patient}", headers={**nurse, "X-Act-As": "dac-1"})
    await gateway.client.get(f"/api/patients/{patient}", headers=delegate)
    await gateway.client.get(f"/api/patients/{other}", headers=nurse)
    stranger = bearer(issuer, "stranger-1")
    assert (await gateway.client.get(f"/api/patients/{new_patient()}", headers=stranger)).status_code == 403
    assert await asyncio.to_thread(gateway.app.audit.flush, 5.0)

    journal = f"/api/patients/{patient}/access-journal"
    first = await gateway.client.get(f"{journal}?limit=2", headers=nurse)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["patient_id"] == patient
    assert [(i["person_id"], i["structure_id"], i["acting_for"], i["basis"]) for i in page["items"]] == [
        ("delegate-1", None, GRANTOR, "delegation"),
        ("nurse-1", "dac-1", None, "member"),
    ]
    item = page["items"][0]
    assert item["operation"] == "/api/patients/{patient_id}" and item["method"] == "GET"
    assert item["service"] == "dossier"
    assert datetime.fromisoformat(item["at"]).tzinfo is not None
    assert set(item) == {
        "id", "at", "person_id", "structure_id", "acting_for", "basis", "service", "method", "operation"
    }  # fmt: skip
    second = (
        await gateway.client.get(f"{journal}?limit=2&before={page['next_before']}", headers=nurse)
    ).json()
    assert [i["person_id"] for i in second["items"]] == ["nurse-1"]
    assert second["next_before"] is None
    # Reading the journal is itself an access to the file, recorded like any other.
    assert await asyncio.to_thread(gateway.app.audit.flush, 5.0)
    latest = (await gateway.client.get(f"{journal}?limit=1", headers=nurse)).json()["items"][0]
    assert latest["service"] == "gateway" and latest["operation"].endswith("/access-journal")
    assert dossier.requests[-1].path == f"/api/patients/{other}"  # the journal never reached a service

    # Only those habilitated on the file see its journal; bad paging names its parameter.
    cercle.revoke(patient)  # the fake answers per patient: now nobody new is habilitated
    refused = await gateway.client.get(journal, headers=stranger)
    assert refused.status_code == 403 and refused.json()["type"] == "urn:coordo:problem:not-habilitated"
    cercle.grant(patient, "member")
    by_delegates = (await gateway.client.get(f"{journal}?basis=delegation", headers=nurse)).json()["items"]
    assert [i["person_id"] for i in by_delegates] == ["delegate-1"]
    bad_queries = (("limit=0", "limit"), ("limit=500", "limit"), ("before=x", "before"), ("basis=x", "basis"))
    for query, field in bad_queries:
        bad = await gateway.client.get(f"{journal}?{query}", headers=nurse)
        assert bad.status_code == 400 and bad.json()["field"] == field, query
    public = await gateway.client.get("/contracts/gateway.yaml")
    assert public.status_code == 200 and "/patients/{patient_id}/access-journal" in public.text


def test_services_read_the_confirmed_grantor_as_the_actor_s_acting_for() -> None:
    from chassis.auth import Actor

    claims = {"sub": "delegate-1", "structures": ["dac-1"]}
    assert Actor.from_claims(claims, None, GRANTOR).acting_for == GRANTOR
    assert Actor.from_claims(claims, None, "delegate-1").acting_for is None  # acting for oneself
    assert Actor.from_claims(claims, "dac-1").acting_for is None
