"""The provider's RS256 signing keys, kept in the identity database.

Generated at first start, so a restart (or another worker) keeps signing with a key
the verifiers already know. Rotation adds a newer key: it signs from then on while the
older ones stay published in the JWKS until retired, so tokens already issued still verify.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chassis.db import Database, utcnow
from identity.models import SigningKey

ALG = "RS256"


def _new_key() -> tuple[str, dict[str, Any]]:
    key = RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig"}, private=True)
    kid = key.thumbprint()  # RFC 7638: stable, derived from the public key
    return kid, key.as_dict(private=True, kid=kid, alg=ALG, use="sig")


class KeyStore:
    """Signing keys from the database, cached briefly in process."""

    def __init__(
        self, db: Database, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[RSAKey] | None = None
        self._loaded_at = 0.0

    def ensure(self) -> None:
        """Create the first key when the database has none (first start)."""
        if self._load():
            return
        self.add_key()

    def add_key(self) -> str:
        """Add a new signing key (first start or rotation); it signs from now on."""
        kid, jwk = _new_key()
        with self.db.unit_of_work() as uow:
            uow.session.add(SigningKey(kid=kid, alg=ALG, private_jwk=jwk, created_at=utcnow()))
            try:
                uow.commit()
            except IntegrityError:  # pragma: no cover - a thumbprint collision is not expected
                uow.rollback()
        self.invalidate()
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key: tokens it signed no longer verify."""
        with self.db.unit_of_work() as uow:
            row = uow.session.get(SigningKey, kid)
            if row is not None and row.retired_at is None:
                row.retired_at = utcnow()
            uow.commit()
        self.invalidate()

    def invalidate(self) -> None:
        with self._lock:
            self._keys = None

    def _load(self) -> list[RSAKey]:
        with self._lock:
            if self._keys is not None and self._clock() - self._loaded_at < self.ttl:
                return self._keys
            with self.db.session_factory() as s:
                rows = s.scalars(
                    select(SigningKey)
                    .where(SigningKey.retired_at.is_(None))
                    # Newest first; kid breaks ties so every worker picks the same signer.
                    .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
                ).all()
            keys = [RSAKey.import_key(dict(row.private_jwk)) for row in rows]
            self._keys = keys
            self._loaded_at = self._clock()
            return keys

    def keys(self) -> list[RSAKey]:
        keys = self._load()
        if not keys:
            self.ensure()
            keys = self._load()
        return keys

    def signing_key(self) -> RSAKey:
        return self.keys()[0]

    def jwks(self) -> dict[str, Any]:
        """Public halves only."""
        return {"keys": [key.as_dict(private=False, kid=key.kid, alg=ALG, use="sig") for key in self.keys()]}
