"""Habilitation decisions: asked from `cercle`, allowed ones cached briefly, evicted on revocation.

Only ALLOWED decisions are cached (a new grant must show at once), for at most
`MAX_CACHE_S` seconds. Every patient has an index of its cache keys so a
`HabilitationRevoked` event evicts all of them at once. A per-patient generation
counter stops a decision fetched before a revocation from being cached after it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["MAX_CACHE_S", "Decision", "DecisionCache", "DecisionUnavailable", "ask_cercle"]

MAX_CACHE_S = 5.0
DECISION_TIMEOUT_S = 2.0
DEFAULT_MAX_ENTRIES = 100_000
REFUSING_STATUSES = frozenset({400, 403, 404})

CacheKey = tuple[str, str | None, str]  # (person_id, structure_id, patient_id)


class DecisionUnavailable(Exception):
    """cercle could not give a decision: the gateway refuses (fail closed)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str | None
    max_age_s: float


class DecisionCache:
    """Thread-safe: read on the event loop, evicted from the revocation consumer thread."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: float = MAX_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[float, Decision]] = OrderedDict()
        self._by_patient: dict[str, set[CacheKey]] = {}
        self._generation: dict[str, int] = {}
        self._epoch = 0
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
        if not decision.allowed or ttl <= 0 or not self.enabled.is_set():
            return False
        patient_id = key[2]
        with self._lock:
            if (self._epoch, self._generation.get(patient_id, 0)) != generation:
                return False
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

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._generation.clear()
            self._entries.clear()
            self._by_patient.clear()

    def _remove_locked(self, key: CacheKey) -> None:
        self._entries.pop(key, None)
        keys = self._by_patient.get(key[2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_patient[key[2]]


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
    return Decision(allowed=allowed, basis=basis, max_age_s=float(max_age))


async def ask_cercle(client: httpx.AsyncClient, patient_id: str, headers: Mapping[str, str]) -> Decision:
    """GET /api/internal/decision on cercle; raise DecisionUnavailable on any doubt."""
    try:
        response = await client.get(
            "/api/internal/decision",
            params={"patient_id": patient_id},
            headers=headers,
            timeout=DECISION_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise DecisionUnavailable(f"cercle unreachable: {exc.__class__.__name__}") from exc
    if response.status_code in REFUSING_STATUSES:
        # A malformed or unknown patient, or an actor cercle does not accept: a refusal
        # (not cached), not an outage.
        return Decision(allowed=False, basis=None, max_age_s=0.0)
    if response.status_code != 200:
        raise DecisionUnavailable(f"cercle answered {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise DecisionUnavailable("cercle answered invalid JSON") from exc
    return parse_decision(body)
