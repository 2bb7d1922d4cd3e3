"""The built-in OpenID Connect provider, on Authlib, served under /oidc.

Authorization code + PKCE (S256, mandatory) for public clients, refresh tokens that rotate
and never outlive the 8-hour login session (ID-2), RS256 JWT access tokens carrying what
the gateway and services need (profession, medical flag, roles, structures).
"""

from __future__ import annotations

import hashlib
import html
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import connexion
import flask
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidGrantError, InvalidRequestError, scope_to_list
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from chassis.db import Database, new_id, utcnow
from chassis.settings import Settings
from identity import domain, usecases
from identity.keys import ALG, KeyStore
from identity.models import AuthorizationCode, LoginSession, OAuthClient, Person, RefreshToken

SCOPES = ("openid", "profile", "email")
DEFAULT_SCOPE = " ".join(SCOPES)
CSRF_COOKIE = "coordo_login_csrf"
# The authorization request travels in the login form as hidden fields.
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def builtin_clients(settings: Settings) -> list[dict[str, Any]]:
    """The public clients every installation has: the web front end and the command line."""
    common = {
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": DEFAULT_SCOPE,
        "token_endpoint_auth_method": "none",
    }
    return [
        {
            "client_id": "coordo-web",
            "name": "Coordo (web)",
            "redirect_uris": [f"{settings.public_url}/auth/callback"],
            **common,
        },
        {
            "client_id": "coordo-cli",
            "name": "Coordo (ligne de commande)",
            "redirect_uris": ["http://127.0.0.1/cli-callback"],
            **common,
        },
    ]


# -- Authlib models -------------------------------------------------------------


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str
    token_endpoint_auth_method: str
    id_token_signed_response_alg: str = ALG

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = scope_to_list(self.scope) or []
        if not scope:
            return self.scope
        return " ".join(s for s in scope_to_list(scope) or [] if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match only

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # public clients have no secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class SessionUser:
    """The person behind a request, with the login session tokens derive from."""

    principal: usecases.Principal
    session_id: str
    session_started_at: datetime

    def get_user_id(self) -> str:
        return self.principal.person_id


@dataclass(frozen=True)
class CodeRecord:
    code_hash: str
    client_id: str
    person_id: str
    session_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


@dataclass(frozen=True)
class RefreshRecord:
    client_id: str
    scope: str
    user: SessionUser

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


# -- grants -----------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):
    """PKCE is mandatory and only S256 is accepted (plain would leak the verifier)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE (S256) is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    server: CoordoAuthorizationServer

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.server.provider.save_code(code, request)

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        return self.server.provider.find_code(code, client)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        pass  # consumed atomically in authenticate_user

    def authenticate_user(self, authorization_code: CodeRecord) -> SessionUser:
        # Runs after the PKCE check; the UPDATE ... WHERE used_at IS NULL makes the code
        # single-use even when two requests race with it.
        return self.server.provider.consume_code(authorization_code)


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation
    server: CoordoAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        return self.server.provider.consume_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: RefreshRecord) -> SessionUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        pass  # marked used when consumed


class CoordoOpenIDCode(OpenIDCode):
    """Adds the id_token to the code grant's token response."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return self.provider.nonce_used(nonce, request.payload.client_id)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.provider.keys.signing_key()

    def get_client_algorithm(self, client: Client) -> str:
        return ALG

    def get_encode_header(self, client: Client) -> dict[str, Any]:
        return {"alg": ALG, "kid": self.provider.keys.signing_key().kid}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.provider.issuer,
            "aud": [client.client_id],
            "azp": client.client_id,
            "iat": now,
            "exp": now + int(domain.ACCESS_TOKEN_LIFETIME.total_seconds()),
        }

    def generate_user_info(self, user: SessionUser, scope: str) -> UserInfo:
        return self.provider.user_info(user.principal, scope)


