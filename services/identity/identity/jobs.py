"""Background jobs of the identity worker (never in a web process)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chassis.db import Database, utcnow
from chassis.settings import Settings, env
from identity.usecases_delegation import expire_delegations

log = logging.getLogger(__name__)

# A delegation lapses at the end of its last day: checking every minute is ample.
DEFAULT_INTERVAL_S = 60.0


class DelegationExpiry:
    """ID-6: delegations past their end date lapse by themselves (DelegationRevoked, cause
    "expired"). Reads already treat them as inactive; this records it and tells others."""

    def __init__(
        self, db: Database, *, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.interval_s = interval_s
        self.clock = clock

    def run_once(self) -> int:
        count = expire_delegations(self.db, now=self.clock())
        if count:
            log.info("delegations expired: %d", count)
        return count

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - keep the job alive; the next round retries
                log.exception("delegation expiry failed")
            stop.wait(self.interval_s)


def background(_settings: Settings, db: Database) -> list[Callable[[threading.Event], Any]]:
    interval = float(
        env("COORDO_DELEGATION_EXPIRY_INTERVAL_S", str(DEFAULT_INTERVAL_S)) or DEFAULT_INTERVAL_S
    )
    return [DelegationExpiry(db, interval_s=interval).run]
