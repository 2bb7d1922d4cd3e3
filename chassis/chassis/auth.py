"""OIDC bearer-token verification shared by the gateway and every service.

Tokens are JWTs signed by the identity provider (RS256 or ES256). Keys come from
the issuer's discovery document and JWKS, cached in process; verified tokens are
cached until they expire so the hot path does no crypto and no network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

__all__ = [
    "ALLOWED_ALGORITHMS",
    "Actor",
    "InvalidToken",
    "IssuerUnavailable",
    "TokenVerifier",
    "bearer_info",
    "configure_verifier",
    "get_verifier",
]

# Asymmetric only: a symmetric alg would let anyone holding the public key sign.
ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_KEY_TYPE_FOR_ALG: dict[str, type[RSAKey] | type[ECKey]] = {"RS256": RSAKey, "ES256": ECKey}

# Real OIDC access tokens are a few KB; refusing huge ones bounds parsing work.
MAX_TOKEN_LENGTH = 16 * 1024
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_HTTP_TIMEOUT = 5.0


class InvalidToken(Exception):
    """The bearer token is not acceptable; `reason` is safe to show (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(InvalidToken):
    """Discovery or JWKS could not be fetched: the token cannot be checked right now.

    A subclass so callers that only know InvalidToken still refuse the request,
    while a gateway that cares can answer 503 instead of 401.
    """


def _b64url_decode(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _read_header(token: str) -> dict[str, Any]:
    """Decode the unverified JOSE header, only to pick the algorithm and key."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def _claim_reason(exc: ClaimError) -> str:
    if isinstance(exc, ExpiredTokenError):
        return "token expired"
    if isinstance(exc, MissingClaimError):
        return f"missing claim: {exc.claim}"
    if exc.claim == "nbf":
        return "token not yet valid"
    return f"invalid claim: {exc.claim}"


class TokenVerifier:
    """Verify bearer JWTs issued by one OIDC issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        http: httpx.Client | None = None,
        kid_refetch_cooldown: float = 30.0,
        clock: Callable[[], float] = time.time,
        leeway: int = 30,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid_refetch_cooldown = kid_refetch_cooldown
        self.leeway = leeway
        self.cache_size = cache_size
        self._clock = clock
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=DEFAULT_HTTP_TIMEOUT)
        self._discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"

        # Two locks: network fetches can be slow and must not block cache hits.
        self._fetch_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: KeySet | None = None
        # Time of the last JWKS attempt (success or failure): the refetch throttle.
        self._jwks_attempted_at: float | None = None
        # Keyed by SHA-256 of the token so the cache never holds bearer secrets.
        self._cache: OrderedDict[bytes, tuple[float, dict[str, Any]]] = OrderedDict()

    def close(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_http:
            self._http.close()

    # -- public API ---------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims, or raise InvalidToken. May do blocking HTTP."""
        cache_key = self._cache_key(token)
        cached = self._cache_get(cache_key)
        if cached is not None:
            return cached

        header = _read_header(token)
        alg = header.get("alg")
        # Checked before joserfc sees the token so "none"/HS256 never reach a verifier.
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise InvalidToken("unsupported algorithm")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed token")

        key = self._signing_key(kid, alg)
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS))
        except BadSignatureError as exc:
            raise InvalidToken("bad signature") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("malformed token") from exc

        claims = decoded.claims
        self._validate_claims(claims)
        self._cache_put(cache_key, claims)
        return copy.deepcopy(claims)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """Like verify, but keeps blocking key fetches off the event loop."""
        cached = self._cache_get(self._cache_key(token))
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.verify, token)

    # -- claims -------------------------------------------------------------

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        # joserfc's decode only checks the signature; every claim rule lives here.
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ClaimError as exc:
            raise InvalidToken(_claim_reason(exc)) from exc

    # -- verified-token cache -----------------------------------------------

    @staticmethod
    def _cache_key(token: str) -> bytes:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too large")
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def _cache_get(self, cache_key: bytes) -> dict[str, Any] | None:
        with self._cache_lock:
            entry = self._cache.get(cache_key)
            if entry is None:
                return None
            exp, claims = entry
            if self._clock() >= exp:
                # Past exp: drop it and let a full verify decide (leeway included).
                del self._cache[cache_key]
                return None
            # A copy, so a caller mutating its claims cannot poison the cache.
            return copy.deepcopy(claims)

    def _cache_put(self, cache_key: bytes, claims: dict[str, Any]) -> None:
        exp = claims["exp"]
        if self.cache_size <= 0 or self._clock() >= exp:
            return
        with self._cache_lock:
            self._cache[cache_key] = (float(exp), copy.deepcopy(claims))
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # -- keys ---------------------------------------------------------------

    def _signing_key(self, kid: str | None, alg: str) -> Key:
        keys = self._current_keys()
        key = _find_key(keys, kid, alg)
        if key is not None:
            return key
        # Unknown kid: maybe the issuer rotated keys. Refetch, but throttled, so
        # forged tokens with random kids cannot turn us into a DoS on the issuer.
        keys = self._refetch_keys(stale=keys)
        key = _find_key(keys, kid, alg)
        if key is None:
            raise InvalidToken("unknown signing key")
        return key

    def _current_keys(self) -> KeySet:
        keys = self._keys
        if keys is not None:
            return keys
        with self._fetch_lock:
            if self._keys is not None:
                return self._keys
            if not self._may_fetch_jwks():
                raise IssuerUnavailable("signing keys unavailable")
            return self._fetch_keys_locked()

    def _refetch_keys(self, stale: KeySet) -> KeySet:
        with self._fetch_lock:
            current = self._keys
            if current is not None and current is not stale:
                # Another thread refreshed while we waited for the lock.
                return current
            if not self._may_fetch_jwks():
                return stale
            try:
                return self._fetch_keys_locked()
            except IssuerUnavailable:
                # Keep serving with the keys we have; the token just fails its lookup.
                return stale

    def _may_fetch_jwks(self) -> bool:
        last = self._jwks_attempted_at
        return last is None or self._clock() - last >= self.kid_refetch_cooldown

    def _fetch_keys_locked(self) -> KeySet:
        jwks_uri = self._discover_locked()
        self._jwks_attempted_at = self._clock()
        try:
            response = self._http.get(jwks_uri)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, JoseError, ValueError, KeyError, TypeError) as exc:
            raise IssuerUnavailable("signing keys unavailable") from exc
        self._keys = keys
        return keys

    def _discover_locked(self) -> str:
        # Cached for the process life once it succeeds; a failure retries next call.
        if self._jwks_uri is not None:
            return self._jwks_uri
        try:
            response = self._http.get(self._discovery_url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable("issuer discovery failed") from exc
        if not isinstance(document, dict):
            raise IssuerUnavailable("issuer discovery failed")
        # OIDC Discovery 1.0 §4.3: the advertised issuer must match exactly.
        if document.get("issuer") != self.issuer:
            raise IssuerUnavailable("issuer discovery mismatch")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise IssuerUnavailable("issuer discovery failed")
        self._jwks_uri = jwks_uri
        return jwks_uri


def _find_key(keys: KeySet, kid: str | None, alg: str) -> Key | None:
    """The signature key for (kid, alg), or None. Key type must match the alg."""
    key_type = _KEY_TYPE_FOR_ALG[alg]
    candidates = [
        key
        for key in keys
        if isinstance(key, key_type)
        and key.get("use") in (None, "sig")
        and key.alg in (None, alg)
        and (kid is None or key.kid == kid)
    ]
    if kid is None:
        # No kid is only unambiguous when a single key could have signed it.
        return candidates[0] if len(candidates) == 1 else None
    return candidates[0] if candidates else None


# -- registry for connexion's x-bearerInfoFunc ------------------------------

_verifier: TokenVerifier | None = None


def configure_verifier(verifier: TokenVerifier) -> None:
    """Install the process-wide verifier used by `bearer_info`."""
    global _verifier
    _verifier = verifier


def get_verifier() -> TokenVerifier:
    if _verifier is None:
        raise RuntimeError("no token verifier configured: call chassis.auth.configure_verifier() at startup")
    return _verifier


async def bearer_info(token: str) -> dict[str, Any]:
    """connexion 3 `x-bearerInfoFunc`: claims on success, 401 problem otherwise."""
    try:
        return await get_verifier().verify_async(token)
    except InvalidToken as exc:
        # Imported here so the chassis imports without connexion (workers, tools).
        from connexion.exceptions import OAuthProblem

        raise OAuthProblem(detail=f"invalid token: {exc.reason}") from exc


# -- the acting person -------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who is making the request, and for which structure they act."""

    person_id: str
    structure_id: str | None
    structures: tuple[str, ...]
    profession: str | None
    medical: bool
    roles: tuple[str, ...]
    name: str | None
    #: The grantor of a delegation the person acts under (header X-Act-For, ID-6). The gateway
    #: forwards it only once cercle has confirmed the delegation for this patient.
    acting_for: str | None = None

    @classmethod
    def from_claims(cls, claims: dict[str, Any], act_as: str | None, act_for: str | None = None) -> Actor:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise ValueError("claims have no subject")
        raw_structures = claims.get("structures")
        structures = tuple(str(s) for s in raw_structures) if isinstance(raw_structures, list) else ()
        if act_as is not None and act_as not in structures:
            raise PermissionError(f"cannot act as structure {act_as!r}: not a member")
        profession = claims.get("profession")
        name = claims.get("name")
        roles = claims.get("roles")
        return cls(
            person_id=sub,
            structure_id=act_as,
            structures=structures,
            profession=profession if isinstance(profession, str) else None,
            # Only a JSON true grants medical access; "false" or 1 must not.
            medical=claims.get("medical") is True,
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else ("user",),
            name=name if isinstance(name, str) else None,
            acting_for=act_for if act_for and act_for != sub else None,
        )

    @property
    def owner_id(self) -> str:
        """Owner of data created now: the structure when acting for one."""
        return self.structure_id if self.structure_id is not None else self.person_id
