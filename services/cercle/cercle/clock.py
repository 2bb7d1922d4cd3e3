"""The service's clock: real time in production, set by tests (break-the-glass ends at exactly 2 h)."""

from __future__ import annotations

from datetime import datetime, timedelta

from chassis.db import utcnow


class Clock:
    def __init__(self, fixed: datetime | None = None) -> None:
        self._fixed = fixed

    def now(self) -> datetime:
        return self._fixed if self._fixed is not None else utcnow()

    def set(self, at: datetime | None) -> None:
        """Freeze the clock at `at` (None: back to real time)."""
        self._fixed = at

    def advance(self, delta: timedelta) -> datetime:
        self._fixed = self.now() + delta
        return self._fixed
