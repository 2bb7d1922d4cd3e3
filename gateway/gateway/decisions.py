"""Habilitation decisions: asked from `cercle`, allowed ones cached briefly, evicted on revocation.

Only ALLOWED decisions are cached (a new grant must show at once), for at most
`MAX_CACHE_S` seconds, and a break-the-glass decision never beyond its `expires_at`.
The key is (person, structure acted as, grantor acted for, patient). Every patient has an
index of its cache keys so a `HabilitationRevoked` / `BreakGlassAccessEnded` event evicts
all of them at once. A per-patient generation counter (and a global epoch) stops a
decision fetched before a revocation from being cached after it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from gateway.upstream import UpstreamError, UpstreamPool

__all__ = [
    "FIRST_RETRY_S",
    "MAX_CACHE_S",
    "MAX_RETRY_S",
    "MAX_UNKNOWN_PATIENT_WAITS",
    "UNKNOWN_PATIENT_WAIT_S",
    "Decision",
    "DecisionCache",
    "DecisionUnavailable",
    "ask_cercle",
]

MAX_CACHE_S = 5.0
DECISION_TIMEOUT_S = 2.0
# A file just created reaches cercle by its PatientCreated event a few milliseconds after
# dossier answered: while cercle does not know the patient, the gateway asks again (first
# after FIRST_RETRY_S, then twice as long each time) for up to this long before refusing.
UNKNOWN_PATIENT_WAIT_S = 2.0
FIRST_RETRY_S = 0.01
MAX_RETRY_S = 0.25
# At most this many such waits at once per gateway process; beyond, a refusal at once.
MAX_UNKNOWN_PATIENT_WAITS = 64
DEFAULT_MAX_ENTRIES = 100_000
REFUSING_STATUSES = frozenset({400, 403, 404})

# (person_id, structure_id acted as, grantor_id acted for, patient_id): the patient is last.
CacheKey = tuple[str, str | None, str | None, str]


class DecisionUnavailable(Exception):
    """cercle could not give a decision: the gateway refuses (fail closed)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str | None
    max_age_s: float
    #: End of a break-the-glass grant (aware UTC); None for the other bases.
    expires_at: datetime | None = None
    #: False when cercle has not learnt of the patient yet (a refusal that may not last).
    patient_known: bool = True