class CoordoAuthorizationServer(AuthorizationServer):
    def __init__(self, provider: Provider) -> None:
        super().__init__()
        self.provider = provider
        self.scopes_supported = list(SCOPES)
        self.register_token_generator("default", provider.generate_token)
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), CoordoOpenIDCode(provider)])
        self.register_grant(RefreshGrant)

    def query_client(self, client_id: str) -> Client | None:
        return self.provider.query_client(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.provider.save_token(token, request)


# -- the provider -------------------------------------------------------------------


class Provider:
    def __init__(self, settings: Settings, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.db = db
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        #: Replaceable in tests to move time forward.
        self.clock = clock
        self.keys = KeyStore(db)
        self.server = CoordoAuthorizationServer(self)
        self._ready = False
        self._ready_lock = threading.Lock()

    # Lazy, so nothing touches the database at import or app-creation time.
    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            self._seed_clients()
            self.keys.ensure()
            self._ready = True

    def _seed_clients(self) -> None:
        with self.db.unit_of_work() as uow:
            for spec in builtin_clients(self.settings):
                row = uow.session.get(OAuthClient, spec["client_id"])
                if row is None:
                    uow.session.add(OAuthClient(**spec))
                else:  # e.g. COORDO_PUBLIC_URL changed since the last start
                    for name, value in spec.items():
                        setattr(row, name, value)
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()  # another worker seeded them first

    # -- clients, codes, tokens (called by the grants) --------------------------

    def query_client(self, client_id: str) -> Client | None:
        with self.db.session_factory() as s:
            row = s.get(OAuthClient, client_id)
            if row is None:
                return None
            return Client(
                client_id=row.client_id,
                redirect_uris=tuple(row.redirect_uris),
                grant_types=tuple(row.grant_types),
                response_types=tuple(row.response_types),
                scope=row.scope,
                token_endpoint_auth_method=row.token_endpoint_auth_method,
            )

    def save_code(self, code: str, request: Any) -> None:
        user: SessionUser = request.user
        data = request.payload.data
        now = self.clock()
        with self.db.unit_of_work(user.principal.person_id) as uow:
            uow.session.add(
                AuthorizationCode(
                    code_hash=_sha256(code),
                    client_id=request.client.client_id,
                    person_id=user.principal.person_id,
                    session_id=user.session_id,
                    redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
                    scope=request.scope or "",
                    nonce=data.get("nonce"),
                    code_challenge=data["code_challenge"],
                    code_challenge_method=data["code_challenge_method"],
                    created_at=now,
                    expires_at=now + domain.AUTHORIZATION_CODE_LIFETIME,
                )
            )
            uow.commit()

    def find_code(self, code: str, client: Client) -> CodeRecord | None:
        now = self.clock()
        with self.db.session_factory() as s:
            row = s.get(AuthorizationCode, _sha256(code))
            if row is None or row.client_id != client.client_id:
                return None
            reused_in = row.session_id if row.used_at is not None else None
            session = s.get(LoginSession, row.session_id)
            record = None
            if reused_in is None and row.expires_at > now and session is not None:
                record = CodeRecord(
                    code_hash=row.code_hash,
                    client_id=row.client_id,
                    person_id=row.person_id,
                    session_id=row.session_id,
                    redirect_uri=row.redirect_uri,
                    scope=row.scope,
                    nonce=row.nonce,
                    code_challenge=row.code_challenge,
                    code_challenge_method=row.code_challenge_method,
                    auth_time=int(session.started_at.timestamp()),
                )
        if reused_in is not None:
            # A code presented twice was intercepted: end what it gave (RFC 6749 §4.1.2).
            # Outside the read session: on SQLite a second transaction would wait for it.
            self._end_session(reused_in, "code_reuse")
        return record

    def consume_code(self, record: CodeRecord) -> SessionUser:
        now = self.clock()
        with self.db.unit_of_work(record.person_id) as uow:
            s = uow.session
            claimed = s.execute(
                update(AuthorizationCode)
                .where(AuthorizationCode.code_hash == record.code_hash, AuthorizationCode.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
            if claimed != 1:
                raise InvalidGrantError("Invalid 'code' in request.")
            session = s.get(LoginSession, record.session_id)
            if session is None or not domain.session_is_active(session.started_at, session.ended_at, now):
                raise InvalidGrantError("The login session has ended.")
            principal = usecases.principal(s, record.person_id)
            if principal is None:
                raise InvalidGrantError("The account is no longer active.")
            uow.commit()
        return SessionUser(principal, session.id, session.started_at)

    def consume_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        now = self.clock()
        token_hash = _sha256(refresh_token)
        with self.db.unit_of_work() as uow:
            s = uow.session
            claimed = s.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.token_hash == token_hash,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            row = s.get(RefreshToken, token_hash)
            if row is None:
                return None
            session = s.get(LoginSession, row.session_id)
            if claimed != 1:
                if row.used_at is not None and session is not None and session.ended_at is None:
                    # A rotated token came back: it leaked. End the whole session (RFC 9700 §4.14).
                    session.ended_at = now
                    session.end_reason = "refresh_token_reuse"
                    uow.commit()
                return None
            if session is None or not domain.session_is_active(session.started_at, session.ended_at, now):
                uow.commit()  # keep it marked used
                return None
            principal = usecases.principal(s, row.person_id)
            if principal is None:
                uow.commit()
                return None
            uow.commit()
            return RefreshRecord(
                client_id=row.client_id,
                scope=row.scope,
                user=SessionUser(principal, session.id, session.started_at),
            )

    def nonce_used(self, nonce: str, client_id: str | None) -> bool:
        with self.db.session_factory() as s:
            found = s.scalar(
                select(AuthorizationCode.code_hash)
                .where(AuthorizationCode.nonce == nonce, AuthorizationCode.client_id == client_id)
                .limit(1)
            )
        return found is not None

    def generate_token(
        self,
        grant_type: str,
        client: Client,
        user: SessionUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if user is None:  # pragma: no cover - every grant we register has a user
            raise InvalidGrantError("no user")
        now = self.clock()
        expires_at = domain.access_token_expires_at(now, user.session_started_at)
        if expires_at <= now:
            raise InvalidGrantError("The login session has ended.")
        scope = client.get_allowed_scope(scope)
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self.access_token(user.principal, client.client_id, scope, now, expires_at),
            "expires_in": int((expires_at - now).total_seconds()),
            "scope": scope,
        }
        if include_refresh_token and client.check_grant_type("refresh_token"):
            token["refresh_token"] = secrets.token_urlsafe(48)
            token["refresh_expires_in"] = int(
                (domain.session_expires_at(user.session_started_at) - now).total_seconds()
            )
        return token

    def access_token(
        self, p: usecases.Principal, client_id: str, scope: str, now: datetime, expires_at: datetime
    ) -> str:
        key = self.keys.signing_key()
        claims = {
            "iss": self.issuer,
            "sub": p.person_id,
            "aud": self.audience,
            "exp": int(expires_at.timestamp()),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "jti": new_id(),
            "azp": client_id,
            "client_id": client_id,
            "scope": scope,
            "preferred_username": p.username,
            "name": p.name,
            "email": p.email,
            "profession": p.profession,
            "medical": p.medical,
            "roles": list(p.roles),
            "structures": list(p.structures),
        }
        # RFC 9068: JWT access tokens say so in their typ.
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=[ALG])

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        refresh = token.get("refresh_token")
        if not refresh:
            return
        user: SessionUser = request.user
        with self.db.unit_of_work(user.principal.person_id) as uow:
            uow.session.add(
                RefreshToken(
                    token_hash=_sha256(refresh),
                    session_id=user.session_id,
                    client_id=request.client.client_id,
                    person_id=user.principal.person_id,
                    scope=token.get("scope") or "",
                    issued_at=self.clock(),
                    # ID-2: never beyond the 8-hour session.
                    expires_at=domain.session_expires_at(user.session_started_at),
                )
            )
            uow.commit()

    def user_info(self, p: usecases.Principal, scope: str) -> UserInfo:
        scopes = scope_to_list(scope) or []
        info: dict[str, Any] = {"sub": p.person_id}
        if "profile" in scopes:
            info.update(
                name=p.name,
                preferred_username=p.username,
                profession=p.profession,
                medical=p.medical,
                roles=list(p.roles),
                structures=list(p.structures),
            )
        if "email" in scopes and p.email:
            info["email"] = p.email
        return UserInfo(info)

    # -- login --------------------------------------------------------------------

    def login(self, username: str, password: str, client_id: str) -> SessionUser | None:
        person_id = usecases.authenticate(self.db, username, password)
        if person_id is None:
            return None
        now = self.clock()
        with self.db.unit_of_work(person_id) as uow:
            s = uow.session
            session = LoginSession(id=new_id(), person_id=person_id, client_id=client_id, started_at=now)
            s.add(session)
            person = s.get(Person, person_id)
            assert person is not None
            person.last_login_at = now  # ID-3: shown on the profile page
            s.flush()
            principal = usecases.principal(s, person_id)
            uow.commit()
        if principal is None:
            return None
        return SessionUser(principal, session.id, session.started_at)

    def end_session_of_refresh_token(self, refresh_token: str, client_id: str | None) -> None:
        """RFC 7009 revocation of a refresh token ends its login session (logout)."""
        with self.db.session_factory() as s:
            row = s.get(RefreshToken, _sha256(refresh_token))
        if row is not None and (not client_id or row.client_id == client_id):
            self._end_session(row.session_id, "logout")

    def _end_session(self, session_id: str, reason: str) -> None:
        with self.db.unit_of_work() as uow:
            session = uow.session.get(LoginSession, session_id)
            if session is not None and session.ended_at is None:
                session.ended_at = self.clock()
                session.end_reason = reason
            uow.commit()

    # -- access token checks (userinfo) --------------------------------------------

    def verify_access_token(self, token: str) -> dict[str, Any]:
        keys = KeySet(list(self.keys.keys()))
        decoded = jwt.decode(token, keys, algorithms=[ALG])
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.clock().timestamp()),
            leeway=30,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(decoded.claims)
        return decoded.claims

    def discovery(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "revocation_endpoint": f"{issuer}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALG],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(SCOPES),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "name",
                "preferred_username",
                "email",
                "profession",
                "medical",
                "roles",
                "structures",
            ],
        }


# -- the login page -----------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connexion à Coordo</title>
<style>
body{{font-family:system-ui,sans-serif;background:#f3f5f8;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}}
main{{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 2px 12px rgba(0,0,0,.08);width:20rem}}
h1{{font-size:1.3rem;margin:0 0 1.2rem}}
label{{display:block;margin:.8rem 0 .3rem;font-weight:600}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #a0a8b5;border-radius:4px}}
button{{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#1f4e8c;color:#fff;font-size:1rem}}
.erreur{{background:#fdecea;color:#8a1c12;padding:.6rem;border-radius:4px}}
</style>
</head>
<body>
<main>
<h1>Connexion à Coordo</h1>
{body}
</main>
</body>
</html>
"""


def _page(body: str, status: int) -> flask.Response:
    response = flask.Response(_PAGE.format(body=body), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _login_form(action: str, params: dict[str, str], csrf: str, username: str, error: str | None) -> str:
    esc = html.escape
    hidden = "".join(
        f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">' for name, value in params.items()
    )
    alert = f'<p class="erreur" role="alert">{esc(error)}</p>' if error else ""
    return (
        f"{alert}"
        f'<form method="post" action="{esc(action)}">'
        f"{hidden}"
        f'<input type="hidden" name="csrf_token" value="{esc(csrf)}">'
        '<label for="username">Identifiant</label>'
        f'<input type="text" id="username" name="username" value="{esc(username)}" '
        'autocomplete="username" autofocus required>'
        '<label for="password">Mot de passe</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<button type="submit">Se connecter</button>'
        "</form>"
    )


def _invalid_request_page(error: OAuth2Error) -> flask.Response:
    detail = html.escape(error.description or error.error or "")
    return _page(f'<p class="erreur" role="alert">Demande de connexion invalide : {detail}</p>', 400)


def configure(app: connexion.FlaskApp, settings: Settings, db: Database) -> None:
    """Add the /oidc routes (outside the contract) to the identity app."""
    provider = Provider(settings, db)
    flask_app = app.app
    flask_app.extensions["coordo_oidc"] = provider
    server = provider.server
    issuer_path = urlparse(settings.oidc_issuer).path.rstrip("/")
    secure_cookie = settings.oidc_issuer.startswith("https://")
    bp = flask.Blueprint("oidc", __name__, url_prefix="/oidc")

    def authorization_params() -> dict[str, str]:
        values = flask.request.values
        return {name: values[name] for name in AUTHORIZE_PARAMS if values.get(name) is not None}

    def login_page(status: int, username: str = "", error: str | None = None) -> flask.Response:
        csrf = secrets.token_urlsafe(32)
        body = _login_form(f"{issuer_path}/authorize", authorization_params(), csrf, username, error)
        response = _page(body, status)
        response.set_cookie(
            CSRF_COOKIE,
            csrf,
            httponly=True,
            samesite="Lax",
            secure=secure_cookie,
            path=issuer_path or "/",
            max_age=1800,
        )
        return response

    def redirect_or_page(error: OAuth2Error) -> flask.Response:
        # Errors go back to the client only once its redirect_uri is known to be registered.
        if error.redirect_uri:
            return server.handle_error_response(None, error)
        return _invalid_request_page(error)

    @bp.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        response = flask.jsonify(provider.discovery())
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @bp.get("/jwks")
    def jwks() -> Any:
        provider.ensure_ready()
        response = flask.jsonify(provider.keys.jwks())
        response.headers["Cache-Control"] = "public, max-age=60"
        return response

    @bp.get("/authorize")
    def authorize_form() -> Any:
        provider.ensure_ready()
        try:
            server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return redirect_or_page(error)
        return login_page(200)

    @bp.post("/authorize")
    def authorize_submit() -> Any:
        provider.ensure_ready()
        try:
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return redirect_or_page(error)
        form = flask.request.form
        cookie = flask.request.cookies.get(CSRF_COOKIE, "")
        submitted = form.get("csrf_token", "")
        username = form.get("username", "")
        if not cookie or not secrets.compare_digest(cookie, submitted):
            return login_page(400, username, "La page de connexion a expiré, veuillez réessayer.")
        user = provider.login(username, form.get("password", ""), grant.client.client_id)
        if user is None:
            return login_page(401, username, "Identifiant ou mot de passe incorrect")
        response = server.create_authorization_response(grant_user=user, grant=grant)
        response.delete_cookie(CSRF_COOKIE, path=issuer_path or "/")
        return response

    @bp.post("/token")
    def token() -> Any:
        provider.ensure_ready()
        return server.create_token_response()

    @bp.post("/revoke")
    def revoke() -> Any:
        token_value = flask.request.form.get("token")
        if token_value:
            provider.end_session_of_refresh_token(token_value, flask.request.form.get("client_id"))
        return flask.Response(status=200)  # RFC 7009: same answer whether the token existed or not

    @bp.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Any:
        provider.ensure_ready()
        header = flask.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return _bearer_error("invalid_request", "bearer token required")
        try:
            claims = provider.verify_access_token(value.strip())
        except (JoseError, ClaimError, ValueError):
            return _bearer_error("invalid_token", "invalid or expired token")
        with db.session_factory() as s:
            principal = usecases.principal(s, str(claims["sub"]))
        if principal is None:
            return _bearer_error("invalid_token", "unknown account")
        return flask.jsonify(provider.user_info(principal, str(claims.get("scope", DEFAULT_SCOPE))))

    flask_app.register_blueprint(bp)


def _bearer_error(code: str, description: str) -> flask.Response:
    response = flask.jsonify({"error": code, "error_description": description})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'Bearer error="{code}", error_description="{description}"'
    return response
