"""The web front end as an OIDC client of the identity provider (authorization code + PKCE).

Authlib's OAuth2 client (requests) builds the authorization URL with the S256 challenge and runs the
code and refresh-token grants (the same library the provider is built on, so both ends agree
on the details); joserfc checks the ID token's signature, issuer, audience and nonce. Tokens
stay in the server-side session: the browser never sees them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from web.settings import CLIENT_ID, WebSettings

SCOPE = "openid profile email"
# Refresh a little before expiry so a request never leaves with a token about to lapse.
REFRESH_MARGIN_S = 30


class LoginRequired(Exception):
    """No usable tokens any more: the person logs in again."""


class LoginFailed(Exception):
    """The provider's answer cannot be trusted or used (state, code, ID token)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str
    nonce: str


class OidcClient:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._jwks: KeySet | None = None

    def _client(self) -> OAuth2Session:
        session = OAuth2Session(
            client_id=CLIENT_ID,
            token_endpoint_auth_method="none",
            redirect_uri=self.settings.redirect_uri,
            scope=SCOPE,
            code_challenge_method="S256",
            default_timeout=10,
        )
        session.trust_env = False  # the gateway is reached directly, never through a proxy
        return session

    def authorization_request(self) -> AuthorizationRequest:
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(24)
        with self._client() as client:
            url, state = client.create_authorization_url(
                f"{self.settings.issuer}/authorize", code_verifier=verifier, nonce=nonce
            )
        # Authlib derives the challenge itself; keep a check that it is S256 of our verifier.
        assert create_s256_code_challenge(verifier) in url
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier, nonce=nonce)

    def exchange_code(self, code: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        try:
            with self._client() as client:
                token = client.fetch_token(
                    f"{self.settings.gateway_url}/oidc/token",
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except Exception as exc:  # noqa: BLE001 - any failure of the grant means no login
            raise LoginFailed(f"code exchange failed: {type(exc).__name__}") from exc
        self._check_id_token(str(token.get("id_token") or ""), nonce)
        return _stored(dict(token))

    def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        refresh_token = tokens.get("refresh_token")
        if not refresh_token:
            raise LoginRequired()
        try:
            with self._client() as client:
                token = client.refresh_token(
                    f"{self.settings.gateway_url}/oidc/token", refresh_token=refresh_token
                )
        except Exception as exc:  # noqa: BLE001 - the login session ended (8 h, logout, reuse)
            raise LoginRequired() from exc
        return _stored(dict(token))

    def revoke(self, tokens: dict[str, Any]) -> None:
        """Ends the login session at the provider (RFC 7009 on the refresh token)."""
        refresh_token = tokens.get("refresh_token")
        if not refresh_token:
            return
        try:
            httpx.post(
                f"{self.settings.gateway_url}/oidc/revoke",
                data={"token": refresh_token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID},
                timeout=5,
                trust_env=False,
            )
        except httpx.HTTPError:
            pass  # the local session ends anyway; the provider's session expires on its own

    def _keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            response = httpx.get(f"{self.settings.gateway_url}/oidc/jwks", timeout=5, trust_env=False)
            response.raise_for_status()
            self._jwks = KeySet.import_key_set(response.json())
        return self._jwks

    def _check_id_token(self, id_token: str, nonce: str) -> None:
        if not id_token:
            raise LoginFailed("no ID token")
        try:
            try:
                decoded = jwt.decode(id_token, self._keys())
            except JoseError:
                decoded = jwt.decode(id_token, self._keys(refresh=True))  # keys rotated
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": CLIENT_ID},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, httpx.HTTPError) as exc:
            raise LoginFailed(f"invalid ID token: {type(exc).__name__}") from exc


def _stored(token: dict[str, Any]) -> dict[str, Any]:
    expires_in = int(token.get("expires_in") or 300)
    return {
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token"),
        "expires_at": int(token.get("expires_at") or time.time() + expires_in),
    }


def needs_refresh(tokens: dict[str, Any]) -> bool:
    return float(tokens.get("expires_at") or 0) - REFRESH_MARGIN_S <= time.time()