class DecisionCache:
    """Thread-safe: read on the event loop, evicted from the revocation consumer thread."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: float = MAX_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[float, Decision]] = OrderedDict()
        self._by_patient: dict[str, set[CacheKey]] = {}
        self._generation: dict[str, int] = {}
        self._epoch = 0
        # (delegate, grantor) -> monotonic time until which their decisions are not cached.
        self._ended_delegations: dict[tuple[str, str], float] = {}
        # Off while the revocation consumer is not listening: a revocation could be missed.
        self.enabled = threading.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def generation(self, patient_id: str) -> tuple[int, int]:
        """A token to pass to `put`; it changes whenever this patient (or everything) is evicted."""
        with self._lock:
            return self._epoch, self._generation.get(patient_id, 0)

    def get(self, key: CacheKey) -> Decision | None:
        if not self.enabled.is_set():
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, decision = entry
            if self._clock() >= expires:
                self._remove_locked(key)
                return None
            return decision

    def put(self, key: CacheKey, decision: Decision, generation: tuple[int, int]) -> bool:
        """Cache an allowed decision, unless a revocation happened since `generation` was read."""
        ttl = min(decision.max_age_s, self.max_age_s)
        if decision.expires_at is not None:
            # A break-the-glass grant ends at a wall-clock instant: never serve it past that.
            ttl = min(ttl, (decision.expires_at - self._wall_clock()).total_seconds())
        elif decision.basis == "break_glass":
            ttl = 0  # a break-the-glass decision without its end is not cached at all
        if not decision.allowed or ttl <= 0 or not self.enabled.is_set():
            return False
        patient_id = key[-1]
        with self._lock:
            if (self._epoch, self._generation.get(patient_id, 0)) != generation:
                return False
            if key[2] is not None and self._ended_delegations:
                until = self._ended_delegations.get((key[0], key[2]))
                if until is not None:
                    if self._clock() < until:
                        return False
                    del self._ended_delegations[(key[0], key[2])]
            self._entries[key] = (self._clock() + ttl, decision)
            self._entries.move_to_end(key)
            self._by_patient.setdefault(patient_id, set()).add(key)
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries))
                self._remove_locked(oldest)
        return True

    def evict_patient(self, patient_id: str) -> int:
        """Drop every cached decision about this patient; returns how many."""
        with self._lock:
            self._generation[patient_id] = self._generation.get(patient_id, 0) + 1
            keys = self._by_patient.pop(patient_id, set())
            for key in keys:
                self._entries.pop(key, None)
            return len(keys)

    def evict_delegation(self, delegate_id: str, grantor_id: str) -> int:
        """Drop every decision the delegate got acting for the grantor (any patient)."""
        with self._lock:
            # Decisions being fetched now may predate the revocation: none of them is cached.
            self._epoch += 1
            # cercle learns of the revocation from the same event, maybe a little after us: for a
            # while, ask it every time rather than cache an answer it gave from stale knowledge.
            self._ended_delegations[(delegate_id, grantor_id)] = self._clock() + self.max_age_s
            if len(self._ended_delegations) > self.max_entries:
                now = self._clock()
                self._ended_delegations = {k: t for k, t in self._ended_delegations.items() if t > now}
            keys = [k for k in self._entries if k[0] == delegate_id and k[2] == grantor_id]
            for key in keys:
                self._remove_locked(key)
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._generation.clear()
            self._entries.clear()
            self._by_patient.clear()

    def _remove_locked(self, key: CacheKey) -> None:
        self._entries.pop(key, None)
        keys = self._by_patient.get(key[-1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_patient[key[-1]]


def parse_decision(body: Any) -> Decision:
    if not isinstance(body, Mapping):
        raise DecisionUnavailable("decision is not a JSON object")
    allowed = body.get("allowed")
    basis = body.get("basis")
    max_age = body.get("max_age_s", 0)
    if not isinstance(allowed, bool):
        raise DecisionUnavailable("decision has no boolean 'allowed'")
    if basis is not None and not isinstance(basis, str):
        raise DecisionUnavailable("decision 'basis' is not a string")
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0:
        raise DecisionUnavailable("decision 'max_age_s' is not a non-negative number")
    patient_known = body.get("patient_known", True)  # absent from an older cercle: known
    if not isinstance(patient_known, bool):
        raise DecisionUnavailable("decision 'patient_known' is not a boolean")
    raw_expiry = body.get("expires_at")
    expires_at: datetime | None = None
    if raw_expiry is not None:
        if not isinstance(raw_expiry, str):
            raise DecisionUnavailable("decision 'expires_at' is not a date-time")
        try:
            expires_at = datetime.fromisoformat(raw_expiry)
        except ValueError as exc:
            raise DecisionUnavailable("decision 'expires_at' is not a date-time") from exc
        if expires_at.tzinfo is None:
            raise DecisionUnavailable("decision 'expires_at' has no time zone")
    return Decision(
        allowed=allowed,
        basis=basis,
        max_age_s=float(max_age),
        expires_at=expires_at,
        patient_known=allowed or patient_known,
    )


async def ask_cercle(pool: UpstreamPool, patient_id: str, headers: Mapping[str, str]) -> Decision:
    """GET /api/internal/decision on cercle; raise DecisionUnavailable on any doubt.

    Through the gateway's lean keep-alive pool, as requests are forwarded: every first
    access to a file (and each one a new file's creator makes while cercle catches up)
    asks, and httpx cost ~2 ms of the gateway's CPU per question (upstream.py)."""
    target = b"/api/internal/decision?patient_id=" + quote(patient_id, safe="").encode("ascii")
    raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    try:
        async with asyncio.timeout(DECISION_TIMEOUT_S):
            response = await pool.request("GET", target, raw_headers, b"")
            body = response.body
            if body is None:  # not expected of a decision, but a stream is read the same
                body = b"".join([chunk async for chunk in response.stream()])
    except TimeoutError as exc:
        raise DecisionUnavailable("cercle did not answer in time") from exc
    except UpstreamError as exc:
        raise DecisionUnavailable(f"cercle unreachable: {exc}") from exc
    if response.status in REFUSING_STATUSES:
        # A malformed or unknown patient, or an actor cercle does not accept: a refusal
        # (not cached), not an outage.
        return Decision(allowed=False, basis=None, max_age_s=0.0)
    if response.status != 200:
        raise DecisionUnavailable(f"cercle answered {response.status}")
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise DecisionUnavailable("cercle answered invalid JSON") from exc
    return parse_decision(decoded)
