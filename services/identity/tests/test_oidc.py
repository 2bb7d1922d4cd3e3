"""The built-in OIDC provider over real HTTP (uvicorn), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from contextlib import closing
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from chassis.auth import InvalidToken, TokenVerifier
from identity import token_cli
from identity.app import SERVICE
from identity.demo import DEMO_IDS, DEMO_PASSWORD
from identity.models import LoginSession, RefreshToken
from identity.token_cli import _LoginForm, fetch_token, pkce_pair

CLI_REDIRECT = "http://127.0.0.1/cli-callback"


def authorize_params(challenge: str, state: str = "st-123", **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "coordo-cli",
        "redirect_uri": CLI_REDIRECT,
        "scope": "openid profile email",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def submit_login(http: httpx.Client, page: httpx.Response, username: str, password: str) -> httpx.Response:
    form = _LoginForm()
    form.feed(page.text)
    assert form.action is not None
    return http.post(form.action, data={**form.fields, "username": username, "password": password})


def get_code(running: Any, username: str = "coordinateur", password: str = DEMO_PASSWORD) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    page = running.http.get("/oidc/authorize", params=authorize_params(challenge))
    assert page.status_code == 200, page.text
    login = submit_login(running.http, page, username, password)
    assert login.status_code == 302, login.text
    query = parse_qs(urlparse(login.headers["location"]).query)
    assert query["state"] == ["st-123"]
    return query["code"][0], verifier


def exchange(running: Any, code: str, verifier: str | None) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CLI_REDIRECT,
        "client_id": "coordo-cli",
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return running.http.post("/oidc/token", data=data)


def refresh(running: Any, refresh_token: str) -> httpx.Response:
    return running.http.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "coordo-cli"},
    )


def test_discovery_builds_every_url_from_the_issuer(running: Any):
    meta = running.http.get("/oidc/.well-known/openid-configuration").json()
    issuer = running.issuer
    assert meta["issuer"] == issuer
    assert meta["authorization_endpoint"] == f"{issuer}/authorize"
    assert meta["token_endpoint"] == f"{issuer}/token"
    assert meta["jwks_uri"] == f"{issuer}/jwks"
    assert meta["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert meta["response_types_supported"] == ["code"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert meta["scopes_supported"] == ["openid", "profile", "email"]


def test_jwks_publishes_public_keys_only(running: Any):
    jwks = running.http.get("/oidc/jwks").json()
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_the_full_flow_gives_a_token_the_chassis_verifier_accepts(running: Any):
    token = fetch_token(running.issuer, "infirmiere", DEMO_PASSWORD)
    assert token["token_type"] == "Bearer"
    assert 1790 <= token["expires_in"] <= 1800
    assert token["refresh_token"] and token["id_token"]

    # What every service does: discovery + JWKS over HTTP, iss/aud/exp/nbf checked.
    with closing(TokenVerifier(running.issuer, "coordo")) as verifier:
        claims = verifier.verify(token["access_token"])
    assert claims["iss"] == running.issuer
    assert claims["sub"] == DEMO_IDS["infirmiere"]
    assert claims["aud"] == "coordo"
    assert claims["azp"] == "coordo-cli"
    assert claims["exp"] - claims["iat"] == 1800
    assert claims["nbf"] <= time.time() and claims["jti"]
    assert claims["name"] == "Sophie Petit"
    assert claims["email"] == "sophie.petit@chsf.example"
    assert claims["profession"] == "infirmier" and claims["medical"] is True
    assert claims["roles"] == ["user"]
    assert claims["structures"] == [DEMO_IDS["unite-geriatrie"]]
    header = jwt.decode(
        token["access_token"], KeySet.import_key_set(running.http.get("/oidc/jwks").json())
    ).header
    assert header["alg"] == "RS256" and header["kid"]

    # The id_token is for the client.
    id_claims = jwt.decode(
        token["id_token"], KeySet.import_key_set(running.http.get("/oidc/jwks").json())
    ).claims
    assert id_claims["aud"] == ["coordo-cli"] and id_claims["sub"] == DEMO_IDS["infirmiere"]
    assert id_claims["iss"] == running.issuer and "nonce" in id_claims

    # And it opens the API and userinfo.
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert running.http.get("/api/me", headers=bearer).json()["id"] == DEMO_IDS["infirmiere"]
    info = running.http.get("/oidc/userinfo", headers=bearer).json()
    assert info["sub"] == DEMO_IDS["infirmiere"] and info["email"] == "sophie.petit@chsf.example"
    assert running.http.get("/oidc/userinfo", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_person_in_no_structure_and_a_coordinator_get_their_own_claims(running: Any):
    with closing(TokenVerifier(running.issuer, "coordo")) as verifier:
        doctor = verifier.verify(fetch_token(running.issuer, "medecin", DEMO_PASSWORD)["access_token"])
        claire = verifier.verify(fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)["access_token"])
    assert doctor["structures"] == [] and doctor["medical"] is True and doctor["name"] == "Dr Paul Bernard"
    assert claire["roles"] == ["user", "super_user"] and claire["medical"] is False
    assert claire["structures"] == [DEMO_IDS["dac"]]


def test_the_login_page_is_french_self_contained_and_escapes_what_it_echoes(running: Any):
    _, challenge = pkce_pair()
    page = running.http.get(
        "/oidc/authorize", params=authorize_params(challenge, state='"><script>x</script>')
    )
    assert page.status_code == 200
    text = page.text
    for words in ("Connexion à Coordo", "Identifiant", "Mot de passe", "Se connecter"):
        assert words in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "http://" not in text.split("<form")[0]  # no external stylesheet or script
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_wrong_password_shows_the_page_again_without_a_code(running: Any):
    _, challenge = pkce_pair()
    page = running.http.get("/oidc/authorize", params=authorize_params(challenge))
    again = submit_login(running.http, page, "coordinateur", "mauvais-mot-de-passe")
    assert again.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in again.text
    assert "location" not in again.headers
    unknown = submit_login(running.http, again, "personne", "coordo-demo")
    assert unknown.status_code == 401 and "Identifiant ou mot de passe incorrect" in unknown.text
    with pytest.raises(token_cli.TokenError, match="incorrect"):
        fetch_token(running.issuer, "coordinateur", "mauvais-mot-de-passe")


def test_a_login_form_without_its_anti_forgery_cookie_is_refused(running: Any):
    _, challenge = pkce_pair()
    page = running.http.get("/oidc/authorize", params=authorize_params(challenge))
    form = _LoginForm()
    form.feed(page.text)
    with httpx.Client(base_url=running.base_url) as stranger:  # no cookie
        response = stranger.post(
            form.action or "", data={**form.fields, "username": "coordinateur", "password": DEMO_PASSWORD}
        )
    assert response.status_code == 400 and "location" not in response.headers


def test_pkce_s256_is_mandatory_and_unknown_redirects_are_never_followed(running: Any):
    params = authorize_params("x" * 43)
    del params["code_challenge"], params["code_challenge_method"]
    missing = running.http.get("/oidc/authorize", params=params)
    assert missing.status_code == 302
    assert parse_qs(urlparse(missing.headers["location"]).query)["error"] == ["invalid_request"]

    plain = running.http.get(
        "/oidc/authorize", params=authorize_params("x" * 43, code_challenge_method="plain")
    )
    assert plain.status_code == 302 and "error=invalid_request" in plain.headers["location"]

    _, challenge = pkce_pair()
    evil = running.http.get(
        "/oidc/authorize", params=authorize_params(challenge, redirect_uri="https://evil.example/cb")
    )
    assert evil.status_code == 400 and "location" not in evil.headers
    assert "Demande de connexion invalide" in evil.text
    unknown = running.http.get("/oidc/authorize", params=authorize_params(challenge, client_id="intrus"))
    assert unknown.status_code == 400 and "location" not in unknown.headers


def test_a_wrong_or_missing_code_verifier_is_refused(running: Any):
    code, verifier = get_code(running)
    missing = exchange(running, code, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code, verifier = get_code(running)
    other_verifier, _ = pkce_pair()
    wrong = exchange(running, code, other_verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_a_code_works_once(running: Any):
    code, verifier = get_code(running)
    first = exchange(running, code, verifier)
    assert first.status_code == 200
    reused = exchange(running, code, verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # The code leaked: what it gave is withdrawn too.
    assert refresh(running, first.json()["refresh_token"]).status_code == 400


def test_refresh_tokens_rotate_and_a_replayed_one_ends_the_session(running: Any):
    first = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    second = refresh(running, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    with closing(TokenVerifier(running.issuer, "coordo")) as verifier:
        assert verifier.verify(rotated["access_token"])["sub"] == DEMO_IDS["coordinateur"]

    replay = refresh(running, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The replay means the token leaked: the whole session is over, new token included.
    assert refresh(running, rotated["refresh_token"]).status_code == 400
    with running.db.session_factory() as s:
        reasons = s.scalars(select(LoginSession.end_reason)).all()
        stored = s.scalars(select(RefreshToken.token_hash)).all()
    assert "refresh_token_reuse" in reasons
    assert first["refresh_token"] not in str(stored)  # stored hashed only


def test_no_refresh_after_the_eight_hour_session(running: Any):
    token = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    assert 0 < token["refresh_expires_in"] <= 8 * 3600
    with running.db.unit_of_work() as uow:
        for session in uow.session.scalars(select(LoginSession)):
            session.started_at -= timedelta(hours=8, minutes=1)
        uow.commit()
    late = refresh(running, token["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


def test_tokens_issued_near_the_session_end_stop_with_it(running: Any):
    token = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    real_clock = running.provider.clock
    running.provider.clock = lambda: real_clock() + timedelta(hours=7, minutes=50)
    try:
        near_end = refresh(running, token["refresh_token"]).json()
        assert near_end["expires_in"] <= 10 * 60
        running.provider.clock = lambda: real_clock() + timedelta(hours=8, minutes=5)
        assert refresh(running, near_end["refresh_token"]).status_code == 400
    finally:
        running.provider.clock = real_clock


def test_logout_revokes_the_session(running: Any):
    token = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    revoked = running.http.post(
        "/oidc/revoke", data={"token": token["refresh_token"], "client_id": "coordo-cli"}
    )
    assert revoked.status_code == 200
    assert refresh(running, token["refresh_token"]).status_code == 400


def test_the_signing_key_survives_a_restart_and_rotation_keeps_old_tokens_valid(running: Any):
    token = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    kid_before = running.provider.keys.signing_key().kid

    restarted = SERVICE.create_app(running.settings, SERVICE.database(running.settings))
    provider = restarted.app.extensions["coordo_oidc"]
    provider.ensure_ready()
    assert provider.keys.signing_key().kid == kid_before

    new_kid = running.provider.keys.add_key()
    assert new_kid != kid_before
    kids = {k["kid"] for k in running.http.get("/oidc/jwks").json()["keys"]}
    assert kids == {kid_before, new_kid}
    after = fetch_token(running.issuer, "coordinateur", DEMO_PASSWORD)
    assert jwt.decode(after["access_token"], provider_keys(running)).header["kid"] == new_kid
    with closing(TokenVerifier(running.issuer, "coordo", kid_refetch_cooldown=0)) as verifier:
        assert verifier.verify(token["access_token"])["sub"] == DEMO_IDS["coordinateur"]
        assert verifier.verify(after["access_token"])["sub"] == DEMO_IDS["coordinateur"]
        running.provider.keys.retire(kid_before)
    with closing(TokenVerifier(running.issuer, "coordo")) as fresh:
        with pytest.raises(InvalidToken):
            fresh.verify(token["access_token"])


def provider_keys(running: Any) -> KeySet:
    return KeySet.import_key_set(running.http.get("/oidc/jwks").json())


def test_the_command_line_prints_an_access_token(running: Any, capsys: pytest.CaptureFixture[str]):
    code = token_cli.main(["--issuer", running.issuer, "--user", "admin", "--password", DEMO_PASSWORD])
    assert code == 0
    printed = capsys.readouterr().out.strip()
    with closing(TokenVerifier(running.issuer, "coordo")) as verifier:
        assert verifier.verify(printed)["roles"] == ["admin"]
    assert (
        token_cli.main(["--issuer", running.issuer, "--user", "admin", "--password", "faux-mot-de-passe"])
        == 1
    )
