"""TokenVerifier against a real OIDC issuer served over HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chassis import auth
from chassis.auth import Actor, InvalidToken, IssuerUnavailable, TokenVerifier
from tests.support.issuer import TestIssuer


class FakeClock:
    """Injectable clock starting at real time, so issuer-minted tokens line up."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def shared_issuer() -> Iterator[TestIssuer]:
    # RSA key generation is slow-ish: share one issuer where tests only mint.
    with TestIssuer() as iss:
        yield iss


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    # A private issuer for tests that count hits or rotate keys.
    with TestIssuer() as iss:
        yield iss


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_verifier(iss: TestIssuer, clock: FakeClock | None = None, **kwargs: Any) -> TokenVerifier:
    if clock is not None:
        kwargs["clock"] = clock
    return TokenVerifier(iss.issuer, "coordo", **kwargs)


def assert_rejected(verifier: TokenVerifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.reason == reason
    assert token not in str(info.value)


# -- accepted tokens ---------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_valid_token_is_accepted_and_claims_returned(shared_issuer: TestIssuer, alg: str) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint("p42", alg=alg, extra_claims={"structures": ["s1"], "name": "Ana"})

    claims = verifier.verify(token)

    assert claims["sub"] == "p42"
    assert claims["iss"] == shared_issuer.issuer
    assert claims["aud"] == "coordo"
    assert claims["structures"] == ["s1"]
    assert claims["name"] == "Ana"


def test_audience_list_containing_ours_is_accepted(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(audience=["other-api", "coordo"])
    assert verifier.verify(token)["sub"] == "p1"


def test_small_clock_skew_is_tolerated_by_leeway(shared_issuer: TestIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(shared_issuer, clock, leeway=30)
    token = shared_issuer.mint(expires_in=60, not_before=int(clock.now) + 10)
    clock.advance(80)  # 20s past exp, within the 30s leeway
    assert verifier.verify(token)["sub"] == "p1"


# -- claim checks ---------------------------------------------------------------------


def test_expired_token_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(expires_in=-120)  # beyond the 30s leeway
    assert_rejected(verifier, token, "token expired")


def test_token_without_exp_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(extra_claims={"exp": None})
    assert_rejected(verifier, token, "missing claim: exp")


def test_nbf_in_the_future_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(not_before=int(time.time()) + 600)
    assert_rejected(verifier, token, "token not yet valid")


def test_wrong_issuer_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(issuer="https://evil.example")
    assert_rejected(verifier, token, "invalid claim: iss")


def test_missing_issuer_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(extra_claims={"iss": None})
    assert_rejected(verifier, token, "missing claim: iss")


@pytest.mark.parametrize("audience", ["other-api", ["other-api", "another"]])
def test_wrong_audience_is_rejected(shared_issuer: TestIssuer, audience: str | list[str]) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(audience=audience)
    assert_rejected(verifier, token, "invalid claim: aud")


def test_missing_audience_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(audience=None)
    assert_rejected(verifier, token, "missing claim: aud")


def test_missing_sub_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(sub=None)
    assert_rejected(verifier, token, "missing claim: sub")


# -- signature and algorithm attacks -----------------------------------------------


def test_alg_none_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.forge_alg_none(shared_issuer.claims())
    assert_rejected(verifier, token, "unsupported algorithm")


def test_hs256_signed_with_public_key_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.forge_hs256_with_public_key(shared_issuer.claims())
    assert_rejected(verifier, token, "unsupported algorithm")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_tampered_signature_is_rejected(shared_issuer: TestIssuer, alg: str) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint(alg=alg)
    assert verifier.verify(token)  # the untampered one is fine
    assert_rejected(verifier, TestIssuer.tamper(token), "bad signature")


def test_tampered_payload_is_rejected(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    head, _, sig = shared_issuer.mint("p1").split(".")
    _, payload, _ = shared_issuer.mint("admin").split(".")
    assert_rejected(verifier, f"{head}.{payload}.{sig}", "bad signature")


def test_alg_that_does_not_match_the_key_type_is_rejected(shared_issuer: TestIssuer) -> None:
    # An ES256 header naming the RSA key must not be checked against that key.
    verifier = make_verifier(shared_issuer)
    _, payload, sig = shared_issuer.mint(alg="ES256").split(".")
    header = json.dumps({"alg": "ES256", "kid": "rsa-1"}).encode()
    head = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    assert_rejected(verifier, f"{head}.{payload}.{sig}", "unknown signing key")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c", "!!!.???.***"])
def test_malformed_tokens_are_rejected(shared_issuer: TestIssuer, garbage: str) -> None:
    verifier = make_verifier(shared_issuer)
    with pytest.raises(InvalidToken) as info:
        verifier.verify(garbage)
    assert info.value.reason == "malformed token"


def test_oversized_token_is_rejected_without_parsing(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer)
    with pytest.raises(InvalidToken) as info:
        verifier.verify("a" * 20_000)
    assert info.value.reason == "token too large"


# -- key discovery, rotation and throttling --------------------------------------------


def test_flood_of_unknown_kids_does_not_hammer_the_issuer(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    forged = [issuer.mint_with_unknown_kid(f"p{i}") for i in range(200)]

    for token in forged:
        assert_rejected(verifier, token, "unknown signing key")

    assert issuer.jwks_hits <= 2
    assert issuer.discovery_hits == 1


def test_rotated_key_is_accepted_after_cooldown(issuer: TestIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(issuer, clock, kid_refetch_cooldown=30)
    assert verifier.verify(issuer.mint())  # loads the JWKS once
    assert issuer.jwks_hits == 1

    new_kid = issuer.add_key("ES256")
    token = issuer.mint("p7", alg="ES256", kid=new_kid)

    # Within the cooldown the new kid is unknown and the JWKS is not refetched.
    assert_rejected(verifier, token, "unknown signing key")
    assert issuer.jwks_hits == 1

    clock.advance(31)
    assert verifier.verify(token)["sub"] == "p7"
    assert issuer.jwks_hits == 2
    assert issuer.discovery_hits == 1  # discovery is cached for the process life


def test_known_kids_never_trigger_a_refetch(issuer: TestIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(issuer, clock)
    for i in range(20):
        clock.advance(60)
        alg = "RS256" if i % 2 else "ES256"
        # New tokens each time (distinct sub), so the verified-token cache is not involved.
        assert verifier.verify(issuer.mint(f"p{i}", alg=alg))["sub"] == f"p{i}"
    assert issuer.jwks_hits == 1


def test_discovery_failure_is_retried_on_next_call(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    token = issuer.mint()
    issuer.failing = True
    with pytest.raises(IssuerUnavailable) as info:
        verifier.verify(token)
    assert info.value.reason == "issuer discovery failed"
    assert isinstance(info.value, InvalidToken)  # still a refusal for callers

    issuer.failing = False
    assert verifier.verify(token)["sub"] == "p1"
    assert issuer.discovery_hits == 2


def test_discovery_with_a_different_issuer_is_refused(issuer: TestIssuer) -> None:
    issuer.advertised_issuer = "https://evil.example"
    verifier = make_verifier(issuer)
    with pytest.raises(InvalidToken) as info:
        verifier.verify(issuer.mint())
    assert info.value.reason == "issuer discovery mismatch"
    assert issuer.jwks_hits == 0


def test_concurrent_first_use_fetches_keys_once(issuer: TestIssuer) -> None:
    verifier = make_verifier(issuer)
    tokens = [issuer.mint(f"p{i}", alg="ES256") for i in range(16)]
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(tokens))

    def worker(token: str) -> None:
        barrier.wait()
        try:
            results.append(verifier.verify(token)["sub"])
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(results) == sorted(f"p{i}" for i in range(16))
    assert issuer.discovery_hits == 1
    assert issuer.jwks_hits == 1


# -- verified-token cache ---------------------------------------------------------------


def test_cache_returns_claims_without_network_or_crypto(
    issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(issuer)
    token = issuer.mint("p9", extra_claims={"roles": ["user"]})
    first = verifier.verify(token)

    issuer.stop()  # no issuer any more

    def no_crypto(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache hit must not verify the signature again")

    monkeypatch.setattr(auth.jwt, "decode", no_crypto)

    second = verifier.verify(token)
    assert second == first
    second["roles"].append("admin")  # callers mutating claims must not poison the cache
    assert verifier.verify(token)["roles"] == ["user"]


def test_cache_does_not_return_an_expired_token(issuer: TestIssuer, clock: FakeClock) -> None:
    verifier = make_verifier(issuer, clock, leeway=30)
    token = issuer.mint(expires_in=60)
    assert verifier.verify(token)["sub"] == "p1"

    clock.advance(61)  # past exp: not served from the cache, but leeway still admits it
    assert verifier.verify(token)["sub"] == "p1"
    clock.advance(40)  # now past exp + leeway
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.reason == "token expired"


def test_cache_is_bounded(shared_issuer: TestIssuer) -> None:
    verifier = make_verifier(shared_issuer, cache_size=3)
    for i in range(10):
        verifier.verify(shared_issuer.mint(f"p{i}", alg="ES256"))
    assert len(verifier._cache) == 3


# -- async and connexion integration ---------------------------------------------------


def test_verify_async_serves_cached_tokens_without_a_thread(
    shared_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(shared_issuer)
    token = shared_issuer.mint("p3")
    assert asyncio.run(verifier.verify_async(token))["sub"] == "p3"

    async def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("cached token must not hop to a thread")

    monkeypatch.setattr(auth.asyncio, "to_thread", no_thread)
    assert asyncio.run(verifier.verify_async(token))["sub"] == "p3"


@pytest.fixture
def no_configured_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_verifier", None)


@pytest.mark.usefixtures("no_configured_verifier")
def test_get_verifier_without_configuration_raises() -> None:
    with pytest.raises(RuntimeError, match="configure_verifier"):
        auth.get_verifier()


@pytest.mark.usefixtures("no_configured_verifier")
def test_bearer_info_returns_claims_for_a_valid_token(shared_issuer: TestIssuer) -> None:
    auth.configure_verifier(make_verifier(shared_issuer))
    claims = asyncio.run(auth.bearer_info(shared_issuer.mint("p5")))
    assert claims["sub"] == "p5"


@pytest.mark.usefixtures("no_configured_verifier")
def test_bearer_info_raises_oauth_problem_on_bad_token(shared_issuer: TestIssuer) -> None:
    from connexion.exceptions import OAuthProblem

    auth.configure_verifier(make_verifier(shared_issuer))
    token = TestIssuer.tamper(shared_issuer.mint())
    with pytest.raises(OAuthProblem) as info:
        asyncio.run(auth.bearer_info(token))
    assert info.value.status_code == 401
    assert info.value.detail == "invalid token: bad signature"
    assert token not in str(info.value.detail)


# -- Actor -----------------------------------------------------------------------------------


CLAIMS: dict[str, Any] = {
    "sub": "p1",
    "structures": ["s1", "s2"],
    "profession": "nurse",
    "medical": True,
    "roles": ["user", "coordinator"],
    "name": "Ana Silva",
}


def test_actor_acting_as_a_member_structure_owns_data_as_that_structure() -> None:
    actor = Actor.from_claims(CLAIMS, act_as="s2")
    assert actor == Actor(
        person_id="p1",
        structure_id="s2",
        structures=("s1", "s2"),
        profession="nurse",
        medical=True,
        roles=("user", "coordinator"),
        name="Ana Silva",
    )
    assert actor.owner_id == "s2"


def test_actor_acting_for_themselves_owns_data_personally() -> None:
    actor = Actor.from_claims(CLAIMS, act_as=None)
    assert actor.structure_id is None
    assert actor.owner_id == "p1"


def test_actor_cannot_act_as_a_structure_they_do_not_belong_to() -> None:
    with pytest.raises(PermissionError, match="cannot act as structure"):
        Actor.from_claims(CLAIMS, act_as="s3")


def test_actor_defaults_for_minimal_claims() -> None:
    actor = Actor.from_claims({"sub": "p2"}, act_as=None)
    assert actor.structures == ()
    assert actor.roles == ("user",)
    assert actor.medical is False
    assert actor.profession is None
    assert actor.name is None
    with pytest.raises(PermissionError):
        Actor.from_claims({"sub": "p2"}, act_as="s1")


def test_actor_medical_requires_a_real_boolean() -> None:
    assert Actor.from_claims({"sub": "p2", "medical": "true"}, act_as=None).medical is False
