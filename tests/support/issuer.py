"""A real OIDC issuer for tests: discovery + JWKS over HTTP on 127.0.0.1, and a minter.

Tests talk to it over a real socket so the verifier's HTTP, caching and
throttling are exercised exactly as in production.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, KeySet, RSAKey

__all__ = ["TestIssuer"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _new_key(alg: str, kid: str) -> RSAKey | ECKey:
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params)
    raise ValueError(f"unsupported alg {alg!r}")


class TestIssuer:
    """In-process OIDC issuer. Use as a context manager, or call start()/stop()."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.jwks_hits = 0
        self.discovery_hits = 0
        #: When set, discovery advertises this issuer instead of the real one.
        self.advertised_issuer: str | None = None
        #: When True, every endpoint answers 503 (issuer outage).
        self.failing = False
        self.rsa_key = _new_key("RS256", "rsa-1")
        self.ec_key = _new_key("ES256", "ec-1")
        self._keys: dict[str, RSAKey | ECKey] = {"rsa-1": self.rsa_key, "ec-1": self.ec_key}
        self._default_kid = {"RS256": "rsa-1", "ES256": "ec-1"}
        self._strangers: dict[str, RSAKey | ECKey] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> TestIssuer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="test-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TestIssuer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        if self._server is None:
            raise RuntimeError("TestIssuer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- keys ----------------------------------------------------------------------

    def add_key(self, alg: str = "RS256", kid: str | None = None) -> str:
        """Publish a new signing key (key rotation); returns its kid."""
        kid = kid or f"{alg.lower()}-{secrets.token_hex(4)}"
        with self._lock:
            self._keys[kid] = _new_key(alg, kid)
        return kid

    def remove_key(self, kid: str) -> None:
        with self._lock:
            del self._keys[kid]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._keys.values())
        return dict(KeySet(list(keys)).as_dict(private=False))

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.advertised_issuer or self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        }

    # -- minting -------------------------------------------------------------------

    def claims(
        self,
        sub: str | None = "p1",
        *,
        audience: str | list[str] | None = "coordo",
        expires_in: int = 3600,
        not_before: int | None = None,
        issuer: str | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Claims for a token. `None` values in extra_claims delete that claim."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": issuer if issuer is not None else self.issuer,
            "iat": now,
            "exp": now + expires_in,
            "jti": secrets.token_hex(8),
        }
        if sub is not None:
            claims["sub"] = sub
        if audience is not None:
            claims["aud"] = audience
        if not_before is not None:
            claims["nbf"] = not_before
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(
        self,
        sub: str | None = "p1",
        *,
        alg: str = "RS256",
        audience: str | list[str] | None = "coordo",
        expires_in: int = 3600,
        not_before: int | None = None,
        issuer: str | None = None,
        kid: str | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """Sign a token with a published key. `not_before` is an absolute epoch time."""
        kid = kid or self._default_kid[alg]
        with self._lock:
            key = self._keys[kid]
        claims = self.claims(
            sub,
            audience=audience,
            expires_in=expires_in,
            not_before=not_before,
            issuer=issuer,
            extra_claims=extra_claims,
        )
        return jwt.encode({"alg": alg, "kid": kid}, claims, key, algorithms=[alg])

    # -- forgeries -----------------------------------------------------------------

    def forge_alg_none(self, claims: dict[str, Any]) -> str:
        """Unsigned token (`alg: none`), carrying a real kid to look legitimate."""
        header = {"alg": "none", "typ": "JWT", "kid": "rsa-1"}
        return f"{_b64url_json(header)}.{_b64url_json(claims)}."

    def forge_hs256_with_public_key(self, claims: dict[str, Any]) -> str:
        """The classic alg-confusion attack: HMAC keyed with the public RSA PEM."""
        header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
        signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}"
        secret = self.rsa_key.as_pem(private=False)
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(mac)}"

    @staticmethod
    def tamper(token: str) -> str:
        """Flip one character in the middle of the signature.

        Not the last one: its low bits may be base64 padding, leaving the
        decoded signature unchanged.
        """
        head, payload, sig = token.split(".")
        i = len(sig) // 2
        flipped = "A" if sig[i] != "A" else "B"
        return f"{head}.{payload}.{sig[:i]}{flipped}{sig[i + 1 :]}"

    def mint_with_unknown_kid(self, sub: str | None = "p1", *, alg: str = "RS256") -> str:
        """Validly signed, but by a key the JWKS never published, under a random kid."""
        kid = f"unknown-{secrets.token_hex(8)}"
        stranger = self._strangers.get(alg)
        if stranger is None:
            # One stranger key per alg: RSA generation is too slow to do per token.
            stranger = self._strangers[alg] = _new_key(alg, "stranger")
        return jwt.encode({"alg": alg, "kid": kid}, self.claims(sub), stranger, algorithms=[alg])

    # -- HTTP --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                body: dict[str, Any] | None = None
                if path == "/.well-known/openid-configuration":
                    with issuer._lock:
                        issuer.discovery_hits += 1
                    body = issuer.discovery()
                elif path == "/jwks":
                    with issuer._lock:
                        issuer.jwks_hits += 1
                    body = issuer.jwks()
                if issuer.failing:
                    self._send(503, {"error": "unavailable"})
                elif body is None:
                    self._send(404, {"error": "not found"})
                else:
                    self._send(200, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler
