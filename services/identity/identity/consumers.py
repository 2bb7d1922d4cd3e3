"""Events identity listens to: none yet (identity is the source of accounts, not a consumer)."""

from __future__ import annotations

from chassis.consumer import Subscription
from chassis.settings import Settings


def subscriptions(_settings: Settings) -> list[Subscription]:
    return []
