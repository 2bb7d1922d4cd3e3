"""Get a token from a Coordo OIDC issuer on the command line, through the real login flow.

    python -m identity.token_cli --issuer http://127.0.0.1:8000/oidc --user coordinateur --password coordo-demo

runs discovery, the authorization request with PKCE (S256) and state, posts the login
form, reads the code from the redirect (without following it) and exchanges it with the
verifier; it prints the access token (``--json`` prints the whole token response).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import json
import os
import secrets
import sys
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import httpx

REDIRECT_URIS = {"coordo-cli": "http://127.0.0.1/cli-callback"}
DEFAULT_ISSUER = "http://127.0.0.1:8000/oidc"


class TokenError(RuntimeError):
    """The flow failed; the message says where (never the password)."""


class _LoginForm(HTMLParser):
    """The login page's form: its action and every input's name and value."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def fetch_token(
    issuer: str,
    username: str,
    password: str,
    client_id: str = "coordo-cli",
    *,
    redirect_uri: str | None = None,
    scope: str = "openid profile email",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run the authorization-code + PKCE flow over HTTP and return the token response."""
    issuer = issuer.rstrip("/")
    redirect_uri = redirect_uri or REDIRECT_URIS.get(client_id)
    if redirect_uri is None:
        raise TokenError(f"no redirect URI known for client {client_id!r}: pass redirect_uri")
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        response = http.get(f"{issuer}/.well-known/openid-configuration")
        if response.status_code != 200:
            raise TokenError(f"discovery failed: HTTP {response.status_code}")
        meta = response.json()
        if meta.get("issuer") != issuer:
            raise TokenError(f"discovery names issuer {meta.get('issuer')!r}, expected {issuer!r}")

        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        authorize_url = meta["authorization_endpoint"]
        page = http.get(
            authorize_url,
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        if page.status_code != 200:
            raise TokenError(f"authorization request refused: HTTP {page.status_code} {_error_of(page)}")
        form = _LoginForm()
        form.feed(page.text)
        if form.action is None:
            raise TokenError("no login form on the authorization page")
        fields = {**form.fields, "username": username, "password": password}

        login = http.post(urljoin(str(page.url), form.action), data=fields)
        if login.status_code == 401:
            raise TokenError("login refused: Identifiant ou mot de passe incorrect")
        if login.status_code not in (302, 303):
            raise TokenError(f"login failed: HTTP {login.status_code}")
        location = login.headers.get("location", "")
        if not location.startswith(redirect_uri):
            raise TokenError("login redirected somewhere unexpected")
        query = parse_qs(urlparse(location).query)
        if "error" in query:
            raise TokenError(
                f"authorization failed: {query['error'][0]} {query.get('error_description', [''])[0]}"
            )
        if query.get("state", [None])[0] != state:
            raise TokenError("state mismatch in the redirect")
        code = query.get("code", [None])[0]
        if not code:
            raise TokenError("no code in the redirect")

        token = http.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        if token.status_code != 200:
            raise TokenError(f"token request refused: HTTP {token.status_code} {_error_of(token)}")
        result: dict[str, Any] = token.json()
        return result


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return f"{body.get('error', '')} {body.get('error_description', '')}".strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Get an access token from a Coordo OIDC issuer.")
    parser.add_argument("--issuer", default=os.environ.get("COORDO_OIDC_ISSUER", DEFAULT_ISSUER))
    parser.add_argument("--user", required=True, help="username, e.g. coordinateur")
    parser.add_argument("--password", help="default: $COORDO_PASSWORD, else asked")
    parser.add_argument("--client-id", default="coordo-cli")
    parser.add_argument("--json", action="store_true", help="print the whole token response")
    args = parser.parse_args(argv)
    password = args.password or os.environ.get("COORDO_PASSWORD") or getpass.getpass("Mot de passe : ")
    try:
        token = fetch_token(args.issuer, args.user, password, args.client_id)
    except (TokenError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(token, indent=2) if args.json else token["access_token"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
