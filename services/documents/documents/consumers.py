"""Events documents listens to: none yet (access is decided by the gateway with cercle)."""

from __future__ import annotations

from chassis.consumer import Subscription
from chassis.settings import Settings


def subscriptions(_settings: Settings) -> list[Subscription]:
    return []
