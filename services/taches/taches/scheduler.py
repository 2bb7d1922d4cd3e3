"""TaskDueSoon scheduler (TSK-5): a background job of the taches worker.

Every interval it announces the open tasks due within the lead time, once per task and
due date (the announced date is stored with the task, so restarts never repeat one).
The clock is injectable so tests move time instead of waiting for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from chassis.db import Database
from chassis.settings import Settings, env
from taches import usecases

log = logging.getLogger(__name__)

# Due dates are French calendar days: "today" is today in Paris, not in UTC.
PARIS = ZoneInfo("Europe/Paris")
DEFAULT_LEAD_DAYS = 1
DEFAULT_INTERVAL_SECONDS = 300.0


def paris_today() -> date:
    return datetime.now(PARIS).date()


class DueSoonScheduler:
    def __init__(
        self,
        db: Database,
        *,
        lead_days: int = DEFAULT_LEAD_DAYS,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], date] = paris_today,
    ) -> None:
        self.db = db
        self.lead_days = lead_days
        self.interval = interval
        self.clock = clock

    @classmethod
    def from_settings(cls, _settings: Settings, db: Database) -> DueSoonScheduler:
        return cls(
            db,
            lead_days=int(env("COORDO_TACHES_DUE_SOON_DAYS", str(DEFAULT_LEAD_DAYS)) or DEFAULT_LEAD_DAYS),
            interval=float(
                env("COORDO_TACHES_DUE_SOON_INTERVAL", str(DEFAULT_INTERVAL_SECONDS))
                or DEFAULT_INTERVAL_SECONDS
            ),
        )

    def tick(self) -> int:
        """One pass: how many TaskDueSoon events were written to the outbox."""
        return usecases.emit_due_soon(self.db, self.clock(), self.lead_days)

    def __call__(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                emitted = self.tick()
                if emitted:
                    log.info("due-soon: %d task(s) announced", emitted)
            except Exception:  # a database hiccup must not kill the worker's thread
                log.exception("due-soon pass failed; retrying at the next interval")
            stop.wait(self.interval)


def background(settings: Settings, db: Database) -> list[Any]:
    return [DueSoonScheduler.from_settings(settings, db)]
